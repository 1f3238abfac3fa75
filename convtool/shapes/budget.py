"""The sizes of every array a job will make, worked out before it makes any, and their limits.

A job is a picture and the steps it goes through: convolutions (:class:`Conv`) and pools
(:class:`Pool`), one after another (``pipeline``'s chain) or each on the picture
(``apply``'s kernels). :func:`plan` works out, from the picture's size and every option
(padding, stride, kernel sizes, pool windows), the shape of each array a step makes: its
result, which the job keeps, and the scratch it needs while it runs (a padded copy for a
border other than zeros, the column phases of a stride). :func:`check` then holds every
result's pixel count to ``--max-pixels``, as a picture read is held, and the job's peak
memory to what the machine has (:func:`machine_memory`), raising :class:`SizeError` with
one line that names the step's option and the size it would create.

Pure arithmetic on Python ints: a padding of 10^8 costs nothing to plan. Each step's
label names what the user typed (``--padding 100000000``, ``stage 2 (conv:blur,p=9)``);
its ``option`` is the flag a command line blames (``--padding``, ``--stage``).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Sequence
from typing import NamedTuple

from convtool.shapes.sizes import PaddingSpec, Pair, output_size_padded, resolve_padding

FLOAT = 4  # bytes of a float32 sample: maps are float32 throughout
READ = 8  # bytes per sample of a picture as read (float64 at most), before its float32 copy
POST = 2  # copies of the largest result that writing it makes (mapped values, quantised)
# Multiply-adds that options may ask for whatever the picture (a plan for 1x1, floor=True):
# some seconds on one core; past it, the work comes from the options, not from the picture.
FLOOR_WORK = 10**10

Shape = tuple[int, int, int]  # (C, H, W)


class SizeError(ValueError):
    """A size an option would create that is over a limit: one line naming the option.

    ``option`` is the flag to blame (``--padding``, ``--stage``, ``-k``), for a command
    line's usage error; the message names it with its value.
    """

    def __init__(self, message: str, option: str) -> None:
        super().__init__(message)
        self.option = option


class Conv(NamedTuple):
    """A convolution step: every kernel on the step's input.

    ``kernels`` holds ``(maps, kh, kw)`` per kernel: the maps it makes (0: one per input
    channel, a 2-D kernel on each channel alike) and its size.
    ``fan_in`` is the channels each kernel reads (None: all of the input's);
    ``copies_border`` is True for a border other than zeros (a padded copy is made).
    """

    label: str
    option: str
    kernels: tuple[tuple[int, int, int], ...]
    stride: Pair = (1, 1)
    padding: PaddingSpec = "same"
    copies_border: bool = False
    fan_in: int | None = None


class Pool(NamedTuple):
    """A pooling step, with torch's rules (its output as :func:`pool_output_size` gives it)."""

    label: str
    option: str
    window: Pair
    stride: Pair
    padding: Pair = (0, 0)
    ceil_mode: bool = False


class Relu(NamedTuple):
    """max(x, 0): a result the size of its input."""

    label: str
    option: str


class Array(NamedTuple):
    """One array a step makes: what it is (as a message says it: 'a result'), its shape and
    the bytes of one element."""

    what: str
    shape: tuple[int, ...]
    itemsize: int = FLOAT

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.itemsize


class Sized(NamedTuple):
    """One step, sized: its result (kept to the job's end) and its scratch (while it runs)."""

    step: Conv | Pool | Relu
    result: Shape
    kept: tuple[Array, ...]
    scratch: tuple[Array, ...]
    macs: int = 0  # multiply-adds (or comparisons, for a pool)


class Extra(NamedTuple):
    """Arrays a job keeps besides its steps' results (figures, pictures of every map),
    named by the option that asks for them."""

    label: str
    option: str
    arrays: tuple[Array, ...]


class Plan(NamedTuple):
    """Every array of a job: the picture's, each step's, and what writing takes."""

    source: Shape
    steps: tuple[Sized, ...]
    extra: tuple[Extra, ...] = ()  # figures and the like, kept to the end

    @property
    def peak(self) -> int:
        """Bytes the job holds at its busiest: everything kept, the largest scratch, and
        the copies that writing the largest result makes."""
        c, h, w = self.source
        source = c * h * w * (READ + FLOAT)
        kept = sum(a.nbytes for s in self.steps for a in s.kept)
        scratch = max((sum(a.nbytes for a in s.scratch) for s in self.steps), default=0)
        largest = max((a.nbytes for s in self.steps for a in s.kept), default=0)
        extra = sum(a.nbytes for e in self.extra for a in e.arrays)
        return source + kept + scratch + POST * largest + extra

    @property
    def macs(self) -> int:
        return sum(s.macs for s in self.steps)


def _conv(step: Conv, shape: Shape) -> Sized:
    c, h, w = shape
    fan_in = c if step.fan_in is None else step.fan_in
    maps, kept, scratch, macs = 0, [], [], 0
    out = (1, 1)
    for n, kh, kw in step.kernels:
        n = n or c
        top, bottom, left, right = resolve_padding(step.padding, (h, w), (kh, kw), step.stride)
        sh, sw = step.stride
        out = (
            output_size_padded(h, kh, sh, top, bottom),
            output_size_padded(w, kw, sw, left, right),
        )
        maps += n
        kept.append(Array("a result", (n, *out)))
        arrays = [Array("weights", (n, fan_in, kh, kw))]
        rows, cols = h, w
        if step.copies_border:
            rows, cols = h + top + bottom, w + left + right
            arrays.append(Array("a padded copy", (fan_in, rows, cols)))
            # numpy.pad's modes fill in passes, with temporaries up to a copy's size
            arrays.append(Array("padding temporaries", (fan_in, rows, cols)))
        if sw > 1:  # the stride's column phases (convtool.ops.conv2d)
            taps = -(-kw // sw)
            arrays.append(Array("column phases", (fan_in, min(sw, kw), rows, out[1] + taps - 1)))
        scratch.append(arrays)
        # the core skips the zeros around the picture: a window reads at most the picture
        taps = kh * kw if step.copies_border else min(kh, h) * min(kw, w)
        macs += n * out[0] * out[1] * fan_in * taps
    biggest = max(scratch, key=lambda arrays: sum(a.nbytes for a in arrays))
    shapes = {a.shape[1:] for a in kept}
    result = (maps, *out) if len(shapes) == 1 else (maps, *max(shapes))
    return Sized(step, result, tuple(kept), tuple(biggest), macs)


def _pool(step: Pool, shape: Shape) -> Sized:
    c, h, w = shape
    sizes = []
    for n, k, s, p in zip((h, w), step.window, step.stride, step.padding, strict=True):
        sizes.append(output_size_padded(n, k, s, p, p, ceil_mode=step.ceil_mode))
    result = (c, *sizes)
    index = Array("a window index", result, 8)  # max pooling's argmax
    taps = min(step.window[0], h) * min(step.window[1], w)  # windows clipped to the picture
    return Sized(step, result, (Array("a result", result),), (index,), math.prod(result) * taps)


def plan(
    source: Shape,
    steps: Sequence[Conv | Pool | Relu],
    *,
    chained: bool = True,
    extra: Sequence[Extra] = (),
) -> Plan:
    """Size every step of a job on a picture of ``source`` = (C, H, W).

    ``chained``: each step takes the one before's result (a pipeline); otherwise each
    takes the picture (apply's kernels). Planning stops at a step whose window does
    not fit its padded input: running it raises the error that says so.

    >>> p = plan((3, 80, 80), [Conv("-k blur", "-k", ((3, 3, 3),), padding=(10**8, 10**8))])
    >>> p.steps[0].result
    (3, 200000078, 200000078)
    """
    sized: list[Sized] = []
    shape = source
    for step in steps:
        try:
            if isinstance(step, Conv):
                done = _conv(step, shape)
            elif isinstance(step, Pool):
                done = _pool(step, shape)
            else:
                done = Sized(step, shape, (Array("a result", shape),), ())
        except ValueError:
            break
        sized.append(done)
        if chained:
            shape = done.result
    return Plan(source, tuple(sized), tuple(extra))


# ----------------------------------------------------------------------- the limits


def _count(n: int) -> str:
    return f"{n:,}" if n < 10**12 else f"{n:.2g}"


def _bytes(n: int) -> str:
    """A byte count as people read it: '426 PiB', '1.5 GiB', '800 KiB'.

    >>> _bytes(426 * 2**50), _bytes(3 * 2**29), _bytes(1000)
    ('426 PiB', '1.5 GiB', '1000 bytes')
    """
    if n < 1024:
        return f"{n} bytes"
    units = ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")
    i = min(int(math.log(n, 1024)), len(units))
    value = n / 1024**i
    return f"{value:.3g} {units[i - 1]}" if value < 1000 else f"{value:.0f} {units[i - 1]}"


def _dims(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def check(
    job: Plan,
    *,
    max_pixels: int | None = None,
    memory: int | None = None,
    floor: bool = False,
) -> None:
    """Refuse (SizeError) a job whose results or memory are over the limits.

    Parameters
    ----------
    job : Plan
    max_pixels : int or None
        Pixels (H x W) of any one result at most, as ``--max-pixels`` holds a picture
        read; None: no limit.
    memory : int or None
        Bytes the job may hold at its peak (see :func:`machine_memory`); None: no limit.
    floor : bool
        The plan is for the smallest picture there is (1x1, one channel), a bound that
        every picture meets or exceeds: the messages say so, and a step's work is held to
        :data:`FLOOR_WORK` multiply-adds (work a picture brings is not limited).

    >>> job = plan((1, 1, 1), [Conv("--padding 9999", "--padding", ((1, 3, 3),), padding=9999)])
    >>> try:
    ...     check(job, max_pixels=10**6, floor=True)
    ... except SizeError as e:
    ...     print(e.option, "|", e)
    --padding | --padding 9999 would make an output of 19997x19997 (399,880,009 pixels) even \
from a 1x1 picture, more than the limit of 1,000,000 (--max-pixels)
    """
    even = " even from a 1x1 picture" if floor else ""
    if max_pixels is not None:
        for s in job.steps:
            _, h, w = s.result
            if h * w > max_pixels:
                raise SizeError(
                    f"{s.step.label} would make an output of {h}x{w} ({_count(h * w)} pixels)"
                    f"{even}, more than the limit of {max_pixels:,} (--max-pixels)",
                    s.step.option,
                )
    need = job.peak
    parts = [(s.step.label, s.step.option, (*s.kept, *s.scratch)) for s in job.steps]
    parts += [(e.label, e.option, e.arrays) for e in job.extra if e.arrays]
    if memory is None or need <= memory or not parts:
        _check_work(job, floor)
        return
    label, option, arrays = max(parts, key=lambda part: sum(a.nbytes for a in part[2]))
    largest = max(arrays, key=lambda a: a.nbytes)
    raise SizeError(
        f"{label} would make {largest.what} of {_dims(largest.shape)} "
        f"({_bytes(largest.nbytes)}){even}: the job would need {_bytes(need)} of memory, more "
        f"than the {_bytes(memory)} this machine has free",
        option,
    )


def _check_work(job: Plan, floor: bool) -> None:
    """Refuse, in a plan for the smallest picture, a step of more than FLOOR_WORK."""
    for s in job.steps if floor else ():
        if s.macs > FLOOR_WORK:
            raise SizeError(
                f"{s.step.label} would take {s.macs:.2g} multiply-adds even from a 1x1 picture "
                f"(minutes of work), more than the {FLOOR_WORK:.0e} that options alone may ask "
                "for",
                s.step.option,
            )


def _status_bytes(field: str) -> int | None:
    """A ``kB`` field of /proc/self/status (VmSize, VmData), in bytes; None off Linux."""
    return _proc_field("/proc/self/status", field)


def _proc_field(path: str, field: str) -> int | None:
    try:
        with open(path) as f:
            for line in f:
                name, _, value = line.partition(":")
                if name == field:
                    return int(value.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_room() -> int | None:
    """What a cgroup (v2) memory limit leaves, where one is set."""
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        if limit == "max":
            return None
        with open("/sys/fs/cgroup/memory.current") as f:
            return int(limit) - int(f.read().strip())
    except (OSError, ValueError):
        return None


def machine_memory() -> int | None:
    """Bytes a job may still take: the least of the memory free now (Linux's MemAvailable,
    else the machine's physical memory), a cgroup's limit, and this process's address-space
    and data limits (``resource.setrlimit``) less what it already holds. None if unknown.
    """
    rooms = [_proc_field("/proc/meminfo", "MemAvailable"), _cgroup_room()]
    if rooms[0] is None:
        with contextlib.suppress(AttributeError, ValueError, OSError):
            rooms[0] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        import resource
    except ImportError:  # not on Windows
        resource = None  # type: ignore[assignment]
    if resource is not None:
        for which, held in ((resource.RLIMIT_AS, "VmSize"), (resource.RLIMIT_DATA, "VmData")):
            soft = resource.getrlimit(which)[0]
            if soft != resource.RLIM_INFINITY:
                rooms.append(soft - (_status_bytes(held) or 0))
    known = [r for r in rooms if r is not None]
    return max(min(known), 0) if known else None
