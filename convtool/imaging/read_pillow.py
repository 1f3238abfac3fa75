"""Pictures through Pillow: opening, its size limit, decoding quietly, modes to arrays.

Pillow reads PNG, JPEG, TIFF, BMP, WebP and GIF; its own size check is replaced
by ours (:func:`convtool.imaging.source.check_pixel_count`), and libtiff's
messages on stderr are muted while it decodes. What Pillow reads down to 8 bits
goes to :mod:`convtool.imaging.read_deep` instead.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import sys
import threading
from collections.abc import Iterator

import numpy as np
from PIL import Image as PILImage

from convtool.imaging.errors import ImageReadError, one_line
from convtool.imaging.formats import (
    FORMAT_NAMES,
    PIL_FORMATS,
    PNG_SIGNATURE,
    TIFF_MAGICS,
    claimed_format,
)
from convtool.imaging.image import unit_scaled
from convtool.imaging.source import check_pixel_count

__all__ = [
    "arrays_from_pillow",
    "libtiff_muted",
    "must_lift",
    "open_pillow",
    "pillow_downconverts",
    "pillow_limit_lifted",
]


_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def libtiff_muted(mute: bool = True) -> Iterator[None]:
    """Send file descriptor 2 to the null device while libtiff decodes.

    libtiff, which Pillow decodes compressed TIFFs with, prints its errors on the
    process's stderr itself ("ZIPDecode: Decoding error ...") before Pillow raises;
    the ImageReadError says it once. Other threads' stderr output during the decode
    is lost too, so the window is one decode, and decodes that mute take turns.
    """
    if not mute:
        yield
        return
    with _STDERR_LOCK:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no stderr to mute
            yield
            return
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(null, 2)
            finally:
                os.close(null)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


_PILLOW_LIMIT_LOCK = threading.Lock()


@contextlib.contextmanager
def pillow_limit_lifted(lift: bool = True) -> Iterator[None]:
    """Switch off Pillow's own size check (ours replaces it) while the lock is held.

    Only used when Pillow's check would refuse a picture our limit allows; other
    threads that open pictures in that window skip Pillow's check too.
    """
    if not lift:
        yield
        return
    with _PILLOW_LIMIT_LOCK:
        saved = PILImage.MAX_IMAGE_PIXELS
        PILImage.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            PILImage.MAX_IMAGE_PIXELS = saved


def must_lift(max_pixels: int | None) -> bool:
    """Whether Pillow's hard limit (2x MAX_IMAGE_PIXELS) is stricter than ours."""
    pil = PILImage.MAX_IMAGE_PIXELS
    return pil is not None and (max_pixels is None or max_pixels > 2 * pil)


def open_pillow(buf: bytes, name: str) -> PILImage.Image | None:
    """Open (header only); None for a TIFF that Pillow cannot take (tifffile may)."""
    fp = io.BytesIO(buf)
    try:
        try:
            return PILImage.open(fp, formats=PIL_FORMATS)
        except PILImage.DecompressionBombError:
            # Pillow's hard limit: reopen without it to learn the size and apply ours
            fp.seek(0)
            with pillow_limit_lifted():
                return PILImage.open(fp, formats=PIL_FORMATS)
    except PILImage.UnidentifiedImageError:
        if buf.startswith(TIFF_MAGICS):
            return None
        if buf.startswith(PNG_SIGNATURE) and buf[12:16] == b"IHDR" and len(buf) >= 24:
            check_pixel_count(*struct.unpack_from(">II", buf, 16), None, name)  # Pillow refuses 0x0
        kind = claimed_format(buf)
        if kind is not None:
            raise ImageReadError(
                f"cannot read {name}: corrupt {kind} file (its header cannot be parsed)"
            ) from None
        raise ImageReadError(
            f"cannot read {name}: not a picture Pillow can read as {FORMAT_NAMES}"
        ) from None
    except MemoryError:
        raise ImageReadError(f"cannot read {name}: out of memory reading the header") from None
    except Exception as e:  # a plugin's parser on hostile bytes may raise anything
        raise ImageReadError(f"cannot read {name}: corrupt picture header ({one_line(e)})") from e


def pillow_downconverts(im: PILImage.Image) -> bool:
    """Pillow reads colour TIFFs with more than 8 bits per sample down to 8 bits."""
    bits = im.tag_v2.get(258, (8,))  # BitsPerSample
    bits = bits if isinstance(bits, tuple) else (bits,)
    return (
        im.mode not in ("1", "L", "P", "I", "F") and not im.mode.startswith("I;") and max(bits) > 8
    )


def arrays_from_pillow(im: PILImage.Image, name: str) -> tuple[np.ndarray, np.ndarray | None, int]:
    mode = im.mode
    if mode == "1":
        im = im.convert("L")
    elif mode in ("P", "PA"):
        see_through = "transparency" in im.info or getattr(im.palette, "mode", "") == "RGBA"
        im = im.convert("RGBA" if mode == "PA" or see_through else "RGB")
    elif mode in ("CMYK", "YCbCr", "RGBX"):
        im = im.convert("RGB")
    elif mode in ("RGBa", "La"):
        im = im.convert(mode[0:-1] + "A")
    mode = im.mode
    arr = np.asarray(im)
    if mode in ("L", "LA", "RGB", "RGBA"):
        bit_depth = 8
    elif mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        bit_depth = 16
    elif mode == "I":
        if arr.min() < 0 or arr.max() > 65535:
            raise ImageReadError(
                f"cannot read {name}: 32-bit integer picture with values outside 0..65535"
            )
        bit_depth = 16
    elif mode == "F":
        bit_depth = 32
    else:
        raise ImageReadError(f"cannot read {name}: unsupported picture mode {mode!r}")
    alpha = None
    if mode in ("LA", "RGBA"):
        arr, alpha = arr[..., :-1], arr[..., -1]
        arr = arr[..., 0] if mode == "LA" else arr
    elif "transparency" in im.info and mode != "F":
        key = im.info["transparency"]  # a tRNS key colour: that colour is see-through
        if isinstance(key, int) and arr.ndim == 2:
            alpha = (arr != key).astype(np.uint8) * 255
        elif isinstance(key, tuple) and arr.ndim == 3 and len(key) == arr.shape[2]:
            alpha = (arr != np.array(key)).any(axis=2).astype(np.uint8) * 255
        if alpha is not None and bit_depth == 16:
            alpha = alpha.astype(np.uint16) * 257
    data = unit_scaled(arr, bit_depth)
    return data, None if alpha is None else unit_scaled(alpha, bit_depth), bit_depth
