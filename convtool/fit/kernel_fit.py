"""The fit itself: :func:`fit_kernel`, in steps (check, set up, solve exactly, iterate).

Every problem is set up as a valid convolution (:mod:`convtool.fit.prep`), read once into
the normal equations and solved exactly (:mod:`convtool.fit.solve`); the methods then
iterate on those alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from convtool import vocab
from convtool.fit import prep, solve
from convtool.fit.prep import BORDERS, DivergenceError, FitError, ShapeError
from convtool.fit.result import FitResult

METHODS = vocab.METHODS
# gradient descent's start is random (the chapter's); this seed makes it the same every run
DEFAULT_SEED = 1


def fit_kernel(
    x: Any,
    y: Any,
    *,
    size: int | tuple[int, int] | None = None,
    stride: int | tuple[int, int] | None = None,
    method: str = "cg",
    lr: float | str = "auto",
    tol: float = 1e-7,
    max_iter: int = 10000,
    seed: int | None = None,
    bias: bool | None = None,
    per_channel: bool = False,
    border: str = "interior",
    clip: tuple[float, float] | None = None,
    quantum: float | None = None,
    exclude: Any = None,
    lossy: bool = False,
    callback: Callable[[int, float], object] | None = None,
    engine: Any = None,
    color: str | None = None,
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
    stride : int or (int, int), optional
        The convolution's stride. Without it the stride is found from the sizes: a
        target about half the input's size was made with stride 2 ('same' padding, or
        valid with the one odd size the sizes allow); none that fits raises
        :class:`ShapeError`. A size that follows from the shapes is at most 63x63.
    method : {'cg', 'gd', 'lstsq'}
        Conjugate gradient from zero, finished with a direct solve (the least-squares
        optimum to float precision); the chapter's gradient descent, which stops where
        its loss falls below ``tol``; or the direct solve alone.
    lr : float or 'auto'
        Gradient descent's step. 'auto' is 0.95 of the stability limit 2 / lambda_max
        of the patches' Gram matrix; an explicit step at or above the limit raises
        :class:`DivergenceError`, which names a safe one.
    tol, max_iter : float, int
        Stop when the loss falls below ``tol``, or after ``max_iter`` updates.
    seed : int, optional
        Seed of gradient descent's normal(0, 0.1) start (the chapter's); 1 if not
        given, so that every run is the same. cg starts from zero and has no seed.
    bias : bool, optional
        Fit a bias too (True) or not (False, as the chapter). None (the default): a bias
        is fitted when the target has a clear constant offset (such as ``apply --map
        offset``'s 0.5), with a note, and none otherwise.
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
    exclude : array of bool, optional
        Target pixels to leave out, shaped like the target (or one of its planes): a
        lossy target's censored pixels (see :mod:`convtool.fit.lossy`).
    lossy : bool
        The target was compressed lossily (JPEG): size detection then takes a size that
        fits within 20% of the largest tried, not 2%, as compression noise is larger
        than rounding.
    callback : callable, optional
        ``callback(iteration, loss)``, called as the iterations go.
    engine : convtool.core.engine.Engine, optional
        What runs the core's kernels, as in :func:`convtool.ops.conv2d`.
    color : {'channels', 'gray', 'sum'}, optional
        What ``convtool apply --color`` did to a colour input ``x`` (3 or more channels):
        filtered each channel (a colour target); its luma (both are fitted on their
        ITU-R 601 luma); or the channels summed (a grey target). None: as given.

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
    _check_options(method, border, tol, max_iter, lr)
    x, y = _colour(x, y, color)
    auto_bias = bias is None
    leave_out = _Leave(clip, quantum, exclude, lossy)
    problem = _set_up(x, y, size, stride, border, bias is not False, per_channel, leave_out,
                      engine)  # fmt: skip
    exact = _solve_exactly(problem, bias is not False, per_channel)
    if auto_bias:
        bias, exact, problem = _choose_bias(problem, exact, per_channel)
    if exact.solution.rank < problem.unknowns:
        problem.notes.append(
            f"the pictures determine only {exact.solution.rank} of the {problem.unknowns} "
            "unknowns (a flat or too simple input): other kernels fit as well as this one"
        )
    step = _gd_step(method, lr, exact.solution)
    if method == "lstsq":
        seed = None
        stopped = "tol" if exact.loss_min < tol else "minimum"
        run = solve.Run(exact.solution.w.copy(), 1, stopped, np.array([exact.loss_min]))
        if callback is not None:
            callback(1, exact.loss_min)
    else:
        seed = (DEFAULT_SEED if seed is None else int(seed)) if method == "gd" else None
        run = _iterate(
            problem, exact, method, step, seed, bias, per_channel, tol, max_iter, callback
        )
        if method == "cg" and run.stopped != "max_iter":
            run = _finish(run, exact)
    loss = float(run.history[-1])
    geo, notes = problem.geo, problem.notes
    if run.stopped == "minimum" and exact.loss_min >= tol:
        notes.append(
            f"the loss cannot fall below {exact.loss_min:.3g} for a {geo.size[0]}x{geo.size[1]} "
            f"kernel (noise or rounding in the target), above tol {tol:g}: stopped at that minimum"
        )
    channels = problem.channels if per_channel else 0
    kernel, b = _unpack(run.w, channels, geo.size, bias)
    stderr, bias_stderr = _unpack(_stderr(exact, problem.pixels), channels, geo.size, bias)
    return FitResult(
        kernel=kernel, bias=b, method=method, lr=step.lr, iterations=run.iterations, loss=loss,
        converged=run.stopped in ("tol", "minimum"), stopped=run.stopped, tol=float(tol),
        max_iter=int(max_iter), seed=seed, loss_min=exact.loss_min,
        psnr=10 * math.log10(1 / (2 * loss)) if loss > 0 else math.inf, pixels=problem.pixels,
        clipped=int(problem.mask.size - problem.pixels), padding=problem.padding,
        stride=geo.stride, size_from=geo.size_from, rank=exact.solution.rank,
        unknowns=problem.unknowns, eigenvalues=(exact.solution.lam_min, exact.solution.lam_max),
        history=run.history, notes=tuple(notes), stderr=stderr, bias_stderr=bias_stderr,
    )  # fmt: skip


def _check_options(method: str, border: str, tol: float, max_iter: int, lr: float | str) -> None:
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


def _colour(x: Any, y: Any, color: str | None) -> tuple[Any, Any]:
    """``x`` and ``y`` ((H, W) or (C, H, W)) as ``color`` makes them one colour model, as
    the command line's ``--color`` does (:func:`convtool.fit.pairs.prepare_pair`)."""
    if color is None:
        return x, y
    from convtool.filtering import to_gray

    vocab.check("color", color, vocab.COLORS)
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 3 or x.shape[0] < 3 or color == "channels":
        return x, y  # a grey input: apply's colour modes do not apply
    if color == "sum":
        return x[:3].astype(np.float64).sum(axis=0), y
    grey = to_gray(np.moveaxis(x, 0, -1))
    return grey, to_gray(np.moveaxis(y, 0, -1)) if y.ndim == 3 else y


class _Problem(NamedTuple):
    """A fit reduced to a valid convolution: the cropped pair, which pixels count, the size."""

    xp: np.ndarray  # the input's planes as given (N, H, W)
    yp: np.ndarray  # the target's
    xc: np.ndarray  # the input cropped or padded to the target's windows
    yc: np.ndarray  # the target's pixels fitted
    mask: np.ndarray  # 1 where a target pixel counts, 0 where it is clipped
    geo: prep.Geometry
    padding: str  # 'valid', or the border of a same-size target
    pixels: int
    unknowns: int
    notes: list[str]
    engine: Any  # runs the core's kernels (None: the JIT)
    quantum: float | None  # the target's rounding step

    @property
    def channels(self) -> int:
        return self.xp.shape[0]

    def largest_value(self) -> float:
        return max(float(np.abs(self.xp).max()), float(np.abs(self.yp).max()))


class _Leave(NamedTuple):
    """Which target pixels a fit leaves out, and how finely the target was rounded."""

    clip: tuple[float, float] | None
    quantum: float | None
    exclude: Any
    lossy: bool


def _set_up(x, y, size, stride, border, bias, per_channel, leave: _Leave, engine) -> _Problem:
    """Check the pair, find the geometry (detecting the size if need be), crop and mask."""
    clip, quantum = leave.clip, leave.quantum
    xp, yp = prep.planes(x, "input"), prep.planes(y, "target")
    if xp.shape[0] != yp.shape[0]:
        raise ShapeError(f"the input has {xp.shape[0]} channel(s) and the target {yp.shape[0]}")
    exclude = prep.exclusion(leave.exclude, yp.shape)
    geo = prep.geometry(xp.shape, yp.shape, size, stride)
    notes = list(geo.notes)
    if geo.size is None:
        geo, note = prep.detect_size(
            xp, yp, geo, bias, per_channel, clip, quantum, engine, exclude=exclude,
            share=0.2 if leave.lossy else 0.02,
        )  # fmt: skip
        notes.append(note)
    solve.check_memory(xp.shape[0], geo.size)
    same = any(geo.pads)
    if not same and border != "interior":
        raise ShapeError(f"border {border!r} applies to same-size targets only; this one is valid")
    xc, yc = prep.crop(xp, yp, geo, border)
    mask = prep.target_mask(
        yc, clip, None if exclude is None else prep.crop(xp, exclude, geo, border)[1]
    )
    pixels = int(mask.sum())
    unknowns = xp.shape[0] if per_channel else 1
    unknowns *= geo.size[0] * geo.size[1] + bias
    if pixels == 0:
        raise FitError("no target pixel is left to fit: all are clipped (at 0 or 1)")
    padding = border if same else "valid"
    return _Problem(xp, yp, xc, yc, mask, geo, padding, pixels, unknowns, notes, engine, quantum)


class _Exact(NamedTuple):
    normal: solve.Normal
    solution: solve.Exact
    loss_min: float  # the least-squares kernel's loss, from the real residual
    stats: tuple[np.ndarray, np.ndarray]  # the gathered Gram matrices and moments


def _solve_exactly(problem: _Problem, bias: bool, per_channel: bool, stats=None) -> _Exact:
    """Gather the normal equations in one pass over the pictures and solve them directly."""
    p = problem
    if stats is None:
        stats = solve.gather(p.xc, p.yc, p.mask, p.geo.size, p.geo.stride, engine=p.engine)
    gram, moments = stats
    if not (np.isfinite(gram).all() and np.isfinite(moments).all()):
        raise FitError(
            f"the pictures' values (up to {p.largest_value():.3g}) overflow float64 in the "
            "fit's sums; scale them down"
        )
    normal = solve.assemble(gram, moments, bias, per_channel)
    exact = solve.least_squares(normal)
    if exact.rank == 0:
        raise FitError("the input is blank (all zeros where it is fitted): no kernel can be told")
    loss_min = _residual_loss(p, exact.w, bias, per_channel)
    return _Exact(normal, exact, loss_min, stats)


# a bias is fitted unasked when it is this many standard errors from 0, and lowers the
# loss by at least this share: a real offset, not noise
OFFSET_SIGMAS = 5.0
OFFSET_GAIN = 0.1


def _choose_bias(problem: _Problem, with_bias: _Exact, per_channel: bool):
    """Keep the bias only where the target has a clear constant offset; say so if kept."""
    p = problem
    taps = p.geo.size[0] * p.geo.size[1]
    b = with_bias.solution.w.reshape(-1, taps + 1)[:, -1]
    se = _stderr(with_bias, p.pixels).reshape(-1, taps + 1)[:, -1]
    without = _solve_exactly(p, False, per_channel, with_bias.stats)
    # an offset under two of the target's rounding steps is no clear one
    least = max(1e-6, 2 * (p.quantum or 0.0))
    clear = (np.abs(b) > np.maximum(OFFSET_SIGMAS * se, least)).any()
    if clear and with_bias.loss_min < (1 - OFFSET_GAIN) * without.loss_min:
        offset = ", ".join(f"{v:.4g}" for v in b)
        p.notes.append(
            f"the target has a constant offset: a bias ({offset}) is fitted with the kernel; "
            "give no bias to fit the kernel alone"
        )
        return True, with_bias, p
    return False, without, p._replace(unknowns=p.unknowns - len(b))


class _Step(NamedTuple):
    lr: float | None  # gradient descent's step (None for the other methods)
    safe: float  # the automatic step
    limit: float  # the stability limit 2 / lambda_max


def _gd_step(method: str, lr: float | str, exact: solve.Exact) -> _Step:
    """Gradient descent's step: the automatic one, or the one given if it is below the limit."""
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
    return _Step(float(lr) if method == "gd" else None, safe, limit)


def _iterate(problem, exact, method, step, seed, bias, per_channel, tol, max_iter, callback):
    """Run gd or cg from the chapter's random start; an overflow raises DivergenceError."""
    w0 = _start(seed, problem.channels if per_channel else 1, problem.geo.size, bias)
    run = solve.iterate(
        method, exact.normal, exact.solution, exact.loss_min, w0, lr=step.lr or 0.0, tol=tol,
        max_iter=max_iter, callback=callback, engine=problem.engine,
    )  # fmt: skip
    if run.stopped == "diverged":
        raise DivergenceError(
            f"the loss overflowed: {method} diverged on these pictures (values up to "
            f"{problem.largest_value():.3g}); method "
            "'lstsq' solves without iterating, or scale the pictures down",
            step.safe,
            step.limit,
        )
    return run


def _finish(run: solve.Run, exact: _Exact) -> solve.Run:
    """cg's last step: the direct solution of the small system it converged towards, so that
    the kernel is the optimum to float precision, not merely one below the tolerance."""
    history = run.history.copy()
    history[-1] = exact.loss_min
    return solve.Run(exact.solution.w.copy(), run.iterations, run.stopped, history)


def _start(seed: int | None, channels: int, size: tuple[int, int], bias: bool) -> np.ndarray:
    """The chapter's start: weights from normal(0, 0.1), a bias at 0; no seed: zero."""
    if seed is None:
        return np.zeros(max(channels, 1) * (size[0] * size[1] + bias))
    rng = np.random.default_rng(seed)
    parts = []
    for _ in range(max(channels, 1)):
        parts.append(rng.normal(0.0, 0.1, size=size).ravel())
        if bias:
            parts.append(np.zeros(1))
    return np.concatenate(parts)


def _stderr(exact: _Exact, pixels: int) -> np.ndarray:
    """Each unknown's standard error: sqrt(sigma^2 diag((X'X)^-1)), sigma^2 = RSS / (m - rank).

    The residual's variance is estimated from the fit itself, as if pixels were independent:
    a guide to which entries the pictures pin down, not a guarantee."""
    dof = pixels - exact.solution.rank
    if dof <= 0:
        return np.full(exact.solution.w.shape, np.inf)
    inv = exact.solution.inverse_diag
    finite = np.isfinite(inv)  # an entry the pictures do not pin down stays inf
    return np.where(finite, np.sqrt(np.where(finite, inv, 0) * (2 * exact.loss_min / dof)), inv)


def _unpack(w: np.ndarray, channels: int, size: tuple[int, int], bias: bool):
    per = w.reshape(max(channels, 1), -1)
    kernel = per[:, : size[0] * size[1]].reshape(-1, *size)
    b = per[:, -1].copy() if bias else None
    if channels:
        return kernel, b
    return kernel[0], None if b is None else float(b[0])


def _residual_loss(p: _Problem, w: np.ndarray, bias: bool, per_channel: bool) -> float:
    """The loss of the least-squares kernel, from the real residual (one convolution)."""
    from convtool.ops import conv2d

    x, y, mask, geo, pixels = p.xc, p.yc, p.mask, p.geo, p.pixels
    n_img = x.shape[0]
    kernel, b = _unpack(w, n_img if per_channel else 0, geo.size, bias)
    if per_channel:
        z = np.stack(
            [conv2d(x[n], kernel[n], stride=geo.stride, engine=p.engine) for n in range(n_img)]
        )
        if bias:
            z += b[:, None, None]
    else:
        z = conv2d(x[:, None], kernel[None, None], stride=geo.stride, engine=p.engine)[:, 0]
        if bias:
            z += b
    z -= y
    z *= z
    return float(np.einsum("nij,nij->", z, mask) / 2 / pixels)
