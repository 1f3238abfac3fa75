"""The register blocks of :mod:`convtool.core.conv_block`, written as LLVM IR (numba
intrinsics): a block of sums held in vector registers while the taps run past it.

numba's own vectorisers cannot build these loops: LLVM's loop vectoriser vectorises
the innermost loop alone (the taps, or the pixels, with the accumulators in
memory), and numba leaves the SLP vectoriser off. So the blocks are written as
LLVM IR: vectors of LANES elements, ``llvm.fmuladd`` (a fused multiply-add where the
CPU has one, else a multiply and an add), the accumulators in stack slots that LLVM
promotes to registers (measured here, one thread: 40-48 GMAC/s, where the direct
loops reach 22; a tap of a block of 16 channels by 5 pixels takes ~2 ns, 5-6 cycles:
about one vector multiply-add a cycle, near the rate torch's LeNet layer runs at on
one thread here, 51 GMAC/s).

Two shapes of block:

- :func:`block_of`: output channels in the lanes, a few pixels across the registers:
  each tap loads the block's weights as vectors and broadcasts each pixel's sample;
- :func:`row_block_of`: a row's pixels in the lanes, a few output channels across the
  registers: each tap loads vectors of samples and broadcasts each channel's weight.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["LANES", "block_of", "row_block_of"]

LANES = 16  # elements a vector: a zmm register of float32 (AVX2: two ymm)


def _data(context, builder, array_type, array):
    """The data pointer of a numba array value."""
    return cgutils.create_struct_proxy(array_type)(context, builder, value=array).data


def _vector_at(builder, pointer, index, vector_type):
    """The vector of ``vector_type`` starting at ``pointer[index]``."""
    return builder.bitcast(builder.gep(pointer, [index]), vector_type.as_pointer())


def _store_block(builder, slots, vectors, dst, dbase, pitch):
    """The accumulators (``vectors`` a pixel) into dst, each lane's sums side by side in
    its own row: ``dst[dbase + l*pitch + r]``."""
    i64, i32 = ir.IntType(64), ir.IntType(32)
    for k, slot in enumerate(slots):
        value = builder.load(slot)
        r, v = divmod(k, vectors)
        for e in range(LANES):
            row = builder.mul(ir.Constant(i64, v * LANES + e), pitch)
            at = builder.gep(dst, [builder.add(dbase, builder.add(row, ir.Constant(i64, r)))])
            builder.store(builder.extract_element(value, ir.Constant(i32, e)), at)


def _vectors(builder, pointer, start, vector, count):
    """The ``count`` vectors side by side from ``pointer[start]``."""
    i64 = ir.IntType(64)
    return [
        builder.load(
            _vector_at(builder, pointer, builder.add(start, ir.Constant(i64, v * LANES)), vector),
            align=1,
        )
        for v in range(count)
    ]


def _fmuladd(builder, element, vector):
    """``llvm.fmuladd`` on vectors: fused where the CPU has fused multiply-adds."""
    kind = "f32" if isinstance(element, ir.FloatType) else "f64"
    return cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(vector, [vector] * 3), f"llvm.fmuladd.v{LANES}{kind}"
    )


def _store_vectors(builder, slots, vectors, dst, dbase, pitch):
    """The accumulators into dst as they are, a pixel's vectors side by side:
    ``dst[dbase + r*pitch + v*LANES + l]`` for pixel r, vector v, lane l."""
    i64 = ir.IntType(64)
    for k, slot in enumerate(slots):
        r, v = divmod(k, vectors)
        at = builder.add(dbase, builder.add(builder.mul(ir.Constant(i64, r), pitch),
                                            ir.Constant(i64, v * LANES)))  # fmt: skip
        vector = builder.load(slot)
        builder.store(vector, _vector_at(builder, dst, at, vector.type), align=1)


def block_of(pixels, vectors, rows=True):
    """A block of ``pixels`` pixels by ``vectors`` vectors of output channels (``vectors``
    LANES channels: wf's rows), as a numba intrinsic::

        block(xf, base, steps, wf, wbase, offs, first, last, init, ibase, istep, dst, dbase,
              pitch)

    dst[dbase + l*pitch + r] = init[ibase + r*istep + l] + sum over first <= t < last of
    wf[wbase + t*vectors*LANES + l] * xf[base + steps[r] + offs[t]], for the pixels r and
    the lanes l (``istep`` 0: one start for every pixel, a bias; every index inside its
    array: the caller's promise). Without ``rows``, each pixel's sums are stored as its
    vectors, ``dst[dbase + r*pitch + l]`` (:func:`_store_vectors`), rather than each lane's
    in a row (:func:`_store_block`)."""

    def block(typingctx, xf, base, steps, wf, wbase, offs, first, last, init, ibase, istep,
              dst, dbase, pitch):  # fmt: skip
        args = (
            xf,
            base,
            steps,
            wf,
            wbase,
            offs,
            first,
            last,
            init,
            ibase,
            istep,
            dst,
            dbase,
            pitch,
        )
        return types.void(*args), codegen

    def codegen(context, builder, sig, args):
        base, wbase, first, last, ibase, istep, dbase, pitch = (
            args[k] for k in (1, 4, 6, 7, 9, 10, 12, 13)
        )
        xp, sp, wp, op, ip, dp = (
            _data(context, builder, sig.args[k], args[k]) for k in (0, 2, 3, 5, 8, 11)
        )
        element = context.get_value_type(sig.args[0].dtype)
        vector = ir.VectorType(element, LANES)
        i64, i32 = ir.IntType(64), ir.IntType(32)
        fmuladd = _fmuladd(builder, element, vector)
        starts = [
            builder.add(base, builder.load(builder.gep(sp, [ir.Constant(i64, r)])))
            for r in range(pixels)
        ]
        slots = []
        for r in range(pixels):
            at = builder.add(ibase, builder.mul(istep, ir.Constant(i64, r)))
            for start in _vectors(builder, ip, at, vector, vectors):
                slots.append(cgutils.alloca_once(builder, vector))  # promoted to a register
                builder.store(start, slots[-1])
        undef = ir.Constant(vector, ir.Undefined)
        splat = ir.Constant(ir.VectorType(i32, LANES), [0] * LANES)
        with cgutils.for_range_slice(builder, first, last, ir.Constant(i64, 1)) as (t, _):
            off = builder.load(builder.gep(op, [t]))
            at = builder.add(wbase, builder.mul(t, ir.Constant(i64, vectors * LANES)))
            weights = _vectors(builder, wp, at, vector, vectors)
            for r in range(pixels):
                sample = builder.load(builder.gep(xp, [builder.add(starts[r], off)]))
                spread = builder.insert_element(undef, sample, ir.Constant(i32, 0))
                spread = builder.shuffle_vector(spread, undef, splat)
                for v, weight in enumerate(weights):
                    slot = slots[r * vectors + v]
                    builder.store(builder.call(fmuladd, [spread, weight, builder.load(slot)]), slot)
        store = _store_block if rows else _store_vectors
        store(builder, slots, vectors, dp, dbase, pitch)
        return context.get_dummy_value()

    return intrinsic(block)


def _masked_store(builder, vector, pointer, count):
    """pointer[l] = vector[l] for the lanes l < count (llvm.masked.store: nothing written
    past them, where another thread's row may lie)."""
    i64, i32, i1 = ir.IntType(64), ir.IntType(32), ir.IntType(1)
    kind = "f32" if isinstance(vector.type.element, ir.FloatType) else "f64"
    store = cgutils.get_or_insert_function(
        builder.module,
        ir.FunctionType(ir.VoidType(), [vector.type, pointer.type, i32, ir.VectorType(i1, LANES)]),
        f"llvm.masked.store.v{LANES}{kind}.p0",
    )
    lanes = ir.Constant(ir.VectorType(i64, LANES), list(range(LANES)))
    spread = builder.insert_element(
        ir.Constant(lanes.type, ir.Undefined), count, ir.Constant(i32, 0)
    )
    spread = builder.shuffle_vector(
        spread, spread, ir.Constant(ir.VectorType(i32, LANES), [0] * LANES)
    )
    builder.call(
        store, [vector, pointer, ir.Constant(i32, 4), builder.icmp_unsigned("<", lanes, spread)]
    )


def row_block_of(vectors, channels):
    """A block of a row's pixels in the lanes, ``vectors`` vectors of them, by ``channels``
    output channels, as a numba intrinsic::

        block(xf, base, wf, wbase, offs, first, last, bias, bbase, dst, dbase, pitch,
              count, stored)

    dst[dbase + q*pitch + v*LANES + l] = bias[bbase + q] + sum over first <= t < last of
    wf[wbase + t*channels + q] * xf[base + offs[t] + v*LANES + l], for the vectors v of
    pixels (lanes l), the last one's first ``count`` only, and the channels q <
    ``stored``: each tap loads the vectors of samples once and each weight once
    (broadcast)."""

    def block(typingctx, xf, base, wf, wbase, offs, first, last, bias, bbase, dst, dbase,
              pitch, count, stored):  # fmt: skip
        args = (xf, base, wf, wbase, offs, first, last, bias, bbase, dst, dbase, pitch, count,
                stored)  # fmt: skip
        return types.void(*args), codegen

    def codegen(context, builder, sig, args):
        base, wbase, first, last, bbase, dbase, pitch, count, stored = (
            args[k] for k in (1, 3, 5, 6, 8, 10, 11, 12, 13)
        )
        xp, wp, op, bp, dp = (
            _data(context, builder, sig.args[k], args[k]) for k in (0, 2, 4, 7, 9)
        )
        element = context.get_value_type(sig.args[0].dtype)
        vector = ir.VectorType(element, LANES)
        i64, i32 = ir.IntType(64), ir.IntType(32)
        fmuladd = _fmuladd(builder, element, vector)
        undef = ir.Constant(vector, ir.Undefined)
        splat = ir.Constant(ir.VectorType(i32, LANES), [0] * LANES)

        def spread(value):
            one = builder.insert_element(undef, value, ir.Constant(i32, 0))
            return builder.shuffle_vector(one, undef, splat)

        slots = []  # slots[q*vectors + v]
        for q in range(channels):
            start = spread(builder.load(builder.gep(bp, [builder.add(bbase, ir.Constant(i64, q))])))
            for _ in range(vectors):
                slots.append(cgutils.alloca_once(builder, vector))  # promoted to a register
                builder.store(start, slots[-1])
        with cgutils.for_range_slice(builder, first, last, ir.Constant(i64, 1)) as (t, _):
            at = builder.add(base, builder.load(builder.gep(op, [t])))
            samples = _vectors(builder, xp, at, vector, vectors)
            wat = builder.add(wbase, builder.mul(t, ir.Constant(i64, channels)))
            for q in range(channels):
                weight = spread(
                    builder.load(builder.gep(wp, [builder.add(wat, ir.Constant(i64, q))]))
                )
                for v, sample in enumerate(samples):
                    slot = slots[q * vectors + v]
                    builder.store(builder.call(fmuladd, [sample, weight, builder.load(slot)]), slot)
        for q in range(channels):
            with builder.if_then(
                builder.icmp_unsigned("<", ir.Constant(i64, q), stored), likely=True
            ):
                row = builder.add(dbase, builder.mul(ir.Constant(i64, q), pitch))
                for v in range(vectors):
                    value = builder.load(slots[q * vectors + v])
                    at = _vector_at(
                        builder, dp, builder.add(row, ir.Constant(i64, v * LANES)), vector
                    )
                    if v < vectors - 1:
                        builder.store(value, at, align=1)
                    else:
                        _masked_store(builder, value, at, count)
        return context.get_dummy_value()

    return intrinsic(block)
