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
import warnings
from collections.abc import Iterator
from dataclasses import replace
from typing import IO

import numpy as np
from PIL import Image as PILImage
from PIL import ImageOps

from convtool.imaging.errors import ImageReadError, label, one_line
from convtool.imaging.formats import (
    FORMAT_NAMES,
    PIL_FORMATS,
    PNG_SIGNATURE,
    TIFF_MAGICS,
    claimed_format,
)
from convtool.imaging.image import Image, mode_of, unit_scaled
from convtool.imaging.metadata import from_pillow
from convtool.imaging.read_deep import read_png, read_tiff
from convtool.imaging.source import check_pixel_count

__all__ = [
    "arrays_from_pillow",
    "header_shape",
    "libtiff_muted",
    "must_lift",
    "open_pillow",
    "pillow_downconverts",
    "pillow_limit_lifted",
    "read_with_pillow",
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


def read_with_pillow(buf: bytes, source: str, max_pixels: int | None) -> Image:
    """Read any picture Pillow opens (see :func:`convtool.imaging.read_image`)."""
    name = label(source)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
        im = open_pillow(buf, name)
        if im is None:
            return read_tiff(buf, source, max_pixels)
        fmt = "JPEG" if im.format == "MPO" else str(im.format)
        meta = from_pillow(im, upright=fmt == "JPEG", decoded=fmt == "JPEG")
        try:
            check_pixel_count(*im.size, max_pixels, name)
            if fmt == "PNG" and buf[24] == 16 and buf[25] in (2, 4, 6):  # 16-bit colour, EXIF
                return replace(read_png(buf, source, max_pixels), meta=meta)
            if fmt == "TIFF" and pillow_downconverts(im):
                return replace(read_tiff(buf, source, max_pixels), meta=meta)
            with pillow_limit_lifted(must_lift(max_pixels)), libtiff_muted(fmt == "TIFF"):
                im.load()  # decode everything now, so that truncation shows here
            if fmt == "JPEG":
                with contextlib.suppress(Exception):  # broken EXIF: keep the stored orientation
                    im = ImageOps.exif_transpose(im)
            data, alpha, bit_depth = arrays_from_pillow(im, name)
        except ImageReadError:
            raise
        except MemoryError:
            w, h = im.size
            raise ImageReadError(f"cannot read {name}: out of memory decoding {w}x{h}") from None
        except Exception as e:
            raise ImageReadError(
                f"cannot read {name}: truncated or corrupt {fmt} file ({one_line(e)})"
            ) from e
    if meta.exif is None and fmt != "JPEG":  # PNG's eXIf may follow the pixels
        meta = meta._replace(exif=from_pillow(im).exif)
    return Image(data, alpha, bit_depth, mode_of(data, alpha), source, fmt, meta)


# Pillow modes read as one grey plane (alpha apart); the others give three colour planes
_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


def header_shape(f: IO[bytes]) -> tuple[str, tuple[int, int, int]]:
    """The format and (channels, height, width) of the picture Pillow opens from ``f``, as
    it is read (upright); raises what Pillow raises where the header does not tell."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
        im = PILImage.open(f, formats=PIL_FORMATS)
    width, height = im.size
    fmt = "JPEG" if im.format == "MPO" else str(im.format)
    if fmt == "JPEG" and im.getexif().get(0x0112, 1) in (5, 6, 7, 8):
        width, height = height, width  # read upright: a quarter turn
    return fmt, (1 if im.mode in _GREY_MODES else 3, height, width)
