"""Layer chains: ``conv:8@3x3,s=2 relu maxpool:2`` (:mod:`convtool.shapes.grammar`) and
the table of shapes it gives."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from convtool.shapes import grammar
from convtool.shapes.grammar import ACTIVATIONS
from convtool.shapes.parse import parse_int
from convtool.shapes.sizes import (
    PaddingSpec,
    Pair,
    as_pair,
    check_torch_padding,
    output_size_padded,
    pool_output_size,
    resolve_padding,
)


class Layer(NamedTuple):
    """One parsed layer of a chain; ``text`` is the spec as written.

    A conv is ``C@K`` (``size`` kernels of ``kernel``, a bias each unless ``nobias``) or
    named kernels: ``kernels`` then holds each one's (maps, input channels or 0 for a
    2-D kernel on every channel, kh, kw), and ``bias`` is whether ``bias=B`` was given.
    """

    kind: str
    text: str
    size: int = 0  # conv: output channels; fc: output features
    kernel: Pair = (1, 1)
    stride: Pair | None = None  # None: 1 for conv, the kernel for pools
    padding: PaddingSpec = 0
    dilation: Pair = (1, 1)
    ceil_mode: bool = False
    bias: bool = True
    kernels: tuple[tuple[int, int, int, int], ...] = ()


KernelShape = Callable[[str], tuple[int, ...]]


def parse_layer(text: str, kernel_shape: KernelShape | None = None) -> Layer:
    """Parse one layer spec of a chain (:mod:`convtool.shapes.grammar`).

    ``kernel_shape(spec)`` gives the weights' shape of a kernel a conv names ((kh, kw)
    or (C_out, C_in, kh, kw)); without it such a conv is refused.

    >>> parse_layer("conv:8@3x3,s=2,p=same")
    Layer(kind='conv', text='conv:8@3x3,s=2,p=same', size=8, kernel=(3, 3), stride=(2, 2), \
padding='same', dilation=(1, 1), ceil_mode=False, bias=True, kernels=())
    """
    name, colon, rest = text.strip().partition(":")
    kind = grammar.kind_of(name)
    if kind is None:
        known = ", ".join([*grammar.FORMS.values(), "relu", "flatten", "bn", *ACTIVATIONS[1:]])
        raise ValueError(f"unknown layer {text!r}; known layers: {known}")
    if kind in ACTIVATIONS or kind in ("flatten", "bn"):
        if colon:
            raise ValueError(f"layer {text!r}: {name.strip().lower()} takes no arguments")
        return Layer(kind, text)
    form = grammar.FORMS[kind]
    if kind == "dropout":
        if colon:
            try:
                rate = float(rest)
            except ValueError:
                rate = -1.0
            if not 0 <= rate < 1:
                raise ValueError(f"layer {text!r}: the dropout rate must be in [0, 1)")
        return Layer(kind, text)
    try:
        head, given = grammar.split(rest if colon else "", kind)
        fields = grammar.options(given, kind)
        found = _head(kind, head, fields, kernel_shape)
    except ValueError as e:
        raise ValueError(f"layer {text!r}: {e}; expected {form}") from None
    if kind in ("conv", "fc") and not found.get("kernels"):
        found["bias"] = not fields.get("nobias", False)
    elif kind == "conv":
        found["bias"] = "bias" in fields
    if kind in ("maxpool", "avgpool"):
        found["ceil_mode"] = fields.get("ceil", False)
    for field in ("stride", "padding", "dilation"):
        if field in fields:
            found[field] = fields[field]
    return Layer(kind, text, **found)


def _head(kind: str, head: str, fields: dict, kernel_shape: KernelShape | None) -> dict:
    """The fields a layer's head gives: output channels and kernel, features, or window."""
    if kind == "fc":
        if not head:
            raise ValueError("missing N (output features, e.g. fc:10)")
        return {"size": parse_int(head, "output features", 1)}
    if kind != "conv":
        return {"kernel": grammar.window(head)}
    if not head:
        raise ValueError("missing '@K' (output channels @ kernel, e.g. conv:8@3) or kernels")
    random = grammar.random_head(head)
    if random is not None:
        grammar.check_random(fields)
        return {"size": random[0], "kernel": random[1]}
    if kernel_shape is None:
        raise ValueError(f"{head!r} names kernels; give C@K (output channels @ kernel)")
    kernels = []
    for spec in grammar.kernel_specs(head):
        shape = tuple(kernel_shape(spec))
        out, inputs = (shape[0], shape[1]) if len(shape) == 4 else (1, 0)
        kernels.append((out, inputs, shape[-2], shape[-1]))
    return {
        "size": sum(k[0] for k in kernels),
        "kernel": kernels[0][2:],
        "kernels": tuple(kernels),
    }


class Row(NamedTuple):
    """One line of a chain's summary: the layer, its output shape and its costs."""

    layer: str
    shape: tuple[int, ...]
    params: int
    macs: int


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def _conv(layer: Layer, shape: tuple[int, ...]) -> Row:
    """A conv's row: C@K's kernels see every input channel; named 2-D kernels too (the
    chapter's filter, summed over the channels), with their own weights counted once."""
    c, h, w = shape
    stride = layer.stride or (1, 1)
    kernels = layer.kernels or ((layer.size, c, *layer.kernel),)
    outs, params, macs = set(), 0, 0
    for maps, inputs, kh, kw in kernels:
        if inputs and inputs != c:
            raise ValueError(f"a {maps}x{inputs}x{kh}x{kw} kernel takes {inputs} input "
                             f"channel(s), but its input has {c}")  # fmt: skip
        check_torch_padding(layer.padding, (h, w), (kh, kw), stride, layer.dilation)
        top, bottom, left, right = resolve_padding(
            layer.padding, (h, w), (kh, kw), stride, layer.dilation
        )
        out = (
            output_size_padded(h, kh, stride[0], top, bottom, layer.dilation[0]),
            output_size_padded(w, kw, stride[1], left, right, layer.dilation[1]),
        )
        outs.add(out)
        params += maps * (inputs or 1 if layer.kernels else c) * kh * kw
        macs += maps * out[0] * out[1] * c * kh * kw
    if len(outs) > 1:
        found = ", ".join(f"{a}x{b}" for a, b in sorted(outs))
        raise ValueError(f"its kernels give maps of different sizes ({found}); use p=same")
    params += layer.size if layer.bias else 0
    return Row(layer.text, (layer.size, *outs.pop()), params, macs)


def _apply(layer: Layer, shape: tuple[int, ...]) -> Row:
    if layer.kind in ("conv", "maxpool", "avgpool"):
        if len(shape) != 3:
            raise ValueError(f"needs a CxHxW input, got the flat {_shape_text(shape)}")
        c, h, w = shape
        (kh, kw), (dh, dw) = layer.kernel, layer.dilation
        if layer.kind == "conv":
            return _conv(layer, shape)
        sh, sw = layer.stride or layer.kernel
        ph, pw = as_pair(layer.padding, "padding")
        h_out = pool_output_size(h, kh, sh, ph, dh, layer.ceil_mode)
        w_out = pool_output_size(w, kw, sw, pw, dw, layer.ceil_mode)
        return Row(layer.text, (c, h_out, w_out), 0, 0)
    if layer.kind == "flatten":
        total = 1
        for n in shape:
            total *= n
        return Row(layer.text, (total,), 0, 0)
    if layer.kind == "fc":
        if len(shape) != 1:
            raise ValueError(
                f"needs a flat input, got {_shape_text(shape)}; put 'flatten' before it"
            )
        params = shape[0] * layer.size + (layer.size if layer.bias else 0)
        return Row(layer.text, (layer.size,), params, shape[0] * layer.size)
    if layer.kind == "bn":  # a scale and a shift per channel (or feature)
        return Row(layer.text, shape, 2 * shape[0], 0)
    return Row(layer.text, shape, 0, 0)  # activations and dropout


def chain(input_shape: tuple[int, ...], layers: list[Layer]) -> list[Row]:
    """Shapes and costs along a chain of layers, one :class:`Row` per layer.

    ``input_shape`` is (C, H, W), or (N,) for a flat vector of N features.
    Parameters count weights and biases (batch norm: a scale and a shift per
    channel); multiply-adds count the weighted sums of conv and fc layers only.

    >>> rows = chain((1, 28, 28), [parse_layer("conv:4@5"), parse_layer("maxpool:2")])
    >>> [(r.shape, r.params, r.macs) for r in rows]
    [((4, 24, 24), 104, 57600), ((4, 12, 12), 0, 0)]
    """
    rows = []
    shape = tuple(input_shape)
    for i, layer in enumerate(layers, 1):
        try:
            row = _apply(layer, shape)
        except ValueError as e:
            hint = ""
            if i == 1 and len(shape) == 1 and layer.kind in ("conv", "maxpool", "avgpool"):
                hint = (
                    f" (an input N is a flat vector; for a picture write 1x{shape[0]}x{shape[0]})"
                )
            raise ValueError(
                f"layer {i} ({layer.text}) on input {_shape_text(shape)}: {e}{hint}"
            ) from None
        rows.append(row)
        shape = row.shape
    return rows


def summary(input_shape: tuple[int, ...], layers: list[Layer]) -> dict:
    """:func:`chain` as a JSON-ready dict: layers, totals and the output shape."""
    rows = chain(input_shape, layers)
    return {
        "input": list(input_shape),
        "layers": [
            {"layer": r.layer, "shape": list(r.shape), "params": r.params, "macs": r.macs}
            for r in rows
        ],
        "total_params": sum(r.params for r in rows),
        "total_macs": sum(r.macs for r in rows),
        "output": list(rows[-1].shape if rows else input_shape),
    }
