"""``convtool apply``'s unit of work, without click.

:func:`plan_outputs` turns inputs, kernels and ``-o`` into one :class:`Task` per
picture, following the naming rules below (:mod:`convtool.batch.outputs`);
:func:`run_task` reads one picture, filters it with :mod:`convtool.filtering`
and writes its outputs, returning one record per output. It filters the picture
whole, or tile by tile (:mod:`convtool.batch.tiled`) where a TIFF picture
written to TIFF files asks for it or is too big to filter whole. Tasks pickle,
so :func:`convtool.batch.run_batch` can hand them to worker processes.

Output names
------------
- one input and one result (one kernel, or several with ``combine``) and
  ``-o FILE``: that file, its extension setting the format (or ``fmt``);
- ``-o DIR/``, an existing folder, or several results in all: one file per input
  and result, ``DIR/<stem>.<kernel>.<ext>``; DIR must exist (as mogrify -path);
- no ``-o``: the same name beside each input (standard input: standard output);
- with ``combine``, <kernel> is ``<k1>+<k2>.<how>``.

<stem> is the input's file name without its last extension (``stdin`` for '-'),
<kernel> the kernel's slug (:attr:`convtool.kernels.KernelSpec.slug`; repeated
slugs get ``-2``, ``-3``), <ext> the one ``fmt`` gives, else the input's (``.png``
for GIF; from the content for standard input). Two results with one name, or a
result named like an input, are refused before anything is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from convtool.batch.outputs import (
    name_outputs,
    output_depth,
    output_format,
    refuse_existing,
)
from convtool.batch.postprocess import PostProcess
from convtool.filtering import Prepared, combine, correlate, resample_alpha
from convtool.filtering.correlate import plan_of
from convtool.filtering.tiles import auto_tile, check_tile
from convtool.shapes import PaddingSpec

__all__ = [
    "Options",
    "Output",
    "Task",
    "engine_for",
    "plan_outputs",
    "plans",
    "run_task",
    "work_of",
]


@dataclass(frozen=True)
class Options:
    """What ``apply`` does to every picture (picklable: batch workers receive it)."""

    kernels: tuple[Prepared, ...]
    color: str = "channels"
    border: str = "zero"
    padding: PaddingSpec = "same"
    stride: tuple[int, int] = (1, 1)
    map: str | None = None  # None: clip for 8/16-bit outputs, raw values for float ones
    depth: int | None = None  # None: the input's, as far as the format allows
    format: str | None = None  # None: from each output's extension
    overwrite: bool = False
    max_pixels: int | None = -1  # -1: io's default (Pillow's limit)
    engine: str = "auto"  # 'auto', 'aot' or 'jit' (see convtool.core.engine.choose)
    notice: Any = None  # told when the JIT must compile (see convtool.core.engine.jit)


@dataclass(frozen=True)
class Output:
    """One file to write: the result of one kernel, or of several combined."""

    path: str  # '-' is standard output
    kernels: tuple[int, ...]  # indices into Options.kernels
    combine: str | None = None
    label: str = ""  # the kernel as records name it


@dataclass(frozen=True)
class Task:
    """One picture (a path, '-', or an already read imaging.Image) and its outputs."""

    source: Any
    outputs: tuple[Output, ...]


def plan_outputs(
    inputs: list[str],
    names: list[str],
    output: str | None = None,
    combine: str | None = None,
    fmt: str | None = None,
    stdin_image: Any = None,
) -> list[Task]:
    """One :class:`Task` per input, every output named (see the module docstring).

    ``names`` are the kernels' slugs, made distinct (:func:`convtool.batch.outputs.unique_slugs`);
    ``stdin_image`` is the picture read from '-', if any. Raises
    :class:`convtool.batch.outputs.PlanError`.
    """
    if combine is not None:
        groups = [(tuple(range(len(names))), "+".join(names) + f".{combine}")]
    else:
        groups = [((k,), name) for k, name in enumerate(names)]
    paths = name_outputs(inputs, [slug for _, slug in groups], output, fmt, stdin_image)
    tasks = []
    for source, row in zip(inputs, paths, strict=True):
        outs = []
        for path, (kernels, _) in zip(row, groups, strict=True):
            label = names[kernels[0]] if combine is None else f"{combine}({', '.join(names)})"
            outs.append(Output(path, kernels, combine, label))
        image = stdin_image if source == "-" else None
        tasks.append(Task(source if image is None else image, tuple(outs)))
    return tasks


def work_of(image_shape: tuple[int, ...], options: Options, needed: set[int]) -> float:
    """Multiply-adds the kernels ``needed`` take on a picture of ``image_shape``."""
    h, w = image_shape[:2]
    channels = 1 if len(image_shape) == 2 else image_shape[2]
    total = 0.0
    for k in needed:
        kernel = options.kernels[k]
        weights = kernel.weights
        fan = channels if options.color != "gray" or weights.ndim == 4 else 1
        outs = weights.shape[0] if weights.ndim == 4 else 1
        # the planned path's cost, in the direct path's multiply-adds
        taps = plan_of(kernel, options.color, channels, options.stride).taps
        total += h * w * fan * outs * taps
    return total / (options.stride[0] * options.stride[1])


def engine_for(options: Options, work: float) -> Any:
    """The engine for ``work`` multiply-adds, as :func:`convtool.core.engine.choose`
    picks it for these options."""
    from convtool.core import engine

    return engine.choose(work, options.engine, notice=options.notice)


def _label(source: Any) -> str:
    return source if isinstance(source, str) else getattr(source, "source", "<picture>")


# ----------------------------------------------------------------------------- the task


def run_task(task: Task, options: Options, tile: int | None = None) -> list[dict[str, Any]]:
    """Read one picture, filter it, and write every output; one record per output.

    Parameters
    ----------
    task : Task
    options : Options
    tile : int or None
        Filter in tiles of this side, in output pixels (a multiple of 16, at
        least the kernels' reach, :func:`convtool.filtering.tiles.reach`): a
        TIFF file, into TIFF files. 0 never tiles; None tiles a TIFF picture
        written to TIFF when :func:`convtool.batch.tiled.should_tile` says it
        is too big to filter whole (with :func:`convtool.filtering.tiles.auto_tile`'s
        side). Standard input and pictures already read are filtered whole.

    Returns
    -------
    list of dict
        One record per output.

    Raises on the first failure (io's ImageReadError/ImageWriteError, ValueError),
    with a one-line message; outputs already written stay (each is whole).
    """
    from convtool.batch import tiled

    path = task.source
    if tile == 0 or not isinstance(path, str) or path == "-":
        return _run_whole(task, options)
    if tile is None and not _all_tiff(task, options):
        return _run_whole_hinting_tiles(task, options)  # nothing to tile into
    if tile is not None:
        check_tile(tile, options.kernels, options.padding)
    source = tiled.open_source(path, tile is not None)
    if source is None:  # the whole-picture reader reads it, or says what is wrong
        return _run_whole(task, options)
    with source:
        if tile is None:
            samples = source.channels + source.has_alpha
            if not tiled.should_tile(source.height, source.width, samples):
                return _run_whole(task, options)
            tile = auto_tile(options.kernels, options.padding)
        return _run_tiled(source, task, options, tile)


def _all_tiff(task: Task, options: Options) -> bool:
    return all(output_format(out.path, options.format) == "tiff" for out in task.outputs)


def _run_whole_hinting_tiles(task: Task, options: Options) -> list[dict[str, Any]]:
    """The whole-picture path; a TIFF refused as too big is told that tiles would take it."""
    from convtool import imaging
    from convtool.imaging.tiff import is_tiff

    try:
        return _run_whole(task, options)
    except imaging.ImageReadError as e:
        # over the default limit only: an explicit --max-pixels holds in tiles too
        if options.max_pixels != -1 or "--max-pixels" not in str(e) or not is_tiff(task.source):
            raise
        raise imaging.ImageReadError(f"{e}; or write a .tif, to filter it in tiles") from None


def _run_tiled(source: Any, task: Task, options: Options, tile: int) -> list[dict[str, Any]]:
    """The tiled strategy, after the checks the whole path makes first."""
    from convtool import imaging
    from convtool.batch import tiled

    if not options.overwrite:
        refuse_existing(out.path for out in task.outputs)
    if options.max_pixels not in (-1, None):  # an explicit limit still holds
        imaging.check_pixel_count(source.width, source.height, options.max_pixels, source.path)
    if not tiled.fits(source, task, options):  # a kernel larger than the padded picture
        return _run_whole(task, options)  # its error
    needed = {k for out in task.outputs for k in out.kernels}
    shape = (source.height, source.width) + ((source.channels,) if source.channels > 1 else ())
    engine = engine_for(options, work_of(shape, options, needed))
    return tiled.run(source, task, options, tile, engine)


def _run_whole(task: Task, options: Options) -> list[dict[str, Any]]:
    """The whole picture read, filtered and written, output by output."""
    from convtool import imaging

    if not options.overwrite:
        refuse_existing(out.path for out in task.outputs)
    if isinstance(task.source, imaging.Image):
        image = task.source
    else:
        limit = imaging.DEFAULT if options.max_pixels == -1 else options.max_pixels
        image = imaging.read_image(task.source, max_pixels=limit)
    needed = {k for out in task.outputs for k in out.kernels}
    results: dict[int, np.ndarray] = {}
    engine = engine_for(options, work_of(image.data.shape, options, needed))
    for k in sorted(needed):
        results[k] = correlate(
            image.data,
            options.kernels[k],
            color=options.color,
            border=options.border,
            padding=options.padding,
            stride=options.stride,
            engine=engine,
        )
    return [_write(image, out, results, options) for out in task.outputs]


def _write(image: Any, out: Output, results: dict[int, np.ndarray], options: Options) -> dict:
    from convtool import imaging

    parts = [results[k] for k in out.kernels]
    y = parts[0] if out.combine is None else combine(parts, out.combine)
    fmt = output_format(out.path, options.format, image.format)
    post = PostProcess.chosen(options.map, output_depth(fmt, image.bit_depth, options.depth))
    post.measure(y)
    y = post.mapped(y)
    alpha = None
    if image.alpha is not None:
        size = options.kernels[out.kernels[0]].size
        alpha = resample_alpha(image.alpha, size, padding=options.padding, stride=options.stride)
    channels = 1 if y.ndim == 2 else y.shape[2]
    if channels not in (1, 3):
        if fmt != "npy":
            raise ValueError(
                f"kernel {out.label} gives {channels} channels; pictures take 1 or 3 "
                "(write .npy for any number)"
            )
        imaging.save_array(out.path, y.astype(np.float32), overwrite=options.overwrite)
    else:
        imaging.write_image(
            out.path,
            y,
            alpha=alpha,
            bit_depth=post.depth,
            overwrite=options.overwrite,
            format=fmt,
        )
    record = post.record(y.shape, input=_label(image.source), output=out.path, kernel=out.label)
    return record | {"plan": plans(image.data.shape, out, options)}


def plans(image_shape: tuple[int, ...], out: Output, options: Options) -> str:
    """The path each of the output's kernels takes (:func:`plan_of`), for its record:
    'separable', 'low-rank 2', 'box', 'fft' or 'direct', joined by '+' when combined."""
    channels = 1 if len(image_shape) == 2 else image_shape[2]
    found = [
        plan_of(options.kernels[k], options.color, channels, options.stride) for k in out.kernels
    ]
    return "+".join(p.describe() for p in found)
