"""Output-size arithmetic, in pure Python: no numpy, no numba, answers instantly.

The chapter's formula is ``floor((H - K + 2P) / S) + 1``; with dilation D the kernel
spans ``D * (K - 1) + 1`` pixels, as torch documents it.
"""

from __future__ import annotations

from typing import NamedTuple

Pair = tuple[int, int]
PaddingSpec = int | str | tuple[int, int]


def as_pair(value: int | tuple[int, int] | list[int], name: str) -> Pair:
    """Return ``value`` as an (h, w) pair of ints; a single int is used for both."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or an (h, w) pair, got {value!r}")
        h, w = value
    else:
        h = w = value
    for v in (h, w):
        if isinstance(v, bool) or (not isinstance(v, int) and not hasattr(v, "__index__")):
            raise ValueError(f"{name} must be an integer, got {v!r}")
    return int(h), int(w)


def output_size(
    n: int,
    kernel: int,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    ceil_mode: bool = False,
) -> int:
    """Length of one output axis: ``floor((n + 2p - d*(k-1) - 1) / s) + 1``.

    With ``ceil_mode`` (pooling) the division rounds up, as in torch: the last
    window is kept even where it overhangs the padded input, unless it would start
    in the bottom/right padding. A ValueError names the kernel and the padded input
    when not even one window fits.

    Examples
    --------
    >>> output_size(28, 5)
    24
    >>> output_size(5, 3, stride=2)
    2
    >>> output_size(4, 3, padding=1)
    4
    """
    return output_size_padded(n, kernel, stride, padding, padding, dilation, ceil_mode)


def output_size_padded(
    n: int,
    kernel: int,
    stride: int,
    pad_before: int,
    pad_after: int,
    dilation: int = 1,
    ceil_mode: bool = False,
) -> int:
    """:func:`output_size` with different padding before and after."""
    for name, v in (("size", n), ("kernel", kernel), ("stride", stride), ("dilation", dilation)):
        if v < 1:
            raise ValueError(f"{name} must be at least 1, got {v}")
    if pad_before < 0 or pad_after < 0:
        raise ValueError(f"padding must not be negative, got {min(pad_before, pad_after)}")
    span = dilation * (kernel - 1) + 1
    padded = n + pad_before + pad_after
    room = padded - span
    if ceil_mode:
        # torch keeps a last window that overhangs the padded input, as long as it
        # starts inside the input or the leading padding
        out = -(-room // stride) + 1
        if (out - 1) * stride >= n + pad_before:
            out -= 1
    else:
        out = room // stride + 1
    if out < 1:
        pads = f"2*{pad_before}" if pad_before == pad_after else f"{pad_before} + {pad_after}"
        what = f"kernel {kernel}" if dilation == 1 else f"kernel {kernel} with dilation {dilation}"
        spans = "is larger than" if dilation == 1 else f"spans {span}, more than"
        raise ValueError(f"{what} {spans} the padded input {padded} ({n} + {pads})")
    return out


def same_padding(n: int, kernel: int, stride: int = 1, dilation: int = 1) -> Pair:
    """Padding (before, after) that gives ``ceil(n / stride)`` outputs.

    An odd total is split with the extra row or column after, as torch and
    TensorFlow do.

    Examples
    --------
    >>> same_padding(5, 3)
    (1, 1)
    >>> same_padding(6, 4)
    (1, 2)
    """
    span = dilation * (kernel - 1) + 1
    out = -(-n // stride)
    total = max((out - 1) * stride + span - n, 0)
    return total // 2, total - total // 2


def resolve_padding(
    padding: PaddingSpec, size: Pair, kernel: Pair, stride: Pair, dilation: Pair = (1, 1)
) -> tuple[int, int, int, int]:
    """Turn a padding spec into explicit (top, bottom, left, right) amounts.

    ``padding`` is an int, an (h, w) pair, ``'valid'`` (none) or ``'same'``.
    """
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return 0, 0, 0, 0
        if mode == "same":
            top, bottom = same_padding(size[0], kernel[0], stride[0], dilation[0])
            left, right = same_padding(size[1], kernel[1], stride[1], dilation[1])
            return top, bottom, left, right
        raise ValueError(f"padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
    ph, pw = as_pair(padding, "padding")
    if ph < 0 or pw < 0:
        raise ValueError(f"padding must not be negative, got {padding!r}")
    return ph, ph, pw, pw


def pool_output_size(
    n: int,
    kernel: int,
    stride: int | None = None,
    padding: int = 0,
    dilation: int = 1,
    ceil_mode: bool = False,
) -> int:
    """:func:`output_size` of a pooling window, with torch's pooling rules.

    ``stride`` defaults to ``kernel``, and ``padding`` may be at most half the
    window (torch refuses more, since a window could then hold nothing but padding).

    Examples
    --------
    >>> pool_output_size(24, 2)
    12
    >>> pool_output_size(5, 2, ceil_mode=True)
    3
    """
    if 2 * padding > kernel:
        raise ValueError(f"padding {padding} must be at most half the pool window {kernel}")
    stride = kernel if stride is None else stride
    return output_size_padded(n, kernel, stride, padding, padding, dilation, ceil_mode)


def leftover(
    n: int,
    kernel: int,
    stride: int = 1,
    pad_before: int = 0,
    pad_after: int = 0,
    dilation: int = 1,
    ceil_mode: bool = False,
) -> int:
    """Rows of the padded input after the end of the last window.

    Positive: rows the last window leaves unused, because the formula truncates when
    the stride does not divide the room evenly. Negative: in ceil mode, how far the
    last window overhangs the padded input.

    Examples
    --------
    >>> leftover(28, 5, stride=2)  # windows at 0, 2, ..., 22 end at 27: row 27 unused
    1
    >>> leftover(5, 2, stride=2, ceil_mode=True)  # the third window overhangs by 1
    -1
    """
    out = output_size_padded(n, kernel, stride, pad_before, pad_after, dilation, ceil_mode)
    span = dilation * (kernel - 1) + 1
    return n + pad_before + pad_after - ((out - 1) * stride + span)


class PaddingSolution(NamedTuple):
    """Padding that gives a wanted output size along one axis.

    ``before``/``after`` is the tightest fit (the smallest total; an odd total puts
    the extra row after, as 'same' does). ``symmetric`` is the smallest padding per
    side that also gives ``output``, or None when no symmetric padding does;
    ``symmetric_unused`` is how many rows it leaves unused.
    """

    output: int
    before: int
    after: int
    symmetric: int | None
    symmetric_unused: int = 0


def solve_padding(
    n: int, kernel: int, stride: int = 1, dilation: int = 1, target: int | None = None
) -> PaddingSolution:
    """Padding for which one axis of ``n`` gives ``target`` outputs (default: ``n``).

    Padding ``P`` in total gives ``target`` outputs exactly when
    ``(target - 1) * stride <= n + P - span < target * stride``.

    Examples
    --------
    >>> solve_padding(28, 5)  # keep 28 with a 5x5 kernel: 2 on each side
    PaddingSolution(output=28, before=2, after=2, symmetric=2, symmetric_unused=0)
    >>> solve_padding(28, 4).symmetric is None  # an even kernel needs 3 = 1 + 2
    True
    >>> solve_padding(28, 3, stride=2, target=14)  # 1 per side leaves a row unused
    PaddingSolution(output=14, before=0, after=1, symmetric=1, symmetric_unused=1)
    """
    target = n if target is None else target
    for name, v in (("size", n), ("kernel", kernel), ("stride", stride), ("dilation", dilation)):
        if v < 1:
            raise ValueError(f"{name} must be at least 1, got {v}")
    if target < 1:
        raise ValueError(f"target size must be at least 1, got {target}")
    span = dilation * (kernel - 1) + 1
    low = max((target - 1) * stride + span - n, 0)
    high = target * stride + span - n - 1
    if high < low:
        unpadded = output_size_padded(n, kernel, stride, 0, 0, dilation)
        raise ValueError(
            f"no padding gives {target}: even unpadded, size {n} gives {unpadded} "
            f"(kernel {kernel}, stride {stride}); padding only makes it larger"
        )
    even = low + low % 2
    symmetric = even // 2 if even <= high else None
    unused = even - low if symmetric is not None else 0
    return PaddingSolution(target, low // 2, low - low // 2, symmetric, unused)


# --------------------------------------------------------------------------- parsing

_SEPARATORS = ("x", "X", "×")


def _split_dims(text: str) -> list[str]:
    for sep in _SEPARATORS[1:]:
        text = text.replace(sep, "x")
    return text.split("x")


def _int(text: str, name: str, minimum: int) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {text.strip()!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def parse_pair(text: str, name: str, minimum: int = 1) -> Pair:
    """Parse ``'N'`` or ``'HxW'`` into an (h, w) pair of ints, each at least ``minimum``.

    >>> parse_pair("3x5", "kernel")
    (3, 5)
    >>> parse_pair("2", "stride")
    (2, 2)
    """
    parts = _split_dims(text)
    if len(parts) > 2:
        raise ValueError(f"{name} must be N or HxW, got {text!r}")
    values = [_int(p, name, minimum) for p in parts]
    return (values[0], values[-1])


def parse_padding(text: str) -> PaddingSpec:
    """Parse a padding: ``'N'``, ``'HxW'``, ``'same'`` or ``'valid'``."""
    mode = text.strip().lower()
    if mode in ("same", "valid"):
        return mode
    try:
        return parse_pair(text, "padding", minimum=0)
    except ValueError:
        raise ValueError(f"padding must be N, HxW, 'same' or 'valid', got {text!r}") from None


def parse_dims(text: str) -> tuple[int, ...]:
    """Parse an input shape: ``'N'``, ``'HxW'`` or ``'CxHxW'``, every number at least 1."""
    parts = _split_dims(text)
    if len(parts) > 3:
        raise ValueError(f"input must be N, HxW or CxHxW, got {text!r}")
    return tuple(_int(p, "input size", 1) for p in parts)


# ----------------------------------------------------------------------- layer chains

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
            fields["size"] = _int(channels, "output channels", 1)
            fields["kernel"] = parse_pair(kernel, "kernel")
        elif kind == "fc":
            fields["size"] = _int(head, "output features", 1)
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
