"""conv -> relu -> pool, stage by stage: the stage grammar and the engine that runs it.

Maps are float32 arrays in torch's layout, (C, H, W); every stage takes the
previous stage's map and records its own output, shape, range and time.

Stage grammar
-------------
One stage per string, or several in one string joined by ``->``::

    conv[:KERNEL[+KERNEL...]][,s=S][,p=P][,border=B][,flip][,bias=B][,normalize][,scale=F]
    relu
    maxpool[:K][,s=S][,p=P][,ceil]
    avgpool[:K][,s=S][,p=P][,ceil]

- ``KERNEL`` is any ``-k`` spec of ``convtool apply`` (a name with parameters or a
  rotation, inline rows, ``@FILE``); several kernels are joined by ``+`` and give
  one map each, which flow on as channels. A 2-D kernel is applied to every input
  channel and the results summed (the chapter's 3-in, 1-out filter); a
  (C_out, C_in, kH, kW) file gives C_out maps and needs C_in input channels. A
  ``conv`` without kernels (``conv`` or ``conv:p=same``) takes the kernels given
  apart (``-k`` on the command line, ``kernels=`` here).
- ``S`` and ``K`` are ``N`` or ``HxW``. A conv's ``P`` is ``N``, ``HxW``, ``same``
  or ``valid``; a pool's is ``N`` or ``HxW``, at most half the window. A pool's
  stride defaults to its window, its window to 2.
- ``border`` is what lies outside the picture: zero, reflect, mirror, replicate
  or wrap (see :mod:`convtool.filters`); ``flip`` rotates the kernels 180 degrees
  (the mathematical convolution); ``bias`` is added to every map; ``normalize``
  divides each kernel by its sum and ``scale`` multiplies it.
- Options a conv stage does not give come from :class:`ConvDefaults` (the
  command's ``--padding``, ``--stride``, ...): valid padding, stride 1, zero
  border, as the chapter's figure 17-7.
- Kinds accept the aliases of ``convtool shape`` (``conv2d``, ``max_pool``,
  ``avg_pool``) and ``pool`` for ``maxpool``. Pools follow torch's
  ``max_pool2d``/``avg_pool2d`` (padding counts as zeros in an average).

Without stages, the chain is the chapter's: ``conv -> relu -> maxpool:2``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from convtool import ops
from convtool.filtering import BORDERS, Prepared, correlate, prepare_kernel, stats
from convtool.kernels import KernelSpec, KernelSpecError, parse_kernel_spec
from convtool.shapes import PaddingSpec, parse_padding, parse_pair

__all__ = [
    "COLORS",
    "DEFAULT_CHAIN",
    "FORMS",
    "ConvDefaults",
    "Stage",
    "StageError",
    "StageResult",
    "count_nonfinite",
    "parse_stage",
    "parse_stages",
    "run_pipeline",
    "run_stages",
    "source_planes",
]

KINDS = {
    "conv": "conv",
    "conv2d": "conv",
    "relu": "relu",
    "maxpool": "maxpool",
    "max_pool": "maxpool",
    "pool": "maxpool",
    "avgpool": "avgpool",
    "avg_pool": "avgpool",
}
FORMS = {
    "conv": "conv[:KERNEL[+KERNEL...]][,s=S][,p=P][,border=B][,flip][,bias=B][,normalize]"
    "[,scale=F]",
    "relu": "relu",
    "maxpool": "maxpool[:K][,s=S][,p=P][,ceil]",
    "avgpool": "avgpool[:K][,s=S][,p=P][,ceil]",
}
DEFAULT_CHAIN = ("conv", "relu", "maxpool:2")
COLORS = ("sum", "gray")
_KEYS = {
    "s": "stride",
    "stride": "stride",
    "p": "padding",
    "pad": "padding",
    "padding": "padding",
    "border": "border",
    "bias": "bias",
    "scale": "scale",
}
_ALLOWED = {
    "conv": ({"stride", "padding", "border", "bias", "scale"}, {"flip", "normalize"}),
    "maxpool": ({"stride", "padding"}, {"ceil"}),
    "avgpool": ({"stride", "padding"}, {"ceil"}),
}
_ARROW = re.compile(r"\s*->\s*")
# '+' joins kernels where a name or a file follows; '1e+3' and '+1' stay numbers
_PLUS = re.compile(r"\+(?=\s*[A-Za-z@])")
_WORD = re.compile(r"\s*[A-Za-z_][A-Za-z_0-9]*\s*\Z")
_SOURCE_LABELS = {1: ("grey",), 3: ("red", "green", "blue")}


class StageError(ValueError):
    """A stage that cannot be parsed or run; the message is one line naming the stage.

    ``option`` names the command-line option to blame when the problem comes from
    one (``--scale``, ``--bias``, ``--normalize``, ``-k``) rather than the stage's text.
    """

    def __init__(self, message: str, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option


@dataclass(frozen=True)
class ConvDefaults:
    """What a conv stage does where its spec says nothing (the command's options)."""

    stride: tuple[int, int] = (1, 1)
    padding: PaddingSpec = "valid"
    border: str = "zero"
    flip: bool = False
    bias: float | None = None
    normalize: bool = False
    scale: float = 1.0


@dataclass(frozen=True, eq=False)
class Stage:
    """One parsed stage. ``text`` is the spec as written; pools use ``size``, convs ``kernels``."""

    kind: str
    text: str
    kernels: tuple[Prepared, ...] = ()
    size: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: PaddingSpec = 0
    border: str = "zero"
    ceil_mode: bool = False
    shared: bool = False  # a conv that took the kernels given apart (-k)
    # how a conv's kernels were prepared (already in their weights), for describe()
    flip: bool = False
    normalize: bool = False
    scale: float = 1.0
    bias: float | None = None

    def labels(self, inputs: Sequence[str]) -> tuple[str, ...]:
        """Names of the output channels, given the input's: kernel names for a conv."""
        if self.kind != "conv":
            return tuple(inputs)
        out: list[str] = []
        for k in self.kernels:
            n = k.weights.shape[0] if k.full else 1
            out += [k.name] if n == 1 else [f"{k.name}[{o}]" for o in range(n)]
        return tuple(out)

    def describe(self) -> str:
        """The stage as a spec with every setting spelled out (kernels by name)."""
        if self.kind == "relu":
            return "relu"
        if self.kind == "conv":
            text = "conv:" + "+".join(k.name for k in self.kernels)
            text += f",s={_pair(self.stride)},p={_pad(self.padding)}"
            text += "" if self.border == "zero" else f",border={self.border}"
            text += ",flip" if self.flip else ""
            text += ",normalize" if self.normalize else ""
            text += "" if self.scale == 1 else f",scale={self.scale:g}"
            return text + ("" if self.bias is None else f",bias={self.bias:g}")
        text = f"{self.kind}:{_pair(self.size)},s={_pair(self.stride)}"
        if self.padding not in (0, (0, 0)):
            text += f",p={_pad(self.padding)}"
        return text + (",ceil" if self.ceil_mode else "")


def _pair(p: tuple[int, int]) -> str:
    return str(p[0]) if p[0] == p[1] else f"{p[0]}x{p[1]}"


def _pad(p: PaddingSpec) -> str:
    return p if isinstance(p, str) else _pair(p if isinstance(p, tuple) else (p, p))


# ----------------------------------------------------------------------- parsing


def parse_stage(
    text: str,
    *,
    kernels: Sequence[str | KernelSpec] = (),
    defaults: ConvDefaults | None = None,
) -> Stage:
    """Parse one stage spec (grammar in the module docstring); StageError if it is wrong.

    ``kernels`` serve a conv stage that names none; ``defaults`` fill a conv's
    unset options.

    >>> parse_stage("maxpool:3,s=1").describe()
    'maxpool:3,s=1'
    >>> parse_stage("conv:sobel_x+blur,p=same").labels(["grey"])
    ('sobel_x', 'blur')
    """
    raw = text.strip()
    name, colon, rest = raw.partition(":")
    kind = KINDS.get(name.strip().lower().replace("-", "_"))
    if kind is None:
        what = f"unknown stage {raw!r}" if raw else "an empty stage"
        raise StageError(f"{what}; stages are {', '.join(FORMS.values())}")
    try:
        if kind == "relu":
            if colon:
                raise ValueError("relu takes no options")
            return Stage("relu", raw)
        head, options = _split(rest if colon else "", kind)
        fields = _options(options, kind)
        if kind == "conv":
            return _conv_stage(raw, head, fields, kernels, defaults or ConvDefaults())
        return _pool_stage(raw, kind, head, fields)
    except StageError:
        raise
    except ValueError as e:
        raise StageError(f"stage {raw!r}: {e}; expected {FORMS[kind]}") from None


def _split(rest: str, kind: str) -> tuple[str, list[str]]:
    """(kernels or window, options): options start at the first key=value or word after it."""
    tokens = rest.split(",") if rest.strip() else []
    flags = _ALLOWED[kind][1]
    for i, token in enumerate(tokens):
        word = token.strip().lower()
        if "=" in token or word in flags or (i > 0 and _WORD.match(token)):
            return ",".join(tokens[:i]).strip(), tokens[i:]
    return rest.strip(), []


def _options(options: list[str], kind: str) -> dict[str, Any]:
    allowed, flags = _ALLOWED[kind]
    fields: dict[str, Any] = {}
    for option in options:
        key, eq, value = option.strip().partition("=")
        key = key.strip().lower()
        if not eq:
            if key not in flags:
                hint = "; several kernels are joined with '+'" if _is_kernel(key, kind) else ""
                raise ValueError(f"unknown flag {key!r}{hint}" if key else "an empty option")
            if key in fields:
                raise ValueError(f"{key!r} given twice")
            fields[key] = True
            continue
        field = _KEYS.get(key)
        if field not in allowed:
            raise ValueError(f"unknown option {key!r}")
        if field in fields:
            raise ValueError(f"{field} given twice")
        value = value.strip()
        if field == "stride":
            fields[field] = parse_pair(value, "stride")
        elif field == "padding":
            fields[field] = parse_padding(value) if kind == "conv" else _pool_padding(value)
        elif field == "border":
            if value.lower() not in BORDERS:
                raise ValueError(f"border must be one of {', '.join(BORDERS)}, got {value!r}")
            fields[field] = value.lower()
        else:
            fields[field] = _finite(value, field)
    return fields


def _is_kernel(word: str, kind: str) -> bool:
    try:
        return kind == "conv" and bool(parse_kernel_spec(word).name)
    except KernelSpecError:
        return False


def _finite(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {text!r}") from None
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {text!r}")
    return value


def _pool_padding(text: str) -> tuple[int, int]:
    if text.lower() in ("same", "valid"):
        raise ValueError(f"a pool's padding is N or HxW, not {text!r}")
    return parse_pair(text, "padding", minimum=0)


def _conv_stage(raw, head, fields, kernels, defaults: ConvDefaults) -> Stage:
    shared = not head
    specs = list(kernels) if shared else [s.strip() for s in _PLUS.split(head)]
    if not specs:
        raise ValueError("no kernel: name one (conv:sobel_x) or give -k")
    if any(isinstance(s, str) and not s for s in specs):
        raise ValueError("an empty kernel between '+'")
    bias = fields.get("bias", defaults.bias)
    how = {
        "normalize": fields.get("normalize", defaults.normalize),
        "scale": fields.get("scale", defaults.scale),
        "flip": fields.get("flip", defaults.flip),
    }
    prepared = []
    for spec in specs:
        try:
            parsed = spec if isinstance(spec, KernelSpec) else parse_kernel_spec(spec)
        except KernelSpecError as e:
            raise StageError(f"stage {raw!r}: {e}") from None
        with np.errstate(over="ignore", invalid="ignore"):  # said below, naming the value
            kernel = prepare_kernel(
                parsed.weights,
                name=parsed.name,
                slug=parsed.slug,
                bias=parsed.bias if bias is None else bias,
                **how,
            )
        _check_float32(raw, kernel, fields, defaults, shared)
        prepared.append(kernel)
    return Stage(
        "conv",
        raw,
        kernels=tuple(prepared),
        stride=fields.get("stride", defaults.stride),
        padding=fields.get("padding", defaults.padding),
        border=fields.get("border", defaults.border),
        shared=shared,
        bias=bias,
        **how,
    )


def _check_float32(raw: str, kernel: Prepared, fields, defaults: ConvDefaults, shared) -> None:
    """Maps are float32: refuse weights or a bias it cannot hold, naming what made them.

    The StageError's option is the command-line option to blame, or None when the
    stage's own text is (its message then names the stage).
    """
    limit = float(np.finfo(np.float32).max)
    kernel_option = "-k" if shared else None
    weights = np.abs(kernel.weights)
    peak = float(weights.max()) if np.isfinite(weights).all() else float("inf")
    if peak > limit:
        causes = []  # (what, its option)
        scale = fields.get("scale", defaults.scale)
        if scale != 1:
            given = "scale" in fields
            causes.append(
                (f"scale={scale:g}", None) if given else (f"--scale {scale:g}", "--scale")
            )
        if fields.get("normalize", defaults.normalize):
            given = "normalize" in fields
            causes.append(("normalize", None) if given else ("--normalize", "--normalize"))
        if causes:
            what = " and ".join(c for c, _ in causes)
            verb = "makes" if len(causes) == 1 else "make"
            text = f"{what} {verb} kernel {kernel.name} reach {peak:.3g}"
            blamed = {option for _, option in causes}
            option = blamed.pop() if len(blamed) == 1 else None
        else:
            text, option = f"kernel {kernel.name} reaches {peak:.3g}", kernel_option
        text += ","
    else:
        biases = np.ravel(np.asarray(kernel.bias if kernel.bias is not None else 0.0, np.float64))
        worst = float(biases[np.argmax(np.abs(biases))])
        if abs(worst) <= limit:
            return
        value = f"{worst:g}"
        if "bias" in fields:
            text, option = f"bias={value} is", None
        elif defaults.bias is not None:
            text, option = f"--bias {value} is", "--bias"
        else:  # a kernel file's
            text, option = f"the bias {value} of kernel {kernel.name} is", kernel_option
    text = f"{text} beyond float32's {limit:.3g}"
    raise StageError(text if option is not None else f"stage {raw!r}: {text}", option)


def _pool_stage(raw: str, kind: str, head: str, fields: dict[str, Any]) -> Stage:
    size = parse_pair(head, "window") if head else (2, 2)
    padding = fields.get("padding", (0, 0))
    if 2 * padding[0] > size[0] or 2 * padding[1] > size[1]:
        raise ValueError(f"padding {_pair(padding)} is more than half the window {_pair(size)}")
    return Stage(
        kind,
        raw,
        size=size,
        stride=fields.get("stride", size),
        padding=padding,
        ceil_mode=fields.get("ceil", False),
    )


def parse_stages(
    specs: Iterable[str] = (),
    *,
    kernels: Sequence[str | KernelSpec] = (),
    defaults: ConvDefaults | None = None,
) -> list[Stage]:
    """Parse a chain: each spec holds one stage or several joined by ``->``.

    No specs give :data:`DEFAULT_CHAIN` (which needs ``kernels``).

    >>> [s.describe() for s in parse_stages(kernels=["sobel_x"])]
    ['conv:sobel_x,s=1,p=valid', 'relu', 'maxpool:2,s=2']
    """
    texts = [t for spec in specs for t in _ARROW.split(spec.strip())]
    if not texts:
        if not kernels:
            raise StageError("nothing to run: give a kernel (-k) or stages")
        texts = list(DEFAULT_CHAIN)
    return [parse_stage(t, kernels=kernels, defaults=defaults) for t in texts]


# ----------------------------------------------------------------------- running


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

    ``color='gray'`` takes the ITU-R 601 luma of a colour picture first; ``'sum'``
    keeps the channels (each conv's 2-D kernels then sum over them).
    """
    from convtool.filtering import to_gray

    if color not in COLORS:
        raise ValueError(f"color must be one of {', '.join(COLORS)}; got {color!r}")
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


def _warm_up(stages: Sequence[Stage]) -> None:
    """Load the compiled kernels the stages use, so that stage times measure the work."""
    kinds = {s.kind for s in stages}
    x = np.zeros((1, 1, 2, 2), np.float32)
    if "conv" in kinds:
        ops.conv2d(x, np.zeros((1, 1, 1, 1), np.float32))
    if "maxpool" in kinds:
        ops.max_pool2d(x, 1)
    if "avgpool" in kinds:
        ops.avg_pool2d(x, 1)


def _conv(x: np.ndarray, stage: Stage) -> np.ndarray:
    """Every kernel of a conv stage on x (C, H, W); kernels of one size run as one call."""
    channels = x.shape[0]
    picture = x[0] if channels == 1 else x.transpose(1, 2, 0)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, k in enumerate(stage.kernels):
        if k.full and k.weights.shape[1] != channels:
            raise ValueError(
                f"kernel {k.name} takes {k.weights.shape[1]} input channel(s), shape "
                f"{tuple(k.weights.shape)}, but its input has {channels}"
            )
        groups.setdefault(k.size, []).append(i)
    maps: dict[int, np.ndarray] = {}
    for members in groups.values():
        # a 2-D kernel on every channel, summed: the (1, C, kH, kW) kernel of that sum
        weights = [
            k.weights if k.full else np.repeat(k.weights[None, None], channels, axis=1)
            for k in (stage.kernels[i] for i in members)
        ]
        biases = [
            np.broadcast_to(np.asarray(stage.kernels[i].bias or 0.0, np.float64), (w.shape[0],))
            for i, w in zip(members, weights, strict=True)
        ]
        merged = Prepared(np.concatenate(weights), bias=tuple(np.concatenate(biases).tolist()))
        y = correlate(
            picture, merged, border=stage.border, padding=stage.padding, stride=stage.stride
        )
        y = y[None] if y.ndim == 2 else y.transpose(2, 0, 1)
        start = 0
        for i, w in zip(members, weights, strict=True):
            maps[i] = y[start : start + w.shape[0]]
            start += w.shape[0]
    ordered = [maps[i] for i in range(len(stage.kernels))]
    if len({m.shape[1:] for m in ordered}) > 1:
        found = ", ".join(
            f"{k.name} {m.shape[1]}x{m.shape[2]}"
            for k, m in zip(stage.kernels, ordered, strict=True)
        )
        raise ValueError(f"its kernels give maps of different sizes ({found}); use p=same")
    return np.ascontiguousarray(np.concatenate(ordered), dtype=np.float32)


def _run(x: np.ndarray, stage: Stage) -> np.ndarray:
    if stage.kind == "conv":
        return _conv(x, stage)
    if stage.kind == "relu":
        return ops.relu(x)
    pool = ops.max_pool2d if stage.kind == "maxpool" else ops.avg_pool2d
    return pool(x, stage.size, stage.stride, stage.padding, stage.ceil_mode)


def run_stages(
    x: Any, stages: Sequence[Stage], labels: Sequence[str] | None = None
) -> list[StageResult]:
    """Run ``stages`` on ``x`` ((H, W) or (C, H, W)), one :class:`StageResult` per stage.

    A stage that cannot run on its input (a kernel larger than the map, a 4-D
    kernel for other channels) raises StageError naming the stage.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or 0 in x.shape:
        raise ValueError(f"a map must be (H, W) or (C, H, W); got shape {x.shape}")
    names = tuple(labels) if labels is not None else tuple(f"c{i}" for i in range(x.shape[0]))
    _warm_up(stages)
    results = []
    for i, stage in enumerate(stages, 1):
        started = time.perf_counter()
        try:
            x = _run(x, stage)
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
    stride, padding, border, flip
        Defaults for conv stages that do not set them.

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
    """
    from convtool.shapes import as_pair

    defaults = ConvDefaults(as_pair(stride, "stride"), padding, border, flip)
    specs = [stages] if isinstance(stages, str) else list(stages)
    if all(isinstance(s, Stage) for s in specs) and specs:
        parsed = list(specs)
    else:
        texts = [s for s in specs if isinstance(s, str)]
        if len(texts) != len(specs):
            raise TypeError("stages must be all strings or all Stage objects")
        parsed = parse_stages(texts, kernels=kernels, defaults=defaults)
    a = np.asarray(x)
    labels = _SOURCE_LABELS.get(a.shape[0]) if a.ndim == 3 else ("grey",)
    return run_stages(a, parsed, labels)
