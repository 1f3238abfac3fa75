"""convtool.panel: colour maps against their published values, normalisation, and the
layout of panels (figure 17-7) and grids (figure 17-6), found back in the pixels."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from convtool.pipeline import figures


def hex_rgb(text: str) -> list[int]:
    return [int(text[i : i + 2], 16) for i in (1, 3, 5)]


def frames(figure) -> list[tuple[int, int, int, int]]:
    """(top, left, height, width) of every framed picture in a figure, row by row.

    A picture is drawn inside a one-pixel frame of figures.FRAME; text is much
    smaller than any picture, so small components are left out.
    """
    a = np.asarray(figure)
    mask = np.all(a == figures.FRAME, axis=2)
    labels, _ = ndi.label(mask)
    boxes = []
    for sl in ndi.find_objects(labels):
        h, w = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
        if h >= 16 and w >= 16:
            boxes.append((sl[0].start + 1, sl[1].start + 1, h - 2, w - 2))  # inside the frame
    return sorted(boxes)


def inside(figure, box) -> np.ndarray:
    top, left, h, w = box
    return np.asarray(figure)[top : top + h, left : left + w]


def enlarged(pixels: np.ndarray, factor: int) -> np.ndarray:
    return np.repeat(np.repeat(pixels, factor, axis=0), factor, axis=1)


# ------------------------------------------------------------ colour maps


def test_viridis_matches_its_published_colours():
    table = figures.lookup_table("viridis")
    assert table.shape == (256, 3) and table.dtype == np.uint8
    # matplotlib's viridis at 0, 0.25, 0.5, 0.75 and 1 (entries 0, 64, 128, 192, 255)
    for index, colour in [
        (0, "#440154"),
        (64, "#3b528b"),
        (128, "#21918c"),
        (192, "#5ec962"),
        (255, "#fde725"),
    ]:
        assert np.abs(table[index].astype(int) - hex_rgb(colour)).max() <= 1, index
    # perceptually ordered: lightness (luma) never falls (8-bit steps may tie)
    luma = table @ np.array([0.299, 0.587, 0.114])
    assert np.all(np.diff(luma) >= 0) and luma[-1] - luma[0] > 180


def test_diverging_is_white_at_zero_and_symmetric():
    table = figures.lookup_table("diverging")
    assert len(table) % 2 == 1
    v = np.array([[-3.0, -1.5, 0.0, 1.5, 3.0]])
    rgb = figures.colorize(v, "diverging")[0].tolist()
    assert rgb[2] == [247, 247, 247]
    assert rgb[0] == hex_rgb("#053061") and rgb[4] == hex_rgb("#67001f")
    assert rgb[1][2] > rgb[1][0] and rgb[3][0] > rgb[3][2]  # blue below 0, red above
    # the scale is set by the largest magnitude: 0 stays white however lopsided the range
    assert figures.colorize(np.array([[0.0, 10.0, -0.1]]), "diverging")[0, 0].tolist() == [247] * 3


def test_colorize_stretches_min_to_max():
    v = np.array([[2.0, 4.0], [3.0, np.nan]])
    rgb = figures.colorize(v, "gray")
    assert rgb[0, 0].tolist() == [0, 0, 0] and rgb[0, 1].tolist() == [255] * 3
    assert rgb[1, 0].tolist() == [128] * 3  # halfway: round(0.5 * 255)
    assert rgb[1, 1].tolist() == [0, 0, 0]  # NaN shows as the bottom of the map
    assert (figures.colorize(np.full((3, 3), 7.0)) == figures.lookup_table("viridis")[0]).all()
    with pytest.raises(ValueError, match="colour map"):
        figures.colorize(v, "jet")
    with pytest.raises(ValueError, match=r"one \(H, W\) map"):
        figures.colorize(np.zeros((2, 2, 2)))


@settings(deadline=None, max_examples=40)
@given(
    arrays(np.float64, (5, 6), elements=st.integers(-100, 100).map(float)),
    st.floats(0.01, 50),
    st.floats(-20, 20),
    st.sampled_from(figures.CMAPS),
)
def test_colorize_ignores_positive_scaling(v, a, b, cmap):
    # what a viewer sees does not depend on the unit of the map (nor on an offset,
    # except for the diverging map, whose centre is 0)
    b = 0.0 if cmap == "diverging" else b
    lhs, rhs = figures.colorize(v, cmap).astype(int), figures.colorize(a * v + b, cmap).astype(int)
    assert np.abs(lhs - rhs).max() <= 12  # at most one table step, from rounding


def test_picture_rgb_shows_the_source_as_it_is():
    rgb = np.random.default_rng(0).random((3, 4, 5))
    np.testing.assert_array_equal(
        figures.picture_rgb(rgb), np.rint(rgb.transpose(1, 2, 0) * 255).astype(np.uint8)
    )
    grey = figures.picture_rgb(np.array([[[0.0, 1.0]]]))
    assert grey.tolist() == [[[0, 0, 0], [255, 255, 255]]]
    stretched = figures.picture_rgb(np.array([[[-1.0, 3.0]]]))  # out of [0, 1]: min..max
    assert stretched.tolist() == [[[0, 0, 0], [255, 255, 255]]]


def test_scaled_enlarges_by_whole_factors_and_reduces_to_fit():
    px = np.random.default_rng(1).integers(0, 256, (39, 20, 3), dtype=np.uint8)
    big = figures.scaled(px, 240)
    assert big.size == (120, 234)  # factor 6
    np.testing.assert_array_equal(np.asarray(big), enlarged(px, 6))
    small = figures.scaled(np.zeros((500, 250, 3), np.uint8), 100)
    assert small.size == (50, 100)
    # a whole factor would leave the box a quarter empty (41 * 3 = 123 of 160): fill it
    q = np.random.default_rng(2).integers(0, 256, (41, 41, 3), dtype=np.uint8)
    odd = figures.scaled(q, 160)
    assert odd.size == (160, 160)
    nearest = ((np.arange(160) + 0.5) * 41 / 160).astype(int)  # the pixel under each centre
    np.testing.assert_array_equal(np.asarray(odd), q[np.ix_(nearest, nearest)])


# ------------------------------------------------------------ figures


def test_panel_is_figure_17_7_source_conv_relu_pool_side_by_side():
    rng = np.random.default_rng(2)
    source = rng.random((3, 80, 80))
    conv = rng.normal(size=(1, 78, 78))
    relu = np.maximum(conv, 0)
    pool = relu.reshape(1, 39, 2, 39, 2).max(axis=(2, 4))
    maps = [(n, m, ["k"]) for n, m in [("conv", conv), ("relu", relu), ("maxpool", pool)]]
    fig = figures.panel_figure(source, maps, tile=240, title="conv -> relu -> maxpool")
    boxes = frames(fig)
    assert [(h, w) for _, _, h, w in boxes] == [(240, 240), (234, 234), (234, 234), (234, 234)]
    assert len({top for top, _, _, _ in boxes}) == 1  # one row, pictures at its top
    lefts = [left for _, left, _, _ in boxes]
    assert lefts == sorted(lefts)
    np.testing.assert_array_equal(inside(fig, boxes[0]), enlarged(figures.picture_rgb(source), 3))
    np.testing.assert_array_equal(inside(fig, boxes[1]), enlarged(figures.colorize(conv[0]), 3))
    np.testing.assert_array_equal(inside(fig, boxes[3]), enlarged(figures.colorize(pool[0]), 6))
    # a title above every tile, and the figure's title on top
    a = np.asarray(fig)
    for top, left, _, w in boxes:
        band = a[top - 30 : top - 2, left : left + w]
        assert (band.sum(axis=2) < 200).any()
    assert (a[: boxes[0][0] - 25].sum(axis=2) < 200).any()  # above the tiles' titles


def test_panel_gives_a_row_per_channel_and_wraps_columns():
    rng = np.random.default_rng(3)
    source = rng.random((1, 20, 20))
    two = rng.normal(size=(2, 18, 18))
    fig = figures.panel_figure(
        source, [("conv", two, ["a", "b"]), ("relu", np.maximum(two, 0), ["a", "b"])], tile=60
    )
    boxes = frames(fig)
    assert len(boxes) == 5  # the source once, two maps per stage
    tops = sorted({top for top, _, _, _ in boxes})
    assert len(tops) == 2  # two rows; the source only in the first
    assert [top for top, _, _, _ in boxes].count(tops[0]) == 3
    # columns=2: source and conv on the first row, relu below
    wrapped = figures.panel_figure(
        source, [("conv", two[:1], ["a"]), ("relu", two[:1], ["a"])], tile=60, columns=2
    )
    tops = [top for top, _, _, _ in frames(wrapped)]
    assert len(tops) == 3 and tops[0] == tops[1] and tops[2] > tops[0] + 60


def test_panel_shows_at_most_max_channels_per_stage():
    many = np.random.default_rng(4).normal(size=(figures.MAX_CHANNELS + 3, 8, 8))
    fig = figures.panel_figure(
        np.zeros((1, 10, 10)), [("conv", many, [str(i) for i in range(len(many))])], tile=32
    )
    assert len(frames(fig)) == 1 + figures.MAX_CHANNELS


@pytest.mark.parametrize(
    ("count", "columns", "layout"),
    [(9, None, [3, 3, 3]), (5, None, [3, 2]), (5, 2, [2, 2, 1]), (1, None, [1])],
)
def test_grid_is_figure_17_6(count, columns, layout):
    maps = np.random.default_rng(5).normal(size=(count, 16, 16))
    names = [f"k{i}" for i in range(count)]
    fig = figures.grid_figure(maps, names, tile=64, columns=columns, title="filters")
    boxes = frames(fig)
    rows: dict[int, list] = {}
    for box in boxes:
        rows.setdefault(box[0], []).append(box)
    assert [len(r) for _, r in sorted(rows.items())] == layout
    ordered = [b for _, r in sorted(rows.items()) for b in sorted(r, key=lambda b: b[1])]
    for c, box in enumerate(ordered):  # row-major, in channel order
        np.testing.assert_array_equal(inside(fig, box), enlarged(figures.colorize(maps[c]), 4))


def test_draw_refuses_what_cannot_be_drawn():
    with pytest.raises(ValueError, match="at least 16"):
        figures.draw([[figures.Tile(np.zeros((2, 2, 3), np.uint8))]], tile=8)
    with pytest.raises(ValueError, match="at least one tile"):
        figures.draw([])


def test_names_and_texts():
    assert figures.stage_names(["conv", "relu", "conv", "maxpool"]) == [
        "conv 1",
        "relu",
        "conv 2",
        "maxpool",
    ]
    assert figures.shape_text((1, 78, 78)) == "(1, 78, 78)"
    assert figures.range_text(np.array([-12.0, 3.5, np.nan])) == "-12 .. 3.5"


# ------------------------------------------------------------ photographs


def blank_share(figure) -> float:
    """The share of a figure that is background: neither a picture (inside its frame),
    nor text, nor a colour bar."""
    a = np.asarray(figure)
    blank = np.all(a == figures.BACKGROUND, axis=2)
    for top, left, h, w in frames(figure):
        blank[top - 1 : top + h + 1, left - 1 : left + w + 1] = False
    return float(blank.mean())


@pytest.fixture(scope="module")
def photograph() -> np.ndarray:
    """The sample scene cut to a 3:2 landscape photograph, (3, 341, 512) in [0, 1]."""
    from pathlib import Path

    from convtool import imaging

    scene = imaging.read_image(Path(__file__).resolve().parents[2] / "samples" / "scene.png")
    return np.ascontiguousarray(scene.data[86:427].transpose(2, 0, 1))


def test_a_landscape_photographs_panel_and_grid_are_at_most_a_quarter_blank(photograph):
    from convtool.pipeline import run_pipeline

    results = run_pipeline(photograph, kernels=["sobel_x"])  # figure 17-7's chain
    maps = [(r.stage.kind, r.data, r.labels) for r in results]
    panel = figures.panel_figure(photograph, maps, title="conv -> relu -> maxpool")
    assert blank_share(panel) <= 0.25
    boxes = frames(panel)
    assert all(h == 240 and w in (360, 361) for _, _, h, w in boxes[:3])  # the maps' shape
    chapter = "sharpness+vertical_edge+surround+sobel_y+nothing+horizontal_edge+blur+sobel_x"
    nine = run_pipeline(photograph, f"conv:{chapter}+embossing,p=same")[0]
    grid = figures.grid_figure(nine.data, nine.labels, title="figure 17-6")
    assert blank_share(grid) <= 0.25
    assert len({top for top, *_ in frames(grid)}) == 3  # 3 by 3
    portrait = figures.grid_figure(nine.data.transpose(0, 2, 1), nine.labels)
    assert frames(portrait)[0][2:] == (240, 160)


def test_tiles_take_their_maps_shape_and_grids_choose_few_empty_cells():
    assert figures.tile_box((341, 512), 240) == (360, 240)
    assert figures.tile_box((512, 341), 240) == (160, 240)
    assert figures.tile_box((10, 1000), 100) == (200, 2)  # very wide: less tall
    assert figures.tile_box((1000, 10), 100) == (50, 100)  # very tall: at least half wide
    px = np.random.default_rng(6).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    im = figures.scaled(px, 360, 240)
    assert im.size == (360, 240)  # a whole factor, 12, fills the box
    np.testing.assert_array_equal(np.asarray(im), enlarged(px, 12))
    for n in range(1, 30):
        for box in ((240, 240), (360, 240), (160, 240)):
            c = figures.grid_columns(n, box)
            rows = -(-n // c)
            assert c * rows - n < rows  # never a whole empty row
            assert c * rows - n <= max(1, n // 4)


def test_stretch_spans_percentiles_and_the_default_min_to_max():
    v = np.random.default_rng(7).normal(size=(50, 60)) ** 3  # faint but for a few pixels
    lo, hi = np.percentile(v, [1, 99])
    assert figures.display_range(v, "viridis", (1, 99)) == (lo, hi)
    assert figures.display_range(v, "gray") == (v.min(), v.max())
    assert figures.display_range(v, "gray", (0, 100)) == (v.min(), v.max())
    top = np.percentile(np.abs(v), 99)
    assert figures.display_range(v, "diverging", (1, 99)) == (-top, top)
    table = figures.lookup_table("viridis")
    shown = figures.colorize(v, "viridis", (1, 99))
    assert (shown[v <= lo] == table[0]).all() and (shown[v >= hi] == table[-1]).all()
    inner = (v > lo) & (v < hi)
    plain = figures.colorize(v)
    # the stretch spreads the middle: more distinct colours where the plain map is faint
    assert len(np.unique(shown[inner], axis=0)) > 2 * len(np.unique(plain[inner], axis=0))
    assert np.array_equal(figures.colorize(v, "viridis", None), plain)
    for bad in ((99, 1), (-1, 50), (5, 101), (3,), "1,99", (1, np.nan)):
        with pytest.raises(ValueError, match="stretch"):
            figures.check_stretch(bad)


def test_each_map_tile_has_a_colour_bar_of_its_range():
    v = np.linspace(-2.0, 5.0, 64 * 96).reshape(64, 96)
    for cmap in ("viridis", "diverging"):
        fig = figures.grid_figure(v[None], ["k"], tile=120, cmap=cmap)
        a = np.asarray(fig)
        top, left, h, w = frames(fig)[0]
        band = a[top + h + 1 :, left - 1 : left + w + 1]
        table = [tuple(c) for c in figures.lookup_table(cmap)]
        index = {c: i for i, c in enumerate(table)}
        rows = [[index.get(tuple(p)) for p in row] for row in band]
        row = max(rows, key=lambda r: sum(i is not None for i in r))
        found = [i for i in row if i is not None]
        assert len(found) > w // 2  # a bar across most of the tile
        assert found == sorted(found) and found[0] <= 2 and found[-1] >= len(table) - 3
    tile = figures.map_tile(v, "diverging")
    assert tile.bar == (-5.0, 5.0, "diverging")
    assert figures.map_tile(np.full((2, 2), np.nan), "gray").bar is None


def test_the_modules_examples_run():
    import doctest

    from convtool.pipeline import colours

    for module in (figures, colours):
        failed, tried = doctest.testmod(module)
        assert tried and not failed
