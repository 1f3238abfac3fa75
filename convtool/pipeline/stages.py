"""The stage grammar of ``convtool pipeline``: one string per stage, ``->`` between stages.

See :mod:`convtool.pipeline` for the grammar itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from convtool import vocab
from convtool._shared import Param, naming
from convtool.filtering import Prepared, prepare_kernel
from convtool.kernels import KernelSpec, KernelSpecError, parse_kernel_spec
from convtool.shapes import PaddingSpec, parse_padding, parse_pair

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
COLORS = vocab.COLORS
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

    def labels(self, inputs: Sequence[str]) -> tuple[str, ...]:
        """Names of the output channels, given the input's: kernel names for a conv."""
        if self.kind != "conv":
            return tuple(inputs)
        out: list[str] = []
        for k in self.kernels:
            if self.per_channel and not k.full and len(inputs) > 1:
                out += [f"{k.name}[{c}]" for c in inputs]
                continue
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
            if value.lower() not in vocab.BORDERS:
                choices = ", ".join(vocab.BORDERS)
                raise ValueError(f"border must be one of {choices}, got {value!r}")
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
        per_channel=defaults.per_channel,
        **how,
    )


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
