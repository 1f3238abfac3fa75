"""Maps as colours: the colour maps, the range a map's colours span (min..max or a
percentile stretch), and a source picture as it is.

- :func:`colorize` turns one map into RGB through a colour map, normalised for
  viewing: ``viridis`` (the chapter's figures) and ``gray`` stretch the map's
  min..max (or, with ``stretch=(lo, hi)``, its lo-th..hi-th percentiles) over the
  whole map; ``diverging`` (blue, white, red) puts 0 at white and +-max|value| (or
  that percentile of |value|) at the ends, so that signs show.
- :func:`display_range` is the span itself, which a figure's colour bar labels.

numpy only: :mod:`convtool.pipeline.figures` draws them with pillow.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from convtool import vocab

__all__ = ["CMAPS", "check_stretch", "colorize", "display_range", "lookup_table", "picture_rgb"]

CMAPS = vocab.CMAPS
# viridis (van der Walt and Smith, CC0), every 8th of its 256 entries and the last,
# as 8-bit sRGB; linear interpolation between them is within 2/255 of the full table
_VIRIDIS = (
    (68, 1, 84), (71, 13, 96), (72, 24, 106), (72, 35, 116), (71, 45, 123), (69, 55, 129),
    (66, 64, 134), (62, 73, 137), (59, 82, 139), (55, 91, 141), (51, 99, 141), (47, 107, 142),
    (44, 114, 142), (41, 122, 142), (38, 130, 142), (35, 137, 142), (33, 145, 140),
    (31, 152, 139), (31, 160, 136), (34, 167, 133), (40, 174, 128), (50, 182, 122),
    (63, 188, 115), (78, 195, 107), (94, 201, 98), (112, 207, 87), (132, 212, 75),
    (152, 216, 62), (173, 220, 48), (194, 223, 35), (216, 226, 25), (236, 229, 27),
    (253, 231, 37),
)  # fmt: skip
# ColorBrewer's RdBu, 11 classes, from blue (most negative) to red (most positive)
_DIVERGING = (
    (5, 48, 97), (33, 102, 172), (67, 147, 195), (146, 197, 222), (209, 229, 240),
    (247, 247, 247),
    (253, 219, 199), (244, 165, 130), (214, 96, 77), (178, 24, 43), (103, 0, 31),
)  # fmt: skip
_ANCHORS = {"viridis": _VIRIDIS, "diverging": _DIVERGING, "gray": ((0, 0, 0), (255, 255, 255))}


@functools.cache
def lookup_table(name: str) -> np.ndarray:
    """The colour map ``name`` as an (N, 3) uint8 table, anchors linearly interpolated.

    N is 256, or 255 for ``diverging``: an odd count gives 0 an entry of its own
    (the white centre).
    """
    if name not in _ANCHORS:
        vocab.check("colour map", name, CMAPS)
    anchors = np.array(_ANCHORS[name], dtype=np.float64)
    at = np.linspace(0.0, 1.0, len(anchors))
    if name == "viridis":  # entries 0, 8, ..., 248 and 255 of the 256
        at = np.append(np.arange(0, 256, 8), 255) / 255.0
    t = np.linspace(0.0, 1.0, 255 if name == "diverging" else 256)
    table = np.stack([np.interp(t, at, anchors[:, c]) for c in range(3)], axis=1)
    table = np.rint(table).astype(np.uint8)
    table.setflags(write=False)
    return table


def check_stretch(stretch: Any) -> tuple[float, float] | None:
    """``stretch`` as (lo, hi) percentiles, 0 <= lo < hi <= 100, or None (min..max).

    >>> check_stretch([1, 99])
    (1.0, 99.0)
    """
    if stretch is None:
        return None
    try:
        lo, hi = (float(v) for v in stretch)
    except (TypeError, ValueError):
        raise ValueError(f"stretch must be two percentiles (lo, hi), got {stretch!r}") from None
    if not 0 <= lo < hi <= 100:
        raise ValueError(f"stretch must be percentiles with 0 <= lo < hi <= 100, got {stretch!r}")
    return lo, hi


def display_range(
    values: Any, cmap: str = "viridis", stretch: tuple[float, float] | None = None
) -> tuple[float, float] | None:
    """The values a map's colours run between (None when it has no finite value).

    min..max, or the ``stretch`` percentiles; ``diverging`` is symmetric about 0, up
    to the largest magnitude (or its ``stretch[1]`` percentile).

    >>> display_range(np.arange(101.0), stretch=(1, 99))
    (1.0, 99.0)
    >>> display_range(np.array([-1.0, 0.5]), "diverging")
    (-1.0, 1.0)
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not v.size:
        return None
    lo, hi = check_stretch(stretch) or (0.0, 100.0)
    if cmap == "diverging":
        a = np.abs(v)
        top = float(a.max() if hi == 100 else np.percentile(a, hi))
        return -top, top
    if (lo, hi) == (0.0, 100.0):
        return float(v.min()), float(v.max())
    low, high = np.percentile(v, [lo, hi])
    return float(low), float(high)


def _unit(values: np.ndarray, cmap: str, stretch: tuple[float, float] | None = None) -> np.ndarray:
    """A map brought into [0, 1] for viewing (NaN and infinities become 0)."""
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v)
    span = display_range(v, cmap, stretch)
    if span is None:
        return np.zeros(v.shape)
    lo, hi = span
    if cmap == "diverging":
        t = 0.5 + v / (2 * hi) if hi > 0 else np.full(v.shape, 0.5)
    else:
        t = (v - lo) / (hi - lo) if hi > lo else np.zeros(v.shape)
    return np.where(finite, np.clip(t, 0.0, 1.0), 0.0)


def colorize(
    values: Any, cmap: str = "viridis", stretch: tuple[float, float] | None = None
) -> np.ndarray:
    """One (H, W) map as an (H, W, 3) uint8 picture through ``cmap``, normalised for
    viewing over :func:`display_range`.

    >>> colorize(np.array([[0.0, 1.0]]))[0].tolist()
    [[68, 1, 84], [253, 231, 37]]
    >>> colorize(np.array([[-2.0, 0.0, 1.0]]), "diverging")[0, :2].tolist()
    [[5, 48, 97], [247, 247, 247]]
    """
    v = np.asarray(values)
    if v.ndim != 2:
        raise ValueError(f"colorize takes one (H, W) map; got shape {v.shape}")
    table = lookup_table(cmap)
    return table[np.rint(_unit(v, cmap, stretch) * (len(table) - 1)).astype(np.intp)]


def picture_rgb(planes: Any) -> np.ndarray:
    """A (C, H, W) source as the picture it is: (H, W, 3) uint8, grey or RGB.

    Values in [0, 1] are shown as they are; any other range is stretched, all
    channels together. Channels other than 1 and 3 show the first channel.
    """
    a = np.asarray(planes, dtype=np.float64)
    a = a[None] if a.ndim == 2 else a
    a = a if a.shape[0] == 3 else a[:1]
    finite = np.isfinite(a)
    lo = float(a[finite].min()) if finite.any() else 0.0
    hi = float(a[finite].max()) if finite.any() else 1.0
    if lo < 0 or hi > 1:
        a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    a = np.where(finite, a, 0.0)
    rgb = np.rint(np.clip(a, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)
    return np.ascontiguousarray(np.repeat(rgb, 3, axis=2) if rgb.shape[2] == 1 else rgb)
