"""The spec grammar: text given to ``-k`` -> :class:`~convtool.kernels.KernelSpec`.

The forms accepted are described in :mod:`convtool.kernels`; a spec is a bank name (with
parameters and rotation), inline numbers, or ``@`` and a kernel file.
"""

from __future__ import annotations

import re

import numpy as np

from convtool.kernels.bank import bank_entry, resolve_name
from convtool.kernels.base import (
    KernelSpec,
    KernelSpecError,
    check_finite,
    check_size,
    parse_number,
)
from convtool.kernels.builders import rotate_kernel
from convtool.kernels.display import format_number
from convtool.kernels.imagemagick import im_kernels
from convtool.kernels.inline import has_size_prefix, parse_numbers


def parse_kernel(spec: str) -> np.ndarray:
    """Parse a kernel spec into float64 weights: (kH, kW), or (C_out, C_in, kH, kW) from a file.

    See :mod:`convtool.kernels` for the forms accepted.

    Examples
    --------
    >>> parse_kernel("sobel_x:90").tolist()
    [[-1.0, -2.0, -1.0], [0.0, 0.0, 0.0], [1.0, 2.0, 1.0]]
    >>> parse_kernel("3x1: 1 2 1").shape
    (1, 3)
    """
    return parse_kernel_spec(spec).weights


def parse_kernel_spec(spec: str) -> KernelSpec:
    """Parse a kernel spec into a :class:`KernelSpec` (weights, optional bias, display name).

    Raises :class:`KernelSpecError`, and nothing else, for any text that is not a
    kernel spec; its message is one line (control characters of the spec quoted in
    it are escaped). An accepted kernel is finite, non-empty and within MAX_SIDE
    and MAX_WEIGHTS.
    """
    if not isinstance(spec, str):
        raise KernelSpecError(f"a kernel spec must be text, got {type(spec).__name__}")
    text = spec.strip()
    if not text:
        raise KernelSpecError("empty kernel spec")
    try:
        if text.startswith("@"):
            from convtool.kernels.files import read_kernel_file  # loaded for files alone

            return read_kernel_file(text[1:].strip())
        return _parse_text(text)
    except KernelSpecError as e:
        message = str(e)
        if message.isprintable():
            raise
        # a message quotes the spec: its line breaks and control characters, escaped,
        # keep the message one line
        escaped = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
        raise KernelSpecError(escaped) from None


def _parse_text(text: str) -> KernelSpec:
    if not has_size_prefix(text):
        first = re.split(r"[\s,;/]+", text.strip(), maxsplit=1)[0]
        try:
            float(first)
        except (ValueError, OverflowError):
            # a name: its part before ':' or '@' holds only letters, digits, '_', '-' and spaces
            head = re.split(r"[:@]", text, maxsplit=1)[0]
            if head.strip().lower() == "im" and text.lstrip()[2:].lstrip().startswith(":"):
                return _parse_imagemagick(text)
            if re.fullmatch(r"[^\W_][\w\- ]*", head):
                return _parse_named(text)
    return KernelSpec(parse_numbers(text), "custom")


def _show_arg(text: str) -> str:
    try:
        return format_number(float(text))
    except ValueError:  # box's HxW
        return text.replace(" ", "").lower()


def _parse_named(text: str) -> KernelSpec:
    rest, at, angle_text = text.rpartition("@") if "@" in text else (text, "", "")
    name_text, colon, args_text = rest.partition(":")
    name = resolve_name(name_text)
    entry = bank_entry(name)
    args = [a.strip() for a in args_text.split(",")] if colon else []
    angles = [angle_text.strip()] if at else []
    if colon and not args_text.strip():
        raise KernelSpecError(f"{name_text.strip()!r} is followed by ':' but nothing after it")
    if args and not entry.params:  # ImageMagick's NAME:ANGLE
        if len(args) > 1 or at:
            raise KernelSpecError(
                f"{name} takes no parameters; rotate with {name}:ANGLE or {name}@ANGLE, "
                f"got {args_text.strip()!r}"
            )
        angles, args = args, []
    built = entry.build(args)
    stack = list(built) if entry.parts else [built]
    display = name + (":" + ",".join(_show_arg(a) for a in args) if args else "")
    if angles:
        if not angles[0]:
            raise KernelSpecError(f"missing rotation angle after '@' in {text!r}")
        angle = parse_number(angles[0], f"{name} rotation")
        stack = [rotate_kernel(w, angle) for w in stack]
        if angle % 360:
            display += f"@{format_number(angle)}"
    stack = [np.ascontiguousarray(w, dtype=np.float64) for w in stack]
    for w in stack:
        check_size(w.shape)
        check_finite(w, display)
    return KernelSpec(stack[0], display, None, name, tuple(stack) if entry.parts else ())


def _parse_imagemagick(text: str) -> KernelSpec:
    """``im:NAME[:ARGS]``: ImageMagick's kernel NAME with its geometry ARGS; a list
    (``K1;K2``, or a flag ``@`` ``>`` ``<``) becomes a chain, applied one after another."""
    rest = text.strip()[2:].lstrip()[1:].strip()
    if not re.match(r"[A-Za-z]", rest):
        raise KernelSpecError("'im:' needs an ImageMagick kernel name, e.g. im:Gaussian:0x2")
    kernels = [np.ascontiguousarray(k, dtype=np.float64) for k in im_kernels(rest)]
    display = "im:" + re.sub(r"\s+", "", rest)
    for k in kernels:
        check_size(k.shape)
        check_finite(k, display)
    base = "im:" + re.sub(r"[\s_\-]+", "", re.match(r"[A-Za-z][\w\- ]*", rest).group().lower())
    return KernelSpec(kernels[0], display, None, base, chain=tuple(kernels[1:]))
