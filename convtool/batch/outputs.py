"""Output planning for every command: names, targets, formats and depths, refusals.

Everything here runs before a picture is read: outputs are named, the target
given (a file, a folder, or '-') is checked, two inputs writing one file or an
output replacing an input are refused (:class:`PlanError`, naming the option to
blame), and each output's format and depth are settled. :func:`refuse_existing`
is the one "exists; pass --overwrite" check the tasks make before writing.

:class:`Files` and :class:`Layout` say where a task keeps its paths, for the
cluster and for the tasks' own layouts.

Output names
------------
<stem> is the input's file name without its last extension (``stdin`` for '-');
<ext> the one the format gives, else the input's (``.png`` for GIF; from the
content for standard input). ``-o DIR/``, an existing folder, or several
outputs in all name ``DIR/<stem>.<slug><ext>``; no ``-o`` the same beside each
input (standard input: standard output); ``-o FILE`` that file.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, Protocol

from convtool._shared import same_file

__all__ = [
    "FORMAT_HINT",
    "Files",
    "Layout",
    "OutputClaims",
    "PlanError",
    "check_depths",
    "check_folder",
    "check_format",
    "figure_paths",
    "is_folder",
    "name_outputs",
    "output_depth",
    "output_format",
    "refuse_existing",
    "stem",
    "unique_slugs",
    "written_since",
]

FORMAT_HINT = "use png, jpg, tif, bmp, webp or npy"


class PlanError(ValueError):
    """Outputs that cannot be named as asked; ``option`` is the option to blame, if one."""

    def __init__(self, message: str, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option


# ----------------------------------------------------------------------------- paths


class Files(NamedTuple):
    """The paths one task reads and writes, as the cluster, its workers and its tidying see them.

    ``outputs`` are the files named before the task runs; a run that writes
    anything writes one of them first, so that a rerun can tell. ``named`` are
    ``(folder, stem)`` pairs for files the task names as it runs, each
    ``folder/stem.<something>``.
    """

    source: str | None  # the file read (None: a picture already in memory)
    outputs: tuple[str, ...]
    named: tuple[tuple[str, str], ...] = ()


class Layout(Protocol):
    """Where one kind of task keeps its paths: how the cluster finds and moves them."""

    def files(self, task: Any) -> Files:
        """The task's paths."""

    def move(self, task: Any, to: Callable[[str], str]) -> Any:
        """The task with every path ``p`` it reads or writes (files, folders) made ``to(p)``."""


def stem(source: str) -> str:
    """The input's file name without its last extension; ``stdin`` for '-'."""
    if source == "-":
        return "stdin"
    name = os.path.basename(os.path.normpath(source))
    root, _ = os.path.splitext(name)
    return root or name


def _extension(source: str, image: Any, fmt: str | None) -> str:
    from convtool.imaging import WRITE_EXTENSIONS, extension_for, written_as

    if fmt is not None:
        return "." + fmt.lower().lstrip(".")
    if image is not None:  # standard input: what the bytes were
        kind = image.format.lower()
        return extension_for(written_as(kind))
    ext = os.path.splitext(source)[1]
    return ext if ext.lower() in WRITE_EXTENSIONS else ".png"


def is_folder(target: str, count: int) -> bool:
    """Whether ``target`` names a folder for ``count`` outputs: DIR/, an existing folder, or
    any target of several."""
    return count > 1 or target.endswith(("/", os.sep)) or os.path.isdir(target)


def make_folder(target: str, option: str) -> bool:
    """Create ``target`` (and its parents) when it is written ``DIR/`` and missing, as
    ``mkdir -p``; whether it was made. Raises PlanError, blaming ``option``."""
    if not target.endswith(("/", os.sep)) or os.path.isdir(target):
        return False
    check_folder(target, target, option)
    try:
        os.makedirs(target, exist_ok=True)
    except OSError as e:
        raise PlanError(f"cannot create the folder {target!r}: {e.strerror or e}", option) from None
    return True


def _several_into_one(output: str, count: int, results: int) -> PlanError:
    """-o names one file that does not exist, for several results: say the ways out
    (combining, where there are several kernels; a folder always)."""
    name, ext = os.path.splitext(output.rstrip("/" + os.sep))
    folder = (
        f"write one file each into a folder (-o {name if ext else output}/, created if missing)"
    )
    if results > 1:
        ways = (
            f"combine the kernels into one picture (--combine magnitude, max or sum), or {folder}"
        )
    else:
        ways = folder
    return PlanError(
        f"-o {output} names one file, and this run makes {count} results: {ways}", "-o"
    )


def refuse_existing(paths: Iterable[str]) -> None:
    """Refuse to replace a file (ImageWriteError): the check before anything is written."""
    from convtool.imaging import exists_error

    for path in paths:
        if path != "-" and os.path.lexists(path):
            raise exists_error(path)


class OutputClaims:
    """The files a run writes, by input: two inputs may not write one, nor a run an input."""

    def __init__(self) -> None:
        self.by: dict[str, str] = {}  # absolute path (or pattern) -> the input writing it

    def claim(self, key: str, source: str, shown: str) -> None:
        """``source`` writes ``key`` (an absolute path, shown to the user as ``shown``)."""
        if key in self.by:
            raise PlanError(
                f"{self.by[key]} and {source} would both write {shown}; "
                "give the inputs different names or write them to different folders"
            )
        self.by[key] = source

    def refuse_inputs(
        self, inputs: Sequence[str], same: Callable[[str, str], bool], advice: str
    ) -> None:
        """Refuse a claimed path that ``same`` finds to be an existing input."""
        for source in inputs:
            if source == "-" or not os.path.exists(source):
                continue
            for key in self.by:
                if same(key, source):
                    raise PlanError(f"output {key} is an input; {advice}")


# ------------------------------------------------------------------ formats and depths


def check_format(fmt: str | None) -> str | None:
    """The format ``--format`` names (None if not given); PlanError on '--format' if unknown."""
    if fmt is None:
        return None
    try:
        return output_format("-", fmt)
    except ValueError:
        raise PlanError(f"unknown format {fmt!r}; {FORMAT_HINT}", "--format") from None


def output_format(path: str, fmt: str | None, read_as: str | None = None) -> str | None:
    """The format an output is written in: ``fmt``'s if given, else its extension's.

    Standard output ('-') takes the format the picture was read in, ``read_as``
    (GIF as PNG); None while that is not known. Raises ValueError for an
    unknown format or extension.
    """
    from convtool.imaging import format_for, format_named, written_as

    if fmt is not None:
        return format_named(fmt)
    if path == "-":
        return None if read_as is None else written_as(read_as)
    return format_for(path, writing=True)


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


def check_depths(tasks: Iterable[Any], options: Any) -> None:
    """Refuse ``options.depth`` where an output's format cannot take it (PlanError on '--depth').

    ``tasks`` have ``outputs`` with a ``path``; ``options`` a ``depth`` and a ``format``.
    """
    if options.depth is None:
        return
    for task in tasks:
        for out in task.outputs:
            fmt = output_format(out.path, options.format)
            if fmt is None:  # standard output: the picture read decides
                continue
            try:
                output_depth(fmt, 8, options.depth)
            except ValueError as e:
                raise PlanError(str(e), "--depth") from None


# ---------------------------------------------------------------------------- naming


def _check_target(
    output: str | None, count: int, folder_mode: bool, fmt: str | None, results: int = 1
) -> None:
    """Refuse an ``-o`` that cannot work, before anything is read."""
    if output == "-":
        if count != 1:
            raise PlanError(f"-o - writes one picture to standard output; this run makes {count}")
        return
    if output is None:
        return
    if folder_mode:
        make_folder(output, "-o")
        if not os.path.isdir(output):
            bare = output.rstrip("/" + os.sep) or output  # 'ok.png/' names the file ok.png
            many = count > 1 and not output.endswith(("/", os.sep))
            why = f"{count} outputs need a folder, and " if many else ""
            if os.path.exists(bare):
                what = f"{bare!r} is not a folder"
                raise PlanError(why + (what if bare == output else f"{output!r}: {what}"), "-o")
            if many:
                raise _several_into_one(output, count, results)
            raise PlanError(f"{output!r} does not exist", "-o")  # (not reached: made above)
        return
    folder = os.path.dirname(output) or "."
    if not os.path.isdir(folder):
        if os.path.exists(folder):
            raise PlanError(f"the folder of {output!r}, {folder!r}, is not a folder", "-o")
        raise PlanError(f"the folder of {output!r} does not exist; create it first", "-o")
    from convtool.imaging import format_for, format_named

    try:
        named = format_for(output, writing=True)
    except ValueError as e:
        if fmt is None:
            raise PlanError(f"{e} (or give --format)", "-o") from None
        return
    if fmt is not None and format_named(fmt) != named:
        raise PlanError(f"--format {fmt} disagrees with -o {output}; give one of them")


def name_outputs(
    inputs: Sequence[str],
    slugs: Sequence[str],
    output: str | None = None,
    fmt: str | None = None,
    stdin_image: Any = None,
) -> list[list[str]]:
    """Every output's path, per input and per slug (see the module docstring); '-' is
    standard output. ``stdin_image`` is the picture read from '-', if any. Raises PlanError.
    """
    count = len(inputs) * len(slugs)
    folder_mode = output is None or (
        output != "-" and (output.endswith(("/", os.sep)) or os.path.isdir(output) or count > 1)
    )
    _check_target(output, count, folder_mode, fmt, len(slugs))
    claims = OutputClaims()
    paths = []
    for source in inputs:
        image = stdin_image if source == "-" else None
        row = []
        for slug in slugs:
            if not folder_mode:
                path = output
            elif output is None and source == "-":
                if count != 1:
                    raise PlanError("several outputs from standard input need -o DIR/")
                path = "-"
            else:
                folder = output if output is not None else os.path.dirname(source)
                name = f"{stem(source)}.{slug}{_extension(source, image, fmt)}"
                path = os.path.join(folder, name)
            row.append(path)
            if path != "-":
                claims.claim(os.path.abspath(path), source, path)
        paths.append(row)
    claims.refuse_inputs(inputs, same_file, "choose another -o")
    return paths


def check_folder(folder: str, target: str, option: str) -> None:
    """Refuse a ``folder`` (for ``target``) that is a file, or lies under one."""
    path = os.path.normpath(folder)
    while not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent in ("", path):
            return
        path = parent
    if os.path.isdir(path):
        return
    where = "" if path == os.path.normpath(target) else f"{target!r}: "
    raise PlanError(f"{where}{path!r} is not a folder", option)


def figure_paths(
    inputs: Sequence[str], target: str | None, suffix: str, option: str
) -> list[str | None]:
    """One figure per input: the file given, or DIR/<stem>.<suffix>.png.

    Raises PlanError, blaming ``option``.
    """
    if target is None:
        return [None] * len(inputs)
    make_folder(target, option)
    if not is_folder(target, len(inputs)):
        folder = os.path.dirname(target) or "."
        check_folder(folder, target, option)
        if not os.path.isdir(folder):
            raise PlanError(f"the folder of {target!r} does not exist; create it first", option)
        from convtool.imaging import format_for

        try:
            kind = format_for(target, writing=True)
        except ValueError as e:
            raise PlanError(str(e), option) from None
        if kind == "npy":
            raise PlanError(f"{target}: a figure is a picture, not .npy", option)
        return [target]
    check_folder(target, target, option)
    if not os.path.isdir(target):
        raise PlanError(
            f"{len(inputs)} inputs need a folder and {target!r} does not exist; give "
            f"{option} {target.rstrip('/' + os.sep)}/ to create it",
            option,
        )
    return [os.path.join(target, f"{stem(s)}.{suffix}.png") for s in inputs]


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


def written_since(tasks: Sequence[Any], since: float) -> tuple[set[int], int]:
    """Which of ``tasks`` (with ``outputs`` that have a ``path``) have every output file
    written since ``since``, and how many output files are.

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
