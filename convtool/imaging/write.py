"""Write pictures: validate and quantise the pixels, encode them, write atomically.

PNGs are encoded by :mod:`convtool.imaging.png` (imagecodecs: faster, and Pillow writes no
16-bit colour PNG), JPEGs by :mod:`convtool.imaging.jpeg` (imagecodecs: Pillow's bytes,
faster); BMP and WebP by Pillow, TIFFs by ``tifffile``, each imported only
when needed, and ``.npy`` here.
"""

from __future__ import annotations

import io
import os
from typing import IO, Any

import numpy as np

from convtool.imaging import jpeg, png
from convtool.imaging.atomic import atomic_write, write_stdout
from convtool.imaging.errors import ImageWriteError, label, one_line
from convtool.imaging.formats import WRITE_BIT_DEPTHS, format_for, write_format
from convtool.imaging.metadata import Metadata, pillow_options, png_chunks, tiff_options

__all__ = ["prepare_pixels", "write_image"]

PathLike = str | os.PathLike

# JPEG's default where no JPEG was read (a JPEG read sets its own, as ImageMagick keeps
# it): 95 keeps filtered results' edges and fine texture free of visible artefacts
# (ImageMagick's own default is 92); --quality changes it
JPEG_QUALITY = 95


def write_image(
    path: PathLike,
    data: Any,
    *,
    alpha: Any = None,
    bit_depth: int = 8,
    overwrite: bool = False,
    compress_level: int = 1,
    format: str | None = None,
    meta: Metadata | None = None,
    quality: int | None = None,
    coding: jpeg.Coding | None = None,
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
        PNG compression effort 0-9. Default 1, for speed: rows filtered by Up and
        deflated by libdeflate, a third of libpng's time at its level 1 on a 1024x1024
        picture. 0-5 take that route; 6-9 go through libpng, which tries every filter
        on each row, as ImageMagick does: the smallest files (9), several times slower.
    format : str, optional
        'png', 'jpeg'/'jpg', 'tiff'/'tif', 'bmp', 'webp' or 'npy'; overrides the
        extension.
    meta : Metadata, optional
        ICC profile, resolution and EXIF to write (see :mod:`convtool.imaging.metadata`
        for which formats hold which).
    quality : int, optional
        1..100 for JPEG (default: ``coding``'s, else 95) and WebP (default: lossless; a
        quality makes it lossy); ignored by the other formats.
    coding : jpeg.Coding, optional
        How the JPEG the picture was read from was compressed
        (:attr:`convtool.imaging.Image.coding`): a JPEG written keeps its quality (unless
        ``quality`` is given) and its chroma subsampling, as ImageMagick keeps them.

    Notes
    -----
    JPEG: quality 95 and 4:4:4 chroma unless given or kept from ``coding``. JPEG and BMP
    cannot keep alpha (Pillow reads 32-bit BMPs without it): the alpha is dropped and the
    colour values written as they are, not composited. WebP is lossless, with colours
    kept exactly under transparent pixels; it has no grey, so grey is written as RGB.
    TIFF goes through tifffile (uncompressed). The file appears whole or not at all, see
    :func:`atomic_write`.
    """
    target = os.fspath(path)
    try:
        fmt = write_format(format) if format is not None else format_for(target, writing=True)
    except ValueError as e:
        raise ImageWriteError(f"cannot write {label(target, True)}: {e}") from None
    pixels = prepare_pixels(data, alpha, fmt, bit_depth, target)
    if not (isinstance(compress_level, int) and 0 <= compress_level <= 9):
        raise ImageWriteError(f"cannot write {label(target, True)}: compress_level must be 0..9")
    if quality is not None and not (isinstance(quality, int) and 1 <= quality <= 100):
        raise ImageWriteError(f"cannot write {label(target, True)}: quality must be 1..100")
    options = {"compress_level": compress_level, "meta": meta, "quality": quality}
    options["coding"] = coding

    def encode(f: IO[bytes]) -> None:
        _ENCODERS[fmt](f, pixels, bit_depth=bit_depth, **options)

    try:
        if target == "-":
            buffer = io.BytesIO()
            encode(buffer)
            write_stdout(buffer.getvalue())
        else:
            with atomic_write(target, overwrite=overwrite) as f:
                encode(f)
    except (OSError, ValueError, ImportError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else one_line(e)
        raise ImageWriteError(f"cannot write {label(target, True)}: {reason}") from e


def prepare_pixels(data: Any, alpha: Any, fmt: str, bit_depth: int, target: str) -> np.ndarray:
    """Validate, append alpha, drop it where the format has none, and quantise."""

    def fail(problem: str) -> ImageWriteError:
        return ImageWriteError(f"cannot write {label(target, True)}: {problem}")

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
    return _quantised(arr, 255 if bit_depth == 8 else 65535)


def _quantised(arr: np.ndarray, top: int) -> np.ndarray:
    """``rint(clip(arr, 0, 1) * top)`` with NaN as 0, as contiguous uint8 or uint16.

    By the compiled core in one pass where it is built (:mod:`convtool.core.samples`,
    the same arithmetic); else by numpy, in blocks of rows that stay in cache, each
    through one small buffer, into the result laid out as the encoders want it: a
    picture-sized float copy would cost more in fresh memory than in arithmetic. fmax
    and fmin turn NaN into the bound, so NaN becomes 0 and infinities the range's ends.
    """
    out = np.empty(arr.shape, np.uint8 if top == 255 else np.uint16)
    if _quantised_by_core(arr, top, out):
        return out
    work = np.float32 if arr.dtype == np.float32 else np.float64
    rows = max(1, (1 << 16) // max(1, arr[0].size))  # about 64 K values a block
    for i in range(0, arr.shape[0], rows):
        block = np.multiply(arr[i : i + rows], top, dtype=work)
        np.fmax(block, 0, out=block)
        np.fmin(block, top, out=block)
        np.rint(block, out=block)
        out[i : i + rows] = block
    return out


def _quantised_by_core(arr: np.ndarray, top: int, out: np.ndarray) -> bool:
    """out quantised by the compiled core, for a filter's float32 or float64 result (its
    planes seen channels-last); False where the core is not built (``CONVTOOL_AOT=0``, no
    compiler) or takes no such array."""
    if arr.dtype not in (np.float32, np.float64):
        return False
    from convtool.core import engine

    core = engine.for_samples(arr.size)
    if core is None:
        return False
    planes, out = (arr[None], out[:, :, None]) if arr.ndim == 2 else (arr.transpose(2, 0, 1), out)
    return core.quantise(planes, np.array([top], arr.dtype), out)


def _encode_pillow(f: IO[bytes], pixels: np.ndarray, *, fmt: str, **options: Any) -> None:
    from PIL import Image as PILImage

    PILImage.fromarray(pixels).save(f, format=fmt, **options)


def _encode_png(f: IO[bytes], pixels: np.ndarray, *, bit_depth: int, **options: Any) -> None:
    level, meta = options.get("compress_level", 1), options.get("meta")
    if bit_depth == 16:
        png.write(f, pixels, level, png_chunks(meta))
        return
    try:  # imagecodecs: libdeflate (or libpng, levels 6-9), faster than Pillow's encoder
        png.write(f, pixels, level, png_chunks(meta))
    except ImportError:
        _encode_pillow(f, pixels, fmt="PNG", compress_level=level, **pillow_options(meta, "png"))


def _encode_jpeg(f: IO[bytes], pixels: np.ndarray, **options: Any) -> None:
    meta, kept = options.get("meta"), options.get("coding") or jpeg.Coding()
    quality = options.get("quality") or kept.quality or JPEG_QUALITY
    subsampling = kept.subsampling or "4:4:4"
    try:  # libjpeg-turbo through imagecodecs: Pillow's bytes, without importing Pillow
        found = {} if not meta else {"icc": meta.icc, "dpi": meta.dpi, "exif": meta.exif}
        f.write(jpeg.encode(pixels, quality, subsampling=subsampling, **found))
    except ImportError:
        meta_options = pillow_options(meta, "jpeg")
        if subsampling not in ("4:4:4", "4:2:2", "4:2:0"):  # those Pillow writes
            subsampling = "4:2:0"
        _encode_pillow(f, pixels, fmt="JPEG", quality=quality, subsampling=subsampling,
                       **meta_options)  # fmt: skip


def _encode_webp(f: IO[bytes], pixels: np.ndarray, **options: Any) -> None:
    meta = pillow_options(options.get("meta"), "webp")
    if options.get("quality") is None:  # lossless, colours kept under transparent pixels too
        _encode_pillow(f, pixels, fmt="WEBP", lossless=True, exact=True, **meta)
    else:
        _encode_pillow(f, pixels, fmt="WEBP", quality=options.get("quality"), **meta)


def _encode_tiff(f: IO[bytes], pixels: np.ndarray, **options: Any) -> None:
    from convtool.imaging.tiff import import_tifffile, layout_options  # TIFFs alone need it

    tifffile = import_tifffile("writing TIFF")
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    buffer = io.BytesIO()  # tifffile wants a named file or a BytesIO
    extra = tiff_options(options.get("meta"))
    tifffile.imwrite(buffer, pixels, metadata=None, **layout_options(channels), **extra)
    f.write(buffer.getbuffer())


def _encode_npy(f: IO[bytes], pixels: np.ndarray, **_: Any) -> None:
    # the header, then the bytes through f.write: np.save on a file reports a short
    # write (a full disk) as "N requested and M written", without the cause
    pixels = np.ascontiguousarray(pixels)
    np.lib.format.write_array_header_1_0(f, np.lib.format.header_data_from_array_1_0(pixels))
    f.write(memoryview(pixels).cast("B"))


_ENCODERS = {
    "png": _encode_png,
    "jpeg": _encode_jpeg,
    "bmp": lambda f, px, **_: _encode_pillow(f, px, fmt="BMP"),
    "webp": _encode_webp,
    "tiff": _encode_tiff,
    "npy": _encode_npy,
}
