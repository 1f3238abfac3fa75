"""`apply`'s options for outgrowing one process: --tile (big pictures) and --scheduler (clusters).

Neither imports anything heavy at start-up: :mod:`convtool.tiled` is loaded when
the command runs, and Dask only when a scheduler is given.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import click

TILE_HELP = (
    "Filter TIFF pictures in NxN tiles (N: a multiple of 16, at least half the kernel; 0: "
    "never), reading and writing tile by tile into a tiled TIFF: pictures larger than "
    "memory fit, with the same result. Default: a TIFF written to .tif is tiled (1024) "
    "when over ~89 million pixels or 1/16 of memory as floats; --max-pixels' default "
    "then does not apply."
)
SCHEDULER_HELP = (
    "Run the pictures on a Dask cluster: the scheduler's address, tcp://HOST:8786 (default "
    "$CONVTOOL_SCHEDULER). Its workers need convtool and the same paths. Needs "
    "pip install 'convtool[dask]'."
)


def tile_option(function: Callable[..., Any]) -> Callable[..., Any]:
    """The ``--tile N`` option: the command receives ``tile`` (None: automatic)."""
    return click.option(
        "--tile", type=click.IntRange(min=0), default=None, metavar="N", help=TILE_HELP
    )(function)


def scheduler_option(function: Callable[..., Any]) -> Callable[..., Any]:
    """The ``--scheduler ADDRESS`` option (or $CONVTOOL_SCHEDULER): ``scheduler``."""
    return click.option(
        "--scheduler", envvar="CONVTOOL_SCHEDULER", metavar="ADDRESS", help=SCHEDULER_HELP
    )(function)


def check(
    tile: int | None,
    scheduler: str | None,
    kernels: list[Any],
    padding: Any,
    tasks: list[Any],
    inputs: tuple[str, ...],
    options: Any,
) -> None:
    """Refuse, before anything runs, a --tile or --scheduler that cannot work (exit 2)."""
    if tile:
        from convtool import tiled
        from convtool.io import format_for

        def bad(text: str) -> click.BadParameter:
            return click.BadParameter(text, param_hint="'--tile'")

        try:
            tiled.check_tile(tile, kernels, padding)
        except tiled.TileError as e:
            raise bad(str(e)) from None
        if "-" in inputs:
            raise bad("tiles are read from TIFF files, not from standard input")
        for task in tasks:
            for out in task.outputs:
                if out.path == "-":
                    raise bad("tiles are written to a TIFF file, not to standard output")
                named = f"x.{options.format.lstrip('.')}" if options.format else out.path
                if format_for(named, writing=True) != "tiff":
                    raise bad(f"tiles are written as TIFF; {out.path} is not a .tif")
    if scheduler:
        ctx = click.get_current_context()
        if ctx.get_parameter_source("n_jobs") == click.core.ParameterSource.COMMANDLINE:
            raise click.UsageError(
                "--jobs runs pictures in local processes and --scheduler on a cluster's "
                "workers; give one of them"
            )
        if "-" in inputs or any(o.path == "-" for t in tasks for o in t.outputs):
            raise click.UsageError(
                "--scheduler runs on workers that read and write files; standard input "
                "and output need a local run"
            )


def run_batch(
    tasks: list[Any],
    options: Any,
    *,
    tile: int | None,
    scheduler: str | None,
    jobs: int,
    on_outcome: Callable[[Any], None],
    on_progress: Callable[[int, int, Any], None],
) -> Any:
    """Run apply's tasks locally (``jobs`` processes) or on the cluster at ``scheduler``.

    Either way through :func:`convtool.batch.run_batch`, with the same callbacks,
    so progress, records and errors do not depend on where the work runs.
    """
    import dataclasses
    import functools

    from convtool import batch, tiled

    work = functools.partial(tiled.run_task, options=options, tile=tile)
    if not scheduler:
        return batch.run_batch(
            tasks, work, jobs=jobs, on_outcome=on_outcome, on_progress=on_progress
        )
    from convtool import cluster

    rework = None
    if not options.overwrite:
        again = dataclasses.replace(options, overwrite=True)
        rework = functools.partial(tiled.run_task, options=again, tile=tile)
    items, remote = cluster.ship(tasks, work, rework)
    with _connected(scheduler) as pool:
        report = batch.run_batch(
            items, remote, executor=pool, on_outcome=on_outcome, on_progress=on_progress
        )
    if not report.interrupted:
        cluster.tidy(items)
    return report


@contextlib.contextmanager
def _connected(scheduler: str) -> Iterator[Any]:
    from convtool import cluster

    try:
        with cluster.connect(scheduler) as pool:
            yield pool
    except cluster.ClusterError as e:
        raise click.ClickException(str(e)) from None
