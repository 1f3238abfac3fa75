"""The register-blocked direct path's jitted kernels: oneDNN's way, in numba.

An output block of WIDE pixels by 2 CHANNELS output channels (NARROW by CHANNELS; the
kernel gradient's, PIXELS by CHANNELS) is kept in vector registers while the taps run past it: for
each tap t, the block's CHANNELS weights are loaded as vectors, each pixel's input
sample is broadcast, and one fused
multiply-add a vector and pixel adds the tap in (:func:`_block`). The weights are
laid out for it once a call (:mod:`convtool.core.blocked`): ``wv[ob, t, l]`` is the
weight of output channel ``ob*CHANNELS + l`` at tap t (zero past C_out), and
``offs[t]`` where tap t reads, counted from the block's first pixel's window.

numba's own vectorisers cannot build this loop: LLVM's loop vectoriser vectorises
the innermost loop alone (the taps, or the pixels, with the accumulators in
memory), and numba leaves the SLP vectoriser off. So :func:`_block` is written as
LLVM IR (a numba intrinsic): vectors of LANES elements, ``llvm.fmuladd`` (a fused
multiply-add where the CPU has one, else a multiply and an add), the accumulators
in stack slots that LLVM promotes to registers (measured here, one thread:
40-48 GMAC/s, where the direct loops reach 22; a tap of a block of 16 channels by 5
pixels takes ~2 ns, 5-6 cycles: about one vector multiply-add a cycle, near the rate
torch's LeNet layer runs at on one thread here, 51 GMAC/s).

Kernels:

- :func:`conv2d_blocked`: the forward pass, taps ordered (channel, kernel row,
  kernel column) as the kernel's own, each output row's input rows laid out with their zero padding
  first, so that every block's windows lie inside;
- :func:`grad_weight_blocked`: the kernel gradient as the same product with the roles
  turned: the taps (c, a, b) are the block's "pixels", the output pixels of the batch
  the sum (in chunks of SUMS, added up in float64), the incoming gradient's channels
  the vectors.

Each kernel runs the share ``part`` of ``parts`` of its tasks (:mod:`convtool.core.tasks`).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types, uint64
from numba.core import cgutils
from numba.extending import intrinsic

from convtool.core.fastmath import ENTRY, FASTMATH, _share

LANES = 16  # elements a vector: a zmm register of float32 (AVX2: two ymm)
VECTORS = 1  # vectors of output channels a block (2 x 8 lanes ran 10-15% slower here)
CHANNELS = LANES * VECTORS  # output channels a block (convtool.core.blocked's CHANNELS)
PIXELS = 6  # the kernel gradient's taps a block (of one vector)
# The forward's pixels a block: of two vectors WIDE (18 accumulators, 2 weights and a
# sample in AVX-512's 32 registers: AlexNet's conv2 at 75-78 GMAC/s a thread, where 6
# pixels ran at 60-62; 12 spilled), or one or two fewer where that wastes less of a
# row's end; of one vector NARROW (10 accumulators hide the FMA's latency), or one fewer.
WIDE = 9
NARROW = 10
SUMS = 512  # the kernel gradient's output pixels a chunk: summed in the image's type
# the forward's weights a pass over a row, in bytes: half a 48 KB L1 cache, beside the
# input rows the pass reads (all of a deep layer's taps, AlexNet's conv2 205 KB a block,
# came from L2 for every block of pixels: 51-57 GMAC/s a thread on VGG's, AlexNet's and
# ResNet's deep layers, 60-68 in passes; 16 and 32 KB passes did as well or worse)
PASS_BYTES = 24576
EVEN_ROWS = 16  # output rows a share, below which the forward's tasks split by channels too


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


def _block_of(pixels, vectors=VECTORS, rows=True):
    """:func:`_block` for blocks of ``pixels`` pixels by ``vectors`` vectors of output
    channels (``vectors`` LANES channels: wf's rows); without ``rows``, each pixel's
    sums stored as its vectors (:func:`_store_vectors`) rather than each lane's in a row
    (:func:`_store_block`)."""

    def block(typingctx, xf, base, steps, wf, wbase, offs, first, last, init, ibase, istep,
              dst, dbase, pitch):  # fmt: skip
        args = (xf, base, steps, wf, wbase, offs, first, last, init, ibase, istep, dst, dbase, pitch)
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


_block = _block_of(PIXELS)
_block.__doc__ = """dst[dbase + l*pitch + r] = init[ibase + r*istep + l] + sum over first <= t < last
of wf[wbase + t*CHANNELS + l] * xf[base + steps[r] + offs[t]], for the PIXELS pixels r and
the CHANNELS lanes l (``istep`` 0: one start for every pixel, a bias; every index inside
its array: the caller's promise)."""
# the forward's blocks, each pixel's sums stored as vectors (a lane at a time, a block of
# 32 channels by 6 pixels took 192 stores: VGG's conv1_1, 27 taps, spent half its time
# there): of 2 CHANNELS by WIDE pixels or fewer, and of CHANNELS by NARROW or fewer
_wide = _block_of(WIDE, 2, rows=False)
_wide_less = _block_of(WIDE - 1, 2, rows=False)
_wide_least = _block_of(WIDE - 2, 2, rows=False)
_narrow = _block_of(NARROW, rows=False)
_narrow_less = _block_of(NARROW - 1, rows=False)


@njit(inline="always")
def _pixels(w_out, most, fewest):
    """The pixels a block for rows of ``w_out``, from ``most`` down to ``fewest``: the
    fewest blocks' taps, a block's tap costing about one pixel more than its pixels
    (its weights' load): a row of 28 in 4 blocks of 7, not 4 of 8 or 9."""
    best, cost = most, -(-w_out // most) * (most + 1)
    for p in range(most - 1, fewest - 1, -1):
        if -(-w_out // p) * (p + 1) < cost:
            best, cost = p, -(-w_out // p) * (p + 1)
    return best


@njit(inline="always")
def _lay_row(lines, xf, n, y, slot, dims, pitch, pad_left):
    """lines[(slot*C + c)*pitch + pl + k] = x[n, c, y, k], zeros around: input row y of
    every channel in its slot of the buffer (a row outside the picture all zeros), every
    window inside it. ``dims``: (C, H, W); flat arrays and unsigned indices (numba's
    slices cost ~30 ns each, a LeNet layer's rows 0.2 ms a call)."""
    c_in, height, width = dims
    p, w, left = uint64(pitch), uint64(width), uint64(pad_left)
    for c in range(c_in):
        at = uint64((slot * c_in + c) * pitch)
        if 0 <= y < height:
            src = uint64(((n * c_in + c) * height + y) * width)
            for k in range(left):
                lines[at + k] = 0
            for k in range(w):
                lines[at + left + k] = xf[src + k]
            for k in range(left + w, p):
                lines[at + k] = 0
        else:
            for k in range(p):
                lines[at + k] = 0


@njit(inline="always")
def _put_rows(of, at, plane, band, span, count, lanes, width):
    """of[at + o*plane + j] = band[(o // span * count + j)*span + o % span] for o in
    ``lanes`` (a range), j < width: one output row of those channels from the band
    (``count`` pixels of each block of ``span`` channels, each pixel's sums side by side)
    into the output's planes."""
    start, step, sp = uint64(at), uint64(plane), uint64(span)
    for o in range(uint64(lanes[0]), uint64(lanes[1])):
        first = (o // sp) * uint64(count) * sp + o % sp
        for j in range(uint64(width)):
            of[start + o * step + j] = band[first + j * sp]


@njit(fastmath=FASTMATH, **ENTRY)
def conv2d_blocked(x, wv, bias, out, kh, kw, sh, sw, pad_top, pad_left, part, parts):
    """out[n, o, i, j] = bias[o] + sum over the taps t = (c, a, b) of wv[o // B, t, o % B]
    * x[n, c, i*sh + a - pt, j*sw + b - pl], zero outside x.

    wv (C_out blocks, kh C_in kw, B) for blocks of B = CHANNELS or 2 CHANNELS output
    channels, bias (C_out blocks x B, zero past C_out). A task is one output row of one
    picture: the input rows its windows see are laid out first, zero-padded, side by side
    in a small buffer (:func:`_lay_row`), wide enough for whole blocks of pixels, so that
    no window crosses an edge; the blocks' sums go into a band (each pixel's vectors as
    they are), then into the output's planes (:func:`_put_rows`): written straight
    there, a block's 16 channels fell in one cache set where a plane spans a multiple
    of 4 KB (224x224: 3x slower). Blocks of 2 CHANNELS (for 32 output channels and
    more) load each sample once for twice the channels: 4-11% faster here. A deep
    layer's taps run in passes over the row (PASS_BYTES of weights each, the band
    keeping the sums between them), so that a pass's weights stay in L1 for all its
    blocks of pixels.
    """
    n_img, c_in, width = x.shape[0], x.shape[1], x.shape[3]
    c_out, h_out, w_out = out.shape[1], out.shape[2], out.shape[3]
    blocks, taps, width_b = wv.shape
    # blocks of one vector take NARROW pixels (LeNet's conv2, 16 channels: 200 us a call
    # where 2 blocks of 5 pixels took 216), of two vectors WIDE (registers: 2 a pixel)
    most, fewest = (NARROW, NARROW - 1) if width_b == CHANNELS else (WIDE, WIDE - 2)
    pixels = _pixels(w_out, most, fewest)
    n_blocks = -(-w_out // pixels)
    pitch = max(pad_left + width, (n_blocks * pixels - 1) * sw + kw)
    # input rows y in slots y mod kH, the next output row of a picture laying out only
    # the sH rows it does not share with the last (LeNet's conv2 0.15 ms a call, from
    # 0.19; the foundation layer 5.5, from 6.3; 64 channels at 56^2 2.1, from 2.3)
    lines = np.empty(kh * c_in * pitch, dtype=x.dtype)
    rotations = np.empty((kh, taps), dtype=np.int64)  # where the taps read, by top mod kH
    for r in range(kh):
        t = 0
        for c in range(c_in):  # tap (c, a, b) reads row top + a of channel c from column b
            for a in range(kh):
                line = (((r + a) % kh) * c_in + c) * pitch
                for b in range(kw):
                    rotations[r, t] = line + b
                    t += 1
    steps = np.arange(most) * sw
    # the taps in passes of even length, each pass's weights at most PASS_BYTES
    passes = -(-taps * width_b * x.itemsize // PASS_BYTES)
    per_pass = -(-taps // passes)
    # the band: an output row of each channel, each pixel's channels side by side
    band = np.empty(blocks * n_blocks * pixels * width_b, dtype=out.dtype)
    xf, wf, of = x.reshape(-1), wv.reshape(-1), out.reshape(-1)
    dims = (c_in, x.shape[2], width)
    # A task is one output row, or, where there are too few rows to share out evenly, one
    # output row of one block of channels (AlexNet's conv2, 27 rows in shares of 3-4: two
    # threads took 2.2-2.3 ms where each half took 1.8-2.0). The rows laid out are the
    # same whatever the group: a group's first row after another's last lays out anew.
    rows = n_img * h_out
    groups = blocks if parts > 1 and rows < EVEN_ROWS * parts else 1
    per_group = blocks // groups
    start, stop = _share(rows * groups, part, parts)
    last_n, last_top = -1, 0  # the picture and first row laid out
    for task in range(start, stop):
        group, row = task // rows, task % rows
        n, i = row // h_out, row % h_out
        top = i * sh - pad_top
        first = top  # the first row to lay out: past those the last row laid out
        if n == last_n and last_top <= top < last_top + kh:
            first = last_top + kh
        for y in range(first, top + kh):
            _lay_row(lines, xf, n, y, y % kh, dims, pitch, pad_left)
        last_n, last_top = n, top
        offs = rotations[top % kh]
        for ob in range(group * per_group, (group + 1) * per_group):
            wbase = ob * taps * width_b
            for t0 in range(0, taps, per_pass):
                for k in range(n_blocks):
                    at, base = (ob * n_blocks + k) * pixels * width_b, k * pixels * sw
                    # the first pass starts from the bias, the others from the band's sums
                    init, ibase, istep = (bias, ob * width_b, 0) if t0 == 0 else (band, at, width_b)
                    t1 = min(taps, t0 + per_pass)
                    args = (lines, base, steps, wf, wbase, offs, t0, t1, init, ibase, istep,
                            band, at, width_b)  # fmt: skip
                    if width_b == CHANNELS:
                        if pixels == NARROW:
                            _narrow(*args)
                        else:
                            _narrow_less(*args)
                    elif pixels == WIDE:
                        _wide(*args)
                    elif pixels == WIDE - 1:
                        _wide_less(*args)
                    else:
                        _wide_least(*args)
        at = (n * c_out * h_out + i) * w_out
        lanes = (group * per_group * width_b, min(c_out, (group + 1) * per_group * width_b))
        _put_rows(of, at, h_out * w_out, band, width_b, n_blocks * pixels, lanes, w_out)


@njit(inline="always")
def _lay_gradient(gt, gf, t0, count, c_out, per_picture):
    """gt[(o // CHANNELS)*SUMS*CHANNELS + k*CHANNELS + o % CHANNELS] = g.flat[...] of output
    pixel t0 + k (counted across the pictures), for o < C_out: the incoming gradient's
    channels side by side, as :func:`_block` reads its weights (lanes past C_out stay
    as they were: zeros). Each picture's run of the chunk read channel by channel."""
    k = 0
    while k < count:
        n, pixel = (t0 + k) // per_picture, (t0 + k) % per_picture
        run = min(count - k, per_picture - pixel)
        for o in range(c_out):
            src = uint64((n * c_out + o) * per_picture + pixel)
            dst = uint64((o // CHANNELS) * SUMS * CHANNELS + k * CHANNELS + o % CHANNELS)
            for m in range(uint64(run)):
                gt[dst + m * uint64(CHANNELS)] = gf[src + m]
        k += run


@njit(fastmath=FASTMATH, **ENTRY)
def grad_weight_blocked(xp, grad_out, partial, kh, kw, sh, sw, part, parts):
    """partial[q, o, k] = sum over the output pixels p of chunk q (SUMS of them, counted
    across the pictures) of grad_out[n, o, i, j] * xp[n, c, i*sh + a, j*sw + b], for the
    taps k = (c*kh + a)*kw + b: the kernel gradient of the chunk, the caller adding the
    chunks up (in float64).

    xp: the picture zero-padded as the windows need it (no window crosses an edge);
    partial (chunks, C_out blocks x CHANNELS, taps rounded up to PIXELS). The product of
    :func:`_block` with the roles turned: PIXELS taps a block, the chunk's output pixels
    the sum, the incoming gradient's channels the vectors (laid out once a task by
    :func:`_lay_gradient`). A task is one chunk.
    """
    n_img, c_in, height, width = xp.shape
    c_out, h_out, w_out = grad_out.shape[1], grad_out.shape[2], grad_out.shape[3]
    chunks, lanes, k_pad = partial.shape
    taps = c_in * kh * kw
    steps = np.zeros(k_pad, dtype=np.int64)  # where tap k reads (the padding's: anywhere)
    for k in range(taps):
        steps[k] = ((k // (kh * kw)) * height + (k // kw) % kh) * width + k % kw
    per_picture = h_out * w_out
    gt = np.zeros(lanes * SUMS, dtype=xp.dtype)
    offs = np.empty(SUMS, dtype=np.int64)
    zero = np.zeros(lanes, dtype=xp.dtype)
    xf, gf, pf = xp.reshape(-1), grad_out.reshape(-1), partial.reshape(-1)
    start, stop = _share(chunks, part, parts)
    for q in range(start, stop):
        t0 = q * SUMS
        count = min(SUMS, n_img * per_picture - t0)
        _lay_gradient(gt, gf, t0, count, c_out, per_picture)
        for k in range(count):
            n, pixel = (t0 + k) // per_picture, (t0 + k) % per_picture
            offs[k] = (n * c_in * height + pixel // w_out * sh) * width + pixel % w_out * sw
        for ob in range(lanes // CHANNELS):
            for k0 in range(0, k_pad, PIXELS):
                at = (q * lanes + ob * CHANNELS) * k_pad + k0
                _block(xf, 0, steps[k0:], gt, ob * SUMS * CHANNELS, offs, 0, count, zero,
                       ob * CHANNELS, 0, pf, at, k_pad)  # fmt: skip
