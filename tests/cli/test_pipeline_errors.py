"""`convtool pipeline` hardened: every bad input gets a clear answer, and nothing is lost.

It reads pictures and kernel specs as apply does, so its table starts from the same
pictures and specs; then its stages, outputs, panels, grids and ``--scheduler``. A subset
runs in a real subprocess. Then NaN and infinity in its maps.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.cli.hardening import (
    PROC,
    READS,
    SPECS,
    C,
    Case,
    check_case,
    check_failure,
    run_limited,
    run_main,
    run_program,
    snapshot,
)

# `convtool pipeline` reads pictures and kernel specs as apply does: its own table.
CASES: dict[str, Case] = {
    **{f"pipeline-{n}": C(f"pipeline {{{n}}} -k blur -o {{out}}/", 1, w) for n, w in READS},
    **{
        f"pipeline-spec-{n}": Case(("pipeline", "{ok.png}", "-k", s), 2, w)
        for n, (s, w) in SPECS.items()
    },
    "pipeline-stride-0": C("pipeline {ok.png} -k blur --stride 0 -o {out}/x.npy", 2, "stride"),
    "pipeline-padding-negative": C(
        "pipeline {ok.png} -k blur --padding -1 -o {out}/x.npy", 2, "padding"
    ),
    "pipeline-max-pixels-word": C("pipeline {ok.png} -k blur --max-pixels lots", 2, "pixel count"),
    "pipeline-smaller-than-kernel": C("pipeline {one.png} -k gaussian:5 -o {out}/x.npy", 1, "5x5"),
    "pipeline-folder-missing": C(
        "pipeline {ok.png} -k blur -o {out}/nowhere/x.npy", 2, "does not exist"
    ),
    "pipeline-folder-unwritable": C(
        f"pipeline {{ok.png}} -k blur -o {PROC}.npy", 1, "cannot write"
    ),
    "pipeline-output-is-input": C(
        "pipeline {ok.png} -k blur -o {ok.png} --overwrite", 2, "is an input"
    ),
    "pipeline-output-exists": C("pipeline {ok.png} -k blur -o {grey.png}", 1, "exists; pass"),
    "pipeline-panel-unwritable": C(f"pipeline {{ok.png}} -k blur --panel {PROC}.png", 1, "cannot"),
    "pipeline-scale-nan": C("pipeline {ok.png} -k blur --scale nan", 2, "finite"),
    "pipeline-stage-stride-0": C("pipeline {ok.png} --stage conv:blur,s=0", 2, "stride must be"),
    "pipeline-stage-window-0": C("pipeline {ok.png} --stage maxpool:0", 2, "at least 1"),
    "pipeline-stage-unknown": C("pipeline {ok.png} --stage bogus", 2, "unknown stage"),
    # kernels beyond float32, whatever made them so, naming the value
    "pipeline-scale-overflow": C("pipeline {ok.png} -k blur --scale 1e300", 2, "--scale 1e+300"),
    "pipeline-bias-overflow": C("pipeline {ok.png} -k blur --bias -1e39", 2, "--bias -1e+39 is"),
    "pipeline-stage-scale-overflow": C(
        "pipeline {ok.png} --stage conv:sobel_x,scale=1e300", 2, "scale=1e+300 makes kernel"
    ),
    "pipeline-stage-bias-overflow": C(
        "pipeline {ok.png} --stage conv:blur,bias=1e39", 2, "bias=1e+39 is beyond float32"
    ),
    # sizes the options make: refused before anything is made, naming the option and size
    "pipeline-stage-padding-huge": C(
        "pipeline {ok.png} --stage conv:sobel_x,p=99999999 -o {out}/x.npy",
        2,
        "'--stage': stage 1 (conv:sobel_x,s=1,p=99999999) would make an output of "
        "199999997x199999997 (4e+16 pixels) even from a 1x1 picture",
    ),
    "pipeline-padding-huge": C(
        "pipeline {ok.png} -k blur --padding 99999999 --max-pixels none", 2, "'--padding': stage 1"
    ),
    # one picture: sized from its header before the job starts, a usage error
    "pipeline-chain-over-max-pixels": C(
        "pipeline {ok.png} --stage conv:blur,p=2->relu --max-pixels 500 -o {out}/x.npy",
        2,
        "stage 1 (conv:blur,s=1,p=2) would make an output of 22x26 (572 pixels)",
    ),
    "pipeline-kernel-overflow": C("pipeline {ok.png} -k 1e39,1", 2, "beyond float32"),
    # a file where a folder should be
    "pipeline-folder-is-a-file": C(
        "pipeline {ok.png} -k blur -o {ok.png}/x.npy", 2, "ok.png' is not a folder"
    ),
    "pipeline-folder-dir-is-a-file": C(
        "pipeline {ok.png} {grey.png} -k blur -o {ok.png}/", 2, "ok.png' is not a folder"
    ),
    "pipeline-stages-in-a-file": C(
        "pipeline {ok.png} -k blur --save-stages {ok.png}/st", 2, "ok.png' is not a folder"
    ),
    "pipeline-stages-is-a-file": C(
        "pipeline {ok.png} -k blur --save-stages {ok.png}/", 2, "ok.png' is not a folder"
    ),
    "pipeline-panel-in-a-file": C(
        "pipeline {ok.png} -k blur --panel {ok.png}/f.png", 2, "ok.png' is not a folder"
    ),
    "pipeline-grid-folder-is-a-file": C(
        "pipeline {ok.png} {grey.png} -k blur --grid {ok.png}", 2, "ok.png' is not a folder"
    ),
    # --scheduler: usage first, then one line for a scheduler out of reach
    "pipeline-scheduler-and-jobs": C(
        "pipeline {ok.png} -k blur --scheduler tcp://127.0.0.1:1 --jobs 2", 2, "give one of them"
    ),
    "pipeline-scheduler-stdin": C(
        "pipeline - -k blur --scheduler tcp://127.0.0.1:1", 2, "standard input and output"
    ),
    "pipeline-scheduler-unreachable": C(
        "pipeline {ok.png} -k blur --save-stages {out}/st --scheduler tcp://127.0.0.1:1",
        1,
        "cannot reach the Dask scheduler",
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_bad_input_gets_a_clear_answer_and_nothing_is_lost(case, files, tmp_path):
    check_case(case, files, tmp_path)


SUBPROCESS = [  # the cases that also run in a real subprocess
    "pipeline-bomb.png",
    "pipeline-spec-word",
    "pipeline-stage-scale-overflow",
    "pipeline-scheduler-unreachable",
    "pipeline-stage-padding-huge",
]


@pytest.mark.parametrize("name", SUBPROCESS)
def test_the_program_itself_prints_no_traceback(name, files, tmp_path):
    check_case(CASES[name], files, tmp_path, run_program)


# ----------------------------------------------------------------- numbers


def test_pipeline_warns_when_a_map_holds_nan_or_infinity(files, tmp_path):
    tail = (
        "(kept in .npy files, not in pictures); they come from NaN or infinity in the input, "
        "or from values beyond float32's range"
    )
    st = tmp_path / "st"
    nan = run_main(["pipeline", files["nan.npy"], "-k", "gaussian:5", "--save-stages", st,
                    "-o", tmp_path / "m.npy", "--json"])  # fmt: skip
    assert nan.code == 0, nan.err
    record = json.loads(nan.out)
    stages = [
        np.load(st / f"0{i}-{kind}.npy") for i, kind in ((1, "conv"), (2, "relu"), (3, "maxpool"))
    ]
    counts = [int(np.count_nonzero(~np.isfinite(m))) for m in stages]
    assert counts[0] == 25 and counts[2] > 0  # the 5x5 window's reach, then pooled
    assert record["source_nonfinite"] == 1 and [s["nonfinite"] for s in record["stages"]] == counts
    assert record["nonfinite"] == counts[2] == record["outputs"][0]["nonfinite"]
    assert (
        nan.err.strip()
        == f"convtool: warning: {files['nan.npy']}: 1 value of the input is NaN or infinite {tail}"
    )
    # an overflow in float32: named at the stage where it happens
    big = run_main(["pipeline", files["grey.npy"], files["inf.npy"], files["ok.png"], "--stage",
                    "conv:3e38,3e38,p=same -> relu", "--json"])  # fmt: skip
    assert big.code == 0, big.err
    stages = [r["stages"] for r in map(json.loads, big.out.splitlines())]
    assert stages[0][0]["nonfinite"] > 0 and stages[2][0]["nonfinite"] > 0
    assert big.err.strip() == (
        "convtool: warning: 3 of 3 pictures have NaN or infinite values in their maps "
        f"{tail.split(';')[0]}, {stages[0][0]['nonfinite']:,} values in stage 1 (conv) of "
        f"{files['grey.npy']} first;{tail.split(';')[1]}"
    )
    # finite maps say nothing
    quiet = run_main(["pipeline", files["grey.npy"], "-k", "blur", "--json"])
    assert quiet.err == "" and json.loads(quiet.out)["nonfinite"] == 0


# ----------------------------------------------------------------- sizes


def test_figures_and_stage_pictures_are_sized_before_anything_runs(files, tmp_path):
    # 1024 maps of one conv: a grid of 2048-pixel tiles would take 372 GiB
    np.save(tmp_path / "w.npy", np.ones((1024, 3, 1, 1)))
    args = ["pipeline", files["ok.png"], "--stage", f"conv:@{tmp_path / 'w.npy'}"]
    before = snapshot(tmp_path)
    grid = run_limited([*args, "--grid", tmp_path / "g.png", "--cell", "2048"], 2000)
    check_failure(
        grid,
        2,
        "'--grid': --grid " + str(tmp_path / "g.png") + " would make a figure "
        "of 1057x5120x2048x3 (372 GiB) even from a 1x1 picture",
        before,
        snapshot(tmp_path),
    )
    # the maps of every stage as pictures, from a 20x24 picture: they fit in 2000 MB
    saved = run_limited([*args, "--save-stages", tmp_path / "st", "--max-pixels", "none"], 2000)
    assert saved.returncode == 0, saved.stderr
    assert len(list((tmp_path / "st").iterdir())) == 1 + 1024


def test_a_chain_is_sized_stage_by_stage_the_stage_that_grows_it_named(files, tmp_path):
    # each stage alone fits the machine; their maps together, kept for the table, do not
    chain = ["--stage", "conv:blur,p=1500", "--stage", "conv:blur,p=1500", "--stage",
             "conv:blur,p=1500", "--max-pixels", "none"]  # fmt: skip
    done = run_limited(["pipeline", files["ok.png"], *chain, "-o", tmp_path / "x.npy"], 300)
    assert done.returncode == 2, done.stderr
    assert (
        "Error: Invalid value for '--stage': stage 3 (conv:blur,s=1,p=1500) would make a "
        "result of 1x8995x8995 (309 MiB) even from a 1x1 picture: the job would need" in done.stderr
    )
    assert list(tmp_path.iterdir()) == []


def test_pictures_run_at_a_time_share_the_memory(files, monkeypatch):
    from convtool.cli import _pipeline

    seen = []

    def run(tasks, work, options, **kwargs):
        seen.append(options.workers)
        raise SystemExit(0)

    monkeypatch.setattr(_pipeline, "_run_batch", run)
    for jobs, names in (("3", ("ok.png", "grey.png")), ("2", ("ok.png", "grey.png", "g16.png"))):
        done = run_main(["pipeline", *[files[n] for n in names], "-k", "blur", "--jobs", jobs])
        assert done.code == 0, done.err
    assert seen == [2, 2]
