"""`convtool pipeline`'s work on one picture: read it, run the stages, write its files.

What :mod:`convtool.batch.apply_task` is to ``apply``: :func:`plan_tasks` names
every file of a run before anything is read (:mod:`convtool.batch.outputs`);
picklable options and tasks that the batch engine hands to its workers; and
:func:`run_task`, which turns one task into one record. Everything is computed
and drawn before the first file is written.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from io import BytesIO
from typing import Any, NamedTuple

import numpy as np

from convtool.batch.outputs import (
    Files,
    OutputClaims,
    PlanError,
    check_folder,
    check_format,
    figure_paths,
    is_folder,
    make_folder,
    name_outputs,
    output_depth,
    output_format,
    refuse_existing,
    stem,
    unique_slugs,
)
from convtool.batch.postprocess import PostProcess
from convtool.filtering import stats
from convtool.kernels import KernelSpec
from convtool.pipeline import Stage, StageResult, count_nonfinite, run_stages, source_planes

__all__ = [
    "Options",
    "Task",
    "TaskLayout",
    "check_output",
    "check_sizes",
    "plan_tasks",
    "run_task",
    "size_plan",
]


class Options(NamedTuple):
    """What every picture of a run gets (picklable: batch workers receive it)."""

    stages: tuple[Stage, ...]
    color: str = "sum"
    map: str | None = None  # None: clip for 8/16-bit pictures, raw values for float ones
    depth: int | None = None  # None: the input's, as far as the format allows
    format: str | None = None  # None: from the output's extension
    overwrite: bool = False
    max_pixels: int | None = -1  # -1: io's default (Pillow's limit)
    cmap: str = "viridis"
    tile: int = 240
    columns: int | None = None
    stretch: tuple[float, float] | None = None  # percentiles drawn maps span; None: min..max
    title: str | None = None  # None: the input's name and the chain
    grid_stage: int | None = None  # None: the last stage
    notice: Any = None  # told when the JIT must compile (see convtool.core.engine.jit)
    workers: int = 1  # pictures run at a time: each is held to that share of the memory


class Task(NamedTuple):
    """One picture (a path, '-', or an imaging.Image already read) and the files it makes."""

    source: Any
    output: str | None = None  # the last stage's map
    panel: str | None = None
    grid: str | None = None
    stages_dir: str | None = None
    prefix: str = ""  # before every stage file's name: '<stem>.' when a run has several


def _stage_stem(stages_dir: str, prefix: str, index: int, kind: str) -> str:
    """A stage's files are this path plus .npy, .png or .<channel>.png."""
    return os.path.join(stages_dir, f"{prefix}{index:02d}-{kind}")


@dataclass(frozen=True)
class TaskLayout:
    """Where a :class:`Task` run with ``stages`` keeps its paths, for the cluster's ``ship``.

    Every file but a stage's pictures is named before the run; those are
    ``NN-KIND.png`` or ``NN-KIND.<channel>.png`` after their ``NN-KIND.npy``.
    """

    stages: tuple[Stage, ...]

    def files(self, task: Task) -> Files:
        source = task.source if isinstance(task.source, str) else None
        outputs = [p for p in (task.output, task.panel, task.grid) if p is not None]
        named = []
        if task.stages_dir is not None:
            for index, stage in enumerate(self.stages, 1):
                stem = _stage_stem(task.stages_dir, task.prefix, index, stage.kind)
                outputs.append(stem + ".npy")
                named.append((task.stages_dir, os.path.basename(stem)))
        return Files(source, tuple(outputs), tuple(named))

    def move(self, task: Task, to: Callable[[str], str]) -> Task:
        def moved(path: str | None) -> str | None:
            return None if path is None else to(path)

        return task._replace(
            source=to(task.source) if isinstance(task.source, str) else task.source,
            output=moved(task.output),
            panel=moved(task.panel),
            grid=moved(task.grid),
            stages_dir=moved(task.stages_dir),
        )


def plan_tasks(
    inputs: Sequence[str],
    output: str | None = None,
    panel: str | None = None,
    grid: str | None = None,
    stages_dir: str | None = None,
    fmt: str | None = None,
    stdin_image: Any = None,
) -> list[Task]:
    """One :class:`Task` per input, every file named and checked before anything runs.

    With several inputs ``output``, ``panel`` and ``grid`` name folders
    (``<stem>.pipeline.<ext>``, ``<stem>.panel.png``, ``<stem>.grid.png``) and
    stage files start with ``<stem>.``. ``stdin_image`` is the picture read from
    '-', if any. Raises :class:`convtool.batch.outputs.PlanError`.
    """
    outputs: list[str | None] = [None] * len(inputs)
    if output is not None:
        if output != "-":
            check_folder(os.path.dirname(output) or ".", output, "-o")
        paths = name_outputs(inputs, ["pipeline"], output, fmt, stdin_image)
        outputs = [row[0] for row in paths]
    panels = figure_paths(inputs, panel, "panel", "--panel")
    grids = figure_paths(inputs, grid, "grid", "--grid")
    if stages_dir is not None:
        make_folder(stages_dir, "--save-stages")  # DIR/: with its parents, as -o DIR/
        parent = os.path.dirname(os.path.normpath(stages_dir)) or "."
        check_folder(stages_dir, stages_dir, "--save-stages")
        if not os.path.isdir(parent):
            raise PlanError(
                f"the folder {parent!r} of {stages_dir!r} does not exist", "--save-stages"
            )
    prefixes = [""] if len(inputs) == 1 else [f"{stem(s)}." for s in inputs]
    claims = OutputClaims()
    for source, prefix, *paths in zip(inputs, prefixes, outputs, panels, grids, strict=True):
        keys = [os.path.abspath(p) for p in paths if p not in (None, "-")]
        if stages_dir is not None:
            keys.append(os.path.join(os.path.abspath(stages_dir), prefix + "*"))
        for key in keys:
            claims.claim(key, source, key)
    claims.refuse_inputs(inputs, _same_path, "choose another name")
    return [
        Task(
            stdin_image if source == "-" else source,
            output=out,
            panel=pan,
            grid=grd,
            stages_dir=stages_dir,
            prefix=prefix,
        )
        for source, out, pan, grd, prefix in zip(
            inputs, outputs, panels, grids, prefixes, strict=True
        )
    ]


def check_output(count: int, output: str | None, fmt: str | None, depth: int | None) -> None:
    """Refuse, for the ``-o`` of ``count`` inputs, an unknown ``fmt``, an extension that
    names no format, or a ``depth`` the format cannot take (PlanError)."""
    kind = None
    if fmt is not None:
        kind = check_format(fmt)
    elif output not in (None, "-") and not is_folder(output, count):
        try:
            kind = output_format(output, None)
        except ValueError as e:
            raise PlanError(f"{e} (or give --format)", "-o") from None
    if depth is not None and kind is not None:
        try:
            output_depth(kind, 8, depth)
        except ValueError as e:
            raise PlanError(str(e), "--depth") from None


def _same_path(key: str, source: str) -> bool:
    return os.path.abspath(source) == key


def _engine(x: np.ndarray, options: Options) -> Any:
    """The engine for this picture's chain, by its work: the multiply-adds of its conv
    stages were they all on the full picture (an upper bound; see core.engine.choose)."""
    from convtool.core import engine

    taps = sum(k.weights.size for s in options.stages if s.kind == "conv" for k in s.kernels)
    taps += sum(s.random[0] * 3 * s.random[1][0] * s.random[1][1]  # C@K on up to 3 channels
                for s in options.stages if s.random is not None)  # fmt: skip
    return engine.choose(float(x.size) * max(taps, 1), notice=options.notice)


_OWN_PADDING = re.compile(r"[:,]\s*p(ad|adding)?\s*=", re.IGNORECASE)
_SHOWN = 16  # maps a panel shows per stage (pipeline.figures.MAX_CHANNELS)


def _size_step(index: int, stage: Stage) -> Any:
    """One stage for :func:`convtool.shapes.budget.plan`, named as the table names it; a
    conv whose padding comes from --padding and makes it larger blames --padding."""
    from convtool.shapes import as_pair, budget

    label = f"stage {index} ({stage.describe()})"
    if stage.kind == "relu":
        return budget.Relu(label, "--stage")
    if stage.kind != "conv":
        return budget.Pool(label, "--stage", stage.size, stage.stride,
                           as_pair(stage.padding, "padding"), stage.ceil_mode)  # fmt: skip
    # a 2-D kernel gives one map, or one per input channel (0) with --color channels
    maps = 0 if stage.per_channel else 1
    kernels = tuple((k.weights.shape[0] if k.full else maps, *k.size) for k in stage.kernels)
    if stage.random is not None:  # C@K: C maps of the dilated K, on every input channel
        (count, (kh, kw)), (dh, dw) = stage.random, stage.dilation
        kernels = ((count, dh * (kh - 1) + 1, dw * (kw - 1) + 1),)
    option = "--stage"
    if not isinstance(stage.padding, str) and not _OWN_PADDING.search(stage.text):
        ph, pw = as_pair(stage.padding, "padding")
        if any(2 * p > k - 1 for _, *size in kernels for p, k in zip((ph, pw), size, strict=True)):
            option = "--padding"
    copies = stage.border != "zero"
    return budget.Conv(label, option, kernels, stage.stride, stage.padding, copies)


def _figure(cells: int, tile: int) -> Any:
    """A drawn figure of ``cells`` tiles: each cell a picture up to ``tile`` tall and twice
    as wide (:func:`convtool.pipeline.figures.tile_box`), with its titles, colour bar and
    gaps; drawn in 8 bits, then float32 for writing, quantised again."""
    from convtool.shapes import budget

    return budget.Array("a figure", (cells, 5 * tile // 2, tile, 3), 1 + 1 + 4 + 4 + 1 + 1)


def _figure_arrays(job: Any, options: Options, task: Task) -> list[Any]:
    """What the figures and stage pictures a task asks for keep until they are written."""
    import math

    from convtool.shapes import budget

    tile, results = options.tile, [s.result for s in job.steps]
    extra = []
    if task.panel is not None:  # the source's tile, a column per stage, a row per map
        shown = [(1, *job.source[1:])] + [(min(c, _SHOWN), h, w) for c, h, w in results]
        cells = len(shown) * max(c for c, _, _ in shown)
        arrays = [_figure(cells, tile)]
        arrays += [budget.Array("colour maps", (c, h, w, 3), 1) for c, h, w in shown]
        extra.append(budget.Extra(f"--panel {task.panel}", "--panel", tuple(arrays)))
    if task.grid is not None and results:
        c, h, w = results[min(options.grid_stage or len(results), len(results)) - 1]
        cells = c + math.isqrt(c) + 1  # rows of a square's side, the last one short
        arrays = (_figure(cells, tile), budget.Array("colour maps", (c, h, w, 3), 1))
        extra.append(budget.Extra(f"--grid {task.grid}", "--grid", arrays))
    if task.stages_dir is not None:
        # every stage's map as .npy, and as a picture per channel (8-bit, then float32)
        arrays = tuple(budget.Array("stage pictures", (c, h, w, 3), 1 + 4) for c, h, w in results)
        arrays += tuple(budget.Array("stage files", r, 4) for r in results)
        extra.append(budget.Extra(f"--save-stages {task.stages_dir}", "--save-stages", arrays))
    return extra


def size_plan(shape: tuple[int, int, int], options: Options, task: Task) -> Any:
    """The arrays running ``task`` on a source of ``shape`` = (C, H, W) makes, planned
    (:mod:`convtool.shapes.budget`): every stage's map, its scratch, and the figures."""
    from convtool.shapes import budget

    steps = [_size_step(i, stage) for i, stage in enumerate(options.stages, 1)]
    job = budget.plan(shape, steps)
    return job._replace(extra=tuple(_figure_arrays(job, options, task)))


def check_sizes(
    shape: tuple[int, int, int], options: Options, task: Task, *, floor: bool = False
) -> None:
    """Refuse (:class:`convtool.shapes.SizeError`) a task whose maps would be over
    ``--max-pixels`` or whose arrays over the machine's memory, on a source of ``shape``
    (``floor``: (1, 1, 1), the smallest, and the refusal holds for every picture)."""
    from convtool import imaging
    from convtool.shapes import budget

    limit = imaging.default_max_pixels() if options.max_pixels == -1 else options.max_pixels
    job = size_plan(shape, options, task)
    room = budget.machine_memory()
    room = None if room is None else room // max(options.workers, 1)
    budget.check(job, max_pixels=limit, memory=room, floor=floor)


def _label(source: Any) -> str:
    return source if isinstance(source, str) else getattr(source, "source", "<picture>")


def run_task(task: Task, options: Options) -> dict[str, Any]:
    """Read one picture, run the stages, write the files asked for; return its record.

    Everything is computed and drawn before the first file is written, and an
    existing file (without ``overwrite``) is refused before any is written.
    Raises io's ImageReadError/ImageWriteError or StageError with one line.
    """
    from convtool import imaging

    if isinstance(task.source, imaging.Image):
        image = task.source
    else:
        limit = imaging.DEFAULT if options.max_pixels == -1 else options.max_pixels
        image = imaging.read_image(task.source, max_pixels=limit)
    x, names = source_planes(image.data, options.color)
    check_sizes(x.shape, options, task)
    results = run_stages(x, options.stages, names, engine=_engine(x, options))
    name = os.path.basename(_label(image.source)) if image.source != "-" else "stdin"
    files: list[tuple[str, Callable[[], None], dict[str, Any]]] = []
    if task.output is not None:
        files.append(_final_map(task.output, results[-1], image, options))
    if task.panel is not None or task.grid is not None:
        files += _figures(task, x, results, name, options)
    if task.stages_dir is not None:
        files += _stage_files(task, results, options)
    if not options.overwrite:
        refuse_existing(path for path, _, _ in files)
    if task.stages_dir is not None:
        os.makedirs(task.stages_dir, exist_ok=True)
    for _, write, _ in files:
        write()
    return {
        "input": _label(image.source),
        "source": list(x.shape),
        "source_min": stats(x)[0],
        "source_max": stats(x)[1],
        "source_nonfinite": count_nonfinite(x),
        "stages": [r.record() for r in results],
        "nonfinite": results[-1].nonfinite,  # in the last stage's map, the result
        "outputs": [record for _, _, record in files],
    }


def _squeezed(data: np.ndarray) -> np.ndarray:
    """(H, W) for one channel, (C, H, W) for several: the layout .npy files get."""
    return data[0] if data.shape[0] == 1 else data


def _final_map(path: str, result: StageResult, image: Any, options: Options):
    """The last stage's map as a planned file: (path, writer, record)."""
    from convtool import imaging

    fmt = output_format(path, options.format, image.format)
    depth = output_depth(fmt, image.bit_depth, options.depth)
    data = result.data
    channels = data.shape[0]
    if fmt != "npy" and channels not in (1, 3):
        raise ValueError(
            f"the last stage gives {channels} channels; pictures take 1 or 3 (write .npy, "
            "or see each channel with --save-stages or --grid)"
        )
    y = data[0] if channels == 1 else data.transpose(1, 2, 0)  # pixels last, as apply maps
    post = PostProcess.chosen(options.map, depth)
    post.measure(y)
    y = post.mapped(y)
    record = post.record(result.shape, output=path, what="map")

    def write() -> None:
        if fmt != "npy":
            imaging.write_image(path, y, bit_depth=depth, overwrite=options.overwrite, format=fmt)
            return
        raw = np.ascontiguousarray(y if y.ndim == 2 else y.transpose(2, 0, 1), np.float32)
        buffer = BytesIO()
        np.save(buffer, raw, allow_pickle=False)
        imaging.atomic_write_bytes(path, buffer.getvalue(), overwrite=options.overwrite)

    return path, write, record


def _picture(path: str, pixels: np.ndarray, record: dict[str, Any], overwrite: bool):
    """A planned 8-bit picture file: (path, writer, record)."""
    from convtool import imaging

    values = pixels.astype(np.float32) / np.float32(255)  # back to the same 8-bit values

    def write() -> None:
        imaging.write_image(path, values, bit_depth=8, overwrite=overwrite)

    return path, write, {"output": path, **record}


def _figures(task: Task, x: np.ndarray, results: list[StageResult], name: str, options: Options):
    from convtool.pipeline import figures

    names = figures.stage_names([r.stage.kind for r in results])
    look = {
        "cmap": options.cmap,
        "tile": options.tile,
        "columns": options.columns,
        "stretch": options.stretch,
    }
    out = []
    if task.panel is not None:
        title = options.title
        if title is None:
            title = f"{name}: " + " -> ".join(r.stage.kind for r in results)
        maps = [(n, r.data, r.labels) for n, r in zip(names, results, strict=True)]
        figure = figures.panel_figure(x, maps, title=title, **look)
        record = {"what": "panel", "size": list(figure.size)}
        out.append(_picture(task.panel, np.asarray(figure), record, options.overwrite))
    if task.grid is not None:
        index = options.grid_stage or len(results)
        if not 1 <= index <= len(results):
            raise ValueError(f"--grid-stage {index}: the chain has {len(results)} stage(s)")
        r = results[index - 1]
        title = options.title
        if title is None:
            title = f"{name}: stage {index}, {names[index - 1]} {figures.shape_text(r.shape)}"
        figure = figures.grid_figure(r.data, r.labels, title=title, **look)
        record = {"what": "grid", "stage": index, "size": list(figure.size)}
        out.append(_picture(task.grid, np.asarray(figure), record, options.overwrite))
    return out


def _stage_files(task: Task, results: list[StageResult], options: Options):
    """NN-KIND.npy and NN-KIND.png per stage (NN-KIND.<channel>.png for several channels)."""
    from convtool import imaging
    from convtool.pipeline import figures

    out = []
    for r in results:
        base = _stage_stem(task.stages_dir, task.prefix, r.index, r.stage.kind)
        raw = np.ascontiguousarray(_squeezed(r.data))
        # the .npy before the stage's pictures: a run that wrote any of its files wrote
        # one named up front (TaskLayout), which tells a rerun on a cluster

        def write(path: str = base + ".npy", raw: np.ndarray = raw) -> None:
            imaging.save_array(path, raw, overwrite=options.overwrite)

        out.append(
            (base + ".npy", write, {"output": base + ".npy", "what": "stage", "stage": r.index})
        )
        slugs = [KernelSpec(np.zeros((1, 1)), label).slug for label in r.labels]
        suffixes = [""] if len(slugs) == 1 else ["." + s for s in unique_slugs(slugs)]
        for c, suffix in enumerate(suffixes):
            record = {"what": "stage", "stage": r.index, "channel": r.labels[c]}
            pixels = figures.colorize(r.data[c], options.cmap, options.stretch)
            out.append(_picture(f"{base}{suffix}.png", pixels, record, options.overwrite))
    return out
