"""Slow, obviously correct references that the fast code is tested against.

Plain loops over explicitly padded arrays: no cleverness to share bugs with.
"""

from __future__ import annotations

import numpy as np

# convtool's border names and scipy.ndimage's modes that pad the same way
SCIPY_MODES = {
    "zero": "constant",
    "reflect": "reflect",
    "mirror": "mirror",
    "replicate": "nearest",
    "wrap": "wrap",
}


def conv2d(x, w, b=None, stride=(1, 1), pad=(0, 0, 0, 0)):
    """Cross-correlation of (N, C, H, W) with (O, C, kh, kw); pad = (top, bottom, left, right)."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    top, bottom, left, right = pad
    xp = np.zeros((n, c, h + top + bottom, wd + left + right))
    xp[:, :, top : top + h, left : left + wd] = x
    ho = (xp.shape[2] - kh) // stride[0] + 1
    wo = (xp.shape[3] - kw) // stride[1] + 1
    out = np.zeros((n, o, ho, wo))
    for ni in range(n):
        for oi in range(o):
            for i in range(ho):
                for j in range(wo):
                    total = 0.0 if b is None else float(b[oi])
                    for ci in range(c):
                        for a in range(kh):
                            for bb in range(kw):
                                total += (
                                    w[oi, ci, a, bb]
                                    * xp[ni, ci, i * stride[0] + a, j * stride[1] + bb]
                                )
                    out[ni, oi, i, j] = total
    return out


def _pool_windows(h, wd, k, s, p, ceil_mode):
    def size(n, kk, ss, pp):
        room = n + 2 * pp - kk
        out = (-(-room // ss) if ceil_mode else room // ss) + 1
        if ceil_mode and (out - 1) * ss >= n + pp:
            out -= 1
        return out

    ho, wo = size(h, k[0], s[0], p[0]), size(wd, k[1], s[1], p[1])
    for i in range(ho):
        for j in range(wo):
            r0, c0 = i * s[0] - p[0], j * s[1] - p[1]
            yield i, j, r0, c0, ho, wo


def max_pool2d(x, k, s, p=(0, 0), ceil_mode=False):
    """Returns (out, argmax as (row, col) per window); first maximum in row-major order."""
    n, c, h, wd = x.shape
    wins = list(_pool_windows(h, wd, k, s, p, ceil_mode))
    ho, wo = wins[0][4], wins[0][5]
    out = np.zeros((n, c, ho, wo))
    where = {}
    for ni in range(n):
        for ci in range(c):
            for i, j, r0, c0, _, _ in wins:
                best, pos = -np.inf, None
                for r in range(max(r0, 0), min(r0 + k[0], h)):
                    for col in range(max(c0, 0), min(c0 + k[1], wd)):
                        if x[ni, ci, r, col] > best:
                            best, pos = x[ni, ci, r, col], (r, col)
                out[ni, ci, i, j] = best
                where[ni, ci, i, j] = pos
    return out, where


def avg_pool2d(x, k, s, p=(0, 0), ceil_mode=False):
    """torch's avg_pool2d with count_include_pad=True."""
    n, c, h, wd = x.shape
    wins = list(_pool_windows(h, wd, k, s, p, ceil_mode))
    ho, wo = wins[0][4], wins[0][5]
    out = np.zeros((n, c, ho, wo))
    for ni in range(n):
        for ci in range(c):
            for i, j, r0, c0, _, _ in wins:
                rows = min(r0 + k[0], h + p[0]) - r0
                cols = min(c0 + k[1], wd + p[1]) - c0
                total = 0.0
                for r in range(max(r0, 0), min(r0 + k[0], h)):
                    for col in range(max(c0, 0), min(c0 + k[1], wd)):
                        total += x[ni, ci, r, col]
                out[ni, ci, i, j] = total / (rows * cols)
    return out


def numeric_grad(f, x, eps=1e-6):
    """Central finite differences of the scalar function f at x (float64)."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for k in range(flat.size):
        keep = flat[k]
        flat[k] = keep + eps
        up = f(x)
        flat[k] = keep - eps
        down = f(x)
        flat[k] = keep
        gflat[k] = (up - down) / (2 * eps)
    return grad
