"""The command line: the click group, its entry point and error handling.

Each command lives in its own module beside this one.

Parsing, messages and rich output live here; arithmetic does not. Heavy modules
(numpy, numba, pillow) are imported inside the commands that need them, so that
``--help``, ``shape`` and ``kernels`` answer without paying for numba.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
from typing import ClassVar

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


class _Commands(click.Group):
    """The group whose commands are loaded from their modules when first named: a command
    run from a script imports its own module alone (``--help`` lists them all)."""

    MODULES: ClassVar[dict[str, str]] = {
        "apply": "_apply", "fit": "_fit", "kernels": "_kernels",
        "pipeline": "_pipeline", "shape": "_shape",
    }  # fmt: skip

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.MODULES)

    def get_command(self, ctx: click.Context | None, name: str) -> click.Command | None:
        if name not in self.commands and name in self.MODULES:
            module = importlib.import_module(f"convtool.cli.{self.MODULES[name]}")
            self.add_command(getattr(module, name))
        return self.commands.get(name)

    def all_commands(self) -> dict[str, click.Command]:
        """Every command by name, loaded."""
        return {name: self.get_command(None, name) for name in self.list_commands(None)}


@click.group(cls=_Commands, context_settings=CONTEXT)
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


def main(args: list[str] | None = None) -> None:
    """Entry point of the ``convtool`` script; ``args`` default to the command line.

    Exit codes: 0 done, 1 a failure (one line on stderr), 2 bad usage, 130
    interrupted. An unexpected error prints one line too, unless ``--debug`` or
    ``CONVTOOL_DEBUG=1`` asks for its traceback.
    """
    # the cyclic collector stays off for one picture: the command's imports make tens of
    # thousands of objects and no cycles worth finding, and scanning them again and again
    # took 4-5 ms of a 150 ms command (a batch of pictures turns it back on: run_batch)
    collecting = gc.isenabled()
    gc.disable()
    try:
        _main(args)
    finally:  # for a program that calls main() and goes on
        if collecting:
            gc.enable()


def _main(args: list[str] | None) -> None:
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
