"""The register-blocked direct path: a layer as blocks of pixels by output channels held
in registers while the taps run past them (:mod:`convtool.core.conv_block` has the
kernels and why they are written as they are).

This path does no copy of the picture and reuses each loaded sample for CHANNELS
output channels and each loaded weight vector for a block's pixels: it suits the layers
where im2col's copy costs as much as its product (few input channels, a stride, small
pictures: VGG's conv1_1, ResNet's conv1, LeNet) and the layers of few output channels
that BLAS runs poorly. Which layers take it is the planner's choice
(:func:`convtool.core.plan.plan_layer`).

Its blocks come in two shapes (:func:`block_width`): output channels in the vector lanes,
a few pixels across the registers (its sums then turned into the output's planes, row by
row); or, for layers of few taps and long rows, a row's pixels in the lanes, a few output
channels across the registers, stored straight into the planes.

The weights are laid out for the kernels once a call: ``wv[ob, t, l]`` the weight of
output channel ``ob*CHANNELS + l`` at tap ``t = (c*kH + a)*kW + b`` (the kernel's own
order), zero past C_out; ``offs[t]`` where the tap reads in the picture, ``(c*H + a)*W + b``.

This module imports numpy only; the engine passed in runs the jitted kernels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["CHANNELS", "ROW_CHANNELS", "block_channels", "block_width", "forward"]
__all__ += ["grad_weight", "layout"]

# conv_block's (that module imports numba): output channels a block, the kernel
# gradient's taps a block and its output pixels a chunk
CHANNELS, PIXELS, SUMS = 16, 6, 512
# and its blocks of a row's pixels by ROW_CHANNELS output channels (no band to turn into
# the output's planes), for float32 rows of ROW_PIXELS and more (at 10, LeNet's conv2 ran
# 15% slower than in blocks of channels; at 12, 20% faster), at a column stride up to
# ROW_STRIDE, of ROW_TAPS taps at most: measured here on one thread, VGG's conv1_1 (27
# taps) 73 GMAC/s where blocks of channels ran 35, the foundation layer (144) 69 where
# 47, ResNet's conv1 (147) 68 where 64; deeper layers ran as fast or faster in blocks of
# channels (ResNet's 3x3/2, 576 taps: 43 where 60), reading their input rows as many
# times as they have blocks
ROW_CHANNELS, ROW_PIXELS, ROW_STRIDE, ROW_TAPS = 8, 12, 4, 256


def block_channels(c_out: int) -> int:
    """Output channels a block of the forward kernel: 2 CHANNELS where C_out rounded up to
    CHANNELS is a multiple of that (no more lanes wasted), else CHANNELS."""
    return 2 * CHANNELS if -(-c_out // CHANNELS) % 2 == 0 else CHANNELS


def block_width(shape: tuple[int, ...], dtype: Any, col_stride: int, w_out: int) -> int:
    """The forward kernel's block for a (C_out, C_in, kH, kW) layer of ``dtype`` at a column
    stride of ``col_stride`` and output rows of ``w_out``: ROW_CHANNELS (a row's pixels in
    the lanes) where that runs faster, else :func:`block_channels` (channels in the lanes)."""
    c_out, c_in, kh, kw = shape
    rows = (
        np.dtype(dtype) == np.float32
        and col_stride <= ROW_STRIDE
        and w_out >= ROW_PIXELS
        and c_in * kh * kw <= ROW_TAPS
    )
    return ROW_CHANNELS if rows else block_channels(c_out)


def layout(w: np.ndarray, dtype: Any, width: int = CHANNELS) -> np.ndarray:
    """wv (C_out blocks, C_in kH kW, ``width``) for w (C_out, C_in, kH, kW): each block of
    ``width`` output channels turned to taps by channels, channels past C_out zero (one
    turn of a matrix a block: AlexNet's conv2 0.15 ms, where reordering the taps too
    took 0.30)."""
    c_out = w.shape[0]
    blocks = -(-c_out // width)
    rows = np.asarray(w, dtype=dtype).reshape(c_out, -1)
    if blocks * width != c_out:
        rows = np.concatenate([rows, np.zeros((blocks * width - c_out, rows.shape[1]), dtype)])
    return np.ascontiguousarray(rows.reshape(blocks, width, -1).transpose(0, 2, 1))


def forward(
    engine: Any,
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray,
    out: np.ndarray,
    stride: tuple[int, int],
    pads: tuple[int, int],
) -> None:
    """out = conv2d(x, w, bias) (x (N, C, H, W), w (O, C, kH, kW), out (N, O, H', W'), zero
    padding ``pads`` (top, left) before, the rest implied by out's shape)."""
    c_out, _, kh, kw = w.shape
    wv = layout(w, x.dtype, block_width(w.shape, x.dtype, stride[1], out.shape[3]))
    padded_bias = np.zeros(wv.shape[0] * wv.shape[2], dtype=x.dtype)
    padded_bias[:c_out] = bias
    engine.conv2d_blocked(x, wv, padded_bias, out, kh, kw, *stride, *pads)


def _padded(x: np.ndarray, shape: tuple[int, int], pads: tuple[int, int]) -> np.ndarray:
    """x with zeros around it, ``shape`` (H_p, W_p) a plane, ``pads`` (top, left) before;
    rows and columns past the plane left out; x itself if that is all of it."""
    (hp, wp), (pt, pl) = shape, pads
    if (hp, wp) == x.shape[2:] and pads == (0, 0):
        return x
    # each element written once: zeros, then the picture, took twice as long (the
    # foundation layer's 8.6 MB: 0.88 ms)
    xp = np.empty((*x.shape[:2], hp, wp), dtype=x.dtype)
    part = x[:, :, : hp - pt, : wp - pl]
    bottom, right = pt + part.shape[2], pl + part.shape[3]
    xp[:, :, :pt] = 0
    xp[:, :, bottom:] = 0
    xp[:, :, pt:bottom, :pl] = 0
    xp[:, :, pt:bottom, right:] = 0
    xp[:, :, pt:bottom, pl:right] = part
    return xp


def grad_weight(
    engine: Any,
    x: np.ndarray,
    grad_out: np.ndarray,
    shape: tuple[int, int, int, int],
    stride: tuple[int, int],
    pads: tuple[int, int],
) -> np.ndarray:
    """The kernel gradient (float64, ``shape`` (O, C, kH, kW)) of :func:`forward` for the
    incoming gradient ``grad_out`` (N, O, H', W'), by blocks of taps by output channels
    (:func:`convtool.core.conv_block.grad_weight_blocked`), the chunks' sums added up in
    float64."""
    c_out, c_in, kh, kw = shape
    n, _, h_out, w_out = grad_out.shape
    (sh, sw), taps = stride, c_in * kh * kw
    xp = _padded(x, ((h_out - 1) * sh + kh, (w_out - 1) * sw + kw), pads)
    chunks = -(-n * h_out * w_out // SUMS)
    lanes = -(-c_out // CHANNELS) * CHANNELS
    partial = np.empty((chunks, lanes, -(-taps // PIXELS) * PIXELS), dtype=x.dtype)
    engine.grad_weight_blocked(xp, grad_out, partial, kh, kw, sh, sw)
    return partial.sum(axis=0, dtype=np.float64)[:c_out, :taps].reshape(shape)
