"""click parameter types shared by the commands (no numpy: shapes.py is pure Python)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from convtool import vocab
from convtool._shared import message


def said(error: BaseException) -> str:
    """A library error as the command line says it: the parameters it names as flags."""
    return message(error, vocab.as_flag)


CLIP_NOTE_SHARE = 0.05  # tell the user when clipping changed at least this share of pixels


def alias_option(command: str, old: str, dest: str, **kwargs: Any) -> Callable[..., Any]:
    """A hidden option for an old spelling (:data:`convtool.vocab.ALIASES`), whose use
    is told on stderr; the command receives its value as ``dest``."""

    def told(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value not in (None, False, ()):
            click.echo(vocab.deprecation(command, old), err=True)
        return value

    names = old.split("/")
    return click.option(*names, dest, hidden=True, callback=told, **kwargs)


def merged(new: Any, old: Any, command: str, old_flag: str) -> Any:
    """The value of an option given by its name or by its old spelling, not both."""
    if old in (None, False, ()):
        return new
    if new not in (None, False, ()):
        flag = vocab.ALIASES[(command, old_flag)][0]
        raise click.UsageError(f"{old_flag} is {flag}: give {flag} once")
    return old


class PairParam(click.ParamType):
    """``N`` or ``HxW``, each at least ``minimum``."""

    name = "N|HxW"

    def __init__(self, minimum: int = 1) -> None:
        self.minimum = minimum

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        from convtool.shapes import parse_pair

        what = param.name if param is not None else "value"
        try:
            return parse_pair(str(value), what, self.minimum)
        except ValueError as e:
            self.fail(said(e), param, ctx)


class PaddingParam(click.ParamType):
    name = "N|HxW|same|valid"

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        from convtool.shapes import parse_padding

        try:
            return parse_padding(value)
        except ValueError as e:
            self.fail(said(e), param, ctx)


class FiniteFloatParam(click.ParamType):
    """A finite number: NaN and infinities are refused (float() takes 'nan' and 'inf')."""

    name = "float"

    def convert(self, value, param, ctx):
        import math

        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"must be a finite number, got {value!r}", param, ctx)
        return number


class MaxPixelsParam(click.ParamType):
    """A pixel count ``N`` >= 0, or ``none``; 0 and none both mean no limit (given as 0)."""

    name = "N|none"

    def convert(self, value, param, ctx):
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        text = str(value).strip().lower().replace("_", "")
        if text in ("none", "0"):
            return 0
        try:
            number = int(text)
        except ValueError:
            self.fail(f"{value!r} is neither a pixel count nor 'none'", param, ctx)
        if number < 0:
            self.fail(f"must be a pixel count (0 or none: no limit), got {value!r}", param, ctx)
        return number


MAX_PIXELS_HELP = (
    "Refuse pictures of more than N pixels (width x height) before decoding them, a guard "
    "against decompression bombs. Default: Pillow's limit, about 89 million; 0 or none: no limit."
)


def max_pixels_option(function: Callable[..., Any]) -> Callable[..., Any]:
    """The ``--max-pixels N|none`` option, for every command that reads pictures.

    The command receives ``max_pixels``: None when not given (Pillow's own limit),
    0 for no limit, else the limit; :func:`max_pixels_limit` turns it into
    :func:`convtool.io.read_image`'s ``max_pixels``.
    """
    return click.option(
        "--max-pixels",
        "max_pixels",
        type=MaxPixelsParam(),
        default=None,
        metavar="N|none",
        help=MAX_PIXELS_HELP,
    )(function)


def max_pixels_limit(value: int | None) -> Any:
    """``read_image``'s ``max_pixels`` for the option's value (imaging.DEFAULT, None or N)."""
    from convtool import imaging

    if value is None:
        return imaging.DEFAULT
    return value or None


def encoding_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """How outputs are encoded: ``--quality`` (JPEG, WebP), ``--compression`` (PNG) and
    ``--strip`` (no metadata), as ImageMagick's ``-quality``, ``-define
    png:compression-level`` and ``-strip``."""
    for option in reversed(_ENCODING):
        function = option(function)
    return function


_ENCODING = [
    click.option(
        "--quality",
        type=click.IntRange(1, 100),
        metavar="N",
        help="JPEG and WebP quality, 1-100. Default: a JPEG input's own quality and chroma "
        "subsampling, as ImageMagick keeps them; else JPEG 95 at full-resolution chroma "
        "(edges and fine texture of filtered pictures stay free of visible artefacts); "
        "WebP lossless.",
    ),
    click.option(
        "--compression",
        type=click.IntRange(0, 9),
        default=1,
        show_default=True,
        metavar="LEVEL",
        help="PNG compression effort, 0-9 (ImageMagick: -define png:compression-level). 1 is "
        "fast: a 1024x1024 picture in a third of libpng's time, for a file a few percent "
        "larger; 6-8 try every row filter, as ImageMagick does; 9 writes the smallest file, "
        "many times slower.",
    ),
    click.option(
        "--strip",
        is_flag=True,
        help="Write no ICC profile, resolution (dpi) or EXIF; by default they are kept, "
        "as ImageMagick keeps them.",
    ),
]


class StretchParam(click.ParamType):
    """``LO,HI``: the percentiles drawn maps span
    (:func:`convtool.pipeline.colours.check_stretch`)."""

    name = "LO,HI"

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        from convtool.pipeline.colours import check_stretch

        parts = value.replace(" ", "").split(",")
        try:
            if len(parts) != 2:
                raise ValueError(f"give two percentiles LO,HI such as 1,99; got {value!r}")
            return check_stretch(parts)
        except ValueError as e:
            self.fail(said(e), param, ctx)


STRETCH_HELP = (
    "Drawn maps' colours span their LO-th..HI-th percentiles (1,99 brings out faint "
    "maps; values beyond take the end colours). Default: min..max."
)
