"""Output-size arithmetic, in pure Python: no numpy, no numba, answers instantly.

The chapter's formula is ``floor((H - K + 2P) / S) + 1``; with dilation D the kernel
spans ``D * (K - 1) + 1`` pixels, as torch documents it.
"""

from __future__ import annotations

from typing import Union

Pair = tuple[int, int]
PaddingSpec = Union[int, str, tuple[int, int]]


def as_pair(value: int | tuple[int, int] | list[int], name: str) -> Pair:
    """Return ``value`` as an (h, w) pair of ints; a single int is used for both."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or an (h, w) pair, got {value!r}")
        h, w = value
    else:
        h = w = value
    for v in (h, w):
        if isinstance(v, bool) or not isinstance(v, int) and not hasattr(v, "__index__"):
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

    With ``ceil_mode`` (pooling) the division rounds up, but, as in torch, a last
    window that would start in the bottom/right padding is dropped.

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
    if span > padded:
        raise ValueError(
            f"kernel spans {span} pixels but the padded input is only {padded} "
            f"({n} + {pad_before} + {pad_after} padding)"
        )
    room = padded - span
    if ceil_mode:
        out = -(-room // stride) + 1
        # torch: the last window must start inside the input or the leading padding
        if (out - 1) * stride >= n + pad_before:
            out -= 1
        return out
    return room // stride + 1


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
