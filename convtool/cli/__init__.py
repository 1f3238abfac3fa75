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

from convtool import vocab
from convtool._shared import typed_line
from convtool._version import __version__

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
_state = {"debug": False}  # set by --debug or CONVTOOL_DEBUG; read by main()


def _debug_env() -> bool:
    return os.environ.get("CONVTOOL_DEBUG", "").strip() not in ("", "0")


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        _state["debug"] = True


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="convtool")
@click.option(
    "--debug",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_set_debug,
    help="Show the full traceback of an unexpected error, for a bug report "
    "(also CONVTOOL_DEBUG=1).",
)
def cli() -> None:
    """Filter pictures with convolution kernels, run conv -> relu -> pool, and
    recover the kernel that turned one picture into another.

    \b
    Examples:
      convtool apply photo.png -k sobel_x -o edges.png
      convtool pipeline disc.png -k sobel_x -o pooled.png
      convtool fit in.png out.png
      convtool shape 28 --size 5
      convtool kernels
    """


from convtool.cli._apply import apply  # noqa: E402
from convtool.cli._fit import fit  # noqa: E402
from convtool.cli._kernels import kernels  # noqa: E402
from convtool.cli._pipeline import pipeline  # noqa: E402
from convtool.cli._shape import shape  # noqa: E402

cli.add_command(apply)
cli.add_command(pipeline)
cli.add_command(fit)
cli.add_command(shape)
cli.add_command(kernels)


def main(args: list[str] | None = None) -> None:
    """Entry point of the ``convtool`` script; ``args`` default to the command line.

    Exit codes: 0 done, 1 a failure (one line on stderr), 2 bad usage, 130
    interrupted. An unexpected error prints one line too, unless ``--debug`` or
    ``CONVTOOL_DEBUG=1`` asks for its traceback.
    """
    _state["debug"] = _debug_env()
    try:
        cli.main(args=args, prog_name="convtool", standalone_mode=False)
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
        if _state["debug"]:
            raise
        hint = "run with --debug or CONVTOOL_DEBUG=1 for the traceback"
        click.echo(f"convtool: error: {typed_line(e, vocab.as_flag)} ({hint})", err=True)
        sys.exit(1)
