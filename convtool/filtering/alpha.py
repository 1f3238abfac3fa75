"""Alpha filtered with the picture, premultiplied, as ImageMagick filters it.

A transparent pixel's colour is no colour at all: filtering the straight colour lets it
bleed into the picture (a logo on a transparent black background darkens at its edge).
Premultiplied, each pixel's colour counts by its alpha, and the alpha is filtered too,
so that a blurred logo's alpha ramps and its edge keeps the logo's colour.

For a kernel whose weights sum to s (not 0: blurs, sharpening), the result is

    alpha' = K(alpha) / s          (clipped to [0, 1])
    colour' = K(alpha * colour) / alpha'   (0 where alpha' is 0)

which is ``K(colour)`` wherever the picture is opaque, and ImageMagick's
``sum(k a c) / sum(k a)`` scaled by s. A kernel summing to 0 (edges, the gradient
magnitudes) has no level to keep: its colour is ``K(alpha * colour)``, the picture as
seen over black, and the alpha stays as it was (taken at each window's centre).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from convtool.filtering.correlate import Prepared, as_pixels, correlate, resample_alpha
from convtool.shapes import PaddingSpec

__all__ = ["ALPHA_EPSILON", "correlate_premultiplied"]

# alpha below this (well under half a 16-bit level) is transparent: no colour to keep
ALPHA_EPSILON = 1e-6


def correlate_premultiplied(
    data: Any,
    alpha: Any,
    kernel: Prepared,
    *,
    color: str = "channels",
    border: str = "zero",
    padding: PaddingSpec = "same",
    stride: int | tuple[int, int] = 1,
    engine: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Filter a picture with alpha premultiplied; the colour result and the alpha result.

    Parameters are :func:`convtool.filtering.correlate`'s, with ``alpha`` the (H, W)
    alpha in [0, 1]. A 4-D kernel, which sets its channels itself, filters the straight
    colour, and the alpha is taken at each window's centre (as ``--alpha keep``).

    Returns
    -------
    (ndarray, ndarray)
        The float32 colour result (as :func:`correlate` gives it) and alpha (H', W').
    """
    a = np.asarray(alpha, dtype=np.float32)
    geometry = {"border": border, "padding": padding, "stride": stride, "engine": engine}
    if kernel.full or kernel.chain:  # (a chain: each step's alpha would need its own)
        y = correlate(data, kernel, color=color, **geometry)
        return y, resample_alpha(a, kernel.size, padding=padding, stride=stride)
    x = as_pixels(data)
    x = x * (a if x.ndim == 2 else a[:, :, None])
    w = kernel.weights
    total = 0.0 if kernel.parts else float(w.sum())
    if abs(total) <= 1e-9 * float(np.abs(w).sum()):  # no level to keep: seen over black
        y = correlate(x, kernel, color=color, **geometry)
        return y, resample_alpha(a, kernel.size, padding=padding, stride=stride)
    bare = Prepared(w, kernel.name, kernel.slug)  # the bias comes after
    y = correlate(x, bare, color=color, **geometry)
    level = Prepared(w / total, kernel.name, kernel.slug)
    a_out = np.clip(correlate(a, level, **geometry), 0.0, 1.0)
    opaque = a_out > ALPHA_EPSILON
    scale = np.divide(1.0, a_out, out=np.zeros_like(a_out), where=opaque)
    y = y * (scale if y.ndim == 2 else scale[:, :, None])
    if kernel.bias is not None:
        bias = np.asarray(kernel.bias, dtype=np.float32)
        y += bias if bias.ndim == 0 else bias[0]
    return y, np.where(opaque, a_out, np.float32(0.0)).astype(np.float32)
