"""The luma formula shared by every command."""

import numpy as np
import pytest

from convtool.filtering import to_gray


def test_to_gray():
    rgb = np.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.2, 0.4, 0.6]]], np.float32)
    expected = [0.299, 0.587, 0.299 * 0.2 + 0.587 * 0.4 + 0.114 * 0.6]
    assert np.allclose(to_gray(rgb)[0], expected, atol=1e-7)
    assert to_gray(rgb).dtype == np.float32
    rgba = np.concatenate([rgb, np.zeros((1, 3, 1))], axis=2)
    assert np.array_equal(to_gray(rgba), to_gray(rgb))
    grey = np.ones((2, 2))
    assert np.array_equal(to_gray(grey), grey) and to_gray(grey[:, :, None]).shape == (2, 2)
    with pytest.raises(ValueError, match="shape"):
        to_gray(np.ones(3))
