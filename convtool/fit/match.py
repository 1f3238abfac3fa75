"""Naming a fitted kernel: the kernel of the bank it is a multiple of, if any."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np


class KernelMatch(NamedTuple):
    """``kernel ~ scale * named``: the named kernel, the scale and how close (relative)."""

    name: str
    scale: float
    error: float  # |kernel - scale * named| / |kernel|
    exact: bool  # error below 1e-3


def match_kernel(kernel: Any, *, close: float = 0.03) -> KernelMatch | None:
    """The named kernel that a fitted kernel is a multiple of, if one is within ``close``.

    Every kernel of the bank with the kernel's shape is tried (and ``gaussian:K`` and
    ``box:HxW`` at that size); the scale is fitted by least squares, and the match with
    the smallest relative error wins (a scale nearer 1 breaks ties, so 0.11 everywhere
    is ``blur``, not 0.99 x ``box3``).

    Examples
    --------
    >>> import numpy as np
    >>> m = match_kernel(0.125 * np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]))
    >>> m.name, m.scale, m.exact
    ('sobel_x', 0.125, True)
    """
    from convtool.kernels import list_kernels, parse_kernel

    w = np.asarray(kernel, dtype=np.float64)
    norm = float(np.linalg.norm(w))
    if w.ndim != 2 or norm == 0 or not math.isfinite(norm):
        return None
    candidates = [
        (i.name, i.kernel)
        for i in list_kernels()
        if i.kernel.shape == w.shape and i.group != "magnitude"  # sobel: two kernels, not one
    ]
    kh, kw = w.shape
    if kh == kw and kh % 2:
        candidates.append((f"gaussian:{kh}", parse_kernel(f"gaussian:{kh}")))
    candidates.append((f"box:{kh}x{kw}", parse_kernel(f"box:{kh}x{kw}")))
    best = None
    for name, k in candidates:
        kk = float(np.vdot(k, k))
        if kk == 0:
            continue
        scale = float(np.vdot(w, k)) / kk
        error = float(np.linalg.norm(w - scale * k)) / norm
        key = (round(error, 12), abs(math.log(abs(scale))) if scale else math.inf)
        if error < close and (best is None or key < best[0]):
            best = (key, KernelMatch(name, scale, error, error < 1e-3))
    return None if best is None else best[1]


def describe_match(match: KernelMatch, bias: float | None = None) -> str:
    """``'0.125 x sobel_x, bias 0.5'``; ``'sobel_x'`` when the scale is 1.

    >>> describe_match(KernelMatch("sobel_x", 0.125, 0.0, True), 0.5)
    '0.125 x sobel_x, bias 0.5'
    """
    scale = f"{match.scale:.4g}"
    text = match.name if scale == "1" else f"{scale} x {match.name}"
    if bias is not None and f"{bias:.4g}" not in ("0", "-0"):
        text += f", bias {bias:.4g}"
    return text
