"""conv2d beside conv2d_backward: multi-channel 2-D cross-correlation and its gradients."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from convtool.core import blocked, gemm, winograd
from convtool.core.engine import or_jit, reduction_chunks
from convtool.core.plan import (
    WINOGRAD_TILES,
    paths_for,
    plan_backward,
    plan_channels,
    plan_filter,
    plan_layer,
    winograd_fits,
)
from convtool.core.plan import run as run_plan
from convtool.ops._checks import ArrayLike, as_bias, as_image, as_kernel, as_stride, restore
from convtool.shapes import PaddingSpec, output_size_padded, resolve_padding

if TYPE_CHECKING:
    from convtool.core.engine import Engine


def _conv_geometry(x4, w4, stride, padding):
    sh, sw = as_stride(stride)
    kh, kw = w4.shape[2:]
    h, w = x4.shape[2:]
    pt, pb, pl, pr = resolve_padding(padding, (h, w), (kh, kw), (sh, sw))
    try:
        h_out = output_size_padded(h, kh, sh, pt, pb)
        w_out = output_size_padded(w, kw, sw, pl, pr)
    except ValueError:
        raise ValueError(
            f"kernel is {kh}x{kw} but the padded image is only {h + pt + pb}x{w + pl + pr}"
        ) from None
    return (sh, sw), (pt, pl), (h_out, w_out)


def _column_phases(x4: np.ndarray, w4: np.ndarray, sw: int, pad_left: int, w_out: int):
    """Rewrite a column stride ``sw`` as extra input channels, so the core needs none.

    sum_b w[b] * x[j*sw + b - pl] = sum_p sum_q w[q*sw + p] * xp_p[j + q], where
    xp is x with pl zeros in front and xp_p[m] = xp[m*sw + p] its p-th phase. Each
    phase becomes a channel (c*P + p) with the kernel's matching columns. Only the
    phases p < kW hold weights: a stride wider than the kernel skips the others, so
    the phases take memory in proportion to the output, not to the stride. Exact:
    only the order of the additions changes.
    """
    n, c_in, height, width = x4.shape
    c_out, _, kh, kw = w4.shape
    taps = -(-kw // sw)
    cols = w_out + taps - 1
    phases = min(sw, kw)
    x_phases = np.zeros((n, c_in, phases, height, cols), dtype=x4.dtype)
    w_phases = np.zeros((c_out, c_in, phases, kh, taps), dtype=w4.dtype)
    for p in range(phases):
        # xp_p[m] is x[m*sw + p - pl]: the m whose column lies inside the picture
        first = max(0, -(-(pad_left - p) // sw))
        last = min(cols, (width - 1 - p + pad_left) // sw + 1)
        if last > first:
            start = first * sw + p - pad_left
            x_phases[:, :, p, :, first:last] = x4[
                ..., start : start + (last - first - 1) * sw + 1 : sw
            ]
        w_phases[:, :, p, :, : len(range(p, kw, sw))] = w4[..., p::sw]  # tap q: column q*sw + p
    return (
        x_phases.reshape(n, c_in * phases, height, cols),
        w_phases.reshape(c_out, c_in * phases, kh, taps),
    )


def _winograd(core, x4, w4, bias, out, pads, tile) -> None:
    """out by the Winograd path (3x3, stride 1), or by GEMM's where x4 holds a non-finite
    value: Winograd's patches would spread it past its windows, GEMM's keep it there."""
    if not winograd.forward(core, x4, w4, bias, out, pads, tile):
        gemm.forward(core, x4, w4, bias, out, (1, 1), pads)


def _on_winograd_grid(w4: np.ndarray, stride, origin, tile: int) -> bool:
    """Whether a Winograd path runs this call: a layer it fits, whose output starts on
    the whole output's grid of ``tile`` x ``tile`` blocks (a tile cut on that grid gives
    the whole's bytes; another tile takes the GEMM path)."""
    return winograd_fits(w4.shape, stride) and origin[0] % tile == 0 and origin[1] % tile == 0


def _weights64(w: ArrayLike, flip: bool) -> np.ndarray:
    """The kernel in float64, as given (the planner factors it before any rounding to
    the image's type): (kH, kW) for one channel, else (C_out, C_in, kH, kW)."""
    w64 = np.asarray(w, dtype=np.float64)
    if w64.ndim != 4 or w64.shape[:2] == (1, 1):
        w64 = w64.reshape(w64.shape[-2:])
    return w64[..., ::-1, ::-1] if flip else w64


def conv2d(
    x: ArrayLike,
    w: ArrayLike,
    b: ArrayLike | None = None,
    *,
    stride: int | tuple[int, int] = 1,
    padding: PaddingSpec = 0,
    flip: bool = False,
    engine: Engine | None = None,
    origin: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """Multi-input, multi-output 2-D cross-correlation with zero padding.

    ``out[n, o, i, j] = b[o] + sum_{c, a, b} w[o, c, a, b] * x[n, c, i*s + a - p, j*s + b - p]``

    Parameters
    ----------
    x : array, (H, W), (C, H, W) or (N, C, H, W)
        The image(s).
    w : array, (kH, kW) or (C_out, C_in, kH, kW)
        The kernel(s); C_in must equal the image's channel count.
    b : array (C_out,) or scalar, optional
        One bias per output channel.
    stride : int or (int, int)
        Step between windows.
    padding : int, (int, int), 'valid' or 'same'
        Zeros around the image. 'same' gives ``ceil(size / stride)`` outputs; an
        odd total is split with the extra row/column after (as torch, TensorFlow).
    flip : bool
        Rotate the kernel 180 degrees first (mathematical convolution).
    engine : convtool.core.engine.Engine, optional
        What runs the kernel: None (the default) is numba's JIT; the compiled core
        (:func:`convtool.core.engine.compiled`) starts faster, on one thread.
    origin : (int, int)
        Where the result's first row and column lie in a larger output that this one
        is a tile of: paths that work in blocks (:mod:`convtool.core.plan`) anchor them
        on the larger output's grid, so tiles give its bytes.

    Returns
    -------
    ndarray
        (N, C_out, H', W') for a 4-D image, (C_out, H', W') for a 3-D one, and
        (H', W') for a 2-D image with a single output channel.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(16, dtype=np.float32).reshape(4, 4)
    >>> conv2d(x, np.ones((3, 3))).tolist()
    [[45.0, 54.0], [81.0, 90.0]]
    >>> conv2d(x, np.ones((3, 3)), padding="same").shape
    (4, 4)
    """
    x4, ndim = as_image(x)
    w4 = as_kernel(w, x4.dtype, x4.shape[1])
    if flip:
        w4 = np.ascontiguousarray(w4[:, :, ::-1, ::-1])
    bias = as_bias(b, x4.dtype, w4.shape[0])
    (sh, sw), (pt, pl), (h_out, w_out) = _conv_geometry(x4, w4, stride, padding)
    out = np.empty((x4.shape[0], w4.shape[0], h_out, w_out), dtype=x4.dtype)
    path = plan_layer(w4.shape, (sh, sw), paths_for(or_jit(engine)))
    tile = WINOGRAD_TILES.get(path)
    if tile and _on_winograd_grid(w4, (sh, sw), origin, tile):
        _winograd(or_jit(engine), x4, w4, bias, out, (pt, pl), tile)
        return restore(out, ndim)
    if path == "gemm" or tile:
        gemm.forward(or_jit(engine), x4, w4, bias, out, (sh, sw), (pt, pl))
        return restore(out, ndim)
    if path == "blocked":
        blocked.forward(or_jit(engine), x4, w4, bias, out, (sh, sw), (pt, pl))
        return restore(out, ndim)
    plan = None
    if w4.shape[:2] == (1, 1):  # one channel: the planner may pick a cheaper exact path
        w64 = _weights64(w, flip)
        plan = plan_filter(w64, x4.dtype, (sh, sw))
    elif w4.shape[2] * w4.shape[3] > 9:  # channel pairs, each on its path, may pay
        w64 = _weights64(w, flip)
        plan = plan_channels(w64, x4.dtype, (sh, sw))
    if plan is not None and plan.path != "direct":
        run_plan(plan, or_jit(engine), x4, bias, out, (sh, sw), (pt, pl), origin, w64)
        return restore(out, ndim)
    if sw > 1:
        x4, w4 = _column_phases(x4, w4, sw, pl, w_out)
        pl = 0
    or_jit(engine).conv2d_forward(x4, w4, bias, out, sh, pt, pl)
    return restore(out, ndim)


def conv2d_backward(
    x: ArrayLike,
    w: ArrayLike,
    grad_out: ArrayLike,
    *,
    stride: int | tuple[int, int] = 1,
    padding: PaddingSpec = 0,
    flip: bool = False,
    engine: Engine | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of ``sum(grad_out * conv2d(x, w, b, ...))`` with respect to x, w and b.

    Computed as the chapter's 17.3 derives them, with no averaging over the batch:

    - input: for stride > 1 the incoming gradient is first spread onto a stride-1
      grid with zeros between its rows and columns; it is then zero-padded by
      K - 1 - P and correlated with the 180-degree rotated kernels, input and
      output channels swapped (summing over output channels);
    - kernel: the input correlated with the incoming gradient;
    - bias: the sum of the incoming gradient.

    The arguments are :func:`conv2d`'s (``engine`` runs both gradients' kernels).

    Returns
    -------
    (grad_x, grad_w, grad_b)
        Shaped like ``x``, like ``w`` and (C_out,).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(16.0).reshape(4, 4)
    >>> gx, gw, gb = conv2d_backward(x, np.ones((3, 3)), np.ones((2, 2)))
    >>> gw.tolist()
    [[10.0, 14.0, 18.0], [26.0, 30.0, 34.0], [42.0, 46.0, 50.0]]
    >>> gb.tolist()
    [4.0]
    """
    x4, ndim = as_image(x)
    w_in = np.asarray(w)
    w4 = as_kernel(w_in, x4.dtype, x4.shape[1])
    if flip:
        w4 = np.ascontiguousarray(w4[:, :, ::-1, ::-1])
    (sh, sw), (pt, pl), (h_out, w_out) = _conv_geometry(x4, w4, stride, padding)
    expected = (x4.shape[0], w4.shape[0], h_out, w_out)
    g = np.asarray(grad_out)
    try:
        g4 = np.ascontiguousarray(g.reshape(expected), dtype=x4.dtype)
    except ValueError:
        raise ValueError(
            f"grad_out has shape {g.shape} but the convolution's output is {expected}"
        ) from None
    core = or_jit(engine)
    w_path, x_path = plan_backward(w4.shape, (sh, sw), "blocked" in paths_for(core))
    if w_path == "gemm":
        both = x_path == "gemm"  # else the input gradient on its own path
        grad_x, grad_w = gemm.backward(core, x4, w4, g4, (sh, sw), (pt, pl), grad_input=both)
        if not both:
            grad_x = _grad_input(core, x4, w4, g4, (sh, sw), (pt, pl), x_path)
        return _gradients(core, x, w_in, g4, grad_x, grad_w, flip, ndim)
    grad_x = _grad_input(core, x4, w4, g4, (sh, sw), (pt, pl), x_path)
    if w_path == "blocked":
        grad_w = blocked.grad_weight(core, x4, g4, w4.shape, (sh, sw), (pt, pl))
    else:
        grad_w = _grad_weight(core, x4, w4, g4, (sh, sw), (pt, pl))
    return _gradients(core, x, w_in, g4, grad_x, grad_w, flip, ndim)


def _grad_input(core, x4, w4, g4, stride, pads, path):
    """The input gradient: the rotated kernels, input and output channels swapped, over
    the zero-spread, zero-padded incoming gradient (on the register-blocked or a
    Winograd path for ``path`` 'blocked', 'winograd' or 'winograd4', at stride 1 and
    padding within the kernel)."""
    (sh, sw), (pt, pl) = stride, pads
    n, c_out, h_out, w_out = g4.shape
    c_in, kh, kw = w4.shape[1:]
    w_rot = np.ascontiguousarray(w4[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    grad_x = np.empty_like(x4)
    zeros = np.zeros(c_in, x4.dtype)
    inside = pt < kh and pl < kw  # the rotated layer's padding is not negative
    pads = (kh - 1 - pt, kw - 1 - pl)
    if stride == (1, 1) and inside and path == "blocked":
        blocked.forward(core, g4, w_rot, zeros, grad_x, stride, pads)
        return grad_x
    if inside and path in WINOGRAD_TILES and winograd_fits(w_rot.shape, stride):
        _winograd(core, g4, w_rot, zeros, grad_x, pads, WINOGRAD_TILES[path])
        return grad_x
    spread = g4
    if sh > 1 or sw > 1:
        spread = np.zeros((n, c_out, (h_out - 1) * sh + 1, (w_out - 1) * sw + 1), dtype=x4.dtype)
        spread[:, :, ::sh, ::sw] = g4
    core.conv2d_forward(spread, w_rot, zeros, grad_x, 1, kh - 1 - pt, kw - 1 - pl)
    return grad_x


def _grad_weight(core, x4, w4, g4, stride, pads):
    """The kernel gradient (float64) by the direct path: the input correlated with the
    incoming gradient."""
    (sh, sw), (pt, pl) = stride, pads
    n, c_out, h_out, w_out = g4.shape
    c_in, kh, kw = w4.shape[1:]
    xs, taps = x4, kw
    if sw > 1:
        xs, _ = _column_phases(x4, w4, sw, pl, w_out)
        taps, pl = -(-kw // sw), 0
    chunks = reduction_chunks(n * h_out)
    partial = np.zeros((chunks, c_out, xs.shape[1], kh, taps), dtype=np.float64)
    core.conv2d_grad_weight(xs, g4, partial, sh, pt, pl)
    grad_w = partial.sum(axis=0)
    if sw > 1:  # phase p, tap q -> kernel column q*sw + p (a stride past kW: q = 0)
        phases = min(sw, kw)
        grad_w = grad_w.reshape(c_out, c_in, phases, kh, taps).transpose(0, 1, 3, 4, 2)
        grad_w = grad_w.reshape(c_out, c_in, kh, taps * phases)[..., :kw]
    return grad_w


def _gradients(core, x, w_in, g4, grad_x, grad_w, flip, ndim):
    """The three gradients in the caller's shapes and dtype (grad_w given in float64);
    the bias's, each plane of the incoming gradient summed in float64 by ``core``, the
    pictures' sums then added in order."""
    grad_w = grad_w.astype(grad_x.dtype)
    if flip:
        grad_w = grad_w[:, :, ::-1, ::-1]
    sums = np.empty(g4.shape[0] * g4.shape[1], dtype=np.float64)
    core.plane_sums(g4, sums)
    grad_b = sums.reshape(g4.shape[:2]).sum(axis=0).astype(grad_x.dtype)
    return restore(grad_x, ndim).reshape(np.shape(x)), grad_w.reshape(w_in.shape), grad_b
