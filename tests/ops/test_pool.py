"""The pools and their backwards against naive loops (torch's rules) and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import convtool as ct
from tests import naive


@st.composite
def pool_cases(draw):
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    h = draw(st.integers(max(1, kh - 2 * ph), 10))
    w = draw(st.integers(max(1, kw - 2 * pw), 10))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ceil_mode = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    # a permutation: no ties, so the maximum (and its gradient) is unambiguous
    x = rng.permutation(n * c * h * w).reshape(n, c, h, w) / 7.0
    return x, (kh, kw), (sh, sw), (ph, pw), ceil_mode


# ---------------------------------------------------------------- pooling


@settings(deadline=None, max_examples=100)
@given(pool_cases())
def test_max_pool_matches_naive_and_routes_gradient_to_the_maximum(case):
    x, k, s, p, ceil_mode = case
    got = ct.max_pool2d(x, k, s, p, ceil_mode)
    want, where = naive.max_pool2d(x, k, s, p, ceil_mode)
    np.testing.assert_array_equal(got, want)
    g = np.random.default_rng(0).standard_normal(got.shape)
    expected = np.zeros_like(x)
    for (n, c, i, j), (r, col) in where.items():
        expected[n, c, r, col] += g[n, c, i, j]
    np.testing.assert_allclose(ct.max_pool2d_backward(x, g, k, s, p, ceil_mode), expected)
    fd = naive.numeric_grad(lambda v: float(np.sum(g * ct.max_pool2d(v, k, s, p, ceil_mode))), x)
    np.testing.assert_allclose(ct.max_pool2d_backward(x, g, k, s, p, ceil_mode), fd, atol=1e-6)


@settings(deadline=None, max_examples=100)
@given(pool_cases())
def test_avg_pool_matches_naive_and_finite_differences(case):
    x, k, s, p, ceil_mode = case
    got = ct.avg_pool2d(x, k, s, p, ceil_mode)
    np.testing.assert_allclose(got, naive.avg_pool2d(x, k, s, p, ceil_mode), atol=1e-12)
    g = np.random.default_rng(0).standard_normal(got.shape)
    fd = naive.numeric_grad(lambda v: float(np.sum(g * ct.avg_pool2d(v, k, s, p, ceil_mode))), x)
    np.testing.assert_allclose(ct.avg_pool2d_backward(x, g, k, s, p, ceil_mode), fd, atol=1e-6)


def test_max_pool_ties_go_to_the_first_maximum():
    x = np.ones((1, 1, 2, 2))
    grad = ct.max_pool2d_backward(x, np.ones((1, 1, 1, 1)), 2)
    np.testing.assert_array_equal(grad[0, 0], [[1, 0], [0, 0]])


def test_chapter_pool_2x2_stride_2_halves_78_to_39():
    assert ct.max_pool2d(np.zeros((78, 78)), 2, 2).shape == (39, 39)


def test_pool_errors():
    with pytest.raises(ValueError, match="half"):
        ct.max_pool2d(np.ones((4, 4)), 2, padding=2)
    with pytest.raises(ValueError, match="3x3"):
        ct.avg_pool2d(np.ones((2, 2)), 3)
    with pytest.raises(ValueError, match="grad_out"):
        ct.max_pool2d_backward(np.ones((4, 4)), np.ones((3, 3)), 2)
