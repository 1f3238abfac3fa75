"""What ``apply`` and ``pipeline`` print: JSON records or tables, errors, notes, warnings.

Records go to standard output (one JSON line each with ``--json``); errors,
notes and warnings to standard error, one line each, as the runs end.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from convtool.cli._params import CLIP_NOTE_SHARE

_FATE = "kept in .npy files, not in pictures"  # what pipeline makes of NaN and infinities


def json_ready(value: Any) -> Any:
    """JSON has no NaN or infinity: they become null."""
    import math

    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_ready(v) for v in value]
    return value


def _echo_json(record: dict[str, Any]) -> None:
    """One JSON record on standard output (json loaded only when --json asks for it)."""
    import json

    click.echo(json.dumps(record))


# ------------------------------------------------------------------------------- apply


class ApplyReporter:
    """Prints records, errors and notes; a rich progress bar on a terminal."""

    def __init__(self, total: int, as_json: bool, show_bar: bool) -> None:
        self.total, self.as_json = total, as_json
        self.failed = self.written = 0
        self.clipped: list[dict[str, Any]] = []  # records whose mapping clipped a lot
        self.nonfinite: list[dict[str, Any]] = []  # records whose result holds NaN or inf
        self.progress = self.task = None
        if show_bar:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self.progress = Progress(
                TextColumn("filtering"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                auto_refresh=False,  # no refresh thread: the pool may fork after this
                transient=True,
            )
            self.task = self.progress.add_task("apply", total=total)

    def __enter__(self) -> ApplyReporter:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.stop()

    def err(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text, markup=False, highlight=False)
        else:
            click.echo(text, err=True)

    def progressed(self, done: int, total: int, outcome: Any) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=done, refresh=True)

    def outcome(self, outcome: Any, task: Any) -> None:
        if not outcome.ok:
            self.failed += 1
            message = outcome.error
            names = [task.source if isinstance(task.source, str) else "-"]
            names += [o.path for o in task.outputs]
            if not any(name in message for name in names if name != "-"):
                message = f"{names[0]}: {message}"
            self.err(f"convtool: error: {message}")
            if self.as_json:
                for out in task.outputs:
                    record = {"input": names[0], "output": out.path, "kernel": out.label}
                    _echo_json({**record, "error": outcome.error})
            return
        for record in outcome.record:
            self.written += 1
            if record["clipped"] >= CLIP_NOTE_SHARE and record["map"] in ("clip", "abs", "offset"):
                self.clipped.append(record)
            if record.get("nonfinite"):
                self.nonfinite.append(record)
            if self.as_json:
                _echo_json(json_ready(record))

    def nonfinite_warning(self) -> None:
        """One line on stderr when results hold NaN or infinities, and what became of them."""
        if not self.nonfinite:
            return
        raw = {r["depth"] == 32 and r["map"] == "none" for r in self.nonfinite}
        fate = {
            frozenset({True}): "kept as they are",
            frozenset({False}): "NaN written as 0, infinities clipped",
        }.get(
            frozenset(raw), "kept in float outputs; in 8/16-bit ones NaN is 0, infinities clipped"
        )
        first = self.nonfinite[0]
        where = "standard output" if first["output"] == "-" else first["output"]
        n = first["nonfinite"]
        count = f"{n:,} value{'s' if n != 1 else ''}"
        if len(self.nonfinite) == 1:
            verb = "are" if n != 1 else "is"
            text = f"{where}: {count} of the result {verb} NaN or infinite ({fate})"
        else:
            text = (
                f"{len(self.nonfinite)} of {self.written} outputs hold NaN or infinite values "
                f"({fate}), {count} in {where} first"
            )
        self.err(
            f"convtool: warning: {text}; they come from NaN or infinity in the input, or from "
            "values beyond float32's range"
        )

    def clip_note(self, explicit_map: bool) -> None:
        """One line on stderr when clipping changed a sizeable share, naming what keeps them."""
        notes = [r for r in self.clipped if not (explicit_map and r["map"] == "clip")]
        if not notes:
            return
        keep = ["normalize"]  # always fits; abs and offset only for some ranges
        lo = min((r["min"] for r in notes), default=0.0)
        hi = max((r["max"] for r in notes), default=0.0)
        if all(r["map"] == "clip" for r in notes):
            if max(-lo, hi) <= 1:
                keep.insert(0, "abs")
            if lo >= -0.5 and hi <= 0.5:
                keep.insert(1, "offset")
        options = " or ".join([", ".join(keep[:-1]), keep[-1]] if len(keep) > 1 else keep)
        verb = "keeps" if len(keep) == 1 else "keep"
        first = notes[0]
        where = "standard output" if first["output"] == "-" else first["output"]
        if len(notes) == 1 and self.written == 1:
            text = f"clipping to [0, 1] changed {first['clipped']:.0%} of the pixels of {where}"
        else:
            worst = max(r["clipped"] for r in notes)
            text = (
                f"clipping to [0, 1] changed over {CLIP_NOTE_SHARE:.0%} of the pixels in "
                f"{len(notes)} of {self.written} outputs (up to {worst:.0%})"
            )
        self.err(f"convtool: note: {text}; --map {options} {verb} them, .npy the raw values")


# ---------------------------------------------------------------------------- pipeline


class PipelineReporter:
    """Prints each picture's table (or JSON record), its errors and notes."""

    def __init__(self, as_json: bool, to_stderr: bool) -> None:
        self.as_json, self.to_stderr = as_json, to_stderr
        self.failed = self.done = 0
        self.clipped: list[dict[str, Any]] = []
        self.nonfinite: list[dict[str, Any]] = []  # records whose maps hold NaN or inf

    def outcome(self, outcome: Any, task: Any) -> None:
        name = task.source if isinstance(task.source, str) else "-"
        if not outcome.ok:
            self.failed += 1
            message = outcome.error
            if name not in message:
                message = f"{name}: {message}"
            click.echo(f"convtool: error: {message}", err=True)
            if self.as_json:
                _echo_json({"input": name, "error": outcome.error})
            return
        record = outcome.record
        self.done += 1
        if record["source_nonfinite"] or any(s["nonfinite"] for s in record["stages"]):
            self.nonfinite.append(record)
        self.clipped += [
            o for o in record["outputs"] if o["what"] == "map" and o["clipped"] >= CLIP_NOTE_SHARE
        ]
        if self.as_json:
            _echo_json(json_ready(record))
        else:
            self.table(record)

    def table(self, record: dict[str, Any]) -> None:
        from rich.console import Console
        from rich.table import Table

        from convtool._shared import shape_text

        name = "standard input" if record["input"] == "-" else record["input"]
        table = Table(box=None, pad_edge=False)
        for header, justify in [
            ("#", "right"),
            ("stage", "left"),
            ("output shape", "left"),
            ("min", "right"),
            ("max", "right"),
            ("time", "right"),
        ]:
            table.add_column(header, justify=justify, overflow="fold")
        source = shape_text(record["source"])
        table.add_row("", "source", source, _num(record["source_min"]), _num(record["source_max"]))
        for s in record["stages"]:
            table.add_row(
                str(s["stage"]),
                s["spec"],
                shape_text(s["shape"]),
                _num(s["min"]),
                _num(s["max"]),
                f"{s['seconds'] * 1000:.2f} ms",
            )
        stream = sys.stderr if self.to_stderr else sys.stdout
        # a pipe or file gets whole lines, a terminal its own width
        width = None if stream.isatty() else 200
        console = Console(stderr=self.to_stderr, width=width, highlight=False)
        console.print(name, markup=False, soft_wrap=True)
        console.print(table)

    def clip_note(self, explicit_map: bool) -> None:
        if explicit_map or not self.clipped:
            return
        worst = max(self.clipped, key=lambda r: r["clipped"])
        where = "standard output" if worst["output"] == "-" else worst["output"]
        click.echo(
            f"convtool: note: clipping to [0, 1] changed {worst['clipped']:.0%} of the pixels of "
            f"{where}; --map normalize keeps them, .npy the raw values",
            err=True,
        )

    def nonfinite_warning(self) -> None:
        """One line on stderr when maps hold NaN or infinities: where they appear first."""
        if not self.nonfinite:
            return
        first = self.nonfinite[0]
        where = "standard input" if first["input"] == "-" else first["input"]
        found = [("the input", first["source_nonfinite"])] + [
            (f"stage {s['stage']} ({s['kind']})", s["nonfinite"]) for s in first["stages"]
        ]
        place, n = next((place, n) for place, n in found if n)
        count = f"{n:,} value{'s' if n != 1 else ''}"
        if len(self.nonfinite) == 1:
            verb = "are" if n != 1 else "is"
            text = f"{where}: {count} of {place} {verb} NaN or infinite ({_FATE})"
        else:
            text = (
                f"{len(self.nonfinite)} of {self.done} pictures have NaN or infinite values in "
                f"their maps ({_FATE}), {count} in {place} of {where} first"
            )
        click.echo(
            f"convtool: warning: {text}; they come from NaN or infinity in the input, or from "
            "values beyond float32's range",
            err=True,
        )


def _num(value: float | None) -> str:
    return "nan" if value is None or value != value else f"{value:.4g}"
