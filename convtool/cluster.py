"""Running a batch on a Dask distributed cluster instead of local processes.

:func:`connect` gives a ``concurrent.futures`` executor for
:func:`convtool.batch.run_batch` from a scheduler's address, and
:func:`ship` prepares the work for it, so that progress, records, errors and
the exit code come out as in a local run. Dask is imported here only, and only
when a scheduler is asked for: ``pip install 'convtool[dask]'``.

The workers read and write the same paths as this machine (a shared file
system mounted at the same place) and have convtool installed. Paths are sent
absolute and given back as the user wrote them, in records and in error
messages alike.

A worker lost mid-batch costs a retry, not a file: the scheduler runs its
items again elsewhere (Dask's own rule, up to ``distributed.scheduler.allowed-failures``
losses per item). An item that is run again may find its output already
there, whole, if the lost worker wrote it but died before saying so; an
output that did not exist when the batch was sent is then this batch's own
and is written again, where a local run would refuse to replace it. And a
worker killed while writing leaves a hidden temporary file behind, which
:func:`tidy` removes once the batch is over.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import re
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["RETRIES", "TIMEOUT", "ClusterError", "Shipped", "connect", "ship", "tidy"]

RETRIES = 2  # reruns of an item that raised on the worker outside the work itself
TIMEOUT = 10.0  # seconds to reach the scheduler
INSTALL_HINT = "pip install 'convtool[dask]'"


class ClusterError(RuntimeError):
    """The cluster cannot be used: Dask missing, or the scheduler out of reach."""


class ShippedError(Exception):
    """An item's error on a worker, its paths written back as the user gave them."""


@contextlib.contextmanager
def connect(address: str, *, timeout: float = TIMEOUT, retries: int = RETRIES) -> Iterator[Any]:
    """A ``concurrent.futures.Executor`` running on the Dask scheduler at ``address``.

    Raises ClusterError (one line) when Dask is not installed or the scheduler
    cannot be reached within ``timeout`` seconds. The connection is closed
    when the block ends; items still running on workers then finish there.
    """
    try:
        from distributed import Client
    except ImportError:
        raise ClusterError(f"--scheduler needs Dask: {INSTALL_HINT}") from None
    _probe(address, timeout)
    try:
        client = Client(address, timeout=timeout, set_as_default=False)
    except Exception as e:  # refused, timed out, not a scheduler: one line either way
        raise ClusterError(f"cannot reach the Dask scheduler at {address}: {_line(e)}") from None
    try:
        yield client.get_executor(retries=retries, pure=False)
    finally:
        with contextlib.suppress(Exception):
            client.close()


def _line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _probe(address: str, timeout: float) -> None:
    """Check the address and, for TCP, that something listens there: a refused
    connection is said at once rather than after Dask's connect timeout."""
    import socket

    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        scheme, location = parse_address(address)
        if scheme not in ("tcp", "tls"):
            return
        host, port = parse_host_port(location)
    except (ValueError, TypeError) as e:
        raise ClusterError(f"{address!r} is not a scheduler address ({_line(e)})") from None
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        reason = e.strerror or _line(e)
        raise ClusterError(f"cannot reach the Dask scheduler at {address}: {reason}") from None


@dataclasses.dataclass(frozen=True)
class Shipped:
    """One task as a worker gets it: absolute paths, and how to map them back."""

    task: Any  # jobs.Task with absolute paths
    names: tuple[tuple[str, str], ...]  # (absolute, as given), longest first
    fresh: bool  # no output existed when the batch was sent


def _absolute(path: str, cwd: str) -> str:
    return path if path == "-" else os.path.normpath(os.path.join(cwd, path))


def ship(
    tasks: list[Any],
    work: Callable[[Any], Any],
    rework: Callable[[Any], Any] | None = None,
    *,
    cwd: str | None = None,
) -> tuple[list[Shipped], Callable[[Shipped], Any]]:
    """The items and the function to hand run_batch for a cluster run of ``tasks``.

    ``work`` is the local unit of work (``work(task) -> records``); ``rework``
    the same with overwriting allowed, used for an item run again after its
    worker was lost (None: never overwrite). Each item's records and errors
    name its paths as given.
    """
    cwd = os.getcwd() if cwd is None else cwd
    items = []
    for task in tasks:
        names: dict[str, str] = {}
        source = task.source
        if isinstance(source, str):
            names[_absolute(source, cwd)] = source
            source = _absolute(source, cwd)
        outputs = []
        for out in task.outputs:
            path = _absolute(out.path, cwd)
            names[path] = out.path
            folder = os.path.dirname(path)
            names.setdefault(folder, os.path.dirname(out.path) or ".")
            outputs.append(dataclasses.replace(out, path=path))
        moved = dataclasses.replace(task, source=source, outputs=tuple(outputs))
        fresh = rework is not None and not any(os.path.lexists(o.path) for o in outputs)
        pairs = sorted(((a, b) for a, b in names.items() if a != b), key=lambda p: -len(p[0]))
        items.append(Shipped(moved, tuple(pairs), fresh))
    return items, _Remote(work, rework)


class _Remote:
    """Run a shipped task on a worker (picklable: it travels with each item)."""

    def __init__(self, work: Callable[[Any], Any], rework: Callable[[Any], Any] | None) -> None:
        self.work, self.rework = work, rework

    def __call__(self, item: Shipped) -> Any:
        from convtool.batch import format_error

        run = self.work
        if item.fresh and any(os.path.lexists(o.path) for o in item.task.outputs):
            run = self.rework  # written by an earlier, lost run of this very item
        try:
            records = run(item.task)
        except Exception as e:
            raise ShippedError(_given(format_error(e), item.names)) from None
        back = dict(item.names)
        for record in records:
            for key in ("input", "output"):
                if record.get(key) in back:
                    record[key] = back[record[key]]
        return records


def _given(text: str, names: tuple[tuple[str, str], ...]) -> str:
    for absolute, given in names:
        text = text.replace(absolute, given)
    return text


_TEMP = re.compile(r"\.[0-9a-f]{8}\.tmp$")


def tidy(items: list[Shipped]) -> int:
    """Remove what workers killed mid-write left: hidden temporaries of these outputs.

    Run once no item is running any more (after a finished batch). Returns how
    many were removed.
    """
    removed = 0
    for item in items:
        for out in item.task.outputs:
            if out.path == "-":
                continue
            folder, name = os.path.split(out.path)
            pattern = os.path.join(glob.escape(folder), "." + glob.escape(name[:200]) + ".*.tmp")
            for temp in glob.glob(pattern):
                suffix = temp[len(os.path.join(folder, "." + name[:200])) :]
                if _TEMP.fullmatch(suffix):
                    with contextlib.suppress(OSError):
                        os.unlink(temp)
                        removed += 1
    return removed
