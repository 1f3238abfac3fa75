"""`convtool pipeline`: the chapter's figure 17-7 and 17-6 runs checked against scipy, the
files it writes (maps, stages, panel, grid), JSON records, batches, pipes and errors."""

from __future__ import annotations

import io as pyio
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage as ndi
import scipy.signal
from click.testing import CliRunner
from PIL import Image

from convtool.cli import cli
from convtool.kernels import parse_kernel
from convtool.pipeline import figures
from tests.pipeline.test_figures import enlarged, frames, inside

ROOT = Path(__file__).resolve().parents[2]
DISC = ROOT / "samples" / "disc.png"
GRAY = ROOT / "samples" / "gray.png"
SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], float)
LUMA = np.array([0.299, 0.587, 0.114])
CHAPTER = "sharpness vertical_edge surround sobel_y nothing horizontal_edge blur sobel_x embossing"


def run(*args, input: bytes | None = None):
    return CliRunner().invoke(cli, ["pipeline", *map(str, args)], input=input)


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im).astype(np.float64) / 255


def disc() -> np.ndarray:
    return pixels(DISC)


def chapter_maps(x: np.ndarray):
    """Figure 17-7 by scipy: sobel-x on each channel summed, ReLU, 2x2 max with stride 2."""
    conv = sum(scipy.signal.correlate2d(x[..., c], SOBEL_X, mode="valid") for c in range(3))
    relu = np.maximum(conv, 0)
    return conv, relu, relu.reshape(39, 2, 39, 2).max(axis=(1, 3))


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ------------------------------------------------------------ the chapter's runs


def test_default_chain_prints_the_stage_table():
    result = run(DISC, "-k", "sobel_x")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for text in ["source", "(3, 80, 80)", "conv:sobel_x,s=1,p=valid", "(1, 78, 78)", "relu"]:
        assert text in out
    assert "maxpool:2,s=2" in out and "(1, 39, 39)" in out and " ms" in out
    conv_row = next(line for line in out.splitlines() if "conv:sobel_x" in line).split()
    assert conv_row[5:7] == ["-12", "12"]  # min, max: a white-to-black edge on 3 channels


def test_final_map_raw_and_as_pictures(tmp_path):
    _, _, pool = chapter_maps(disc())
    result = run(DISC, "-k", "sobel_x", "-o", tmp_path / "pooled.npy")
    assert result.exit_code == 0, result.output
    raw = np.load(tmp_path / "pooled.npy")
    assert raw.shape == (39, 39) and raw.dtype == np.float32
    np.testing.assert_allclose(raw, pool, atol=1e-5)

    result = run(DISC, "-k", "sobel_x", "-o", tmp_path / "pooled.png")
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(pixels(tmp_path / "pooled.png"), np.clip(pool, 0, 1), atol=0.5 / 255)
    assert "clipping to [0, 1] changed" in result.stderr and "--map normalize" in result.stderr

    result = run(DISC, "-k", "sobel_x", "-o", tmp_path / "norm.png", "--map", "normalize")
    assert result.exit_code == 0 and "clipping" not in result.stderr
    np.testing.assert_allclose(pixels(tmp_path / "norm.png"), pool / pool.max(), atol=0.5 / 255)


def test_save_stages_writes_every_map(tmp_path):
    conv, relu, pool = chapter_maps(disc())
    result = run(
        DISC, "--stage", "conv:sobel_x -> relu -> maxpool:2", "--save-stages", tmp_path / "st"
    )
    assert result.exit_code == 0, result.output
    names = ["01-conv", "02-relu", "03-maxpool"]
    assert listing(tmp_path / "st") == sorted(f"{n}.{e}" for n in names for e in ("npy", "png"))
    for name, want in zip(names, (conv, relu, pool), strict=True):
        raw = np.load(tmp_path / "st" / f"{name}.npy")
        np.testing.assert_allclose(raw, want, atol=1e-5)
        with Image.open(tmp_path / "st" / f"{name}.png") as im:
            shown = np.asarray(im.convert("RGB"))
        assert shown.shape == (*want.shape, 3)
        np.testing.assert_array_equal(shown, figures.colorize(raw))  # viridis, min..max
        lut = figures.lookup_table("viridis")
        assert (shown[want == want.min()] == lut[0]).all()
        assert (shown[want == want.max()] == lut[-1]).all()


def test_several_kernels_save_one_picture_per_map(tmp_path):
    result = run(
        DISC,
        "--stage",
        "conv:sobel_x+sobel_y",
        "--stage",
        "relu",
        "--save-stages",
        tmp_path,
        "-o",
        tmp_path / "last.npy",
    )
    assert result.exit_code == 0, result.output
    assert listing(tmp_path) == [
        "01-conv.npy",
        "01-conv.sobel_x.png",
        "01-conv.sobel_y.png",
        "02-relu.npy",
        "02-relu.sobel_x.png",
        "02-relu.sobel_y.png",
        "last.npy",
    ]
    x = disc()
    last = np.load(tmp_path / "last.npy")
    assert last.shape == (2, 78, 78)  # several maps: (C, H, W)
    for c, name in enumerate(["sobel_x", "sobel_y"]):
        want = sum(
            scipy.signal.correlate2d(x[..., ch], parse_kernel(name), "valid") for ch in range(3)
        )
        np.testing.assert_allclose(last[c], np.maximum(want, 0), atol=1e-5)


def test_panel_is_figure_17_7(tmp_path):
    result = run(DISC, "-k", "sobel_x", "--panel", tmp_path / "fig.png")
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "fig.png") as im:
        fig = im.convert("RGB")
    boxes = frames(fig)
    assert [(h, w) for _, _, h, w in boxes] == [(240, 240), (234, 234), (234, 234), (234, 234)]
    assert len({t for t, _, _, _ in boxes}) == 1  # side by side
    conv, relu, pool = chapter_maps(disc())
    np.testing.assert_array_equal(
        inside(fig, boxes[0]), enlarged(np.rint(disc() * 255).astype(np.uint8), 3)
    )
    for box, want, factor in [(boxes[1], conv, 3), (boxes[2], relu, 3), (boxes[3], pool, 6)]:
        diff = np.abs(inside(fig, box).astype(int) - enlarged(figures.colorize(want), factor))
        assert diff.max() <= 12  # float32 against float64: at most one step of the map
    # --columns 2 lays it out 2x2, as the chapter's figure
    result = run(DISC, "-k", "sobel_x", "--panel", tmp_path / "fig22.png", "--columns", "2")
    with Image.open(tmp_path / "fig22.png") as im:
        tops = sorted({t for t, _, _, _ in frames(im.convert("RGB"))})
    assert len(tops) == 2


def test_grid_is_figure_17_6(tmp_path):
    stage = "conv:" + "+".join(CHAPTER.split()) + ",p=1"
    result = run(
        DISC, "--color", "gray", "--stage", stage, "--grid", tmp_path / "grid.png", "--json"
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["stages"][0]["shape"] == [9, 80, 80]
    assert record["stages"][0]["channels"] == CHAPTER.split()
    with Image.open(tmp_path / "grid.png") as im:
        fig = im.convert("RGB")
    boxes = frames(fig)
    assert len(boxes) == 9 and {(h, w) for _, _, h, w in boxes} == {(240, 240)}
    assert len({t for t, _, _, _ in boxes}) == 3 and len({left for _, left, _, _ in boxes}) == 3
    grey = disc() @ LUMA
    for box, name in zip(boxes, CHAPTER.split(), strict=True):  # row by row, as the table
        want = ndi.correlate(grey, parse_kernel(name), mode="constant")
        diff = np.abs(inside(fig, box).astype(int) - enlarged(figures.colorize(want), 3))
        assert diff.max() <= 12, name


def test_grid_stage_and_json_records(tmp_path):
    result = run(
        DISC,
        "-k",
        "sobel_x",
        "-k",
        "sobel_y",
        "--grid",
        tmp_path / "g.png",
        "--grid-stage",
        "1",
        "-o",
        tmp_path / "p.npy",
        "--json",
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["input"] == str(DISC) and record["source"] == [3, 80, 80]
    assert [s["kind"] for s in record["stages"]] == ["conv", "relu", "maxpool"]
    assert [s["shape"] for s in record["stages"]] == [[2, 78, 78], [2, 78, 78], [2, 39, 39]]
    assert record["stages"][0]["spec"] == "conv:sobel_x+sobel_y,s=1,p=valid"
    assert all(s["seconds"] >= 0 for s in record["stages"])
    last = np.load(tmp_path / "p.npy")
    assert record["stages"][2]["min"] == pytest.approx(float(last.min()))
    assert record["stages"][2]["max"] == pytest.approx(float(last.max()))
    outputs = {o["what"]: o for o in record["outputs"]}
    assert outputs["map"]["output"] == str(tmp_path / "p.npy") and outputs["map"]["map"] == "none"
    assert outputs["grid"]["stage"] == 1
    with Image.open(tmp_path / "g.png") as im:
        assert len(frames(im.convert("RGB"))) == 2  # the two conv maps, side by side


def test_4d_kernel_file_takes_the_maps_of_the_stage_before(tmp_path):
    w = np.random.default_rng(0).normal(size=(3, 2, 3, 3))
    np.save(tmp_path / "w.npy", w)
    result = run(
        DISC, "--stage", f"conv:sobel_x+sobel_y -> conv:@{tmp_path / 'w.npy'},p=same", "--json"
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["stages"][1]["shape"] == [3, 78, 78]
    assert record["stages"][1]["channels"] == ["w[0]", "w[1]", "w[2]"]


# ------------------------------------------------------------ many pictures, pipes


def test_many_pictures_in_parallel(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.png", "b.png"):
        (src / name).write_bytes(DISC.read_bytes())
    (src / "c.png").write_bytes(GRAY.read_bytes())
    out = {1: tmp_path / "one", 2: tmp_path / "two"}
    records = {}
    for jobs, folder in out.items():
        folder.mkdir()
        inputs = [src / n for n in ("a.png", "b.png", "c.png")]
        result = run(
            *inputs,
            "-k",
            "sobel_x",
            "-o",
            folder,
            "--panel",
            folder,
            "--save-stages",
            folder / "st",
            "--json",
            "-j",
            jobs,
        )
        assert result.exit_code == 0, result.output
        records[jobs] = [json.loads(line) for line in result.stdout.splitlines()]
        assert [Path(r["input"]).name for r in records[jobs]] == ["a.png", "b.png", "c.png"]
    assert listing(out[1]) == sorted(
        ["st"] + [f"{s}.{k}.png" for s in "abc" for k in ("pipeline", "panel")]
    )
    stage_files = listing(out[1] / "st")
    assert (
        len(stage_files) == 18
        and "a.01-conv.npy" in stage_files
        and "c.03-maxpool.png" in stage_files
    )
    assert records[1][2]["stages"][0]["shape"] == [1, 254, 254]  # the grey picture: one channel
    np.testing.assert_array_equal(
        pixels(out[1] / "a.pipeline.png"), pixels(out[2] / "a.pipeline.png")
    )
    for one, two in zip(records[1], records[2], strict=True):
        for s1, s2 in zip(one["stages"], two["stages"], strict=True):
            assert {**s1, "seconds": 0} == {**s2, "seconds": 0}


def test_standard_input_and_output():
    _, _, pool = chapter_maps(disc())
    result = run("-", "-k", "sobel_x", "-o", "-", "--map", "normalize", input=DISC.read_bytes())
    assert result.exit_code == 0, result.stderr
    with Image.open(pyio.BytesIO(result.stdout_bytes)) as im:
        got = np.asarray(im).astype(np.float64) / 255
    np.testing.assert_allclose(got, pool / pool.max(), atol=0.5 / 255)
    assert "standard input" in result.stderr and "(1, 39, 39)" in result.stderr  # the table


# ------------------------------------------------------------ errors


def test_missing_file_fails_with_one_line_and_writes_nothing(tmp_path):
    result = run(
        tmp_path / "nope.png",
        "-k",
        "sobel_x",
        "-o",
        tmp_path / "o.png",
        "--panel",
        tmp_path / "f.png",
    )
    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0 and "cannot read" in result.stderr
    assert "nope.png" in result.stderr and "Traceback" not in result.output
    assert listing(tmp_path) == []


def test_stage_that_cannot_run_writes_nothing(tmp_path):
    args = ["--stage", "conv:gaussian:31 -> maxpool:2 -> conv:gaussian:31"]
    outs = ["-o", tmp_path / "o.npy", "--panel", tmp_path / "f.png", "--grid", tmp_path / "g.png"]
    result = run(DISC, *args, *outs, "--save-stages", tmp_path / "st")
    assert result.exit_code == 1
    assert "stage 3 (conv:gaussian:31,s=1,p=valid)" in result.stderr
    assert "kernel is 31x31 but the padded image is only 25x25" in result.stderr
    assert listing(tmp_path) == [] and "Traceback" not in result.output


def test_existing_output_is_kept_and_nothing_else_written(tmp_path):
    (tmp_path / "o.png").write_bytes(b"keep")
    result = run(DISC, "-k", "sobel_x", "-o", tmp_path / "o.png", "--panel", tmp_path / "f.png")
    assert result.exit_code == 1 and "exists; pass --overwrite" in result.stderr
    assert listing(tmp_path) == ["o.png"] and (tmp_path / "o.png").read_bytes() == b"keep"
    result = run(
        DISC,
        "-k",
        "sobel_x",
        "-o",
        tmp_path / "o.png",
        "--panel",
        tmp_path / "f.png",
        "--overwrite",
    )
    assert result.exit_code == 0 and listing(tmp_path) == ["f.png", "o.png"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ([], "nothing to run"),
        (["--stage", "conv:sobel_q"], "unknown kernel 'sobel_q'"),
        (["--stage", "conv:sobel_x,q=2"], "Invalid value for '--stage'"),
        (["--stage", "softmax"], "stage 'softmax' is for convtool shape's tables"),
        (["-k", "nope_kernel"], "Invalid value for '-k'"),
        (["-k", "sobel_x", "--stage", "conv:blur"], "these would go unused"),
        (["-k", "sobel_x", "--grid-stage", "1"], "give --grid"),
        (["-k", "sobel_x", "--grid", "g.png", "--grid-stage", "4"], "the chain has 3 stage(s)"),
        (["-k", "sobel_x", "-o", "-", "--json"], "--json prints records"),
        (["-k", "sobel_x", "--panel", "missing/f.png"], "does not exist"),
        (["-k", "sobel_x", "--panel", "f.npy"], "a figure is a picture"),
        (["-k", "sobel_x", "--map", "abs"], "--map is about the -o output"),
        (["-k", "sobel_x", "-o", "o.xyz"], "extension '.xyz'"),
        (["-k", "sobel_x", "-o", "o.jpg", "--depth", "16"], "JPEG takes depth 8"),
        (["-k", "sobel_x", "-k", "sobel_y", "-o", "o.png"], "the chain ends in 2 maps"),
        (["-k", "sobel_x", "--save-stages", "missing/st"], "does not exist"),
        (["-k", "sobel_x", "--cell", "8"], "--cell"),
    ],
)
def test_usage_errors_exit_2(tmp_path, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    result = run(DISC, *args)
    assert result.exit_code == 2, result.output
    assert needle in result.output and "Traceback" not in result.output
    assert listing(tmp_path) == []


def test_naming_errors_for_several_inputs(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        (tmp_path / folder / "x.png").write_bytes(DISC.read_bytes())
    two = [tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"]
    result = run(*two, "-k", "sobel_x", "--panel", tmp_path)
    assert result.exit_code == 2 and "would both write" in result.output
    result = run(two[0], DISC, "-k", "sobel_x", "--panel", tmp_path / "f.png")
    assert result.exit_code == 2 and "need a folder" in result.output
    result = run(two[0], "-k", "sobel_x", "-o", two[0], "--overwrite")
    assert result.exit_code == 2 and "is an input" in result.output


def test_the_program_itself_exits_cleanly(tmp_path):
    base = [sys.executable, "-m", "convtool", "pipeline"]
    done = subprocess.run(
        [*base, str(tmp_path / "nope.png"), "-k", "sobel_x"], capture_output=True, text=True
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"convtool: error: cannot read {tmp_path / 'nope.png'}: no such file"
    ]
    done = subprocess.run(
        [*base, str(DISC), "--stage", "conv:sobel_x,s=x"], capture_output=True, text=True
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "stride must be an integer" in done.stderr


def test_help_documents_the_grammar_without_loading_numpy():
    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom convtool.cli import cli\n"
        "r = CliRunner().invoke(cli, ['pipeline', '--help'])\n"
        "print(r.exit_code, 'numpy' in sys.modules, 'numba' in sys.modules)\nprint(r.output)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    first, _, text = done.stdout.partition("\n")
    assert first == "0 False False", done.stderr
    for needle in [
        "conv[:C@K|KERNEL[+KERNEL...]][,s=S][,p=P][,d=D][,border=B][,flip][,bias=B]",
        "maxpool[:K][,s=S][,p=P][,ceil]",
        "avgpool[:K][,s=S][,p=P][,ceil]",
        "Examples:",
        'convtool pipeline disc.png --stage "conv:sobel_x -> relu -> maxpool:2"',
        "01-conv.npy",
    ]:
        assert needle in text, needle


def test_trailing_slash_folders_are_created(tmp_path):
    # --panel DIR/, --grid DIR/ and --save-stages DIR/ create their folders, parents too
    panel, grid, stages = tmp_path / "a" / "p", tmp_path / "b" / "g", tmp_path / "c" / "s"
    result = run(
        DISC, "-k", "sobel_x", "-o", f"{tmp_path}/d/o/",
        "--panel", f"{panel}/", "--grid", f"{grid}/", "--save-stages", f"{stages}/",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (panel / "disc.panel.png").is_file() and (grid / "disc.grid.png").is_file()
    assert any(stages.iterdir()) and (tmp_path / "d" / "o" / "disc.pipeline.png").is_file()
