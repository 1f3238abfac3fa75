"""The implicit-GEMM path's jitted halves: patches laid out as columns, and laid back.

The convolution of many channels is a matrix product: with the patches of a block of
output pixels as the columns of ``cols`` (one row per channel and tap, im2col), the
output block is ``W (C_out, C_in kH kW) @ cols``, which BLAS runs near the machine's
peak; the input gradient is ``W^T @ grad_out`` laid back onto the picture (col2im),
the kernel gradient ``grad_out @ cols^T``. The products are numpy's
(:mod:`convtool.core.gemm` drives them); these kernels only move pixels.

``cols[(c*kH + a)*kW + b, m, r*W_out + j]`` is tap (a, b) of channel c for output pixel
(i0 + r, j) of picture n0 + m, which sees input pixel ``((i0 + r)*sh + a - pt,
j*sw + b - pl)``; pixels outside the picture are zeros. Pictures side by side in each
row: a block of several small pictures is one product, (K, pictures x pixels). Each
kernel runs the share ``part`` of ``parts`` of its tasks (:mod:`convtool.core.tasks`).
"""

from __future__ import annotations

from numba import njit, uint64

from convtool.core.fastmath import ENTRY, _share


@njit(inline="always")
def _span(width, w_out, b, sw, pad_left):
    """The output columns [lo, hi) whose input column j*sw + b - pl lies in [0, width)."""
    lo = min(w_out, max(0, -((b - pad_left) // sw)))
    hi = min(w_out, max(lo, (width - 1 - b + pad_left) // sw + 1))
    return lo, hi


# The loops below index flat views with unsigned integers: a signed index makes numba
# test it for wrapping around (a negative index counts from the end), which kept LLVM
# from vectorising the copies (measured: 0.8 ns an element, 0.15 unsigned).


@njit(inline="always")
def _zero(dst, start, count):
    d = uint64(start)
    for j in range(uint64(count)):
        dst[d + j] = 0


@njit(inline="always")
def _take(dst, d0, src, s0, count, step):
    """dst[d0 + j] = src[s0 + j*step] for j < count."""
    d, s = uint64(d0), uint64(s0)
    if step == 1:
        for j in range(uint64(count)):
            dst[d + j] = src[s + j]
    else:
        st = uint64(step)
        for j in range(uint64(count)):
            dst[d + j] = src[s + j * st]


@njit(inline="always")
def _give(dst, d0, src, s0, count, step):
    """dst[d0 + j*step] += src[s0 + j] for j < count."""
    d, s = uint64(d0), uint64(s0)
    if step == 1:
        for j in range(uint64(count)):
            dst[d + j] += src[s + j]
    else:
        st = uint64(step)
        for j in range(uint64(count)):
            dst[d + j * st] += src[s + j]


@njit(**ENTRY)
def im2col(x, cols, n0, i0, kh, kw, w_out, sh, sw, pad_top, pad_left, part, parts):
    """cols[(c*kh + a)*kw + b, m, r*w_out + j] = x[n0 + m, c, (i0 + r)*sh + a - pt,
    j*sw + b - pl], zero outside x, for rows (c, a, b) of the share ``part``.

    cols is (rows of patches (at least C_in kh kw), pictures, output pixels of the
    block); rows past C_in kh kw are left alone (the caller's row of ones, for the bias).
    A task is one channel's kernel row of one picture: kw rows of cols.
    """
    c_in, height, width = x.shape[1], x.shape[2], x.shape[3]
    n_pic, size = cols.shape[1], cols.shape[2]
    rows = size // w_out
    xf, cf = x.reshape(-1), cols.reshape(-1)
    start, stop = _share(n_pic * c_in * kh, part, parts)
    for task in range(start, stop):
        m = task // (c_in * kh)
        c = (task // kh) % c_in
        a = task % kh
        plane = ((n0 + m) * c_in + c) * height * width
        for b in range(kw):
            lo, hi = _span(width, w_out, b, sw, pad_left)
            line = (((c * kh + a) * kw + b) * n_pic + m) * size
            for r in range(rows):
                y = (i0 + r) * sh + a - pad_top
                d = line + r * w_out
                if y < 0 or y >= height:
                    _zero(cf, d, w_out)
                    continue
                _zero(cf, d, lo)
                _take(cf, d + lo, xf, plane + y * width + lo * sw + b - pad_left, hi - lo, sw)
                _zero(cf, d + hi, w_out - hi)


@njit(**ENTRY)
def col2im(cols, grad_x, n0, i0, kh, kw, w_out, sh, sw, pad_top, pad_left, part, parts):
    """grad_x[n0 + m, c, (i0 + r)*sh + a - pt, j*sw + b - pl] += cols[(c*kh + a)*kw + b, m,
    r*w_out + j] where that pixel lies in grad_x: :func:`im2col`'s transpose.

    A task is one channel of one picture (its plane is written by that task alone), its
    taps added in the order (a, b, r, j), the same whatever the threads.
    """
    c_in, height, width = grad_x.shape[1], grad_x.shape[2], grad_x.shape[3]
    n_pic, size = cols.shape[1], cols.shape[2]
    rows = size // w_out
    gf, cf = grad_x.reshape(-1), cols.reshape(-1)
    start, stop = _share(n_pic * c_in, part, parts)
    for task in range(start, stop):
        m = task // c_in
        c = task % c_in
        plane = ((n0 + m) * c_in + c) * height * width
        for a in range(kh):
            for b in range(kw):
                lo, hi = _span(width, w_out, b, sw, pad_left)
                line = (((c * kh + a) * kw + b) * n_pic + m) * size
                for r in range(rows):
                    y = (i0 + r) * sh + a - pad_top
                    if 0 <= y < height:
                        at = plane + y * width + lo * sw + b - pad_left
                        _give(gf, at, cf, line + r * w_out + lo, hi - lo, sw)
