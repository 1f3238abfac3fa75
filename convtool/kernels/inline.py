"""Kernels written as numbers: rows (``0,-1,0; -1,5,-1; 0,-1,0``) and ImageMagick's
``WxH:`` form. Shared by inline specs and text kernel files."""

from __future__ import annotations

import re

import numpy as np

from convtool.kernels.base import MAX_SIDE, KernelSpecError, check_size, parse_number, plural

# ImageMagick's 'WxH:' (or 'N:') before the values; an origin offset '+X+Y' is recognised
# only to be refused
_SIZE_FORM = re.compile(
    r"\s*(\d+)\s*(?:[xX]\s*(\d+))?\s*([+-]\s*\d+\s*[+-]\s*\d+)?\s*:(.*)\Z", re.S
)


def has_size_prefix(text: str) -> bool:
    """Whether ``text`` is ImageMagick's ``WxH:`` form (then it is numbers, never a name)."""
    return _SIZE_FORM.match(text) is not None


def parse_numbers(text: str) -> np.ndarray:
    """A 2-D float64 kernel from ``WxH: values`` or from rows of numbers.

    Rows are split by ``;``, ``/`` or line breaks, numbers by commas and/or whitespace.
    """
    m = _SIZE_FORM.match(text)
    return _parse_geometry(m) if m else _parse_rows(text)


def _parse_rows(text: str) -> np.ndarray:
    rows: list[list[float]] = []
    for line in re.split(r"[;/\n\r]", text):
        line = line.strip().rstrip(",").strip()
        if not line:
            continue
        r = len(rows) + 1
        if r > MAX_SIDE:
            raise KernelSpecError(f"more than {MAX_SIDE} rows; at most {MAX_SIDE} are allowed")
        tokens = re.split(r"\s*,\s*|\s+", line)
        if "" in tokens:
            raise KernelSpecError(f"row {r} has an empty value (two commas in a row?): {line!r}")
        if len(tokens) > MAX_SIDE:
            raise KernelSpecError(
                f"row {r} has {len(tokens)} values; at most {MAX_SIDE} are allowed"
            )
        if rows and len(tokens) != len(rows[0]):
            raise KernelSpecError(
                f"row {r} has {plural(len(tokens), 'value')}, row 1 has {len(rows[0])}"
            )
        rows.append([parse_number(t, f"row {r}") for t in tokens])
    if not rows:
        raise KernelSpecError("empty kernel: no numbers found")
    return np.array(rows, dtype=np.float64)


def _parse_geometry(m: re.Match[str]) -> np.ndarray:
    w_text, h_text, offset, body = m.groups()
    geom = f"{w_text}x{h_text}" if h_text else w_text
    if offset:
        raise KernelSpecError(
            f"origin offsets like {offset.replace(' ', '')!r} are not supported; "
            "kernels are centred at index (kH//2, kW//2)"
        )
    sizes = []
    for t in (w_text, h_text or w_text):
        n = int(t) if len(t) <= 9 else MAX_SIDE + 1
        if n < 1:
            raise KernelSpecError(f"'{geom}:' has a zero size; width and height must be at least 1")
        sizes.append(n)
    width, height = sizes
    if max(width, height) > MAX_SIDE:  # said with the sizes as typed, however long
        rows, cols = (h_text or w_text).lstrip("0"), w_text.lstrip("0")
        raise KernelSpecError(
            f"'{geom}:' kernel is {rows}x{cols}; at most {MAX_SIDE} rows and columns are allowed"
        )
    check_size((height, width), f"'{geom}:' kernel")
    tokens = [t for t in re.split(r"[\s,;/]+", body.strip()) if t]
    if len(tokens) != width * height:
        raise KernelSpecError(f"'{geom}:' needs {width * height} values, got {len(tokens)}")
    values = [parse_number(t, f"'{geom}:' value {i + 1}") for i, t in enumerate(tokens)]
    return np.array(values, dtype=np.float64).reshape(height, width)
