"""JPEG through imagecodecs' libjpeg-turbo, the library Pillow uses, with the settings
Pillow uses: the same pixels from a file and the same bytes for a picture, at about a
third of the cost of importing, opening and encoding with Pillow (a 1024x1024 RGB
picture: 15 ms against 41 ms). imagecodecs is imported only when a JPEG is read or
written here.

How a JPEG was compressed (:class:`Coding`: its quality, estimated from its luma
quantisation table as ImageMagick estimates it, and its chroma subsampling) is read from
its header, so that a JPEG written from it is compressed alike, as ImageMagick does.

Read here: baseline or progressive JPEGs of 8 bits with one or three components and no
EXIF (whose orientation the reader applies and whose tags it keeps: those go to Pillow),
with the ICC profile and the JFIF resolution. Written here: every JPEG, its metadata
segments laid out as Pillow lays them out (JFIF density, EXIF, ICC profile in parts).
Imports no other convtool module.
"""

from __future__ import annotations

import functools
import struct
from typing import Any, NamedTuple

import numpy as np

SOI = b"\xff\xd8"
_ICC_TAG = b"ICC_PROFILE\x00"
_ICC_PART = 65519  # profile bytes a segment holds: 65535 less the length, tag, index, count
_EXIF_MOST = 65533  # bytes an EXIF segment holds
# start-of-frame markers (C4 defines Huffman tables, C8 is reserved, CC arithmetic tables)
_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


# the JPEG standard's luminance quantisation table (Annex K, Table K.1: quality 50), in
# the zigzag order a file stores it in; libjpeg scales it by quality (jpeg_set_quality)
_STD_LUMA = (
    16, 11, 12, 14, 12, 10, 16, 14, 13, 14, 18, 17, 16, 19, 24, 40, 26, 24, 22, 22, 24, 49,
    35, 37, 29, 40, 58, 51, 61, 60, 57, 51, 56, 55, 64, 72, 92, 78, 64, 68, 87, 69, 55, 56,
    80, 109, 81, 87, 95, 98, 103, 104, 103, 62, 77, 113, 121, 112, 100, 120, 92, 101, 103, 99,
)  # fmt: skip
# chroma subsampling by the luma's (horizontal, vertical) sampling factors, the chroma's 1x1
_SUBSAMPLING = {(1, 1): "4:4:4", (2, 1): "4:2:2", (2, 2): "4:2:0", (1, 2): "4:4:0", (4, 1): "4:1:1"}


class Coding(NamedTuple):
    """How a JPEG was compressed: its quality (libjpeg's 1-100 scale, estimated from the
    luma quantisation table; None where there is none) and its chroma subsampling
    ('4:4:4', '4:2:0', ...; None for a grey picture or an unusual layout)."""

    quality: int | None = None
    subsampling: str | None = None


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
    coding: Coding = Coding()


def header(buf: bytes) -> Header | None:
    """What the segments before the first scan say, or None where they cannot be walked
    (not a JPEG, or damaged: Pillow then says what is wrong)."""
    if not buf.startswith(SOI):
        return None
    pos, frame, exif, icc_parts, dpi, luma = 2, None, False, {}, None, None
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
            sampling = body[6 : 6 + 3 * frame[3]]
        elif marker == 0xDB and luma is None:
            luma = _luma_table(body)
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
    coding = Coding(None if luma is None else quality_of(luma), _subsampling(sampling))
    return Header(width, height, components, precision, exif, icc, dpi, ends, coding)


def _luma_table(body: bytes) -> tuple[int, ...] | None:
    """Table 0's 64 entries (the luma's, as libjpeg numbers them) from a DQT segment,
    which may define several tables, 8- or 16-bit; None where it does not define it."""
    pos = 0
    while pos < len(body):
        precision, index = body[pos] >> 4, body[pos] & 15
        size = 128 if precision else 64
        entries = body[pos + 1 : pos + 1 + size]
        if len(entries) != size:
            return None
        if index == 0:
            return struct.unpack(">64H", entries) if precision else tuple(entries)
        pos += 1 + size
    return None


def _subsampling(sampling: bytes) -> str | None:
    """'4:2:0' and the like from a frame's components (id, factors, table each): three
    components sampled alike are '4:4:4'; else the luma's factors name it where the
    chroma's are 1x1. None for grey or another layout."""
    if len(sampling) != 9:
        return None
    luma, blue, red = sampling[1::3]
    if luma == blue == red:
        return "4:4:4"
    if blue != 0x11 or red != 0x11:
        return None
    return _SUBSAMPLING.get((luma >> 4, luma & 15))


def quality_of(table: tuple[int, ...]) -> int | None:
    """The quality (1-100) of a luma quantisation table: the libjpeg quality that makes
    exactly this table where there is one (libjpeg, Pillow, ImageMagick and most programs
    make theirs so), else the one whose table has the nearest sum (a camera's own)."""
    if len(table) != 64:
        return None
    for q in range(100, 0, -1):  # the least scaled table first: most files are of high q
        if _scaled(q) == table:
            return q
    scale = 100.0 * sum(table) / sum(_STD_LUMA)  # libjpeg's scaling, solved for q
    q = (200.0 - scale) / 2.0 if scale <= 100 else 5000.0 / scale
    return int(min(max(round(q), 1), 100))


@functools.lru_cache(maxsize=100)
def _scaled(quality: int) -> tuple[int, ...]:
    """libjpeg's luma table at ``quality`` for a baseline JPEG (jpeg_set_quality)."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return tuple(min(max((v * scale + 50) // 100, 1), 255) for v in _STD_LUMA)


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
    subsampling: str = "4:4:4",
    icc: bytes | None = None,
    dpi: tuple[float, float] | None = None,
    exif: bytes | None = None,
) -> bytes:
    """uint8 (H, W) or (H, W, 3) as a JPEG of ``quality`` and chroma ``subsampling``
    ('4:4:4', '4:2:2', '4:2:0', '4:4:0' or '4:1:1'), with the metadata given; the bytes
    Pillow writes with the same subsampling and metadata."""
    try:
        data = bytes(
            _codecs().jpeg8_encode(
                np.ascontiguousarray(pixels),
                level=quality,
                subsampling=subsampling.replace(":", ""),
            )
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
