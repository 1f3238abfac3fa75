"""Running a batch on a Dask distributed cluster instead of local processes.

:func:`connect` gives a ``concurrent.futures`` executor for
:func:`convtool.batch.run_batch` from a scheduler's address, and
:func:`ship` prepares the work for it, so that progress, records, errors and
the exit code come out as in a local run. Dask is imported here only, and only
when a scheduler is asked for: ``pip install 'convtool[dask]'``.

The workers read and write the same paths as this machine (a shared file
system mounted at the same place) and have convtool installed. Paths are sent
absolute and given back as the user wrote them, in records and in error
messages alike. A :class:`convtool.batch.outputs.Layout` says where a kind of
task keeps its paths: :class:`OutputsLayout` for ``apply``'s,
:class:`convtool.batch.pipeline_task.TaskLayout` for ``pipeline``'s.

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
import os
from collections.abc import Callable, Iterator
from typing import Any

from convtool._shared import one_line
from convtool.batch.outputs import Files, Layout

__all__ = [
    "RETRIES",
    "TIMEOUT",
    "ClusterError",
    "OutputsLayout",
    "Shipped",
    "connect",
    "ship",
    "tidy",
]

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
        raise ClusterError(f"cannot reach the Dask scheduler at {address}: {one_line(e)}") from None
    try:
        yield client.get_executor(retries=retries, pure=False)
    finally:
        with contextlib.suppress(Exception):
            client.close()


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
        raise ClusterError(f"{address!r} is not a scheduler address ({one_line(e)})") from None
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        reason = e.strerror or one_line(e)
        raise ClusterError(f"cannot reach the Dask scheduler at {address}: {reason}") from None


class OutputsLayout:
    """Tasks with a ``source`` and ``outputs`` that each have a ``path`` (apply's tasks)."""

    def files(self, task: Any) -> Files:
        source = task.source if isinstance(task.source, str) else None
        return Files(source, tuple(out.path for out in task.outputs))

    def move(self, task: Any, to: Callable[[str], str]) -> Any:
        source = to(task.source) if isinstance(task.source, str) else task.source
        outputs = tuple(out._replace(path=to(out.path)) for out in task.outputs)
        return task._replace(source=source, outputs=outputs)


@dataclasses.dataclass(frozen=True)
class Shipped:
    """One task as a worker gets it: absolute paths, and how to map them back."""

    task: Any  # the task, its paths absolute
    names: tuple[tuple[str, str], ...]  # (absolute, as given), longest first
    fresh: bool  # no output existed when the batch was sent
    files: Files  # the task's paths, absolute


def _absolute(path: str, cwd: str) -> str:
    return path if path == "-" else os.path.normpath(os.path.join(cwd, path))


def ship(
    tasks: list[Any],
    work: Callable[[Any], Any],
    rework: Callable[[Any], Any] | None = None,
    *,
    cwd: str | None = None,
    layout: Layout | None = None,
) -> tuple[list[Shipped], Callable[[Shipped], Any]]:
    """The items and the function to hand run_batch for a cluster run of ``tasks``.

    ``work`` is the local unit of work (``work(task) -> records``); ``rework``
    the same with overwriting allowed, used for an item run again after its
    worker was lost (None: never overwrite). ``layout`` says where a task keeps
    its paths (default: :class:`OutputsLayout`, apply's tasks). Each item's
    records and errors name its paths as given.
    """
    cwd = os.getcwd() if cwd is None else cwd
    layout = OutputsLayout() if layout is None else layout
    items = []
    for task in tasks:
        moved = layout.move(task, lambda path: _absolute(path, cwd))
        given, files = layout.files(task), layout.files(moved)
        names: dict[str, str] = {}
        if given.source is not None and files.source is not None:
            names[files.source] = given.source
        for path, as_given in zip(files.outputs, given.outputs, strict=True):
            names[path] = as_given
            names.setdefault(os.path.dirname(path), os.path.dirname(as_given) or ".")
        for (folder, _), (as_given, _) in zip(files.named, given.named, strict=True):
            # files named as the task runs are os.path.join(folder, name): the same
            # join of the folder as given names them as a local run would
            names.setdefault(folder, as_given)
            names.setdefault(os.path.join(folder, ""), os.path.join(as_given, ""))
        fresh = rework is not None and not any(os.path.lexists(o) for o in files.outputs)
        pairs = sorted(((a, b) for a, b in names.items() if a != b), key=lambda p: -len(p[0]))
        items.append(Shipped(moved, tuple(pairs), fresh, files))
    return items, _Remote(work, rework)


class _Remote:
    """Run a shipped task on a worker (picklable: it travels with each item)."""

    def __init__(self, work: Callable[[Any], Any], rework: Callable[[Any], Any] | None) -> None:
        self.work, self.rework = work, rework

    def __call__(self, item: Shipped) -> Any:
        from convtool.batch.runner import format_error

        run = self.work
        if item.fresh and any(os.path.lexists(o) for o in item.files.outputs):
            run = self.rework  # written by an earlier, lost run of this very item
        try:
            records = run(item.task)
        except Exception as e:
            raise ShippedError(_given(format_error(e), item.names)) from None
        return _named_back(records, item.names)


def _named_back(record: Any, names: tuple[tuple[str, str], ...]) -> Any:
    """The ``input`` and ``output`` fields of a record (and of records within), as given."""
    if isinstance(record, list):
        return [_named_back(r, names) for r in record]
    if not isinstance(record, dict):
        return record
    out = {}
    for key, value in record.items():
        if key in ("input", "output") and isinstance(value, str):
            value = _given_path(value, names)
        elif isinstance(value, dict | list):
            value = _named_back(value, names)
        out[key] = value
    return out


def _given_path(path: str, names: tuple[tuple[str, str], ...]) -> str:
    for absolute, given in names:
        if path == absolute:
            return given
    for absolute, given in names:  # a file in a folder whose files are named as they run
        if absolute.endswith(os.sep) and absolute != os.sep and path.startswith(absolute):
            return given + path[len(absolute) :]
    return path


def _given(text: str, names: tuple[tuple[str, str], ...]) -> str:
    for absolute, given in names:
        if absolute != os.sep:  # the root: every separator would be replaced
            text = text.replace(absolute, given)
    return text


def tidy(items: list[Shipped]) -> int:
    """Remove what workers killed mid-write left: hidden temporaries of these outputs.

    Run once no item is running any more (after a finished batch). Each folder
    is listed once. Returns how many were removed.
    """
    from convtool.imaging import temporary_target

    exact: dict[str, set[str]] = {}
    stems: dict[str, set[str]] = {}
    for item in items:
        for path in item.files.outputs:
            if path != "-":
                folder, name = os.path.split(path)
                exact.setdefault(folder, set()).add(name[:200])
        for folder, stem in item.files.named:
            stems.setdefault(folder, set()).add((stem + ".")[:200])
    removed = 0
    for folder in sorted(exact.keys() | stems.keys()):
        names, starts = exact.get(folder, set()), stems.get(folder, set())
        try:
            entries = os.listdir(folder or ".")
        except OSError:
            continue
        for entry in entries:
            name = temporary_target(entry)
            if name is None:
                continue
            if name in names or any(name.startswith(start) for start in starts):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(folder, entry))
                    removed += 1
    return removed
