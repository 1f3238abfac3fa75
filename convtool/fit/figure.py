"""What a picture of a fit shows, as arrays: the residual map and the loss curve.

The figure itself (``convtool fit --report fig.png``) is laid out by the command line
with the pipeline's panels; this module only computes what they show, in numpy:

- :func:`residual_map`: the fitted kernel's prediction minus the target, where the fit
  counted the pixel (NaN elsewhere): where the model fails;
- :func:`loss_curve`: the loss before each update, on a log scale, drawn as an RGB
  picture (the curve dark on white, in a frame).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from convtool import vocab
from convtool.fit.prep import geometry
from convtool.fit.result import FitResult


def residual_map(
    x: Any,
    y: Any,
    result: FitResult,
    *,
    border: str = "interior",
    exclude: Any = None,
    clip: tuple[float, float] | None = None,
) -> np.ndarray:
    """prediction - target, (H', W'), averaged over the planes; NaN where not fitted.

    ``x``, ``y`` are the fit's input and target, (H, W) or (C, H, W); ``border``,
    ``exclude`` and ``clip`` as the fit was given them.
    """
    from convtool.ops import conv2d

    xp = np.asarray(x, dtype=np.float64).reshape(-1, *np.shape(x)[-2:])
    yp = np.asarray(y, dtype=np.float64).reshape(-1, *np.shape(y)[-2:])
    geo = geometry(xp.shape, yp.shape, result.size, result.stride)
    t, b, l, r = geo.pads
    mode = "constant" if border in ("interior", "zero") else vocab.pad_mode(border)
    padded = np.pad(xp, ((0, 0), (t, b), (l, r)), mode=mode)
    kernels = result.kernel if result.kernel.ndim == 3 else [result.kernel] * len(xp)
    biases = np.broadcast_to(np.asarray(result.bias or 0.0, np.float64), (len(kernels),))
    z = np.stack(
        [
            conv2d(plane, k, stride=geo.stride)[: yp.shape[1], : yp.shape[2]] + bias
            for plane, k, bias in zip(padded, kernels, biases, strict=True)
        ]
    )
    res = (z - yp).mean(axis=0)
    fitted = np.ones(res.shape, bool)
    if border == "interior" and any(geo.pads):  # pixels whose window leaves the picture
        kh, kw = result.size
        rows = np.arange(res.shape[0]) * geo.stride[0] - t
        cols = np.arange(res.shape[1]) * geo.stride[1] - l
        inside_r = (rows >= 0) & (rows + kh <= xp.shape[1])
        inside_c = (cols >= 0) & (cols + kw <= xp.shape[2])
        fitted &= inside_r[:, None] & inside_c[None, :]
    if clip is not None:
        fitted &= ((yp > clip[0]) & (yp < clip[1])).all(axis=0)
    if exclude is not None:
        fitted &= ~np.asarray(exclude, bool).reshape(res.shape)
    return np.where(fitted, res, np.nan)


def loss_curve(history: Any, size: int = 240) -> np.ndarray:
    """The loss before each update, log scale, as a (size, size, 3) uint8 picture.

    Iterations run left to right, log10(loss) bottom to top between the curve's least
    and largest values; a flat or one-point curve is a horizontal line.
    """
    h = np.asarray(history, dtype=np.float64)
    h = h[np.isfinite(h) & (h > 0)] if h.size else h
    pixels = np.full((size, size, 3), 255, np.uint8)
    pixels[[0, -1], :] = pixels[:, [0, -1]] = 190  # the frame
    if h.size == 0:
        return pixels
    logs = np.log10(h)
    lo, hi = float(logs.min()), float(logs.max())
    inner = size - 8
    cols = np.arange(inner)
    idx = np.minimum((cols * max(h.size - 1, 0)) // max(inner - 1, 1), h.size - 1)
    span = hi - lo if hi > lo else 1.0
    rows = np.rint((hi - logs[idx]) / span * (inner - 1)).astype(int) if hi > lo else None
    rows = np.full(inner, inner // 2) if rows is None else rows
    for c in range(inner):  # each column joined to the last: a continuous line
        r0 = rows[c - 1] if c else rows[0]
        a, b = sorted((r0, rows[c]))
        pixels[4 + a : 5 + b, 4 + c] = (31, 58, 147)
    return pixels


def decades(history: Any) -> str:
    """The loss curve's range as text: '1e-02 .. 3e-15 over 57 iterations'."""
    h = np.asarray(history, dtype=np.float64)
    if h.size == 0 or not np.isfinite(h).all():
        return ""
    first, last = float(h[0]), float(h[-1])
    steps = h.size - 1
    text = f"{first:.1e} .. {last:.1e}" if not math.isclose(first, last) else f"{last:.1e}"
    return f"{text} over {steps} update{'s' if steps != 1 else ''}"
