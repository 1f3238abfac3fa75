"""Batch throughput of `convtool apply`: one local process, two, and a Dask cluster.

For each picture size, a batch of RGB PNGs goes through `convtool apply -k KERNEL`
as a fresh process, once with --jobs 1, once with --jobs 2, and once with
--scheduler on a scheduler and two single-threaded worker processes started
here on 127.0.0.1 (as `dask scheduler` and `dask worker --nthreads 1` would
run on a real cluster). The times are wall clock, start-up included; the
per-picture cost is the batch time over its pictures.

From the smallest pictures, where the filtering itself is negligible, it
derives the cluster's overhead per picture (sending, scheduling, collecting),
and from that the size below which sending pictures to W workers does not
pay: a picture is worth shipping when its local time t satisfies
t / W + overhead < t.

    python benchmarks/bench_cluster.py                 # needs '.[dask]'
    python benchmarks/bench_cluster.py --sizes 64 512 --count 40
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

KERNEL = "gaussian:7"


def start_cluster(folder: Path, workers: int) -> tuple[str, list[subprocess.Popen]]:
    env = dict(os.environ, NUMBA_NUM_THREADS="1")
    scheduler_file = folder / "scheduler.json"

    def spawn(*args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )

    processes = [
        spawn(
            "distributed.cli.dask_scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(scheduler_file),
        )
    ]
    while not scheduler_file.exists() or not scheduler_file.read_text().strip():
        time.sleep(0.1)
    address = json.loads(scheduler_file.read_text())["address"]
    for n in range(workers):
        processes.append(
            spawn(
                "distributed.cli.dask_worker",
                address,
                "--nthreads",
                "1",
                "--no-dashboard",
                "--name",
                f"w{n}",
            )
        )
    from distributed import Client

    with Client(address, timeout=60) as client:
        client.wait_for_workers(workers, timeout=60)
    return address, processes


def make_batch(folder: Path, size: int, count: int) -> list[str]:
    from convtool import imaging

    folder.mkdir(parents=True)
    rng = np.random.default_rng(size)
    picture = rng.random((size, size, 3))
    names = []
    for i in range(count):
        name = folder / f"p{i:03d}.png"
        imaging.write_image(name, np.roll(picture, i, axis=1))
        names.append(str(name))
    return names


def timed(names: list[str], out: Path, *extra: str) -> float:
    out.mkdir()
    command = [sys.executable, "-m", "convtool", "apply", *names, "-k", KERNEL, "-o", f"{out}/"]
    started = time.perf_counter()
    done = subprocess.run([*command, *extra], capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"failed: {done.stderr.strip()}")
    shutil.rmtree(out)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 128, 256, 512, 1024, 2048])
    parser.add_argument("--count", type=int, default=None, help="pictures per batch")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench_cluster_"))
    processes: list[subprocess.Popen] = []
    try:
        address, processes = start_cluster(scratch, args.workers)
        warm = make_batch(scratch / "warm", 64, 8)  # compile and load everywhere first
        timed(warm, scratch / "w1")
        timed(warm, scratch / "w2", "--scheduler", address)
        print(f"convtool apply N x RGB PNG -k {KERNEL}; seconds per picture (batch / N)")
        print(f"{'size':>6} {'N':>4} {'jobs 1':>8} {'jobs 2':>8} {'cluster':>8} {'2 vs 1':>7}")
        rows = []
        for size in args.sizes:
            count = args.count or max(8, min(120, 2**22 // (size * size) * 8))
            names = make_batch(scratch / f"in{size}", size, count)
            one = timed(names, scratch / "o1", "--jobs", "1") / count
            two = timed(names, scratch / "o2", "--jobs", "2") / count
            remote = timed(names, scratch / "oc", "--scheduler", address) / count
            rows.append((size, one, two, remote))
            print(
                f"{size:>6} {count:>4} {one:>8.4f} {two:>8.4f} {remote:>8.4f} {one / two:>6.2f}x",
                flush=True,
            )
            shutil.rmtree(scratch / f"in{size}")
        size, one, _, remote = rows[0]
        overhead = max(remote - one / args.workers, 0.0)
        print(f"cluster overhead per picture (from {size}x{size}): {overhead * 1000:.0f} ms")
        worth = [s for s, t, _, _ in rows if t / args.workers + overhead < t]
        need = overhead * args.workers / (args.workers - 1) if args.workers > 1 else float("inf")
        print(
            f"shipping to {args.workers} workers pays once a picture takes over "
            f"{need * 1000:.0f} ms locally"
            + (f": from about {worth[0]}x{worth[0]} here" if worth else "")
        )
    finally:
        for p in processes:
            p.terminate()
        for p in processes:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
