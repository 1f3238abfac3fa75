"""Lossy targets (JPEG, lossy WebP): what the file kept, and a fit that allows for clipping.

The pairs people mostly have are a picture and a filtered copy saved as JPEG: clipped to
8 bits by the program that filtered it, then compressed, often with the colour (chroma)
kept at half resolution (4:2:0). Three things then hold:

- JPEG keeps the luma, 0.299 R + 0.587 G + 0.114 B, at full resolution, and a filter
  applied to each channel is applied to the luma too (the luma is linear in the
  channels): colour pairs are fitted on the luma when chroma was subsampled.
- Where a filtered channel fell outside [0, 1] it was clipped, and compression smears
  the clipped values (ringing) so that they no longer sit exactly at 0 or 1. A target
  pixel near 0 or 1, or one the current kernel predicts beyond [0, 1] in any channel,
  is consistent with any value beyond: it is censored (left out), and the fit is
  repeated with the censoring the new kernel predicts until it settles.
- What is left is compression noise, which sets how far the kernel can be trusted.

The file's own header says how it was compressed (:func:`inspect_file`): no decoder is
needed for that, only its first bytes.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import numpy as np

# a target value this close to 0 or 1 may be a clipped one that compression moved
NEAR_CLIP = 0.02
# rounds of refitting with the censoring the last kernel predicts
CENSOR_ROUNDS = 4
HEADER_BYTES = 1 << 16


class Lossy(NamedTuple):
    """How a target was compressed: the format, a quality estimate, chroma subsampling."""

    kind: str  # 'JPEG' or 'WebP'
    quality: int | None  # estimated from the quantisation tables (JPEG), if read
    subsampled: bool  # chroma kept at lower resolution than luma

    def describe(self) -> str:
        parts = [f"quality about {self.quality}"] if self.quality else []
        parts.append("chroma subsampled" if self.subsampled else "full-resolution chroma")
        return f"a lossy {self.kind} ({', '.join(parts)})"


def inspect_file(path: str | os.PathLike[str]) -> Lossy | None:
    """The compression of the picture file at ``path``, or None if it is not lossy.

    JPEG: the frame header's sampling factors and the luminance quantisation table;
    WebP: a 'VP8 ' (lossy) chunk, which always keeps chroma at half resolution.
    A file that cannot be read, or a stream ('-'), gives None.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER_BYTES)
    except OSError:
        return None
    if head[:2] == b"\xff\xd8":
        return _jpeg(head)
    webp = head[:4] == b"RIFF" and head[8:12] == b"WEBP"
    chunk = head[12:16]
    if webp and (chunk == b"VP8 " or (chunk == b"VP8X" and b"VP8 " in head[30:])):
        return Lossy("WebP", None, True)  # VP8 always keeps chroma at half resolution
    return None


def _jpeg(head: bytes) -> Lossy:
    """A JPEG's quality and chroma subsampling, from the segments before its first scan
    (:func:`convtool.imaging.jpeg.header`); unknown sampling is taken as the common 4:2:0."""
    from convtool.imaging import jpeg

    found = jpeg.header(head)
    if found is None:
        return Lossy("JPEG", None, True)
    subsampled = found.components >= 3 and found.coding.subsampling != "4:4:4"
    return Lossy("JPEG", found.coding.quality, subsampled)


def censored(
    planes: np.ndarray | None,
    target_planes: np.ndarray,
    kernel: np.ndarray | None,
    geometry: Any,
    border: str,
) -> np.ndarray:
    """Target pixels to leave out, (H', W'): near 0 or 1 in any channel of the target,
    or predicted beyond [NEAR_CLIP, 1 - NEAR_CLIP] in any channel by ``kernel``.

    ``planes`` (C, H, W) are the input's channels as the target's maker filtered them,
    ``target_planes`` (C, H', W') the target's, ``geometry`` the fit's (size, stride,
    padding); the border's values matter only for pixels a border fit includes.
    Without a kernel, only the target tells.
    """
    out = ((target_planes <= NEAR_CLIP) | (target_planes >= 1 - NEAR_CLIP)).any(axis=0)
    if kernel is None:
        return out
    from convtool import vocab
    from convtool.ops import conv2d

    t, b, l, r = geometry.pads
    mode = "constant" if border in ("interior", "zero") else vocab.pad_mode(border)
    padded = np.pad(planes, ((0, 0), (t, b), (l, r)), mode=mode)
    kernels = kernel if kernel.ndim == 3 else [kernel] * len(planes)
    for plane, k in zip(padded, kernels, strict=True):
        z = conv2d(plane, k, stride=geometry.stride)[: out.shape[0], : out.shape[1]]
        out |= (z <= NEAR_CLIP) | (z >= 1 - NEAR_CLIP)
    return out


# how close kernels came back from pairs made by OpenCV, ImageMagick and pillow (3x3 and
# 5x5 sharpen, blur, random; RGB, clipped, 4:2:0), by JPEG quality: (quality, within)
MEASURED = ((90, 0.02), (75, 0.05))


def cost_note(info: Lossy, censored_pixels: int, pixels: int) -> str:
    """What compression costs the fit: pixels censored, and the accuracy to expect."""
    text = (
        f"{censored_pixels:,} of {pixels:,} target pixels censored (at or predicted beyond 0 "
        "or 1: clipped); "
    )
    within = next((w for q, w in MEASURED if info.quality and info.quality >= q), None)
    if within is None:
        return text + (
            "compression noise limits the kernel more than the standard errors say "
            "(they take pixel errors as independent; a JPEG's are not)"
        )
    return text + (
        f"at this quality, kernels of test pairs came back within {within} per entry: "
        "the standard errors, which take pixel errors as independent, understate it"
    )
