"""`convtool kernels`: the named kernel bank, as tables or JSON."""

from __future__ import annotations

import click

from convtool.cli._params import said


@click.command()
@click.argument("specs", nargs=-1, metavar="[SPEC]...")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts instead of tables.")
def kernels(specs: tuple[str, ...], as_json: bool) -> None:
    """List the named kernels, or show the kernel each SPEC gives.

    A SPEC is anything -k accepts. Names ignore case, and '-', '_' and a space
    are alike (sobel_x = sobel-x = "Sobel X"). Parameters follow a colon
    (gaussian:7,1.5). Rotation is @ANGLE after any name (kirsch@45, motion:9@90);
    names without parameters also take ImageMagick's NAME:ANGLE (sobel_x:90).
    Angles turn clockwise as ImageMagick's Sobel:90 does; 90-degree steps for any
    kernel, 45-degree steps for 3x3 ones.

    \b
    Examples:
      convtool kernels
      convtool kernels sobel_x:90 kirsch@45 gaussian:5,1
      convtool kernels "0,-1,0; -1,5,-1; 0,-1,0"
      convtool kernels "3x3: 1,2,1 2,4,2 1,2,1"
      convtool kernels @kernel.json --json
    """
    from convtool.kernels import list_kernels

    if not specs:
        infos = list_kernels()
        if as_json:
            click.echo(_bank_json(infos))
        else:
            _print_bank(infos)
        return
    parsed = [_parse(spec) for spec in specs]
    if as_json:
        click.echo(_specs_json(parsed))
        return
    console = _console()
    for k in parsed:
        console.print(_spec_panel(k))


_BANK_FOOTNOTE = (
    "Names ignore case; '-', '_' and space are alike. Parameters: NAME:A,B. "
    "Rotation: NAME@ANGLE, or NAME:ANGLE for names without parameters; clockwise "
    "as ImageMagick, 90-degree steps for any kernel, 45 for 3x3. Also inline "
    '"0,-1,0; -1,5,-1; 0,-1,0", "3x3: ..." and @FILE (.txt .csv .json .npy).'
)
_MAX_SLICES = 16  # slices of a 4-D kernel shown; the rest are counted


def _parse(spec: str):
    from convtool.kernels import KernelSpecError, parse_kernel_spec

    try:
        return parse_kernel_spec(spec)
    except KernelSpecError as e:
        raise click.BadParameter(said(e), param_hint="SPEC") from None


def _describe(k) -> tuple[tuple[str, ...], str]:
    """A parsed spec's aliases and description: the bank's, or where the kernel came from.

    A rotated kernel is named by the bank's kernels it equals (kirsch@45 is kirsch_nw),
    never by the aliases or description of the kernel it was turned from."""
    from convtool.kernels import kernel_info, kernels_equal_to

    if k.base is None:
        return (), "custom kernel" if k.name == "custom" else f"kernel from {k.name}"
    if k.base.startswith("im:"):
        spec = k.name[3:]
        return (), f"ImageMagick's {spec}, as -morphology Convolve uses it (--flip in apply)"
    if not _rotated(k):
        info = kernel_info(k.base)
        return info.aliases, info.description
    base, angle = k.name.rsplit("@", 1)
    turned = f"{base} turned {angle} degrees clockwise"
    same = kernels_equal_to(k.weights) if k.weights.ndim == 2 and not k.parts else []
    if not same:
        return (), f"{turned}; {kernel_info(k.base).name}: {kernel_info(k.base).description}"
    names = tuple(n for i in same for n in (i.name, *i.aliases))
    return names, f"{turned}, which is {same[0].name}: {same[0].description}"


def _rotated(k) -> bool:
    return k.base is not None and "@" in k.name and not k.base.startswith("im:")


# ----------------------------------------------------------------------------- JSON


def _bank_json(infos) -> str:
    """The bank as a JSON list, one entry a line."""
    import json

    rows = [
        {
            "name": i.name,
            "aliases": list(i.aliases),
            "shape": list(i.kernel.shape),
            "kernel": i.kernel.tolist(),
            "description": i.description,
            "syntax": i.syntax,
        }
        for i in infos
    ]
    return "[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]"


def _specs_json(parsed) -> str:
    """The specs' kernels as JSON: one object, or a list of them for several specs."""
    import json

    objects = []
    for k in parsed:
        aliases, description = _describe(k)
        record = {
            "name": k.name,
            "aliases": list(aliases),
            "shape": list(k.weights.shape),
            "kernel": k.weights.tolist(),
            "description": description,
            "bias": k.bias,
        }
        if _rotated(k):  # the bank's kernel it is, if any
            record["is"] = aliases[0] if aliases else None
        if k.parts:  # a gradient magnitude: every kernel it takes
            record["parts"] = [p.tolist() for p in k.parts]
        if k.chain:  # a kernel list: the kernels after the first, in order
            record["chain"] = [c.tolist() for c in k.chain]
        objects.append(record)
    return json.dumps(objects[0] if len(objects) == 1 else objects)


# ----------------------------------------------------------------------------- tables


def _console():
    from rich.console import Console

    return Console(highlight=False)


def _matrix(w):
    """A 2-D kernel as text, negative weights red and zeros dim."""
    from rich.text import Text

    from convtool.kernels import format_kernel

    text = Text(format_kernel(w))
    text.highlight_regex(r"(?<![0-9.e])-[0-9][0-9.e+-]*", "red")
    text.highlight_regex(r"(?<![0-9.e-])0(?![0-9.])", "dim")
    return text


def _print_bank(infos) -> None:
    from rich.text import Text

    console = _console()
    console.print(_bank_table(infos))
    console.print(Text(_BANK_FOOTNOTE, style="dim"))


def _bank_table(infos):
    """The bank as one table: names and aliases, kernel, syntax and description; groups split."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False, show_edge=False)
    table.add_column("name, aliases", style="bold cyan", no_wrap=True)
    table.add_column("kernel", no_wrap=True)
    table.add_column("description", ratio=1)
    for n, i in enumerate(infos):
        if n and i.group != infos[n - 1].group:
            table.add_section()
        elif n:
            table.add_row()
        name = Text(i.name)
        for alias in i.aliases:
            name.append(f"\n {alias}", style="not bold")
        description = Text(i.description)
        if i.syntax != i.name:
            description = Text.assemble((i.syntax, "bold"), "\n", description)
        h, w = i.kernel.shape
        # a wide kernel would squeeze the names: its size instead (convtool kernels NAME shows it)
        kernel = _matrix(i.kernel) if w <= 5 else Text(f"{h}x{w}", style="dim")
        table.add_row(name, kernel, description)
    return table


def _spec_panel(k):
    """One parsed spec in a panel: its kernel (or 4-D slices), shape, sum, bias, aliases."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.text import Text

    from convtool.kernels import format_number

    aliases, description = _describe(k)
    w = k.weights
    title = k.name + (f" = {aliases[0]}" if aliases and _rotated(k) else "")
    aliases = aliases[1:] if _rotated(k) else aliases
    parts = []
    if k.chain:  # ImageMagick's kernel list: each kernel, one after another
        for n, step in enumerate((w, *k.chain)[:_MAX_SLICES]):
            parts += [Text(f"kernel {n + 1} of {len(k.chain) + 1}", style="bold"), _matrix(step)]
    elif w.ndim == 2:
        parts.append(_matrix(w))
    else:
        slices = [(o, i) for o in range(w.shape[0]) for i in range(w.shape[1])]
        for o, i in slices[:_MAX_SLICES]:
            parts += [Text(f"out {o}, in {i}", style="bold"), _matrix(w[o, i])]
        if len(slices) > _MAX_SLICES:
            parts.append(Text(f"... and {len(slices) - _MAX_SLICES} more slices", style="dim"))
    facts = f"shape {tuple(w.shape)} · sum {format_number(w.sum())}"
    if k.bias is not None:
        bias = k.bias if isinstance(k.bias, tuple) else (k.bias,)
        facts += " · bias " + " ".join(format_number(b) for b in bias)
    if aliases:
        facts += " · also " + ", ".join(aliases)
    parts += [Text(facts, style="dim"), Text(description, style="dim")]
    return Panel(
        Group(*parts), title=Text(title, style="bold cyan"), title_align="left", expand=False
    )
