"""The stage grammar of ``convtool pipeline``: one string per stage, ``->`` between stages.

See :mod:`convtool.pipeline` for the grammar itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from convtool import vocab
from convtool._shared import Param, naming
from convtool.filtering import Prepared, prepare_kernel
from convtool.kernels import KernelSpec, KernelSpecError, dilate_kernel, parse_kernel_spec
from convtool.shapes import PaddingSpec, grammar

# the kinds a pipeline runs, of the one grammar's (convtool.shapes.grammar): aliases included
KINDS = {name: kind for name, kind in grammar.KINDS.items() if kind in ("conv", "relu",
         "maxpool", "avgpool")}  # fmt: skip
FORMS = {
    "conv": grammar.FORMS["conv"],
    "relu": "relu",
    "maxpool": "maxpool[:K][,s=S][,p=P][,ceil]",
    "avgpool": grammar.FORMS["avgpool"],
}
DEFAULT_CHAIN = ("conv", "relu", "maxpool:2")
COLORS = vocab.COLORS


class StageError(ValueError):
    """A stage that cannot be parsed or run; the message is one line naming the stage.

    ``option`` names the parameter to blame when the problem comes from one of the
    chain's defaults (``scale``, ``bias``, ``normalize``, ``kernels``) rather than the
    stage's text; the command line shows it as its flag (see :mod:`convtool.vocab`).
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
    per_channel: bool = False  # 2-D kernels on each channel alike (--color channels)
    seed: int = 1  # of C@K's random kernels


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
    per_channel: bool = False  # a 2-D kernel gives a map per input channel, not their sum
    dilation: tuple[int, int] = (1, 1)  # a conv's, already in its kernels' weights
    # C@K: C random (C, C_in, kH, kW) kernels, made when C_in is known (random_kernel),
    # with their biases unless nobias; seeded by (seed, the C@K conv's place in the chain)
    random: tuple[int, tuple[int, int]] | None = None
    seed: tuple[int, int] = (1, 0)
    random_bias: bool = True

    def labels(self, inputs: Sequence[str]) -> tuple[str, ...]:
        """Names of the output channels, given the input's: kernel names for a conv."""
        if self.kind != "conv":
            return tuple(inputs)
        if self.random is not None:
            return tuple(f"random[{o}]" for o in range(self.random[0]))
        out: list[str] = []
        for k in self.kernels:
            if self.per_channel and not k.full and len(inputs) > 1:
                out += [f"{k.name}[{c}]" for c in inputs]
                continue
            n = k.weights.shape[0] if k.full else 1
            out += [k.name] if n == 1 else [f"{k.name}[{o}]" for o in range(n)]
        return tuple(out)

    @property
    def random_name(self) -> str:
        """A C@K conv's head, e.g. ``8@3``."""
        channels, size = self.random or (0, (0, 0))
        return f"{channels}@{_pair(size)}"

    def describe(self) -> str:
        """The stage as a spec with every setting spelled out (kernels by name)."""
        if self.kind == "relu":
            return "relu"
        if self.kind == "conv":
            names = self.random_name if self.random else "+".join(k.name for k in self.kernels)
            text = f"conv:{names},s={_pair(self.stride)},p={_pad(self.padding)}"
            text += "" if self.dilation == (1, 1) else f",d={_pair(self.dilation)}"
            text += "" if self.random is None or self.random_bias else ",nobias"
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
    kind = grammar.kind_of(name)
    if kind not in FORMS:
        what = f"unknown stage {raw!r}" if raw else "an empty stage"
        if kind is not None:  # a layer of the grammar that only convtool shape sizes
            what = f"stage {raw!r} is for convtool shape's tables; pipeline's"
        else:
            what += ";"
        raise StageError(f"{what} stages are {', '.join(FORMS.values())}")
    try:
        if kind == "relu":
            if colon:
                raise ValueError("relu takes no options")
            return Stage("relu", raw)
        head, given = grammar.split(rest if colon else "", kind)
        fields = grammar.options(given, kind, hint=lambda word: _hint(word, kind))
        if "border" in fields:
            vocab.check("border", fields["border"], vocab.BORDERS, sep=",")
        if kind == "conv":
            return _conv_stage(raw, head, fields, kernels, defaults or ConvDefaults())
        if "dilation" in fields:
            raise ValueError("the pipeline's pools take no dilation (convtool shape sizes one)")
        return _pool_stage(raw, kind, head, fields)
    except StageError:
        raise
    except ValueError as e:
        raise StageError(f"stage {raw!r}: {e}; expected {FORMS[kind]}") from None


def _hint(word: str, kind: str) -> str:
    """More for an unknown flag that is a kernel: several are joined with '+'."""
    try:
        if kind == "conv" and parse_kernel_spec(word).name:
            return "; several kernels are joined with '+'"
    except KernelSpecError:
        pass
    return ""


def _conv_stage(raw, head, fields, kernels, defaults: ConvDefaults) -> Stage:
    shared = not head
    dilation = fields.get("dilation", (1, 1))
    placed = {
        "stride": fields.get("stride", defaults.stride),
        "padding": fields.get("padding", defaults.padding),
        "border": fields.get("border", defaults.border),
        "per_channel": defaults.per_channel,
        "dilation": dilation,
    }
    random = None if shared else grammar.random_head(head)
    if random is not None:
        grammar.check_random(fields)
        try:  # the spread kernel's size, refused here rather than when it is drawn
            dilate_kernel(np.zeros(random[1]), dilation)
        except KernelSpecError as e:
            raise StageError(f"stage {raw!r}: {e}") from None
        return Stage("conv", raw, random=random, seed=(defaults.seed, 0),
                     random_bias=not fields.get("nobias", False), **placed)  # fmt: skip
    specs = list(kernels) if shared else grammar.kernel_specs(head)
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
        if parsed.parts:  # a layer holds kernels, not a magnitude of two
            raise StageError(
                f"stage {raw!r}: {parsed.name} is the gradient magnitude of two kernels; "
                f"a conv stage takes {parsed.base}_x or {parsed.base}_y"
            )
        if parsed.chain:
            raise StageError(
                f"stage {raw!r}: {parsed.name} is a list of kernels applied one after "
                "another; give each as its own conv stage"
            )
        weights = parsed.weights
        if dilation != (1, 1):
            try:
                weights = dilate_kernel(weights, dilation)
            except KernelSpecError as e:
                raise StageError(f"stage {raw!r}: {e}") from None
        with np.errstate(over="ignore", invalid="ignore"):  # said below, naming the value
            kernel = prepare_kernel(
                weights,
                name=parsed.name,
                slug=parsed.slug,
                bias=parsed.bias if bias is None else bias,
                **how,
            )
        _check_float32(raw, kernel, fields, defaults, shared)
        prepared.append(kernel)
    return Stage("conv", raw, kernels=tuple(prepared), shared=shared, bias=bias, **placed, **how)


def random_kernel(stage: Stage, channels: int) -> Prepared:
    """A C@K conv's kernels for ``channels`` input channels, as torch's Conv2d starts
    them: weights and biases uniform in +-1/sqrt(C_in kH kW), here from the stage's seed.

    >>> stage = parse_stage("conv:4@3,d=2")
    >>> random_kernel(stage, 3).weights.shape
    (4, 3, 5, 5)
    """
    count, (kh, kw) = stage.random
    rng = np.random.default_rng(stage.seed)
    bound = 1 / np.sqrt(channels * kh * kw)
    weights = rng.uniform(-bound, bound, (count, channels, kh, kw))
    bias = tuple(rng.uniform(-bound, bound, count).tolist()) if stage.random_bias else None
    if stage.dilation != (1, 1):
        weights = dilate_kernel(weights, stage.dilation)
    return Prepared(weights, bias=bias, name=stage.random_name)


def _check_float32(
    raw: str, kernel: Prepared, stage_fields, defaults: ConvDefaults, shared
) -> None:
    """Maps are float32: refuse weights or a bias it cannot hold, naming what made them.

    The StageError's option is the parameter to blame, or None when the stage's own
    text is (its message then names the stage).
    """
    limit = float(np.finfo(np.float32).max)
    kernel_option = "kernels" if shared else None
    weights = np.abs(kernel.weights)
    peak = float(weights.max()) if np.isfinite(weights).all() else float("inf")
    fields: dict[str, Any] = {"name": kernel.name, "limit": f"{limit:.3g}", "raw": repr(raw)}
    if peak > limit:
        causes = _weight_causes(stage_fields, defaults)  # (what, its parameter)
        fields["peak"] = f"{peak:.3g}"
        if causes:
            names = [f"{{cause{i}}}" for i in range(len(causes))]
            fields.update({f"cause{i}": what for i, (what, _) in enumerate(causes)})
            verb = "makes" if len(causes) == 1 else "make"
            text = f"{' and '.join(names)} {verb} kernel {{name}} reach {{peak}}"
            blamed = {option for _, option in causes}
            option = blamed.pop() if len(blamed) == 1 else None
        else:
            text, option = "kernel {name} reaches {peak}", kernel_option
        text += ","
    else:
        biases = np.ravel(np.asarray(kernel.bias if kernel.bias is not None else 0.0, np.float64))
        worst = float(biases[np.argmax(np.abs(biases))])
        if abs(worst) <= limit:
            return
        fields["value"] = f"{worst:g}"
        if "bias" in stage_fields:
            text, option = "bias={value} is", None
        elif defaults.bias is not None:
            text, option, fields["value"] = "{value} is", "bias", Param("bias", worst)
        else:  # a kernel file's
            text, option = "the bias {value} of kernel {name} is", kernel_option
    text = f"{text} beyond float32's {{limit}}"
    template = text if option is not None else f"stage {{raw}}: {text}"
    raise naming(StageError("", option), template, **fields)


def _weight_causes(stage_fields: dict[str, Any], defaults: ConvDefaults) -> list[tuple[Any, Any]]:
    """What scaled a kernel's weights: the stage's own options (text) or the command's
    (parameters), each with the parameter to blame (None: the stage's text)."""
    causes: list[tuple[Any, Any]] = []
    scale = stage_fields.get("scale", defaults.scale)
    if scale != 1:
        if "scale" in stage_fields:
            causes.append((f"scale={scale:g}", None))
        else:
            causes.append((Param("scale", float(scale)), "scale"))
    if stage_fields.get("normalize", defaults.normalize):
        given = "normalize" in stage_fields
        causes.append(("normalize", None) if given else (Param("normalize"), "normalize"))
    return causes


def _pool_stage(raw: str, kind: str, head: str, fields: dict[str, Any]) -> Stage:
    size = grammar.window(head)
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
    texts = grammar.split_chain(specs)
    if not texts:
        if not kernels:
            raise StageError("nothing to run: give a kernel (-k) or stages")
        texts = list(DEFAULT_CHAIN)
    stages = [parse_stage(t, kernels=kernels, defaults=defaults) for t in texts]
    randoms = [i for i, s in enumerate(stages) if s.random is not None]
    for n, i in enumerate(randoms):  # each C@K conv its own stream of the seed
        stages[i] = dataclasses.replace(stages[i], seed=(stages[i].seed[0], n))
    return stages
