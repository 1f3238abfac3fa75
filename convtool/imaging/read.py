"""Read a picture or a .npy array: the content decides which decoder reads it.

Bytes with the NumPy header are an array (:mod:`convtool.imaging.arrays`); PNGs of 8
or 16 bits without a palette, and JPEGs without EXIF, are decoded by imagecodecs
(:mod:`convtool.imaging.read_deep`), the fastest route, with Pillow not even imported;
any other picture goes to Pillow
(:mod:`convtool.imaging.read_pillow`), which hands what it would read down to 8 bits
(16-bit colour TIFF) or cannot read (float colour TIFF) to ``read_deep`` too.
"""

from __future__ import annotations

import dataclasses
import os
from typing import IO

import numpy as np

from convtool.imaging import jpeg, png
from convtool.imaging.arrays import image_from_npy, parse_npy
from convtool.imaging.errors import ImageReadError, label, quiet_decoders
from convtool.imaging.formats import NPY_MAGIC
from convtool.imaging.image import Image, mode_of
from convtool.imaging.read_deep import read_jpeg, read_png
from convtool.imaging.source import (
    DEFAULT,
    MaxPixels,
    pixel_limit,
    read_source,
)

__all__ = ["picture_shape", "read_image"]

PathLike = str | os.PathLike


def read_image(
    path_or_file: PathLike | IO[bytes], *, max_pixels: MaxPixels = DEFAULT, samples: bool = False
) -> Image:
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
    samples : bool
        Hand 8- and 16-bit pictures' data over as the stored uint8 or uint16 samples
        where the fast decoders read them (PNG and JPEG without EXIF; the others give
        float32 anyway): the filters take them as [0, 1] by the same policy, and scale
        them as they lay the picture out, sparing a float copy of the picture.

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
    if buf.startswith(NPY_MAGIC):
        with quiet_decoders():
            data, alpha = image_from_npy(parse_npy(buf, name, max_pixels), name)
        return Image(data, alpha, 32, mode_of(data, alpha), source, "NPY")
    if ext == ".npy":
        raise ImageReadError(f"cannot read {name}: not a .npy file (no NumPy header)")
    if png.decodable(buf):  # imagecodecs raises what it finds wrong: nothing to quieten
        return read_png(buf, source, max_pixels, samples)
    head = jpeg.header(buf)
    if jpeg.decodable(head):
        return read_jpeg(buf, source, max_pixels, head, samples)
    from convtool.imaging.read_pillow import read_with_pillow  # Pillow: imported here only

    with quiet_decoders():
        image = read_with_pillow(buf, source, max_pixels)
    if head is not None and image.format == "JPEG":  # how it was compressed, kept
        image = dataclasses.replace(image, coding=head.coding)
    return image


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
        with open(path, "rb") as f:
            if f.read(len(NPY_MAGIC)) == NPY_MAGIC:
                f.seek(0)
                with quiet_decoders():
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
            start = f.read(1 << 16)
            head = png.header(start)
            if head is not None:  # Pillow reads palettes as RGB: only grey is one plane
                if not (head.width and head.height):
                    return None  # an empty picture: the read says so
                return "PNG", (1 if head.colour_type in (0, 4) else 3, head.height, head.width)
            found = jpeg.header(start)  # the segments before the pixels: most JPEGs' first 64 KB
            if jpeg.plain(found):
                return "JPEG", (found.components, found.height, found.width)
            from convtool.imaging.read_pillow import header_shape

            f.seek(0)
            with quiet_decoders():
                return header_shape(f)
    except Exception:  # anything the header cannot tell: the read itself will say
        return None
