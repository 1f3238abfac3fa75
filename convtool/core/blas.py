"""numpy's BLAS held to one thread for a while, for a path whose own threads run products.

The Winograd path (:mod:`convtool.core.winograd`) runs its 16 products on the engine's
threads, a few each. OpenBLAS's own threads would fight them: they spin for a while
after each product and, on a busy machine, a product cut across threads waits for the
slowest (2 cores, another process on one: VGG's conv2_1 went from 9 ms to 240). So
while such a path runs, OpenBLAS runs each product on the thread that calls it
(single-threaded calls from several threads ran side by side here: 16 products took
51 ms on one thread, 28 on two).

OpenBLAS is found among the process's loaded libraries by the names its builds
export (numpy's wheels: ``scipy_openblas_set_num_threads64_``); with another BLAS (or
none found) :func:`one_thread` does nothing, and says so. Standard library only.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["one_thread"]

_PREFIXES = ("scipy_openblas_", "openblas_")
_SUFFIXES = ("64_", "")
_lock = threading.Lock()
_state: dict[str, Any] = {"functions": None, "looked": False, "users": 0, "before": 1}


def _loaded_openblas() -> list[str]:
    """The OpenBLAS libraries this process has loaded (Linux: from /proc/self/maps)."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower()}
    except OSError:
        return []
    return sorted(p for p in paths if p.startswith("/"))


def _functions() -> tuple[Any, Any] | None:
    """OpenBLAS's (set, get) thread-count functions, found once; None if none are."""
    if not _state["looked"]:
        import numpy  # noqa: F401  (loads its BLAS)

        for path in _loaded_openblas():
            with contextlib.suppress(OSError):
                library = ctypes.CDLL(path)
                for prefix in _PREFIXES:
                    for suffix in _SUFFIXES:
                        found = [
                            getattr(library, f"{prefix}{verb}_num_threads{suffix}", None)
                            for verb in ("set", "get")
                        ]
                        if all(found) and _state["functions"] is None:
                            found[0].argtypes, found[1].restype = [ctypes.c_int], ctypes.c_int
                            _state["functions"] = tuple(found)
        _state["looked"] = True
    return _state["functions"]


@contextlib.contextmanager
def one_thread() -> Iterator[bool]:
    """OpenBLAS on one thread inside the block (the count it had is restored when the
    last of the threads inside such blocks leaves); yields whether it was found."""
    with _lock:
        functions = _functions()
        if functions is not None:
            if _state["users"] == 0:
                _state["before"] = functions[1]()
                functions[0](1)
            _state["users"] += 1
    try:
        yield functions is not None
    finally:
        if functions is not None:
            with _lock:
                _state["users"] -= 1
                if _state["users"] == 0:
                    functions[0](_state["before"])
