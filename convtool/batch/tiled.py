"""Filtering pictures larger than memory: tile by tile, TIFF in and tiled TIFF out.

:func:`run_task` stands in for :func:`convtool.jobs.run_task`. A TIFF picture
written to a TIFF file is filtered in square output tiles when ``tile`` says so,
or, by default, when the picture is too big to filter whole (see
:func:`should_tile`); everything else goes to the whole-picture path unchanged.

Each output tile reads only the input pixels its windows cover: the tile's own
rows and columns plus the kernel's reach around them (``K // 2`` for 'same'
padding; for even kernels one more after than before, as apply anchors them).
The border mode applies at the picture's true edges only: inside the picture
the reach takes real neighbouring pixels, and at an edge the same outside
pixels the whole-picture path pads with (the zero border is left to the core,
which skips it exactly as it does for the whole picture). Tiles are filtered,
mapped and quantised as the whole picture would be, and streamed into a tiled
(Big)TIFF written atomically, so the result is bit for bit the whole-picture
result, and the memory used is a few tiles, whatever the picture's size.

``--map normalize`` needs the result's range before the first tile is written:
the picture is then filtered twice, once for the range and once to write.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from convtool.filtering import BORDERS, CLIP_TOLERANCE, Prepared, combine, correlate
from convtool.imaging.tiff import TiffSource, Unsupported, is_tiff
from convtool.shapes import PaddingSpec, resolve_padding

__all__ = [
    "MEMORY_SHARE",
    "TILE",
    "TileError",
    "auto_tile",
    "check_tile",
    "reach",
    "run_task",
    "should_tile",
]

TILE = 1024  # output tile side by default: past ~512 the per-tile costs no longer show
MEMORY_SHARE = 16  # whole pictures whose float32 copy takes over 1/16 of memory are tiled
_TIFF_TILE_STEP = 16  # TIFF tiles are multiples of 16 pixels a side


class TileError(ValueError):
    """A tile size that cannot be used: not a multiple of 16, or below the kernel's reach."""


def reach(kernels: tuple[Prepared, ...] | list[Prepared], padding: PaddingSpec = "same") -> int:
    """How far the kernels see from their anchor: half the largest side, or a larger padding."""
    far = max(max(k.size) // 2 for k in kernels)
    if not isinstance(padding, str):
        far = max(far, *np.atleast_1d(padding).tolist())
    return int(far)


def check_tile(
    tile: int, kernels: tuple[Prepared, ...] | list[Prepared], padding: PaddingSpec = "same"
) -> None:
    """Refuse a tile side that TIFF cannot take or that is smaller than the kernels' reach."""
    if tile < _TIFF_TILE_STEP or tile % _TIFF_TILE_STEP:
        raise TileError(f"a tile side must be a multiple of 16 (TIFF tiles are), not {tile}")
    far = reach(kernels, padding)
    if tile < far:
        step = _TIFF_TILE_STEP
        bigger = -(-far // step) * step
        widest = max(kernels, key=lambda k: max(k.size))
        raise TileError(
            f"tiles of {tile} pixels are smaller than the reach of kernel {widest.name} "
            f"({far} pixels around each one: its halo); use {bigger} or more"
        )


def auto_tile(kernels: tuple[Prepared, ...] | list[Prepared], padding: PaddingSpec = "same") -> int:
    """The tile side used when none is given: TILE, or the kernels' reach if that is larger."""
    far = reach(kernels, padding)
    return max(TILE, -(-far // _TIFF_TILE_STEP) * _TIFF_TILE_STEP)


def _memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def should_tile(height: int, width: int, samples: int = 1) -> bool:
    """Whether a picture is filtered in tiles by default.

    It is when it has more pixels than Pillow's limit (about 89 million: the
    whole-picture path's default ``--max-pixels``), or when one float32 copy
    of it would take more than 1/MEMORY_SHARE of the machine's memory.
    """
    from convtool.imaging import default_max_pixels

    limit = default_max_pixels()
    pixels = height * width
    return (limit is not None and pixels > limit) or pixels * samples * 4 > (
        _memory() // MEMORY_SHARE
    )


# ----------------------------------------------------------------- geometry


@dataclass(frozen=True)
class _Axis:
    """One kernel along one axis of the picture: where each output's window lies."""

    n: int  # picture size
    k: int  # kernel size
    s: int  # stride
    before: int  # padding before and after, as the whole picture gets it
    after: int
    border: str

    @property
    def outputs(self) -> int:
        return (self.n + self.before + self.after - self.k) // self.s + 1

    def span(self, start: int, stop: int) -> tuple[np.ndarray, int, int]:
        """Picture indices under the windows of outputs start:stop, and the zero padding
        (before, after) the core is to add around them (zero border only)."""
        first, last = start * self.s, (stop - 1) * self.s + self.k  # padded coordinates
        if BORDERS[self.border] is None:
            lo, hi = first - self.before, last - self.before
            index = np.arange(max(lo, 0), min(hi, self.n))
            return index, max(0, -lo), max(0, hi - self.n)
        # the other borders: the whole picture is np.pad-ded; take its index map
        base = np.arange(self.n)
        padded = np.pad(base, (self.before, self.after), mode=BORDERS[self.border])
        return padded[first:last], 0, 0

    def anchors(self, start: int, stop: int) -> np.ndarray:
        """The picture index whose alpha each output takes (as filters.resample_alpha)."""
        at = np.arange(start, stop) * self.s - self.before + (self.k - 1) // 2
        return np.clip(at, 0, self.n - 1)


def _axes(kernel: Prepared, size: tuple[int, int], options: Any) -> tuple[_Axis, _Axis]:
    kh, kw = kernel.size
    sh, sw = options.stride
    top, bottom, left, right = resolve_padding(options.padding, size, (kh, kw), (sh, sw))
    rows = _Axis(size[0], kh, sh, top, bottom, options.border)
    cols = _Axis(size[1], kw, sw, left, right, options.border)
    return rows, cols


def _core_padding(lo: int, hi: int, stride: int) -> tuple[int, int]:
    """Symmetric padding P >= lo, hi for the core, and the first output to keep.

    The core pads alike on both sides; outputs that start earlier than the wanted
    ones (P - lo rows of padding earlier) are cut off, so P - lo must be a whole
    number of strides.
    """
    if hi <= lo:
        return lo, 0
    extra = -(-(hi - lo) // stride) * stride
    return lo + extra, extra // stride


# ----------------------------------------------------------------- filtering


def _filtered(
    source: TiffSource,
    kernel: Prepared,
    axes: tuple[_Axis, _Axis],
    box: tuple[int, int, int, int],
    options: Any,
    engine: Any,
) -> np.ndarray:
    """One kernel's raw result on output rows o0:o1, columns p0:p1."""
    o0, o1, p0, p1 = box
    rows, cols = axes
    ridx, rlo, rhi = rows.span(o0, o1)
    cidx, clo, chi = cols.span(p0, p1)
    data, _ = source.region(ridx, cidx)
    if BORDERS[options.border] is not None:  # the border's pixels are in the region
        return correlate(
            data, kernel, color=options.color, padding=0, stride=options.stride, engine=engine
        )
    ph, first_row = _core_padding(rlo, rhi, rows.s)
    pw, first_col = _core_padding(clo, chi, cols.s)
    y = correlate(
        data, kernel, color=options.color, padding=(ph, pw), stride=options.stride, engine=engine
    )
    return y[first_row : first_row + o1 - o0, first_col : first_col + p1 - p0]


def _boxes(height: int, width: int, tile: int) -> Iterator[tuple[int, int, int, int]]:
    """Output tiles in TIFF order (row by row), as (o0, o1, p0, p1)."""
    for o0 in range(0, height, tile):
        for p0 in range(0, width, tile):
            yield o0, min(o0 + tile, height), p0, min(p0 + tile, width)


class _Range:
    """The finite min and max over tiles, as filters.stats gives them for the whole."""

    def __init__(self) -> None:
        self.lo, self.hi, self.seen = np.inf, -np.inf, False
        self.nonfinite = 0  # values that are NaN or infinite

    def add(self, y: np.ndarray) -> None:
        finite = np.isfinite(y)
        self.nonfinite += int(y.size - np.count_nonzero(finite))
        if finite.all():
            lo, hi = float(y.min()), float(y.max())
        elif finite.any():
            lo, hi = float(y[finite].min()), float(y[finite].max())
        else:
            return
        self.seen = True
        self.lo, self.hi = min(self.lo, lo), max(self.hi, hi)

    @property
    def bounds(self) -> tuple[float, float]:
        return (self.lo, self.hi) if self.seen else (float("nan"), float("nan"))


def _inside(y: np.ndarray) -> int:
    """Pixels with every channel within [0, 1] (as filters.clipped_share counts them)."""
    inside = y >= -CLIP_TOLERANCE
    inside &= y <= 1 + CLIP_TOLERANCE
    if inside.ndim == 3:
        inside = inside.all(axis=2)
    return int(np.count_nonzero(inside))


def _mapped(y: np.ndarray, how: str, bounds: tuple[float, float]) -> np.ndarray:
    """filters.map_values's arithmetic, before clipping; 'normalize' takes the whole
    result's range."""
    if how == "abs":
        return np.abs(y)
    if how == "offset":
        return y + np.float32(0.5)
    if how == "normalize":
        lo, hi = bounds
        if not hi > lo:
            return np.zeros_like(y)
        return (y - np.float32(lo)) * np.float32(1.0 / (hi - lo))
    return y


@dataclass
class _Output:
    """One output file being written: what it holds and what was seen so far."""

    kernels: list[Prepared]
    axes: list[tuple[_Axis, _Axis]]
    combine: str | None
    alpha_axes: tuple[_Axis, _Axis] | None
    shape: tuple[int, ...]
    depth: int
    how: str | None
    range: _Range
    inside: int = 0

    def result(
        self, source: TiffSource, box: tuple[int, int, int, int], options: Any, engine: Any
    ) -> Any:
        parts = [
            _filtered(source, k, axes, box, options, engine)
            for k, axes in zip(self.kernels, self.axes, strict=True)
        ]
        return parts[0] if self.combine is None else combine(parts, self.combine)


def _plan(source: TiffSource, out: Any, options: Any) -> _Output:
    from convtool.batch.apply_task import output_depth

    size = (source.height, source.width)
    kernels = [options.kernels[k] for k in out.kernels]
    axes = [_axes(k, size, options) for k in kernels]
    shapes = []
    for k, (rows, cols) in zip(kernels, axes, strict=True):
        if k.full:
            channels = k.weights.shape[0]
        elif source.channels == 1 or options.color != "channels":
            channels = 1
        else:
            channels = source.channels
        shapes.append((rows.outputs, cols.outputs) + ((channels,) if channels > 1 else ()))
    if len(set(shapes)) > 1:  # combine's own message
        combine([np.broadcast_to(np.float32(0), s) for s in shapes], out.combine)
    shape = shapes[0]
    channels = 1 if len(shape) == 2 else shape[2]
    if channels not in (1, 3):
        raise ValueError(
            f"kernel {out.label} gives {channels} channels; pictures take 1 or 3 "
            "(write .npy for any number)"
        )
    fmt = _output_format(out, options)
    if fmt != "tiff":
        raise ValueError(f"{out.path}: tiles are written as TIFF, not {fmt.upper()}")
    depth = output_depth(fmt, source.bit_depth, options.depth)
    how = options.map if options.map is not None or depth == 32 else "clip"
    alpha_axes = axes[0] if source.has_alpha else None
    return _Output(kernels, axes, out.combine, alpha_axes, shape, depth, how, _Range())


def _output_format(out: Any, options: Any) -> str:
    from convtool.imaging import format_for

    if options.format is not None:
        return format_for(f"output.{options.format.lstrip('.')}", writing=True)
    return format_for(out.path, writing=True) if out.path != "-" else "stdout"


def _tiles(
    source: TiffSource, plan: _Output, tile: int, options: Any, target: str, engine: Any
) -> Iterator[np.ndarray]:
    """The output's tiles, mapped and quantised as imaging.write_image would; counts as it goes."""
    from convtool.imaging import prepare_pixels

    for box in _boxes(plan.shape[0], plan.shape[1], tile):
        y = plan.result(source, box, options, engine)
        if plan.how != "normalize":  # normalize's range was taken in a first pass
            plan.range.add(y)
        if plan.how == "clip" and plan.depth != 32:  # io clips as it quantises
            plan.inside += _inside(y)
        elif plan.how is not None:
            y = _mapped(np.asarray(y, np.float32), plan.how, plan.range.bounds)
            plan.inside += _inside(y)
            y = np.clip(y, 0.0, 1.0)
            np.nan_to_num(y, copy=False, nan=0.0)
        alpha = None
        if plan.alpha_axes is not None:
            rows, cols = plan.alpha_axes
            o0, o1, p0, p1 = box
            _, alpha = source.region(rows.anchors(o0, o1), cols.anchors(p0, p1))
        yield prepare_pixels(y, alpha, "tiff", plan.depth, target)


def _write(source: TiffSource, out: Any, options: Any, tile: int, engine: Any) -> dict[str, Any]:
    """Filter, map and write one output tile by tile; its record, as apply_task.run_task's."""
    import tifffile

    from convtool import imaging

    plan = _plan(source, out, options)
    if plan.how == "normalize":
        for box in _boxes(plan.shape[0], plan.shape[1], tile):
            plan.range.add(plan.result(source, box, options, engine))
    samples = (1 if len(plan.shape) == 2 else plan.shape[2]) + source.has_alpha
    dtype = {8: np.uint8, 16: np.uint16, 32: np.float32}[plan.depth]
    height, width = plan.shape[:2]
    shape = (height, width) if samples == 1 else (height, width, samples)
    padded = -(-height // tile) * tile * -(-width // tile) * tile * samples
    extra: dict[str, Any] = {"photometric": "rgb" if samples >= 3 else "minisblack"}
    if samples > 1:
        extra["planarconfig"] = "contig"
    if samples in (2, 4):
        extra["extrasamples"] = ("unassalpha",)
    try:
        with imaging.atomic_write(out.path, overwrite=options.overwrite) as f:
            handle = tifffile.FileHandle(f, mode="wb", name=os.path.basename(out.path))
            tifffile.imwrite(
                handle,
                data=_tiles(source, plan, tile, options, out.path, engine),
                shape=shape,
                dtype=dtype,
                tile=(tile, tile),
                bigtiff=padded * np.dtype(dtype).itemsize > 2**32 - 2**25,
                metadata=None,
                **extra,
            )
    except (OSError, ImportError) as e:
        raise imaging.ImageWriteError(f"cannot write {out.path}: {imaging.one_line(e)}") from e
    pixels = height * width
    lo, hi = plan.range.bounds
    share = 0.0 if plan.how is None else 1.0 - plan.inside / max(pixels, 1)
    return {
        "input": source.path,
        "output": out.path,
        "kernel": out.label,
        "shape": list(plan.shape),
        "min": lo,
        "max": hi,
        "map": plan.how or "none",
        "clipped": share,
        "depth": plan.depth,
        "nonfinite": plan.range.nonfinite,
    }


# ----------------------------------------------------------------- the task


def run_task(task: Any, options: Any, tile: int | None = None) -> list[dict[str, Any]]:
    """:func:`convtool.jobs.run_task`, in tiles where asked or where the picture is big.

    Parameters
    ----------
    task, options : apply_task.Task, apply_task.Options
    tile : int or None
        Tile side in output pixels (a multiple of 16, at least the kernels'
        :func:`reach`); 0 never tiles; None tiles a TIFF picture written to TIFF
        when :func:`should_tile` says it is too big to filter whole (with
        :func:`auto_tile`'s side).

    Returns
    -------
    list of dict
        One record per output, as apply_task.run_task returns them.
    """
    from convtool import imaging
    from convtool.batch import apply_task
    from convtool.imaging.io import _quiet_decoders

    path = task.source
    if tile == 0 or not isinstance(path, str) or path == "-":
        return apply_task.run_task(task, options)
    if tile is None and not all(_output_format(o, options) == "tiff" for o in task.outputs):
        return _whole(task, options)  # nothing to tile into: whole, with a hint if too big
    if tile is not None:
        check_tile(tile, options.kernels, options.padding)
    if not is_tiff(path):
        if tile is None:
            return apply_task.run_task(task, options)
        if not os.path.exists(path):
            raise imaging.ImageReadError(f"cannot read {path}: no such file")
        raise imaging.ImageReadError(f"cannot filter {path} in tiles: not a TIFF file")
    try:
        with _quiet_decoders():  # tifffile logs what it finds wrong, as well as raising
            source = TiffSource(path)
    except Exception as e:
        if tile is None:  # the whole-picture reader says what is wrong, or reads it
            return apply_task.run_task(task, options)
        kind = "unsupported TIFF" if isinstance(e, Unsupported) else "corrupt or unsupported TIFF"
        raise imaging.ImageReadError(
            f"cannot filter {path} in tiles: {kind} ({imaging.one_line(e)})"
        ) from None
    with source:
        if tile is None:
            samples = source.channels + source.has_alpha
            if not should_tile(source.height, source.width, samples):
                return apply_task.run_task(task, options)
            tile = auto_tile(options.kernels, options.padding)
        return _run(source, task, options, tile)


def _whole(task: Any, options: Any) -> list[dict[str, Any]]:
    """apply_task.run_task; a TIFF refused as too big is told that tiles would take it."""
    from convtool import imaging
    from convtool.batch import apply_task

    try:
        return apply_task.run_task(task, options)
    except imaging.ImageReadError as e:
        # over the default limit only: an explicit --max-pixels holds in tiles too
        if options.max_pixels != -1 or "--max-pixels" not in str(e) or not is_tiff(task.source):
            raise
        raise imaging.ImageReadError(f"{e}; or write a .tif, to filter it in tiles") from None


def _run(source: TiffSource, task: Any, options: Any, tile: int) -> list[dict[str, Any]]:
    from convtool import imaging
    from convtool.batch import apply_task

    if not options.overwrite:
        for out in task.outputs:
            if os.path.lexists(out.path):
                raise imaging.ImageWriteError(f"{out.path} exists; pass --overwrite to replace it")
    if options.max_pixels not in (-1, None):  # an explicit limit still holds
        imaging.check_pixel_count(source.width, source.height, options.max_pixels, source.path)
    needed = {k for out in task.outputs for k in out.kernels}
    size = (source.height, source.width)
    if any(a.outputs < 1 for k in needed for a in _axes(options.kernels[k], size, options)):
        return apply_task.run_task(
            task, options
        )  # a kernel larger than the padded picture: its error
    shape = (source.height, source.width) + ((source.channels,) if source.channels > 1 else ())
    engine = apply_task.engine_for(options, apply_task.work_of(shape, options, needed))
    return [_write(source, out, options, tile, engine) for out in task.outputs]
