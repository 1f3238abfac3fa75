"""Kernel recovery (convtool.fit) against independent references: explicit im2col least
squares in numpy, the chapter's own loop that convolves the whole picture every iteration,
the chapter's experiment 17.3.7 on the project's disc, and pairs filtered by ImageMagick
and OpenCV."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view

from convtool.filtering import to_gray
from convtool.fit import (
    DivergenceError,
    FitError,
    KernelMatch,
    ShapeError,
    describe_match,
    fit_kernel,
    match_kernel,
    solve,
)
from convtool.fit.pairs import prepare_pair
from convtool.imaging import read_image
from convtool.shapes import same_padding

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "fit"
HORIZONTAL_EDGE = np.array([[0.0, -1, 0], [0, 2, 0], [0, -1, 0]])

# ---------------------------------------------------------------- references


def correlate(x, w, stride=(1, 1)):
    """Valid cross-correlation of one plane, by explicit windows (no convtool code)."""
    windows = sliding_window_view(x, w.shape)[:: stride[0], :: stride[1]]
    return np.einsum("ijab,ab->ij", windows, w)


def patches(x, shape, stride=(1, 1)):
    """im2col: one row per output pixel, the K window values in row-major order."""
    windows = sliding_window_view(x, shape)[:: stride[0], :: stride[1]]
    return windows.reshape(-1, shape[0] * shape[1])


def chapter_loop(x, y, w, lr, tol, max_iter):
    """The chapter's train(): convolve the whole picture every iteration (17.3.7)."""
    losses = []
    m = y.size
    for _ in range(max_iter):
        z = correlate(x, w)
        loss = np.sum((z - y) ** 2) / 2 / m
        losses.append(loss)
        if loss < tol:
            break
        dw = correlate(x, z - y)  # the input correlated with the delta: 3x3
        w = w - lr * dw / m
    return w, losses


@pytest.fixture(scope="module")
def disc():
    """The chapter's picture as grey (ITU-R 601 luma) in [0, 1], and its target."""
    x = to_gray(read_image(ROOT / "samples" / "disc.png").data).astype(np.float64)
    return x, correlate(x, HORIZONTAL_EDGE)


@pytest.fixture(scope="module")
def scene():
    """A 64x64 grey piece of the detailed scene: a well-posed fitting problem."""
    x = to_gray(read_image(ROOT / "samples" / "scene.png").data).astype(np.float64)
    return x[200:264, 180:244]


# ---------------------------------------------------------------- statistics


@settings(deadline=None, max_examples=60)
@given(
    kh=st.integers(1, 5), kw=st.integers(1, 5), sh=st.integers(1, 3), sw=st.integers(1, 3),
    ho=st.integers(1, 12), wo=st.integers(1, 12), planes=st.integers(1, 3),
    drop=st.sampled_from([0.0, 0.05, 0.5]), toeplitz=st.sampled_from([None, True, False]),
    seed=st.integers(0, 2**32 - 1),
)  # fmt: skip
def test_gathered_statistics_equal_im2col(kh, kw, sh, sw, ho, wo, planes, drop, toeplitz, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((planes, (ho - 1) * sh + kh, (wo - 1) * sw + kw))
    y = rng.standard_normal((planes, ho, wo))
    mask = (rng.random(y.shape) >= drop).astype(np.float64)
    gram, moments = solve.gather(x, y, mask, (kh, kw), (sh, sw), toeplitz=toeplitz)
    for n in range(planes):
        p = patches(x[n], (kh, kw), (sh, sw))
        m = mask[n].ravel()
        yy = y[n].ravel()
        np.testing.assert_allclose(gram[n], (p * m[:, None]).T @ p, rtol=1e-10, atol=1e-10)
        want = [p.T @ (m * yy), p.T @ m, [m @ yy, m @ yy**2, m.sum()]]
        np.testing.assert_allclose(moments[n], np.concatenate(want), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("per_channel", [False, True])
def test_the_quadratic_is_the_chapters_loss_and_its_gradient(bias, per_channel):
    rng = np.random.default_rng(5)
    x = rng.random((3, 12, 11))
    y = rng.random((3, 10, 8))
    mask = np.ones_like(y)
    normal = solve.assemble(*solve.gather(x, y, mask, (3, 4), (1, 1)), bias, per_channel)
    per = (12 + bias) if per_channel else 0
    w = rng.standard_normal(normal.c.size)

    def loss(w):
        total = 0.0
        for n in range(3):
            wn = w[n * per : (n + 1) * per] if per_channel else w
            z = correlate(x[n], wn[:12].reshape(3, 4)) + (wn[12] if bias else 0.0)
            total += np.sum((z - y[n]) ** 2)
        return total / 2 / y.size

    assert normal.m == y.size
    quad = (w @ normal.gram @ w - 2 * normal.c @ w + normal.s) / 2
    assert quad == pytest.approx(loss(w), rel=1e-12)
    h = 1e-6
    numeric = [(loss(w + h * e) - loss(w - h * e)) / (2 * h) for e in np.eye(w.size)]
    np.testing.assert_allclose(normal.gram @ w - normal.c, numeric, rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------- the chapter's experiment


def test_gd_iterates_are_the_chapters_loop_to_rounding(disc):
    x, y = disc
    w0 = np.random.default_rng(3).normal(0.0, 0.1, size=(3, 3))  # fit_kernel's start, seed 3
    w_ref, losses = chapter_loop(x, y, w0, 0.5, 1e-7, 50)  # 50 checks and updates
    r = fit_kernel(x, y, method="gd", lr=0.5, seed=3, max_iter=50)
    assert r.iterations == 50 and not r.converged and r.stopped == "max_iter"
    np.testing.assert_allclose(r.history[:-1], losses, rtol=1e-10)
    np.testing.assert_allclose(r.kernel, w_ref, rtol=0, atol=1e-12)


def test_the_chapters_experiment_on_the_drawn_disc(disc):
    """17.3.7: lr 0.5 from normal(0, 0.1), stop when loss < 1e-7, checked before the update.

    The chapter's picture, re-run faithfully with correct luma over 30 starts, stops at
    3298..3474 (median 3375). The project's drawn disc differs from it in 14 rim pixels
    and its luma is not rounded to integers; measured over seeds 0..29 it stops at
    3312..3443 (median 3374.5). The band below holds both spreads with room for the
    rounding of another platform, and the median is checked more tightly.
    """
    x, y = disc
    stops = []
    for seed in range(30):
        r = fit_kernel(x, y, method="gd", lr=0.5, seed=seed)
        assert r.converged and r.stopped == "tol"
        assert r.loss < 1e-7 <= r.history[-2]
        assert np.abs(r.kernel - HORIZONTAL_EDGE).max() < 1e-2
        stops.append(r.iterations)
    assert min(stops) >= 3200 and max(stops) <= 3600
    assert 3300 <= np.median(stops) <= 3450
    lam = np.linalg.eigvalsh(patches(x, (3, 3)).T @ patches(x, (3, 3)) / y.size)
    assert r.eigenvalues == pytest.approx((lam[0], lam[-1]), rel=1e-9)
    assert lam[0] == pytest.approx(0.0032, abs=2e-4) and lam[-1] == pytest.approx(3.2, abs=0.1)


def test_auto_step_is_the_largest_safe_one(disc):
    x, y = disc
    lam_max = np.linalg.eigvalsh(patches(x, (3, 3)).T @ patches(x, (3, 3)) / y.size)[-1]
    r = fit_kernel(x, y, method="gd", seed=1)
    assert r.lr == pytest.approx(1.9 / lam_max, rel=1e-9)
    assert r.converged and r.iterations < 3200  # a larger step than the chapter's 0.5
    w0 = np.random.default_rng(1).normal(0.0, 0.1, size=(3, 3))
    # the chapter's own loop confirms the limit 2 / lambda_max: just above it diverges
    _, below = chapter_loop(x, y, w0, 1.99 / lam_max, 0.0, 400)
    _, above = chapter_loop(x, y, w0, 2.01 / lam_max, 0.0, 400)
    assert below[-1] < below[0] and above[-1] > 10 * above[0]


def test_a_diverging_step_stops_with_an_error_naming_a_safe_one(disc):
    x, y = disc
    with pytest.raises(DivergenceError) as info:
        fit_kernel(x, y, method="gd", lr=0.7, seed=1)
    e = info.value
    assert e.safe_lr < e.limit < 0.7
    assert f"{e.safe_lr:.4g}" in str(e) and "diverge" in str(e)
    r = fit_kernel(x, y, method="gd", lr=e.safe_lr, seed=1)
    assert r.converged


@pytest.mark.parametrize("method", ["cg", "lstsq"])
def test_faster_methods_recover_the_chapters_kernel(disc, method):
    x, y = disc
    r = fit_kernel(x, y, method=method, seed=2, tol=1e-12)
    assert r.converged
    assert r.iterations <= (9 * 4 if method == "cg" else 1)
    np.testing.assert_allclose(r.kernel, HORIZONTAL_EDGE, atol=1e-5)
    assert match_kernel(r.kernel).name == "horizontal_edge"


# ---------------------------------------------------------------- exact recovery


@settings(deadline=None, max_examples=40)
@given(
    kh=st.integers(1, 5), kw=st.integers(1, 5), channels=st.integers(1, 3),
    extra=st.integers(4, 12), method=st.sampled_from(["cg", "lstsq"]), bias=st.booleans(),
    per_channel=st.booleans(), seed=st.integers(0, 2**32 - 1),
)  # fmt: skip
def test_any_kernel_is_recovered_from_a_float_target(
    kh, kw, channels, extra, method, bias, per_channel, seed
):
    rng = np.random.default_rng(seed)
    x = rng.random((channels, kh + extra, kw + extra + 2))
    kernels = rng.normal(size=(channels if per_channel else 1, kh, kw))
    biases = rng.normal(size=len(kernels)) if bias else np.zeros(len(kernels))
    y = np.stack([correlate(x[c], kernels[c % len(kernels)]) for c in range(channels)])
    y += biases[np.arange(channels) % len(kernels), None, None]
    r = fit_kernel(x, y, method=method, bias=bias, per_channel=per_channel, tol=1e-24, seed=seed)
    assert r.converged
    assert r.size == (kh, kw) and r.padding == "valid"
    assert r.size_from == ("detected" if kh == kw == 1 else "shapes")  # 1x1: the same size
    want = kernels if per_channel else kernels[0]
    np.testing.assert_allclose(r.kernel, want, atol=1e-6)
    if bias:
        np.testing.assert_allclose(r.bias, biases if per_channel else biases[0], atol=1e-6)
    else:
        assert r.bias is None


def test_the_reported_loss_is_the_real_one(scene):
    rng = np.random.default_rng(8)
    y = correlate(scene, rng.normal(size=(5, 5))) + rng.normal(0, 0.01, (60, 60))
    for method in ("gd", "cg", "lstsq"):
        r = fit_kernel(scene, y, method=method, seed=4, max_iter=300)
        real = np.sum((correlate(scene, r.kernel) - y) ** 2) / 2 / y.size
        assert r.loss == pytest.approx(real, rel=1e-9)
        assert r.history[-1] == r.loss
        assert r.psnr == pytest.approx(10 * math.log10(1 / (2 * real)))


def test_a_noisy_target_stops_at_its_minimum_and_says_so(scene):
    rng = np.random.default_rng(9)
    w = rng.normal(size=(3, 3))
    y = correlate(scene, w) + rng.normal(0, 0.003, (62, 62))  # loss floor ~4.5e-6 > tol
    ref = np.linalg.lstsq(patches(scene, (3, 3)), y.ravel(), rcond=None)[0].reshape(3, 3)
    for method in ("cg", "lstsq"):
        r = fit_kernel(scene, y, method=method, seed=1)
        assert r.converged and r.stopped == "minimum"
        assert r.loss_min > r.tol and r.loss == pytest.approx(r.loss_min, rel=1e-9)
        np.testing.assert_allclose(r.kernel, ref, atol=1e-8)
        assert any("cannot fall below" in n for n in r.notes)


def test_a_run_cut_short_says_so(scene):
    y = correlate(scene, np.random.default_rng(2).normal(size=(5, 5)))
    r = fit_kernel(scene, y, method="gd", max_iter=100, seed=1)
    assert not r.converged and r.stopped == "max_iter"
    assert r.iterations == 100 and len(r.history) == 101
    assert r.loss > r.tol and min(r.history) >= r.tol


def test_cg_needs_no_more_steps_than_unknowns_on_a_tame_problem():
    rng = np.random.default_rng(11)
    x = rng.random((40, 40))
    y = correlate(x, rng.normal(size=(4, 4)))
    r = fit_kernel(x, y, method="cg", tol=1e-26, bias=True, seed=0)
    assert r.converged and r.iterations <= 17 + 3  # 17 unknowns, and a little rounding


def test_the_same_seed_gives_the_same_run(scene):
    y = correlate(scene, np.random.default_rng(2).normal(size=(3, 3)))
    a = fit_kernel(scene, y, method="gd", seed=42, max_iter=50)
    b = fit_kernel(scene, y, method="gd", seed=42, max_iter=50)
    assert a.seed == b.seed == 42
    np.testing.assert_array_equal(a.kernel, b.kernel)


@pytest.mark.parametrize("method", ["gd", "cg", "lstsq"])
def test_every_run_is_the_same_without_a_seed(scene, method):
    y = correlate(scene, np.random.default_rng(2).normal(size=(3, 3)))
    a, b = (fit_kernel(scene, y, method=method, max_iter=500) for _ in range(2))
    np.testing.assert_array_equal(a.kernel, b.kernel)
    np.testing.assert_array_equal(a.history, b.history)
    assert a.seed == b.seed == (1 if method == "gd" else None)  # cg starts from zero


def test_cg_ends_at_the_optimum_not_merely_below_tol(scene):
    """An 8-bit target of a non-integer kernel: cg's kernel is numpy's lstsq's, not one
    that merely gets the loss below 1e-7."""
    w = np.full((3, 3), 1 / 9)
    y = np.round(np.clip(correlate(scene, w), 0, 1) * 255) / 255
    ref = np.linalg.lstsq(patches(scene, (3, 3)), y.ravel(), rcond=None)[0].reshape(3, 3)
    r = fit_kernel(scene, y)
    assert r.converged and r.seed is None
    np.testing.assert_allclose(r.kernel, ref, atol=1e-10)


def test_standard_errors_are_the_textbook_ones(scene):
    """sqrt(diag(sigma^2 (X'X)^-1)), sigma^2 = RSS / (m - n), from explicit im2col; and they
    cover the true kernel as they should (a noisy target with known noise)."""
    rng = np.random.default_rng(5)
    w = rng.normal(size=(3, 3))
    y = correlate(scene, w) + rng.normal(0, 0.01, (62, 62))
    r = fit_kernel(scene, y, bias=True)
    a = np.hstack([patches(scene, (3, 3)), np.ones((y.size, 1))])
    rss = np.linalg.lstsq(a, y.ravel(), rcond=None)[1]
    se = np.sqrt(np.diag(np.linalg.inv(a.T @ a)) * rss[0] / (y.size - 10))
    np.testing.assert_allclose(r.stderr.ravel(), se[:9], rtol=1e-6)
    assert r.bias_stderr == pytest.approx(se[9], rel=1e-6)
    assert np.abs((r.kernel - w) / r.stderr).max() < 4
    exact = fit_kernel(scene, correlate(scene, w))
    assert exact.stderr.max() < 1e-9


def test_the_callback_sees_the_loss_fall(scene):
    y = correlate(scene, np.random.default_rng(2).normal(size=(3, 3)))
    seen = []
    r = fit_kernel(scene, y, method="gd", seed=1, callback=lambda i, loss: seen.append((i, loss)))
    assert seen and seen[-1] == (r.iterations, r.loss)
    assert [i for i, _ in seen] == sorted(i for i, _ in seen)


# ---------------------------------------------------------------- geometry


def test_same_size_targets_fit_the_interior_and_detect_the_size(scene):
    w = np.random.default_rng(4).normal(size=(5, 5))
    padded = np.pad(scene, 2, mode="edge")
    y = correlate(padded, w)  # the same size as the scene
    r = fit_kernel(scene, y, tol=1e-20, seed=1)
    assert r.size == (5, 5) and r.size_from == "detected" and r.padding == "interior"
    assert r.pixels == 60 * 60
    np.testing.assert_allclose(r.kernel, w, atol=1e-6)


@pytest.mark.parametrize(
    ("border", "mode"),
    [
        ("zero", "constant"),
        ("reflect", "symmetric"),  # dcba|abcd
        ("mirror", "reflect"),  # dcb|abcd
        ("replicate", "edge"),
        ("wrap", "wrap"),
    ],
)
def test_a_border_mode_fits_every_pixel(scene, border, mode):
    w = np.random.default_rng(6).normal(size=(3, 3))
    y = correlate(np.pad(scene, 1, mode=mode), w)
    r = fit_kernel(scene, y, size=3, border=border, tol=1e-20, seed=1)
    assert r.pixels == 64 * 64 and r.padding == border
    np.testing.assert_allclose(r.kernel, w, atol=1e-6)
    wrong = "wrap" if border != "wrap" else "zero"
    assert fit_kernel(scene, y, size=3, border=wrong, method="lstsq").loss > 1e3 * r.loss + 1e-12


def test_even_kernels_follow_the_projects_same_padding(scene):
    w = np.random.default_rng(7).normal(size=(2, 4))
    y = correlate(np.pad(scene, ((0, 1), (1, 2))), w)  # extra row/column after, as torch
    r = fit_kernel(scene, y, size=(2, 4), border="zero", method="lstsq")
    np.testing.assert_allclose(r.kernel, w, atol=1e-8)


@pytest.mark.parametrize("same", [False, True])
def test_strides(scene, same):
    w = np.random.default_rng(3).normal(size=(3, 3))
    x = scene
    if same:  # the project's 'same' padding: with stride 2, none before and one row after
        (top, bottom), (left, right) = same_padding(64, 3, 2), same_padding(64, 3, 3)
        x = np.pad(scene, ((top, bottom), (left, right)))
    y = correlate(x, w, stride=(2, 3))
    assert y.shape == ((32, 22) if same else (31, 21))
    border = "zero" if same else "interior"
    r = fit_kernel(scene, y, size=3, stride=(2, 3), border=border, tol=1e-20, seed=1)
    assert r.stride == (2, 3) and r.pixels == y.size
    np.testing.assert_allclose(r.kernel, w, atol=1e-6)
    # without the stride (and size), both are found from the sizes
    found = fit_kernel(scene, y, border=border)
    assert found.stride == (2, 3) and found.size == (3, 3)
    assert found.padding == (border if same else "valid")
    np.testing.assert_allclose(found.kernel, w, atol=1e-6)
    assert any("stride 2x3 (rows x columns) detected" in n for n in found.notes)
    if same:  # no border given: the interior's pixels, the size detected
        r = fit_kernel(scene, y, stride=(2, 3))
        assert r.size == (3, 3) and r.size_from == "detected" and r.padding == "interior"
        np.testing.assert_allclose(r.kernel, w, atol=1e-6)


@pytest.mark.parametrize(
    ("xs", "ys", "words"),
    [
        ((512, 512), (100, 100), "no stride up to 16 makes the one from the other"),
        ((200, 200), (120, 120), "take a 81x81 kernel (rows x columns), larger than the 63x63"),
    ],
)
def test_sizes_that_imply_a_huge_kernel_are_refused_naming_the_options(xs, ys, words):
    rng = np.random.default_rng(0)
    stride = None if ys[0] == 100 else 1  # stride 1 given: the size alone is inferred
    with pytest.raises(ShapeError, match=re.escape(words)) as e:
        fit_kernel(rng.random(xs), rng.random(ys), stride=stride)
    assert "stride=" in str(e.value) and "size=" in str(e.value)


def test_a_huge_kernel_asked_for_is_refused_before_allocating():
    x = np.zeros((600, 600))
    with pytest.raises(FitError, match=r"a 257x257 kernel .* 66,049 unknowns .* GiB"):
        fit_kernel(x, x[:344, :344], size=257)


def test_a_target_smaller_along_one_axis_is_valid_with_one_tap_along_the_other(scene):
    w = np.random.default_rng(3).normal(size=(1, 4))
    r = fit_kernel(scene, correlate(scene, w), method="lstsq")
    assert r.size == (1, 4) and r.size_from == "shapes"
    np.testing.assert_allclose(r.kernel, w, atol=1e-8)


def test_clipped_pixels_are_left_out(scene):
    w = np.array([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])  # an edge filter: half negative
    y = np.clip(correlate(scene, w), 0, 1)
    kept = fit_kernel(scene, y, method="lstsq")
    assert np.abs(kept.kernel - w).max() > 0.2  # least squares over all pixels is wrong
    r = fit_kernel(scene, y, clip=(0, 1), method="lstsq")
    assert r.clipped == np.count_nonzero((y <= 0) | (y >= 1)) > 0
    assert r.pixels + r.clipped == y.size
    np.testing.assert_allclose(r.kernel, w, atol=1e-8)


@pytest.mark.parametrize(
    ("xs", "ys", "kwargs", "words"),
    [
        ((20, 20), (22, 22), {}, "swapped"),
        ((20, 20), (20, 18), {"size": 2}, "gives 19 (valid) or 20 (same)"),
        ((20, 20), (9, 9), {"stride": 2}, "stride 2"),
        ((20, 20), (15, 15), {"size": 3}, "gives 18 (valid) or 20 (same)"),
        ((3, 20, 20), (18, 18), {}, "channel"),
        ((20, 20), (18, 18), {"border": "replicate"}, "same-size targets only"),
    ],
)
def test_shapes_that_do_not_fit_are_refused(xs, ys, kwargs, words):
    with pytest.raises(ShapeError, match=re.escape(words)):
        fit_kernel(np.ones(xs), np.ones(ys), **kwargs)


def test_bad_values_are_refused():
    x, y = np.random.default_rng(0).random((10, 10)), np.zeros((8, 8))
    for kwargs in ({"method": "adam"}, {"tol": 0}, {"max_iter": -1}, {"lr": -1}, {"border": "x"}):
        with pytest.raises(FitError):
            fit_kernel(x, y, **kwargs)
    with pytest.raises(FitError, match="NaN"):
        fit_kernel(np.full((10, 10), np.nan), y)
    with pytest.raises(FitError, match="blank"):
        fit_kernel(np.zeros((10, 10)), y)
    with pytest.raises(FitError, match="clipped"):
        fit_kernel(x, np.ones((8, 8)), clip=(0, 1))


def test_a_flat_picture_cannot_tell_the_kernel_and_says_so():
    r = fit_kernel(np.full((12, 12), 0.5), np.full((10, 10), 0.25), method="lstsq")
    assert r.rank == 1 and r.unknowns == 9
    assert any("determine only 1 of the 9" in n for n in r.notes)
    assert r.kernel.sum() == pytest.approx(0.5)  # what the picture does tell


# ---------------------------------------------------------------- named kernels


def test_match_finds_scale_and_name():
    sobel = np.array([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    m = match_kernel(0.125 * sobel)
    assert m == KernelMatch("sobel_x", pytest.approx(0.125), pytest.approx(0, abs=1e-12), True)
    assert describe_match(m, 0.5) == "0.125 x sobel_x, bias 0.5"
    assert describe_match(match_kernel(-sobel)) == "-1 x sobel_x"  # ImageMagick's Sobel
    assert match_kernel(np.full((3, 3), 0.11)).name == "blur"  # not 0.99 x box3
    assert match_kernel(np.full((3, 3), 1 / 9)).name == "box3"
    assert match_kernel(np.full((3, 5), 1 / 15)).name == "box:3x5"
    close = match_kernel(sobel + np.random.default_rng(0).normal(0, 0.02, (3, 3)))
    assert close.name == "sobel_x" and not close.exact
    assert match_kernel(np.random.default_rng(1).normal(size=(3, 3))) is None
    assert match_kernel(np.zeros((3, 3))) is None


# ---------------------------------------------------------------- preparing decoded pictures


def test_a_pair_is_made_channels_first_with_the_targets_clip_and_rounding():
    rgb = np.random.default_rng(0).random((6, 7, 3))
    pair = prepare_pair(rgb, rgb[1:-1, 1:-1], target_bit_depth=8)
    assert pair.x.shape == (3, 6, 7) and pair.y.shape == (3, 4, 5)
    np.testing.assert_array_equal(pair.x[1], rgb[:, :, 1])
    assert pair.clip == (0.0, 1.0) and pair.quantum == 1 / 255 and pair.notes == []
    assert prepare_pair(rgb, rgb, target_bit_depth=16, keep_clipped=True)[2:4] == (None, 1 / 65535)
    assert prepare_pair(rgb, rgb, target_bit_depth=32)[2:4] == (None, None)


def test_a_pair_goes_grey_as_asked_or_as_the_target_is():
    rgb = np.random.default_rng(1).random((6, 6, 3))
    grey = to_gray(rgb)
    pair = prepare_pair(rgb, grey, target_bit_depth=8, names=("in.png", "out.png"))
    np.testing.assert_allclose(pair.x, grey)
    assert pair.notes == ["out.png is grey: fitting on a grey (luma) version of in.png"]
    three = np.repeat(grey[:, :, None], 3, axis=2)  # a grey picture stored as RGB
    np.testing.assert_array_equal(prepare_pair(grey, three, target_bit_depth=8).y, grey)
    target = rgb.copy()
    target[0, 0, 2] = 1.0  # clipped in one channel: left out of the grey target
    pair = prepare_pair(rgb, target, target_bit_depth=8, grey=True)
    assert pair.y.shape == (6, 6) and pair.y[0, 0] == 0.0 and pair.notes == []
    np.testing.assert_allclose(pair.y[1:], to_gray(rgb)[1:])


def test_a_pair_that_cannot_be_fitted_is_refused():
    rgb = np.random.default_rng(2).random((6, 6, 3))
    with pytest.raises(
        ShapeError, match=r"b\.png is in colour but a\.png is grey; give color='gray'"
    ):
        prepare_pair(rgb[:, :, 0], rgb, target_bit_depth=8, names=("a.png", "b.png"))
    with pytest.raises(ShapeError, match=r"\(6x6\) is larger than .* are the two swapped\?"):
        prepare_pair(rgb[:4, :4], rgb, target_bit_depth=8)
    with pytest.raises(ShapeError) as taller:
        prepare_pair(rgb[:4], rgb[:, :4], target_bit_depth=8)
    assert str(taller.value) == (
        "the target (6x4) is taller than the input (4x6), but filtering never makes a "
        "picture larger"  # whole, and rows x columns as every size: 6 tall, 4 wide
    )
    bad = rgb.copy()
    bad[0, 0] = [np.nan, np.inf, 0.5]
    with pytest.raises(FitError, match="the target holds 2 NaN or infinite value"):
        prepare_pair(rgb, bad, target_bit_depth=32)


def test_a_per_channel_kernel_is_applied_as_a_block_diagonal_one():
    x = np.random.default_rng(3).random((3, 12, 12))
    r = fit_kernel(x, x[:, 1:-1, 1:-1], per_channel=True, method="lstsq")
    full = r.conv_kernel()
    assert full.shape == (3, 3, 3, 3)
    for o in range(3):
        for i in range(3):
            np.testing.assert_array_equal(full[o, i], r.kernel[o] if o == i else 0.0)
    single = fit_kernel(x[0], x[0, 1:-1, 1:-1], method="lstsq")
    assert single.conv_kernel() is single.kernel


# ---------------------------------------------------------------- pairs made by other programs


def _pair(name):
    x = read_image(DATA / "input.png").data
    target = read_image(DATA / name)
    assert target.bit_depth == 8 and target.data.shape == x.shape  # 8-bit, the same size
    truth = np.array(json.loads((DATA / "kernels.json").read_text())[name]["kernel"])
    return np.moveaxis(x, -1, 0), np.moveaxis(target.data, -1, 0), truth


@pytest.mark.parametrize(
    ("name", "atol"),
    [
        ("custom3_imagemagick.png", 0.01),
        ("custom5_opencv.png", 0.01),
        ("sobel_imagemagick.png", 0.05),  # clipped: three quarters of its pixels are 0 or 1
    ],
)
def test_pairs_made_by_other_programs_are_recovered(name, atol):
    x, y, truth = _pair(name)
    r = fit_kernel(x, y, clip=(0.0, 1.0), quantum=1 / 255)  # what the CLI passes for 8-bit
    assert r.converged and r.size == truth.shape and r.size_from == "detected"
    assert np.abs(r.kernel - truth).max() < atol
    if name.startswith("sobel"):
        assert r.clipped > y.size // 2
        assert describe_match(match_kernel(r.kernel)) == "sobel_x"


@pytest.mark.parametrize("offset", [0.0, 0.25])
def test_a_bias_is_fitted_unasked_only_for_a_clear_offset(scene, offset):
    rng = np.random.default_rng(12)
    w = rng.normal(size=(3, 3))
    y = correlate(scene, w) + offset + rng.normal(0, 0.004, (62, 62))
    r = fit_kernel(scene, y)
    assert (r.bias is not None) == (offset > 0)
    if offset:
        assert r.bias == pytest.approx(offset, abs=5 * r.bias_stderr)
        assert any("constant offset" in n for n in r.notes) and r.unknowns == 10
    else:
        assert r.unknowns == 9 and not any("offset" in n for n in r.notes)
    assert fit_kernel(scene, y, bias=False).bias is None


def test_the_residual_map_is_prediction_minus_target_where_fitted(scene):
    from convtool.fit.figure import decades, loss_curve, residual_map

    w = np.random.default_rng(13).normal(size=(3, 3))
    y = np.pad(correlate(scene, w), 1) + 0.01  # same size; border pixels made up
    r = fit_kernel(scene, y, size=3, bias=False, method="lstsq")
    res = residual_map(scene, y, r)
    assert np.isnan(res[0]).all() and np.isnan(res[:, -1]).all()  # the border: not fitted
    want = correlate(scene, r.kernel) - y[1:-1, 1:-1]
    np.testing.assert_allclose(res[1:-1, 1:-1], want, atol=1e-12)
    picture = loss_curve([1.0, 0.1, 1e-3, 1e-9], size=64)
    assert picture.shape == (64, 64, 3) and picture.dtype == np.uint8
    assert (picture[4:-4, 4:-4] != 255).any(axis=2).sum() >= 56  # a line across
    assert decades([1.0, 0.1, 1e-9]) == "1.0e+00 .. 1.0e-09 over 2 updates"
