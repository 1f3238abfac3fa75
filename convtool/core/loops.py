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


@njit(fastmath=_FASTMATH)
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
    for bb in range(b, kw):
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


@njit(fastmath=_FASTMATH)
def _correlate_rows3(row, u, v, z, wk, a, pad_left, lo, hi, fresh, b0):
    """:func:`_correlate_row` for three consecutive kernel rows a..a+2 at once.

    The interior [lo, hi) takes nine taps per pass, so the output row is loaded and
    stored once per nine multiply-adds instead of once per three; ``fresh``: the
    interior holds nothing yet (its first pass stores b0 plus the taps).
    """
    kw = wk.shape[1]
    _correlate_border(row, u, wk[a], pad_left, lo, hi)
    _correlate_border(row, v, wk[a + 1], pad_left, lo, hi)
    _correlate_border(row, z, wk[a + 2], pad_left, lo, hi)
    if lo >= hi:
        return
    dst = row[lo:hi]
    n = hi - lo
    if fresh and kw < 3:
        dst[:] = b0
        fresh = False
    b = 0
    while b + 2 < kw:
        s = lo + b - pad_left
        _taps9(dst, u[s : s + n + 2], v[s : s + n + 2], z[s : s + n + 2], wk, a, b, fresh, b0)
        fresh = False
        b += 3
    for bb in range(b, kw):
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


@njit(inline="always")
def _tap4(d0, d1, d2, d3, s0, wcol):
    """One tap into four output rows (wcol: the four weights)."""
    w0, w1, w2, w3 = wcol[0], wcol[1], wcol[2], wcol[3]
    for k in range(d0.shape[0]):
        x0 = s0[k]
        d0[k] += w0 * x0
        d1[k] += w1 * x0
        d2[k] += w2 * x0
        d3[k] += w3 * x0


@njit(inline="always")
def _block9x4(d0, d1, d2, d3, r0, r1, r2, wb, a, b):
    """A 3x3 block of taps (kernel rows a..a+2, columns b..b+2) into four output rows.

    Each loaded pixel feeds four FMAs and each output is loaded and stored once
    per nine taps. The 36 weights are read into locals first: inside the loop
    LLVM could not prove the stores leave them unchanged, and would not vectorise.
    """
    n = d0.shape[0]
    p0, p1, p2 = r0[b : b + n], r0[b + 1 : b + 1 + n], r0[b + 2 : b + 2 + n]
    q0, q1, q2 = r1[b : b + n], r1[b + 1 : b + 1 + n], r1[b + 2 : b + 2 + n]
    s0, s1, s2 = r2[b : b + n], r2[b + 1 : b + 1 + n], r2[b + 2 : b + 2 + n]
    w000 = wb[0, a + 0, b + 0]
    w001 = wb[0, a + 0, b + 1]
    w002 = wb[0, a + 0, b + 2]
    w010 = wb[0, a + 1, b + 0]
    w011 = wb[0, a + 1, b + 1]
    w012 = wb[0, a + 1, b + 2]
    w020 = wb[0, a + 2, b + 0]
    w021 = wb[0, a + 2, b + 1]
    w022 = wb[0, a + 2, b + 2]
    w100 = wb[1, a + 0, b + 0]
    w101 = wb[1, a + 0, b + 1]
    w102 = wb[1, a + 0, b + 2]
    w110 = wb[1, a + 1, b + 0]
    w111 = wb[1, a + 1, b + 1]
    w112 = wb[1, a + 1, b + 2]
    w120 = wb[1, a + 2, b + 0]
    w121 = wb[1, a + 2, b + 1]
    w122 = wb[1, a + 2, b + 2]
    w200 = wb[2, a + 0, b + 0]
    w201 = wb[2, a + 0, b + 1]
    w202 = wb[2, a + 0, b + 2]
    w210 = wb[2, a + 1, b + 0]
    w211 = wb[2, a + 1, b + 1]
    w212 = wb[2, a + 1, b + 2]
    w220 = wb[2, a + 2, b + 0]
    w221 = wb[2, a + 2, b + 1]
    w222 = wb[2, a + 2, b + 2]
    w300 = wb[3, a + 0, b + 0]
    w301 = wb[3, a + 0, b + 1]
    w302 = wb[3, a + 0, b + 2]
    w310 = wb[3, a + 1, b + 0]
    w311 = wb[3, a + 1, b + 1]
    w312 = wb[3, a + 1, b + 2]
    w320 = wb[3, a + 2, b + 0]
    w321 = wb[3, a + 2, b + 1]
    w322 = wb[3, a + 2, b + 2]
    for k in range(n):
        x00, x01, x02 = p0[k], p1[k], p2[k]
        x10, x11, x12 = q0[k], q1[k], q2[k]
        x20, x21, x22 = s0[k], s1[k], s2[k]
        d0[k] += (
            w000 * x00
            + w001 * x01
            + w002 * x02
            + w010 * x10
            + w011 * x11
            + w012 * x12
            + w020 * x20
            + w021 * x21
            + w022 * x22
        )
        d1[k] += (
            w100 * x00
            + w101 * x01
            + w102 * x02
            + w110 * x10
            + w111 * x11
            + w112 * x12
            + w120 * x20
            + w121 * x21
            + w122 * x22
        )
        d2[k] += (
            w200 * x00
            + w201 * x01
            + w202 * x02
            + w210 * x10
            + w211 * x11
            + w212 * x12
            + w220 * x20
            + w221 * x21
            + w222 * x22
        )
        d3[k] += (
            w300 * x00
            + w301 * x01
            + w302 * x02
            + w310 * x10
            + w311 * x11
            + w312 * x12
            + w320 * x20
            + w321 * x21
            + w322 * x22
        )


@njit(inline="always")
def _line(lines, a, step):
    """Kernel row a's input line: its own (step 0), or the single line a rows on.

    No branch: (a if step == 0 else 0, a * step) as arithmetic keeps the loops that
    use it vectorised.
    """
    return lines[a * (step == 0), a * step :]


@njit(inline="always")
def _window4(d0, d1, d2, d3, lines, step, wb):
    """Add one input channel's window to four output lines.

    lines, step: the channel's input lines as :func:`_gather_flat` lays them out
    (kernel row a reads ``_line(lines, a, step)``); wb: the four output channels'
    kernels for this input channel (4 x kH x kW).
    """
    n, kh, kw = d0.shape[0], wb.shape[1], wb.shape[2]
    a = 0
    while a + 2 < kh:
        b = 0
        while b + 2 < kw:
            r0, r1, r2 = _line(lines, a, step), _line(lines, a + 1, step), _line(lines, a + 2, step)
            _block9x4(d0, d1, d2, d3, r0, r1, r2, wb, a, b)
            b += 3
        for bb in range(b, kw):
            for r in range(a, a + 3):
                _tap4(d0, d1, d2, d3, _line(lines, r, step)[bb : bb + n], wb[:, r, bb])
        a += 3
    for aa in range(a, kh):
        row = _line(lines, aa, step)
        b = 0
        while b + 2 < kw:
            _taps3x4(
                d0,
                d1,
                d2,
                d3,
                row[b : b + n],
                row[b + 1 : b + 1 + n],
                row[b + 2 : b + 2 + n],
                wb[:, aa],
                b,
            )
            b += 3
        for bb in range(b, kw):
            _tap4(d0, d1, d2, d3, row[bb : bb + n], wb[:, aa, bb])


@njit(inline="always")
def _window1(d0, lines, step, wk):
    """:func:`_window4` for a single output line (wk: kH x kW)."""
    n, kh, kw = d0.shape[0], wk.shape[0], wk.shape[1]
    for a in range(kh):
        row = _line(lines, a, step)
        b = 0
        while b + 2 < kw:
            _taps3(
                d0,
                row[b : b + n],
                row[b + 1 : b + 1 + n],
                row[b + 2 : b + 2 + n],
                wk[a, b],
                wk[a, b + 1],
                wk[a, b + 2],
            )
            b += 3
        for bb in range(b, kw):
            _tap(d0, row[bb : bb + n], wk[a, bb])


@njit(inline="always")
def _gather_flat(lines, x, n, top, span, sh, pitch, pad_left):
    """Lay out the input a chunk of output rows sees as flat, zero-padded lines.

    Output row r of the chunk, column j, reads kernel tap (a, b) at
    ``_line(lines[c], a, step)[r * pitch + j + b]``, so the whole chunk is one pass
    over a long line; the kW - 1 columns between rows give outputs nobody keeps.
    For row stride 1 (one line per channel, step = pitch) the line holds ``span``
    input rows top, top + 1, ... at r * pitch; for a larger stride each kernel row
    a has its own line (step 0) holding rows top + r * sh + a, r < span. Column q
    of a row holds input column q - pad_left; the rest, and rows outside the
    picture, stay zero.
    """
    c_in, n_lines, _ = lines.shape
    height, width = x.shape[2], x.shape[3]
    q0 = max(0, pad_left)
    x0 = max(0, -pad_left)
    m = min(width - x0, pitch - q0)
    if m <= 0:
        return
    for c in range(c_in):
        for a in range(n_lines):
            line = lines[c, a]
            for r in range(span):
                src = top + r * sh + a
                if 0 <= src < height:
                    line[r * pitch + q0 : r * pitch + q0 + m] = x[n, c, src, x0 : x0 + m]


@njit(inline="always")
def _chunk_rows(c_in, kh, pitch, tasks_wanted, h_out, n_img):
    """Output rows per task for the multi-channel layout.

    Long lines amortise each pass's set-up (weights to registers, alias checks);
    the buffer stays near 256 KB (L2) and there are enough tasks for every thread.
    """
    per_task = max(1, min(2048, 65536 // (c_in * kh)) // pitch)
    spread = max(1, (n_img * h_out + tasks_wanted - 1) // tasks_wanted)
    return max(1, min(per_task, spread, h_out))


@njit(fastmath=_FASTMATH)
def _filter_row(row, x, n, o, w, bias, sh, i, pad_top, pad_left):
    """Output row i of map o for fewer than four maps: see :func:`conv2d_forward`.

    A separate function, not inlined: compiled on its own, it keeps numba's compile
    time of :func:`conv2d_forward` in check at no measurable cost.
    """
    c_in, height, width = x.shape[1], x.shape[2], x.shape[3]
    kh, kw = w.shape[2], w.shape[3]
    w_out = row.shape[0]
    top = i * sh - pad_top
    lo, hi = _interior(width, w_out, kw, pad_left)
    # the border columns start at the bias; the interior is written by its
    # first nine-tap pass (or set here when no such pass comes first)
    row[:lo] = bias[o]
    row[hi:] = bias[o]
    fresh = True
    for c in range(c_in):
        a = 0
        while a + 2 < kh:
            if top + a >= 0 and top + a + 2 < height:
                r = top + a
                u, v, z = x[n, c, r], x[n, c, r + 1], x[n, c, r + 2]
                _correlate_rows3(row, u, v, z, w[o, c], a, pad_left, lo, hi, fresh, bias[o])
                fresh = False
            else:  # the window reaches into the vertical zero padding
                if fresh:
                    row[lo:hi] = bias[o]
                    fresh = False
                for aa in range(a, a + 3):
                    if 0 <= top + aa < height:
                        _correlate_row(row, x[n, c, top + aa], w[o, c, aa], pad_left)
            a += 3
        if fresh and a < kh:
            row[lo:hi] = bias[o]
            fresh = False
        for aa in range(a, kh):
            if 0 <= top + aa < height:
                _correlate_row(row, x[n, c, top + aa], w[o, c, aa], pad_left)
    if fresh:  # no input row reached this output row
        row[lo:hi] = bias[o]


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def conv2d_forward(x, w, bias, out, sh, pad_top, pad_left):
    """out[n, o, i, j] = bias[o] + sum_{c,a,b} w[o, c, a, b] * x[n, c, i*sh + a - pt, j + b - pl].

    Pixels outside ``x`` count as zero. The output's shape sets how far it reaches,
    so any bottom/right padding is implied by it. Columns are taken with stride 1
    (the wrapper turns a column stride into extra input channels).

    Two layouts of the same sum, chosen by the number of output channels:

    - four or more: each task takes a chunk of output rows, lays out the input they
      see as zero-padded flat lines (:func:`_gather_flat`), once, and serves every
      output channel from them, four at a time, nine taps per pass over the whole
      chunk (:func:`_block9x4`);
    - fewer (a filter): no copy at all; each output row is accumulated straight
      from the input rows, nine taps (three kernel rows) per pass, the border
      columns and the rows at the vertical padding apart.
    """
    n_img, c_in, _, _ = x.shape
    c_out, _, kh, kw = w.shape
    h_out, w_out = out.shape[2], out.shape[3]
    if c_out >= 4:
        per_task = _chunk_rows(c_in, kh, w_out + kw - 1, 16, h_out, n_img)
        n_chunks = (h_out + per_task - 1) // per_task
        pitch = w_out + kw - 1
        n_lines, step = (1, pitch) if sh == 1 else (kh, 0)
        for task in prange(n_img * n_chunks):
            n = task // n_chunks
            i0 = (task % n_chunks) * per_task
            rows = min(h_out, i0 + per_task) - i0
            size = rows * pitch
            span = rows + kh - 1 if sh == 1 else rows
            lines = np.zeros((c_in, n_lines, span * pitch + kw - 1), dtype=x.dtype)
            _gather_flat(lines, x, n, i0 * sh - pad_top, span, sh, pitch, pad_left)
            acc = np.empty((c_out, size), dtype=x.dtype)
            for o in range(c_out):
                acc[o] = bias[o]
            o = 0
            while o + 3 < c_out:
                for c in range(c_in):
                    d0, d1, d2, d3 = acc[o], acc[o + 1], acc[o + 2], acc[o + 3]
                    _window4(d0, d1, d2, d3, lines[c], step, w[o : o + 4, c])
                o += 4
            for oo in range(o, c_out):
                for c in range(c_in):
                    _window1(acc[oo], lines[c], step, w[oo, c])
            for o in range(c_out):
                for r in range(rows):
                    out[n, o, i0 + r, :] = acc[o, r * pitch : r * pitch + w_out]
        return
    for task in prange(n_img * c_out * h_out):
        n = task // (c_out * h_out)
        o = (task // h_out) % c_out
        i = task % h_out
        _filter_row(out[n, o, i], x, n, o, w, bias, sh, i, pad_top, pad_left)


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


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def conv2d_grad_weight(x, grad_out, partial, sh, pad_top, pad_left):
    """Kernel gradient: the input correlated with the incoming gradient.

    partial[t, o, c, a, b] receives the sum over the t-th chunk of output rows of
    x[n, c, i*sh + a - pt, j + b - pl] * grad_out[n, o, i, j]; the caller adds the
    chunks up. ``partial`` is float64 and zeroed; columns are taken with stride 1.
    The input is laid out in flat lines as the forward pass lays it out
    (:func:`_gather_flat`), the gradient rows likewise with zeros between them, so
    each tap of each channel pair is one dot product over a long line; four output
    channels by three taps share each pass.
    """
    n_img, c_in, _, _ = x.shape
    _, c_out, h_out, w_out = grad_out.shape
    n_chunks, _, _, kh, kw = partial.shape
    n_rows = n_img * h_out
    pitch = w_out + kw - 1
    per_pass = _chunk_rows(c_in, kh, pitch, 1, h_out, n_img)
    n_lines, step = (1, pitch) if sh == 1 else (kh, 0)
    zero = np.zeros(1, dtype=x.dtype)[0]
    for t in prange(n_chunks):
        acc = partial[t]
        q, end = t * n_rows // n_chunks, (t + 1) * n_rows // n_chunks
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
                    grads[o, r * pitch : r * pitch + w_out] = grad_out[n, o, i0 + r]
            for c in range(c_in):
                for a in range(kh):
                    src = _line(lines[c], a, step)
                    o = 0
                    while o + 3 < c_out:
                        g0, g1, g2, g3 = grads[o], grads[o + 1], grads[o + 2], grads[o + 3]
                        b = 0
                        while b + 2 < kw:
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
                            b += 3
                        for bb in range(b, kw):
                            for u in range(4):
                                acc[o + u, c, a, bb] += _dot(
                                    grads[o + u], src[bb : bb + size], zero
                                )
                        o += 4
                    for oo in range(o, c_out):
                        for b in range(kw):
                            acc[oo, c, a, b] += _dot(grads[oo], src[b : b + size], zero)


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
    n_img, n_ch, _, width = grad_x.shape
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


# ----------------------------------------------------------------------------- kernel fitting
#
# Used by convtool.fit. The fit's loss is quadratic in the kernel, so everything it needs
# from the pictures is gathered once, in float64: per picture plane n, the Gram matrix of the
# patches gram[n] (taps x taps, upper triangle), and moments[n] = [sum m x y (taps),
# sum m x (taps), sum m y, sum m y^2, sum m], m being the 0/1 weight of each target pixel.
# Output pixel (i, j) sees x[n, i*sh + a, j*sw + b] through tap (a, b), tap index a*kw + b.


@njit(inline="always")
def _fit_dot(u, v):
    acc = 0.0
    for k in range(u.shape[0]):
        acc += u[k] * v[k]
    return acc


@njit(inline="always")
def _fit_dots2(u, v0, v1):
    a0 = a1 = 0.0
    for k in range(u.shape[0]):
        a0 += u[k] * v0[k]
        a1 += u[k] * v1[k]
    return a0, a1


@njit(inline="always")
def _fit_dots4(u, v0, v1, v2, v3):
    """Four dot products sharing one operand: each load of u feeds four FMAs."""
    a0 = a1 = a2 = a3 = 0.0
    for k in range(u.shape[0]):
        uk = u[k]
        a0 += uk * v0[k]
        a1 += uk * v1[k]
        a2 += uk * v2[k]
        a3 += uk * v3[k]
    return a0, a1, a2, a3


@njit(inline="always")
def _fit_row(src, b, sw, w_out):
    """The w_out pixels that column tap b sees along one input row."""
    return src[b : b + (w_out - 1) * sw + 1 : sw]


@njit(inline="always")
def _fit_dots_row(g, t1, u, src, base, kw, b0, sw, w_out):
    """g[t1, base + b] += u . (row seen through column tap b), for b in [b0, kw)."""
    if sw == 1:
        b = b0
        while b + 3 < kw:
            d0, d1, d2, d3 = _fit_dots4(
                u, src[b : b + w_out], src[b + 1 : b + 1 + w_out],
                src[b + 2 : b + 2 + w_out], src[b + 3 : b + 3 + w_out],
            )  # fmt: skip
            g[t1, base + b] += d0
            g[t1, base + b + 1] += d1
            g[t1, base + b + 2] += d2
            g[t1, base + b + 3] += d3
            b += 4
        for rest in range(b, kw):
            g[t1, base + rest] += _fit_dot(u, src[rest : rest + w_out])
    else:
        for b in range(b0, kw):
            g[t1, base + b] += _fit_dot(u, _fit_row(src, b, sw, w_out))


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def fit_gather(x, y, mask, drop, sh, sw, kh, kw, toeplitz, gram, moments):
    """Accumulate the fit's statistics into per-chunk partial sums (the caller adds them up).

    x (N, Hx, Wx), y and mask (N, Ho, Wo), all float64; gram (T, N, K, K) and moments
    (T, N, 2K + 3) zeroed float64, K = kh * kw. Only the upper triangle of gram is filled.

    With ``toeplitz`` (stride 1 only) the Gram matrix is built from the picture's lagged
    products: entry (a1, b1), (a1 + da, b1 + db) is the sum of x[r, q] * x[r + da, q + db]
    over a rectangle, and the rectangles of one lag differ only near the picture's edges. So
    each input row costs one dot product per lag, (2 kw - 1) kh - kw + 1 of them, instead of
    K (K + 1) / 2 per output row; it counts every pixel, and the pixels listed in ``drop``
    (rows of n, i, j: weight 0) are then taken out again one by one. Otherwise the patches'
    products are summed directly, weighted by ``mask``, for any stride.
    """
    n_img, height, _ = x.shape
    h_out, w_out = y.shape[1], y.shape[2]
    n_chunks = gram.shape[0]
    taps = kh * kw
    rows = n_img * h_out
    for t in prange(n_chunks):
        u = np.empty(w_out)
        ym = np.empty(w_out)
        for q in range(t * rows // n_chunks, (t + 1) * rows // n_chunks):
            n = q // h_out
            i = q % h_out
            g = gram[t, n]
            mo = moments[t, n]
            mrow = mask[n, i]
            yrow = y[n, i]
            sy = 0.0
            syy = 0.0
            sm = 0.0
            for j in range(w_out):
                v = mrow[j] * yrow[j]
                ym[j] = v
                sy += v
                syy += v * yrow[j]
                sm += mrow[j]
            mo[2 * taps] += sy
            mo[2 * taps + 1] += syy
            mo[2 * taps + 2] += sm
            for a in range(kh):
                src = x[n, i * sh + a]
                # x.y and x.m for each column tap: two dot products per loaded row
                for b in range(kw):
                    if sw == 1:
                        acc_y, acc_m = _fit_dots2(src[b : b + w_out], ym, mrow)
                    else:
                        acc_y, acc_m = _fit_dots2(_fit_row(src, b, sw, w_out), ym, mrow)
                    mo[a * kw + b] += acc_y
                    mo[taps + a * kw + b] += acc_m
            if toeplitz:
                continue
            for t1 in range(taps):
                a1 = t1 // kw
                b1 = t1 % kw
                s1 = _fit_row(x[n, i * sh + a1], b1, sw, w_out)
                for j in range(w_out):
                    u[j] = mrow[j] * s1[j]
                for a2 in range(a1, kh):
                    _fit_dots_row(g, t1, u, x[n, i * sh + a2], a2 * kw, kw,
                                  b1 if a2 == a1 else 0, sw, w_out)  # fmt: skip
    if not toeplitz:
        return
    in_rows = n_img * height
    core0 = kw - 1  # columns [kw - 1, w_out) lie in every column window
    n_lags = kh * (2 * kw - 1)
    for t in prange(n_chunks):
        # rows in [kh - 1, h_out) lie in every row window: their sums go to ``inner``
        # and reach every row pair of their lag at the end; edge rows go directly
        inner = np.zeros((n_img, n_lags, kw))
        edge = np.empty(kw)
        part = np.empty(kw)
        for q in range(t * in_rows // n_chunks, (t + 1) * in_rows // n_chunks):
            n = q // height
            r = q % height
            g = gram[t, n]
            src1 = x[n, r]
            a_lo = max(0, r - h_out + 1)
            is_inner = kh - 1 <= r < h_out
            for da in range(min(kh, height - r)):
                a_hi = min(kh - 1 - da, r)
                if a_lo > a_hi:
                    continue
                src2 = x[n, r + da]
                for db in range(-(kw - 1) if da > 0 else 0, kw):
                    b_lo = max(0, -db)
                    b_hi = kw - 1 - max(0, db)
                    if w_out > core0:
                        core = _fit_dot(src1[core0:w_out], src2[core0 + db : w_out + db])
                        # windows [b1, b1 + w_out): core plus [b1, core0) plus [w_out, w_out + b1)
                        left = 0.0
                        for b1 in range(core0 - 1, b_hi, -1):
                            left += src1[b1] * src2[b1 + db]
                        for b1 in range(b_hi, b_lo - 1, -1):
                            if b1 < core0:
                                left += src1[b1] * src2[b1 + db]
                            edge[b1] = left
                        right = 0.0
                        for b1 in range(b_lo):
                            c = w_out + b1
                            right += src1[c] * src2[c + db]
                        for b1 in range(b_lo, b_hi + 1):
                            part[b1] = core + edge[b1] + right
                            c = w_out + b1
                            if b1 < b_hi:
                                right += src1[c] * src2[c + db]
                    else:
                        for b1 in range(b_lo, b_hi + 1):
                            part[b1] = _fit_dot(
                                src1[b1 : b1 + w_out], src2[b1 + db : b1 + db + w_out]
                            )
                    if is_inner:
                        acc = inner[n, da * (2 * kw - 1) + db + kw - 1]
                        for b1 in range(b_lo, b_hi + 1):
                            acc[b1] += part[b1]
                    else:
                        for a1 in range(a_lo, a_hi + 1):
                            for b1 in range(b_lo, b_hi + 1):
                                g[a1 * kw + b1, (a1 + da) * kw + b1 + db] += part[b1]
        for n in range(n_img):
            g = gram[t, n]
            for da in range(kh):
                for db in range(-(kw - 1) if da > 0 else 0, kw):
                    acc = inner[n, da * (2 * kw - 1) + db + kw - 1]
                    for a1 in range(kh - da):
                        for b1 in range(max(0, -db), kw - max(0, db)):
                            g[a1 * kw + b1, (a1 + da) * kw + b1 + db] += acc[b1]
    n_drop = drop.shape[0]
    for t in prange(n_chunks):
        p = np.empty(taps)
        for k in range(t * n_drop // n_chunks, (t + 1) * n_drop // n_chunks):
            n, i, j = drop[k, 0], drop[k, 1], drop[k, 2]
            g = gram[t, n]
            for a in range(kh):
                for b in range(kw):
                    p[a * kw + b] = x[n, i + a, j + b]
            for t1 in range(taps):
                for t2 in range(t1, taps):
                    g[t1, t2] -= p[t1] * p[t2]


@njit(cache=True)
def fit_iterate(method, gram, w, w_best, r_best, scalars, it, stop, max_iter, state, history):
    """Run the fit's iterations ``it`` .. ``stop - 1`` on its statistics; return (it, code).

    scalars = (loss_min, lr, tol, floor_w, floor_c). The loss of w is
    loss_min + (w - w*)' G (w - w*) / 2, with w* the least-squares kernel and G the
    patches' Gram matrix over m: in exact arithmetic the chapter's sum((z - y)^2) / 2 / m,
    but free of the cancellation that (w'Gw - 2c'w + s) / 2 suffers near the minimum. The
    gradient G (w - w*) + r_best, with r_best = G w* - c, is G w - c: the chapter's dw / m.

    Each iteration first records and checks the loss, then updates w, as the chapter does.
    Codes: 1, loss < tol; 2, at the minimum (|G (w - w*)| <= floor_w |w| + floor_c: what
    is left is rounding); 3, it == max_iter; 4, the loss is not finite; 0, reached ``stop``.
    method 0 is gradient descent with step lr; 1 is conjugate gradient: Polak-Ribiere with
    the exact line search, which on a quadratic is linear CG, restarted with the steepest
    descent every n steps and whenever rounding spoils the direction. ``state`` carries
    CG's direction, last gradient and steps since the last restart between calls (2n + 1).
    """
    n = w.shape[0]
    loss_min, lr, tol, floor_w, floor_c = scalars[0], scalars[1], scalars[2], scalars[3], scalars[4]
    d = state[:n]
    g_prev = state[n : 2 * n]
    e = np.empty(n)
    grad = np.empty(n)
    it0 = it
    while it < stop:
        for k in range(n):
            e[k] = w[k] - w_best[k]
        quad = 0.0
        gn = 0.0
        wn = 0.0
        for k in range(n):
            acc = 0.0
            for j in range(n):
                acc += gram[k, j] * e[j]
            grad[k] = acc
            quad += e[k] * acc
            gn += acc * acc
            wn += w[k] * w[k]
        loss = loss_min + 0.5 * quad
        history[it - it0] = loss
        if not np.isfinite(loss):
            return it, 4
        if loss < tol:
            return it, 1
        if np.sqrt(gn) <= floor_w * np.sqrt(wn) + floor_c:
            return it, 2
        if it >= max_iter:
            return it, 3
        for k in range(n):
            grad[k] += r_best[k]
        if method == 0:
            for k in range(n):
                w[k] -= lr * grad[k]
            it += 1
            continue
        beta = 0.0
        if state[2 * n] > 0:
            num = 0.0
            den = 0.0
            for k in range(n):
                num += grad[k] * (grad[k] - g_prev[k])
                den += g_prev[k] * g_prev[k]
            if den > 0.0:
                beta = max(0.0, num / den)
        slope = 0.0
        for k in range(n):
            d[k] = beta * d[k] - grad[k]
            slope += grad[k] * d[k]
        if slope >= 0.0:  # rounding has spoilt the direction: restart
            slope = 0.0
            for k in range(n):
                d[k] = -grad[k]
                slope -= grad[k] * grad[k]
            state[2 * n] = 0
        curv = 0.0
        for k in range(n):
            acc = 0.0
            for j in range(n):
                acc += gram[k, j] * d[j]
            curv += d[k] * acc
        if curv <= 0.0:  # no curvature left along d: nothing more to gain
            return it, 2
        alpha = -slope / curv
        for k in range(n):
            w[k] += alpha * d[k]
            g_prev[k] = grad[k]
        state[2 * n] += 1
        if state[2 * n] >= n:
            state[2 * n] = 0
        it += 1
    return it, 0
