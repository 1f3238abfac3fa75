"""Values outside [0, 1]: the finite range, the share clipping changes, and the value maps.

One home for this arithmetic: :func:`map_values` maps a whole result, and the
batch's post-processing maps a picture block by block (tiles) with the same
functions, so both give the same values and counts to the bit. All on float32.
"""

from __future__ import annotations

import numpy as np

from convtool import vocab

__all__ = [
    "CLIP_TOLERANCE",
    "clipped_share",
    "finite_stats",
    "map_values",
    "pixels_inside",
    "shift_values",
    "stats",
]

# values within this of [0, 1] are float rounding, not clipping
CLIP_TOLERANCE = 1e-6


def finite_stats(y: np.ndarray) -> tuple[float, float, int]:
    """Smallest and largest finite value (NaN when there is none), and how many values are
    NaN or infinite."""
    lo, hi = y.min(), y.max()  # two fast passes, which see any NaN or infinity
    if np.isfinite(lo) and np.isfinite(hi):
        return float(lo), float(hi), 0
    finite = np.isfinite(y)
    nonfinite = int(y.size - np.count_nonzero(finite))
    if nonfinite == y.size:
        return float("nan"), float("nan"), nonfinite
    return float(y[finite].min()), float(y[finite].max()), nonfinite


def stats(y: np.ndarray) -> tuple[float, float]:
    """Smallest and largest finite value (NaN when there is none)."""
    lo, hi, _ = finite_stats(np.asarray(y))
    return lo, hi


def _inside(y: np.ndarray) -> np.ndarray:
    """Which pixels have every channel within [0, 1], less a rounding tolerance."""
    inside = y >= -CLIP_TOLERANCE
    inside &= y <= 1 + CLIP_TOLERANCE  # both False for NaN
    if inside.ndim == 3:  # a pixel is inside when all its channels are
        every = inside[:, :, 0].copy()
        for c in range(1, inside.shape[2]):
            every &= inside[:, :, c]
        inside = every
    return inside


def pixels_inside(y: np.ndarray) -> int:
    """How many pixels have every channel within [0, 1] (NaN is outside): counted by the
    compiled core in one pass where it is built and y is a filter's result, else by
    numpy's six."""
    if y.dtype in (np.float32, np.float64) and y.ndim in (2, 3):
        from convtool.core import engine

        core = engine.for_samples(y.size)
        if core is not None:  # a filter's result: its planes seen channels-last
            planes = y[None] if y.ndim == 2 else y.transpose(2, 0, 1)
            found = core.count_inside(planes, -CLIP_TOLERANCE, 1 + CLIP_TOLERANCE)
            if found is not None:
                return found
    return int(np.count_nonzero(_inside(y)))


def clipped_share(y: np.ndarray) -> float:
    """Share of pixels with a value outside [0, 1] in any channel (NaN counts as outside)."""
    inside = _inside(np.asarray(y))
    return 1.0 - np.count_nonzero(inside) / max(inside.size, 1)


def shift_values(y: np.ndarray, how: str, bounds: tuple[float, float]) -> np.ndarray:
    """The values before clipping: |y| ('abs'), y + 0.5 ('offset'), ``bounds`` (the whole
    result's finite min and max) stretched to 0..1 ('normalize'), or y itself ('clip')."""
    if how == "abs":
        return np.abs(y)
    if how == "offset":
        return y + np.float32(0.5)
    if how == "normalize":
        lo, hi = bounds
        if not hi > lo:
            return np.zeros_like(y)
        return (y - np.float32(lo)) * np.float32(1.0 / (hi - lo))
    return y


def map_values(y: np.ndarray, how: str) -> tuple[np.ndarray, float]:
    """Bring a raw result into [0, 1]; return it and the share of pixels that clipping changed.

    'clip' cuts at 0 and 1 (as ImageMagick and OpenCV); 'abs' takes the absolute
    value first; 'offset' adds 0.5 first (the emboss look, GIMP's offset); and
    'normalize' stretches the finite min..max to 0..1 (as the chapter's figures;
    a constant result becomes 0). A pixel counts as clipped when any of its
    channels lay outside [0, 1] (NaN included; NaN becomes 0).

    >>> m, share = map_values(np.array([[-1.0, 0.5], [2.0, 1.0]]), "clip")
    >>> m.tolist(), share
    ([[0.0, 0.5], [1.0, 1.0]], 0.5)
    """
    vocab.check("map", how, vocab.MAPS)
    values = np.asarray(y, dtype=np.float32)
    bounds = stats(values) if how == "normalize" else (np.nan, np.nan)
    shifted = shift_values(values, how, bounds)
    share = clipped_share(shifted)
    fresh = shifted is not y and shifted.base is None  # ours to change in place
    y = np.clip(shifted, 0.0, 1.0, out=shifted if fresh else None)
    if share:
        np.nan_to_num(y, copy=False, nan=0.0)
    return y, share
