"""The Winograd path's jitted transforms: F(2x2, 3x3) for 3x3 layers at stride 1.

Each 2x2 block of output pixels (a *tile*) of output channel o is ``A^T [sum_c U_oc (.)
V_c] A``, with ``U_oc = G w_oc G^T`` (the kernel, 4x4) and ``V_c = B^T d_c B`` (the tile's
4x4 input patch): 16 multiplies where the direct sum takes 36, the sum over channels
being, for each of the 16 positions k, one matrix product ``U[k] (C_out, C_in) @ V[k]
(C_in, tiles)`` that numpy's BLAS runs (:mod:`convtool.core.winograd` drives them).
These kernels only transform:

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

from convtool.core.fastmath import ENTRY, FASTMATH, _share

# As in conv_gemm, the hot loops index flat views with unsigned integers: a signed index
# makes numba test it for wrapping around, which keeps LLVM from vectorising them.


@njit(fastmath=FASTMATH, **ENTRY)
def wino_weights(w, u, part, parts):
    """u[k, o*C_in + c] = (G w[o, c] G^T)[k // 4, k % 4]; a task is one output channel."""
    c_out, c_in = w.shape[0], w.shape[1]
    wf, uf = w.reshape(-1), u.reshape(-1)
    plane = uint64(u.shape[1])
    start, stop = _share(c_out, part, parts)
    for o in range(start, stop):
        at = uint64(o * c_in)
        for c in range(uint64(c_in)):
            s = (at + c) * uint64(9)
            g = wf[s : s + uint64(9)]
            g0, g1, g2 = float(g[0]), float(g[1]), float(g[2])
            g3, g4, g5 = float(g[3]), float(g[4]), float(g[5])
            g6, g7, g8 = float(g[6]), float(g[7]), float(g[8])
            d = at + c
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
