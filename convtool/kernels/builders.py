"""Kernels made from parameters: gaussian, box, unsharp, motion; rotation and normalising.

A parameter out of range raises :class:`~convtool.kernels.KernelSpecError` naming it.
"""

from __future__ import annotations

import math

import numpy as np

from convtool.kernels.base import MAX_SIDE, KernelSpecError, check_size
from convtool.kernels.display import format_number


def normalize_kernel(w: np.ndarray) -> np.ndarray:
    """Divide a kernel by its sum, so that it keeps the mean brightness.

    A 4-D (C_out, C_in, kH, kW) kernel is normalised per output channel. Kernels
    whose sum is zero (relative to the sum of absolute weights, within 1e-12),
    such as edge detectors, are returned unchanged: there is nothing to divide
    by. Always returns a new float64 array.
    """
    w = np.array(w, dtype=np.float64)
    if w.ndim == 4:
        for o in range(w.shape[0]):
            w[o] = normalize_kernel(w[o])
        return w
    total = w.sum()
    if abs(total) > 1e-12 * np.abs(w).sum():
        w /= total
    return w


# ----------------------------------------------------------------------------- builders


def _odd_size(value: float, what: str) -> int:
    if not (value.is_integer() and value >= 1 and value % 2 == 1):
        raise KernelSpecError(f"{what} must be a positive odd integer, got {format_number(value)}")
    if value > MAX_SIDE:
        raise KernelSpecError(f"{what} is {format_number(value)}; at most {MAX_SIDE} is allowed")
    return int(value)


def _default_sigma(size: int) -> float:
    return 0.3 * ((size - 1) * 0.5 - 1) + 0.8


def gaussian_kernel(size: int = 3, sigma: float | None = None) -> np.ndarray:
    """A size x size Gaussian that sums to 1.

    ``size`` must be a positive odd integer (as OpenCV requires; an even kernel
    has no centre). ``sigma`` defaults to ``0.3*((size-1)*0.5-1)+0.8``, OpenCV's
    getGaussianKernel rule (when OpenCV picks sigma itself it uses fixed tables
    for small sizes, up to 7 in 4.x and 9 in 5.0; this function always uses the
    formula).
    """
    size = _odd_size(float(size), "gaussian size")
    if sigma is None:
        sigma = _default_sigma(size)
    if not (math.isfinite(sigma) and sigma > 0):
        raise KernelSpecError(f"gaussian sigma must be > 0, got {format_number(sigma)}")
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    with np.errstate(over="ignore"):  # a tiny sigma overflows x / sigma: exp(-inf) is 0
        g = np.exp(-0.5 * (x / sigma) ** 2)  # (no 0/0 for a tiny sigma)
    g /= g.sum()
    k = np.outer(g, g)
    return k / k.sum()


def box_kernel(width: int = 3, height: int | None = None) -> np.ndarray:
    """A mean filter of ``height`` rows and ``width`` columns, every weight 1/(width*height)."""
    height = width if height is None else height
    for value, what in ((width, "width"), (height, "height")):
        value = float(value)
        if not (value.is_integer() and value >= 1):
            raise KernelSpecError(
                f"box {what} must be a positive integer, got {format_number(value)}"
            )
        if value > MAX_SIDE:
            raise KernelSpecError(
                f"box {what} is {format_number(value)}; at most {MAX_SIDE} is allowed"
            )
    h, w = int(height), int(width)
    check_size((h, w), "box kernel")
    return np.full((h, w), 1.0 / (h * w))


def unsharp_kernel(size: int = 3, sigma: float | None = None, amount: float = 1.0) -> np.ndarray:
    """Unsharp masking as one kernel: ``identity + amount * (identity - gaussian)``; sums to 1."""
    if not math.isfinite(amount):
        raise KernelSpecError(f"unsharp amount must be finite, got {amount}")
    g = gaussian_kernel(size, sigma)
    identity = np.zeros_like(g)
    identity[g.shape[0] // 2, g.shape[1] // 2] = 1.0
    return identity + amount * (identity - g)


def motion_kernel(length: float = 5, angle: float = 0.0) -> np.ndarray:
    """A straight motion blur: a line ``length`` pixels long through the centre, summing to 1.

    ``angle`` is in degrees, clockwise from pointing right as displayed (rows
    downward), the same sense as the ``@ANGLE`` rotation: ``motion:9,90`` is a
    vertical 9x1 line, ``motion:9,45`` runs from top-left to bottom-right.
    Each cell's weight is the length of the (zero-width) segment that crosses
    the cell, an exact area-sampled rasterisation: an axis-aligned line of odd
    length gives exactly 1/length per cell, other angles are anti-aliased along
    the line. The kernel is the smallest odd-sized box that holds the segment,
    centred on it (``motion:9`` is 1x9, not 9x9).
    """
    length, angle = float(length), float(angle)
    if not (math.isfinite(length) and length >= 1):
        raise KernelSpecError(f"motion length must be at least 1, got {format_number(length)}")
    if not math.isfinite(angle):
        raise KernelSpecError(f"motion angle must be finite, got {angle}")
    if length > MAX_SIDE:
        raise KernelSpecError(
            f"motion length is {format_number(length)}; at most {MAX_SIDE} is allowed"
        )
    angle %= 180.0  # the segment is the same turned half a turn
    if angle in (0.0, 90.0):  # exact directions for the axes
        dx, dy = (1.0, 0.0) if angle == 0.0 else (0.0, 1.0)
    else:
        dx, dy = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    half = length / 2.0
    rx = math.ceil(round(half * abs(dx) - 0.5, 9))  # cells each side of the centre
    ry = math.ceil(round(half * abs(dy) - 0.5, 9))
    check_size((2 * ry + 1, 2 * rx + 1), "motion kernel")
    # Liang-Barsky: clip the segment p(t) = -half*d + t*length*d, t in [0, 1], to every cell
    cx = np.arange(-rx, rx + 1, dtype=np.float64)[None, :]
    cy = np.arange(-ry, ry + 1, dtype=np.float64)[:, None]
    t0 = np.zeros((2 * ry + 1, 2 * rx + 1))
    t1 = np.ones_like(t0)
    for centre, d in ((cx, dx), (cy, dy)):
        if abs(d) < 1e-15:  # the segment runs along x = 0 (or y = 0): only the middle column
            inside = np.abs(centre) < 0.5
            t1 = np.where(inside, t1, 0.0)
            continue
        a = (centre - 0.5 + half * d) / (length * d)
        b = (centre + 0.5 + half * d) / (length * d)
        t0 = np.maximum(t0, np.minimum(a, b))
        t1 = np.minimum(t1, np.maximum(a, b))
    k = np.round((t1 - t0) * length, 12)  # the segment's length in each cell, in pixels
    k[k < 1e-9] = 0.0  # cells the line only touches at a corner
    k = (k + k[::-1, ::-1]) / 2  # exactly centred
    return k / k.sum()


def rotate_kernel(w: np.ndarray, angle: float) -> np.ndarray:
    """Turn a 2-D kernel clockwise (as displayed) by ``angle`` degrees, as ImageMagick does.

    Multiples of 90 work for any kernel and are exact (``np.rot90``). Odd
    multiples of 45 work for 3x3 kernels only: the eight outer cells move one
    place clockwise per 45 degrees and the centre stays.
    """
    w = np.asarray(w, dtype=np.float64)
    angle = float(angle)
    if not math.isfinite(angle) or angle % 45 != 0:
        raise KernelSpecError(
            f"rotation must be a multiple of 45 degrees, got {format_number(angle)}"
        )
    steps = int(angle // 45) % 8
    if steps % 2 == 0:
        return np.ascontiguousarray(np.rot90(w, -(steps // 2)))
    if w.shape != (3, 3):
        raise KernelSpecError(
            f"rotation by {format_number(angle)} degrees needs a 3x3 kernel, got "
            f"{w.shape[0]}x{w.shape[1]}; use a multiple of 90"
        )
    ring = [(0, 0), (0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (1, 0)]  # clockwise
    out = w.copy()
    for i, (r, c) in enumerate(ring):
        out[ring[(i + steps) % 8]] = w[r, c]
    return out


def dilate_kernel(w: np.ndarray, dilation: tuple[int, int]) -> np.ndarray:
    """A kernel spread out by ``dilation`` = (dh, dw): its taps ``dh`` rows and ``dw``
    columns apart, zeros between, spanning ``d * (k - 1) + 1``: a dilated convolution
    as an ordinary one (torch's ``dilation``; exact for finite inputs). The last two
    axes are the kernel's, so a (C_out, C_in, kH, kW) kernel spreads alike.

    >>> dilate_kernel(np.array([[1.0, 2.0]]), (1, 3))
    array([[1., 0., 0., 2.]])
    """
    w = np.asarray(w)
    dh, dw = dilation
    kh, kw = w.shape[-2:]
    size = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    check_size((*w.shape[:-2], *size), "dilated kernel")  # before anything that size is made
    spread = np.zeros((*w.shape[:-2], *size), w.dtype)
    spread[..., ::dh, ::dw] = w
    return spread
