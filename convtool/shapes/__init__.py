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

from convtool.shapes import grammar
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
from convtool.shapes.layers import ACTIVATIONS, Layer, Row, chain, parse_layer, summary
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
