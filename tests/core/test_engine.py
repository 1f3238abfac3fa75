"""The engine: an explicit object passed down, the JIT by default, and numba's one door."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from convtool import ops
from convtool.core import (
    conv,
    conv_block,
    conv_box,
    conv_gemm,
    conv_sep,
    conv_wino,
    engine,
    fit,
    pool,
    tasks,
)


def test_every_kernel_has_a_door():
    """Each cached kernel of the core is run through the engine, under its own name (the
    forward pass's two layouts through ``conv2d_forward``, F(4x4, 3x3)'s transforms
    through F(2x2, 3x3)'s, by their arrays' positions)."""
    layouts = {"conv2d_rows", "conv2d_lines", "wino4_weights", "wino4_input", "wino4_output"}
    for module in (conv, conv_block, conv_box, conv_gemm, conv_sep, conv_wino, pool, fit):
        kernels = {
            name
            for name, value in vars(module).items()
            if not name.startswith("_") and hasattr(value, "py_func")
        }
        assert kernels, module.__name__
        for name in kernels - layouts:
            assert callable(getattr(engine.Engine, name, None)), f"{module.__name__}.{name}"
    assert layouts <= set(vars(conv)) | set(vars(conv_wino))
    assert engine._wino("input", np.empty((36, 1))) == "wino4_input"
    assert engine._wino("input", np.empty((16, 1))) == "wino_input"


@pytest.mark.parametrize("c_out", [1, 3, 4, 9])
def test_the_forward_layout_follows_the_output_channels(monkeypatch, c_out):
    called = []
    for name in ("conv2d_rows", "conv2d_lines"):
        kernel = getattr(conv, name)
        monkeypatch.setattr(conv, name, lambda *a, k=kernel, n=name: called.append(n) or k(*a))
    x = np.random.default_rng(3).random((2, 5, 6)).astype(np.float32)
    w = np.random.default_rng(4).standard_normal((c_out, 2, 3, 3)).astype(np.float32)
    y = ops.conv2d(x, w, padding=1)
    assert set(called) == {"conv2d_lines" if c_out >= engine.LINES_FROM else "conv2d_rows"}
    naive = np.zeros_like(y)
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    for o in range(c_out):
        for i in range(5):
            for j in range(6):
                naive[o, i, j] = np.sum(w[o] * xp[:, i : i + 3, j : j + 3])
    assert np.allclose(y, naive, rtol=1e-5, atol=1e-5)


def test_none_means_the_jit():
    assert engine.or_jit(None) is engine.jit()
    other = engine.Engine()
    assert engine.or_jit(other) is other
    assert engine.jit().name == "jit" and engine.jit().path is None
    x = np.random.default_rng(1).random((3, 17, 19)).astype(np.float32)
    w = np.random.default_rng(2).standard_normal((4, 3, 3, 5))
    default = ops.conv2d(x, w, padding="same")
    assert np.array_equal(default, ops.conv2d(x, w, padding="same", engine=engine.jit()))


def test_the_engine_is_passed_not_switched(monkeypatch):
    """An engine given to one call changes nothing for the next call."""
    calls = []

    class Recording(engine.Engine):
        def conv2d_forward(self, *args):
            calls.append(1)
            super().conv2d_forward(*args)

    x, w = np.ones((5, 5)), np.ones((3, 3))
    assert np.array_equal(ops.conv2d(x, w, engine=Recording()), ops.conv2d(x, w))
    assert len(calls) == 1


def test_reduction_chunks():
    threads = tasks.threads()
    assert engine.reduction_chunks(1) == 1
    assert engine.reduction_chunks(0) == 1
    assert engine.reduction_chunks(10**6) == 4 * threads


@pytest.mark.parametrize("threads", [None, "3", "not a number"])
def test_the_thread_count_is_numbas_variable_or_the_cpus(monkeypatch, threads):
    """Worked out without importing numba; NUMBA_NUM_THREADS as numba users know it."""
    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    if threads is not None:
        monkeypatch.setenv("NUMBA_NUM_THREADS", threads)
    out = _fresh(
        "import os, sys\nfrom convtool.core import engine\n"
        "print(engine.default_threads(), engine.reduction_chunks(10**6), 'numba' in sys.modules)\n"
        "print(len(os.sched_getaffinity(0)))\n"
    )
    count, chunks, imported, cpus = out
    assert imported == "False"
    assert count == ("3" if threads == "3" else cpus)
    assert chunks == str(4 * int(count))


def _fresh(code: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_choosing_an_engine_imports_no_numba():
    out = _fresh(
        "import sys\nfrom convtool.core import engine\n"
        "engine.jit(); engine.compiled(build_missing=False); engine.use_threads(1)\n"
        "print(engine.threads_running(), 'numba' in sys.modules)\n"
        "print('concurrent.futures' in sys.modules)\n"  # the threads' pool: ~10 ms to import
    )
    assert out == ["False", "False", "False"]


def test_the_kernel_threads_start_with_the_jit_and_are_limited():
    out = _fresh(
        "import os\nos.environ['NUMBA_NUM_THREADS'] = '2'\n"
        "import numpy as np\nfrom convtool import ops\nfrom convtool.core import engine, tasks\n"
        "print(engine.threads_running())\n"
        "ops.conv2d(np.ones((8, 8)), np.ones((3, 3)))\n"  # too small to wake them
        "print(engine.threads_running())\n"
        "ops.conv2d(np.ones((64, 64)), np.ones((3, 3)))\n"
        "print(engine.threads_running())\n"
        "engine.use_threads(1)\nprint(tasks.threads(), engine.threads_running())\n"
    )
    assert out == ["False", "False", "True", "1", "False"]


def test_a_small_call_runs_on_the_calling_thread_with_the_same_bytes(monkeypatch):
    rng = np.random.default_rng(11)
    x, w = rng.standard_normal((2, 3, 9, 7)), rng.standard_normal((5, 3, 3, 3))
    assert engine._elements((x, w, 3)) == x.size + w.size < engine.SERIAL_BELOW
    serial = ops.conv2d(x, w, padding=1)
    monkeypatch.setattr(engine, "SERIAL_BELOW", 0)
    calls = []
    monkeypatch.setattr(
        tasks, "run", lambda f, *a, run=tasks.run, **k: calls.append(1) or run(f, *a, **k)
    )
    np.testing.assert_array_equal(ops.conv2d(x, w, padding=1), serial)
    assert calls


def test_a_forked_child_runs_the_jit_on_threads_of_its_own():
    """The parent's threads do not exist in a forked child: its kernels start new ones."""
    out = _fresh(
        "import os\nos.environ['NUMBA_NUM_THREADS'] = '2'\n"
        "import numpy as np\nfrom convtool import ops\n"
        "x = np.arange(100.0).reshape(10, 10)\nw = np.ones((3, 3))\n"
        "y = ops.conv2d(x, w)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os._exit(0 if np.array_equal(ops.conv2d(x, w), y) else 3)\n"
        "print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n"
    )
    assert out == ["0"]


def test_the_compiled_core_threads_only_jobs_that_pay_for_it():
    small, big = engine.choose(engine.THREADED_WORK / 10), engine.choose(engine.THREADED_WORK)
    if small.name == "aot":  # the compiled core is built (it is in CI)
        assert not small.threaded and big.threaded and big.name == "aot"
    assert engine.jit().threaded  # the JIT's kernels always run on every core
    assert engine.choose(engine.LARGE_WORK * 2).name == "jit"


def test_a_small_blocked_call_runs_on_the_calling_thread_with_the_same_bytes(monkeypatch):
    """A register-blocked call of fewer than JIT_THREADED_WORK multiply-adds runs whole on
    the calling thread (waking the pool costs more than the second thread saves); past
    it, or with the threshold lowered, it runs on the threads, to the same bytes."""
    from convtool.core import blocked

    rng = np.random.default_rng(12)
    x = rng.standard_normal((4, 6, 14, 14)).astype(np.float32)
    w = rng.standard_normal((16, 6, 5, 5)).astype(np.float32)
    out = np.empty((4, 16, 10, 10), np.float32)
    assert out.size * 6 * 25 < engine.JIT_THREADED_WORK and out.size > engine.SERIAL_BELOW
    calls = []
    monkeypatch.setattr(
        tasks, "run", lambda f, *a, run=tasks.run, **k: calls.append(1) or run(f, *a, **k)
    )
    monkeypatch.setattr(tasks, "threads", lambda: 2)
    blocked.forward(engine.jit(), x, w, np.zeros(16, np.float32), out, (1, 1), (0, 0))
    serial = out.copy()
    assert not calls
    monkeypatch.setattr(engine, "JIT_THREADED_WORK", 0)
    blocked.forward(engine.jit(), x, w, np.zeros(16, np.float32), out, (1, 1), (0, 0))
    assert calls
    np.testing.assert_array_equal(out, serial)
