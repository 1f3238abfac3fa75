"""convtool.batch: outcomes in order whatever the jobs, per-item errors, callbacks,
other executors, thread limits in workers, worker deaths and interrupts."""

from __future__ import annotations

import concurrent.futures as cf
import os
import sys
import time
from pathlib import Path

import pytest

from convtool.batch import runner
from convtool.core import engine


# work functions live at module level so that worker processes can unpickle them
def square(x: int) -> int:
    if x < 0:
        raise ValueError(f"negative input {x}")
    return x * x


def slow_first(x: int) -> int:
    time.sleep(0.3 if x == 0 else 0.01)  # the first item finishes last
    return x


def worker_threads(_: int) -> tuple[str, int]:
    return os.environ.get("NUMBA_NUM_THREADS", ""), os.getpid()


def die_on_three(x: int) -> int:
    if x == 3:
        os._exit(9)  # a crash, as a segfault or the OOM killer would end it
    time.sleep(0.05)
    return x


def write_slowly(args: tuple[str, int]) -> str:
    """Write a temporary file, take a while, then rename it: clean-up in ``finally``."""
    folder, i = args
    temp = Path(folder) / f".part{i}"
    try:
        temp.write_text("partial")
        time.sleep(0.4)
        final = Path(folder) / f"done{i}"
        temp.rename(final)
        return final.name
    finally:
        if temp.exists():
            temp.unlink()


def bug(_: int) -> None:
    raise RuntimeError("something unexpected")


@pytest.mark.parametrize("jobs", [1, 2])
def test_outcomes_and_errors_in_order(jobs):
    seen, progress = [], []
    report = runner.run_batch(
        [1, -2, 3, 4],
        square,
        jobs=jobs,
        on_outcome=seen.append,
        on_progress=lambda done, total, o: progress.append((done, total)),
    )
    assert [o.index for o in report.outcomes] == [0, 1, 2, 3]
    assert [o.record for o in report.outcomes] == [1, None, 9, 16]
    assert report.outcomes[1].error == "negative input -2" and not report.outcomes[1].ok
    assert (report.total, report.done, report.failed, report.succeeded) == (4, 4, 1, 3)
    assert seen == report.outcomes
    assert sorted(progress) == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert not report.interrupted and report.elapsed > 0


def test_on_outcome_follows_the_items_not_the_finishing_order():
    finished, seen = [], []
    report = runner.run_batch(
        [0, 1, 2, 3],
        slow_first,
        jobs=2,
        on_progress=lambda done, total, o: finished.append(o.index),
        on_outcome=lambda o: seen.append(o.index),
    )
    assert finished[-1] == 0  # item 0 really finished last
    assert seen == [0, 1, 2, 3] and [o.record for o in report.outcomes] == [0, 1, 2, 3]


def test_unexpected_errors_name_their_type():
    report = runner.run_batch([0], bug)
    assert report.outcomes[0].error == "RuntimeError: something unexpected"
    assert runner.format_error(OSError(2, "No such file")) == "[Errno 2] No such file"
    assert runner.format_error(KeyError()) == "KeyError"


def test_workers_run_numba_on_one_thread():
    report = runner.run_batch(list(range(4)), worker_threads, jobs=2)
    threads = {o.record[0] for o in report.outcomes}
    pids = {o.record[1] for o in report.outcomes}
    assert threads == {"1"} and os.getpid() not in pids


def test_any_executor_can_run_the_items():
    with cf.ThreadPoolExecutor(3) as pool:  # as dask.distributed's Client.get_executor() would
        report = runner.run_batch([3, -1, 2], square, executor=pool)
    assert [o.record for o in report.outcomes] == [9, None, 4]
    assert report.failed == 1


def test_a_dead_worker_fails_its_items_without_hanging():
    report = runner.run_batch(list(range(6)), die_on_three, jobs=2)
    assert report.done == 6 and not report.interrupted
    assert not report.outcomes[3].ok and "worker failed" in report.outcomes[3].error


def test_serial_interrupt_keeps_what_finished(tmp_path):
    calls = []

    def fn(x):
        calls.append(x)
        if x == 2:
            raise KeyboardInterrupt
        return x

    report = runner.run_batch([0, 1, 2, 3], fn)
    assert report.interrupted and [o.record for o in report.outcomes] == [0, 1]
    assert calls == [0, 1, 2]


def test_pool_interrupt_stops_workers_and_cleans_up(tmp_path, capfd):
    items = [(str(tmp_path), i) for i in range(12)]
    seen = []

    def on_outcome(outcome):
        seen.append(outcome)
        if len(seen) == 1:
            raise KeyboardInterrupt  # as Ctrl-C in the parent, mid-batch

    started = time.monotonic()
    report = runner.run_batch(items, write_slowly, jobs=2, on_outcome=on_outcome)
    assert report.interrupted
    assert time.monotonic() - started < 4  # did not run the remaining ten items
    done = sorted(p.name for p in tmp_path.iterdir())
    assert all(name.startswith("done") for name in done)  # no partial files
    assert {o.record for o in report.outcomes if o.ok} <= set(done)
    assert 1 <= len(done) < 12
    assert all(o.error != runner.INTERRUPTED for o in report.outcomes)
    assert "Traceback" not in capfd.readouterr().err  # quietly, workers included


def test_start_method():
    method = runner.default_start_method()
    if sys.platform.startswith("linux"):  # no fork while this process's kernel threads run
        assert method == ("forkserver" if engine.threads_running() else "fork")
    else:
        assert method in ("forkserver", "spawn")
    report = runner.run_batch([1, 2], square, jobs=2, start_method="spawn")
    assert [o.record for o in report.outcomes] == [1, 4]


def test_limit_threads_sets_the_environment(monkeypatch):
    for name in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.setenv(name, "7")  # restored after the test
    monkeypatch.delitem(sys.modules, "numba", raising=False)  # as before numba's import
    runner.limit_threads(1)
    assert os.environ["NUMBA_NUM_THREADS"] == "1" and os.environ["OMP_NUM_THREADS"] == "1"
