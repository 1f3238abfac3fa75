"""The register-blocked direct path's jitted kernels: oneDNN's way, in numba.

An output block of WIDE pixels by 2 CHANNELS output channels (NARROW by CHANNELS; the
kernel gradient's, PIXELS by CHANNELS) is kept in vector registers while the taps run past it: for
each tap t, the block's CHANNELS weights are loaded as vectors, each pixel's input
sample is broadcast, and one fused
multiply-add a vector and pixel adds the tap in (:func:`_block`). The weights are
laid out for it once a call (:mod:`convtool.core.blocked`): ``wv[ob, t, l]`` is the
weight of output channel ``ob*CHANNELS + l`` at tap t (zero past C_out), and
``offs[t]`` where tap t reads, counted from the block's first pixel's window.

The blocks are LLVM IR (:mod:`convtool.core.vector_ir` says why).

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
from numba import njit, uint64

from convtool.core.fastmath import ENTRY, FASTMATH, _share
from convtool.core.vector_ir import LANES, block_of, row_block_of

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
# The forward's other blocks, for long rows of few taps: pixels in the lanes,
# ROW_VECTORS vectors of a row's pixels by ROW_CHANNELS output channels (24 accumulators;
# a tap loads 3 vectors of samples and 8 weights for 24 multiply-adds, where a block of
# one vector of channels loads a sample for each), stored straight into the output's
# planes: no band to turn (VGG's conv1_1 spent half its time turning it)
ROW_CHANNELS = 8
ROW_VECTORS = 3


_block = block_of(PIXELS, VECTORS)  # the kernel gradient's: each lane's sums in a row
# the forward's blocks, each pixel's sums stored as vectors (a lane at a time, a block of
# 32 channels by 6 pixels took 192 stores: VGG's conv1_1, 27 taps, spent half its time
# there): of 2 CHANNELS by WIDE pixels or fewer, and of CHANNELS by NARROW or fewer
_wide = block_of(WIDE, 2, rows=False)
_wide_less = block_of(WIDE - 1, 2, rows=False)
_wide_least = block_of(WIDE - 2, 2, rows=False)
_narrow = block_of(NARROW, VECTORS, rows=False)
_narrow_less = block_of(NARROW - 1, VECTORS, rows=False)


# a row's blocks of pixels: of ROW_VECTORS vectors, and the row's end in fewer
_row1, _row2, _row3 = (row_block_of(v, ROW_CHANNELS) for v in range(1, ROW_VECTORS + 1))


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
def _lay_row(lines, xf, n, y, slot, dims, pitch, pad_left, phases):
    """lines[(slot*C + c)*pitch + pl + k] = x[n, c, y, k], zeros around: input row y of
    every channel in its slot of the buffer (a row outside the picture all zeros), every
    window inside it. With ``phases`` sW > 1, the padded row's samples k are dealt into
    sW runs by k mod sW, each pitch / sW long, so that a column stride's windows read
    side by side: run k mod sW, place k // sW. ``dims``: (C, H, W); flat arrays and
    unsigned indices (numba's slices cost ~30 ns each, a LeNet layer's rows 0.2 ms a
    call)."""
    c_in, height, width = dims
    p, w, left = uint64(pitch), uint64(width), uint64(pad_left)
    for c in range(c_in):
        at = uint64((slot * c_in + c) * pitch)
        inside = 0 <= y < height
        src = uint64(((n * c_in + c) * height + y) * width) if inside else uint64(0)
        if phases > 1:
            run = pitch // phases
            for phase in range(phases):  # samples k = m*sW + phase, inside for m in [lo, hi)
                lo = max(0, -(-(pad_left - phase) // phases)) if inside else run
                hi = max(lo, -(-(pad_left + width - phase) // phases)) if inside else run
                into = at + uint64(phase * run)
                for m in range(uint64(lo)):
                    lines[into + m] = 0
                for m in range(uint64(lo), uint64(hi)):
                    lines[into + m] = xf[src + m * uint64(phases) + uint64(phase) - left]
                for m in range(uint64(hi), uint64(run)):
                    lines[into + m] = 0
        elif inside:
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
def _rotations(c_in, kh, kw, pitch, phases):
    """rotations[r, t]: where in the laid-out rows (:func:`_lay_row`) tap t = (c, a, b)
    reads for an output row whose top input row sits in slot r (rows y in slots y mod kH):
    row top + a of channel c, from column b (of run b mod sW, with ``phases`` sW)."""
    rotations = np.empty((kh, c_in * kh * kw), dtype=np.int64)
    for r in range(kh):
        t = 0
        for c in range(c_in):
            for a in range(kh):
                line = (((r + a) % kh) * c_in + c) * pitch
                for b in range(kw):
                    rotations[r, t] = line + b % phases * (pitch // phases) + b // phases
                    t += 1
    return rotations


@njit(inline="always")
def _row_blocks(lines, offs, wf, bias, of, obs, dims, n, i):
    """Output row i of picture n, of the blocks of ROW_CHANNELS channels ob in the range
    ``obs``, in blocks of a row's pixels (:func:`_row_block`), stored straight into the
    output's planes. ``dims``: (taps, C_out, H', W')."""
    taps, c_out, h_out, w_out = dims
    for ob in range(obs[0], obs[1]):
        dbase = ((n * c_out + ob * ROW_CHANNELS) * h_out + i) * w_out
        channels = min(ROW_CHANNELS, c_out - ob * ROW_CHANNELS)
        for j in range(0, w_out, ROW_VECTORS * LANES):
            wbase, plane = ob * taps * ROW_CHANNELS, h_out * w_out
            _row_block(lines, j, wf, wbase, offs, taps, bias, ob * ROW_CHANNELS, of, dbase + j,
                       plane, w_out - j, channels)  # fmt: skip


@njit(inline="always")
def _row_block(xf, base, wf, wbase, offs, taps, bias, bbase, dst, dbase, pitch, left, stored):
    """dst[dbase + q*pitch + p] = bias[bbase + q] + sum over the taps t of
    wf[wbase + t*ROW_CHANNELS + q] * xf[base + offs[t] + p], for the pixels p < ``left``
    (ROW_VECTORS vectors of them at most, the row's end in fewer, the last one masked)
    and the channels q < ``stored``."""
    span = min(left, ROW_VECTORS * LANES)
    count = span - (span - 1) // LANES * LANES  # the last vector's pixels
    block = (xf, base, wf, wbase, offs, 0, taps, bias, bbase, dst, dbase, pitch, count, stored)
    if span > 2 * LANES:
        _row3(*block)
    elif span > LANES:
        _row2(*block)
    else:
        _row1(*block)


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

    B = ROW_CHANNELS: blocks of a row's pixels in the lanes by ROW_CHANNELS channels
    (:func:`convtool.core.vector_ir.row_block_of`), all the taps in one pass, stored
    straight into the planes (8 channels' full cache lines); at a column stride sW > 1,
    each input row laid out in sW runs (:func:`_lay_row`), so that a vector of pixels
    reads its samples side by side.
    """
    n_img, c_in, width = x.shape[0], x.shape[1], x.shape[3]
    c_out, h_out, w_out = out.shape[1], out.shape[2], out.shape[3]
    blocks, taps, width_b = wv.shape
    in_rows = width_b == ROW_CHANNELS  # a row's pixels in the lanes
    # blocks of one vector take NARROW pixels (LeNet's conv2, 16 channels: 200 us a call
    # where 2 blocks of 5 pixels took 216), of two vectors WIDE (registers: 2 a pixel)
    most, fewest = (NARROW, NARROW - 1) if width_b == CHANNELS else (WIDE, WIDE - 2)
    pixels = LANES if in_rows else _pixels(w_out, most, fewest)
    n_blocks = -(-w_out // pixels)
    pitch = max(pad_left + width, (n_blocks * pixels - 1) * sw + kw)
    phases = sw if in_rows else 1  # a block of a row reads its samples side by side
    if phases > 1:  # runs of pitch / sW (the column k at k // sW of run k mod sW)
        pitch = sw * max(-(-(pad_left + width) // sw), n_blocks * pixels + (kw - 1) // sw)
    # input rows y in slots y mod kH, the next output row of a picture laying out only
    # the sH rows it does not share with the last (LeNet's conv2 0.15 ms a call, from
    # 0.19; the foundation layer 5.5, from 6.3; 64 channels at 56^2 2.1, from 2.3)
    lines = np.empty(kh * c_in * pitch, dtype=x.dtype)
    rotations = _rotations(c_in, kh, kw, pitch, phases)
    steps = np.arange(most) * sw
    # the taps in passes of even length, each pass's weights at most PASS_BYTES
    passes = -(-taps * width_b * x.itemsize // PASS_BYTES)
    per_pass = -(-taps // passes)
    # the band: an output row of each channel, each pixel's channels side by side
    band = np.empty(0 if in_rows else blocks * n_blocks * pixels * width_b, dtype=out.dtype)
    xf, wf, of = x.reshape(-1), wv.reshape(-1), out.reshape(-1)
    dims = (c_in, x.shape[2], width)
    # A task is one output row, or, where there are too few rows to share out evenly, one
    # output row of one block of channels (AlexNet's conv2, 27 rows in shares of 3-4: two
    # threads took 2.2-2.3 ms where each half took 1.8-2.0). A row's groups are side by
    # side among the tasks: its input rows are laid out once for all of them (ResNet's
    # 3x3/2, 28 rows of 4 groups: 0.49-0.50 ms on two threads, from 0.53-0.55).
    rows = n_img * h_out
    groups = blocks if parts > 1 and rows < EVEN_ROWS * parts else 1
    per_group = blocks // groups
    start, stop = _share(rows * groups, part, parts)
    last_n, last_top = -1, 0  # the picture and first row laid out
    for task in range(start, stop):
        row, group = task // groups, task % groups
        n, i = row // h_out, row % h_out
        top = i * sh - pad_top
        first = top  # the first row to lay out: past those the last row laid out
        if n == last_n and last_top <= top < last_top + kh:
            first = last_top + kh
        for y in range(first, top + kh):
            _lay_row(lines, xf, n, y, y % kh, dims, pitch, pad_left, phases)
        last_n, last_top = n, top
        offs = rotations[top % kh]
        if in_rows:
            obs = (group * per_group, (group + 1) * per_group)
            _row_blocks(lines, offs, wf, bias, of, obs, (taps, c_out, h_out, w_out), n, i)
            continue
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
