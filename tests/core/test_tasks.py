"""The JIT's threads: any thread count gives the same bytes, and every share is run."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from convtool import ops
from convtool.core import engine, tasks
from tests.core.fit_calls import fit_statistics


@pytest.fixture
def threads():
    """Set the kernels' thread count for one test, restored after it."""
    before = tasks.threads()
    yield tasks.use_threads
    tasks.use_threads(before)


def _everything(rng_seed: int) -> dict[str, np.ndarray]:
    """Every kernel with tasks, through the public operations, on the JIT."""
    rng = np.random.default_rng(rng_seed)
    x = rng.standard_normal((3, 5, 23, 19)).astype(np.float32)
    results = {}
    for c_out in (2, 7):  # the two layouts of the forward pass
        w = rng.standard_normal((c_out, 5, 3, 4)).astype(np.float32)
        y = ops.conv2d(x, w, padding=(1, 2), stride=(2, 1))
        g = rng.standard_normal(y.shape).astype(np.float32)
        dx, dw, db = ops.conv2d_backward(x, w, g, padding=(1, 2), stride=(2, 1))
        results |= {f"y{c_out}": y, f"dx{c_out}": dx, f"dw{c_out}": dw, f"db{c_out}": db}
    deep = rng.standard_normal((2, 32, 15, 13)).astype(np.float32)
    for stride in (1, 2):  # the Winograd path's transforms; the GEMM path's copies
        w = rng.standard_normal((48, 32, 3, 3)).astype(np.float32)
        results[f"deep{stride}"] = ops.conv2d(deep, w, padding=1, stride=stride)
    pooled = ops.max_pool2d(x, 3, stride=2, padding=1)
    g = rng.standard_normal(pooled.shape).astype(np.float32)
    results |= {"max": pooled, "max_back": ops.max_pool2d_backward(x, g, 3, stride=2, padding=1)}
    averaged = ops.avg_pool2d(x, 2, stride=1, padding=1)
    g = rng.standard_normal(averaged.shape).astype(np.float32)
    results |= {"avg": averaged, "avg_back": ops.avg_pool2d_backward(x, g, 2, stride=1, padding=1)}
    return results


@pytest.mark.parametrize("count", [2, 3, 7])
def test_the_thread_count_never_changes_the_bytes(threads, count):
    """Every share cut per task: the same bytes. The kernel gradient and the fit's
    statistics are split into :func:`engine.reduction_chunks` partial sums, a count that
    follows the thread count, so there the order of additions (the last bits) changes."""
    threads(1)
    one = _everything(5)
    fit_one = fit_statistics(engine.jit(), toeplitz=True, drop_some=True)
    threads(count)
    many = _everything(5)
    assert one.keys() == many.keys()
    for name in one:
        if name.startswith("dw"):
            np.testing.assert_allclose(one[name], many[name], rtol=1e-5, atol=1e-5)
        else:
            assert np.array_equal(one[name], many[name], equal_nan=True), name
    for a, b in zip(fit_one, fit_statistics(engine.jit(), True, True), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_every_share_runs_once_on_threads_side_by_side(threads):
    threads(4)
    seen: list[tuple[int, int, str]] = []
    lock = threading.Lock()

    def kernel(tag, part, parts):
        time.sleep(0.01)  # long enough for every thread to take shares
        with lock:
            seen.append((part, parts, threading.current_thread().name))

    tasks.run(kernel, "x")
    parts = 4 * tasks.SHARES_PER_THREAD
    assert sorted(p for p, _, _ in seen) == list(range(parts))
    assert {n for _, n, _ in seen} == {parts}
    names = {name for _, _, name in seen}
    assert threading.current_thread().name in names  # the caller takes shares too
    assert len(names) > 1
    assert tasks.running()


def test_a_failing_share_is_raised_after_every_share_ends(threads):
    threads(3)
    finished = []

    def kernel(part, parts):
        if part == 2:
            raise ValueError("share 2 failed")
        finished.append(part)

    with pytest.raises(ValueError, match="share 2 failed"):
        tasks.run(kernel)
    # the failing thread takes no more shares; the others take the rest
    assert sorted(finished) == [p for p in range(3 * tasks.SHARES_PER_THREAD) if p != 2]


def test_a_new_thread_count_ends_the_old_pools_threads(threads):
    def workers():
        return {t for t in threading.enumerate() if t.name.startswith("convtool-kernel")}

    threads(4)
    before = workers()  # an earlier pool's, told to end or not ours
    tasks.run(lambda part, parts: None)
    pool = workers() - before
    assert len(pool) == 3
    threads(2)
    tasks.run(lambda part, parts: None)
    for t in pool:
        t.join(timeout=5)
    assert not any(t.is_alive() for t in pool)
    assert len(workers() - before - pool) == 1


def _soon(condition, seconds=5.0) -> bool:
    """Whether ``condition()`` holds within ``seconds``."""
    end = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.001)
    return True


@pytest.mark.parametrize("spins", [1, tasks.SPINS])
def test_spinning_threads_count_every_job_and_sleep_when_their_spins_run_out(
    threads, monkeypatch, spins
):
    """With the engine's waits, the workers count every job they finish on the flags the
    caller waits on, a failing one too; with the spins run out at once (threads that
    sleep on their queues between calls), every share still runs once, on the queues."""
    monkeypatch.setattr(tasks, "SPINS", spins)
    threads(3)
    waits = engine.jit().waits()
    seen = []
    for k in range(40):
        if k == 20:
            with pytest.raises(ValueError, match="share 1"):
                tasks.run(lambda part, parts: part != 1 or int("share 1"), waits=waits)
        tasks.run(lambda part, parts, k=k: seen.append((k, part)), waits=waits)
        flags = tasks._state["waits"].flags
        assert flags[0] == flags[2]  # the latest generation: the jobs put out
        assert _soon(lambda flags=flags: flags[1] == flags[2])  # every job counted done
    shares = 3 * tasks.SHARES_PER_THREAD
    assert sorted(seen) == [(k, p) for k in range(40) for p in range(shares)]


def test_one_thread_runs_on_the_caller(threads):
    threads(1)
    seen = []
    tasks.run(lambda part, parts: seen.append((part, parts, threading.current_thread())))
    assert seen == [(0, 1, threading.current_thread())]


def test_a_call_from_inside_a_share_runs_whole_on_its_thread(threads):
    """The FFT's blocks filter a block directly: a nested call must not wait for the
    pool's threads, all busy with the shares around it (that waited forever)."""
    threads(3)
    inner: list[tuple[int, int]] = []
    lock = threading.Lock()

    def nested(part, parts):
        with lock:
            inner.append((part, parts))

    def outer(part, parts):
        tasks.run(nested)

    runner = threading.Thread(target=tasks.run, args=(outer,), daemon=True)
    runner.start()
    runner.join(timeout=60)
    assert not runner.is_alive(), "a nested call waited forever"
    assert inner == [(0, 1)] * (3 * tasks.SHARES_PER_THREAD)


def test_the_fft_path_filters_its_non_finite_blocks_on_threads(threads):
    """The FFT path's blocks run on the threads and call the direct path for a block
    with a NaN: the nested call that once hung the threads."""
    threads(2)
    rng = np.random.default_rng(11)
    x = rng.standard_normal((1, 1, 300, 300)).astype(np.float32)
    x[0, 0, 150, 150] = np.nan
    w = rng.standard_normal((1, 1, 31, 31)).astype(np.float32)
    y = ops.conv2d(x, w, padding=15)
    threads(1)
    one = ops.conv2d(x, w, padding=15)
    assert np.array_equal(np.isnan(y), np.isnan(one))
    np.testing.assert_allclose(y, one, rtol=1e-4, atol=1e-3)
