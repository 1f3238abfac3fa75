"""The engine: an explicit object passed down, the JIT by default, and numba's one door."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from convtool import ops
from convtool.core import conv, conv_box, conv_sep, engine, fit, pool


def test_every_kernel_has_a_door():
    """Each cached kernel of the core is run through the engine, under its own name."""
    for module in (conv, conv_box, conv_sep, pool, fit):
        kernels = {
            name
            for name, value in vars(module).items()
            if not name.startswith("_") and hasattr(value, "py_func")
        }
        assert kernels, module.__name__
        for name in kernels:
            assert callable(getattr(engine.Engine, name, None)), f"{module.__name__}.{name}"


def test_none_means_the_jit():
    assert engine.or_jit(None) is engine.jit()
    other = engine.Engine()
    assert engine.or_jit(other) is other
    assert engine.jit().name == "jit" and engine.jit().path is None
    x = np.random.default_rng(1).random((3, 17, 19)).astype(np.float32)
    w = np.random.default_rng(2).standard_normal((4, 3, 3, 5))
    default = ops.conv2d(x, w, padding="same")
    assert np.array_equal(default, ops.conv2d(x, w, padding="same", engine=engine.jit()))


def test_the_engine_is_passed_not_switched(monkeypatch):
    """An engine given to one call changes nothing for the next call."""
    calls = []

    class Recording(engine.Engine):
        def conv2d_forward(self, *args):
            calls.append(1)
            super().conv2d_forward(*args)

    x, w = np.ones((5, 5)), np.ones((3, 3))
    assert np.array_equal(ops.conv2d(x, w, engine=Recording()), ops.conv2d(x, w))
    assert len(calls) == 1


def test_reduction_chunks():
    import numba

    threads = numba.get_num_threads()
    assert engine.reduction_chunks(1) == 1
    assert engine.reduction_chunks(0) == 1
    assert engine.reduction_chunks(10**6) == 4 * threads


@pytest.mark.parametrize("threads", [None, "3", "not a number"])
def test_reduction_chunks_before_numba_is_imported_as_after(monkeypatch, threads):
    """The compiled engine splits reductions as the JIT would, without importing numba."""
    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    if threads is not None:
        monkeypatch.setenv("NUMBA_NUM_THREADS", threads)
    out = _fresh(
        "import sys, warnings\nfrom convtool.core import engine\n"
        "print(engine.default_threads(), engine.reduction_chunks(10**6), 'numba' in sys.modules)\n"
        "warnings.simplefilter('ignore')\nimport numba\n"
        "print(numba.config.NUMBA_NUM_THREADS, engine.reduction_chunks(10**6))\n"
    )
    before, chunks, imported, numbas, after = out
    assert imported == "False"
    assert before == numbas and chunks == after == str(4 * int(numbas))
    if threads == "3":
        assert before == "3"


def _fresh(code: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_choosing_an_engine_imports_no_numba():
    out = _fresh(
        "import sys\nfrom convtool.core import engine\n"
        "engine.jit(); engine.compiled(build_missing=False); engine.use_threads(1)\n"
        "print(engine.threads_running(), 'numba' in sys.modules)\n"
    )
    assert out == ["False", "False"]


def test_numbas_threads_seen_and_limited():
    out = _fresh(
        "import numba, numpy as np\nfrom convtool import ops\nfrom convtool.core import engine\n"
        "print(engine.threads_running())\n"
        "ops.conv2d(np.ones((8, 8)), np.ones((3, 3)))\n"
        "print(engine.threads_running())\n"
        "engine.use_threads(1)\nprint(numba.get_num_threads())\n"
    )
    assert out == ["False", "True", "1"]
