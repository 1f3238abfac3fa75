"""No silent wait: when convtool must compile at run time, it says so once on stderr, with
the expected time, and shows a spinner while it works when stderr is a terminal.

The core's engine decides when a wait deserves a word (a compile that has already
taken a moment, not a cache load); this module only says it, the command line's way.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

import click


class CompileNotice:
    """What the engine calls when it compiles: ``notice(text)`` says ``text`` (the first
    time only) and returns the function that ends the spinner, if one was started."""

    def __init__(self) -> None:
        self.said = False

    def __call__(self, text: str) -> Callable[[], None]:
        if not self.said:
            click.echo(f"convtool: {text}", err=True)
            self.said = True
        if not sys.stderr.isatty():
            return _nothing
        from rich.console import Console

        status = Console(stderr=True).status("compiling", spinner="dots")
        status.start()
        return status.stop


@contextlib.contextmanager
def announced(notice: CompileNotice, text: str) -> Iterator[Callable[[], None]]:
    """An ``announce`` callback for a step that may build first (the compiled core's
    run-time build): called, it says ``text``; the spinner ends with the block."""
    stops: list[Callable[[], None]] = []
    try:
        yield lambda: stops.append(notice(text))
    finally:
        for stop in stops:
            stop()


def _nothing() -> None:
    return None
