"""`convtool apply`: filter pictures with named or custom kernels, one or many."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import click

from convtool import vocab
from convtool.cli._notices import CompileNotice, announced
from convtool.cli._params import (
    FiniteFloatParam,
    PaddingParam,
    PairParam,
    encoding_options,
    max_pixels_option,
    said,
)
from convtool.cli._pictures import (
    check_stdout,
    planning,
    read_stdin,
    spare_blas_threads,
)
from convtool.cli._reporting import ApplyReporter
from convtool.cli._scale import check as _check_scale
from convtool.cli._scale import run_batch as _run_batch
from convtool.cli._scale import scheduler_option, tile_option

# ------------------------------------------------------------------ the command


APPLY_HELP = """Filter pictures with named or custom kernels.

INPUT is a picture (PNG, JPEG, TIFF, BMP, WebP, GIF; 8 or 16 bits; grey,
RGB, RGBA, palette), a .npy float array (H, W) or (H, W, C), or - for
standard input. Kernels correlate (no flip), as in the chapter and in
OpenCV; outside the picture lie its edge pixels (--border replicate, as
ImageMagick), so no photograph gets a frame; alpha is filtered with the
colour premultiplied by it, as ImageMagick does (--alpha keep: untouched).
-k im:NAME[:ARGS] is ImageMagick's kernel: with --flip the result is
convert's -morphology Convolve NAME:ARGS.

\b
Output names:
  one input, one result, -o FILE   FILE (its extension sets the format)
  -o DIR/, an existing DIR, or     DIR/<stem>.<kernel>.<ext>
    several inputs or kernels
  no -o                            <input's folder>/<stem>.<kernel>.<ext>
  --combine                        <stem>.<k1>+<k2>.<how>.<ext>
<kernel> is the kernel's name made safe (gaussian:7,1.5 -> gaussian_7_1.5,
sobel_x@90 -> sobel_x_r90, a file's stem, custom for inline); <ext> is
--format's, else the input's (.png for GIF and standard input's PNG).
-o DIR/ creates DIR if missing. Existing files are kept unless
--overwrite; an input is never written.

\b
Values: PNG and TIFF keep the input's depth (16-bit stays 16-bit), JPEG,
BMP and WebP are 8-bit; values are clipped to [0, 1] unless --map says
otherwise. .npy and --depth 32 TIFF keep the raw float32 result. The
input's ICC profile, resolution and EXIF are kept (--strip drops them).
For even kernel sizes, 'same' padding puts the extra row or column after
(bottom, right), as torch; SciPy and OpenCV put it before.

A picture that fails is reported on stderr and the others are still
written (exit code 1 at the end); Ctrl-C leaves only whole files.

\b
Examples:
  convtool apply photo.png -k sobel -o edges.png          # gradient magnitude
  convtool apply photo.png -k gaussian:0x2 -o soft.png    # sigma 2
  convtool apply photo.png -k im:LoG:0x2 --flip -o log.png   # ImageMagick's
  convtool apply photo.png -k sobel_x -k sobel_y --combine magnitude -o mag.png
  convtool apply a.png b.png photos/*.jpg -k blur -o outdir/ --jobs 4
  convtool apply disc.png -k embossing --color gray --map offset -o emboss.png
  convtool apply scan.tif -k "0,-1,0; -1,5,-1; 0,-1,0" --border mirror -o sharp.tif
  convtool apply in.png -k gaussian:7 -o raw.npy        # raw float32, for convtool fit
  cat in.png | convtool apply - -k sharpen -o - > out.png
  convtool apply map.tif -k gaussian:7 -o out.tif --tile 1024  # larger than memory
  convtool apply photos/*.jpg -k blur -o out/ --scheduler tcp://host:8786  # Dask
"""


@click.command(help=APPLY_HELP, context_settings={"max_content_width": 100})
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option(
    "-k",
    "--kernel",
    "specs",
    multiple=True,
    required=True,
    metavar="SPEC",
    help="Kernel: a name (convtool kernels), im:NAME[:ARGS] (ImageMagick's), inline rows "
    '"0,-1,0; -1,5,-1; 0,-1,0", "3x3: ...", or @FILE (.txt .csv .json .npy). '
    "Repeat for several.",
)
@click.option(
    "-o",
    "--output",
    metavar="PATH",
    help="Output file, folder (DIR/, created if missing), or - for standard output. "
    "Default: beside each input, named as below.",
)
@click.option(
    "--color",
    type=click.Choice(vocab.COLORS),
    help="Colour handling for 2-D kernels: "
    "each channel (channels, default), ITU-R 601 luma first (gray), or one map "
    "summed over the channels (sum).",
)
@click.option(
    "--border",
    type=click.Choice(vocab.BORDERS),
    default="replicate",
    show_default=True,
    help=vocab.BORDER_HELP + " replicate (ImageMagick's edge pixels) frames no photograph; "
    "zero is the chapter's.",
)
@click.option(
    "-p",
    "--padding",
    type=PaddingParam(),
    default="same",
    metavar="same|valid|N|HxW",
    show_default=True,
    help="'same' (output size = input size / stride), 'valid' (none), N or HxW.",
)
@click.option(
    "-s",
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
    type=click.Choice(vocab.MAPS),
    help="Values outside [0, 1]: clip (default for 8/16-bit outputs), abs, normalize "
    "(min..max to 0..1) or offset (+0.5). Float outputs are raw unless given.",
)
@click.option(
    "--alpha",
    "alpha",
    type=click.Choice(vocab.ALPHAS),
    default="premultiply",
    show_default=True,
    help="Alpha: filtered with the picture, colour premultiplied by it, as ImageMagick "
    "(a blurred edge fades and keeps its colour), or kept as read.",
)
@click.option(
    "--combine",
    type=click.Choice(vocab.COMBINES),
    help="Several kernels into one picture: sqrt of the sum of squares, max, or sum.",
)
@click.option(
    "--depth",
    type=click.Choice(vocab.DEPTHS),
    help="Bits per sample of PNG/TIFF outputs (32: float TIFF). Default: the input's.",
)
@click.option(
    "--format",
    "fmt",
    metavar="EXT",
    help="Output format for generated names and '-': png, jpg, tif, bmp, webp, npy.",
)
@encoding_options
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
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Say on stderr how each kernel is run: direct, separable, low-rank N, box "
    "(running sums) or fft.",
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
    alpha,
    combine,
    depth,
    fmt,
    quality,
    compression,
    strip,
    overwrite,
    n_jobs,
    as_json,
    verbose,
    max_pixels,
    tile,
    scheduler,
):
    spare_blas_threads()
    from convtool.batch import apply_task
    from convtool.batch.outputs import check_depths, unique_slugs
    from convtool.core import engine

    kernels = _prepared_kernels(specs, bias, normalize, scale, flip)
    _check_usage(kernels, inputs, color, combine, as_json, output, fmt)
    _check_chains(kernels, padding, stride, tile)
    options = apply_task.Options(
        kernels=tuple(kernels),
        color=color or "channels",
        border=border,
        padding=padding,
        stride=stride,
        map=value_map,
        alpha=alpha,
        depth=None if depth is None else int(depth),
        format=fmt,
        strip=strip,
        quality=quality,
        compression=compression,
        overwrite=overwrite,
        max_pixels=-1 if max_pixels is None else (max_pixels or None),
        notice=CompileNotice(),
    )
    _check_sizes(options, None)
    if len(inputs) == 1 and inputs[0] != "-":
        _check_picture_sizes(options, inputs[0])
    stdin_image = read_stdin(max_pixels) if "-" in inputs else None
    if stdin_image is not None:
        _check_sizes(options, stdin_image)
    with planning():
        slugs = unique_slugs([k.slug for k in kernels])
        tasks = apply_task.plan_outputs(list(inputs), slugs, output, combine, fmt, stdin_image)
        check_depths(tasks, options)
    _check_scale(tile, scheduler, kernels, padding, tasks, inputs, options)

    text = "building the compiled core for this machine (once, about 30 s)"
    with announced(options.notice, text) as announce:
        engine.compiled(announce=announce)  # built here, once, not in every worker
    if verbose:
        _say_plans(options)
    workers = n_jobs or os.cpu_count() or 1
    if not scheduler:  # pictures at a time share the memory (a cluster's workers do not)
        options = options._replace(workers=min(workers, len(tasks)))
    _finish(_run(tasks, options, tile, scheduler, workers, as_json, value_map is not None))


def _say_plans(options: Any) -> None:
    """Each kernel's path, on stderr (on one channel; a kernel that mixes channels, or
    'sum' on colour, runs direct)."""
    from convtool.filtering.correlate import plan_of

    for kernel in options.kernels:
        plan = plan_of(kernel, options.color, 1, options.stride)
        kh, kw = kernel.size
        click.echo(
            f"convtool: {kernel.name}: {plan.describe()} (about {plan.taps:.0f} multiply-adds "
            f"a pixel's worth; direct: {kh * kw})",
            err=True,
        )


def _run(
    tasks: list[Any],
    options: Any,
    tile: int | None,
    scheduler: str | None,
    workers: int,
    as_json: bool,
    explicit_map: bool,
) -> int:
    """Run every picture's task and report as they end; the exit code."""
    import functools

    from convtool.batch import apply_task
    from convtool.batch.outputs import written_since

    total = len(tasks)
    show_bar = total > 1 and sys.stderr.isatty()
    started = time.time()
    with ApplyReporter(total, as_json, show_bar) as reporter:
        report = _run_batch(
            tasks,
            functools.partial(apply_task.run_task, tile=tile),
            options,
            scheduler=scheduler,
            jobs=workers,
            on_outcome=lambda o: reporter.outcome(o, tasks[o.index]),
            on_progress=reporter.progressed,
        )
    reporter.clip_note(explicit_map)
    reporter.nonfinite_warning()
    if report.interrupted:
        # the files tell how far it got: a picture may have finished them just as
        # the stop came, before its outcome was told
        finished, outputs = written_since(tasks, started)
        told = {o.index for o in report.outcomes}
        told_ok = {o.index for o in report.outcomes if o.ok}
        outputs += sum(out.path == "-" for i in told_ok for out in tasks[i].outputs)
        click.echo(
            f"convtool: interrupted after {len(finished | told)} of {total} picture(s); "
            f"{outputs} output(s) written, each whole; no partial file left",
            err=True,
        )
        return 130
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
    return 1 if report.failed else 0


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


def _check_sizes(options: Any, image: Any) -> None:
    """Refuse options whose arrays would be over --max-pixels or the machine's memory
    (exit 2): for every picture (the smallest there is), or for the one read from '-'."""
    from convtool.batch.apply_task import check_sizes
    from convtool.shapes import SizeError

    shape, floor = (1, 1, 1), True
    if image is not None:
        data, floor = image.data, False
        shape = (1 if data.ndim == 2 else data.shape[2], *data.shape[:2])
    try:
        check_sizes(shape, options, floor=floor)
    except SizeError as e:
        raise click.BadParameter(said(e), param_hint=f"'{e.option}'") from None


def _check_picture_sizes(options: Any, path: str) -> None:
    """One picture: its own sizes, from its header, refused (exit 2) before the job starts,
    as the options' are; a TIFF may be filtered in tiles, so its pixel counts alone. (In a
    batch each picture is sized as it is read, and a refusal fails that picture.)"""
    from convtool import imaging
    from convtool.batch.apply_task import check_sizes
    from convtool.shapes import SizeError

    limit = imaging.DEFAULT if options.max_pixels == -1 else options.max_pixels
    found = imaging.picture_shape(path, limit)
    if found is None:  # the read will say what is wrong
        return
    fmt, shape = found
    try:
        check_sizes(shape, options, memory=fmt != "TIFF")
    except SizeError as e:
        raise click.BadParameter(said(e), param_hint=f"'{e.option}'") from None


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


def _prepared_kernels(specs, bias, normalize, scale, flip) -> list[Any]:
    """The -k kernels, parsed and prepared (--bias, --normalize, --scale, --flip)."""
    from convtool import filtering
    from convtool.kernels import KernelSpecError, parse_kernel_spec

    kernels = []
    for spec in specs:
        try:
            parsed = parse_kernel_spec(spec)
        except KernelSpecError as e:
            raise click.BadParameter(said(e), param_hint="'-k'") from None
        kernels.append(
            filtering.prepare_kernel(
                parsed.weights,
                name=parsed.name,
                slug=parsed.slug,
                bias=parsed.bias if bias is None else bias,
                normalize=normalize,
                scale=scale,
                flip=flip,
                parts=parsed.parts,
                chain=parsed.chain,
            )
        )
        _check_float32(kernels[-1])
    return kernels


def _check_chains(kernels, padding, stride, tile) -> None:
    """ImageMagick's kernel lists apply one kernel after another, on the whole picture."""
    chained = [k for k in kernels if k.chain]
    if not chained:
        return
    name = chained[0].name
    if padding != "same" or tuple(stride) != (1, 1):
        raise click.UsageError(
            f"kernel {name} is a list applied one kernel after another: it needs "
            "--padding same and --stride 1"
        )
    if tile:
        raise click.UsageError(f"kernel {name} is a list: it is filtered whole; give --tile 0")


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
    check_stdout(output, as_json)
    from convtool.batch.outputs import check_format

    with planning():
        check_format(fmt)
