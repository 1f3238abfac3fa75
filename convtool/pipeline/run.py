"""Running the stages: each takes the previous map and records its output, range and time."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from convtool import ops, vocab
from convtool.filtering import Prepared, correlate, stats
from convtool.pipeline.stages import (
    COLORS,
    ConvDefaults,
    Stage,
    StageError,
    parse_stages,
    random_kernel,
)
from convtool.shapes import PaddingSpec

_SOURCE_LABELS = {1: ("grey",), 3: ("red", "green", "blue")}


@dataclass(eq=False)
class StageResult:
    """One stage's output: ``data`` (C, H, W) float32, its channels' names and its time."""

    index: int  # 1-based
    stage: Stage
    data: np.ndarray
    labels: tuple[str, ...]
    seconds: float

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.data.shape)

    @property
    def range(self) -> tuple[float, float]:
        """Smallest and largest finite value (NaN when there is none)."""
        return stats(self.data)

    @property
    def nonfinite(self) -> int:
        """How many values of the map are NaN or infinite."""
        return count_nonfinite(self.data)

    def record(self) -> dict[str, Any]:
        """The stage for JSON: number, kind, spec, shape, channels, min, max, nonfinite, seconds."""
        lo, hi = self.range
        return {
            "stage": self.index,
            "kind": self.stage.kind,
            "spec": self.stage.describe(),
            "shape": list(self.shape),
            "channels": list(self.labels),
            "min": lo,
            "max": hi,
            "nonfinite": self.nonfinite,
            "seconds": self.seconds,
        }


def count_nonfinite(data: np.ndarray) -> int:
    """How many values of ``data`` are NaN or infinite."""
    return int(data.size - np.count_nonzero(np.isfinite(data)))


def source_planes(data: Any, color: str = "sum") -> tuple[np.ndarray, tuple[str, ...]]:
    """A picture as read ((H, W) or (H, W, C), alpha split off) -> (C, H, W) float32 and names.

    ``color='gray'`` takes the ITU-R 601 luma of a colour picture first; ``'sum'`` and
    ``'channels'`` keep the channels (each conv's 2-D kernels then sum over them, or,
    for stages parsed with ``ConvDefaults(per_channel=True)``, filter each alike).
    """
    from convtool.filtering import to_gray

    vocab.check("color", color, COLORS)
    a = np.asarray(data, dtype=np.float32)
    if a.ndim == 3 and (color == "gray" or a.shape[2] == 1):
        a = to_gray(a) if a.shape[2] >= 3 else a[:, :, 0]
    if a.ndim == 2:
        a = a[None]
    elif a.ndim == 3:
        a = a.transpose(2, 0, 1)
    else:
        raise ValueError(f"a picture must be (H, W) or (H, W, C); got shape {np.shape(data)}")
    names = _SOURCE_LABELS.get(a.shape[0], tuple(f"c{i}" for i in range(a.shape[0])))
    return np.ascontiguousarray(a), names


def _warm_up(stages: Sequence[Stage], engine: Any) -> None:
    """Load the compiled kernels the stages use, so that stage times measure the work."""
    kinds = {s.kind for s in stages}
    x = np.zeros((1, 1, 2, 2), np.float32)
    if "conv" in kinds:
        ops.conv2d(x, np.zeros((1, 1, 1, 1), np.float32), engine=engine)
    if "maxpool" in kinds:
        ops.max_pool2d(x, 1, engine=engine)
    if "avgpool" in kinds:
        ops.avg_pool2d(x, 1, engine=engine)


def _full(k: Prepared, channels: int, per_channel: bool) -> np.ndarray:
    """A conv's kernel as (C_out, C_in, kH, kW): a 2-D kernel on every channel, summed (the
    (1, C, kH, kW) kernel of that sum), or on each alike (C, C, kH, kW), zero off the diagonal."""
    if k.full:
        return k.weights
    if per_channel:
        w = np.zeros((channels, channels, *k.weights.shape), k.weights.dtype)
        w[np.arange(channels), np.arange(channels)] = k.weights
        return w
    return np.repeat(k.weights[None, None], channels, axis=1)


def _conv(x: np.ndarray, stage: Stage, engine: Any) -> np.ndarray:
    """Every kernel of a conv stage on x (C, H, W); kernels of one size run as one call."""
    channels = x.shape[0]
    picture = x[0] if channels == 1 else x.transpose(1, 2, 0)
    kernels = stage.kernels or (random_kernel(stage, channels),)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, k in enumerate(kernels):
        if k.full and k.weights.shape[1] != channels:
            raise ValueError(
                f"kernel {k.name} takes {k.weights.shape[1]} input channel(s), shape "
                f"{tuple(k.weights.shape)}, but its input has {channels}"
            )
        groups.setdefault(k.size, []).append(i)
    maps: dict[int, np.ndarray] = {}
    for members in groups.values():
        weights = [_full(k, channels, stage.per_channel) for k in (kernels[i] for i in members)]
        biases = [
            np.broadcast_to(np.asarray(kernels[i].bias or 0.0, np.float64), (w.shape[0],))
            for i, w in zip(members, weights, strict=True)
        ]
        merged = Prepared(np.concatenate(weights), bias=tuple(np.concatenate(biases).tolist()))
        y = correlate(
            picture,
            merged,
            border=stage.border,
            padding=stage.padding,
            stride=stage.stride,
            engine=engine,
        )
        y = y[None] if y.ndim == 2 else y.transpose(2, 0, 1)
        start = 0
        for i, w in zip(members, weights, strict=True):
            maps[i] = y[start : start + w.shape[0]]
            start += w.shape[0]
    ordered = [maps[i] for i in range(len(kernels))]
    if len({m.shape[1:] for m in ordered}) > 1:
        found = ", ".join(
            f"{k.name} {m.shape[1]}x{m.shape[2]}" for k, m in zip(kernels, ordered, strict=True)
        )
        raise ValueError(f"its kernels give maps of different sizes ({found}); use p=same")
    return np.ascontiguousarray(np.concatenate(ordered), dtype=np.float32)


def _run(x: np.ndarray, stage: Stage, engine: Any) -> np.ndarray:
    if stage.kind == "conv":
        return _conv(x, stage, engine)
    if stage.kind == "relu":
        return ops.relu(x)
    pool = ops.max_pool2d if stage.kind == "maxpool" else ops.avg_pool2d
    return pool(x, stage.size, stage.stride, stage.padding, stage.ceil_mode, engine=engine)


def run_stages(
    x: Any,
    stages: Sequence[Stage],
    labels: Sequence[str] | None = None,
    *,
    engine: Any = None,
) -> list[StageResult]:
    """Run ``stages`` on ``x`` ((H, W) or (C, H, W)), one :class:`StageResult` per stage.

    A stage that cannot run on its input (a kernel larger than the map, a 4-D
    kernel for other channels) raises StageError naming the stage. ``engine`` runs
    the kernels, as in :func:`convtool.ops.conv2d`.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or 0 in x.shape:
        raise ValueError(f"a map must be (H, W) or (C, H, W); got shape {x.shape}")
    names = tuple(labels) if labels is not None else tuple(f"c{i}" for i in range(x.shape[0]))
    _warm_up(stages, engine)
    results = []
    for i, stage in enumerate(stages, 1):
        started = time.perf_counter()
        try:
            x = _run(x, stage, engine)
        except ValueError as e:
            raise StageError(f"stage {i} ({stage.describe()}): {e}") from None
        names = stage.labels(names)
        results.append(StageResult(i, stage, x, names, time.perf_counter() - started))
    return results


def run_pipeline(
    x: Any,
    stages: str | Sequence[str | Stage] = (),
    *,
    kernels: Sequence[str] = (),
    stride: int | tuple[int, int] = 1,
    padding: PaddingSpec = "valid",
    border: str = "zero",
    flip: bool = False,
    normalize: bool = False,
    scale: float = 1.0,
    bias: float | None = None,
    color: str = "sum",
    engine: Any = None,
) -> list[StageResult]:
    """Run a chain of conv, relu and pool stages on an array, stage by stage.

    Parameters
    ----------
    x : array, (H, W) or (C, H, W)
        The input map (torch's layout; a colour picture as (3, H, W)).
    stages : str or sequence of str or Stage
        Stage specs (grammar in the module docstring), each one stage or several
        joined by ``->``. Empty: ``conv -> relu -> maxpool:2`` with ``kernels``.
    kernels : sequence of str
        Kernel specs for conv stages that name none.
    stride, padding, border, flip, normalize, scale, bias
        Defaults for conv stages that do not set them, as ``convtool pipeline``'s
        options of those names.
    color : {'sum', 'gray'}
        'sum': a conv's 2-D kernels sum over the input's channels (the chapter's 3-in,
        1-out filter); 'gray': a colour input (3 channels or more) becomes its ITU-R
        601 luma first, as ``convtool pipeline --color gray``.
    engine : convtool.core.engine.Engine, optional
        What runs the kernels, as in :func:`convtool.ops.conv2d`.

    Returns
    -------
    list of StageResult
        Each with ``data`` (C, H, W) float32, ``shape``, ``range``, ``labels``,
        ``seconds``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.zeros((3, 80, 80), np.float32)
    >>> [r.shape for r in run_pipeline(x, kernels=["sobel_x"])]
    [(1, 78, 78), (1, 78, 78), (1, 39, 39)]
    >>> run_pipeline(x, "conv:blur,p=same -> avgpool:4")[-1].shape
    (1, 20, 20)
    >>> x[:, :, 40:] = 1  # an edge: its luma, scaled as the command's --color gray --scale 2
    >>> run_pipeline(x, "conv:sobel_x -> relu", color="gray", scale=2)[-1].range
    (0.0, 8.0)
    """
    from convtool.shapes import as_pair

    vocab.check("border", border, vocab.BORDERS)
    defaults = ConvDefaults(
        as_pair(stride, "stride"), padding, border, flip, bias, normalize, scale
    )
    specs = [stages] if isinstance(stages, str) else list(stages)
    if all(isinstance(s, Stage) for s in specs) and specs:
        parsed = list(specs)
    else:
        texts = [s for s in specs if isinstance(s, str)]
        if len(texts) != len(specs):
            raise TypeError("stages must be all strings or all Stage objects")
        parsed = parse_stages(texts, kernels=kernels, defaults=defaults)
    a = np.asarray(x)
    if vocab.check("color", color, COLORS) == "gray" and a.ndim == 3 and a.shape[0] >= 3:
        a = source_planes(np.moveaxis(a, 0, -1), "gray")[0]
    labels = _SOURCE_LABELS.get(a.shape[0]) if a.ndim == 3 else ("grey",)
    return run_stages(a, parsed, labels, engine=engine)
