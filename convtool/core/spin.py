"""How the engine's threads wait for each other between a call's shares without sleeping.

A thread that sleeps on a lock or a queue is woken by the kernel: on the virtual
machines measured here a wake took 30-50 us, and a threaded call paid two (the worker's
start and the caller's end: 70-90 us a call, against 8 us spinning; bench_layers'
small layers spent a tenth of their time there). So, as OpenMP's and OpenBLAS's
threads do, they spin a while first, outside the GIL, on a few integers in ``flags``:

- ``flags[0]``: the generation of the latest call put out (:mod:`convtool.core.tasks`);
- ``flags[1]``: the jobs the workers have finished, counted up;
- ``flags[2]``: the jobs put out, counted up (the generation is their count).

A worker that has finished a job counts it and waits for the next generation
(:func:`finished_then_wait`); the caller, its own shares done, waits for the count to
reach its jobs (:func:`wait_finished`). Either gives up after ``spins`` looks and
sleeps on its queue as before: the queues stay the truth, the flags only the hurry.
Each look pauses the core (x86's ``pause``); every YIELD_EVERY looks it offers the
core to any other thread that wants it (``sched_yield``), so that a spinning worker
does not hold back OpenBLAS's threads or another process.
"""

from __future__ import annotations

from llvmlite import binding, ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from convtool.core.fastmath import ENTRY

YIELD_EVERY = 64
_X86 = binding.get_process_triple().startswith(("x86_64", "i386", "i686"))


def _at(context, builder, array_type, array, index):
    """The address of ``array[index]``."""
    data = cgutils.create_struct_proxy(array_type)(context, builder, value=array).data
    return builder.gep(data, [index])


@intrinsic
def _load(typingctx, flags, index):
    """flags[index], read from memory each time (an atomic load, acquiring)."""

    def codegen(context, builder, sig, args):
        return builder.load_atomic(_at(context, builder, sig.args[0], *args), "acquire", 8)

    return types.int64(flags, index), codegen


@intrinsic
def _add(typingctx, flags, index, value):
    """flags[index] += value, atomically (releasing: what was written before is seen)."""

    def codegen(context, builder, sig, args):
        at = _at(context, builder, sig.args[0], args[0], args[1])
        builder.atomic_rmw("add", at, args[2], "acq_rel")
        return context.get_dummy_value()

    return types.void(flags, index, value), codegen


@intrinsic
def _pause(typingctx):
    """A spin loop's pause (x86's ``pause``: the core slows its speculation and lets its
    sibling run); nothing elsewhere."""

    def codegen(context, builder, sig, args):
        if _X86:
            fnty = ir.FunctionType(ir.VoidType(), [])
            builder.call(
                cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.sse2.pause"), []
            )
        return context.get_dummy_value()

    return types.void(), codegen


@intrinsic
def _yield(typingctx):
    """``sched_yield()``: the core to any other thread that is ready to run."""

    def codegen(context, builder, sig, args):
        fnty = ir.FunctionType(ir.IntType(32), [])
        builder.call(cgutils.get_or_insert_function(builder.module, fnty, "sched_yield"), [])
        return context.get_dummy_value()

    return types.void(), codegen


@njit(inline="always")
def _look(flags, index, value, spins, reach):
    """Look at flags[index] up to ``spins`` times until it reaches ``value`` (``reach``)
    or differs from it (not ``reach``); whether it did."""
    for k in range(spins):
        seen = _load(flags, index)
        if (seen >= value) if reach else (seen != value):
            return True
        _pause()
        if k % YIELD_EVERY == YIELD_EVERY - 1:
            _yield()
    return False


@njit(**ENTRY)
def finished_then_wait(flags, finished, seen, spins, delay):
    """A worker's turn between jobs: count ``finished`` jobs done (flags[1]), then look
    up to ``spins`` times for a generation past ``seen`` (flags[0]); when one comes,
    pause ``delay`` times more (the caller is still on its way out of Python into its
    own share: taking the GIL at once would put this thread to sleep on it). Whether a
    generation came."""
    _add(flags, 1, finished)
    if not _look(flags, 0, seen, spins, False):
        return False
    for _ in range(delay):
        _pause()
    return True


@njit(**ENTRY)
def wait_finished(flags, jobs, spins):
    """The caller's wait: look up to ``spins`` times for flags[1] (the jobs finished) to
    reach ``jobs``; whether it did."""
    return _look(flags, 1, jobs, spins, True)
