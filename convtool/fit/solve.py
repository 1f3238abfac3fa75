"""The arithmetic behind :mod:`convtool.fit`: statistics, the exact solution, the iterations.

The loss is quadratic in the parameters (the kernel's weights, and a bias if fitted):
with p the patch a target pixel sees (plus a 1 for the bias), G = sum p p' / m,
c = sum p y / m and s = sum y^2 / m over the m fitted pixels,

    loss(w) = (w'Gw - 2c'w + s) / 2,    gradient = G w - c.

So the pictures are read once, in one jitted pass (:func:`convtool.core.fit.fit_gather`),
and every method then works on G and c alone: an iteration costs the same whatever the
pictures' size, and gradient descent's iterates are the chapter's to rounding.

The loss is never evaluated as that difference of large terms, which cancels
catastrophically near the minimum (at a tolerance of 1e-10, s and c'w agree to ten
digits). Instead the least-squares solution w* is found once, directly, its loss
``loss_min`` measured on the real residual with one convolution, and then
``loss(w) = loss_min + (w - w*)'G(w - w*) / 2``, a sum of non-negative terms. This
module imports numpy, and numba through :mod:`convtool.core`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from convtool.core import engine as engines

# stop codes of core.fit.fit_iterate
STOPPED = {1: "tol", 2: "minimum", 3: "max_iter", 4: "diverged"}
# the gradient counts as zero (the minimum reached, to rounding) below this much of
# |G| |w| + |c|: a few hundred times float64's epsilon, which computing G w - c costs
ROUNDING = 1e-12
# gradient descent's automatic step, as a fraction of the stability limit 2 / lambda_max
AUTO_STEP = 0.95


def gather(
    x: np.ndarray,
    y: np.ndarray,
    mask: np.ndarray,
    size: tuple[int, int],
    stride: tuple[int, int],
    toeplitz: bool | None = None,
    *,
    engine: engines.Engine | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-plane statistics: Gram matrices (N, K, K) and moments (N, 2K + 3).

    x (N, Hx, Wx), y and mask (N, Ho, Wo): contiguous float64, output pixel (i, j) seeing
    x[n, i*sh + a, j*sw + b] through tap (a, b). moments[n] holds sum m x y per tap,
    sum m x per tap, then sum m y, sum m y^2 and sum m (m the pixel's 0/1 weight).
    Stride 1 with at most 1/8 of the pixels left out takes the lagged-product (Toeplitz)
    path unless ``toeplitz`` says otherwise; both give the same sums, to rounding.
    """
    (kh, kw), (sh, sw) = size, stride
    n_img, h_out, _ = y.shape
    taps = kh * kw
    dropped = mask.size - int(np.count_nonzero(mask))
    if toeplitz is None:
        toeplitz = dropped <= mask.size // 8
    toeplitz = toeplitz and sh == 1 and sw == 1
    drop = (
        np.argwhere(mask == 0).astype(np.int64)
        if toeplitz and dropped
        else np.zeros((0, 3), np.int64)
    )
    n_chunks = engines.reduction_chunks(n_img * max(h_out, x.shape[1]))
    gram = np.zeros((n_chunks, n_img, taps, taps))
    moments = np.zeros((n_chunks, n_img, 2 * taps + 3))
    engines.or_jit(engine).fit_gather(x, y, mask, drop, sh, sw, kh, kw, toeplitz, gram, moments)
    g = gram.sum(axis=0)
    upper = np.triu(g)
    return upper + np.triu(g, 1).transpose(0, 2, 1), moments.sum(axis=0)


def check_memory(planes: int, size: tuple[int, int]) -> None:
    """Refuse, before allocating, a kernel whose statistics would not fit in memory."""
    from convtool.fit.prep import MAX_GRAM_BYTES, FitError

    taps = size[0] * size[1]
    need = engines.reduction_chunks(1 << 20) * planes * taps * taps * 8
    if need > MAX_GRAM_BYTES:
        raise FitError(
            f"a {size[0]}x{size[1]} kernel (rows x columns) has {taps:,} unknowns per plane: "
            f"its statistics would take {need / 2**30:.0f} GiB; give a smaller size"
        )


class Normal(NamedTuple):
    """The normal equations G w = c of the fit, normalised by the pixel count m."""

    gram: np.ndarray  # (n, n)
    c: np.ndarray  # (n,)
    s: float  # sum y^2 / m
    m: int


def assemble(gram: np.ndarray, moments: np.ndarray, bias: bool, per_channel: bool) -> Normal:
    """Turn per-plane statistics into one system: summed (a shared kernel) or block diagonal."""
    n_img, taps, _ = gram.shape
    m = float(moments[:, 2 * taps + 2].sum())
    blocks = []
    for n in range(n_img):
        mo = moments[n]
        g = gram[n]
        c = mo[:taps]
        if bias:
            g = np.block(
                [[g, mo[taps : 2 * taps, None]], [mo[None, taps : 2 * taps], mo[None, -1:]]]
            )
            c = np.append(c, mo[2 * taps])
        blocks.append((g, c))
    if per_channel:
        size = blocks[0][1].size
        big = np.zeros((n_img * size, n_img * size))
        for n, (g, _) in enumerate(blocks):
            big[n * size : (n + 1) * size, n * size : (n + 1) * size] = g
        cvec = np.concatenate([c for _, c in blocks])
    else:
        big = sum(g for g, _ in blocks)
        cvec = sum(c for _, c in blocks)
    scale = 1.0 / max(m, 1.0)
    return Normal(big * scale, cvec * scale, float(moments[:, 2 * taps + 1].sum()) * scale, int(m))


class Exact(NamedTuple):
    """The least-squares solution and what the Gram matrix's spectrum says."""

    w: np.ndarray
    residual: np.ndarray  # G w - c: rounding
    rank: int
    lam_max: float
    lam_min: float  # the smallest eigenvalue kept
    inverse_diag: np.ndarray  # diag of G's (pseudo-)inverse: inf where G tells nothing


def least_squares(normal: Normal) -> Exact:
    """Solve G w = c through G's eigendecomposition (the smallest-norm solution if singular).

    Eigenvalues below n * eps * lambda_max count as zero, as numpy's lstsq does.
    """
    lam, vec = np.linalg.eigh(normal.gram)
    lam_max = float(max(lam[-1], 0.0))
    keep = lam > lam.size * np.finfo(np.float64).eps * lam_max
    v = vec[:, keep]
    w = v @ ((v.T @ normal.c) / lam[keep])
    lam_min = float(lam[keep][0]) if keep.any() else 0.0
    inverse_diag = (v * v) @ (1.0 / lam[keep])
    # an unknown the pictures do not pin down (a direction dropped) has no finite error
    lost = (vec[:, ~keep] ** 2).sum(axis=1) > 1e-8
    inverse_diag[lost] = np.inf
    residual = normal.gram @ w - normal.c
    return Exact(w, residual, int(keep.sum()), lam_max, lam_min, inverse_diag)


def auto_step(lam_max: float) -> float:
    """Gradient descent's step from the data: 0.95 of the stability limit 2 / lambda_max.

    On a quadratic, a step lr shrinks the error along each eigenvector of G by
    |1 - lr * lambda|, so any lr below 2 / lambda_max converges and none above it does.
    The fastest constant step, 2 / (lambda_max + lambda_min), lies within a whisker of
    that limit on any badly conditioned problem and leaves the top direction undamped
    (factor ~ -1) when G is singular; 1.9 / lambda_max is as fast to within 5% and still
    damps every direction by at least 0.9 per step.
    """
    return 2.0 * AUTO_STEP / lam_max


class Run(NamedTuple):
    w: np.ndarray
    iterations: int
    stopped: str
    history: np.ndarray  # the loss checked before each update, and the final one


def iterate(
    method: str,
    normal: Normal,
    exact: Exact,
    loss_min: float,
    w0: np.ndarray,
    *,
    lr: float,
    tol: float,
    max_iter: int,
    callback: Callable[[int, float], object] | None = None,
    engine: engines.Engine | None = None,
) -> Run:
    """Run gradient descent ('gd') or conjugate gradient ('cg') from w0.

    The iterations run in jitted chunks; between chunks ``callback(iteration, loss)`` is
    called, and the chunks grow until each lasts about 20 ms.
    """
    # cg runs on u = w sqrt(lambda_max), whose Gram matrix G / lambda_max has norm 1: the
    # same iterates and losses, but no curvature d'Gd that overflows on huge values
    scale = np.sqrt(exact.lam_max) if method == "cg" and exact.lam_max > 0 else 1.0
    gram, w_best, r_best = normal.gram / scale**2, exact.w * scale, exact.residual / scale
    w = np.array(w0, dtype=np.float64) * scale
    n = w.size
    floor_w = ROUNDING * exact.lam_max / scale**2
    floor_c = ROUNDING * float(np.linalg.norm(normal.c)) / scale
    scalars = np.array([loss_min, lr, tol, floor_w, floor_c])
    state = np.zeros(2 * n + 1)
    code_m = 0 if method == "gd" else 1
    history: list[np.ndarray] = []
    it, chunk, code = 0, 256, 0
    core = engines.or_jit(engine)
    while code == 0:
        stop = min(it + chunk, max_iter + 1)
        buf = np.empty(stop - it)
        start = time.perf_counter()
        new_it, code = core.fit_iterate(
            code_m, gram, w, w_best, r_best, scalars, it, stop, max_iter, state, buf
        )
        history.append(buf[: new_it - it + (1 if code else 0)])
        it = new_it
        if callback is not None and history[-1].size:
            callback(it, float(history[-1][-1]))
        if time.perf_counter() - start < 0.02:
            chunk = min(chunk * 2, 1 << 20)
    return Run(w / scale, it, STOPPED[code], np.concatenate(history))
