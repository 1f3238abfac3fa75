"""Filtering pictures: border modes, colour handling, value mapping, several kernels.

The array-level logic of ``convtool apply``, usable without a terminal. Pictures
are (H, W) grey or (H, W, C) colour float arrays, as :func:`convtool.imaging.read_image`
gives them, or their 8- or 16-bit samples, read as [0, 1] (:func:`as_pixels`); results
are float32 in the same layout. Kernels are applied as
cross-correlations (``flip=True`` in :func:`prepare_kernel` for the mathematical
convolution), through :func:`convtool.ops.conv2d`.

Borders (what lies outside the picture: zero, reflect, mirror, replicate, wrap)
are :mod:`convtool.vocab`'s, which shows each on a row; zeros are padded by the
core without a copy, the others with numpy.pad.

'same' padding gives ``ceil(size / stride)`` outputs; when a kernel side is even
the padding total is odd and its extra row or column goes after (bottom, right),
as in the core, torch and TensorFlow (SciPy and OpenCV centre even kernels at
index k//2, the other side).

Colour (for 2-D kernels): ``channels`` filters each channel alike; ``gray`` takes
the ITU-R 601 luma first; ``sum`` is the chapter's 3-in, 1-out filter, the kernel
on every channel and the results summed. A 4-D (C_out, C_in, kH, kW) kernel
decides the channels itself.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from convtool import ops, vocab
from convtool._shared import Param, naming
from convtool.core.engine import for_samples
from convtool.filtering.colour import to_gray
from convtool.shapes import PaddingSpec, as_pair, resolve_padding

__all__ = ["Prepared", "as_pixels", "block_grid", "combine", "correlate", "plan_of"]
__all__ += ["prepare_kernel"]
__all__ += ["resample_alpha"]


@dataclass(frozen=True, eq=False)
class Prepared:
    """A kernel ready to apply: weights after --normalize, --scale and --flip, and its bias.

    ``weights`` is float64, (kH, kW) or (C_out, C_in, kH, kW); ``bias`` a float,
    one float per output channel, or None. ``parts``, for a gradient magnitude
    (``sobel``), holds its (kH, kW) kernels (``weights`` is the first): the result is
    ``sqrt(mean of their results squared)``, plus the bias.
    """

    weights: np.ndarray
    name: str = "kernel"
    slug: str = "kernel"
    bias: float | tuple[float, ...] | None = None
    parts: tuple[np.ndarray, ...] = ()
    chain: tuple[np.ndarray, ...] = ()  # applied after weights, one by one, clipped between

    @property
    def full(self) -> bool:
        """A 4-D kernel, which sets the channels itself."""
        return self.weights.ndim == 4

    @property
    def size(self) -> tuple[int, int]:
        return int(self.weights.shape[-2]), int(self.weights.shape[-1])


def prepare_kernel(
    weights: Any,
    *,
    name: str = "kernel",
    slug: str | None = None,
    bias: float | tuple[float, ...] | None = None,
    normalize: bool = False,
    scale: float = 1.0,
    flip: bool = False,
    parts: tuple[Any, ...] = (),
    chain: tuple[Any, ...] = (),
) -> Prepared:
    """Divide by the sum (``normalize``, skipped where the sum is zero), multiply by
    ``scale``, and rotate 180 degrees (``flip``), in that order; to ``parts`` and
    ``chain`` alike.

    >>> prepare_kernel([[1, 1], [1, 1]], normalize=True, scale=2).weights.tolist()
    [[0.5, 0.5], [0.5, 0.5]]
    """
    from convtool.kernels import normalize_kernel

    if not np.isfinite(scale):
        raise ValueError(f"scale must be finite, got {scale}")

    def prepared(weights: Any) -> np.ndarray:
        w = np.array(weights, dtype=np.float64)
        if w.ndim not in (2, 4) or 0 in w.shape:
            raise ValueError(f"a kernel must be (kH, kW) or (C_out, C_in, kH, kW); got {w.shape}")
        if normalize:
            w = normalize_kernel(w)
        w = w * float(scale)
        return np.ascontiguousarray(w[..., ::-1, ::-1]) if flip else w

    done = tuple(prepared(p) for p in parts)
    if any(p.ndim != 2 or p.shape != done[0].shape for p in done):
        raise ValueError("a gradient magnitude's kernels must be 2-D and of one shape")
    then = tuple(prepared(k) for k in chain)
    if any(k.ndim != 2 for k in then):
        raise ValueError("a chain's kernels must be 2-D")
    first = done[0] if done else prepared(weights)
    return Prepared(first, name, slug or name, bias, done, then)


def as_pixels(data: Any) -> np.ndarray:
    """A picture as float32: its 8- or 16-bit samples (:data:`convtool.vocab.FULL_SCALE`)
    divided by their full scale, as a reader scales them; anything else cast as it is.

    >>> as_pixels(np.array([0, 51, 255], np.uint8)).tolist()
    [0.0, 0.20000000298023224, 1.0]
    """
    a = np.asarray(data)
    top = vocab.FULL_SCALE.get(a.dtype.name)
    if top is None:
        return a.astype(np.float32, copy=False)
    return np.divide(a, np.float32(top), dtype=np.float32)


def _planes(data: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, C) -> (C, H, W), a view where it can be: the padded copy a border
    makes, or the core's contiguous input, lays the planes out once. float32, or the
    picture's 8- or 16-bit samples as they are, which :func:`_conv` scales as it lays
    them out."""
    a = np.asarray(data)
    if a.dtype.name not in vocab.FULL_SCALE:
        a = a.astype(np.float32, copy=False)
    if a.ndim == 2:
        return a[None]
    if a.ndim != 3 or 0 in a.shape:
        raise ValueError(f"a picture must be (H, W) or (H, W, C); got shape {a.shape}")
    return a.transpose(2, 0, 1)


def _conv(
    x: np.ndarray,
    w: np.ndarray,
    b: Any,
    border: str,
    padding: PaddingSpec,
    stride: Any,
    engine: Any = None,
    origin: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """conv2d of x (N, C, H, W) with w (O, C, kH, kW), the border as asked; x float32, or
    a picture's samples (:func:`as_pixels`)."""
    if border == "zero":  # the core pads with zeros itself: no padded copy
        x = as_pixels(x)
        return ops.conv2d(x, w, b, stride=stride, padding=padding, engine=engine, origin=origin)
    sh, sw = as_pair(stride, "stride")
    if sh < 1 or sw < 1:
        raise ValueError(f"stride must be at least 1, got {stride!r}")
    top, bottom, left, right = resolve_padding(padding, x.shape[2:], w.shape[2:], (sh, sw))
    if top or bottom or left or right:
        x = _padded(x, (top, bottom), (left, right), vocab.pad_mode(border))
    x = as_pixels(x)  # samples with no border to pad: scaled here (float32 stays as it is)
    return ops.conv2d(x, w, b, stride=(sh, sw), padding=0, engine=engine, origin=origin)


def _padded(x: np.ndarray, rows: tuple[int, int], cols: tuple[int, int], mode: str) -> Any:
    """x (N, C, H, W) padded as ``np.pad``'s ``mode`` pads it, as float (8- and 16-bit
    samples scaled: :func:`as_pixels`). A picture's planes seen through its channels-last
    pixels (N or C is 1) are laid out, scaled and padded by the compiled core in one pass
    where it is built: numpy's transposing copy took twice as long, and a float copy of
    the samples first cost more than the pass. The core gathers by index maps, numpy's
    own padding of the rows' and columns' indices, so the two give the same values."""
    top = vocab.FULL_SCALE.get(x.dtype.name)
    planes = x[0] if x.shape[0] == 1 else x[:, 0] if x.shape[1] == 1 else None
    if planes is not None and (top is not None or x.dtype in (np.float32, np.float64)):
        pixels = planes.transpose(1, 2, 0)
        core = for_samples(x.size) if pixels.flags.c_contiguous else None
        if core is not None:
            down = np.pad(np.arange(x.shape[2], dtype=np.int64), rows, mode=mode)
            across = np.pad(np.arange(x.shape[3], dtype=np.int64), cols, mode=mode)
            kind = x.dtype if top is None else np.float32
            out = np.empty((*x.shape[:2], len(down), len(across)), kind)
            if core.gather_planes(pixels, down, across, out.reshape(-1, *out.shape[2:]), top):
                return out
    if top is not None:  # samples: scaled first, as the core scales them
        x = as_pixels(x)
    return np.pad(x, ((0, 0), (0, 0), rows, cols), mode=mode)


def plan_of(
    kernel: Prepared,
    color: str = "channels",
    channels: int = 1,
    stride: Any = 1,
    engine: Any = None,
) -> Any:
    """The path :func:`correlate` takes for ``kernel`` on a picture of ``channels``
    channels with ``engine`` (None: the JIT) (:func:`convtool.core.plan.plan_filter`'s
    plan; the direct path where the kernel mixes channels: a 4-D kernel, or 'sum' on
    colour)."""
    from convtool.core.engine import or_jit
    from convtool.core.plan import gemm_plan, paths_for, plan_channels, plan_filter

    w, stride = kernel.weights, as_pair(stride, "stride")
    if color == "sum" and channels > 1 and w.ndim == 2:  # as correlate runs it
        w = np.repeat(w[None, None], channels, axis=1)
    if w.ndim == 4 and w.shape[:2] != (1, 1):
        deep = gemm_plan(w.shape, stride, paths_for(or_jit(engine)))  # many channels
        if deep is not None:
            return deep
        return plan_channels(w, np.float32, stride) if w[0, 0].size > 9 else _direct(w)
    return plan_filter(w.reshape(w.shape[-2:]), np.float32, stride)


def _direct(w: np.ndarray) -> Any:
    from convtool.core.plan import direct_plan

    return direct_plan(*w.shape[-2:])


def block_grid(
    kernel: Prepared, color: str = "channels", channels: int = 1, stride: Any = 1
) -> tuple[int, int]:
    """The output blocks (rows, columns) that :func:`plan_of`'s path works in
    (:attr:`convtool.core.plan.Plan.block`): a tile widened to whole blocks, with its
    ``origin``, gives the whole picture's bytes."""
    return plan_of(kernel, color, channels, stride).block


def correlate(
    data: Any,
    kernel: Prepared | Any,
    *,
    color: str = "channels",
    border: str = "zero",
    padding: PaddingSpec = "same",
    stride: int | tuple[int, int] = 1,
    engine: Any = None,
    origin: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """Filter one picture with one kernel; the raw float32 result, nothing clipped.

    Parameters
    ----------
    data : array, (H, W) or (H, W, C)
        The picture (alpha split off beforehand): floats, or 8- or 16-bit samples read
        as [0, 1] (:func:`as_pixels`).
    kernel : Prepared or array
        (kH, kW), or (C_out, C_in, kH, kW) with C_in the picture's channel count;
        a Prepared kernel brings its bias, and its ``parts`` (a gradient magnitude:
        ``sqrt(mean of the parts' results squared)``) or ``chain`` (kernels applied one
        after another, 'same' padding and stride 1 only).
    color : 'channels', 'gray' or 'sum'
        What a 2-D kernel does with colour (see the module docstring); ignored
        for grey pictures and 4-D kernels.
    border : 'zero', 'reflect', 'mirror', 'replicate' or 'wrap'
    padding : 'same', 'valid', int or (int, int)
    stride : int or (int, int)
    engine : convtool.core.engine.Engine, optional
        What runs the convolution, as in :func:`convtool.ops.conv2d` (None: the JIT).
    origin : (int, int)
        Where the result's first pixel lies in the whole picture's result, for a tile
        of it (:func:`block_grid`).

    Returns
    -------
    ndarray, float32
        (H', W') for grey results, (H', W', C) for 'channels' on colour and for
        4-D kernels with C_out > 1 (a transposed view of planar memory).

    Examples
    --------
    >>> x = np.arange(9.0).reshape(3, 3)
    >>> correlate(x, np.ones((3, 3)), border="replicate").tolist()[1]
    [27.0, 36.0, 45.0]
    """
    prepared = kernel if isinstance(kernel, Prepared) else prepare_kernel(kernel)
    vocab.check("border", border, vocab.BORDERS)
    vocab.check("color", color, vocab.COLORS)
    x = _planes(data)
    # the geometry, bound once: every convolution below pads and strides alike
    conv = functools.partial(
        _conv, border=border, padding=padding, stride=stride, engine=engine, origin=origin
    )
    if prepared.chain:
        if padding != "same" or as_pair(stride, "stride") != (1, 1):
            raise ValueError(
                f"kernel {prepared.name} is a list applied one kernel after another: it "
                "needs 'same' padding and stride 1"
            )
        return _chained(x, data, prepared, color, conv)
    if not prepared.parts:
        return _correlate(x, data, prepared, color, conv)
    # a gradient magnitude: each kernel without the bias, then sqrt(mean of squares) + bias
    total = None
    for part in prepared.parts:
        r = _correlate(x, data, Prepared(part, prepared.name, prepared.slug), color, conv)
        total = r * r if total is None else total + r * r
    y = np.sqrt(total * np.float32(1.0 / len(prepared.parts)))
    if prepared.bias is not None:
        y += np.float32(prepared.bias if np.ndim(prepared.bias) == 0 else prepared.bias[0])
    return y


def _chained(x: np.ndarray, data: Any, prepared: Prepared, color: str, conv: Any) -> np.ndarray:
    """A chain: each kernel on the result of the one before, clipped to [0, 1] and rounded
    to 16 bits in between, as ImageMagick's kernel lists on its Q16 pixels (each step
    amplifies what the one before rounded: Kirsch's eight turns, 15x each); the bias at
    every step. ``conv``: :func:`_conv` with the geometry bound."""
    first = Prepared(prepared.weights, prepared.name, prepared.slug, prepared.bias)
    y = _correlate(x, data, first, color, conv)
    for w in prepared.chain:
        # ImageMagick's Q16 pixels between the steps: clipped, and whole 16-bit levels
        y = np.rint(np.clip(y, 0.0, 1.0) * np.float32(65535)) * np.float32(1 / 65535)
        step = Prepared(w, prepared.name, prepared.slug, prepared.bias)
        y = _correlate(_planes(y), y, step, "channels", conv)
    return y


def _correlate(x: np.ndarray, data: Any, prepared: Prepared, color: str, conv: Any) -> np.ndarray:
    """:func:`correlate` for one kernel, the picture already as planes ``x``; ``conv``:
    :func:`_conv` with the geometry bound."""
    w, bias = prepared.weights, prepared.bias
    channels = x.shape[0]
    if prepared.full:
        if w.shape[1] != channels:
            raise ValueError(
                f"kernel {prepared.name} takes {w.shape[1]} input channel(s), shape "
                f"{tuple(w.shape)}, but the picture has {channels}"
            )
        y = conv(x[None], w, bias)[0]
    elif channels == 1 or color == "gray":
        plane = x if channels == 1 else to_gray(as_pixels(data))[None]
        y = conv(plane[None], w[None, None], bias)[0]
    elif color == "sum":
        y = conv(x[None], np.repeat(w[None, None], channels, axis=1), bias)[0]
    else:  # each channel as its own picture, one kernel for all
        y = conv(x[:, None], w[None, None], bias)[:, 0]
    if y.shape[0] == 1:
        return y[0]
    return y.transpose(1, 2, 0)  # a view: the planes stay planes in memory


def resample_alpha(
    alpha: Any,
    kernel_size: tuple[int, int],
    *,
    padding: PaddingSpec = "same",
    stride: int | tuple[int, int] = 1,
) -> np.ndarray:
    """Alpha on the output's grid: output pixel (i, j) takes the alpha at its kernel's anchor.

    The anchor of output row i is input row ``i*S - P_top + (kH - 1)//2``, the
    centre of its window (row i itself for 'same' padding and stride 1), clamped
    to the picture; likewise for columns. With 'same' padding and stride 1 alpha
    is returned unchanged.
    """
    a = np.asarray(alpha, dtype=np.float32)
    sh, sw = as_pair(stride, "stride")
    kh, kw = kernel_size
    top, bottom, left, right = resolve_padding(padding, a.shape, (kh, kw), (sh, sw))
    h_out = (a.shape[0] + top + bottom - kh) // sh + 1
    w_out = (a.shape[1] + left + right - kw) // sw + 1
    rows = np.clip(np.arange(h_out) * sh - top + (kh - 1) // 2, 0, a.shape[0] - 1)
    cols = np.clip(np.arange(w_out) * sw - left + (kw - 1) // 2, 0, a.shape[1] - 1)
    same_rows = (h_out, w_out) == a.shape and (rows == np.arange(h_out)).all()
    if same_rows and (cols == np.arange(w_out)).all():
        return a
    return np.ascontiguousarray(a[np.ix_(rows, cols)])


def combine(results: list[np.ndarray], how: str) -> np.ndarray:
    """One picture from several results of the same shape.

    'magnitude' is sqrt(sum of squares) (the gradient magnitude of sobel_x and
    sobel_y), 'max' the largest value, 'sum' the sum, elementwise.
    """
    vocab.check("combine", how, vocab.COMBINES)
    shapes = {r.shape for r in results}
    if len(shapes) != 1:
        sizes = ", ".join("x".join(map(str, s)) for s in sorted(shapes))
        template = "kernels give results of different shapes ({sizes}); combining needs one "
        template += "shape: use {padding}"
        raise naming(ValueError(), template, sizes=sizes, padding=Param("padding", "same"))
    stack = [np.asarray(r, dtype=np.float32) for r in results]
    if how == "magnitude":
        total = np.zeros_like(stack[0])
        for r in stack:
            total += r * r
        return np.sqrt(total)
    if how == "max":
        return np.maximum.reduce(stack)
    return np.add.reduce(stack)
