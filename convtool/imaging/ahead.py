"""Reads started early on a thread, whose result the next read of the same picture takes.

A command that filters one picture spends tens of milliseconds getting ready (its
modules, its checks) before it reads it. libpng and libjpeg decode without holding the
GIL, so a second core can decode the picture meanwhile. :func:`start` runs a read on a
thread under a key; :func:`take` waits for it and gives its result, or raises its error
as if the caller had read the file itself.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["start", "take"]

_pending: dict[Hashable, _Reading] = {}


# While a read runs, the GIL changes hands every SWITCH seconds, not every 5 ms: the read
# needs it for moments between the decoder's long stretches without it, and waited up to
# 5 ms for each while the command's own thread ran Python (the read took twice as long).
SWITCH = 2e-4


class _Reading:
    """One read on a daemon thread: a command that stops early does not wait for it."""

    def __init__(self, read: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(read,), daemon=True)
        self.switch = sys.getswitchinterval()
        sys.setswitchinterval(min(SWITCH, self.switch))
        self.thread.start()

    def _run(self, read: Callable[[], Any]) -> None:
        try:
            self.result = read()
        except BaseException as e:  # raised again where the result is taken
            self.error = e
        finally:
            sys.setswitchinterval(self.switch)


def start(key: Hashable, read: Callable[[], Any]) -> None:
    """Run ``read()`` on a thread, its result kept under ``key`` for :func:`take`."""
    _pending[key] = _Reading(read)


def take(key: Hashable) -> Any:
    """The result of the read started under ``key`` (None if none was), once; its error
    raised again."""
    reading = _pending.pop(key, None)
    if reading is None:
        return None
    reading.thread.join()
    if reading.error is not None:
        raise reading.error
    return reading.result
