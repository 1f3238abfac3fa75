"""Every command over its option space, random and extreme values alike, each run in its
own process under a memory limit (``resource.setrlimit``) and a time bound.

Every run must end with exit 0, 1 or 2; a failure with one line on stderr (bad usage: the
usage block and one ``Error:`` line), no traceback, no MemoryError, and nothing written:
neither an output nor a temporary file, and no input changed. The sizes that options make
are refused before they are made (:mod:`convtool.shapes.budget`), so a run stays within
the memory it is given whatever it is asked.

Each command gets a few examples by default, to keep the suite quick (under a minute);
``CONVTOOL_OPTION_EXAMPLES=N`` runs N per command (a soak: several hundred find more).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.cli.hardening import expand, run_limited, snapshot

MEMORY_MB = 600  # room beyond the interpreter's own: a job past it must be refused
SECONDS = 60  # the time bound of one run (a small picture answers in a few)
EXAMPLES = int(os.environ.get("CONVTOOL_OPTION_EXAMPLES", "0"))
LOG = os.environ.get("CONVTOOL_OPTION_LOG")  # a file: each run's exit code, time and line
DEFAULTS = {"apply": 22, "pipeline": 18, "fit": 7, "shape": 10, "kernels": 4}


def examples(command: str):
    return settings(
        max_examples=EXAMPLES or DEFAULTS[command],
        deadline=None,
        derandomize=not EXAMPLES,  # the suite's few examples are the same on every run
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# ----------------------------------------------------------------- values

# sizes as typed: mostly small, some large, some past every limit, some not sizes at all
EXTREME = [255, 1000, 3001, 10**5, 10**6, 10**9, 10**15, 10**15 + 1, 10**40]
NUMBERS = st.integers(0, 19).flatmap(
    lambda pick: (
        st.integers(0, 6)
        if pick < 12
        else st.integers(7, 70)
        if pick < 17
        else st.sampled_from(EXTREME)
    )
)
JUNK = st.sampled_from(["-1", "0x3", "2x", "abc", "", "1.5", "nan", "3x3x3", "1e9", "  7 "])


@st.composite
def size(draw, minimum: int = 0) -> str:
    """N or HxW as typed, or junk now and then."""
    if draw(st.integers(0, 24)) == 0:
        return draw(JUNK)
    h = max(draw(NUMBERS), minimum)
    if draw(st.booleans()):
        return str(h)
    return f"{h}x{max(draw(NUMBERS), minimum)}"


PADDING = st.one_of(st.sampled_from(["same", "valid"]), size(), size())
KERNELS = st.sampled_from(
    ["blur", "sobel_x", "gaussian:5", "box:31", "box:200", "gaussian:1023", "motion:9,30",
     "3x3: 1 2 1 2 4 2 1 2 1", "1,2;3,4", "kirsch@45", "box:1x61", "unsharp"]
)  # fmt: skip
PICTURES = st.sampled_from(["ok.png", "grey.npy", "colour.npy", "la.png", "g16.png", "one.png"])
BORDERS = st.sampled_from(["zero", "reflect", "mirror", "replicate", "wrap"])
MAX_PIXELS = st.sampled_from([None, "none", "500", "100000", "10000000000"])


def _option(draw, flag: str, values, chance: int = 2) -> list[str]:
    """``flag value`` one time in ``chance``."""
    if draw(st.integers(1, chance)) != 1:
        return []
    value = draw(values)
    return [flag] if value is True else [flag, str(value)]


@st.composite
def apply_lines(draw) -> list[str]:
    kernels = draw(st.lists(KERNELS, min_size=1, max_size=2))
    fmt = draw(st.sampled_from(["png", "npy", "tif", "jpg"]))
    args = ["apply", f"{{{draw(PICTURES)}}}", *[a for k in kernels for a in ("-k", k)]]
    args += _option(draw, "--padding", PADDING, 1)
    args += _option(draw, "--stride", size(1), 1)
    args += _option(draw, "--border", BORDERS)
    args += _option(draw, "--color", st.sampled_from(["channels", "gray", "sum"]), 3)
    args += _option(draw, "--max-pixels", MAX_PIXELS.filter(bool), 3)
    args += _option(draw, "--map", st.sampled_from(["clip", "abs", "normalize", "offset"]), 3)
    args += _option(draw, "--flip", st.just(True), 4)
    args += _option(draw, "--normalize", st.just(True), 4)
    args += _option(draw, "--scale", st.sampled_from(["2", "1e30", "-0.5"]), 5)
    args += _option(draw, "--jobs", st.sampled_from(["1", "2", "0"]), 6)
    if len(kernels) == 2:
        args += _option(draw, "--combine", st.sampled_from(["magnitude", "max", "sum"]))
    if fmt == "tif":
        args += _option(draw, "--tile", st.sampled_from(["0", "16", "32", "1024", "10000000"]))
    return [*args, "-o", f"{{out}}/x.{fmt}"]


@st.composite
def stage(draw) -> str:
    kind = draw(st.sampled_from(["conv", "conv", "relu", "maxpool", "avgpool"]))
    if kind == "relu":
        return "relu"

    def maybe(key: str, values, chance: int = 2) -> list[str]:
        return [f"{key}={draw(values)}"] if draw(st.integers(1, chance)) == 1 else []

    if kind == "conv":
        head = "+".join(draw(st.lists(KERNELS, max_size=2)))
        if draw(st.integers(1, 4)) == 1:  # a network's layer: C random kernels of K
            head = f"{draw(NUMBERS)}@{draw(size())}"
        parts = maybe("s", size(1)) + maybe("p", PADDING) + maybe("border", BORDERS, 3)
        parts += maybe("d", size(), 4)
    else:
        head = draw(size())
        parts = maybe("s", size(1)) + maybe("p", size(), 3)
        parts += ["ceil"] if draw(st.integers(1, 3)) == 1 else []
    return ",".join([f"{kind}:{head}" if head else kind, *parts])


@st.composite
def pipeline_lines(draw) -> list[str]:
    args = ["pipeline", f"{{{draw(PICTURES)}}}"]
    args += _option(draw, "-k", KERNELS, 2)
    stages = draw(st.lists(stage(), max_size=3))
    args += [a for s in stages for a in ("--stage", s)]
    args += _option(draw, "--padding", PADDING, 3)
    args += _option(draw, "--stride", size(1), 3)
    args += _option(draw, "--color", st.sampled_from(["sum", "gray", "channels"]), 4)
    args += _option(draw, "--seed", st.sampled_from(["0", "1", "4294967296"]), 5)
    args += _option(draw, "--max-pixels", MAX_PIXELS.filter(bool), 3)
    args += _option(draw, "-o", st.sampled_from(["{out}/m.npy", "{out}/m.png"]), 2)
    args += _option(draw, "--panel", st.just("{out}/p.png"), 3)
    args += _option(draw, "--grid", st.just("{out}/g.png"), 4)
    args += _option(draw, "--save-stages", st.just("{out}/st"), 5)
    args += _option(draw, "--cell", st.sampled_from(["16", "240", "2048", "5000"]), 4)
    args += _option(draw, "--columns", st.sampled_from(["1", "3", "1000000000"]), 4)
    args += _option(draw, "--stretch", st.sampled_from(["1,99", "0,100", "49.9,50"]), 4)
    return args


PAIRS = st.sampled_from([("grey.npy", "target.npy"), ("grey.npy", "grey.npy"),
                         ("ok.png", "ok.png"), ("wide.npy", "grey.npy"), ("one.png", "one.png"),
                         ("colour.npy", "colour.npy")])  # fmt: skip


@st.composite
def fit_lines(draw) -> list[str]:
    source, target = draw(PAIRS)
    args = ["fit", f"{{{source}}}", f"{{{target}}}"]
    args += _option(draw, "--size", size(1), 2)
    args += _option(draw, "--stride", size(1), 3)
    args += _option(draw, "--method", st.sampled_from(["cg", "gd", "lstsq"]), 2)
    args += _option(draw, "--max-iter", st.sampled_from(["0", "1", "50", "1000", "1000000000"]), 2)
    args += _option(draw, "--bias", st.just(True), 3)
    args += _option(draw, "--per-channel", st.just(True), 4)
    args += _option(draw, "--max-pixels", MAX_PIXELS.filter(bool), 4)
    args += _option(draw, "-o", st.sampled_from(["{out}/k.json", "{out}/k.npy"]), 3)
    return args


@st.composite
def shape_lines(draw) -> list[str]:
    if draw(st.booleans()):
        dims = "x".join(str(draw(NUMBERS)) for _ in range(3))
        layers = [f"conv:{draw(NUMBERS)}@{draw(size())}", "relu", f"maxpool:{draw(size())}",
                  "flatten", f"fc:{draw(NUMBERS)}", f"conv:{draw(KERNELS)},d={draw(size())}",
                  "conv:sobel_x+blur,p=same -> relu -> maxpool:2"]  # fmt: skip
        return ["shape", dims, *draw(st.lists(st.sampled_from(layers), max_size=4))]
    args = ["shape", draw(size()), "--size", draw(size())]
    args += _option(draw, "-s", size(1), 2)
    args += _option(draw, "-p", PADDING, 2)
    args += _option(draw, "-d", size(), 3)
    args += _option(draw, "--ceil", st.just(True), 4)
    args += _option(draw, "--keep", st.just(True), 4)
    return args


@st.composite
def kernels_lines(draw) -> list[str]:
    named = st.one_of(
        KERNELS, st.builds(lambda n: f"gaussian:{n}", NUMBERS), st.builds("box:{}".format, size())
    )
    specs = draw(st.lists(named, max_size=2))
    return ["kernels", *specs, *(["--json"] if draw(st.booleans()) else [])]


# ----------------------------------------------------------------- the check


def run_case(args: list[str], files: dict[str, Path]) -> None:
    """Run one command line in its own process, within MEMORY_MB and SECONDS, and check
    how it ended."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        line = expand(tuple(args), files, out)
        before = snapshot(files["ok.png"].parent)
        start = time.monotonic()
        try:
            done = run_limited(line, MEMORY_MB, timeout=SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"over {SECONDS} s: convtool {' '.join(args)}")
        seconds = time.monotonic() - start
        err, code = done.stderr, done.returncode
        what = f"convtool {' '.join(args)} -> exit {code} in {seconds:.1f} s\n{err}"
        if LOG:
            with open(LOG, "a") as log:
                log.write(f"{code} {seconds:.2f} {args!r} {err.strip().splitlines()[-1:]}\n")
        assert code in (0, 1, 2), what
        for word in ("Traceback", "MemoryError", "Unable to allocate", "Killed"):
            assert word not in err, what
        lines = [line for line in err.splitlines() if line.strip()]
        # a fit that ran but fell short (of --tol, or of --compare's kernel) is a result:
        # its report and kernel are written, notes may come first, exit 1 tells a script
        fell_short = (
            code == 1
            and args[0] == "fit"
            and any(text in lines[-1] for text in ("short of --tol", "is not within --atol of"))
        )
        if code == 1 and not fell_short:
            assert len(lines) == 1, what
        if code == 2:
            errors = [line for line in lines if line.startswith("Error:")]
            assert len(errors) == 1 and lines[-1] == errors[0], what
        if code != 0 and not fell_short:
            assert sorted(os.listdir(out)) == [], what  # nothing written, no temporary file
        if fell_short:
            assert not [p for p in os.listdir(out) if p.startswith(".")], what  # no temporary
        assert snapshot(files["ok.png"].parent) == before, what


@examples("apply")
@given(apply_lines())
@example(["apply", "{ok.png}", "-k", "blur", "--padding", "100000000", "-o", "{out}/x.png"])
@example(["apply", "{ok.png}", "-k", "blur", "--stride", "1000000", "-o", "{out}/x.png"])
@example(["apply", "{ok.png}", "-k", "box:31", "--padding", "3001", "--max-pixels", "none",
          "--border", "wrap", "-o", "{out}/x.npy"])  # fmt: skip
@example(["apply", "{i16.tif}", "-k", "blur", "--tile", "1600000000", "-o", "{out}/x.tif"])
def test_apply_over_its_option_space(files, args):
    run_case(args, files)


@examples("pipeline")
@given(pipeline_lines())
@example(["pipeline", "{ok.png}", "--stage", "conv:sobel_x,p=99999999"])
@example(["pipeline", "{ok.png}", "--stage", "conv:blur,p=1500", "--stage", "conv:blur,p=1500",
          "--max-pixels", "none", "-o", "{out}/m.npy"])  # fmt: skip
@example(["pipeline", "{ok.png}", "-k", "blur", "--panel", "{out}/p.png", "--cell", "2048"])
def test_pipeline_over_its_option_space(files, args):
    run_case(args, files)


@examples("fit")
@given(fit_lines())
def test_fit_over_its_option_space(files, args):
    run_case(args, files)


@examples("shape")
@given(shape_lines())
def test_shape_over_its_option_space(files, args):
    run_case(args, files)


@examples("kernels")
@given(kernels_lines())
def test_kernels_over_its_option_space(files, args):
    run_case(args, files)
