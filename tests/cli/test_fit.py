"""`convtool fit`: the report, --json, kernel files that `kernels @file` reads back, the
loss log, pairs made by other programs with default options, and the errors."""

from __future__ import annotations

import csv
import itertools
import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from numpy.lib.stride_tricks import sliding_window_view

from convtool.cli import cli
from convtool.filtering import to_gray
from convtool.imaging import read_image, write_image
from convtool.kernels import parse_kernel_spec

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "fit"
DISC = str(ROOT / "samples" / "disc.png")
SOBEL_X = np.array([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])


def run(*args: str):
    return CliRunner().invoke(cli, ["fit", *map(str, args)], env={"COLUMNS": "120"})


def correlate(x, w):
    return np.einsum("ijab,ab->ij", sliding_window_view(x, w.shape), w)


def no_traceback(result) -> None:
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.fixture(scope="module")
def chapter(tmp_path_factory):
    """The chapter's target: the grey disc correlated with the horizontal-edge kernel."""
    x = to_gray(read_image(DISC).data).astype(np.float64)
    path = tmp_path_factory.mktemp("chapter") / "target.npy"
    np.save(path, correlate(x, np.array([[0.0, -1, 0], [0, 2, 0], [0, -1, 0]])))
    return path


@pytest.fixture(scope="module")
def biased(tmp_path_factory):
    """0.125 x sobel_x + 0.5 on a grey scene, saved as a 16-bit PNG of the same size."""
    x = read_image(ROOT / "samples" / "gray.png").data.astype(np.float64)
    y = 0.5 + 0.125 * correlate(np.pad(x, 1, mode="edge"), SOBEL_X)
    path = tmp_path_factory.mktemp("biased") / "edges16.png"
    write_image(path, y, bit_depth=16)
    return path


# ---------------------------------------------------------------- reports


def test_the_chapters_experiment(chapter):
    result = run(DISC, chapter, "--lr", "0.5", "--seed", "1", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["method"] == "gd" and data["lr"] == 0.5  # --lr alone means gd
    assert data["converged"] is True and data["stopped"] == "tol"
    assert 3200 <= data["iterations"] <= 3600 and data["loss"] < 1e-7
    kernel = np.array(data["kernel"])
    assert kernel.shape == (3, 3)  # nested lists, rows first
    assert np.abs(kernel - [[0, -1, 0], [0, 2, 0], [0, -1, 0]]).max() < 1e-2
    assert "grey (luma)" in result.stderr  # a colour disc against a grey target


def test_json_has_the_documented_keys(chapter):
    data = json.loads(run(DISC, chapter, "--json").stdout)
    assert set(data) >= {"kernel", "bias", "iterations", "loss", "converged", "method", "lr"}
    assert data["method"] == "cg" and data["lr"] is None and data["bias"] is None
    assert data["seed"] is None and data["match"]["name"] == "horizontal_edge"  # cg: from zero
    assert np.array(data["stderr"]).shape == (3, 3) and max(map(max, data["stderr"])) < 1e-9
    assert data["match_text"] == "horizontal_edge" or "x horizontal_edge" in data["match_text"]


def test_text_report(chapter):
    result = run(DISC, chapter, "--method", "lstsq")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("kernel 3x3 (direct least squares)")
    assert re.search(r"-1\.00000\s+0\.00000", out) and "2.00000" in out
    for label in ("bias        none", "iterations  1 (converged", "loss ", "PSNR ", "pixels "):
        assert label in out
    assert "match       horizontal_edge" in out
    assert "6084 fitted (valid)" in out


def test_bias_and_the_named_kernel_it_matches(biased):
    # a bias makes the problem worse conditioned: the default tol 1e-7 stops cg within
    # 2e-3 of the kernel; a tighter one runs on to the 16-bit target's noise floor
    result = run(ROOT / "samples" / "gray.png", biased, "--bias", "--tol", "1e-12", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    np.testing.assert_allclose(data["kernel"], 0.125 * SOBEL_X, atol=1e-4)
    assert data["bias"] == pytest.approx(0.5, abs=1e-4)
    assert data["match_text"] == "0.125 x sobel_x, bias 0.5"
    assert data["size_from"] == "detected" and data["padding"] == "interior"


def test_a_run_cut_short_says_so(chapter):
    result = run(DISC, chapter, "--method", "gd", "--max-iter", "10", "--json")
    assert result.exit_code == 1  # a fit short of its tolerance fails, after its report
    data = json.loads(result.stdout)
    assert data["converged"] is False and data["stopped"] == "max_iter"
    assert data["iterations"] == 10
    assert "stopped at --max-iter 10" in result.stderr
    text = run(DISC, chapter, "--method", "gd", "--max-iter", "10").stdout
    assert "NOT converged" in text


def test_compare(chapter):
    data = json.loads(run(DISC, chapter, "--compare", "horizontal_edge", "--json").stdout)
    assert data["compare"]["allclose"] is True and data["compare"]["max_abs_diff"] < 0.01
    result = run(DISC, chapter, "--compare", "sobel_x")
    assert "compare     sobel_x: NOT close" in result.stdout
    assert result.exit_code == 1 and "not within --atol of sobel_x" in result.stderr
    result = run(DISC, chapter, "--compare", "gaussian:5")
    assert "is 5x5" in result.stdout and result.exit_code == 1
    result = run(DISC, chapter, "--compare", "no_such_kernel")
    assert result.exit_code == 2 and "unknown kernel" in result.output


def test_progress_bar_on_a_terminal(chapter, monkeypatch):
    from convtool.cli import _fit

    monkeypatch.setattr(_fit, "_stderr_is_terminal", lambda: True)
    result = run(DISC, chapter, "--method", "gd", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["converged"] is True  # stdout stays clean


# ---------------------------------------------------------------- files


@pytest.mark.parametrize("suffix", [".json", ".npy", ".txt"])
def test_kernel_files_read_back(tmp_path, biased, suffix):
    out = tmp_path / f"k{suffix}"
    result = run(ROOT / "samples" / "gray.png", biased, "--bias", "-o", out, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    spec = parse_kernel_spec(f"@{out}")
    np.testing.assert_array_equal(spec.weights, data["kernel"])
    if suffix == ".json":
        assert spec.bias == data["bias"]
    elif suffix == ".npy":
        assert "kernel only" in result.stderr
    else:
        assert f"bias {data['bias']!r}" in out.read_text()


def test_per_channel_kernels_are_written_block_diagonal(tmp_path):
    out = tmp_path / "k.npy"
    args = (DATA / "input.png", DATA / "custom3_imagemagick.png", "--per-channel")
    result = run(*args, "-o", out, "--json")
    assert result.exit_code == 0, result.output
    kernels = np.array(json.loads(result.stdout)["kernel"])
    assert kernels.shape == (3, 3, 3)
    weights = parse_kernel_spec(f"@{out}").weights
    assert weights.shape == (3, 3, 3, 3)
    for o in range(3):
        for i in range(3):
            np.testing.assert_array_equal(weights[o, i], kernels[o] if o == i else 0)
    assert run(*args, "-o", tmp_path / "k.txt").exit_code == 2


def test_loss_log(tmp_path, chapter):
    log = tmp_path / "loss.csv"
    result = run(DISC, chapter, "--lr", "0.5", "--seed", "3", "--log", log, "--json")
    data = json.loads(result.stdout)
    rows = list(csv.reader(log.open()))
    assert rows[0] == ["iteration", "loss"]
    assert len(rows) == data["iterations"] + 2
    assert rows[1][0] == "0" and int(rows[-1][0]) == data["iterations"]
    assert float(rows[-1][1]) == data["loss"] < 1e-7 <= float(rows[-2][1])
    losses = [float(r[1]) for r in rows[1:]]
    assert all(b <= a for a, b in itertools.pairwise(losses))


def test_existing_files_are_kept_unless_overwrite(tmp_path, chapter):
    out = tmp_path / "k.json"
    out.write_text("keep")
    result = run(DISC, chapter, "-o", out)
    assert result.exit_code == 1 and "--overwrite" in result.output
    assert out.read_text() == "keep"
    assert run(DISC, chapter, "-o", out, "--overwrite").exit_code == 0
    assert parse_kernel_spec(f"@{out}").weights.shape == (3, 3)


# ---------------------------------------------------------------- other programs' pairs


@pytest.mark.parametrize(
    ("name", "atol"),
    [
        ("custom3_imagemagick.png", 0.01),
        ("custom5_opencv.png", 0.01),
        ("sobel_imagemagick.png", 0.05),
    ],
)
def test_pairs_made_by_other_programs_with_default_options(name, atol):
    result = run(DATA / "input.png", DATA / name, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    truth = np.array(json.loads((DATA / "kernels.json").read_text())[name]["kernel"])
    assert data["converged"] is True and data["method"] == "cg"
    assert np.abs(np.array(data["kernel"]) - truth).max() < atol
    assert data["clipped"] > 0  # 8-bit targets: the pixels at 0 and 255 are left out


@pytest.mark.parametrize(
    "name", ["custom3_imagemagick.png", "custom5_opencv.png", "sobel_imagemagick.png"]
)
def test_modelling_the_makers_border_fits_every_pixel(name):
    meta = json.loads((DATA / "kernels.json").read_text())[name]
    truth = np.array(meta["kernel"])
    args = (DATA / "input.png", DATA / name, "--border", meta["border"], "--json")
    data = json.loads(run(*args).stdout)
    assert data["padding"] == meta["border"]
    assert data["pixels"] + data["clipped"] == 3 * 256 * 256  # the border pixels too
    assert np.abs(np.array(data["kernel"]) - truth).max() < 0.01


def test_keep_clipped_shows_why_they_are_left_out():
    args = (DATA / "input.png", DATA / "sobel_imagemagick.png", "--size", "3")
    data = json.loads(run(*args, "--keep-clipped", "--json").stdout)
    assert data["clipped"] == 0
    assert np.abs(np.array(data["kernel"]) - SOBEL_X).max() > 0.3


def test_grey_fits_luma_versions():
    args = (DATA / "input.png", DATA / "custom3_imagemagick.png", "--grey", "--json")
    data = json.loads(run(*args).stdout)
    truth = json.loads((DATA / "kernels.json").read_text())["custom3_imagemagick.png"]["kernel"]
    assert np.abs(np.array(data["kernel"]) - truth).max() < 0.02


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (("{chapter}", DISC), 2, "swapped"),
        ((DISC, "{chapter}", "--size", "5"), 2, "gives 76 (valid) or 80 (same)"),
        ((DISC, "{chapter}", "--lr", "0.5", "--method", "cg"), 2, "--lr applies to --method gd"),
        ((DISC, "{chapter}", "--lr", "-1"), 2, "positive"),
        ((DISC, "{chapter}", "--lr", "fast"), 2, "neither a number nor 'auto'"),
        ((DISC, "{chapter}", "--tol", "0"), 2, "positive"),
        ((DISC, "{chapter}", "--per-channel", "--grey"), 2, "exclude each other"),
        ((DISC, "{chapter}", "--border", "replicate"), 2, "same-size targets only"),
        ((DISC, "{chapter}", "-o", "k.png"), 2, ".npy, .txt, .json"),
        ((DISC, "{chapter}", "--method", "gd", "--lr", "0.7"), 1, "diverge"),
        (("missing.png", "{chapter}"), 1, "no such file"),
        ((DISC, DATA / "kernels.json"), 1, "cannot read"),
    ],
)
def test_errors_are_one_line_with_the_right_exit_code(args, code, words, chapter, tmp_path):
    out = tmp_path / "k.json"
    args = [str(a).format(chapter=chapter) for a in args]
    result = run(*args, *(() if "-o" in args else ("-o", out)))
    assert result.exit_code == code, result.output
    assert words in result.output
    no_traceback(result)
    assert not out.exists()  # nothing written when the fit fails


def test_a_diverging_step_names_a_safe_one(chapter):
    result = run(DISC, chapter, "--lr", "0.7")
    assert result.exit_code == 1
    safe = float(re.search(r"use lr ([0-9.]+)", result.output).group(1))
    assert 0.5 < safe < 0.62
    assert run(DISC, chapter, "--lr", str(safe), "--seed", "1").exit_code == 0


def test_colour_target_with_grey_input_needs_grey(tmp_path):
    grey = tmp_path / "grey.png"
    write_image(grey, read_image(DATA / "input.png").data.mean(axis=2))
    result = run(grey, DATA / "custom3_imagemagick.png")
    assert result.exit_code == 2 and "--color gray" in result.output
    no_traceback(result)


def test_sizes_that_do_not_fit_the_stride_say_what_would(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.random((30, 30))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", correlate(x, SOBEL_X))  # 28x28: stride 1, 'valid'
    for extra, words in [
        ((), "input 30x30, target 28x28: with stride 2 the target can be at most 15 along"),
        (("--size", "3"), "a size-3 kernel with stride 2 gives 14 (valid) or 15 (same) along"),
        (
            ("--stride", "1x2", "--size", "3"),
            "gives 14 (valid) or 15 (same) along the width, not 28",
        ),
    ]:
        stride = () if "--stride" in extra else ("--stride", "2")
        result = run(tmp_path / "x.npy", tmp_path / "y.npy", *stride, *extra)
        assert result.exit_code == 2 and words in result.output, result.output
        assert "swapped" not in result.output  # swapping them would not fit either
        no_traceback(result)
    # the sizes it names fit: the stride-2 target of the same kernel is fitted
    y2 = correlate(x, SOBEL_X)[::2, ::2]
    np.save(tmp_path / "y2.npy", y2)
    args = (tmp_path / "x.npy", tmp_path / "y2.npy", "--stride", "2", "--size", "3")
    args += ("--method", "lstsq", "--json")
    data = json.loads(run(*args).stdout)
    np.testing.assert_allclose(data["kernel"], SOBEL_X, atol=1e-6)


def test_a_target_larger_along_one_side_only_is_not_called_swapped(tmp_path):
    rng = np.random.default_rng(3)
    np.save(tmp_path / "x.npy", rng.random((28, 40)))
    np.save(tmp_path / "y.npy", rng.random((30, 30)))
    result = run(tmp_path / "x.npy", tmp_path / "y.npy")
    assert result.exit_code == 2 and "taller than" in result.output, result.output
    assert "swapped" not in result.output  # 28x40 does not fit in 30x30 either
    no_traceback(result)


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_a_strided_target_from_apply_has_its_stride_found(tmp_path, padding):
    scene = ROOT / "samples" / "scene.png"
    target = tmp_path / "s2.npy"
    made = CliRunner().invoke(
        cli, ["apply", str(scene), "-k", "blur", "--stride", "2", "--padding", padding,
              "-o", str(target)],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    result = run(scene, target, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["stride"] == [2, 2] and data["size"] == [3, 3]
    assert data["match"]["name"] == "blur" and data["match"]["exact"]
    assert "stride 2 detected from the sizes (input 512x512, target" in result.stderr


def test_sizes_no_stride_explains_are_refused_naming_stride(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.random((512, 512)))
    np.save(tmp_path / "y.npy", rng.random((100, 100)))
    result = run(tmp_path / "x.npy", tmp_path / "y.npy")
    assert result.exit_code == 2 and "give --stride S (and --size K)" in result.output
    no_traceback(result)
    result = run(tmp_path / "x.npy", tmp_path / "y.npy", "--stride", "1")
    assert result.exit_code == 2 and "a 413x413 kernel (rows x columns)" in result.output
    assert "--size 413x413" in result.output


def apply_to(tmp_path, name, *args):
    """`convtool apply` on the colour scene, the target written to tmp_path / name."""
    target = tmp_path / name
    made = CliRunner().invoke(
        cli, ["apply", str(ROOT / "samples" / "scene.png"), *args, "-o", str(target)]
    )
    assert made.exit_code == 0, made.output
    return target


@pytest.mark.parametrize("color", ["channels", "gray", "sum"])
@pytest.mark.parametrize("given", [True, False])
def test_every_apply_colour_mode_is_undone(tmp_path, color, given):
    """apply --color X makes a target; fit finds the kernel back, --color X given or not."""
    kernel = "0,-1,0; -1,5,-1; 0,-1,0" if color != "sum" else "0,0.1,0; 0.1,0.2,0.1; 0,0.1,0"
    target = apply_to(tmp_path, "t.npy", "-k", kernel, "--color", color)
    args = ("--color", color) if given else ()
    result = run(ROOT / "samples" / "scene.png", target, *args, "--json")
    assert result.exit_code == 0, result.output
    want = parse_kernel_spec(kernel).weights
    np.testing.assert_allclose(json.loads(result.stdout)["kernel"], want, atol=1e-6)
    if color == "sum" and not given:
        assert "channels summed, as apply --color sum makes it" in result.stderr


def test_grey_is_color_gray_and_excludes_the_others(tmp_path):
    target = apply_to(tmp_path, "t.npy", "-k", "sharpen", "--color", "gray")
    scene = ROOT / "samples" / "scene.png"
    assert run(scene, target, "--gray").stdout == run(scene, target, "--color", "gray").stdout
    refused = run(scene, target, "--grey", "--color", "sum")
    assert refused.exit_code == 2 and "--grey is --color gray" in refused.output
    refused = run(scene, target, "--color", "channels")
    assert refused.exit_code == 2 and "give --color gray or --color sum" in refused.output


def test_an_offset_target_gets_a_bias_not_a_noise_kernel(tmp_path):
    target = apply_to(tmp_path, "emboss.png", "-k", "emboss", "--map", "offset")
    result = run(ROOT / "samples" / "scene.png", target, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["size"] == [3, 3] and data["bias"] == pytest.approx(0.5, abs=0.002)
    np.testing.assert_allclose(data["kernel"], parse_kernel_spec("emboss").weights, atol=0.01)
    assert "the target has a constant offset: a bias (0.50" in result.stderr
    plain = json.loads(run(ROOT / "samples" / "scene.png", target, "--no-bias", "--json").stdout)
    assert plain["bias"] is None


def test_report_draws_the_fit(tmp_path, chapter):
    figure = tmp_path / "fit.png"
    result = run(DISC, chapter, "--report", figure)
    assert result.exit_code == 0, result.output
    picture = read_image(figure)
    assert picture.format == "PNG" and picture.width > 4 * 240 and picture.data.ndim == 3
    # four tiles: the kernel, its named match, the residual, the loss curve; not blank
    assert picture.data.std() > 0.05
    again = tmp_path / "again.png"
    run(DISC, chapter, "--report", again)
    assert again.read_bytes() == figure.read_bytes()  # deterministic
    clash = run(DISC, chapter, "--report", figure, "-o", figure.with_suffix(".npy"), "--log",
                figure)  # fmt: skip
    assert clash.exit_code == 2 and "given to --log and --report" in clash.output


@pytest.mark.parametrize(
    ("kernel", "suffix"), [("sharpen", "png"), ("blur", "npy"), ("emboss", "npy")]
)
def test_exact_pairs_give_the_kernel_to_float_precision(tmp_path, kernel, suffix):
    """An 8-bit target of an integer kernel, or any .npy target: the kernel to 1e-6, named."""
    target = apply_to(tmp_path, f"t.{suffix}", "-k", kernel)
    result = run(ROOT / "samples" / "scene.png", target, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    want = parse_kernel_spec(kernel).weights
    np.testing.assert_allclose(data["kernel"], want, atol=1e-6)
    assert data["match"]["exact"] and data["match"]["scale"] == pytest.approx(1, abs=1e-6)
