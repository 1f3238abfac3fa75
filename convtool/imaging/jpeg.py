"""JPEG through imagecodecs' libjpeg-turbo, the library Pillow uses, with the settings
Pillow uses: the same pixels from a file and the same bytes for a picture, at about a
third of the cost of importing, opening and encoding with Pillow (a 1024x1024 RGB
picture: 15 ms against 41 ms). imagecodecs is imported only when a JPEG is read or
written here.

Read here: baseline or progressive JPEGs of 8 bits with one or three components and no
EXIF (whose orientation the reader applies and whose tags it keeps: those go to Pillow),
with the ICC profile and the JFIF resolution. Written here: every JPEG, its metadata
segments laid out as Pillow lays them out (JFIF density, EXIF, ICC profile in parts).
Imports no other convtool module.
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

import numpy as np

SOI = b"\xff\xd8"
_ICC_TAG = b"ICC_PROFILE\x00"
_ICC_PART = 65519  # profile bytes a segment holds: 65535 less the length, tag, index, count
_EXIF_MOST = 65533  # bytes an EXIF segment holds
# start-of-frame markers (C4 defines Huffman tables, C8 is reserved, CC arithmetic tables)
_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


class Header(NamedTuple):
    width: int
    height: int
    components: int
    precision: int
    exif: bool
    icc: bytes | None
    dpi: tuple[float, float] | None
    ends: bool  # an end-of-image marker follows the first scan: libjpeg decodes a file cut
    # short without an error (grey rows), so those go to Pillow, which says it is truncated


def header(buf: bytes) -> Header | None:
    """What the segments before the first scan say, or None where they cannot be walked
    (not a JPEG, or damaged: Pillow then says what is wrong)."""
    if not buf.startswith(SOI):
        return None
    pos, frame, exif, icc_parts, dpi = 2, None, False, {}, None
    while pos + 4 <= len(buf):
        if buf[pos] != 0xFF:
            return None
        marker = buf[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", buf, pos + 2)
        body = buf[pos + 4 : pos + 2 + length]
        if length < 2 or len(body) != length - 2:
            return None
        if marker == 0xDA:  # the first scan: the header is over (within scans, 0xFF is
            break  # followed by 0 or a restart marker: the end marker is found by its bytes
        if marker in _FRAMES and len(body) >= 6:
            frame = struct.unpack_from(">BHHB", body)
        elif marker == 0xE0 and body.startswith(b"JFIF\x00") and len(body) >= 12:
            unit, x, y = struct.unpack_from(">BHH", body, 7)
            dpi = (float(x), float(y)) if unit == 1 and x > 0 and y > 0 else None  # as Pillow
        elif marker == 0xE1 and body.startswith(b"Exif\x00\x00"):
            exif = True
        elif marker == 0xE2 and body.startswith(_ICC_TAG) and len(body) >= 14:
            icc_parts[body[12]] = body[14:]
        pos += 2 + length
    else:
        return None
    if frame is None:
        return None
    precision, height, width, components = frame
    icc = b"".join(icc_parts[k] for k in sorted(icc_parts)) or None
    ends = buf.find(b"\xff\xd9", pos) >= 0
    return Header(width, height, components, precision, exif, icc, dpi, ends)


def plain(head: Header | None) -> bool:
    """True for a JPEG of 8 bits, grey or colour, read as stored (no EXIF orientation):
    its header tells the picture's shape."""
    return (
        head is not None
        and head.precision == 8
        and head.components in (1, 3)
        and head.width > 0
        and head.height > 0
        and not head.exif
    )


def decodable(head: Header | None) -> bool:
    """True for a JPEG read here exactly as Pillow reads it (see the module's note): a
    :func:`plain` one, whole."""
    return plain(head) and head is not None and head.ends


def _codecs() -> Any:
    import imagecodecs

    return imagecodecs


def decode(buf: bytes) -> np.ndarray:
    """uint8 (H, W) or (H, W, 3); raises imagecodecs' error for a damaged file."""
    return _codecs().jpeg8_decode(buf)


def encode(
    pixels: np.ndarray,
    quality: int,
    *,
    icc: bytes | None = None,
    dpi: tuple[float, float] | None = None,
    exif: bytes | None = None,
) -> bytes:
    """uint8 (H, W) or (H, W, 3) as a 4:4:4 JPEG of ``quality``, with the metadata given;
    the bytes Pillow writes with ``subsampling=0`` and the same metadata."""
    try:
        data = bytes(
            _codecs().jpeg8_encode(np.ascontiguousarray(pixels), level=quality, subsampling="444")
        )
    except RuntimeError as e:  # imagecodecs' Jpeg8Error: what libjpeg refuses (a size)
        raise ValueError(str(e)) from None
    if not data.startswith(SOI + b"\xff\xe0\x00\x10JFIF\x00"):
        raise ValueError("the JPEG encoder wrote no JFIF header")
    jfif = data[2:20]
    if dpi is not None:
        x, y = (min(65535, max(1, round(d))) for d in dpi)
        jfif = jfif[:11] + struct.pack(">BHH", 1, x, y) + jfif[16:]
    segments = [jfif]
    if exif is not None:
        if len(exif) > _EXIF_MOST:
            raise ValueError("EXIF data is too long")
        segments.append(_segment(0xE1, exif))
    if icc:
        parts = [icc[at : at + _ICC_PART] for at in range(0, len(icc), _ICC_PART)]
        if len(parts) > 255:
            raise ValueError("the ICC profile is too long for a JPEG")
        segments += [
            _segment(0xE2, _ICC_TAG + bytes([i, len(parts)]) + part)
            for i, part in enumerate(parts, 1)
        ]
    return b"".join([SOI, *segments, data[20:]])


def _segment(marker: int, body: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(body) + 2) + body
