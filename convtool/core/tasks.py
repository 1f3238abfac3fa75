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

The thread count: ``$NUMBA_NUM_THREADS`` if it is set (numba's own variable, which
batch workers set to 1), else the CPUs this process may run on; :func:`use_threads`
changes it. Standard library only: no numba, no numpy.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

__all__ = ["default_threads", "run", "running", "threads", "use_threads"]

_state: dict[str, Any] = {"threads": None, "pool": None}
SHARES_PER_THREAD = 4
_lock = threading.Lock()


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
        if _state["pool"] is not None:  # a pool of the old size: let it go
            _state["pool"].shutdown(wait=False)
            _state["pool"] = None


def running() -> bool:
    """Whether this process has started its kernel threads."""
    return _state["pool"] is not None


def run(kernel: Callable[..., Any], *args: Any) -> None:
    """``kernel(*args, part, parts)`` for every share, on :func:`threads` threads.

    Each thread takes the next share as it finishes one, SHARES_PER_THREAD shares a
    thread in all: a thread that another process holds up delays a small share, not
    half the call. A call from inside a share (the FFT's blocks filter a block
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

    pool = _pool(count - 1)
    waiting: list[Future] = [pool.submit(_in_shares, shares) for _ in range(1, count)]
    try:
        _in_shares(shares)
    finally:  # never return while a thread still writes into the caller's arrays
        for future in waiting:
            future.exception()
    for future in waiting:
        future.result()


_running = threading.local()  # .share: this thread runs a share now


def _in_shares(shares: Callable[[], None]) -> None:
    _running.share = True
    try:
        shares()
    finally:
        _running.share = False


def _pool(workers: int) -> ThreadPoolExecutor:
    from concurrent.futures import ThreadPoolExecutor  # ~10 ms: only once the JIT runs

    with _lock:
        if _state["pool"] is None:
            _state["pool"] = ThreadPoolExecutor(workers, thread_name_prefix="convtool-kernel")
        return _state["pool"]


def _forget_pool() -> None:
    """In a forked child: the parent's threads are not there, so start a pool anew."""
    global _lock
    _lock = threading.Lock()
    _state["pool"] = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)
