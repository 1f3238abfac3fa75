"""The engine that runs the core's kernels, chosen by a caller and passed down; numba's door.

Two engines run the same kernels, compiled from the same Python source:

- the JIT (:func:`jit`): numba compiles each kernel for this CPU on its first call
  (cached on disk) and runs it on every core (:mod:`convtool.core.tasks`);
- the compiled core (:func:`compiled`): every kernel compiled ahead of time
  (:mod:`convtool.core.aot`, at install or once at run time), which imports in under
  a millisecond and needs no numba; on one thread, or on every core for a job big
  enough to pay for starting the threads (``threaded``); for arguments it was not
  compiled for (another dtype, a strided array) it hands the call to the JIT.

An engine is a plain object. Whoever chooses it (``convtool apply``'s task, by the
size of the picture) passes it down as ``engine=`` through
:func:`convtool.filtering.correlate` and :mod:`convtool.ops` to the kernels, where
None means the JIT; nothing in the process is switched, so other code keeps its
engine. The two round differently in the last bit (host code fuses multiply-adds).

Choosing an engine imports nothing heavy, and the compiled engine imports no numba
at all: numba comes in with the first JIT kernel called. The thread settings the
rest of convtool needs are here too (:func:`reduction_chunks`, :func:`use_threads`,
:func:`threads_running`, from :mod:`convtool.core.tasks`).
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import threading
from collections.abc import Callable
from typing import Any

from convtool.core import tasks

__all__ = [
    "LARGE_WORK",
    "Engine",
    "choose",
    "compiled",
    "default_threads",
    "jit",
    "or_jit",
    "reduction_chunks",
    "threads_running",
    "use_threads",
]


class Engine:
    """The core's kernels as one engine runs them (arguments as in the kernel modules).

    The compiled core's engine runs each kernel from the compiled module when that was
    compiled for the arguments' dtypes and layouts, and from the JIT otherwise, so any
    call works on either engine.

    Attributes
    ----------
    name : str
        'jit' or 'aot' (the compiled core).
    path : str or None
        The compiled module's file; None for the JIT.
    threaded : bool
        Whether the compiled core's kernels run on every core, as the JIT's always do.
    """

    def __init__(
        self, compiled: Any = None, notice: Notice | None = None, threaded: bool = False
    ) -> None:
        self._compiled = compiled  # an aot.Kernels, or None for the JIT
        self.name = "jit" if compiled is None else "aot"
        self.path: str | None = None if compiled is None else compiled.path
        self.threaded = threaded or compiled is None
        self.notice = notice  # told when a JIT kernel compiles (see :func:`jit`)
        self._ready: set[tuple] = set()  # JIT kernels and argument types known compiled
        self._waits: tasks.Waits | None = None  # made on the first threaded call

    def __repr__(self) -> str:
        return f"Engine({self.name!r})" if self.path is None else f"Engine('aot', {self.path})"

    def _run(self, module: str, kernel: str, *args: Any) -> Any:
        """``kernel(*args)``, compiled or from the JIT."""
        function, _ = self._find(module, kernel, args)
        return function(*args)

    def blocks_fit(self) -> bool:
        """Whether the register blocks (:mod:`convtool.core.vector_ir`) fit this engine's
        registers: the JIT on a CPU with AVX-512's 32 registers of 16 float32s. With
        narrower vectors they spill (the compiled core built for a generic CPU: 3.6x
        slower than the GEMM path on ResNet's conv1)."""
        if self.name != "jit":
            return False
        if _HOST["wide"] is None:
            from llvmlite import binding  # numba's: the JIT's kernels load it anyway

            _HOST["wide"] = bool(binding.get_host_cpu_features().get("avx512f"))
        return _HOST["wide"]

    def _share(self, module: str, kernel: str, *args: Any, work: float = float("inf")) -> None:
        """A kernel with tasks, cut into one share per thread (:mod:`convtool.core.tasks`),
        or run whole on this thread by an engine that is not ``threaded``, and for a call
        too small to pay for waking the threads: of few elements, or (where the caller
        counts them) fewer than THREADED_WORK multiply-adds, JIT_THREADED_WORK for the JIT
        (the bytes are the same: see tasks)."""
        whole = (*args, 0, 1)
        function, compiled = self._find(module, kernel, whole)
        least = THREADED_WORK if compiled else JIT_THREADED_WORK
        small = work < least or _elements(args) < SERIAL_BELOW
        if (compiled and not self.threaded) or small:
            function(*whole)
        else:
            tasks.run(function, *args, waits=self.waits())

    def waits(self) -> tasks.Waits:
        """The threads' spinning waits (:mod:`convtool.core.spin`): this engine's functions
        and their flags (the threads keep the first engine's)."""
        if self._waits is None:
            import numpy as np  # loaded already: the arrays of the call are numpy's

            flags = np.zeros(3, dtype=np.int64)
            after = self._find("spin", "finished_then_wait", (flags, 0, 0, 0, 0))[0]
            until = self._find("spin", "wait_finished", (flags, 0, 0))[0]
            self._waits = tasks.Waits(flags, after, until)
        return self._waits

    def _find(self, module: str, kernel: str, args: tuple) -> tuple[Any, bool]:
        """The function that runs ``kernel`` for ``args``, and whether it is compiled."""
        if self._compiled is not None:
            function = self._compiled.find(kernel, args)
            if function is not None:
                return function, True
        # the JIT's kernel: numba comes in with the first of them
        name = f"convtool.core.{module}"
        found = sys.modules.get(name) or importlib.import_module(name)
        function = getattr(found, kernel)
        if self.notice is not None:
            self._compile(function, kernel, args)
        return function, False

    def _compile(self, function: Any, kernel: str, args: tuple) -> None:
        """Compile (or load from numba's cache) before the call, saying so when it takes a
        while: a cache load takes a fraction of a second, a compile seconds."""
        import numba

        types = tuple(numba.typeof(a) for a in args)
        if (kernel, types) in self._ready:
            return
        with _watched(self.notice, f"compiling {kernel} for this machine with numba (once; "
                      f"about {COMPILE_SECONDS} s)"):  # fmt: skip
            function.compile(types)
        self._ready.add((kernel, types))

    # :mod:`convtool.core.conv`
    def conv2d_forward(self, x, w, bias, out, sh, pad_top, pad_left) -> None:
        """The forward pass in the layout that suits the output channels' count."""
        kernel = "conv2d_lines" if w.shape[0] >= LINES_FROM else "conv2d_rows"
        self._share("conv", kernel, x, w, bias, out, sh, pad_top, pad_left)

    def conv2d_grad_weight(self, x, grad_out, partial, sh, pad_top, pad_left) -> None:
        self._share("conv", "conv2d_grad_weight", x, grad_out, partial, sh, pad_top, pad_left)

    def plane_sums(self, x, sums) -> None:
        self._share("conv", "plane_sums", x, sums, work=x.size)

    # :mod:`convtool.core.conv_gemm`
    def im2col(self, x, cols, n0, i0, kh, kw, w_out, sh, sw, pad_top, pad_left) -> None:
        args = (x, cols, n0, i0, kh, kw, w_out, sh, sw, pad_top, pad_left)
        self._share("conv_gemm", "im2col", *args)

    def col2im(self, cols, grad_x, n0, i0, kh, kw, w_out, sh, sw, pad_top, pad_left) -> None:
        args = (cols, grad_x, n0, i0, kh, kw, w_out, sh, sw, pad_top, pad_left)
        self._share("conv_gemm", "col2im", *args)

    # :mod:`convtool.core.conv_block`
    def conv2d_blocked(self, x, wv, bias, out, kh, kw, sh, sw, pad_top, pad_left) -> None:
        args = (x, wv, bias, out, kh, kw, sh, sw, pad_top, pad_left)
        self._share("conv_block", "conv2d_blocked", *args, work=out.size * wv.shape[1])

    def grad_weight_blocked(self, xp, grad_out, partial, kh, kw, sh, sw) -> None:
        args = (xp, grad_out, partial, kh, kw, sh, sw)
        work = grad_out.size * xp.shape[1] * kh * kw
        self._share("conv_block", "grad_weight_blocked", *args, work=work)

    # :mod:`convtool.core.conv_wino`: F(2x2, 3x3) for 16 positions (u, v, mm's rows), else
    # F(4x4, 3x3) (36)
    def wino_weights(self, w, u, width=1) -> None:
        """U for the products: ``width`` 1, matrices for BLAS; F(2x2)'s also in blocks of
        ``width`` output channels, for :meth:`wino_products`."""
        args = (w, u, width) if u.shape[0] == 16 else (w, u)
        self._share("conv_wino", _wino("weights", u), *args)

    def wino_products(self, u, v, mm, c_out, c_in, tiles) -> None:
        work = u.shape[0] * c_out * c_in * tiles
        self._share("conv_wino", "wino_products", u, v, mm, c_out, c_in, tiles, work=work)

    def wino_input(self, x, v, probe, n0, t0, pictures, rows, tw, pad_top, pad_left) -> None:
        args = (x, v, probe, n0, t0, pictures, rows, tw, pad_top, pad_left)
        self._share("conv_wino", _wino("input", v), *args)

    def wino_output(self, mm, bias, out, n0, t0, pictures, rows) -> None:
        self._share("conv_wino", _wino("output", mm), mm, bias, out, n0, t0, pictures, rows)

    # :mod:`convtool.core.conv_sep`
    def sep_forward(self, x, cols, rows, bias, out, sh, sw, pad_top, pad_left, org_top) -> None:
        args = (x, cols, rows, bias, out, sh, sw, pad_top, pad_left, org_top)
        self._share("conv_sep", "sep_forward", *args)

    # :mod:`convtool.core.conv_box`
    def box_forward(self, x, scale, bias, out, kh, kw, pad_top, pad_left, org_top, org_left):
        args = (x, scale, bias, out, kh, kw, pad_top, pad_left, org_top, org_left)
        self._share("conv_box", "box_forward", *args)

    # :mod:`convtool.core.pool`
    def max_pool2d_forward(self, x, out, argmax, kh, kw, sh, sw, pad_top, pad_left) -> None:
        args = (x, out, argmax, kh, kw, sh, sw, pad_top, pad_left)
        self._share("pool", "max_pool2d_forward", *args)

    def max_pool2d_backward(self, grad_out, argmax, grad_x) -> None:
        self._share("pool", "max_pool2d_backward", grad_out, argmax, grad_x)

    def avg_pool2d_forward(self, x, out, kh, kw, sh, sw, pad_top, pad_left, pad_bottom, pad_right):
        pads = (pad_top, pad_left, pad_bottom, pad_right)
        self._share("pool", "avg_pool2d_forward", x, out, kh, kw, sh, sw, *pads)

    def avg_pool2d_backward(
        self, grad_out, grad_x, kh, kw, sh, sw, pad_top, pad_left, pad_bottom, pad_right
    ) -> None:
        pads = (pad_top, pad_left, pad_bottom, pad_right)
        self._share("pool", "avg_pool2d_backward", grad_out, grad_x, kh, kw, sh, sw, *pads)

    # :mod:`convtool.core.samples`: compiled only (False or None where that does not fit
    # the arrays, or for the JIT, whose numba start-up would cost more than the pass saves:
    # the caller's numpy does it then)
    def quantise(self, x, top, out) -> bool:
        """out (H, W, C) = x (C, H, W) as 8- or 16-bit samples (by out's type); False where
        not compiled."""
        if out.shape != (*x.shape[1:], x.shape[0]):  # the kernel trusts the shapes
            raise ValueError(f"samples {x.shape} (C, H, W) cannot fill {out.shape} (H, W, C)")
        return self._compiled_share(f"quantise_u{out.itemsize}", x, top, out)

    def count_inside(self, x, lo, hi) -> int | None:
        """How many pixels of x (C, H, W) have every channel in [lo, hi]; None where not
        compiled."""
        import numpy as np

        counts = np.empty(x.shape[1], np.int64)  # one a row
        bounds = np.array([lo, hi], x.dtype)
        if not self._compiled_share("count_inside", x, bounds, counts):
            return None
        return int(counts.sum())

    def gather_planes(self, x, rows, cols, out, top=None) -> bool:
        """out[c, i, j] = x[rows[i], cols[j], c] (x (H, W, C), out (C, H', W')), or with
        ``top`` x's 8- or 16-bit samples divided by it into float32 planes; False where
        not compiled."""
        if out.shape != (x.shape[2], len(rows), len(cols)):  # the kernel trusts the shapes
            raise ValueError(f"pixels {x.shape} (H, W, C) cannot fill planes {out.shape}")
        inside = all(  # nor the indices
            len(m) == 0 or (m.min() >= 0 and m.max() < size)
            for m, size in ((rows, x.shape[0]), (cols, x.shape[1]))
        )
        if not inside:
            raise ValueError("the index maps point outside the picture")
        if top is not None:
            import numpy as np

            scale = np.array([top], out.dtype)
            return self._compiled_share(f"gather_u{x.itemsize}", x, rows, cols, scale, out)
        return self._compiled_share("gather_planes", x, rows, cols, out)

    def _compiled_share(self, kernel: str, *args: Any) -> bool:
        function = None if self._compiled is None else self._compiled.find(kernel, (*args, 0, 1))
        if function is None:
            return False
        if self.threaded:
            tasks.run(function, *args)
        else:
            function(*args, 0, 1)
        return True

    # :mod:`convtool.core.fit`
    def fit_gather(self, x, y, mask, drop, sh, sw, kh, kw, toeplitz, gram, moments) -> None:
        args = (x, y, mask, drop, sh, sw, kh, kw, toeplitz, gram, moments)
        self._share("fit", "fit_gather", *args)

    def fit_iterate(
        self, method, gram, w, w_best, r_best, scalars, it, stop, max_iter, state, history
    ) -> tuple[int, int]:
        args = (method, gram, w, w_best, r_best, scalars, it, stop, max_iter, state, history)
        return self._run("fit", "fit_iterate", *args)


# Calls whose arrays hold fewer elements than this run on the calling thread: waking the
# pool costs ~20-40 us, more than such a call's work (a 4x4 picture's conv2d took 41 us
# a call threaded, 12 us on one thread).
SERIAL_BELOW = 1 << 12


def _wino(step: str, positions: Any) -> str:
    """The Winograd kernel for ``step`` whose arrays hold ``positions``' rows."""
    return f"wino_{step}" if positions.shape[0] == 16 else f"wino4_{step}"


def _elements(args: tuple) -> int:
    """The elements of a kernel's array arguments (its integers count none)."""
    return sum(getattr(a, "size", 0) for a in args)


# the forward pass's layout (convtool.core.conv): per output row for fewer output
# channels than this (a filter), in chunks of flat lines shared by four channels at a
# time for more
LINES_FROM = 4

_JIT = Engine()
_HOST: dict[str, bool | None] = {"wide": None}  # whether the CPU has AVX-512, looked up once

# A notice is told ``notice(text)`` when a wait for a compile begins and returns the
# function that ends it (a spinner's stop); the command line passes one.
Notice = Callable[[str], Callable[[], None]]
NOTICE_AFTER = 0.5  # seconds: loading numba's cache takes less, compiling a kernel more
COMPILE_SECONDS = 5  # about what one kernel's cold compile takes here (2-4 s), for the notice

# Engine choice. The compiled core runs about 15 GMAC/s a thread here, the JIT about
# 22, after ~0.45 s of numba start-up: past ~1e10 multiply-adds the JIT wins. The two
# round differently in the last bit (host code fuses multiply-adds), so the choice
# rests on the job at hand alone, never on the jobs before it: a batch then gives the
# same bytes whatever --jobs splits it into (and the threads never change the bytes).
LARGE_WORK = 1e10
# The compiled core's threads cost 0.4 ms to start and ~0.07 ms a call: worth it past
# ~2e7 multiply-adds (1.5 ms on one thread), a 3x3 kernel on a 1024x1024 RGB photo.
THREADED_WORK = 2e7
# The JIT's threads spin between calls (convtool.core.spin): a call's round trip is
# ~8 us where the pool is awake, ~40 where it has gone to sleep. Its register-blocked
# kernels run whole below ~2e6 multiply-adds (~40 us on one thread); LeNet's conv2
# (batch 32: 7.7e6) runs its kernel in 0.10-0.12 ms on two threads, 0.16-0.17 on one.
JIT_THREADED_WORK = 2e6


def jit(notice: Notice | None = None) -> Engine:
    """The JIT engine: numba's, multi-threaded; with ``notice``, one that says when a
    kernel must compile before it runs."""
    return _JIT if notice is None else Engine(notice=notice)


def choose(work: float, prefer: str = "auto", *, notice: Notice | None = None) -> Engine:
    """The engine for a job of ``work`` multiply-adds: ``prefer`` 'jit' or 'aot', or
    'auto': the compiled core where it is built, the JIT's threads past LARGE_WORK.

    The compiled core is used only as built (at install, or by an earlier run); the
    JIT, when chosen or as the fallback, says through ``notice`` when it compiles.
    """
    if prefer == "jit" or (prefer == "auto" and work > LARGE_WORK):
        return jit(notice)
    return compiled(build_missing=False, threaded=work >= THREADED_WORK) or jit(notice)


@contextlib.contextmanager
def _watched(notice: Notice, text: str):
    """Tell ``notice`` ``text`` if the block is still running after NOTICE_AFTER seconds."""
    lock, state = threading.Lock(), {"done": False, "stop": None}

    def begin() -> None:
        with lock:
            if not state["done"]:
                state["stop"] = notice(text)

    timer = threading.Timer(NOTICE_AFTER, begin)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        with lock:
            state["done"] = True
            if state["stop"] is not None:
                state["stop"]()


def or_jit(engine: Engine | None) -> Engine:
    """``engine``, or the JIT for None (what every ``engine=None`` parameter means)."""
    return _JIT if engine is None else engine


def compiled(
    *, build_missing: bool = True, announce: Any = None, threaded: bool = False
) -> Engine | None:
    """The compiled core's engine: the extension built at install, else the run-time
    build, building it first if missing and allowed; None if unavailable
    (:func:`convtool.core.aot.error` tells why). ``threaded``: its kernels run on every
    core (:mod:`convtool.core.tasks`), as the JIT's do; else on the calling thread.

    ``announce()`` is called before a build starts. The outcome is remembered for the
    process, so later calls cost nothing.
    """
    from convtool.core import aot

    kernels = aot.load(build_missing=build_missing, announce=announce)
    return None if kernels is None else Engine(kernels, threaded=threaded)


THREADED_SAMPLES = 1 << 20  # a pass over this many samples is worth the threads


def for_samples(count: int) -> Engine | None:
    """The compiled core for a pass over ``count`` samples (:mod:`convtool.core.samples`),
    on every core past THREADED_SAMPLES; None where it is not built (the caller's numpy
    does the pass: the JIT's start-up would cost more than it saves)."""
    return compiled(build_missing=False, threaded=count >= THREADED_SAMPLES)


def reduction_chunks(rows: int) -> int:
    """Into how many partial sums a reduction over ``rows`` rows is split.

    Four per thread, so that uneven rows still keep every thread busy. The count sets
    the order of the additions, so the kernel gradient and the fit's statistics take it
    from here alike, whichever engine runs them.
    """
    return max(1, min(rows, 4 * tasks.threads()))


default_threads = tasks.default_threads
use_threads = tasks.use_threads
threads_running = tasks.running
