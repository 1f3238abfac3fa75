"""The command line: the click group, its entry point and error handling.

Each command lives in its own module beside this one.

Parsing, messages and rich output live here; arithmetic does not. Heavy modules
(numpy, numba, pillow) are imported inside the commands that need them, so that
``--help``, ``shape`` and ``kernels`` answer without paying for numba.
"""

from __future__ import annotations

import os
import sys

import click

from convtool._version import __version__

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="convtool")
def cli() -> None:
    """Filter pictures with convolution kernels, run conv -> relu -> pool, and
    recover the kernel that turned one picture into another.

    \b
    Examples:
      convtool apply photo.png -k sobel_x -o edges.png
      convtool pipeline disc.png -k sobel_x -o pooled.png
      convtool fit in.png out.png
      convtool shape 28 --kernel 5
      convtool kernels
    """


def _not_yet(name: str) -> None:
    raise click.ClickException(f"'convtool {name}' is not available in this version yet")


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def pipeline() -> None:
    """Run conv -> relu -> pool on a picture, stage by stage (not available yet)."""
    _not_yet("pipeline")


from convtool.cli._apply import apply  # noqa: E402
from convtool.cli._fit import fit  # noqa: E402
from convtool.cli._kernels import kernels  # noqa: E402
from convtool.cli._shape import shape  # noqa: E402

cli.add_command(apply)
cli.add_command(fit)
cli.add_command(shape)
cli.add_command(kernels)


def main() -> None:
    """Entry point of the ``convtool`` script."""
    debug = os.environ.get("CONVTOOL_DEBUG", "") not in ("", "0")
    try:
        cli.main(prog_name="convtool", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("convtool: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("convtool: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        # the reader went away (e.g. `| head`): quietly stop
        sys.stderr.close()
        sys.exit(1)
    except Exception as e:  # an unexpected failure: one line, not a traceback
        if debug:
            raise
        click.echo(f"convtool: error: {e} (set CONVTOOL_DEBUG=1 for the traceback)", err=True)
        sys.exit(1)
