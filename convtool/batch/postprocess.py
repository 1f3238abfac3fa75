"""What becomes of one output's raw values before they are written: map, clip share, range.

One :class:`PostProcess` per output file, for whole pictures and tiles alike:
a whole picture is one block, a tiled one many, and what the record tells
(finite range, NaN and infinities, the share of pixels clipping changed) is
accumulated block by block, so both give the same record to the bit::

    post = PostProcess.chosen(options.map, depth)
    post.measure(y)           # every block, before mapping (normalize: all blocks first)
    y = post.mapped(y)        # every block: what the writer gets
    record = post.record(shape, input=..., output=..., kernel=...)

The arithmetic is :mod:`convtool.filtering.values`', as for a whole result's
:func:`~convtool.filtering.map_values`, on float32 values: 'normalize'
stretches the finite range of the whole result, taken before the first block
is mapped. 8/16-bit outputs left to 'clip' are not clipped here: the writer
clips (and turns NaN into 0) as it quantises; their share is counted all the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from convtool import vocab
from convtool.filtering.values import finite_stats, pixels_inside, shift_values

__all__ = ["FLOAT_DEPTH", "PostProcess", "Range", "chosen_map"]

FLOAT_DEPTH = 32  # float32 outputs (.npy, float TIFF): raw values unless a map is asked for


def chosen_map(asked: str | None, depth: int) -> str | None:
    """The value map an output gets: the one asked for, else 'clip' (None: raw float values)."""
    return asked if asked is not None or depth == FLOAT_DEPTH else "clip"


class Range:
    """The finite min and max over blocks, as filtering.stats gives them for the whole,
    and how many values are NaN or infinite."""

    def __init__(self) -> None:
        self.lo, self.hi, self.seen = np.inf, -np.inf, False
        self.nonfinite = 0

    def add(self, y: np.ndarray) -> None:
        lo, hi, nonfinite = finite_stats(y)
        self.nonfinite += nonfinite
        if nonfinite == y.size:  # nothing finite in this block
            return
        self.seen = True
        self.lo, self.hi = min(self.lo, lo), max(self.hi, hi)

    @property
    def bounds(self) -> tuple[float, float]:
        """(min, max) of the finite values seen; NaN for both when there was none."""
        return (self.lo, self.hi) if self.seen else (float("nan"), float("nan"))


@dataclass
class PostProcess:
    """One output's post-processing: its value map and depth, and what its blocks held.

    ``how`` is the value map ('clip', 'abs', 'offset', 'normalize'; None keeps
    raw float values), ``depth`` the output's bits per sample (32: float).
    """

    how: str | None
    depth: int
    range: Range = field(default_factory=Range)
    inside: int = 0  # pixels within [0, 1] after mapping, over the blocks mapped
    pixels: int = 0  # pixels mapped

    def __post_init__(self) -> None:
        if self.how is not None:
            vocab.check("map", self.how, vocab.MAPS)

    @classmethod
    def chosen(cls, asked: str | None, depth: int) -> PostProcess:
        """The post-processing of an output of ``depth`` bits whose map is ``asked`` (or None)."""
        return cls(chosen_map(asked, depth), depth)

    @property
    def needs_range_first(self) -> bool:
        """Whether every block must be measured before the first is mapped ('normalize')."""
        return self.how == "normalize"

    def measure(self, y: np.ndarray) -> None:
        """Count one block's raw values into the output's range."""
        self.range.add(y)

    def mapped(self, y: np.ndarray) -> np.ndarray:
        """One block's values as the writer gets them; counts the pixels clipping changes.

        A mapped block is clipped to [0, 1] with NaN as 0; a block left to the
        writer's clipping (8/16-bit 'clip') or kept raw comes back as it is.
        """
        pixels = y.shape[0] * y.shape[1]
        self.pixels += pixels
        if self.how is None:
            return y
        if self.how == "clip" and self.depth != FLOAT_DEPTH:  # the writer clips as it quantises
            self.inside += pixels_inside(y)
            return y
        shifted = shift_values(np.asarray(y, dtype=np.float32), self.how, self.range.bounds)
        inside = pixels_inside(shifted)
        self.inside += inside
        fresh = shifted is not y and shifted.base is None  # ours to change in place
        y = np.clip(shifted, 0.0, 1.0, out=shifted if fresh else None)
        if inside < pixels:  # only a pixel outside can be NaN
            np.nan_to_num(y, copy=False, nan=0.0)
        return y

    @property
    def clipped(self) -> float:
        """The share of pixels whose value clipping changed (NaN included)."""
        if self.how is None:
            return 0.0
        return 1.0 - self.inside / max(self.pixels, 1)

    def record(self, shape: tuple[int, ...], **head: Any) -> dict[str, Any]:
        """The output's record: ``head``'s fields (input, output, ...), then shape, range,
        map, clipped share, depth and the count of NaN and infinite values."""
        lo, hi = self.range.bounds
        return {
            **head,
            "shape": list(shape),
            "min": lo,
            "max": hi,
            "map": self.how or "none",
            "clipped": self.clipped,
            "depth": self.depth,
            "nonfinite": self.range.nonfinite,
        }
