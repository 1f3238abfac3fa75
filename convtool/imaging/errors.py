"""The errors pictures raise, their one-line messages, and decoders kept quiet.

Every failure is an :class:`ImageReadError` or :class:`ImageWriteError` whose
message is one line naming the file and the problem. Messages name the command
line's options (``--max-pixels``, ``--overwrite``) because that is where most
readers meet them.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

from convtool._shared import one_line as shared_one_line

__all__ = [
    "ImageIOError",
    "ImageReadError",
    "ImageWriteError",
    "label",
    "one_line",
    "quiet_decoders",
]


class ImageIOError(Exception):
    """Base of the two errors below; ``str(error)`` is one line."""


class ImageReadError(ImageIOError):
    """A picture or array could not be read: names the file and the problem."""


class ImageWriteError(ImageIOError):
    """A picture or array could not be written: names the file and the problem."""


def one_line(error: BaseException) -> str:
    """An error's message on one line of at most 200 characters (its type if empty):
    decoders' messages can be long, and a read error is one line of the report."""
    return shared_one_line(error, limit=200)


def label(source: str, writing: bool = False) -> str:
    """How messages name ``source``: the path as given, or standard input/output for '-'."""
    if source == "-":
        return "standard output" if writing else "standard input"
    return source


_DECODER_LOGGERS = ("PIL", "tifffile")


@contextlib.contextmanager
def quiet_decoders() -> Iterator[None]:
    """Silence the decoders' warnings and log records while a file is read.

    Pillow and tifffile report a damaged file through ``warnings`` and ``logging``
    as well as by raising; the reader's ImageReadError says it once, in one
    line. The loggers' levels are restored afterwards.
    """
    import logging  # here: the routes that need no quietening (imagecodecs) spare it

    loggers = [logging.getLogger(name) for name in _DECODER_LOGGERS]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.CRITICAL + 1)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)
