"""The ahead-of-time build of the convolution core, for a fast start-up.

A command that filters one picture spends most of its time starting numba: the
import (~130 ms) and the first call of a cached kernel (~300 ms, LLVM's set-up),
where the convolution itself takes a few milliseconds. ``numba.pycc`` compiles
the *same* Python function, :func:`convtool.core.conv.conv2d_forward`, into an ordinary
extension module
that imports in under a millisecond and needs no numba at run time. It has no
``prange``, so it runs on one thread: right for a picture or for a batch worker,
and the JIT (multi-threaded) stays the engine for everything else.

The module is built on first use, once, in a child process (about 15 s, the
same order as numba's own first compile), into a per-user cache folder:
``$CONVTOOL_CACHE_DIR``, else ``$XDG_CACHE_HOME/convtool``, else
``~/.cache/convtool`` (``%LOCALAPPDATA%\\convtool`` on Windows), under
``aot/<key>/``. The key hashes the source the build compiles (:func:`sources`:
``conv.py`` and the core files it imports, not the pooling or fit kernels), the
exported signatures, and the Python, numpy and numba versions, so an edited
convolution or an upgrade gets a fresh build and a stale one is never loaded. A
failed build (no C compiler, no ``numba.pycc``) is remembered for a day, and the
JIT is used meanwhile.

Nothing here changes results: the kernels are the same source. Nothing here
chooses either: :func:`load` only builds and loads the module (once per process),
and :func:`convtool.core.engine.compiled` wraps it in an engine that the caller
passes down. ``CONVTOOL_AOT=0`` or ``NUMBA_DISABLE_JIT=1`` switches the route off.

This module imports only the standard library (numpy for the key); the build
runs this file as a script in a child process, on a copy of :func:`sources`.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib.machinery
import importlib.util
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

MODULE = "_convtool_core_aot"
# exported name -> numba signature, one copy per float type ({t}: f4, f8)
EXPORTS = {
    "conv2d_forward": "void({t}[:, :, :, ::1], {t}[:, :, :, ::1], {t}[::1], {t}[:, :, :, ::1], "
    "i8, i8, i8)",
}
TYPES = ("f4", "f8")
FAILED_RETRY_SECONDS = 24 * 3600
BUILD_TIMEOUT = 900
PRUNE_SECONDS = 7 * 24 * 3600

PACKAGE = "convtool.core"
SOURCE = "conv"  # the module of the core the build compiles (EXPORTS' home)

# what load() found in this process: the compiled core, whether a build was tried, why not
_state: dict[str, Any] = {"kernels": None, "tried": False, "error": None}


def cache_root() -> Path:
    """The per-user cache folder (see the module docstring)."""
    explicit = os.environ.get("CONVTOOL_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "convtool"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "convtool"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "convtool"


def switched_off() -> str | None:
    """Why the compiled route is off by configuration, or None."""
    if os.environ.get("CONVTOOL_AOT", "").strip().lower() in ("0", "no", "off", "false"):
        return "CONVTOOL_AOT=0"
    if os.environ.get("NUMBA_DISABLE_JIT", "").strip() not in ("", "0"):
        return "NUMBA_DISABLE_JIT is set"
    return None


def _numba_version_text() -> bytes:
    spec = importlib.util.find_spec("numba")  # finds, does not import
    if spec is None or not spec.origin:
        return b"no numba"
    try:
        return (Path(spec.origin).parent / "_version.py").read_bytes()
    except OSError:
        return spec.origin.encode()


def _imported_core_modules(code: bytes) -> list[str]:
    """The modules of the core that ``code`` imports (``from convtool.core.x import ...``)."""
    prefix = PACKAGE + "."
    return [
        node.module[len(prefix) :]
        for node in ast.walk(ast.parse(code))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(prefix)
    ]


def sources() -> dict[str, bytes]:
    """The files the build compiles: ``conv.py`` and the core files it imports, by name.

    The build runs them apart from the package, so they may import only numpy, numba
    and each other; the key hashes exactly these bytes.
    """
    folder = Path(__file__).parent
    found: dict[str, bytes] = {}
    todo = [SOURCE]
    while todo:
        name = todo.pop()
        if name not in found:
            found[name] = (folder / f"{name}.py").read_bytes()
            todo.extend(_imported_core_modules(found[name]))
    return dict(sorted(found.items()))


def _digest(files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for name, code in sorted(files.items()):
        h.update(f"{name} {len(code)}\n".encode())
        h.update(code)
    return h.hexdigest()


def key(files: dict[str, bytes] | None = None) -> str:
    """Hash of everything the compiled module depends on (``files``: :func:`sources`)."""
    import numpy

    h = hashlib.sha256()
    h.update(_digest(sources() if files is None else files).encode())
    h.update(repr((EXPORTS, TYPES, MODULE)).encode())
    h.update(_numba_version_text())
    h.update(numpy.__version__.encode())
    h.update(f"{sys.implementation.cache_tag} {sys.platform} {os.name}".encode())
    h.update(importlib.machinery.EXTENSION_SUFFIXES[0].encode())
    return h.hexdigest()[:20]


def build_dir(files: dict[str, bytes] | None = None) -> Path:
    return cache_root() / "aot" / key(files)


def _module_file(folder: Path) -> Path | None:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = folder / (MODULE + suffix)
        if path.is_file():
            return path
    return None


class Kernels:
    """The compiled module's kernels, called as :mod:`convtool.core.conv`'s are."""

    def __init__(self, module: ModuleType, path: Path) -> None:
        self.module, self.path = module, path
        self._forward = {4: module.conv2d_forward_f4, 8: module.conv2d_forward_f8}

    def conv2d_forward(self, x, w, bias, out, sh, pad_top, pad_left) -> None:
        self._forward[x.dtype.itemsize](x, w, bias, out, sh, pad_top, pad_left)


def _load_file(path: Path) -> Kernels:
    loader = importlib.machinery.ExtensionFileLoader(MODULE, str(path))
    spec = importlib.util.spec_from_file_location(MODULE, path, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return Kernels(module, path)


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


def _write_tree(root: Path, files: dict[str, bytes]) -> None:
    """Lay ``files`` out under ``root`` as the package they come from, with empty parents."""
    package = root.joinpath(*PACKAGE.split("."))
    package.mkdir(parents=True)
    for part in range(1, len(PACKAGE.split(".")) + 1):
        root.joinpath(*PACKAGE.split(".")[:part], "__init__.py").write_bytes(b"")
    for name, code in files.items():
        (package / f"{name}.py").write_bytes(code)


def build(folder: Path, files: dict[str, bytes], *, announce: Any = None) -> Path:
    """Compile ``files`` (:func:`sources`) into ``folder`` in a child process; return the path.

    The child runs this file as a script on a copy of exactly these bytes, laid out
    as their package with empty ``__init__`` files (so it compiles them, not
    whichever convtool its ``sys.path`` would find). Raises RuntimeError with a
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
        _write_tree(tree, files)
        command = [sys.executable, __file__, "build", str(folder), str(tree), _digest(files)]
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
    path = _module_file(folder)
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


def load(*, build_missing: bool = True, announce: Any = None) -> Kernels | None:
    """The compiled kernels, building them first if needed and allowed; None if unavailable.

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
        folder = build_dir(files)
        path = _module_file(folder)
        if path is None and build_missing:
            folder.mkdir(parents=True, exist_ok=True)
            with _locked(folder):
                path = _module_file(folder)  # another process may have built it meanwhile
                if path is None:
                    failed = _recent_failure(folder)
                    if failed is not None:
                        raise RuntimeError(f"an earlier build failed: {failed}")
                    path = build(folder, files, announce=announce)
        if path is None:
            _state["error"] = "not built yet"
        else:
            _state["kernels"] = _load_file(path)
            with contextlib.suppress(OSError):
                os.utime(folder)  # in use: not to be pruned
            _state["error"] = None
    except Exception as e:  # any failure here only means: use the JIT
        from convtool._shared import one_line  # here: the build runs this file as a script

        _state["error"] = one_line(e)
    _state["tried"] = _state["tried"] or build_missing
    return _state["kernels"]


def error() -> str | None:
    """Why :func:`load` gave None (one line), or None."""
    return _state["error"]


def _build_here(folder: Path, tree: Path, digest: str) -> None:
    """The child's side: compile the copy in ``tree`` with numba.pycc into ``folder``."""
    import shutil
    import tempfile
    import warnings

    warnings.simplefilter("ignore")
    package = tree.joinpath(*PACKAGE.split("."))
    files = {path.stem: path.read_bytes() for path in package.glob("*.py")}
    files.pop("__init__")
    if _digest(files) != digest:
        raise SystemExit("the core changed during the build; it will be rebuilt next time")
    from numba.pycc import CC

    sys.path.insert(0, str(tree))
    core = importlib.import_module(f"{PACKAGE}.{SOURCE}")
    if Path(core.__file__ or "").parent != package:
        raise SystemExit(f"the build imported {core.__file__}, not its copy in {package}")
    work = Path(tempfile.mkdtemp(prefix="build-", dir=folder))
    try:
        cc = CC(MODULE, source_module=core)
        cc.output_dir = str(work)
        cc.verbose = False
        for name, signature in EXPORTS.items():
            function = getattr(core, name).py_func  # the same source the JIT compiles
            for t in TYPES:
                cc.export(f"{name}_{t}", signature.format(t=t))(function)
        cc.compile()
        built = _module_file(work)
        if built is None:
            raise SystemExit("numba.pycc wrote no module")
        os.replace(built, folder / built.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":  # python aot.py build DIR TREE DIGEST
    if len(sys.argv) != 5 or sys.argv[1] != "build":
        sys.exit("usage: python aot.py build DIR TREE DIGEST")
    _build_here(Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4])
