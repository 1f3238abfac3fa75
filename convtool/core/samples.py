"""Samples on their way into and out of the filters, each in one pass: a picture's
pixels laid out as padded planes (its 8- or 16-bit samples scaled to [0, 1] on the
way, as a reader would scale them); how many pixels of a result lie in a range (the
share clipping changes); and the 8- or 16-bit samples a writer stores.

A filter's result is planes (C, H, W), C-contiguous, as it comes out of the core, so
that the loops stream along each plane's rows (LLVM vectorises them); the tasks are
the rows.

Quantising: ``out = rint(clip(x * top, 0, top))``, NaN as 0, in x's own float type,
laid out channels-last (H, W, C) as the encoders take it: the arithmetic of
:func:`convtool.imaging.write`'s numpy route (its ``fmax``, ``fmin`` and ``rint``,
round half to even), which takes five passes over each block where this takes one.
``top`` is a one-element array of x's type, so that the product rounds as numpy's does.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from convtool.core.fastmath import ENTRY, _share


@njit(inline="always")
def _quantise(x, top, out, part, parts):
    channels, height, width = x.shape
    t = top[0]
    zero = t - t
    start, stop = _share(height, part, parts)
    for i in range(start, stop):
        for c in range(channels):
            for j in range(width):
                v = x[c, i, j] * t
                v = v if v > zero else zero  # NaN and everything below: 0
                v = v if v < t else t
                out[i, j, c] = np.rint(v)


@njit(**ENTRY)
def quantise_u1(x, top, out, part, parts):
    """8-bit samples (top 255)."""
    _quantise(x, top, out, part, parts)


@njit(**ENTRY)
def quantise_u2(x, top, out, part, parts):
    """16-bit samples (top 65535)."""
    _quantise(x, top, out, part, parts)


@njit(**ENTRY)
def count_inside(x, bounds, counts, part, parts):
    """counts[i] = how many pixels of row i have every channel within [bounds[0],
    bounds[1]] (a NaN is outside), for the share's rows."""
    channels, height, width = x.shape
    lo, hi = bounds[0], bounds[1]
    outside = np.zeros(width, np.uint8)
    start, stop = _share(height, part, parts)
    for i in range(start, stop):
        outside[:] = 0
        for c in range(channels):
            for j in range(width):
                v = x[c, i, j]
                outside[j] |= (v < lo) | (v > hi) | (v != v)
        found = 0
        for j in range(width):
            found += outside[j] == 0
        counts[i] = found


@njit(inline="always")
def _gather(x, rows, cols, out, part, parts):
    channels = x.shape[2]
    height, width = out.shape[1], out.shape[2]
    start, stop = _share(height, part, parts)
    for i in range(start, stop):
        src = x[rows[i]]
        for c in range(channels):
            dst = out[c, i]
            for j in range(width):
                dst[j] = src[cols[j], c]


@njit(**ENTRY)
def gather_planes(x, rows, cols, out, part, parts):
    """out[c, i, j] = x[rows[i], cols[j], c]: channels-last pixels x (H, W, C) laid out
    as planes, padded as the index maps ``rows`` and ``cols`` repeat the border's."""
    _gather(x, rows, cols, out, part, parts)


@njit(inline="always")
def _gather_scaled(x, rows, cols, top, out, part, parts):
    channels = x.shape[2]
    height, width = out.shape[1], out.shape[2]
    t = top[0]
    start, stop = _share(height, part, parts)
    for i in range(start, stop):
        src = x[rows[i]]
        for c in range(channels):
            dst = out[c, i]
            for j in range(width):
                # the sample as float32, then divided in float32: a reader's arithmetic
                dst[j] = np.float32(src[cols[j], c]) / t


@njit(**ENTRY)
def gather_u1(x, rows, cols, top, out, part, parts):
    """:func:`gather_planes` of 8-bit samples, each divided by ``top[0]`` (255): float32
    planes in [0, 1]."""
    _gather_scaled(x, rows, cols, top, out, part, parts)


@njit(**ENTRY)
def gather_u2(x, rows, cols, top, out, part, parts):
    """:func:`gather_planes` of 16-bit samples, each divided by ``top[0]`` (65535)."""
    _gather_scaled(x, rows, cols, top, out, part, parts)
