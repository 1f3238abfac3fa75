"""The multi-channel path of the convolution: a chunk of output rows as flat lines.

For four or more output maps, and for the kernel gradient, the input a chunk of
output rows sees is laid out once as zero-padded flat lines (:func:`_gather_flat`);
every output channel is then served from them, four at a time, nine taps per pass
over the whole chunk (:func:`_block9x4`), so each loaded pixel feeds four FMAs.
Underscored names are the core's internals, shared between its files.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from convtool.core.conv_rows import _tap, _taps3
from convtool.core.fastmath import FASTMATH, INNER


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
def _weights9(wb, o, a, b):
    """Output channel o's weights for the block (rows a..a+2, columns b..b+2), row-major.

    Read into a tuple of locals before the loop: inside it LLVM could not prove the
    stores to the outputs leave the weights unchanged, and would not vectorise.
    """
    return (
        wb[o, a, b], wb[o, a, b + 1], wb[o, a, b + 2],
        wb[o, a + 1, b], wb[o, a + 1, b + 1], wb[o, a + 1, b + 2],
        wb[o, a + 2, b], wb[o, a + 2, b + 1], wb[o, a + 2, b + 2],
    )  # fmt: skip


@njit(inline="always")
def _taps9(w, x):
    """One output's nine taps (w, x: row-major 3x3 tuples), summed left to right.

    One chain in the kernel's order, row by row: the order the results are defined by.
    """
    return (
        w[0] * x[0] + w[1] * x[1] + w[2] * x[2]
        + w[3] * x[3] + w[4] * x[4] + w[5] * x[5]
        + w[6] * x[6] + w[7] * x[7] + w[8] * x[8]
    )  # fmt: skip


@njit(inline="always")
def _block9x4(d0, d1, d2, d3, r0, r1, r2, wb, a, b):
    """A 3x3 block of taps (kernel rows a..a+2, columns b..b+2) into four output rows.

    Each loaded pixel feeds four FMAs and each output is loaded and stored once
    per nine taps.
    """
    n = d0.shape[0]
    p0, p1, p2 = r0[b : b + n], r0[b + 1 : b + 1 + n], r0[b + 2 : b + 2 + n]
    q0, q1, q2 = r1[b : b + n], r1[b + 1 : b + 1 + n], r1[b + 2 : b + 2 + n]
    s0, s1, s2 = r2[b : b + n], r2[b + 1 : b + 1 + n], r2[b + 2 : b + 2 + n]
    w0, w1 = _weights9(wb, 0, a, b), _weights9(wb, 1, a, b)
    w2, w3 = _weights9(wb, 2, a, b), _weights9(wb, 3, a, b)
    for k in range(n):
        x = (p0[k], p1[k], p2[k], q0[k], q1[k], q2[k], s0[k], s1[k], s2[k])
        d0[k] += _taps9(w0, x)
        d1[k] += _taps9(w1, x)
        d2[k] += _taps9(w2, x)
        d3[k] += _taps9(w3, x)


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
    for a in range(0, kh - 2, 3):
        for b in range(0, kw - 2, 3):
            r0, r1, r2 = _line(lines, a, step), _line(lines, a + 1, step), _line(lines, a + 2, step)
            _block9x4(d0, d1, d2, d3, r0, r1, r2, wb, a, b)
        for bb in range(kw - kw % 3, kw):
            for r in range(a, a + 3):
                _tap4(d0, d1, d2, d3, _line(lines, r, step)[bb : bb + n], wb[:, r, bb])
    for aa in range(kh - kh % 3, kh):
        row = _line(lines, aa, step)
        for b in range(0, kw - 2, 3):
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
        for bb in range(kw - kw % 3, kw):
            _tap4(d0, d1, d2, d3, row[bb : bb + n], wb[:, aa, bb])


@njit(inline="always")
def _window1(d0, lines, step, wk):
    """:func:`_window4` for a single output line (wk: kH x kW)."""
    n, kh, kw = d0.shape[0], wk.shape[0], wk.shape[1]
    for a in range(kh):
        row = _line(lines, a, step)
        for b in range(0, kw - 2, 3):
            _taps3(
                d0,
                row[b : b + n],
                row[b + 1 : b + 1 + n],
                row[b + 2 : b + 2 + n],
                wk[a, b],
                wk[a, b + 1],
                wk[a, b + 2],
            )
        for bb in range(kw - kw % 3, kw):
            _tap(d0, row[bb : bb + n], wk[a, bb])


@njit(**INNER)
def _copy(dst, src):
    """dst[:] = src[:], two lines of one length, as a plain loop: numba's slice
    assignment would bring its shape check and error message (a second of compiling)."""
    for k in range(dst.shape[0]):
        dst[k] = src[k]


@njit(fastmath=FASTMATH, **INNER)
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
                    _copy(line[r * pitch + q0 : r * pitch + q0 + m], x[n, c, src, x0 : x0 + m])


@njit(inline="always")
def _chunk_rows(c_in, kh, pitch, tasks_wanted, h_out, n_img):
    """Output rows per task for the multi-channel layout.

    Long lines amortise each pass's set-up (weights to registers, alias checks);
    the buffer stays near 256 KB (L2) and there are enough tasks for every thread.
    """
    per_task = max(1, min(2048, 65536 // (c_in * kh)) // pitch)
    spread = max(1, (n_img * h_out + tasks_wanted - 1) // tasks_wanted)
    return max(1, min(per_task, spread, h_out))


@njit(fastmath=FASTMATH, **INNER)
def _lines_chunk(out, x, w, bias, n, i0, rows, sh, pad_top, pad_left):
    """Output rows i0 .. i0 + rows - 1 of picture n, every map: one task of the layout above.

    A separate function, not inlined: compiled once on its own it keeps numba's
    compile of :func:`convtool.core.conv.conv2d_lines` short; it is called once per
    chunk of rows, so the call costs nothing measurable.
    """
    c_in = x.shape[1]
    c_out, _, kh, kw = w.shape
    w_out = out.shape[3]
    pitch = w_out + kw - 1
    n_lines, step = (1, pitch) if sh == 1 else (kh, 0)
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
            _copy(out[n, o, i0 + r], acc[o, r * pitch : r * pitch + w_out])
