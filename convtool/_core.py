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
def _col_range(width_in, width_out, stride, offset):
    """Output columns j with 0 <= j*stride + offset < width_in, as [j0, j1)."""
    j0 = 0
    if offset < 0:
        j0 = (-offset + stride - 1) // stride
    last = width_in - 1 - offset  # j*stride <= last
    j1 = 0 if last < 0 else min(width_out, last // stride + 1)
    return j0, max(j0, j1)


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def conv2d_forward(x, w, bias, out, sh, sw, pad_top, pad_left):
    """out[n, o, i, j] = bias[o] + sum_{c,a,b} w[o, c, a, b] * x[n, c, i*sh + a - pt, j*sw + b - pl].

    Pixels outside ``x`` count as zero. The output's shape sets how far it reaches,
    so any bottom/right padding is implied by it.
    """
    n_img, c_in, height, width = x.shape
    c_out, _, kh, kw = w.shape
    h_out, w_out = out.shape[2], out.shape[3]
    for task in prange(n_img * c_out * h_out):
        n = task // (c_out * h_out)
        o = (task // h_out) % c_out
        i = task % h_out
        row = out[n, o, i]
        row[:] = bias[o]
        for a in range(kh):
            r = i * sh + a - pad_top
            if r < 0 or r >= height:
                continue
            for b in range(kw):
                offset = b - pad_left
                j0, j1 = _col_range(width, w_out, sw, offset)
                for c in range(c_in):
                    weight = w[o, c, a, b]
                    src = x[n, c, r]
                    if sw == 1:
                        for j in range(j0, j1):
                            row[j] += weight * src[j + offset]
                    else:
                        for j in range(j0, j1):
                            row[j] += weight * src[j * sw + offset]


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def conv2d_grad_weight(x, grad_out, partial, sh, sw, pad_top, pad_left):
    """Kernel gradient: the input correlated with the incoming gradient.

    partial[t, o, c, a, b] receives the sum over the t-th chunk of output rows of
    x[n, c, i*sh + a - pt, j*sw + b - pl] * grad_out[n, o, i, j]; the caller adds
    the chunks up. ``partial`` is float64 and zeroed.
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
                for b in range(kw):
                    offset = b - pad_left
                    j0, j1 = _col_range(width, w_out, sw, offset)
                    for o in range(c_out):
                        g = grad_out[n, o, i]
                        for c in range(c_in):
                            src = x[n, c, r]
                            acc = 0.0
                            for j in range(j0, j1):
                                acc += g[j] * src[j * sw + offset]
                            partial[t, o, c, a, b] += acc


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
