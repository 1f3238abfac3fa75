"""Pictures on disk: formats, readers, writers and atomic writes.

The only place pillow and tifffile are imported.
"""

from convtool.imaging.io import (
    DEFAULT,
    READ_EXTENSIONS,
    WRITE_BIT_DEPTHS,
    WRITE_EXTENSIONS,
    Image,
    ImageIOError,
    ImageReadError,
    ImageWriteError,
    atomic_write,
    atomic_write_bytes,
    check_pixel_count,
    default_max_pixels,
    format_for,
    load_array,
    one_line,
    prepare_pixels,
    read_image,
    save_array,
    unit_scaled,
    write_image,
)

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
    "format_for",
    "load_array",
    "one_line",
    "prepare_pixels",
    "read_image",
    "save_array",
    "unit_scaled",
    "write_image",
]
