"""What every op checks first, and the dtype policy, stated once.

dtype policy: float32 and float64 are kept (the result has the image's float type,
the kernel is cast to it); float16 becomes float32; anything else (integers, bools)
becomes float64.

Arguments are validated and normalised here, naming the offending value, before any
contiguous array reaches the core's kernels; a result then gets the caller's
dimensionality back (:func:`restore`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from convtool.shapes import as_pair

ArrayLike = Any


def float_dtype(dtype: np.dtype) -> np.dtype:
    if dtype in (np.float32, np.float64):
        return np.dtype(dtype)
    if dtype == np.float16:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def as_image(x: ArrayLike, name: str = "image") -> tuple[np.ndarray, int]:
    """Return x as a contiguous (N, C, H, W) float array and its original ndim."""
    x = np.asarray(x)
    if x.ndim not in (2, 3, 4):
        raise ValueError(f"{name} must be (H, W), (C, H, W) or (N, C, H, W); got shape {x.shape}")
    if 0 in x.shape:
        raise ValueError(f"{name} is empty: shape {x.shape}")
    x4 = x.reshape((1,) * (4 - x.ndim) + x.shape)
    return np.ascontiguousarray(x4, dtype=float_dtype(x.dtype)), x.ndim


def as_kernel(w: ArrayLike, dtype: np.dtype, c_in: int) -> np.ndarray:
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
    if not np.isfinite(w).all():
        bad = w[~np.isfinite(w)].flat[0]
        raise ValueError(f"kernel holds a non-finite value ({bad}); kernels must be finite")
    return np.ascontiguousarray(w, dtype=dtype)


def as_bias(b: ArrayLike | None, dtype: np.dtype, c_out: int) -> np.ndarray:
    if b is None:
        return np.zeros(c_out, dtype=dtype)
    b = np.asarray(b, dtype=dtype).reshape(-1)
    if b.size == 1 and c_out > 1:
        b = np.repeat(b, c_out)
    if b.shape != (c_out,):
        raise ValueError(f"bias must have one value per output channel ({c_out}); got {b.size}")
    if not np.isfinite(b).all():
        raise ValueError("bias holds a non-finite value; it must be finite")
    return np.ascontiguousarray(b)


def as_stride(stride: int | tuple[int, int]) -> tuple[int, int]:
    sh, sw = as_pair(stride, "stride")
    if sh < 1 or sw < 1:
        raise ValueError(f"stride must be at least 1, got {stride!r}")
    return sh, sw


def restore(y: np.ndarray, ndim: int) -> np.ndarray:
    """Give a (N, C, H, W) result the caller's dimensionality back."""
    if ndim == 4:
        return y
    if ndim == 3 or y.shape[1] > 1:
        return y[0]
    return y[0, 0]
