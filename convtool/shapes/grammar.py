"""The one grammar of layers and stages: ``shape``'s layers, ``pipeline``'s and ``fit``'s
stages are written alike, and parsed here into their parts.

::

    conv[:HEAD][,s=S][,p=P][,d=D][,border=B][,flip][,bias=B|,nobias][,normalize][,scale=F]
    maxpool[:K][,s=S][,p=P][,d=D][,ceil]
    avgpool[:K][,s=S][,p=P][,ceil]
    relu
    fc:N[,nobias]   flatten   bn   dropout[:RATE]   leakyrelu sigmoid tanh gelu softmax

A conv's HEAD is ``C@K`` (C kernels of size K, as a network's layer: seeded random
weights where the pipeline runs it) or kernels, ``KERNEL[+KERNEL...]`` (any ``-k``
spec: each makes a map); none takes the kernels given apart (``-k``). S, K, D are N or
HxW (rows x columns); a conv's P is N, HxW, same or valid, a pool's N or HxW. A pool's
window defaults to 2, its stride to its window. Options go in any order, after the
head; long names work too (stride=, padding=, dilation=). Several stages in one string
are joined by ``->``. What each command does with a layer is its own: ``shape`` sizes
every kind; ``pipeline`` runs conv, relu and the pools.

Standard library only (the shapes package answers without numpy).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from typing import Any

from convtool.shapes.parse import parse_int, parse_padding, parse_pair
from convtool.shapes.sizes import Pair

ACTIVATIONS = ("relu", "leakyrelu", "sigmoid", "tanh", "gelu", "softmax")
KINDS = {
    "conv": "conv",
    "conv2d": "conv",
    "maxpool": "maxpool",
    "max_pool": "maxpool",
    "pool": "maxpool",
    "avgpool": "avgpool",
    "avg_pool": "avgpool",
    "fc": "fc",
    "linear": "fc",
    "dense": "fc",
    "flatten": "flatten",
    "bn": "bn",
    "batchnorm": "bn",
    "dropout": "dropout",
    **{a: a for a in ACTIVATIONS},
}
KEYS = {
    "s": "stride",
    "stride": "stride",
    "p": "padding",
    "pad": "padding",
    "padding": "padding",
    "d": "dilation",
    "dilation": "dilation",
    "border": "border",
    "bias": "bias",
    "scale": "scale",
}
# which options and flags each kind takes
ALLOWED = {
    "conv": (
        {"stride", "padding", "dilation", "border", "bias", "scale"},
        {"flip", "normalize", "nobias"},
    ),
    "maxpool": ({"stride", "padding", "dilation"}, {"ceil"}),
    "avgpool": ({"stride", "padding"}, {"ceil"}),
    "fc": (set(), {"nobias"}),
}
FORMS = {
    "conv": "conv[:C@K|KERNEL[+KERNEL...]][,s=S][,p=P][,d=D][,border=B][,flip][,bias=B|,nobias]"
    "[,normalize][,scale=F]",
    "maxpool": "maxpool[:K][,s=S][,p=P][,d=D][,ceil]",
    "avgpool": "avgpool[:K][,s=S][,p=P][,ceil]",
    "fc": "fc:N[,nobias]",
    "dropout": "dropout[:RATE]",
}
ARROW = re.compile(r"\s*->\s*")
_WORD = re.compile(r"\s*[A-Za-z_][A-Za-z_0-9]*\s*\Z")
_RANDOM = re.compile(r"\s*(\d+)\s*@\s*(\d+(?:\s*[xX×]\s*\d+)?)\s*\Z")
# '+' joins kernels where a name or a file follows; '1e+3' and '+1' stay numbers
_PLUS = re.compile(r"\+(?=\s*[A-Za-z@])")


def split_chain(specs: Iterable[str]) -> list[str]:
    """Every stage of ``specs``, each holding one stage or several joined by ``->``.

    >>> split_chain(["conv:sobel_x -> relu", "maxpool:2"])
    ['conv:sobel_x', 'relu', 'maxpool:2']
    """
    return [t for spec in specs for t in ARROW.split(spec.strip())]


def kind_of(name: str) -> str | None:
    """The kind a layer's name stands for (aliases resolved), or None.

    >>> kind_of("Max_Pool"), kind_of("conv2d"), kind_of("softmax"), kind_of("foo")
    ('maxpool', 'conv', 'softmax', None)
    """
    return KINDS.get(name.strip().lower().replace("-", "_"))


def split(rest: str, kind: str) -> tuple[str, list[str]]:
    """(head, options) of what follows ``kind:``: options start at the first ``key=value``,
    flag, or word after the head (a head may hold commas: inline kernel rows)."""
    tokens = rest.split(",") if rest.strip() else []
    flags = ALLOWED.get(kind, (set(), set()))[1]
    for i, token in enumerate(tokens):
        word = token.strip().lower()
        if "=" in token or word in flags or (i > 0 and _WORD.match(token)):
            return ",".join(tokens[:i]).strip(), tokens[i:]
    return rest.strip(), []


def options(
    given: list[str], kind: str, hint: Callable[[str], str] | None = None
) -> dict[str, Any]:
    """The options of a layer as fields: stride, padding, dilation (pairs or a padding
    spec), border (a word, checked by who uses it), bias and scale (finite numbers), and
    flags (True; ``nobias`` sets ``bias`` to False). ValueError names what is wrong;
    ``hint(word)`` may add to the message for an unknown flag."""
    allowed, flags = ALLOWED.get(kind, (set(), set()))
    fields: dict[str, Any] = {}
    for option in given:
        key, eq, value = option.strip().partition("=")
        key = key.strip().lower()
        if not eq:
            if key not in flags:
                extra = hint(key) if hint is not None and key else ""
                raise ValueError(f"unknown flag {key!r}{extra}" if key else "an empty option")
            field = "nobias" if key == "nobias" else key
            if field in fields or (field == "nobias" and "bias" in fields):
                raise ValueError(f"{key!r} given twice")
            fields[field] = True
            continue
        field = KEYS.get(key)
        if field not in allowed:
            raise ValueError(f"unknown option {key!r}")
        if field in fields or (field == "bias" and "nobias" in fields):
            raise ValueError(f"{field} given twice")
        fields[field] = _value(field, value.strip(), kind)
    return fields


def _value(field: str, text: str, kind: str) -> Any:
    if field in ("stride", "dilation"):
        return parse_pair(text, field)
    if field == "padding":
        if kind == "conv":
            return parse_padding(text)
        if text.lower() in ("same", "valid"):
            raise ValueError(f"a pool's padding is N or HxW, not {text!r}")
        return parse_pair(text, "padding", minimum=0)
    if field == "border":
        return text.lower()
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"{field} must be a number, got {text!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{field} must be finite, got {text!r}")
    return number


def random_head(head: str) -> tuple[int, Pair] | None:
    """A conv head ``C@K``: (C, (kh, kw)); None for kernels (a name cannot start with
    a digit, so ``8@3`` is never a kernel spec; ``conv:4`` is an inline 1x1 kernel of
    weight 4, see :func:`lone_number`).

    >>> random_head("8@3x5"), random_head("kirsch@45")
    ((8, (3, 5)), None)
    """
    match = _RANDOM.match(head)
    if match is None:
        if "@" in head and head.split("@")[0].strip().isdigit():
            raise ValueError(f"expected C@K after {head.split('@')[0].strip()}@, e.g. conv:8@3")
        return None
    return parse_int(match[1], "output channels", 1), parse_pair(match[2], "kernel")


def check_random(fields: dict[str, Any]) -> None:
    """Refuse the options of named kernels on a ``C@K`` conv (its kernels are random)."""
    for flag in ("flip", "normalize", "scale", "bias"):
        if flag in fields:
            raise ValueError(f"{flag} is for named kernels; C@K's are random")


def lone_number(head: str) -> bool:
    """Whether a conv head is a whole number alone (``conv:4``): one 1x1 kernel of that
    weight, which a network's ``conv:4@K`` may have meant (worth a note).

    >>> lone_number("4"), lone_number("4@3"), lone_number("0.5")
    (True, False, False)
    """
    return head.strip().isdigit()


def kernel_specs(head: str) -> list[str]:
    """A conv head's kernel specs, split at the ``+`` that join them.

    >>> kernel_specs("sobel_x+gaussian:5,1e+0 + @w.npy")
    ['sobel_x', 'gaussian:5,1e+0', '@w.npy']
    """
    return [s.strip() for s in _PLUS.split(head)]


def window(head: str) -> Pair:
    """A pool's window: N or HxW, 2 when not given."""
    return parse_pair(head, "window") if head else (2, 2)
