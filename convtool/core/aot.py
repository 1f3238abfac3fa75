"""The compiled core: found, or built once at run time, and loaded, for a fast start-up.

A command that filters one picture spends most of its time starting numba: the
import (~350 ms) and the first call of a cached kernel (~300 ms, LLVM's set-up),
where the work itself takes a few milliseconds. The compiled core is the same
Python source as the JIT's kernels, compiled ahead of time into an extension module
that imports in under a millisecond and needs no numba (:mod:`convtool.core.aot_pycc`
builds it, with ``numba.pycc``, its kernels releasing the GIL as the JIT's do). It runs
on one thread, or on every core for a big enough job (:func:`convtool.core.engine.choose`);
the JIT stays the engine for the largest jobs.

Where :func:`load` finds it, in this order:

1. the extension built at install (``pip install .`` or ``-e .``):
   ``convtool.core._compiled``, looked for beside this file, then in the other
   ``convtool/core`` folders on ``sys.path`` (a checkout run beside its own install,
   as CI runs the tests). It is used only if it was built from the very sources now
   on disk: it exports their digest (:func:`~convtool.core.aot_pycc.digest`), compared
   with theirs, so an editable install whose kernels were edited since does not run
   stale machine code;
2. else, as before installs built it, the run-time build: on first use, once, in a
   child process (about 30 s), into a per-user cache folder: ``$CONVTOOL_CACHE_DIR``,
   else ``$XDG_CACHE_HOME/convtool``, else ``~/.cache/convtool``
   (``%LOCALAPPDATA%\\convtool`` on Windows), under ``aot/<key>/``. The key hashes the
   sources, the exports and the Python, numpy and numba versions, so an edit or an
   upgrade gets a fresh build and a stale one is never loaded. A failed build (no C
   compiler, no ``numba.pycc``) is remembered for a day; an unusable cache folder
   only means the JIT;
3. else :func:`load` gives None (:func:`error` tells why) and the JIT runs everything.

Nothing here changes results: the kernels are the same source. Nothing here chooses
either: :func:`load` finds the module once per process, and
:func:`convtool.core.engine.compiled` wraps it in an engine that the caller passes
down. ``CONVTOOL_AOT=0`` or ``NUMBA_DISABLE_JIT=1`` switches the route off (at
install too: no extension is built). This module imports the standard library only
(numpy to check arguments).
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import os
import sys
import time
from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any

from convtool._shared import one_line
from convtool.core import aot_pycc
from convtool.core.aot_pycc import KERNELS, digest, sources, switched_off

if TYPE_CHECKING:  # pathlib is loaded where a build needs it: the installed core's route
    from pathlib import Path  # (found, checked, loaded) spares ~4 ms of start-up without it

__all__ = ["Kernels", "build_dir", "cache_root", "digest", "error", "installed_error", "key"]
__all__ += ["load", "sources", "switched_off"]

FAILED_RETRY_SECONDS = 24 * 3600
BUILD_TIMEOUT = 900
PRUNE_SECONDS = 7 * 24 * 3600

# what load() found in this process: the compiled core, whether a build was tried, why
# not; why the installed extension is not used (None: not looked for yet)
_state: dict[str, Any] = {"kernels": None, "tried": False, "error": None, "installed": None}


def cache_root() -> Path:
    """The per-user cache folder (see the module docstring)."""
    from pathlib import Path

    explicit = os.environ.get("CONVTOOL_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "convtool"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "convtool"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "convtool"


def _numba_version_text() -> bytes:
    spec = importlib.util.find_spec("numba")  # finds, does not import
    if spec is None or not spec.origin:
        return b"no numba"
    try:
        with open(os.path.join(os.path.dirname(spec.origin), "_version.py"), "rb") as f:
            return f.read()
    except OSError:
        return spec.origin.encode()


def key(files: dict[str, bytes] | None = None) -> str:
    """Hash of everything the run-time build depends on (``files``: :func:`sources`)."""
    import hashlib  # here only: OpenSSL's load costs the compiled core's route ~3-7 ms

    import numpy

    h = hashlib.sha256()
    h.update(aot_pycc.files_digest(sources() if files is None else files).encode())
    h.update(repr((sorted(KERNELS.items()), aot_pycc.MODULE)).encode())
    h.update(_numba_version_text())
    h.update(numpy.__version__.encode())
    h.update(f"{sys.implementation.cache_tag} {sys.platform} {os.name}".encode())
    h.update(importlib.machinery.EXTENSION_SUFFIXES[0].encode())
    return h.hexdigest()[:20]


def build_dir(files: dict[str, bytes] | None = None) -> Path:
    return cache_root() / "aot" / key(files)


# ----------------------------------------------------------------------------- loading


class Kernels:
    """A compiled module's kernels, by name and float type.

    :meth:`find` gives the compiled function for a call's arguments, or None where it
    does not fit them (another dtype, dimensions, a strided array): the compiled code
    reads arrays as its signature says and checks nothing itself.
    """

    def __init__(self, module: ModuleType, path: str) -> None:
        import numpy as np

        self.module, self.path = module, path
        self._ndarray = np.ndarray
        self._variants: dict[str, dict[Any, tuple[Any, tuple]]] = {}
        self._first: dict[str, int] = {}  # the argument whose dtype picks the variant
        for kernel, (_, args, _, types) in KERNELS.items():
            self._first[kernel] = next(i for i, a in enumerate(args.split()) if a.startswith("T["))
            for t in types:
                checks = tuple(
                    (i, np.dtype(kind), ndim, contiguous)
                    for i, (kind, ndim, contiguous) in enumerate(aot_pycc.arguments(kernel, t))
                    if ndim
                )
                function = getattr(module, f"{kernel}_{t}")
                self._variants.setdefault(kernel, {})[np.dtype(t)] = (function, checks)

    def find(self, kernel: str, args: tuple) -> Any:
        """The compiled ``kernel`` for ``args``, or None."""
        variants = self._variants.get(kernel)
        if variants is None:
            return None
        found = variants.get(getattr(args[self._first[kernel]], "dtype", None))
        if found is None:
            return None
        function, checks = found
        for i, dtype, ndim, contiguous in checks:
            a = args[i]
            if not isinstance(a, self._ndarray) or a.dtype != dtype or a.ndim != ndim:
                return None
            flags = a.flags
            if not flags.aligned or (contiguous and not flags.c_contiguous):
                return None
        return function


def _built(folder: Path) -> str | None:
    """The run-time build in ``folder``, if there is one."""
    return aot_pycc.module_file(folder, aot_pycc.MODULE)


def _load_file(path: str, name: str, files: dict[str, bytes]) -> Kernels:
    """Load the extension module at ``path``; ValueError if built from other sources."""
    loader = importlib.machinery.ExtensionFileLoader(name, str(path))
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    if module.sources_digest() != digest(files):
        raise ValueError(f"{path} was built from other sources than these")
    return Kernels(module, path)


def _installed(files: dict[str, bytes]) -> Kernels | None:
    """The extension built at install, if built from ``files``; else None (why: _state)."""
    package = os.path.join(*aot_pycc.PACKAGE.split("."))  # no pathlib: ~4 ms of start-up
    folders = [os.path.dirname(__file__)] + [os.path.join(p or ".", package) for p in sys.path]
    reason, seen = "not installed", set()
    for folder in folders:
        path = aot_pycc.module_file(folder, aot_pycc.INSTALLED)
        if path is None or os.path.realpath(path) in seen:
            continue
        seen.add(os.path.realpath(path))
        try:
            kernels = _load_file(path, f"{aot_pycc.PACKAGE}.{aot_pycc.INSTALLED}", files)
        except Exception as e:  # stale, or built for another numpy: look further
            reason = f"{type(e).__name__}: {e}"
            continue
        _state["installed"] = ""
        return kernels
    _state["installed"] = reason
    return None


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` so that one process builds at a time."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock; the final rename is atomic anyway
        yield
        return
    with open(folder / ".lock", "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _recent_failure(folder: Path) -> str | None:
    marker = folder / "FAILED"
    try:
        if time.time() - marker.stat().st_mtime < FAILED_RETRY_SECONDS:
            return marker.read_text(errors="replace").strip().splitlines()[-1][:300]
    except (OSError, IndexError):
        pass
    return None


def _cached(files: dict[str, bytes], build_missing: bool, announce: Any) -> Kernels | None:
    """The run-time build from the cache folder, building it first if missing and allowed."""
    folder = build_dir(files)
    path = _built(folder)
    if path is None and build_missing:
        folder.mkdir(parents=True, exist_ok=True)
        with _locked(folder):
            path = _built(folder)  # another process may have built it meanwhile
            if path is None:
                failed = _recent_failure(folder)
                if failed is not None:
                    raise RuntimeError(f"an earlier build failed: {failed}")
                path = build(folder, files, announce=announce)
    if path is None:
        return None
    kernels = _load_file(path, aot_pycc.MODULE, files)
    with contextlib.suppress(OSError):
        os.utime(folder)  # in use: not to be pruned
    return kernels


def load(*, build_missing: bool = True, announce: Any = None) -> Kernels | None:
    """The compiled kernels: installed, else from the cache, building them first if needed
    and allowed; None if unavailable.

    The outcome is remembered for the process; :func:`error` tells why it is None.
    """
    if _state["kernels"] is not None or (_state["tried"] and not build_missing):
        return _state["kernels"]
    reason = switched_off()
    if reason is not None:
        _state["error"] = reason
        return None
    try:
        files = sources()
        kernels = _installed(files) if _state["installed"] is None else None
        if kernels is None:
            kernels = _cached(files, build_missing, announce)
        _state["kernels"] = kernels
        _state["error"] = None if kernels is not None else "not built yet"
    except Exception as e:  # any failure here only means: use the JIT
        _state["error"] = one_line(e)
    _state["tried"] = _state["tried"] or build_missing
    return _state["kernels"]


def error() -> str | None:
    """Why :func:`load` gave None (one line), or None."""
    return _state["error"]


def installed_error() -> str | None:
    """Why the extension built at install is not used ('' if it is; None: not looked for)."""
    return _state["installed"]


# ----------------------------------------------------------------------------- building


def build(folder: Path, files: dict[str, bytes], *, announce: Any = None) -> str:
    """Compile ``files`` (:func:`sources`) into ``folder`` in a child process; return the path.

    The child runs :mod:`convtool.core.aot_pycc` as a script on a copy of exactly
    these bytes, laid out as their package with empty ``__init__`` files (so it
    compiles them, not whichever convtool its ``sys.path`` would find). Raises RuntimeError with a
    one-line reason when the build fails; the reason is also kept in
    ``folder/FAILED`` and the child's output in ``folder/build.log``.
    """
    import shutil
    import subprocess
    import sysconfig

    compiler = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    if sys.platform != "win32" and shutil.which(compiler) is None:
        log, ok = f"no C compiler: {compiler!r} is not on PATH".encode(), False
    else:
        if announce is not None:
            announce()
        tree = folder / "source"
        shutil.rmtree(tree, ignore_errors=True)  # left by a build that was killed
        aot_pycc.write_tree(tree, files)
        script, digest_hex = aot_pycc.__file__, aot_pycc.files_digest(files)
        command = [sys.executable, script, "build", str(folder), str(tree), digest_hex]
        env = dict(os.environ, PYTHONWARNINGS="ignore")
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                timeout=BUILD_TIMEOUT,
                env=env,
                stdin=subprocess.DEVNULL,
            )
            log, ok = done.stdout + done.stderr, done.returncode == 0
        except (OSError, subprocess.SubprocessError) as e:  # cannot start, or timed out
            log, ok = str(e).encode(), False
        finally:
            shutil.rmtree(tree, ignore_errors=True)
    path = _built(folder)
    if ok and path is not None:
        with contextlib.suppress(OSError):
            (folder / "FAILED").unlink()
        _prune(folder)
        return path
    lines = [line for line in log.decode(errors="replace").splitlines() if line.strip()]
    reason = lines[-1].strip() if lines else "no output"
    with contextlib.suppress(OSError):
        (folder / "build.log").write_bytes(log)
        (folder / "FAILED").write_text(f"{reason}\n")
    raise RuntimeError(f"building the compiled core failed: {reason}")


def _prune(keep: Path, age: float = PRUNE_SECONDS) -> None:
    """Remove other builds (older cores, numbas, numpys) untouched for ``age`` seconds."""
    import shutil

    now = time.time()
    with contextlib.suppress(OSError):
        for folder in keep.parent.iterdir():
            if folder != keep and folder.is_dir() and now - folder.stat().st_mtime > age:
                shutil.rmtree(folder, ignore_errors=True)
