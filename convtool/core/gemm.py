"""The implicit-GEMM path: a layer of many channels as matrix products run by numpy's BLAS.

A block of output pixels is a product ``W (C_out, K) @ cols (K, pixels)``, K = C_in kH kW,
the block's patches laid out by :func:`convtool.core.conv_gemm.im2col` (jitted, on the
engine's threads) into a buffer, about :data:`COLUMNS` output pixels at a time (more
for a shallow layer, so that each block does :data:`WORK`; at most :data:`BLOCK`
elements): OpenBLAS ran 10-20% faster on products of that width than on a whole
picture's, and the copy's memory stays bounded. The products are numpy's
``matmul`` (OpenBLAS or whichever BLAS numpy links, threaded by it). Blocks are whole
pictures where they fit (several small pictures side by side make one product), else
bands of output rows. A 1x1 kernel at stride 1 without padding takes the pictures as
they are for columns (with the row of ones where it has more outputs than inputs; else
the bias is added after the product).

The bias rides along as one more row of ones in ``cols`` and one more column of W.
Backward, per block: the kernel gradient ``grad_out @ cols^T`` (each block's product
added up in float64), the input gradient ``W^T @ grad_out`` laid back onto the picture
by :func:`~convtool.core.conv_gemm.col2im`. Which layers take this path is the
planner's choice (:func:`convtool.core.plan.plan_layer`).

The engine's threads are sent to sleep after each of their copies
(:func:`convtool.core.tasks.park`): spinning, they would take the cores from OpenBLAS's.
The kernel gradient's product alone (another path giving the input's: Winograd's) runs
on the engine's threads instead, OpenBLAS held to one thread in each, as Winograd's
products do: OpenBLAS's threads spin on after a product and held up the path that came
next (VGG's conv2_1's input gradient by Winograd took 9.5 ms after it, 4.9 alone).

This module imports numpy only; the engine passed in runs the jitted halves.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from convtool.core import blas, tasks

__all__ = ["BLOCK", "COLUMNS", "WORK", "backward", "forward", "picture_blocks"]

BLOCK = 1 << 22  # elements of cols per block at most: 16 MB of float32
COLUMNS = 2048  # output pixels per block: BLAS ran fastest on products this wide...
WORK = 1 << 25  # ...but for products of fewer multiply-adds: each block wakes the threads
BANDS = 4  # the kernel gradient's product alone, in bands of columns (2 shares a thread)


def _pointwise(w: np.ndarray, stride: tuple[int, int], pads: tuple[int, int], x, out) -> bool:
    """Whether the layer is a plain product: 1x1, stride 1, no padding, same size."""
    return (
        w.shape[2:] == (1, 1)
        and stride == (1, 1)
        and pads == (0, 0)
        and (x.shape[2:] == out.shape[2:])
    )


def picture_blocks(n: int, rows: int, width: int, wanted: int, even: bool = False):
    """(first picture, pictures, first row, rows) of blocks of about ``wanted`` of the
    pixels of ``n`` pictures of ``rows`` x ``width``: several whole pictures where they
    fit, else bands of one picture's rows (with ``even``, bands of even height: 14 x 4
    rows, not 18 x 3 + 2)."""
    per_picture = rows * width
    if per_picture <= wanted:
        step = max(1, wanted // per_picture)
        for n0 in range(0, n, step):
            yield n0, min(step, n - n0), 0, rows
        return
    band = max(1, wanted // width)
    if even:
        band = -(-rows // -(-rows // band))
    for n0 in range(n):
        for i0 in range(0, rows, band):
            yield n0, 1, i0, min(band, rows - i0)


def _blocks(n: int, h_out: int, w_out: int, k: int, c_out: int):
    """The blocks of output pixels (:func:`picture_blocks`): about COLUMNS, more for a
    product of less than WORK multiply-adds, at most BLOCK elements of columns."""
    wanted = max(1, min(max(COLUMNS, WORK // (c_out * k)), BLOCK // k))
    return picture_blocks(n, h_out, w_out, wanted)


def _buffer(n: int, h_out: int, w_out: int, k: int, c_out: int, dtype) -> np.ndarray:
    """A flat buffer for the largest block's columns (the first: the others are as
    large but for the last)."""
    _, pictures, _, rows = next(_blocks(n, h_out, w_out, k, c_out))
    return np.empty(pictures * rows * w_out * k, dtype=dtype)


def forward(
    engine: Any,
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray,
    out: np.ndarray,
    stride: tuple[int, int],
    pads: tuple[int, int],
) -> None:
    """out = conv2d(x, w, bias) by blocks of im2col and BLAS (x (N, C, H, W), w (O, C, kH,
    kW), out (N, O, H', W'), zero padding ``pads`` (top, left) before, the rest implied)."""
    n, c_in = x.shape[:2]
    c_out, _, kh, kw = w.shape
    h_out, w_out = out.shape[2:]
    out3 = out.reshape(n, c_out, h_out * w_out)
    k = c_in * kh * kw
    wb = np.empty((c_out, k + 1), dtype=x.dtype)
    wb[:, :k] = w.reshape(c_out, k)
    wb[:, k] = bias
    tasks.park()
    if _pointwise(w, stride, pads, x, out):
        if c_in > c_out:  # the bias added after the product: a pass over the output
            np.matmul(w.reshape(c_out, c_in), x.reshape(n, c_in, -1), out=out3)
            out3 += bias[:, None]
            return
        # the pixels are the columns, the bias a row of ones below them: a pass over the
        # input, the smaller (ResNet's 1x1, 64 -> 256: adding it after the product took
        # half as long again as the product)
        cols = np.empty((n, k + 1, h_out * w_out), dtype=x.dtype)
        cols[:, :k] = x.reshape(n, k, -1)
        cols[:, k] = 1
        np.matmul(wb, cols, out=out3)
        return
    buffer = _buffer(n, h_out, w_out, k + 1, c_out, x.dtype)
    for n0, pictures, i0, rows in _blocks(n, h_out, w_out, k + 1, c_out):
        size = rows * w_out
        cols = buffer[: (k + 1) * pictures * size].reshape(k + 1, pictures, size)
        cols[k] = 1
        engine.im2col(x, cols, n0, i0, kh, kw, w_out, *stride, *pads)
        tasks.park()
        cols2 = cols.reshape(k + 1, pictures * size)
        if pictures == 1:
            np.matmul(wb, cols2, out=out3[n0, :, i0 * w_out : i0 * w_out + size])
        else:  # one product for the pictures, their outputs then put in their places
            product = np.matmul(wb, cols2).reshape(c_out, pictures, size)
            out3[n0 : n0 + pictures] = product.transpose(1, 0, 2)


def backward(
    engine: Any,
    x: np.ndarray,
    w: np.ndarray,
    grad_out: np.ndarray,
    stride: tuple[int, int],
    pads: tuple[int, int],
    grad_input: bool = True,
) -> tuple[np.ndarray | None, np.ndarray]:
    """(grad_x, grad_w) of :func:`forward` for the incoming gradient ``grad_out``; grad_w
    in float64 (summed over the blocks' products); without ``grad_input``, grad_x None
    (the kernel gradient's product alone: another path gives the input's)."""
    n, c_in = x.shape[:2]
    c_out, _, kh, kw = w.shape
    h_out, w_out = grad_out.shape[2:]
    k = c_in * kh * kw
    g3 = grad_out.reshape(n, c_out, h_out * w_out)
    grad_w = np.zeros((c_out, k), dtype=np.float64)
    tasks.park()
    if _pointwise(w, stride, pads, x, grad_out):
        x3 = x.reshape(n, c_in, -1)
        grad_x = np.matmul(w.reshape(c_out, c_in).T, g3).reshape(x.shape) if grad_input else None
        grad_w += np.matmul(g3, x3.transpose(0, 2, 1)).sum(axis=0, dtype=np.float64)
        return grad_x, grad_w.reshape(w.shape)
    w_t = np.ascontiguousarray(w.reshape(c_out, k).T)
    grad_x = np.zeros_like(x) if grad_input else None
    threaded = engine.threaded and tasks.threads() > 1
    product = np.empty((c_out, k), dtype=x.dtype)
    buffer = _buffer(n, h_out, w_out, k, c_out, x.dtype)
    for n0, pictures, i0, rows in _blocks(n, h_out, w_out, k, c_out):
        size = rows * w_out
        cols = buffer[: k * pictures * size].reshape(k, pictures, size)
        engine.im2col(x, cols, n0, i0, kh, kw, w_out, *stride, *pads)
        cols2 = cols.reshape(k, pictures * size)
        if pictures == 1:
            g = g3[n0, :, i0 * w_out : i0 * w_out + size]
        else:  # the pictures side by side, as in cols
            g = g3[n0 : n0 + pictures].transpose(1, 0, 2).reshape(c_out, pictures * size)
        if not grad_input:  # in bands of columns, the same whatever the threads
            with blas.one_thread():
                if threaded:
                    tasks.run(_columns_product, g, cols2.T, product)
                else:
                    _columns_product(g, cols2.T, product, 0, 1)
        else:
            tasks.park()
            np.matmul(g, cols2.T, out=product)
        grad_w += product
        if grad_input:
            np.matmul(w_t, g, out=cols2)  # the columns' gradient, in the same buffer
            engine.col2im(cols, grad_x, n0, i0, kh, kw, w_out, *stride, *pads)
            tasks.park()
    return grad_x, grad_w.reshape(w.shape)


def _columns_product(a, b, out, part, parts) -> None:
    """The share ``part`` of ``parts`` of ``out = a @ b``, in BANDS bands of columns, each
    one product (a band of rows would pack all of b each): the bands are the same
    whatever the share, so the bytes are too (OpenBLAS's sums differ in the last bits
    between a whole product and its bands)."""
    bands = min(BANDS, b.shape[1])
    for band in range(part * bands // parts, (part + 1) * bands // parts):
        c0, c1 = band * b.shape[1] // bands, (band + 1) * b.shape[1] // bands
        np.matmul(a, b[:, c0:c1], out=out[:, c0:c1])
