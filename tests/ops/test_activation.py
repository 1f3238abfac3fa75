"""relu and relu_backward, against numpy and finite differences."""

from __future__ import annotations

import numpy as np

import convtool as ct
from tests import naive


def test_relu_and_its_backward():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3, 4, 5))
    x[np.abs(x) < 1e-3] = 0.5  # keep away from the kink for finite differences
    np.testing.assert_array_equal(ct.relu(x), np.where(x > 0, x, 0))
    g = rng.standard_normal(x.shape)
    got = ct.relu_backward(x, g)
    np.testing.assert_allclose(
        got, naive.numeric_grad(lambda v: float(np.sum(g * ct.relu(v))), x), atol=1e-6
    )
    assert ct.relu_backward(np.array([0.0]), np.array([1.0]))[0] == 0.0  # subgradient at 0
