"""What every op shares: the dtype policy, the result's dimensionality, any memory layout."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

import convtool as ct

# ---------------------------------------------------------------- dtypes and shapes


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        (np.float32, np.float32),
        (np.float64, np.float64),
        (np.float16, np.float32),
        (np.uint8, np.float64),
        (np.int32, np.float64),
        (bool, np.float64),
    ],
)
def test_dtype_policy(dtype, expected):
    x = (np.arange(30) % 7).reshape(5, 6).astype(dtype)
    k = np.ones((3, 3))
    for y in (
        ct.conv2d(x, k),
        ct.relu(x),
        ct.max_pool2d(x, 2),
        ct.avg_pool2d(x, 2),
        *ct.conv2d_backward(x, k, np.ones((3, 4))),
    ):
        assert y.dtype == expected


def test_float32_agrees_with_float64():
    rng = np.random.default_rng(7)
    x, k = rng.random((2, 3, 40, 33)), rng.standard_normal((4, 3, 5, 3))
    y32 = ct.conv2d(x.astype(np.float32), k.astype(np.float32), padding="same")
    np.testing.assert_allclose(y32, ct.conv2d(x, k, padding="same"), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "out_shape"),
    [
        ((6, 7), (3, 3), (4, 5)),
        ((6, 7), (2, 1, 3, 3), (2, 4, 5)),
        ((3, 6, 7), (5, 3, 3, 3), (5, 4, 5)),
        ((2, 3, 6, 7), (5, 3, 3, 3), (2, 5, 4, 5)),
    ],
)
def test_result_dimensionality_follows_the_image(x_shape, w_shape, out_shape):
    assert ct.conv2d(np.ones(x_shape), np.ones(w_shape)).shape == out_shape


def test_non_contiguous_inputs_are_fine():
    rng = np.random.default_rng(8)
    x = rng.random((20, 30))[::2, ::3]
    k = rng.random((3, 3)).T
    np.testing.assert_allclose(ct.conv2d(x, k), signal.correlate2d(x, k, mode="valid"), atol=1e-12)
