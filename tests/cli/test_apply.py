"""`convtool apply`: scipy equivalence, the chapter's figure 17-6, output naming, depths,
alpha, batches, pipes, JSON records, errors, Ctrl-C and the fast start-up route."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage as ndi
import scipy.signal
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from convtool.cli import cli
from convtool.kernels import KernelSpec, list_kernels
from tests.cli.hardening import as_in_a_terminal
from tests.naive import SCIPY_MODES

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"
MAGNITUDES = ("sobel", "prewitt", "scharr")  # two kernels each: tested on their own
ODD = [
    i
    for i in list_kernels()
    if i.kernel.shape[0] % 2 and i.kernel.shape[1] % 2 and i.name not in MAGNITUDES
]
CHAPTER = [i for i in list_kernels() if i.group == "chapter" and i.name != "box3"]
LUMA = np.array([0.299, 0.587, 0.114])


def run(*args: str, input: bytes | None = None):
    return CliRunner().invoke(cli, ["apply", *map(str, args)], input=input)


def pixels(path) -> np.ndarray:
    """A picture as floats in [0, 1], read with pillow alone."""
    with Image.open(path) as im:
        a = np.asarray(im)
    return a.astype(np.float64) / (65535 if a.dtype == np.uint16 else 255)


def slug(name: str) -> str:
    return KernelSpec(np.zeros((1, 1)), name).slug


def convtool_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "convtool", "apply", *map(str, args)]


# ----------------------------------------------------------------- the first command


def test_readme_quick_start(tmp_path):
    # the installed console script, as `pip install .` makes it (not a shim on PATH)
    script = Path(sys.executable).parent / "convtool"
    program = str(script) if script.exists() else "convtool"
    done = subprocess.run(
        [program, "apply", str(SAMPLES / "scene.png"), "-k", "sobel", "-o", "edges.png"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    # nothing clipped, nothing to warn about (a first run may say it builds the core)
    assert "clipping" not in done.stderr and "warning" not in done.stderr.lower()
    assert "note" not in done.stderr and "Traceback" not in done.stderr
    with Image.open(tmp_path / "edges.png") as im:
        assert (im.mode, im.size) == ("RGB", (512, 512))
    x = pixels(SAMPLES / "scene.png")
    # scikit-image's sobel: sqrt((gx^2 + gy^2) / 2), smoothing 1 2 1 / 4, edge pixels
    k = np.outer([0.25, 0.5, 0.25], [-1.0, 0.0, 1.0])
    gx = np.stack([ndi.correlate(x[..., c], k, mode="nearest") for c in range(3)], -1)
    gy = np.stack([ndi.correlate(x[..., c], k.T, mode="nearest") for c in range(3)], -1)
    expected = np.sqrt((gx**2 + gy**2) / 2)
    assert expected.max() <= 1 and expected[0].mean() < 3 * expected.mean()  # no frame
    expected = np.rint(expected * 255)
    got = pixels(tmp_path / "edges.png") * 255
    assert np.abs(got - expected).max() <= 1


# ----------------------------------------------------------------- must hold: scipy


@pytest.mark.parametrize("picture", ["scene.png", "scene.jpg", "gray16.png"])
@pytest.mark.parametrize("border", list(SCIPY_MODES))
def test_npy_output_equals_scipy_for_every_odd_kernel(tmp_path, picture, border):
    specs = [a for i in ODD for a in ("-k", i.name)]
    result = run(SAMPLES / picture, *specs, "--border", border, "--format", "npy", "-o", tmp_path)
    assert result.exit_code == 0, result.output
    x = pixels(SAMPLES / picture)
    stem = Path(picture).stem
    for info in ODD:
        got = np.load(tmp_path / f"{stem}.{slug(info.name)}.npy")
        assert got.dtype == np.float32 and got.shape == x.shape
        planes = x[..., None] if x.ndim == 2 else x
        expected = np.stack(
            [
                ndi.correlate(planes[..., c], info.kernel, mode=SCIPY_MODES[border], cval=0.0)
                for c in range(planes.shape[2])
            ],
            axis=-1,
        ).reshape(x.shape)
        np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=f"{info.name} {border}")


@settings(deadline=None, max_examples=25)
@given(
    name=st.sampled_from([i.name for i in ODD]),
    border=st.sampled_from(list(SCIPY_MODES)),
    shape=st.sampled_from([(9, 13), (16, 11, 3), (7, 7, 1), (20, 5)]),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_npy_pictures_through_the_command_equal_scipy(name, border, shape, seed):
    x = np.random.default_rng(seed).random(shape).astype(np.float32)
    kernel = next(i.kernel for i in ODD if i.name == name)
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "x.npy", x)
        result = run(Path(tmp) / "x.npy", "-k", name, "--border", border, "-o", Path(tmp) / "y.npy")
        assert result.exit_code == 0, result.output
        got = np.load(Path(tmp) / "y.npy")
    planes = x.reshape(*x.shape[:2], -1).astype(np.float64)
    expected = np.stack(
        [
            ndi.correlate(planes[..., c], kernel, mode=SCIPY_MODES[border], cval=0.0)
            for c in range(planes.shape[2])
        ],
        axis=-1,
    )
    np.testing.assert_allclose(got, expected.reshape(got.shape), atol=1e-5)


# ----------------------------------------------------------------- must hold: figure 17-6


def test_chapter_kernels_on_the_disc_reproduce_figure_17_6(tmp_path):
    """Grey picture, zero padding 1, each panel min..max scaled: the chapter's settings."""
    assert [i.name for i in CHAPTER] == [
        "sharpness",
        "vertical_edge",
        "surround",
        "sobel_y",
        "nothing",
        "horizontal_edge",
        "blur",
        "sobel_x",
        "embossing",
    ]
    specs = [a for i in CHAPTER for a in ("-k", i.name)]
    result = run(
        SAMPLES / "disc.png", *specs, "--color", "gray", "--map", "normalize", "-o", tmp_path
    )
    assert result.exit_code == 0, result.output
    grey = pixels(SAMPLES / "disc.png") @ LUMA
    for info in CHAPTER:
        raw = scipy.signal.correlate2d(grey, info.kernel, mode="same", boundary="fill")
        panel = np.rint((raw - raw.min()) / (raw.max() - raw.min()) * 255)
        with Image.open(tmp_path / f"disc.{info.name}.png") as im:
            assert (im.mode, im.size) == ("L", (80, 80))
            got = np.asarray(im).astype(float)
        assert np.abs(got - panel).max() <= 1, info.name
    # the nothing panel is the grey picture itself: black, two greys, white
    with Image.open(tmp_path / "disc.nothing.png") as im:
        assert sorted(np.unique(np.asarray(im)).tolist())[::3] == [0, 255]


def test_chapter_3_in_1_out_sum(tmp_path):
    out = tmp_path / "sum.npy"
    assert (
        run(
            SAMPLES / "disc.png", "-k", "sobel_x", "--color", "sum", "--padding", "valid", "-o", out
        ).exit_code
        == 0
    )
    x = pixels(SAMPLES / "disc.png")
    k = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], float)
    expected = sum(scipy.signal.correlate2d(x[..., c], k, mode="valid") for c in range(3))
    got = np.load(out)
    assert got.shape == (78, 78)
    np.testing.assert_allclose(got, expected, atol=1e-5)


# ----------------------------------------------------------------- naming


def test_output_names(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.photo.jpg"
    Image.open(SAMPLES / "disc.png").save(a)
    Image.open(SAMPLES / "disc.png").save(b)
    out = tmp_path / "out"
    out.mkdir()
    assert run(a, b, "-k", "blur", "-k", "gaussian:5,1.5@90", "-o", out).exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "a.blur.png",
        "a.gaussian_5_1.5_r90.png",
        "b.photo.blur.jpg",
        "b.photo.gaussian_5_1.5_r90.jpg",
    ]
    # no -o: beside the input; --format picks the extension
    assert run(a, "-k", "sobel_x", "--format", "tif").exit_code == 0
    assert (tmp_path / "a.sobel_x.tif").exists()
    # --combine names the kernels and how
    assert (
        run(
            a, "-k", "sobel_x", "-k", "sobel_y", "--combine", "magnitude", "-o", f"{out}/"
        ).exit_code
        == 0
    )
    assert (out / "a.sobel_x+sobel_y.magnitude.png").exists()
    # one input, one result, -o FILE: that file
    assert run(a, "-k", "sobel_x", "-o", tmp_path / "edges.webp").exit_code == 0
    with Image.open(tmp_path / "edges.webp") as im:
        assert im.format == "WEBP"
    # the same kernel twice gets distinct names
    assert run(a, "-k", "blur", "-k", "blur", "-o", out, "--format", "npy").exit_code == 0
    assert (out / "a.blur.npy").exists() and (out / "a.blur-2.npy").exists()


def test_naming_errors(tmp_path):
    a = tmp_path / "a.png"
    Image.open(SAMPLES / "disc.png").save(a)
    sub = tmp_path / "x"
    sub.mkdir()
    Image.open(SAMPLES / "disc.png").save(sub / "a.png")

    # -o DIR/ creates the folder, with its parents, as mkdir -p
    result = run(a, "-k", "blur", "-o", f"{tmp_path}/missing/deeper/")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "missing" / "deeper" / "a.blur.png").is_file()
    # a file in the way is said, nothing created
    result = run(a, "-k", "blur", "-o", f"{a}/under/")
    assert result.exit_code == 2 and "is not a folder" in result.output
    # several results into one file name: the two ways out, named
    result = run(a, "-k", "blur", "-k", "sobel_x", "-o", tmp_path / "one.png")
    assert result.exit_code == 2 and "--combine" in result.output
    assert f"-o {tmp_path / 'one'}/" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "one.png").exists() and not (tmp_path / "one").exists()
    # several inputs and one kernel: no combining to offer, a folder
    result = run(a, sub / "a.png", "-k", "blur", "-o", tmp_path / "two.png")
    assert result.exit_code == 2 and f"-o {tmp_path / 'two'}/" in result.output
    assert "--combine" not in result.output
    result = run(a, sub / "a.png", "-k", "blur", "-o", tmp_path)
    assert result.exit_code == 2 and "would both write" in result.output
    result = run(a, "-k", "blur", "-o", a, "--overwrite")
    assert result.exit_code == 2 and "is an input" in result.output
    a_blur = tmp_path / "a.blur.png"
    Image.open(SAMPLES / "disc.png").save(a_blur)
    result = run(a, a_blur, "-k", "blur", "--overwrite")  # a's output would be an input
    assert result.exit_code == 2 and "is an input" in result.output
    result = run(a, "-k", "blur", "-o", tmp_path / "out.xyz")
    assert result.exit_code == 2 and ".xyz" in result.output
    result = run(a, "-k", "blur", "-o", "-", "-k", "sobel_x")
    assert result.exit_code == 2 and "one picture" in result.output
    result = run(a, "-k", "blur", "-o", tmp_path / "o.png", "--format", "jpg")
    assert result.exit_code == 2 and "disagrees" in result.output
    assert run(a, "-k", "blur", "-o", tmp_path / "o.raw", "--format", "npy").exit_code == 0
    assert (tmp_path / "o.raw").read_bytes().startswith(b"\x93NUMPY")


def test_existing_output_needs_overwrite(tmp_path):
    out = tmp_path / "e.png"
    assert run(SAMPLES / "disc.png", "-k", "blur", "-o", out).exit_code == 0
    before = out.read_bytes()
    result = run(SAMPLES / "disc.png", "-k", "sobel_x", "-o", out)
    assert result.exit_code == 1 and "--overwrite" in result.output
    assert out.read_bytes() == before
    assert run(SAMPLES / "disc.png", "-k", "sobel_x", "-o", out, "--overwrite").exit_code == 0
    assert out.read_bytes() != before


# ----------------------------------------------------------------- pictures in and out


def test_depths(tmp_path):
    assert run(SAMPLES / "gray16.png", "-k", "blur", "-o", tmp_path / "a.png").exit_code == 0
    with Image.open(tmp_path / "a.png") as im:
        assert im.mode.startswith("I") and np.asarray(im).max() > 255  # 16 bits kept
    assert (
        run(
            SAMPLES / "gray16.png", "-k", "blur", "-o", tmp_path / "b.png", "--depth", "8"
        ).exit_code
        == 0
    )
    with Image.open(tmp_path / "b.png") as im:
        assert im.mode == "L"
    assert run(SAMPLES / "gray16.png", "-k", "blur", "-o", tmp_path / "c.jpg").exit_code == 0
    result = run(SAMPLES / "scene.png", "-k", "blur", "-o", tmp_path / "d.jpg", "--depth", "16")
    assert result.exit_code == 2 and "JPEG" in result.output
    # float TIFF: the raw result, negative values kept, as .npy
    assert (
        run(
            SAMPLES / "scene.png", "-k", "sobel_x", "-o", tmp_path / "f.tif", "--depth", "32"
        ).exit_code
        == 0
    )
    assert run(SAMPLES / "scene.png", "-k", "sobel_x", "-o", tmp_path / "f.npy").exit_code == 0
    import tifffile

    raw = tifffile.imread(tmp_path / "f.tif")
    assert raw.dtype == np.float32 and raw.min() < 0
    np.testing.assert_array_equal(raw, np.load(tmp_path / "f.npy"))


def test_npy_in_and_a_round_trip(tmp_path):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((20, 30)).astype(np.float32) * 3
    np.save(tmp_path / "x.npy", x)
    done = run(tmp_path / "x.npy", "-k", "0,1;2,3", "--border", "zero", "-o", tmp_path / "y.npy")
    assert done.exit_code == 0
    y = np.load(tmp_path / "y.npy")
    expected = ndi.correlate(
        x.astype(float), np.array([[0, 1], [2, 3.0]]), mode="constant", origin=-1
    )
    np.testing.assert_allclose(y, expected, atol=1e-4)
    # a float input written as PNG becomes 16-bit, clipped
    assert run(tmp_path / "x.npy", "-k", "nothing", "-o", tmp_path / "x.png").exit_code == 0
    with Image.open(tmp_path / "x.png") as im:
        assert im.mode.startswith("I")


def test_alpha_is_carried_through_with_alpha_keep(tmp_path):
    rgba = np.asarray(Image.open(SAMPLES / "disc_rgba.png")).copy()
    rgba[..., 3] = np.arange(80, dtype=np.uint8)[None, :] * 3
    Image.fromarray(rgba).save(tmp_path / "in.png")
    keep = ("--alpha", "keep")
    assert run(tmp_path / "in.png", "-k", "blur", *keep, "-o", tmp_path / "same.png").exit_code == 0
    with Image.open(tmp_path / "same.png") as im:
        assert im.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(im)[..., 3], rgba[..., 3])
    done = run(
        tmp_path / "in.png", "-k", "blur", *keep, "--padding", "valid", "-o", tmp_path / "v.png"
    )
    assert done.exit_code == 0
    with Image.open(tmp_path / "v.png") as im:
        np.testing.assert_array_equal(np.asarray(im)[..., 3], rgba[1:-1, 1:-1, 3])


def logo() -> np.ndarray:
    """An orange bar on a transparent black background, hard-edged, 40x60 RGBA."""
    rgba = np.zeros((40, 60, 4), np.uint8)
    rgba[12:28, 10:50] = (255, 200, 0, 255)
    return rgba


def test_a_blurred_logo_fades_and_keeps_its_colour(tmp_path):
    Image.fromarray(logo()).save(tmp_path / "logo.png")
    assert (
        run(tmp_path / "logo.png", "-k", "gaussian:0x2", "-o", tmp_path / "soft.png").exit_code == 0
    )
    with Image.open(tmp_path / "soft.png") as im:
        out = np.asarray(im).astype(int)
    a = out[..., 3]
    # the alpha ramps across the edge, from 0 outside to 255 inside, rising row by row
    column = a[:, 30]
    assert column[0] == 0 and column[20] == 255 and (np.diff(column[:21]) >= 0).all()
    assert len({v for v in column[:21].tolist() if 0 < v < 255}) >= 5
    # and where it is partly transparent the colour is the logo's, within 8 levels
    edge = (a > 0.15 * 255) & (a < 0.85 * 255)
    assert edge.sum() > 100
    assert np.abs(out[edge][:, :3] - [255, 200, 0]).max() <= 8
    # with --alpha keep (the old way) the edge darkens towards the black behind it
    done = run(
        tmp_path / "logo.png", "-k", "gaussian:0x2", "--alpha", "keep", "-o", tmp_path / "k.png"
    )
    assert done.exit_code == 0
    with Image.open(tmp_path / "k.png") as im:
        kept = np.asarray(im).astype(int)
    assert np.abs(kept[edge][:, :3] - [255, 200, 0]).max() > 60


def test_maps_and_the_clipping_note(tmp_path):
    result = run(SAMPLES / "scene.png", "-k", "sobel_x", "-o", tmp_path / "a.png")
    assert "clipping to [0, 1] changed" in result.output and "--map normalize" in result.output
    result = run(SAMPLES / "scene.png", "-k", "sobel_x", "-o", tmp_path / "b.png", "--map", "clip")
    assert "clipping" not in result.output  # asked for it
    result = run(SAMPLES / "scene.png", "-k", "blur", "-o", tmp_path / "c.png")
    assert "clipping" not in result.output  # nothing lost
    for how in ("abs", "offset", "normalize"):
        result = run(
            SAMPLES / "disc.png", "-k", "sobel_x", "--map", how, "-o", tmp_path / f"{how}.npy"
        )
        assert result.exit_code == 0
        m = np.load(tmp_path / f"{how}.npy")
        assert m.min() >= 0 and m.max() <= 1  # an explicit map applies to float outputs too
    assert np.load(tmp_path / "normalize.npy").max() == 1
    assert np.median(np.load(tmp_path / "offset.npy")) == 0.5


def test_kernel_options(tmp_path):
    x = pixels(SAMPLES / "gray.png")
    assert (
        run(
            SAMPLES / "gray.png",
            "-k",
            "1,1;1,1",
            "--normalize",
            "--scale",
            "2",
            "--bias",
            "-0.5",
            "-o",
            tmp_path / "a.npy",
        ).exit_code
        == 0
    )
    # the default border is replicate (scipy's nearest)
    expected = ndi.correlate(x, np.full((2, 2), 0.5), mode="nearest", origin=-1) - 0.5
    np.testing.assert_allclose(np.load(tmp_path / "a.npy"), expected, atol=1e-5)
    assert (
        run(
            SAMPLES / "gray.png",
            "-k",
            "sobel_x",
            "--flip",
            "--border",
            "mirror",
            "-o",
            tmp_path / "b.npy",
        ).exit_code
        == 0
    )
    expected = ndi.convolve(x, [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], mode="mirror")
    np.testing.assert_allclose(np.load(tmp_path / "b.npy"), expected, atol=1e-5)


def test_full_kernels_from_npy(tmp_path):
    w = np.zeros((3, 3, 1, 1))
    w[0, 2] = w[1, 1] = w[2, 0] = 1  # RGB -> BGR
    np.save(tmp_path / "swap.npy", w)
    assert (
        run(
            SAMPLES / "disc.png", "-k", f"@{tmp_path / 'swap.npy'}", "-o", tmp_path / "s.png"
        ).exit_code
        == 0
    )
    np.testing.assert_array_equal(
        np.asarray(Image.open(tmp_path / "s.png")),
        np.asarray(Image.open(SAMPLES / "disc.png"))[..., ::-1],
    )
    result = run(SAMPLES / "disc.png", "-k", f"@{tmp_path / 'swap.npy'}", "--color", "gray")
    assert result.exit_code == 2 and "--color" in result.output
    np.save(tmp_path / "two.npy", np.ones((2, 3, 3, 3)))
    result = run(SAMPLES / "disc.png", "-k", f"@{tmp_path / 'two.npy'}", "-o", tmp_path / "t.png")
    assert result.exit_code == 1 and "2 channels" in result.output and ".npy" in result.output
    assert (
        run(
            SAMPLES / "disc.png", "-k", f"@{tmp_path / 'two.npy'}", "-o", tmp_path / "t.npy"
        ).exit_code
        == 0
    )
    assert np.load(tmp_path / "t.npy").shape == (80, 80, 2)
    result = run(SAMPLES / "gray.png", "-k", f"@{tmp_path / 'swap.npy'}", "-o", tmp_path / "g.png")
    assert result.exit_code == 1 and "takes 3 input channel" in result.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["-k", "sobel_q"], "unknown kernel"),
        (["-k", "1,2;3"], "row 2"),
        (["-k", "blur", "--padding", "big"], "padding"),
        (["-k", "blur", "--stride", "0"], "stride"),
        (["-k", "blur", "--combine", "max"], "at least two kernels"),
        (["-k", "blur", "--border", "torus"], "torus"),
        (["-k", "blur", "--format", "gif"], "unknown format"),
        (["-k", "blur", "--json", "-o", "-"], "--json"),
        ([], "Missing option"),
    ],
)
def test_usage_errors_exit_2(args, needle):
    result = run(SAMPLES / "disc.png", *args)
    assert result.exit_code == 2, result.output
    assert needle in result.output and "Traceback" not in result.output


# ----------------------------------------------------------------- batches


def _batch(tmp_path, n=6) -> list[Path]:
    rng = np.random.default_rng(8)
    paths = []
    for i in range(n):
        p = tmp_path / f"p{i}.png"
        Image.fromarray(rng.integers(0, 256, (40 + i, 50, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def test_a_bad_file_does_not_stop_the_batch(tmp_path):
    paths = _batch(tmp_path, 4)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    out = tmp_path / "out"
    out.mkdir()
    result = run(paths[0], bad, tmp_path / "missing.png", *paths[1:], "-k", "blur", "-o", out)
    assert result.exit_code == 1
    assert "broken.png" in result.output and "missing.png" in result.output
    assert "2 of 6 pictures failed; 4 output(s) written" in result.output
    assert "Traceback" not in result.output
    assert sorted(p.name for p in out.iterdir()) == [f"p{i}.blur.png" for i in range(4)]


def test_jobs_give_the_same_files_and_records(tmp_path):
    paths = _batch(tmp_path)
    outputs = {}
    for jobs in ("1", "2"):
        out = tmp_path / f"out{jobs}"
        out.mkdir()
        done = subprocess.run(
            convtool_cmd(
                *paths, "-k", "sobel_x", "-k", "gaussian:5", "-o", out, "--json", "--jobs", jobs
            ),
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        records = [json.loads(line) for line in done.stdout.splitlines()]
        assert [r["output"] for r in records] == [
            str(out / f"p{i}.{k}.png") for i in range(6) for k in ("sobel_x", "gaussian_5")
        ]
        for r in records:
            r["output"] = Path(r["output"]).name
        outputs[jobs] = records, {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    assert outputs["1"] == outputs["2"]


def test_plans_in_records_and_verbose(tmp_path):
    specs = ["sobel_x", "gaussian:31,5", "unsharp:15,3", "box:31", "@" + str(tmp_path / "r.npy")]
    np.save(tmp_path / "r.npy", np.random.default_rng(0).standard_normal((15, 15)))
    args = [a for spec in specs for a in ("-k", spec)]
    result = run(SAMPLES / "scene.png", *args, "-o", tmp_path, "--json", "-v")
    assert result.exit_code == 0, result.output
    plans = [json.loads(line)["plan"] for line in result.stdout.splitlines()]
    assert plans == ["direct", "separable", "low-rank 2", "box", "fft"]
    said = [line for line in result.stderr.splitlines() if "multiply-adds" in line]
    assert [line.split(": ")[2].split(" (")[0] for line in said] == plans
    combined = run(SAMPLES / "gray.png", "-k", "sobel_x", "-k", "gaussian:9", "--combine", "max",
                   "-o", tmp_path / "m.png", "--json")  # fmt: skip
    assert json.loads(combined.stdout)["plan"] == "direct+separable"


def test_a_layers_record_names_the_path_its_engine_took(tmp_path):
    """A 4-D kernel's path depends on the engine (the compiled core plans no 'blocked'):
    the record names the one the picture was filtered with."""
    from convtool.core import engine, plan

    w = np.random.default_rng(1).standard_normal((64, 3, 3, 3))
    np.save(tmp_path / "w.npy", w)
    assert plan.plan_layer(w.shape) == "blocked"  # the JIT's choice: not this engine's
    result = run(SAMPLES / "scene.png", "-k", "@" + str(tmp_path / "w.npy"),
                 "-o", tmp_path / "y.npy", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    compiled = engine.compiled()
    assert compiled is not None  # a 512x512 picture's job is the compiled core's
    taken = plan.plan_layer(w.shape, (1, 1), plan.paths_for(compiled))
    assert taken != "blocked"
    assert json.loads(result.stdout)["plan"] == taken


def test_json_records(tmp_path):
    result = run(SAMPLES / "scene.png", "-k", "sobel_x", "-k", "blur", "-o", tmp_path, "--json")
    assert result.exit_code == 0
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 2
    first = lines[0]
    assert set(first) >= {"input", "output", "kernel", "shape", "min", "max", "clipped"}
    assert first["kernel"] == "sobel_x" and first["shape"] == [512, 512, 3]
    assert first["min"] == -4.0 and first["max"] == 4.0 and 0.3 < first["clipped"] < 0.9
    assert lines[1]["clipped"] == 0.0
    # a failed picture gets a record per planned output, with its error
    result = run(tmp_path / "nope.png", "-k", "sobel_x", "-o", tmp_path, "--json")
    assert result.exit_code == 1
    (failed,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert (
        failed["output"] == str(tmp_path / "nope.sobel_x.png") and "no such file" in failed["error"]
    )


# ----------------------------------------------------------------- pipes


def test_pipes(tmp_path):
    data = (SAMPLES / "disc.png").read_bytes()
    done = subprocess.run(
        convtool_cmd("-", "-k", "sharpness", "-o", "-"), input=data, capture_output=True
    )
    assert done.returncode == 0, done.stderr
    (tmp_path / "piped.png").write_bytes(done.stdout)
    assert run(SAMPLES / "disc.png", "-k", "sharpness", "-o", tmp_path / "file.png").exit_code == 0
    np.testing.assert_array_equal(pixels(tmp_path / "piped.png"), pixels(tmp_path / "file.png"))
    # stdin without -o goes to stdout; --format changes the encoding
    done = subprocess.run(
        convtool_cmd("-", "-k", "blur", "--format", "npy"), input=data, capture_output=True
    )
    assert done.returncode == 0 and done.stdout.startswith(b"\x93NUMPY")
    # stdin into a folder is named stdin.<kernel>.<ext>
    done = subprocess.run(
        convtool_cmd("-", "-k", "blur", "-o", tmp_path), input=data, capture_output=True
    )
    assert done.returncode == 0 and (tmp_path / "stdin.blur.png").exists()
    done = subprocess.run(
        convtool_cmd("-", "-k", "blur", "-o", "-"), input=b"junk", capture_output=True
    )
    assert (
        done.returncode == 1
        and b"standard input" in done.stderr
        and b"Traceback" not in done.stderr
    )


def test_ctrl_c_leaves_only_whole_files(tmp_path):
    paths = _batch(tmp_path, 3)
    many = [paths[i % 3] for i in range(3)]
    inputs = []
    for i in range(60):  # distinct names, large enough to take a while
        p = tmp_path / f"big{i}.png"
        Image.fromarray(np.tile(np.asarray(Image.open(many[i % 3])), (8, 8, 1))).save(p)
        inputs.append(p)
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen(
        convtool_cmd(*inputs, "-k", "gaussian:15", "-o", out, "--jobs", "2"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=as_in_a_terminal,
    )
    deadline = time.monotonic() + 120

    def finished() -> list[str]:
        return [p.name for p in out.iterdir() if not p.name.startswith(".")]

    while not finished() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole group
    _, err = proc.communicate(timeout=60)
    err = err.decode()
    assert proc.returncode == 130, err
    assert "interrupted after" in err and "Traceback" not in err
    names = [p.name for p in out.iterdir()]
    assert names and all(not n.startswith(".") for n in names)  # no temporary files
    assert len(names) < 60
    for p in out.iterdir():
        with Image.open(p) as im:
            im.load()  # every output is whole


# ----------------------------------------------------------------- start-up


def test_single_picture_does_not_start_numba(tmp_path):
    code = (
        "import sys\n"
        "from convtool.cli import main\n"
        f"sys.argv = ['probe', 'apply', {str(SAMPLES / 'disc.png')!r}, '-k', 'sobel_x',"
        f" '-o', {str(tmp_path / 'x.png')!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "print('numba' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"  # the compiled core, not the JIT
    assert (tmp_path / "x.png").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["apply", "{disc}", "-k", "sobel_x", "-o", "{out}.png"],
        ["apply", "{disc}", "-k", "blur", "-o", "{out}.jpg"],
        ["pipeline", "{disc}", "-k", "sobel_x", "-o", "{out}.npy"],
        ["fit", "{disc}", "{disc}", "--size", "3"],
    ],
)
def test_png_and_jpeg_jobs_import_neither_numba_nor_pillow(tmp_path, args):
    """Whole commands on PNG and JPEG pictures: imagecodecs decodes and encodes them, the
    compiled core filters, and the stage table is text: nothing of numba or Pillow."""
    argv = [a.format(disc=SAMPLES / "disc.png", out=tmp_path / "x") for a in args]
    code = (
        "import sys\n"
        "from convtool.cli import main\n"
        f"sys.argv = ['probe', *{argv!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'numba', 'PIL'}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_the_command_leaves_other_code_on_the_jit(tmp_path, monkeypatch):
    from convtool import ops
    from convtool.core import conv

    assert run(SAMPLES / "disc.png", "-k", "blur", "-o", tmp_path / "x.png").exit_code == 0
    calls = []
    jitted = conv.conv2d_rows
    monkeypatch.setattr(conv, "conv2d_rows", lambda *a: calls.append(1) or jitted(*a))
    ops.conv2d(np.ones((4, 4)), np.ones((3, 3)))
    assert calls  # other code in this process still gets the JIT


def test_help_lists_the_naming_rules():
    result = CliRunner().invoke(cli, ["apply", "--help"])
    assert result.exit_code == 0
    for text in ("<stem>.<kernel>.<ext>", "--combine", "--border", "--jobs", "--overwrite"):
        assert text in result.output


def test_the_commands_offer_the_vocabulary():
    import click

    from convtool import vocab

    offered = {
        (name, p.name): tuple(p.type.choices)
        for name, command in cli.all_commands().items()
        for p in command.params
        if isinstance(p.type, click.Choice)
    }
    assert offered == {
        ("apply", "color"): vocab.COLORS,
        ("apply", "border"): vocab.BORDERS,
        ("apply", "value_map"): vocab.MAPS,
        ("apply", "alpha"): vocab.ALPHAS,
        ("apply", "combine"): vocab.COMBINES,
        ("apply", "depth"): vocab.DEPTHS,
        ("pipeline", "color"): vocab.COLORS,
        ("pipeline", "border"): vocab.BORDERS,
        ("pipeline", "value_map"): vocab.MAPS,
        ("pipeline", "depth"): vocab.DEPTHS,
        ("pipeline", "cmap"): vocab.CMAPS,
        ("fit", "method"): vocab.METHODS,
        ("fit", "color"): vocab.COLORS,
        ("fit", "border"): vocab.FIT_BORDERS,
    }


def test_help_does_not_load_numpy():
    code = "import sys\nfrom convtool.cli import cli\nprint('numpy' in sys.modules)\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr


def test_tiles_with_premultiplied_alpha_are_refused_clearly(tmp_path):
    import tifffile

    rgba = np.random.default_rng(2).integers(0, 256, (40, 40, 4), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "in.tif", rgba, photometric="rgb", extrasamples=("unassalpha",))
    done = run(tmp_path / "in.tif", "-k", "blur", "--tile", "16", "-o", tmp_path / "o.tif")
    assert done.exit_code == 1 and "--alpha keep" in done.output and "Traceback" not in done.output
    keep = run(tmp_path / "in.tif", "-k", "blur", "--tile", "16", "--alpha", "keep", "-o",
               tmp_path / "k.tif")  # fmt: skip
    assert keep.exit_code == 0, keep.output


def test_imagemagick_kernel_lists_need_same_padding_and_no_tiles(tmp_path):
    done = run(SAMPLES / "gray.png", "-k", "im:Sobel:>", "--stride", "2", "-o", tmp_path / "a.png")
    assert done.exit_code == 2 and "one kernel after another" in done.output
    assert "Traceback" not in done.output
    done = run(SAMPLES / "gray.png", "-k", "im:Sobel:>", "--tile", "64", "-o", tmp_path / "b.tif")
    assert done.exit_code == 2 and "--tile 0" in done.output
    # and the pipeline's layers take one kernel each
    done = CliRunner().invoke(cli, ["pipeline", str(SAMPLES / "disc.png"), "-k", "im:Sobel:>"])
    assert done.exit_code == 2 and "its own conv stage" in done.output


def test_compression_trades_time_for_size_and_never_changes_pixels(tmp_path):
    scene = str(SAMPLES / "scene.png")
    sizes = {}
    for level in ("0", "1", "9"):
        out = tmp_path / f"{level}.png"
        result = CliRunner().invoke(
            cli, ["apply", scene, "-k", "blur", "-o", str(out), "--compression", level]
        )
        assert result.exit_code == 0, result.output
        sizes[level] = out.stat().st_size
        with Image.open(out) as im:
            pixels = np.asarray(im)
        if level == "0":
            first = pixels
        assert np.array_equal(pixels, first)
    assert sizes["0"] > sizes["1"] > sizes["9"]
    result = CliRunner().invoke(cli, ["apply", scene, "-k", "blur", "--compression", "10"])
    assert result.exit_code == 2 and "--compression" in result.output


def test_a_command_loads_its_own_module_alone(tmp_path):
    code = (
        "import sys\n"
        "from convtool.cli import main\n"
        "sys.argv = ['probe', 'shape', '28', '--size', '3']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "print(sorted(m for m in sys.modules if m.startswith('convtool.cli._') and m[13:] in"
        " ('_apply', '_fit', '_kernels', '_pipeline', '_shape')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "['convtool.cli._shape']"
