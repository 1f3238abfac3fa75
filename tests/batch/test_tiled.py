"""Tiled filtering (convtool.batch.tiled) and its TIFF reader: tile-by-tile results equal
whole-picture ones bit for bit (every border, odd and even kernels, colour and grey, awkward
sizes, through the command line too), bounded reads, refusals, automatic tiling and atomic
output."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import scipy.ndimage as ndi
import tifffile
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convtool import filtering, imaging, vocab
from convtool.batch import apply_task, tiled
from convtool.cli import cli
from convtool.filtering import tiles
from convtool.imaging.tiff import TiffSource, Unsupported
from convtool.kernels import parse_kernel_spec
from tests.naive import SCIPY_MODES

BORDERS = list(vocab.BORDERS)
DTYPES = {8: np.uint8, 16: np.uint16, 32: np.float32}


def make_tiff(path, shape, bits=8, layout="contig", seed=0, alpha=False, byteorder="<"):
    """A random picture (H, W) or (H, W, C) written with tifffile in the given layout."""
    rng = np.random.default_rng(seed)
    dtype = DTYPES[bits]
    if bits == 32:
        data = (rng.random(shape) * 1.6 - 0.3).astype(np.float32)
    else:
        data = rng.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)
    samples = 1 if len(shape) == 2 else shape[2]
    kw = {"photometric": "rgb" if samples - alpha >= 3 else "minisblack"}
    if samples > 1:
        kw["planarconfig"] = "contig"
    if alpha:
        kw["extrasamples"] = ("unassalpha",)
    if layout == "tiled":
        kw["tile"] = (16, 32)
    elif layout == "zlib":
        kw.update(compression="zlib", rowsperstrip=5)
    elif layout == "separate":
        data = np.moveaxis(data, 2, 0).copy()
        kw["planarconfig"] = "separate"
    tifffile.imwrite(path, data, metadata=None, byteorder=byteorder, **kw)
    return str(path)


def kernel(spec: str, bias=None) -> filtering.Prepared:
    parsed = parse_kernel_spec(spec)
    return filtering.prepare_kernel(
        parsed.weights, name=parsed.name, slug=parsed.slug, bias=bias or parsed.bias
    )


def random_kernel(rng, kh, kw, name="custom"):
    return filtering.prepare_kernel(rng.standard_normal((kh, kw)), name=name, bias=0.03)


def both(tmp_path, source, options, tile=16, combine=None, n=1):
    """Run one task whole and in tiles; (whole array, tiled array, whole records, tiled ones)."""
    outs = {}
    for way in ("whole", "tiled"):
        target = str(tmp_path / f"{way}.tif")
        if os.path.exists(target):
            os.remove(target)
        out = apply_task.Output(target, tuple(range(n)), combine, "k")
        task = apply_task.Task(source, (out,))
        records = apply_task.run_task(task, options, tile=0 if way == "whole" else tile)
        for r in records:
            r.pop("output")
        outs[way] = (tifffile.imread(target), records)
    return outs["whole"][0], outs["tiled"][0], outs["whole"][1], outs["tiled"][1]


def assert_same(a, b, ra, rb):
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes()
    assert json.dumps(ra) == json.dumps(rb)


# ----------------------------------------------------------------- equality


@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("size", [(3, 3), (4, 4), (2, 5), (6, 3), (1, 1)])
@pytest.mark.parametrize("picture", ["grey", "rgb"])
def test_every_border_odd_and_even_kernels(tmp_path, border, size, picture):
    rng = np.random.default_rng(sum(size))
    shape = (37, 53) if picture == "grey" else (37, 53, 3)
    source = make_tiff(tmp_path / "in.tif", shape, bits=16, seed=len(border))
    k = random_kernel(rng, *size)
    for color in ("channels", "gray", "sum") if picture == "rgb" else ("channels",):
        options = apply_task.Options(kernels=(k,), border=border, color=color, depth=32)
        assert_same(*both(tmp_path, source, options))


@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("spec", ["fft", "box:31", "gaussian:15", "dog", "sum", "4-D"])
def test_planned_paths_in_tiles(tmp_path, border, spec):
    """Kernels the planner gives to the FFT (blocks on the whole picture's grid) or to
    1-D passes: tiles of any side give the whole picture's bytes."""
    rng = np.random.default_rng(11)
    if spec == "fft":
        k = random_kernel(rng, 15, 13)
    elif spec == "dog":
        k = filtering.prepare_kernel(
            parse_kernel_spec("gaussian:21,2").weights - parse_kernel_spec("gaussian:21,4").weights
        )
    elif spec == "4-D":  # channel pairs on their own paths: separable and FFT
        w = np.repeat(parse_kernel_spec("gaussian:15").weights[None, None], 3, axis=1)
        w[0, 2] = rng.standard_normal((15, 15))
        k = filtering.prepare_kernel(w)
    else:
        k = kernel("gaussian:15" if spec == "sum" else spec)
    source = make_tiff(tmp_path / "in.tif", (300, 270, 3), bits=16, seed=3)
    color = "sum" if spec == "sum" else "channels"
    options = apply_task.Options(kernels=(k,), border=border, depth=32, color=color)
    for tile in (48, 256):
        assert_same(*both(tmp_path, source, options, tile=tile))


@pytest.mark.parametrize(
    "shape",
    [(16, 16), (15, 17), (17, 15), (1, 40), (40, 1), (33, 16), (5, 5)],
    ids=lambda s: f"{s[0]}x{s[1]}",
)
@pytest.mark.parametrize("border", BORDERS)
def test_awkward_sizes(tmp_path, shape, border):
    # one tile, one more than a tile, single rows and columns, pictures smaller than the kernel
    source = make_tiff(tmp_path / "in.tif", shape, bits=8, seed=shape[0])
    for spec in ("gaussian:7", "box:4x6", "sobel_x"):
        options = apply_task.Options(kernels=(kernel(spec),), border=border, map="abs")
        assert_same(*both(tmp_path, source, options))


@settings(
    deadline=None, max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    height=st.integers(1, 70),
    width=st.integers(1, 70),
    samples=st.sampled_from([(1, False), (3, False), (2, True), (4, True)]),
    bits=st.sampled_from([8, 16, 32]),
    layout=st.sampled_from(["contig", "tiled", "zlib"]),
    kh=st.integers(1, 9),
    kw=st.integers(1, 9),
    border=st.sampled_from(BORDERS),
    color=st.sampled_from(["channels", "gray", "sum"]),
    value_map=st.sampled_from([None, "clip", "abs", "normalize", "offset"]),
    depth=st.sampled_from([None, 32]),
    geometry=st.sampled_from(
        [("same", (1, 1))] * 4 + [("same", (2, 3)), ("valid", (1, 1)), (2, (2, 2)), (3, (1, 2))]
    ),
    tile=st.sampled_from([16, 32]),
    seed=st.integers(0, 2**16),
)
def test_tiled_equals_whole(
    tmp_path,
    height,
    width,
    samples,
    bits,
    layout,
    kh,
    kw,
    border,
    color,
    value_map,
    depth,
    geometry,
    tile,
    seed,
):
    count, alpha = samples
    shape = (height, width) if count == 1 else (height, width, count)
    source = make_tiff(tmp_path / "in.tif", shape, bits, layout, seed, alpha)
    rng = np.random.default_rng(seed)
    padding, stride = geometry
    pad = 0 if padding == "valid" else padding
    if pad != "same" and (kh > height + 2 * pad or kw > width + 2 * pad):
        padding = "same"  # the kernel must fit the padded picture (refused alike otherwise)
    k = random_kernel(rng, kh, kw)
    options = apply_task.Options(
        kernels=(k,),
        border=border,
        color=color,
        map=value_map,
        depth=depth,
        padding=padding,
        stride=stride,
        alpha="keep",  # tiles carry alpha through; premultiplied alpha is filtered whole
    )
    assert_same(*both(tmp_path, source, options, tile=tile))


@pytest.mark.parametrize("bias", [None, 0.25])
@pytest.mark.parametrize("shape", [(11, 1), (11, 1, 3), (1, 9, 3)])
def test_a_tile_of_nothing_but_zero_padding_is_the_bias(tmp_path, shape, bias):
    # padding 3 with stride 2 puts every output column (or row) of a 1-pixel-wide picture
    # on the padding: the tile reads no pixel, and holds the bias alone, as the whole does
    source = make_tiff(tmp_path / "in.tif", shape, bits=32, seed=3)
    k = filtering.prepare_kernel(np.array([[-0.5]]), bias=bias)
    stride = (1, 2) if shape[1] == 1 else (2, 1)
    options = apply_task.Options(kernels=(k,), padding=3, stride=stride, depth=32)
    assert_same(*both(tmp_path, source, options, tile=16))


@pytest.mark.parametrize("stride", [(2, 2), (3, 2), (2, 3)])
@pytest.mark.parametrize("size", [(6, 6), (8, 5), (4, 7)])
def test_strides_with_uneven_padding(tmp_path, stride, size):
    # odd sides and even kernels: more zero padding after than before, the core's way
    source = make_tiff(tmp_path / "in.tif", (69, 71, 3), bits=32, seed=sum(stride))
    k = random_kernel(np.random.default_rng(sum(size)), *size)
    for padding in ("same", 2):
        options = apply_task.Options(kernels=(k,), stride=stride, padding=padding, depth=32)
        assert_same(*both(tmp_path, source, options))


def test_several_kernels_combined(tmp_path):
    source = make_tiff(tmp_path / "in.tif", (45, 60, 3), bits=8)
    options = apply_task.Options(kernels=(kernel("sobel_x"), kernel("sobel_y")), border="mirror")
    for how in ("magnitude", "max", "sum"):
        assert_same(*both(tmp_path, source, options, combine=how, n=2))


def test_full_kernel_sets_the_channels(tmp_path):
    rng = np.random.default_rng(5)
    source = make_tiff(tmp_path / "in.tif", (30, 41, 3), bits=16)
    full = filtering.prepare_kernel(rng.standard_normal((3, 3, 4, 3)), name="full")
    options = apply_task.Options(kernels=(full,), border="reflect", map="normalize")
    assert_same(*both(tmp_path, source, options))


def test_tiled_matches_scipy(tmp_path):
    # an independent reference too, not only the whole-picture path
    source = make_tiff(tmp_path / "in.tif", (50, 47), bits=32, seed=3)
    x = tifffile.imread(source).astype(np.float64)
    rng = np.random.default_rng(1)
    w = rng.standard_normal((5, 5))
    for border in BORDERS:
        options = apply_task.Options(
            kernels=(filtering.prepare_kernel(w),), border=border, depth=32
        )
        target = tmp_path / f"{border}.tif"
        task = apply_task.Task(source, (apply_task.Output(str(target), (0,), None, "k"),))
        apply_task.run_task(task, options, tile=16)
        expected = ndi.correlate(x, w, mode=SCIPY_MODES[border])
        assert np.allclose(tifffile.imread(target), expected, atol=1e-4)


# ----------------------------------------------------------------- the reader


@pytest.mark.parametrize("layout", ["contig", "tiled", "zlib", "separate"])
@pytest.mark.parametrize("byteorder", ["<", ">"])
def test_regions_equal_the_whole_picture(tmp_path, layout, byteorder):
    shape = (41, 67, 4)
    path = make_tiff(tmp_path / "in.tif", shape, 16, layout, alpha=True, byteorder=byteorder)
    whole = imaging.read_image(path)
    rng = np.random.default_rng(0)
    with TiffSource(path) as source:
        assert (source.height, source.width, source.channels) == (41, 67, 3)
        assert source.has_alpha and source.bit_depth == 16
        for _ in range(20):
            rows = rng.integers(0, 41, rng.integers(1, 30))
            cols = rng.integers(0, 67, rng.integers(1, 30))
            data, alpha = source.region(rows, cols)
            assert np.array_equal(data, whole.data[np.ix_(rows, cols)])
            assert np.array_equal(alpha, whole.alpha[np.ix_(rows, cols)])


@pytest.mark.parametrize("layout", ["contig", "tiled"])
def test_reads_stay_near_the_tile(tmp_path, layout, monkeypatch):
    # the bounded-memory promise: no read is much larger than a tile and its halo
    source = make_tiff(tmp_path / "in.tif", (300, 410, 3), bits=8, layout=layout)
    largest = []
    block = TiffSource._block

    def spy(self, r0, r1, c0, c1):
        largest.append((r1 - r0) * (c1 - c0))
        return block(self, r0, r1, c0, c1)

    monkeypatch.setattr(TiffSource, "_block", spy)
    options = apply_task.Options(kernels=(kernel("gaussian:7"),), border="wrap")
    task = apply_task.Task(source, (apply_task.Output(str(tmp_path / "out.tif"), (0,), None, "g"),))
    apply_task.run_task(task, options, tile=32)
    assert max(largest) <= (32 + 6) ** 2
    assert sum(largest) < 1.5 * 300 * 410 * (38 / 32) ** 2  # each pixel read about once


def test_segment_cache_is_bounded(tmp_path):
    path = make_tiff(tmp_path / "in.tif", (128, 128), bits=8, layout="tiled")
    with TiffSource(path, cache_bytes=4 * 16 * 32) as source:
        source.region(np.arange(128), np.arange(128))
        assert source._cached <= 4 * 16 * 32 and len(source._cache) == 4


def test_unsupported_layouts_are_named(tmp_path):
    palette = tmp_path / "palette.tif"
    tifffile.imwrite(
        palette, np.zeros((8, 8), np.uint8), photometric="palette", colormap=np.zeros((3, 256))
    )
    with pytest.raises(Unsupported, match="photometric 3"):
        TiffSource(str(palette))
    bilevel = tmp_path / "bilevel.tif"
    tifffile.imwrite(bilevel, np.zeros((8, 16), bool), photometric="minisblack")
    with pytest.raises(Unsupported, match="1-bit"):
        TiffSource(str(bilevel))


# ----------------------------------------------------------------- the command line


def apply(*args):
    return CliRunner().invoke(cli, ["apply", *map(str, args)])


def records(result):
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("border", BORDERS)
def test_cli_tiled_equals_whole(tmp_path, border):
    source = make_tiff(tmp_path / "in.tif", (70, 45, 3), bits=8)
    runs = {}
    for name, tile in (("whole", "0"), ("tiled", "16")):
        target = tmp_path / f"{name}.tif"
        args = [source, "-k", "gaussian:5", "-k", "box:4", "--combine", "max", "--json"]
        done = apply(*args, "--border", border, "-o", target, "--tile", tile)
        assert done.exit_code == 0, done.output
        runs[name] = (tifffile.imread(target), records(done))
        with tifffile.TiffFile(target) as tif:
            assert tif.pages.first.is_tiled == (name == "tiled")
    (a, ra), (b, rb) = runs["whole"], runs["tiled"]
    assert a.dtype == np.uint8 and a.tobytes() == b.tobytes()
    assert [dict(r, output=None) for r in ra] == [dict(r, output=None) for r in rb]


def test_cli_refuses_tiles_below_the_halo(tmp_path):
    source = make_tiff(tmp_path / "in.tif", (20, 20))
    done = apply(source, "-k", "gaussian:41", "--tile", "16", "-o", tmp_path / "o.tif")
    assert done.exit_code == 2
    assert "reach of kernel gaussian:41" in done.output and "32 or more" in done.output
    done = apply(source, "-k", "sobel_x", "--tile", "24", "-o", tmp_path / "o.tif")
    assert done.exit_code == 2 and "multiple of 16" in done.output
    assert not (tmp_path / "o.tif").exists()


def test_cli_refuses_tiles_into_other_formats(tmp_path):
    source = make_tiff(tmp_path / "in.tif", (20, 20))
    done = apply(source, "-k", "sobel_x", "--tile", "16", "-o", tmp_path / "o.png")
    assert done.exit_code == 2 and "TIFF" in done.output
    piped = open(source, "rb").read()  # noqa: SIM115
    args = ["apply", "-", "-k", "blur", "--tile", "16", "-o", str(tmp_path / "x.tif")]
    done = CliRunner().invoke(cli, args, input=piped)
    assert done.exit_code == 2 and "standard input" in done.output


def test_cli_non_tiff_input_fails_alone(tmp_path):
    png = tmp_path / "a.png"
    imaging.write_image(png, np.zeros((10, 10)))
    source = make_tiff(tmp_path / "b.tif", (20, 20))
    done = apply(png, source, "-k", "blur", "--tile", "16", "--format", "tif", "-o", f"{tmp_path}/")
    assert done.exit_code == 1
    assert "not a TIFF file" in done.stderr and "a.png" in done.stderr
    assert (tmp_path / "b.blur.tif").exists() and not (tmp_path / "a.blur.tif").exists()


def test_big_pictures_are_tiled_automatically(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # a 'big' picture is now 30x30
    source = make_tiff(tmp_path / "in.tif", (30, 30, 3))
    small = make_tiff(tmp_path / "small.tif", (20, 20, 3))
    done = apply(source, small, "-k", "sharpness", "-o", f"{tmp_path}/")
    assert done.exit_code == 0, done.output
    with tifffile.TiffFile(tmp_path / "in.sharpness.tif") as tif:
        assert tif.pages.first.is_tiled and tif.pages.first.tilewidth == tiles.TILE
    with tifffile.TiffFile(tmp_path / "small.sharpness.tif") as tif:
        assert not tif.pages.first.is_tiled
    # a big picture written to a format that cannot be tiled: the way out is named
    done = apply(source, "-k", "sharpness", "-o", tmp_path / "out.png")
    assert done.exit_code == 1 and "write a .tif, to filter it in tiles" in done.stderr
    # --max-pixels given explicitly still holds in tiles
    done = apply(source, "-k", "sharpness", "-o", tmp_path / "o2.tif", "--max-pixels", "800")
    assert done.exit_code == 1 and "--max-pixels" in done.stderr


def test_should_tile_thresholds(monkeypatch):
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    monkeypatch.setattr(tiled, "_memory", lambda: 16 * 4 * 3 * 900)
    assert tiled.should_tile(40, 40) and not tiled.should_tile(30, 30, 1)
    assert tiled.should_tile(30, 30, 4) and not tiled.should_tile(30, 30, 3)


def test_existing_output_kept_and_failures_leave_nothing(tmp_path, monkeypatch):
    source = make_tiff(tmp_path / "in.tif", (40, 40))
    target = tmp_path / "out.tif"
    target.write_bytes(b"keep")
    done = apply(source, "-k", "blur", "--tile", "16", "-o", target)
    assert done.exit_code == 1 and "exists" in done.stderr and target.read_bytes() == b"keep"
    calls = []
    original = tiled.correlate

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise MemoryError("no room for this tile")
        return original(*args, **kwargs)

    monkeypatch.setattr(tiled, "correlate", failing)
    done = apply(source, "-k", "blur", "--tile", "16", "-o", tmp_path / "new.tif")
    assert done.exit_code == 1 and "no room for this tile" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif", "out.tif"]


def test_reach_and_tile_sizes():
    k7, k40 = kernel("gaussian:7"), filtering.prepare_kernel(np.ones((40, 3)))
    assert tiles.reach([k7]) == 3 and tiles.reach([k7, k40]) == 20
    assert tiles.reach([k7], padding=(9, 1)) == 9
    assert tiles.auto_tile([k7]) == tiles.TILE
    assert tiles.auto_tile([filtering.prepare_kernel(np.ones((2101, 1)))]) == 1056
    tiles.check_tile(32, [k40])
    with pytest.raises(tiles.TileError):
        tiles.check_tile(16, [k40])


def test_cli_tiles_in_worker_processes(tmp_path):
    sources = [make_tiff(tmp_path / f"in{i}.tif", (40, 50 + i, 3), seed=i) for i in range(3)]
    for name, tile in (("whole", "0"), ("tiled", "16")):
        (tmp_path / name).mkdir()
        done = apply(*sources, "-k", "emboss", "--tile", tile, "-j", "2", "-o", tmp_path / name)
        assert done.exit_code == 0, done.output
    for i in range(3):
        a = tifffile.imread(tmp_path / "whole" / f"in{i}.embossing.tif")
        b = tifffile.imread(tmp_path / "tiled" / f"in{i}.embossing.tif")
        assert a.tobytes() == b.tobytes()
