"""``convtool apply``'s unit of work and its output names, without click.

:func:`plan_outputs` turns inputs, kernels and ``-o`` into one :class:`Task` per
picture, following the naming rules below; :func:`run_task` reads one picture,
filters it with :mod:`convtool.filters` and writes its outputs, returning one
record per output. Tasks pickle, so :func:`convtool.batch.run_batch` can hand
them to worker processes.

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

import contextlib
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from convtool.filtering import (
    Prepared,
    clipped_share,
    combine,
    correlate,
    map_values,
    resample_alpha,
    stats,
)
from convtool.shapes import PaddingSpec

__all__ = [
    "LARGE_WORK",
    "Options",
    "Output",
    "PlanError",
    "Task",
    "check_depths",
    "engine_for",
    "output_depth",
    "plan_outputs",
    "run_task",
    "unique_slugs",
    "work_of",
    "written_since",
]


class PlanError(ValueError):
    """Outputs that cannot be named as asked; ``option`` is the option to blame, if one."""

    def __init__(self, message: str, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option


# Engine choice. The compiled core (one thread, generic x86-64 code) runs about
# 15 GMAC/s here, the JIT (host CPU code, every core) about 45, after ~0.45 s of
# numba start-up: past ~1e10 multiply-adds the JIT wins. The two round differently
# in the last bit (host code fuses multiply-adds), so the choice rests on the
# picture at hand alone, never on the pictures before it: a batch then gives the
# same bytes whatever --jobs splits it into.
LARGE_WORK = 1e10


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
    engine: str = "auto"  # 'auto', 'aot' or 'jit'


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


def output_depth(fmt: str, input_depth: int, requested: int | None = None) -> int:
    """The bit depth an output gets: ``requested`` if the format takes it, else the input's
    as far as the format allows (8-bit-only formats get 8, PNG at most 16, .npy float)."""
    from convtool.imaging import WRITE_BIT_DEPTHS

    if fmt == "npy":
        if requested not in (None, 32):
            raise ValueError(f".npy holds raw float32 values; --depth {requested} does not apply")
        return 32
    allowed = WRITE_BIT_DEPTHS[fmt]
    if requested is not None:
        if requested not in allowed:
            depths = " or ".join(map(str, allowed))
            raise ValueError(f"{fmt.upper()} takes depth {depths}, not {requested}")
        return requested
    return max(d for d in allowed if d <= max(input_depth, 8))


def work_of(image_shape: tuple[int, ...], options: Options, needed: set[int]) -> float:
    """Multiply-adds the kernels ``needed`` take on a picture of ``image_shape``."""
    h, w = image_shape[:2]
    channels = 1 if len(image_shape) == 2 else image_shape[2]
    total = 0.0
    for k in needed:
        weights = options.kernels[k].weights
        fan = channels if options.color != "gray" or weights.ndim == 4 else 1
        outs = weights.shape[0] if weights.ndim == 4 else 1
        total += h * w * fan * outs * weights.shape[-2] * weights.shape[-1]
    return total / (options.stride[0] * options.stride[1])


def engine_for(options: Options, work: float) -> Any:
    """The engine that suits ``work`` (see LARGE_WORK), to pass to correlate: the
    compiled core where it is built, else the JIT."""
    from convtool.core import engine

    if options.engine == "jit" or (options.engine == "auto" and work > LARGE_WORK):
        return engine.jit()
    return engine.compiled(build_missing=False) or engine.jit()


def _label(source: Any) -> str:
    return source if isinstance(source, str) else getattr(source, "source", "<picture>")


def run_task(task: Task, options: Options) -> list[dict[str, Any]]:
    """Read one picture, filter it, and write every output; one record per output.

    Raises on the first failure (io's ImageReadError/ImageWriteError, ValueError),
    with a one-line message; outputs already written stay (each is whole).
    """
    from convtool import imaging

    if not options.overwrite:
        for out in task.outputs:
            if out.path != "-" and os.path.lexists(out.path):
                raise imaging.ImageWriteError(f"{out.path} exists; pass --overwrite to replace it")
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
    lo, hi = stats(y)
    nonfinite = int(y.size - np.count_nonzero(np.isfinite(y)))
    if options.format is not None:
        fmt = imaging.format_for(f"output.{options.format.lstrip('.')}", writing=True)
    elif out.path == "-":
        fmt = {"gif": "png"}.get(image.format.lower(), image.format.lower())
    else:
        fmt = imaging.format_for(out.path, writing=True)
    depth = output_depth(fmt, image.bit_depth, options.depth)
    how = options.map if options.map is not None or depth == 32 else "clip"
    share = 0.0
    if how == "clip" and depth != 32:  # io clips (and zeroes NaN) as it quantises
        share = clipped_share(y)
    elif how is not None:
        y, share = map_values(y, how)
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
            bit_depth=depth,
            overwrite=options.overwrite,
            format=fmt,
        )
    return {
        "input": _label(image.source),
        "output": out.path,
        "kernel": out.label,
        "shape": list(y.shape),
        "min": lo,
        "max": hi,
        "map": how or "none",
        "clipped": share,
        "depth": depth,
        "nonfinite": nonfinite,
    }


# ----------------------------------------------------------------------------- names


def _stem(source: str) -> str:
    if source == "-":
        return "stdin"
    name = os.path.basename(os.path.normpath(source))
    stem, _ = os.path.splitext(name)
    return stem or name


def _extension(source: str, image: Any, fmt: str | None) -> str:
    from convtool.imaging import WRITE_EXTENSIONS

    if fmt is not None:
        return "." + fmt.lower().lstrip(".")
    if image is not None:  # standard input: what the bytes were
        kind = image.format.lower()
        return {"jpeg": ".jpg", "tiff": ".tif", "gif": ".png"}.get(kind, "." + kind)
    ext = os.path.splitext(source)[1]
    return ext if ext.lower() in WRITE_EXTENSIONS else ".png"


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def _check_target(output: str | None, count: int, folder_mode: bool, fmt: str | None) -> None:
    """Refuse an ``-o`` that cannot work, before anything is read."""
    if output == "-":
        if count != 1:
            raise PlanError(f"-o - writes one picture to standard output; this run makes {count}")
        return
    if output is None:
        return
    if folder_mode:
        if not os.path.isdir(output):
            bare = output.rstrip("/" + os.sep) or output  # 'ok.png/' names the file ok.png
            many = count > 1 and not output.endswith(("/", os.sep))
            why = f"{count} outputs need a folder, and " if many else ""
            if os.path.exists(bare):
                what = f"{bare!r} is not a folder"
                raise PlanError(why + (what if bare == output else f"{output!r}: {what}"), "-o")
            raise PlanError(
                f"{why}{output!r} does not exist; create the folder first (as mogrify -path "
                "requires)",
                "-o",
            )
        return
    folder = os.path.dirname(output) or "."
    if not os.path.isdir(folder):
        if os.path.exists(folder):
            raise PlanError(f"the folder of {output!r}, {folder!r}, is not a folder", "-o")
        raise PlanError(f"the folder of {output!r} does not exist; create it first", "-o")
    from convtool.imaging import format_for

    try:
        named = format_for(output, writing=True)
    except ValueError as e:
        if fmt is None:
            raise PlanError(f"{e} (or give --format)", "-o") from None
        return
    if fmt is not None and format_for(f"x.{fmt.lstrip('.')}", writing=True) != named:
        raise PlanError(f"--format {fmt} disagrees with -o {output}; give one of them")


def plan_outputs(
    inputs: list[str],
    names: list[str],
    output: str | None = None,
    combine: str | None = None,
    fmt: str | None = None,
    stdin_image: Any = None,
) -> list[Task]:
    """One :class:`Task` per input, every output named (see the module docstring).

    ``names`` are the kernels' slugs, made distinct (:func:`unique_slugs`);
    ``stdin_image`` is the picture read from '-', if any. Raises PlanError.
    """
    if combine is not None:
        groups = [(tuple(range(len(names))), "+".join(names) + f".{combine}")]
    else:
        groups = [((k,), name) for k, name in enumerate(names)]
    count = len(inputs) * len(groups)
    folder_mode = output is None or (
        output != "-" and (output.endswith(("/", os.sep)) or os.path.isdir(output) or count > 1)
    )
    _check_target(output, count, folder_mode, fmt)
    tasks, seen = [], {}
    for source in inputs:
        image = stdin_image if source == "-" else None
        outs = []
        for kernels, slug in groups:
            if not folder_mode:
                path = output
            elif output is None and source == "-":
                if count != 1:
                    raise PlanError("several outputs from standard input need -o DIR/")
                path = "-"
            else:
                folder = output if output is not None else os.path.dirname(source)
                path = os.path.join(
                    folder, f"{_stem(source)}.{slug}{_extension(source, image, fmt)}"
                )
            label = names[kernels[0]] if combine is None else f"{combine}({', '.join(names)})"
            outs.append(Output(path, kernels, combine, label))
            if path == "-":
                continue
            key = os.path.abspath(path)
            if key in seen:
                raise PlanError(
                    f"{seen[key]} and {source} would both write {path}; "
                    "give the inputs different names or write them to different folders"
                )
            seen[key] = source
        tasks.append(Task(source if image is None else image, tuple(outs)))
    for source in inputs:
        if source != "-" and os.path.exists(source):
            for path in seen:
                if _same_file(path, source):
                    raise PlanError(f"output {path} is an input; choose another -o")
    return tasks


def written_since(tasks: list[Task], since: float) -> tuple[set[int], int]:
    """Which pictures of ``tasks`` have every output file written since ``since``, and
    how many output files are.

    After a Ctrl-C the files on disk, not the outcomes told so far, say how far a
    run got: a picture can finish its files just as the stop comes, before its
    outcome is told. ``since`` is a ``time.time()`` taken before the run; a file
    counts when it exists and was modified after it (less a file system clock
    tick). Standard output is not a file and is left out.
    """
    pictures: set[int] = set()
    outputs = 0
    for index, task in enumerate(tasks):
        done = 0
        for out in task.outputs:
            with contextlib.suppress(OSError):
                done += out.path != "-" and os.stat(out.path).st_mtime >= since - 0.05
        outputs += done
        if done and done == len(task.outputs):
            pictures.add(index)
    return pictures, outputs


def unique_slugs(slugs: list[str]) -> list[str]:
    """Slugs made distinct (sobel_x, sobel_x -> sobel_x, sobel_x-2), so names never collide."""
    out: list[str] = []
    for slug in slugs:
        name, n = slug, 1
        while name in out:
            n += 1
            name = f"{slug}-{n}"
        out.append(name)
    return out


def check_depths(tasks: list[Task], options: Options) -> None:
    """Refuse a ``depth`` that an output's format cannot take (PlanError on '--depth')."""
    from convtool.imaging import format_for

    if options.depth is None:
        return
    for task in tasks:
        for out in task.outputs:
            if options.format is not None:
                fmt = format_for(f"output.{options.format.lstrip('.')}", writing=True)
            elif out.path == "-":
                continue
            else:
                fmt = format_for(out.path, writing=True)
            try:
                output_depth(fmt, 8, options.depth)
            except ValueError as e:
                raise PlanError(str(e), "--depth") from None
