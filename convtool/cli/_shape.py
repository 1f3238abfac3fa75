"""`convtool shape`: output sizes and layer chains (pure arithmetic, no numpy, no numba)."""

from __future__ import annotations

import click

from convtool import vocab
from convtool.cli._params import PaddingParam, PairParam, alias_option, merged, said


def _dims_text(values, square: bool) -> str:
    return str(values[0]) if square else "x".join(map(str, values))


def _rows_cols(rows: int, cols: int) -> str:
    parts = [f"{n} {w}{'' if n == 1 else 's'}" for n, w in ((rows, "row"), (cols, "column")) if n]
    return " and ".join(parts)


def _split_text(before: int, after: int) -> str:
    return str(before) if before == after else f"{before}+{after}"


def _split_note(pairs, square: bool) -> str:
    (top, bottom), (left, right) = pairs
    if square:
        return f"{top} before and {bottom} after"
    return f"rows {top}+{bottom} and columns {left}+{right} (before+after)"


def _kernel_shape(spec: str) -> tuple[int, ...]:
    """The weights' shape of a kernel a conv names, as the pipeline would run it (numpy
    is loaded for it only when a layer names a kernel)."""
    from convtool.kernels import KernelSpecError, parse_kernel_spec

    try:
        parsed = parse_kernel_spec(spec)
    except KernelSpecError as e:
        raise ValueError(str(e)) from None
    if parsed.parts:
        raise ValueError(
            f"{parsed.name} is the gradient magnitude of two kernels; a conv takes "
            f"{parsed.base}_x or {parsed.base}_y"
        )
    if parsed.chain:
        raise ValueError(f"{parsed.name} is a list of kernels; give each its own conv")
    return parsed.weights.shape


def _check_conv(spec: str) -> None:
    """What the sizes do not show but the pipeline checks: a conv's border; and a note
    for conv:N, one 1x1 kernel of weight N, where conv:N@K may have been meant."""
    from convtool.shapes import grammar

    name, _, rest = spec.partition(":")
    if grammar.kind_of(name) != "conv":
        return
    head, given = grammar.split(rest, "conv")
    border = grammar.options(given, "conv").get("border")
    if border is not None:
        vocab.check("border", border, vocab.BORDERS, sep=",")
    if grammar.lone_number(head):
        click.echo(
            f"note: {spec.strip()} is one 1x1 kernel of weight {head.strip()} (as pipeline "
            f"runs it); {head.strip()} kernels of size K are conv:{head.strip()}@K",
            err=True,
        )


def _shape_chain(dims: tuple, specs: tuple, as_json: bool) -> None:
    import json

    from convtool import shapes

    layers = []
    for spec in shapes.grammar.split_chain(specs):  # a pipeline's "a -> b" too
        try:
            layers.append(shapes.parse_layer(spec, kernel_shape=_kernel_shape))
            _check_conv(spec)
        except ValueError as e:
            raise click.BadParameter(said(e), param_hint="LAYER") from None
    if len(dims) == 2:
        dims = (1, *dims)
    try:
        result = shapes.summary(dims, layers)
    except ValueError as e:
        raise click.UsageError(said(e)) from None
    if as_json:
        click.echo(json.dumps(result))
        return
    from rich import box
    from rich.console import Console
    from rich.table import Table

    def text(shape):
        return "x".join(map(str, shape))

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, show_footer=True, header_style="bold")
    table.add_column("#", justify="right", footer="")
    table.add_column("layer", footer="total")
    table.add_column("output shape", footer=text(result["output"]))
    table.add_column("params", justify="right", footer=f"{result['total_params']:,}")
    table.add_column("mult-adds", justify="right", footer=f"{result['total_macs']:,}")
    table.add_row("", "input", text(result["input"]), "", "")
    for i, row in enumerate(result["layers"], 1):
        params = f"{row['params']:,}" if row["params"] else "-"
        macs = f"{row['macs']:,}" if row["macs"] else "-"
        table.add_row(str(i), row["layer"], text(row["shape"]), params, macs)
    console = Console(highlight=False)
    with console.capture() as captured:
        console.print(table)
    for line in captured.get().splitlines():  # no trailing blanks when piped
        click.echo(line.rstrip())


def _shape_solve(dims, kernel, stride, dilation, target, square, as_json) -> None:
    import json

    from convtool import shapes

    goal = dims if target is None else target
    square = square and goal[0] == goal[1]
    sols = []
    for i, axis in enumerate(("height", "width")):
        try:
            sols.append(shapes.solve_padding(dims[i], kernel[i], stride[i], dilation[i], goal[i]))
        except ValueError as e:
            raise click.UsageError(said(e) if square else f"{axis}: {e}") from None
    symmetric = all(sol.symmetric is not None for sol in sols)
    if as_json:
        h, w = sols
        result = {
            "height": h.output,
            "width": w.output,
            "padding": [h.before, h.after, w.before, w.after],
            "symmetric": [h.symmetric, w.symmetric],
        }
        click.echo(json.dumps(result))
    elif symmetric:
        click.echo(_dims_text([sol.symmetric for sol in sols], square))
    else:
        click.echo(_dims_text([_split_text(sol.before, sol.after) for sol in sols], square))
    tight = _split_note([(sol.before, sol.after) for sol in sols], square)
    verb = "keeps" if target is None else "gives"
    if not symmetric:
        message = f"no symmetric padding {verb} {_dims_text(goal, square)}: pad {tight}"
        click.echo(f"note: {message}, as 'same' does", err=True)
    elif any(sol.symmetric_unused for sol in sols):
        unused = _rows_cols(*(sol.symmetric_unused for sol in sols))
        click.echo(f"note: this leaves {unused} unused; the tightest fit pads {tight}", err=True)


_SHAPE_HELP = """Output sizes of a convolution or pooling window, or of a whole chain of layers.

\b
One layer: INPUT is N (an NxN picture) or HxW. It prints the output size, N' or
H'xW', with the chapter's formula floor((N - K + 2P) / S) + 1, where a dilated
kernel spans D*(K-1)+1 pixels. When the stride does not divide evenly, a note on
stderr says how many rows and columns the last window leaves unused (the formula
truncates). --pool gives a pooling window (stride defaults to the window; padding
at most half of it, as torch checks); --ceil is pooling's ceil mode, where, as in
torch, a last window that starts inside the input or its leading padding is kept
even where it overhangs.

\b
  convtool shape 28 --size 5                     24
  convtool shape 28x32 --size 5 -s 2 -p 1        13x15
  convtool shape 28 --size 3 -p same             28
  convtool shape 5 --size 2 --ceil               3   (a 2x2 pool, stride 2, ceil mode)
  convtool shape 28 --size 5 --json              {"height": 24, "width": 24}

\b
Solve for padding: --keep prints the padding per side that keeps the input size,
--target T (or HxW) the padding that gives T; "1+2" means 1 before and 2 after,
when no symmetric padding fits (an even kernel keeping the size).

\b
  convtool shape 28 --size 5 --keep              2
  convtool shape 28 --size 4 --keep              1+2
  convtool shape 28 --size 3 -s 2 --target 14    1

\b
A chain: INPUT is CxHxW (HxW: one channel; N: a flat vector of N features),
followed by layers. It prints a table of each layer's output shape, parameters
(weights and biases) and multiply-adds (conv and fc only), with totals; --json
gives the same as {"layers": [...], "total_params", "total_macs", "output"}.

\b
Layers, the grammar of pipeline's stages (K, S, P, D are N or HxW, rows x
columns; options in any order; stages of one argument joined by ->):
  conv:C@K[,s=S][,p=P|same|valid][,d=D][,nobias]   C output channels, KxK kernel
  conv:KERNEL[+KERNEL...][,s=S][,p=P][,d=D]...     pipeline's: any -k spec, a map each
  maxpool[:K][,s=S][,p=P][,d=D][,ceil]             window 2, stride the window
  avgpool[:K][,s=S][,p=P][,ceil]
  fc:N[,nobias]  (or linear:N)                     N outputs; needs a flat input
  flatten    relu  leakyrelu  sigmoid  tanh  gelu  softmax    dropout[:RATE]
  bn         batch norm: 2 parameters (scale, shift) per channel
Long option names work too: stride=, padding=, dilation=. As torch does, a conv
refuses p=same with a stride, and a pool padding over half its window.

\b
  convtool shape 1x28x28 conv:4@5 relu maxpool:2 conv:6@5 relu maxpool:2 \\
      flatten fc:120 fc:10
  convtool shape 3x224x224 conv:64@7,s=2,p=3 bn relu maxpool:3,s=2,p=1
  convtool shape 784 fc:128 relu fc:10 --json
  convtool shape 3x64x64 "conv:sobel_x+blur,p=same -> relu -> maxpool:2"
"""


@click.command(help=_SHAPE_HELP, short_help="Output sizes of convolutions, pools and layer chains.")
@click.argument("input_shape", metavar="INPUT")
@click.argument("layers", nargs=-1, metavar="[LAYER]...")
@click.option("--size", type=PairParam(), metavar="N|HxW", help="Kernel size (or pool window).")
@alias_option("shape", "-k/--kernel", "old_size", type=PairParam())
@click.option(
    "-s", "--stride", type=PairParam(), metavar="N|HxW", help="Stride  [default: 1; pools: K]"
)
@click.option(
    "-p",
    "--padding",
    type=PaddingParam(),
    metavar="N|HxW|same|valid",
    help="Per side  [default: 0]",
)
@click.option("-d", "--dilation", type=PairParam(), metavar="N|HxW", help="Dilation  [default: 1]")
@click.option("--pool", is_flag=True, help="A pooling window: torch's pooling rules.")
@click.option("--ceil", is_flag=True, help="Pooling's ceil mode (implies --pool).")
@click.option("--keep", is_flag=True, help="Solve for the padding that keeps the input size.")
@click.option(
    "--target", type=PairParam(), metavar="N|HxW", help="Solve for the padding giving this size."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def shape(
    input_shape, layers, size, old_size, stride, padding, dilation, pool, ceil, keep, target,
    as_json,
) -> None:  # fmt: skip
    from convtool import shapes

    kernel = merged(size, old_size, "shape", "-k/--kernel")

    try:
        dims = shapes.parse_dims(input_shape)
    except ValueError as e:
        raise click.BadParameter(said(e), param_hint="INPUT") from None
    one_layer = {
        "--size": kernel, "-s": stride, "-p": padding, "-d": dilation,
        "--pool": pool, "--ceil": ceil, "--keep": keep, "--target": target,
    }  # fmt: skip
    given = [name for name, value in one_layer.items() if value not in (None, False)]
    if layers:
        if given:
            raise click.UsageError(
                f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} for a single layer; "
                "in a chain, put the options "
                "in each layer, e.g. conv:8@3,s=2,p=1"
            )
        _shape_chain(dims, layers, as_json)
        return
    if kernel is None:
        raise click.UsageError(
            "give a kernel size (--size 5) for one layer, or layers after the input for a chain; "
            "see 'convtool shape --help'"
        )
    if len(dims) == 3:
        raise click.BadParameter(
            f"one layer takes N or HxW, got {input_shape!r}; for CxHxW, give a chain "
            f"(e.g. convtool shape {input_shape} conv:8@{kernel[0]})",
            param_hint="INPUT",
        )
    # an N input with the same numbers on both axes prints N'; otherwise H'xW'
    square = len(dims) == 1 and all(v is None or v[0] == v[1] for v in (kernel, stride, dilation))
    square = square and (not isinstance(padding, tuple) or padding[0] == padding[1])
    dims = (dims[0], dims[-1])
    pool = pool or ceil
    stride = stride or (kernel if pool else (1, 1))
    dilation = dilation or (1, 1)
    if keep or target is not None:
        if keep and target is not None:
            raise click.UsageError("give --keep or --target, not both")
        if padding is not None or pool:
            raise click.UsageError(
                "--keep/--target solve for the padding of a convolution; drop -p, --pool and --ceil"
            )
        _shape_solve(dims, kernel, stride, dilation, target, square, as_json)
        return
    _shape_layer(dims, kernel, stride, padding, dilation, pool, ceil, square, as_json)


def _shape_layer(dims, kernel, stride, padding, dilation, pool, ceil, square, as_json) -> None:
    """One layer's output size, with notes on 'same' splits, unused rows and overhangs."""
    import json

    from convtool import shapes

    padding = 0 if padding is None else padding
    if pool and isinstance(padding, str):
        raise click.BadParameter(
            "a pool's padding is a number, not 'same'/'valid'", param_hint="'-p' / '--padding'"
        )
    try:
        shapes.check_torch_padding(padding, dims, kernel, stride, dilation)
        top, bottom, left, right = shapes.resolve_padding(padding, dims, kernel, stride, dilation)
    except ValueError as e:
        raise click.BadParameter(said(e), param_hint="'-p' / '--padding'") from None
    out, rest = [], []
    before, after = (top, left), (bottom, right)
    for i, axis in enumerate(("height", "width")):
        n, k, s, d = dims[i], kernel[i], stride[i], dilation[i]
        try:
            if pool:
                out.append(shapes.pool_output_size(n, k, s, before[i], d, ceil))
            else:
                out.append(shapes.output_size_padded(n, k, s, before[i], after[i], d))
            rest.append(shapes.leftover(n, k, s, before[i], after[i], d, ceil))
        except ValueError as e:
            raise click.UsageError(said(e) if square else f"{axis}: {e}") from None
    if as_json:
        click.echo(json.dumps({"height": out[0], "width": out[1]}))
    else:
        click.echo(_dims_text(out, square))
    if (top, left) != (bottom, right):
        split = _split_note([(top, bottom), (left, right)], square)
        click.echo(f"note: 'same' pads {split}, the extra one after, as torch does", err=True)
    unused = [max(r, 0) for r in rest]
    over = [max(-r, 0) for r in rest]
    if any(unused):
        click.echo(
            f"note: the division is not exact: the last window leaves {_rows_cols(*unused)} unused",
            err=True,
        )
    if any(over):
        click.echo(
            f"note: ceil mode: the last window overhangs the padded input by {_rows_cols(*over)}",
            err=True,
        )
