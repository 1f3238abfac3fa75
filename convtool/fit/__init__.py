"""Kernel recovery: find the kernel (and bias) that turns one picture into another.

The chapter's experiment 17.3.7 made into a tool. The loss is the chapter's,
``loss = sum((z - y)^2) / 2 / m`` with ``z = x (*) w (+ b)`` over the m target pixels
fitted, and three methods minimise it:

- ``'gd'``: gradient descent exactly as the chapter runs it: the loss is checked
  before each update (stop when it is below ``tol``), ``w <- w - lr * dw / m``, at most
  ``max_iter`` updates, from a start drawn from normal(0, 0.1). ``lr='auto'`` takes
  the largest safe step the data allow (see :func:`convtool._fitsolve.auto_step`).
- ``'cg'`` (the default): conjugate gradient on the same loss, the chapter's descent
  along conjugate directions; exact in at most n steps in exact arithmetic (n the
  number of unknowns), restarted where rounding demands.
- ``'lstsq'``: the least-squares problem solved directly, in one step.

All three stop when the loss is below ``tol``, or when it has reached its minimum to
rounding (a target with noise, such as any 8-bit picture, has a loss floor above the
default ``tol``): both count as converged, and :attr:`FitResult.stopped` says which.
A run that stops at ``max_iter`` short of both is reported as not converged.

Each iteration costs the same whatever the pictures' size: the pictures are read once,
in one jitted pass that gathers the patches' Gram matrix and their correlation with the
target (see :mod:`convtool._fitsolve`), and the methods iterate on those.

Arrays use convtool's layout: a picture is (H, W) or (C, H, W). A target of the same
size as the input means 'same' padding; by default only the target pixels whose whole
window lies inside the picture are fitted, so that however the target's maker treated
the border cannot bias the answer (``border=`` models the border instead).
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from convtool.fit import prep, solve
from convtool.fit.prep import BORDERS, DivergenceError, FitError, ShapeError

__all__ = [
    "BORDERS",
    "METHODS",
    "DivergenceError",
    "FitError",
    "FitResult",
    "KernelMatch",
    "ShapeError",
    "describe_match",
    "fit_kernel",
    "match_kernel",
]

METHODS = ("cg", "gd", "lstsq")
for _error in (FitError, ShapeError, DivergenceError):
    _error.__module__ = __name__  # defined beside the code that raises them; public here
del _error


@dataclass(frozen=True)
class FitResult:
    """A fitted kernel and how the fit went.

    ``kernel`` is (kH, kW), or (C, kH, kW) with ``per_channel``; ``bias`` is None when no
    bias was fitted, a float, or a (C,) array with ``per_channel``. ``loss`` is the
    chapter's loss at the kernel returned, ``loss_min`` the smallest loss any kernel of
    this size reaches (above 0 when the target has noise), ``psnr`` the reconstruction's
    PSNR in dB for pixel values in [0, 1]. ``history`` holds the loss checked before
    each update, then the final loss. ``stopped`` is 'tol' (loss below ``tol``),
    'minimum' (the least-squares minimum reached, to rounding) or 'max_iter'.
    """

    kernel: np.ndarray
    bias: float | np.ndarray | None
    method: str
    lr: float | None
    iterations: int
    loss: float
    converged: bool
    stopped: str
    tol: float
    max_iter: int
    seed: int | None
    loss_min: float
    psnr: float
    pixels: int
    clipped: int
    padding: str
    stride: tuple[int, int]
    size_from: str  # 'shapes', 'given' or 'detected'
    rank: int
    unknowns: int
    eigenvalues: tuple[float, float]  # the Gram matrix's smallest (kept) and largest
    history: np.ndarray = field(repr=False)
    notes: tuple[str, ...] = ()

    @property
    def size(self) -> tuple[int, int]:
        return int(self.kernel.shape[-2]), int(self.kernel.shape[-1])

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready values (infinite PSNR becomes None)."""
        bias = self.bias
        return {
            "kernel": self.kernel.tolist(),
            "bias": bias.tolist() if isinstance(bias, np.ndarray) else bias,
            "iterations": self.iterations,
            "loss": self.loss,
            "converged": self.converged,
            "stopped": self.stopped,
            "method": self.method,
            "lr": self.lr,
            "tol": self.tol,
            "max_iter": self.max_iter,
            "seed": self.seed,
            "loss_min": self.loss_min,
            "psnr": self.psnr if math.isfinite(self.psnr) else None,
            "size": list(self.size),
            "stride": list(self.stride),
            "padding": self.padding,
            "size_from": self.size_from,
            "pixels": self.pixels,
            "clipped": self.clipped,
            "rank": self.rank,
            "unknowns": self.unknowns,
            "eigenvalues": list(self.eigenvalues),
            "notes": list(self.notes),
        }


# ----------------------------------------------------------------------------- the fit


def fit_kernel(
    x: Any,
    y: Any,
    *,
    size: int | tuple[int, int] | None = None,
    stride: int | tuple[int, int] = 1,
    method: str = "cg",
    lr: float | str = "auto",
    tol: float = 1e-7,
    max_iter: int = 10000,
    seed: int | None = None,
    bias: bool = False,
    per_channel: bool = False,
    border: str = "interior",
    clip: tuple[float, float] | None = None,
    quantum: float | None = None,
    callback: Callable[[int, float], object] | None = None,
) -> FitResult:
    """Find the kernel w (and bias b) with ``y ~ conv2d(x, w) + b`` in least squares.

    Parameters
    ----------
    x, y : array, (H, W) or (C, H, W)
        The input and the target, with the same number of channels. A target smaller
        by K - 1 means a valid convolution (the size follows); one of the same size,
        'same' padding.
    size : int or (int, int), optional
        The kernel's rows and columns. Without it a same-size target has its size
        detected: the smallest odd square size (up to 9) that fits as well as 9x9.
    stride : int or (int, int)
        The convolution's stride (then ``size`` must be given).
    method : {'cg', 'gd', 'lstsq'}
        Conjugate gradient, the chapter's gradient descent, or a direct solve.
    lr : float or 'auto'
        Gradient descent's step. 'auto' is 0.95 of the stability limit 2 / lambda_max
        of the patches' Gram matrix; an explicit step at or above the limit raises
        :class:`DivergenceError`, which names a safe one.
    tol, max_iter : float, int
        Stop when the loss falls below ``tol``, or after ``max_iter`` updates.
    seed : int, optional
        Seed of the normal(0, 0.1) start of gd and cg (drawn at random if not given;
        the one used is reported).
    bias : bool
        Fit a bias too (the chapter fits none).
    per_channel : bool
        One kernel per channel instead of one shared by all.
    border : str
        Same-size targets only: 'interior' fits only the pixels whose window lies
        inside the picture; 'zero', 'reflect' (dcba|abcd), 'mirror' (dcb|abcd),
        'replicate' (aaaa|abcd) or 'wrap' pad the input that way, as ``convtool apply
        --border`` does, and fit every pixel.
    clip : (float, float), optional
        Leave out target pixels at or beyond these values: an 8-bit picture of a
        filter's output has lost what fell outside [0, 1], so ``clip=(0, 1)``.
    quantum : float, optional
        The target's rounding step, 1/255 for an 8-bit picture: size detection then
        ignores differences in loss finer than such rounding can tell apart.
    callback : callable, optional
        ``callback(iteration, loss)``, called as the iterations go.

    Returns
    -------
    FitResult

    Examples
    --------
    >>> import numpy as np
    >>> from convtool.ops import conv2d
    >>> x = np.random.default_rng(0).random((40, 40))
    >>> w = np.array([[0.0, -1, 0], [0, 2, 0], [0, -1, 0]])
    >>> r = fit_kernel(x, conv2d(x, w), seed=1)
    >>> r.converged, np.allclose(r.kernel, w, atol=1e-3)
    (True, True)
    >>> fit_kernel(x, conv2d(x, w), method="gd", lr=0.5, seed=1).method
    'gd'
    """
    if method not in METHODS:
        raise FitError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    if border not in BORDERS:
        raise FitError(f"border must be one of {', '.join(BORDERS)}; got {border!r}")
    if not (tol > 0 and math.isfinite(tol)):
        raise FitError(f"tol must be a positive number, got {tol!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 0:
        raise FitError(f"max_iter must be a non-negative integer, got {max_iter!r}")
    if lr != "auto" and not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise FitError(f"lr must be a positive number or 'auto', got {lr!r}")
    xp, yp = prep.planes(x, "input"), prep.planes(y, "target")
    if xp.shape[0] != yp.shape[0]:
        raise ShapeError(f"the input has {xp.shape[0]} channel(s) and the target {yp.shape[0]}")
    geo = prep.geometry(xp.shape, yp.shape, size, stride)
    notes = []
    if geo.size is None:
        geo, note = prep.detect_size(xp, yp, geo, bias, per_channel, clip, quantum)
        notes.append(note)
    same = any(geo.pads)
    if not same and border != "interior":
        raise ShapeError(f"border {border!r} applies to same-size targets only; this one is valid")
    padding = border if same else "valid"
    xc, yc = prep.crop(xp, yp, geo, border)
    mask = prep.target_mask(yc, clip)
    pixels = int(mask.sum())
    unknowns = xp.shape[0] if per_channel else 1
    unknowns *= geo.size[0] * geo.size[1] + bias
    if pixels == 0:
        raise FitError("no target pixel is left to fit: all are clipped (at 0 or 1)")
    gram, moments = solve.gather(xc, yc, mask, geo.size, geo.stride)
    if not (np.isfinite(gram).all() and np.isfinite(moments).all()):
        big = max(float(np.abs(xp).max()), float(np.abs(yp).max()))
        raise FitError(
            f"the pictures' values (up to {big:.3g}) overflow float64 in the fit's sums; "
            "scale them down"
        )
    normal = solve.assemble(gram, moments, bias, per_channel)
    exact = solve.least_squares(normal)
    if exact.rank == 0:
        raise FitError("the input is blank (all zeros where it is fitted): no kernel can be told")
    if exact.rank < unknowns:
        notes.append(
            f"the pictures determine only {exact.rank} of the {unknowns} unknowns (a flat or "
            "too simple input): other kernels fit as well as this one"
        )
    loss_min = _residual_loss(xc, yc, mask, exact.w, geo, bias, per_channel, pixels)
    limit, safe = 2.0 / exact.lam_max, solve.auto_step(exact.lam_max)
    if method == "gd" and lr == "auto":
        lr = safe
    elif method == "gd" and lr >= limit * (1 - 1e-9):
        raise DivergenceError(
            f"lr {lr:g} makes gradient descent diverge on these pictures: steps must be below "
            f"2 / {exact.lam_max:.4g} = {limit:.4g} (2 over the largest eigenvalue of the "
            f"patches' Gram matrix); use lr {safe:.4g} or 'auto'",
            safe,
            limit,
        )
    lr_used = float(lr) if method == "gd" else None
    if method == "lstsq":
        seed = None
        w = exact.w.copy()
        hist = np.array([loss_min])
        iterations, stopped = 1, "tol" if loss_min < tol else "minimum"
        if callback is not None:
            callback(1, loss_min)
    else:
        seed = secrets.randbits(32) if seed is None else int(seed)
        w0 = _start(seed, xp.shape[0] if per_channel else 1, geo.size, bias)
        run = solve.iterate(
            method, normal, exact, loss_min, w0, lr=lr_used or 0.0, tol=tol, max_iter=max_iter,
            callback=callback,
        )  # fmt: skip
        if run.stopped == "diverged":
            raise DivergenceError(
                f"the loss overflowed: {method} diverged on these pictures (values up to "
                f"{max(float(np.abs(xp).max()), float(np.abs(yp).max())):.3g}); method "
                "'lstsq' solves without iterating, or scale the pictures down",
                safe,
                limit,
            )
        w, hist, iterations, stopped = run.w, run.history, run.iterations, run.stopped
    loss = float(hist[-1])
    if stopped == "minimum" and loss_min >= tol:
        notes.append(
            f"the loss cannot fall below {loss_min:.3g} for a {geo.size[0]}x{geo.size[1]} kernel "
            f"(noise or rounding in the target), above tol {tol:g}: stopped at that minimum"
        )
    kernel, b = _unpack(w, xp.shape[0] if per_channel else 0, geo.size, bias)
    return FitResult(
        kernel=kernel, bias=b, method=method, lr=lr_used, iterations=iterations, loss=loss,
        converged=stopped in ("tol", "minimum"), stopped=stopped, tol=float(tol),
        max_iter=int(max_iter), seed=seed, loss_min=loss_min,
        psnr=10 * math.log10(1 / (2 * loss)) if loss > 0 else math.inf, pixels=pixels,
        clipped=int(mask.size - pixels), padding=padding, stride=geo.stride,
        size_from=geo.size_from, rank=exact.rank, unknowns=unknowns,
        eigenvalues=(exact.lam_min, exact.lam_max), history=hist, notes=tuple(notes),
    )  # fmt: skip


def _start(seed: int, channels: int, size: tuple[int, int], bias: bool) -> np.ndarray:
    """The chapter's start: weights from normal(0, 0.1); a bias starts at 0."""
    rng = np.random.default_rng(seed)
    parts = []
    for _ in range(max(channels, 1)):
        parts.append(rng.normal(0.0, 0.1, size=size).ravel())
        if bias:
            parts.append(np.zeros(1))
    return np.concatenate(parts)


def _unpack(w: np.ndarray, channels: int, size: tuple[int, int], bias: bool):
    per = w.reshape(max(channels, 1), -1)
    kernel = per[:, : size[0] * size[1]].reshape(-1, *size)
    b = per[:, -1].copy() if bias else None
    if channels:
        return kernel, b
    return kernel[0], None if b is None else float(b[0])


def _residual_loss(x, y, mask, w, geo, bias, per_channel, pixels) -> float:
    """The loss of the least-squares kernel, from the real residual (one convolution)."""
    from convtool.ops import conv2d

    n_img = x.shape[0]
    kernel, b = _unpack(w, n_img if per_channel else 0, geo.size, bias)
    if per_channel:
        z = np.stack([conv2d(x[n], kernel[n], stride=geo.stride) for n in range(n_img)])
        if bias:
            z += b[:, None, None]
    else:
        z = conv2d(x[:, None], kernel[None, None], stride=geo.stride)[:, 0]
        if bias:
            z += b
    z -= y
    z *= z
    return float(np.einsum("nij,nij->", z, mask) / 2 / pixels)


# ----------------------------------------------------------------------------- named kernels


class KernelMatch(NamedTuple):
    """``kernel ~ scale * named``: the named kernel, the scale and how close (relative)."""

    name: str
    scale: float
    error: float  # |kernel - scale * named| / |kernel|
    exact: bool  # error below 1e-3


def match_kernel(kernel: Any, *, close: float = 0.03) -> KernelMatch | None:
    """The named kernel that a fitted kernel is a multiple of, if one is within ``close``.

    Every kernel of the bank with the kernel's shape is tried (and ``gaussian:K`` and
    ``box:WxH`` at that size); the scale is fitted by least squares, and the match with
    the smallest relative error wins (a scale nearer 1 breaks ties, so 0.11 everywhere
    is ``blur``, not 0.99 x ``box3``).

    Examples
    --------
    >>> import numpy as np
    >>> m = match_kernel(0.125 * np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]))
    >>> m.name, m.scale, m.exact
    ('sobel_x', 0.125, True)
    """
    from convtool.kernels import list_kernels, parse_kernel

    w = np.asarray(kernel, dtype=np.float64)
    norm = float(np.linalg.norm(w))
    if w.ndim != 2 or norm == 0 or not math.isfinite(norm):
        return None
    candidates = [(i.name, i.kernel) for i in list_kernels() if i.kernel.shape == w.shape]
    kh, kw = w.shape
    if kh == kw and kh % 2:
        candidates.append((f"gaussian:{kh}", parse_kernel(f"gaussian:{kh}")))
    candidates.append((f"box:{kw}x{kh}", parse_kernel(f"box:{kw}x{kh}")))
    best = None
    for name, k in candidates:
        kk = float(np.vdot(k, k))
        if kk == 0:
            continue
        scale = float(np.vdot(w, k)) / kk
        error = float(np.linalg.norm(w - scale * k)) / norm
        key = (round(error, 12), abs(math.log(abs(scale))) if scale else math.inf)
        if error < close and (best is None or key < best[0]):
            best = (key, KernelMatch(name, scale, error, error < 1e-3))
    return None if best is None else best[1]


def describe_match(match: KernelMatch, bias: float | None = None) -> str:
    """``'0.125 x sobel_x, bias 0.5'``; ``'sobel_x'`` when the scale is 1.

    >>> describe_match(KernelMatch("sobel_x", 0.125, 0.0, True), 0.5)
    '0.125 x sobel_x, bias 0.5'
    """
    scale = f"{match.scale:.4g}"
    text = match.name if scale == "1" else f"{scale} x {match.name}"
    if bias is not None and f"{bias:.4g}" not in ("0", "-0"):
        text += f", bias {bias:.4g}"
    return text
