"""Kernels as text for people: compact numbers and right-aligned rows."""

from __future__ import annotations

import numpy as np


def format_number(value: float) -> str:
    """Compact text for one weight: integers without decimals, others to 3 significant digits."""
    value = float(value)
    if value.is_integer() and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.3g}"


def format_kernel(w: np.ndarray, *, max_rows: int = 15, max_cols: int = 15) -> str:
    """A 2-D kernel as right-aligned text rows; large kernels are elided in the middle."""
    w = np.asarray(w)
    if w.ndim != 2:
        raise ValueError(f"format_kernel needs a 2-D kernel, got shape {w.shape}")

    def pick(n: int, limit: int) -> list[int | None]:
        if n <= limit:
            return list(range(n))
        head = (limit - 1) // 2
        tail = limit - 1 - head
        return [*range(head), None, *range(n - tail, n)]

    rows, cols = pick(w.shape[0], max_rows), pick(w.shape[1], max_cols)
    cells = [
        [
            ("…" if c is None else "⋮") if r is None or c is None else format_number(w[r, c])
            for c in cols
        ]
        for r in rows
    ]
    widths = [max(len(row[j]) for row in cells) for j in range(len(cols))]
    return "\n".join(
        "  ".join(t.rjust(n) for t, n in zip(row, widths, strict=True)) for row in cells
    )
