"""What ``convtool fit`` says about a fit: the report, the JSON record, the loss curve.

A per-channel fit is described channel by channel: each channel's kernel with its bias and
the named kernel it matches (:func:`match_channels`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from convtool._shared import Param
from convtool.fit.match import KernelMatch, describe_match, match_kernel
from convtool.fit.result import FitResult

_CHANNEL_NAMES = ("red", "green", "blue")


def channel_biases(result: FitResult) -> list[float | None]:
    """The bias of each channel's kernel (one entry unless the fit was per channel)."""
    if result.kernel.ndim == 3:
        return [None] * len(result.kernel) if result.bias is None else list(result.bias)
    return [result.bias]


def channel_stderrs(result: FitResult) -> list[tuple[np.ndarray | None, float | None]]:
    """Each channel's kernel's standard errors and its bias's (one entry unless per channel)."""
    se, bse = result.stderr, result.bias_stderr
    if result.kernel.ndim == 3:
        n = len(result.kernel)
        kernels = [None] * n if se is None else list(se)
        return list(zip(kernels, [None] * n if bse is None else list(bse), strict=True))
    return [(se, bse)]


def match_channels(result: FitResult) -> list[KernelMatch | None]:
    """The named kernel each channel's kernel matches (one entry unless per channel)."""
    kernels = result.kernel if result.kernel.ndim == 3 else [result.kernel]
    return [match_kernel(k) for k in kernels]


def compare_kernel(result: FitResult, want: np.ndarray, name: str, spec: str, atol: float):
    """Whether the fitted kernel (each channel's) is within ``atol`` of ``want``, as a record.

    ``name`` is the reference's display name, ``spec`` the text it was given as.
    """
    kernels = result.kernel if result.kernel.ndim == 3 else result.kernel[None]
    if want.shape != kernels.shape[1:]:
        shape = "x".join(map(str, want.shape))
        reason = f"{spec} is {shape}, the fitted kernel {result.size[0]}x{result.size[1]}"
        return {
            "name": name,
            "allclose": False,
            "max_abs_diff": None,
            "atol": atol,
            "reason": reason,
        }
    diff = float(np.abs(kernels - want).max())
    return {"name": name, "allclose": diff <= atol, "max_abs_diff": diff, "atol": atol}


def fit_record(
    result: FitResult, matches: list[KernelMatch | None], comparison: dict | None
) -> dict[str, Any]:
    """The fit as JSON-ready values: :meth:`FitResult.to_dict`, the matches and comparison."""
    data = result.to_dict()
    data["match"] = [None if m is None else m._asdict() for m in matches]
    data["match_text"] = [
        None if m is None else describe_match(m, b)
        for m, b in zip(matches, channel_biases(result), strict=True)
    ]
    if result.kernel.ndim != 3:
        data["match"], data["match_text"] = data["match"][0], data["match_text"][0]
    if comparison is not None:
        data["compare"] = comparison
    return data


def loss_curve_csv(result: FitResult) -> str:
    """The loss checked before each update, then the final loss, as ``iteration,loss`` rows."""
    first = result.iterations - len(result.history) + 1
    lines = ["iteration,loss"] + [
        f"{first + i},{v!r}" for i, v in enumerate(result.history.tolist())
    ]
    return "\n".join(lines) + "\n"


def report_text(
    r: FitResult,
    matches: list[KernelMatch | None],
    comparison: dict | None,
    *,
    spell: Callable[[Param], str] = Param.as_keyword,
) -> str:
    """The report of a fit for people: each kernel, its bias and match, then how it went.

    ``spell`` writes the parameters the report names (``tol``, ``max_iter``): Python
    keywords by default; the command line passes its flags.
    """
    kh, kw = r.size
    how = {
        "lstsq": "direct least squares",
        "cg": "conjugate gradient",
        "lbfgs": "L-BFGS through the stages",
    }.get(r.method, "")
    if r.method == "gd":
        how = f"gradient descent, lr {r.lr:.4g}"
    if r.seed is not None:
        how += f", seed {r.seed}"
    shape = f"{kh}x{kw}" if kh == kw else f"{kh}x{kw} (rows x columns)"
    lines = [f"kernel {shape} ({how})"]
    kernels = r.kernel if r.kernel.ndim == 3 else [r.kernel]
    parts = zip(kernels, channel_biases(r), matches, channel_stderrs(r), strict=True)
    for c, (k, b, m, (se, bse)) in enumerate(parts):
        if r.kernel.ndim == 3:
            name = _CHANNEL_NAMES[c] if len(kernels) == 3 else str(c)
            lines.append(f"channel {c} ({name})")
        lines.append(_matrix(k))
        bias_se = "" if b is None or bse is None else f" +- {bse:.2g}"
        lines.append(f"bias        {'none' if b is None else f'{b:.6g}'}{bias_se}")
        if se is not None:
            lines.extend(_stderr_lines(se))
        lines.append(_match_line(m, b))
    lines.append(f"iterations  {r.iterations} ({_stop_text(r, spell)})")
    best = f" (the least any {kh}x{kw} kernel reaches: {r.loss_min:.3g})" if r.loss_min > 0 else ""
    best = "" if r.method == "lbfgs" else best
    lines.append(f"loss        {r.loss:.4g}{best}")
    psnr = "exact" if r.psnr == float("inf") else f"{r.psnr:.2f} dB"
    lines.append(f"PSNR        {psnr}")
    where = {"valid": "valid", "interior": "interior of a 'same' target"}.get(
        r.padding, f"{r.padding} border"
    )
    where = f"conv padding {r.padding}" if r.method == "lbfgs" else where
    lines.append(f"pixels      {r.pixels} fitted ({where}); {r.clipped} clipped left out")
    if comparison is not None:
        lines.append(_compare_line(comparison))
    return "\n".join(lines)


def _stderr_lines(se: np.ndarray) -> list[str]:
    """Each entry's standard error: one line when all are negligible, else a matrix."""
    worst = float(se.max())
    if worst < 1e-9:
        return ["std error   below 1e-9 for every entry (an exact fit)"]
    if not np.isfinite(worst):
        return ["std error   some entries are not determined by the pictures (see the notes)"]
    cells = [[f"{v:.2g}" for v in row] for row in se]
    width = max(len(c) for row in cells for c in row)
    rows = ["  " + "  ".join(c.rjust(width) for c in row) for row in cells]
    return [f"std error   of each entry (largest {worst:.2g}):", *rows]


def _match_line(m: KernelMatch | None, b: float | None) -> str:
    if m is None:
        return "match       no named kernel"
    if m.exact:
        return f"match       {describe_match(m, b)}"
    return f"match       close to {describe_match(m, b)} (relative difference {m.error:.1%})"


def _compare_line(comparison: dict) -> str:
    verdict = "allclose" if comparison["allclose"] else "NOT close"
    if comparison["max_abs_diff"] is None:
        detail = comparison["reason"]
    else:
        detail = f"max difference {comparison['max_abs_diff']:.3g}, atol {comparison['atol']:g}"
    return f"compare     {comparison['name']}: {verdict} ({detail})"


def _stop_text(r: FitResult, spell: Callable[[Param], str]) -> str:
    tol = spell(Param("tol", float(r.tol)))
    if r.method == "lbfgs" and r.stopped != "max_iter":
        if r.stopped == "tol":
            return "converged: to the target's own precision"
        return "converged: no step lowers the loss (a minimum)"
    if r.stopped == "tol":
        return f"converged: loss below {tol}"
    if r.stopped == "minimum":
        return "converged: at the least-squares minimum"
    return f"NOT converged: stopped at {spell(Param('max_iter', r.max_iter))}, loss above {tol}"


def _number(v: float, decimals: int) -> str:
    text = f"{v:.{decimals}f}"
    return "0" + text[2:] if text.startswith("-0") and float(text) == 0 else text


def _matrix(kernel: np.ndarray) -> str:
    """Rows of fixed-point numbers (or exponents, for very large or small kernels)."""
    big = float(np.abs(kernel).max()) if kernel.size else 0.0
    if big == 0 or 1e-3 <= big < 1e5:
        decimals = 5
        cells = [[_number(v, decimals) for v in row] for row in kernel]
    else:
        cells = [[f"{v:.4e}" for v in row] for row in kernel]
    width = max(len(c) for row in cells for c in row)
    return "\n".join("  " + "  ".join(c.rjust(width) for c in row) for row in cells)
