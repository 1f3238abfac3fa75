"""Run one function over many work items, in this process or in worker processes.

The engine knows nothing about pictures. A batch is a list of picklable work
items and a picklable function (a module-level function, or a
``functools.partial`` of one) that turns one item into one *record*. Each item
ends as an :class:`Outcome`: its record, or the one-line error it raised. One
failing item does not stop the others.

::

    report = run_batch(paths, work, jobs=4, on_outcome=print_record,
                       on_progress=lambda done, total, outcome: bar.update(done))
    sys.exit(1 if report.failed else 0)

- ``on_outcome`` runs in this process, in the items' order (an outcome waits
  until every earlier one is in), so what it prints does not depend on
  ``jobs``; ``on_progress`` runs as items finish, in any order.
- ``jobs > 1`` starts a process pool: 'fork' on Linux while no kernel threads run
  in this process (fastest: the workers inherit the imported modules), otherwise
  'forkserver' or 'spawn'. Each worker runs the kernels on one thread
  (NUMBA_NUM_THREADS=1), so ``jobs`` processes use ``jobs`` cores.
- Ctrl-C (KeyboardInterrupt in this process) cancels the items not yet started
  and asks the workers to stop (SIGTERM): an item interrupted mid-way runs its
  own clean-up (``finally`` blocks, so io's atomic writes leave no partial
  file), then the workers exit. The report says ``interrupted`` and holds the
  outcomes finished so far. A second Ctrl-C while they stop kills them at once.
- ``executor=`` takes any ``concurrent.futures.Executor`` instead of the pool,
  e.g. dask.distributed's ``Client.get_executor()``; each submitted call is
  :func:`run_item`, the unit of work every backend runs.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from convtool import vocab
from convtool._shared import one_line, typed_line

if TYPE_CHECKING:
    import concurrent.futures as cf

__all__ = [
    "INTERRUPTED",
    "Outcome",
    "Report",
    "format_error",
    "limit_threads",
    "run_batch",
    "run_item",
]


class Outcome(NamedTuple):
    """How one item ended: ``record`` (what the function returned) or ``error`` (one line)."""

    index: int
    record: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class Report:
    """A finished (or interrupted) batch: the outcomes in the items' order."""

    total: int
    outcomes: list[Outcome] = field(default_factory=list)
    interrupted: bool = False
    elapsed: float = 0.0

    @property
    def done(self) -> int:
        return len(self.outcomes)

    @property
    def failed(self) -> int:
        return sum(not o.ok for o in self.outcomes)

    @property
    def succeeded(self) -> int:
        return self.done - self.failed


def format_error(error: BaseException) -> str:
    """One line for an exception: its message, with the type for unexpected kinds."""
    kind = type(error)
    if issubclass(kind, OSError | ValueError | LookupError) or kind.__module__.startswith(
        "convtool"
    ):
        return one_line(error, spell=vocab.as_flag)
    return typed_line(error, vocab.as_flag)


def run_item(fn: Callable[[Any], Any], index: int, item: Any) -> Outcome:
    """Call ``fn(item)``; an Exception becomes the outcome's error (KeyboardInterrupt passes)."""
    try:
        return Outcome(index, fn(item))
    except Exception as e:
        return Outcome(index, error=format_error(e))


def limit_threads(threads: int = 1) -> None:
    """Run the kernels (and OpenMP/BLAS libraries) on ``threads`` threads in this process."""
    for name in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    from convtool.core import engine

    engine.use_threads(threads)  # the kernels' count, read from the environment only once


def default_start_method() -> str:
    """'fork' on Linux while no kernel threads run here; else 'forkserver' or 'spawn'."""
    import multiprocessing

    from convtool.core import engine

    methods = multiprocessing.get_all_start_methods()
    if sys.platform.startswith("linux") and "fork" in methods and not engine.threads_running():
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


# ------------------------------------------------------------------ worker side

INTERRUPTED = "interrupted"  # the error of an item stopped (or never started) by Ctrl-C
_in_item = False
_stopping = False


def _on_terminate(signum: int, frame: Any) -> None:
    """SIGTERM from the parent: stop the item in progress (it cleans up), start no other."""
    global _stopping
    if _stopping:  # once is enough: a second signal must not cut the clean-up short
        return
    _stopping = True
    if _in_item:
        raise KeyboardInterrupt


def _worker_init(initializer: Callable[..., Any] | None, initargs: tuple) -> None:
    import signal  # here and in _stop: the module costs 0.5 ms, a single picture's none

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what Ctrl-C means
    signal.signal(signal.SIGTERM, _on_terminate)
    limit_threads(1)
    if initializer is not None:
        initializer(*initargs)


def _worker_run(fn: Callable[[Any], Any], index: int, item: Any) -> Outcome:
    global _in_item
    outcome = None
    if not _stopping:
        _in_item = True
        try:
            outcome = run_item(fn, index, item)
        except KeyboardInterrupt:  # stopped by the parent: the item has cleaned up
            pass
        finally:
            _in_item = False
    return outcome if outcome is not None else Outcome(index, error=INTERRUPTED)


# ------------------------------------------------------------------ parent side


def _processes(pool: Any) -> list[Any]:
    return list((getattr(pool, "_processes", None) or {}).values())


def _stop(pool: Any) -> None:
    """Ask the workers to stop (SIGTERM: the item in progress unwinds and cleans up, the
    queued ones are skipped) and wait for them; a second Ctrl-C kills them at once."""
    import signal

    for process in _processes(pool):
        with contextlib.suppress(OSError, ValueError):
            os.kill(process.pid, signal.SIGTERM)
    try:
        pool.shutdown(wait=True, cancel_futures=True)
    except KeyboardInterrupt:
        import threading

        hook = threading.excepthook  # the pool's thread may complain about cancelled futures

        def quiet(args: Any) -> None:
            if args.exc_type.__name__ != "InvalidStateError":
                hook(args)

        threading.excepthook = quiet
        for process in _processes(pool):
            with contextlib.suppress(OSError, ValueError):
                process.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        raise


def run_batch(
    items: Sequence[Any],
    fn: Callable[[Any], Any],
    *,
    jobs: int = 1,
    on_outcome: Callable[[Outcome], None] | None = None,
    on_progress: Callable[[int, int, Outcome], None] | None = None,
    executor: cf.Executor | None = None,
    start_method: str | None = None,
    initializer: Callable[..., Any] | None = None,
    initargs: tuple = (),
) -> Report:
    """Run ``fn`` over ``items``; see the module docstring.

    Parameters
    ----------
    items : sequence
        Work items; with ``jobs > 1`` they and ``fn`` must pickle.
    fn : callable
        ``fn(item) -> record``; an exception it raises fails that item only.
    jobs : int
        Worker processes; 1 runs everything here, in order.
    on_outcome, on_progress : callables, optional
        See the module docstring; both run in this process.
    executor : concurrent.futures.Executor, optional
        Use it instead of starting a pool (it is not shut down here).
    start_method : str, optional
        multiprocessing start method for the pool (default: :func:`default_start_method`).
    initializer, initargs
        Run once in each worker, after it limits its threads.
    """
    started = time.perf_counter()
    report = Report(len(items))
    order = _InOrder(report, on_outcome, on_progress)
    jobs = max(1, min(jobs, len(items)))
    if executor is None and jobs == 1:
        try:
            for index, item in enumerate(items):
                order.finish(run_item(fn, index, item))
        except KeyboardInterrupt:
            report.interrupted = True
    else:
        pool = executor or _pool(jobs, start_method, initializer, initargs)
        _run_pool(pool, items, fn, order, own_pool=executor is None)
    report.elapsed = time.perf_counter() - started
    return report


class _InOrder:
    """Hands outcomes on in the items' order while they end in any order."""

    def __init__(
        self,
        report: Report,
        on_outcome: Callable[[Outcome], None] | None,
        on_progress: Callable[[int, int, Outcome], None] | None,
    ) -> None:
        self.report, self.on_outcome, self.on_progress = report, on_outcome, on_progress
        self.pending: dict[int, Outcome] = {}
        self.next_index = 0

    def finish(self, outcome: Outcome) -> None:
        """One item ended: report progress, then hand on every outcome now in order."""
        self.pending[outcome.index] = outcome
        if self.on_progress is not None:
            self.on_progress(
                len(self.report.outcomes) + len(self.pending), self.report.total, outcome
            )
        while self.next_index in self.pending:
            self.hand_on(self.pending.pop(self.next_index))
            self.next_index += 1

    def seen(self, index: int) -> bool:
        return index in self.pending or index < self.next_index

    def hand_on(self, outcome: Outcome) -> None:
        self.report.outcomes.append(outcome)
        if self.on_outcome is not None:
            self.on_outcome(outcome)

    def flush(self) -> None:
        """After Ctrl-C: what finished, in order (gaps are items not done)."""
        for index in sorted(self.pending):
            self.hand_on(self.pending.pop(index))


def _pool(jobs: int, start_method: str | None, initializer: Any, initargs: tuple) -> Any:
    import concurrent.futures as cf
    import multiprocessing

    context = multiprocessing.get_context(start_method or default_start_method())
    return cf.ProcessPoolExecutor(
        jobs, mp_context=context, initializer=_worker_init, initargs=(initializer, initargs)
    )


def _run_pool(pool: Any, items: Sequence[Any], fn: Callable, order: _InOrder, own_pool: bool):
    """Run the items on ``pool`` (shut down here when ``own_pool``), handing outcomes on."""
    import concurrent.futures as cf

    report = order.report
    call = _worker_run if own_pool else run_item
    futures: dict[cf.Future, int] = {}
    try:
        for index, item in enumerate(items):
            futures[pool.submit(call, fn, index, item)] = index
        for future in cf.as_completed(futures):
            try:
                outcome = future.result()
            except Exception as e:  # the pool broke (a worker died) or an item did not pickle
                outcome = Outcome(futures[future], error=f"worker failed: {format_error(e)}")
            order.finish(outcome)
    except KeyboardInterrupt:
        report.interrupted = True
        for future in futures:
            future.cancel()
        if own_pool:
            _stop(pool)
        for future, index in futures.items():
            if order.seen(index) or future.cancelled() or not future.done():
                continue
            if future.exception() is None and future.result().error != INTERRUPTED:
                order.pending[index] = future.result()
        order.flush()
    finally:
        if own_pool and not report.interrupted:
            pool.shutdown(wait=True)
