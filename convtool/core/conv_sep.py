"""The convolution of one channel by pairs of 1-D passes: separable and low-rank kernels.

A kernel of rank r is the sum of r outer products, ``w = sum_q cols[q] rows[q]^T``
(:mod:`convtool.core.plan` finds them), so the filter is r pairs of 1-D passes:
2rk multiply-adds a pixel instead of k^2. Each output row is made in two steps, for
each q: the input rows its window covers are combined down the columns (a row
buffer as wide as the picture, zero-padded left and right), then that buffer is
correlated along the row with ``rows[q]``. Nothing is stored between rows, so the
memory used is a row, whatever the kernel.

Each output pixel adds its terms in an order fixed by its own window (the
vertical taps that lie in the picture, top to bottom; the horizontal ones left to
right), never by where the picture was cut: a tile gives the whole picture's bytes.
The helpers of :mod:`convtool.core.conv_rows` do the vectorised loops.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from convtool.core.conv_rows import _tap, _taps3
from convtool.core.fastmath import ENTRY, FASTMATH, INNER, _share

ROWS_PER_TASK = 8  # output rows per parallel task: a row buffer allocated per task


@njit(fastmath=FASTMATH, **ENTRY)
def sep_forward(x, cols, rows, bias, out, sh, sw, pad_top, pad_left, org_top, part, parts):
    """out[n, 0, i, j] = bias[0] + sum_q sum_a cols[q, a] sum_b rows[q, b] x[n, 0, r, c]

    with r = i*sh + a - pad_top and c = j*sw + b - pad_left; pixels outside ``x``
    count as zero (skipped down the columns, zeros along the rows). ``x`` and
    ``out`` have one channel; ``cols`` is (rank, kH), ``rows`` (rank, kW).
    ``org_top``: the whole output's row of out's first row. Without a row stride,
    output rows are made in pairs (an even row of the whole output and the next)
    where both windows lie in the picture: each input row is read once for both.
    Pairs and tasks sit on the whole output's grid, so a tile makes each row as the
    whole picture does.
    """
    n_img = x.shape[0]
    h_out = out.shape[2]
    per = ROWS_PER_TASK
    first = -(org_top % per)  # tasks start on the whole output's multiples of per
    n_chunks = (h_out - first + per - 1) // per
    start, stop = _share(n_img * n_chunks, part, parts)  # this call's share of the tasks
    for task in range(start, stop):
        n = task // n_chunks
        i0 = first + (task % n_chunks) * per
        i1 = min(h_out, i0 + per)
        _sep_rows(out, x, cols, rows, bias, n, max(0, i0), i1, sh, sw, pad_top, pad_left, org_top)


@njit(fastmath=FASTMATH, **INNER)
def _sep_rows(out, x, cols, rows, bias, n, i0, i1, sh, sw, pad_top, pad_left, org_top):
    """Output rows i0 .. i1 - 1 of picture n: one task of :func:`sep_forward`."""
    height, width = x.shape[2], x.shape[3]
    rank, kh = cols.shape
    kw = rows.shape[1]
    w_out = out.shape[3]
    span = (w_out - 1) * sw + kw  # the padded columns the outputs read
    used = max(0, min(width, span - pad_left))  # the picture's columns among them
    buf = np.zeros(max(span, pad_left + used), dtype=x.dtype)
    buf2 = np.zeros(max(span, pad_left + used), dtype=x.dtype)
    i = i0
    while i < i1:
        top = i * sh - pad_top
        if sh == 1 and (org_top + i) % 2 == 0 and i + 1 < i1 and top >= 0 and top + kh < height:
            out[n, 0, i, :] = bias[0]
            out[n, 0, i + 1, :] = bias[0]
            for q in range(rank):
                d0, d1 = buf[pad_left : pad_left + used], buf2[pad_left : pad_left + used]
                if _symmetric(cols[q]):
                    _down_folded2(d0, d1, x, n, cols[q], top)
                else:
                    _down2(d0, d1, x, n, cols[q], top)
                _along_any(out[n, 0, i], buf, rows[q], sw)
                _along_any(out[n, 0, i + 1], buf2, rows[q], sw)
            i += 2
            continue
        row = out[n, 0, i]
        row[:] = bias[0]
        inside = top >= 0 and top + kh <= height
        for q in range(rank):
            dst = buf[pad_left : pad_left + used]
            if inside and _symmetric(cols[q]):
                _down_folded(dst, x, n, cols[q], top, 0)
            else:
                _down(dst, x, n, cols[q], top, height, 0)
            _along_any(row, buf, rows[q], sw)
        i += 1


@njit(inline="always")
def _along_any(row, buf, taps, sw):
    if sw == 1 and _symmetric(taps):
        _along_folded(row, buf, taps)
    else:
        _along(row, buf, taps, sw)


@njit(inline="always")
def _taps3x2(d0, d1, s0, s1, s2, s3, w0, w1, w2):
    """Three taps into two consecutive output rows' sums: four rows read for six taps."""
    for k in range(d0.shape[0]):
        x1, x2 = s1[k], s2[k]
        d0[k] += w0 * s0[k] + w1 * x1 + w2 * x2
        d1[k] += w0 * x1 + w1 * x2 + w2 * s3[k]


@njit(inline="always")
def _tap2(d0, d1, s0, s1, w0):
    for k in range(d0.shape[0]):
        d0[k] += w0 * s0[k]
        d1[k] += w0 * s1[k]


@njit(fastmath=FASTMATH, **INNER)
def _down2(d0, d1, x, n, taps, top):
    """:func:`_down` for output rows with windows at top and top + 1, both wholly in the
    picture: each input row read once for the two."""
    kh, m = taps.shape[0], d0.shape[0]
    first, second, w0 = x[n, 0, top, :m], x[n, 0, top + 1, :m], taps[0]
    for k in range(m):
        d0[k] = w0 * first[k]
        d1[k] = w0 * second[k]
    a = 1
    while a + 2 < kh:
        r = top + a
        s0, s1, s2, s3 = x[n, 0, r, :m], x[n, 0, r + 1, :m], x[n, 0, r + 2, :m], x[n, 0, r + 3, :m]
        _taps3x2(d0, d1, s0, s1, s2, s3, taps[a], taps[a + 1], taps[a + 2])
        a += 3
    while a < kh:
        _tap2(d0, d1, x[n, 0, top + a, :m], x[n, 0, top + a + 1, :m], taps[a])
        a += 1


@njit(inline="always")
def _pairs3x2(d0, d1, lo0, lo1, lo2, lo3, h_1, h0, h1, h2, w0, w1, w2):
    """Three mirrored pairs into two consecutive rows' sums: the first takes rows
    (lo_j, h_j), the second (lo_j+1, h_j-1); eight rows read for twelve taps."""
    for k in range(d0.shape[0]):
        a1, a2, b0, b1 = lo1[k], lo2[k], h0[k], h1[k]
        d0[k] += w0 * (lo0[k] + b0) + w1 * (a1 + b1) + w2 * (a2 + h2[k])
        d1[k] += w0 * (a1 + h_1[k]) + w1 * (a2 + b0) + w2 * (lo3[k] + b1)


@njit(fastmath=FASTMATH, **INNER)
def _down_folded2(d0, d1, x, n, taps, top):
    """:func:`_down_folded` for the output rows with windows at top and top + 1, both
    wholly in the picture."""
    kh, m = taps.shape[0], d0.shape[0]
    half = kh // 2
    if kh % 2:
        c0, c1, wc = x[n, 0, top + half, :m], x[n, 0, top + 1 + half, :m], taps[half]
        for k in range(m):
            d0[k] = wc * c0[k]
            d1[k] = wc * c1[k]
    else:
        d0[:] = 0
        d1[:] = 0
    a = 0
    while a + 2 < half:
        lo, hi = top + a, top + kh - 1 - a
        _pairs3x2(
            d0, d1,
            x[n, 0, lo, :m], x[n, 0, lo + 1, :m], x[n, 0, lo + 2, :m], x[n, 0, lo + 3, :m],
            x[n, 0, hi + 1, :m], x[n, 0, hi, :m], x[n, 0, hi - 1, :m], x[n, 0, hi - 2, :m],
            taps[a], taps[a + 1], taps[a + 2],
        )  # fmt: skip
        a += 3
    while a < half:
        lo, hi = top + a, top + kh - 1 - a
        _pair(d0, x[n, 0, lo, :m], x[n, 0, hi, :m], taps[a])
        _pair(d1, x[n, 0, lo + 1, :m], x[n, 0, hi + 1, :m], taps[a])
        a += 1


@njit(inline="always")
def _pairs3(dst, a0, b0, a1, b1, a2, b2, w0, w1, w2):
    """Three taps of a symmetric kernel, each weighing two mirrored values."""
    for k in range(dst.shape[0]):
        dst[k] += w0 * (a0[k] + b0[k]) + w1 * (a1[k] + b1[k]) + w2 * (a2[k] + b2[k])


@njit(inline="always")
def _pairs6(dst, a0, b0, a1, b1, a2, b2, a3, b3, a4, b4, a5, b5, w):
    """Six taps of a symmetric kernel (weights w[0..5]): a load and a store of dst
    for twelve values."""
    w0, w1, w2, w3, w4, w5 = w[0], w[1], w[2], w[3], w[4], w[5]
    for k in range(dst.shape[0]):
        dst[k] += (
            w0 * (a0[k] + b0[k]) + w1 * (a1[k] + b1[k]) + w2 * (a2[k] + b2[k])
            + w3 * (a3[k] + b3[k]) + w4 * (a4[k] + b4[k]) + w5 * (a5[k] + b5[k])
        )  # fmt: skip


@njit(inline="always")
def _pair(dst, a0, b0, w0):
    for k in range(dst.shape[0]):
        dst[k] += w0 * (a0[k] + b0[k])


@njit(inline="always")
def _symmetric(taps):
    """Whether taps[a] == taps[k - 1 - a] for every a (then mirrored values are summed
    before they are weighed: half the multiplications, fewer passes)."""
    k = taps.shape[0]
    for a in range(k // 2):
        if taps[a] != taps[k - 1 - a]:
            return False
    return k > 1


@njit(fastmath=FASTMATH, **INNER)
def _down_folded(dst, x, n, taps, top, c0):
    """:func:`_down` for symmetric taps, every row inside the picture: the centre row
    (odd kH), then the mirrored pairs from the outside in, three pairs a pass."""
    kh, m = taps.shape[0], dst.shape[0]
    half = kh // 2
    if kh % 2:
        centre, wc = x[n, 0, top + half, c0 : c0 + m], taps[half]
        for k in range(m):
            dst[k] = wc * centre[k]
    else:
        dst[:] = 0
    a = 0
    while a + 5 < half:
        lo, hi = top + a, top + kh - 1 - a
        _pairs6(
            dst,
            x[n, 0, lo, c0 : c0 + m], x[n, 0, hi, c0 : c0 + m],
            x[n, 0, lo + 1, c0 : c0 + m], x[n, 0, hi - 1, c0 : c0 + m],
            x[n, 0, lo + 2, c0 : c0 + m], x[n, 0, hi - 2, c0 : c0 + m],
            x[n, 0, lo + 3, c0 : c0 + m], x[n, 0, hi - 3, c0 : c0 + m],
            x[n, 0, lo + 4, c0 : c0 + m], x[n, 0, hi - 4, c0 : c0 + m],
            x[n, 0, lo + 5, c0 : c0 + m], x[n, 0, hi - 5, c0 : c0 + m],
            taps[a : a + 6],
        )  # fmt: skip
        a += 6
    while a + 2 < half:
        lo, hi = top + a, top + kh - 1 - a
        _pairs3(
            dst,
            x[n, 0, lo, c0 : c0 + m], x[n, 0, hi, c0 : c0 + m],
            x[n, 0, lo + 1, c0 : c0 + m], x[n, 0, hi - 1, c0 : c0 + m],
            x[n, 0, lo + 2, c0 : c0 + m], x[n, 0, hi - 2, c0 : c0 + m],
            taps[a], taps[a + 1], taps[a + 2],
        )  # fmt: skip
        a += 3
    while a < half:
        _pair(dst, x[n, 0, top + a, c0 : c0 + m], x[n, 0, top + kh - 1 - a, c0 : c0 + m], taps[a])
        a += 1


@njit(fastmath=FASTMATH, **INNER)
def _along_folded(row, buf, taps):
    """:func:`_along` for symmetric taps and no column stride."""
    kw, n = taps.shape[0], row.shape[0]
    half = kw // 2
    if kw % 2:
        _tap(row, buf[half : half + n], taps[half])
    b = 0
    while b + 5 < half:
        e = kw - 1 - b
        _pairs6(
            row,
            buf[b : b + n], buf[e : e + n],
            buf[b + 1 : b + 1 + n], buf[e - 1 : e - 1 + n],
            buf[b + 2 : b + 2 + n], buf[e - 2 : e - 2 + n],
            buf[b + 3 : b + 3 + n], buf[e - 3 : e - 3 + n],
            buf[b + 4 : b + 4 + n], buf[e - 4 : e - 4 + n],
            buf[b + 5 : b + 5 + n], buf[e - 5 : e - 5 + n],
            taps[b : b + 6],
        )  # fmt: skip
        b += 6
    while b + 2 < half:
        e = kw - 1 - b
        _pairs3(
            row,
            buf[b : b + n], buf[e : e + n],
            buf[b + 1 : b + 1 + n], buf[e - 1 : e - 1 + n],
            buf[b + 2 : b + 2 + n], buf[e - 2 : e - 2 + n],
            taps[b], taps[b + 1], taps[b + 2],
        )  # fmt: skip
        b += 3
    while b < half:
        e = kw - 1 - b
        _pair(row, buf[b : b + n], buf[e : e + n], taps[b])
        b += 1


@njit(fastmath=FASTMATH, **INNER)
def _down(dst, x, n, taps, top, height, c0):
    """dst[c] = sum_a taps[a] * x[n, 0, top + a, c0 + c] over the rows inside the picture,
    three rows a pass; zero if none is."""
    kh = taps.shape[0]
    a0, a1 = max(0, -top), min(kh, height - top)
    m = dst.shape[0]
    if a0 >= a1:
        dst[:] = 0
        return
    first = x[n, 0, top + a0, c0 : c0 + m]
    w0 = taps[a0]
    for k in range(m):
        dst[k] = w0 * first[k]
    a = a0 + 1
    while a + 2 < a1:
        r = top + a
        _taps3(
            dst,
            x[n, 0, r, c0 : c0 + m],
            x[n, 0, r + 1, c0 : c0 + m],
            x[n, 0, r + 2, c0 : c0 + m],
            taps[a],
            taps[a + 1],
            taps[a + 2],
        )
        a += 3
    while a < a1:
        _tap(dst, x[n, 0, top + a, c0 : c0 + m], taps[a])
        a += 1


@njit(fastmath=FASTMATH, **INNER)
def _along(row, buf, taps, sw):
    """row[j] += sum_b taps[b] * buf[j*sw + b], three taps a pass (a column stride reads
    every sw-th value; without one the slices stay contiguous, for the vector loops)."""
    kw, w_out = taps.shape[0], row.shape[0]
    if sw == 1:
        for b in range(0, kw - 2, 3):
            s0, s1, s2 = buf[b : b + w_out], buf[b + 1 : b + 1 + w_out], buf[b + 2 : b + 2 + w_out]
            _taps3(row, s0, s1, s2, taps[b], taps[b + 1], taps[b + 2])
        for bb in range(kw - kw % 3, kw):
            _tap(row, buf[bb : bb + w_out], taps[bb])
        return
    reach = (w_out - 1) * sw + 1
    for b in range(0, kw - 2, 3):
        s0, s1, s2 = (
            buf[b : b + reach : sw],
            buf[b + 1 : b + 1 + reach : sw],
            buf[b + 2 : b + 2 + reach : sw],
        )
        _taps3(row, s0, s1, s2, taps[b], taps[b + 1], taps[b + 2])
    for bb in range(kw - kw % 3, kw):
        _tap(row, buf[bb : bb + reach : sw], taps[bb])
