"""Colour to grey: the one luma formula every command uses."""

from __future__ import annotations

from typing import Any

import numpy as np

_LUMA = np.array([0.299, 0.587, 0.114])


def to_gray(data: Any) -> np.ndarray:
    """ITU-R 601 luma, 0.299 R + 0.587 G + 0.114 B, as float32 (H, W).

    (H, W, C) with C >= 3 uses the first three channels; grey (H, W) or
    (H, W, 1) comes back as it is, (H, W, 2) as its first channel. Computed in
    float64, returned as float32.

    >>> to_gray(np.ones((1, 2, 3))).tolist()
    [[1.0, 1.0]]
    """
    a = np.asarray(data)
    if a.ndim == 2:
        return a.astype(np.float32)
    if a.ndim != 3 or a.shape[2] == 0:
        raise ValueError(f"to_gray needs (H, W) or (H, W, C); got shape {a.shape}")
    if a.shape[2] < 3:
        return a[:, :, 0].astype(np.float32)
    # channel by channel, not a matrix product: BLAS rounds a pixel by its place in the
    # array, and a pixel's luma must not depend on the picture's size (tiled filtering)
    luma = a[:, :, 0].astype(np.float64) * _LUMA[0]
    luma += a[:, :, 1].astype(np.float64) * _LUMA[1]
    luma += a[:, :, 2].astype(np.float64) * _LUMA[2]
    return luma.astype(np.float32)
