"""The implicit-GEMM path's jitted halves: patches laid out as columns, and laid back.

The convolution of many channels is a matrix product: with the patches of a block of
output pixels as the columns of ``cols`` (one row per channel and tap, im2col), the
output block is ``W (C_out, C_in kH kW) @ cols``, which BLAS runs near the machine's
peak; the input gradient is ``W^T @ grad_out`` laid back onto the picture (col2im),
the kernel gradient ``grad_out @ cols^T``. The products are numpy's
(:mod:`convtool.core.gemm` drives them); these kernels only move pixels.

Row ``(c*kH + a)*kW + b`` of a picture's columns is tap (a, b) of channel c; column
``r*W_out + j`` is output pixel (i0 + r, j), which sees input pixel
``((i0 + r)*sh + a - pt, j*sw + b - pl)``; pixels outside the picture are zeros. Each
kernel runs the share ``part`` of ``parts`` of its tasks (:mod:`convtool.core.tasks`).
"""

from __future__ import annotations

from numba import njit

from convtool.core.fastmath import ENTRY, _share


@njit(inline="always")
def _span(width, w_out, b, sw, pad_left):
    """The output columns [lo, hi) whose input column j*sw + b - pl lies in [0, width)."""
    lo = min(w_out, max(0, -((b - pad_left) // sw)))
    hi = min(w_out, max(lo, (width - 1 - b + pad_left) // sw + 1))
    return lo, hi


@njit(**ENTRY)
def im2col(x, cols, n0, i0, kh, kw, w_out, sh, sw, pad_top, pad_left, part, parts):
    """cols[m, (c*kh + a)*kw + b, r*w_out + j] = x[n0 + m, c, (i0 + r)*sh + a - pt,
    j*sw + b - pl], zero outside x, for rows (c, a, b) of the share ``part``.

    cols is (pictures, rows of patches (at least C_in kh kw), output pixels of the
    block); rows past C_in kh kw are left alone (the caller's row of ones, for the bias).
    A task is one channel's kernel row of one picture: kw rows of cols. Plain indexed
    loops: a slice costs as much as copying a short row.
    """
    c_in, height, width = x.shape[1], x.shape[2], x.shape[3]
    n_pic = cols.shape[0]
    rows = cols.shape[2] // w_out
    start, stop = _share(n_pic * c_in * kh, part, parts)
    for task in range(start, stop):
        m = task // (c_in * kh)
        c = (task // kh) % c_in
        a = task % kh
        for b in range(kw):
            k = (c * kh + a) * kw + b
            lo, hi = _span(width, w_out, b, sw, pad_left)
            shift = b - pad_left
            for r in range(rows):
                y = (i0 + r) * sh + a - pad_top
                base = r * w_out
                if y < 0 or y >= height:
                    for j in range(w_out):
                        cols[m, k, base + j] = 0
                    continue
                for j in range(lo):
                    cols[m, k, base + j] = 0
                for j in range(lo, hi):
                    cols[m, k, base + j] = x[n0 + m, c, y, j * sw + shift]
                for j in range(hi, w_out):
                    cols[m, k, base + j] = 0


@njit(**ENTRY)
def col2im(cols, grad_x, n0, i0, kh, kw, w_out, sh, sw, pad_top, pad_left, part, parts):
    """grad_x[n0 + m, c, (i0 + r)*sh + a - pt, j*sw + b - pl] += cols[m, (c*kh + a)*kw + b,
    r*w_out + j] where that pixel lies in grad_x: :func:`im2col`'s transpose.

    A task is one channel of one picture (its plane is written by that task alone), its
    taps added in the order (a, b, r, j), the same whatever the threads.
    """
    c_in, height, width = grad_x.shape[1], grad_x.shape[2], grad_x.shape[3]
    n_pic = cols.shape[0]
    rows = cols.shape[2] // w_out
    start, stop = _share(n_pic * c_in, part, parts)
    for task in range(start, stop):
        m = task // c_in
        c = task % c_in
        for a in range(kh):
            for b in range(kw):
                k = (c * kh + a) * kw + b
                lo, hi = _span(width, w_out, b, sw, pad_left)
                shift = b - pad_left
                for r in range(rows):
                    y = (i0 + r) * sh + a - pad_top
                    if 0 <= y < height:
                        base = r * w_out
                        for j in range(lo, hi):
                            grad_x[n0 + m, c, y, j * sw + shift] += cols[m, k, base + j]
