"""`convtool fit`: recover the kernel that turned one picture into another."""

from __future__ import annotations

import contextlib
import itertools
import os
import sys

import click

from convtool import vocab
from convtool._shared import same_file
from convtool.cli._fit_figure import residual_of, write_figure
from convtool.cli._params import (
    PairParam,
    StretchParam,
    alias_option,
    max_pixels_limit,
    max_pixels_option,
    merged,
    said,
)


class _StepParam(click.ParamType):
    """A positive float, or 'auto'."""

    name = "FLOAT|auto"

    def convert(self, value, param, ctx):
        if isinstance(value, float) or value == "auto":
            return value
        try:
            step = float(value)
        except ValueError:
            self.fail(f"{value!r} is neither a number nor 'auto'", param, ctx)
        if not (step > 0 and step < float("inf")):
            self.fail(f"must be a positive number, got {value!r}", param, ctx)
        return step


def _positive_float(ctx, param, value):
    if value is not None and not (0 < value < float("inf")):
        raise click.BadParameter(f"must be a positive number, got {value!r}")
    return value


@click.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False))
@click.argument("target_path", metavar="TARGET", type=click.Path(dir_okay=False))
@click.option("--size", type=PairParam(), metavar="N|HxW",
              help="Kernel size N or HxW (rows x columns; default: from the sizes).")  # fmt: skip
@alias_option("fit", "-s", "old_size", type=PairParam())
@click.option("--stride", type=PairParam(), metavar="N|HxW",
              help="Stride N or HxW (default: found from the sizes).")  # fmt: skip
@click.option(
    "-m", "--method", type=click.Choice(vocab.METHODS), default=None,
    help="cg (default): conjugate gradient; gd: the chapter's gradient descent (the default "
    "when --lr is given); lstsq: a direct least-squares solve.",
)  # fmt: skip
@click.option(
    "--lr", type=_StepParam(), default=None,
    help="Gradient descent's step; 'auto' (default) is 0.95 of the largest safe step.",
)  # fmt: skip
@click.option("--tol", type=float, default=1e-7, show_default=True, callback=_positive_float,
              help="gd (and cg) stop when the loss sum((z-y)^2)/2/m falls below this.")  # fmt: skip
@click.option("--max-iter", type=click.IntRange(min=0), default=10000, show_default=True)
@click.option("--seed", type=click.IntRange(min=0),
              help="Seed of gd's normal(0, 0.1) start (default 1: each run the same).")  # fmt: skip
@click.option("--bias/--no-bias", default=None,
              help="Fit a bias too, or none. Default: one when the target has a clear constant "
              "offset (apply --map offset's), with a note.")  # fmt: skip
@click.option("--per-channel", is_flag=True, help="One kernel per colour channel.")
@click.option(
    "--color", type=click.Choice(vocab.COLORS), default=None,
    help="What apply --color did to a colour INPUT: channels (each filtered; a colour "
    "TARGET), gray (its luma) or sum (the channels summed: a grey TARGET, the chapter's "
    "3-in, 1-out filter). Default: channels for colour targets; for grey ones, gray or "
    "sum, whichever fits.",
)  # fmt: skip
@alias_option("fit", "--grey/--gray", "grey", is_flag=True)
@click.option(
    "--border", type=click.Choice(vocab.FIT_BORDERS), default="interior", show_default=True,
    help="Same-size targets: fit only the pixels the border cannot touch (interior), or "
    "model the border as apply's --border does: zero, reflect (dcba|abcd), mirror (dcb|abcd, "
    "OpenCV's default), replicate (aaaa|abcd, ImageMagick's default) or wrap.",
)  # fmt: skip
@click.option("--keep-clipped", is_flag=True,
              help="Keep 8/16-bit target pixels at 0 or 1 (left out by default).")  # fmt: skip
@click.option(
    "--stage", "stages", multiple=True, metavar="STAGE",
    help="Fit through stages: pipeline's grammar, e.g. \"conv -> relu -> maxpool:2\" (the "
    "conv to recover names no kernel; --size, default 3). TARGET is the last stage's map.",
)  # fmt: skip
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Write the kernel: .npy, .txt or .json (with the bias).")  # fmt: skip
@click.option("--report", "figure_path", type=click.Path(dir_okay=False),
              help="Draw the fit: the kernel beside its named match, the residual map and "
              "the loss curve (PNG).")  # fmt: skip
@click.option("--stretch", type=StretchParam(),
              help="--report: the residual's colours span its LO-th..HI-th percentiles "
              "(1,99 brings out a faint residual). Default: min..max.")  # fmt: skip
@click.option("--overwrite", is_flag=True, help="Replace existing output files (never an input).")
@click.option("--compare", metavar="SPEC", help="Say whether the kernel is allclose to SPEC.")
@click.option("--atol", type=float, default=0.01, show_default=True, callback=_positive_float,
              help="Tolerance of --compare.")  # fmt: skip
@click.option("--log", "log_path", type=click.Path(dir_okay=False),
              help="Write the loss curve as CSV (iteration,loss).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the report.")
@max_pixels_option
def fit(input_path, target_path, size, old_size, stride, method, lr, tol, max_iter, seed, bias,
        per_channel, color, grey, border, keep_clipped, stages, output, figure_path, stretch,
        overwrite, compare, atol, log_path, as_json, max_pixels) -> None:  # fmt: skip
    """Recover the kernel that turned INPUT into TARGET.

    The loss is the chapter's, sum((z - y)^2) / 2 / m over the m target pixels fitted,
    z being INPUT convolved (cross-correlated) with the kernel. A TARGET smaller by K-1
    means a valid convolution and gives the size; one of the same size means 'same'
    padding (its size is detected, or give --size), fitted on the interior only unless
    --border says how the border was made. Colour pairs share one kernel unless
    --per-channel; --color channels|gray|sum undoes apply's colour modes. The stride
    follows from the sizes (or --stride). 8- and 16-bit targets are read in [0, 1], and
    their pixels at 0 or 1 (clipped by whoever saved them) are left out; .npy and float
    TIFF are exact. JPEG and lossy WebP targets are recognised: clipped pixels are
    censored, and 4:2:0 colour pairs fitted on the luma. A constant offset gets a bias.

    The answer is the least-squares optimum (cg starts from zero and ends with a direct
    solve; each entry's standard error is reported). gd, the chapter's descent, stops when
    the loss falls below --tol, or at its minimum when noise in the target keeps it above.
    The same inputs and options give the same output. Exit status 1 (after the report)
    when a run stops at --max-iter short of --tol, or when --compare does not match.

    \b
    Examples:
      convtool fit in.png edges.png                  what filter made edges.png?
      convtool fit disc.png target.npy --lr 0.5 --seed 1     the chapter's 17.3.7
      convtool fit in.png out.png --size 5 --bias -o k.json --compare gaussian:5
      convtool fit in.png out.png --json --log loss.csv --report fig.png
      convtool fit photo.png t.npy --stage "conv -> relu -> maxpool:2"
    """
    size = merged(size, old_size, "fit", "-s")
    if stages:
        layers = _stage_layers(stages, size, method, lr, seed, stride, per_channel, border, color)
    else:
        method = _choose_method(method, lr, seed)
    color = _choose_color(color, grey, per_channel)
    _check_outputs(input_path, target_path, output, log_path, overwrite, per_channel, figure_path)
    reference = _reference(compare) if compare else None

    from convtool import imaging
    from convtool.fit import report
    from convtool.fit.pairs import fit_pair

    if stages:
        result, notes, residual = _fit_stages(
            imaging, input_path, target_path, layers, color, bias, max_iter, max_pixels
        )
        pair_record = {"color": color or "sum", "stages": layers[2]}
    else:
        pair = _read_pair(imaging, input_path, target_path, color, keep_clipped, max_pixels)
        with _fit_errors(), _progress(max_iter) as callback:
            result, pair = fit_pair(
                pair, size=size, stride=stride, method=method, lr="auto" if lr is None else lr,
                tol=tol, max_iter=max_iter, seed=seed, bias=bias, per_channel=per_channel,
                border=border, callback=callback, engine=_engine(pair.x, size),
            )  # fmt: skip
        notes = pair.notes
        residual = lambda: residual_of(pair, result, border)  # noqa: E731
        pair_record = {"color": pair.color, "lossy": pair.lossy and pair.lossy._asdict()}
    matches = report.match_channels(result)
    comparison = None
    if reference is not None:
        comparison = report.compare_kernel(result, reference.weights, reference.name, compare, atol)
    if output:
        _write_kernel(imaging, output, result, overwrite)
    if log_path:
        _write_text(imaging, log_path, report.loss_curve_csv(result), overwrite)
    if figure_path:
        title = f"{os.path.basename(input_path)} -> {os.path.basename(target_path)}"
        write_figure(imaging, figure_path, result, matches, residual(), title, overwrite, stretch)
    if as_json:
        import json

        record = report.fit_record(result, matches, comparison)
        record.update(pair_record)
        click.echo(json.dumps(record))
    else:
        click.echo(report.report_text(result, matches, comparison, spell=vocab.as_flag))
    for note in notes + list(result.notes):
        click.echo(f"note: {note}", err=True)
    _exit_status(result, comparison)


def _stage_layers(stages, size, method, lr, seed, stride, per_channel, border, color):
    """--stage's chain as the fit takes it: the conv to recover, then relu and pools.

    Options of the other fits are refused; the stages are parsed by the pipeline's
    grammar (a stand-in kernel for the conv, which must name none)."""
    from convtool.pipeline import StageError, parse_stages

    given = {"--method": method, "--lr": lr, "--seed": seed, "--stride": stride}
    given.update({"--per-channel": per_channel or None, "--color": color})
    for flag, value in given.items():
        if value is not None and not (flag == "--color" and value in ("sum", "gray")):
            what = f"--color {value}" if flag == "--color" else flag
            raise click.UsageError(f"{what} does not apply to a fit through --stage")
    if border != "interior":
        raise click.UsageError("--border does not apply to --stage: give border= in the conv")
    size = size or (3, 3)
    try:
        parsed = parse_stages(stages, kernels=[f"box:{size[0]}x{size[1]}"])
    except StageError as e:
        raise click.BadParameter(said(e), param_hint="--stage") from None
    convs = [s for s in parsed if s.kind == "conv"]
    if parsed[0].kind != "conv" or len(convs) != 1 or not convs[0].shared:
        raise click.BadParameter(
            "the stages must start with the one conv to recover, naming no kernel "
            '("conv -> relu -> maxpool:2"); then relu, maxpool and avgpool',
            param_hint="--stage",
        )
    from convtool.fit.through import ConvSpec, Layer

    c = parsed[0]
    if c.dilation != (1, 1):
        raise click.BadParameter(
            "the conv to recover is fitted undilated: leave d= out", param_hint="--stage"
        )
    conv = ConvSpec(size, c.stride, c.padding, c.border)
    layers = [
        Layer("relu")
        if s.kind == "relu"
        else Layer(s.kind, s.size, s.stride, s.padding, s.ceil_mode)
        for s in parsed[1:]
    ]
    first = parsed[0].describe().split(",", 1)[1]  # the stand-in kernel's name left out
    text = " -> ".join([f"conv({size[0]}x{size[1]}),{first}"] + [s.describe() for s in parsed[1:]])
    return conv, layers, text


def _fit_stages(imaging, input_path, target_path, layers, color, bias, max_iter, max_pixels):
    """The fit through stages of the two pictures: the FitResult and the notes."""
    from convtool.filtering import to_gray
    from convtool.fit.through import fit_through

    conv, chain, text = layers
    limit = max_pixels_limit(max_pixels)
    try:
        source = imaging.read_image(input_path, max_pixels=limit)
        target = imaging.read_image(target_path, max_pixels=limit)
    except imaging.ImageReadError as e:
        raise click.ClickException(said(e)) from None
    x = source.data
    if x.ndim == 3:  # pipeline's colour: a 2-D kernel's maps summed over the channels
        x = to_gray(x) if color == "gray" else x[:, :, :3].astype("float64").sum(axis=2)
    y = target.data
    if y.ndim == 3:
        raise click.UsageError(f"{target_path} has {y.shape[2]} channels; the stages make one map")
    quantum = None if target.bit_depth == 32 else 1 / (2**target.bit_depth - 1)
    with _fit_errors():
        result = fit_through(
            x, y, chain, conv, bias=bias is not False, max_iter=max_iter, quantum=quantum,
            engine=_engine(x, conv.size),
        )  # fmt: skip
    how = "the channels summed" if source.data.ndim == 3 and color != "gray" else "one plane"

    def residual():
        from convtool.fit.through import through_residual

        return through_residual(x, y, chain, conv, result)

    return result, [f"fitted through {text}, from {how} of {input_path}"], residual


def _exit_status(result, comparison) -> None:
    """Exit 1, after the report, for a fit short of its tolerance or a --compare that fails."""
    failed = False
    if not result.converged:
        click.echo(
            f"convtool: {result.method} stopped at --max-iter {result.max_iter} with "
            f"loss {result.loss:.3g}, short of --tol {result.tol:g}"
            + ("; --method cg finishes in far fewer steps" if result.method == "gd" else ""),
            err=True,
        )
        failed = True
    if comparison is not None and not comparison["allclose"]:
        click.echo(f"convtool: the kernel is not within --atol of {comparison['name']}", err=True)
        failed = True
    if failed:
        sys.exit(1)


def _choose_color(color, grey, per_channel) -> str | None:
    """--grey is --color gray; refuse colour options that exclude each other."""
    if grey and color not in (None, "gray"):
        raise click.UsageError(f"--grey is --color gray; it excludes --color {color}")
    color = "gray" if grey else color
    if per_channel and color in ("gray", "sum"):
        flag = "--grey" if grey else f"--color {color}"
        raise click.UsageError(f"--per-channel and {flag} exclude each other")
    return "channels" if per_channel else color  # a kernel per channel: of the channels


def _choose_method(method, lr, seed) -> str:
    """The method the options choose; refuse options that exclude each other."""
    if method is None:
        method = "gd" if lr is not None else "cg"
    if lr is not None and method != "gd":
        raise click.BadParameter(f"--lr applies to --method gd, not {method}", param_hint="--lr")
    if seed is not None and method != "gd":
        raise click.BadParameter(
            f"--seed applies to --method gd, not {method}, which starts from zero",
            param_hint="--seed",
        )
    return method


def _check_outputs(
    input_path, target_path, output, log_path, overwrite, per_channel, figure_path=None
) -> None:
    """Refuse, before the fit: a missing folder, writing over a picture read (even with
    --overwrite), one file given twice, an existing file, or a kind of kernel file not made."""
    outputs = ((output, "--output"), (log_path, "--log"), (figure_path, "--report"))
    for path, what in outputs:
        folder = os.path.dirname(path or "") or "."
        if path and not os.path.isdir(folder):
            problem = "is not a folder" if os.path.exists(folder) else "does not exist"
            raise click.BadParameter(f"the folder of {path}, {folder}, {problem}", param_hint=what)
        for source in (input_path, target_path):
            if path and same_file(path, source):
                raise click.BadParameter(
                    f"{path} is an input; inputs are never written, choose another file",
                    param_hint=what,
                )
    for (a, flag_a), (b, flag_b) in itertools.combinations(outputs, 2):
        if a and b and same_file(a, b):
            raise click.BadParameter(
                f"{a} is given to {flag_a} and {flag_b}; choose two files", param_hint=flag_b
            )
    for path, _ in outputs:
        if path and os.path.lexists(path) and not overwrite:
            from convtool.imaging import exists_error

            # a failure (1), as in apply and pipeline: the command line is right, the
            # folder's state is not, and the same line succeeds once the file is gone
            raise click.ClickException(said(exists_error(path)))
    if output:
        from convtool.kernels.files import WRITE_SUFFIXES

        suffix = os.path.splitext(output)[1].lower()
        if suffix not in WRITE_SUFFIXES:
            raise click.BadParameter(
                f"{output}: kernels are written as {', '.join(WRITE_SUFFIXES)}", param_hint="-o"
            )
        if per_channel and suffix == ".txt":
            raise click.BadParameter("per-channel kernels need .json or .npy", param_hint="-o")


def _reference(spec: str):
    from convtool.kernels import KernelSpecError, parse_kernel_spec

    try:
        return parse_kernel_spec(spec)
    except KernelSpecError as e:
        raise click.BadParameter(said(e), param_hint="--compare") from None


def _read_pair(imaging, input_path, target_path, color, keep_clipped, max_pixels):
    """Both pictures, read and prepared for the fit (:func:`convtool.fit.pairs.prepare_pair`)."""
    from convtool.fit.lossy import inspect_file
    from convtool.fit.pairs import prepare_pair

    limit = max_pixels_limit(max_pixels)
    try:
        source = imaging.read_image(input_path, max_pixels=limit)
        target = imaging.read_image(target_path, max_pixels=limit)
    except imaging.ImageReadError as e:
        raise click.ClickException(said(e)) from None
    with _fit_errors():
        return prepare_pair(
            source.data, target.data, target_bit_depth=target.bit_depth, color=color,
            lossy=inspect_file(target_path) if target.format in ("JPEG", "WEBP") else None,
            keep_clipped=keep_clipped, names=(input_path, target_path),
        )  # fmt: skip


@contextlib.contextmanager
def _fit_errors():
    """The fit's errors as click's: shapes that do not go together are bad usage (exit 2)."""
    from convtool.fit import FitError, ShapeError

    try:
        yield
    except ShapeError as e:
        raise click.UsageError(said(e)) from None
    except FitError as e:
        raise click.ClickException(said(e)) from None


def _engine(x, size):
    """The compiled core for a fit of this picture's size (the JIT's threads for huge ones),
    saying so when the JIT must compile first."""
    from convtool.cli._notices import CompileNotice
    from convtool.core import engine

    taps = 81 if size is None else size[0] * size[1]  # a size not given is found up to 9x9
    return engine.choose(float(x.size) * taps * taps, notice=CompileNotice())


def _stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


class _progress:
    """A rich progress bar with the live loss on stderr, when stderr is a terminal."""

    def __init__(self, total: int) -> None:
        self.total = max(total, 1)
        self.bar = None

    def __enter__(self):
        if not _stderr_is_terminal():
            return None
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(
            TextColumn("fitting"), BarColumn(), TextColumn("iteration {task.completed}"),
            TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(),
            console=Console(stderr=True), transient=True,
        )  # fmt: skip
        self.bar.start()
        task = self.bar.add_task("fit", total=self.total, loss="-")

        def callback(iteration: int, loss: float) -> None:
            self.bar.update(task, completed=iteration, loss=f"{loss:.4g}")

        return callback

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


def _write_kernel(imaging, path, result, overwrite) -> None:
    from convtool.kernels import write_kernel_file

    try:
        write_kernel_file(
            path, result.conv_kernel(), result.bias, overwrite=overwrite,
            comment=f"fitted by convtool fit: {result.size[0]}x{result.size[1]}",
            write_bytes=imaging.atomic_write_bytes,
        )  # fmt: skip
    except imaging.ImageWriteError as e:
        raise click.ClickException(said(e)) from None
    if result.bias is not None and os.path.splitext(path)[1].lower() == ".npy":
        click.echo(f"note: {path} holds the kernel only; .json keeps the bias too", err=True)


def _write_text(imaging, path, text, overwrite) -> None:
    try:
        imaging.atomic_write_bytes(path, text.encode(), overwrite=overwrite)
    except imaging.ImageWriteError as e:
        raise click.ClickException(said(e)) from None
