"""What every part of :mod:`convtool.kernels` shares: the limits, the error, the parsed
spec, and the checks every kernel passes before it is returned."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

MAX_SIDE = 1024  # rows or columns
MAX_WEIGHTS = 1024 * 1024  # all weights, every channel
MAX_FILE_BYTES = 64 * 1024 * 1024


class KernelSpecError(ValueError):
    """A kernel spec that cannot be understood; the message names the problem."""


@dataclass(frozen=True, eq=False)
class KernelSpec:
    """A parsed kernel spec.

    Attributes
    ----------
    weights : ndarray of float64
        (kH, kW), or (C_out, C_in, kH, kW) from a 4-D ``.npy``/``.json`` file.
    name : str
        Display name: the canonical name with its parameters and rotation
        (``gaussian:7,1.5``, ``sobel_x@90``), ``custom`` for inline kernels, or
        the file's name without its suffix.
    bias : float, tuple of float, or None
        A bias from a JSON file: one float for every output channel, or (4-D
        kernels only) one value per output channel. None when not given.
    base : str or None
        The canonical bank name for named kernels, otherwise None.
    parts : tuple of ndarray
        For a gradient magnitude (``sobel``): its kernels, each (kH, kW); the result is
        ``sqrt(mean of their results squared)``. ``weights`` is then the first.
        Empty for every other kernel.
    chain : tuple of ndarray
        The kernels that follow ``weights``, each applied to the result of the one
        before, clipped to [0, 1] in between (ImageMagick's kernel lists, ``im:Sobel>``).
        Empty for every other kernel.
    """

    weights: np.ndarray
    name: str
    bias: float | tuple[float, ...] | None = None
    base: str | None = None
    parts: tuple[np.ndarray, ...] = ()
    chain: tuple[np.ndarray, ...] = ()

    @property
    def slug(self) -> str:
        """The name made safe for file names: ``gaussian:7,1.5@90`` -> ``gaussian_7_1.5_r90``."""
        text = re.sub(r"[^A-Za-z0-9.\-]+", "_", self.name.replace("@", "_r"))
        return text.strip("_.") or "kernel"


def check_size(shape: tuple[int, ...], what: str = "kernel") -> None:
    if any(n < 1 for n in shape):
        raise KernelSpecError(f"{what} is empty (shape {tuple(shape)})")
    if shape[-2] > MAX_SIDE or shape[-1] > MAX_SIDE:
        raise KernelSpecError(
            f"{what} is {shape[-2]}x{shape[-1]}; at most {MAX_SIDE} rows and columns are allowed"
        )
    if math.prod(shape) > MAX_WEIGHTS:
        raise KernelSpecError(
            f"{what} has {math.prod(shape)} weights; at most {MAX_WEIGHTS} are allowed"
        )


def parse_number(token: str, where: str) -> float:
    try:
        value = float(token)
    except (ValueError, OverflowError):
        raise KernelSpecError(f"{where}: {token!r} is not a number") from None
    if not math.isfinite(value):
        raise KernelSpecError(f"{where}: {token!r} is not finite (NaN and infinity are refused)")
    return value


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def check_finite(w: np.ndarray, what: str) -> None:
    bad = np.argwhere(~np.isfinite(w))
    if bad.size:
        index = tuple(int(i) for i in bad[0])
        raise KernelSpecError(
            f"{what} contains {w[index]} at index {index}; weights must be finite"
        )
