"""What a fit gives back: :class:`FitResult`, the kernel and how the fit went."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class FitResult:
    """A fitted kernel and how the fit went.

    ``kernel`` is (kH, kW), or (C, kH, kW) with ``per_channel``; ``bias`` is None when no
    bias was fitted, a float, or a (C,) array with ``per_channel``. ``loss`` is the
    chapter's loss at the kernel returned, ``loss_min`` the smallest loss any kernel of
    this size reaches (above 0 when the target has noise), ``psnr`` the reconstruction's
    PSNR in dB for pixel values in [0, 1]. ``history`` holds the loss checked before
    each update, then the final loss. ``stderr`` (like ``kernel``) and ``bias_stderr``
    are each entry's standard error, from the Gram matrix and the residual (inf where the
    pictures do not pin an entry down). ``stopped`` is 'tol' (loss below ``tol``),
    'minimum' (the least-squares minimum reached, to rounding) or 'max_iter'.
    """

    kernel: np.ndarray
    bias: float | np.ndarray | None
    method: str
    lr: float | None
    iterations: int
    loss: float
    converged: bool
    stopped: str
    tol: float
    max_iter: int
    seed: int | None
    loss_min: float
    psnr: float
    pixels: int
    clipped: int
    padding: str
    stride: tuple[int, int]
    size_from: str  # 'shapes', 'given' or 'detected'
    rank: int
    unknowns: int
    eigenvalues: tuple[float, float]  # the Gram matrix's smallest (kept) and largest
    history: np.ndarray = field(repr=False)
    notes: tuple[str, ...] = ()
    stderr: np.ndarray | None = field(default=None, repr=False)  # each entry's, as kernel
    bias_stderr: float | np.ndarray | None = None

    @property
    def size(self) -> tuple[int, int]:
        return int(self.kernel.shape[-2]), int(self.kernel.shape[-1])

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready values (infinite PSNR becomes None)."""
        bias = self.bias
        return {
            "kernel": self.kernel.tolist(),
            "bias": bias.tolist() if isinstance(bias, np.ndarray) else bias,
            "iterations": self.iterations,
            "loss": self.loss,
            "converged": self.converged,
            "stopped": self.stopped,
            "method": self.method,
            "lr": self.lr,
            "tol": self.tol,
            "max_iter": self.max_iter,
            "seed": self.seed,
            "loss_min": self.loss_min,
            "psnr": self.psnr if math.isfinite(self.psnr) else None,
            "size": list(self.size),
            "stride": list(self.stride),
            "padding": self.padding,
            "size_from": self.size_from,
            "pixels": self.pixels,
            "clipped": self.clipped,
            "rank": self.rank,
            "unknowns": self.unknowns,
            "eigenvalues": _finite(list(self.eigenvalues)),
            "notes": list(self.notes),
            "stderr": None if self.stderr is None else _finite(self.stderr.tolist()),
            "bias_stderr": _finite(
                self.bias_stderr.tolist()
                if isinstance(self.bias_stderr, np.ndarray)
                else self.bias_stderr
            ),
        }

    def conv_kernel(self) -> np.ndarray:
        """The kernel as ``convtool apply`` takes it: (kH, kW), or per-channel kernels as a
        block-diagonal (C, C, kH, kW) one (output channel c sees input channel c only)."""
        if self.kernel.ndim == 2:
            return self.kernel
        c = self.kernel.shape[0]
        full = np.zeros((c, c, *self.kernel.shape[1:]))
        for i in range(c):
            full[i, i] = self.kernel[i]
        return full


def _finite(value: Any) -> Any:
    """Nested lists of floats with infinities as None (JSON has no infinity)."""
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value if value is None or math.isfinite(value) else None
