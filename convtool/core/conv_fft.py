"""The convolution of one channel through numpy's FFT, in blocks: large full-rank kernels.

Overlap-save: the output is cut into blocks of B x B' pixels, and each block is the
cyclic convolution of its own input window (B + kH - 1 rows by B' + kW - 1 columns,
zero outside the picture) with the kernel, both zero-padded to the transform's size
N x N' (N >= B + kH - 1), of which the block's outputs are the part that no wrap-around
reaches. A block's result thus depends on its window alone.

Blocks sit on a grid anchored in the coordinates of the whole output: a tile of a
picture (``origin``: where its first output lies in the whole) cut on the same grid
computes the same blocks from the same windows, so it gives the whole picture's bytes
(:mod:`convtool.batch.tiled` widens its tiles to whole blocks). A window holding a
NaN or an infinity would smear it over the whole block: such a block is filtered by
the direct path instead, as the whole picture's would be.

Stride 1 only (a stride would throw away most of what a transform computes). numpy
only: no numba here.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from convtool.core import tasks

__all__ = ["SIZES", "block_cost", "blocks", "fft_forward", "sizes_for"]

# transform sides, and what one transform pixel costs (ns, forward and inverse, real
# float32 input, one thread; measured here with benchmarks/bench_kernels.py). numpy's
# unscaled transforms run several times slower than its scaled ones here (numpy 2.4),
# so both directions use norm="ortho", whose scales cancel.
SIZES = (384, 512, 768, 1024)
PIXEL_NS = 5.5
OVERHEAD_NS = 1.0  # per output pixel: cutting windows, the product, writing out
BLOCKS_PER_CALL = 2  # blocks transformed together: a batch for numpy, a task for a thread
NORM = "ortho"


def sizes_for(k: int) -> int:
    """The transform side for a kernel side ``k``: the first of SIZES from 384 on that
    is at least 8k (blocks over four-fifths useful; larger transforms cost numpy less a
    pixel, smaller ones waste less of small pictures and of the last, partial blocks),
    else a power of two of at least 2k."""
    fitting = [n for n in SIZES if n >= max(8 * k, 384)]
    return fitting[0] if fitting else 1 << (2 * k - 1).bit_length()


def blocks(kh: int, kw: int) -> tuple[int, int]:
    """The output block (rows, columns) for a kH x kW kernel."""
    return sizes_for(kh) - kh + 1, sizes_for(kw) - kw + 1


def block_cost(kh: int, kw: int) -> float:
    """ns per output pixel, one thread."""
    n, m = sizes_for(kh), sizes_for(kw)
    return PIXEL_NS * n * m / ((n - kh + 1) * (m - kw + 1)) + OVERHEAD_NS


_spectra: dict[tuple, np.ndarray] = {}


def _spectrum(w: np.ndarray, shape: tuple[int, int], dtype: np.dtype) -> np.ndarray:
    """The kernel's transform for correlation (the kernel rotated 180 degrees), computed
    in float64 and rounded once to the image's complex type; remembered."""
    key = (w.tobytes(), w.shape, shape, dtype.str)
    found = _spectra.get(key)
    if found is None:
        found = np.fft.rfft2(w[::-1, ::-1], s=shape).astype(np.result_type(dtype, np.complex64))
        if len(_spectra) > 16:
            _spectra.clear()
        _spectra[key] = found
    return found


def fft_forward(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray,
    out: np.ndarray,
    pads: tuple[int, int],
    origin: tuple[int, int] = (0, 0),
    direct: Any = None,
    threads: int = 1,
) -> None:
    """out[n, 0] = bias[0] + the correlation of x[n, 0] with ``w`` (float64, kH x kW),
    stride 1, zero padding ``pads`` (top, left) before (the rest implied by ``out``).

    ``origin``: the whole output's coordinates of ``out``'s first pixel (the block grid
    is anchored there); ``direct(window, block_out)`` filters a block whose window is
    not finite (x and out 4-D, one picture, one channel, padding 0); ``threads``: how
    many blocks run at a time.
    """
    kh, kw = w.shape
    nh, nw = sizes_for(kh), sizes_for(kw)
    bh, bw = nh - kh + 1, nw - kw + 1
    spectrum = _spectrum(w, (nh, nw), x.dtype)
    h_out, w_out = out.shape[2:]
    # first block's start, in out's coordinates (<= 0): anchored on the whole's grid
    i_first, j_first = -(origin[0] % bh), -(origin[1] % bw)
    jobs = []
    for n in range(x.shape[0]):
        for i0 in range(i_first, h_out, bh):
            cols = list(range(j_first, w_out, bw))
            for c in range(0, len(cols), BLOCKS_PER_CALL):
                jobs.append((n, i0, cols[c : c + BLOCKS_PER_CALL]))
    shape = (nh, nw, bh, bw)

    def one(job: tuple) -> None:
        _blocks(x, out, job, shape, pads, spectrum, bias, w, direct)

    if threads > 1 and len(jobs) > 1:  # the block rows interleaved over the threads
        tasks.run(_run_share, jobs, one)
    else:
        for job in jobs:
            one(job)
    # windows wholly in the zero padding hold the bias alone, as the direct path leaves
    # them (the transforms leave rounding noise there)
    height, width = x.shape[2:]
    top, left = min(h_out, max(0, pads[0] - kh + 1)), min(w_out, max(0, pads[1] - kw + 1))
    bottom, right = max(top, height + pads[0]), max(left, width + pads[1])
    for part in (out[:, :, :top], out[:, :, bottom:], out[:, :, :, :left], out[:, :, :, right:]):
        part[...] = bias[0]


def _blocks(x, out, job, shape, pads, spectrum, bias, w, direct) -> None:
    """The blocks of one job: picture n, block row starting at output row i0, the blocks
    starting at output columns ``starts``."""
    n, i0, starts = job
    nh, nw, bh, bw = shape
    kh, kw = w.shape
    height, width = x.shape[2:]
    h_out, w_out = out.shape[2:]
    lh, lw = bh + kh - 1, bw + kw - 1  # a block's window
    # the band of input rows under the block row, zero outside the picture
    r0 = i0 - pads[0]
    c0 = starts[0] - pads[1]
    band = _buffer("band", (lh, (len(starts) - 1) * bw + lw), x.dtype)
    rs, re = max(r0, 0), min(r0 + lh, height)
    cs, ce = max(c0, 0), min(c0 + band.shape[1], width)
    if rs < re and cs < ce:
        band[rs - r0 : re - r0, cs - c0 : ce - c0] = x[n, 0, rs:re, cs:ce]
        # zeros around what the picture fills (the buffer holds the last job's values)
        band[: rs - r0] = 0
        band[re - r0 :] = 0
        band[:, : cs - c0] = 0
        band[:, ce - c0 :] = 0
    else:
        band[...] = 0
    s0, s1 = band.strides
    windows = np.lib.stride_tricks.as_strided(
        band, (len(starts), lh, lw), (bw * s1, s0, s1), writeable=False
    )
    blocks = _transformed(windows, spectrum, (nh, nw), (kh - 1, kw - 1), (bh, bw))
    # a finite sum: every value is (a NaN or an infinity, or an overflow, makes it not:
    # then each window is looked at)
    finite = None if np.isfinite(band.sum()) else np.isfinite(windows).all(axis=(1, 2))
    top, bottom = max(i0, 0), min(i0 + bh, h_out)
    for b, j0 in enumerate(starts):
        left, right = max(j0, 0), min(j0 + bw, w_out)
        if top >= bottom or left >= right:
            continue
        dst = out[n, 0, top:bottom, left:right]
        if finite is None or finite[b]:
            np.add(blocks[b, top - i0 : bottom - i0, left - j0 : right - j0], bias[0], out=dst)
        else:
            _direct_block(direct, windows[b], w, bias, dst, (top - i0, left - j0))


def _run_share(jobs: list, one: Any, part: int, parts: int) -> None:
    """Share ``part`` of ``parts`` of the jobs, every parts-th one (:func:`tasks.run`)."""
    for job in jobs[part::parts]:
        one(job)


_workspace = threading.local()  # each thread's buffers, reused: fresh ones cost page faults


def _buffer(name: str, shape: tuple, dtype: Any) -> np.ndarray:
    key = (name, shape, np.dtype(dtype).str)
    found = getattr(_workspace, "buffers", None)
    if found is None:
        found = _workspace.buffers = {}
    if key not in found:
        if len(found) > 8:
            found.clear()
        found[key] = np.empty(shape, dtype)
    return found[key]


def _transformed(windows, spectrum, size, skip, block) -> np.ndarray:
    """The blocks' correlations: each window's transform times the kernel's, back, and
    the rows and columns that no wrap-around reaches. One axis at a time into reused
    buffers; the last inverse only for the rows kept. A view of a per-thread buffer."""
    (nh, nw), (sh, sw), (bh, bw) = size, skip, block
    count = windows.shape[0]
    spectra = _buffer("spectra", (count, nh, nw // 2 + 1), spectrum.dtype)
    np.fft.rfft(windows, axis=2, norm=NORM, out=spectra)
    np.fft.fft(spectra, axis=1, norm=NORM, out=spectra)
    spectra *= spectrum
    np.fft.ifft(spectra, axis=1, norm=NORM, out=spectra)
    real = _buffer("real", (count, bh, nw), windows.dtype)
    np.fft.irfft(spectra[:, sh : sh + bh], n=nw, axis=2, norm=NORM, out=real)
    return real[:, :, sw : sw + bw]


def _direct_block(direct, window, w, bias, dst, offset) -> None:
    """A block whose window is not finite, by the direct path on that window alone."""
    kh, kw = w.shape
    r, c = offset
    rows, cols = dst.shape
    part = np.ascontiguousarray(window[r : r + rows + kh - 1, c : c + cols + kw - 1])
    y = np.empty((1, 1, rows, cols), dtype=dst.dtype)
    direct(part[None, None], np.ascontiguousarray(w[None, None], dtype=dst.dtype), bias, y)
    dst[...] = y[0, 0]
