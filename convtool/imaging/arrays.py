""".npy arrays: parsed with their header checked, as pictures, and saved or loaded as they are."""

from __future__ import annotations

import io
import math
import os
from typing import IO, Any

import numpy as np

from convtool.imaging.atomic import atomic_write_bytes
from convtool.imaging.errors import ImageReadError, ImageWriteError, label, one_line, quiet_decoders
from convtool.imaging.formats import NPY_MAGIC
from convtool.imaging.source import check_pixel_count, read_source

__all__ = ["image_from_npy", "load_array", "parse_npy", "save_array"]

PathLike = str | os.PathLike


def parse_npy(buf: bytes, name: str, max_pixels: int | None = None) -> np.ndarray:
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


def image_from_npy(arr: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray | None]:
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
    buf, source, _ = read_source(path_or_file)
    name = label(source)
    if not buf.startswith(NPY_MAGIC):
        raise ImageReadError(f"cannot read {name}: not a .npy file (no NumPy header)")
    with quiet_decoders():
        return np.array(parse_npy(buf, name))
