"""Every jitted kernel of convtool, and nothing else.

These functions assume what the public wrappers in :mod:`convtool.ops` guarantee:
C-contiguous arrays of one float dtype in torch's layout, images (N, C, H, W) and
kernels (C_out, C_in, kH, kW), and outputs allocated to the right shape.

Padding is never materialised. Each output row is built from the input rows and
columns that the kernel actually covers; the rest of the window lies in the zero
padding and is skipped. So a filter makes no padded copy and no im2col matrix,
and the innermost loops run over contiguous memory where LLVM vectorises them.

``prange`` runs only over independent output rows (or row chunks with their own
partial sums), so no two threads ever write one cell.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# reassociation lets LLVM vectorise the dot products; NaN and inf keep their meaning
_FASTMATH = {"reassoc", "contract"}


@njit(inline="always")
def _col_range(width_in, width_out, offset):
    """Output columns j with 0 <= j + offset < width_in, as [j0, j1)."""
    j0 = max(0, -offset)
    j1 = min(width_out, width_in - offset)
    return j0, max(j0, j1)


@njit(inline="always")
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


@njit(inline="always")
def _taps3x4(d0, d1, d2, d3, s0, s1, s2, w, b):
    """Three taps into four output channels: each source load feeds four FMAs."""
    a0, a1, a2 = w[0, b], w[0, b + 1], w[0, b + 2]
    b0, b1, b2 = w[1, b], w[1, b + 1], w[1, b + 2]
    c0, c1, c2 = w[2, b], w[2, b + 1], w[2, b + 2]
    e0, e1, e2 = w[3, b], w[3, b + 1], w[3, b + 2]
    for k in range(d0.shape[0]):
        x0, x1, x2 = s0[k], s1[k], s2[k]
        d0[k] += a0 * x0 + a1 * x1 + a2 * x2
        d1[k] += b0 * x0 + b1 * x1 + b2 * x2
        d2[k] += c0 * x0 + c1 * x1 + c2 * x2
        d3[k] += e0 * x0 + e1 * x1 + e2 * x2


@njit(inline="always")
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
def _correlate_row(row, src, wrow, pad_left):
    """row[j] += sum_b wrow[b] * src[j + b - pad_left], pixels outside src being zero.

    In the interior three taps are fused into one pass over the row.
    """
    kw = wrow.shape[0]
    lo, hi = _interior(src.shape[0], row.shape[0], kw, pad_left)
    _correlate_border(row, src, wrow, pad_left, lo, hi)
    dst = row[lo:hi]
    b = 0
    while b + 2 < kw:
        off = b - pad_left
        s0, s1, s2 = _src(src, lo, hi, off), _src(src, lo, hi, off + 1), _src(src, lo, hi, off + 2)
        _taps3(dst, s0, s1, s2, wrow[b], wrow[b + 1], wrow[b + 2])
        b += 3
    for b in range(b, kw):
        _tap(dst, _src(src, lo, hi, b - pad_left), wrow[b])


@njit(inline="always")
def _correlate_row4(r0, r1, r2, r3, src, wblock, pad_left):
    """:func:`_correlate_row` for four output rows at once (wblock: 4 x kW).

    The rows come as four contiguous 1-D arrays: a strided 2-D view would hide
    the unit stride from LLVM and stop it vectorising.
    """
    kw = wblock.shape[1]
    lo, hi = _interior(src.shape[0], r0.shape[0], kw, pad_left)
    _correlate_border(r0, src, wblock[0], pad_left, lo, hi)
    _correlate_border(r1, src, wblock[1], pad_left, lo, hi)
    _correlate_border(r2, src, wblock[2], pad_left, lo, hi)
    _correlate_border(r3, src, wblock[3], pad_left, lo, hi)
    d0, d1, d2, d3 = r0[lo:hi], r1[lo:hi], r2[lo:hi], r3[lo:hi]
    b = 0
    while b + 2 < kw:
        off = b - pad_left
        s0, s1, s2 = _src(src, lo, hi, off), _src(src, lo, hi, off + 1), _src(src, lo, hi, off + 2)
        _taps3x4(d0, d1, d2, d3, s0, s1, s2, wblock, b)
        b += 3
    for b in range(b, kw):
        s0 = _src(src, lo, hi, b - pad_left)
        _tap(d0, s0, wblock[0, b])
        _tap(d1, s0, wblock[1, b])
        _tap(d2, s0, wblock[2, b])
        _tap(d3, s0, wblock[3, b])


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def conv2d_forward(x, w, bias, out, sh, pad_top, pad_left):
    """out[n, o, i, j] = bias[o] + sum_{c,a,b} w[o, c, a, b] * x[n, c, i*sh + a - pt, j + b - pl].

    Pixels outside ``x`` count as zero. The output's shape sets how far it reaches,
    so any bottom/right padding is implied by it. Columns are taken with stride 1
    (the wrapper turns a column stride into extra input channels). Output channels
    go in blocks of four, so that every input row loaded serves four of them.
    """
    n_img, c_in, height, _ = x.shape
    c_out, _, kh, _ = w.shape
    h_out = out.shape[2]
    n_blocks = (c_out + 3) // 4
    for task in prange(n_img * n_blocks * h_out):
        n = task // (n_blocks * h_out)
        o0 = 4 * ((task // h_out) % n_blocks)
        o1 = min(o0 + 4, c_out)
        i = task % h_out
        for o in range(o0, o1):
            out[n, o, i, :] = bias[o]
        for c in range(c_in):
            for a in range(kh):
                r = i * sh + a - pad_top
                if r < 0 or r >= height:
                    continue
                src = x[n, c, r]
                if o1 - o0 == 4:
                    r0, r1, r2, r3 = out[n, o0, i], out[n, o0 + 1, i], out[n, o0 + 2, i], out[n, o0 + 3, i]
                    _correlate_row4(r0, r1, r2, r3, src, w[o0:o1, c, a], pad_left)
                else:
                    for o in range(o0, o1):
                        _correlate_row(out[n, o, i], src, w[o, c, a], pad_left)


@njit(inline="always")
def _dot(g, s0):
    acc = 0.0
    for k in range(g.shape[0]):
        acc += g[k] * s0[k]
    return acc


@njit(inline="always")
def _dots3(g, s0, s1, s2):
    """Three dot products sharing one operand: each load of g feeds three FMAs."""
    a0 = a1 = a2 = 0.0
    for k in range(g.shape[0]):
        gk = g[k]
        a0 += gk * s0[k]
        a1 += gk * s1[k]
        a2 += gk * s2[k]
    return a0, a1, a2


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def conv2d_grad_weight(x, grad_out, partial, sh, pad_top, pad_left):
    """Kernel gradient: the input correlated with the incoming gradient.

    partial[t, o, c, a, b] receives the sum over the t-th chunk of output rows of
    x[n, c, i*sh + a - pt, j + b - pl] * grad_out[n, o, i, j]; the caller adds the
    chunks up. ``partial`` is float64 and zeroed; columns are taken with stride 1.
    """
    n_img, c_in, height, width = x.shape
    _, c_out, h_out, w_out = grad_out.shape
    n_chunks, _, _, kh, kw = partial.shape
    n_rows = n_img * h_out
    for t in prange(n_chunks):
        for q in range(t * n_rows // n_chunks, (t + 1) * n_rows // n_chunks):
            n = q // h_out
            i = q % h_out
            for a in range(kh):
                r = i * sh + a - pad_top
                if r < 0 or r >= height:
                    continue
                lo, hi = _interior(width, w_out, kw, pad_left)
                for c in range(c_in):
                    src = x[n, c, r]
                    for o in range(c_out):
                        g = grad_out[n, o, i]
                        acc = partial[t, o, c, a]
                        # border columns one tap at a time, the interior three at once
                        for b in range(kw):
                            j0, j1 = _col_range(width, w_out, b - pad_left)
                            for a0, a1 in ((j0, min(j1, lo)), (max(j0, hi), j1)):
                                if a0 < a1:
                                    acc[b] += _dot(g[a0:a1], _src(src, a0, a1, b - pad_left))
                        gi = g[lo:hi]
                        b = 0
                        while b + 2 < kw:
                            off = b - pad_left
                            s0, s1 = _src(src, lo, hi, off), _src(src, lo, hi, off + 1)
                            d0, d1, d2 = _dots3(gi, s0, s1, _src(src, lo, hi, off + 2))
                            acc[b] += d0
                            acc[b + 1] += d1
                            acc[b + 2] += d2
                            b += 3
                        for b in range(b, kw):
                            acc[b] += _dot(gi, _src(src, lo, hi, b - pad_left))


@njit(parallel=True, cache=True)
def max_pool2d_forward(x, out, argmax, kh, kw, sh, sw, pad_top, pad_left):
    """Window maxima and where they are (flat index into the H*W plane).

    The first maximum in row-major window order wins; NaN counts as a maximum, as
    in torch. Padding is never chosen: every window holds an input pixel.
    """
    n_img, n_ch, height, width = x.shape
    h_out, w_out = out.shape[2], out.shape[3]
    for task in prange(n_img * n_ch * h_out):
        n = task // (n_ch * h_out)
        c = (task // h_out) % n_ch
        i = task % h_out
        r0 = max(i * sh - pad_top, 0)
        r1 = min(i * sh - pad_top + kh, height)
        for j in range(w_out):
            c0 = max(j * sw - pad_left, 0)
            c1 = min(j * sw - pad_left + kw, width)
            best = -np.inf
            where = r0 * width + c0
            for r in range(r0, r1):
                for col in range(c0, c1):
                    v = x[n, c, r, col]
                    if v > best or (np.isnan(v) and not np.isnan(best)):
                        best = v
                        where = r * width + col
            out[n, c, i, j] = best
            argmax[n, c, i, j] = where


@njit(parallel=True, cache=True)
def max_pool2d_backward(grad_out, argmax, grad_x):
    """Route each gradient to the position of its window's maximum (accumulating)."""
    n_img, n_ch, height, width = grad_x.shape
    h_out, w_out = grad_out.shape[2], grad_out.shape[3]
    for plane in prange(n_img * n_ch):
        n = plane // n_ch
        c = plane % n_ch
        for i in range(h_out):
            for j in range(w_out):
                k = argmax[n, c, i, j]
                grad_x[n, c, k // width, k % width] += grad_out[n, c, i, j]


@njit(inline="always")
def _pool_window(i, stride, pad_before, k, size, padded_end):
    """Clipped window [start, end) and its divisor length, as torch counts them."""
    start = i * stride - pad_before
    end = min(start + k, padded_end)
    length = end - start
    return max(start, 0), min(end, size), length


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def avg_pool2d_forward(x, out, kh, kw, sh, sw, pad_top, pad_left, pad_bottom, pad_right):
    """Window means, padding counted as zeros (torch's count_include_pad=True)."""
    n_img, n_ch, height, width = x.shape
    h_out, w_out = out.shape[2], out.shape[3]
    for task in prange(n_img * n_ch * h_out):
        n = task // (n_ch * h_out)
        c = (task // h_out) % n_ch
        i = task % h_out
        r0, r1, rows = _pool_window(i, sh, pad_top, kh, height, height + pad_bottom)
        for j in range(w_out):
            c0, c1, cols = _pool_window(j, sw, pad_left, kw, width, width + pad_right)
            acc = 0.0
            for r in range(r0, r1):
                for col in range(c0, c1):
                    acc += x[n, c, r, col]
            out[n, c, i, j] = acc / (rows * cols)


@njit(parallel=True, cache=True)
def avg_pool2d_backward(grad_out, grad_x, kh, kw, sh, sw, pad_top, pad_left, pad_bottom, pad_right):
    """Spread each gradient evenly over its window (accumulating into grad_x)."""
    n_img, n_ch, height, width = grad_x.shape
    h_out, w_out = grad_out.shape[2], grad_out.shape[3]
    for plane in prange(n_img * n_ch):
        n = plane // n_ch
        c = plane % n_ch
        for i in range(h_out):
            r0, r1, rows = _pool_window(i, sh, pad_top, kh, height, height + pad_bottom)
            for j in range(w_out):
                c0, c1, cols = _pool_window(j, sw, pad_left, kw, width, width + pad_right)
                share = grad_out[n, c, i, j] / (rows * cols)
                for r in range(r0, r1):
                    for col in range(c0, c1):
                        grad_x[n, c, r, col] += share
