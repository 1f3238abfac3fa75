"""A tiled (Big)TIFF written tile by tile, never whole: the output side of tiled filtering.

:func:`write_tiled_tiff` is to :func:`convtool.imaging.write_image` what
:class:`convtool.imaging.tiff.TiffSource` is to :func:`convtool.imaging.read_image`:
the tiles come from an iterator, are quantised exactly as ``write_image``
quantises a whole picture, and are streamed into the file, so memory holds a
few tiles whatever the picture's size. The file is written atomically (see
:func:`convtool.imaging.atomic_write`): it appears whole or not at all.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

__all__ = ["write_tiled_tiff"]

_DTYPES = {8: np.uint8, 16: np.uint16, 32: np.float32}


def write_tiled_tiff(
    path: str,
    tiles: Iterable[tuple[np.ndarray, np.ndarray | None]],
    *,
    shape: tuple[int, ...],
    alpha: bool,
    bit_depth: int,
    tile: int,
    overwrite: bool = False,
    meta: Any = None,
) -> None:
    """Write float tiles into a tiled TIFF at ``path``, atomically.

    Parameters
    ----------
    path : str
        The target file.
    tiles : iterable of (data, alpha)
        The picture's tiles in TIFF order (row by row, left to right), each
        ``tile`` x ``tile`` but at the right and bottom edges: ``data`` (h, w)
        or (h, w, C) floats, ``alpha`` (h, w) or None, as ``write_image`` takes
        them. Errors the iterator raises pass through; the file is not written.
    shape : tuple of int
        The whole picture's (H, W) or (H, W, C), alpha left out.
    alpha : bool
        Whether the tiles bring alpha (written as an unassociated extra sample).
    bit_depth : int
        8, 16 or 32 (float32, raw values).
    tile : int
        The tiles' side, a multiple of 16.
    overwrite : bool
        Refuse to replace an existing file unless True.
    meta : Metadata, optional
        The ICC profile and resolution to write (:mod:`convtool.imaging.metadata`).

    Raises
    ------
    ImageWriteError
        The file cannot be written (one line, naming ``path``).
    """
    from convtool.imaging import ImageWriteError, atomic_write, one_line
    from convtool.imaging.metadata import tiff_options
    from convtool.imaging.tiff import write_tiles

    height, width = shape[:2]
    samples = (1 if len(shape) == 2 else shape[2]) + alpha
    full = (height, width) if samples == 1 else (height, width, samples)
    try:
        with atomic_write(path, overwrite=overwrite) as f:
            write_tiles(
                f,
                _quantised(tiles, bit_depth, path),
                name=os.path.basename(path),
                shape=full,
                dtype=_DTYPES[bit_depth],
                tile=tile,
                extra=tiff_options(meta),
            )
    except (OSError, ImportError) as e:
        raise ImageWriteError(f"cannot write {path}: {one_line(e)}") from e


def _quantised(
    tiles: Iterable[tuple[np.ndarray, np.ndarray | None]], bit_depth: int, path: str
) -> Iterator[np.ndarray]:
    """Each tile's samples as write_image would write them (alpha appended, quantised)."""
    from convtool.imaging import prepare_pixels

    for data, alpha in tiles:
        yield prepare_pixels(data, alpha, "tiff", bit_depth, path)
