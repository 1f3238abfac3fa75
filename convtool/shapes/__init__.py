"""Output-size arithmetic, in pure Python: no numpy, no numba, answers instantly.

The chapter's formula is ``floor((H - K + 2P) / S) + 1``; with dilation D the kernel
spans ``D * (K - 1) + 1`` pixels, as torch documents it.

- :mod:`convtool.shapes.sizes`: output sizes, 'same' padding, the padding solver;
- :mod:`convtool.shapes.parse`: sizes as people type them (``N``, ``HxW``, ``same``);
- :mod:`convtool.shapes.grammar`: the one grammar of layers and stages (``shape``'s
  layers, ``pipeline``'s and ``fit``'s stages);
- :mod:`convtool.shapes.layers`: a chain's layers and the table of their shapes;
- :mod:`convtool.shapes.budget`: the arrays a job will make, held to ``--max-pixels`` and
  to the machine's memory before any is made.
"""

import importlib
from typing import Any

from convtool.shapes.budget import (
    Conv,
    Extra,
    Plan,
    Pool,
    Relu,
    SizeError,
    check,
    machine_memory,
    plan,
)
from convtool.shapes.parse import parse_dims, parse_int, parse_padding, parse_pair
from convtool.shapes.sizes import (
    PaddingSolution,
    PaddingSpec,
    Pair,
    as_pair,
    check_torch_padding,
    leftover,
    output_size,
    output_size_padded,
    pool_output_size,
    resolve_padding,
    same_padding,
    solve_padding,
)

__all__ = [
    "ACTIVATIONS",
    "Conv",
    "Extra",
    "Layer",
    "PaddingSolution",
    "PaddingSpec",
    "Pair",
    "Plan",
    "Pool",
    "Relu",
    "Row",
    "SizeError",
    "as_pair",
    "chain",
    "check",
    "check_torch_padding",
    "grammar",
    "leftover",
    "machine_memory",
    "output_size",
    "output_size_padded",
    "parse_dims",
    "parse_int",
    "parse_layer",
    "parse_padding",
    "parse_pair",
    "plan",
    "pool_output_size",
    "resolve_padding",
    "same_padding",
    "solve_padding",
    "summary",
]

# The grammar and the layers' table load on first use: ``apply`` and ``fit`` need
# neither (about 1 ms of every command).
_LATER = {"grammar": "grammar"} | dict.fromkeys(
    ("ACTIVATIONS", "Layer", "Row", "chain", "parse_layer", "summary"), "layers"
)


def __getattr__(name: str) -> Any:
    if name not in _LATER:
        raise AttributeError(f"module 'convtool.shapes' has no attribute {name!r}")
    module = importlib.import_module(f"convtool.shapes.{_LATER[name]}")
    value = module if name == "grammar" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LATER))
