"""The pools, each beside its backward: max_pool2d, avg_pool2d, as torch's."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from convtool.core.engine import or_jit
from convtool.ops._checks import ArrayLike, as_image, as_stride
from convtool.shapes import as_pair, output_size_padded

if TYPE_CHECKING:
    from convtool.core.engine import Engine


def _pool_geometry(x4, size, stride, padding, ceil_mode):
    kh, kw = as_pair(size, "size")
    if kh < 1 or kw < 1:
        raise ValueError(f"pool size must be at least 1, got {size!r}")
    sh, sw = as_stride(size if stride is None else stride)
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
    *,
    engine: Engine | None = None,
) -> np.ndarray:
    """Maximum over each window, per channel, as torch's ``max_pool2d``.

    ``stride`` defaults to ``size``; padding (at most half the window) never wins.
    ``engine``: what runs the kernel, as in :func:`convtool.ops.conv2d` (every pool
    takes it).

    >>> x = np.arange(16.0).reshape(4, 4)
    >>> max_pool2d(x, 2).tolist()
    [[5.0, 7.0], [13.0, 15.0]]
    """
    out, _ = _max_pool(x, size, stride, padding, ceil_mode, engine)
    return out


def _max_pool(x, size, stride, padding, ceil_mode, engine):
    x4, ndim = as_image(x)
    (kh, kw), (sh, sw), (ph, pw), shape = _pool_geometry(x4, size, stride, padding, ceil_mode)
    out = _pool_out(x4, shape)
    argmax = np.empty(out.shape, dtype=np.int64)
    or_jit(engine).max_pool2d_forward(x4, out, argmax, kh, kw, sh, sw, ph, pw)
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
    *,
    engine: Engine | None = None,
) -> np.ndarray:
    """Gradient of :func:`max_pool2d`: each window's gradient goes to its first maximum.

    Overlapping windows that share a maximum add their gradients there.

    >>> x = np.arange(16.0).reshape(4, 4)
    >>> max_pool2d_backward(x, np.ones((2, 2)), 2)[1].tolist()
    [0.0, 1.0, 0.0, 1.0]
    """
    x4, _ = as_image(x)
    out, argmax = _max_pool(x4, size, stride, padding, ceil_mode, engine)
    g4 = _pool_grad(grad_out, out.shape, x4.dtype)
    grad_x = np.zeros_like(x4)
    or_jit(engine).max_pool2d_backward(g4, argmax, grad_x)
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
    *,
    engine: Engine | None = None,
) -> np.ndarray:
    """Mean over each window, per channel, as torch's ``avg_pool2d``.

    Padding counts as zeros in the mean (torch's default ``count_include_pad``);
    with ``ceil_mode`` a window reaching past the padding divides by the part
    that lies within it, as torch does.

    >>> x = np.arange(16.0).reshape(4, 4)
    >>> avg_pool2d(x, 2).tolist()
    [[2.5, 4.5], [10.5, 12.5]]
    """
    x4, ndim = as_image(x)
    shape, args = _avg_args(x4, size, stride, padding, ceil_mode)
    out = _pool_out(x4, shape)
    or_jit(engine).avg_pool2d_forward(x4, out, *args)
    return _restore_pool(out, ndim)


def avg_pool2d_backward(
    x: ArrayLike,
    grad_out: ArrayLike,
    size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
    ceil_mode: bool = False,
    *,
    engine: Engine | None = None,
) -> np.ndarray:
    """Gradient of :func:`avg_pool2d`: each window's gradient shared evenly over it.

    >>> avg_pool2d_backward(np.zeros((2, 2)), np.ones((1, 1)), 2).tolist()
    [[0.25, 0.25], [0.25, 0.25]]
    """
    x4, _ = as_image(x)
    shape, args = _avg_args(x4, size, stride, padding, ceil_mode)
    g4 = _pool_grad(grad_out, (*x4.shape[:2], *shape), x4.dtype)
    grad_x = np.zeros_like(x4)
    or_jit(engine).avg_pool2d_backward(g4, grad_x, *args)
    return grad_x.reshape(np.shape(x))
