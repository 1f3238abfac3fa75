"""Pictures made byte by byte for the imaging tests: an independent PNG encoder and helpers."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image as PILImage

from convtool.imaging import Image

RNG = np.random.default_rng(20240601)


def ints(shape, top=255):
    return RNG.integers(0, top + 1, size=shape)


def png_bytes(im: PILImage.Image, **options) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG", **options)
    return buf.getvalue()


def chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def make_png(width, height, depth, ctype, scanlines: bytes, interlace=0, extra=b"") -> bytes:
    header = struct.pack(">IIBBBBB", width, height, depth, ctype, 0, 0, interlace)
    return b"".join(
        [
            b"\x89PNG\r\n\x1a\n",
            chunk(b"IHDR", header),
            extra,
            chunk(b"IDAT", zlib.compress(scanlines)),
            chunk(b"IEND", b""),
        ]
    )


def filtered(raw: np.ndarray, bpp: int, kinds) -> bytes:
    """PNG-filter (rows, bytes) uint8, one filter type per row: an independent encoder."""
    x = raw.astype(np.int32)
    left = np.zeros_like(x)
    left[:, bpp:] = x[:, :-bpp]
    up = np.zeros_like(x)
    up[1:] = x[:-1]
    upleft = np.zeros_like(x)
    upleft[1:, bpp:] = x[:-1, :-bpp]
    p = left + up - upleft
    pa, pb, pc = abs(p - left), abs(p - up), abs(p - upleft)
    paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
    preds = [np.zeros_like(x), left, up, (left + up) // 2, paeth]
    rows = [
        bytes([k]) + ((x[i] - preds[k][i]) & 0xFF).astype(np.uint8).tobytes()
        for i, k in enumerate(kinds)
    ]
    return b"".join(rows)


ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)


def png16(pixels: np.ndarray, interlace=False) -> bytes:
    """An independent 16-bit PNG encoder: every filter type in turn, Adam7 optionally."""
    h, w = pixels.shape[:2]
    c = 1 if pixels.ndim == 2 else pixels.shape[2]
    ctype = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    subs = [pixels[y0::dy, x0::dx] for x0, y0, dx, dy in ADAM7] if interlace else [pixels]
    out = b""
    for sub in subs:
        if sub.size == 0:
            continue
        raw = sub.astype(">u2").reshape(sub.shape[0], -1).view(np.uint8)
        out += filtered(raw, 2 * c, [i % 5 for i in range(raw.shape[0])])
    return make_png(w, h, 16, ctype, out, interlace=int(interlace))


def full(image: Image) -> np.ndarray:
    """data with alpha appended as the last channel."""
    if image.alpha is None:
        return image.data
    data = image.data if image.data.ndim == 3 else image.data[:, :, None]
    return np.concatenate([data, image.alpha[:, :, None]], axis=2)
