"""Apply's tiled strategy: a TIFF picture filtered tile by tile into a tiled TIFF.

:func:`convtool.batch.apply_task.run_task` decides whether a picture is
filtered whole or in tiles: in tiles when ``tile`` says so or, by default, when
a TIFF picture written to TIFF files is too big to filter whole
(:func:`should_tile`). This module opens the picture for it
(:func:`open_source`) and runs the tiles (:func:`run`).

Each output tile reads only the input pixels its windows cover
(:mod:`convtool.filtering.tiles`), is filtered, post-processed
(:mod:`convtool.batch.postprocess`) and quantised as the whole picture would
be, and is streamed into a tiled (Big)TIFF written atomically
(:mod:`convtool.imaging.tiff_sink`): the result is bit for bit the
whole-picture result, and the memory used is a few tiles, whatever the
picture's size.

``--map normalize`` needs the result's range before the first tile is written:
the picture is then filtered twice, once for the range and once to write.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from convtool.batch.outputs import output_depth, output_format
from convtool.batch.postprocess import PostProcess
from convtool.filtering import Prepared, combine, correlate
from convtool.filtering.correlate import block_grid
from convtool.filtering.tiles import Axis, axes, boxes, core_padding
from convtool.imaging.tiff import TiffSource, Unsupported, is_tiff

__all__ = ["MEMORY_SHARE", "fits", "open_source", "run", "should_tile"]

MEMORY_SHARE = 16  # whole pictures whose float32 copy takes over 1/16 of memory are tiled


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


def open_source(path: str, asked: bool) -> TiffSource | None:
    """The TIFF at ``path``, opened to be read region by region.

    None when it cannot be and tiles were not ``asked`` for: the whole-picture
    reader then reads it, or says what is wrong with it. When they were,
    ImageReadError says why not.
    """
    from convtool import imaging

    if not is_tiff(path):
        if not asked:
            return None
        if not os.path.exists(path):
            raise imaging.ImageReadError(f"cannot read {path}: no such file")
        raise imaging.ImageReadError(f"cannot filter {path} in tiles: not a TIFF file")
    try:
        with imaging.quiet_decoders():  # tifffile logs what it finds wrong, as well as raising
            return TiffSource(path)
    except Exception as e:
        if not asked:
            return None
        kind = "unsupported TIFF" if isinstance(e, Unsupported) else "corrupt or unsupported TIFF"
        raise imaging.ImageReadError(
            f"cannot filter {path} in tiles: {kind} ({imaging.one_line(e)})"
        ) from None


def _axes(kernel: Prepared, size: tuple[int, int], options: Any) -> tuple[Axis, Axis]:
    return axes(kernel, size, border=options.border, padding=options.padding, stride=options.stride)


def _filtered(
    source: TiffSource,
    kernel: Prepared,
    axes: tuple[Axis, Axis],
    box: tuple[int, int, int, int],
    options: Any,
    engine: Any,
) -> np.ndarray:
    """One kernel's raw result on output rows o0:o1, columns p0:p1, by ``engine``: computed
    on the box widened to the planned path's blocks (the whole picture's grid), cut back."""
    o0, o1, p0, p1 = box
    rows, cols = axes
    bh, bw = block_grid(kernel, options.color, source.channels, options.stride)
    a0, a1 = o0 - o0 % bh, min(rows.outputs, -(-o1 // bh) * bh)
    b0, b1 = p0 - p0 % bw, min(cols.outputs, -(-p1 // bw) * bw)
    y = _filtered_blocks(source, kernel, axes, (a0, a1, b0, b1), options, engine)
    return y[o0 - a0 : o1 - a0, p0 - b0 : p1 - b0]


def _filtered_blocks(
    source: TiffSource,
    kernel: Prepared,
    axes: tuple[Axis, Axis],
    box: tuple[int, int, int, int],
    options: Any,
    engine: Any,
) -> np.ndarray:
    """:func:`_filtered` on a box of whole blocks (``origin`` tells the core where it is)."""
    o0, o1, p0, p1 = box
    rows, cols = axes
    ridx, rlo, rhi = rows.span(o0, o1)
    cidx, clo, chi = cols.span(p0, p1)
    if not (ridx.size and cidx.size):  # every window lies on the zero padding
        return _bias_only(source, kernel, (o1 - o0, p1 - p0), options, engine)
    data, _ = source.region(ridx, cidx)
    if options.border != "zero":  # the border's pixels are in the region
        return correlate(
            data,
            kernel,
            color=options.color,
            padding=0,
            stride=options.stride,
            engine=engine,
            origin=(o0, p0),
        )
    ph, first_row = core_padding(rlo, rhi, rows.s)
    pw, first_col = core_padding(clo, chi, cols.s)
    y = correlate(
        data,
        kernel,
        color=options.color,
        padding=(ph, pw),
        stride=options.stride,
        engine=engine,
        origin=(o0 - first_row, p0 - first_col),
    )
    return y[first_row : first_row + o1 - o0, first_col : first_col + p1 - p0]


def _bias_only(
    source: TiffSource, kernel: Prepared, size: tuple[int, int], options: Any, engine: Any
) -> np.ndarray:
    """A tile whose windows see zeros alone: the kernel's bias, as the core leaves it there
    (the core skips zero padding); one pixel's result tells the channels."""
    pixel, _ = source.region(np.arange(1), np.arange(1))
    probe = correlate(pixel, kernel, color=options.color, padding="same", engine=engine)
    bias = np.float32(0.0) if kernel.bias is None else np.asarray(kernel.bias, np.float32)
    return np.ascontiguousarray(np.broadcast_to(bias, size + probe.shape[2:]), np.float32)


@dataclass
class _Output:
    """One output file being written: what it holds, and its post-processing."""

    kernels: list[Prepared]
    axes: list[tuple[Axis, Axis]]
    combine: str | None
    alpha_axes: tuple[Axis, Axis] | None
    shape: tuple[int, ...]
    post: PostProcess
    engine: Any  # the core's engine the tiles are filtered by

    def result(self, source: TiffSource, box: tuple[int, int, int, int], options: Any) -> Any:
        parts = [
            _filtered(source, k, axes, box, options, self.engine)
            for k, axes in zip(self.kernels, self.axes, strict=True)
        ]
        return parts[0] if self.combine is None else combine(parts, self.combine)


def _planned(source: TiffSource, out: Any, options: Any, engine: Any) -> _Output:
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
    fmt = output_format(out.path, options.format) or "stdout"
    if fmt != "tiff":
        raise ValueError(f"{out.path}: tiles are written as TIFF, not {fmt.upper()}")
    post = PostProcess.chosen(options.map, output_depth(fmt, source.bit_depth, options.depth))
    alpha_axes = axes[0] if source.has_alpha else None
    return _Output(kernels, axes, out.combine, alpha_axes, shape, post, engine)


def _tiles(
    source: TiffSource, plan: _Output, tile: int, options: Any, measured: bool
) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """The output's tiles, post-processed, each with its alpha; ``measured``: the range is in."""
    for box in boxes(plan.shape[0], plan.shape[1], tile):
        y = plan.result(source, box, options)
        if not measured:
            plan.post.measure(y)
        y = plan.post.mapped(y)
        alpha = None
        if plan.alpha_axes is not None:
            rows, cols = plan.alpha_axes
            o0, o1, p0, p1 = box
            _, alpha = source.region(rows.anchors(o0, o1), cols.anchors(p0, p1))
        yield y, alpha


def _write(source: TiffSource, out: Any, options: Any, tile: int, engine: Any) -> dict[str, Any]:
    """Filter, post-process and write one output tile by tile; its record, as the whole
    picture's."""
    from convtool.imaging.tiff_sink import write_tiled_tiff

    plan = _planned(source, out, options, engine)
    measured = plan.post.needs_range_first
    if measured:
        for box in boxes(plan.shape[0], plan.shape[1], tile):
            plan.post.measure(plan.result(source, box, options))
    write_tiled_tiff(
        out.path,
        _tiles(source, plan, tile, options, measured),
        shape=plan.shape,
        alpha=source.has_alpha,
        bit_depth=plan.post.depth,
        tile=tile,
        overwrite=options.overwrite,
        meta=None if options.strip else source.meta.strided(options.stride),
    )
    from convtool.batch.apply_task import plans

    record = plan.post.record(plan.shape, input=source.path, output=out.path, kernel=out.label)
    shape = (source.height, source.width, source.channels)
    return record | {"plan": plans(shape, out, options, engine)}


def fits(source: TiffSource, task: Any, options: Any) -> bool:
    """Whether every kernel the task needs fits the padded picture (else: no output)."""
    needed = {k for out in task.outputs for k in out.kernels}
    size = (source.height, source.width)
    return all(a.outputs >= 1 for k in needed for a in _axes(options.kernels[k], size, options))


def run(
    source: TiffSource, task: Any, options: Any, tile: int, engine: Any
) -> list[dict[str, Any]]:
    """Filter ``source`` tile by tile into every output of ``task`` (apply_task's Task and
    Options) by ``engine``; one record per output, as the whole picture's."""
    return [_write(source, out, options, tile, engine) for out in task.outputs]
