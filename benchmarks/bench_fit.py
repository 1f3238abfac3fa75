"""Benchmark `convtool fit` (convtool.fit.fit_kernel) against the anchors the issue names.

Run from the repository root (needs the ``bench`` extra for torch)::

    python benchmarks/bench_fit.py            # everything, 15 rounds
    python benchmarks/bench_fit.py --quick    # 5 rounds
    python benchmarks/bench_fit.py --only chapter --rounds 25

Sections (``--only`` takes these names):

chapter
    The chapter's experiment 17.3.7: the project's disc (80x80, ITU-R 601 luma), the
    horizontal-edge target (78x78), gradient descent with lr 0.5 from normal(0, 0.1)
    (seed 1), stopping when the loss falls below 1e-7 (about 3400 iterations), all in
    float64. Contenders, each doing the same iterations (their stop iteration is checked
    to be convtool's): convtool's whole fit_kernel call (statistics, exact solution,
    iterations); a torch autograd loop (conv2d, loss, backward, update, loss.item() for
    the stop test); a plain numba loop that convolves the whole picture every iteration
    as the chapter's code does, the whole loop jitted; and, for information, the
    chapter's own structure, a Python loop calling a jitted convolution. Targets:
    torch / convtool >= 20, numba loop / convtool >= 5.
large
    A 2048x2048 RGB picture drawn at full size by samples/make_samples.py (not enlarged),
    filtered with a random 7x7 kernel into a float32 target (exact, as a .npy target is),
    recovered by the default method (cg) with tol 1e-10: within 1e-3 of the kernel, in
    under 2 s after the pictures are read (fit_kernel on the arrays as read_image gives
    them). For information: the whole command in a fresh process, reading included.
stages
    A fit through stages: the 256x256 RGB test photograph (tests/data/fit/input.png) run
    through ``pipeline``'s default chain (valid conv, colour summed, relu, 2x2 max pool)
    with sobel_x and with a random 3x3 kernel, as ``pipeline -o t.npy`` makes it (float32);
    ``fit_through`` (L-BFGS through the stages) on the summed plane: within 1e-3 of the
    kernel in under 10 s. For information: the whole command in a fresh process.
iteration
    For information: one gradient-descent iteration on the statistics of an 80x80 and of a
    2048x2048 RGB picture (3x3 kernel both): the same cost whatever the size.

Ratios are anchor / convtool, formed per round from interleaved measurements, shown as
"median (min..max)" over the rounds; PASS/FAIL is decided on the median. torch runs with
convtool's thread count. This script is not part of the test suite.
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from _timing import Contender, fmt_ratio, fmt_time, format_table, measure, ratio_stats

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("chapter", "large", "stages", "iteration")
EDGE = np.array([[0.0, -1, 0], [0, 2, 0], [0, -1, 0]])


@dataclass
class Check:
    target: str
    measured: str
    goal: str
    ok: bool | None  # None: information only

    @property
    def status(self) -> str:
        return "info" if self.ok is None else ("PASS" if self.ok else "FAIL")


# --------------------------------------------------------------------------- anchors


def _numba_anchors():
    from numba import njit

    @njit(fastmath={"reassoc", "contract"})
    def whole_loop(x, y, w, lr, tol, max_iter):
        """The chapter's train(), every step jitted: forward, loss, kernel gradient, update."""
        ho, wo = y.shape
        kh, kw = w.shape
        m = ho * wo
        w = w.copy()
        delta = np.empty((ho, wo))
        for it in range(max_iter + 1):
            loss = 0.0
            for i in range(ho):
                for j in range(wo):
                    acc = 0.0
                    for a in range(kh):
                        for b in range(kw):
                            acc += x[i + a, j + b] * w[a, b]
                    d = acc - y[i, j]
                    delta[i, j] = d
                    loss += d * d
            loss = loss / 2 / m
            if loss < tol or it == max_iter:
                return w, it
            for a in range(kh):
                for b in range(kw):
                    acc = 0.0
                    for i in range(ho):
                        for j in range(wo):
                            acc += x[i + a, j + b] * delta[i, j]
                    w[a, b] -= lr * acc / m
        return w, max_iter

    @njit(fastmath={"reassoc", "contract"})
    def jit_conv_2d(x, w, out):
        """The chapter's jit_conv_2d: valid cross-correlation into ``out``."""
        ho, wo = out.shape
        kh, kw = w.shape
        for i in range(ho):
            for j in range(wo):
                acc = 0.0
                for a in range(kh):
                    for b in range(kw):
                        acc += x[i + a, j + b] * w[a, b]
                out[i, j] = acc

    def chapter_structure(x, y, w, lr, tol, max_iter):
        """The chapter's code as written: a Python loop calling the jitted convolution."""
        out = np.empty_like(y)
        m = y.size
        for it in range(max_iter + 1):
            jit_conv_2d(x, w, out)
            delta = out - y
            loss = np.sum(delta * delta) / 2 / m
            if loss < tol or it == max_iter:
                return w, it
            dw = np.empty_like(w)
            jit_conv_2d(x, delta, dw)
            w = w - lr * dw / m
        return w, max_iter

    return whole_loop, chapter_structure


def _torch_loop(threads: int):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)

    def loop(x, y, w0, lr, tol, max_iter):
        xt = torch.from_numpy(x)[None, None]
        yt = torch.from_numpy(y)[None, None]
        w = torch.tensor(w0[None, None], requires_grad=True)
        m = y.size
        for it in range(max_iter + 1):
            loss = ((F.conv2d(xt, w) - yt) ** 2).sum() / 2 / m
            if loss.item() < tol or it == max_iter:
                break
            loss.backward()
            with torch.no_grad():
                w -= lr * w.grad
            w.grad = None
        return w.detach().numpy()[0, 0], it

    return loop


# --------------------------------------------------------------------------- sections


def _ratio_check(target: str, num, den, limit: float) -> Check:
    r = ratio_stats(num, den)
    n_ok = r.count(lambda v: v >= limit)
    return Check(
        target,
        f"{fmt_ratio(r)}x ({n_ok}/{len(r.per_round)} rounds >= {limit:g})",
        f">= {limit:g}x",
        r.median >= limit,
    )


def bench_chapter(opt) -> list[Check]:
    from convtool.core import tasks
    from convtool.filtering import to_gray
    from convtool.fit import fit_kernel
    from convtool.imaging import read_image

    x = to_gray(read_image(ROOT / "samples" / "disc.png").data).astype(np.float64)
    y = np.einsum(
        "ijab,ab->ij", np.lib.stride_tricks.sliding_window_view(x, (3, 3)), EDGE
    )  # the target, independently of convtool
    seed, lr, tol, max_iter = 1, 0.5, 1e-7, 10000
    w0 = np.random.default_rng(seed).normal(0.0, 0.1, size=(3, 3))  # fit_kernel's start
    whole_loop, chapter_structure = _numba_anchors()
    torch_loop = _torch_loop(tasks.threads())

    def ours():
        return fit_kernel(x, y, method="gd", lr=lr, tol=tol, max_iter=max_iter, seed=seed)

    r = ours()
    stops = {"convtool": r.iterations}
    for name, f in (
        ("torch autograd", torch_loop),
        ("numba loop", whole_loop),
        ("chapter structure", chapter_structure),
    ):
        w, it = f(x, y, w0, lr, tol, max_iter)
        stops[name] = it
        assert np.abs(w - r.kernel).max() < 1e-8, (name, np.abs(w - r.kernel).max())
    print("stop iterations:", stops)
    if len(set(stops.values())) != 1:
        print("WARNING: the contenders stop at different iterations")
    res = measure(
        [
            Contender("convtool", ours),
            Contender("torch autograd", lambda: torch_loop(x, y, w0, lr, tol, max_iter)),
            Contender("numba loop", lambda: whole_loop(x, y, w0, lr, tol, max_iter)),
            Contender("chapter structure", lambda: chapter_structure(x, y, w0, lr, tol, max_iter)),
        ],
        rounds=opt.rounds,
        gap=opt.gap,
        min_time=opt.min_time,
    )
    rows = []
    for name, v in res.items():
        ratio = "" if name == "convtool" else f"{fmt_ratio(ratio_stats(v, res['convtool']))}x"
        rows.append([name, fmt_time(v.median), f"{fmt_time(v.best)}..{fmt_time(v.worst)}", ratio])
    print(format_table(["contender", "median", "min..max", "this/convtool"], rows))
    per_it = res["convtool"].median / max(r.iterations, 1)
    print(f"convtool: {per_it * 1e9:.0f} ns per iteration, whole call included")
    return [
        _ratio_check(
            "chapter: torch autograd / convtool", res["torch autograd"], res["convtool"], 20
        ),
        _ratio_check("chapter: numba loop / convtool", res["numba loop"], res["convtool"], 5),
        Check(
            "chapter: chapter structure / convtool",
            f"{fmt_ratio(ratio_stats(res['chapter structure'], res['convtool']))}x",
            "",
            None,
        ),
    ]


def _large_pair(folder: Path):
    sys.path.insert(0, str(ROOT / "samples"))
    from make_samples import draw_scene

    from convtool.imaging import write_image
    from convtool.ops import conv2d

    t0 = time.perf_counter()
    rgb = draw_scene(2048)  # drawn at 2048: every texture at full detail
    print(f"drew the 2048x2048 scene in {time.perf_counter() - t0:.1f} s")
    w = np.random.default_rng(2048).normal(0.0, 0.15, size=(7, 7))
    x = np.moveaxis(rgb, -1, 0).astype(np.float32) / 255
    y = conv2d(x[:, None], w[None, None].astype(np.float32))[:, 0]  # float32, 3x2042x2042
    write_image(folder / "input.png", rgb.astype(np.float32) / 255)
    np.save(folder / "target.npy", np.moveaxis(y, 0, -1))
    return w


def bench_large(opt) -> list[Check]:
    from convtool.fit import fit_kernel
    from convtool.imaging import read_image

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        w = _large_pair(folder)
        x = read_image(folder / "input.png").data
        y = read_image(folder / "target.npy").data
        print(f"input {x.shape} {x.dtype}, target {y.shape} {y.dtype} (read, not timed)")
        xs, ys = np.moveaxis(x, -1, 0), np.moveaxis(y, -1, 0)  # as the command passes them

        def ours():
            return fit_kernel(xs, ys, tol=1e-10, seed=1)

        r = ours()
        err = float(np.abs(r.kernel - w).max())
        print(
            f"cg: {r.iterations} iterations, loss {r.loss:.3g} ({r.stopped}), max |error| "
            f"{err:.2e}, Gram eigenvalues {r.eigenvalues[0]:.3g}..{r.eigenvalues[1]:.3g}"
        )
        res = measure(
            [Contender("fit 2048x2048 RGB 7x7", ours)],
            rounds=max(3, opt.rounds // 2),
            gap=opt.gap,
            min_time=0.0,
            warmup=1,
        )["fit 2048x2048 RGB 7x7"]
        spread = f"{fmt_time(res.best)}..{fmt_time(res.worst)}"
        print(f"fit_kernel: median {fmt_time(res.median)} ({spread})")
        cmd = [sys.executable, "-m", "convtool", "fit", str(folder / "input.png"),
               str(folder / "target.npy"), "--tol", "1e-10", "--json"]  # fmt: skip
        walls = []
        for _ in range(2):
            t0 = time.perf_counter()
            out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
            walls.append(time.perf_counter() - t0)
        cli_err = float(np.abs(np.array(json.loads(out.stdout)["kernel"]) - w).max())
        shown = ", ".join(fmt_time(t) for t in walls)
        print(f"whole command (fresh process, reading included): {shown}")
    return [
        Check("large: |kernel - truth| (cg, tol 1e-10)", f"{err:.2e}", "< 1e-3", err < 1e-3),
        Check(
            "large: fit_kernel after reading",
            f"{fmt_time(res.median)} ({fmt_time(res.best)}..{fmt_time(res.worst)})",
            "< 2 s",
            res.median < 2.0,
        ),
        Check("large: whole command, fresh process", fmt_time(min(walls)), "", None),
        Check("large: command's |kernel - truth|", f"{cli_err:.2e}", "< 1e-3", cli_err < 1e-3),
    ]


def bench_stages(opt) -> list[Check]:
    from convtool.core import engine
    from convtool.fit.through import ConvSpec, Layer, fit_through
    from convtool.imaging import read_image
    from convtool.pipeline import run_pipeline

    photo = ROOT / "tests" / "data" / "fit" / "input.png"
    rgb = read_image(photo).data
    plane = rgb.astype(np.float64).sum(axis=2)
    kernels = {
        "sobel_x": np.array([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]),
        "random3": np.random.default_rng(3).normal(0.0, 0.5, (3, 3)).round(3),
    }
    layers = [Layer("relu"), Layer("maxpool", (2, 2), (2, 2))]
    eng = engine.choose(plane.size * 9.0)
    checks = []
    folder = Path(tempfile.mkdtemp())
    for name, w in kernels.items():
        np.save(folder / f"{name}.npy", w)
        chw = np.moveaxis(rgb, -1, 0)  # (1, 127, 127) float32 below, as -o saves it
        y = run_pipeline(chw, kernels=[f"@{folder / name}.npy"])[-1].data

        def ours(y=y):
            return fit_through(plane, y, layers, ConvSpec((3, 3)), engine=eng)

        r = ours()
        err = float(np.abs(r.kernel - w).max())
        res = measure(
            [Contender(name, ours)], rounds=max(3, opt.rounds // 2), gap=opt.gap, min_time=0.0
        )[name]
        spread = f"{fmt_time(res.best)}..{fmt_time(res.worst)}"
        print(f"{name}: {r.iterations} L-BFGS steps, max |error| {err:.2e}, "
              f"median {fmt_time(res.median)} ({spread})")  # fmt: skip
        checks.append(Check(f"stages {name}: |kernel - truth|", f"{err:.2e}", "< 1e-3", err < 1e-3))
        checks.append(
            Check(
                f"stages {name}: fit_through 256x256",
                f"{fmt_time(res.median)} ({spread})",
                "< 10 s",
                res.median < 10.0,
            )
        )
    target = folder / "t.npy"
    np.save(target, run_pipeline(np.moveaxis(rgb, -1, 0), kernels=["sobel_x"])[-1].data[0])
    cmd = [sys.executable, "-m", "convtool", "fit", str(photo), str(target), "--stage",
           "conv -> relu -> maxpool:2", "--json"]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    shutil.rmtree(folder)
    checks.append(Check("stages: whole command, fresh process", fmt_time(wall), "", None))
    return checks


def bench_iteration(opt) -> list[Check]:
    sys.path.insert(0, str(ROOT / "samples"))
    from make_samples import draw_scene

    from convtool.fit import solve
    from convtool.ops import conv2d

    rows, per_iter = [], {}
    for side in (80, 2048):
        x = np.moveaxis(draw_scene(side) if side > 512 else draw_scene(512)[:side, :side], -1, 0)
        x = np.ascontiguousarray(x, dtype=np.float64) / 255
        y = conv2d(x[:, None], EDGE[None, None])[:, 0]
        normal = solve.assemble(*solve.gather(x, y, np.ones_like(y), (3, 3), (1, 1)), False, False)
        exact = solve.least_squares(normal)
        w0 = np.zeros(9)

        def run(normal=normal, exact=exact, w0=w0):
            return solve.iterate("gd", normal, exact, 0.0, w0, lr=0.1, tol=0.0, max_iter=5000)

        t = measure([Contender(str(side), run)], rounds=opt.rounds, gap=opt.gap)[str(side)]
        per_iter[side] = t.median / 5000
        rows.append([f"{side}x{side} RGB", f"{per_iter[side] * 1e9:.0f} ns"])
    print(format_table(["picture", "one gd iteration"], rows))
    return [
        Check(
            "iteration: 2048^2 / 80^2 cost per iteration",
            f"{per_iter[2048] / per_iter[80]:.2f}",
            "~1",
            None,
        )
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="5 rounds")
    p.add_argument("--rounds", type=int, help="rounds per comparison (default 15, quick 5)")
    p.add_argument("--only", action="append", choices=SECTIONS, help="run only this section")
    p.add_argument("--gap", type=float, default=0.01, help="sleep between measurements, s")
    p.add_argument("--strict", action="store_true", help="exit with status 1 if a target fails")
    a = p.parse_args(argv)
    import numba

    opt = argparse.Namespace(
        rounds=a.rounds or (5 if a.quick else 15), gap=a.gap, min_time=0.02 if a.quick else 0.05
    )
    load = "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    print(f"cpus {os.cpu_count()}, numba threads {numba.get_num_threads()}, {load}")
    print(f"rounds {opt.rounds}")
    runners = {
        "chapter": bench_chapter,
        "large": bench_large,
        "stages": bench_stages,
        "iteration": bench_iteration,
    }
    checks: list[Check] = []
    for name in SECTIONS:
        if name in (a.only or SECTIONS):
            print(f"\n=== {name} ===")
            checks += runners[name](opt)
    print()
    print(
        format_table(
            ["target", "measured", "goal", "status"],
            [[c.target, c.measured, c.goal, c.status] for c in checks],
            title="summary",
        )
    )
    return 1 if a.strict and any(c.ok is False for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
