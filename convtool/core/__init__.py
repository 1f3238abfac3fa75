"""The compiled core: the only place numba is imported.

The jitted kernels by topic (:mod:`~convtool.core.conv` with its row and line paths,
:mod:`~convtool.core.pool`, :mod:`~convtool.core.fit`), the :mod:`~convtool.core.engine`
that runs them (numba's JIT, or the kernels compiled ahead of time, found and loaded by
:mod:`~convtool.core.aot`, built by :mod:`~convtool.core.aot_pycc`) and numba's thread
settings. Importing this package imports nothing: each module is loaded where it is
needed.

numba's on-disk cache (``cache=True``) notices edits only to the file that defines a
kernel: after changing a helper in ``conv_rows.py``, ``conv_lines.py`` or
``fastmath.py``, delete ``convtool/core/__pycache__`` (the compiled core's digest hashes
every file it compiles, so it needs no such care).
"""
