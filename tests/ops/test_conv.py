"""conv2d and conv2d_backward against independent references: naive loops, scipy,
finite differences and the chapter's worked cases."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import signal

import convtool as ct
from convtool.core import engine, gemm, tasks, winograd
from convtool.core.plan import plan_layer
from convtool.ops import conv as conv_module
from convtool.shapes import resolve_padding
from tests import naive

PATHS = ("direct", "gemm", "winograd", "winograd4", "blocked")  # winograd: 3x3, stride 1
WINOGRAD = ("winograd", "winograd4")  # F(2x2, 3x3) and F(4x4, 3x3); else the GEMM path


@contextlib.contextmanager
def forced(path):
    """Run conv2d and conv2d_backward on ``path`` whatever the planner would choose
    (None: the planner's choice); for a Winograd path, the backward's kernel gradient on
    the GEMM path and its input gradient on ``path`` (where the layer fits it)."""
    backward = ("gemm", path) if path in WINOGRAD else (path, path)
    with pytest.MonkeyPatch.context() as mp:
        if path is not None:
            mp.setattr(conv_module, "plan_layer", lambda *args: path)
            mp.setattr(conv_module, "plan_backward", lambda *args: backward)
        yield


# ---------------------------------------------------------------- strategies


@st.composite
def conv_cases(draw, max_side=9):
    """A random conv problem: batch 1-3, 1-4 channels in/out, strides 1-3, paddings 0-2."""
    n = draw(st.integers(1, 3))
    c_in, c_out = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    h = draw(st.integers(max(1, kh - 2 * ph), max_side))
    w = draw(st.integers(max(1, kw - 2 * pw), max_side))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c_in, h, w))
    k = rng.standard_normal((c_out, c_in, kh, kw))
    b = rng.standard_normal(c_out)
    return x, k, b, (sh, sw), (ph, pw)


# ---------------------------------------------------------------- forward


@settings(deadline=None, max_examples=120)
@given(conv_cases(), st.sampled_from(PATHS))
def test_conv2d_matches_naive_loop(case, path):
    x, k, b, s, p = case
    with forced(path):
        got = ct.conv2d(x, k, b, stride=s, padding=p)
    want = naive.conv2d(x, k, b, s, (p[0], p[0], p[1], p[1]))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


@settings(deadline=None, max_examples=60)
@given(conv_cases(max_side=12), st.booleans())
def test_conv2d_single_channel_matches_scipy(case, flip):
    x, k, _, _, p = case
    x2, k2 = x[0, 0], k[0, 0]
    got = ct.conv2d(x2, k2, padding=p, flip=flip)
    padded = np.pad(x2, ((p[0], p[0]), (p[1], p[1])))
    ref = signal.convolve2d if flip else signal.correlate2d
    np.testing.assert_allclose(got, ref(padded, k2, mode="valid"), rtol=1e-10, atol=1e-10)


@settings(deadline=None, max_examples=60)
@given(conv_cases(), st.booleans(), st.sampled_from(PATHS))
def test_same_padding_size_and_split(case, float32, path):
    x, k, b, s, _ = case
    if float32:
        x, k = x.astype(np.float32), k.astype(np.float32)
    with forced(path):
        got = ct.conv2d(x, k, b, stride=s, padding="same")
    h, w = x.shape[2:]
    assert got.shape[2:] == (-(-h // s[0]), -(-w // s[1]))
    # the padding total split with the extra row/column after, as torch and TensorFlow
    kh, kw = k.shape[2:]
    th = max((got.shape[2] - 1) * s[0] + kh - h, 0)
    tw = max((got.shape[3] - 1) * s[1] + kw - w, 0)
    want = naive.conv2d(x, k, b, s, (th // 2, th - th // 2, tw // 2, tw - tw // 2))
    tol = 1e-4 if float32 else 1e-10
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_multi_in_single_out_is_sum_over_channels():
    """Figure 17-7's 3-in, 1-out filter: the per-channel correlations summed."""
    rng = np.random.default_rng(1)
    x = rng.random((3, 12, 10))
    k = rng.standard_normal((3, 3))
    summed = sum(signal.correlate2d(x[c], k, mode="valid") for c in range(3))
    got = ct.conv2d(x, np.stack([k] * 3)[None])
    assert got.shape == (1, 10, 8)
    np.testing.assert_allclose(got[0], summed, atol=1e-12)


# ---------------------------------------------------------------- the chapter's worked cases


def test_chapter_4x4_with_3x3_gives_2x2():
    x = np.arange(1.0, 17.0).reshape(4, 4)
    k = np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], dtype=float)
    got = ct.conv2d(x, k)
    assert got.shape == (2, 2)
    # by hand: 5*6 - (2 + 5 + 7 + 10) = 6, and the same for every window of this ramp
    np.testing.assert_array_equal(got, [[6.0, 7.0], [10.0, 11.0]])


def test_chapter_5x5_stride_2_gives_2x2():
    x = np.arange(25.0).reshape(5, 5)
    got = ct.conv2d(x, np.ones((3, 3)), stride=2)
    assert got.shape == (2, 2)
    np.testing.assert_array_equal(got, [[54.0, 72.0], [144.0, 162.0]])


def test_chapter_4x4_padding_1_gives_4x4():
    got = ct.conv2d(np.ones((4, 4)), np.ones((3, 3)), padding=1)
    assert got.shape == (4, 4)
    np.testing.assert_array_equal(got, [[4, 6, 6, 4], [6, 9, 9, 6], [6, 9, 9, 6], [4, 6, 6, 4]])


def test_chapter_10x8_with_5x5_input_gradient_needs_padding_4():
    """17.3.1: Z (6x4) = A (10x8) * W (5x5); delta_a = pad(delta_z, 4) (14x12) * rot180(W)."""
    rng = np.random.default_rng(2)
    a, w = rng.standard_normal((10, 8)), rng.standard_normal((5, 5))
    z = ct.conv2d(a, w)
    assert z.shape == (6, 4)
    dz = rng.standard_normal((6, 4))
    padded = np.pad(dz, 4)
    assert padded.shape == (14, 12)
    by_chapter = signal.correlate2d(padded, w[::-1, ::-1], mode="valid")
    grad_a, _, _ = ct.conv2d_backward(a, w, dz)
    assert grad_a.shape == (10, 8)
    np.testing.assert_allclose(grad_a, by_chapter, atol=1e-12)


def test_chapter_formula_7_gradient_of_the_centre_pixel():
    """17.3.1 formula 7: dJ/da22 = dz11*w22 + dz12*w21 + dz21*w12 + dz22*w11."""
    a = np.arange(9.0).reshape(3, 3)
    w = np.array([[1.0, 2.0], [3.0, 4.0]])
    dz = np.array([[0.5, -1.0], [2.0, 3.0]])
    grad_a, _, _ = ct.conv2d_backward(a, w, dz)
    assert grad_a[1, 1] == 0.5 * 4 + -1.0 * 3 + 2.0 * 2 + 3.0 * 1
    assert grad_a[0, 0] == 0.5 * 1  # formula 5
    assert grad_a[0, 1] == 0.5 * 2 + -1.0 * 1  # formula 6


def test_chapter_stride_2_gradient_spreads_zeros():
    """17.3.2: a stride-2 gradient equals the stride-1 gradient of the zero-spread delta."""
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((7, 7)), rng.standard_normal((3, 3))
    dz = rng.standard_normal((3, 3))
    spread = np.zeros((5, 5))
    spread[::2, ::2] = dz
    gx2, gw2, _ = ct.conv2d_backward(x, w, dz, stride=2)
    gx1, gw1, _ = ct.conv2d_backward(x, w, spread, stride=1)
    np.testing.assert_allclose(gx2, gx1, atol=1e-12)
    np.testing.assert_allclose(gw2, gw1, atol=1e-12)


# ---------------------------------------------------------------- backward


@settings(deadline=None, max_examples=60)
@given(conv_cases(max_side=6), st.booleans(), st.sampled_from(PATHS))
def test_conv2d_backward_matches_finite_differences(case, flip, path):
    with forced(path):
        _check_backward_by_finite_differences(case, flip)


def _check_backward_by_finite_differences(case, flip):
    x, k, b, s, p = case
    y = ct.conv2d(x, k, b, stride=s, padding=p, flip=flip)
    g = np.random.default_rng(0).standard_normal(y.shape)

    def loss_x(xx):
        return float(np.sum(g * ct.conv2d(xx, k, b, stride=s, padding=p, flip=flip)))

    def loss_w(kk):
        return float(np.sum(g * ct.conv2d(x, kk, b, stride=s, padding=p, flip=flip)))

    def loss_b(bb):
        return float(np.sum(g * ct.conv2d(x, k, bb, stride=s, padding=p, flip=flip)))

    gx, gw, gb = ct.conv2d_backward(x, k, g, stride=s, padding=p, flip=flip)
    np.testing.assert_allclose(gx, naive.numeric_grad(loss_x, x), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(gw, naive.numeric_grad(loss_w, k), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(gb, naive.numeric_grad(loss_b, b), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("path", PATHS)
def test_conv2d_backward_same_padding_even_kernel(path):
    rng = np.random.default_rng(4)
    x, k = rng.standard_normal((1, 2, 7, 6)), rng.standard_normal((3, 2, 4, 2))
    g = rng.standard_normal(ct.conv2d(x, k, stride=2, padding="same").shape)

    def loss(xx):
        return float(np.sum(g * ct.conv2d(xx, k, stride=2, padding="same")))

    def loss_w(kk):
        return float(np.sum(g * ct.conv2d(x, kk, stride=2, padding="same")))

    with forced(path):
        gx, gw, _ = ct.conv2d_backward(x, k, g, stride=2, padding="same")
        np.testing.assert_allclose(gx, naive.numeric_grad(loss, x), atol=1e-6)
        np.testing.assert_allclose(gw, naive.numeric_grad(loss_w, k), atol=1e-6)


@pytest.mark.parametrize("path", WINOGRAD)
@pytest.mark.parametrize("padding", [0, 1, 2, "same", (2, 0), 3])
def test_the_input_gradient_on_winograd_gives_the_gemm_paths(path, padding):
    """The backward of a 3x3 layer at stride 1 on ('gemm', 'winograd'): the kernel
    gradient's product alone, the input gradient the turned layer forward on the Winograd
    path (a padding past the kernel's on the direct path), within float32 rounding of both
    gradients from GEMM; the same bytes on one thread and on two (the product's columns
    on the engine's threads); a non-finite incoming gradient spreads as on GEMM."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 24, 13, 17)).astype(np.float32)
    w = (rng.standard_normal((40, 24, 3, 3)) / 15).astype(np.float32)
    g = rng.standard_normal(ct.conv2d(x, w, padding=padding).shape).astype(np.float32)
    g_bad = g.copy()
    g_bad[1, 3, 4, 5] = np.nan
    want, want_bad = (ct.conv2d_backward(x, w, gg, padding=padding) for gg in (g, g_bad))
    before = tasks.threads()
    got = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(conv_module, "plan_backward", lambda *args: ("gemm", path))
        mp.setattr(engine, "JIT_THREADED_WORK", 0)
        try:
            for threads in (1, 2):
                tasks.use_threads(threads)
                got[threads] = ct.conv2d_backward(x, w, g, padding=padding)
            bad = ct.conv2d_backward(x, w, g_bad, padding=padding)
        finally:
            tasks.use_threads(before)
    for a, b in zip(got[1], got[2], strict=True):
        np.testing.assert_array_equal(a, b)
    tol = 2e-6 if path == "winograd" else 1e-5
    for a, b in zip(got[2], want, strict=True):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * np.abs(b).max())
    for a, b in zip(bad, want_bad, strict=True):
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_bias_gradient_sums_each_plane_in_float64(dtype):
    """The bias gradient: each plane of the incoming gradient summed in float64 (one plane
    a task), the pictures' sums added in order: numpy's float64 sum rounded, the same
    bytes on one thread and two; a NaN stays in its channel."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 2, 40, 33)).astype(dtype)
    w = rng.standard_normal((5, 2, 3, 3)).astype(dtype)
    g = (rng.standard_normal((3, 5, 38, 31)) * 1e3).astype(dtype)
    g[1, 4, 7, 9] = np.nan
    want = g.astype(np.float64).sum(axis=(0, 2, 3)).astype(dtype)
    before = tasks.threads()
    got = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(engine, "JIT_THREADED_WORK", 0)
        try:
            for threads in (1, 2):
                tasks.use_threads(threads)
                got.append(ct.conv2d_backward(x, w, g)[2])
        finally:
            tasks.use_threads(before)
    np.testing.assert_array_equal(got[0], got[1])
    np.testing.assert_allclose(got[0], want, rtol=1e-6 if dtype == np.float32 else 1e-13)
    assert np.isnan(got[0]).tolist() == [False, False, False, False, True]


def test_backward_gradients_accumulate_over_the_batch_without_averaging():
    rng = np.random.default_rng(5)
    x, k = rng.standard_normal((3, 1, 5, 5)), rng.standard_normal((1, 1, 3, 3))
    g = rng.standard_normal((3, 1, 3, 3))
    _, gw, gb = ct.conv2d_backward(x, k, g)
    parts = [ct.conv2d_backward(x[i : i + 1], k, g[i : i + 1]) for i in range(3)]
    np.testing.assert_allclose(gw, sum(p[1] for p in parts), atol=1e-12)
    np.testing.assert_allclose(gb, sum(p[2] for p in parts), atol=1e-12)


# ---------------------------------------------------------------- the GEMM path's blocks


def _reference(x, w, b, stride, pad):
    """The layer in float64 by numpy's sliding windows and einsum (no loops of ours)."""
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    kh, kw = w.shape[2:]
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
    win = win[:, :, :: stride[0], :: stride[1]]
    return np.einsum("ncijab,ocab->noij", win, w.astype(np.float64)) + b[None, :, None, None]


@settings(deadline=None, max_examples=40)
@given(conv_cases(max_side=11), st.sampled_from([8, 40, 300]))
def test_gemm_blocks_of_rows_and_of_pictures_give_the_same_layer(case, block):
    """Tiny blocks cut the pictures into bands of rows (or take several small pictures
    at once); every cut gives the naive loop's layer and gradients."""
    x, k, b, s, p = case
    g = np.random.default_rng(1).standard_normal(ct.conv2d(x, k, stride=s, padding=p).shape)
    with pytest.MonkeyPatch.context() as mp, forced("gemm"):
        mp.setattr(gemm, "BLOCK", block)
        got = ct.conv2d(x, k, b, stride=s, padding=p)
        gx, gw, gb = ct.conv2d_backward(x, k, g, stride=s, padding=p)
    want = naive.conv2d(x, k, b, s, (p[0], p[0], p[1], p[1]))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    with forced("direct"):
        wx, ww, wb = ct.conv2d_backward(x, k, g, stride=s, padding=p)
    np.testing.assert_allclose(gx, wx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(gw, ww, rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(gb, wb)


LAYERS = [  # (N, C_in, size, C_out, k, stride, padding): small cousins of real layers
    (1, 3, 30, 64, 3, 1, 1),
    (1, 32, 17, 48, 3, 1, 1),
    (2, 16, 15, 40, 5, 1, 2),
    (1, 3, 33, 16, 7, 2, 3),
    (1, 24, 16, 32, 3, 2, 1),
    (2, 24, 12, 64, 1, 1, 0),
    (2, 48, 10, 16, 1, 1, 0),  # 1x1 to fewer channels: the bias added after the product
    (1, 8, 13, 16, 1, 2, 0),
    (4, 6, 14, 16, 5, 1, 0),
]


@pytest.mark.parametrize("path", [None, *PATHS])
@pytest.mark.parametrize("layer", LAYERS)
def test_float32_layers_are_within_rounding_on_every_path(layer, path):
    """Each path, and the planner's choice, within float32 rounding of the layer in
    float64, forward and backward (the gradients as finite differences cannot reach
    this size: by einsum again)."""
    n, c_in, size, c_out, ks, stride, pad = layer
    rng = np.random.default_rng(size)
    x = rng.standard_normal((n, c_in, size, size)).astype(np.float32)
    w = (rng.standard_normal((c_out, c_in, ks, ks)) / ks / np.sqrt(c_in)).astype(np.float32)
    b = rng.standard_normal(c_out).astype(np.float32)
    with forced(path):
        y = ct.conv2d(x, w, b, stride=stride, padding=pad)
        g = rng.standard_normal(y.shape).astype(np.float32)
        gx, gw, gb = ct.conv2d_backward(x, w, g, stride=stride, padding=pad)
    want = _reference(x, w, b, (stride, stride), pad)
    assert y.dtype == gx.dtype == gw.dtype == gb.dtype == np.float32
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    # grad_w[o, c, a, b] = sum g[n, o, i, j] x_padded[n, c, i*s + a, j*s + b]
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (ks, ks), axis=(2, 3))
    win = win[:, :, ::stride, ::stride][:, :, : y.shape[2], : y.shape[3]]
    want_w = np.einsum("ncijab,noij->ocab", win, g.astype(np.float64))
    np.testing.assert_allclose(gw, want_w, rtol=1e-5, atol=1e-5 * np.abs(want_w).max())
    # grad_x: each tap's products scattered back onto the padded grid, then cropped
    gxp = np.zeros_like(xp)
    h_out, w_out = y.shape[2:]
    for a in range(ks):
        for bb in range(ks):
            rows = slice(a, a + (h_out - 1) * stride + 1, stride)
            cols = slice(bb, bb + (w_out - 1) * stride + 1, stride)
            gxp[:, :, rows, cols] += np.einsum("noij,oc->ncij", g, w[:, :, a, bb])
    want_x = gxp[:, :, pad : pad + size, pad : pad + size]
    np.testing.assert_allclose(gx, want_x, rtol=1e-5, atol=1e-5 * np.abs(want_x).max())
    np.testing.assert_allclose(gb, g.sum(axis=(0, 2, 3), dtype=np.float64), rtol=1e-6)


@pytest.mark.parametrize("stride", [1, 2])
def test_non_finite_pixels_stay_in_their_windows_on_every_path(stride):
    """A NaN (and an inf) in the picture spoils exactly the outputs whose windows hold it,
    forward and backward (zero padding adds no NaN): as the layer in float64 by einsum."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 8, 12, 11)).astype(np.float32)
    x[0, 3, 5, 4] = np.nan
    x[1, 0, 0, 10] = np.inf
    w = rng.standard_normal((40, 8, 3, 3)).astype(np.float32)
    want = _reference(x, w, np.zeros(40), (stride, stride), 1)
    g = np.ones(want.shape, dtype=np.float32)
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))
    win = win[:, :, ::stride, ::stride][:, :, : want.shape[2], : want.shape[3]]
    with np.errstate(invalid="ignore"):
        want_w = np.einsum("ncijab,noij->ocab", win, g.astype(np.float64))
    found = {}
    for path in PATHS:
        with forced(path):
            found[path] = ct.conv2d(x, w, stride=stride, padding=1)
            found[path, "x"], found[path, "w"], _ = ct.conv2d_backward(
                x, w, g, stride=stride, padding=1
            )
    # the Winograd path declines a picture with a non-finite pixel: the GEMM path runs it
    checked = [(found[p], want) for p in ("gemm", *WINOGRAD, "blocked")]
    checked += [(found[p, "w"], want_w) for p in ("gemm", "blocked")]
    for got, expected in checked:
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(expected))
    # the direct path reaches past the windows with zero weights (a column stride's
    # phases, the kernel gradient's lines): a non-finite pixel there gives NaN, so it
    # holds every NaN the layer has, and may add some beside them
    for key, expected in [(None, want), ("w", want_w)]:
        got = found["direct"] if key is None else found["direct", key]
        assert not (np.isnan(expected) & ~np.isnan(got)).any()


# ---------------------------------------------------------------- the register-blocked path


def test_the_blocked_paths_constants_are_its_kernels():
    """The numpy side's copies of the kernels' block sizes (they import numba)."""
    from convtool.core import blocked, conv_block, plan

    assert (blocked.CHANNELS, blocked.PIXELS, blocked.SUMS) == (
        conv_block.CHANNELS,
        conv_block.PIXELS,
        conv_block.SUMS,
    )
    assert plan.BLOCKED_CHANNELS == blocked.CHANNELS == conv_block.LANES * conv_block.VECTORS
    assert blocked.ROW_CHANNELS == conv_block.ROW_CHANNELS


def test_blocked_tiles_give_the_whole_pictures_bytes():
    """Each output pixel's sum runs over its taps in one order whatever the tile: a tile
    gives the whole's bytes, wherever it starts (odd sizes, partial blocks)."""
    rng = np.random.default_rng(14)
    x = rng.standard_normal((2, 3, 23, 29)).astype(np.float32)
    w = rng.standard_normal((20, 3, 5, 5)).astype(np.float32)
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    with forced("blocked"):
        whole = ct.conv2d(x, w, padding=2)
        for (r0, r1), (c0, c1) in [((3, 9), (5, 18)), ((0, 23), (1, 8)), ((20, 23), (0, 29))]:
            got = ct.conv2d(padded[:, :, r0 : r1 + 4, c0 : c1 + 4], w)
            np.testing.assert_array_equal(got, whole[:, :, r0:r1, c0:c1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("c_in, c_out", [(71, 64), (130, 16), (121, 48)])
def test_deep_blocked_layers_run_their_taps_in_passes_to_the_naive_layer(c_in, c_out, dtype):
    """A layer whose weights pass PASS_BYTES runs its taps in passes over each row, the
    sums kept between them: the naive loop's layer all the same (blocks of 1 and 2 vectors,
    passes of uneven lengths, a stride, both float types)."""
    from convtool.core import blocked, conv_block

    rng = np.random.default_rng(c_in)
    x = rng.standard_normal((2, c_in, 11, 13)).astype(dtype)
    w = rng.standard_normal((c_out, c_in, 3, 3)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    taps, width = c_in * 9, blocked.block_channels(c_out)
    assert taps * width * x.itemsize > 2 * conv_block.PASS_BYTES  # three passes or more
    for stride in (1, 2):
        with forced("blocked"):
            got = ct.conv2d(x, w, b, stride=stride, padding=1)
        want = naive.conv2d(x, w, b, (stride, stride), (1, 1, 1, 1))
        tol = 1e-4 if dtype == np.float32 else 1e-10
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())


@pytest.mark.parametrize("rows_of_pixels", [False, True])
@pytest.mark.parametrize("parts", [2, 3, 8])
@pytest.mark.parametrize("c_out, rows", [(96, 5), (40, 9), (64, 200)])
def test_blocked_shares_give_the_whole_calls_bytes(c_out, rows, parts, rows_of_pixels):
    """However a forward call is cut into shares (by rows, or by rows and blocks of
    channels where there are few rows a share), its shares together give the bytes of
    the call run whole, in blocks of channels or of a row's pixels."""
    from convtool.core import blocked, conv_block

    rng = np.random.default_rng(rows)
    x = rng.standard_normal((2, 7, rows + 2, 19)).astype(np.float32)
    w = rng.standard_normal((c_out, 7, 3, 3)).astype(np.float32)
    width = blocked.ROW_CHANNELS if rows_of_pixels else blocked.block_channels(c_out)
    wv = blocked.layout(w, x.dtype, width)
    bias = rng.standard_normal(wv.shape[0] * wv.shape[2]).astype(np.float32)
    whole = np.full((2, c_out, rows + 2, 19), np.nan, np.float32)
    shared = whole.copy()
    conv_block.conv2d_blocked(x, wv, bias, whole, 3, 3, 1, 1, 1, 1, 0, 1)
    for part in range(parts):
        conv_block.conv2d_blocked(x, wv, bias, shared, 3, 3, 1, 1, 1, 1, part, parts)
    assert not np.isnan(whole).any()
    np.testing.assert_array_equal(shared, whole)


@given(
    n=st.integers(1, 2),
    c_in=st.integers(1, 6),
    c_out=st.integers(1, 20),
    height=st.integers(1, 6),
    w_out=st.integers(12, 70),
    k=st.tuples(st.integers(1, 4), st.integers(1, 5)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 4)),
    pad=st.tuples(st.integers(0, 2), st.integers(0, 3)),
    seed=st.integers(0, 2**32 - 1),
)
@settings(max_examples=60, deadline=None)
def test_blocked_rows_of_pixels_give_the_naive_layer(n, c_in, c_out, height, w_out, k, stride,
                                                     pad, seed):  # fmt: skip
    """Blocks of a row's pixels (the rows' ends in fewer vectors, the last one masked;
    channels past C_out unwritten; column strides' runs; padding, row strides, kernels
    wider than tall): the naive loop's layer, on one thread and on two."""
    from convtool.core import blocked

    (kh, kw), (sh, sw), (ph, pw) = k, stride, pad
    width = (w_out - 1) * sw + kw - 2 * pw
    assume(width >= 1 and height + 2 * ph >= kh)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c_in, height, width)).astype(np.float32)
    w = rng.standard_normal((c_out, c_in, kh, kw)).astype(np.float32)
    b = rng.standard_normal(c_out).astype(np.float32)
    assert blocked.block_width(w.shape, x.dtype, sw, w_out) == blocked.ROW_CHANNELS
    want = naive.conv2d(x, w, b, (sh, sw), (ph, ph, pw, pw))
    before = tasks.threads()
    for threads in (1, 2):
        with forced("blocked"), pytest.MonkeyPatch.context() as mp:
            mp.setattr(engine, "JIT_THREADED_WORK", 0)  # two threads even for small calls
            tasks.use_threads(threads)
            try:
                got = ct.conv2d(x, w, b, stride=(sh, sw), padding=(ph, pw))
            finally:
                tasks.use_threads(before)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_blocked_rows_of_pixels_write_nothing_past_the_output():
    """A row's last vector is stored masked: the bytes after the output's last row (where
    another thread's rows may lie) stay as they were."""
    from convtool.core import blocked, conv_block

    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 3, 5, 21)).astype(np.float32)
    w = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    wv = blocked.layout(w, x.dtype, blocked.ROW_CHANNELS)
    bias = np.zeros(wv.shape[0] * wv.shape[2], np.float32)
    store = np.full(5 * 5 * 21 + 64, np.nan, np.float32)
    out = store[: 5 * 5 * 21].reshape(1, 5, 5, 21)
    conv_block.conv2d_blocked(x, wv, bias, out, 3, 3, 1, 1, 1, 1, 0, 1)
    assert np.isfinite(out).all()
    assert np.isnan(store[out.size :]).all()


def test_blocked_rows_of_pixels_are_taken_where_they_run_faster():
    """Float32 layers of few taps and rows of ROW_PIXELS and more take blocks of a row's
    pixels (VGG's conv1_1, ResNet's conv1, the foundation layer); LeNet's short rows, deep
    layers and float64 blocks of channels."""
    from convtool.core import blocked

    f32, f64 = np.float32, np.float64
    assert blocked.block_width((64, 3, 3, 3), f32, 1, 224) == blocked.ROW_CHANNELS
    assert blocked.block_width((64, 3, 7, 7), f32, 2, 112) == blocked.ROW_CHANNELS
    assert blocked.block_width((16, 16, 3, 3), f32, 1, 128) == blocked.ROW_CHANNELS
    assert blocked.block_width((16, 6, 5, 5), f32, 1, 10) == blocked.CHANNELS
    assert blocked.block_width((128, 64, 3, 3), f32, 2, 28) == 2 * blocked.CHANNELS
    assert blocked.block_width((64, 3, 3, 3), f64, 1, 224) == 2 * blocked.CHANNELS


# ---------------------------------------------------------------- the Winograd path


@st.composite
def winograd_cases(draw, max_side=13):
    """A 3x3 layer at stride 1: batch 1-4, 1-9 channels in/out, any padding, odd sizes."""
    n = draw(st.integers(1, 4))
    c_in, c_out = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    padding = draw(st.sampled_from([0, 1, 2, "same", "valid", (0, 1), (2, 0)]))
    h, w = draw(st.integers(3, max_side)), draw(st.integers(3, max_side))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((n, c_in, h, w))
    return x, rng.standard_normal((c_out, c_in, 3, 3)), rng.standard_normal(c_out), padding


@settings(deadline=None, max_examples=80)
@given(winograd_cases(), st.sampled_from([1, 3, 7, 1024]), st.booleans(), st.sampled_from(WINOGRAD))
def test_winograd_blocks_give_the_naive_layer(case, tiles, float32, path):
    """Blocks of one tile, of bands of tile rows and of several pictures; every padding,
    odd sizes (a last tile half or three quarters outside); float64 to its rounding,
    float32 to float32's; both tile sizes."""
    x, k, b, padding = case
    if float32:
        x, k, b = (a.astype(np.float32) for a in (x, k, b))
    with pytest.MonkeyPatch.context() as mp, forced(path):
        mp.setattr(winograd, "TILES", tiles)
        got = ct.conv2d(x, k, b, padding=padding)
    h, w = x.shape[2:]
    pt, pb, pl, pr = resolve_padding(padding, (h, w), (3, 3), (1, 1))
    want = naive.conv2d(x.astype(np.float64), k.astype(np.float64), b, (1, 1), (pt, pb, pl, pr))
    # float32: F(2x2)'s error about the GEMM path's; F(4x4)'s transforms multiply by up
    # to 8 and 5 before they cancel (measured up to 3e-6 of max|y| here, 8e-6 on VGG's
    # conv3_1: far inside the 1e-4 bench_layers checks torch's results to)
    tol = (2e-6 if path == "winograd" else 1e-5) if float32 else 1e-12
    assert got.dtype == x.dtype
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())


@pytest.mark.parametrize(
    ("path", "tiles", "off_grid"),
    [
        ("winograd", [((2, 8), (4, 13)), ((0, 15), (6, 10)), ((14, 15), (0, 13))], (3, 1)),
        ("winograd4", [((4, 8), (8, 13)), ((0, 15), (4, 12)), ((12, 15), (0, 13))], (2, 4)),
    ],
)
def test_winograd_tiles_on_the_block_grid_give_the_whole_pictures_bytes(path, tiles, off_grid):
    """A tile of the output starting on the grid of 2x2 (4x4) blocks, of whole blocks or
    ending with the picture, gives the whole's bytes; off the grid it takes the GEMM
    path."""
    rng = np.random.default_rng(12)
    x = rng.standard_normal((1, 24, 17, 15)).astype(np.float32)
    w = rng.standard_normal((32, 24, 3, 3)).astype(np.float32)
    with forced(path):
        whole = ct.conv2d(x, w)  # 15x13
        for (r0, r1), (c0, c1) in tiles:
            tile = ct.conv2d(x[:, :, r0 : r1 + 2, c0 : c1 + 2], w, origin=(r0, c0))
            np.testing.assert_array_equal(tile, whole[:, :, r0:r1, c0:c1])
        r0, c0 = off_grid
        odd = ct.conv2d(x[:, :, r0:12, c0:8], w, origin=off_grid)
    with forced("gemm"):
        np.testing.assert_array_equal(odd, ct.conv2d(x[:, :, r0:12, c0:8], w))


def test_the_planner_takes_winograd4_up_to_its_channel_pairs():
    """F(4x4, 3x3) for the layers of up to WINOGRAD4_PAIRS channel pairs, F(2x2, 3x3)
    past them (its kernels' transform costs less)."""
    from convtool.core import plan

    every = plan.ALL_LAYER_PATHS  # F(4x4) is planned where CONVTOOL_WINOGRAD4=1 asks
    assert plan_layer((64, 64, 3, 3), (1, 1), every) == "winograd4"
    assert plan_layer((256, 128, 3, 3), (1, 1), every) == "winograd4"
    assert plan_layer((256, 256, 3, 3), (1, 1), every) == "winograd"
    assert 256 * 128 <= plan.WINOGRAD4_PAIRS < 256 * 256


def test_winograd_error_is_the_gemm_paths_order():
    """On a VGG-like layer in float32, the products' error against float64 stays within a
    few float32 roundings of max|y| (measured: F(2x2)'s about the GEMM path's, F(4x4)'s
    its transforms' 4 and 8 multiples: 4.8e-6 here, 8e-6 on VGG's conv3_1)."""
    rng = np.random.default_rng(13)
    x = rng.standard_normal((1, 64, 28, 28)).astype(np.float32)
    w = (rng.standard_normal((64, 64, 3, 3)) / 24).astype(np.float32)
    want = _reference(x, w, np.zeros(64), (1, 1), 1)
    scale = np.abs(want).max()
    errors = {}
    for path in (*WINOGRAD, "gemm"):
        with forced(path):
            errors[path] = np.abs(ct.conv2d(x, w, padding=1) - want).max() / scale
    assert errors["winograd"] < 2e-6 and errors["gemm"] < 2e-6
    assert errors["winograd"] < 4 * errors["gemm"]
    assert errors["winograd4"] < 1e-5


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"w": np.array([[1.0, np.nan]])}, "nan"),
        ({"w": np.array([[np.inf]])}, "inf"),
        ({"w": np.ones((7, 7))}, "7x7"),
        ({"stride": 0}, "stride must be at least 1, got 0"),
        ({"padding": -1}, "-1"),
        ({"padding": "full"}, "'full'"),
        ({"w": np.ones((2, 2, 3, 3))}, "2 input channel"),
        ({"w": np.ones((3, 3, 3))}, "(3, 3, 3)"),
        ({"b": [1.0, 2.0]}, "bias"),
    ],
)
def test_bad_arguments_raise_value_errors_naming_the_value(kwargs, message):
    args = {"x": np.ones((5, 5)), "w": np.ones((3, 3)), **kwargs}
    x, w = args.pop("x"), args.pop("w")
    with pytest.raises(ValueError, match=None) as info:
        ct.conv2d(x, w, **args)
    assert message in str(info.value)


def test_backward_checks_grad_out_shape():
    with pytest.raises(ValueError, match="grad_out has shape"):
        ct.conv2d_backward(np.ones((5, 5)), np.ones((3, 3)), np.ones((2, 2)))
