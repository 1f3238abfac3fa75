"""Benchmark what a new user waits for: each command's first run and its warm runs,
beside ImageMagick on the same pictures. Whole commands, as child processes.

Run from the repository root, after installing convtool the way a user does::

    python benchmarks/bench_startup.py              # 7 warm rounds
    python benchmarks/bench_startup.py --quick      # 3 warm rounds

First runs ("cold") start with an empty home directory and empty caches: HOME,
NUMBA_CACHE_DIR and CONVTOOL_CACHE_DIR point at new empty folders, so nothing that
an earlier run left behind (numba's compiled code, convtool's cache) helps; what was
built at install time (the compiled core) does. Each command's first run gets its
own empty folders. Warm runs keep one set of caches and are timed round by round in
rotated order (benchmarks/_timing.py).

The commands are the README's and the issue's:

- ``apply``: ``convtool apply scene.png -k sobel_x -o edges.png`` (512x512 RGB);
- ``pipeline``: ``convtool pipeline disc.png -k sobel_x -o pooled.npy`` (80x80);
- ``fit``: ``convtool fit scene.png sharp.png --size 3`` (512x512, a 3x3 sharpen);
- ``apply 1024``: one 1024x1024 RGB photograph, ``-k sobel_x``, against
  ``convert in.png -morphology Convolve Sobel out.png`` (ImageMagick).

ImageMagick's ``convert ... -morphology Convolve Sobel`` is timed on the 512x512 and
the 1024x1024 pictures, first and warm, for the side-by-side view. Targets: first
apply and pipeline within 1.5 s, first fit within 2 s; warm pipeline within 0.4 s,
warm fit within 0.6 s; the warm 1024x1024 apply at most 1.0x ImageMagick's time
(median of the per-round ratios). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _commands import ROOT, child_env, convtool_command, draw_pictures, find_binary, run
from _timing import Contender, fmt_ratio, fmt_time, format_table, measure, ratio_stats

TARGETS_FIRST = {"apply": 1.5, "pipeline": 1.5, "fit": 2.0}
TARGETS_WARM = {"pipeline": 0.4, "fit": 0.6}


def empty_caches(folder: Path) -> dict[str, str]:
    """An environment whose home and caches are new, empty folders under ``folder``."""
    shutil.rmtree(folder, ignore_errors=True)
    paths = {name: folder / name for name in ("home", "numba", "convtool")}
    for path in paths.values():
        path.mkdir(parents=True)
    env = child_env(
        HOME=str(paths["home"]),
        NUMBA_CACHE_DIR=str(paths["numba"]),
        CONVTOOL_CACHE_DIR=str(paths["convtool"]),
    )
    env.pop("XDG_CACHE_HOME", None)
    return env


def timed(command: list[str], env: dict[str, str] | None, cwd: Path) -> tuple[float, str]:
    """Wall time of one run, and the first line it wrote on stderr."""
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr}")
    said = next((line for line in done.stderr.splitlines() if "compil" in line), "")
    return seconds, said


def commands(work: Path, convert: str) -> dict[str, list[str]]:
    tool = convtool_command()
    return {
        "apply": [*tool, "apply", "scene.png", "-k", "sobel_x", "-o", "edges.png", "--overwrite"],
        "pipeline": [
            *tool, "pipeline", "disc.png", "-k", "sobel_x", "-o", "pooled.npy", "--overwrite"
        ],
        "fit": [*tool, "fit", "scene.png", "sharp.png", "--size", "3"],
        "apply 1024": [*tool, "apply", "in.png", "-k", "sobel_x", "-o", "big.png", "--overwrite"],
        "ImageMagick 512": [convert, "scene.png", "-morphology", "Convolve", "Sobel", "im.png"],
        "ImageMagick 1024": [convert, "in.png", "-morphology", "Convolve", "Sobel", "im1024.png"],
    }  # fmt: skip


def first_runs(work: Path, cmds: dict[str, list[str]]) -> dict[str, tuple[float, str]]:
    """Each command once, from empty caches (ImageMagick keeps none)."""
    return {
        name: timed(command, empty_caches(work / "cold" / name.replace(" ", "_")), work)
        for name, command in cmds.items()
    }


def warm_runs(work: Path, cmds: dict[str, list[str]], rounds: int) -> dict:
    env = empty_caches(work / "warm")
    contenders = [
        Contender(name, lambda _, c=command: run(c, env, work), lambda: None)
        for name, command in cmds.items()
    ]
    return measure(contenders, rounds=rounds, warmup=1, min_time=0.0, gap=0.05)


def verdicts(first: dict, warm: dict) -> list[tuple[str, str, bool]]:
    rows = [
        (f"first {name} <= {limit:g} s", fmt_time(first[name][0]), first[name][0] <= limit)
        for name, limit in TARGETS_FIRST.items()
    ]
    rows += [
        (f"warm {name} <= {limit:g} s", fmt_time(warm[name].median), warm[name].median <= limit)
        for name, limit in TARGETS_WARM.items()
    ]
    r = ratio_stats(warm["apply 1024"], warm["ImageMagick 1024"])
    rows.append(("warm 1024x1024 apply <= 1.0x ImageMagick", fmt_ratio(r), r.median <= 1.0))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="3 warm rounds")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    args = parser.parse_args()
    convert = find_binary("magick", "convert")
    if convert is None:
        raise SystemExit("ImageMagick is needed: apt-get install imagemagick")
    print(f"convtool: {' '.join(convtool_command())}; {os.cpu_count()} CPUs; "
          f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        work = Path(tmp)
        draw_pictures(work)  # in.png, 1024x1024 RGB (and a batch, unused here)
        for name in ("scene.png", "disc.png"):
            shutil.copy(ROOT / "samples" / name, work / name)
        sharpen = ["apply", "scene.png", "-k", "0,-1,0; -1,5,-1; 0,-1,0", "-o", "sharp.png"]
        run([*convtool_command(), *sharpen], child_env(), work)
        cmds = commands(work, convert)
        first = first_runs(work, cmds)
        warm = warm_runs(work, cmds, 3 if args.quick else args.rounds)
    rows = [
        (name, fmt_time(first[name][0]), fmt_time(warm[name].median), first[name][1][:60])
        for name in cmds
    ]
    print(format_table(["command", "first run", "warm (median)", "said on stderr"], rows))
    failed = False
    for name, value, ok in verdicts(first, warm):
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {value}")
        failed |= not ok
    return 1 if failed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
