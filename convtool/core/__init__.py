"""The compiled core: the only place numba is imported.

The jitted loops (convolution, pooling, the fit's statistics) and the engine that
runs them, either compiled ahead of time or by numba's JIT.
"""
