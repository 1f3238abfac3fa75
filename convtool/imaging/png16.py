"""16-bit colour PNG, both ways, which Pillow reads and writes only as 8-bit: through
imagecodecs (libpng), imported only when a PNG is read or written here. 8-bit PNGs are
written here too (a fifth faster than Pillow's encoder); they are read by Pillow.

The metadata chunks (iCCP, pHYs, eXIf: :mod:`convtool.imaging.metadata`) are put
right after the header, where PNG wants them, as for every other depth. A ``tRNS``
key colour is returned for the reader to turn into alpha, as Pillow does for 8 bits.
Imports no other convtool module.
"""

from __future__ import annotations

import struct
import zlib
from typing import IO, Any

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IHDR_END = len(SIGNATURE) + 8 + 13 + 4  # signature, then IHDR's length, type, data and CRC


def chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def _codecs() -> Any:
    try:
        import imagecodecs
    except ImportError:
        raise ImportError(
            "16-bit colour PNG needs the imagecodecs package (pip install imagecodecs)"
        ) from None
    return imagecodecs


def _transparent_key(buf: bytes) -> bytes | None:
    """The tRNS chunk's payload (the chunks before the pixels), or None."""
    pos = len(SIGNATURE)
    while pos + 8 <= len(buf):
        length, kind = struct.unpack_from(">I4s", buf, pos)
        if kind == b"tRNS":
            return buf[pos + 8 : pos + 8 + length]
        if kind in (b"IDAT", b"IEND"):
            return None
        pos += 12 + length
    return None


def decode(buf: bytes) -> tuple[np.ndarray, bytes | None]:
    """Decode a 16-bit PNG: uint16 (H, W) or (H, W, C), and its tRNS payload or None.

    Raises ValueError (or imagecodecs' error) for a corrupt or truncated file.
    """
    pixels = _codecs().png_decode(buf)
    if pixels.dtype != np.uint16:
        raise ValueError("not a 16-bit PNG")
    return pixels, _transparent_key(buf)


def write(
    f: IO[bytes],
    pixels: np.ndarray,
    compress_level: int,
    chunks: list[tuple[bytes, bytes]] | tuple = (),
) -> None:
    """Write uint16 (or uint8) (H, W) or (H, W, C) as a 16-bit (8-bit) PNG; ``chunks``
    ((type, payload): iCCP, pHYs, eXIf) go right after the header."""
    dtype = np.uint8 if pixels.dtype == np.uint8 else np.uint16
    data = _codecs().png_encode(np.ascontiguousarray(pixels, dtype), level=compress_level)
    extra = b"".join(chunk(kind, payload) for kind, payload in chunks)
    f.write(memoryview(data)[:_IHDR_END])
    f.write(extra)
    f.write(memoryview(data)[_IHDR_END:])
