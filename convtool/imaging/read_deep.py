"""Pictures read without Pillow: PNG through :mod:`convtool.imaging.png` (imagecodecs:
faster, and the only way to 16-bit colour), JPEG without EXIF through
:mod:`convtool.imaging.jpeg` (imagecodecs: the same pixels, faster), and the TIFFs Pillow
reads down to 8 bits or not at all (16-bit colour, float) through ``tifffile``; each
imported only when needed.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from typing import Any

import numpy as np

from convtool.imaging import jpeg, png
from convtool.imaging.errors import ImageReadError, label, one_line
from convtool.imaging.image import Image, mode_of, unit_scaled
from convtool.imaging.metadata import Metadata
from convtool.imaging.source import check_pixel_count

__all__ = ["read_jpeg", "read_png", "read_tiff"]


def read_tiff(buf: bytes, source: str, max_pixels: int | None) -> Image:
    """Read 16-bit colour and float TIFFs (Pillow drops bits or refuses) with tifffile."""
    from convtool.imaging.tiff import import_tifffile  # here: PNG and JPEG need none of it

    name = label(source)
    try:
        tifffile = import_tifffile("reading a 16-bit colour or float TIFF")
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
    colours = {1: 1, 2: 3}  # photometric MinIsBlack, RGB -> colour samples (alpha aside)
    if photometric not in colours or channels - has_alpha != colours[photometric]:
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
    return Image(data, alpha, bit_depth, mode_of(data, alpha), source, "TIFF")


def read_png(buf: bytes, source: str, max_pixels: int | None, keep: bool = False) -> Image:
    """Read a PNG that :func:`convtool.imaging.png.decodable` accepts, with its ICC profile
    and resolution, as Pillow would read it; ``keep``: its data as the stored samples."""
    name = label(source)
    head = png.header(buf)
    assert head is not None  # the caller checked
    check_pixel_count(head.width, head.height, max_pixels, name)
    pixels, trns = _decoded(png.decode, buf, name, "PNG")
    depth = 8 if pixels.dtype == np.uint8 else 16
    samples = 1 if pixels.ndim == 2 else pixels.shape[2]
    colours = pixels[..., : samples - 1] if samples in (2, 4) else pixels
    alpha = unit_scaled(pixels[..., -1], depth) if samples in (2, 4) else None
    if trns is not None and alpha is None and len(trns) == 2 * samples:  # a see-through colour
        key = struct.unpack(f">{samples}H", trns)
        planes = [pixels] if pixels.ndim == 2 else [pixels[..., c] for c in range(samples)]
        see = np.any([p != k for p, k in zip(planes, key, strict=True)], axis=0)
        alpha = see.astype(np.float32)
    data = colours[..., 0] if colours.ndim == 3 and samples == 2 else colours
    data = data if keep else unit_scaled(data, depth)
    meta = Metadata(*png.profile_and_dpi(buf))
    return Image(data, alpha, depth, mode_of(data, alpha), source, "PNG", meta)


def read_jpeg(
    buf: bytes, source: str, max_pixels: int | None, head: jpeg.Header, keep: bool = False
) -> Image:
    """Read a JPEG that :func:`convtool.imaging.jpeg.decodable` accepts (``head``: its
    header), with its ICC profile and resolution, as Pillow would read it; ``keep``: its
    data as the stored 8-bit samples."""
    name = label(source)
    check_pixel_count(head.width, head.height, max_pixels, name)
    data = _decoded(jpeg.decode, buf, name, "JPEG")
    data = data if keep else unit_scaled(data, 8)
    meta = Metadata(head.icc, head.dpi)
    return Image(data, None, 8, mode_of(data, None), source, "JPEG", meta, head.coding)


def _decoded(decode: Callable[[bytes], Any], buf: bytes, name: str, fmt: str) -> Any:
    """``decode(buf)``, whatever goes wrong one ImageReadError naming the file."""
    try:
        return decode(buf)
    except ImportError as e:
        raise ImageReadError(f"cannot read {name}: {e}") from None
    except MemoryError:
        raise ImageReadError(f"cannot read {name}: out of memory decoding the {fmt}") from None
    except Exception as e:
        raise ImageReadError(
            f"cannot read {name}: truncated or corrupt {fmt} file ({one_line(e)})"
        ) from e
