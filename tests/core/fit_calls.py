"""The fit's kernels called directly, on any engine: imports no numba (a child process runs
them to show that the compiled engine needs none)."""

from __future__ import annotations

import numpy as np

from convtool.core import engine


def fit_statistics(core, toeplitz, drop_some):
    """The fit's statistics of a small pair, from ``core`` (an engine)."""
    rng = np.random.default_rng(8)
    x = rng.random((2, 14, 13))
    y = rng.random((2, 12, 11))
    mask = np.ones_like(y)
    if drop_some:
        mask[0, 3, 4] = mask[1, 0, 0] = 0.0
    drop = np.argwhere(mask == 0).astype(np.int64) if toeplitz else np.zeros((0, 3), np.int64)
    chunks = engine.reduction_chunks(2 * 14)
    gram = np.zeros((chunks, 2, 9, 9))
    moments = np.zeros((chunks, 2, 21))
    core.fit_gather(x, y, mask, drop, 1, 1, 3, 3, toeplitz, gram, moments)
    return gram.sum(axis=0), moments.sum(axis=0)


def fit_run(core, method):
    """40 iterations of ``method`` (0: gradient descent, 1: CG) on a small system."""
    rng = np.random.default_rng(9)
    a = rng.standard_normal((12, 9))
    gram = a.T @ a / 12
    w_best = rng.standard_normal(9)
    r_best = np.zeros(9)
    scalars = np.array([0.0, 0.5 / np.linalg.eigvalsh(gram)[-1], 1e-30, 1e-14, 1e-14])
    w, state, history = np.zeros(9), np.zeros(19), np.empty(40)
    args = (method, gram, w, w_best, r_best, scalars, 0, 40, 1000, state, history)
    it, code = core.fit_iterate(*args)
    return it, code, w, history[: it + (1 if code else 0)]
