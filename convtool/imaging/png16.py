"""16-bit colour PNG, both ways, which Pillow reads and writes only as 8-bit.

:func:`decode` splits the container into one 16-bit grey PNG per channel, which
Pillow decodes exactly; :func:`write` encodes with numpy and zlib. Used by
:mod:`convtool.imaging.read_deep` and :mod:`convtool.imaging.write`; imports no
other convtool module.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from typing import IO

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"

_ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)
_PNG_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type -> samples per pixel


def chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def _passes(width: int, height: int, interlaced: bool) -> list[tuple[int, int]]:
    """(rows, columns) of each non-empty sub-image, in stream order."""
    if not interlaced:
        return [(height, width)]
    passes = []
    for x0, y0, dx, dy in _ADAM7:
        rows, cols = -(-(height - y0) // dy), -(-(width - x0) // dx)
        if rows > 0 and cols > 0:
            passes.append((rows, cols))
    return passes


def decode(
    buf: bytes, decode_grey: Callable[[bytes], np.ndarray]
) -> tuple[list[np.ndarray], bytes | None]:
    """Decode a 16-bit RGB, RGBA or grey+alpha PNG into one uint16 (H, W) plane per channel.

    PNG filters each scanline byte by byte against the bytes one pixel to the left
    and one row up, so every byte position of a pixel is an independent lane: the
    two bytes of each 16-bit channel, pulled out of every scanline with the filter
    byte kept, form exactly the filtered stream of a 16-bit grey PNG, which Pillow
    decodes without loss (``decode_grey``: such a PNG -> uint16 array). Pillow's C
    code thus undoes the filters (all five types, Adam7 interlacing included); only
    the container is handled here.
    """
    pos, ihdr, trns, idat = 8, b"", None, []
    while pos < len(buf):
        if pos + 12 > len(buf):
            raise ValueError("truncated chunk header")
        length, kind = struct.unpack_from(">I4s", buf, pos)
        payload = buf[pos + 8 : pos + 8 + length]
        if pos + 12 + length > len(buf):
            raise ValueError(f"truncated {kind!r} chunk")
        (crc,) = struct.unpack_from(">I", buf, pos + 8 + length)
        if zlib.crc32(kind + payload) & 0xFFFFFFFF != crc:
            raise ValueError(f"bad CRC in {kind!r} chunk")
        if kind == b"IHDR":
            ihdr = payload
        elif kind == b"tRNS":
            trns = payload
        elif kind == b"IDAT":
            idat.append(payload)
        elif kind == b"IEND":
            break
        pos += 12 + length
    width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", ihdr)
    if depth != 16 or ctype not in (2, 4, 6) or interlace > 1:
        raise ValueError("not a 16-bit colour PNG")
    channels = _PNG_CHANNELS[ctype]
    passes = _passes(width, height, bool(interlace))
    expected = sum(rows * (1 + cols * 2 * channels) for rows, cols in passes)
    raw = zlib.decompressobj().decompress(b"".join(idat), expected)
    if len(raw) < expected:
        raise ValueError(f"image data ends early ({len(raw):,} of {expected:,} bytes)")
    header = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, interlace)
    planes = []
    for c in range(channels):  # one channel at a time, to hold one copy of the data at most
        lanes, offset = [], 0
        for rows, cols in passes:
            size = rows * (1 + cols * 2 * channels)
            lines = np.frombuffer(raw, np.uint8, size, offset).reshape(rows, -1)
            offset += size
            samples = lines[:, 1:].reshape(rows, cols, channels, 2)[:, :, c]
            lanes.append(
                np.concatenate([lines[:, :1], samples.reshape(rows, -1)], axis=1).tobytes()
            )
        grey = b"".join(
            [
                SIGNATURE,
                chunk(b"IHDR", header),
                chunk(b"IDAT", zlib.compress(b"".join(lanes), 0)),
                chunk(b"IEND", b""),
            ]
        )
        del lanes
        planes.append(decode_grey(grey))
    return planes, trns


def write(
    f: IO[bytes],
    pixels: np.ndarray,
    compress_level: int,
    chunks: list[tuple[bytes, bytes]] | tuple = (),
) -> None:
    """Write uint16 (H, W) or (H, W, C) as a 16-bit PNG, every row Paeth-filtered;
    ``chunks`` ((type, payload): iCCP, pHYs, eXIf) go before the pixels."""
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    ctype = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    bpp = 2 * channels
    raw = pixels.astype(">u2").reshape(height, width * channels).view(np.uint8)
    f.write(SIGNATURE)
    f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, ctype, 0, 0, 0)))
    for kind, payload in chunks:
        f.write(chunk(kind, payload))
    z = zlib.compressobj(compress_level)
    block = max(1, (1 << 22) // raw.shape[1])  # about 4 MB of rows at a time
    previous = np.zeros((1, raw.shape[1]), np.int16)
    for r0 in range(0, height, block):
        x = raw[r0 : r0 + block].astype(np.int16)
        up = np.concatenate([previous, x[:-1]])
        left = np.zeros_like(x)
        left[:, bpp:] = x[:, :-bpp]
        upleft = np.zeros_like(x)
        upleft[:, bpp:] = up[:, :-bpp]
        p = left + up - upleft
        pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - upleft)
        pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
        lines = np.empty((x.shape[0], x.shape[1] + 1), np.uint8)
        lines[:, 0] = 4  # Paeth
        lines[:, 1:] = (x - pred) & 0xFF
        data = z.compress(lines.tobytes())
        if data:
            f.write(chunk(b"IDAT", data))
        previous = x[-1:]
    f.write(chunk(b"IDAT", z.flush()))
    f.write(chunk(b"IEND", b""))
