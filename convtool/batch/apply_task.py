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
  and result, ``DIR/<stem>.<kernel>.<ext>``; DIR/ is created if missing;
- no ``-o``: the same name beside each input (standard input: standard output);
- with ``combine``, <kernel> is ``<k1>+<k2>.<how>``.

<stem> is the input's file name without its last extension (``stdin`` for '-'),
<kernel> the kernel's slug (:attr:`convtool.kernels.KernelSpec.slug`; repeated
slugs get ``-2``, ``-3``), <ext> the one ``fmt`` gives, else the input's (``.png``
for GIF; from the content for standard input). Two results with one name, or a
result named like an input, are refused before anything is read.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from convtool.batch.outputs import (
    name_outputs,
    output_depth,
    output_format,
    refuse_existing,
)
from convtool.batch.postprocess import PostProcess
from convtool.filtering import (
    Prepared,
    combine,
    correlate,
    correlate_premultiplied,
    resample_alpha,
)
from convtool.filtering.correlate import plan_of
from convtool.shapes import PaddingSpec

__all__ = [
    "Options",
    "Output",
    "Task",
    "check_sizes",
    "engine_for",
    "filter_picture",
    "plan_outputs",
    "plans",
    "result_of",
    "run_task",
    "work_of",
]


class Options(NamedTuple):
    """What ``apply`` does to every picture (picklable: batch workers receive it). The
    records of a run are NamedTuples: a dataclass took 0.4-0.9 ms of start-up to build."""

    kernels: tuple[Prepared, ...]
    color: str = "channels"
    border: str = "replicate"  # ImageMagick's edge pixels: no frame around a photograph
    padding: PaddingSpec = "same"
    stride: tuple[int, int] = (1, 1)
    map: str | None = None  # None: clip for 8/16-bit outputs, raw values for float ones
    alpha: str = "premultiply"  # or 'keep': carried through, taken at each window's centre
    depth: int | None = None  # None: the input's, as far as the format allows
    format: str | None = None  # None: from each output's extension
    strip: bool = False  # write no ICC profile, resolution or EXIF (kept by default)
    quality: int | None = None  # JPEG, WebP; None: a JPEG input's own, else 95; WebP lossless
    compression: int = 1  # PNG's effort, 0-9 (see convtool.imaging.png)
    overwrite: bool = False
    max_pixels: int | None = -1  # -1: io's default (Pillow's limit)
    engine: str = "auto"  # 'auto', 'aot' or 'jit' (see convtool.core.engine.choose)
    notice: Any = None  # told when the JIT must compile (see convtool.core.engine.jit)
    workers: int = 1  # pictures run at a time: each is held to that share of the memory


class Output(NamedTuple):
    """One file to write: the result of one kernel, or of several combined."""

    path: str  # '-' is standard output
    kernels: tuple[int, ...]  # indices into Options.kernels
    combine: str | None = None
    label: str = ""  # the kernel as records name it


class Task(NamedTuple):
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
        # a magnitude's parts and an ImageMagick list's steps each filter the picture;
        # each at the planned path's cost, in the direct path's multiply-adds
        steps = max(1, len(kernel.parts)) + len(kernel.chain)
        taps = plan_of(kernel, options.color, channels, options.stride).taps
        total += h * w * fan * outs * steps * taps
    return total / (options.stride[0] * options.stride[1])


def size_plan(shape: tuple[int, int, int], options: Options, needed: Any = None) -> Any:
    """The arrays filtering a picture of ``shape`` = (C, H, W) makes, planned
    (:mod:`convtool.shapes.budget`): one step per kernel, named by what sizes its result,
    ``--padding`` where the padding makes it larger than the picture, else ``-k``."""
    from convtool.shapes import as_pair, budget

    c = shape[0]
    steps = []
    for k in sorted(range(len(options.kernels)) if needed is None else needed):
        kernel = options.kernels[k]
        (kh, kw), label, option = kernel.size, f"-k {kernel.name}", "-k"
        if kernel.full:
            maps, fan = kernel.weights.shape[0], kernel.weights.shape[1]
        elif c == 1 or options.color == "gray":
            maps, fan = 1, 1
        else:  # 'sum' reads every channel into one map, 'channels' one map per channel
            maps, fan = (1 if options.color == "sum" else c), c
        if not isinstance(options.padding, str):
            ph, pw = as_pair(options.padding, "padding")
            if 2 * ph > kh - 1 or 2 * pw > kw - 1:
                label, option = f"--padding {ph if ph == pw else f'{ph}x{pw}'}", "--padding"
        stride = as_pair(options.stride, "stride")
        copies = options.border != "zero"
        steps.append(budget.Conv(label, option, ((maps, kh, kw),), stride, options.padding,
                                 copies, fan))  # fmt: skip
    return budget.plan(shape, steps, chained=False)


def check_sizes(
    shape: tuple[int, int, int],
    options: Options,
    needed: Any = None,
    *,
    floor: bool = False,
    memory: bool = True,
) -> None:
    """Refuse (:class:`convtool.shapes.SizeError`) a picture of ``shape`` = (C, H, W) whose
    results would be over ``--max-pixels`` or whose arrays over the machine's memory.

    ``floor``: the shape is the smallest picture, (1, 1, 1), and the refusal holds for every
    picture; ``memory=False`` holds the pixels alone (tiles bound the memory).
    """
    from convtool import imaging
    from convtool.shapes import budget

    limit = imaging.default_max_pixels() if options.max_pixels == -1 else options.max_pixels
    room = budget.machine_memory() if memory else None
    room = None if room is None else room // max(options.workers, 1)
    budget.check(size_plan(shape, options, needed), max_pixels=limit, memory=room, floor=floor)


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
    path = task.source
    if any(k.chain for k in options.kernels):  # a chain's reach is every kernel's
        if tile:
            raise ValueError("ImageMagick's kernel lists are filtered whole: give --tile 0")
        return _run_whole(task, options)
    if tile == 0 or not isinstance(path, str) or path == "-":
        return _run_whole(task, options)
    if tile is None and not _all_tiff(task, options):
        return _run_whole_hinting_tiles(task, options)  # nothing to tile into
    from convtool.batch import tiled  # TIFFs only: a PNG or JPEG is filtered whole
    from convtool.filtering.tiles import auto_tile, check_tile

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

    try:
        return _run_whole(task, options)
    except imaging.ImageReadError as e:
        from convtool.imaging.tiff import is_tiff

        # over the default limit only: an explicit --max-pixels holds in tiles too
        if options.max_pixels != -1 or "--max-pixels" not in str(e) or not is_tiff(task.source):
            raise
        raise imaging.ImageReadError(f"{e}; or write a .tif, to filter it in tiles") from None


def _run_tiled(source: Any, task: Task, options: Options, tile: int) -> list[dict[str, Any]]:
    """The tiled strategy, after the checks the whole path makes first."""
    from convtool import imaging
    from convtool.batch import tiled

    if source.has_alpha and options.alpha != "keep":
        raise ValueError(
            f"{source.path}: filtering in tiles carries alpha through untouched; give "
            "--alpha keep for that, or --tile 0 to filter it whole, premultiplied"
        )
    if not options.overwrite:
        refuse_existing(out.path for out in task.outputs)
    if options.max_pixels not in (-1, None):  # an explicit limit still holds
        imaging.check_pixel_count(source.width, source.height, options.max_pixels, source.path)
    if not tiled.fits(source, task, options):  # a kernel larger than the padded picture
        return _run_whole(task, options)  # its error
    needed = {k for out in task.outputs for k in out.kernels}
    if options.max_pixels not in (-1, None):
        check_sizes((source.channels, source.height, source.width), options, needed, memory=False)
    tile = _tile_within(tile, source, options)
    shape = (source.height, source.width) + ((source.channels,) if source.channels > 1 else ())
    engine = engine_for(options, work_of(shape, options, needed))
    return tiled.run(source, task, options, tile, engine)


def _tile_within(tile: int, source: Any, options: Options) -> int:
    """``tile``, or if that is smaller the default tile or the smallest (a multiple of 16)
    that holds the picture's whole result: a tile larger than both would only hold padding.
    Refuses (SizeError) tiles whose arrays are over the machine's memory."""
    from convtool.filtering.tiles import TILE, TILE_STEP, reach
    from convtool.shapes import as_pair, budget

    far = reach(options.kernels, options.padding)
    sh, sw = as_pair(options.stride, "stride")
    whole = max(source.height, source.width) + 2 * far
    tile = min(tile, max(TILE, -(-whole // TILE_STEP) * TILE_STEP))
    side = tile * max(sh, sw) + 2 * far + 1  # the input a tile's windows cover
    kernels = tuple((source.channels, *k.size) for k in options.kernels)
    step = budget.Conv(f"--tile {tile}", "--tile", kernels, (sh, sw), "valid",
                       options.border != "zero")  # fmt: skip
    job = budget.plan((source.channels, side, side), [step])
    room = budget.machine_memory()
    budget.check(job, memory=None if room is None else room // max(options.workers, 1))
    return tile


def _run_whole(task: Task, options: Options) -> list[dict[str, Any]]:
    """The whole picture read, filtered and written, output by output."""
    from convtool import imaging

    if not options.overwrite:
        refuse_existing(out.path for out in task.outputs)
    if isinstance(task.source, imaging.Image):
        image = task.source
    else:
        limit = imaging.DEFAULT if options.max_pixels == -1 else options.max_pixels
        # the stored samples where the decoder gives them: the filters scale them as they
        # lay the picture out, with no float copy of the picture first
        image = imaging.read_image(task.source, max_pixels=limit, samples=True)
    needed = {k for out in task.outputs for k in out.kernels}
    data = image.data
    check_sizes((1 if data.ndim == 2 else data.shape[2], *data.shape[:2]), options, needed)
    results = filter_picture(data, image.alpha, options, needed)
    return [_write(image, out, results, options) for out in task.outputs]


Results = dict[int, tuple[np.ndarray, "np.ndarray | None"]]


def filter_picture(data: np.ndarray, alpha: Any, options: Options, needed: set[int]) -> Results:
    """The kernels ``needed`` on one picture's pixels ``data`` (float, or its 8- or 16-bit
    samples: :func:`convtool.filtering.as_pixels`; its ``alpha`` apart), as
    ``apply`` filters a whole picture: kernel index -> (raw float32 result, its alpha where
    it was filtered with the colour, premultiplied; else None)."""
    engine = engine_for(options, work_of(data.shape, options, needed))
    geometry = {
        "color": options.color,
        "border": options.border,
        "padding": options.padding,
        "stride": options.stride,
        "engine": engine,
    }
    # an opaque alpha (RGBA written by many programs) changes nothing premultiplied
    premultiply = alpha is not None and options.alpha != "keep" and bool((alpha < 1).any())
    results: Results = {}
    for k in sorted(needed):
        kernel = options.kernels[k]
        if premultiply:
            results[k] = correlate_premultiplied(data, alpha, kernel, **geometry)
        else:
            results[k] = (correlate(data, kernel, **geometry), None)
    return results


def result_of(alpha: Any, out: Output, results: Results, options: Options) -> tuple[Any, Any]:
    """One output's raw values (combined when it combines kernels) and its alpha on the
    output's grid (None for a picture without alpha), before any value map."""
    parts = [results[k][0] for k in out.kernels]
    y = parts[0] if out.combine is None else combine(parts, out.combine)
    filtered = results[out.kernels[0]][1]  # the first kernel's, when several are combined
    if alpha is not None and filtered is None:
        size = options.kernels[out.kernels[0]].size
        filtered = resample_alpha(alpha, size, padding=options.padding, stride=options.stride)
    return y, filtered


def _write(
    image: Any,
    out: Output,
    results: Results,
    options: Options,
) -> dict:
    from convtool import imaging

    y, alpha = result_of(image.alpha, out, results, options)
    fmt = output_format(out.path, options.format, image.format)
    post = PostProcess.chosen(options.map, output_depth(fmt, image.bit_depth, options.depth))
    post.measure(y)
    y = post.mapped(y)
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
            meta=None if options.strip else image.meta.strided(options.stride),
            quality=options.quality,
            coding=image.coding,
            compress_level=options.compression,
        )
    record = post.record(y.shape, input=_label(image.source), output=out.path, kernel=out.label)
    engine = engine_for(options, work_of(image.data.shape, options, set(results)))  # as filtered
    return record | {"plan": plans(image.data.shape, out, options, engine)}


def plans(image_shape: tuple[int, ...], out: Output, options: Options, engine: Any = None) -> str:
    """The path each of the output's kernels takes with ``engine`` (:func:`plan_of`), for
    its record: 'separable', 'low-rank 2', 'box', 'fft', 'gemm', 'blocked', 'winograd',
    'winograd4' or 'direct', joined by '+' when combined."""
    channels = 1 if len(image_shape) == 2 else image_shape[2]
    found = [
        plan_of(options.kernels[k], options.color, channels, options.stride, engine)
        for k in out.kernels
    ]
    return "+".join(p.describe() for p in found)
