"""Pictures of a pipeline's maps, drawn with pillow: colour maps, titled tiles, rows and grids.

- :func:`colorize` turns one map into RGB through a colour map, normalised for
  viewing: ``viridis`` (the chapter's figures) and ``gray`` stretch the map's
  min..max over the whole map; ``diverging`` (blue, white, red) puts 0 at white
  and +-max|value| at the ends, so that signs show.
- :func:`panel_figure` draws the source and every stage side by side, each tile
  titled with its stage and (C, H, W) shape, as the chapter's figure 17-7; a
  stage with several channels gets one row per channel.
- :func:`grid_figure` lays out the channels of one stage in a grid, each tile
  titled with its kernel, as figure 17-6.

Tiles are scaled to a common size, by a whole factor with nearest-neighbour
sampling where the map is smaller (pixels stay sharp squares), by area averaging
where it is larger. No plotting library is needed; text uses pillow's default
font.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from convtool import vocab

__all__ = [
    "CMAPS",
    "Tile",
    "colorize",
    "draw",
    "grid_figure",
    "lookup_table",
    "panel_figure",
    "picture_rgb",
    "scaled",
]

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
BACKGROUND = (255, 255, 255)
INK = (0, 0, 0)
FAINT = (110, 110, 110)
FRAME = (190, 190, 190)
MAX_CHANNELS = 16  # channels a panel shows per stage


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


def _unit(values: np.ndarray, cmap: str) -> np.ndarray:
    """A map brought into [0, 1] for viewing (NaN and infinities become 0)."""
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v)
    if not finite.any():
        return np.zeros(v.shape)
    if cmap == "diverging":
        top = float(np.abs(v[finite]).max())
        t = 0.5 + v / (2 * top) if top > 0 else np.full(v.shape, 0.5)
    else:
        lo, hi = float(v[finite].min()), float(v[finite].max())
        t = (v - lo) / (hi - lo) if hi > lo else np.zeros(v.shape)
    return np.where(finite, np.clip(t, 0.0, 1.0), 0.0)


def colorize(values: Any, cmap: str = "viridis") -> np.ndarray:
    """One (H, W) map as an (H, W, 3) uint8 picture through ``cmap``, normalised for viewing.

    >>> colorize(np.array([[0.0, 1.0]]))[0].tolist()
    [[68, 1, 84], [253, 231, 37]]
    >>> colorize(np.array([[-2.0, 0.0, 1.0]]), "diverging")[0, :2].tolist()
    [[5, 48, 97], [247, 247, 247]]
    """
    v = np.asarray(values)
    if v.ndim != 2:
        raise ValueError(f"colorize takes one (H, W) map; got shape {v.shape}")
    table = lookup_table(cmap)
    return table[np.rint(_unit(v, cmap) * (len(table) - 1)).astype(np.intp)]


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


def scaled(pixels: np.ndarray, box: int) -> Image.Image:
    """An (H, W, 3) picture fitted into a ``box`` square, each map pixel a sharp block.

    A smaller picture is enlarged by a whole factor (every pixel the same square)
    when that fills at least 85 % of the box, else to the box by nearest-neighbour
    sampling; a larger one is reduced by area averaging.
    """
    im = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8), "RGB")
    h, w = pixels.shape[:2]
    side = max(h, w)
    if side <= box and (box // side) * side >= 0.85 * box:
        factor = box // side
        return im.resize((w * factor, h * factor), Image.Resampling.NEAREST)
    size = (max(1, round(w * box / side)), max(1, round(h * box / side)))
    return im.resize(size, Image.Resampling.NEAREST if side < box else Image.Resampling.BOX)


@functools.lru_cache(maxsize=16)
def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # pillow < 10.1 or no FreeType: bitmap font
        return ImageFont.load_default()


def _text_width(font: Any, text: str) -> int:
    left, _, right, _ = font.getbbox(text)
    return int(right - left)


def _fit(font: Any, text: str, width: int) -> str:
    """``text``, shortened with an ellipsis until it fits ``width`` pixels."""
    if _text_width(font, text) <= width:
        return text
    while len(text) > 1 and _text_width(font, text + "...") > width:
        text = text[:-1]
    return text + "..."


@dataclass
class Tile:
    """One cell of a figure: an (H, W, 3) uint8 picture, title lines above, a caption below."""

    pixels: np.ndarray
    title: tuple[str, ...] = ()
    caption: str = ""


class _Style:
    """Fonts and spacing for a tile size: text about a sixteenth of a tile."""

    def __init__(self, tile: int) -> None:
        size = max(10, round(tile / 16))
        self.tile = tile
        self.font, self.small = _font(size), _font(max(9, round(size * 0.85)))
        self.big = _font(round(size * 1.3))
        self.line, self.small_line, self.big_line = (
            round(size * 1.35),
            round(size * 1.2),
            round(size * 1.8),
        )
        self.gap, self.margin = max(8, tile // 8), max(8, tile // 10)


def draw(rows: Sequence[Sequence[Tile | None]], *, tile: int = 240, title: str = "") -> Image.Image:
    """Lay out tiles in rows (None leaves a cell empty), with a figure title on top.

    Every cell is ``tile`` pixels wide; a row is as tall as its tallest title, a
    ``tile`` square for the pictures (each at its top, centred across) and, if any
    tile has one, a caption line.
    """
    if tile < 16:
        raise ValueError(f"tile must be at least 16 pixels, got {tile}")
    columns = max((len(r) for r in rows), default=0)
    if not columns:
        raise ValueError("a figure needs at least one tile")
    style = _Style(tile)
    heights = []
    for row in rows:
        cells = [t for t in row if t is not None]
        lines = max((len(t.title) for t in cells), default=0)
        caption = style.small_line if any(t.caption for t in cells) else 0
        heights.append((lines, lines * style.line + tile + caption))
    width = 2 * style.margin + columns * tile + (columns - 1) * style.gap
    top = style.margin + (style.big_line + style.margin // 2 if title else 0)
    height = top + sum(h for _, h in heights) + (len(rows) - 1) * style.gap + style.margin
    figure = Image.new("RGB", (width, height), BACKGROUND)
    pen = ImageDraw.Draw(figure)
    if title:
        text = _fit(style.big, title, width - 2 * style.margin)
        x = (width - _text_width(style.big, text)) // 2
        pen.text((x, style.margin), text, fill=INK, font=style.big)
    y = top
    for row, (lines, row_height) in zip(rows, heights, strict=True):
        for col, cell in enumerate(row):
            if cell is not None:
                x = style.margin + col * (tile + style.gap)
                _cell(figure, pen, cell, (x, y), lines, style)
        y += row_height + style.gap
    return figure


def _cell(figure, pen, cell: Tile, at: tuple[int, int], lines: int, style: _Style) -> None:
    """One tile: its titles right above its picture, its caption right below."""
    x, y = at
    tile, font, small = style.tile, style.font, style.small
    first = y + (lines - len(cell.title)) * style.line
    for i, text in enumerate(cell.title):
        text = _fit(font, text, tile + style.gap)
        left = x + (tile - _text_width(font, text)) // 2
        pen.text((left, first + i * style.line), text, fill=INK, font=font)
    picture = scaled(cell.pixels, tile)
    px, py = x + (tile - picture.width) // 2, y + lines * style.line
    figure.paste(picture, (px, py))
    pen.rectangle((px - 1, py - 1, px + picture.width, py + picture.height), outline=FRAME)
    if cell.caption:
        text = _fit(small, cell.caption, tile)
        left = x + (tile - _text_width(small, text)) // 2
        pen.text((left, py + picture.height + 2), text, fill=FAINT, font=small)


def shape_text(shape: Sequence[int]) -> str:
    """``(1, 78, 78)``, as titles and tables show shapes."""
    return "(" + ", ".join(str(int(n)) for n in shape) + ")"


def range_text(values: np.ndarray) -> str:
    """The finite min..max of a map, as captions show it."""
    finite = np.isfinite(values)
    if not finite.any():
        return "no finite values"
    return f"{float(values[finite].min()):.4g} .. {float(values[finite].max()):.4g}"


def stage_names(kinds: Sequence[str]) -> list[str]:
    """Tile names for a chain: the kind, numbered where a kind comes more than once."""
    names, seen = [], {}
    for kind in kinds:
        seen[kind] = seen.get(kind, 0) + 1
        names.append(f"{kind} {seen[kind]}" if kinds.count(kind) > 1 else kind)
    return names


def _stage_tiles(data: np.ndarray, labels: Sequence[str], name: str, cmap: str) -> list[Tile]:
    channels = data.shape[0]
    shown = min(channels, MAX_CHANNELS)
    head = f"{name} {shape_text(data.shape)}"
    tiles = []
    for c in range(shown):
        title: tuple[str, ...] = (head,) if c == 0 else ()
        if channels > 1:
            more = f" ({shown} of {channels} shown)" if c == shown - 1 and shown < channels else ""
            title += (f"{labels[c]}{more}",)
        tiles.append(Tile(colorize(data[c], cmap), title, range_text(data[c])))
    return tiles


def panel_figure(
    source: np.ndarray,
    maps: Sequence[tuple[str, np.ndarray, Sequence[str]]],
    *,
    cmap: str = "viridis",
    tile: int = 240,
    columns: int | None = None,
    title: str = "",
) -> Image.Image:
    """The source and every stage side by side (figure 17-7).

    ``maps`` holds (name, (C, H, W) map, channel names) per stage. Each stage is
    a column, one tile per channel (at most MAX_CHANNELS); ``columns`` wraps the
    columns into several rows of that many.
    """
    blocks = [[Tile(picture_rgb(source), (f"source {shape_text(source.shape)}",), "")]]
    blocks += [_stage_tiles(np.asarray(m), labels, name, cmap) for name, m, labels in maps]
    per_row = columns or len(blocks)
    rows: list[list[Tile | None]] = []
    for start in range(0, len(blocks), per_row):
        group = blocks[start : start + per_row]
        for r in range(max(len(b) for b in group)):
            rows.append([b[r] if r < len(b) else None for b in group])
    return draw(rows, tile=tile, title=title)


def grid_figure(
    data: np.ndarray,
    labels: Sequence[str],
    *,
    cmap: str = "viridis",
    tile: int = 240,
    columns: int | None = None,
    title: str = "",
) -> Image.Image:
    """Every channel of one (C, H, W) map in a grid, titled by its name (figure 17-6).

    ``columns`` defaults to the smallest number that makes the grid square or
    one column wider than tall (9 maps: 3x3).
    """
    data = np.asarray(data)
    n = data.shape[0]
    per_row = columns or math.ceil(math.sqrt(n))
    tiles = [Tile(colorize(data[c], cmap), (labels[c],), range_text(data[c])) for c in range(n)]
    rows = [tiles[i : i + per_row] for i in range(0, n, per_row)]
    return draw(rows, tile=tile, title=title)
