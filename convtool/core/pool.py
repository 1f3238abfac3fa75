"""The pooling kernels: max and average, each beside its backward.

The same assumptions as :mod:`convtool.core.conv` (contiguous (N, C, H, W) arrays
of one float dtype, outputs allocated); each call runs the share ``part`` of
``parts`` of its independent output rows or planes, so no two threads write one cell.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from convtool.core.fastmath import ENTRY, FASTMATH, _share


@njit(**ENTRY)
def max_pool2d_forward(x, out, argmax, kh, kw, sh, sw, pad_top, pad_left, part, parts):
    """Window maxima and where they are (flat index into the H*W plane).

    The first maximum in row-major window order wins; NaN counts as a maximum, as
    in torch. Padding is never chosen: every window holds an input pixel.
    """
    n_img, n_ch, height, width = x.shape
    h_out, w_out = out.shape[2], out.shape[3]
    start, stop = _share(n_img * n_ch * h_out, part, parts)
    for task in range(start, stop):
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


@njit(**ENTRY)
def max_pool2d_backward(grad_out, argmax, grad_x, part, parts):
    """Route each gradient to the position of its window's maximum (accumulating)."""
    n_img, n_ch, _, width = grad_x.shape
    h_out, w_out = grad_out.shape[2], grad_out.shape[3]
    start, stop = _share(n_img * n_ch, part, parts)
    for plane in range(start, stop):
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


@njit(fastmath=FASTMATH, **ENTRY)
def avg_pool2d_forward(
    x, out, kh, kw, sh, sw, pad_top, pad_left, pad_bottom, pad_right, part, parts
):
    """Window means, padding counted as zeros (torch's count_include_pad=True)."""
    n_img, n_ch, height, width = x.shape
    h_out, w_out = out.shape[2], out.shape[3]
    start, stop = _share(n_img * n_ch * h_out, part, parts)
    for task in range(start, stop):
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


@njit(**ENTRY)
def avg_pool2d_backward(
    grad_out, grad_x, kh, kw, sh, sw, pad_top, pad_left, pad_bottom, pad_right, part, parts
):
    """Spread each gradient evenly over its window (accumulating into grad_x)."""
    n_img, n_ch, height, width = grad_x.shape
    h_out, w_out = grad_out.shape[2], grad_out.shape[3]
    start, stop = _share(n_img * n_ch, part, parts)
    for plane in range(start, stop):
        n = plane // n_ch
        c = plane % n_ch
        for i in range(h_out):
            r0, r1, rows = _pool_window(i, sh, pad_top, kh, height, height + pad_bottom)
            for j in range(w_out):
                c0, c1, cols = _pool_window(j, sw, pad_left, kw, width, width + pad_right)
                spread = grad_out[n, c, i, j] / (rows * cols)
                for r in range(r0, r1):
                    for col in range(c0, c1):
                        grad_x[n, c, r, col] += spread
