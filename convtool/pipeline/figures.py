"""Pictures of a pipeline's maps, drawn with pillow: titled tiles, rows and grids.

- the colours are :mod:`convtool.pipeline.colours`' (:func:`colorize`, re-exported);
- :func:`panel_figure` draws the source and every stage side by side, each tile
  titled with its stage and (C, H, W) shape, as the chapter's figure 17-7; a
  stage with several channels gets one row per channel.
- :func:`grid_figure` lays out the channels of one stage in a grid, each tile
  titled with its kernel, as figure 17-6.

Tiles take their maps' shape: ``tile`` pixels tall and as wide as the map's aspect
makes them (at most twice that), so a landscape photograph's maps sit side by side
with little blank. A map is scaled by a whole factor with nearest-neighbour sampling
where it is smaller (pixels stay sharp squares), by area averaging where it is larger.
Under each map a colour bar shows its range, the values its colours run between:
min..max, or with ``stretch=(lo, hi)`` the lo-th and hi-th percentiles (values
beyond take the end colours), which brings out faint maps. No plotting library is
needed; text uses pillow's default font.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from convtool._shared import shape_text
from convtool.pipeline.colours import (
    CMAPS,
    check_stretch,
    colorize,
    display_range,
    lookup_table,
    picture_rgb,
)

__all__ = [
    "CMAPS",
    "Tile",
    "check_stretch",
    "colorize",
    "display_range",
    "draw",
    "grid_columns",
    "grid_figure",
    "lookup_table",
    "map_tile",
    "panel_figure",
    "picture_rgb",
    "scaled",
    "tile_box",
]

BACKGROUND = (255, 255, 255)
INK = (0, 0, 0)
FAINT = (110, 110, 110)
FRAME = (190, 190, 190)
MAX_CHANNELS = 16  # channels a panel shows per stage


def scaled(pixels: np.ndarray, box: int, height: int | None = None) -> Image.Image:
    """An (H, W, 3) picture fitted into a ``box`` x ``height`` box (a square without
    ``height``), each map pixel a sharp block.

    A smaller picture is enlarged by a whole factor (every pixel the same square)
    when that fills at least 85 % of what fitting it exactly would, else fitted by
    nearest-neighbour sampling; a larger one is reduced by area averaging.
    """
    im = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8), "RGB")
    h, w = pixels.shape[:2]
    fit = min(box / w, (box if height is None else height) / h)
    if fit >= 1 and math.floor(fit) >= 0.85 * fit:
        factor = math.floor(fit)
        return im.resize((w * factor, h * factor), Image.Resampling.NEAREST)
    size = (max(1, round(w * fit)), max(1, round(h * fit)))
    return im.resize(size, Image.Resampling.NEAREST if fit > 1 else Image.Resampling.BOX)


def tile_box(shape: Sequence[int], tile: int) -> tuple[int, int]:
    """The (width, height) a map of ``shape`` (H, W, ...) is drawn in: ``tile`` tall and
    as wide as its aspect makes it, between half and twice ``tile`` (a wider map is
    shown less tall).

    >>> tile_box((320, 480), 240), tile_box((100, 100), 240), tile_box((10, 100), 240)
    ((360, 240), (240, 240), (480, 48))
    """
    h, w = int(shape[0]), int(shape[1])
    if w > 2 * h:
        return 2 * tile, max(1, round(2 * tile * h / w))
    return max(tile // 2, round(tile * w / h)), tile


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
    """One cell of a figure: an (H, W, 3) uint8 picture, title lines above, and below it a
    caption or a colour bar: ``bar`` = (lo, hi, colour map), the values its colours span."""

    pixels: np.ndarray
    title: tuple[str, ...] = ()
    caption: str = ""
    bar: tuple[float, float, str] | None = None


class _Style:
    """Fonts and spacing for a tile size: text about a sixteenth of a tile, gaps and
    margins a little smaller (the maps, not the paper, fill a figure)."""

    def __init__(self, tile: int) -> None:
        size = max(10, round(tile / 16))
        self.tile = tile
        self.font, self.small = _font(size), _font(max(9, round(size * 0.85)))
        self.big = _font(round(size * 1.3))
        self.line, self.small_line, self.big_line = (
            round(size * 1.2),
            round(size * 1.1),
            round(size * 1.55),
        )
        self.gap = self.margin = max(4, tile // 30)


def _grid_sizes(rows: Sequence[Sequence[Tile | None]], tile: int) -> tuple[list[int], list[int]]:
    """Each column's width and each row's picture height: the largest :func:`tile_box`
    of the tiles in it."""
    columns = max(len(r) for r in rows)
    widths, heights = [0] * columns, []
    for row in rows:
        boxes = [(c, tile_box(t.pixels.shape, tile)) for c, t in enumerate(row) if t is not None]
        for c, (w, _) in boxes:
            widths[c] = max(widths[c], w)
        heights.append(max((h for _, (_, h) in boxes), default=0))
    return [w or tile for w in widths], heights


def draw(rows: Sequence[Sequence[Tile | None]], *, tile: int = 240, title: str = "") -> Image.Image:
    """Lay out tiles in rows (None leaves a cell empty), with a figure title on top.

    Each picture gets its :func:`tile_box` (``tile`` tall, its own aspect wide); a
    column is as wide as its widest box, a row as tall as its tallest title, box and,
    if any tile has one, caption or colour bar.
    """
    if tile < 16:
        raise ValueError(f"tile must be at least 16 pixels, got {tile}")
    if not max((len(r) for r in rows), default=0):
        raise ValueError("a figure needs at least one tile")
    style = _Style(tile)
    widths, boxes = _grid_sizes(rows, tile)
    heights = []
    for row, box in zip(rows, boxes, strict=True):
        cells = [t for t in row if t is not None]
        lines = max((len(t.title) for t in cells), default=0)
        below = style.small_line if any(t.caption or t.bar for t in cells) else 0
        heights.append((lines, box, lines * style.line + box + below))
    width = 2 * style.margin + sum(widths) + (len(widths) - 1) * style.gap
    top = style.margin + (style.big_line if title else 0)
    height = top + sum(h for *_, h in heights) + (len(rows) - 1) * style.gap + style.margin
    figure = Image.new("RGB", (width, height), BACKGROUND)
    pen = ImageDraw.Draw(figure)
    if title:
        text = _fit(style.big, title, width - 2 * style.margin)
        x = (width - _text_width(style.big, text)) // 2
        pen.text((x, style.margin), text, fill=INK, font=style.big)
    y = top
    for row, (lines, box, row_height) in zip(rows, heights, strict=True):
        x = style.margin
        for col, cell in enumerate(row):
            if cell is not None:
                _cell(figure, pen, cell, (x, y, widths[col], box), lines, style)
            x += widths[col] + style.gap
        y += row_height + style.gap
    return figure


def _cell(figure, pen, cell: Tile, at: tuple[int, int, int, int], lines: int, style) -> None:
    """One tile in its box ``at`` = (x, y, width, height): its titles right above its
    picture, its caption or colour bar right below."""
    x, y, width, height = at
    font, small = style.font, style.small
    first = y + (lines - len(cell.title)) * style.line
    for i, text in enumerate(cell.title):
        text = _fit(font, text, width + style.gap)
        left = x + (width - _text_width(font, text)) // 2
        pen.text((left, first + i * style.line), text, fill=INK, font=font)
    picture = scaled(cell.pixels, width, height)
    px, py = x + (width - picture.width) // 2, y + lines * style.line
    figure.paste(picture, (px, py))
    pen.rectangle((px - 1, py - 1, px + picture.width, py + picture.height), outline=FRAME)
    below = py + picture.height + 2
    if cell.bar is not None:
        _colour_bar(figure, pen, cell.bar, (x, below, width), style)
    elif cell.caption:
        text = _fit(small, cell.caption, width)
        left = x + (width - _text_width(small, text)) // 2
        pen.text((left, below), text, fill=FAINT, font=small)


def _colour_bar(figure, pen, bar: tuple[float, float, str], at: tuple[int, int, int], style):
    """``lo [colours] hi`` across ``width``: what the tile's colours stand for."""
    lo, hi, cmap = bar
    x, y, width = at
    small = style.small
    left, right = f"{lo:.3g}", f"{hi:.3g}"
    pad = max(3, style.gap // 2)
    start = x + _text_width(small, left) + pad
    stop = x + width - _text_width(small, right) - pad
    pen.text((x, y), left, fill=FAINT, font=small)
    pen.text((stop + pad, y), right, fill=FAINT, font=small)
    if stop - start < 8:  # no room: the numbers say it
        return
    table = lookup_table(cmap)
    ramp = table[np.linspace(0, len(table) - 1, stop - start).round().astype(np.intp)]
    thick = max(3, style.small_line // 2)
    top = y + (style.small_line - thick) // 2
    figure.paste(
        Image.fromarray(np.ascontiguousarray(np.repeat(ramp[None], thick, 0))), (start, top)
    )


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


def map_tile(
    values: np.ndarray,
    cmap: str,
    title: tuple[str, ...] = (),
    stretch: tuple[float, float] | None = None,
) -> Tile:
    """One map as a tile through ``cmap``, its colour bar spanning :func:`display_range`."""
    span = display_range(values, cmap, stretch)
    if span is None:
        return Tile(colorize(values, cmap), title, "no finite values")
    return Tile(colorize(values, cmap, stretch), title, range_text(values), (*span, cmap))


def _stage_tiles(
    data: np.ndarray, labels: Sequence[str], name: str, cmap: str, stretch: Any
) -> list[Tile]:
    channels = data.shape[0]
    shown = min(channels, MAX_CHANNELS)
    head = f"{name} {shape_text(data.shape)}"
    tiles = []
    for c in range(shown):
        title: tuple[str, ...] = (head,) if c == 0 else ()
        if channels > 1:
            more = f" ({shown} of {channels} shown)" if c == shown - 1 and shown < channels else ""
            title += (f"{labels[c]}{more}",)
        tiles.append(map_tile(data[c], cmap, title, stretch))
    return tiles


def panel_figure(
    source: np.ndarray,
    maps: Sequence[tuple[str, np.ndarray, Sequence[str]]],
    *,
    cmap: str = "viridis",
    tile: int = 240,
    columns: int | None = None,
    title: str = "",
    stretch: tuple[float, float] | None = None,
) -> Image.Image:
    """The source and every stage side by side (figure 17-7).

    ``maps`` holds (name, (C, H, W) map, channel names) per stage. Each stage is
    a column, one tile per channel (at most MAX_CHANNELS); ``columns`` wraps the
    columns into several rows of that many. ``stretch``: see :func:`display_range`.
    """
    stretch = check_stretch(stretch)
    blocks = [[Tile(picture_rgb(source), (f"source {shape_text(source.shape)}",), "")]]
    blocks += [_stage_tiles(np.asarray(m), labels, name, cmap, stretch) for name, m, labels in maps]
    per_row = columns or len(blocks)
    rows: list[list[Tile | None]] = []
    for start in range(0, len(blocks), per_row):
        group = blocks[start : start + per_row]
        for r in range(max(len(b) for b in group)):
            rows.append([b[r] if r < len(b) else None for b in group])
    return draw(rows, tile=tile, title=title)


def grid_columns(n: int, box: tuple[int, int]) -> int:
    """How many of ``n`` tiles of ``box`` = (width, height) a grid's row holds: the fewest
    empty cells, then a figure nearest 4:3 (9 square maps: 3 by 3; 3 maps: one row).

    >>> grid_columns(9, (240, 240)), grid_columns(3, (240, 240)), grid_columns(4, (360, 240))
    (3, 3, 2)
    """

    def cost(columns: int) -> float:
        rows = -(-n // columns)
        empty = (columns * rows - n) / (columns * rows)
        aspect = columns * box[0] / (rows * box[1])
        return empty + 0.15 * abs(math.log(aspect * 3 / 4))

    return min(range(1, n + 1), key=cost)


def grid_figure(
    data: np.ndarray,
    labels: Sequence[str],
    *,
    cmap: str = "viridis",
    tile: int = 240,
    columns: int | None = None,
    title: str = "",
    stretch: tuple[float, float] | None = None,
) -> Image.Image:
    """Every channel of one (C, H, W) map in a grid, titled by its name (figure 17-6).

    ``columns`` defaults to :func:`grid_columns`' choice for the maps' shape.
    ``stretch``: see :func:`display_range`.
    """
    stretch = check_stretch(stretch)
    data = np.asarray(data)
    n = data.shape[0]
    per_row = columns or grid_columns(n, tile_box(data.shape[1:], tile))
    tiles = [map_tile(data[c], cmap, (labels[c],), stretch) for c in range(n)]
    rows = [tiles[i : i + per_row] for i in range(0, n, per_row)]
    return draw(rows, tile=tile, title=title)
