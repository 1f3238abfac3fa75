"""Small timing helpers shared by the benchmark scripts (not part of the package).

The machine these run on is shared and noisy, so the helpers are built to compare,
not to produce absolute numbers:

- every contender is warmed up first (numba compiles, caches fill, pools start);
- each *round* times every contender once, in a rotated order, so a burst of
  machine noise lands on all of them alike, and no contender always runs first;
- a short sleep separates the contenders, because thread pools (numba's OpenMP
  layer, torch's OpenMP, OpenCV's pthreads) keep spinning for a moment after a
  parallel region and would otherwise steal cores from the next contender;
- ratios are formed per round (this round's A over this round's B) and reported as
  the median with the min..max spread across rounds.

Typical use::

    from _timing import Contender, measure, ratio_stats

    res = measure([Contender("mine", f), Contender("theirs", g)], rounds=15)
    r = ratio_stats(res["mine"], res["theirs"])
    print(r.median, r.lo, r.hi)
"""

from __future__ import annotations

import gc
import math
import multiprocessing
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Contender",
    "RatioStats",
    "Result",
    "Worker",
    "fmt_ratio",
    "fmt_time",
    "format_table",
    "measure",
    "measure_apart",
    "ratio_stats",
]


@dataclass
class Contender:
    """One thing to time.

    ``fn`` is called with no argument, or, when ``setup`` is given, with whatever
    ``setup()`` returned; then only ``fn`` is inside the timer (setup is not timed).
    """

    name: str
    fn: Callable[..., Any]
    setup: Callable[[], Any] | None = None


@dataclass
class Result:
    """Per-call times in seconds, one entry per round."""

    name: str
    number: int  # calls per measurement (each entry is the mean over these)
    times: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def best(self) -> float:
        return min(self.times)

    @property
    def worst(self) -> float:
        return max(self.times)


@dataclass
class RatioStats:
    """Per-round ratios of two contenders' times (numerator / denominator)."""

    per_round: list[float]
    of_best: float = math.nan  # not per round: best time over best time (classic best-of-N)

    @property
    def median(self) -> float:
        return statistics.median(self.per_round)

    @property
    def lo(self) -> float:
        return min(self.per_round)

    @property
    def hi(self) -> float:
        return max(self.per_round)

    def count(self, ok: Callable[[float], bool]) -> int:
        """How many rounds satisfy ``ok``."""
        return sum(1 for r in self.per_round if ok(r))


def _time_once(c: Contender, number: int) -> float:
    """Mean seconds per call over ``number`` calls of ``c``."""
    if c.setup is None:
        fn = c.fn
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        return (time.perf_counter() - t0) / number
    total = 0.0
    for _ in range(number):
        state = c.setup()
        t0 = time.perf_counter()
        c.fn(state)
        total += time.perf_counter() - t0
    return total / number


WAKE = 0.03  # seconds of untimed calls after a rest


def _wake(c: Contender) -> None:
    """Untimed calls for WAKE seconds (one at least): after the rest that keeps the other
    side's spinning threads out of a measurement, an idle VM's cores run the first calls
    slowly (a Winograd layer: 4.8 ms a call over the next 16, 3.3 without the rest)."""
    end = time.perf_counter() + WAKE
    _call(c)
    while time.perf_counter() < end:
        _call(c)


def _call(c: Contender) -> None:
    if c.setup is None:
        c.fn()
    else:
        c.fn(c.setup())


def measure(
    contenders: Sequence[Contender],
    *,
    rounds: int = 15,
    warmup: int = 2,
    min_time: float = 0.05,
    max_number: int = 1000,
    gap: float = 0.01,
) -> dict[str, Result]:
    """Time the contenders side by side, interleaved round by round.

    Each contender is called ``warmup`` times, then its calls per measurement
    (``number``) are chosen so that one measurement lasts at least ``min_time``
    seconds. Then ``rounds`` rounds follow; round k runs the contenders in the
    order rotated by k, with ``gap`` seconds of sleep before each measurement.
    The garbage collector is off while timing.
    """
    if not contenders:
        return {}
    names = [c.name for c in contenders]
    if len(set(names)) != len(names):
        raise ValueError(f"contender names must be unique: {names}")
    numbers: dict[str, int] = {}
    for c in contenders:
        for _ in range(warmup):
            _call(c)
        time.sleep(gap)
        one = _time_once(c, 1)
        numbers[c.name] = max(1, min(max_number, math.ceil(min_time / max(one, 1e-9))))
    results = {c.name: Result(c.name, numbers[c.name]) for c in contenders}
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for k in range(rounds):
            shift = k % len(contenders)
            for c in [*contenders[shift:], *contenders[:shift]]:
                time.sleep(gap)
                results[c.name].times.append(_time_once(c, numbers[c.name]))
    finally:
        if was_enabled:
            gc.enable()
    return results


class Worker:
    """A contender's own process (spawned, so no thread pool is inherited), kept alive
    across measurements.

    Libraries that time against each other in one process steal each other's cores:
    OpenMP (torch's, KMP_BLOCKTIME 200 ms) and OpenBLAS keep their threads spinning
    after a call. In separate processes each side has its own pools, and a ``gap``
    between measurements (:func:`measure_apart`) lets the other side's spin out.

    ``factory(*args)``, run in the child, returns (contenders, check): a dict of
    :class:`Contender` by kind, and whatever the parent should see (results to compare);
    it must be a module-level function (it is pickled by name).
    """

    def __init__(self, name: str, factory: Callable[..., Any], *args: Any) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.name = name
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=_serve, args=(child, factory, args), daemon=True)
        self._process.start()
        child.close()
        self.check = self._ask("ready")

    def _ask(self, *message: Any) -> Any:
        if message != ("ready",):
            self._conn.send(message)
        status, value = self._conn.recv()
        if status == "error":
            raise RuntimeError(f"{self.name}: {value}")
        return value

    def prepare(self, kind: str, warmup: int, min_time: float, max_number: int) -> int:
        """Warm ``kind`` up; the calls per measurement that last ``min_time``."""
        return self._ask("prepare", kind, warmup, min_time, max_number)

    def time(self, kind: str, number: int) -> float:
        """Mean seconds per call of ``kind`` over ``number`` calls (GC off)."""
        return self._ask("time", kind, number)

    def close(self) -> None:
        if self._process.is_alive():
            self._conn.send(("stop",))
            self._process.join(5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _serve(conn: Any, factory: Callable[..., Any], args: tuple) -> None:
    """The child's loop: answer the parent's messages until ``stop``."""
    _big = bytearray(30 << 20)
    import traceback

    # glibc's malloc maps each block above its threshold afresh (page faults on every
    # call: torch's 12.8 MB output cost 7.5 ms a conv, 1.2 ms without) until a block
    # that large is freed, which raises the threshold (to at most 32 MB): any process that has
    # run a while is in that state. Put each worker there at the start, alike.
    del _big
    try:
        contenders, check = factory(*args)
        conn.send(("ok", check))
    except BaseException:
        conn.send(("error", traceback.format_exc(limit=3)))
        return
    while True:
        op, *rest = conn.recv()
        if op == "stop":
            return
        try:
            if op == "prepare":
                kind, warmup, min_time, max_number = rest
                c = contenders[kind]
                for _ in range(warmup):
                    _call(c)
                one = _time_once(c, 1)
                value = max(1, min(max_number, math.ceil(min_time / max(one, 1e-9))))
            else:
                kind, number = rest
                gc.collect()
                _wake(contenders[kind])
                gc.disable()
                try:
                    value = _time_once(contenders[kind], number)
                finally:
                    gc.enable()
            conn.send(("ok", value))
        except BaseException:
            conn.send(("error", traceback.format_exc(limit=3)))


def measure_apart(
    workers: Sequence[Worker],
    kind: str,
    *,
    rounds: int = 15,
    warmup: int = 2,
    min_time: float = 0.05,
    max_number: int = 1000,
    gap: float = 0.3,
) -> dict[str, Result]:
    """:func:`measure` for contenders in their own processes (:class:`Worker`): each
    worker's ``kind`` timed in interleaved, rotated rounds, ``gap`` seconds of sleep
    before each measurement (longer than the spinning of the other side's pools), then
    WAKE seconds of untimed calls (:func:`_wake`)."""
    numbers = {}
    for w in workers:
        numbers[w.name] = w.prepare(kind, warmup, min_time, max_number)
        time.sleep(gap)
    results = {w.name: Result(w.name, numbers[w.name]) for w in workers}
    for k in range(rounds):
        shift = k % len(workers)
        for w in [*workers[shift:], *workers[:shift]]:
            time.sleep(gap)
            results[w.name].times.append(w.time(kind, numbers[w.name]))
    return results


def ratio_stats(num: Result, den: Result) -> RatioStats:
    """Per-round ratios num/den (both must come from one :func:`measure` call)."""
    if len(num.times) != len(den.times):
        raise ValueError("the two results have different round counts")
    per_round = [a / b for a, b in zip(num.times, den.times, strict=True)]
    return RatioStats(per_round, num.best / den.best)


def fmt_time(seconds: float) -> str:
    """A time with a unit chosen to keep 3-4 significant digits."""
    if math.isnan(seconds):
        return "n/a"
    if seconds >= 1.0:
        return f"{seconds:.3f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"


def fmt_ratio(r: RatioStats) -> str:
    """'median (min..max)' of the per-round ratios."""
    return f"{r.median:.2f} ({r.lo:.2f}..{r.hi:.2f})"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str = "") -> str:
    """A plain-text table; the first column is left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers], *[[str(v) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: Sequence[str]) -> str:
        parts = [r[0].ljust(widths[0])] + [
            v.rjust(w) for v, w in zip(r[1:], widths[1:], strict=True)
        ]
        return "  ".join(parts).rstrip()

    rule = "-" * len(line(cells[0]))
    out = []
    if title:
        out.append(title)
    out += [line(cells[0]), rule, *(line(r) for r in cells[1:])]
    return "\n".join(out)
