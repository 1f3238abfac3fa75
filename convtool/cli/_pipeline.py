"""`convtool pipeline`: conv -> relu -> pool, stage by stage, with pictures of every stage."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from convtool import vocab
from convtool.cli._notices import CompileNotice
from convtool.cli._params import (
    STRETCH_HELP,
    FiniteFloatParam,
    PaddingParam,
    PairParam,
    StretchParam,
    alias_option,
    max_pixels_option,
    merged,
    said,
)
from convtool.cli._pictures import check_stdout, planning, read_stdin
from convtool.cli._reporting import PipelineReporter
from convtool.cli._scale import check_scheduler, scheduler_option
from convtool.cli._scale import run_batch as _run_batch

# ------------------------------------------------------------------ the command

STAGE_HELP = (
    "A stage (grammar above), or several joined by ->. Repeat for a chain. "
    "Default: conv -> relu -> maxpool:2."
)


PIPELINE_HELP = """Run conv -> relu -> pool on pictures, stage by stage, and draw every stage.

INPUT is a picture (PNG, JPEG, TIFF, BMP, WebP, GIF), a .npy array, or -
for standard input; alpha is left out. A stage's map is (C, H, W): a colour
picture enters as 3 channels, and a 2-D kernel is applied to every channel
and summed into one map (the chapter's 3-in, 1-out filter). A table shows
each stage's spec, output shape, min, max and time.

\b
Stages (--stage, repeated for a chain, or several in one joined by ->; the
grammar of convtool shape's layers, which sizes any of these chains):
  conv[:C@K|KERNEL[+KERNEL...]][,s=S][,p=P][,d=D][,border=B][,flip][,bias=B]
      [,normalize][,scale=F]
  relu
  maxpool[:K][,s=S][,p=P][,ceil]
  avgpool[:K][,s=S][,p=P][,ceil]
KERNEL is any -k spec (convtool kernels); kernels joined by + give one map
each, flowing on as channels; a (C_out, C_in, kH, kW) @FILE.npy takes C_in
channels and gives C_out. C@K is a network's layer: C random KxK kernels
over every input channel, as torch's Conv2d starts them (--seed; nobias
leaves out their biases). D spreads a conv's taps D apart (dilation, as
torch's). A conv naming no kernel (conv, conv:p=same) takes the -k
kernels. S, K and D are N or HxW. A conv's P is N, HxW, same or valid,
a pool's N or HxW (at most half its window); a pool's window defaults to 2,
its stride to its window; pools follow torch's max_pool2d and avg_pool2d
(padding counts as zeros in an average). What a conv stage does not set
comes from --padding (default valid), --stride, --border, --flip, --bias,
--normalize and --scale. Without --stage: -k's kernels, then relu, then
maxpool:2 with stride 2 (the chapter's figure 17-7).

\b
Outputs (each optional):
  -o FILE            the last map: .npy raw, (H, W) or (C, H, W) float32;
                     a picture (1 or 3 channels) mapped as apply maps it
  --panel FIG.png    the source and every stage side by side (fig. 17-7);
                     a stage with several maps gets a row per map
  --grid FIG.png     every map of one stage in a grid (fig. 17-6)
  --save-stages DIR  NN-KIND.npy and NN-KIND.png per stage, e.g.
                     01-conv.npy, 01-conv.png; several maps: one
                     NN-KIND.<kernel>.png each (DIR is created)
Maps are drawn normalised for viewing (min..max, or 0-centred with
--cmap diverging; --stretch 1,99: percentiles), a colour bar under each
giving its range; tiles take the maps' shape. With several inputs, -o, --panel and --grid name
folders (DIR/<stem>.pipeline.<ext>, <stem>.panel.png, <stem>.grid.png)
and stage files start with <stem>. Existing files are kept unless
--overwrite; a picture that fails writes nothing.

\b
Examples:
  convtool pipeline disc.png -k sobel_x -o pooled.png --panel fig.png
  convtool pipeline disc.png --stage "conv:sobel_x -> relu -> maxpool:2" --save-stages st/
  convtool pipeline disc.png --stage conv:sobel_x+sobel_y --stage relu \\
      --stage avgpool:3,s=1 --panel fig.png
  convtool pipeline scene.png --stage conv:blur,s=2 --stage conv:@w.npy,p=same -o out.npy
  convtool pipeline disc.png --color gray --grid fig.png --stage \\
      conv:sharpness+vertical_edge+surround+sobel_y+nothing+horizontal_edge+blur+sobel_x+embossing,p=1
  convtool pipeline photos/*.png -k sobel_x --panel figs/ --jobs 2
  convtool pipeline photos/*.png -k sobel_x --panel figs/ --scheduler tcp://host:8786
"""


@click.command(
    help=PIPELINE_HELP,
    context_settings={"max_content_width": 100},
    short_help="Run conv -> relu -> pool, stage by stage.",
)
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option(
    "-k",
    "--kernel",
    "specs",
    multiple=True,
    metavar="SPEC",
    help="Kernel for the conv stages that name none (as apply's -k). Repeat for several maps.",
)
@click.option("--stage", "stage_specs", multiple=True, metavar="STAGE", help=STAGE_HELP)
@click.option(
    "-o",
    "--output",
    metavar="PATH",
    help="The last stage's map: .npy (raw) or a picture; a folder (DIR/) for several inputs; "
    "- for standard output.",
)
@click.option(
    "--panel",
    metavar="FIG",
    help="Draw the source and every stage side by side, titled with their shapes (fig. 17-7).",
)
@click.option(
    "--grid",
    metavar="FIG",
    help="Draw every channel of one stage in a grid, titled by kernel (fig. 17-6).",
)
@click.option(
    "--grid-stage",
    type=click.IntRange(min=1),
    metavar="N",
    help="The stage --grid draws (1 is the first). Default: the last.",
)
@click.option(
    "--save-stages",
    "stages_dir",
    metavar="DIR",
    help="Write every stage's map as NN-KIND.npy (raw) and NN-KIND.png (normalised for viewing).",
)
@click.option(
    "--color",
    type=click.Choice(vocab.COLORS),
    default="sum",
    show_default=True,
    help="Colour pictures, for 2-D kernels: one map summed over the channels (sum, the "
    "chapter's 3-in, 1-out filter), the ITU-R 601 luma first (gray), or each channel "
    "filtered alike, a map per channel (channels).",
)
@click.option(
    "-p",
    "--padding",
    type=PaddingParam(),
    default="valid",
    metavar="valid|same|N|HxW",
    show_default=True,
    help="Conv padding where a stage does not give p=.",
)
@click.option(
    "-s",
    "--stride",
    type=PairParam(),
    default="1",
    metavar="S|SHxSW",
    show_default=True,
    help="Conv stride where a stage does not give s=.",
)
@click.option(
    "--border",
    type=click.Choice(vocab.BORDERS),
    default="zero",
    show_default=True,
    help="Outside the picture, where a conv stage does not give border= (as apply's).",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    metavar="N",
    help="Seed of the random kernels of C@K convs (torch's start: uniform in "
    "+-1/sqrt(C_in kH kW)); each run the same.",
)
@click.option("--flip", is_flag=True, help="Rotate every conv's kernels 180 degrees.")
@click.option("--normalize", is_flag=True, help="Divide every conv kernel by its sum.")
@click.option(
    "--scale",
    type=FiniteFloatParam(),
    default=1.0,
    metavar="F",
    help="Multiply conv kernels by F.",
)
@click.option("--bias", type=FiniteFloatParam(), metavar="B", help="Add B to every conv's maps.")
@click.option(
    "--map",
    "value_map",
    type=click.Choice(vocab.MAPS),
    help="-o pictures: values outside [0, 1] as apply maps them: clip (default), abs, "
    "normalize or offset. .npy stays raw unless given.",
)
@click.option("--depth", type=click.Choice(vocab.DEPTHS), help="Bits per sample of -o PNG/TIFF.")
@click.option(
    "--format", "fmt", metavar="EXT", help="Format of -o for folders and '-': png, tif, npy, ..."
)
@click.option(
    "--cmap",
    type=click.Choice(vocab.CMAPS),
    default="viridis",
    show_default=True,
    help="Colour map of drawn maps: viridis (as the chapter), diverging (0 white, negative "
    "blue, positive red), or gray.",
)
@click.option(
    "--cell",
    type=click.IntRange(16, 2048),
    default=None,
    metavar="PX",
    help="Height of each map's tile in --panel and --grid, in pixels; its width follows "
    "the map's shape, at most twice that  [default: 240]",
)
@alias_option("pipeline", "--tile", "old_cell", type=click.IntRange(16, 2048))
@click.option(
    "--columns",
    type=click.IntRange(min=1),
    metavar="N",
    help="Tiles per row: --panel wraps its stages, --grid its maps (default: a square).",
)
@click.option("--stretch", type=StretchParam(), help=STRETCH_HELP)
@click.option("--title", metavar="TEXT", help="Title of --panel and --grid ('' for none).")
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
    "--json", "as_json", is_flag=True, help="Print one JSON record per picture instead of tables."
)
@max_pixels_option
@scheduler_option
def pipeline(
    inputs,
    specs,
    stage_specs,
    output,
    panel,
    grid,
    grid_stage,
    stages_dir,
    color,
    padding,
    stride,
    border,
    seed,
    flip,
    normalize,
    scale,
    bias,
    value_map,
    depth,
    fmt,
    cmap,
    cell,
    old_cell,
    columns,
    stretch,
    title,
    overwrite,
    n_jobs,
    as_json,
    max_pixels,
    scheduler,
):
    from convtool.batch import pipeline_task as pj

    cell = merged(cell, old_cell, "pipeline", "--tile") or 240
    defaults = {"stride": stride, "padding": padding, "border": border, "flip": flip,
                "bias": bias, "normalize": normalize, "scale": scale, "seed": seed,
                "per_channel": color == "channels"}  # fmt: skip
    stages = _stages(specs, stage_specs, defaults)
    _check_grid_stage(grid, grid_stage, len(stages))
    _check_usage(inputs, output, as_json, fmt, depth, value_map)
    _check_channels(stages, output, fmt)
    check_scheduler(scheduler, inputs, [output])
    stdin_image = read_stdin(max_pixels) if "-" in inputs else None
    with planning():
        tasks = pj.plan_tasks(inputs, output, panel, grid, stages_dir, fmt, stdin_image)
    options = pj.Options(
        stages=tuple(stages),
        color=color,
        map=value_map,
        depth=None if depth is None else int(depth),
        format=fmt,
        overwrite=overwrite,
        max_pixels=-1 if max_pixels is None else (max_pixels or None),
        cmap=cmap,
        tile=cell,
        columns=columns,
        stretch=stretch,
        title=title,
        grid_stage=grid_stage,
        notice=CompileNotice(),
        # pictures at a time share the memory (a cluster's workers do not)
        workers=1 if scheduler else min(n_jobs or os.cpu_count() or 1, len(tasks)),
    )
    _check_sizes(tasks, options, stdin_image)
    reporter = PipelineReporter(as_json, to_stderr=any(t.output == "-" for t in tasks))
    report = _run_batch(
        tasks,
        pj.run_task,
        options,
        scheduler=scheduler,
        jobs=n_jobs or os.cpu_count() or 1,
        on_outcome=lambda o: reporter.outcome(o, tasks[o.index]),
        layout=pj.TaskLayout(options.stages),
    )
    reporter.clip_note(value_map is not None)
    reporter.nonfinite_warning()
    _finish(report, len(tasks))


def _check_sizes(tasks: list[Any], options: Any, image: Any) -> None:
    """Refuse options whose maps or figures would be over --max-pixels or the machine's
    memory (exit 2): for every picture (the smallest there is), for the one read from
    '-', and for a single picture (from its header)."""
    from convtool import imaging
    from convtool.batch import pipeline_task as pj
    from convtool.pipeline import source_planes
    from convtool.shapes import SizeError

    try:
        for task in tasks:
            pj.check_sizes((1, 1, 1), options, task, floor=True)
            if task.source is image and image is not None:
                shape = source_planes(image.data, options.color)[0].shape
                pj.check_sizes(shape, options, task)
        if len(tasks) == 1 and isinstance(tasks[0].source, str) and tasks[0].source != "-":
            # one picture: its own sizes, from its header (in a batch, as each is read)
            limit = imaging.DEFAULT if options.max_pixels == -1 else options.max_pixels
            found = imaging.picture_shape(tasks[0].source, limit)
            if found is not None:
                channels, height, width = found[1]
                planes = 1 if options.color == "gray" else channels
                pj.check_sizes((planes, height, width), options, tasks[0])
    except SizeError as e:
        raise click.BadParameter(said(e), param_hint=f"'{e.option}'") from None


def _check_grid_stage(grid: str | None, grid_stage: int | None, stages: int) -> None:
    if grid_stage is None:
        return
    if grid is None:
        raise click.UsageError("--grid-stage chooses the stage --grid draws; give --grid")
    if grid_stage > stages:
        raise click.BadParameter(
            f"{grid_stage}: the chain has {stages} stage(s)", param_hint="'--grid-stage'"
        )


def _finish(report: Any, total: int) -> None:
    """The end of the run: interrupted (130), pictures failed (1), or done."""
    if report.interrupted:
        click.echo(
            f"convtool: interrupted after {report.done} of {total} picture(s); "
            "every file written is whole",
            err=True,
        )
        sys.exit(130)
    if report.failed and total > 1:
        click.echo(f"convtool: {report.failed} of {total} pictures failed", err=True)
    if report.failed:
        sys.exit(1)


def _stages(specs, stage_specs, conv_defaults: dict) -> list:
    """The chain: --stage's stages, the conv defaults and -k's kernels filled in."""
    from convtool import pipeline as pl
    from convtool.kernels import KernelSpecError, parse_kernel_spec

    kernels = []
    for spec in specs:
        try:
            kernels.append(parse_kernel_spec(spec))
        except KernelSpecError as e:
            raise click.BadParameter(said(e), param_hint="'-k'") from None
    if not kernels and not stage_specs:
        raise click.UsageError(
            "nothing to run: give a kernel (-k sobel_x runs conv -> relu -> maxpool:2) or --stage"
        )
    defaults = pl.ConvDefaults(**conv_defaults)
    try:
        stages = pl.parse_stages(stage_specs, kernels=kernels, defaults=defaults)
    except pl.StageError as e:
        flag = "--stage" if e.option is None else vocab.FLAGS[e.option]
        raise click.BadParameter(said(e), param_hint=f"'{flag}'") from None
    if kernels and not any(s.shared for s in stages):
        raise click.BadParameter(
            "every conv stage names its own kernels, so these would go unused; "
            "add a bare 'conv' stage for them or leave -k out",
            param_hint="'-k'",
        )
    return stages


def _check_usage(inputs, output, as_json, fmt, depth, value_map) -> None:
    from convtool.batch.pipeline_task import check_output

    if inputs.count("-") > 1:
        raise click.UsageError("'-' (standard input) can be given once")
    check_stdout(output, as_json)
    if output is None:
        for name, value in (("--map", value_map), ("--depth", depth), ("--format", fmt)):
            if value is not None:
                raise click.UsageError(f"{name} is about the -o output; give -o")
    with planning():
        check_output(len(inputs), output, fmt, None if depth is None else int(depth))


def _check_channels(stages, output, fmt) -> None:
    """A picture takes 1 or 3 channels: refuse a chain ending in other counts up front."""
    convs = [s for s in stages if s.kind == "conv"]
    if output is None or not convs or convs[-1].per_channel:
        # without a conv the source's 1 or 3 channels flow through; per channel, the
        # picture's channels count (said when it is written)
        return
    channels = len(convs[-1].labels(()))
    kind = (fmt or "").lstrip(".").lower()
    if not kind and output != "-" and not output.endswith(("/", os.sep)):
        kind = os.path.splitext(output)[1].lstrip(".").lower()
    if channels not in (1, 3) and kind not in ("npy", "") and not os.path.isdir(output):
        raise click.BadParameter(
            f"the chain ends in {channels} maps; a picture takes 1 or 3: write .npy, or see "
            "each map with --grid or --save-stages",
            param_hint="'-o'",
        )
