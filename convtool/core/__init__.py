"""The compiled core: the only place numba is imported.

The jitted kernels by topic (:mod:`~convtool.core.conv` with its row and line paths,
:mod:`~convtool.core.pool`, :mod:`~convtool.core.fit`), the :mod:`~convtool.core.engine`
that runs them (numba's JIT, or the convolution compiled ahead of time by
:mod:`~convtool.core.aot`) and numba's thread settings. Importing this package
imports nothing: each module is loaded where it is needed.
"""
