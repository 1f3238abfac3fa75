"""The public array API: convolution, ReLU and pooling, each beside its backward.

Layout is torch's: images (N, C, H, W), kernels (C_out, C_in, kH, kW), bias
(C_out,). A 2-D (H, W) image with a 2-D (kH, kW) kernel gives a 2-D result, and a
(C, H, W) image gives (C_out, H', W').

dtype policy, stated once: float32 and float64 are kept (the result has the
image's float type, the kernel is cast to it); float16 becomes float32; anything
else (integers, bools) becomes float64.

"Convolution" means cross-correlation, as in the chapter and in torch;
``flip=True`` rotates the kernel 180 degrees first, giving the mathematical
convolution. Padding here is zero padding.

Every function validates and normalises its arguments, then hands contiguous
arrays to the jitted kernels of :mod:`convtool._core` (imported on first use, so
that importing this module stays cheap).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from convtool.shapes import PaddingSpec, as_pair, output_size_padded, resolve_padding

ArrayLike = Any


def _core():
    # the ahead-of-time compiled copy of the same kernels, when a command switched it on
    from convtool.core import aot as _aot

    compiled = _aot.active()
    if compiled is not None:
        return compiled
    from convtool.core import loops as _core

    return _core


def _float_dtype(dtype: np.dtype) -> np.dtype:
    if dtype in (np.float32, np.float64):
        return np.dtype(dtype)
    if dtype == np.float16:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def _as_image(x: ArrayLike, name: str = "image") -> tuple[np.ndarray, int]:
    """Return x as a contiguous (N, C, H, W) float array and its original ndim."""
    x = np.asarray(x)
    if x.ndim not in (2, 3, 4):
        raise ValueError(f"{name} must be (H, W), (C, H, W) or (N, C, H, W); got shape {x.shape}")
    if 0 in x.shape:
        raise ValueError(f"{name} is empty: shape {x.shape}")
    x4 = x.reshape((1,) * (4 - x.ndim) + x.shape)
    return np.ascontiguousarray(x4, dtype=_float_dtype(x.dtype)), x.ndim


def _as_kernel(w: ArrayLike, dtype: np.dtype, c_in: int) -> np.ndarray:
    """Return w as a contiguous (C_out, C_in, kH, kW) array of ``dtype``."""
    w = np.asarray(w)
    if w.ndim == 2:
        w = w[None, None]
    elif w.ndim != 4:
        raise ValueError(f"kernel must be (kH, kW) or (C_out, C_in, kH, kW); got shape {w.shape}")
    if 0 in w.shape:
        raise ValueError(f"kernel is empty: shape {w.shape}")
    if w.shape[1] != c_in:
        raise ValueError(
            f"kernel takes {w.shape[1]} input channel(s) but the image has {c_in}; "
            f"a multi-channel image needs a (C_out, {c_in}, kH, kW) kernel"
        )
    if not np.all(np.isfinite(w)):
        bad = w[~np.isfinite(w)].flat[0]
        raise ValueError(f"kernel holds a non-finite value ({bad}); kernels must be finite")
    return np.ascontiguousarray(w, dtype=dtype)


def _as_bias(b: ArrayLike | None, dtype: np.dtype, c_out: int) -> np.ndarray:
    if b is None:
        return np.zeros(c_out, dtype=dtype)
    b = np.asarray(b, dtype=dtype).reshape(-1)
    if b.size == 1 and c_out > 1:
        b = np.repeat(b, c_out)
    if b.shape != (c_out,):
        raise ValueError(f"bias must have one value per output channel ({c_out}); got {b.size}")
    if not np.all(np.isfinite(b)):
        raise ValueError("bias holds a non-finite value; it must be finite")
    return np.ascontiguousarray(b)


def _stride(stride: int | tuple[int, int]) -> tuple[int, int]:
    sh, sw = as_pair(stride, "stride")
    if sh < 1 or sw < 1:
        raise ValueError(f"stride must be at least 1, got {stride!r}")
    return sh, sw


def _restore(y: np.ndarray, ndim: int) -> np.ndarray:
    """Give a (N, C, H, W) result the caller's dimensionality back."""
    if ndim == 4:
        return y
    if ndim == 3 or y.shape[1] > 1:
        return y[0]
    return y[0, 0]


def _conv_geometry(x4, w4, stride, padding):
    sh, sw = _stride(stride)
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
    phase becomes a channel (c*sw + p) with the kernel's matching columns. Exact:
    only the order of the additions changes.
    """
    n, c_in, height, width = x4.shape
    c_out, _, kh, kw = w4.shape
    taps = -(-kw // sw)
    cols = w_out + taps - 1
    padded = np.zeros((n, c_in, height, cols * sw), dtype=x4.dtype)
    keep = min(width, cols * sw - pad_left)
    padded[..., pad_left : pad_left + keep] = x4[..., :keep]
    x_phases = padded.reshape(n, c_in, height, cols, sw).transpose(0, 1, 4, 2, 3)
    x_phases = np.ascontiguousarray(x_phases).reshape(n, c_in * sw, height, cols)
    w_wide = np.zeros((c_out, c_in, kh, taps * sw), dtype=w4.dtype)
    w_wide[..., :kw] = w4
    w_phases = w_wide.reshape(c_out, c_in, kh, taps, sw).transpose(0, 1, 4, 2, 3)
    return x_phases, np.ascontiguousarray(w_phases).reshape(c_out, c_in * sw, kh, taps)


def conv2d(
    x: ArrayLike,
    w: ArrayLike,
    b: ArrayLike | None = None,
    *,
    stride: int | tuple[int, int] = 1,
    padding: PaddingSpec = 0,
    flip: bool = False,
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
    x4, ndim = _as_image(x)
    w4 = _as_kernel(w, x4.dtype, x4.shape[1])
    if flip:
        w4 = np.ascontiguousarray(w4[:, :, ::-1, ::-1])
    bias = _as_bias(b, x4.dtype, w4.shape[0])
    (sh, sw), (pt, pl), (h_out, w_out) = _conv_geometry(x4, w4, stride, padding)
    out = np.empty((x4.shape[0], w4.shape[0], h_out, w_out), dtype=x4.dtype)
    if sw > 1:
        x4, w4 = _column_phases(x4, w4, sw, pl, w_out)
        pl = 0
    _core().conv2d_forward(x4, w4, bias, out, sh, pt, pl)
    return _restore(out, ndim)


def _grad_chunks(rows: int) -> int:
    import numba

    return max(1, min(rows, 4 * numba.get_num_threads()))


def conv2d_backward(
    x: ArrayLike,
    w: ArrayLike,
    grad_out: ArrayLike,
    *,
    stride: int | tuple[int, int] = 1,
    padding: PaddingSpec = 0,
    flip: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of ``sum(grad_out * conv2d(x, w, b, ...))`` with respect to x, w and b.

    Computed as the chapter's 17.3 derives them, with no averaging over the batch:

    - input: for stride > 1 the incoming gradient is first spread onto a stride-1
      grid with zeros between its rows and columns; it is then zero-padded by
      K - 1 - P and correlated with the 180-degree rotated kernels, input and
      output channels swapped (summing over output channels);
    - kernel: the input correlated with the incoming gradient;
    - bias: the sum of the incoming gradient.

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
    x4, ndim = _as_image(x)
    w_in = np.asarray(w)
    w4 = _as_kernel(w_in, x4.dtype, x4.shape[1])
    if flip:
        w4 = np.ascontiguousarray(w4[:, :, ::-1, ::-1])
    (sh, sw), (pt, pl), (h_out, w_out) = _conv_geometry(x4, w4, stride, padding)
    n, c_in = x4.shape[:2]
    c_out, _, kh, kw = w4.shape
    expected = (n, c_out, h_out, w_out)
    g = np.asarray(grad_out)
    try:
        g4 = np.ascontiguousarray(g.reshape(expected), dtype=x4.dtype)
    except ValueError:
        raise ValueError(
            f"grad_out has shape {g.shape} but the convolution's output is {expected}"
        ) from None
    core = _core()

    # input gradient: rotated kernels over the zero-spread, zero-padded gradient
    spread = g4
    if sh > 1 or sw > 1:
        spread = np.zeros((n, c_out, (h_out - 1) * sh + 1, (w_out - 1) * sw + 1), dtype=x4.dtype)
        spread[:, :, ::sh, ::sw] = g4
    w_rot = np.ascontiguousarray(w4[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    grad_x = np.empty_like(x4)
    core.conv2d_forward(
        spread, w_rot, np.zeros(c_in, x4.dtype), grad_x, 1, kh - 1 - pt, kw - 1 - pl
    )

    # kernel gradient: the input correlated with the incoming gradient
    xs, taps = x4, kw
    if sw > 1:
        xs, _ = _column_phases(x4, w4, sw, pl, w_out)
        taps, pl = -(-kw // sw), 0
    partial = np.zeros((_grad_chunks(n * h_out), c_out, xs.shape[1], kh, taps), dtype=np.float64)
    core.conv2d_grad_weight(xs, g4, partial, sh, pt, pl)
    grad_w = partial.sum(axis=0)
    if sw > 1:  # phase p, tap q -> kernel column q*sw + p
        grad_w = grad_w.reshape(c_out, c_in, sw, kh, taps).transpose(0, 1, 3, 4, 2)
        grad_w = grad_w.reshape(c_out, c_in, kh, taps * sw)[..., :kw]
    grad_w = grad_w.astype(x4.dtype)
    if flip:
        grad_w = grad_w[:, :, ::-1, ::-1]
    grad_b = g4.sum(axis=(0, 2, 3), dtype=np.float64).astype(x4.dtype)
    return _restore(grad_x, ndim).reshape(np.shape(x)), grad_w.reshape(w_in.shape), grad_b


def relu(x: ArrayLike) -> np.ndarray:
    """max(x, 0), elementwise, keeping a float dtype.

    >>> relu(np.array([-1.0, 0.0, 2.0])).tolist()
    [0.0, 0.0, 2.0]
    """
    x = np.asarray(x)
    return np.maximum(x, 0, dtype=_float_dtype(x.dtype))


def relu_backward(x: ArrayLike, grad_out: ArrayLike) -> np.ndarray:
    """Gradient of ReLU: grad_out where x > 0, else 0 (the subgradient at 0 is 0, as torch).

    >>> relu_backward(np.array([-1.0, 0.0, 2.0]), np.ones(3)).tolist()
    [0.0, 0.0, 1.0]
    """
    x = np.asarray(x)
    g = np.asarray(grad_out, dtype=_float_dtype(x.dtype))
    if g.shape != x.shape:
        raise ValueError(f"grad_out has shape {g.shape} but x has shape {x.shape}")
    return np.where(x > 0, g, np.zeros((), g.dtype))


def _pool_geometry(x4, size, stride, padding, ceil_mode):
    kh, kw = as_pair(size, "size")
    if kh < 1 or kw < 1:
        raise ValueError(f"pool size must be at least 1, got {size!r}")
    sh, sw = _stride(size if stride is None else stride)
    ph, pw = as_pair(padding, "padding")
    if ph < 0 or pw < 0:
        raise ValueError(f"padding must not be negative, got {padding!r}")
    if 2 * ph > kh or 2 * pw > kw:
        raise ValueError(f"padding {padding!r} must be at most half the pool size {size!r}")
    h, w = x4.shape[2:]
    try:
        h_out = output_size_padded(h, kh, sh, ph, ph, ceil_mode=ceil_mode)
        w_out = output_size_padded(w, kw, sw, pw, pw, ceil_mode=ceil_mode)
    except ValueError:
        raise ValueError(
            f"pool window is {kh}x{kw} but the padded image is only {h + 2 * ph}x{w + 2 * pw}"
        ) from None
    # with ceil_mode the last window may reach past the padding; torch's divisor
    # then counts only up to the padded edge, which these 'after' amounts encode
    return (kh, kw), (sh, sw), (ph, pw), (h_out, w_out)


def _pool_out(x4, shape):
    return np.empty((*x4.shape[:2], *shape), dtype=x4.dtype)


def max_pool2d(
    x: ArrayLike,
    size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
    ceil_mode: bool = False,
) -> np.ndarray:
    """Maximum over each window, per channel, as torch's ``max_pool2d``.

    ``stride`` defaults to ``size``; padding (at most half the window) never wins.

    >>> x = np.arange(16.0).reshape(4, 4)
    >>> max_pool2d(x, 2).tolist()
    [[5.0, 7.0], [13.0, 15.0]]
    """
    out, _ = _max_pool(x, size, stride, padding, ceil_mode)
    return out


def _max_pool(x, size, stride, padding, ceil_mode):
    x4, ndim = _as_image(x)
    (kh, kw), (sh, sw), (ph, pw), shape = _pool_geometry(x4, size, stride, padding, ceil_mode)
    out = _pool_out(x4, shape)
    argmax = np.empty(out.shape, dtype=np.int64)
    _core().max_pool2d_forward(x4, out, argmax, kh, kw, sh, sw, ph, pw)
    return _restore_pool(out, ndim), argmax


def _restore_pool(y: np.ndarray, ndim: int) -> np.ndarray:
    return y.reshape(y.shape[4 - ndim :])


def max_pool2d_backward(
    x: ArrayLike,
    grad_out: ArrayLike,
    size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
    ceil_mode: bool = False,
) -> np.ndarray:
    """Gradient of :func:`max_pool2d`: each window's gradient goes to its first maximum.

    Overlapping windows that share a maximum add their gradients there.

    >>> x = np.arange(16.0).reshape(4, 4)
    >>> max_pool2d_backward(x, np.ones((2, 2)), 2)[1].tolist()
    [0.0, 1.0, 0.0, 1.0]
    """
    x4, _ = _as_image(x)
    out, argmax = _max_pool(x4, size, stride, padding, ceil_mode)
    g4 = _pool_grad(grad_out, out.shape, x4.dtype)
    grad_x = np.zeros_like(x4)
    _core().max_pool2d_backward(g4, argmax, grad_x)
    return grad_x.reshape(np.shape(x))


def _pool_grad(grad_out, shape, dtype):
    g = np.asarray(grad_out)
    if g.size != int(np.prod(shape)):
        raise ValueError(f"grad_out has shape {g.shape} but the pooling's output is {shape}")
    return np.ascontiguousarray(g.reshape(shape), dtype=dtype)


def _avg_args(x4, size, stride, padding, ceil_mode):
    (kh, kw), (sh, sw), (ph, pw), shape = _pool_geometry(x4, size, stride, padding, ceil_mode)
    return shape, (kh, kw, sh, sw, ph, pw, ph, pw)


def avg_pool2d(
    x: ArrayLike,
    size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
    ceil_mode: bool = False,
) -> np.ndarray:
    """Mean over each window, per channel, as torch's ``avg_pool2d``.

    Padding counts as zeros in the mean (torch's default ``count_include_pad``);
    with ``ceil_mode`` a window reaching past the padding divides by the part
    that lies within it, as torch does.

    >>> x = np.arange(16.0).reshape(4, 4)
    >>> avg_pool2d(x, 2).tolist()
    [[2.5, 4.5], [10.5, 12.5]]
    """
    x4, ndim = _as_image(x)
    shape, args = _avg_args(x4, size, stride, padding, ceil_mode)
    out = _pool_out(x4, shape)
    _core().avg_pool2d_forward(x4, out, *args)
    return _restore_pool(out, ndim)


def avg_pool2d_backward(
    x: ArrayLike,
    grad_out: ArrayLike,
    size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
    ceil_mode: bool = False,
) -> np.ndarray:
    """Gradient of :func:`avg_pool2d`: each window's gradient shared evenly over it.

    >>> avg_pool2d_backward(np.zeros((2, 2)), np.ones((1, 1)), 2).tolist()
    [[0.25, 0.25], [0.25, 0.25]]
    """
    x4, _ = _as_image(x)
    shape, args = _avg_args(x4, size, stride, padding, ceil_mode)
    g4 = _pool_grad(grad_out, (*x4.shape[:2], *shape), x4.dtype)
    grad_x = np.zeros_like(x4)
    _core().avg_pool2d_backward(g4, grad_x, *args)
    return grad_x.reshape(np.shape(x))
