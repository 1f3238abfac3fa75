"""The JIT's threads: one call of a kernel cut into shares, run side by side.

Every kernel that has independent tasks (output rows, row chunks, chunks of a sum)
takes two last arguments, ``part`` and ``parts``, and runs the tasks of that share
alone, serially, without the GIL (see :mod:`convtool.core.fastmath`). :func:`run`
calls it once per thread, the calling thread taking the first share, and waits for
all of them. The shares are cut as a static schedule cuts a parallel loop, so the
sums, and the bytes, are the same whatever the thread count.

Why not numba's ``prange``: numba compiles each parallel loop into a chain of
wrappers, each optimised anew, which doubled the kernels' compile time, and it
starts a threading layer that makes forking unsafe. A serial kernel compiles in
about half the time, and the pool here is restarted in a forked child.

Between calls the threads spin a while before they sleep, so that the next call
finds them awake (:mod:`convtool.core.spin`, whose compiled functions and flags the
engine hands to :func:`run` as :class:`Waits`); without them, they sleep on the queues.

The thread count: ``$NUMBA_NUM_THREADS`` if it is set (numba's own variable, which
batch workers set to 1), else the CPUs this process may run on; :func:`use_threads`
changes it. Standard library only: no numba, no numpy.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from _queue import SimpleQueue  # queue.SimpleQueue itself; queue and heapq cost 1 ms
from collections.abc import Callable
from typing import Any, NamedTuple

__all__ = ["Waits", "default_threads", "park", "run", "running", "threads", "use_threads"]

# pool: its queue; waits: the Waits in use
_state: dict[str, Any] = {"threads": None, "pool": None, "workers": 0, "waits": None}
# shares a thread: each share's end takes the GIL, and two threads that want it at once
# put one to sleep (a call's shares cost 4-7% more in 4s than in 2s, 2-4% than in 1s)
SHARES_PER_THREAD = 2
# looks at the flags before a thread sleeps (each a pause of ~20 ns, a yield every 64:
# about 0.5 ms), and pauses a woken worker lets the caller take to get into its share
SPINS, DELAY = 20000, 200
_lock = threading.Lock()


class Waits(NamedTuple):
    """:mod:`convtool.core.spin`'s functions (compiled or JIT) and the flags they share."""

    flags: Any  # int64: [0] the latest generation, [1] the jobs finished, [2] put out
    finished_then_wait: Callable[..., bool]
    wait_finished: Callable[..., bool]


def default_threads() -> int:
    """``$NUMBA_NUM_THREADS`` if it is an integer, else the CPUs this process may run on."""
    with contextlib.suppress(KeyError, ValueError):
        return max(1, int(os.environ["NUMBA_NUM_THREADS"]))
    with contextlib.suppress(AttributeError):  # no sched_getaffinity on macOS and Windows
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def threads() -> int:
    """How many threads a kernel's call runs on (see the module docstring)."""
    if _state["threads"] is None:
        _state["threads"] = default_threads()
    return _state["threads"]


def use_threads(count: int) -> None:
    """Run each kernel's call on ``count`` threads from now on (at least one)."""
    with _lock:
        _state["threads"] = max(1, int(count))
        if _state["pool"] is not None:  # a pool of the old size: its threads end
            for _ in range(_state["workers"]):
                _state["pool"].put(None)
            _state["pool"] = None


def running() -> bool:
    """Whether this process has started its kernel threads."""
    return _state["pool"] is not None


def run(kernel: Callable[..., Any], *args: Any, waits: Waits | None = None) -> None:
    """``kernel(*args, part, parts)`` for every share, on :func:`threads` threads; the
    threads spin between calls on the first ``waits`` given (see the module docstring).

    Each thread takes the next share as it finishes one, SHARES_PER_THREAD shares a
    thread in all: a thread that another process holds up delays a share, not half the
    call. A call from inside a share (the FFT's blocks filter a block
    directly) runs whole on its own thread: the pool's threads are busy with the shares
    around it, and waiting for them there would wait forever.
    """
    count = threads()
    if count == 1 or getattr(_running, "share", False):
        kernel(*args, 0, 1)
        return
    parts, taken = SHARES_PER_THREAD * count, itertools.count()  # next() holds the GIL

    def shares() -> None:
        while (part := next(taken)) < parts:
            kernel(*args, part, parts)

    if waits is not None and _state["waits"] is None:
        _state["waits"] = waits
    pool, ends, waits = _pool(count - 1), SimpleQueue(), _state["waits"]
    generation = 0  # the jobs put out, this call's included
    if waits is not None:
        waits.flags[2] += count - 1
        generation = int(waits.flags[2])
    for _ in range(1, count):
        pool.put((shares, ends, generation, waits))
    if waits is not None:
        waits.flags[0] = generation  # the spinning workers take their jobs
    try:
        _in_shares(shares)
    finally:  # never return while a thread still writes into the caller's arrays
        if waits is not None:  # a job's end is on its queue before it is counted
            waits.wait_finished(waits.flags, generation, SPINS)
        errors = [ends.get() for _ in range(1, count)]
    for error in errors:
        if error is not None:
            raise error


def park() -> None:
    """Send the spinning threads to sleep on their queues now: before a call whose own
    threads want the cores (OpenBLAS's products: spinning beside them, VGG's conv2_1
    backward took 1.2-2.6x as long)."""
    waits = _state["waits"]
    if waits is not None:
        waits.flags[0] = -1  # no generation: each worker looks at its queue, and sleeps


_running = threading.local()  # .share: this thread runs a share now


def _in_shares(shares: Callable[[], None]) -> None:
    _running.share = True
    try:
        shares()
    finally:
        _running.share = False


def _pool(workers: int) -> SimpleQueue:
    """The queue the pool's ``workers`` threads take shares from, started on first use.
    (Not concurrent.futures' pool: importing it, with logging, took 3.5 ms of a command.)"""
    with _lock:
        if _state["pool"] is None:
            jobs = _state["pool"] = SimpleQueue()
            _state["workers"] = workers
            for i in range(workers):
                name = f"convtool-kernel_{i}"
                threading.Thread(target=_worker, args=(jobs,), name=name, daemon=True).start()
        return _state["pool"]


def _worker(jobs: SimpleQueue) -> None:
    """Run the shares put on ``jobs`` until told to stop (None); put each one's error, or
    None, on the queue that came with it, then count it done on the flags (if it was
    counted out) and spin for the next generation before sleeping on the queue."""
    seen, counted = 0, None  # the last counted job's generation, and the flags it counts on
    while True:
        waits = counted or _state["waits"]
        if waits is not None:
            waits.finished_then_wait(waits.flags, int(counted is not None), seen, SPINS, DELAY)
        counted = None
        job = jobs.get()
        if job is None:
            return
        shares, ends, generation, waits = job
        try:
            _in_shares(shares)
        except BaseException as e:  # raised in the calling thread
            ends.put(e)
        else:
            ends.put(None)
        if waits is not None:
            seen, counted = generation, waits


def _forget_pool() -> None:
    """In a forked child: the parent's threads are not there, so start a pool anew."""
    global _lock
    _lock = threading.Lock()
    _state["pool"] = None
    if _state["waits"] is not None:  # the flags counted the parent's jobs
        flags = _state["waits"].flags
        for i in range(len(flags)):
            flags[i] = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)
