"""Small helpers that many rooms use: standard library only."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

E = TypeVar("E", bound=BaseException)


def one_line(
    error: BaseException, limit: int | None = None, spell: Callable[[Param], str] | None = None
) -> str:
    """An error's message on one line (its type's name if it has none).

    With ``limit``, a longer message is cut to ``limit`` characters, ending in "...";
    ``spell`` is :func:`message`'s.

    >>> one_line(ValueError("two\\n  lines"))
    'two lines'
    """
    text = " ".join(message(error, spell).split()) or type(error).__name__
    if limit is not None and len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def typed_line(error: BaseException, spell: Callable[[Param], str] | None = None) -> str:
    """One line that names the error's type too, for errors nobody expected.

    >>> typed_line(KeyError("x"))
    "KeyError: 'x'"
    """
    text = " ".join(message(error, spell).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def shape_text(shape: Any) -> str:
    """``(1, 78, 78)``, as figures' titles and the stage tables show an array's shape."""
    return "(" + ", ".join(str(int(n)) for n in shape) + ")"


def same_file(a: str, b: str) -> bool:
    """Whether two paths name one file: the same file on disk, or (where either does
    not exist yet) the same absolute path."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


class Param(NamedTuple):
    """A parameter a message tells the user to set: its Python name and the value asked for.

    The library writes it as a keyword (``overwrite=True``, ``padding='same'``); the
    command line as its flag (``--overwrite``, ``--padding same``, see
    :func:`convtool.vocab.as_flag`).
    """

    name: str
    value: Any = True

    def as_keyword(self) -> str:
        return f"{self.name}={self.value!r}"


def naming(error: E, template: str, **fields: Any) -> E:
    """``error`` with a message that names parameters: the :class:`Param` fields of
    ``template`` are written as Python keywords; :func:`message` writes them otherwise.

    >>> str(naming(ValueError(), "{path} exists; pass {it}", path="a.png", it=Param("overwrite")))
    'a.png exists; pass overwrite=True'
    """
    error.template, error.fields = template, fields  # type: ignore[attr-defined]
    error.args = (_filled(template, fields, Param.as_keyword),)
    return error


def message(error: BaseException, spell: Callable[[Param], str] | None = None) -> str:
    """``str(error)``, with the parameters it names (see :func:`naming`) spelled by
    ``spell``: Python keywords by default; the command line passes its flags."""
    template = getattr(error, "template", None)
    if template is None or spell is None:
        return str(error)
    return _filled(template, error.fields, spell)  # type: ignore[attr-defined]


def _filled(template: str, fields: dict[str, Any], spell: Callable[[Param], str]) -> str:
    return template.format(
        **{k: spell(v) if isinstance(v, Param) else v for k, v in fields.items()}
    )
