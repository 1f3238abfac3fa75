"""Benchmark `convtool apply` against ImageMagick, as a user runs both: whole commands.

Run from the repository root (needs ImageMagick's ``convert`` and ``mogrify``)::

    python benchmarks/bench_apply.py              # 10 rounds
    python benchmarks/bench_apply.py --quick      # 5 rounds
    python benchmarks/bench_apply.py --rounds 21 --only single

Sections (``--only`` takes these names):

single
    One 1024x1024 RGB PNG: ``convtool apply in.png -k sobel_x -o out.png`` against
    ``convert in.png -morphology Convolve Sobel out.png`` (ImageMagick rotates the
    kernel for Convolve, so both compute convtool's sobel_x; the interiors are
    checked to agree within one level). Target: ratio <= 1.5. The JIT route
    (``CONVTOOL_AOT=0``) is timed too, for information.
batch
    24 RGB PNGs of 512x512: ``convtool apply *.png -k sobel_x -o outdir/ --jobs 2``
    against ``mogrify -path outdir2 -morphology Convolve Sobel *.png``. Target:
    ratio <= 0.5. ``--jobs 1`` is shown for information.
startup
    Where one picture's time goes, marked inside a child process (medians of 7
    runs), and what the JIT route would add: numba's import and the first call of
    the cached kernel.

The pictures are drawn with samples/make_samples.py's scene at full detail (the
512x512 ones are 24 different crops of a 1024x1024 scene) into a temporary folder.
Every command is timed as a child process, interleaved round by round in rotated
order (benchmarks/_timing.py); output folders are emptied before each run,
outside the timer. Ratios are convtool / ImageMagick per round, shown as
"median (min..max)"; PASS/FAIL is decided on the median.

Fairness: ImageMagick's real binary is used (a wrapper script of the same name
earlier on PATH is skipped), and convtool's console script next to this Python
(not a pyenv shim, which adds ~75 ms to any command). The children run with
bytecode caching on (PYTHONDONTWRITEBYTECODE removed), as after ``pip install``.
Both tools use their defaults otherwise (ImageMagick: PNG compression as it
chooses; convtool: zlib level 1). The machine is shared: run twice and report
both. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _commands import ROOT, child_env, convtool_command, draw_pictures, find_binary, run
from _timing import Contender, fmt_ratio, fmt_time, format_table, measure, ratio_stats


def fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    return folder


def removing(path: Path):
    def setup() -> None:
        path.unlink(missing_ok=True)

    return setup


def check_same_work(ours: Path, theirs: Path) -> float:
    a = np.asarray(Image.open(ours)).astype(int)
    b = np.asarray(Image.open(theirs)).astype(int)
    if a.shape != b.shape:
        raise SystemExit(f"output shapes differ: {a.shape} vs {b.shape}")
    return float(np.abs(a - b)[1:-1, 1:-1].max())  # borders differ: zero vs edge padding


def section_single(work: Path, big: Path, convert: str, rounds: int) -> list[tuple]:
    ours, jit_out, theirs = work / "out.png", work / "out_jit.png", work / "out_im.png"
    tool = convtool_command()
    env, env_jit = child_env(), child_env(CONVTOOL_AOT="0")
    cmd = [*tool, "apply", str(big), "-k", "sobel_x", "-o", str(ours)]
    cmd_jit = [*tool, "apply", str(big), "-k", "sobel_x", "-o", str(jit_out)]
    cmd_im = [convert, str(big), "-morphology", "Convolve", "Sobel", str(theirs)]
    run(cmd, env)  # builds the compiled core if needed, writes bytecode caches
    run(cmd_jit, env_jit)  # fills numba's cache
    run(cmd_im)
    diff = check_same_work(ours, theirs)
    contenders = [
        Contender("convtool", lambda _: run(cmd, env), removing(ours)),
        Contender("convtool (JIT route)", lambda _: run(cmd_jit, env_jit), removing(jit_out)),
        Contender("ImageMagick convert", lambda _: run(cmd_im), removing(theirs)),
    ]
    res = measure(contenders, rounds=rounds, warmup=1, min_time=0.0, gap=0.05)
    rows = [(name, fmt_time(r.median), fmt_time(r.best)) for name, r in res.items()]
    print(format_table(["1024x1024 RGB PNG, sobel_x", "median", "best"], rows))
    print(f"interior agreement with ImageMagick: max difference {diff:.0f} level(s)")
    im = res["ImageMagick convert"]
    r = ratio_stats(res["convtool"], im)
    r_jit = ratio_stats(res["convtool (JIT route)"], im)
    print(f"ratio convtool / ImageMagick: {fmt_ratio(r)}; JIT route: {fmt_ratio(r_jit)}\n")
    return [("single picture <= 1.5x ImageMagick", r, r.median <= 1.5)]


def section_batch(work: Path, smalls: list[Path], mogrify: str, rounds: int) -> list[tuple]:
    out1, out2, out3 = work / "outdir", work / "outdir1", work / "outdir2"
    tool = convtool_command()
    env = child_env()
    names = [p.name for p in smalls]
    cmd = [*tool, "apply", *names, "-k", "sobel_x", "-o", str(out1), "--jobs", "2"]
    cmd_1 = [*tool, "apply", *names, "-k", "sobel_x", "-o", str(out3), "--jobs", "1"]
    cmd_im = [mogrify, "-path", str(out2), "-morphology", "Convolve", "Sobel", *names]
    cwd = smalls[0].parent
    for folder, command, e in ((out1, cmd, env), (out3, cmd_1, env), (out2, cmd_im, None)):
        fresh(folder)
        run(command, e, cwd)
    diff = max(check_same_work(out1 / f"{p.stem}.sobel_x.png", out2 / p.name) for p in smalls)
    contenders = [
        Contender("convtool --jobs 2", lambda _: run(cmd, env, cwd), lambda: fresh(out1)),
        Contender("convtool --jobs 1", lambda _: run(cmd_1, env, cwd), lambda: fresh(out3)),
        Contender("ImageMagick mogrify", lambda _: run(cmd_im, None, cwd), lambda: fresh(out2)),
    ]
    res = measure(contenders, rounds=rounds, warmup=1, min_time=0.0, gap=0.05)
    rows = [(name, fmt_time(r.median), fmt_time(r.best)) for name, r in res.items()]
    print(format_table(["24 RGB PNGs of 512x512, sobel_x", "median", "best"], rows))
    print(f"interior agreement with ImageMagick: max difference {diff:.0f} level(s)")
    im = res["ImageMagick mogrify"]
    r = ratio_stats(res["convtool --jobs 2"], im)
    r1 = ratio_stats(res["convtool --jobs 1"], im)
    print(f"ratio convtool --jobs 2 / mogrify: {fmt_ratio(r)}; --jobs 1: {fmt_ratio(r1)}\n")
    return [("batch of 24 <= 0.5x mogrify", r, r.median <= 0.5)]


_MARKS = r"""
import os, sys, time
t = [("start", time.perf_counter())]
def mark(name):
    t.append((name, time.perf_counter()))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import click, convtool.cli
mark("click + convtool.cli")
import numpy
mark("numpy")
from convtool import imaging
mark("convtool.io (pillow)")
from convtool import filtering, kernels
from convtool.batch import apply_task
from convtool.core import aot, engine
mark("kernels, filters, jobs, engine")
route = sys.argv[3]
core = None
if route == "aot":
    core = engine.compiled(build_missing=False)
    assert core is not None, aot.error()
    mark("load the compiled core")
else:
    import numba
    mark("import numba")
image = imaging.read_image(sys.argv[1])
mark("read + decode PNG")
k = filtering.prepare_kernel(kernels.parse_kernel("sobel_x"))
y = filtering.correlate(image.data, k, engine=core)
mark("filter" + (" (first call: cache load)" if route == "jit" else ""))
share = filtering.clipped_share(y)
mark("share clipped")
imaging.write_image(sys.argv[2], y, overwrite=True)
mark("quantise + encode PNG + write")
for (_, a), (name, b) in zip(t, t[1:]):
    print(f"{name}\t{(b - a) * 1e3:.2f}")
"""


def section_startup(work: Path, big: Path) -> list[tuple]:
    script = work / "marks.py"
    script.write_text(_MARKS)
    rows = []
    for route in ("aot", "jit"):
        env = child_env(CONVTOOL_AOT="1" if route == "aot" else "0")
        phases: dict[str, list[float]] = {}
        walls = []
        for _ in range(7):
            t0 = time.perf_counter()
            done = subprocess.run(
                [sys.executable, str(script), str(big), str(work / "marks.png"), route],
                env=env, capture_output=True, text=True, cwd=ROOT,
            )  # fmt: skip
            walls.append(time.perf_counter() - t0)
            if done.returncode != 0:
                raise SystemExit(done.stderr)
            for line in done.stdout.splitlines():
                name, ms = line.split("\t")
                phases.setdefault(name, []).append(float(ms))
        inside = sum(statistics.median(v) for v in phases.values())
        wall = statistics.median(walls) * 1e3
        rows.append((f"[{route} route]", "", ""))
        rows.append(("python start-up, exit", f"{wall - inside:.1f}", ""))
        rows += [(name, f"{statistics.median(v):.1f}", "") for name, v in phases.items()]
        rows.append(("total (wall)", f"{wall:.1f}", ""))
    print(format_table(["one picture, phase", "ms (median of 7)", ""], rows))
    print()
    return []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="5 rounds")
    parser.add_argument("--only", action="append", choices=["single", "batch", "startup"])
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    args = parser.parse_args()
    rounds = 5 if args.quick else args.rounds
    sections = args.only or ["single", "batch", "startup"]
    convert = find_binary("magick", "convert")
    mogrify = find_binary("mogrify")
    if convert is None or mogrify is None:
        raise SystemExit("ImageMagick is needed: apt-get install imagemagick")
    version = subprocess.run([convert, "-version"], capture_output=True, text=True).stdout
    print(f"ImageMagick: {version.splitlines()[0]} ({convert})")
    print(f"convtool: {' '.join(convtool_command())}; {os.cpu_count()} CPUs; "
          f"load average {os.getloadavg()[0]:.2f}; rounds {rounds}\n")  # fmt: skip
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-apply-") as tmp:
        work = Path(tmp)
        big, smalls = draw_pictures(work)
        if "single" in sections:
            results += section_single(work, big, convert, rounds)
        if "batch" in sections:
            results += section_batch(work, smalls, mogrify, rounds)
        if "startup" in sections:
            results += section_startup(work, big)
    failed = False
    for name, r, ok in results:
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {fmt_ratio(r)}")
        failed |= not ok
    return 1 if failed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
