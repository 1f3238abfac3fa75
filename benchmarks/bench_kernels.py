"""Kernels of every size: convtool's planned paths against the fastest peer, side by side.

Run from the repository root (needs the ``bench`` extra: scipy, opencv-python-headless)::

    python benchmarks/bench_kernels.py                 # every section, 9 rounds
    python benchmarks/bench_kernels.py --only kernels --rounds 15
    python benchmarks/bench_kernels.py --only calibrate # the planner's cost model, one thread

Sections (``--only`` takes these names):

kernels
    2048x2048 float32, 'same' zero padding, threads at their defaults: ``convtool.conv2d``
    (JIT) against cv2.filter2D, cv2.sepFilter2D (rank-1 kernels), cv2.GaussianBlur
    (Gaussians), cv2.blur (box), scipy.signal.oaconvolve and fftconvolve. The ratio is
    convtool over the fastest peer of the same round: <= 1.0 for Gaussians 7, 15, 31, 63,
    a rank-2 difference of Gaussians 31, random 15 and 31; <= 1.5 for a 31x31 box against
    cv2.blur; 3x3 and 5x5 against filter2D as in bench_core (<= 1.0, <= 1.5). Every result
    is checked first: within 1e-4 of a float64 reference, relative to sum|w| max|x|.
apply
    ``convtool apply in.png -k gaussian:63,10 -o out.png`` on a 1024x1024 RGB picture
    against ``convert in.png -blur 31x10 out.png``, wall time of the whole commands:
    ratio <= 0.8.
calibrate
    ns per output pixel on one thread for each path (numba's threads set to 1), to set
    :data:`convtool.core.plan.COSTS` and :data:`convtool.core.conv_fft.PIXEL_NS`.

Ratios are formed per round and shown as "median (min..max)"; PASS/FAIL on the median.
The machine is shared: judge a run by the load average printed first, and run twice.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _commands import child_env, convtool_command, draw_pictures, find_binary, run
from _timing import Contender, fmt_time, format_table, measure

SECTIONS = ("kernels", "apply", "calibrate")
SIDE = 2048


def gaussian(size: int, sigma: float | None = None) -> np.ndarray:
    from convtool.kernels.builders import gaussian_kernel

    return gaussian_kernel(size, sigma)


def cases() -> list[tuple[str, np.ndarray, float, dict]]:
    """(name, kernel, target ratio, what the peers know of it)."""
    rng = np.random.default_rng(7)
    dog = gaussian(31, 3.0) - gaussian(31, 6.0)
    found = [
        ("3x3 random", rng.standard_normal((3, 3)), 1.0, {}),
        ("5x5 random", rng.standard_normal((5, 5)), 1.5, {}),
    ]
    for size in (7, 15, 31, 63):
        sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
        found.append((f"gaussian {size}", gaussian(size, sigma), 1.0, {"gaussian": sigma}))
    found += [
        ("DoG 31 (rank 2)", dog, 1.0, {}),
        ("random 15", rng.standard_normal((15, 15)), 1.0, {}),
        ("random 31", rng.standard_normal((31, 31)), 1.0, {}),
        ("box 31", np.full((31, 31), 1 / 961), 1.5, {"box": True}),
    ]
    return found


def peers(x: np.ndarray, w: np.ndarray, known: dict) -> dict:
    import cv2
    from scipy import signal

    from convtool.core.plan import factors

    w32 = w.astype(np.float32)
    k = w.shape[0]
    const = cv2.BORDER_CONSTANT
    found = {"cv2.filter2D": lambda: cv2.filter2D(x, -1, w32, borderType=const)}
    cols, rows = factors(w)
    if cols.shape[0] == 1:
        kx, ky = rows[0].astype(np.float32), cols[0].astype(np.float32)
        found["cv2.sepFilter2D"] = lambda: cv2.sepFilter2D(x, -1, kx, ky, borderType=const)
    if "gaussian" in known:
        s = known["gaussian"]
        found["cv2.GaussianBlur"] = lambda: cv2.GaussianBlur(x, (k, k), s, borderType=const)
    if known.get("box"):
        found["cv2.blur"] = lambda: cv2.blur(x, (k, k), borderType=const)
    flipped = np.ascontiguousarray(w32[::-1, ::-1])
    found["scipy oaconvolve"] = lambda: signal.oaconvolve(x, flipped, mode="same")
    found["scipy fftconvolve"] = lambda: signal.fftconvolve(x, flipped, mode="same")
    return found


def check(name: str, got: np.ndarray, x: np.ndarray, w: np.ndarray) -> float:
    """Largest error against a float64 reference, relative to sum|w| max|x|."""
    from scipy import signal

    ref = signal.fftconvolve(x.astype(np.float64), w[::-1, ::-1], mode="same")
    err = float(np.abs(got - ref).max() / (np.abs(w).sum() * np.abs(x).max()))
    if not err <= 1e-4:
        raise SystemExit(f"{name}: error {err:.2e} > 1e-4 of sum|w| max|x|")
    return err


def section_kernels(rounds: int) -> list[tuple]:
    import convtool as ct
    from convtool.core.plan import plan_filter

    x = np.random.default_rng(1).random((SIDE, SIDE)).astype(np.float32)
    rows, checks = [], []
    for name, w, target, known in cases():
        plan = plan_filter(w, np.float32).describe()
        ours = lambda w=w: ct.conv2d(x, w, padding="same")  # noqa: E731
        err = check(name, ours(), x, w)
        others = peers(x, w, known)
        for peer, f in others.items():
            if peer.startswith("cv2"):  # scipy's 'same' centres even kernels alike: all odd
                check(f"{name}, {peer}", f(), x, w)
        contenders = [Contender("convtool", ours)] + [Contender(p, f) for p, f in others.items()]
        res = measure(contenders, rounds=rounds, warmup=1, min_time=0.05)
        per_round = [
            a / min(res[p].times[r] for p in others) for r, a in enumerate(res["convtool"].times)
        ]
        fastest = min(others, key=lambda p: res[p].median)
        ratio = statistics.median(per_round)
        spread = f"{ratio:.2f} ({min(per_round):.2f}..{max(per_round):.2f})"
        rows.append(
            (
                name,
                plan,
                fmt_time(res["convtool"].median),
                fastest,
                fmt_time(res[fastest].median),
                spread,
                f"{err:.1e}",
            )
        )
        checks.append((f"{name} <= {target}x fastest peer", spread, ratio <= target))
    headers = ["2048^2 float32", "plan", "convtool", "fastest peer", "its time", "ratio", "error"]
    print(format_table(headers, rows))
    return checks


def section_apply(rounds: int) -> list[tuple]:
    convert = find_binary("convert")
    if convert is None:
        print("no ImageMagick convert: apply section skipped")
        return [("apply gaussian:63,10 <= 0.8x ImageMagick", "not run", False)]
    work = Path(tempfile.mkdtemp(prefix="bench-kernels-"))
    big, _ = draw_pictures(work)
    ours, theirs = work / "out.png", work / "out_im.png"
    cmd = [*convtool_command(), "apply", str(big), "-k", "gaussian:63,10", "-o", str(ours)]
    cmd += ["--overwrite"]
    cmd_im = [convert, str(big), "-blur", "31x10", str(theirs)]
    env = child_env()
    run(cmd, env)
    run(cmd_im)
    res = measure(
        [
            Contender("convtool", lambda: run(cmd, env)),
            Contender("ImageMagick", lambda: run(cmd_im)),
        ],
        rounds=rounds,
        warmup=1,
        min_time=0.0,
        gap=0.05,
    )
    per_round = [
        a / b for a, b in zip(res["convtool"].times, res["ImageMagick"].times, strict=True)
    ]
    ratio = statistics.median(per_round)
    spread = f"{ratio:.2f} ({min(per_round):.2f}..{max(per_round):.2f})"
    rows = [(n, fmt_time(r.median), fmt_time(r.best)) for n, r in res.items()]
    print(format_table(["1024x1024 RGB, gaussian:63,10 / -blur 31x10", "median", "best"], rows))
    return [("apply gaussian:63,10 <= 0.8x ImageMagick", spread, ratio <= 0.8)]


def _ns_per_pixel(f, pixels: int, repeat: int = 5) -> float:
    f()
    best = min(_timed(f) for _ in range(repeat))
    return best * 1e9 / pixels


def _timed(f) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def section_calibrate(rounds: int) -> list[tuple]:
    """One thread: ns per output pixel of each path, and the constants fitted to them."""
    import numba

    from convtool.core import conv_fft, engine, plan

    numba.set_num_threads(1)
    x = np.random.default_rng(2).random((1, 1, 1024, 1024)).astype(np.float32)
    n_px = x.size
    jit = engine.jit()
    out = np.empty_like(x)
    b = np.zeros(1, np.float32)
    rows, direct = [], []
    for k in (3, 5, 7, 9, 11, 15):
        w = np.random.default_rng(k).random((1, 1, k, k)).astype(np.float32)
        ns = _ns_per_pixel(
            lambda w=w, k=k: jit.conv2d_forward(x, w, b, out, 1, k // 2, k // 2), n_px
        )
        direct.append((k * k, ns))
        rows.append(("direct", f"{k}x{k}", f"{ns:.2f}"))
    sep = []
    for k in (5, 9, 15, 31, 63):
        v = np.random.default_rng(k).random((1, k)).astype(np.float32)
        ns = _ns_per_pixel(
            lambda v=v, k=k: jit.sep_forward(x, v, v, b, out, 1, 1, k // 2, k // 2, 0), n_px
        )
        sep.append((2 * k, ns))
        rows.append(("separable", f"{k}x{k} rank 1", f"{ns:.2f}"))
    fft = []
    for k in (11, 15, 31, 63):
        w = np.random.default_rng(k).random((k, k))
        ns = _ns_per_pixel(
            lambda w=w, k=k: conv_fft.fft_forward(x, w, b, out, (k // 2, k // 2), threads=1), n_px
        )
        n = conv_fft.sizes_for(k)
        useful = (n - k + 1) ** 2 / n**2
        fft.append(ns * useful)
        rows.append(("fft", f"{k}x{k} (N={n})", f"{ns:.2f}"))
    print(format_table(["path (one thread, 1024^2)", "kernel", "ns/pixel"], rows))
    slope, base = np.polyfit(*zip(*direct, strict=True), 1)
    s_slope, s_base = np.polyfit(*zip(*sep, strict=True), 1)
    print(f"direct: {base:.2f} + {slope:.3f}/tap (plan.COSTS: {plan.COSTS})")
    print(f"separable: {s_base:.2f} + {s_slope:.3f}/tap (two passes' taps)")
    print(f"fft: {statistics.median(fft):.2f} ns per transform pixel (conv_fft.PIXEL_NS)")
    return []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=SECTIONS)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    print(f"load average {os.getloadavg()}; threads: OpenCV and numba defaults")
    checks = []
    for section in args.only or SECTIONS:
        checks += globals()[f"section_{section}"](args.rounds)
    if checks:
        status = [(t, m, "PASS" if ok else "FAIL") for t, m, ok in checks]
        print(format_table(["target", "measured", "status"], status, title="summary"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
