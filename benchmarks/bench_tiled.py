"""Peak memory and time of `convtool apply` on big TIFF pictures, in tiles and whole.

Each run is a fresh `convtool apply` process; its peak resident memory comes from
the kernel's own accounting of that child (``os.wait4``'s ru_maxrss, which also
counts this process's size at the fork: the pictures are made in other children
so that it stays small), its time from the wall clock around it. The pictures
are RGB 8-bit TIFFs made tile by tile (never whole in memory) in a scratch
folder, deleted afterwards.

What it shows: the tiled path's peak memory stays flat as the picture grows
(4,096^2 to 32,768^2 by default), and its time against the whole-picture path
at the sizes where that one fits in memory.

    python benchmarks/bench_tiled.py                    # 4096 8192 16384 32768
    python benchmarks/bench_tiled.py --sizes 4096 8192 --whole 4096 8192
    python benchmarks/bench_tiled.py --layout strips    # input stored contiguously

Needs about 2 x 3 x N^2 bytes of free disk for the largest N (6.4 GB at 32,768).
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

import numpy as np

KERNEL = "gaussian:7"
TILE = 1024  # the stored tiles of the made pictures


def make_picture(path: Path, size: int, layout: str) -> None:
    """An RGB 8-bit size x size TIFF, written tile by tile (or strip by strip)."""
    import tifffile

    rng = np.random.default_rng(size)
    noise = rng.integers(0, 48, (TILE, TILE, 3), dtype=np.uint8)
    ramp = np.arange(TILE, dtype=np.uint16)

    def tile_at(i: int, j: int, rows: int, cols: int) -> np.ndarray:
        # a smooth pattern that differs tile to tile, plus noise: nothing constant
        base = (ramp[:rows, None] + ramp[None, :cols] + 37 * i + 91 * j) % 200
        return np.ascontiguousarray(noise[:rows, :cols] + base[:, :, None].astype(np.uint8))

    if layout == "tiles":
        n = -(-size // TILE)
        tiles = (
            tile_at(i, j, min(TILE, size - i * TILE), min(TILE, size - j * TILE))
            for i in range(n)
            for j in range(n)
        )
        tifffile.imwrite(
            path,
            data=tiles,
            shape=(size, size, 3),
            dtype=np.uint8,
            tile=(TILE, TILE),
            photometric="rgb",
            metadata=None,
            bigtiff=size * size * 3 > 2**32 - 2**25,
        )
        return
    # one contiguous strip, filled band by band through a memory map
    image = tifffile.memmap(
        path, shape=(size, size, 3), dtype=np.uint8, photometric="rgb", metadata=None
    )
    for i in range(0, size, TILE):
        rows = min(TILE, size - i)
        for j in range(0, size, TILE):
            cols = min(TILE, size - j)
            image[i : i + rows, j : j + cols] = tile_at(i // TILE, j // TILE, rows, cols)
        image.flush()
    del image


def make_apart(path: Path, size: int, layout: str) -> None:
    """make_picture in a child process: a child's peak RSS counts its parent's at fork
    (Linux carries it over), so this process must stay small."""
    code = "import sys; from bench_tiled import make_picture as m; from pathlib import Path; "
    code += f"m(Path({str(path)!r}), {size}, {layout!r})"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def run(args: list[str]) -> tuple[float, float, int]:
    """Run `convtool apply ARGS`; (seconds, peak RSS in MiB, exit code)."""
    command = [sys.executable, "-m", "convtool", "apply", *args]
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    error = child.stderr.read().decode() if child.stderr else ""
    if child.returncode:
        print(f"  failed ({child.returncode}): {error.strip()}", file=sys.stderr)
    return elapsed, usage.ru_maxrss / 1024, child.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 8192, 16384, 32768])
    parser.add_argument("--whole", type=int, nargs="*", default=[4096, 8192])
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--layout", choices=("tiles", "strips"), default="tiles")
    parser.add_argument("--repeat", type=int, default=1, help="runs per point (best is kept)")
    parser.add_argument("--dir", default=None, help="scratch folder (default: a new one in /tmp)")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench_tiled_", dir=args.dir))
    # compile the fast start-up core once, outside the timings
    warm = scratch / "warm.tif"
    make_apart(warm, 256, args.layout)
    run([str(warm), "-k", KERNEL, "-o", str(scratch / "warm.out.tif")])
    print(f"convtool apply IN.tif -k {KERNEL} -o OUT.tif, RGB 8-bit, input in {args.layout}")
    print(f"{'size':>7} {'Mpixel':>7} {'path':>6} {'seconds':>8} {'Mpx/s':>7} {'peak MiB':>9}")
    try:
        for size in args.sizes:
            source = scratch / f"in{size}.tif"
            made = time.perf_counter()
            make_apart(source, size, args.layout)
            made = time.perf_counter() - made
            print(f"  (made {size}x{size} in {made:.1f} s)", file=sys.stderr)
            modes = [("tiled", ["--tile", str(args.tile)])]
            if size in args.whole:
                modes.append(("whole", ["--tile", "0", "--max-pixels", "0"]))
            times = {}
            for name, extra in modes:
                best = (float("inf"), 0.0)
                for _ in range(args.repeat):
                    target = scratch / f"out{size}.{name}.tif"
                    seconds, peak, code = run(
                        [str(source), "-k", KERNEL, "-o", str(target), *extra]
                    )
                    target.unlink(missing_ok=True)
                    if code == 0:
                        best = min(best, (seconds, peak))
                times[name] = best[0]
                mpx = size * size / 1e6
                print(
                    f"{size:>7} {mpx:>7.0f} {name:>6} {best[0]:>8.2f} "
                    f"{mpx / best[0]:>7.1f} {best[1]:>9.0f}",
                    flush=True,
                )
            if "whole" in times and np.isfinite(times["whole"]):
                print(f"{'':>7} tiled / whole time: {times['tiled'] / times['whole']:.2f}")
            source.unlink()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
