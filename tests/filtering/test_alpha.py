"""Alpha filtered premultiplied (convtool.filtering.correlate_premultiplied) against the
formula done by hand with scipy, and its properties."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
from hypothesis import given, settings
from hypothesis import strategies as st

from convtool.filtering import correlate, correlate_premultiplied, prepare_kernel
from convtool.kernels import parse_kernel_spec


def picture(seed: int, shape=(17, 23)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((*shape, 3)).astype(np.float32), rng.random(shape).astype(np.float32)


@settings(deadline=None, max_examples=30)
@given(
    seed=st.integers(0, 2**32 - 1),
    name=st.sampled_from(["blur", "gaussian:5", "sharpen", "surround", "motion:5,30"]),
)
def test_level_keeping_kernels_follow_the_formula(seed, name):
    x, a = picture(seed)
    w = parse_kernel_spec(name).weights
    y, a_out = correlate_premultiplied(x, a, prepare_kernel(w), border="replicate")
    s = w.sum()
    corr = lambda p, k: ndi.correlate(p.astype(np.float64), k, mode="nearest")  # noqa: E731
    want_a = np.clip(corr(a, w / s), 0, 1)
    np.testing.assert_allclose(a_out, np.where(want_a > 1e-6, want_a, 0), atol=2e-6)
    seen = want_a > 1e-6
    for c in range(3):
        # compared premultiplied: dividing by a tiny alpha' would magnify float32's rounding
        want = np.where(seen, corr(x[..., c] * a, w), 0)
        np.testing.assert_allclose(y[..., c] * a_out, want, rtol=1e-4, atol=2e-5)
        assert (y[..., c][~seen] == 0).all()


def test_opaque_pictures_are_filtered_as_without_alpha():
    x, _ = picture(3)
    k = prepare_kernel(parse_kernel_spec("gaussian:5").weights, bias=0.25)
    y, a_out = correlate_premultiplied(x, np.ones(x.shape[:2], np.float32), k, border="replicate")
    np.testing.assert_allclose(y, correlate(x, k, border="replicate"), atol=1e-6)
    assert (a_out == 1).all()


def test_edge_kernels_see_the_picture_over_black_and_keep_the_alpha():
    x, a = picture(5)
    spec = parse_kernel_spec("sobel")
    k = prepare_kernel(spec.weights, parts=spec.parts)
    y, a_out = correlate_premultiplied(x, a, k, border="replicate")
    np.testing.assert_allclose(y, correlate(x * a[..., None], k, border="replicate"), atol=1e-6)
    np.testing.assert_array_equal(a_out, a)


def test_a_uniform_colour_stays_where_any_alpha_is():
    # one colour under any alpha: premultiplied filtering gives that colour wherever alpha'
    # is not 0, whatever the blur
    rng = np.random.default_rng(9)
    a = (rng.random((30, 30)) > 0.7).astype(np.float32)
    x = np.broadcast_to(np.float32([1.0, 0.78, 0.0]), (30, 30, 3))
    y, a_out = correlate_premultiplied(
        x, a, prepare_kernel(parse_kernel_spec("gaussian:7").weights)
    )
    seen = a_out > 0
    assert seen.sum() > a.sum()  # the alpha spread
    np.testing.assert_allclose(y[seen], np.broadcast_to(x[0, 0], y[seen].shape), atol=1e-5)
    assert (y[~seen] == 0).all()


@pytest.mark.parametrize("stride", [1, 2])
def test_strides_and_valid_padding_give_matching_shapes(stride):
    x, a = picture(1, (20, 31))
    k = prepare_kernel(parse_kernel_spec("box:3x5").weights)
    y, a_out = correlate_premultiplied(x, a, k, padding="valid", stride=stride)
    assert y.shape[:2] == a_out.shape == correlate(x, k, padding="valid", stride=stride).shape[:2]
