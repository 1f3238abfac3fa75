"""relu beside relu_backward (elementwise, in numpy: no kernel of the core needed)."""

from __future__ import annotations

import numpy as np

from convtool.ops._checks import ArrayLike, float_dtype


def relu(x: ArrayLike) -> np.ndarray:
    """max(x, 0), elementwise, keeping a float dtype.

    >>> relu(np.array([-1.0, 0.0, 2.0])).tolist()
    [0.0, 0.0, 2.0]
    """
    x = np.asarray(x)
    return np.maximum(x, 0, dtype=float_dtype(x.dtype))


def relu_backward(x: ArrayLike, grad_out: ArrayLike) -> np.ndarray:
    """Gradient of ReLU: grad_out where x > 0, else 0 (the subgradient at 0 is 0, as torch).

    >>> relu_backward(np.array([-1.0, 0.0, 2.0]), np.ones(3)).tolist()
    [0.0, 0.0, 1.0]
    """
    x = np.asarray(x)
    g = np.asarray(grad_out, dtype=float_dtype(x.dtype))
    if g.shape != x.shape:
        raise ValueError(f"grad_out has shape {g.shape} but x has shape {x.shape}")
    return np.where(x > 0, g, np.zeros((), g.dtype))
