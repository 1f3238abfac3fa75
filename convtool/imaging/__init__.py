"""Pictures on disk: formats, readers, writers and atomic writes.

The only place pillow, tifffile and imagecodecs are imported. The modules, by topic:
``formats`` (extensions, format names, signatures), ``errors`` (the errors and
their one-line messages), ``image`` (the picture a reader returns, the pixel
policy), ``source`` (the bytes to read, the size limits), ``read`` with
``read_pillow`` and ``read_deep`` (the decoders), ``arrays`` (.npy), ``write``
(quantise and encode), ``atomic`` (files that appear whole), ``png`` (PNG through
imagecodecs), ``metadata`` (ICC profile, resolution, EXIF) and
``tiff`` (a TIFF read region by region).
"""

from convtool.imaging.arrays import load_array, save_array
from convtool.imaging.atomic import (
    atomic_write,
    atomic_write_bytes,
    exists_error,
    temporary_target,
)
from convtool.imaging.errors import (
    ImageIOError,
    ImageReadError,
    ImageWriteError,
    one_line,
    quiet_decoders,
)
from convtool.imaging.formats import (
    READ_EXTENSIONS,
    WRITE_BIT_DEPTHS,
    WRITE_EXTENSIONS,
    extension_for,
    format_for,
    format_named,
    written_as,
)
from convtool.imaging.image import Image, unit_scaled
from convtool.imaging.read import picture_shape, read_image
from convtool.imaging.source import DEFAULT, check_pixel_count, default_max_pixels
from convtool.imaging.write import prepare_pixels, write_image

__all__ = [
    "DEFAULT",
    "READ_EXTENSIONS",
    "WRITE_BIT_DEPTHS",
    "WRITE_EXTENSIONS",
    "Image",
    "ImageIOError",
    "ImageReadError",
    "ImageWriteError",
    "atomic_write",
    "atomic_write_bytes",
    "check_pixel_count",
    "default_max_pixels",
    "exists_error",
    "extension_for",
    "format_for",
    "format_named",
    "load_array",
    "one_line",
    "picture_shape",
    "prepare_pixels",
    "quiet_decoders",
    "read_image",
    "save_array",
    "temporary_target",
    "unit_scaled",
    "write_image",
    "written_as",
]
