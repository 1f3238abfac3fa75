"""The ahead-of-time compiled convolution: its build, its key, and its results (the JIT's)."""

from __future__ import annotations

import ast
import os

import numpy as np
import pytest

from convtool import ops
from convtool.core import aot, engine


@pytest.fixture
def fresh_aot(monkeypatch):
    monkeypatch.setattr(aot, "_state", {"kernels": None, "tried": False, "error": None})
    return aot


def test_compiled_core_gives_the_jit_results(fresh_aot):
    """Builds the module into the user cache on a fresh machine (once, ~15 s)."""
    compiled = engine.compiled()
    assert compiled is not None, fresh_aot.error()
    assert compiled.name == "aot" and engine.jit().name == "jit"
    assert compiled.path.parent == fresh_aot.build_dir()
    rng = np.random.default_rng(6)
    for dtype in (np.float32, np.float64):
        x = rng.random((2, 3, 19, 23)).astype(dtype)
        w = rng.standard_normal((5, 3, 4, 3))
        b = rng.standard_normal(5)
        for stride, padding in [(1, "same"), ((2, 3), "same"), (2, 0), (1, (2, 1))]:
            jit = ops.conv2d(x, w, b, stride=stride, padding=padding)
            assert np.array_equal(jit, ops.conv2d(x, w, b, stride=stride, padding=padding))
            got = ops.conv2d(x, w, b, stride=stride, padding=padding, engine=compiled)
            assert got.dtype == dtype
            np.testing.assert_allclose(got, jit, rtol=1e-5, atol=1e-5)
    # anything the compiled module lacks comes from the JIT
    x = rng.random((2, 3, 8, 9))
    assert np.array_equal(ops.max_pool2d(x, 2, engine=compiled), ops.max_pool2d(x, 2))
    g = rng.random((2, 3, 4, 4))
    assert np.array_equal(
        ops.avg_pool2d_backward(x, g, 2, engine=compiled), ops.avg_pool2d_backward(x, g, 2)
    )


def test_no_compiler_means_the_jit_and_no_retry(fresh_aot, monkeypatch, tmp_path):
    monkeypatch.setenv("CONVTOOL_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CC", "no-such-compiler-xyz")
    announced = []
    assert engine.compiled(announce=lambda: announced.append(1)) is None
    assert "no C compiler" in fresh_aot.error() and not announced
    folder = fresh_aot.build_dir()
    assert "no C compiler" in (folder / "FAILED").read_text()
    assert engine.compiled(build_missing=False) is None
    np.testing.assert_allclose(ops.conv2d(np.ones((4, 4)), np.ones((3, 3))), 9 * np.ones((2, 2)))
    monkeypatch.delenv("CC")  # a compiler now, but the failure is remembered for a day
    monkeypatch.setattr(fresh_aot, "_state", dict(fresh_aot._state, tried=False))
    assert engine.compiled() is None and "earlier build failed" in fresh_aot.error()


def test_unusable_cache_folder_means_the_jit(fresh_aot, monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("CONVTOOL_CACHE_DIR", str(blocker))
    assert engine.compiled() is None and fresh_aot.error()


@pytest.mark.parametrize(("name", "value"), [("CONVTOOL_AOT", "0"), ("NUMBA_DISABLE_JIT", "1")])
def test_switched_off(fresh_aot, monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    assert fresh_aot.load() is None and name in fresh_aot.error()


def test_the_key_follows_the_source_it_compiles(monkeypatch, tmp_path):
    files = aot.sources()
    # conv.py and what it imports; the pooling and fit kernels are not compiled
    assert set(files) == {"conv", "conv_rows", "conv_lines", "fastmath"}
    assert aot.key(files) == aot.key()
    for name in files:
        edited = dict(files, **{name: files[name] + b"\n# edited\n"})
        assert aot.key(edited) != aot.key(files)
    monkeypatch.setenv("CONVTOOL_CACHE_DIR", str(tmp_path))
    assert aot.build_dir().parent == tmp_path / "aot"


def test_the_compiled_files_import_only_numpy_numba_and_each_other():
    """The build runs them apart from the package: anything else would be whichever
    copy the child's sys.path finds, or nothing."""
    files = aot.sources()
    allowed = {"__future__", "numpy", "numba"} | {f"{aot.PACKAGE}.{name}" for name in files}
    for name, code in files.items():
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{name}.py: a relative import"
                modules = [node.module]
            else:
                continue
            for module in modules:
                assert module in allowed, f"{name}.py imports {module}"


def test_old_builds_are_pruned(tmp_path):
    keep, old, recent = tmp_path / "k", tmp_path / "old", tmp_path / "recent"
    for folder in (keep, old, recent):
        folder.mkdir()
    os.utime(old, (1e9, 1e9))
    aot._prune(keep)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k", "recent"]
