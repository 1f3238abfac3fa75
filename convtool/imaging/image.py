"""The picture a reader returns, and the pixel policy every reader follows.

Pixel policy, stated once: pictures become float32 arrays in [0, 1] (8-bit values
/ 255, 16-bit values / 65535: :data:`convtool.vocab.FULL_SCALE`); ``.npy`` arrays and
float TIFFs are taken as they are (cast to float32, unscaled; NaN and infinities are
kept, the filters decide). A reader asked for samples (``read_image(...,
samples=True)``) may hand over the stored uint8 or uint16 samples instead, which the
filters read by the same policy: the float copy is then made where the filters lay the
picture out, in one pass.
Grey pictures are (H, W), colour ones (H, W, 3). Alpha is split off into
:attr:`Image.alpha` so that filters leave it alone, and
:func:`convtool.imaging.write_image` puts it back as the last channel where the
format has one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convtool import vocab
from convtool.imaging.jpeg import Coding
from convtool.imaging.metadata import Metadata

__all__ = ["Image", "mode_of", "unit_scaled"]


@dataclass(frozen=True, eq=False)
class Image:
    """A picture as read: float32 pixels plus what the file said about them.

    Attributes
    ----------
    data : ndarray
        float32, (H, W) for grey or (H, W, 3) for colour; values in [0, 1] for
        8- and 16-bit pictures, as stored for .npy and float TIFF. Read with
        ``samples=True``: maybe the stored uint8 or uint16 samples.
    alpha : ndarray or None
        float32 (H, W), scaled like ``data``; None when the picture has none.
    bit_depth : int
        8, 16, or 32 (float: .npy and float TIFF).
    mode : str
        'L', 'LA', 'RGB' or 'RGBA': the channels of ``data`` plus ``alpha`` in
        Pillow's names (a palette, CMYK or bilevel picture reads as one of these).
    source : str
        The path as given, '-' for standard input, or a stream's name.
    format : str
        'PNG', 'JPEG', 'TIFF', 'BMP', 'WEBP', 'GIF' or 'NPY'.
    meta : Metadata
        The ICC profile, resolution and EXIF the file holds (none for .npy).
    coding : jpeg.Coding or None
        How a JPEG was compressed (its estimated quality, its chroma subsampling), which
        a JPEG written from it keeps; None for the other formats.
    """

    data: np.ndarray
    alpha: np.ndarray | None
    bit_depth: int
    mode: str
    source: str
    format: str
    meta: Metadata = Metadata()  # noqa: RUF009 (a NamedTuple: one shared empty value is safe)
    coding: Coding | None = None

    @property
    def height(self) -> int:
        return int(self.data.shape[0])

    @property
    def width(self) -> int:
        return int(self.data.shape[1])


def unit_scaled(arr: np.ndarray, bit_depth: int) -> np.ndarray:
    """Integer samples of ``bit_depth`` bits as float32 in [0, 1]; 32-bit floats as they are."""
    out = arr.astype(np.float32)
    if bit_depth != 32:
        out /= np.float32(vocab.FULL_SCALE[f"uint{bit_depth}"])
    return out


def mode_of(data: np.ndarray, alpha: np.ndarray | None) -> str:
    """Pillow's name for the channels of ``data`` plus ``alpha``: 'L', 'LA', 'RGB' or 'RGBA'."""
    base = "L" if data.ndim == 2 else "RGB"
    return base + ("A" if alpha is not None else "")
