"""`convtool fit`: recover the kernel that turned one picture into another."""

from __future__ import annotations

import os
import sys

import click

from convtool.cli._params import PairParam, max_pixels_limit, max_pixels_option

_KERNEL_SUFFIXES = (".npy", ".txt", ".json")
_BORDERS = ("interior", "zero", "reflect", "mirror", "replicate", "wrap")
_CHANNEL_NAMES = ("red", "green", "blue")


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
@click.option("-s", "--size", type=PairParam(), help="Kernel size K or KxL (rows x columns).")
@click.option("--stride", type=PairParam(), default="1", show_default=True, help="Stride S or SxT.")
@click.option(
    "-m", "--method", type=click.Choice(["cg", "gd", "lstsq"]), default=None,
    help="cg (default): conjugate gradient; gd: the chapter's gradient descent (the default "
    "when --lr is given); lstsq: a direct least-squares solve.",
)  # fmt: skip
@click.option(
    "--lr", type=_StepParam(), default=None,
    help="Gradient descent's step; 'auto' (default) is 0.95 of the largest safe step.",
)  # fmt: skip
@click.option("--tol", type=float, default=1e-7, show_default=True, callback=_positive_float,
              help="Stop when the loss sum((z-y)^2)/2/m falls below this.")  # fmt: skip
@click.option("--max-iter", type=click.IntRange(min=0), default=10000, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), help="Seed of the normal(0, 0.1) start.")
@click.option("--bias/--no-bias", default=False, show_default=True, help="Fit a bias too.")
@click.option("--per-channel", is_flag=True, help="One kernel per colour channel.")
@click.option("--grey", "--gray", "grey", is_flag=True, help="Fit on grey (luma) versions.")
@click.option(
    "--border", type=click.Choice(_BORDERS), default="interior", show_default=True,
    help="Same-size targets: fit only the pixels the border cannot touch (interior), or "
    "model the border as apply's --border does: zero, reflect (dcba|abcd), mirror (dcb|abcd, "
    "OpenCV's default), replicate (aaaa|abcd, ImageMagick's default) or wrap.",
)  # fmt: skip
@click.option("--keep-clipped", is_flag=True,
              help="Keep 8/16-bit target pixels at 0 or 1 (left out by default).")  # fmt: skip
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Write the kernel: .npy, .txt or .json (with the bias).")  # fmt: skip
@click.option("--overwrite", is_flag=True, help="Replace existing output files (never an input).")
@click.option("--compare", metavar="SPEC", help="Say whether the kernel is allclose to SPEC.")
@click.option("--atol", type=float, default=0.01, show_default=True, callback=_positive_float,
              help="Tolerance of --compare.")  # fmt: skip
@click.option("--log", "log_path", type=click.Path(dir_okay=False),
              help="Write the loss curve as CSV (iteration,loss).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the report.")
@max_pixels_option
def fit(input_path, target_path, size, stride, method, lr, tol, max_iter, seed, bias,
        per_channel, grey, border, keep_clipped, output, overwrite, compare, atol,
        log_path, as_json, max_pixels) -> None:  # fmt: skip
    """Recover the kernel that turned INPUT into TARGET.

    The loss is the chapter's, sum((z - y)^2) / 2 / m over the m target pixels fitted,
    z being INPUT convolved (cross-correlated) with the kernel. A TARGET smaller by K-1
    means a valid convolution and gives the size; one of the same size means 'same'
    padding (its size is detected, or give --size), fitted on the interior only unless
    --border says how the border was made. Colour pairs share one kernel unless
    --per-channel. 8- and 16-bit targets are read in [0, 1], and their pixels at 0 or 1
    (clipped by whoever saved them) are left out; .npy and float TIFF are exact.

    The run stops when the loss falls below --tol, or at its minimum when noise in the
    target keeps it above; a run cut short by --max-iter says so.

    \b
    Examples:
      convtool fit in.png edges.png                  what filter made edges.png?
      convtool fit disc.png target.npy --lr 0.5 --seed 1     the chapter's 17.3.7
      convtool fit in.png out.png --size 5 --bias -o k.json --compare gaussian:5
      convtool fit in.png out.png --json --log loss.csv
    """
    if method is None:
        method = "gd" if lr is not None else "cg"
    if lr is not None and method != "gd":
        raise click.BadParameter(f"--lr applies to --method gd, not {method}", param_hint="--lr")
    if per_channel and grey:
        raise click.UsageError("--per-channel and --grey exclude each other")
    _check_outputs(input_path, target_path, output, log_path)
    for path, what in ((output, "--output"), (log_path, "--log")):
        if path and os.path.lexists(path) and not overwrite:
            raise click.BadParameter(
                f"{path} exists; pass --overwrite to replace it", param_hint=what
            )
    if output:
        suffix = os.path.splitext(output)[1].lower()
        if suffix not in _KERNEL_SUFFIXES:
            raise click.BadParameter(
                f"{output}: kernels are written as {', '.join(_KERNEL_SUFFIXES)}", param_hint="-o"
            )
        if per_channel and suffix == ".txt":
            raise click.BadParameter("per-channel kernels need .json or .npy", param_hint="-o")
    reference = _reference(compare) if compare else None

    import numpy as np

    from convtool import fit as fitting
    from convtool import imaging

    x, y, clip, quantum, notes = _read_pair(
        imaging, input_path, target_path, grey, keep_clipped, max_pixels
    )
    try:
        with _progress(max_iter) as callback:
            result = fitting.fit_kernel(
                x, y, size=size, stride=stride, method=method, lr="auto" if lr is None else lr,
                tol=tol, max_iter=max_iter, seed=seed, bias=bias, per_channel=per_channel,
                border=border, clip=clip, quantum=quantum, callback=callback,
            )  # fmt: skip
    except fitting.ShapeError as e:
        raise click.UsageError(str(e)) from None
    except fitting.FitError as e:
        raise click.ClickException(str(e)) from None
    notes += list(result.notes)
    matches = _matches(fitting, result)
    comparison = _compare(np, result, reference, compare, atol) if reference is not None else None
    if output:
        _write_kernel(np, imaging, output, result, overwrite)
    if log_path:
        _write_log(imaging, log_path, result, overwrite)
    if as_json:
        import json

        data = result.to_dict()
        data["match"] = [None if m is None else m._asdict() for m in matches]
        data["match_text"] = [
            None if m is None else fitting.describe_match(m, b)
            for m, b in zip(matches, _biases(result), strict=True)
        ]
        if result.kernel.ndim != 3:
            data["match"], data["match_text"] = data["match"][0], data["match_text"][0]
        if comparison is not None:
            data["compare"] = comparison
        click.echo(json.dumps(data))
    else:
        click.echo(_report(result, matches, comparison, fitting))
    for note in notes:
        click.echo(f"note: {note}", err=True)
    if not result.converged:
        click.echo(
            f"convtool: warning: {result.method} stopped at --max-iter {result.max_iter} with "
            f"loss {result.loss:.3g}, short of --tol {result.tol:g}"
            + ("; --method cg finishes in far fewer steps" if result.method == "gd" else ""),
            err=True,
        )


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def _check_outputs(input_path, target_path, output, log_path) -> None:
    """Refuse, before the fit: a missing folder, writing over a picture read (even with
    --overwrite), or one file given twice."""
    for path, what in ((output, "--output"), (log_path, "--log")):
        folder = os.path.dirname(path or "") or "."
        if path and not os.path.isdir(folder):
            problem = "is not a folder" if os.path.exists(folder) else "does not exist"
            raise click.BadParameter(f"the folder of {path}, {folder}, {problem}", param_hint=what)
        for source in (input_path, target_path):
            if path and _same_file(path, source):
                raise click.BadParameter(
                    f"{path} is an input; inputs are never written, choose another file",
                    param_hint=what,
                )
    if output and log_path and _same_file(output, log_path):
        raise click.BadParameter(
            f"{output} is given to --output and --log; choose two files", param_hint="--log"
        )


def _reference(spec: str):
    from convtool.kernels import KernelSpecError, parse_kernel_spec

    try:
        return parse_kernel_spec(spec)
    except KernelSpecError as e:
        raise click.BadParameter(str(e), param_hint="--compare") from None


def _read_pair(imaging, input_path, target_path, grey, keep_clipped, max_pixels):
    """Both pictures as (H, W) or (C, H, W) arrays, the clip range, rounding step, notes."""
    import numpy as np

    from convtool.filtering import to_gray

    limit = max_pixels_limit(max_pixels)
    try:
        source = imaging.read_image(input_path, max_pixels=limit)
        target = imaging.read_image(target_path, max_pixels=limit)
    except imaging.ImageReadError as e:
        raise click.ClickException(str(e)) from None
    for path, picture in ((input_path, source), (target_path, target)):
        if not np.isfinite(picture.data).all():
            bad = int(picture.data.size - np.count_nonzero(np.isfinite(picture.data)))
            raise click.ClickException(
                f"{path} holds {bad:,} NaN or infinite value(s); the fit needs finite pixels"
            )
    x, y, notes = source.data, target.data, []
    if y.shape[0] > x.shape[0] or y.shape[1] > x.shape[1]:
        swapped = y.shape[0] >= x.shape[0] and y.shape[1] >= x.shape[1]  # would fit the other way
        side = "" if swapped else (" taller" if y.shape[0] > x.shape[0] else " wider")
        raise click.UsageError(
            f"{target_path} ({y.shape[0]}x{y.shape[1]}) is{side or ' larger'} than {input_path} "
            f"({x.shape[0]}x{x.shape[1]}): a filtered picture cannot be"
            + ("; are the two swapped?" if swapped else "")
        )
    if y.ndim == 3 and x.ndim == 2 and not grey:
        if not np.array_equal(y, y[:, :, :1].repeat(y.shape[2], axis=2)):
            raise click.UsageError(
                f"{target_path} is in colour but {input_path} is grey; give --grey to fit on "
                "grey versions of both"
            )
        y = y[:, :, 0]
    if x.ndim == 3 and (grey or y.ndim == 2):
        if not grey:
            notes.append(f"{target_path} is grey: fitting on a grey (luma) version of {input_path}")
        x = to_gray(x)
    clip = None if target.bit_depth == 32 or keep_clipped else (0.0, 1.0)
    if grey and y.ndim == 3:
        clipped = ((y <= 0) | (y >= 1)).any(axis=2) if clip is not None else None
        y = to_gray(y)
        if clipped is not None:
            y[clipped] = 0.0  # clipped in any channel: left out, as the fit leaves out 0
    quantum = None if target.bit_depth == 32 else 1 / (2**target.bit_depth - 1)
    return _channels_first(x), _channels_first(y), clip, quantum, notes


def _channels_first(a):
    import numpy as np

    return np.moveaxis(a, -1, 0) if a.ndim == 3 else a


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


def _biases(result):
    if result.kernel.ndim == 3:
        return [None] * len(result.kernel) if result.bias is None else list(result.bias)
    return [result.bias]


def _matches(fitting, result):
    kernels = result.kernel if result.kernel.ndim == 3 else [result.kernel]
    return [fitting.match_kernel(k) for k in kernels]


def _compare(np, result, reference, spec, atol):
    want = reference.weights
    kernels = result.kernel if result.kernel.ndim == 3 else result.kernel[None]
    if want.shape != kernels.shape[1:]:
        shape = "x".join(map(str, want.shape))
        reason = f"{spec} is {shape}, the fitted kernel {result.size[0]}x{result.size[1]}"
        return {
            "name": reference.name,
            "allclose": False,
            "max_abs_diff": None,
            "atol": atol,
            "reason": reason,
        }
    diff = float(np.abs(kernels - want).max())
    return {"name": reference.name, "allclose": diff <= atol, "max_abs_diff": diff, "atol": atol}


def _number(v: float, decimals: int) -> str:
    text = f"{v:.{decimals}f}"
    return "0" + text[2:] if text.startswith("-0") and float(text) == 0 else text


def _matrix(kernel) -> str:
    import numpy as np

    big = float(np.abs(kernel).max()) if kernel.size else 0.0
    if big == 0 or 1e-3 <= big < 1e5:
        decimals = 5
        cells = [[_number(v, decimals) for v in row] for row in kernel]
    else:
        cells = [[f"{v:.4e}" for v in row] for row in kernel]
    width = max(len(c) for row in cells for c in row)
    return "\n".join("  " + "  ".join(c.rjust(width) for c in row) for row in cells)


def _stop_text(r) -> str:
    if r.stopped == "tol":
        return f"converged: loss below --tol {r.tol:g}"
    if r.stopped == "minimum":
        return "converged: at the least-squares minimum"
    return f"NOT converged: stopped at --max-iter {r.max_iter}, loss above --tol {r.tol:g}"


def _report(r, matches, comparison, fitting) -> str:
    kh, kw = r.size
    how = {"lstsq": "direct least squares", "cg": "conjugate gradient"}.get(r.method, "")
    if r.method == "gd":
        how = f"gradient descent, lr {r.lr:.4g}"
    if r.seed is not None:
        how += f", seed {r.seed}"
    lines = [f"kernel {kh}x{kw} ({how})"]
    kernels = r.kernel if r.kernel.ndim == 3 else [r.kernel]
    biases = _biases(r)
    for c, (k, b, m) in enumerate(zip(kernels, biases, matches, strict=True)):
        if r.kernel.ndim == 3:
            name = _CHANNEL_NAMES[c] if len(kernels) == 3 else str(c)
            lines.append(f"channel {c} ({name})")
        lines.append(_matrix(k))
        lines.append(f"bias        {'none' if b is None else f'{b:.6g}'}")
        if m is None:
            lines.append("match       no named kernel")
        elif m.exact:
            lines.append(f"match       {fitting.describe_match(m, b)}")
        else:
            lines.append(f"match       close to {fitting.describe_match(m, b)} "
                         f"(relative difference {m.error:.1%})")  # fmt: skip
    lines.append(f"iterations  {r.iterations} ({_stop_text(r)})")
    best = f" (the least any {kh}x{kw} kernel reaches: {r.loss_min:.3g})" if r.loss_min > 0 else ""
    lines.append(f"loss        {r.loss:.4g}{best}")
    psnr = "exact" if r.psnr == float("inf") else f"{r.psnr:.2f} dB"
    lines.append(f"PSNR        {psnr}")
    where = {"valid": "valid", "interior": "interior of a same-size target"}.get(
        r.padding, f"{r.padding} border"
    )
    lines.append(f"pixels      {r.pixels} fitted ({where}); {r.clipped} clipped left out")
    if comparison is not None:
        verdict = "allclose" if comparison["allclose"] else "NOT close"
        if comparison["max_abs_diff"] is None:
            detail = comparison["reason"]
        else:
            detail = f"max difference {comparison['max_abs_diff']:.3g}, atol {comparison['atol']:g}"
        lines.append(f"compare     {comparison['name']}: {verdict} ({detail})")
    return "\n".join(lines)


def _kernel_for_file(np, result):
    """A 2-D kernel, or per-channel kernels as a block-diagonal (C, C, kH, kW) one."""
    if result.kernel.ndim == 2:
        return result.kernel
    c = result.kernel.shape[0]
    full = np.zeros((c, c, *result.kernel.shape[1:]))
    for i in range(c):
        full[i, i] = result.kernel[i]
    return full


def _write_kernel(np, imaging, path, result, overwrite) -> None:
    import json

    kernel = _kernel_for_file(np, result)
    suffix = os.path.splitext(path)[1].lower()
    bias = result.bias
    try:
        if suffix == ".npy":
            imaging.save_array(path, kernel, overwrite=overwrite)
            if bias is not None:
                click.echo(
                    f"note: {path} holds the kernel only; .json keeps the bias too", err=True
                )
        elif suffix == ".json":
            data = {"kernel": kernel.tolist()}
            if bias is not None:
                data["bias"] = bias.tolist() if isinstance(bias, np.ndarray) else bias
            imaging.atomic_write_bytes(
                path, (json.dumps(data) + "\n").encode(), overwrite=overwrite
            )
        else:
            rows = [" ".join(repr(float(v)) for v in row) for row in kernel]
            head = f"# fitted by convtool fit: {result.size[0]}x{result.size[1]}"
            if bias is not None:
                head += f"; bias {bias!r} (not part of the kernel)"
            text = "\n".join([head, *rows]) + "\n"
            imaging.atomic_write_bytes(path, text.encode(), overwrite=overwrite)
    except imaging.ImageWriteError as e:
        raise click.ClickException(str(e)) from None


def _write_log(imaging, path, result, overwrite) -> None:
    first = result.iterations - len(result.history) + 1
    lines = ["iteration,loss"] + [
        f"{first + i},{v!r}" for i, v in enumerate(result.history.tolist())
    ]
    try:
        imaging.atomic_write_bytes(path, ("\n".join(lines) + "\n").encode(), overwrite=overwrite)
    except imaging.ImageWriteError as e:
        raise click.ClickException(str(e)) from None
