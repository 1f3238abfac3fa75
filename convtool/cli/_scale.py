"""Options for outgrowing one process: --tile (apply's big pictures) and --scheduler (clusters).

Neither imports anything heavy at start-up: the tiles' code is loaded when
the command runs, and Dask only when a scheduler is given. :func:`run_batch` runs
any command's picture tasks, locally or on a cluster, through one code path.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import click

from convtool.cli._params import said

if TYPE_CHECKING:
    from convtool.batch.outputs import Layout

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
        from convtool.batch.outputs import output_format
        from convtool.filtering.tiles import TileError, check_tile

        def bad(text: str) -> click.BadParameter:
            return click.BadParameter(text, param_hint="'--tile'")

        try:
            check_tile(tile, kernels, padding)
        except TileError as e:
            raise bad(said(e)) from None
        if "-" in inputs:
            raise bad("tiles are read from TIFF files, not from standard input")
        for task in tasks:
            for out in task.outputs:
                if out.path == "-":
                    raise bad("tiles are written to a TIFF file, not to standard output")
                if output_format(out.path, options.format) != "tiff":
                    raise bad(f"tiles are written as TIFF; {out.path} is not a .tif")
    if scheduler:
        check_scheduler(scheduler, inputs, [o.path for t in tasks for o in t.outputs])


def check_scheduler(scheduler: str | None, inputs: tuple[str, ...], outputs: list[Any]) -> None:
    """Refuse a --scheduler that cannot work (exit 2): with --jobs, or with '-' read or written.

    ``outputs`` are the paths the run writes (None: not asked for).
    """
    if not scheduler:
        return
    ctx = click.get_current_context()
    if ctx.get_parameter_source("n_jobs") == click.core.ParameterSource.COMMANDLINE:
        raise click.UsageError(
            "--jobs runs pictures in local processes and --scheduler on a cluster's "
            "workers; give one of them"
        )
    if "-" in inputs or "-" in outputs:
        raise click.UsageError(
            "--scheduler runs on workers that read and write files; standard input "
            "and output need a local run"
        )


def run_batch(
    tasks: list[Any],
    work: Callable[..., Any],
    options: Any,
    *,
    scheduler: str | None,
    jobs: int,
    on_outcome: Callable[[Any], None],
    on_progress: Callable[[int, int, Any], None] | None = None,
    layout: Layout | None = None,
) -> Any:
    """Run ``work(task, options=options)`` over ``tasks``, locally or on a Dask cluster.

    Either way through :func:`convtool.batch.run_batch`, with the same callbacks,
    so progress, records and errors do not depend on where the work runs.

    Parameters
    ----------
    tasks : list
        The pictures' tasks (apply's :class:`convtool.batch.apply_task.Task`,
        pipeline's :class:`convtool.batch.pipeline_task.Task`).
    work : callable
        ``work(task, options=...) -> records``, picklable (a module-level function
        or a ``functools.partial`` of one).
    options : NamedTuple
        The run's options, with an ``overwrite`` field: on a cluster, an item run
        again after its worker was lost gets ``work`` with these options'
        ``overwrite=True`` twin when its outputs are this batch's own.
    scheduler : str or None
        The Dask scheduler's address; None or '' runs ``jobs`` local processes.
    layout : convtool.batch.outputs.Layout, optional
        Where a task keeps its paths (default: apply's tasks).
    """
    import functools

    if len(tasks) > 1:  # many pictures: collect their cycles, past the start-up's objects
        gc.freeze()
        gc.enable()

    from convtool.batch import runner

    run = functools.partial(work, options=options)
    if not scheduler:
        report = runner.run_batch(
            tasks, run, jobs=jobs, on_outcome=on_outcome, on_progress=on_progress
        )
        if report.interrupted:
            # the workers have stopped; one stopped between creating its temporary and
            # the clean-up that guards it can leave it behind (rare): sweep them
            from convtool.batch import cluster

            cluster.tidy(cluster.ship(tasks, run, layout=layout)[0])
        return report

    from convtool.batch import cluster  # cluster imports Dask in connect() alone

    rework = None
    if not options.overwrite:
        rework = functools.partial(work, options=options._replace(overwrite=True))
    items, remote = cluster.ship(tasks, run, rework, layout=layout)
    with _connected(scheduler) as pool:
        report = runner.run_batch(
            items, remote, executor=pool, on_outcome=on_outcome, on_progress=on_progress
        )
    if not report.interrupted:
        cluster.tidy(items)
    return report


@contextlib.contextmanager
def _connected(scheduler: str) -> Iterator[Any]:
    from convtool.batch import cluster

    try:
        with cluster.connect(scheduler) as pool:
            yield pool
    except cluster.ClusterError as e:
        raise click.ClickException(said(e)) from None
