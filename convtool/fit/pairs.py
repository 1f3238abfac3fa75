"""Two decoded pictures made into what :func:`~convtool.fit.fit_kernel` takes.

Pictures arrive as the readers give them, (H, W) or (H, W, C) with 8- and 16-bit values in
[0, 1]; a fit wants (H, W) or (C, H, W), one colour model for both, and to know which target
values were clipped by whoever saved them and how finely they were rounded.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from convtool._shared import Param, naming
from convtool.filtering import to_gray
from convtool.fit.prep import FitError, ShapeError, dims


class FitPair(NamedTuple):
    """The input and target of a fit, with what the target's storage implies."""

    x: np.ndarray  # (H, W) or (C, H, W)
    y: np.ndarray
    clip: tuple[float, float] | None  # target values at or beyond these are left out
    quantum: float | None  # the target's rounding step; None for float targets
    notes: list[str]


def prepare_pair(
    source: np.ndarray,
    target: np.ndarray,
    *,
    target_bit_depth: int,
    grey: bool = False,
    keep_clipped: bool = False,
    names: tuple[str, str] = ("the input", "the target"),
) -> FitPair:
    """Check two decoded pictures and turn them into a fit's input and target.

    Parameters
    ----------
    source, target : ndarray, (H, W) or (H, W, C)
        The pictures as read, channels last.
    target_bit_depth : int
        8 or 16: the target's values were rounded to that many bits and clipped to
        [0, 1], so pixels at 0 or 1 are left out (unless ``keep_clipped``); 32: a float
        picture, taken as exact.
    grey : bool
        Fit on grey (luma) versions of both. Without it a grey target makes a colour
        input grey (with a note), and a colour target of a grey input is refused.
    names : (str, str)
        The two pictures' names, for messages.

    Raises
    ------
    FitError
        A picture holds NaN or infinite values.
    ShapeError
        The target is larger than the input, or in colour while the input is grey.
    """
    x, y = source, target
    input_name, target_name = names
    for name, picture in ((input_name, x), (target_name, y)):
        if not np.isfinite(picture).all():
            bad = int(picture.size - np.count_nonzero(np.isfinite(picture)))
            raise FitError(
                f"{name} holds {bad:,} NaN or infinite value(s); the fit needs finite pixels"
            )
    _check_sizes(x.shape, y.shape, input_name, target_name)
    notes = []
    if y.ndim == 3 and x.ndim == 2 and not grey:
        if not np.array_equal(y, y[:, :, :1].repeat(y.shape[2], axis=2)):
            template = "{target} is in colour but {input} is grey; give {grey} to fit on grey "
            template += "versions of both"
            raise naming(
                ShapeError(), template, target=target_name, input=input_name, grey=Param("grey")
            )
        y = y[:, :, 0]
    if x.ndim == 3 and (grey or y.ndim == 2):
        if not grey:
            notes.append(f"{target_name} is grey: fitting on a grey (luma) version of {input_name}")
        x = to_gray(x)
    clip = None if target_bit_depth == 32 or keep_clipped else (0.0, 1.0)
    if grey and y.ndim == 3:
        clipped = ((y <= 0) | (y >= 1)).any(axis=2) if clip is not None else None
        y = to_gray(y)
        if clipped is not None:
            y[clipped] = 0.0  # clipped in any channel: left out, as the fit leaves out 0
    quantum = None if target_bit_depth == 32 else 1 / (2**target_bit_depth - 1)
    return FitPair(_channels_first(x), _channels_first(y), clip, quantum, notes)


def _check_sizes(xs: tuple[int, ...], ys: tuple[int, ...], input_name: str, target_name: str):
    """A filtered picture is never larger than the picture filtered."""
    if ys[0] > xs[0] or ys[1] > xs[1]:
        swapped = ys[0] >= xs[0] and ys[1] >= xs[1]  # would fit the other way
        side = "" if swapped else (" taller" if ys[0] > xs[0] else " wider")
        raise ShapeError(
            f"{target_name} ({dims(ys[:2])}) is{side or ' larger'} than {input_name} "
            f"({dims(xs[:2])}), but filtering never makes a picture larger"
            + ("; are the two swapped?" if swapped else "")
        )


def _channels_first(a: np.ndarray) -> np.ndarray:
    return np.moveaxis(a, -1, 0) if a.ndim == 3 else a
