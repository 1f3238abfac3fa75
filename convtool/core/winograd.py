"""The Winograd path: a 3x3 layer at stride 1 as 16 matrix products of 2.25x less work.

F(2x2, 3x3) (:mod:`convtool.core.conv_wino` has the transforms): the kernels become U
(16, C_out, C_in) once a call, the input's 4x4 patches of each 2x2 block of outputs
V (16, C_in, tiles), and the 16 products ``U[k] @ V[k]`` (numpy's BLAS) give the blocks'
transformed outputs, turned back into pixels plus bias. 4 multiply-adds an output
pixel and channel pair where im2col's GEMM (:mod:`convtool.core.gemm`) takes 9, for a
copy of 4 elements an output pixel per input channel and 4 per output channel.
F(4x4, 3x3) (``tile`` 4) does the same with 6x6 patches of 4x4 blocks: 36 products of
2.25 multiply-adds an output pixel and pair, 2.25 elements a copy, and a kernels'
transform of 36 planes (2.25x F(2x2)'s: the planner keeps it from the deepest layers).

Tiles go in blocks of about :data:`TILES` (whole pictures where they fit, else bands
of tile rows), so that V and the products stay in the cache and the memory bounded.
The transforms run on the engine's threads, and so do the 16 products: on the JIT,
F(2x2)'s as the register-blocked path's blocks
(:func:`convtool.core.conv_wino.wino_products`: VGG's conv2_1's 130 GMAC/s on two
threads, OpenBLAS's 119; conv4_2's 150, OpenBLAS's 134); else a few to each
share, OpenBLAS held to one thread meanwhile (:mod:`convtool.core.blas`). Left to
OpenBLAS's threads, each of a block's 16 products waits on their barrier, which
scaled poorly next to the engine's threads (bench_layers, 2 threads: conv2_1 11.1
ms, conv3_1 7.4; shared: 10.3 and 5.3) and collapsed on a busy machine (another
process on one of 2 cores: conv2_1 240 ms).

Rounding: the transforms add and halve, so a result differs from the GEMM path's by
a few units of float32 rounding of the sum of |terms| (measured against float64 on
VGG's conv2_1..conv4_2: 2.8e-7 to 4.3e-7 of max|y|, the GEMM path's 3.8e-7 to 4.6e-7;
F(4x4)'s transforms multiply by up to 8 before they cancel: 4.8e-6 to 7.9e-6). A non-finite
input pixel would spread to outputs whose window misses it (inf - inf in a patch's
sums): :func:`forward` then declines and the caller takes the GEMM path.

This module imports numpy only; the engine passed in runs the jitted halves.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from convtool.core import blas, tasks
from convtool.core.blocked import ROW_CHANNELS
from convtool.core.gemm import picture_blocks

__all__ = ["TILES", "forward"]

# 2x2 output tiles a block (4x4 tiles: a quarter as many, the same pixels): VGG's conv2_1
# (3136 tiles) 5.5-5.8 ms in 2 blocks, 6.4-6.7 in 4 of 1024 (each block's three threaded
# calls, and products of fewer columns)
TILES = 2048


def _blocks(n: int, th: int, tw: int, tiles: int = TILES):
    """The blocks of about ``tiles`` tiles (:func:`convtool.core.gemm.picture_blocks`)."""
    return picture_blocks(n, th, tw, tiles, even=True)


def _plane(elements: int) -> int:
    """A plane of at least ``elements`` float32s that spans an odd number of 64-byte cache
    lines (see :mod:`convtool.core.conv_wino`)."""
    return (-(-elements // 16) | 1) * 16


def _matrices(buf: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """The position's (rows, cols) matrices at the start of ``buf``'s rows, a view."""
    return buf[:, : rows * cols].reshape(buf.shape[0], rows, cols)


def forward(
    engine: Any,
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray,
    out: np.ndarray,
    pads,
    tile: int = 2,
) -> bool:
    """out = conv2d(x, w, bias) for a (C_out, C_in, 3, 3) kernel at stride 1, zero padding
    ``pads`` (top, left) before, the rest implied by out (N, C_out, H', W'), by F(2x2,
    3x3) or (``tile`` 4) F(4x4, 3x3): (tile + 2)^2 products.

    Returns False, out partly written, if x holds a non-finite value (see the module
    docstring): the caller then runs another path.
    """
    n, c_in = x.shape[:2]
    c_out = w.shape[0]
    h_out, w_out = out.shape[2:]
    th, tw = -(-h_out // tile), -(-w_out // tile)
    points = (tile + 2) ** 2
    # the products as register blocks where they fit (float32: float64's would spill)
    blocked = engine.blocks_fit() and tile == 2 and x.dtype == np.float32
    width = ROW_CHANNELS if blocked else 1
    u = np.empty((points, _plane(-(-c_out // width) * width * c_in)), dtype=x.dtype)
    engine.wino_weights(w, u, width)
    per_block = TILES * 4 // (tile * tile)
    _, pictures, _, rows = next(_blocks(n, th, tw, per_block))
    most = pictures * rows * tw
    v = np.empty((points, _plane(c_in * most)), dtype=x.dtype)
    mm = np.empty((points, _plane(c_out * most)), dtype=x.dtype)
    probe = np.empty(pictures * c_in, dtype=x.dtype)
    threaded = engine.threaded and tasks.threads() > 1
    with blas.one_thread() if threaded and not blocked else contextlib.nullcontext():
        for n0, pictures, t0, rows in _blocks(n, th, tw, per_block):
            tiles = pictures * rows * tw
            seen = probe[: pictures * c_in]
            engine.wino_input(x, v, seen, n0, t0, pictures, rows, tw, *pads)
            if not np.isfinite(seen).all():
                return False
            if blocked:
                engine.wino_products(u, v, mm, c_out, c_in, tiles)
            else:  # BLAS's, shared among the engine's threads where it has them
                args = (_matrices(u, c_out, c_in), _matrices(v, c_in, tiles))
                args += (_matrices(mm, c_out, tiles),)
                if threaded:
                    tasks.run(_products, *args)
                else:
                    _products(*args, 0, 1)
            engine.wino_output(mm, bias, out, n0, t0, pictures, rows)
    return True


def _products(weights, v, products, part, parts) -> None:
    """The share ``part`` of ``parts`` of the products ``weights[k] @ v[k]``."""
    points = weights.shape[0]
    k0, k1 = part * points // parts, (part + 1) * points // parts
    if k1 > k0:
        np.matmul(weights[k0:k1], v[k0:k1], out=products[k0:k1])
