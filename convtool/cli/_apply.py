"""`convtool apply`: filter pictures with named or custom kernels, one or many."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import click

from convtool.cli._params import (
    BORDERS,
    CLIP_NOTE_SHARE,
    MAPS,
    FiniteFloatParam,
    PaddingParam,
    PairParam,
    max_pixels_option,
)
from convtool.cli._scale import check as _check_scale
from convtool.cli._scale import run_batch as _run_batch
from convtool.cli._scale import scheduler_option, tile_option

COLORS = ("channels", "gray", "sum")
COMBINES = ("magnitude", "max", "sum")


# ------------------------------------------------------------------ reporting


class _Reporter:
    """Prints records, errors and notes; a rich progress bar on a terminal."""

    def __init__(self, total: int, as_json: bool, show_bar: bool) -> None:
        self.total, self.as_json = total, as_json
        self.failed = self.written = 0
        self.clipped: list[dict[str, Any]] = []  # records whose mapping clipped a lot
        self.nonfinite: list[dict[str, Any]] = []  # records whose result holds NaN or inf
        self.progress = self.task = None
        if show_bar:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self.progress = Progress(
                TextColumn("filtering"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                auto_refresh=False,  # no refresh thread: the pool may fork after this
                transient=True,
            )
            self.task = self.progress.add_task("apply", total=total)

    def __enter__(self) -> _Reporter:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.stop()

    def err(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text, markup=False, highlight=False)
        else:
            click.echo(text, err=True)

    def progressed(self, done: int, total: int, outcome: Any) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=done, refresh=True)

    def outcome(self, outcome: Any, task: Any) -> None:
        import json
        import math

        if not outcome.ok:
            self.failed += 1
            message = outcome.error
            names = [_source_label(task.source), *(o.path for o in task.outputs)]
            if not any(name in message for name in names if name != "-"):
                message = f"{names[0]}: {message}"
            self.err(f"convtool: error: {message}")
            if self.as_json:
                for out in task.outputs:
                    record = {"input": names[0], "output": out.path, "kernel": out.label}
                    click.echo(json.dumps({**record, "error": outcome.error}))
            return
        for record in outcome.record:
            self.written += 1
            if record["clipped"] >= CLIP_NOTE_SHARE and record["map"] in ("clip", "abs", "offset"):
                self.clipped.append(record)
            if record.get("nonfinite"):
                self.nonfinite.append(record)
            if self.as_json:
                clean = {
                    k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                    for k, v in record.items()
                }
                click.echo(json.dumps(clean))

    def nonfinite_warning(self) -> None:
        """One line on stderr when results hold NaN or infinities, and what became of them."""
        if not self.nonfinite:
            return
        raw = {r["depth"] == 32 and r["map"] == "none" for r in self.nonfinite}
        fate = {
            frozenset({True}): "kept as they are",
            frozenset({False}): "NaN written as 0, infinities clipped",
        }.get(
            frozenset(raw), "kept in float outputs; in 8/16-bit ones NaN is 0, infinities clipped"
        )
        first = self.nonfinite[0]
        where = "standard output" if first["output"] == "-" else first["output"]
        n = first["nonfinite"]
        count = f"{n:,} value{'s' if n != 1 else ''}"
        if len(self.nonfinite) == 1:
            verb = "are" if n != 1 else "is"
            text = f"{where}: {count} of the result {verb} NaN or infinite ({fate})"
        else:
            text = (
                f"{len(self.nonfinite)} of {self.written} outputs hold NaN or infinite values "
                f"({fate}), {count} in {where} first"
            )
        self.err(
            f"convtool: warning: {text}; they come from NaN or infinity in the input, or from "
            "values beyond float32's range"
        )

    def clip_note(self, explicit_map: bool) -> None:
        """One line on stderr when clipping changed a sizeable share, naming what keeps them."""
        notes = [r for r in self.clipped if not (explicit_map and r["map"] == "clip")]
        if not notes:
            return
        keep = ["normalize"]  # always fits; abs and offset only for some ranges
        lo = min((r["min"] for r in notes), default=0.0)
        hi = max((r["max"] for r in notes), default=0.0)
        if all(r["map"] == "clip" for r in notes):
            if max(-lo, hi) <= 1:
                keep.insert(0, "abs")
            if lo >= -0.5 and hi <= 0.5:
                keep.insert(1, "offset")
        options = " or ".join([", ".join(keep[:-1]), keep[-1]] if len(keep) > 1 else keep)
        verb = "keeps" if len(keep) == 1 else "keep"
        first = notes[0]
        where = "standard output" if first["output"] == "-" else first["output"]
        if len(notes) == 1 and self.written == 1:
            text = f"clipping to [0, 1] changed {first['clipped']:.0%} of the pixels of {where}"
        else:
            worst = max(r["clipped"] for r in notes)
            text = (
                f"clipping to [0, 1] changed over {CLIP_NOTE_SHARE:.0%} of the pixels in "
                f"{len(notes)} of {self.written} outputs (up to {worst:.0%})"
            )
        self.err(f"convtool: note: {text}; --map {options} {verb} them, .npy the raw values")


# ------------------------------------------------------------------ the command


@click.command(context_settings={"max_content_width": 100})
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option(
    "-k",
    "--kernel",
    "specs",
    multiple=True,
    required=True,
    metavar="SPEC",
    help='Kernel: a name (convtool kernels), inline rows "0,-1,0; -1,5,-1; 0,-1,0", '
    '"3x3: ...", or @FILE (.txt .csv .json .npy). Repeat for several.',
)
@click.option(
    "-o",
    "--output",
    metavar="PATH",
    help="Output file, folder (DIR/, must exist), or - for standard output. "
    "Default: beside each input, named as below.",
)
@click.option(
    "--color",
    type=click.Choice(COLORS),
    help="Colour handling for 2-D kernels: "
    "each channel (channels, default), ITU-R 601 luma first (gray), or one map "
    "summed over the channels (sum).",
)
@click.option(
    "--border",
    type=click.Choice(BORDERS),
    default="zero",
    show_default=True,
    help="Outside the picture: zeros, reflect (dcba|abcd), mirror (dcb|abcd), "
    "replicate (aaaa|abcd) or wrap.",
)
@click.option(
    "--padding",
    type=PaddingParam(),
    default="same",
    metavar="same|valid|N|HxW",
    show_default=True,
    help="'same' (output size = input size / stride), 'valid' (none), N or HxW.",
)
@click.option(
    "--stride",
    type=PairParam(),
    default="1",
    metavar="S|SHxSW",
    show_default=True,
    help="Step between windows: S or SHxSW.",
)
@click.option(
    "--flip", is_flag=True, help="Rotate the kernel 180 degrees (mathematical convolution)."
)
@click.option("--normalize", is_flag=True, help="Divide the kernel by its sum (where not zero).")
@click.option(
    "--scale",
    type=FiniteFloatParam(),
    default=1.0,
    show_default=True,
    help="Multiply the kernel by F.",
    metavar="F",
)
@click.option(
    "--bias",
    type=FiniteFloatParam(),
    metavar="B",
    help="Add B to every result (replaces a bias from a JSON kernel file).",
)
@click.option(
    "--map",
    "value_map",
    type=click.Choice(MAPS),
    help="Values outside [0, 1]: clip (default for 8/16-bit outputs), abs, normalize "
    "(min..max to 0..1) or offset (+0.5). Float outputs are raw unless given.",
)
@click.option(
    "--combine",
    type=click.Choice(COMBINES),
    help="Several kernels into one picture: sqrt of the sum of squares, max, or sum.",
)
@click.option(
    "--depth",
    type=click.Choice(["8", "16", "32"]),
    help="Bits per sample of PNG/TIFF outputs (32: float TIFF). Default: the input's.",
)
@click.option(
    "--format",
    "fmt",
    metavar="EXT",
    help="Output format for generated names and '-': png, jpg, tif, bmp, webp, npy.",
)
@click.option("--overwrite", is_flag=True, help="Replace existing outputs (never an input).")
@click.option(
    "-j",
    "--jobs",
    "n_jobs",
    type=click.IntRange(min=0),
    default=1,
    metavar="N",
    show_default=True,
    help="Pictures processed in parallel (0: one per CPU).",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON record per output on standard output."
)
@max_pixels_option
@tile_option
@scheduler_option
def apply(
    inputs,
    specs,
    output,
    color,
    border,
    padding,
    stride,
    flip,
    normalize,
    scale,
    bias,
    value_map,
    combine,
    depth,
    fmt,
    overwrite,
    n_jobs,
    as_json,
    max_pixels,
    tile,
    scheduler,
):
    """Filter pictures with named or custom kernels.

    INPUT is a picture (PNG, JPEG, TIFF, BMP, WebP, GIF; 8 or 16 bits; grey,
    RGB, RGBA, palette), a .npy float array (H, W) or (H, W, C), or - for
    standard input. Kernels correlate (no flip), as in the chapter and in
    OpenCV; alpha is carried through untouched.

    \b
    Output names:
      one input, one result, -o FILE   FILE (its extension sets the format)
      -o DIR/, an existing DIR, or     DIR/<stem>.<kernel>.<ext>
        several inputs or kernels
      no -o                            <input's folder>/<stem>.<kernel>.<ext>
      --combine                        <stem>.<k1>+<k2>.<how>.<ext>
    <kernel> is the kernel's name made safe (gaussian:7,1.5 -> gaussian_7_1.5,
    sobel_x@90 -> sobel_x_r90, a file's stem, custom for inline); <ext> is
    --format's, else the input's (.png for GIF and standard input's PNG). DIR
    must exist. Existing files are kept unless --overwrite; an input is never
    written.

    \b
    Values: PNG and TIFF keep the input's depth (16-bit stays 16-bit), JPEG,
    BMP and WebP are 8-bit; values are clipped to [0, 1] unless --map says
    otherwise. .npy and --depth 32 TIFF keep the raw float32 result.
    For even kernel sizes, 'same' padding puts the extra row or column after
    (bottom, right), as torch; SciPy and OpenCV put it before.

    A picture that fails is reported on stderr and the others are still
    written (exit code 1 at the end); Ctrl-C leaves only whole files.

    \b
    Examples:
      convtool apply photo.png -k sobel_x -o edges.png
      convtool apply photo.png -k sobel_x -k sobel_y --combine magnitude -o mag.png
      convtool apply a.png b.png photos/*.jpg -k blur -o outdir/ --jobs 4
      convtool apply disc.png -k embossing --color gray --map offset -o emboss.png
      convtool apply scan.tif -k "0,-1,0; -1,5,-1; 0,-1,0" --border replicate -o sharp.tif
      convtool apply in.png -k gaussian:7 -o raw.npy        # raw float32, for convtool fit
      cat in.png | convtool apply - -k sharpen -o - > out.png
      convtool apply map.tif -k gaussian:7 -o out.tif --tile 1024  # larger than memory
      convtool apply photos/*.jpg -k blur -o out/ --scheduler tcp://host:8786  # Dask
    """
    if "numpy" not in sys.modules:
        # no linear algebra here: spare OpenBLAS's thread pool (~40 ms of start-up and
        # exit, and CPU the filter needs on a small machine)
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import functools

    from convtool import filtering
    from convtool.batch import apply_task, tiled
    from convtool.core import engine
    from convtool.kernels import KernelSpecError, parse_kernel_spec

    kernels = []
    for spec in specs:
        try:
            parsed = parse_kernel_spec(spec)
        except KernelSpecError as e:
            raise click.BadParameter(str(e), param_hint="'-k'") from None
        kernels.append(
            filtering.prepare_kernel(
                parsed.weights,
                name=parsed.name,
                slug=parsed.slug,
                bias=parsed.bias if bias is None else bias,
                normalize=normalize,
                scale=scale,
                flip=flip,
            )
        )
        _check_float32(kernels[-1])
    _check_usage(kernels, inputs, color, combine, as_json, output, fmt)
    options = apply_task.Options(
        kernels=tuple(kernels),
        color=color or "channels",
        border=border,
        padding=padding,
        stride=stride,
        map=value_map,
        depth=None if depth is None else int(depth),
        format=fmt,
        overwrite=overwrite,
        max_pixels=-1 if max_pixels is None else (max_pixels or None),
    )
    stdin_image = _read_stdin(max_pixels) if "-" in inputs else None
    try:
        slugs = apply_task.unique_slugs([k.slug for k in kernels])
        tasks = apply_task.plan_outputs(list(inputs), slugs, output, combine, fmt, stdin_image)
        apply_task.check_depths(tasks, options)
    except apply_task.PlanError as e:
        if e.option is None:
            raise click.UsageError(str(e)) from None
        raise click.BadParameter(str(e), param_hint=f"'{e.option}'") from None
    _check_scale(tile, scheduler, kernels, padding, tasks, inputs, options)

    announce = None
    if sys.stderr.isatty():

        def announce():
            click.echo(
                "convtool: compiling the convolution core for a fast start-up "
                "(once, about 15 s)...",
                err=True,
            )

    engine.compiled(announce=announce)  # built here, once, not in every worker
    workers = n_jobs or os.cpu_count() or 1
    total = len(tasks)
    show_bar = total > 1 and sys.stderr.isatty()
    started = time.time()
    with _Reporter(total, as_json, show_bar) as reporter:
        report = _run_batch(
            tasks,
            functools.partial(tiled.run_task, tile=tile),
            options,
            scheduler=scheduler,
            jobs=workers,
            on_outcome=lambda o: reporter.outcome(o, tasks[o.index]),
            on_progress=reporter.progressed,
        )
    reporter.clip_note(value_map is not None)
    reporter.nonfinite_warning()
    if report.interrupted:
        # the files tell how far it got: a picture may have finished them just as
        # the stop came, before its outcome was told
        finished, outputs = apply_task.written_since(tasks, started)
        told = {o.index for o in report.outcomes}
        told_ok = {o.index for o in report.outcomes if o.ok}
        outputs += sum(out.path == "-" for i in told_ok for out in tasks[i].outputs)
        click.echo(
            f"convtool: interrupted after {len(finished | told)} of {total} picture(s); "
            f"{outputs} output(s) written, each whole; no partial file left",
            err=True,
        )
        _finish(130)
    if show_bar:
        click.echo(
            f"convtool: {reporter.written} output(s) from {report.succeeded} of {total} "
            f"pictures in {report.elapsed:.1f} s",
            err=True,
        )
    if report.failed and total > 1:
        click.echo(
            f"convtool: {report.failed} of {total} pictures failed; "
            f"{reporter.written} output(s) written",
            err=True,
        )
    _finish(1 if report.failed else 0)


def _finish(code: int) -> None:
    """End the command with ``code``.

    Run as the ``convtool`` program itself, it skips the interpreter's teardown
    (about 25 ms of freeing modules, a tenth of a small run): by now every output
    is whole and closed and the workers are joined; the standard streams are
    flushed here. Inside another program (tests, CliRunner) it exits normally.
    """
    main = sys.modules.get("__main__")
    as_program = getattr(getattr(main, "__spec__", None), "name", "") == "convtool.__main__" or (
        os.path.basename(sys.argv[0]) in ("convtool", "convtool.exe", "convtool-script.py")
    )
    if as_program and sys.stdout is sys.__stdout__ and sys.stderr is sys.__stderr__:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    if code:
        sys.exit(code)


def _check_float32(kernel: Any) -> None:
    """Pictures are filtered in float32: refuse weights or a bias it cannot hold."""
    import numpy as np

    values = np.abs(np.append(kernel.weights, kernel.bias if kernel.bias is not None else 0.0))
    if values.max() > np.finfo(np.float32).max:
        raise click.BadParameter(
            f"kernel {kernel.name} (after --normalize/--scale) or its bias reaches "
            f"{values.max():.3g}, beyond float32's {np.finfo(np.float32).max:.3g}",
            param_hint="'-k'",
        )


def _source_label(source: Any) -> str:
    return source if isinstance(source, str) else "-"


def _read_stdin(max_pixels: int | None) -> Any:
    from convtool import imaging

    if sys.stdin is None or sys.stdin.isatty():
        raise click.UsageError("'-' reads a picture from standard input, but it is a terminal")
    limit = imaging.DEFAULT if max_pixels is None else (max_pixels or None)
    try:
        return imaging.read_image("-", max_pixels=limit)
    except imaging.ImageReadError as e:
        raise click.ClickException(str(e)) from None


def _check_usage(kernels, inputs, color, combine, as_json, output, fmt) -> None:
    if inputs.count("-") > 1:
        raise click.UsageError("'-' (standard input) can be given once")
    full = [k for k in kernels if k.full]
    if full and color is not None:
        raise click.UsageError(
            f"kernel {full[0].name} is a full (C_out, C_in, kH, kW) kernel: it sets the "
            "channels itself, so --color does not apply"
        )
    if combine is not None and len(kernels) < 2:
        raise click.UsageError("--combine needs at least two kernels (-k A -k B)")
    if output == "-":
        if as_json:
            raise click.UsageError("--json prints records on standard output, which -o - needs")
        if sys.stdout.isatty():
            raise click.UsageError(
                "refusing to write a picture to a terminal; redirect it or give -o FILE"
            )
    if fmt is not None:
        from convtool.imaging import format_for

        try:
            format_for(f"output.{fmt.lstrip('.')}", writing=True)
        except ValueError:
            raise click.BadParameter(
                f"unknown format {fmt!r}; use png, jpg, tif, bmp, webp or npy",
                param_hint="'--format'",
            ) from None
