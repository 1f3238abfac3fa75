"""Two decoded pictures made into what :func:`~convtool.fit.fit_kernel` takes.

Pictures arrive as the readers give them, (H, W) or (H, W, C) with 8- and 16-bit values in
[0, 1]; a fit wants (H, W) or (C, H, W), one colour model for both, and to know which target
values were clipped by whoever saved them and how finely they were rounded.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from convtool import vocab
from convtool._shared import Param, naming
from convtool.filtering import to_gray
from convtool.fit import lossy
from convtool.fit.lossy import Lossy
from convtool.fit.prep import FitError, ShapeError, dims
from convtool.fit.result import FitResult


class FitPair(NamedTuple):
    """The input and target of a fit, with what the target's storage implies."""

    x: np.ndarray  # (H, W) or (C, H, W)
    y: np.ndarray
    clip: tuple[float, float] | None  # target values at or beyond these are left out
    quantum: float | None  # the target's rounding step; None for float targets
    notes: list[str]
    color: str | None = None  # how a colour input was made one with the target
    # a colour input against a grey target, colour not given: the channels' sum, which
    # fits instead of the luma if the target was made with ``apply --color sum``
    summed: np.ndarray | None = None
    lossy: Lossy | None = None  # how a lossy target was compressed
    # a lossy colour pair: the channels as the target's maker filtered them, and the
    # target's, which tell where it clipped (see convtool.fit.lossy)
    channels: tuple[np.ndarray, np.ndarray] | None = None


def prepare_pair(
    source: np.ndarray,
    target: np.ndarray,
    *,
    target_bit_depth: int,
    color: str | None = None,
    grey: bool = False,
    keep_clipped: bool = False,
    names: tuple[str, str] = ("the input", "the target"),
    lossy: Lossy | None = None,
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
    color : {'channels', 'gray', 'sum'}, optional
        What ``convtool apply --color`` did to the colour input: filtered each channel
        (a colour target), its luma, or the channels' sum (a grey target). None: colour
        targets are 'channels'; a grey target of a colour input is 'gray', with the sum
        given too (:attr:`FitPair.summed`) for the caller to try.
    grey : bool
        ``color='gray'``: fit on grey (luma) versions of both.
    names : (str, str)
        The two pictures' names, for messages.
    lossy : Lossy, optional
        How the target was compressed (:func:`convtool.fit.lossy.inspect_file`): a
        colour pair whose chroma was subsampled is fitted on the luma unless ``color``
        says otherwise, and :func:`fit_pair` censors clipped pixels.

    Raises
    ------
    FitError
        A picture holds NaN or infinite values.
    ShapeError
        The target is larger than the input, or its colour does not go with ``color``.
    """
    x, y = source, target
    input_name, target_name = names
    color = "gray" if grey else color
    if color is not None and color not in vocab.COLORS:
        raise FitError(f"color must be one of {', '.join(vocab.COLORS)}; got {color!r}")
    for name, picture in ((input_name, x), (target_name, y)):
        if not np.isfinite(picture).all():
            bad = int(picture.size - np.count_nonzero(np.isfinite(picture)))
            raise FitError(
                f"{name} holds {bad:,} NaN or infinite value(s); the fit needs finite pixels"
            )
    _check_sizes(x.shape, y.shape, input_name, target_name)
    if y.ndim == 3 and np.array_equal(y, y[:, :, :1].repeat(y.shape[2], axis=2)):
        y = y[:, :, 0]  # a grey picture stored as colour
    _check_color(x, y, color, input_name, target_name)
    notes, summed, channels = [], None, None
    if lossy is not None:
        notes.append(f"{target_name} is {lossy.describe()}: its clipped pixels are censored")
        if x.ndim == 3 and y.ndim == 3:
            channels = (
                _channels_first(x).astype(np.float64),
                _channels_first(y).astype(np.float64),
            )
            if color is None and lossy.subsampled:
                color = "gray"
                notes.append("fitting on the luma, which the file keeps at full resolution")
    # a grey input: apply's colour modes do not apply
    used = None if x.ndim == 2 else color or ("channels" if y.ndim == 3 else "gray")
    clip = None if target_bit_depth == 32 or keep_clipped else (0.0, 1.0)
    if x.ndim == 3 and y.ndim == 2:
        if color is None:
            notes.append(f"{target_name} is grey: fitting on a grey (luma) version of {input_name}")
            summed = _channels_sum(x)
        x = _channels_sum(x) if color == "sum" else to_gray(x)
    elif y.ndim == 3 and color == "gray":
        clipped = ((y <= 0) | (y >= 1)).any(axis=2) if clip is not None else None
        x, y = to_gray(x), to_gray(y)
        if clipped is not None:
            y[clipped] = 0.0  # clipped in any channel: left out, as the fit leaves out 0
    quantum = None if target_bit_depth == 32 else 1 / (2**target_bit_depth - 1)
    return FitPair(
        _channels_first(x), _channels_first(y), clip, quantum, notes, used,
        None if summed is None else _channels_first(summed), lossy, channels,
    )  # fmt: skip


def fit_pair(pair: FitPair, **options: Any) -> tuple[FitResult, FitPair]:
    """:func:`~convtool.fit.fit_kernel` on a prepared pair; the result and the pair fitted.

    A colour input against a grey target with no colour mode given is fitted both ways,
    luma and channels' sum (``apply --color sum``); the sum is kept only when it fits
    clearly better (half the loss), with a note. A lossy target's clipped pixels are
    censored (:mod:`convtool.fit.lossy`): left out where the target sits near 0 or 1,
    then, fit after fit, where the kernel predicts a channel beyond them.
    """
    options = {"clip": pair.clip, "quantum": pair.quantum, **options}
    if pair.lossy is not None:
        options["exclude"] = lossy.censored(None, _target_planes(pair), None, None, "")
        options["lossy"] = True
    result, pair = _fit_colour(pair, options)
    if pair.lossy is not None:
        result = _fit_censored(pair, result, options)
    return result, pair


def _target_planes(pair: FitPair) -> np.ndarray:
    return pair.channels[1] if pair.channels is not None else pair.y.reshape(-1, *pair.y.shape[-2:])


def _fit_censored(pair: FitPair, result: FitResult, options: dict) -> FitResult:
    """Refit with the censoring each kernel predicts, until it no longer changes."""
    from convtool.fit.kernel_fit import fit_kernel
    from convtool.fit.prep import geometry

    planes = _input_planes(pair)
    border = options.get("border", "interior")
    options = {
        **options,
        "size": result.size,
        "stride": result.stride,
    }
    last = options["exclude"]
    for _ in range(lossy.CENSOR_ROUNDS):
        geo = geometry(pair.x.shape, pair.y.shape, result.size, result.stride)
        exclude = lossy.censored(planes, _target_planes(pair), result.kernel, geo, border)
        if np.array_equal(exclude, last):
            break
        result, last = fit_kernel(pair.x, pair.y, **{**options, "exclude": exclude}), exclude
    pair.notes.append(lossy.cost_note(pair.lossy, int(last.sum()), last.size))
    return result


def censored_pixels(pair: FitPair, result: FitResult, border: str = "interior"):
    """The target pixels a lossy pair's fit censored with its final kernel (None if not lossy)."""
    if pair.lossy is None:
        return None
    from convtool.fit.prep import geometry

    geo = geometry(pair.x.shape, pair.y.shape, result.size, result.stride)
    return lossy.censored(_input_planes(pair), _target_planes(pair), result.kernel, geo, border)


def _input_planes(pair: FitPair) -> np.ndarray:
    return pair.channels[0] if pair.channels is not None else pair.x.reshape(-1, *pair.x.shape[-2:])


def _fit_colour(pair: FitPair, options: dict) -> tuple[FitResult, FitPair]:
    """The fit, trying the channels' sum too where the colour mode was not given."""
    from convtool.fit.kernel_fit import fit_kernel
    from convtool.fit.prep import FitError

    result = fit_kernel(pair.x, pair.y, **options)
    if pair.summed is None:
        return result, pair
    trial = {**options, "method": "lstsq", "callback": None}
    try:  # the direct solve alone tells which fits (gd's step would not suit both)
        summed = fit_kernel(pair.summed, pair.y, **trial)
    except FitError:
        summed = None
    if summed is None or summed.loss_min >= 0.5 * result.loss_min:
        notes = [*pair.notes[:-1], pair.notes[-1] + " (it fits better than the channels' sum)"]
        return result, pair._replace(notes=notes, summed=None)
    note = (
        f"the target is the input's channels summed, as apply --color sum makes it (loss "
        f"{summed.loss_min:.3g}, against {result.loss_min:.3g} for the luma)"
    )
    if options.get("method", "cg") != "lstsq":
        summed = fit_kernel(pair.summed, pair.y, **options)
    return summed, pair._replace(
        x=pair.summed, notes=[*pair.notes[:-1], note], color="sum", summed=None
    )


def _channels_sum(x: np.ndarray) -> np.ndarray:
    """The first three channels' sum, as ``apply --color sum`` filters it (float64)."""
    return x[:, :, :3].astype(np.float64).sum(axis=2)


def _check_color(x, y, color, input_name: str, target_name: str) -> None:
    """Refuse a colour mode that could not have made this target from this input."""
    if y.ndim == 3 and x.ndim == 2 and color != "gray":
        template = "{target} is in colour but {input} is grey; give {grey} to fit on grey "
        template += "versions of both"
        raise naming(
            ShapeError(), template, target=target_name, input=input_name,
            grey=Param("color", "gray"),
        )  # fmt: skip
    if x.ndim == 3 and y.ndim == 2 and color == "channels":
        raise naming(
            ShapeError(),
            "{target} is grey, but color 'channels' filters each channel of {input} into a "
            "colour picture; give {gray} or {sum}",
            target=target_name, input=input_name, gray=Param("color", "gray"),
            sum=Param("color", "sum"),
        )  # fmt: skip
    if x.ndim == 3 and y.ndim == 3 and color == "sum":
        raise naming(
            ShapeError(),
            "{target} is in colour, but color 'sum' makes one grey picture of {input}'s "
            "channels; give {channels} or {gray}",
            target=target_name, input=input_name, channels=Param("color", "channels"),
            gray=Param("color", "gray"),
        )  # fmt: skip


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
