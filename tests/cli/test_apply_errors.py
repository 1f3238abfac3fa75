"""`convtool apply` hardened: every bad input gets a clear answer, and nothing is lost.

Its table of hostile command lines (pictures that cannot be read, broken kernel specs,
impossible geometry, outputs that cannot be written or would overwrite an input), a subset
of it in a real subprocess, a million inline numbers; then odd but valid pictures against
an independent reference, Ctrl-C in the middle of a batch, NaN and infinity in a result,
and the same bytes whatever ``--jobs`` is.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage as ndi
from PIL import Image

from tests.cli.hardening import (
    BLUR,
    PROC,
    READS,
    SPECS,
    C,
    Case,
    as_in_a_terminal,
    check_case,
    check_failure,
    run_limited,
    run_main,
    run_program,
    snapshot,
)

APPLY = "apply {ok.png} -k blur"
CASES: dict[str, Case] = {
    **{f"apply-{n}": C(f"apply {{{n}}} -k blur -o {{out}}/x.png", 1, w) for n, w in READS},
    **{
        f"apply-spec-{n}": Case(("apply", "{ok.png}", "-k", s), 2, w) for n, (s, w) in SPECS.items()
    },
    # a TIFF kept as TIFF is filtered in tiles (--tile), never whole: its header's size
    # is not refused, but the data it promises must be there
    "apply-bomb.tif-to-tif": C("apply {bomb.tif} -k blur -o {out}/", 1, "bomb.tif"),
    "apply-smaller-than-kernel": C(
        "apply {one.png} -k gaussian:5 --padding valid -o {out}/x.png", 1, "kernel is 5x5"
    ),
    "apply-stride-0": C(f"{APPLY} --stride 0 -o {{out}}/x.png", 2, "stride must be at least 1"),
    "apply-stride-0x2": C(f"{APPLY} --stride 0x2 -o {{out}}/x.png", 2, "stride"),
    "apply-padding-negative": C(f"{APPLY} --padding -1 -o {{out}}/x.png", 2, "'-1'"),
    "apply-padding-negative-hxw": C(f"{APPLY} --padding 1x-2 -o {{out}}/x.png", 2, "padding"),
    "apply-scale-nan": C(f"{APPLY} --scale nan -o {{out}}/x.png", 2, "finite"),
    "apply-bias-inf": C(f"{APPLY} --bias inf -o {{out}}/x.png", 2, "finite"),
    "apply-scale-overflow": C(f"{APPLY} --scale 1e300 -o {{out}}/x.png", 2, "float32"),
    "apply-max-pixels-negative": C(f"{APPLY} --max-pixels -5 -o {{out}}/x.png", 2, "pixel count"),
    "apply-max-pixels-word": C(f"{APPLY} --max-pixels lots -o {{out}}/x.png", 2, "pixel count"),
    "apply-max-pixels-small": C(f"{APPLY} --max-pixels 100 -o {{out}}/x.png", 1, "limit of 100"),
    "apply-folder-missing": C(f"{APPLY} -o {{out}}/nowhere/x.png", 2, "does not exist"),
    "apply-folder-missing-dir": C(
        "apply {ok.png} {grey.png} -k blur -o {out}/nowhere", 2, "nowhere/, created if missing"
    ),
    "apply-folder-is-a-file": C(f"{APPLY} -o {{ok.png}}/x.png", 2, "is not a folder"),
    "apply-out-folder-is-a-file": C(
        "apply {ok.png} {grey.png} -k blur -o {ok.png}/", 2, "ok.png' is not a folder"
    ),
    "apply-folder-unwritable": C(f"{APPLY} -o {PROC}.png", 1, f"cannot write {PROC}.png"),
    "apply-folder-unwritable-dir": C(f"{APPLY} -o /proc/", 1, "cannot write /proc/ok.blur.png"),
    "apply-output-is-input": C(f"{APPLY} -o {{ok.png}}", 2, "is an input"),
    "apply-output-is-input-overwrite": C(f"{APPLY} -o {{ok.png}} --overwrite", 2, "is an input"),
    "apply-output-exists": C(f"{APPLY} -o {{grey.png}}", 1, "exists; pass --overwrite"),
    # sizes the options make: refused before anything is made, naming the option and size
    "apply-padding-huge": C(
        f"{APPLY} --padding 100000000 -o {{out}}/x.png",
        2,
        "--padding 100000000 would make an output of 199999999x199999999 (4e+16 pixels) even "
        "from a 1x1 picture, more than the limit of",
    ),
    "apply-padding-huge-unlimited": C(
        f"{APPLY} --padding 100000000x100 --max-pixels none -o {{out}}/x.png",
        2,
        # apply's replicate border makes a padded copy first
        "'--padding': --padding 100000000x100 would make a padded copy of 1x200000001x201 "
        "(150 GiB)",
    ),
    "apply-padding-work": C(
        "apply {ok.png} -k box:31 --border wrap --padding 3000 -o {out}/x.png",
        2,
        "--padding 3000 would take 3.4e+10 multiply-adds even from a 1x1 picture",
    ),
    # one picture: sized from its header before the job starts, a usage error
    "apply-padding-over-max-pixels": C(
        f"{APPLY} --padding 2 --max-pixels 500 -o {{out}}/x.png",
        2,
        "'--padding': --padding 2 would make an output of 22x26 (572 pixels), more than the "
        "limit of 500 (--max-pixels)",
    ),
    "apply-two-inputs-one-name": C(
        "apply {ok.png} {ok.png} -k blur -o {out}/", 2, "would both write"
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_bad_input_gets_a_clear_answer_and_nothing_is_lost(case, files, tmp_path):
    check_case(case, files, tmp_path)


def test_a_million_inline_numbers_are_refused_quickly(files, tmp_path):
    # too long for a real command line (128 KB per argument), not for a script's call
    start = time.perf_counter()
    for spec, words in (
        (",".join(["1"] * 10**6), "row 1 has 1000000 values"),
        ("1 " * 10**6, "at most 1024"),
    ):
        before = snapshot(files["ok.png"].parent, tmp_path)
        result = run_main(["apply", files["ok.png"], "-k", spec, "-o", tmp_path / "x.png"])
        check_failure(result, 2, words, before, snapshot(files["ok.png"].parent, tmp_path))
    assert time.perf_counter() - start < 10


SUBPROCESS = [  # the cases that also run in a real subprocess
    "apply-corrupt.png",
    "apply-bomb.png",
    "apply-spec-ragged",
    "apply-folder-unwritable",
    "apply-output-is-input-overwrite",
    "apply-bomb.tif-to-tif",
    "apply-padding-huge",
]


@pytest.mark.parametrize("name", SUBPROCESS)
def test_the_program_itself_prints_no_traceback(name, files, tmp_path):
    check_case(CASES[name], files, tmp_path, run_program)


# ----------------------------------------------------------------- sizes


def test_a_stride_larger_than_the_picture_takes_memory_for_its_output_alone(files, tmp_path):
    # it took 1.4 GB: the column phases of a stride of 10^6 were 10^6 channels wide
    done = run_limited(["apply", files["ok.png"], "-k", "blur", "--stride", "1000000",
                     "-o", tmp_path / "x.npy"], 300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    # 'same' with one output a side needs no padding: the window at the top-left corner
    x = _reference(files["ok.png"])[0]
    want = [ndi.correlate(x[..., c], BLUR, mode="constant")[1, 1] for c in range(3)]
    np.testing.assert_allclose(np.load(tmp_path / "x.npy"), [[want]], atol=1e-6)


def test_memory_over_the_limit_is_refused_saying_how_much_it_would_need(files, tmp_path):
    # 300 MB more than it starts with: an 8000x8000 output of three float32 maps is not
    # (the replicate border's padded copy first, then the result)
    args = ["apply", files["ok.png"], "-k", "blur", "--padding", "4000", "-o", tmp_path / "x.npy"]
    done = run_limited(args, 300)
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert re.fullmatch(
        r"Error: Invalid value for '--padding': --padding 4000 would make a padded copy of "
        r"1x8001x8001 \(244 MiB\) even from a 1x1 picture: the job would need 1.19 GiB of "
        r"memory, more than the \d+ MiB this machine has free",
        last,
    ), last
    assert os.listdir(tmp_path) == []


def test_the_picture_from_standard_input_is_sized_exactly_before_anything_runs(files, tmp_path):
    args = ["apply", "-", "-k", "blur", "--padding", "2", "--max-pixels", "500"]
    before = snapshot(tmp_path)
    done = run_main([*args, "-o", tmp_path / "x.png"], input=files["ok.png"].read_bytes())
    check_failure(done, 2, "--padding 2 would make an output of 22x26 (572 pixels), more than",
                  before, snapshot(tmp_path))  # fmt: skip
    assert "1x1" not in done.err


def test_a_tile_larger_than_the_picture_is_cut_to_the_picture(files, tmp_path):
    # tiles of 1.6e9 pixels a side once asked for 6.66 EiB
    tif = tmp_path / "in.tif"
    Image.fromarray((np.random.default_rng(3).random((40, 56, 3)) * 255).astype(np.uint8)).save(tif)
    outs = []
    for tile in ("16", "1600000000"):
        outs.append(tmp_path / f"t{tile}.tif")
        done = run_main(["apply", tif, "-k", "blur", "--tile", tile, "-o", outs[-1]])
        assert done.code == 0, done.err
    import tifffile

    with tifffile.TiffFile(outs[1]) as t:
        assert t.pages[0].tilewidth == t.pages[0].tilelength == 1024  # the default tile
        big = t.asarray()
    np.testing.assert_array_equal(big, tifffile.imread(outs[0]))


# ----------------------------------------------------------------- odd but valid pictures


def _reference(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Pixels in [0, 1] and alpha, by Pillow alone (16-bit colour: the values written)."""
    with Image.open(path) as im:
        if path.name == "rgb16.png":  # Pillow reads 16-bit colour down to 8 bits
            rng = np.random.default_rng(7)
            return (rng.random((20, 24, 3)) * 255).astype(np.uint8) / 255.0, None
        if im.mode in ("I;16", "I;16B", "I"):
            return np.asarray(im, dtype=np.float64) / 65535, None
        if im.mode == "P" and "transparency" in im.info:
            im = im.convert("RGBA")
        elif im.mode in ("P", "CMYK"):
            im = im.convert("RGB")
        a = np.asarray(im, dtype=np.float64) / 255
    if im.mode in ("LA", "RGBA"):
        return (a[..., 0] if im.mode == "LA" else a[..., :3]), a[..., -1]
    return a, None


@pytest.mark.parametrize(
    "name",
    [
        "one.png",
        "g16.png",
        "i16.tif",
        "rgb16.png",
        "pal.png",
        "palt.png",
        "cmyk.jpg",
        "cmyk.tif",
        "la.png",
    ],
)
def test_odd_pictures_are_filtered_like_their_pixels(name, files, tmp_path):
    out = tmp_path / "x.npy"
    done = run_main(["apply", files[name], "-k", "blur", "--border", "zero", "-o", out])
    assert done.code == 0 and done.err == "", done.err  # no warning, no noise
    got = np.load(out)
    x, alpha = _reference(files[name])
    planes = x[..., None] if x.ndim == 2 else x
    want = np.stack(
        [ndi.correlate(planes[..., c], BLUR, mode="constant") for c in range(planes.shape[2])], -1
    )
    if alpha is not None:
        want = np.concatenate([want, alpha[..., None]], axis=-1)
    np.testing.assert_allclose(got.reshape(want.shape), want, atol=1e-5)


def test_a_picture_smaller_than_the_kernel_takes_same_padding(files, tmp_path):
    out = tmp_path / "x.npy"
    done = run_main(["apply", files["one.png"], "-k", "gaussian:5", "--border", "zero", "-o", out])
    assert done.code == 0, done.err
    from convtool.kernels import parse_kernel

    x, _ = _reference(files["one.png"])
    np.testing.assert_allclose(
        np.load(tmp_path / "x.npy")[0, 0], x[0, 0] * parse_kernel("gaussian:5")[2, 2], rtol=1e-6
    )
    fit = run_main(["fit", files["one.png"], files["one.png"], "--json"])
    assert fit.code == 0, fit.err
    assert json.loads(fit.out)["kernel"] == [[pytest.approx(1.0)]]


# ----------------------------------------------------------------- Ctrl-C


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("batch")
    rng = np.random.default_rng(11)
    paths = []
    for i in range(40):
        paths.append(folder / f"p{i:02d}.png")
        Image.fromarray((rng.random((480, 480, 3)) * 255).astype(np.uint8)).save(paths[-1])
    return paths


@pytest.mark.parametrize("jobs", ["1", "2"])
@pytest.mark.parametrize("whom", ["group", "process"])
def test_ctrl_c_mid_batch_keeps_whole_files_and_says_how_far(jobs, whom, batch, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    cmd = [
        sys.executable,
        "-m",
        "convtool",
        "apply",
        *batch,
        "-k",
        "gaussian:9",
        "-o",
        out,
        "--jobs",
        jobs,
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=as_in_a_terminal,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if len([n for n in os.listdir(out) if not n.startswith(".")]) >= 3:
            break
        time.sleep(0.005)
    # a terminal's Ctrl-C reaches the whole group; `kill -INT` only the process
    (os.killpg if whom == "group" else os.kill)(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    err = err.decode()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    m = re.fullmatch(
        r"convtool: interrupted after (\d+) of 40 picture\(s\); (\d+) output\(s\) written, each "
        r"whole; no partial file left",
        err.strip(),
    )
    assert m, err
    done, written = map(int, m.groups())
    names = sorted(os.listdir(out))
    assert all(not n.startswith(".") for n in names), names  # no temporary file
    # every whole file is counted, also one finished just as the stop arrived
    assert 3 <= done == written == len(names) < 40, (err, names)
    want = {p.stem for p in batch}
    for name in names:
        assert name.endswith(".gaussian_9.png") and name.split(".")[0] in want
        with Image.open(out / name) as im:
            im.load()  # decodes fully: a whole file
            assert im.size == (480, 480)


# ----------------------------------------------------------------- numbers


def test_apply_warns_when_the_output_holds_nan_or_infinity(files, tmp_path):
    nan = run_main(
        ["apply", files["nan.npy"], "-k", "gaussian:5", "-o", tmp_path / "n.npy", "--json"]
    )
    assert nan.code == 0
    got = np.load(tmp_path / "n.npy")
    assert np.isnan(got).sum() == 25 and np.isnan(got[3:8, 5:10]).all()  # the 5x5 window's reach
    assert json.loads(nan.out)["nonfinite"] == 25
    assert nan.err.strip() == (
        f"convtool: warning: {tmp_path / 'n.npy'}: 25 values of the result are NaN or infinite "
        "(kept as they are); they come from NaN or infinity in the input, or from values beyond "
        "float32's range"
    )
    both = run_main(["apply", files["nan.npy"], files["inf.npy"], files["grey.npy"], "-k", "blur",
                     "-o", tmp_path, "--format", "png", "--map", "normalize"])  # fmt: skip
    assert both.code == 0
    assert "warning: 2 of 3 outputs hold NaN or infinite values (NaN written as 0" in both.err
    with Image.open(tmp_path / "nan.blur.png") as im:
        assert np.asarray(im)[5, 7].max() == 0  # NaN written as 0
    # an overflow in float32 is named too; finite results say nothing
    big = run_main(["apply", files["ok.png"], "-k", "3e38,3e38", "-o", tmp_path / "o.npy"])
    assert (
        big.code == 0
        and "NaN or infinite" in big.err
        and np.isinf(np.load(tmp_path / "o.npy")).any()
    )
    quiet = run_main(["apply", files["grey.npy"], "-k", "blur", "-o", tmp_path / "q.npy", "--json"])
    assert quiet.err == "" and json.loads(quiet.out)["nonfinite"] == 0


# ----------------------------------------------------------------- --jobs


def test_a_batch_gives_the_same_bytes_whatever_jobs_is(batch, tmp_path):
    # pictures of two sizes, and an engine threshold between them: the big ones run on
    # the JIT, the small on the compiled core, whichever process takes them
    small = tmp_path / "small"
    small.mkdir()
    inputs = []
    for i, path in enumerate(batch[:8]):
        if i % 2:
            with Image.open(path) as im:
                im.crop((0, 0, 96, 80)).save(small / path.name)
            inputs.append(small / path.name)
        else:
            inputs.append(path)
    driver = (
        "import sys\nfrom convtool.core import engine\n"
        "engine.LARGE_WORK = 3 * 480 * 480 * 3 * 25 / 2  # between the two sizes' work\n"
        "from convtool.cli import main\nmain()\n"
    )
    outputs = {}
    for jobs in ("1", "2"):
        out = tmp_path / f"out{jobs}"
        out.mkdir()
        for fmt in ("npy", "png"):
            done = subprocess.run(
                [sys.executable, "-c", driver, "apply", *inputs, "-k", "gaussian:5,0.7", "-k",
                 "3x3: 0.1 -1.3 0.7 2.1 -0.4 0.33 -0.9 1.7 0.2", "-o", out, "--format", fmt,
                 "--jobs", jobs, "--json"],
                capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            outputs[jobs, fmt] = done.stdout.replace(f"out{jobs}", "out")
        outputs[jobs] = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    assert len(outputs["1"]) == 8 * 2 * 2
    assert outputs["1"] == outputs["2"]  # byte for byte
    assert outputs["1", "npy"] == outputs["2", "npy"] and outputs["1", "png"] == outputs["2", "png"]


def test_pictures_run_at_a_time_share_the_memory(files, tmp_path, monkeypatch):
    from convtool.batch import apply_task
    from convtool.filtering import prepare_kernel
    from convtool.shapes import SizeError, budget

    options = apply_task.Options(kernels=(prepare_kernel(BLUR, name="blur"),))
    need = apply_task.size_plan((3, 2000, 2000), options).peak
    monkeypatch.setattr(budget, "machine_memory", lambda: need + need // 2)
    apply_task.check_sizes((3, 2000, 2000), options)  # alone it fits
    with pytest.raises(SizeError, match=r"more than the .* this machine has free"):
        apply_task.check_sizes((3, 2000, 2000), options._replace(workers=2))
    # the command line tells the tasks how many run at a time: its pictures, at most --jobs
    from convtool.cli import _apply

    seen = []
    monkeypatch.setattr(_apply, "_run", lambda tasks, options, *a: seen.append(options.workers))
    for jobs, pictures in (("3", 2), ("2", 3), ("1", 3)):
        inputs = [files[name] for name in ("ok.png", "grey.png", "g16.png")[:pictures]]
        args = ["apply", *inputs, "-k", "blur", "--jobs", jobs]
        done = run_main([*args, "-o", tmp_path])
        assert done.code == 0, done.err
    assert seen == [2, 2, 1]
