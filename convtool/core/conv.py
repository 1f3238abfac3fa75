"""The convolution's jitted entry points: the forward pass and the kernel gradient.

These functions assume what the public wrappers in :mod:`convtool.ops` guarantee:
C-contiguous arrays of one float dtype in torch's layout, images (N, C, H, W) and
kernels (C_out, C_in, kH, kW), and outputs allocated to the right shape.

Padding is never materialised. Each output row is built from the input rows and
columns that the kernel actually covers; the rest of the window lies in the zero
padding and is skipped. So a filter makes no padded copy and no im2col matrix,
and the innermost loops run over contiguous memory where LLVM vectorises them.

Each kernel runs, serially and without the GIL, the share ``part`` of ``parts`` of
its independent tasks (output rows, row chunks, or chunks with their own partial
sums), so no two threads ever write one cell; the engine runs the shares on its
threads (:mod:`convtool.core.tasks`).

These kernels are also what the ahead-of-time build compiles
(:mod:`convtool.core.aot`): that build runs this file, and the core files it
imports, apart from the package, so they import nothing but numpy, numba and
each other.
"""

from __future__ import annotations

import numpy as np
from numba import njit, uint64

from convtool.core.conv_lines import _chunk_rows, _copy, _gather_flat, _line, _lines_chunk
from convtool.core.conv_rows import _filter_row
from convtool.core.fastmath import ENTRY, FASTMATH, INNER, _share


@njit(fastmath=FASTMATH, **ENTRY)
def conv2d_rows(x, w, bias, out, sh, pad_top, pad_left, part, parts):
    """out[n, o, i, j] = bias[o] + sum_{c,a,b} w[o, c, a, b] * x[n, c, i*sh + a - pt, j + b - pl],
    for share ``part`` of ``parts`` of the output rows, the layout for few output channels.

    Pixels outside ``x`` count as zero. The output's shape sets how far it reaches,
    so any bottom/right padding is implied by it. Columns are taken with stride 1
    (the wrapper turns a column stride into extra input channels).

    A task is one output row, accumulated straight from the input rows with no copy
    at all, nine taps (three kernel rows) per pass, the border columns and the rows at
    the vertical padding apart (:func:`_filter_row`). The engine runs this layout for
    fewer than four output channels (a filter), :func:`conv2d_lines` for more; each is
    its own kernel so that a first call compiles only the layout it needs.
    """
    c_out = w.shape[0]
    h_out = out.shape[2]
    n_tasks = x.shape[0] * c_out * h_out
    start, stop = _share(n_tasks, part, parts)
    for task in range(start, stop):
        n = task // (c_out * h_out)
        o = (task // h_out) % c_out
        i = task % h_out
        _filter_row(out[n, o, i], x, n, o, w, bias, sh, i, pad_top, pad_left)


@njit(fastmath=FASTMATH, **ENTRY)
def conv2d_lines(x, w, bias, out, sh, pad_top, pad_left, part, parts):
    """The same sum as :func:`conv2d_rows`, laid out for four or more output channels.

    A task takes a chunk of output rows, lays out the input they see as zero-padded
    flat lines (:func:`_gather_flat`), once, and serves every output channel from
    them, four at a time, nine taps per pass over the whole chunk (:func:`_block9x4`).
    """
    n_img, c_in, _, _ = x.shape
    kh, kw = w.shape[2], w.shape[3]
    h_out, w_out = out.shape[2], out.shape[3]
    per_task = _chunk_rows(c_in, kh, w_out + kw - 1, 16, h_out, n_img)
    n_chunks = (h_out + per_task - 1) // per_task
    start, stop = _share(n_img * n_chunks, part, parts)
    for task in range(start, stop):
        n = task // n_chunks
        i0 = (task % n_chunks) * per_task
        rows = min(h_out, i0 + per_task) - i0
        _lines_chunk(out, x, w, bias, n, i0, rows, sh, pad_top, pad_left)


@njit(inline="always")
def _dots3x4(g0, g1, g2, g3, s0, s1, s2, acc):
    """Twelve dot products, four gradient rows by three shifted input rows.

    Returned summed in the arrays' own precision; the caller adds them up in
    float64 row by row.
    """
    a00 = a01 = a02 = a10 = a11 = a12 = acc
    a20 = a21 = a22 = a30 = a31 = a32 = acc
    for k in range(g0.shape[0]):
        x0, x1, x2 = s0[k], s1[k], s2[k]
        h0, h1, h2, h3 = g0[k], g1[k], g2[k], g3[k]
        a00 += h0 * x0
        a01 += h0 * x1
        a02 += h0 * x2
        a10 += h1 * x0
        a11 += h1 * x1
        a12 += h1 * x2
        a20 += h2 * x0
        a21 += h2 * x1
        a22 += h2 * x2
        a30 += h3 * x0
        a31 += h3 * x1
        a32 += h3 * x2
    return a00, a01, a02, a10, a11, a12, a20, a21, a22, a30, a31, a32


@njit(inline="always")
def _dot(g, s0, acc):
    for k in range(g.shape[0]):
        acc += g[k] * s0[k]
    return acc


@njit(fastmath=FASTMATH, **ENTRY)
def conv2d_grad_weight(x, grad_out, partial, sh, pad_top, pad_left, part, parts):
    """Kernel gradient: the input correlated with the incoming gradient.

    partial[t, o, c, a, b] receives the sum over the t-th chunk of output rows of
    x[n, c, i*sh + a - pt, j + b - pl] * grad_out[n, o, i, j]; the caller adds the
    chunks up. ``partial`` is float64 and zeroed; columns are taken with stride 1.
    The input is laid out in flat lines as the forward pass lays it out
    (:func:`_gather_flat`), the gradient rows likewise with zeros between them, so
    each tap of each channel pair is one dot product over a long line; four output
    channels by three taps share each pass. This call sums the chunks of share
    ``part`` of ``parts``.
    """
    n_chunks = partial.shape[0]
    n_rows = grad_out.shape[0] * grad_out.shape[2]
    start, stop = _share(n_chunks, part, parts)
    for t in range(start, stop):
        q0, q1 = t * n_rows // n_chunks, (t + 1) * n_rows // n_chunks
        _grad_rows(partial[t], x, grad_out, q0, q1, sh, pad_top, pad_left)


@njit(fastmath=FASTMATH, **ENTRY)
def plane_sums(x, sums, part, parts):
    """sums[n*C + c] = the sum of the plane x[n, c], in float64: the bias gradient's, one
    plane a task (numpy's float64 sum over the planes' axes ran 2.4e9 elements a second
    on one thread: 0.85 ms of the foundation layer's backward)."""
    xf = x.reshape(-1)
    size = uint64(x.shape[2] * x.shape[3])
    start, stop = _share(sums.size, part, parts)
    for p in range(start, stop):
        at = uint64(p) * size
        total = 0.0
        for k in range(size):
            total += xf[at + k]
        sums[p] = total


@njit(fastmath=FASTMATH, **INNER)
def _grad_rows(acc, x, grad_out, q, end, sh, pad_top, pad_left):
    """Output rows q .. end - 1 (counted across the pictures) into acc: one task of
    :func:`conv2d_grad_weight`, compiled on its own, once, not inlined into it."""
    n_img, c_in, _, _ = x.shape
    _, c_out, h_out, w_out = grad_out.shape
    kh, kw = acc.shape[2], acc.shape[3]
    pitch = w_out + kw - 1
    per_pass = _chunk_rows(c_in, kh, pitch, 1, h_out, n_img)
    n_lines, step = (1, pitch) if sh == 1 else (kh, 0)
    zero = np.zeros(1, dtype=x.dtype)[0]
    while q < end:
        n, i0 = q // h_out, q % h_out
        rows = min(per_pass, end - q, h_out - i0)
        q += rows
        size = rows * pitch
        span = rows + kh - 1 if sh == 1 else rows
        lines = np.zeros((c_in, n_lines, span * pitch + kw - 1), dtype=x.dtype)
        _gather_flat(lines, x, n, i0 * sh - pad_top, span, sh, pitch, pad_left)
        grads = np.zeros((c_out, size), dtype=x.dtype)
        for o in range(c_out):
            for r in range(rows):
                _copy(grads[o, r * pitch : r * pitch + w_out], grad_out[n, o, i0 + r])
        _grad_taps(acc, lines, grads, step, zero)


@njit(fastmath=FASTMATH, **INNER)
def _grad_taps(acc, lines, grads, step, zero):
    """acc[o, c, a, b] += grads[o] . (channel c's line of kernel row a, from column b).

    Every tap of every channel pair, four output channels by three taps per pass; the
    dot products start from ``zero`` (the arrays' own type).
    """
    c_in, size = lines.shape[0], grads.shape[1]
    c_out, _, kh, kw = acc.shape
    for c in range(c_in):
        for a in range(kh):
            src = _line(lines[c], a, step)
            for o in range(0, c_out - 3, 4):
                g0, g1, g2, g3 = grads[o], grads[o + 1], grads[o + 2], grads[o + 3]
                for b in range(0, kw - 2, 3):
                    sums = _dots3x4(
                        g0,
                        g1,
                        g2,
                        g3,
                        src[b : b + size],
                        src[b + 1 : b + 1 + size],
                        src[b + 2 : b + 2 + size],
                        zero,
                    )
                    for u in range(4):
                        for v in range(3):
                            acc[o + u, c, a, b + v] += sums[3 * u + v]
                for bb in range(kw - kw % 3, kw):
                    for u in range(4):
                        acc[o + u, c, a, bb] += _dot(grads[o + u], src[bb : bb + size], zero)
            for oo in range(c_out - c_out % 4, c_out):
                for b in range(kw):
                    acc[oo, c, a, b] += _dot(grads[oo], src[b : b + size], zero)
