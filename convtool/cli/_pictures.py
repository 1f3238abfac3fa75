"""What the commands that write pictures (apply, pipeline) share before anything runs:
standard input and output, and output planning's refusals as click reports them."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

import click

from convtool.cli._params import max_pixels_limit, said


def spare_blas_threads() -> None:
    """Before numpy loads: no OpenBLAS thread pool (~5 ms of start-up, and CPU the
    filters need on a small machine), for ``apply``, whose pictures the core's own
    threads filter; ``pipeline`` keeps it for deep layers' products (core/gemm.py)."""
    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


@contextlib.contextmanager
def planning() -> Iterator[None]:
    """Output planning's PlanError as click says it: a bad value of the option to blame
    (or bad usage when none is), exit code 2."""
    from convtool.batch.outputs import PlanError

    try:
        yield
    except PlanError as e:
        if e.option is None:
            raise click.UsageError(said(e)) from None
        raise click.BadParameter(said(e), param_hint=f"'{e.option}'") from None


def check_stdout(output: str | None, as_json: bool) -> None:
    """Refuse a picture written to standard output ('-') with --json, or to a terminal."""
    if output == "-":
        if as_json:
            raise click.UsageError("--json prints records on standard output, which -o - needs")
        if sys.stdout.isatty():
            raise click.UsageError(
                "refusing to write a picture to a terminal; redirect it or give -o FILE"
            )


def read_stdin(max_pixels: int | None) -> Any:
    """The picture on standard input ('-'), read once for the whole run."""
    from convtool import imaging

    if sys.stdin is None or sys.stdin.isatty():
        raise click.UsageError("'-' reads a picture from standard input, but it is a terminal")
    try:
        return imaging.read_image("-", max_pixels=max_pixels_limit(max_pixels))
    except imaging.ImageReadError as e:
        raise click.ClickException(said(e)) from None
