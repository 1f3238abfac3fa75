"""Preparing a fit (for :mod:`convtool.fit`): shapes, sizes, borders and masks.

Every problem is reduced to a valid convolution: output pixel (i, j) sees
x[n, i*sh + a, j*sw + b] through tap (a, b). A same-size target is cropped to the pixels
whose window lies inside the picture ('interior'), or the input is padded as its maker
padded it (a border mode).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from convtool import vocab
from convtool._shared import Param, naming
from convtool.fit import solve
from convtool.shapes import as_pair, output_size, same_padding

# the names `convtool apply --border` uses (see convtool.vocab), and 'interior': no border,
# only the target pixels that the border cannot touch are fitted
BORDERS = vocab.FIT_BORDERS
AUTO_SIZES = (1, 3, 5, 7, 9)  # odd sizes tried when a same-size target does not tell
# a kernel size inferred from the shapes never exceeds this (a larger one must be asked for)
MAX_INFERRED = 63
MAX_STRIDE = 16  # strides tried when the sizes say the target was made with one
# the fit's statistics (one Gram matrix per plane and per thread) never take more than this
MAX_GRAM_BYTES = 2 << 30


class FitError(ValueError):
    """The pictures or options cannot give a fit; the message says why, in one line."""


class ShapeError(FitError):
    """The two pictures' shapes do not fit together (or with the size and stride given)."""


class DivergenceError(FitError):
    """An explicit gradient-descent step is too large for the data: it would diverge."""

    def __init__(self, message: str, safe_lr: float, limit: float) -> None:
        super().__init__(message)
        self.safe_lr = safe_lr
        self.limit = limit


class Geometry(NamedTuple):
    size: tuple[int, int] | None  # None: to be detected (same-size target)
    stride: tuple[int, int]
    pads: tuple[int, int, int, int]  # top, bottom, left, right ('same' padding)
    size_from: str
    notes: tuple[str, ...] = ()  # what was inferred from the sizes


def planes(a: Any, name: str) -> np.ndarray:
    """``a`` as contiguous float64 planes (N, H, W), checked."""
    arr = np.asarray(a)
    if arr.ndim not in (2, 3) or 0 in arr.shape:
        raise ShapeError(
            f"the {name} must be a non-empty (H, W) or (C, H, W) array; got {arr.shape}"
        )
    if arr.dtype.kind not in "biuf":
        raise FitError(f"the {name} must hold real numbers, not {arr.dtype}")
    out = np.ascontiguousarray(arr.reshape((-1, *arr.shape[-2:])), dtype=np.float64)
    if not np.isfinite(out).all():
        raise FitError(f"the {name} holds NaN or infinite values")
    return out


def dims(shape: tuple[int, ...]) -> str:
    """A picture's size as every size convtool writes: rows x columns (HxW), the order
    of the kernel sizes beside it in the same messages (vocab.PAIR_ORDER)."""
    return f"{shape[-2]}x{shape[-1]}"


def _fits(n_in: int, n_out: int, k: int | None, s: int) -> bool:
    """Whether valid or same padding and some kernel size (``k``, if given) give n_out from n_in."""
    if k is None:  # valid padding reaches every size from 1 to ceil(n_in / s)
        return 1 <= n_out <= -(-n_in // s)
    return (n_in >= k and (n_in - k) // s + 1 == n_out) or -(-n_in // s) == n_out


def axis(
    n_in: int,
    n_out: int,
    k: int | None,
    s: int,
    shapes: str,
    name: str = "this axis",
    swap: str = "",
) -> tuple[int | None, int, int]:
    """(kernel size, pad before, pad after) along one axis; ``swap`` ends a mismatch's message."""
    if k is None:
        if n_out > -(-n_in // s):
            if s == 1:
                raise ShapeError(f"{shapes}: the target is larger than the input{swap}")
            raise ShapeError(
                f"{shapes}: with stride {s} the target can be at most {-(-n_in // s)} along "
                f"{name} ('same' padding, less without), not {n_out}{swap}"
            )
        if n_out == -(-n_in // s):
            return None, 0, 0  # 'same' padding: the kernel size must be found
        if s > 1:
            raise ShapeError(
                f"{shapes}: with stride {s} the kernel size does not follow; give the size"
            )
        return n_in - n_out + 1, 0, 0
    if n_in >= k and (n_in - k) // s + 1 == n_out:
        return k, 0, 0
    if -(-n_in // s) == n_out:
        return (k, *same_padding(n_in, k, s))
    valid = (n_in - k) // s + 1 if n_in >= k else 0
    raise ShapeError(
        f"{shapes}: a size-{k} kernel with stride {s} gives {valid} (valid) or "
        f"{-(-n_in // s)} (same) along {name}, not {n_out}{swap}"
    )


def geometry(xs: tuple[int, ...], ys: tuple[int, ...], size: Any, stride: Any) -> Geometry:
    """The kernel size, stride and padding that make a ``ys`` target from a ``xs`` input.

    ``stride`` None: detected from the sizes (:func:`detect_stride`). A size that follows
    from the shapes is at most :data:`MAX_INFERRED` along each axis; past it, the message
    names ``size`` and ``stride``.
    """
    kh, kw = (None, None) if size is None else as_pair(size, "size")
    if size is not None and (kh < 1 or kw < 1):
        raise FitError(f"kernel size must be at least 1, got {size!r}")
    shapes = f"input {dims(xs)}, target {dims(ys)}"
    notes: tuple[str, ...] = ()
    if stride is None:
        (sh, sw), (kh, kw), notes = detect_stride(xs, ys, (kh, kw), shapes)
    else:
        sh, sw = as_pair(stride, "stride")
    if sh < 1 or sw < 1:
        raise FitError(f"stride must be at least 1, got {stride!r}")
    # suggest a swap only where the swapped pair would fit
    swapped = _fits(ys[-2], xs[-2], kh, sh) and _fits(ys[-1], xs[-1], kw, sw)
    swap = "; are the two swapped?" if swapped else ""
    kh, pt, pb = axis(xs[-2], ys[-2], kh, sh, shapes, "the height", swap)
    kw, pl, pr = axis(xs[-1], ys[-1], kw, sw, shapes, "the width", swap)
    if (kh is None) != (kw is None):  # valid along one axis: one tap along the other
        kh, kw = kh or 1, kw or 1
    found = None if kh is None else (kh, kw)
    if size is None and found is not None and max(found) > MAX_INFERRED:
        raise naming(
            ShapeError(),
            "{shapes}: as a valid convolution these sizes take a {kernel} kernel (rows x "
            "columns), larger than the {cap}x{cap} the fit infers; if the target was made "
            "with a stride, give {stride}; to fit such a kernel, give {size}",
            shapes=shapes, kernel=f"{found[0]}x{found[1]}", cap=MAX_INFERRED,
            stride=Param("stride", "S"), size=Param("size", f"{found[0]}x{found[1]}"),
        )  # fmt: skip
    given = "given" if size is not None else "shapes"
    return Geometry(found, (sh, sw), (pt, pb, pl, pr), given, notes)


def _axis_stride(n_in: int, n_out: int, k: int | None) -> tuple[int, int | None] | None:
    """(stride, kernel size) that make n_out from n_in along one axis, or None.

    With the size given, the smallest stride that fits. Without: a valid stride-1
    kernel of the usual sizes (up to 9) first; then a stride with 'same' padding
    (ceil(n_in / s) outputs); then the valid stride whose one possible odd size (up to
    MAX_INFERRED) is the smallest; then a valid stride-1 kernel up to MAX_INFERRED.
    """
    if n_out >= n_in:
        return 1, k  # no stride makes a picture larger: stride 1 says what is wrong
    strides = range(1, min(MAX_STRIDE, n_in) + 1)
    if k is not None:
        for s in strides:
            if -(-n_in // s) == n_out or (n_in >= k and output_size(n_in, k, s) == n_out):
                return s, k
        return 1, k  # the message for stride 1 names the sizes a size-k kernel gives
    direct = n_in - n_out + 1  # the kernel of a valid stride-1 convolution
    if direct <= AUTO_SIZES[-1]:
        return 1, None
    for s in strides[1:]:
        if -(-n_in // s) == n_out:
            return s, None
    valid = []
    for s in strides[1:]:
        top = n_in - s * (n_out - 1)  # the largest kernel giving n_out outputs
        odd = [q for q in range(max(top - s + 1, 1), top + 1) if q % 2 and q <= MAX_INFERRED]
        if len(odd) == 1:
            valid.append((odd[0], s))
    if valid:
        k, s = min(valid)  # the smallest kernel the sizes allow
        return s, k
    return (1, None) if direct <= MAX_INFERRED else None


def detect_stride(xs, ys, size, shapes: str):
    """The stride (and, for a valid strided target, the size) the two sizes imply, with a note.

    Raises a :class:`ShapeError` naming ``stride`` when no stride up to MAX_STRIDE fits.
    """
    axes = zip(xs[-2:], ys[-2:], size, strict=True)
    found = [_axis_stride(n_in, n_out, k) for n_in, n_out, k in axes]
    if None in found:
        raise naming(
            ShapeError(),
            "{shapes}: no stride up to {most} makes the one from the other with a kernel up "
            "to {cap}x{cap}; give {stride} (and {size}) as the target was made",
            shapes=shapes, most=MAX_STRIDE, cap=MAX_INFERRED,
            stride=Param("stride", "S"), size=Param("size", "K"),
        )  # fmt: skip
    (sh, kh), (sw, kw) = found
    notes = ()
    if (sh, sw) != (1, 1):
        text = f"stride {sh}x{sw} (rows x columns)" if sh != sw else f"stride {sh}"
        notes = (f"{text} detected from the sizes ({shapes}); give the stride to set it",)
    return (sh, sw), (kh, kw), notes


def interior(n_in: int, n_out: int, k: int, s: int, pad: int) -> tuple[int, int, int]:
    """(input offset, first, end) of the outputs whose window lies inside the input."""
    first = -(-pad // s)
    end = min(n_out, (n_in - k + pad) // s + 1)
    return first * s - pad, first, end


def crop(x: np.ndarray, y: np.ndarray, geo: Geometry, border: str):
    """The input and target reduced to a valid-convolution problem."""
    (kh, kw), (sh, sw), (pt, pb, pl, pr) = geo.size, geo.stride, geo.pads
    if border == "interior":
        r0, i0, i1 = interior(x.shape[1], y.shape[1], kh, sh, pt)
        c0, j0, j1 = interior(x.shape[2], y.shape[2], kw, sw, pl)
        if i1 <= i0 or j1 <= j0:
            raise ShapeError(
                f"no target pixel of {dims(y.shape)} has its whole {kh}x{kw} window inside the "
                "picture; give a border mode to fit the border pixels"
            )
        y = y[:, i0:i1, j0:j1]
        x = x[:, r0:, c0:]
    elif pt or pb or pl or pr:
        try:
            x = np.pad(x, ((0, 0), (pt, pb), (pl, pr)), mode=vocab.pad_mode(border))
        except ValueError as e:
            raise ShapeError(f"cannot pad the input for border {border!r}: {e}") from None
    x = x[:, : (y.shape[1] - 1) * sh + kh, : (y.shape[2] - 1) * sw + kw]
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


def target_mask(
    y: np.ndarray, clip: tuple[float, float] | None, exclude: np.ndarray | None = None
) -> np.ndarray:
    """1 where a target pixel counts: inside ``clip`` and not excluded (a 0/1 float array)."""
    mask = np.ones_like(y)
    if clip is not None:
        lo, hi = clip
        mask = ((y > lo) & (y < hi)).astype(np.float64)
    if exclude is not None:
        mask[exclude != 0] = 0.0
    return mask


def exclusion(exclude: Any, target_shape: tuple[int, ...]) -> np.ndarray | None:
    """``exclude`` as float planes shaped like the target's (N, H, W), checked; or None."""
    if exclude is None:
        return None
    ex = np.asarray(exclude)
    if ex.shape[-2:] != target_shape[-2:] or ex.ndim not in (2, 3):
        raise ShapeError(f"exclude is {ex.shape}; it must have the target's {target_shape[-2:]}")
    planes = ex.reshape((-1, *ex.shape[-2:])).astype(np.float64)
    return np.ascontiguousarray(np.broadcast_to(planes, target_shape))


def _same_pads(x_shape: tuple[int, ...], k: int, stride: tuple[int, int]) -> tuple[int, ...]:
    return (*same_padding(x_shape[-2], k, stride[0]), *same_padding(x_shape[-1], k, stride[1]))


def _inside(x_shape, y_shape, k: int, stride: tuple[int, int]) -> int:
    """How many target pixels have their whole k x k 'same' window inside the picture."""
    pads = _same_pads(x_shape, k, stride)
    rows = interior(x_shape[-2], y_shape[-2], k, stride[0], pads[0])
    cols = interior(x_shape[-1], y_shape[-1], k, stride[1], pads[2])
    return max(rows[2] - rows[1], 0) * max(cols[2] - cols[1], 0)


def detect_size(x, y, geo, bias, per_channel, clip, quantum, engine=None, exclude=None, share=0.02):
    """The smallest odd square size that fits about as well as the largest tried.

    All sizes are fitted on the same pixels (the largest size's interior), by least
    squares. A size fits as well when its loss is within ``share`` (2%) of the largest
    size's (a lossy target's noise needs more), or
    within a tenth of the loss that rounding the target to steps of ``quantum`` causes
    (step^2 / 24): finer differences than that an 8-bit target cannot tell apart.
    """
    stride = geo.stride
    limit = max(
        (k for k in AUTO_SIZES if _inside(x.shape, y.shape, k, stride) >= 4 * (k * k + 1)),
        default=1,
    )
    big_pads = _same_pads(x.shape, limit, stride)
    big = Geometry((limit, limit), stride, big_pads, geo.size_from)
    xc, yc = crop(x, y, big, "interior")
    mask = target_mask(yc, clip, None if exclude is None else crop(x, exclude, big, "interior")[1])
    gram, moments = solve.gather(xc, yc, mask, (limit, limit), stride, engine=engine)
    losses = {}
    for k in (k for k in AUTO_SIZES if k <= limit):
        pads = _same_pads(x.shape, k, stride)  # where a k x k kernel sits in the large one
        r0, c0 = big_pads[0] - pads[0], big_pads[2] - pads[2]
        taps = [a * limit + b for a in range(r0, r0 + k) for b in range(c0, c0 + k)]
        sub = moments[:, taps + [limit * limit + t for t in taps] + list(range(-3, 0))]
        normal = solve.assemble(gram[:, taps][:, :, taps], sub, bias, per_channel)
        w = solve.least_squares(normal).w
        losses[k] = (normal.s - normal.c @ w) / 2  # model selection only: cancellation is fine
    best = losses[limit]
    slack = max(share * best, 0.1 * (quantum or 0.0) ** 2 / 24)
    slack += 1e-12 * solve.assemble(gram, moments, bias, per_channel).s
    k = min(k for k, v in losses.items() if v <= best + slack)
    note = f"kernel size {k}x{k} detected (odd sizes up to {limit} tried); give the size to set it"
    if k == limit and limit == AUTO_SIZES[-1]:
        note += f"; the kernel may be larger than {limit}x{limit}"
    pads = _same_pads(x.shape, k, stride)
    return Geometry((k, k), stride, pads, "detected", geo.notes), note
