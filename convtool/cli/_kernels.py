"""`convtool kernels`: the named kernel bank, as tables or JSON."""

from __future__ import annotations

import click


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
    import json

    from convtool.kernels import (
        KernelSpecError,
        format_kernel,
        format_number,
        kernel_info,
        list_kernels,
        parse_kernel_spec,
    )

    if not specs:
        infos = list_kernels()
        if as_json:
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
            click.echo("[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]")
            return
    parsed = []
    for spec in specs:
        try:
            parsed.append(parse_kernel_spec(spec))
        except KernelSpecError as e:
            raise click.BadParameter(str(e), param_hint="SPEC") from None

    def describe(k) -> tuple[tuple[str, ...], str]:
        if k.base is None:
            return (), "custom kernel" if k.name == "custom" else f"kernel from {k.name}"
        info = kernel_info(k.base)
        return info.aliases, info.description

    if as_json:
        objects = []
        for k in parsed:
            aliases, description = describe(k)
            objects.append(
                {
                    "name": k.name,
                    "aliases": list(aliases),
                    "shape": list(k.weights.shape),
                    "kernel": k.weights.tolist(),
                    "description": description,
                    "bias": k.bias,
                }
            )
        click.echo(json.dumps(objects[0] if len(objects) == 1 else objects))
        return

    from rich import box
    from rich.console import Console, Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    def matrix(w) -> Text:
        text = Text(format_kernel(w))
        text.highlight_regex(r"(?<![0-9.e])-[0-9][0-9.e+-]*", "red")
        text.highlight_regex(r"(?<![0-9.e-])0(?![0-9.])", "dim")
        return text

    console = Console(highlight=False)
    if not specs:
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
            table.add_row(name, matrix(i.kernel), description)
        console.print(table)
        console.print(
            Text(
                "Names ignore case; '-', '_' and space are alike. Parameters: NAME:A,B. "
                "Rotation: NAME@ANGLE, or NAME:ANGLE for names without parameters; clockwise "
                "as ImageMagick, 90-degree steps for any kernel, 45 for 3x3. Also inline "
                '"0,-1,0; -1,5,-1; 0,-1,0", "3x3: ..." and @FILE (.txt .csv .json .npy).',
                style="dim",
            )
        )
        return

    for k in parsed:
        aliases, description = describe(k)
        w = k.weights
        if k.base is not None and "@" in k.name:
            base, angle = k.name.rsplit("@", 1)
            description = f"{base} turned {angle} degrees clockwise. {description}"
        parts = []
        if w.ndim == 2:
            parts.append(matrix(w))
        else:
            slices = [(o, i) for o in range(w.shape[0]) for i in range(w.shape[1])]
            for o, i in slices[:16]:
                parts += [Text(f"out {o}, in {i}", style="bold"), matrix(w[o, i])]
            if len(slices) > 16:
                parts.append(Text(f"... and {len(slices) - 16} more slices", style="dim"))
        facts = f"shape {tuple(w.shape)} · sum {format_number(w.sum())}"
        if k.bias is not None:
            bias = k.bias if isinstance(k.bias, tuple) else (k.bias,)
            facts += " · bias " + " ".join(format_number(b) for b in bias)
        if aliases:
            facts += " · also " + ", ".join(aliases)
        parts += [Text(facts, style="dim"), Text(description, style="dim")]
        console.print(
            Panel(
                Group(*parts),
                title=Text(k.name, style="bold cyan"),
                title_align="left",
                expand=False,
            )
        )
