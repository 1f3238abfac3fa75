"""What a picture says about itself besides its pixels: the ICC colour profile, the
resolution (dpi) and EXIF, read with the pixels and written back, as ImageMagick keeps
them.

EXIF's orientation tag is reset to 1 (upright) where the reader turned the pixels
upright already (JPEG, ``ImageOps.exif_transpose``): a viewer must not turn them again.
Where the pixels stay as stored, so does the tag.
PNG, JPEG and WebP outputs take all three (WebP has no resolution), TIFF the profile
and the resolution, BMP none. ``--strip`` writes none, as ImageMagick's ``-strip``.
"""

from __future__ import annotations

import contextlib
import struct
import zlib
from typing import Any, NamedTuple

__all__ = ["Metadata", "from_pillow", "pillow_options", "png_chunks", "tiff_options"]

_ORIENTATION = 0x0112


class Metadata(NamedTuple):
    """ICC profile (bytes), resolution (x, y dots per inch) and EXIF (bytes, with the
    orientation reset); None where the picture has none."""

    icc: bytes | None = None
    dpi: tuple[float, float] | None = None
    exif: bytes | None = None

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.icc, self.dpi, self.exif))

    def strided(self, stride: tuple[int, int]) -> Metadata:
        """The metadata of a result sampled every ``stride`` pixels: fewer dots per inch."""
        if self.dpi is None or tuple(stride) == (1, 1):
            return self
        return self._replace(dpi=(self.dpi[0] / stride[1], self.dpi[1] / stride[0]))


def from_pillow(im: Any, upright: bool = False, decoded: bool = True) -> Metadata:
    """The metadata of a picture Pillow opened; ``upright``: the reader turns its pixels
    by the EXIF orientation, which is reset.

    ``decoded=False`` reads only what the header holds: Pillow decodes a PNG to find
    EXIF stored after its pixels, which must not happen before the reader decodes it.
    """
    icc = im.info.get("icc_profile") or None
    dpi = im.info.get("dpi")
    with contextlib.suppress(Exception):  # a malformed resolution is no resolution
        dpi = (float(dpi[0]), float(dpi[1])) if dpi is not None else None
        if not (dpi[0] > 0 and dpi[1] > 0):
            dpi = None
    exif = None
    if not decoded and not im.info.get("exif"):
        return Metadata(icc if isinstance(icc, bytes) else None, dpi, None)
    with contextlib.suppress(Exception):  # broken EXIF is dropped, as a viewer would
        tags = im.getexif()  # Pillow's own, which turning the pixels reads: not changed
        if len(tags):
            exif = tags.tobytes()
            if upright and tags.get(_ORIENTATION, 1) != 1:
                from PIL import Image as PILImage  # Pillow opened the picture already

                copy = PILImage.Exif()
                copy.load(exif)
                copy[_ORIENTATION] = 1
                exif = copy.tobytes()
    return Metadata(icc if isinstance(icc, bytes) else None, dpi, exif)


def pillow_options(meta: Metadata | None, fmt: str) -> dict[str, Any]:
    """Pillow's save options that write ``meta`` in format ``fmt`` ('png', 'jpeg', 'webp')."""
    if not meta or fmt not in ("png", "jpeg", "webp"):
        return {}
    options: dict[str, Any] = {}
    if meta.icc is not None:
        options["icc_profile"] = meta.icc
    if meta.exif is not None:
        options["exif"] = meta.exif
    if meta.dpi is not None and fmt != "webp":
        options["dpi"] = meta.dpi
    return options


def png_chunks(meta: Metadata | None) -> list[tuple[bytes, bytes]]:
    """(type, payload) of the PNG chunks that hold ``meta``: iCCP, pHYs, eXIf."""
    if not meta:
        return []
    chunks = []
    if meta.icc is not None:
        chunks.append((b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(meta.icc)))
    if meta.dpi is not None:
        x, y = (round(d / 0.0254) for d in meta.dpi)  # pixels per metre
        chunks.append((b"pHYs", struct.pack(">IIB", x, y, 1)))
    if meta.exif is not None:
        exif = meta.exif[6:] if meta.exif.startswith(b"Exif\x00\x00") else meta.exif
        chunks.append((b"eXIf", exif))
    return chunks


def tiff_options(meta: Metadata | None) -> dict[str, Any]:
    """tifffile's imwrite options that hold ``meta``'s profile and resolution."""
    if not meta:
        return {}
    options: dict[str, Any] = {}
    if meta.dpi is not None:
        options["resolution"] = meta.dpi
        options["resolutionunit"] = "INCH"
    if meta.icc is not None:
        options["iccprofile"] = meta.icc
    return options
