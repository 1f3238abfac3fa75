"""Tile geometry: which input pixels an output tile's windows cover, and tile sides.

A picture filtered tile by tile gives the whole-picture result bit for bit when
each output tile reads the input pixels its windows cover: the tile's own rows
and columns plus the kernels' reach around them (``K // 2`` for 'same' padding;
for even kernels one more after than before, as :func:`convtool.filtering.correlate`
anchors them). The border mode applies at the picture's true edges only: inside
the picture the reach takes real neighbouring pixels, and at an edge the same
outside pixels the whole picture is padded with (the zero border is left to the
core, which skips it exactly as it does for the whole picture).

Tiles are square, their side a multiple of 16, as TIFF tiles are.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from convtool import vocab
from convtool.filtering.correlate import Prepared
from convtool.shapes import PaddingSpec, resolve_padding

__all__ = [
    "TILE",
    "TILE_STEP",
    "Axis",
    "TileError",
    "auto_tile",
    "axes",
    "boxes",
    "check_tile",
    "core_padding",
    "reach",
]

TILE = 1024  # output tile side by default: past ~512 the per-tile costs no longer show
TILE_STEP = 16  # TIFF tiles are multiples of 16 pixels a side


class TileError(ValueError):
    """A tile size that cannot be used: not a multiple of 16, or below the kernel's reach."""


def reach(kernels: Sequence[Prepared], padding: PaddingSpec = "same") -> int:
    """How far the kernels see from their anchor: half the largest side, or a larger padding."""
    far = max(max(k.size) // 2 for k in kernels)
    if not isinstance(padding, str):
        far = max(far, *np.atleast_1d(padding).tolist())
    return int(far)


def check_tile(tile: int, kernels: Sequence[Prepared], padding: PaddingSpec = "same") -> None:
    """Refuse a tile side that TIFF cannot take or that is smaller than the kernels' reach."""
    if tile < TILE_STEP or tile % TILE_STEP:
        raise TileError(f"a tile side must be a multiple of 16 (TIFF tiles are), not {tile}")
    far = reach(kernels, padding)
    if tile < far:
        bigger = -(-far // TILE_STEP) * TILE_STEP
        widest = max(kernels, key=lambda k: max(k.size))
        raise TileError(
            f"tiles of {tile} pixels are smaller than the reach of kernel {widest.name} "
            f"({far} pixels around each one: its halo); use {bigger} or more"
        )


def auto_tile(kernels: Sequence[Prepared], padding: PaddingSpec = "same") -> int:
    """The tile side used when none is given: TILE, or the kernels' reach if that is larger."""
    far = reach(kernels, padding)
    return max(TILE, -(-far // TILE_STEP) * TILE_STEP)


@dataclass(frozen=True)
class Axis:
    """One kernel along one axis of the picture: where each output's window lies."""

    n: int  # picture size
    k: int  # kernel size
    s: int  # stride
    before: int  # padding before and after, as the whole picture gets it
    after: int
    border: str

    @property
    def outputs(self) -> int:
        return (self.n + self.before + self.after - self.k) // self.s + 1

    def span(self, start: int, stop: int) -> tuple[np.ndarray, int, int]:
        """Picture indices under the windows of outputs start:stop, and the zero padding
        (before, after) the core is to add around them (zero border only)."""
        first, last = start * self.s, (stop - 1) * self.s + self.k  # padded coordinates
        if self.border == "zero":
            lo, hi = first - self.before, last - self.before
            index = np.arange(max(lo, 0), min(hi, self.n))
            return index, max(0, -lo), max(0, hi - self.n)
        # the other borders: the whole picture is np.pad-ded; take its index map
        base = np.arange(self.n)
        padded = np.pad(base, (self.before, self.after), mode=vocab.pad_mode(self.border))
        return padded[first:last], 0, 0

    def anchors(self, start: int, stop: int) -> np.ndarray:
        """The picture index whose alpha each output takes (as filtering.resample_alpha)."""
        at = np.arange(start, stop) * self.s - self.before + (self.k - 1) // 2
        return np.clip(at, 0, self.n - 1)


def axes(
    kernel: Prepared,
    size: tuple[int, int],
    *,
    border: str,
    padding: PaddingSpec,
    stride: tuple[int, int],
) -> tuple[Axis, Axis]:
    """The rows' and the columns' :class:`Axis` of ``kernel`` on a picture of ``size``."""
    kh, kw = kernel.size
    sh, sw = stride
    top, bottom, left, right = resolve_padding(padding, size, (kh, kw), (sh, sw))
    rows = Axis(size[0], kh, sh, top, bottom, border)
    cols = Axis(size[1], kw, sw, left, right, border)
    return rows, cols


def core_padding(lo: int, hi: int, stride: int) -> tuple[int, int]:
    """Symmetric padding P >= lo, hi for the core, and the first output to keep.

    The core pads alike on both sides; outputs that start earlier than the wanted
    ones (P - lo rows of padding earlier) are cut off, so P - lo must be a whole
    number of strides.
    """
    if hi <= lo:
        return lo, 0
    extra = -(-(hi - lo) // stride) * stride
    return lo + extra, extra // stride


def boxes(height: int, width: int, tile: int) -> Iterator[tuple[int, int, int, int]]:
    """Output tiles in TIFF order (row by row), as (o0, o1, p0, p1)."""
    for o0 in range(0, height, tile):
        for p0 in range(0, width, tile):
            yield o0, min(o0 + tile, height), p0, min(p0 + tile, width)
