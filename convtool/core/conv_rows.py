"""The filter path of the convolution: one output row at a time, for fewer than four maps.

A filter (one or a few output maps) makes no copy of its input: each output row is
accumulated straight from the input rows the kernel covers, nine taps (three
kernel rows) per pass in the interior, the border columns and the rows at the
vertical zero padding apart. Padding is never materialised: the part of a window
in the zero padding is skipped.

The one-tap and three-tap loops here (:func:`_tap`, :func:`_taps3`) also serve the
flat-lines path of :mod:`convtool.core.conv_lines`. Underscored names are the
core's internals, shared between its files and used nowhere else.
"""

from __future__ import annotations

from numba import njit

from convtool.core.fastmath import FASTMATH, INNER


@njit(**INNER)
def _col_range(width_in, width_out, offset):
    """Output columns j with 0 <= j + offset < width_in, as [j0, j1)."""
    j0 = max(0, -offset)
    j1 = min(width_out, width_in - offset)
    return j0, max(j0, j1)


@njit(**INNER)
def _src(src, j0, j1, offset):
    """The input pixels that output columns j0..j1-1 see through a tap at ``offset``.

    A slice, so the loops below index it from 0 upwards: numba then needs no
    negative-index wraparound check and LLVM vectorises them.
    """
    return src[j0 + offset : j1 + offset]


@njit(inline="always")
def _tap(dst, s0, w0):
    for k in range(dst.shape[0]):
        dst[k] += w0 * s0[k]


@njit(inline="always")
def _taps3(dst, s0, s1, s2, w0, w1, w2):
    for k in range(dst.shape[0]):
        dst[k] += w0 * s0[k] + w1 * s1[k] + w2 * s2[k]


@njit(**INNER)
def _interior(width, w_out, kw, pad_left):
    """Output columns [lo, hi) whose whole kernel row lies inside the picture."""
    lo, _ = _col_range(width, w_out, -pad_left)
    _, hi = _col_range(width, w_out, kw - 1 - pad_left)
    return (lo, hi) if lo < hi else (0, 0)


@njit(inline="always")
def _correlate_border(row, src, wrow, pad_left, lo, hi):
    """The columns outside [lo, hi), one tap at a time, skipping the zero padding."""
    width, w_out = src.shape[0], row.shape[0]
    for b in range(wrow.shape[0]):
        j0, j1 = _col_range(width, w_out, b - pad_left)
        for a0, a1 in ((j0, min(j1, lo)), (max(j0, hi), j1)):
            if a0 < a1:
                _tap(row[a0:a1], _src(src, a0, a1, b - pad_left), wrow[b])


@njit(inline="always")
def _filter_border(row, x, n, wo, top, pad_left, lo, hi):
    """Every input row's taps into the output row's columns outside [lo, hi).

    Channel by channel, kernel row by kernel row, as the interior takes them (so each
    column adds its taps in the same order); once per output row, apart from the
    interior's passes, so that its loops are compiled once, not in every pass.
    """
    c_in, height, kh = x.shape[1], x.shape[2], wo.shape[1]
    for c in range(c_in):
        for a in range(kh):
            if 0 <= top + a < height:
                _correlate_border(row, x[n, c, top + a], wo[c, a], pad_left, lo, hi)


@njit(fastmath=FASTMATH, **INNER)
def _correlate_row(row, src, wrow, pad_left, lo, hi):
    """row[j] += sum_b wrow[b] * src[j + b - pad_left] over the interior [lo, hi).

    Three taps are fused into one pass over the row.
    """
    kw = wrow.shape[0]
    dst = row[lo:hi]
    for b in range(0, kw - 2, 3):
        off = b - pad_left
        s0, s1, s2 = _src(src, lo, hi, off), _src(src, lo, hi, off + 1), _src(src, lo, hi, off + 2)
        _taps3(dst, s0, s1, s2, wrow[b], wrow[b + 1], wrow[b + 2])
    for bb in range(kw - kw % 3, kw):
        _tap(dst, _src(src, lo, hi, bb - pad_left), wrow[bb])


@njit(inline="always")
def _taps9(dst, u, v, z, wk, a, b, fresh, b0):
    """Nine taps (kernel rows a..a+2, columns b..b+2) into one output row.

    u, v, z: the three input rows, already shifted so that dst[k] sees u[k + b'] for
    kernel column b + b'. ``fresh``: dst holds nothing yet and gets b0 plus the taps,
    a store without a load. Weights go to locals first (as in :func:`_block9x4`).
    """
    n = dst.shape[0]
    u0, u1, u2 = u[0:n], u[1 : 1 + n], u[2 : 2 + n]
    v0, v1, v2 = v[0:n], v[1 : 1 + n], v[2 : 2 + n]
    z0, z1, z2 = z[0:n], z[1 : 1 + n], z[2 : 2 + n]
    k00, k01, k02 = wk[a, b], wk[a, b + 1], wk[a, b + 2]
    k10, k11, k12 = wk[a + 1, b], wk[a + 1, b + 1], wk[a + 1, b + 2]
    k20, k21, k22 = wk[a + 2, b], wk[a + 2, b + 1], wk[a + 2, b + 2]
    if fresh:
        for k in range(n):
            dst[k] = (
                b0
                + k00 * u0[k]
                + k01 * u1[k]
                + k02 * u2[k]
                + k10 * v0[k]
                + k11 * v1[k]
                + k12 * v2[k]
                + k20 * z0[k]
                + k21 * z1[k]
                + k22 * z2[k]
            )
    else:
        for k in range(n):
            dst[k] += (
                k00 * u0[k]
                + k01 * u1[k]
                + k02 * u2[k]
                + k10 * v0[k]
                + k11 * v1[k]
                + k12 * v2[k]
                + k20 * z0[k]
                + k21 * z1[k]
                + k22 * z2[k]
            )


@njit(fastmath=FASTMATH, **INNER)
def _correlate_rows3(row, u, v, z, wk, a, pad_left, lo, hi, fresh, b0):
    """:func:`_correlate_row` for three consecutive kernel rows a..a+2 at once.

    The interior [lo, hi) takes nine taps per pass, so the output row is loaded and
    stored once per nine multiply-adds instead of once per three; ``fresh``: the
    interior holds nothing yet (its first pass stores b0 plus the taps; the kernel
    then has three columns or more).
    """
    kw = wk.shape[1]
    if lo >= hi:
        return
    dst = row[lo:hi]
    n = hi - lo
    for b in range(0, kw - 2, 3):
        s = lo + b - pad_left
        _taps9(dst, u[s : s + n + 2], v[s : s + n + 2], z[s : s + n + 2], wk, a, b, fresh, b0)
        fresh = False
    for bb in range(kw - kw % 3, kw):
        off = bb - pad_left
        _taps3(
            dst,
            _src(u, lo, hi, off),
            _src(v, lo, hi, off),
            _src(z, lo, hi, off),
            wk[a, bb],
            wk[a + 1, bb],
            wk[a + 2, bb],
        )


@njit(fastmath=FASTMATH, **INNER)
def _filter_row(row, x, n, o, w, bias, sh, i, pad_top, pad_left):
    """Output row i of map o for fewer than four maps: see :func:`conv2d_rows`.

    A separate function, not inlined: compiled on its own, it keeps numba's compile
    time of :func:`conv2d_rows` in check at no measurable cost.
    """
    c_in, height, width = x.shape[1], x.shape[2], x.shape[3]
    kh, kw = w.shape[2], w.shape[3]
    w_out = row.shape[0]
    top = i * sh - pad_top
    lo, hi = _interior(width, w_out, kw, pad_left)
    # the interior is written by the first nine-tap pass when one comes first (a
    # store without a load); otherwise it starts at the bias, as the border columns do
    fresh = c_in > 0 and kh >= 3 and kw >= 3 and top >= 0 and top + 2 < height
    row[:lo] = bias[o]
    row[hi:] = bias[o]
    if not fresh:
        row[lo:hi] = bias[o]
    _filter_border(row, x, n, w[o], top, pad_left, lo, hi)
    for c in range(c_in):
        for a in range(0, kh - 2, 3):
            if top + a >= 0 and top + a + 2 < height:
                r = top + a
                u, v, z = x[n, c, r], x[n, c, r + 1], x[n, c, r + 2]
                _correlate_rows3(row, u, v, z, w[o, c], a, pad_left, lo, hi, fresh, bias[o])
                fresh = False
            else:  # the window reaches into the vertical zero padding
                for aa in range(a, a + 3):
                    if 0 <= top + aa < height:
                        _correlate_row(row, x[n, c, top + aa], w[o, c, aa], pad_left, lo, hi)
        for aa in range(kh - kh % 3, kh):
            if 0 <= top + aa < height:
                _correlate_row(row, x[n, c, top + aa], w[o, c, aa], pad_left, lo, hi)
