"""The convolution of one channel with a constant (box) kernel, by running sums.

A box's window sum moves from one output to the next by one value in and one out, so
its cost does not grow with its size: down the columns, a row of sums moves a row at
a time (vectorised across the row); along each row, a sum moves a column at a time.
The result is ``bias + c * sum``, c the kernel's one value.

Error control: each running sum restarts from a fresh sum of its window every
:data:`RESTART` outputs, so rounding never piles up over a long picture (a float32
sum drifts by about a unit in the last place per step); the restart grid is anchored
in the whole output's coordinates (``org_top``, ``org_left``), so a tile cut on it
repeats the whole picture's steps and gives its bytes. A sum that turns NaN or
infinite (a NaN or infinity entered the window, or left it: inf - inf) is recomputed
from its window alone, so non-finite values stay in the windows that hold them, as
with the direct path.

Stride 1; zero padding (the other borders are padded before). The planner
(:mod:`convtool.core.plan`) sends boxes here where this is the cheapest path.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from convtool.core.fastmath import ENTRY, FASTMATH, INNER, _share

RESTART = 32  # outputs between fresh sums, along each axis: also the tiles' block


@njit(fastmath=FASTMATH, **ENTRY)
def box_forward(x, scale, bias, out, kh, kw, pad_top, pad_left, org_top, org_left, part, parts):
    """out[n, 0, i, j] = bias[0] + scale[0] * sum of x[n, 0] over rows i - pad_top ..
    i - pad_top + kh - 1 and columns j - pad_left .. j - pad_left + kw - 1 (zero outside).

    ``org_top``, ``org_left``: the whole output's coordinates of out[..., 0, 0]; the
    running sums restart on the whole output's grid of RESTART.
    """
    n_img, h_out = x.shape[0], out.shape[2]
    first = -(org_top % RESTART)  # the first segment's start in out's rows (<= 0)
    n_seg = (h_out - first + RESTART - 1) // RESTART
    start, stop = _share(n_img * n_seg, part, parts)  # this call's share of the segments
    for task in range(start, stop):
        n = task // n_seg
        i0 = first + (task % n_seg) * RESTART
        _box_segment(out, x, scale[0], bias[0], n, i0, kh, kw, pad_top, pad_left, org_left)


@njit(fastmath=FASTMATH, **INNER)
def _box_segment(out, x, scale, bias, n, i0, kh, kw, pad_top, pad_left, org_left):
    """Output rows i0 .. i0 + RESTART - 1 (those inside out): one task of box_forward."""
    height, width = x.shape[2], x.shape[3]
    h_out = out.shape[2]
    w_out = out.shape[3]
    sums = np.zeros(width, dtype=x.dtype)  # the current output row's column sums
    # scratch rows for _along_row: the sums with zeros around (RESTART before, to reach
    # the first segment's start), and the outputs of whole segments
    padded = np.zeros(2 * RESTART + max(pad_left + width, w_out) + kw, dtype=x.dtype)
    staged = np.zeros(3 * RESTART + w_out, dtype=x.dtype)
    for i in range(i0, min(i0 + RESTART, h_out)):
        top = i - pad_top
        if i == i0:
            _fresh_columns(sums, x, n, top, kh)
        else:
            if 0 <= top + kh - 1 < height:
                _add_row(sums, x[n, 0, top + kh - 1], 1)
            if 0 <= top - 1 < height:
                _add_row(sums, x[n, 0, top - 1], -1)
            if not _all_finite(sums):
                _refresh_columns(sums, x, n, top, kh)
        if i >= 0:
            _along_row(out[n, 0, i], sums, scale, bias, kw, pad_left, org_left, padded, staged)


@njit(fastmath=FASTMATH, **INNER)
def _fresh_columns(sums, x, n, top, kh):
    """sums[c] = the column sums of rows top .. top + kh - 1 inside the picture."""
    height = x.shape[2]
    sums[:] = 0
    for r in range(max(0, top), min(height, top + kh)):
        _add_row(sums, x[n, 0, r], 1)


@njit(inline="always")
def _add_row(sums, row, sign):
    for c in range(sums.shape[0]):
        sums[c] += sign * row[c]


@njit(fastmath=FASTMATH, **INNER)
def _all_finite(values):
    """Whether no value is NaN or infinite (v * 0 is 0 for finite v only), vectorised."""
    probe = values[0] * 0
    for c in range(values.shape[0]):
        probe += values[c] * 0
    return probe == 0


@njit(fastmath=FASTMATH, **INNER)
def _refresh_columns(sums, x, n, top, kh):
    """The column sums that are not finite, summed afresh from their windows."""
    height = x.shape[2]
    for c in range(sums.shape[0]):
        if not np.isfinite(sums[c]):
            total = 0.0  # (in float64, then rounded: a fixed rule, wherever the tile is)
            for r in range(max(0, top), min(height, top + kh)):
                total += x[n, 0, r, c]
            sums[c] = total


@njit(fastmath=FASTMATH, **INNER)
def _along_row(row, sums, scale, bias, kw, pad_left, org_left, padded, staged):
    """row[j] = bias + scale * (sums[j - pad_left] + ... + sums[j - pad_left + kw - 1]),
    running sums along the row restarting on the whole output's grid.

    The row's segments are independent chains, advanced side by side (one step of
    every segment, then the next step), so that no step waits for the one before.
    ``padded`` and ``staged`` are scratch rows (see :func:`_box_segment`). A row with a
    NaN or an infinity is made again by :func:`_along_careful`: where this one gives a
    finite value, that one gives the same (a non-finite sum would have stayed so).
    """
    w_out, width = row.shape[0], sums.shape[0]
    padded[:] = 0
    for c in range(width):
        padded[RESTART + pad_left + c] = sums[c]
    j_first = -(org_left % RESTART)
    n_seg = (w_out - j_first + RESTART - 1) // RESTART
    chains = np.empty(n_seg, dtype=sums.dtype)
    for g in range(n_seg):
        at = RESTART + j_first + g * RESTART
        total = padded[at]
        for b in range(1, kw):
            total += padded[at + b]
        chains[g] = total
        staged[at] = bias + scale * total
    for t in range(1, RESTART):
        for g in range(n_seg):
            at = RESTART + j_first + g * RESTART + t
            chains[g] += padded[at + kw - 1] - padded[at - 1]
            staged[at] = bias + scale * chains[g]
    for j in range(w_out):
        row[j] = staged[RESTART + j]
    if not _all_finite(row):
        _along_careful(row, padded, scale, bias, kw, j_first)


@njit(fastmath=FASTMATH, **INNER)
def _along_careful(row, padded, scale, bias, kw, j_first):
    """:func:`_along_row` one output at a time, a sum that turns NaN or infinite
    summed afresh from its window."""
    w_out = row.shape[0]
    j0 = j_first
    while j0 < w_out:
        s = _window(padded, RESTART + j0, kw)
        for j in range(j0, min(j0 + RESTART, w_out)):
            if j > j0:
                s += padded[RESTART + j + kw - 1] - padded[RESTART + j - 1]
                if not np.isfinite(s):
                    s = _window(padded, RESTART + j, kw)
            if j >= 0:
                row[j] = bias + scale * s
        j0 += RESTART


@njit(inline="always")
def _window(padded, at, kw):
    total = padded[at]
    for b in range(1, kw):
        total += padded[at + b]
    return total
