"""Small helpers that many rooms use: standard library only."""

from __future__ import annotations

import os


def one_line(error: BaseException, limit: int | None = None) -> str:
    """An error's message on one line (its type's name if it has none).

    With ``limit``, a longer message is cut to ``limit`` characters, ending in "...".

    >>> one_line(ValueError("two\\n  lines"))
    'two lines'
    """
    text = " ".join(str(error).split()) or type(error).__name__
    if limit is not None and len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def typed_line(error: BaseException) -> str:
    """One line that names the error's type too, for errors nobody expected.

    >>> typed_line(KeyError("x"))
    "KeyError: 'x'"
    """
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def same_file(a: str, b: str) -> bool:
    """Whether two paths name one file: the same file on disk, or (where either does
    not exist yet) the same absolute path."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)
