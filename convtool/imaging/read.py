"""Read a picture or a .npy array: the content decides which decoder reads it.

Bytes with the NumPy header are an array (:mod:`convtool.imaging.arrays`); any
other picture is opened by Pillow, which decodes it unless it would read it down
to 8 bits (16-bit colour PNG and TIFF) or cannot read it (float colour TIFF):
those go to :mod:`convtool.imaging.read_deep`.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import replace
from typing import IO

import numpy as np
from PIL import Image as PILImage
from PIL import ImageOps

from convtool.imaging.arrays import image_from_npy, parse_npy
from convtool.imaging.errors import ImageReadError, label, one_line, quiet_decoders
from convtool.imaging.formats import NPY_MAGIC, PIL_FORMATS
from convtool.imaging.image import Image, mode_of
from convtool.imaging.metadata import from_pillow
from convtool.imaging.read_deep import read_png16, read_tiff
from convtool.imaging.read_pillow import (
    arrays_from_pillow,
    libtiff_muted,
    must_lift,
    open_pillow,
    pillow_downconverts,
    pillow_limit_lifted,
)
from convtool.imaging.source import (
    DEFAULT,
    MaxPixels,
    check_pixel_count,
    pixel_limit,
    read_source,
)

__all__ = ["picture_shape", "read_image"]

PathLike = str | os.PathLike


def read_image(path_or_file: PathLike | IO[bytes], *, max_pixels: MaxPixels = DEFAULT) -> Image:
    """Read a picture or a .npy array as float32 (see :mod:`convtool.imaging.image`).

    Parameters
    ----------
    path_or_file : str, path, '-' or binary file
        '-' reads standard input. The content decides the format, not the name:
        bytes starting with the .npy magic are an array, anything else must be a
        PNG, JPEG, TIFF, BMP, WebP or GIF (first frame) that Pillow reads.
    max_pixels : int, None or DEFAULT
        Refuse pictures with more pixels (width x height) than this before
        decoding them (a guard against decompression bombs: a small file that
        declares a huge size). DEFAULT is Pillow's own ``MAX_IMAGE_PIXELS``
        (about 89 million); None means no limit. Pillow's own warning and error
        for large pictures never leak out: this limit replaces them. A file larger
        than any picture within the limit can be (32 bytes a pixel, plus 64 MiB)
        is refused before it is read, and a stream is read no further.

    Raises
    ------
    ImageReadError
        For anything that cannot be read: a missing file, a folder, a device, an
        empty, truncated, corrupt or unsupported file, too many pixels. Every
        decoder's exception is turned into it, with a one-line message naming the
        file; decoders' warnings and log records are silenced meanwhile.
    TypeError, ValueError
        Only for a ``max_pixels`` that is not a positive integer, None or DEFAULT.

    Notes
    -----
    Modes: grey ('L', 16-bit 'I;16'/'I;16B', 32-bit 'I' holding 0..65535), 'LA',
    'RGB', 'RGBA', palette 'P' (to RGBA if it has transparency, else RGB), 'CMYK'
    (to RGB with Pillow's formula), bilevel '1' (to grey 0/1), float 'F'. A tRNS
    key colour (PNG grey or RGB) becomes an alpha channel. A JPEG's EXIF
    orientation is applied (``ImageOps.exif_transpose``), so the array is upright
    as viewers show it; other formats are taken as stored.

    .npy: (H, W) or (H, W, C) with C = 1 (grey), 2 (grey + alpha), 3 (RGB) or
    4 (RGB + alpha); boolean, integer or float dtypes, cast to float32 unscaled;
    the last channel of C = 2 or 4 becomes ``alpha``, so that
    ``write_image('x.npy', rgb, alpha=a)`` reads back as written. Channels-first
    arrays (C, H, W) are refused with a hint to move the axis.

    Examples
    --------
    >>> import io, numpy as np
    >>> buf = io.BytesIO(); np.save(buf, np.zeros((2, 3))); _ = buf.seek(0)
    >>> read_image(buf).data.shape
    (2, 3)
    """
    max_pixels = pixel_limit(max_pixels)
    buf, source, ext = read_source(path_or_file, max_pixels)
    name = label(source)
    with quiet_decoders():
        if buf.startswith(NPY_MAGIC):
            data, alpha = image_from_npy(parse_npy(buf, name, max_pixels), name)
            return Image(data, alpha, 32, mode_of(data, alpha), source, "NPY")
        if ext == ".npy":
            raise ImageReadError(f"cannot read {name}: not a .npy file (no NumPy header)")
        return _read_picture(buf, source, max_pixels)


# Pillow modes read as one grey plane (alpha apart); the others give three colour planes
_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


def picture_shape(
    path: PathLike, max_pixels: MaxPixels = DEFAULT
) -> tuple[str, tuple[int, int, int]] | None:
    """The format and the (channels, height, width) of the picture's data at ``path``, as
    :func:`read_image` gives it (alpha apart, upright), from its header alone.

    None where the header does not tell (a file that cannot be opened, a TIFF only
    tifffile reads), or where the picture itself has more pixels than ``max_pixels``
    (as in :func:`read_image`): reading it then says what is wrong.
    """
    found = _header_shape(path)
    limit = pixel_limit(max_pixels)
    if found is None or (limit is not None and found[1][1] * found[1][2] > limit):
        return None
    return found


def _header_shape(path: PathLike) -> tuple[str, tuple[int, int, int]] | None:
    try:
        with open(path, "rb") as f, quiet_decoders():
            if f.read(len(NPY_MAGIC)) == NPY_MAGIC:
                f.seek(0)
                version = np.lib.format.read_magic(f)
                read = {(1, 0): np.lib.format.read_array_header_1_0}.get(
                    version, np.lib.format.read_array_header_2_0
                )
                shape = read(f)[0]
                if len(shape) == 2:
                    return "NPY", (1, shape[0], shape[1])
                if len(shape) == 3 and 1 <= shape[2] <= 4:
                    return "NPY", (1 if shape[2] <= 2 else 3, shape[0], shape[1])
                return None
            f.seek(0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
                im = PILImage.open(f, formats=PIL_FORMATS)
            width, height = im.size
            fmt = "JPEG" if im.format == "MPO" else str(im.format)
            if fmt == "JPEG" and im.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                width, height = height, width  # read upright: a quarter turn
            return fmt, (1 if im.mode in _GREY_MODES else 3, height, width)
    except Exception:  # anything the header cannot tell: the read itself will say
        return None


def _read_picture(buf: bytes, source: str, max_pixels: int | None) -> Image:
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
            if fmt == "PNG" and buf[12:16] == b"IHDR" and buf[24] == 16 and buf[25] in (2, 4, 6):
                return replace(read_png16(buf, source, max_pixels), meta=meta)
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
        meta = replace(meta, exif=from_pillow(im).exif)
    return Image(data, alpha, bit_depth, mode_of(data, alpha), source, fmt, meta)
