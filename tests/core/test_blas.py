"""numpy's OpenBLAS held to one thread inside blocks, and given its count back after."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from convtool.core import blas


def _count() -> int:
    functions = blas._functions()
    if functions is None:
        pytest.skip("numpy's BLAS is not OpenBLAS here")  # then one_thread does nothing
    return functions[1]()


def test_one_thread_inside_and_the_count_restored_after():
    before = _count()
    with blas.one_thread() as found:
        assert found and _count() == 1
        a = np.ones((64, 64), dtype=np.float32)
        assert (a @ a == 64).all()
    assert _count() == before


def test_overlapping_blocks_on_threads_restore_the_count_once_the_last_leaves():
    before = _count()
    entered, leave = threading.Barrier(2), threading.Event()
    seen = []

    def inside():
        with blas.one_thread():
            entered.wait()
            leave.wait()
            seen.append(_count())

    worker = threading.Thread(target=inside)
    worker.start()
    with blas.one_thread():
        entered.wait()
        leave.set()
        worker.join()
        seen.append(_count())
    assert seen == [1, 1] and _count() == before
