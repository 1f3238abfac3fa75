"""Read and write pictures and arrays (pillow, .npy, TIFF); atomic writes.

Pixel policy, stated once: pictures become float32 arrays in [0, 1] (8-bit values
/ 255, 16-bit values / 65535); ``.npy`` arrays and float TIFFs are taken as they
are (cast to float32, unscaled; NaN and infinities are kept, the filters decide).
Grey pictures are (H, W), colour ones (H, W, 3). Alpha is split off into
:attr:`Image.alpha` so that filters leave it alone, and :func:`write_image` puts it
back as the last channel where the format has one.

Pillow reads 16-bit colour PNGs (RGB, RGBA, grey+alpha) down to 8 bits (it keeps
the high byte) and cannot write them, so this module reads those and writes all
16-bit PNGs itself: the PNG container is simple, and Pillow's own decoder still
undoes the row filters (see :mod:`convtool._png16`). Pillow reads 16-bit colour
TIFFs down to 8 bits too, and no float colour TIFF at all: those, and all TIFF
writing, go through ``tifffile``, imported only when needed.

Every failure is an :class:`ImageReadError` or :class:`ImageWriteError` whose
message is one line naming the file and the problem. Messages name the command
line's options (``--max-pixels``, ``--overwrite``) because that is where most
readers meet them.

This module imports no other convtool module, and neither click nor numba.
"""

from __future__ import annotations

import contextlib
import enum
import io
import logging
import math
import os
import secrets
import stat
import struct
import sys
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
from PIL import Image as PILImage
from PIL import ImageOps

from convtool.imaging import png16 as _png16

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

PathLike = str | os.PathLike


class ImageIOError(Exception):
    """Base of the two errors below; ``str(error)`` is one line."""


class ImageReadError(ImageIOError):
    """A picture or array could not be read: names the file and the problem."""


class ImageWriteError(ImageIOError):
    """A picture or array could not be written: names the file and the problem."""


class _Default(enum.Enum):
    DEFAULT = "default"


DEFAULT = _Default.DEFAULT
"""``max_pixels=DEFAULT``: Pillow's own limit, ``PIL.Image.MAX_IMAGE_PIXELS``, read at call time."""

# extension -> format name; reading sniffs the bytes, these are for the CLI and writing
_EXTENSIONS = {
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".bmp": "bmp",
    ".webp": "webp",
    ".gif": "gif",
    ".npy": "npy",
}
READ_EXTENSIONS: tuple[str, ...] = tuple(sorted(_EXTENSIONS))
WRITE_EXTENSIONS: tuple[str, ...] = tuple(e for e in READ_EXTENSIONS if e != ".gif")
# bit depths each written format takes; .npy is always raw float32 and ignores bit_depth
WRITE_BIT_DEPTHS: dict[str, tuple[int, ...]] = {
    "png": (8, 16),
    "jpeg": (8,),
    "tiff": (8, 16, 32),
    "bmp": (8,),
    "webp": (8,),
    "npy": (8, 16, 32),
}
_PIL_FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "WEBP", "GIF")
_FORMAT_NAMES = "PNG, JPEG, TIFF, BMP, WebP or GIF"
_NPY_MAGIC = b"\x93NUMPY"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_PNG_SIGNATURE = _png16.SIGNATURE
_SIGNATURES = (
    (_PNG_SIGNATURE, "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
)
_JPEG_QUALITY = 95


@dataclass(frozen=True, eq=False)
class Image:
    """A picture as read: float32 pixels plus what the file said about them.

    Attributes
    ----------
    data : ndarray
        float32, (H, W) for grey or (H, W, 3) for colour; values in [0, 1] for
        8- and 16-bit pictures, as stored for .npy and float TIFF.
    alpha : ndarray or None
        float32 (H, W), scaled like ``data``; None when the picture has none.
    bit_depth : int
        8, 16, or 32 (float: .npy and float TIFF).
    mode : str
        'L', 'LA', 'RGB' or 'RGBA': the channels of ``data`` plus ``alpha`` in
        Pillow's names (a palette, CMYK or bilevel picture reads as one of these).
    source : str
        The path as given, '-' for standard input, or a stream's name.
    format : str
        'PNG', 'JPEG', 'TIFF', 'BMP', 'WEBP', 'GIF' or 'NPY'.
    """

    data: np.ndarray
    alpha: np.ndarray | None
    bit_depth: int
    mode: str
    source: str
    format: str

    @property
    def height(self) -> int:
        return int(self.data.shape[0])

    @property
    def width(self) -> int:
        return int(self.data.shape[1])


# ---------------------------------------------------------------- names and formats


def format_for(path: PathLike, *, writing: bool = False) -> str:
    """Return the format name for ``path``'s extension: 'png', 'jpeg', 'tiff', ...

    Raises ValueError naming the extension and the known ones (GIF is read-only).

    >>> format_for("out/edges.PNG")
    'png'
    """
    name = os.fspath(path)
    known = WRITE_EXTENSIONS if writing else READ_EXTENSIONS
    ext = os.path.splitext(name)[1].lower()
    if name == "-":
        raise ValueError("'-' (standard input/output) has no extension: give the format")
    if ext not in known:
        what = f"extension {ext!r}" if ext else "no extension"
        verb = "write" if writing else "read"
        raise ValueError(f"{name}: {what}; can {verb} {', '.join(known)}")
    return _EXTENSIONS[ext]


def _format_name(fmt: str) -> str:
    key = fmt.lower().lstrip(".")
    key = {"jpg": "jpeg", "tif": "tiff"}.get(key, key)
    if key not in WRITE_BIT_DEPTHS:
        raise ValueError(f"unknown format {fmt!r}; can write {', '.join(sorted(WRITE_BIT_DEPTHS))}")
    return key


def default_max_pixels() -> int | None:
    """The limit ``max_pixels=DEFAULT`` stands for: Pillow's MAX_IMAGE_PIXELS (or None)."""
    limit = PILImage.MAX_IMAGE_PIXELS
    return None if limit is None else int(limit)


def one_line(error: BaseException) -> str:
    """An error's message on one line of at most 200 characters (its type if empty)."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _label(source: str, writing: bool = False) -> str:
    if source == "-":
        return "standard output" if writing else "standard input"
    return source


# ---------------------------------------------------------------- reading


def read_image(
    path_or_file: PathLike | IO[bytes], *, max_pixels: int | _Default | None = DEFAULT
) -> Image:
    """Read a picture or a .npy array as float32 (see the module's pixel policy).

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
    if max_pixels is DEFAULT:
        max_pixels = default_max_pixels()
    if max_pixels is not None:
        if isinstance(max_pixels, bool) or not isinstance(max_pixels, int | np.integer):
            raise TypeError(f"max_pixels must be a positive integer or None, not {max_pixels!r}")
        if max_pixels < 1:
            raise ValueError(f"max_pixels must be a positive integer or None, not {max_pixels!r}")
        max_pixels = int(max_pixels)
    buf, source, ext = _read_source(path_or_file, max_pixels)
    name = _label(source)
    with _quiet_decoders():
        if buf.startswith(_NPY_MAGIC):
            data, alpha = _image_from_npy(_parse_npy(buf, name, max_pixels), name)
            return Image(data, alpha, 32, _mode_of(data, alpha), source, "NPY")
        if ext == ".npy":
            raise ImageReadError(f"cannot read {name}: not a .npy file (no NumPy header)")
        return _read_picture(buf, source, max_pixels)


_DECODER_LOGGERS = ("PIL", "tifffile")


@contextlib.contextmanager
def _quiet_decoders() -> Iterator[None]:
    """Silence the decoders' warnings and log records while a file is read.

    Pillow and tifffile report a damaged file through ``warnings`` and ``logging``
    as well as by raising; the ImageReadError raised here says it once, in one
    line. The loggers' levels are restored afterwards.
    """
    loggers = [logging.getLogger(name) for name in _DECODER_LOGGERS]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.CRITICAL + 1)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


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


_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def _libtiff_muted(mute: bool = True) -> Iterator[None]:
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


def _read_source(
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


def _mode_of(data: np.ndarray, alpha: np.ndarray | None) -> str:
    base = "L" if data.ndim == 2 else "RGB"
    return base + ("A" if alpha is not None else "")


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


# .npy


def _parse_npy(buf: bytes, name: str, max_pixels: int | None = None) -> np.ndarray:
    """Return the array in .npy bytes, read-only, after checking header and size."""
    fp = io.BytesIO(buf)
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
        else:
            raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
    except Exception as e:  # numpy's header parser raises ValueError, SyntaxError, TokenError...
        raise ImageReadError(f"cannot read {name}: bad .npy header ({one_line(e)})") from e
    if dtype.hasobject or dtype.fields is not None or dtype.kind not in "biuf":
        raise ImageReadError(
            f"cannot read {name}: .npy dtype {dtype} is not supported (need bool, int or float)"
        )
    if any(n < 0 for n in shape):
        raise ImageReadError(f"cannot read {name}: bad .npy header (shape {shape})")
    if max_pixels is not None and len(shape) >= 2:
        check_pixel_count(max(shape[1], 1), max(shape[0], 1), max_pixels, name)
    count = math.prod(shape)
    available = len(buf) - fp.tell()
    if count * dtype.itemsize > available:
        raise ImageReadError(
            f"cannot read {name}: truncated .npy file (shape {shape} needs"
            f" {count * dtype.itemsize:,} bytes of data, {available:,} found)"
        )
    flat = np.frombuffer(buf, dtype=dtype, count=count, offset=fp.tell())
    return flat.reshape(shape, order="F" if fortran else "C")


def _image_from_npy(arr: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    shape = arr.shape
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and not 1 <= shape[2] <= 4):
        hint = ""
        if arr.ndim == 3 and 1 <= shape[0] <= 4:
            hint = "; a channels-first array needs np.moveaxis(a, 0, -1)"
        raise ImageReadError(
            f"cannot read {name}: .npy shape {shape} is not (H, W) or (H, W, C) with C in 1..4"
            + hint
        )
    if 0 in shape:
        raise ImageReadError(f"cannot read {name}: the array is empty (shape {shape})")
    full = np.asarray(arr, dtype=np.float32)
    channels = 1 if full.ndim == 2 else full.shape[2]
    alpha = np.array(full[:, :, -1], order="C") if channels in (2, 4) else None
    colour = full if full.ndim == 2 else full[:, :, :3] if channels >= 3 else full[:, :, 0]
    return np.array(colour, order="C"), alpha


# pictures through Pillow


_PILLOW_LIMIT_LOCK = threading.Lock()


@contextlib.contextmanager
def _pillow_limit_lifted(lift: bool = True) -> Iterator[None]:
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


def _must_lift(max_pixels: int | None) -> bool:
    """Whether Pillow's hard limit (2x MAX_IMAGE_PIXELS) is stricter than ours."""
    pil = PILImage.MAX_IMAGE_PIXELS
    return pil is not None and (max_pixels is None or max_pixels > 2 * pil)


def _open_pillow(buf: bytes, name: str) -> PILImage.Image | None:
    """Open (header only); None for a TIFF that Pillow cannot take (tifffile may)."""
    fp = io.BytesIO(buf)
    try:
        try:
            return PILImage.open(fp, formats=_PIL_FORMATS)
        except PILImage.DecompressionBombError:
            # Pillow's hard limit: reopen without it to learn the size and apply ours
            fp.seek(0)
            with _pillow_limit_lifted():
                return PILImage.open(fp, formats=_PIL_FORMATS)
    except PILImage.UnidentifiedImageError:
        if buf.startswith(_TIFF_MAGICS):
            return None
        if buf.startswith(_PNG_SIGNATURE) and buf[12:16] == b"IHDR" and len(buf) >= 24:
            check_pixel_count(*struct.unpack_from(">II", buf, 16), None, name)  # Pillow refuses 0x0
        kind = _claimed_format(buf)
        if kind is not None:
            raise ImageReadError(
                f"cannot read {name}: corrupt {kind} file (its header cannot be parsed)"
            ) from None
        raise ImageReadError(
            f"cannot read {name}: not a picture Pillow can read as {_FORMAT_NAMES}"
        ) from None
    except MemoryError:
        raise ImageReadError(f"cannot read {name}: out of memory reading the header") from None
    except Exception as e:  # a plugin's parser on hostile bytes may raise anything
        raise ImageReadError(f"cannot read {name}: corrupt picture header ({one_line(e)})") from e


def _claimed_format(buf: bytes) -> str | None:
    """The format a file's first bytes claim (a signature), or None."""
    if buf.startswith(b"RIFF") and buf[8:12] == b"WEBP":
        return "WebP"
    for magic, kind in _SIGNATURES:
        if buf.startswith(magic):
            return kind
    return None


def _read_picture(buf: bytes, source: str, max_pixels: int | None) -> Image:
    name = _label(source)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
        im = _open_pillow(buf, name)
        if im is None:
            return _read_tiff(buf, source, max_pixels)
        fmt = "JPEG" if im.format == "MPO" else str(im.format)
        try:
            check_pixel_count(*im.size, max_pixels, name)
            if fmt == "PNG" and buf[12:16] == b"IHDR" and buf[24] == 16 and buf[25] in (2, 4, 6):
                return _read_png16(buf, source, max_pixels)
            if fmt == "TIFF" and _pillow_downconverts(im):
                return _read_tiff(buf, source, max_pixels)
            with _pillow_limit_lifted(_must_lift(max_pixels)), _libtiff_muted(fmt == "TIFF"):
                im.load()  # decode everything now, so that truncation shows here
            if fmt == "JPEG":
                with contextlib.suppress(Exception):  # broken EXIF: keep the stored orientation
                    im = ImageOps.exif_transpose(im)
            data, alpha, bit_depth = _arrays_from_pillow(im, name)
        except ImageReadError:
            raise
        except MemoryError:
            w, h = im.size
            raise ImageReadError(f"cannot read {name}: out of memory decoding {w}x{h}") from None
        except Exception as e:
            raise ImageReadError(
                f"cannot read {name}: truncated or corrupt {fmt} file ({one_line(e)})"
            ) from e
    return Image(data, alpha, bit_depth, _mode_of(data, alpha), source, fmt)


def _pillow_downconverts(im: PILImage.Image) -> bool:
    """Pillow reads colour TIFFs with more than 8 bits per sample down to 8 bits."""
    bits = im.tag_v2.get(258, (8,))  # BitsPerSample
    bits = bits if isinstance(bits, tuple) else (bits,)
    return (
        im.mode not in ("1", "L", "P", "I", "F") and not im.mode.startswith("I;") and max(bits) > 8
    )


def unit_scaled(arr: np.ndarray, bit_depth: int) -> np.ndarray:
    """Integer samples of ``bit_depth`` bits as float32 in [0, 1]; 32-bit floats as they are."""
    out = arr.astype(np.float32)
    if bit_depth != 32:
        out /= np.float32(255 if bit_depth == 8 else 65535)
    return out


def _arrays_from_pillow(im: PILImage.Image, name: str) -> tuple[np.ndarray, np.ndarray | None, int]:
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


# TIFFs Pillow cannot read exactly


def _import_tifffile(purpose: str) -> Any:
    try:
        import tifffile
    except ImportError:
        raise ImportError(f"{purpose} needs the tifffile package (pip install tifffile)") from None
    return tifffile


def _read_tiff(buf: bytes, source: str, max_pixels: int | None) -> Image:
    """Read 16-bit colour and float TIFFs (Pillow drops bits or refuses) with tifffile."""
    name = _label(source)
    try:
        tifffile = _import_tifffile("reading a 16-bit colour or float TIFF")
    except ImportError as e:
        raise ImageReadError(f"cannot read {name}: {e}") from None
    try:
        with tifffile.TiffFile(io.BytesIO(buf)) as tif:
            page = tif.pages.first
            check_pixel_count(int(page.imagewidth), int(page.imagelength), max_pixels, name)
            samples, depth = int(page.samplesperpixel), int(page.imagedepth)
            if samples > 4 or depth > 1:  # checked before decoding: either multiplies memory
                raise ImageReadError(
                    f"cannot read {name}: unsupported TIFF ({samples} samples per pixel, "
                    f"depth {depth}); pictures have 1 to 4 samples"
                )
            arr = page.asarray()
            axes, photometric, extra = page.axes, int(page.photometric), len(page.extrasamples)
    except ImageReadError:
        raise
    except MemoryError:
        raise ImageReadError(f"cannot read {name}: out of memory decoding the TIFF") from None
    except Exception as e:
        raise ImageReadError(
            f"cannot read {name}: corrupt or unsupported TIFF ({one_line(e)})"
        ) from e
    if arr.ndim != len(axes) or axes not in ("YX", "YXS", "SYX"):
        raise ImageReadError(f"cannot read {name}: unsupported TIFF layout {axes!r}")
    if axes == "SYX":
        arr = np.moveaxis(arr, 0, -1)
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    has_alpha = extra > 0 and channels in (2, 4)
    layouts = {1: {1}, 2: {3, 4}}  # photometric MinIsBlack, RGB -> channel counts with alpha
    if photometric not in layouts or channels - has_alpha not in layouts[photometric]:
        raise ImageReadError(
            f"cannot read {name}: unsupported TIFF (photometric {photometric}, {channels} samples)"
        )
    kinds = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}
    bit_depth = 32 if arr.dtype.kind == "f" else kinds.get(arr.dtype.newbyteorder("="))
    if bit_depth is None:
        raise ImageReadError(f"cannot read {name}: unsupported TIFF sample type {arr.dtype}")
    full = unit_scaled(arr, bit_depth)
    alpha = np.ascontiguousarray(full[..., -1]) if has_alpha else None
    data = full[..., :-1] if has_alpha else full
    if data.ndim == 3 and data.shape[2] == 1:
        data = data[..., 0]
    data = np.ascontiguousarray(data)
    return Image(data, alpha, bit_depth, _mode_of(data, alpha), source, "TIFF")


# 16-bit colour PNG (the codec is convtool._png16)


def _read_png16(buf: bytes, source: str, max_pixels: int | None) -> Image:
    name = _label(source)
    try:
        planes, trns = _png16.decode(buf, lambda grey: _grey16(grey, max_pixels))
    except MemoryError:
        raise ImageReadError(f"cannot read {name}: out of memory decoding the PNG") from None
    except Exception as e:
        raise ImageReadError(
            f"cannot read {name}: truncated or corrupt PNG file ({one_line(e)})"
        ) from e
    alpha = None
    if len(planes) in (2, 4):
        alpha = unit_scaled(planes.pop(), 16)
    elif trns is not None and len(trns) == 6:
        key = struct.unpack(">3H", trns)
        alpha = np.any([p != k for p, k in zip(planes, key, strict=True)], axis=0)
        alpha = alpha.astype(np.float32)
    data = unit_scaled(planes[0] if len(planes) == 1 else np.stack(planes, axis=-1), 16)
    return Image(data, alpha, 16, _mode_of(data, alpha), source, "PNG")


def _grey16(png: bytes, max_pixels: int | None) -> np.ndarray:
    with _pillow_limit_lifted(_must_lift(max_pixels)):
        im = PILImage.open(io.BytesIO(png), formats=("PNG",))
        im.load()
    return np.asarray(im).astype(np.uint16)


# ---------------------------------------------------------------- writing


def write_image(
    path: PathLike,
    data: Any,
    *,
    alpha: Any = None,
    bit_depth: int = 8,
    overwrite: bool = False,
    compress_level: int = 1,
    format: str | None = None,
) -> None:
    """Write a float picture atomically; the format comes from the extension.

    Parameters
    ----------
    path : str or path
        Target file, or '-' for standard output (then ``format`` is required).
    data : array_like
        (H, W) grey or (H, W, C) with C = 1, 2 (grey + alpha), 3 or 4 (RGB + alpha),
        in [0, 1]. For 8/16-bit output, NaN becomes 0, values are clipped to
        [0, 1] and rounded to nearest (``np.rint(data * 255)``, halves to even).
    alpha : array_like, optional
        (H, W) alpha in [0, 1], appended as the last channel where the format
        has one. Not allowed when ``data`` already has 2 or 4 channels.
    bit_depth : int
        8 or 16 for PNG; 8 for JPEG, BMP and WebP; 8, 16 or 32 (float32, raw
        values, unclipped) for TIFF. .npy ignores it: always raw float32.
    overwrite : bool
        Refuse to replace an existing file unless True.
    compress_level : int
        PNG zlib level 0-9. Default 1, for speed: Pillow's default 6 took 2 to 3
        times as long on the sample pictures, upscaled to 1024x1024, for files 8 to
        15 % smaller.
    format : str, optional
        'png', 'jpeg'/'jpg', 'tiff'/'tif', 'bmp', 'webp' or 'npy'; overrides the
        extension.

    Notes
    -----
    JPEG: quality 95, 4:4:4 chroma. JPEG and BMP cannot keep alpha (Pillow reads
    32-bit BMPs without it): the alpha is dropped and the colour values written as
    they are, not composited. WebP is lossless, with colours kept exactly under
    transparent pixels; it has no grey, so grey is written as RGB. TIFF goes
    through tifffile (uncompressed). The file appears whole or not at all, see
    :func:`atomic_write`.
    """
    target = os.fspath(path)
    try:
        fmt = _format_name(format) if format is not None else format_for(target, writing=True)
    except ValueError as e:
        raise ImageWriteError(f"cannot write {_label(target, True)}: {e}") from None
    pixels = prepare_pixels(data, alpha, fmt, bit_depth, target)
    if not (isinstance(compress_level, int) and 0 <= compress_level <= 9):
        raise ImageWriteError(f"cannot write {_label(target, True)}: compress_level must be 0..9")

    def encode(f: IO[bytes]) -> None:
        _ENCODERS[fmt](f, pixels, bit_depth=bit_depth, compress_level=compress_level)

    try:
        if target == "-":
            buffer = io.BytesIO()
            encode(buffer)
            _write_stdout(buffer.getvalue())
        else:
            with atomic_write(target, overwrite=overwrite) as f:
                encode(f)
    except (OSError, ValueError, ImportError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else one_line(e)
        raise ImageWriteError(f"cannot write {_label(target, True)}: {reason}") from e


def prepare_pixels(data: Any, alpha: Any, fmt: str, bit_depth: int, target: str) -> np.ndarray:
    """Validate, append alpha, drop it where the format has none, and quantise."""

    def fail(problem: str) -> ImageWriteError:
        return ImageWriteError(f"cannot write {_label(target, True)}: {problem}")

    if bit_depth not in WRITE_BIT_DEPTHS[fmt]:
        depths = " or ".join(map(str, WRITE_BIT_DEPTHS[fmt]))
        hint = "; use .tif or .npy for float" if bit_depth == 32 else ""
        raise fail(f"{fmt.upper()} takes bit_depth {depths}, not {bit_depth!r}{hint}")
    arr = np.asarray(data)
    if arr.dtype.kind not in "biuf":
        raise fail(f"pixels must be real numbers, not {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (2, 3, 4)):
        raise fail(f"pixels must be (H, W) or (H, W, C) with C in 1..4; got shape {arr.shape}")
    if 0 in arr.shape:
        raise fail(f"the picture is empty (shape {arr.shape})")
    if alpha is not None:
        a = np.asarray(alpha)
        if arr.ndim == 3 and arr.shape[2] in (2, 4):
            raise fail(f"data has {arr.shape[2]} channels (alpha included) and alpha is given too")
        if a.dtype.kind not in "biuf" or a.shape != arr.shape[:2]:
            raise fail(
                f"alpha must be real numbers of shape {arr.shape[:2]}; got {a.dtype} {a.shape}"
            )
        arr = np.concatenate([arr.reshape(*arr.shape[:2], -1), a[:, :, None]], axis=2)
    if fmt in ("jpeg", "bmp") and arr.ndim == 3 and arr.shape[2] in (2, 4):
        arr = arr[:, :, :-1]  # no alpha in these formats: drop it, colours as they are
        arr = arr[:, :, 0] if arr.shape[2] == 1 else arr
    if fmt == "npy" or bit_depth == 32:
        return np.ascontiguousarray(arr, dtype=np.float32)
    # in place on one working copy: inf clips to the range's ends, NaN becomes 0
    # (np.nan_to_num's isposinf/isneginf cost several passes over a big picture)
    work = arr.astype(np.float32 if arr.dtype == np.float32 else np.float64)
    np.clip(work, 0.0, 1.0, out=work)
    np.copyto(work, 0.0, where=np.isnan(work))
    work *= 255 if bit_depth == 8 else 65535
    np.rint(work, out=work)
    return work.astype(np.uint8 if bit_depth == 8 else np.uint16)


def _encode_pillow(f: IO[bytes], pixels: np.ndarray, *, fmt: str, **options: Any) -> None:
    PILImage.fromarray(pixels).save(f, format=fmt, **options)


def _encode_png(f: IO[bytes], pixels: np.ndarray, *, bit_depth: int, compress_level: int) -> None:
    if bit_depth == 16:
        _png16.write(f, pixels, compress_level)
    else:
        _encode_pillow(f, pixels, fmt="PNG", compress_level=compress_level)


def _encode_tiff(f: IO[bytes], pixels: np.ndarray, **_: Any) -> None:
    tifffile = _import_tifffile("writing TIFF")
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    options: dict[str, Any] = {"photometric": "rgb" if channels >= 3 else "minisblack"}
    if channels > 1:
        options["planarconfig"] = "contig"
    if channels in (2, 4):
        options["extrasamples"] = ("unassalpha",)
    buffer = io.BytesIO()  # tifffile wants a named file or a BytesIO
    tifffile.imwrite(buffer, pixels, metadata=None, **options)
    f.write(buffer.getbuffer())


def _encode_npy(f: IO[bytes], pixels: np.ndarray, **_: Any) -> None:
    # the header, then the bytes through f.write: np.save on a file reports a short
    # write (a full disk) as "N requested and M written", without the cause
    pixels = np.ascontiguousarray(pixels)
    np.lib.format.write_array_header_1_0(f, np.lib.format.header_data_from_array_1_0(pixels))
    f.write(memoryview(pixels).cast("B"))


_ENCODERS = {
    "png": _encode_png,
    "jpeg": lambda f, px, **_: _encode_pillow(
        f, px, fmt="JPEG", quality=_JPEG_QUALITY, subsampling=0
    ),
    "bmp": lambda f, px, **_: _encode_pillow(f, px, fmt="BMP"),
    "webp": lambda f, px, **_: _encode_pillow(f, px, fmt="WEBP", lossless=True, exact=True),
    "tiff": _encode_tiff,
    "npy": _encode_npy,
}


def _write_stdout(payload: bytes) -> None:
    try:
        out = sys.stdout.buffer
        out.write(payload)
        out.flush()
    except (OSError, ValueError, AttributeError) as e:
        raise ImageWriteError(f"cannot write to standard output: {one_line(e)}") from e


# ---------------------------------------------------------------- atomic writes


@contextlib.contextmanager
def atomic_write(
    path: PathLike, *, overwrite: bool = False, fsync: bool = True
) -> Iterator[IO[bytes]]:
    """Give a binary file that replaces ``path`` only once the block ends without error.

    The bytes go to a hidden temporary file in the target's folder
    (``.NAME.RANDOM.tmp``, created with mode 0o666 so the umask applies as for any
    new file), are flushed and fsync'ed, then renamed onto the target. On any
    error, the temporary file is removed and an existing target is untouched:
    readers see the old file or the whole new one, never a partial or empty one.

    ``overwrite=False`` refuses an existing target before anything is written,
    and again without a race at the end (a hard link, which fails if the name
    has appeared meanwhile; on file systems without hard links, a second
    existence check then ``os.replace``). ``overwrite=True`` keeps the replaced
    file's permission bits. A symbolic link at the target is replaced, not
    followed. Raises ImageWriteError for a missing, non-folder or read-only folder,
    an existing target, or a failed flush or rename; errors raised inside the
    block pass through unchanged.

    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "log.csv"
    >>> with atomic_write(target) as f:
    ...     _ = f.write(b"step,loss\\n")
    >>> target.read_bytes()
    b'step,loss\\n'
    """
    target = os.fspath(path)
    folder, name = os.path.split(target)
    folder = folder or "."
    if not name:
        raise ImageWriteError(f"cannot write {target}: the path names a folder, not a file")
    if not os.path.isdir(folder):
        problem = "is not a folder" if os.path.exists(folder) else "does not exist"
        raise ImageWriteError(f"cannot write {target}: the folder {folder} {problem}")
    if os.path.isdir(target):
        raise ImageWriteError(f"cannot write {target}: it is a directory")
    if not overwrite and os.path.lexists(target):
        raise ImageWriteError(f"{target} exists; pass --overwrite to replace it")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        temp = os.path.join(folder, f".{name[:200]}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(temp, flags, 0o666)
            break
        except FileExistsError:
            continue
        except OSError as e:
            reason = e.strerror or one_line(e)
            raise ImageWriteError(
                f"cannot write {target}: cannot create a file in {folder} ({reason})"
            ) from e
    else:
        raise ImageWriteError(f"cannot write {target}: no free temporary name in {folder}")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            try:
                f.flush()
                if fsync:
                    os.fsync(f.fileno())
            except OSError as e:
                raise ImageWriteError(f"cannot write {target}: {e.strerror or one_line(e)}") from e
        _commit(temp, target, overwrite)
        if fsync:
            _fsync_folder(folder)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def _commit(temp: str, target: str, overwrite: bool) -> None:
    exists = ImageWriteError(f"{target} exists; pass --overwrite to replace it")
    try:
        if overwrite:
            with contextlib.suppress(FileNotFoundError):
                os.chmod(temp, stat.S_IMODE(os.stat(target).st_mode))
            os.replace(temp, target)
            return
        try:
            os.link(temp, target)  # fails if the target has appeared since the first check
        except FileExistsError:
            raise exists from None
        except OSError:  # no hard links on this file system
            if os.path.lexists(target):
                raise exists from None
            os.replace(temp, target)
            return
        with contextlib.suppress(OSError):  # the target is written; a leftover name is harmless
            os.unlink(temp)
    except ImageWriteError:
        raise
    except OSError as e:
        raise ImageWriteError(f"cannot write {target}: {e.strerror or one_line(e)}") from e


def _fsync_folder(folder: str) -> None:
    """Make the rename itself durable, where the platform allows (best effort)."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: PathLike, data: bytes, *, overwrite: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`); '-' is stdout."""
    if os.fspath(path) == "-":
        _write_stdout(data)
        return
    try:
        with atomic_write(path, overwrite=overwrite) as f:
            f.write(data)
    except OSError as e:
        raise ImageWriteError(f"cannot write {os.fspath(path)}: {e.strerror or one_line(e)}") from e


# ---------------------------------------------------------------- arrays and grey


def save_array(path: PathLike, arr: Any, *, overwrite: bool = False) -> None:
    """Save a bool, int or float array as .npy atomically, dtype and shape as given."""
    a = np.asarray(arr)
    if a.dtype.kind not in "biuf" or a.dtype.fields is not None:
        raise ImageWriteError(f"cannot write {os.fspath(path)}: dtype {a.dtype} is not saved")
    buffer = io.BytesIO()
    np.save(buffer, a, allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue(), overwrite=overwrite)


def load_array(path_or_file: PathLike | IO[bytes]) -> np.ndarray:
    """Load a .npy array as stored (any shape; bool, int or float dtype), as a writable copy."""
    buf, source, _ = _read_source(path_or_file)
    name = _label(source)
    if not buf.startswith(_NPY_MAGIC):
        raise ImageReadError(f"cannot read {name}: not a .npy file (no NumPy header)")
    with _quiet_decoders():
        return np.array(_parse_npy(buf, name))
