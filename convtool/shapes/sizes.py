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


def check_torch_padding(
    padding: PaddingSpec, size: Pair, kernel: Pair, stride: Pair, dilation: Pair = (1, 1)
) -> None:
    """Refuse (ValueError) what torch's conv2d refuses of a padding: 'same' with a stride
    (torch: "padding='same' is not supported for strided convolutions"), saying what
    torch takes instead for the same output size.

    ``convtool apply`` and ``pipeline`` pad 'same' with any stride (output size = input
    size / stride); ``convtool shape`` answers as torch does, so it refuses.

    >>> try:
    ...     check_torch_padding("same", (28, 28), (3, 3), (2, 2))
    ... except ValueError as e:
    ...     print(str(e).split("; ")[1])
    for the same output, 14, give padding 1
    """
    if not (isinstance(padding, str) and padding.lower() == "same") or tuple(stride) == (1, 1):
        return
    wanted = [-(-n // s) for n, s in zip(size, stride, strict=True)]
    sols = [
        solve_padding(*args) for args in zip(size, kernel, stride, dilation, wanted, strict=True)
    ]

    def text(values) -> str:
        return str(values[0]) if values[0] == values[1] else f"{values[0]}x{values[1]}"

    if all(sol.symmetric is not None for sol in sols):
        instead = f"give padding {text([sol.symmetric for sol in sols])}"
    else:  # torch pads both sides alike: the rest goes through F.pad first
        sides = ", ".join(f"{a} {s.before} before and {s.after} after"
                          for a, s in zip(("rows", "columns"), sols, strict=True))  # fmt: skip
        instead = f"pad {sides} first (torch.nn.functional.pad), then padding 0"
    raise ValueError(
        f"torch refuses padding 'same' with stride {text(stride)} (not supported for strided "
        f"convolutions); for the same output, {text(wanted)}, {instead}"
    )


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
