"""Files that appear whole or not at all; standard output as a target.

A file is written under a hidden temporary name in the target's folder
(:func:`temporary_name`) and renamed onto the target once complete; whoever
tidies up after a killed writer recognises those names with
:func:`temporary_target`.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import sys
from collections.abc import Iterator
from typing import IO

from convtool._shared import Param, naming
from convtool.imaging.errors import ImageWriteError, one_line

__all__ = [
    "atomic_write",
    "atomic_write_bytes",
    "exists_error",
    "temporary_name",
    "temporary_target",
    "write_stdout",
]

PathLike = str | os.PathLike

_TEMPORARY = re.compile(r"\.(.+)\.[0-9a-f]{8}\.tmp")  # what temporary_name makes


def temporary_name(name: str) -> str:
    """A fresh hidden name to write ``name`` under first: ``.NAME[:200].RANDOM.tmp``."""
    # os.urandom, as secrets.token_hex does, without importing secrets (~4 ms: hmac, hashlib)
    return f".{name[:200]}.{os.urandom(4).hex()}.tmp"


def temporary_target(entry: str) -> str | None:
    """The target name (its first 200 characters) a temporary ``entry`` was made for, or None.

    >>> temporary_target(".edges.png.0123abcd.tmp")
    'edges.png'
    >>> temporary_target("edges.png") is None
    True
    """
    match = _TEMPORARY.fullmatch(entry)
    return None if match is None else match.group(1)


def exists_error(target: str) -> ImageWriteError:
    """The refusal to replace an existing ``target`` without ``overwrite`` (a message
    naming the parameter: see :func:`convtool._shared.naming`)."""
    template = "{target} exists; pass {overwrite} to replace it"
    return naming(ImageWriteError(), template, target=target, overwrite=Param("overwrite"))


@contextlib.contextmanager
def atomic_write(
    path: PathLike, *, overwrite: bool = False, fsync: bool = True
) -> Iterator[IO[bytes]]:
    """Give a binary file that replaces ``path`` only once the block ends without error.

    The bytes go to a hidden temporary file in the target's folder
    (``.NAME.RANDOM.tmp``, created with mode 0o666 so the umask applies as for any
    new file), are flushed and fsync'ed, then renamed onto the target. On any
    error, the temporary file is removed and an existing target is untouched:
    readers see the old file or the whole new one, never a partial or empty one.

    ``overwrite=False`` refuses an existing target before anything is written,
    and again without a race at the end (a hard link, which fails if the name
    has appeared meanwhile; on file systems without hard links, a second
    existence check then ``os.replace``). ``overwrite=True`` keeps the replaced
    file's permission bits. A symbolic link at the target is replaced, not
    followed. Raises ImageWriteError for a missing, non-folder or read-only folder,
    an existing target, or a failed flush or rename; errors raised inside the
    block pass through unchanged.

    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "log.csv"
    >>> with atomic_write(target) as f:
    ...     _ = f.write(b"step,loss\\n")
    >>> target.read_bytes()
    b'step,loss\\n'
    """
    target = os.fspath(path)
    folder, name = os.path.split(target)
    folder = folder or "."
    if not name:
        raise ImageWriteError(f"cannot write {target}: the path names a folder, not a file")
    if not os.path.isdir(folder):
        problem = "is not a folder" if os.path.exists(folder) else "does not exist"
        raise ImageWriteError(f"cannot write {target}: the folder {folder} {problem}")
    if os.path.isdir(target):
        raise ImageWriteError(f"cannot write {target}: it is a directory")
    if not overwrite and os.path.lexists(target):
        raise exists_error(target)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        temp = os.path.join(folder, temporary_name(name))
        try:
            fd = os.open(temp, flags, 0o666)
            break
        except FileExistsError:
            continue
        except OSError as e:
            reason = e.strerror or one_line(e)
            raise ImageWriteError(
                f"cannot write {target}: cannot create a file in {folder} ({reason})"
            ) from e
    else:
        raise ImageWriteError(f"cannot write {target}: no free temporary name in {folder}")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            try:
                f.flush()
                if fsync:
                    os.fsync(f.fileno())
            except OSError as e:
                raise ImageWriteError(f"cannot write {target}: {e.strerror or one_line(e)}") from e
        _commit(temp, target, overwrite)
        if fsync:
            _fsync_folder(folder)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def _commit(temp: str, target: str, overwrite: bool) -> None:
    exists = exists_error(target)
    try:
        if overwrite:
            with contextlib.suppress(FileNotFoundError):
                os.chmod(temp, stat.S_IMODE(os.stat(target).st_mode))
            os.replace(temp, target)
            return
        try:
            os.link(temp, target)  # fails if the target has appeared since the first check
        except FileExistsError:
            raise exists from None
        except OSError:  # no hard links on this file system
            if os.path.lexists(target):
                raise exists from None
            os.replace(temp, target)
            return
        with contextlib.suppress(OSError):  # the target is written; a leftover name is harmless
            os.unlink(temp)
    except ImageWriteError:
        raise
    except OSError as e:
        raise ImageWriteError(f"cannot write {target}: {e.strerror or one_line(e)}") from e


def _fsync_folder(folder: str) -> None:
    """Make the rename itself durable, where the platform allows (best effort)."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: PathLike, data: bytes, *, overwrite: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`); '-' is stdout."""
    if os.fspath(path) == "-":
        write_stdout(data)
        return
    try:
        with atomic_write(path, overwrite=overwrite) as f:
            f.write(data)
    except OSError as e:
        raise ImageWriteError(f"cannot write {os.fspath(path)}: {e.strerror or one_line(e)}") from e


def write_stdout(payload: bytes) -> None:
    try:
        out = sys.stdout.buffer
        out.write(payload)
        out.flush()
    except (OSError, ValueError, AttributeError) as e:
        raise ImageWriteError(f"cannot write to standard output: {one_line(e)}") from e
