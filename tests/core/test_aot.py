"""The compiled core: where it is found, when it is not used, and its results (the JIT's)."""

from __future__ import annotations

import ast
import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from convtool import ops
from convtool.core import (
    aot,
    aot_pycc,
    conv,
    conv_block,
    conv_box,
    conv_gemm,
    conv_sep,
    conv_wino,
    engine,
    fit,
    plan,
    pool,
    samples,
    spin,
)
from convtool.ops import conv as conv_ops
from tests.core.fit_calls import fit_run, fit_statistics

# the core's kernel modules, by the names aot_pycc.KERNELS gives them
CORE = {
    "conv": conv,
    "conv_block": conv_block,
    "conv_box": conv_box,
    "conv_gemm": conv_gemm,
    "conv_sep": conv_sep,
    "conv_wino": conv_wino,
    "pool": pool,
    "fit": fit,
    "samples": samples,
    "spin": spin,
}
FRESH = {"kernels": None, "tried": False, "error": None, "installed": None}


@pytest.fixture
def fresh_aot(monkeypatch):
    """aot as a new process finds it, the compiled route not switched off."""
    monkeypatch.delenv("CONVTOOL_AOT", raising=False)
    monkeypatch.setattr(aot, "_state", dict(FRESH))
    return aot


@pytest.fixture
def no_installed(fresh_aot):
    """As if no extension were installed: only the run-time build is looked for."""
    aot._state["installed"] = "hidden by the test"
    return fresh_aot


@pytest.fixture(scope="module")
def compiled():
    """The compiled core's engine: installed, or built into the user cache on a fresh
    machine (once, ~30 s)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("CONVTOOL_AOT", raising=False)
        mp.setattr(aot, "_state", dict(FRESH))
        found = engine.compiled()
        assert found is not None, aot.error()
    return found


def test_every_kernel_is_compiled(compiled):
    jitted = {
        name
        for module in CORE.values()
        for name, value in vars(module).items()
        if not name.startswith("_") and hasattr(value, "py_func")
    }
    assert set(aot_pycc.KERNELS) == jitted
    for kernel, (module, *_, types) in aot_pycc.KERNELS.items():
        assert kernel in vars(CORE[module])
        for t in types:
            assert callable(getattr(compiled._compiled.module, f"{kernel}_{t}"))


def _same(got, expected, dtype, scale=1.0):
    """Equal within float rounding, of ``scale`` where that is the values' (a sum of
    many terms, as an input gradient over 1100 channels by Winograd)."""
    assert got.dtype == expected.dtype == dtype
    tol = 2e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, expected, rtol=tol, atol=tol * scale)


def _layer_as_the_jit(compiled, x, w, b, rng, **args):
    """conv2d and its backward on the compiled engine give the JIT's results."""
    jit = ops.conv2d(x, w, b, **args)
    _same(ops.conv2d(x, w, b, **args, engine=compiled), jit, x.dtype)
    g = rng.standard_normal(jit.shape).astype(x.dtype)
    for got, expected in zip(
        ops.conv2d_backward(x, w, g, **args, engine=compiled),
        ops.conv2d_backward(x, w, g, **args),
        strict=True,
    ):
        _same(got, expected, x.dtype, max(1.0, float(np.abs(expected).max())))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_convolution_gives_the_jits_results(compiled, dtype):
    rng = np.random.default_rng(6)
    x = rng.random((2, 3, 19, 23)).astype(dtype)
    for c_out in (1, 5):  # a filter's row path, and the channels' line path
        w = rng.standard_normal((c_out, 3, 4, 3))
        b = rng.standard_normal(c_out)
        for stride, padding in [(1, "same"), ((2, 3), "same"), (2, 0), (1, (2, 1))]:
            _layer_as_the_jit(compiled, x, w, b, rng, stride=stride, padding=padding)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_gemm_path_gives_the_jits_results(compiled, dtype):
    """A layer the planner gives the GEMM path (a 1x1: one product), its copies (a
    stride's and padding's im2col) run by the compiled kernels."""
    rng = np.random.default_rng(8)
    x = rng.random((2, 16, 13, 11)).astype(dtype)
    w = rng.standard_normal((96, 16, 1, 1))
    b = rng.standard_normal(96)
    cols = np.zeros((1, 16 * 9, 11), dtype=dtype)
    assert compiled._compiled.find("im2col", (x, cols, *[0] * 11)) is not None
    assert compiled._compiled.find("col2im", (cols, x, *[0] * 11)) is not None
    for stride, padding in [(1, "same"), (2, 1)]:
        assert plan.plan_layer(w.shape, (stride, stride)) == "gemm"
        _layer_as_the_jit(compiled, x, w, b, rng, stride=stride, padding=padding)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_blocked_path_gives_the_jits_results(compiled, dtype, monkeypatch):
    """The register-blocked path (a stride, padding, a partial block of output channels
    and of pixels), run by the compiled kernel; a layer the planner gives it."""
    rng = np.random.default_rng(9)
    x = rng.random((2, 3, 17, 23)).astype(dtype)
    out = np.zeros((2, 40, 17, 23), dtype=dtype)
    wv, b = np.zeros((3, 75, 16), dtype=dtype), np.zeros(48, dtype=dtype)
    assert compiled._compiled.find("conv2d_blocked", (x, wv, b, out, *[0] * 8)) is not None
    assert plan.plan_layer((16, 3, 5, 5)) == "blocked"
    assert plan.plan_backward((16, 3, 5, 5)) == ("blocked", "direct")
    # the JIT's blocked path against the compiled core's own (it plans without it), then
    # the compiled blocked kernels forced; weights of 1/sqrt(taps)'s scale: sums of order
    # 1, as _same's tolerance expects (the compiled core does not fuse its multiply-adds)
    w = rng.standard_normal((16, 3, 5, 5)) / 8
    _layer_as_the_jit(compiled, x, w, rng.standard_normal(16), rng, padding=2)
    monkeypatch.setattr(conv_ops, "plan_layer", lambda *args: "blocked")
    monkeypatch.setattr(conv_ops, "plan_backward", lambda *args: ("blocked", "blocked"))
    for c_out in (40, 64):  # blocks of 16 output channels, and of 32
        w = rng.standard_normal((c_out, 3, 5, 5)) / 8
        b = rng.standard_normal(c_out)
        for stride, padding in [(1, "same"), (2, 1), ((1, 3), (2, 0))]:
            _layer_as_the_jit(compiled, x, w, b, rng, stride=stride, padding=padding)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("c_out", "path"), [(48, "winograd4"), (1100, "winograd")])
def test_the_winograd_path_gives_the_jits_results(compiled, dtype, c_out, path, monkeypatch):
    """A layer the planner gives a Winograd path (F(4x4, 3x3), planned where
    CONVTOOL_WINOGRAD4=1 asks for it, or F(2x2, 3x3) for many channel pairs), its
    transforms run by the compiled kernels (the backward's input gradient by Winograd
    too, its kernel gradient by GEMM)."""
    monkeypatch.setattr(plan, "LAYER_PATHS", plan.ALL_LAYER_PATHS)
    rng = np.random.default_rng(10)
    x = rng.random((2, 32, 13, 10)).astype(dtype)
    w = rng.standard_normal((c_out, 32, 3, 3))
    b = rng.standard_normal(c_out)
    kernel, points = ("wino4_weights", 36) if path == "winograd4" else ("wino_weights", 16)
    u = np.zeros((points, c_out * 32), dtype=dtype)
    assert compiled._compiled.find(kernel, (w.astype(dtype), u, 0, 0)) is not None
    assert plan.plan_layer(w.shape, (1, 1), plan.LAYER_PATHS) == path
    for padding in ("same", 0):
        _layer_as_the_jit(compiled, x, w, b, rng, padding=padding)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_pools_give_the_jits_results(compiled, dtype):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 11, 9)).astype(dtype)
    x[0, 0, 2, 2] = np.nan  # NaN wins a max, as in torch
    for args in [(2, None, 0, False), (3, 2, 1, True), ((3, 2), 1, 0, False)]:
        assert np.array_equal(
            ops.max_pool2d(x, *args, engine=compiled), ops.max_pool2d(x, *args), equal_nan=True
        )
        _same(ops.avg_pool2d(x, *args, engine=compiled), ops.avg_pool2d(x, *args), dtype)
        g = rng.standard_normal(ops.max_pool2d(x, *args).shape).astype(dtype)
        for backward in (ops.max_pool2d_backward, ops.avg_pool2d_backward):
            _same(backward(x, g, *args, engine=compiled), backward(x, g, *args), x.dtype)


def test_threaded_it_gives_its_own_bytes(compiled, monkeypatch):
    """On several threads the compiled core cuts each kernel's tasks into shares, as the
    JIT does: the same bytes as on one thread, for every path a picture takes."""
    from convtool.core import tasks
    from convtool.filtering import correlate

    threaded = engine.Engine(compiled._compiled, threaded=True)
    assert threaded.threaded and not compiled.threaded
    monkeypatch.setattr(tasks, "_state", dict(tasks._state, threads=3, pool=None))
    rng = np.random.default_rng(8)
    picture = rng.random((61, 47, 3)).astype(np.float32)
    gauss = np.exp(-0.5 * ((np.arange(15) - 7) / 3.0) ** 2)
    kernels = [
        rng.standard_normal((3, 3)),  # direct, rows
        np.outer(gauss, gauss),  # separable
        np.ones((9, 9)),  # running sums
        rng.standard_normal((4, 3, 3, 3)),  # direct, lines
    ]
    for w in kernels:
        for border in ("zero", "replicate"):
            one = correlate(picture, w, border=border, engine=compiled)
            three = correlate(picture, w, border=border, engine=threaded)
            assert np.array_equal(one, three), (w.shape, border)
    x = rng.standard_normal((2, 3, 20, 21)).astype(np.float32)
    assert np.array_equal(
        ops.max_pool2d(x, 2, engine=compiled), ops.max_pool2d(x, 2, engine=threaded)
    )


def test_its_kernels_let_other_threads_run(compiled):
    """The compiled kernels release the GIL while they run, as the JIT's (nogil): a thread
    counting in Python beside long kernel calls counts at about its own pace. Holding
    the GIL, a call would leave it only a switch interval (5 ms) after each call."""
    import threading
    import time

    kernel = compiled._compiled.module.sep_forward_f4
    x = np.random.default_rng(9).random((3, 1, 1024, 1024)).astype(np.float32)
    taps = np.full((1, 127), 1 / 127, np.float32)
    out = np.empty_like(x)

    def calls() -> None:
        for _ in range(6):  # each tens of milliseconds
            kernel(x, taps, taps, np.zeros(1, np.float32), out, 1, 1, 63, 63, 0, 0, 1)

    def ticks_per_second(beside) -> float:
        ticks, stop = [0], threading.Event()

        def count() -> None:
            while not stop.is_set():
                ticks[0] += 1

        counter = threading.Thread(target=count)
        start = time.perf_counter()
        counter.start()
        try:
            beside()
        finally:
            stop.set()
            counter.join()
        return ticks[0] / (time.perf_counter() - start)

    calls()
    shares = []  # the best of three: a busy machine slows the counter now and then
    for _ in range(3):
        shares.append(ticks_per_second(calls) / ticks_per_second(lambda: time.sleep(0.2)))
    assert max(shares) > 0.5, shares  # holding the GIL: 0.15-0.4 here


def _result_planes(rng, dtype, channels):
    """A filter's result as the core gives it, (C, H, W), with NaN, infinities and ties."""
    x = (rng.standard_normal((channels, 37, 53)) * 0.7 + 0.5).astype(dtype)
    x.flat[rng.integers(0, x.size, 20)] = [np.nan, np.inf, -np.inf, -0.0, 1.0] * 4
    return x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("top", [255, 65535])
@pytest.mark.parametrize("channels", [1, 3])
def test_quantising_gives_the_jits_and_numpys_samples(compiled, dtype, top, channels):
    rng = np.random.default_rng(5)
    planes = _result_planes(rng, dtype, channels)
    ties = (np.arange(planes.size // 4) % (top + 1) + 0.5) / top  # half-way: to even
    planes.flat[: ties.size] = ties.astype(dtype)
    x = planes.transpose(1, 2, 0)
    product = np.nan_to_num(x * dtype(top), nan=0.0, posinf=top, neginf=0.0)
    expected = np.rint(np.clip(product, 0, top)).astype(np.uint8 if top == 255 else np.uint16)
    kernel = samples.quantise_u1 if top == 255 else samples.quantise_u2
    jit, got = np.empty(x.shape, expected.dtype), np.empty(x.shape, expected.dtype)
    kernel(planes, np.array([top], dtype), jit, 0, 1)
    assert compiled.quantise(planes, np.array([top], dtype), got)
    np.testing.assert_array_equal(jit, expected)
    np.testing.assert_array_equal(got, expected)
    # channels-last colour pixels are not the core's: numpy quantises them
    seen = np.ascontiguousarray(x).transpose(2, 0, 1)
    assert compiled.quantise(seen, np.array([top], dtype), got) == (channels == 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("threaded", [False, True])
def test_counting_pixels_inside_gives_the_jits_and_numpys_count(
    compiled, dtype, channels, threaded
):
    planes = _result_planes(np.random.default_rng(6), dtype, channels)
    lo, hi = dtype(-1e-6), dtype(1 + 1e-6)
    expected = int(np.count_nonzero(((planes >= lo) & (planes <= hi)).all(axis=0)))
    assert 0 < expected < planes[0].size
    counts = np.full(planes.shape[1], -1, np.int64)
    for part in range(4):
        samples.count_inside(planes, np.array([lo, hi]), counts, part, 4)
    assert counts.min() >= 0 and counts.sum() == expected  # every row counted once
    core = engine.Engine(compiled._compiled, threaded=threaded)
    assert core.count_inside(planes, lo, hi) == expected
    assert core.count_inside(planes.transpose(0, 2, 1), lo, hi) is None  # not the core's


def test_a_filters_result_is_counted_and_quantised_by_the_core(compiled, monkeypatch):
    from convtool.filtering import correlate, prepare_kernel, values
    from convtool.imaging import write

    rgb = np.random.default_rng(8).random((40, 30, 3), dtype=np.float32)
    y = correlate(rgb, prepare_kernel(np.array([[-1.0, 0, 1]] * 3)), engine=compiled)
    monkeypatch.setattr(engine, "for_samples", lambda count: compiled)
    monkeypatch.setattr(values, "_inside", None)  # numpy's route would fail
    assert 0 < values.pixels_inside(y) < 40 * 30
    out = np.empty(y.shape, np.uint8)
    assert write._quantised_by_core(y, 255, out)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", ["edge", "reflect", "symmetric", "wrap"])
def test_gathering_planes_pads_as_numpy(compiled, dtype, mode):
    pixels = np.random.default_rng(9).random((13, 17, 3)).astype(dtype)
    rows = np.pad(np.arange(13), (4, 2), mode=mode)
    cols = np.pad(np.arange(17), (0, 5), mode=mode)
    jit = np.empty((3, len(rows), len(cols)), dtype)
    got = np.empty_like(jit)
    samples.gather_planes(pixels, rows, cols, jit, 0, 1)
    assert engine.Engine(compiled._compiled, threaded=True).gather_planes(pixels, rows, cols, got)
    expected = np.pad(pixels.transpose(2, 0, 1), ((0, 0), (4, 2), (0, 5)), mode=mode)
    np.testing.assert_array_equal(jit, expected)
    np.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError, match="outside"):
        compiled.gather_planes(pixels, rows + 1, cols, got)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("mode", ["edge", "reflect", "symmetric", "wrap"])
def test_gathering_samples_scales_them_as_a_reader_does(compiled, dtype, mode):
    top = np.iinfo(dtype).max
    pixels = np.random.default_rng(10).integers(0, top + 1, (13, 17, 3), dtype=dtype)
    pixels[0, :3] = (0, 1, top)  # the ends of the range and the smallest step
    rows = np.pad(np.arange(13), (4, 2), mode=mode)
    cols = np.pad(np.arange(17), (0, 5), mode=mode)
    kernel = getattr(samples, f"gather_u{pixels.itemsize}")
    jit = np.empty((3, len(rows), len(cols)), np.float32)
    got = np.empty_like(jit)
    kernel(pixels, rows, cols, np.array([top], np.float32), jit, 0, 1)
    core = engine.Engine(compiled._compiled, threaded=True)
    assert core.gather_planes(pixels, rows, cols, got, top)
    scaled = pixels.astype(np.float32) / np.float32(top)  # the readers' arithmetic
    expected = np.pad(scaled.transpose(2, 0, 1), ((0, 0), (4, 2), (0, 5)), mode=mode)
    np.testing.assert_array_equal(jit, expected)
    np.testing.assert_array_equal(got, expected)
    assert not core.gather_planes(pixels, rows, cols, got.astype(np.float64), top)  # f4 only


def test_a_pictures_samples_are_laid_out_by_the_core(compiled, monkeypatch):
    from convtool.filtering import as_pixels, correlate, prepare_kernel

    rgb = np.random.default_rng(11).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    kernel = prepare_kernel(np.array([[-1.0, 0, 1]] * 3))
    expected = correlate(as_pixels(rgb), kernel, border="replicate", engine=compiled)
    # the compiled core for the pass, even where CONVTOOL_AOT=0 switches it off by default
    laying_out = importlib.import_module("convtool.filtering.correlate")  # (not the function)
    monkeypatch.setattr(laying_out, "for_samples", lambda count: compiled)
    monkeypatch.setattr(np, "divide", None)  # numpy's route (a float copy first) would fail
    got = correlate(rgb, kernel, border="replicate", engine=compiled)
    np.testing.assert_array_equal(got, expected)


def test_the_fit_gives_the_jits_results(compiled):
    for toeplitz, drop_some in [(True, False), (True, True), (False, True)]:
        for got, expected in zip(
            fit_statistics(compiled, toeplitz, drop_some),
            fit_statistics(engine.jit(), toeplitz, drop_some),
            strict=True,
        ):
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    for method in (0, 1):  # gradient descent, conjugate gradient
        got, expected = fit_run(compiled, method), fit_run(engine.jit(), method)
        assert got[:2] == expected[:2]
        np.testing.assert_allclose(got[2], expected[2], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(got[3], expected[3], rtol=1e-10, atol=1e-14)


def test_the_compiled_engine_imports_no_numba(compiled, monkeypatch):
    """Every kernel on the compiled engine, in a new process: numba is never needed."""
    monkeypatch.delenv("CONVTOOL_AOT", raising=False)
    code = (
        "import sys\nimport numpy as np\nfrom convtool import ops\n"
        "from convtool.core import aot, engine\n"
        "from tests.core.fit_calls import fit_run, fit_statistics\n"
        "e = engine.compiled(build_missing=False)\nassert e is not None, aot.error()\n"
        "for t in (np.float32, np.float64):\n"
        "    x = np.ones((1, 2, 9, 8), t)\n"
        "    ops.conv2d_backward(x, np.ones((4, 2, 3, 3)), np.ones((1, 4, 4, 3)), stride=2,"
        " engine=e)\n"
        "    ops.conv2d(x, np.ones((1, 2, 3, 3)), padding='same', engine=e)\n"
        "    ops.max_pool2d_backward(x, ops.max_pool2d(x, 2, engine=e), 2, engine=e)\n"
        "    ops.avg_pool2d_backward(x, ops.avg_pool2d(x, 2, engine=e), 2, engine=e)\n"
        "fit_statistics(e, True, True), fit_statistics(e, False, False), fit_run(e, 1)\n"
        "print('numba' in sys.modules)\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False"]


def test_arguments_it_was_not_compiled_for_go_to_the_jit(compiled):
    kernels = compiled._compiled
    x = np.ones((1, 2, 6, 6), np.float32)
    w, out = np.ones((1, 2, 3, 3), np.float32), np.empty((1, 1, 4, 4), np.float32)
    bias = np.zeros(1, np.float32)
    args = (x, w, bias, out, 1, 0, 0, 0, 1)
    assert kernels.find("conv2d_rows", args) is not None
    others = {
        "float16": (x.astype(np.float16), w, bias, out, 1, 0, 0, 0, 1),
        "mixed": (x, w.astype(np.float64), bias, out, 1, 0, 0, 0, 1),
        "3-D": (x[0], w, bias, out, 1, 0, 0, 0, 1),
        "strided": (np.ones((1, 2, 6, 12), np.float32)[..., ::2], w, bias, out, 1, 0, 0, 0, 1),
        "byte-swapped": (x.astype(">f4"), w, bias, out, 1, 0, 0, 0, 1),
        "a list": (x.tolist(), w, bias, out, 1, 0, 0, 0, 1),
    }
    for why, bad in others.items():
        assert kernels.find("conv2d_rows", bad) is None, why
    assert kernels.find("no_such_kernel", args) is None
    # the fit is compiled for float64 only; float32 runs on the JIT
    gram = np.zeros((1, 1, 9, 9), np.float32)
    y = np.ones((1, 4, 4), np.float32)
    fit_args = (y, y, y, np.zeros((0, 3), np.int64), 1, 1, 3, 3, False, gram, y[:, :1, :1], 0, 1)
    assert kernels.find("fit_gather", fit_args) is None
    # and the engine still answers, from the JIT
    strided = others["strided"][0]
    jit_out = np.empty_like(out)
    compiled.conv2d_forward(strided, w, bias, out, 1, 0, 0)
    engine.jit().conv2d_forward(strided, w, bias, jit_out, 1, 0, 0)
    assert np.array_equal(out, jit_out)


# ----------------------------------------------------------------- where it is found


def test_an_installed_extension_is_used_only_if_built_from_these_sources(
    compiled, fresh_aot, monkeypatch, tmp_path
):
    """Installed beside another copy of the package on sys.path (as CI runs the suite)."""
    name = Path(compiled.path).name.split(".")[0]  # the installed one, or the run-time build
    folder = tmp_path / "site" / "convtool" / "core"
    folder.mkdir(parents=True)
    shutil.copy(compiled.path, folder / Path(compiled.path).name)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(aot_pycc, "INSTALLED", name)
    monkeypatch.setenv("CONVTOOL_CACHE_DIR", str(tmp_path / "cache"))
    found = engine.compiled(build_missing=False)
    assert found is not None and fresh_aot.installed_error() == "", fresh_aot.error()
    assert Path(found.path).parent in (folder, Path(aot.__file__).parent)
    assert not (tmp_path / "cache").exists()  # the installed one needs no cache

    # the kernels' sources edited since: stale machine code is never loaded
    edited = {**aot.sources(), "pool": aot.sources()["pool"] + b"\n# edited\n"}
    monkeypatch.setattr(aot, "sources", lambda: edited)
    monkeypatch.setattr(aot, "_state", dict(FRESH))
    assert engine.compiled(build_missing=False) is None
    assert "other sources" in fresh_aot.installed_error()
    assert fresh_aot.error() == "not built yet"


def test_no_compiler_means_the_jit_and_no_retry(no_installed, monkeypatch, tmp_path):
    monkeypatch.setenv("CONVTOOL_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CC", "no-such-compiler-xyz")
    announced = []
    assert engine.compiled(announce=lambda: announced.append(1)) is None
    assert "no C compiler" in no_installed.error() and not announced
    folder = no_installed.build_dir()
    assert "no C compiler" in (folder / "FAILED").read_text()
    assert engine.compiled(build_missing=False) is None
    np.testing.assert_allclose(ops.conv2d(np.ones((4, 4)), np.ones((3, 3))), 9 * np.ones((2, 2)))
    monkeypatch.delenv("CC")  # a compiler now, but the failure is remembered for a day
    monkeypatch.setattr(no_installed, "_state", dict(no_installed._state, tried=False))
    assert engine.compiled() is None and "earlier build failed" in no_installed.error()


def _unusable_cache_folders(tmp_path: Path) -> dict[str, Path]:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    read_only.chmod(0o500)
    folders = {"a file": blocker / "cache", "read-only": read_only / "cache"}
    if sys.platform.startswith("linux"):
        folders["cannot be made"] = Path("/proc/no-such-convtool-cache")  # even for root
    return folders


def test_an_unusable_cache_folder_means_the_jit(no_installed, monkeypatch, tmp_path):
    """The library's answer, and a command's."""
    from click.testing import CliRunner

    from convtool.cli import cli

    monkeypatch.setenv("CC", "no-such-compiler-xyz")  # root may write anywhere: never build
    disc = str(Path(__file__).resolve().parents[2] / "samples" / "disc.png")
    for why, folder in _unusable_cache_folders(tmp_path).items():
        monkeypatch.setenv("CONVTOOL_CACHE_DIR", str(folder))
        monkeypatch.setattr(no_installed, "_state", dict(no_installed._state, tried=False))
        assert engine.compiled() is None and no_installed.error(), why
        monkeypatch.setattr(no_installed, "_state", dict(no_installed._state, tried=False))
        out = tmp_path / f"{why}.png"
        done = CliRunner().invoke(cli, ["apply", disc, "-k", "blur", "-o", str(out)])
        assert done.exit_code == 0, (why, done.output)
        assert out.exists(), why
    (tmp_path / "read-only").chmod(0o700)


@pytest.mark.parametrize(("name", "value"), [("CONVTOOL_AOT", "0"), ("NUMBA_DISABLE_JIT", "1")])
def test_switched_off(fresh_aot, monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    assert fresh_aot.load() is None and name in fresh_aot.error()
    assert fresh_aot.installed_error() is None  # not even looked for


# ----------------------------------------------------------------- the sources


def test_the_digests_follow_the_sources_they_compile(monkeypatch, tmp_path):
    files = aot.sources()
    # the kernels' modules and what they import
    assert set(files) == {
        "conv",
        "conv_block",
        "conv_box",
        "conv_gemm",
        "conv_rows",
        "conv_lines",
        "conv_sep",
        "conv_wino",
        "fastmath",
        "pool",
        "fit",
        "samples",
        "spin",
        "vector_ir",
    }
    assert aot.key(files) == aot.key() and aot.digest(files) == aot.digest()
    assert 0 < aot.digest() < 2**63  # exported as an int64
    for name in files:
        edited = dict(files, **{name: files[name] + b"\n# edited\n"})
        assert aot.key(edited) != aot.key(files)
        assert aot.digest(edited) != aot.digest(files)
    monkeypatch.setenv("CONVTOOL_CACHE_DIR", str(tmp_path))
    assert aot.build_dir().parent == tmp_path / "aot"


def test_the_compiled_files_import_only_numpy_numba_and_each_other():
    """The build runs them apart from the package: anything else would be whichever
    copy the child's sys.path finds, or nothing."""
    files = aot.sources()
    allowed = {"__future__", "numpy", "numba"} | {f"{aot_pycc.PACKAGE}.{name}" for name in files}
    allowed |= {"numba.core", "numba.extending", "llvmlite"}  # numba's own: its intrinsics
    for name, code in files.items():
        core = []
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{name}.py: a relative import"
                assert node.col_offset == 0, f"{name}.py: an import inside a block"
                modules = [node.module]
            else:
                continue
            for module in modules:
                assert module in allowed, f"{name}.py imports {module}"
                if module.startswith(aot_pycc.PACKAGE + "."):
                    core.append(module.rsplit(".", 1)[1])
        assert aot_pycc._imported_core_modules(code) == core  # what sources() follows


def test_the_signatures_cover_every_argument():
    assert aot_pycc.signature("conv2d_rows", "f4") == (
        "void(f4[:, :, :, ::1], f4[:, :, :, ::1], f4[::1], f4[:, :, :, ::1], i8, i8, i8, i8, i8)"
    )
    assert aot_pycc.signature("fit_iterate", "f8").startswith("UniTuple(i8, 2)(i8, f8[:, ::1]")
    assert "i8[:, :], i8, i8, i8, i8, b1" in aot_pycc.signature("fit_gather", "f8")  # any layout
    for kernel, (module, args, *_) in aot_pycc.KERNELS.items():
        jitted = getattr(CORE[module], kernel).py_func
        assert jitted.__code__.co_argcount == len(args.split()), kernel


def test_old_builds_are_pruned(tmp_path):
    keep, old, recent = tmp_path / "k", tmp_path / "old", tmp_path / "recent"
    for folder in (keep, old, recent):
        folder.mkdir()
    os.utime(old, (1e9, 1e9))
    aot._prune(keep)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k", "recent"]
