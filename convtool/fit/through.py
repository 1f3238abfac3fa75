"""Fitting through stages: the kernel (and bias) of a conv whose output went on through
relu and pooling, found by back-propagation, the chapter's backward pass put to work.

The model is the pipeline's: ``y = stages(conv(s, w) + b)``, with s the input's one plane
(the channels' sum, as ``convtool pipeline`` sums a 2-D kernel's maps over the channels,
or the luma) and ``stages`` a chain of relu, max pool and average pool. The loss is the
chapter's, ``sum((y_hat - y)^2) / 2 / m``; it is no longer quadratic in (w, b), but
piecewise quadratic (relu and max pool choose which pixels count), so:

- the gradient comes from the backward pass of each stage, in reverse: the core's
  ``max_pool2d_backward`` / ``avg_pool2d_backward``, ``relu_backward``, and
  ``conv2d_backward`` for the kernel's and bias's gradients;
- L-BFGS (its own few lines: deterministic, no SciPy) minimises it from several starts:
  the least-squares kernel of the target spread back onto the conv's grid (where it is
  positive: the pixels a relu lets through), then seeded random ones; the best run is
  kept, and runs stop as soon as one reaches the target's own precision.

Arrays are float64 throughout; a float32 target (``pipeline -o t.npy``) limits the
kernel's precision to about 1e-6.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from convtool import vocab
from convtool.fit.prep import FitError, ShapeError, dims
from convtool.fit.result import FitResult
from convtool.shapes import as_pair, resolve_padding

KINDS = ("relu", "maxpool", "avgpool")
STARTS = 4  # seeded random starts tried after the least-squares one
MEMORY = 10  # L-BFGS's pairs of steps and gradient changes
FIRST_RUN = 300  # iterations each start gets before the best one runs on
STALL = 20  # a run that gains less than a millionth of its loss in this many steps stops


class Layer(NamedTuple):
    """One stage after the conv to fit: relu, or a pool with its window and stride."""

    kind: str  # 'relu', 'maxpool' or 'avgpool'
    size: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    padding: tuple[int, int] = (0, 0)
    ceil_mode: bool = False


class ConvSpec(NamedTuple):
    """The conv to fit: its kernel size, stride, padding and border."""

    size: tuple[int, int] = (3, 3)
    stride: tuple[int, int] = (1, 1)
    padding: Any = "valid"
    border: str = "zero"


def _pool(layer: Layer, a: np.ndarray, engine: Any) -> np.ndarray:
    from convtool import ops

    pool = ops.max_pool2d if layer.kind == "maxpool" else ops.avg_pool2d
    return pool(a, layer.size, layer.stride, layer.padding, layer.ceil_mode, engine=engine)


def _pool_back(layer: Layer, a: np.ndarray, g: np.ndarray, engine: Any) -> np.ndarray:
    from convtool import ops

    back = ops.max_pool2d_backward if layer.kind == "maxpool" else ops.avg_pool2d_backward
    return back(a, g, layer.size, layer.stride, layer.padding, layer.ceil_mode, engine=engine)


class _Model:
    """The forward and backward pass of conv(s, w) + b -> layers, on a padded plane."""

    def __init__(self, s: np.ndarray, conv: ConvSpec, layers, y: np.ndarray, bias: bool, engine):
        self.s, self.conv, self.layers, self.y, self.bias = s, conv, layers, y, bias
        self.engine, self.taps = engine, conv.size[0] * conv.size[1]
        self.counted: np.ndarray | None = None  # 0 where a target pixel is left out

    def unpack(self, p: np.ndarray) -> tuple[np.ndarray, float]:
        return p[: self.taps].reshape(self.conv.size), float(p[self.taps]) if self.bias else 0.0

    def forward(self, p: np.ndarray) -> list[np.ndarray]:
        """Every stage's output, the conv's first."""
        from convtool import ops

        w, b = self.unpack(p)
        maps = [ops.conv2d(self.s, w, stride=self.conv.stride, engine=self.engine) + b]
        for layer in self.layers:
            a = maps[-1]
            maps.append(ops.relu(a) if layer.kind == "relu" else _pool(layer, a, self.engine))
        return maps

    def loss_grad(self, p: np.ndarray) -> tuple[float, np.ndarray]:
        """The chapter's loss and its gradient, by the backward pass of every stage."""
        from convtool import ops

        maps = self.forward(p)
        r = maps[-1] - self.y
        m = r.size
        if self.counted is not None:  # a clipped pixel: any prediction above it fits
            r = np.where((self.counted == 0) & (r > 0), 0.0, r)
        g = r / m
        for layer, a in zip(reversed(self.layers), reversed(maps[:-1]), strict=True):
            g = (
                ops.relu_backward(a, g)
                if layer.kind == "relu"
                else _pool_back(layer, a, g, self.engine)
            )
        w, _ = self.unpack(p)
        _, gw, gb = ops.conv2d_backward(self.s, w, g, stride=self.conv.stride, engine=self.engine)
        grad = gw.ravel()
        if self.bias:
            grad = np.append(grad, gb.sum())
        return float(np.vdot(r, r) / 2 / m), grad


def lbfgs(fg, p0: np.ndarray, max_iter: int, floor: float) -> tuple[np.ndarray, float, list[float]]:
    """Minimise with L-BFGS (two-loop recursion, backtracking Armijo line search).

    Stops after ``max_iter`` steps, when the loss is below ``floor``, when no step
    lowers it (the minimum, to rounding), or when STALL steps gain almost nothing.
    Returns (p, loss, the loss before each step).
    """
    p = p0.copy()
    f, g = fg(p)
    history, pairs = [f], []
    for _ in range(max_iter):
        if f <= floor or not np.any(g):
            break
        d = -_two_loop(g, pairs)
        slope = float(g @ d)
        if slope >= 0:  # not a descent direction: start again from the gradient
            pairs, d, slope = [], -g, -float(g @ g)
        t = 1.0 if pairs else min(1.0, 0.1 * (1.0 + float(np.linalg.norm(p))) / math.sqrt(-slope))
        while True:
            q = p + t * d
            fq, gq = fg(q)
            if fq <= f + 1e-4 * t * slope or t < 1e-12:
                break
            t *= 0.5
        if not fq < f:
            break  # no step lowers the loss: the minimum, to rounding
        s, dy = q - p, gq - g
        if float(s @ dy) > 1e-300:
            pairs = [*pairs[-(MEMORY - 1) :], (s, dy)]
        p, f, g = q, fq, gq
        history.append(f)
        if len(history) > STALL and history[-STALL - 1] - f <= 1e-6 * history[-STALL - 1]:
            break  # no real progress for STALL steps: a minimum (maybe a local one)
    return p, f, history


def _two_loop(g: np.ndarray, pairs) -> np.ndarray:
    q = g.copy()
    alphas = []
    for s, y in reversed(pairs):
        rho = 1.0 / float(y @ s)
        a = rho * float(s @ q)
        q -= a * y
        alphas.append((rho, a, s, y))
    if pairs:
        s, y = pairs[-1]
        q *= float(s @ y) / float(y @ y)
    for rho, a, s, y in reversed(alphas):
        q += s * (a - rho * float(y @ q))
    return q


def fit_through(
    x: Any,
    y: Any,
    layers: list[Layer],
    conv: ConvSpec,
    *,
    bias: bool = True,
    max_iter: int = 2000,
    quantum: float | None = None,
    engine: Any = None,
) -> FitResult:
    """The kernel (and bias) whose ``conv -> layers`` output is ``y``, from the plane ``x``.

    Parameters
    ----------
    x : array (H, W)
        The conv's input: one plane (a colour picture's channels summed, or its luma).
    y : array (H', W') or (1, H', W')
        The last stage's output.
    layers : list of Layer
        relu and pools after the conv, in order.
    conv : ConvSpec
        The conv's size, stride, padding ('valid', 'same', N or (H, W)) and border.
    bias : bool
        Fit a bias too.
    max_iter : int
        L-BFGS steps of the best start.
    quantum : float, optional
        The target's rounding step (1/255 for 8 bits): the loss such rounding leaves
        counts as reached, and a target pixel at 1 (clipped when saved) takes any
        prediction at or above it as exact.

    Raises
    ------
    ShapeError
        The stages do not turn x's size into y's.
    """
    s = np.asarray(x, dtype=np.float64)
    eps = float(np.finfo(np.float32 if np.asarray(y).dtype == np.float32 else np.float64).eps)
    t = np.asarray(y, dtype=np.float64)
    t = t.reshape(t.shape[-2:]) if t.ndim == 3 and t.shape[0] == 1 else t
    if s.ndim != 2 or t.ndim != 2:
        raise ShapeError(f"fitting through stages needs one plane in and one out; got {t.shape}")
    if not (np.isfinite(s).all() and np.isfinite(t).all()):
        raise FitError("the pictures hold NaN or infinite values")
    s = _padded(s, conv)
    model = _Model(s, conv, layers, t, bias, engine)
    if quantum is not None:  # an 8/16-bit target was clipped at 1 by whoever saved it
        model.counted = (t < 1.0).astype(np.float64)
    shape = model.forward(np.zeros(model.taps + bias))[-1].shape
    if shape != t.shape:
        raise ShapeError(
            f"the stages make {dims(shape)} from the input, but the target is {dims(t.shape)}"
        )
    # the loss the target's own rounding leaves (a float32 target: pipeline -o t.npy)
    floor = 0.5 * (4 * eps) ** 2 * max(float(np.vdot(t, t)) / t.size, 1e-300)
    floor = max(floor, 0.1 * (quantum or 0.0) ** 2 / 24)
    # a start this good has found the kernel: rounding to steps of quantum leaves q^2 / 24
    good = max(floor, 1.5 * (quantum or 0.0) ** 2 / 24)
    starts = [_least_squares_start(s, t, conv, layers, bias, engine)]
    scale = float(np.abs(starts[0]).max()) or 1.0
    for seed in range(1, STARTS + 1):
        p = np.random.default_rng(seed).normal(
            0.0, scale / math.sqrt(model.taps), model.taps + bias
        )
        starts.append(p)
    best = None
    tried = 0
    for p0 in starts:
        tried += 1
        run = lbfgs(model.loss_grad, p0, FIRST_RUN, floor)
        if best is None or run[1] < best[1]:
            best = run
        if best[1] <= good:  # as good as the target's precision allows
            break
    p, f, history = best
    if f > floor:
        p, f, more = lbfgs(model.loss_grad, p, max_iter, floor)
        history = history + more[1:]
    w, b = model.unpack(p)
    se = _stderr(model, p, f)
    stopped = (
        "tol" if f <= floor else ("max_iter" if len(history) > FIRST_RUN + max_iter else "minimum")
    )
    return FitResult(
        kernel=w, bias=b if bias else None, method="lbfgs", lr=None,
        iterations=len(history) - 1, loss=f, converged=stopped != "max_iter", stopped=stopped,
        tol=floor, max_iter=max_iter, seed=None, loss_min=f,
        psnr=10 * math.log10(1 / (2 * f)) if f > 0 else math.inf, pixels=t.size, clipped=0,
        padding=str(conv.padding), stride=as_pair(conv.stride, "stride"), size_from="given",
        rank=model.taps + bias, unknowns=model.taps + bias, eigenvalues=(math.nan, math.nan),
        history=np.array(history), notes=(f"{tried} start(s) tried",),
        stderr=se[: model.taps].reshape(conv.size), bias_stderr=float(se[-1]) if bias else None,
    )  # fmt: skip


def _stderr(model: _Model, p: np.ndarray, loss: float) -> np.ndarray:
    """Each unknown's standard error, from the stages' Jacobian at p (central differences:
    the model is piecewise linear in p, so exact away from a kink) and the residual."""
    h = 1e-6 * (1.0 + float(np.abs(p).max()))
    columns = []
    for e in np.eye(p.size):
        columns.append(
            ((model.forward(p + h * e)[-1] - model.forward(p - h * e)[-1]) / (2 * h)).ravel()
        )
    jac = np.stack(columns, axis=1)
    if model.counted is not None:
        jac = jac[model.counted.ravel() != 0]
    dof = jac.shape[0] - p.size
    gram = jac.T @ jac
    if dof <= 0 or not np.isfinite(gram).all():
        return np.full(p.size, np.inf)
    lam, vec = np.linalg.eigh(gram)
    keep = lam > lam.size * np.finfo(np.float64).eps * max(float(lam[-1]), 0.0)
    diag = (vec[:, keep] ** 2) @ (1.0 / lam[keep])
    diag[(vec[:, ~keep] ** 2).sum(axis=1) > 1e-8] = np.inf
    rss = 2.0 * loss * model.y.size
    with np.errstate(invalid="ignore"):
        return np.where(
            np.isfinite(diag), np.sqrt(np.where(np.isfinite(diag), diag, 0) * rss / dof), np.inf
        )


def _padded(s: np.ndarray, conv: ConvSpec) -> np.ndarray:
    """The plane with the conv's padding made explicit (its border's values)."""
    top, bottom, left, right = resolve_padding(conv.padding, s.shape, conv.size, conv.stride)
    if not (top or bottom or left or right):
        return np.ascontiguousarray(s)
    mode = vocab.pad_mode(conv.border)
    return np.pad(s, ((top, bottom), (left, right)), mode=mode)


def _least_squares_start(s, t, conv: ConvSpec, layers, bias: bool, engine) -> np.ndarray:
    """The least-squares kernel of the target spread back onto the conv's grid.

    Each target pixel is repeated over the conv outputs its pools gathered; where it is
    positive (a relu let it through) it is taken for the conv's output there.
    """
    from convtool.fit.kernel_fit import fit_kernel
    from convtool.ops import conv2d

    z = conv2d(s, np.zeros(conv.size), stride=conv.stride)
    up = t
    for layer in reversed(layers):
        if layer.kind != "relu":
            sh, sw = as_pair(layer.stride, "stride")
            up = np.repeat(np.repeat(up, sh, axis=0), sw, axis=1)
    grid = np.zeros_like(z)
    h, w = min(up.shape[0], z.shape[0]), min(up.shape[1], z.shape[1])
    grid[:h, :w] = up[:h, :w]
    exclude = grid <= 0 if any(layer.kind == "relu" for layer in layers) else None
    if exclude is not None and exclude.all():
        exclude = None
    try:
        r = fit_kernel(
            s, grid, size=conv.size, stride=conv.stride, method="lstsq", bias=bias,
            exclude=exclude, engine=engine,
        )  # fmt: skip
    except FitError:
        return np.zeros(conv.size[0] * conv.size[1] + bias)
    return np.append(r.kernel.ravel(), [r.bias] if bias else [])


def through_residual(x: Any, y: Any, layers: list[Layer], conv: ConvSpec, result: FitResult):
    """The last stage's output with the fitted kernel minus the target, (H', W')."""
    t = np.asarray(y, dtype=np.float64)
    t = t.reshape(t.shape[-2:]) if t.ndim == 3 else t
    s = _padded(np.asarray(x, dtype=np.float64), conv)
    bias = result.bias is not None
    model = _Model(s, conv, layers, t, bias, None)
    p = np.append(result.kernel.ravel(), [result.bias] if bias else [])
    return model.forward(p)[-1] - t
