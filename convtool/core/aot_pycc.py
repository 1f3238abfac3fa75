"""numba.pycc behind one module: what the compiled core exports, and its two builds.

``numba.pycc`` compiles the *same* Python functions as the JIT (every kernel in
:data:`KERNELS`, in the float types listed there) into an ordinary extension module
that needs no numba at run time. It is deprecated upstream; everything that touches
it is here, so that a successor replaces this module alone. What a successor must
produce, and what :mod:`convtool.core.aot` loads: an extension module exporting
``<kernel>_<type>`` for each kernel and type of :data:`KERNELS` (the JIT kernel's
arguments, of :func:`signature`'s types) and ``sources_digest()`` (:func:`digest` of
the files it compiled).

Two builds, from a copy of exactly the files :func:`sources` hashes, laid out as their
package with empty ``__init__`` files (so the build compiles them, not whichever
convtool ``sys.path`` would find):

- at install (:func:`setup_arguments`, called by ``setup.py``): the optional extension
  ``convtool.core._compiled``, through numba's setuptools integration
  (``CC.distutils_extension()``), for this machine's CPU or ``$CONVTOOL_CPU``
  (:func:`build_cpu`);
- at run time, when no installed extension fits: :mod:`convtool.core.aot` runs this
  file as a script in a child process (``python aot_pycc.py build DIR TREE DIGEST``),
  for a generic CPU.

This module imports only the standard library (numba in the builds themselves), so
that ``setup.py`` can load it by path and the child can run it as a script.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import re
import sys
import time
import zlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path  # loaded by the builds only: loading the core needs no pathlib

PACKAGE = "convtool.core"
INSTALLED = "_compiled"  # the extension built at install: convtool.core._compiled
MODULE = "_convtool_core_aot"  # the run-time build, loaded by path from the cache
CPU_VARIABLE = "CONVTOOL_CPU"
FLOATS = ("f4", "f8")
# kernel -> (its module, its arguments, what it returns, the float types it is compiled
# for). T[n]: an n-D C-contiguous array of the float type; f8[n], i8[n]: of a fixed type;
# [na]: of any layout (the fit's list of dropped pixels comes transposed from argwhere);
# i8: an integer; b1: a boolean. The fit runs in float64 only (convtool.fit.solve); a
# picture's samples become float32 planes only (convtool.filtering.correlate); the
# threads' waits (convtool.core.spin) work on int64 flags, their "float type". The
# last two i8 of the kernels with tasks are the share (part, parts) that a call runs
# (convtool.core.tasks): the compiled core runs the whole, (0, 1).
KERNELS = {
    "conv2d_rows": ("conv", "T[4] T[4] T[1] T[4] i8 i8 i8 i8 i8", "void", FLOATS),
    "conv2d_lines": ("conv", "T[4] T[4] T[1] T[4] i8 i8 i8 i8 i8", "void", FLOATS),
    "conv2d_grad_weight": ("conv", "T[4] T[4] f8[5] i8 i8 i8 i8 i8", "void", FLOATS),
    "plane_sums": ("conv", "T[4] f8[1] i8 i8", "void", FLOATS),
    "im2col": ("conv_gemm", "T[4] T[3] i8 i8 i8 i8 i8 i8 i8 i8 i8 i8 i8", "void", FLOATS),
    "col2im": ("conv_gemm", "T[3] T[4] i8 i8 i8 i8 i8 i8 i8 i8 i8 i8 i8", "void", FLOATS),
    "conv2d_blocked": ("conv_block", "T[4] T[3] T[1] T[4] i8 i8 i8 i8 i8 i8 i8 i8", "void", FLOATS),
    "grad_weight_blocked": ("conv_block", "T[4] T[4] T[3] i8 i8 i8 i8 i8 i8", "void", FLOATS),
    "wino_weights": ("conv_wino", "T[4] T[2] i8 i8 i8", "void", FLOATS),
    "wino_products": ("conv_wino", "T[2] T[2] T[2] i8 i8 i8 i8 i8", "void", FLOATS),
    "wino_input": ("conv_wino", "T[4] T[2] T[1] i8 i8 i8 i8 i8 i8 i8 i8 i8", "void", FLOATS),
    "wino_output": ("conv_wino", "T[2] T[1] T[4] i8 i8 i8 i8 i8 i8", "void", FLOATS),
    "wino4_weights": ("conv_wino", "T[4] T[2] i8 i8", "void", FLOATS),
    "wino4_input": ("conv_wino", "T[4] T[2] T[1] i8 i8 i8 i8 i8 i8 i8 i8 i8", "void", FLOATS),
    "wino4_output": ("conv_wino", "T[2] T[1] T[4] i8 i8 i8 i8 i8 i8", "void", FLOATS),
    "sep_forward": ("conv_sep", "T[4] T[2] T[2] T[1] T[4] i8 i8 i8 i8 i8 i8 i8", "void", FLOATS),
    "box_forward": ("conv_box", "T[4] T[1] T[1] T[4] i8 i8 i8 i8 i8 i8 i8 i8", "void", FLOATS),
    "max_pool2d_forward": ("pool", "T[4] T[4] i8[4] i8 i8 i8 i8 i8 i8 i8 i8", "void", FLOATS),
    "max_pool2d_backward": ("pool", "T[4] i8[4] T[4] i8 i8", "void", FLOATS),
    "avg_pool2d_forward": ("pool", "T[4] T[4] i8 i8 i8 i8 i8 i8 i8 i8 i8 i8", "void", FLOATS),
    "avg_pool2d_backward": ("pool", "T[4] T[4] i8 i8 i8 i8 i8 i8 i8 i8 i8 i8", "void", FLOATS),
    "quantise_u1": ("samples", "T[3] T[1] u1[3] i8 i8", "void", FLOATS),
    "quantise_u2": ("samples", "T[3] T[1] u2[3] i8 i8", "void", FLOATS),
    "count_inside": ("samples", "T[3] T[1] i8[1] i8 i8", "void", FLOATS),
    "gather_planes": ("samples", "T[3] i8[1] i8[1] T[3] i8 i8", "void", FLOATS),
    "gather_u1": ("samples", "u1[3] i8[1] i8[1] T[1] T[3] i8 i8", "void", ("f4",)),
    "gather_u2": ("samples", "u2[3] i8[1] i8[1] T[1] T[3] i8 i8", "void", ("f4",)),
    "fit_gather": (
        "fit",
        "T[3] T[3] T[3] i8[2a] i8 i8 i8 i8 b1 T[4] T[3] i8 i8",
        "void",
        ("f8",),
    ),
    "finished_then_wait": ("spin", "T[1] i8 i8 i8 i8", "b1", ("i8",)),
    "wait_finished": ("spin", "T[1] i8 i8", "b1", ("i8",)),
    "fit_iterate": (
        "fit",
        "i8 T[2] T[1] T[1] T[1] T[1] i8 i8 i8 T[1] T[1]",
        "UniTuple(i8, 2)",
        ("f8",),
    ),
}


def switched_off() -> str | None:
    """Why the compiled route is off by configuration (at install and run time), or None."""
    if os.environ.get("CONVTOOL_AOT", "").strip().lower() in ("0", "no", "off", "false"):
        return "CONVTOOL_AOT=0"
    if os.environ.get("NUMBA_DISABLE_JIT", "").strip() not in ("", "0"):
        return "NUMBA_DISABLE_JIT is set"
    return None


def arguments(kernel: str, t: str) -> list[tuple[str, int, bool]]:
    """``kernel``'s arguments for the float type ``t`` (see :data:`KERNELS`): (type, number
    of dimensions, C-contiguous) for each, 0 dimensions for a scalar."""
    found = []
    for arg in KERNELS[kernel][1].replace("T", t).split():
        kind, _, dims = arg.partition("[")
        found.append((kind, int(dims[0]) if dims else 0, not dims.endswith("a]")))
    return found


def signature(kernel: str, t: str) -> str:
    """numba's signature of ``kernel`` for the float type ``t``."""
    typed = []
    for kind, ndim, contiguous in arguments(kernel, t):
        dims = [":"] * ndim
        if contiguous and dims:
            dims[-1] = "::1"
        typed.append(f"{kind}[{', '.join(dims)}]" if dims else kind)
    return f"{KERNELS[kernel][2]}({', '.join(typed)})"


# ----------------------------------------------------------------------------- sources

_IMPORT = re.compile(rb"^from\s+" + re.escape(PACKAGE.encode()) + rb"\.(\w+)\s+import", re.M)


def _imported_core_modules(code: bytes) -> list[str]:
    """The modules of the core that ``code`` imports (``from convtool.core.x import ...``)."""
    return [name.decode() for name in _IMPORT.findall(code)]  # not ast: that costs ~10 ms


def sources(folder: Path | None = None) -> dict[str, bytes]:
    """The files the builds compile, by name: the kernels' modules and the core files they
    import, read from ``folder`` (this file's).

    The builds run them apart from the package, so they may import only numpy, numba
    and each other; the digests hash exactly these bytes.
    """
    folder = os.path.dirname(os.path.abspath(__file__)) if folder is None else folder
    found: dict[str, bytes] = {}
    todo = sorted({module for module, *_ in KERNELS.values()})
    while todo:
        name = todo.pop()
        if name not in found:
            with open(os.path.join(folder, f"{name}.py"), "rb") as f:
                found[name] = f.read()
            todo.extend(_imported_core_modules(found[name]))
    return dict(sorted(found.items()))


def _checksum(chunks: list[bytes]) -> int:
    """A 64-bit checksum of ``chunks``: CRC-32 and Adler-32 side by side. It tells edited
    sources from the ones a module was built from (an accident, not an adversary), and
    zlib is loaded already, where hashlib's OpenSSL would cost every command ~3-7 ms."""
    crc, adler = 0, 1
    for chunk in chunks:
        crc, adler = zlib.crc32(chunk, crc), zlib.adler32(chunk, adler)
    return crc << 32 | adler


def files_digest(files: dict[str, bytes]) -> str:
    """The hex digest of ``files`` (:func:`sources`), names and bytes."""
    chunks = []
    for name, code in sorted(files.items()):
        chunks += [f"{name} {len(code)}\n".encode(), code]
    return f"{_checksum(chunks):016x}"


def digest(files: dict[str, bytes] | None = None) -> int:
    """What a compiled module exports as ``sources_digest()``: the sources and exports it
    is built from, as a 60-bit number (``files``: :func:`sources`)."""
    text = files_digest(sources() if files is None else files)
    chunks = [text.encode(), repr(sorted(KERNELS.items())).encode(), GIL_RELEASED.encode()]
    return _checksum(chunks) & ((1 << 60) - 1)


def module_file(folder: str | os.PathLike[str], name: str) -> str | None:
    """The extension module ``name`` in ``folder``, if there is one for this Python."""
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = os.path.join(folder, name + suffix)
        if os.path.isfile(path):
            return path
    return None


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    """Lay ``files`` out under ``root`` as the package they come from, with empty parents."""
    parts = PACKAGE.split(".")
    root.joinpath(*parts).mkdir(parents=True)
    for depth in range(1, len(parts) + 1):
        root.joinpath(*parts[:depth], "__init__.py").write_bytes(b"")
    for name, code in files.items():
        root.joinpath(*parts, f"{name}.py").write_bytes(code)


# ----------------------------------------------------------------------------- compiling


def _compiler(name: str, tree: Path, expected: str, cpu: str = "") -> Any:
    """numba.pycc's compiler of :data:`KERNELS` from the copy of the core in ``tree``.

    ``expected``: the copy's :func:`files_digest`, checked; ``cpu``: the target CPU
    (LLVM's name; "host": this machine's; "": a generic one). Raises RuntimeError if
    the copy is not what was hashed, or not what imports.
    """
    from pathlib import Path

    package = tree.joinpath(*PACKAGE.split("."))
    files = {path.stem: path.read_bytes() for path in package.glob("*.py")}
    files.pop("__init__", None)
    if files_digest(files) != expected:
        raise RuntimeError("the core changed during the build; it will be rebuilt next time")
    from numba.pycc import CC

    sys.path.insert(0, str(tree))
    try:
        modules = {m: importlib.import_module(f"{PACKAGE}.{m}") for m, *_ in KERNELS.values()}
    finally:
        sys.path.remove(str(tree))
    for module in modules.values():
        if Path(module.__file__ or "").parent != package:
            raise RuntimeError(f"the build imported {module.__file__}, not its copy in {package}")
    cc = CC(name, source_module=modules["conv"])  # names the extension convtool.core.<name>
    for kernel, (module_name, _, _, types) in KERNELS.items():
        function = getattr(modules[module_name], kernel).py_func  # the source the JIT compiles
        for t in types:
            cc.export(f"{kernel}_{t}", signature(kernel, t))(function)
    value = digest(files)

    def sources_digest() -> int:
        return value

    cc.export("sources_digest", "i8()")(sources_digest)
    _releasing_the_gil()
    if cpu == "host":
        _with_host_features()
    cc.target_cpu = cpu
    cc.verbose = False
    return cc


# part of the digest: a module built before its kernels released the GIL is rebuilt
GIL_RELEASED = "kernels release the GIL"


def _releasing_the_gil() -> None:
    """Make pycc's wrappers release the GIL while a kernel runs, as the JIT's
    ``nogil=True`` does, so that the engine can run a big call's shares on threads
    (:mod:`convtool.core.tasks`); the kernels touch no Python object. pycc takes no
    such option: its compiler's flags are made with it set. Only in a build process.
    """
    from numba.pycc import compiler

    class Flags(compiler.Flags):  # type: ignore[misc,name-defined]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.release_gil = True

    compiler.Flags = Flags


def _with_host_features() -> None:
    """Make numba's ahead-of-time code generator take the host's CPU features too.

    LLVM names the host CPU by its model, and pycc passes only that name; a virtual
    machine may lack some of that model's features (AVX-512, say), which numba's JIT
    honours by passing the host's feature list, as this does. Only in a build process.
    """
    from numba.core import codegen

    codegen.AOTCPUCodegen._customize_tm_features = codegen.CPUCodegen._get_host_cpu_features


def _build_here(folder: Path, tree: Path, expected: str) -> None:
    """The child's side of the run-time build: compile the copy in ``tree`` into ``folder``.

    For a generic CPU: a home folder, where the cache lives, may be shared by machines
    of several kinds.
    """
    import shutil
    import tempfile
    import warnings
    from pathlib import Path

    warnings.simplefilter("ignore")
    work = Path(tempfile.mkdtemp(prefix="build-", dir=folder))
    try:
        cc = _compiler(MODULE, tree, expected)
        cc.output_dir = str(work)
        cc.compile()
        built = module_file(work, MODULE)
        if built is None:
            raise SystemExit("numba.pycc wrote no module")
        os.replace(built, folder / os.path.basename(built))
    except RuntimeError as e:
        raise SystemExit(str(e)) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ----------------------------------------------------------------------------- install


def build_cpu() -> str:
    """The CPU the install builds for: ``$CONVTOOL_CPU``, else "host" (this machine's).

    A wheel for other machines names a baseline: "generic" (the architecture's
    least), "x86-64-v2", "x86-64-v3", or any CPU name LLVM knows.
    """
    return os.environ.get(CPU_VARIABLE, "").strip() or "host"


def check_cpu(cpu: str) -> None:
    """Raise ValueError unless LLVM knows ``cpu`` (asked in a child: an unknown name
    makes LLVM abort the process that compiles)."""
    import subprocess

    if cpu in ("host", "generic", ""):
        return
    code = (
        "import llvmlite.binding as ll\nll.initialize_native_target()\n"
        "ll.initialize_native_asmprinter()\n"
        f"tm = ll.Target.from_default_triple().create_target_machine(cpu={cpu!r})\n"
        "tm.emit_object(ll.parse_assembly('define void @f() {\\n ret void\\n}'))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode != 0 or "not a recognized processor" in done.stderr:
        raise ValueError(
            f"{CPU_VARIABLE}={cpu!r} is not a CPU that LLVM knows "
            "(try 'host', 'generic', 'x86-64-v2', 'x86-64-v3')"
        )


def _say(message: str) -> None:
    print(f"convtool: {message}", file=sys.stderr)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def setup_arguments(root: Path | str) -> dict[str, Any]:
    """``setup()``'s ``ext_modules`` and ``cmdclass`` for the compiled core, from the
    project at ``root`` (``setup.py``'s one call).

    The extension is optional: no C compiler, or any failure of its build, is a
    warning and the install goes on without it. Nothing when the route is switched off
    (:func:`switched_off`) or numba.pycc cannot be imported. An unknown
    ``$CONVTOOL_CPU`` raises ValueError: whoever set it wants to know.
    """
    import atexit
    import shutil
    import tempfile
    import warnings
    from pathlib import Path

    reason = switched_off()
    if reason is not None:
        _say(f"not building the compiled core: {reason}")
        return {}
    cpu = build_cpu()
    check_cpu(cpu)
    files = sources(Path(root).joinpath(*PACKAGE.split(".")))
    tree = Path(tempfile.mkdtemp(prefix="convtool-core-"))
    atexit.register(shutil.rmtree, tree, True)  # the build reads it until the end
    write_tree(tree, files)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pycc's deprecation
            cc = _compiler(INSTALLED, tree, files_digest(files), cpu)
            extension = cc.distutils_extension(optional=True)
    except Exception as e:  # no numba.pycc, or no C compiler: an install without it
        _say(f"not building the compiled core: {_one_line(e)}")
        return {}
    return {"ext_modules": [extension], "cmdclass": {"build_ext": _build_ext(cpu)}}


def _build_ext(cpu: str) -> type:
    """numba's build_ext (installed by ``distutils_extension()``), failing as an optional
    extension should: whatever goes wrong is a compile error, so a warning."""
    import shutil
    import warnings

    from setuptools.command import build_ext
    from setuptools.errors import CompileError

    class BuildExt(build_ext.build_ext):  # type: ignore[name-defined,misc]
        def build_extension(self, ext: Any) -> None:
            if getattr(ext, "_cc", None) is None:
                super().build_extension(ext)
                return
            start = time.monotonic()
            try:
                command = getattr(self.compiler, "compiler_so", None)
                if command and shutil.which(command[0]) is None:
                    raise CompileError(f"no C compiler: {command[0]!r} is not on PATH")
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    super().build_extension(ext)
            except Exception as e:
                if not ext.optional:
                    raise
                raise CompileError(f"the compiled core was not built: {_one_line(e)}") from e
            _say(f"built the compiled core for CPU {cpu!r} in {time.monotonic() - start:.0f} s")

    return BuildExt


if __name__ == "__main__":  # python aot_pycc.py build DIR TREE DIGEST
    if len(sys.argv) != 5 or sys.argv[1] != "build":
        sys.exit("usage: python aot_pycc.py build DIR TREE DIGEST")
    from pathlib import Path

    _build_here(Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4])
