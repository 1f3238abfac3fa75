"""One exit code per kind of problem, in every command: the table of README.md's
"Exit codes", a row at a time (0 done, 1 a failure, 2 bad usage, 130 interrupted)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.cli.hardening import as_in_a_terminal, run_main

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
DISC = str(SAMPLES / "disc.png")

# (command line, the kind of problem); {out} is a fresh folder, {old} a file in it
USAGE = [  # the command line itself is wrong: exit 2, with click's usage block
    ["apply", DISC, "-k", "blur", "--nope"],
    ["apply", DISC, "-k", "no_such_kernel"],
    ["apply", DISC, "-k", "@{out}/missing.npy"],  # a kernel file is part of -k's value
    ["apply", DISC, "-k", "blur", "--padding", "100000000"],  # what the options would make
    ["pipeline", DISC, "--stage", "conv:sobel_x,q=1"],
    ["pipeline", DISC, "-k", "blur", "--color", "colour"],
    ["fit", DISC, DISC, "--method", "newton"],
    ["fit", DISC, DISC, "--per-channel", "--color", "gray"],
    ["shape", "28", "--size", "0"],
    ["shape", "28", "--size", "3", "-p", "same", "-s", "2"],  # torch refuses it too
    ["kernels", "gaussian:0"],
    ["kernels", "--nope"],
]
FAILURE = [  # the command line is right, the work could not be done: exit 1, one line
    ["apply", "{out}/missing.png", "-k", "blur"],
    ["apply", DISC, "-k", "blur", "-o", "{old}"],  # an existing output, no --overwrite
    ["pipeline", "{out}/missing.png", "-k", "blur"],
    ["pipeline", DISC, "-k", "blur", "-o", "{old}"],
    ["fit", "{out}/missing.png", DISC],
    ["fit", DISC, DISC, "-o", "{old}"],
    ["fit", DISC, DISC, "--compare", "sobel_x"],  # the kernel is not sobel_x
    ["fit", DISC, DISC, "--method", "gd", "--max-iter", "1", "--tol", "1e-30"],
]


DONE = [
    ["apply", DISC, "-k", "blur", "-o", "{out}/a.png"],
    ["pipeline", DISC, "-k", "blur", "-o", "{out}/p.npy"],
    ["fit", DISC, DISC, "--size", "3"],
    ["shape", "28", "--size", "5"],
    ["kernels", "kirsch@45"],
]


def _expand(args: list[str], tmp_path: Path) -> list[str]:
    old = tmp_path / "old.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(old)
    return [a.format(out=tmp_path, old=old) for a in args]


@pytest.mark.parametrize("args", DONE, ids=lambda a: a[0])
def test_done_exits_0(args, tmp_path):
    done = run_main(_expand(args, tmp_path))
    assert done.code == 0, done


@pytest.mark.parametrize("args", USAGE, ids=lambda a: " ".join(a[:1] + a[2:])[:50])
def test_bad_usage_exits_2_with_the_usage_block(args, tmp_path):
    done = run_main(_expand(args, tmp_path))
    assert done.code == 2, done
    assert "Usage: convtool" in done.err and "Error:" in done.err
    assert "Traceback" not in done.err


@pytest.mark.parametrize("args", FAILURE, ids=lambda a: " ".join(a[:1] + a[2:])[:50])
def test_a_failure_exits_1_with_a_line_and_no_usage_block(args, tmp_path):
    before = (tmp_path / "old.png").read_bytes() if (tmp_path / "old.png").exists() else None
    done = run_main(_expand(args, tmp_path))
    assert done.code == 1, done
    assert "Usage:" not in done.err and "Traceback" not in done.err
    assert done.err.strip()
    if before is not None:
        assert (tmp_path / "old.png").read_bytes() == before  # an existing output is kept


@pytest.mark.parametrize(
    ("args", "where"),
    [
        (["fit", DISC, DISC], "convtool.fit.pairs.fit_pair"),
        (["shape", "1x28x28", "conv:4@5"], "convtool.shapes.summary"),
        (["kernels"], "convtool.kernels.list_kernels"),
    ],
)
def test_an_interruption_exits_130(args, where, monkeypatch):
    # what Ctrl-C raises in the middle of the work; apply's and pipeline's real signals
    # are below and in test_apply.py
    module, _, name = where.rpartition(".")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sys.modules.get(module) or __import__(module, fromlist=[name]), name,
                        interrupted)  # fmt: skip
    done = run_main(args)
    assert done.code == 130, done
    assert "interrupted" in done.err and "Traceback" not in done.err


def test_ctrl_c_stops_a_pipeline_batch_with_130(tmp_path):
    big = tmp_path / "big.png"
    Image.fromarray(np.tile(np.asarray(Image.open(SAMPLES / "scene.png")), (4, 4, 1))).save(big)
    inputs = []
    for i in range(30):
        inputs.append(tmp_path / f"in{i}.png")
        os.link(big, inputs[-1])
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "convtool", "pipeline", *map(str, inputs), "-o", f"{out}/"]
    cmd += ["--stage", "conv:gaussian:15,p=same -> relu"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, preexec_fn=as_in_a_terminal)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if out.is_dir() and any(not p.name.startswith(".") for p in out.iterdir()):
            break
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole group
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert b"interrupted" in err and b"Traceback" not in err
