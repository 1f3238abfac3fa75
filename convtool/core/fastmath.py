"""The core's compile settings: the fast-math liberties its kernels take, and how they run.

Reassociation lets LLVM vectorise the dot products (sums come out in another order,
so in the last bit they differ from a naive loop's); contraction fuses multiply-adds.
Nothing that changes what NaN and inf mean (no ``nnan``, ``ninf``): a NaN pixel
still gives NaN. Every kernel that takes liberties takes these, so the flags live
once, here.
"""

from numba import njit

FASTMATH = {"reassoc", "contract"}

INNER = {"no_cpython_wrapper": True, "no_cfunc_wrapper": True}
"""numba options for the helpers, called only from other kernels: no wrappers to call
them from Python or C, which numba would otherwise compile (and LLVM optimise) for each."""

ENTRY = {"cache": True, "nogil": True}
"""numba options for the kernels called from Python: compiled once and cached on disk, and
run without the GIL, so that the engine's threads run shares of one call side by side
(:mod:`convtool.core.tasks`)."""


@njit(inline="always")
def _share(n, part, parts):
    """Tasks [start, stop) of ``part`` (0 .. parts - 1) when ``n`` tasks are cut into
    ``parts`` shares of sizes differing by at most one, as a static schedule cuts them."""
    return part * n // parts, (part + 1) * n // parts
