"""The planner and its paths: factors, choices, and every path against the naive loop
and the direct path, for every border, stride, padding and dtype."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.ndimage as ndi
from hypothesis import given, settings
from hypothesis import strategies as st

from convtool import filtering, ops, vocab
from convtool.core import engine, plan
from convtool.kernels.builders import box_kernel, gaussian_kernel, unsharp_kernel
from convtool.shapes import resolve_padding
from tests import naive

SOBEL = np.array([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])


def dog(size: int) -> np.ndarray:
    return gaussian_kernel(size, size / 6) - gaussian_kernel(size, size / 3)


def product(cols: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return cols.T @ rows


# ---------------------------------------------------------------- factors


@pytest.mark.parametrize(
    ("w", "rank"),
    [
        (SOBEL, 1),
        (SOBEL.T, 1),
        (np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]) / 256, 1),  # binomial
        (gaussian_kernel(15, 3), 1),
        (box_kernel(7, 5), 1),
        (dog(31), 2),
        (unsharp_kernel(9, 2, 1.5), 2),
    ],
)
def test_ranks_of_known_kernels(w, rank):
    cols, rows = plan.factors(w)
    assert cols.shape == (rank, w.shape[0]) and rows.shape == (rank, w.shape[1])
    assert np.abs(w - product(cols, rows)).sum() <= 2.0**-24 * np.abs(w).sum()


def test_exact_rank1_is_exact():
    cols, rows = plan.factors(SOBEL * 3)
    assert np.array_equal(product(cols, rows), SOBEL * 3)


def test_random_kernels_keep_their_rank():
    rng = np.random.default_rng(3)
    for r in (1, 2, 3):
        w = rng.standard_normal((9, r)) @ rng.standard_normal((r, 11))
        assert plan.factors(w)[0].shape[0] == r
    assert plan.factors(rng.standard_normal((7, 7)))[0].shape[0] == 7


def test_truncation_only_below_rounding():
    """A perturbation above the float32 rounding of the result's scale is kept."""
    w = gaussian_kernel(11, 2) + 1e-5 * np.random.default_rng(0).standard_normal((11, 11))
    cols, rows = plan.factors(w, np.float32)
    assert cols.shape[0] > 1
    assert np.abs(w - product(cols, rows)).sum() <= 2.0**-24 * np.abs(w).sum()
    # float64 pictures keep terms that float32 ones may drop
    assert plan.factors(dog(15), np.float64)[0].shape[0] >= plan.factors(dog(15))[0].shape[0]


# ---------------------------------------------------------------- choices


def test_choices():
    f32 = np.float32
    assert plan.plan_filter(np.ones((3, 3)) / 9, f32).path == "direct"
    assert plan.plan_filter(SOBEL, f32).path == "direct"
    g = plan.plan_filter(gaussian_kernel(15, 3), f32)
    assert (g.path, g.rank, g.describe()) == ("separable", 1, "separable")
    assert plan.plan_filter(dog(31), f32).describe() == "low-rank 2"
    assert plan.plan_filter(np.random.default_rng(1).random((7, 7)), f32).path == "direct"
    full = np.random.default_rng(1).random((15, 15))
    fft = plan.plan_filter(full, f32)
    assert fft.path == "fft" and fft.block == (370, 370)
    assert plan.plan_filter(full, f32, (2, 1)).path == "direct"  # no FFT with a stride
    assert plan.plan_filter(box_kernel(31), f32).path == "box"
    assert plan.plan_filter(box_kernel(31), f32, (1, 2)).describe() == "separable"
    assert plan.plan_filter(box_kernel(3), f32).path == "direct"


def test_the_box_restart_is_known_without_numba():
    from convtool.core import conv_box

    assert plan.BOX_RESTART == conv_box.RESTART


def test_plans_are_remembered_per_kernel_and_dtype():
    w = gaussian_kernel(9, 2)
    assert plan.plan_filter(w, np.float32) is plan.plan_filter(w.copy(), np.float32)
    assert plan.plan_filter(w, np.float32) is not plan.plan_filter(w, np.float64)


# ---------------------------------------------------------------- paths


def reference(x, w, border, padding, stride):
    """The naive loop on the picture padded as the border says, in float64."""
    top, bottom, left, right = resolve_padding(padding, x.shape, w.shape, stride)
    mode = "constant" if border == "zero" else vocab.pad_mode(border)
    xp = np.pad(x.astype(np.float64), ((top, bottom), (left, right)), mode=mode)
    return naive.conv2d(xp[None, None], w[None, None], stride=stride)[0, 0]


def direct(x, w, padding, stride):
    """The direct path alone, through the core (zero border)."""
    x4 = np.ascontiguousarray(x[None, None])
    top, bottom, left, right = resolve_padding(padding, x.shape, w.shape, stride)
    h = (x.shape[0] + top + bottom - w.shape[0]) // stride[0] + 1
    wd = (x.shape[1] + left + right - w.shape[1]) // stride[1] + 1
    out = np.empty((1, 1, h, wd), x.dtype)
    if stride[1] > 1:
        x4, w4 = ops.conv._column_phases(x4, w[None, None].astype(x.dtype), stride[1], left, wd)
        left = 0
    else:
        w4 = np.ascontiguousarray(w[None, None], x.dtype)
    engine.jit().conv2d_forward(x4, w4, np.zeros(1, x.dtype), out, stride[0], top, left)
    return out[0, 0]


def planned(x, w, border, padding, stride):
    """float32 through :func:`convtool.filtering.correlate` (which pads the border), other
    dtypes through ops.conv2d on the picture padded likewise."""
    if x.dtype == np.float32:
        return filtering.correlate(x, w, border=border, padding=padding, stride=stride)
    if border == "zero":
        return ops.conv2d(x, w, stride=stride, padding=padding)
    top, bottom, left, right = resolve_padding(padding, x.shape, w.shape, stride)
    xp = np.pad(x, ((top, bottom), (left, right)), mode=vocab.pad_mode(border))
    return ops.conv2d(xp, w, stride=stride, padding=0)


KERNELS = {
    "random": np.random.default_rng(5).standard_normal((15, 13)),
    "gaussian": gaussian_kernel(9, 2),
    "dog": dog(13),
    "box": box_kernel(6, 5),
    "box15": box_kernel(15, 16),
    "wide": np.outer([1.0, 2, 1], np.arange(1.0, 12)),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("border", vocab.BORDERS)
@pytest.mark.parametrize("name", sorted(KERNELS))
def test_every_path_with_every_border_stride_padding_and_dtype(name, border, dtype):
    w = KERNELS[name]
    # float64 keeps more terms (a float64 rounding is the bound): it may go direct
    assert dtype == np.float64 or plan.plan_filter(w, dtype).path != "direct"
    rng = np.random.default_rng(len(name))
    x = rng.random((23, 29)).astype(dtype)
    scale = np.abs(w).sum() * np.abs(x).max()
    tol = (1e-6 if dtype == np.float32 else 1e-13) * scale
    for stride in ((1, 1), (2, 2), (3, 1), (1, 2)):
        for padding in ("same", "valid", 0, (7, 2)):
            got = planned(x, w, border, padding, stride)
            want = reference(x, w, border, padding, stride)
            assert got.shape == want.shape
            assert np.abs(got - want).max() <= tol, (stride, padding)
            if border == "zero":
                assert np.abs(got - direct(x, w, padding, stride)).max() <= tol


@st.composite
def low_rank_cases(draw):
    rank = draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 14)), draw(st.integers(1, 14))
    ph, pw = draw(st.integers(0, 8)), draw(st.integers(0, 8))
    h = draw(st.integers(max(1, kh - 2 * ph), 30))
    wd = draw(st.integers(max(1, kw - 2 * pw), 30))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    w = rng.standard_normal((kh, rank)) @ rng.standard_normal((rank, kw))
    x = rng.standard_normal((draw(st.integers(1, 3)), 1, h, wd))
    return x, w, rng.standard_normal(), stride, (ph, pw)


@settings(deadline=None, max_examples=150)
@given(low_rank_cases(), st.sampled_from([np.float32, np.float64]))
def test_planned_paths_match_the_naive_loop(case, dtype):
    x, w, b, stride, (ph, pw) = case
    got = ops.conv2d(x.astype(dtype), w, b, stride=stride, padding=(ph, pw))
    want = naive.conv2d(x, w[None, None], [b], stride, (ph, ph, pw, pw))
    scale = np.abs(w).sum() * np.abs(x).max() + abs(b)
    tol = (1e-5 if dtype == np.float32 else 1e-12) * scale
    assert got.dtype == dtype and got.shape == want.shape
    assert np.abs(got - want).max() <= tol


def test_nan_stays_in_its_windows():
    x = np.zeros((20, 20), np.float32)
    x[10, 10] = np.nan
    w = gaussian_kernel(7, 1.5)
    got = ops.conv2d(x, w, padding="same")
    assert plan.plan_filter(w, np.float32).path == "separable"
    assert np.array_equal(
        np.isnan(got),
        ops.conv2d(np.isnan(x).astype(np.float32), np.ones((7, 7)), padding="same") > 0,
    )


# ---------------------------------------------------------------- the FFT's blocks


@st.composite
def full_rank_cases(draw):
    kh, kw = draw(st.integers(12, 22)), draw(st.integers(12, 22))
    ph, pw = draw(st.integers(0, 25)), draw(st.integers(0, 25))
    h = draw(st.integers(max(1, kh - 2 * ph), 70))
    wd = draw(st.integers(max(1, kw - 2 * pw), 300))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((draw(st.integers(1, 2)), 1, h, wd))
    return x, rng.standard_normal((kh, kw)), rng.standard_normal(), (ph, pw)


@settings(deadline=None, max_examples=40)
@given(full_rank_cases(), st.sampled_from([np.float32, np.float64]))
def test_fft_matches_scipy(case, dtype):
    from scipy import signal

    x, w, b, (ph, pw) = case
    assert plan.plan_filter(w, dtype).path == "fft"
    got = ops.conv2d(x.astype(dtype), w, b, padding=(ph, pw))
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    want = np.stack([signal.correlate(p[0], w, mode="valid", method="direct") for p in xp]) + b
    scale = np.abs(w).sum() * np.abs(x).max() + abs(b)
    tol = (1e-5 if dtype == np.float32 else 1e-12) * scale
    assert np.abs(got[:, 0] - want).max() <= tol
    # outputs whose window lies wholly in the padding hold the bias alone, exactly
    top, left = max(0, ph - w.shape[0] + 1), max(0, pw - w.shape[1] + 1)
    assert np.all(got[:, 0, :top] == dtype(b)) and np.all(got[:, 0, :, :left] == dtype(b))


def test_fft_tiles_give_the_whole_pictures_bytes():
    rng = np.random.default_rng(4)
    x = rng.random((1000, 650)).astype(np.float32)
    w = rng.standard_normal((21, 17))
    bh, bw = plan.plan_filter(w, np.float32).block
    whole = ops.conv2d(x, w, padding="same")
    o0, o1, p0, p1 = bh, 2 * bh, bw, 650
    assert o1 + 10 < 1000 and p0 < 650
    # as the tiled path cuts it: the windows' rows and columns, zero padding past the
    # picture's edge on both sides, and where its first output lies in the whole
    region = x[o0 - 10 : o1 + 10, p0 - 16 :]
    tile = ops.conv2d(region, w, padding=(0, 8), origin=(o0, p0 - 16))
    assert tile[:, 16:].tobytes() == whole[o0:o1, p0:p1].tobytes()
    # the same tile anchored elsewhere on the grid is computed from other windows
    moved = ops.conv2d(region, w, padding=(0, 8), origin=(o0 + 1, p0 - 16))
    assert moved.tobytes() != tile.tobytes()


def test_fft_blocks_with_nan_go_direct():
    rng = np.random.default_rng(6)
    x = rng.random((300, 300)).astype(np.float32)
    w = rng.standard_normal((15, 15))
    clean = ops.conv2d(x, w, padding="same")
    x[100, 200] = np.nan
    got = ops.conv2d(x, w, padding="same")
    hit = np.zeros_like(got, dtype=bool)
    hit[93:108, 193:208] = True
    assert np.array_equal(np.isnan(got), hit)
    # the NaN's block was filtered directly: its other pixels are still right
    assert np.abs(got[~hit] - clean[~hit]).max() <= 1e-5 * np.abs(w).sum()


# ---------------------------------------------------------------- running sums


def test_box_sums_do_not_drift_on_a_long_picture():
    """One row of 20000 pixels with a large offset: restarts keep the error at rounding."""
    rng = np.random.default_rng(8)
    x = (1000 + rng.random((40, 20000))).astype(np.float32)
    w = box_kernel(33, 31)
    got = ops.conv2d(x, w, padding="same")
    # scipy in float64 (the naive loop would take hours here); 'same' centres as
    # convtool does for odd sizes
    want = ndi.correlate(x.astype(np.float64), w.astype(np.float64), mode="constant")
    assert np.abs(got - want).max() <= 2e-6 * np.abs(w).sum() * np.abs(x).max()


def test_box_non_finite_values_stay_in_their_windows():
    rng = np.random.default_rng(9)
    x = rng.random((200, 230)).astype(np.float32)
    x[100, 60], x[10, 10], x[150, 150], x[150, 152] = np.nan, np.inf, np.inf, -np.inf
    w = box_kernel(31, 29)
    assert plan.plan_filter(w, np.float32).path == "box"
    got = ops.conv2d(x, w, padding="same", b=0.5)
    want = direct(x, w, "same", (1, 1)) + np.float32(0.5)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.array_equal(np.isinf(got), np.isinf(want)) and np.isinf(got).any()
    finite = np.isfinite(want)
    assert np.abs(got[finite] - want[finite]).max() <= 1e-6


# ---------------------------------------------------------------- channel pairs


def mixed_kernel() -> np.ndarray:
    """(2, 3, 15, 15): Gaussians, a box, a difference of Gaussians and a full-rank pair."""
    w = np.stack([np.stack([gaussian_kernel(15, 1 + o + c) for c in range(3)]) for o in range(2)])
    w[0, 1] = box_kernel(15)
    w[1, 0] = dog(15)
    w[1, 2] = np.random.default_rng(12).standard_normal((15, 15))
    return w


def test_channel_pairs_on_their_own_paths():
    w = mixed_kernel()
    found = plan.plan_channels(w, np.float32)
    assert found.path == "channels"
    assert found.describe() == "per channel pair: fft, low-rank 2, separable"
    assert found.block == (int(np.lcm(370, 2)), 370)  # every pair's blocks tile it
    # full-rank 5x5 pairs (a CNN layer's) stay direct: no pair can pay
    assert plan.plan_channels(np.random.default_rng(1).random((4, 3, 5, 5)), np.float32).path == (
        "direct"
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_channel_pairs_match_the_naive_loop(dtype):
    w = mixed_kernel()
    x = np.random.default_rng(13).random((2, 3, 33, 40))
    b = np.array([0.25, -1.0])
    scale = np.abs(w).sum(axis=(1, 2, 3)).max() * np.abs(x).max()
    tol = (1e-6 if dtype == np.float32 else 1e-12) * scale
    for stride, padding in (((1, 1), 7), ((2, 1), (3, 9)), ((1, 3), 0)):
        got = ops.conv2d(x.astype(dtype), w, b, stride=stride, padding=padding)
        ph, pw = (padding, padding) if isinstance(padding, int) else padding
        want = naive.conv2d(x, w, b, stride, (ph, ph, pw, pw))
        assert got.dtype == dtype and np.abs(got - want).max() <= tol


@pytest.mark.parametrize(
    ("shape", "stride", "path"),
    [
        ((128, 64, 3, 3), 1, "winograd4"),  # VGG's conv2_1, conv3_1
        ((256, 128, 3, 3), 1, "winograd4"),
        ((256, 256, 3, 3), 1, "winograd"),  # conv4_2: F(4x4)'s kernels cost more
        ((64, 3, 3, 3), 1, "blocked"),  # VGG conv1_1: too few input channels for BLAS
        ((192, 64, 5, 5), 1, "blocked"),  # AlexNet conv2: weights in L1 by passes
        ((64, 3, 7, 7), 2, "blocked"),  # ResNet conv1: im2col's strided copy
        ((128, 64, 3, 3), 2, "blocked"),  # a stride: no Winograd
        ((256, 64, 1, 1), 1, "gemm"),  # a 1x1: one product
        ((16, 6, 5, 5), 1, "blocked"),  # LeNet conv2: few output channels
        ((16, 16, 3, 3), 1, "blocked"),
        ((8, 3, 3, 3), 1, "direct"),  # half a block of output channels
        ((3, 3, 3, 3), 1, "direct"),  # a colour picture's filter
        ((1, 1, 31, 31), 1, "direct"),  # one pair: plan_filter's
        ((1, 1, 1, 1), 2, "direct"),
    ],
)
def test_layer_choices(shape, stride, path):
    """The cheapest of every path (F(4x4, 3x3) included: $CONVTOOL_WINOGRAD4=1)."""
    assert plan.plan_layer(shape, (stride, stride), plan.ALL_LAYER_PATHS) == path
    costs = plan.layer_costs(shape, (stride, stride))
    if shape[0] * shape[1] > 1:
        assert min(costs, key=costs.get) == path


def test_winograd4_is_planned_only_where_asked_for():
    """F(4x4, 3x3)'s float32 error is past float32 rounding: by default VGG's conv2_1
    takes F(2x2, 3x3); with CONVTOOL_WINOGRAD4=1, F(4x4)."""
    assert "winograd4" not in plan.LAYER_PATHS
    assert plan.plan_layer((128, 64, 3, 3)) == "winograd"
    code = "from convtool.core import plan; print(plan.plan_layer((128, 64, 3, 3)))"
    env = {**os.environ, "CONVTOOL_WINOGRAD4": "1"}
    said = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert said.stdout.strip() == "winograd4", said.stderr


def test_the_backward_chooses_between_the_direct_and_gemm_paths_alone():
    """The Winograd path is the forward's only; a layer it takes runs its backward on
    the cheaper of the other two, and the Winograd plan works in 2x2 output blocks."""
    shape = (128, 64, 3, 3)
    assert plan.plan_layer(shape, (1, 1), ("direct", "gemm")) == "gemm"
    assert plan.plan_layer((16, 16, 3, 3), (1, 1), ("direct", "gemm")) == "direct"
    deep = plan.gemm_plan(shape, paths=plan.ALL_LAYER_PATHS)
    assert deep.path == "winograd4" and deep.block == (4, 4)
    assert plan.gemm_plan(shape).block == (2, 2)
    deeper = plan.gemm_plan((256, 256, 3, 3))
    assert deeper.path == "winograd" and deeper.block == (2, 2)
    assert not plan.winograd_fits(shape, (2, 1)) and not plan.winograd_fits((8, 8, 3, 5), (1, 1))


@pytest.mark.parametrize(
    ("shape", "stride", "paths"),
    [
        ((16, 6, 5, 5), 1, ("blocked", "direct")),  # LeNet: 6 input channels, a third of a block
        ((16, 16, 3, 3), 1, ("blocked", "blocked")),
        ((64, 3, 3, 3), 1, ("gemm", "gemm")),  # VGG conv1_1: 3 input channels
        ((64, 3, 7, 7), 2, ("gemm", "gemm")),  # ResNet conv1: a stride's spread gradient
        ((128, 64, 3, 3), 1, ("gemm", "winograd")),  # VGG conv2_1: the turned layer's path
        ((128, 64, 3, 3), 2, ("gemm", "gemm")),
        ((192, 64, 5, 5), 1, ("gemm", "gemm")),  # AlexNet conv2: no Winograd for 5x5
        ((3, 3, 3, 3), 1, ("direct", "direct")),
        ((1, 1, 5, 5), 1, ("direct", "direct")),
    ],
)
def test_backward_choices(shape, stride, paths):
    """Both gradients from one im2col (GEMM), or each on its own path; the input
    gradient on the blocked path at stride 1 alone, and beside GEMM's kernel gradient on
    the Winograd path that its turned layer takes forward (the compiled core's plans
    too)."""
    assert plan.plan_backward(shape, (stride, stride)) == paths
    if paths[0] == "gemm":
        assert plan.plan_backward(shape, (stride, stride), blocked=False) == paths
    assert plan.plan_backward((16, 16, 3, 3), (2, 2))[1] != "blocked"


def test_the_compiled_core_plans_without_the_blocked_path(monkeypatch):
    """The compiled core's blocks may be built for a generic CPU, and the JIT's spill on a
    CPU without AVX-512: those keep the paths they had (the GEMM path for ResNet's conv1,
    the direct one for LeNet's backward)."""
    from convtool.core import engine

    compiled = engine.compiled(build_missing=False)
    assert compiled is None or not compiled.blocks_fit()
    monkeypatch.setitem(engine._HOST, "wide", True)
    assert "blocked" in plan.paths_for(engine.jit())
    monkeypatch.setitem(engine._HOST, "wide", False)
    paths = plan.paths_for(engine.jit())
    assert "blocked" not in paths and set(paths) == set(plan.LAYER_PATHS) - {"blocked"}
    assert plan.plan_layer((64, 3, 7, 7), (2, 2), paths) == "gemm"
    assert plan.plan_backward((16, 6, 5, 5), (1, 1), blocked=False) == ("direct", "direct")
    assert plan.plan_backward((64, 3, 7, 7), (2, 2), blocked=False) == ("gemm", "gemm")


def test_the_filters_plan_names_the_gemm_path_for_deep_weights():
    """What ``apply --verbose`` says and what the engine is chosen by: the GEMM path, at
    its cost per channel pair, below the direct path's taps."""
    from convtool.filtering.correlate import Prepared, plan_of

    w = np.random.default_rng(3).standard_normal((256, 64, 1, 1))
    found = plan_of(Prepared(w, "deep"), channels=64)
    assert found.path == "gemm" == found.describe()
    assert 0 < found.taps < 9
    assert plan.gemm_plan((3, 3, 3, 3)) is None  # a colour filter stays direct
