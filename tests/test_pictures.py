"""The Python API for pictures (convtool.apply, kernel, read_image, write_image): scipy's
correlate for every border, the command line's .npy bytes, the dtype policy, the errors,
and the docstrings' examples."""

from __future__ import annotations

import doctest
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage as ndi
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import convtool
from convtool.cli import cli
from tests.naive import SCIPY_MODES

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
values = st.floats(-4, 4, width=32, allow_subnormal=False)
# scipy skips weights within DBL_EPSILON of 0 (ni_filters.c): tiny weights are 0 here
weights = values.map(lambda v: 0.0 if abs(v) < 1e-6 else v)


def scipy_reference(x: np.ndarray, w: np.ndarray, border: str) -> np.ndarray:
    """scipy's correlate with the matching mode, in float64; an even kernel side anchored
    one after its centre, as convtool's 'same' padding puts the extra row after."""
    origin = [-1 if n % 2 == 0 else 0 for n in w.shape]
    x64 = x.astype(np.float64)
    if x.ndim == 3:  # each channel alike
        w, origin = w[:, :, None], [*origin, 0]
    return ndi.correlate(x64, w.astype(np.float64), mode=SCIPY_MODES[border], origin=origin)


@st.composite
def picture_and_kernel(draw, channels=(None,)):
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    c = draw(st.sampled_from(channels))
    shape = (h, w) if c is None else (h, w, c)
    x = draw(hnp.arrays(np.float32, shape, elements=values))
    # kernels no larger than the picture: a border wider than the picture is each
    # library's own business (scipy and numpy.pad repeat it differently)
    kh, kw = draw(st.integers(1, min(h, 5))), draw(st.integers(1, min(w, 5)))
    k = draw(hnp.arrays(np.float64, (kh, kw), elements=weights))
    return x, k


@pytest.mark.parametrize("border", list(SCIPY_MODES))
@settings(deadline=None, max_examples=40)
@given(case=picture_and_kernel(channels=(None, 3)))
def test_apply_equals_scipy_correlate_for_each_border(border, case):
    x, k = case
    got = convtool.apply(x, k, border=border)
    want = scipy_reference(x, k, border)
    assert got.dtype == np.float32 and got.shape == want.shape
    scale = np.abs(k).sum() * max(1.0, float(np.abs(x).max()))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize("border", list(SCIPY_MODES))
@settings(deadline=None, max_examples=25)
@given(case=picture_and_kernel(), sh=st.integers(1, 3), sw=st.integers(1, 3))
def test_apply_same_and_strided_samples_scipys_result(border, case, sh, sw):
    """'same' with a stride: output i is the window whose anchor ((k - 1) // 2 into it)
    sits on input row i*S - top, top being half the padding 'same' needs (torch's)."""
    x, k = case
    got = convtool.apply(x, k, border=border, stride=(sh, sw))
    full = scipy_reference(x, k, border)
    index = []
    for n, kn, s in zip(x.shape, k.shape, (sh, sw), strict=True):
        out = -(-n // s)
        top = max((out - 1) * s + kn - n, 0) // 2
        index.append(np.arange(out) * s - top + (kn - 1) // 2)
    want = full[np.ix_(*index)]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(k).sum() * 4)


@settings(deadline=None, max_examples=40)
@given(case=picture_and_kernel(), sh=st.integers(1, 3), sw=st.integers(1, 3))
def test_apply_valid_and_strided_is_scipys_interior_subsampled(case, sh, sw):
    x, k = case
    got = convtool.apply(x, k, padding="valid", stride=(sh, sw), border="zero")
    full = ndi.correlate(
        x.astype(np.float64), k, mode="constant", origin=[-1 if n % 2 == 0 else 0 for n in k.shape]
    )
    top, left = (k.shape[0] - 1) // 2, (k.shape[1] - 1) // 2
    interior = full[
        top : top + x.shape[0] - k.shape[0] + 1, left : left + x.shape[1] - k.shape[1] + 1
    ]
    want = interior[::sh, ::sw]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(k).sum() * 4)


def test_apply_color_modes_and_flip_normalize_scale_bias():
    rng = np.random.default_rng(3)
    x = rng.random((9, 11, 3), dtype=np.float32)
    k = rng.normal(size=(3, 3))
    luma = x.astype(np.float64) @ [0.299, 0.587, 0.114]
    gray = convtool.apply(x, k, color="gray", border="wrap")
    np.testing.assert_allclose(gray, ndi.correlate(luma, k, mode="wrap"), atol=1e-5)
    summed = convtool.apply(x, k, color="sum", border="mirror")
    want = sum(ndi.correlate(x[:, :, c].astype(np.float64), k, mode="mirror") for c in range(3))
    np.testing.assert_allclose(summed, want, atol=1e-5)
    # flip is the mathematical convolution; normalize, scale and bias in the CLI's order
    conv = convtool.apply(x[:, :, 0], k, flip=True, border="zero")
    np.testing.assert_allclose(
        conv, ndi.convolve(x[:, :, 0].astype(np.float64), k, mode="constant"), atol=1e-5
    )
    ones = np.ones((2, 2))
    got = convtool.apply(x[:, :, 0], ones, normalize=True, scale=3.0, bias=0.5, padding="valid")
    want = 3 * ndi.uniform_filter(x[:, :, 0].astype(np.float64), 2, origin=-1)[:-1, :-1] + 0.5
    np.testing.assert_allclose(got, want, atol=1e-5)


# ------------------------------------------------------------ the command line's bytes

CLI_CASES = [
    ("disc.png", "sobel_x", ()),
    ("disc.png", "gaussian:0x2", ("--color", "gray")),
    ("disc.png", "embossing", ("--color", "sum", "--border", "zero")),
    ("scene.png", "sobel", ("--stride", "2")),
    ("scene.png", "im:DoG:0,1,1.6", ("--flip", "--border", "mirror")),
    ("gray16.png", "unsharp:5", ("--padding", "valid", "--border", "wrap")),
    ("gray.png", "0,-1,0; -1,5,-1; 0,-1,0", ("--normalize", "--scale", "2", "--bias", "0.25")),
    ("disc_rgba.png", "blur", ()),
    ("disc_rgba.png", "box:5x3", ("--alpha", "keep", "--stride", "2x3")),
    ("disc_rgba.png", "sobel_y", ("--color", "gray")),
    ("scene.jpg", "im:Kirsch:@", ()),
]


def _keywords(options: tuple[str, ...]) -> dict:
    """The command line's options as the API's keywords (the same words)."""
    words, i = {}, 0
    while i < len(options):
        name = options[i].lstrip("-").replace("-", "_")
        if name in ("flip", "normalize"):
            words[name], i = True, i + 1
            continue
        value = options[i + 1]
        if name in ("scale", "bias"):
            value = float(value)
        words[name], i = value, i + 2
    return words


@pytest.mark.parametrize(("sample", "spec", "options"), CLI_CASES)
def test_apply_is_the_command_lines_npy_byte_for_byte(tmp_path, sample, spec, options):
    out = tmp_path / "out.npy"
    done = CliRunner().invoke(
        cli, ["apply", str(SAMPLES / sample), "-k", spec, *options, "-o", str(out)]
    )
    assert done.exit_code == 0, done.output
    want = np.load(out)
    got = convtool.apply(convtool.read_image(SAMPLES / sample), spec, **_keywords(options))
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.tobytes() == want.tobytes()


def test_a_full_kernel_file_as_the_command_line(tmp_path):
    w = np.random.default_rng(5).normal(size=(2, 3, 3, 3))
    np.save(tmp_path / "w.npy", w)
    out = tmp_path / "out.npy"
    args = ["apply", str(SAMPLES / "disc.png"), "-k", f"@{tmp_path / 'w.npy'}", "-o", str(out)]
    assert CliRunner().invoke(cli, args).exit_code == 0
    image = convtool.read_image(SAMPLES / "disc.png")
    assert convtool.apply(image, f"@{tmp_path / 'w.npy'}").tobytes() == np.load(out).tobytes()
    assert convtool.apply(image, w).tobytes() == np.load(out).tobytes()


# ------------------------------------------------------------ dtypes


def test_integer_pictures_read_as_unit_range_and_floats_as_they_are():
    rng = np.random.default_rng(1)
    x8 = rng.integers(0, 256, (7, 8, 3), dtype=np.uint8)
    x16 = rng.integers(0, 65536, (7, 8), dtype=np.uint16)
    k = "gaussian:3"
    assert np.array_equal(
        convtool.apply(x8, k), convtool.apply(x8.astype(np.float32) / np.float32(255), k)
    )
    assert np.array_equal(
        convtool.apply(x16, k), convtool.apply(x16.astype(np.float32) / np.float32(65535), k)
    )
    big = x8.astype(np.float64) * 10  # floats are not rescaled
    assert np.array_equal(convtool.apply(big, k), convtool.apply(big.astype(np.float32), k))
    assert convtool.apply(big, k).max() > 100
    assert convtool.apply(x8.astype(np.float16), k).dtype == np.float32


@pytest.mark.parametrize("dtype", [np.int32, np.int8, np.bool_, np.complex64, np.uint32, object])
def test_other_dtypes_are_refused_naming_the_dtype(dtype):
    with pytest.raises(TypeError, match=f"dtype {np.dtype(dtype)}"):
        convtool.apply(np.zeros((4, 4), dtype), "blur")


@pytest.mark.parametrize(
    ("call", "error", "named"),
    [
        (lambda: convtool.apply(np.zeros((4, 4)), "blur", border="edge"), ValueError, "'edge'"),
        (lambda: convtool.apply(np.zeros((4, 4)), "blur", color="grey"), ValueError, "'grey'"),
        (lambda: convtool.apply(np.zeros((4, 4)), "blur", alpha="drop"), ValueError, "'drop'"),
        (lambda: convtool.apply(np.zeros((4, 4)), "blur", stride=0), ValueError, "stride"),
        (lambda: convtool.apply(np.zeros((4, 4)), "blur", padding=-1), ValueError, "-1"),
        (lambda: convtool.apply(np.zeros((4, 4)), "blur", padding="half"), ValueError, "'half'"),
        (lambda: convtool.apply(np.zeros((4, 4)), "nosuch"), ValueError, "nosuch"),
        (lambda: convtool.apply(np.zeros((4, 4)), [1, 2, 3]), ValueError, r"\(3,\)"),
        (lambda: convtool.apply(np.zeros((4, 4)), [[1, np.nan]]), ValueError, "nan"),
        (lambda: convtool.apply(np.zeros((4, 4)), "blur", scale=np.inf), ValueError, "inf"),
        (lambda: convtool.apply(np.zeros((3, 4, 5)), "blur"), ValueError, r"\(3, 4, 5\)"),
        (lambda: convtool.apply(np.zeros(4), "blur"), ValueError, r"\(4,\)"),
        (lambda: convtool.apply(np.zeros((0, 4)), "blur"), ValueError, "empty"),
        (lambda: convtool.apply("photo.png", "blur"), TypeError, "read_image"),
        (lambda: convtool.apply(np.zeros((2, 2)), "blur", padding="valid"), ValueError, "3x3"),
        (
            lambda: convtool.apply(np.zeros((4, 4)), np.ones((1, 1, 3, 3)), color="gray"),
            ValueError,
            "gray",
        ),
        (lambda: convtool.apply(np.zeros((4, 4, 3)), np.ones((2, 1, 3, 3))), ValueError, "1 input"),
        (lambda: convtool.apply(np.zeros((8, 8)), "im:Kirsch:@", stride=2), ValueError, "stride 1"),
        (lambda: convtool.apply(np.zeros((4, 4)), "blur", border=None), ValueError, "None"),
    ],
)
def test_bad_values_raise_naming_the_value(call, error, named):
    with pytest.raises(error, match=named):
        call()


def test_numpy_numbers_are_numbers():
    x = np.random.default_rng(8).random((6, 6), dtype=np.float32)
    want = convtool.apply(x, "blur", scale=2.0, bias=0.5, stride=2)
    got = convtool.apply(x, "blur", scale=np.float32(2), bias=np.float64(0.5), stride=np.int64(2))
    assert np.array_equal(got, want)


def test_keywords_are_keyword_only():
    with pytest.raises(TypeError):
        convtool.apply(np.zeros((4, 4)), "blur", "zero")  # type: ignore[misc]


# ------------------------------------------------------------ kernel, read and write


def test_kernel_is_the_command_lines_parser():
    from convtool.kernels import parse_kernel

    for spec in ("sobel_x@90", "gaussian:0x2", "box:5x3", "3x3: 1,2,1 2,4,2 1,2,1", "im:LoG:0x1"):
        assert np.array_equal(convtool.kernel(spec), parse_kernel(spec))
    assert convtool.kernel("box:5x3").shape == (5, 3)  # rows x columns, as every size
    for spec, said in (("sobel", "gradient magnitude"), ("im:Sobel:>", "list of 4")):
        with pytest.raises(ValueError, match=said):
            convtool.kernel(spec)
    with pytest.raises(ValueError, match="gausian"):
        convtool.kernel("gausian:5")


def test_read_image_is_the_command_lines_picture_with_alpha_last():
    from convtool import imaging

    for name in ("disc.png", "disc_rgba.png", "gray16.png", "scene.jpg"):
        image = imaging.read_image(SAMPLES / name)
        got = convtool.read_image(SAMPLES / name)
        assert got.dtype == np.float32
        assert np.array_equal(got[..., :3] if image.alpha is not None else got, image.data)
        if image.alpha is not None:
            assert got.shape == (*image.data.shape[:2], 4)
            assert np.array_equal(got[..., 3], image.alpha)
    with pytest.raises(imaging.ImageReadError, match=r"missing\.png"):
        convtool.read_image(SAMPLES / "missing.png")


def test_write_image_round_trips_and_is_atomic(tmp_path):
    rng = np.random.default_rng(2)
    x8 = rng.integers(0, 256, (6, 7, 4), dtype=np.uint8)
    convtool.write_image(tmp_path / "a.png", x8)
    assert np.array_equal(convtool.read_image(tmp_path / "a.png"), x8 / np.float32(255))
    x16 = rng.integers(0, 65536, (6, 7), dtype=np.uint16)
    convtool.write_image(tmp_path / "b.tif", x16)
    assert np.array_equal(convtool.read_image(tmp_path / "b.tif"), x16 / np.float32(65535))
    f = rng.normal(size=(5, 5)).astype(np.float32)
    convtool.write_image(tmp_path / "c.tif", f)  # a float picture: float TIFF, raw
    assert np.array_equal(convtool.read_image(tmp_path / "c.tif"), f)
    convtool.write_image(tmp_path / "d.png", f)  # 16-bit PNG, clipped
    got = convtool.read_image(tmp_path / "d.png")
    assert np.array_equal(got, np.rint(np.clip(f, 0, 1) * 65535) / np.float32(65535))
    convtool.write_image(tmp_path / "e.jpg", x8[..., :3], quality=40)
    small = (tmp_path / "e.jpg").stat().st_size
    convtool.write_image(tmp_path / "e.jpg", x8[..., :3])  # replaced, at quality 95
    assert (tmp_path / "e.jpg").stat().st_size > small
    from convtool.imaging import ImageWriteError

    with pytest.raises(ImageWriteError, match="exists"):
        convtool.write_image(tmp_path / "e.jpg", x8, overwrite=False)
    with pytest.raises(ValueError, match="'12'"):
        convtool.write_image(tmp_path / "f.png", x8, depth=12)
    with pytest.raises(ValueError, match="PNG takes depth"):
        convtool.write_image(tmp_path / "f.png", x8, depth=32)
    with pytest.raises(ValueError, match=r"'\.gif'"):
        convtool.write_image(tmp_path / "f.gif", x8)
    with pytest.raises(ImageWriteError, match=r"f\.png"):
        convtool.write_image(tmp_path / "no" / "f.png", x8)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.png",
        "b.tif",
        "c.tif",
        "d.png",
        "e.jpg",
    ]


# ------------------------------------------------------------ the package


def test_the_docstrings_examples_run(monkeypatch):
    import convtool.fit.kernel_fit
    import convtool.pictures
    import convtool.pipeline.run

    monkeypatch.chdir(ROOT)  # the examples read samples/
    failed, tried = doctest.testmod(convtool.pictures)
    assert tried >= 8 and failed == 0
    for module in (convtool.pipeline.run, convtool.fit.kernel_fit):  # fit_kernel, run_pipeline
        failed, tried = doctest.testmod(module)
        assert tried >= 3 and failed == 0


def test_import_convtool_stays_light():
    code = (
        "import sys, convtool\n"
        "print(sorted(m for m in ('numpy', 'numba', 'PIL', 'scipy') if m in sys.modules))\n"
        "print(callable(convtool.apply), 'numba' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split("\n")[:2] == ["[]", "True False"]


# ------------------------------------------------------------ fit_kernel, run_pipeline


def test_run_pipeline_takes_the_command_lines_words(tmp_path):
    out = tmp_path / "out.npy"
    args = ["pipeline", str(SAMPLES / "disc.png"), "--stage", "conv:sobel_x -> relu",
            "--color", "gray", "--scale", "2", "--bias", "0.25", "--normalize",
            "--border", "replicate", "--padding", "same", "-o", str(out)]  # fmt: skip
    done = CliRunner().invoke(cli, args)
    assert done.exit_code == 0, done.output
    planes = np.moveaxis(convtool.read_image(SAMPLES / "disc.png"), -1, 0)
    results = convtool.run_pipeline(
        planes, "conv:sobel_x -> relu", color="gray", scale=2.0, bias=0.25, normalize=True,
        border="replicate", padding="same",
    )  # fmt: skip
    assert results[-1].data[0].tobytes() == np.load(out).tobytes()
    assert (
        results[0].stage.describe()
        == "conv:sobel_x,s=1,p=same,border=replicate,normalize,scale=2,bias=0.25"
    )
    # the old keywords, and a stage's own words over the defaults
    plain = convtool.run_pipeline(planes, kernels=["sobel_x"], stride=1, padding="valid")
    assert [r.shape for r in plain] == [(1, 78, 78), (1, 78, 78), (1, 39, 39)]
    with pytest.raises(ValueError, match="'grey'"):
        convtool.run_pipeline(planes, "relu", color="grey")
    with pytest.raises(ValueError, match="'edge'"):
        convtool.run_pipeline(planes, "conv:blur", border="edge")


@pytest.mark.parametrize("color", ["channels", "gray", "sum"])
def test_fit_kernel_undoes_apply_with_the_same_color(color):
    rng = np.random.default_rng(4)
    x = rng.random((24, 26, 3), dtype=np.float32)
    k = rng.normal(size=(3, 3))
    y = convtool.apply(x, k, color=color, border="zero")
    planes = np.moveaxis(y, -1, 0) if y.ndim == 3 else y
    found = convtool.fit_kernel(np.moveaxis(x, -1, 0), planes, color=color, size=3)
    np.testing.assert_allclose(found.kernel, k, atol=1e-4)
    with pytest.raises(ValueError, match="'grey'"):
        convtool.fit_kernel(np.moveaxis(x, -1, 0), planes, color="grey")


def test_the_readmes_picture_example_runs_as_written(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Pictures") :]
    code = section[
        section.index("```python\n") + 10 : section.index("```\n", section.index("```python"))
    ]
    (tmp_path / "samples").symlink_to(SAMPLES)
    monkeypatch.chdir(tmp_path)
    names: dict = {}
    exec(compile(code, "README.md", "exec"), names)
    # the shapes its comments state
    assert names["photo"].shape == names["edges"].shape == (512, 512, 3)
    assert names["soft"].shape == (512, 512) and names["small"].shape == (255, 255, 3)
    assert names["k"].shape == (3, 3) and (tmp_path / "edges.png").exists()
    assert np.allclose(names["same"], convtool.apply(names["photo"], "blur"), atol=3e-3)
