"""Sizes as people type them: ``N``, ``HxW``, ``CxHxW``, ``same`` and ``valid``."""

from __future__ import annotations

from convtool.shapes.sizes import PaddingSpec, Pair

_SEPARATORS = ("x", "X", "×")
# Any size, stride, padding or count typed is at most this: beyond it no array could be made
# (numpy's and the core's indices are 64-bit) and a chain's products would outgrow what
# Python prints (4300 digits); limits of what a job may make are convtool.shapes.budget's.
LARGEST = 10**15


def _split_dims(text: str) -> list[str]:
    for sep in _SEPARATORS[1:]:
        text = text.replace(sep, "x")
    return text.split("x")


def parse_int(text: str, name: str, minimum: int) -> int:
    """``text`` as an integer from ``minimum`` to :data:`LARGEST`, else ValueError naming it.

    >>> parse_int("10000000000000000", "padding", 0)
    Traceback (most recent call last):
    ...
    ValueError: padding must be at most 10^15, got 10000000000000000
    """
    digits = text.strip()
    if len(digits) > 40:  # int() of thousands of digits is slow, and they say nothing more
        raise ValueError(f"{name} must be at most 10^15, got a number of {len(digits)} characters")
    try:
        value = int(digits)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {digits!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    if value > LARGEST:
        raise ValueError(f"{name} must be at most 10^15, got {value}")
    return value


def parse_pair(text: str, name: str, minimum: int = 1) -> Pair:
    """Parse ``'N'`` or ``'HxW'`` into an (h, w) pair of ints, each at least ``minimum``.

    >>> parse_pair("3x5", "kernel")
    (3, 5)
    >>> parse_pair("2", "stride")
    (2, 2)
    """
    parts = _split_dims(text)
    if len(parts) > 2:
        raise ValueError(f"{name} must be N or HxW, got {text!r}")
    values = [parse_int(p, name, minimum) for p in parts]
    return (values[0], values[-1])


def parse_padding(text: str) -> PaddingSpec:
    """Parse a padding: ``'N'``, ``'HxW'``, ``'same'`` or ``'valid'``."""
    mode = text.strip().lower()
    if mode in ("same", "valid"):
        return mode
    try:
        return parse_pair(text, "padding", minimum=0)
    except ValueError:
        raise ValueError(f"padding must be N, HxW, 'same' or 'valid', got {text!r}") from None


def parse_dims(text: str) -> tuple[int, ...]:
    """Parse an input shape: ``'N'``, ``'HxW'`` or ``'CxHxW'``, every number at least 1."""
    parts = _split_dims(text)
    if len(parts) > 3:
        raise ValueError(f"input must be N, HxW or CxHxW, got {text!r}")
    return tuple(parse_int(p, "input size", 1) for p in parts)
