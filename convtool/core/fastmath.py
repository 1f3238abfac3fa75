"""The core's floating-point contract: the fast-math liberties its kernels take.

Reassociation lets LLVM vectorise the dot products (sums come out in another order,
so in the last bit they differ from a naive loop's); contraction fuses multiply-adds.
Nothing that changes what NaN and inf mean (no ``nnan``, ``ninf``): a NaN pixel
still gives NaN. Every kernel that takes liberties takes these, so the flags live
once, here.
"""

FASTMATH = {"reassoc", "contract"}

INNER = {"no_cpython_wrapper": True, "no_cfunc_wrapper": True}
"""numba options for the helpers, called only from other kernels: no wrappers to call
them from Python or C, which numba would otherwise compile (and LLVM optimise) for each."""
