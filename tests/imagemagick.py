"""ImageMagick itself, for the parity tests: its ``convert`` (6.9, as Debian and Ubuntu ship
it, or ``magick`` 7), found once; the tests that need it say so plainly when it is missing."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

CONVERT = shutil.which("convert") or shutil.which("magick")
MISSING = (
    "ImageMagick is not installed (no 'convert' or 'magick' on PATH): the ImageMagick parity "
    "tests COULD NOT RUN; install it (apt-get install imagemagick) to run them"
)
needs_imagemagick = pytest.mark.skipif(CONVERT is None, reason=MISSING)


def convert(*args: str) -> subprocess.CompletedProcess:
    """Run ImageMagick's convert with ``args``; its output, checked."""
    return subprocess.run([CONVERT, *args], capture_output=True, text=True, check=True)


def shown_kernel(spec: str) -> np.ndarray:
    """The kernel ImageMagick builds for ``spec`` (morphology:showKernel), zero-padded about
    its origin so that the origin is the centre, as convtool's kernels are."""
    (kernel,) = shown_kernels(spec)
    return kernel


def shown_kernels(spec: str) -> list[np.ndarray]:
    """Every kernel of ImageMagick's list for ``spec``, as :func:`shown_kernel`."""
    show = ["-define", "morphology:showKernel=1", "-morphology", "Convolve", spec]
    out = subprocess.run(
        [CONVERT, "xc:black", *show, "null:"], capture_output=True, text=True, check=True
    ).stderr
    return [_centred(block) for block in re.split(r"(?m)^(?=Kernel)", out) if block.strip()]


def _centred(out: str) -> np.ndarray:
    w, h, x, y = map(int, re.search(r"of size (\d+)x(\d+)([+-]\d+)([+-]\d+)", out).groups())
    lines = [line for line in out.splitlines() if re.match(r"\s*\d+:", line)]
    rows = [line.split(":", 1)[1].split() for line in lines]
    k = np.array([[float(v) for v in row] for row in rows])
    assert k.shape == (h, w), out
    big_h, big_w = 2 * max(y, h - 1 - y) + 1, 2 * max(x, w - 1 - x) + 1
    centred = np.zeros((big_h, big_w))
    top, left = (big_h - 1) // 2 - y, (big_w - 1) // 2 - x
    centred[top : top + h, left : left + w] = k
    return centred
