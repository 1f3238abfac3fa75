"""Float samples to 8- or 16-bit ones, in one pass: what a writer stores.

``out = rint(clip(x * top, 0, top))``, NaN as 0, in x's own float type: the arithmetic
of :func:`convtool.imaging.write`'s numpy route (its ``fmax``, ``fmin`` and ``rint``,
round half to even), which takes five passes over each block where this takes one.
x is (H, W, C) in any layout (a filter's planes seen channels-last, or
channels-last itself); out is C-contiguous. The tasks are x's rows; ``top`` is a
one-element array of x's type, so that the product rounds as numpy's does.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from convtool.core.fastmath import ENTRY, _share


@njit(inline="always")
def _quantise(x, top, out, part, parts):
    height, width, channels = x.shape
    t = top[0]
    zero = t - t
    start, stop = _share(height, part, parts)
    for i in range(start, stop):
        for c in range(channels):  # along a row, channel by channel: either layout streams
            row, dst = x[i, :, c], out[i, :, c]
            for j in range(width):
                v = row[j] * t
                v = v if v > zero else zero  # NaN and everything below: 0
                v = v if v < t else t
                dst[j] = np.rint(v)


@njit(**ENTRY)
def quantise_u1(x, top, out, part, parts):
    """8-bit samples (top 255)."""
    _quantise(x, top, out, part, parts)


@njit(**ENTRY)
def quantise_u2(x, top, out, part, parts):
    """16-bit samples (top 65535)."""
    _quantise(x, top, out, part, parts)
