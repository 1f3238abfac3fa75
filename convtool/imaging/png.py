"""PNG through imagecodecs, both ways, for every PNG that is not a palette or fewer than
8 bits a sample: the fastest route measured here, and the only one for 16-bit colour,
which Pillow reads and writes only as 8-bit. imagecodecs is imported only when a PNG is
read or written here. The other PNGs (palette, 1, 2 or 4 bits, EXIF) go to Pillow.

Writing: rows filtered by ``Up`` (each byte minus the one above it) and deflated by
libdeflate, at ``level`` 0-5 (the default 1: a 1024x1024 picture in about a third of
libpng's time at its level 1, for a file within a few percent of it); levels 6-9 go
through libpng, which tries every filter on each row, as ImageMagick and Pillow do, for
the smallest file at several times the cost.

The metadata chunks (iCCP, pHYs, eXIf: :mod:`convtool.imaging.metadata`) are put right
after the header, where PNG wants them. Imports no other convtool module.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from typing import IO, Any, NamedTuple

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IHDR_END = len(SIGNATURE) + 8 + 13 + 4  # signature, then IHDR's length, type, data and CRC
_FAST_LEVELS = range(6)  # levels written by Up + libdeflate; 6-9 by libpng
_IDAT_MOST = 1 << 30  # bytes a chunk (PNG's limit: 2**31 - 1)
_COLOUR_SAMPLES = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type -> samples a pixel (palette apart)


class Header(NamedTuple):
    width: int
    height: int
    bit_depth: int
    colour_type: int  # 0 grey, 2 RGB, 3 palette, 4 grey + alpha, 6 RGB + alpha


def chunk(kind: bytes, payload: bytes | memoryview) -> bytes:
    crc = zlib.crc32(payload, zlib.crc32(kind))
    return b"".join((struct.pack(">I", len(payload)), kind, payload, struct.pack(">I", crc)))


def header(buf: bytes) -> Header | None:
    """The IHDR of a PNG's bytes, or None for anything else."""
    if not buf.startswith(SIGNATURE) or buf[12:16] != b"IHDR" or len(buf) < _IHDR_END:
        return None
    return Header(*struct.unpack_from(">IIBB", buf, 16))


def chunks(buf: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(type, payload) of each chunk after the header; IDAT's payload left empty."""
    pos = _IHDR_END
    while pos + 8 <= len(buf):
        length, kind = struct.unpack_from(">I4s", buf, pos)
        yield kind, b"" if kind == b"IDAT" else buf[pos + 8 : pos + 8 + length]
        if kind == b"IEND":
            return
        pos += 12 + length


def decodable(buf: bytes) -> bool:
    """True for a PNG imagecodecs reads exactly as the picture is: 8 or 16 bits, no
    palette, and no EXIF (whose tags Pillow's reader keeps)."""
    head = header(buf)
    if head is None or head.bit_depth not in (8, 16) or head.colour_type not in _COLOUR_SAMPLES:
        return False
    return all(kind != b"eXIf" for kind, _ in chunks(buf))


def _codecs() -> Any:
    try:
        import imagecodecs
    except ImportError:
        raise ImportError(
            "16-bit colour PNG needs the imagecodecs package (pip install imagecodecs)"
        ) from None
    return imagecodecs


def decode(buf: bytes) -> tuple[np.ndarray, bytes | None]:
    """Decode a PNG: uint8 or uint16 (H, W) or (H, W, C), and its tRNS payload or None.

    Raises ValueError (or imagecodecs' error) for a corrupt or truncated file.
    """
    pixels = _codecs().png_decode(buf)
    if pixels.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"unsupported PNG sample type {pixels.dtype}")
    trns = next((payload for kind, payload in chunks(buf) if kind == b"tRNS"), None)
    return pixels, trns


def profile_and_dpi(buf: bytes) -> tuple[bytes | None, tuple[float, float] | None]:
    """The ICC profile (iCCP) and the resolution (pHYs in pixels a metre, as dots an
    inch), read as Pillow reads them; None where absent or unreadable."""
    icc = dpi = None
    for kind, payload in chunks(buf):
        if kind == b"iCCP" and icc is None:
            name_end = payload.find(b"\x00")
            if name_end > 0 and payload[name_end + 1 : name_end + 2] == b"\x00":
                try:
                    icc = zlib.decompress(payload[name_end + 2 :]) or None
                except zlib.error:
                    icc = None
        elif kind == b"pHYs" and len(payload) == 9 and payload[8] == 1:
            x, y = struct.unpack_from(">II", payload)
            dpi = (x * 0.0254, y * 0.0254) if x > 0 and y > 0 else None
    return icc, dpi


def write(
    f: IO[bytes],
    pixels: np.ndarray,
    compress_level: int,
    extra_chunks: list[tuple[bytes, bytes]] | tuple = (),
) -> None:
    """Write uint8 or uint16 (H, W) or (H, W, C) as an 8- or 16-bit PNG; ``extra_chunks``
    ((type, payload): iCCP, pHYs, eXIf) go right after the header."""
    codecs = _codecs()
    pixels = np.ascontiguousarray(pixels, np.uint8 if pixels.dtype == np.uint8 else np.uint16)
    extra = b"".join(chunk(kind, payload) for kind, payload in extra_chunks)
    try:
        if compress_level in _FAST_LEVELS:
            data = _encode_up(codecs, pixels, compress_level)
        else:
            data = codecs.png_encode(pixels, level=compress_level)
            if compress_level == 9:  # the smallest file: neither route always wins
                data = min(data, _encode_up(codecs, pixels, 12), key=len)
    except RuntimeError as e:  # imagecodecs' errors: what libpng or libdeflate refuses
        raise ValueError(str(e)) from None
    f.write(memoryview(data)[:_IHDR_END])
    f.write(extra)
    f.write(memoryview(data)[_IHDR_END:])


def _encode_up(codecs: Any, pixels: np.ndarray, level: int) -> bytes:
    """A PNG of ``pixels`` without metadata: rows filtered by Up, deflated by libdeflate
    at ``level`` (0-12)."""
    height, width = pixels.shape[:2]
    samples = 1 if pixels.ndim == 2 else pixels.shape[2]
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[samples]
    depth = pixels.dtype.itemsize * 8
    head = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    idat = memoryview(codecs.deflate_encode(_up_filtered(pixels), level=level))
    parts = [chunk(b"IDAT", idat[at : at + _IDAT_MOST]) for at in range(0, len(idat), _IDAT_MOST)]
    return b"".join([SIGNATURE, chunk(b"IHDR", head), *parts, chunk(b"IEND", b"")])


def _up_filtered(pixels: np.ndarray) -> np.ndarray:
    """The rows as PNG stores them with filter type 2 (Up): each byte less the byte above
    (big-endian samples), each row led by its filter type."""
    rows = pixels.astype(pixels.dtype.newbyteorder(">"), copy=False).reshape(len(pixels), -1)
    rows = rows.view(np.uint8)
    out = np.empty((rows.shape[0], rows.shape[1] + 1), np.uint8)
    out[:, 0] = 2
    out[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=out[1:, 1:])
    return out
