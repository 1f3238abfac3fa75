"""The bytes a reader decodes, from a path, '-' or a stream, and the limits guarding them.

A picture's size is checked against ``max_pixels`` before it is decoded (a guard
against decompression bombs); a file or stream too large for any picture within
that limit is refused before, or while, it is read.
"""

from __future__ import annotations

import enum
import os
import stat
import sys
from typing import IO, Any

import numpy as np

from convtool.imaging.errors import ImageReadError, one_line

__all__ = [
    "DEFAULT",
    "MaxPixels",
    "check_pixel_count",
    "default_max_pixels",
    "pixel_limit",
    "read_source",
]

PathLike = str | os.PathLike


# Pillow's own default, PIL.Image.MAX_IMAGE_PIXELS, for when Pillow is not imported
PILLOW_MAX_IMAGE_PIXELS = 1024 * 1024 * 1024 // 4 // 3


class _Default(enum.Enum):
    DEFAULT = "default"


DEFAULT = _Default.DEFAULT
"""``max_pixels=DEFAULT``: Pillow's own limit, ``PIL.Image.MAX_IMAGE_PIXELS``, read at call time."""

MaxPixels = int | _Default | None
"""What ``max_pixels`` takes: a positive integer, None (no limit) or DEFAULT."""


def default_max_pixels() -> int | None:
    """The limit ``max_pixels=DEFAULT`` stands for: Pillow's MAX_IMAGE_PIXELS (or None)."""
    pillow = sys.modules.get("PIL.Image")  # a limit set on Pillow means Pillow is imported
    limit = pillow.MAX_IMAGE_PIXELS if pillow is not None else PILLOW_MAX_IMAGE_PIXELS
    return None if limit is None else int(limit)


def pixel_limit(max_pixels: MaxPixels) -> int | None:
    """The pixel limit ``max_pixels`` stands for (see :func:`read_image`); None for none.

    Raises TypeError or ValueError for anything but a positive integer, None or DEFAULT.
    """
    if max_pixels is DEFAULT:
        max_pixels = default_max_pixels()
    if max_pixels is not None:
        if isinstance(max_pixels, bool) or not isinstance(max_pixels, int | np.integer):
            raise TypeError(f"max_pixels must be a positive integer or None, not {max_pixels!r}")
        if max_pixels < 1:
            raise ValueError(f"max_pixels must be a positive integer or None, not {max_pixels!r}")
        max_pixels = int(max_pixels)
    return max_pixels


def check_pixel_count(width: int, height: int, max_pixels: int | None, name: str) -> None:
    """Refuse (ImageReadError) an empty picture, or one over ``max_pixels`` (None: no limit)."""
    if width <= 0 or height <= 0:
        raise ImageReadError(f"cannot read {name}: the picture is {width}x{height} pixels (empty)")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageReadError(
            f"cannot read {name}: {width}x{height} is {width * height:,} pixels, more than the"
            f" limit of {max_pixels:,} (a guard against decompression bombs); raise it with"
            " --max-pixels (max_pixels=) if you trust the file"
        )


# A picture of N pixels takes at most 32 bytes a pixel (a float64 or int64 (H, W, 4)
# .npy), plus its metadata, thumbnails and further frames: a file larger than that
# for the pixel limit is refused before it is read (a sparse file of gigabytes named
# .png), and a stream is read no further (/dev/zero). Devices are no picture files.
_BYTES_PER_PIXEL = 32
_BYTES_SLACK = 64 << 20


def _byte_limit(max_pixels: int | None) -> int | None:
    return None if max_pixels is None else max_pixels * _BYTES_PER_PIXEL + _BYTES_SLACK


def _too_large(name: str, size: str, limit: int) -> ImageReadError:
    pixels = (limit - _BYTES_SLACK) // _BYTES_PER_PIXEL
    return ImageReadError(
        f"cannot read {name}: {size}, more than any picture within the limit of {pixels:,}"
        f" pixels takes ({limit:,} bytes); raise it with --max-pixels (max_pixels=) if you"
        " trust the file"
    )


def _read_all(f: IO[bytes], name: str, limit: int | None) -> bytes:
    """Read ``f`` to its end, but no more than ``limit`` bytes."""
    if limit is None:
        return f.read()
    chunks, total = [], 0
    while chunk := f.read(min(1 << 24, limit + 1 - total)):
        if not isinstance(chunk, bytes | bytearray):
            raise ImageReadError(f"cannot read {name}: the stream gives text, not bytes")
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise _too_large(name, "the stream goes on", limit)
    return b"".join(chunks)


def _is_device(f: Any) -> bool:
    try:
        mode = os.fstat(f.fileno()).st_mode
    except (OSError, ValueError, AttributeError):  # no file descriptor: an in-memory stream
        return False
    return stat.S_ISCHR(mode) or stat.S_ISBLK(mode)


def read_source(
    path_or_file: PathLike | IO[bytes], max_pixels: int | None = None
) -> tuple[bytes, str, str]:
    """Return (bytes, source, lower-case extension) of a path, '-' or a binary file."""
    limit = _byte_limit(max_pixels)
    if hasattr(path_or_file, "read"):
        name = getattr(path_or_file, "name", None)
        source = name if isinstance(name, str) else "<stream>"
        try:
            buf = _read_all(path_or_file, source, limit)
        except (OSError, ValueError) as e:
            raise ImageReadError(f"cannot read {source}: {one_line(e)}") from e
        if not isinstance(buf, bytes | bytearray):
            raise ImageReadError(f"cannot read {source}: the stream gives text, not bytes")
        if not buf:
            raise ImageReadError(f"cannot read {source}: the stream is empty")
        return bytes(buf), source, os.path.splitext(source)[1].lower()
    source = os.fspath(path_or_file)
    if isinstance(source, bytes):
        source = os.fsdecode(source)
    if source == "-":
        stdin = getattr(sys.stdin, "buffer", None)
        if _is_device(stdin):
            raise ImageReadError("cannot read standard input: it is a device, not a picture")
        try:
            buf = _read_all(stdin, "standard input", limit)
        except (OSError, ValueError, AttributeError) as e:
            raise ImageReadError(f"cannot read standard input: {one_line(e)}") from e
        if not buf:
            raise ImageReadError("cannot read standard input: it is empty")
        return buf, "-", ""
    if os.path.isdir(source):
        raise ImageReadError(f"cannot read {source}: it is a directory")
    try:
        with open(source, "rb") as f:
            info = os.fstat(f.fileno())
            if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode):
                raise ImageReadError(f"cannot read {source}: it is a device, not a picture file")
            if limit is not None and stat.S_ISREG(info.st_mode) and info.st_size > limit:
                raise _too_large(source, f"the file is {info.st_size:,} bytes", limit)
            buf = _read_all(f, source, limit)
    except FileNotFoundError:
        raise ImageReadError(f"cannot read {source}: no such file") from None
    except OSError as e:
        raise ImageReadError(f"cannot read {source}: {e.strerror or one_line(e)}") from e
    if not buf:
        raise ImageReadError(f"cannot read {source}: the file is empty")
    return buf, source, os.path.splitext(source)[1].lower()
