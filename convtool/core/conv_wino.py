"""The Winograd path's jitted transforms: F(2x2, 3x3) and F(4x4, 3x3) (``wino4_*``, at
the end) for 3x3 layers at stride 1.

Each 2x2 block of output pixels (a *tile*) of output channel o is ``A^T [sum_c U_oc (.)
V_c] A``, with ``U_oc = G w_oc G^T`` (the kernel, 4x4) and ``V_c = B^T d_c B`` (the tile's
4x4 input patch): 16 multiplies where the direct sum takes 36, the sum over channels
being, for each of the 16 positions k, one matrix product ``U[k] (C_out, C_in) @ V[k]
(C_in, tiles)`` that numpy's BLAS runs, or on the JIT :func:`wino_products`
(:mod:`convtool.core.winograd` drives them). The other kernels transform:

- :func:`wino_weights`: U[k, o, c] from w[o, c] (float64 inside, then rounded once);
- :func:`wino_input`: V[k, c, m, r*tw + j] from the patch of tile (t0 + r, j) of
  picture n0 + m, pixels outside the picture zeros;
- :func:`wino_output`: out[n0 + m, o, 2(t0 + r) + a, 2j + b] = bias[o] + (A^T M A)[a, b]
  for the tiles' products M[k, o, m, r*tw + j], the outputs past the picture's edge
  left out.

Each of U, V and M is a (16, plane) array, position k's matrix flat in row k: a plane
of a power of two's bytes would put the 16 rows a loop reads or writes side by side
in the same cache sets, so the caller pads the plane to an odd number of cache lines
(measured: the input transform ran 11 ns a tile and channel).

    B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
    G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]
    A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]

A non-finite input pixel would spread through a patch's sums to outputs whose window
does not hold it (inf - inf), so :func:`wino_input` reports one (``probe``) and the
caller takes another path. Each kernel runs the share ``part`` of ``parts`` of its
tasks (:mod:`convtool.core.tasks`).
"""

from __future__ import annotations

import numpy as np
from numba import njit, uint64

from convtool.core.conv_block import ROW_CHANNELS, ROW_VECTORS, _row_block
from convtool.core.fastmath import ENTRY, FASTMATH, INNER, _share
from convtool.core.vector_ir import LANES

# As in conv_gemm, the hot loops index flat views with unsigned integers: a signed index
# makes numba test it for wrapping around, which keeps LLVM from vectorising them.


@njit(fastmath=FASTMATH, **ENTRY)
def wino_weights(w, u, width, part, parts):
    """u[k, (o // B)*C_in*B + c*B + o % B] = (G w[o, c] G^T)[k // 4, k % 4], B = ``width``:
    (C_out, C_in) matrices for BLAS (B 1), or blocks of B output channels, each tap's
    side by side, for :func:`wino_products` (B ROW_CHANNELS); a task is one output
    channel."""
    c_out, c_in = w.shape[0], w.shape[1]
    wf, uf = w.reshape(-1), u.reshape(-1)
    plane, b = uint64(u.shape[1]), uint64(width)
    start, stop = _share(c_out, part, parts)
    for o in range(start, stop):
        at = uint64(o * c_in)
        first = uint64(o) // b * uint64(c_in) * b + uint64(o) % b
        for c in range(uint64(c_in)):
            s = (at + c) * uint64(9)
            g = wf[s : s + uint64(9)]
            g0, g1, g2 = float(g[0]), float(g[1]), float(g[2])
            g3, g4, g5 = float(g[3]), float(g[4]), float(g[5])
            g6, g7, g8 = float(g[6]), float(g[7]), float(g[8])
            d = first + c * b
            for a in range(4):  # row a of G w, then that row times G^T
                if a == 0:
                    r0, r1, r2 = g0, g1, g2
                elif a == 1:
                    r0, r1, r2 = 0.5 * (g0 + g3 + g6), 0.5 * (g1 + g4 + g7), 0.5 * (g2 + g5 + g8)
                elif a == 2:
                    r0, r1, r2 = 0.5 * (g0 - g3 + g6), 0.5 * (g1 - g4 + g7), 0.5 * (g2 - g5 + g8)
                else:
                    r0, r1, r2 = g6, g7, g8
                k = uint64(4 * a)
                uf[k * plane + d] = r0
                uf[(k + uint64(1)) * plane + d] = 0.5 * (r0 + r1 + r2)
                uf[(k + uint64(2)) * plane + d] = 0.5 * (r0 - r1 + r2)
                uf[(k + uint64(3)) * plane + d] = r2


@njit(fastmath=FASTMATH, **ENTRY)
def wino_products(u, v, mm, c_out, c_in, tiles, part, parts):
    """mm[k, o*tiles + t] = sum over c of U[k, o, c] * v[k, c*tiles + t], for u in blocks of
    ROW_CHANNELS output channels (:func:`wino_weights`'s width ROW_CHANNELS): the 16
    products as the register-blocked path's blocks of a row's pixels, the tiles in the
    lanes (conv_block's :func:`_row_block`), each tap a channel. A task is one position's
    product over ROW_VECTORS vectors of tiles (VGG's conv2_1 on two threads: 130 GMAC/s,
    OpenBLAS's products of the same 119)."""
    uf, vf, mf = u.reshape(-1), v.reshape(-1), mm.reshape(-1)
    offs = np.arange(c_in) * tiles  # where channel c's tiles start
    zeros = np.zeros(ROW_CHANNELS, dtype=mm.dtype)
    per = ROW_VECTORS * LANES
    span = -(-tiles // per)
    start, stop = _share(u.shape[0] * span, part, parts)
    for task in range(start, stop):
        k, t0 = task // span, task % span * per
        for ob in range(-(-c_out // ROW_CHANNELS)):
            wbase = k * u.shape[1] + ob * c_in * ROW_CHANNELS
            dbase = k * mm.shape[1] + ob * ROW_CHANNELS * tiles + t0
            stored = min(ROW_CHANNELS, c_out - ob * ROW_CHANNELS)
            _row_block(vf, k * v.shape[1] + t0, uf, wbase, offs, c_in, zeros, 0, mf, dbase,
                       tiles, tiles - t0, stored)  # fmt: skip


@njit(fastmath=FASTMATH, **ENTRY)
def wino_input(x, v, probe, n0, t0, n_pic, rows, tw, pad_top, pad_left, part, parts):
    """v[k, (c*pictures + m)*size + r*tw + j] = (B^T d B)[k // 4, k % 4], d the 4x4 patch of
    x[n0 + m, c] at row 2(t0 + r) - pad_top, column 2j - pad_left (zeros outside the
    picture), size = rows x tw (tw tiles a row).

    probe[m*C_in + c] becomes NaN if that task met a non-finite pixel, else 0. A task is
    one channel of one picture.
    """
    c_in, height, width = x.shape[1], x.shape[2], x.shape[3]
    size = rows * tw
    span = 2 * tw + 2
    bf = np.zeros(4 * span, dtype=x.dtype)  # the patch's 4 rows, zero padded
    hf = np.empty(16 * tw, dtype=x.dtype)  # each row's horizontal transform
    plane = uint64(v.shape[1])  # v's stride between positions k
    vf, xf = v.reshape(-1), x.reshape(-1)
    lo = uint64(max(0, pad_left))
    hi = uint64(max(lo, min(span, width + pad_left)))
    ut, us = uint64(tw), uint64(span)
    start, stop = _share(n_pic * c_in, part, parts)
    for task in range(start, stop):
        m = task // c_in
        c = task % c_in
        seen = x.dtype.type(0)
        for r in range(rows):
            y0 = 2 * (t0 + r) - pad_top
            for i in range(4):
                y = y0 + i
                b0 = uint64(i) * us
                if y < 0 or y >= height:
                    for q in range(us):
                        bf[b0 + q] = 0
                else:
                    # x's pixel q - pad_left (modular: q >= lo >= pad_left)
                    src = uint64((((n0 + m) * c_in + c) * height + y) * width) - uint64(pad_left)
                    for q in range(lo):
                        bf[b0 + q] = 0
                    for q in range(lo, hi):
                        value = xf[src + q]
                        bf[b0 + q] = value
                        seen += value * 0
                    for q in range(hi, us):
                        bf[b0 + q] = 0
                h0 = uint64(4 * i) * ut
                for j in range(ut):
                    q = b0 + uint64(2) * j
                    d0, d1, d2, d3 = bf[q], bf[q + uint64(1)], bf[q + uint64(2)], bf[q + uint64(3)]
                    hf[h0 + j] = d0 - d2
                    hf[h0 + ut + j] = d1 + d2
                    hf[h0 + uint64(2) * ut + j] = d2 - d1
                    hf[h0 + uint64(3) * ut + j] = d1 - d3
            at = uint64(((c * n_pic + m) * size) + r * tw)
            for b in range(uint64(4)):
                for j in range(ut):
                    e0 = hf[b * ut + j]
                    e1 = hf[(uint64(4) + b) * ut + j]
                    e2 = hf[(uint64(8) + b) * ut + j]
                    e3 = hf[(uint64(12) + b) * ut + j]
                    d = at + j
                    vf[b * plane + d] = e0 - e2
                    vf[(uint64(4) + b) * plane + d] = e1 + e2
                    vf[(uint64(8) + b) * plane + d] = e2 - e1
                    vf[(uint64(12) + b) * plane + d] = e1 - e3
        probe[m * c_in + c] = seen


@njit(fastmath=FASTMATH, **ENTRY)
def wino_output(mm, bias, out, n0, t0, n_pic, rows, part, parts):
    """out[n0 + m, o, 2(t0 + r) + a, 2j + b] = bias[o] + (A^T M A)[a, b], M[k // 4, k % 4] =
    mm[k, (o*pictures + m)*size + r*tw + j] (size = rows x tw, tw tiles a row), for the
    outputs inside ``out``; a task is one output channel of one picture."""
    c_out, h_out, w_out = out.shape[1], out.shape[2], out.shape[3]
    tw = (w_out + 1) // 2
    size = rows * tw
    plane = uint64(mm.shape[1])
    mf, of = mm.reshape(-1), out.reshape(-1)
    full, ut = uint64(w_out // 2), uint64(tw)
    tf = np.empty(8 * tw, dtype=out.dtype)  # A^T M: rows a, columns b, tiles j
    start, stop = _share(n_pic * c_out, part, parts)
    for task in range(start, stop):
        m = task // c_out
        o = task % c_out
        bo = bias[o]
        for r in range(rows):
            at = uint64(((o * n_pic + m) * size) + r * tw)
            for b in range(uint64(4)):
                for j in range(ut):
                    d = at + j
                    m0 = mf[b * plane + d]
                    m1 = mf[(uint64(4) + b) * plane + d]
                    m2 = mf[(uint64(8) + b) * plane + d]
                    m3 = mf[(uint64(12) + b) * plane + d]
                    tf[b * ut + j] = m0 + m1 + m2
                    tf[(uint64(4) + b) * ut + j] = m1 - m2 - m3
            for a in range(2):
                y = 2 * (t0 + r) + a
                if y >= h_out:
                    break
                dst = uint64((((n0 + m) * c_out + o) * h_out + y) * w_out)
                t0a = uint64(4 * a) * ut
                for j in range(full):
                    s0, s1 = tf[t0a + j], tf[t0a + ut + j]
                    s2, s3 = tf[t0a + uint64(2) * ut + j], tf[t0a + uint64(3) * ut + j]
                    of[dst + uint64(2) * j] = bo + (s0 + s1 + s2)
                    of[dst + uint64(2) * j + uint64(1)] = bo + (s1 - s2 - s3)
                if full < ut:  # an odd width: the last tile's left column alone
                    s0, s1 = tf[t0a + full], tf[t0a + ut + full]
                    of[dst + uint64(2) * full] = bo + (s0 + s1 + tf[t0a + uint64(2) * ut + full])


# F(4x4, 3x3): 6x6 patches, 36 positions, 4x4 tiles of outputs (the points 0, +-1, +-2
# and infinity: Lavin and Gray's matrices, whose float32 error stays a few roundings)
#
#     B^T = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
#            [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]
#     G = [[1/4, 0, 0], [-1/6, -1/6, -1/6], [-1/6, 1/6, -1/6],
#          [1/24, 1/12, 1/6], [1/24, -1/12, 1/6], [0, 0, 1]]
#     A^T = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
#            [0, 1, -1, 8, -8, 1]]


@njit(fastmath=FASTMATH, **INNER)
def _g6(g0, g1, g2):
    """G (g0, g1, g2): a kernel's column or row to the 6 points."""
    # in float64, by reciprocals (a division costs 10x a multiply; float64's rounding of
    # 1/6 is far below float32's of U)
    g0, g1, g2 = g0 * 1.0, g1 * 1.0, g2 * 1.0
    e, f, h = g0 + g2, g0 * (1 / 24) + g2 * (1 / 6), g1 * (1 / 12)
    return g0 * 0.25, (e + g1) * (-1 / 6), (e - g1) * (-1 / 6), f + h, f - h, g2


@njit(fastmath=FASTMATH, **INNER)
def _b6(d0, d1, d2, d3, d4, d5):
    """B^T (d0 .. d5): a patch's column or row to the 6 points (the multiples as sums: a
    float constant would take float32 to float64)."""
    d1x4, d2x4 = (d1 + d1) + (d1 + d1), (d2 + d2) + (d2 + d2)
    d3x4 = (d3 + d3) + (d3 + d3)
    p, q = d4 - d2x4, d3 - d1x4
    r, s = d4 - d2, (d3 - d1) + (d3 - d1)
    first = (d0 + d0) + (d0 + d0) - d2x4 - d2 + d4
    return first, p + q, p - q, r + s, r - s, d1x4 - d3x4 - d3 + d5


@njit(fastmath=FASTMATH, **INNER)
def _a4(m0, m1, m2, m3, m4, m5):
    """A^T (m0 .. m5): the 6 points back to 4 outputs."""
    p, q = m1 + m2, m3 + m4
    r, s = m1 - m2, m3 - m4
    q2, s2 = q + q, s + s
    s4 = s2 + s2
    return m0 + p + q, r + s2, p + (q2 + q2), r + (s4 + s4) + m5


@njit(fastmath=FASTMATH, **INNER)
def _g6_chunk(src, s0, step, dst, d0, n):
    """dst[d0 + a*n + j] = G (src[s0 + j*step + 3i], i < 3)[a] for j < n, a < 6: one
    column of n kernels (columns of 9 weights apart by ``step``) to the 6 points, float64."""
    for j in range(n):
        at = s0 + j * step
        r = _g6(float(src[at]), float(src[at + 3]), float(src[at + 6]))
        dst[d0 + j], dst[d0 + n + j], dst[d0 + 2 * n + j] = r[0], r[1], r[2]
        dst[d0 + 3 * n + j], dst[d0 + 4 * n + j], dst[d0 + 5 * n + j] = r[3], r[4], r[5]


WEIGHTS_CHUNK = 256  # kernels transformed together (columns, then rows, a loop each)


@njit(fastmath=FASTMATH, **ENTRY)
def wino4_weights(w, u, part, parts):
    """u[k, o*C_in + c] = (G w[o, c] G^T)[k // 6, k % 6] (F(4x4, 3x3)), in float64 rounded
    once; a task is one output channel. Kernels go in chunks, each step a loop of a
    few streams (36 at once kept LLVM from vectorising: 30 ns a kernel)."""
    c_in = w.shape[1]
    wf, uf = w.reshape(-1), u.reshape(-1)
    plane = u.shape[1]
    cols = np.empty(18 * WEIGHTS_CHUNK)  # (column b, point a, kernel j)
    start, stop = _share(w.shape[0], part, parts)
    for first in range(start * c_in, stop * c_in, WEIGHTS_CHUNK):
        n = min(WEIGHTS_CHUNK, stop * c_in - first)
        for b in range(3):  # G times each of the kernels' columns
            _g6_chunk(wf, first * 9 + b, 9, cols, b * 6 * n, n)
        for a in range(6):  # then each row of that times G^T
            row0, row1, row2 = a * n, (6 + a) * n, (12 + a) * n
            at = 6 * a * plane + first
            for j in range(n):
                r = _g6(cols[row0 + j], cols[row1 + j], cols[row2 + j])
                uf[at + j], uf[at + plane + j], uf[at + 2 * plane + j] = r[0], r[1], r[2]
                k = at + 3 * plane + j
                uf[k], uf[k + plane], uf[k + 2 * plane] = r[3], r[4], r[5]


# B^T's rows along the tiles, a loop or two each: with all six in one loop, its twelve
# streams kept LLVM from vectorising it (3.7 ns a tile and row)


@njit(fastmath=FASTMATH, **INNER)
def _b6_point0(cf, c0, c2, c4, vf, d, n):
    for j in range(n):
        d0, d2 = cf[c0 + j], cf[c2 + j]
        d2x4 = (d2 + d2) + (d2 + d2)
        vf[d + j] = (d0 + d0) + (d0 + d0) - d2x4 - d2 + cf[c4 + j]


@njit(fastmath=FASTMATH, **INNER)
def _b6_points12(cf, c1, c2, c3, c4, vf, da, db, n):
    for j in range(n):
        d1, d2 = cf[c1 + j], cf[c2 + j]
        p = cf[c4 + j] - ((d2 + d2) + (d2 + d2))
        q = cf[c3 + j] - ((d1 + d1) + (d1 + d1))
        vf[da + j], vf[db + j] = p + q, p - q


@njit(fastmath=FASTMATH, **INNER)
def _b6_points34(cf, c1, c2, c3, c4, vf, da, db, n):
    for j in range(n):
        d1, d3 = cf[c1 + j], cf[c3 + j]
        r, s = cf[c4 + j] - cf[c2 + j], (d3 - d1) + (d3 - d1)
        vf[da + j], vf[db + j] = r + s, r - s


@njit(fastmath=FASTMATH, **INNER)
def _b6_point5(cf, c1, c3, c5, vf, d, n):
    for j in range(n):
        d1, d3 = cf[c1 + j], cf[c3 + j]
        d3x4 = (d3 + d3) + (d3 + d3)
        vf[d + j] = (d1 + d1) + (d1 + d1) - d3x4 - d3 + cf[c5 + j]


@njit(fastmath=FASTMATH, **ENTRY)
def wino4_input(x, v, probe, n0, t0, n_pic, rows, tw, pad_top, pad_left, part, parts):
    """v[k, (c*pictures + m)*size + r*tw + j] = (B^T d B)[k // 6, k % 6], d the 6x6 patch of
    x[n0 + m, c] at row 4(t0 + r) - pad_top, column 4j - pad_left (zeros outside the
    picture), size = rows x tw: :func:`wino_input` for F(4x4, 3x3).

    The patches' rows are laid out in 4 phases (column 4j + p at phase p's j), so that
    both transforms run along contiguous arrays (vectorised): down the columns, then
    along the rows, tile j reading phases 0-3 at j and 0-1 at j + 1.
    """
    c_in, height, width = x.shape[1], x.shape[2], x.shape[3]
    size = rows * tw
    pw = uint64(tw + 1)  # a phase's columns
    rw = uint64(4) * pw  # a row's
    bf = np.zeros(6 * 4 * (tw + 1), dtype=x.dtype)  # the patches' 6 rows, zero padded
    cf = np.empty(6 * 4 * (tw + 1), dtype=x.dtype)  # their columns' transform
    line = np.empty(4 * (tw + 1), dtype=x.dtype)  # one row, zero padded
    plane = uint64(v.shape[1])
    vf, xf = v.reshape(-1), x.reshape(-1)
    ut, pl = uint64(tw), pad_left
    lo = uint64(max(0, pad_left))  # line[q] is x's column q - pad_left
    hi = uint64(max(lo, min(4 * (tw + 1), width + pad_left)))
    start, stop = _share(n_pic * c_in, part, parts)
    for task in range(start, stop):
        m = task // c_in
        c = task % c_in
        seen = x.dtype.type(0)
        for r in range(rows):
            y0 = 4 * (t0 + r) - pad_top
            for i in range(6):
                y = y0 + i
                b0 = uint64(i) * rw
                if y < 0 or y >= height:
                    for q in range(rw):
                        bf[b0 + q] = 0
                    continue
                # the row with its zeros, then split into its phases (4 streams each way)
                src = uint64((((n0 + m) * c_in + c) * height + y) * width) - uint64(pl)
                for q in range(lo):
                    line[q] = 0
                for q in range(lo, hi):
                    value = xf[src + q]
                    line[q] = value
                    seen += value * 0
                for q in range(hi, rw):
                    line[q] = 0
                for j in range(pw):
                    q = uint64(4) * j
                    bf[b0 + j], bf[b0 + pw + j] = line[q], line[q + uint64(1)]
                    bf[b0 + uint64(2) * pw + j] = line[q + uint64(2)]
                    bf[b0 + uint64(3) * pw + j] = line[q + uint64(3)]
            for q in range(rw):  # down the columns
                e = _b6(bf[q], bf[rw + q], bf[uint64(2) * rw + q], bf[uint64(3) * rw + q],
                        bf[uint64(4) * rw + q], bf[uint64(5) * rw + q])  # fmt: skip
                cf[q], cf[rw + q], cf[uint64(2) * rw + q] = e[0], e[1], e[2]
                q3 = uint64(3) * rw + q
                cf[q3], cf[q3 + rw], cf[q3 + uint64(2) * rw] = e[3], e[4], e[5]
            at = uint64(((c * n_pic + m) * size) + r * tw)
            for a in range(uint64(6)):  # along the rows: one point a loop (few streams)
                c0, d0 = a * rw, uint64(6) * a * plane + at
                c1, c2, c3 = c0 + pw, c0 + uint64(2) * pw, c0 + uint64(3) * pw
                c4, c5 = c0 + uint64(1), c1 + uint64(1)  # phases 0 and 1 of the next tile
                _b6_point0(cf, c0, c2, c4, vf, d0, ut)
                _b6_points12(cf, c1, c2, c3, c4, vf, d0 + plane, d0 + uint64(2) * plane, ut)
                d3 = d0 + uint64(3) * plane
                _b6_points34(cf, c1, c2, c3, c4, vf, d3, d3 + plane, ut)
                _b6_point5(cf, c1, c3, c5, vf, d0 + uint64(5) * plane, ut)
        probe[m * c_in + c] = seen


@njit(fastmath=FASTMATH, **ENTRY)
def wino4_output(mm, bias, out, n0, t0, n_pic, rows, part, parts):
    """out[n0 + m, o, 4(t0 + r) + a, 4j + b] = bias[o] + (A^T M A)[a, b], M[k // 6, k % 6] =
    mm[k, (o*pictures + m)*size + r*tw + j], for the outputs inside ``out``:
    :func:`wino_output` for F(4x4, 3x3)."""
    c_out, h_out, w_out = out.shape[1], out.shape[2], out.shape[3]
    tw = (w_out + 3) // 4
    size = rows * tw
    plane = uint64(mm.shape[1])
    mf, of = mm.reshape(-1), out.reshape(-1)
    full, ut = uint64(w_out // 4), uint64(tw)
    tf = np.empty(24 * tw, dtype=out.dtype)  # A^T M: rows a, columns b, tiles j
    start, stop = _share(n_pic * c_out, part, parts)
    for task in range(start, stop):
        m = task // c_out
        o = task % c_out
        bo = bias[o]
        for r in range(rows):
            at = uint64(((o * n_pic + m) * size) + r * tw)
            for b in range(uint64(6)):
                for j in range(ut):
                    d = at + j
                    e = _a4(mf[b * plane + d], mf[(uint64(6) + b) * plane + d],
                            mf[(uint64(12) + b) * plane + d],
                            mf[(uint64(18) + b) * plane + d],
                            mf[(uint64(24) + b) * plane + d],
                            mf[(uint64(30) + b) * plane + d])  # fmt: skip
                    t = b * ut + j
                    tf[t], tf[t + uint64(6) * ut] = e[0], e[1]
                    tf[t + uint64(12) * ut], tf[t + uint64(18) * ut] = e[2], e[3]
            for a in range(4):
                y = 4 * (t0 + r) + a
                if y >= h_out:
                    break
                dst = uint64((((n0 + m) * c_out + o) * h_out + y) * w_out)
                ta = uint64(6 * a) * ut
                for j in range(full):
                    e = _a4(tf[ta + j], tf[ta + ut + j], tf[ta + uint64(2) * ut + j],
                            tf[ta + uint64(3) * ut + j], tf[ta + uint64(4) * ut + j],
                            tf[ta + uint64(5) * ut + j])  # fmt: skip
                    col = dst + uint64(4) * j
                    of[col], of[col + uint64(1)] = bo + e[0], bo + e[1]
                    of[col + uint64(2)], of[col + uint64(3)] = bo + e[2], bo + e[3]
                if full < ut:  # the last tile, past the picture's edge
                    j = full
                    e = _a4(tf[ta + j], tf[ta + ut + j], tf[ta + uint64(2) * ut + j],
                            tf[ta + uint64(3) * ut + j], tf[ta + uint64(4) * ut + j],
                            tf[ta + uint64(5) * ut + j])  # fmt: skip
                    for k in range(uint64(w_out) - uint64(4) * full):
                        of[dst + uint64(4) * j + k] = bo + e[k]
