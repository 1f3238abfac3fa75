"""Layer chains: the ``conv:8@3x3,s=2 relu maxpool:2`` grammar and the table of shapes it gives."""

from __future__ import annotations

from typing import NamedTuple

from convtool.shapes.parse import parse_int, parse_padding, parse_pair
from convtool.shapes.sizes import (
    PaddingSpec,
    Pair,
    as_pair,
    check_torch_padding,
    output_size_padded,
    pool_output_size,
    resolve_padding,
)

_KINDS = {
    "conv": "conv",
    "conv2d": "conv",
    "maxpool": "maxpool",
    "max_pool": "maxpool",
    "avgpool": "avgpool",
    "avg_pool": "avgpool",
    "fc": "fc",
    "linear": "fc",
    "dense": "fc",
    "flatten": "flatten",
    "bn": "bn",
    "batchnorm": "bn",
    "dropout": "dropout",
}
ACTIVATIONS = ("relu", "leakyrelu", "sigmoid", "tanh", "gelu", "softmax")
_OPTION_KEYS = {
    "s": "stride",
    "stride": "stride",
    "p": "padding",
    "pad": "padding",
    "padding": "padding",
    "d": "dilation",
    "dilation": "dilation",
}
# which options and flags each kind takes
_ALLOWED = {
    "conv": ({"stride", "padding", "dilation"}, {"nobias"}),
    "maxpool": ({"stride", "padding", "dilation"}, {"ceil"}),
    "avgpool": ({"stride", "padding"}, {"ceil"}),
    "fc": (set(), {"nobias"}),
}
_FORMS = {
    "conv": "conv:C@K[,s=S][,p=P|same|valid][,d=D][,nobias]",
    "maxpool": "maxpool:K[,s=S][,p=P][,d=D][,ceil]",
    "avgpool": "avgpool:K[,s=S][,p=P][,ceil]",
    "fc": "fc:N[,nobias]",
    "dropout": "dropout[:RATE]",
}


class Layer(NamedTuple):
    """One parsed layer of a chain; ``text`` is the spec as written."""

    kind: str
    text: str
    size: int = 0  # conv: output channels; fc: output features
    kernel: Pair = (1, 1)
    stride: Pair | None = None  # None: 1 for conv, the kernel for pools
    padding: PaddingSpec = 0
    dilation: Pair = (1, 1)
    ceil_mode: bool = False
    bias: bool = True


def parse_layer(text: str) -> Layer:
    """Parse one layer spec of a chain (the grammar is in ``convtool shape --help``).

    >>> parse_layer("conv:8@3x3,s=2,p=same")
    Layer(kind='conv', text='conv:8@3x3,s=2,p=same', size=8, kernel=(3, 3), stride=(2, 2), \
padding='same', dilation=(1, 1), ceil_mode=False, bias=True)
    """
    name, colon, rest = text.strip().partition(":")
    name = name.strip().lower()
    if name in ACTIVATIONS or name in ("flatten", "bn", "batchnorm"):
        if colon:
            raise ValueError(f"layer {text!r}: {name} takes no arguments")
        return Layer(_KINDS.get(name, name), text)
    kind = _KINDS.get(name)
    if kind is None:
        known = ", ".join([*_FORMS.values(), "flatten", "bn", *ACTIVATIONS])
        raise ValueError(f"unknown layer {text!r}; known layers: {known}")
    form = _FORMS[kind]
    if kind == "dropout":
        if colon:
            try:
                rate = float(rest)
            except ValueError:
                rate = -1.0
            if not 0 <= rate < 1:
                raise ValueError(f"layer {text!r}: the dropout rate must be in [0, 1)")
        return Layer(kind, text)
    parts = rest.split(",") if colon else []
    if not parts or not parts[0].strip():
        raise ValueError(f"layer {text!r} is incomplete: expected {form}")
    head, options = parts[0].strip(), parts[1:]
    fields: dict = {}
    try:
        if kind == "conv":
            channels, at, kernel = head.partition("@")
            if not at:
                raise ValueError("missing '@K' (output channels @ kernel, e.g. conv:8@3)")
            fields["size"] = parse_int(channels, "output channels", 1)
            fields["kernel"] = parse_pair(kernel, "kernel")
        elif kind == "fc":
            fields["size"] = parse_int(head, "output features", 1)
        else:
            fields["kernel"] = parse_pair(head, "kernel")
        allowed, flags = _ALLOWED[kind]
        for option in options:
            key, eq, value = option.strip().partition("=")
            key = key.strip().lower()
            if not eq:
                if key not in flags:
                    raise ValueError(f"unknown flag {key!r}")
                if key in fields or (key == "nobias" and "bias" in fields):
                    raise ValueError(f"{key!r} given twice")
                fields["ceil_mode" if key == "ceil" else "bias"] = key == "ceil"
                continue
            field = _OPTION_KEYS.get(key)
            if field not in allowed:
                raise ValueError(f"unknown option {key!r}")
            if field in fields:
                raise ValueError(f"{field} given twice")
            if field == "padding":
                fields[field] = parse_padding(value)
            else:
                fields[field] = parse_pair(value, field)
    except ValueError as e:
        raise ValueError(f"layer {text!r}: {e}; expected {form}") from None
    if kind != "conv" and fields.get("padding") in ("same", "valid"):
        raise ValueError(f"layer {text!r}: a pool's padding is a number, not 'same'/'valid'")
    return Layer(kind, text, **fields)


class Row(NamedTuple):
    """One line of a chain's summary: the layer, its output shape and its costs."""

    layer: str
    shape: tuple[int, ...]
    params: int
    macs: int


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def _apply(layer: Layer, shape: tuple[int, ...]) -> Row:
    if layer.kind in ("conv", "maxpool", "avgpool"):
        if len(shape) != 3:
            raise ValueError(f"needs a CxHxW input, got the flat {_shape_text(shape)}")
        c, h, w = shape
        (kh, kw), (dh, dw) = layer.kernel, layer.dilation
        if layer.kind == "conv":
            sh, sw = layer.stride or (1, 1)
            check_torch_padding(layer.padding, (h, w), layer.kernel, (sh, sw), layer.dilation)
            top, bottom, left, right = resolve_padding(
                layer.padding, (h, w), layer.kernel, (sh, sw), layer.dilation
            )
            h_out = output_size_padded(h, kh, sh, top, bottom, dh)
            w_out = output_size_padded(w, kw, sw, left, right, dw)
            params = layer.size * c * kh * kw + (layer.size if layer.bias else 0)
            macs = layer.size * h_out * w_out * c * kh * kw
            return Row(layer.text, (layer.size, h_out, w_out), params, macs)
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
