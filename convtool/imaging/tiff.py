"""A TIFF picture read region by region, never whole: the input of :mod:`convtool.batch.tiled`.

Uncompressed pictures stored in one run (the common case, and what ``convtool``
writes) are read row segment by row segment straight into the region: no memory
map, whose pages (and the kernel's fault-around of 64 KiB per touched page)
would count in the process's memory while mapped. Anything else (compressed,
tiled or striped) is read segment by segment (a TIFF tile or strip) through
``tifffile``'s own decoders; decoded segments are kept in a small cache, since
neighbouring regions overlap by the kernel's reach. A compressed picture stored
as one strip has to be decoded whole: that is the file's layout, not a choice
made here.

Pixels come out exactly as :func:`convtool.imaging.read_image` gives them (same
scaling, same alpha rule), so a region equals the same slice of the whole
picture read at once. Layouts that the whole-picture reader would take through
Pillow with another meaning (palette, CMYK, bilevel, premultiplied alpha, ...)
are refused with :class:`Unsupported`.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator
from typing import IO, Any

import numpy as np

from convtool.imaging.formats import TIFF_MAGICS
from convtool.imaging.image import unit_scaled
from convtool.imaging.metadata import Metadata

__all__ = [
    "CACHE_BYTES",
    "TiffSource",
    "Unsupported",
    "import_tifffile",
    "is_tiff",
    "layout_options",
    "write_tiles",
]

# decoded segments kept for neighbouring regions; a region's own segments are
# always kept while it is assembled, whatever this says
CACHE_BYTES = 32 * 2**20
_MINISBLACK, _RGB = 1, 2
_UNASSALPHA = 2
_PREADV = hasattr(os, "preadv")


class Unsupported(ValueError):
    """A TIFF that cannot be read region by region with the whole-picture reader's meaning."""


def is_tiff(path: str) -> bool:
    """Whether the file at ``path`` starts like a TIFF (False if it cannot be opened)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) in TIFF_MAGICS
    except OSError:
        return False


def import_tifffile(purpose: str) -> Any:
    """Import tifffile, or raise ImportError saying what ``purpose`` needs it for."""
    try:
        import tifffile
    except ImportError:
        raise ImportError(f"{purpose} needs the tifffile package (pip install tifffile)") from None
    return tifffile


def layout_options(samples: int) -> dict[str, Any]:
    """tifffile's options for pictures of ``samples`` per pixel (grey or RGB, alpha last)."""
    options: dict[str, Any] = {"photometric": "rgb" if samples >= 3 else "minisblack"}
    if samples > 1:
        options["planarconfig"] = "contig"
    if samples in (2, 4):
        options["extrasamples"] = ("unassalpha",)
    return options


def tiff_metadata(page: Any) -> Metadata:
    """A tifffile page's ICC profile and resolution (dots per inch), as Pillow reads them."""
    tags = page.tags
    icc = tags.get(34675)  # InterColorProfile
    icc = bytes(icc.value) if icc is not None else None
    dpi = None
    try:
        x, y = (tags[t].value for t in ("XResolution", "YResolution"))
        unit = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else 2
        scale = {2: 1.0, 3: 2.54}.get(unit)  # per inch, per centimetre
        if scale is not None and x[1] and y[1] and x[0] > 0 and y[0] > 0:
            dpi = (x[0] / x[1] * scale, y[0] / y[1] * scale)
    except (KeyError, TypeError, ValueError, IndexError):  # none, or malformed: none
        dpi = None
    return Metadata(icc or None, dpi, None)


def write_tiles(
    f: IO[bytes],
    tiles: Iterator[np.ndarray],
    *,
    name: str,
    shape: tuple[int, ...],
    dtype: Any,
    tile: int,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write a tiled TIFF of ``shape`` ((H, W) or (H, W, samples)) to the binary file ``f``;
    ``extra``: more of tifffile's options (the metadata's, :func:`tiff_options`).

    ``tiles`` gives the ``tile`` x ``tile`` tiles in TIFF order (row by row), each
    already quantised to ``dtype``; the picture is never whole in memory. BigTIFF
    is chosen when the padded tiles come near 4 GiB. ``name`` is the file's name
    for tifffile's messages. Uncompressed, as :func:`convtool.imaging.write_image`
    writes TIFFs.
    """
    import tifffile

    height, width = shape[:2]
    samples = 1 if len(shape) == 2 else shape[2]
    padded = -(-height // tile) * tile * -(-width // tile) * tile * samples
    handle = tifffile.FileHandle(f, mode="wb", name=name)
    tifffile.imwrite(
        handle,
        data=tiles,
        shape=shape,
        dtype=dtype,
        tile=(tile, tile),
        bigtiff=padded * np.dtype(dtype).itemsize > 2**32 - 2**25,
        metadata=None,
        **layout_options(samples),
        **(extra or {}),
    )


def _read_at(fh: Any, buffer: np.ndarray, offset: int) -> None:
    """Fill the contiguous ``buffer`` with the file's bytes at ``offset``."""
    view = memoryview(buffer).cast("B")
    if _PREADV:
        done = os.preadv(fh.fileno(), [view], offset)
    else:
        fh.seek(offset)
        done = fh.readinto(view)
    if done != view.nbytes:
        # a ValueError, not an OSError: the input is at fault, not the output being written
        raise ValueError(f"the file ends {view.nbytes - done} bytes early (truncated TIFF)")


def _runs(index: np.ndarray) -> list[tuple[int, int, int]]:
    """Runs of consecutive values in sorted unique ``index``: (position, first, past-last)."""
    breaks = np.flatnonzero(np.diff(index) != 1) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [len(index)]])
    return [
        (int(a), int(index[a]), int(index[b - 1]) + 1) for a, b in zip(starts, stops, strict=True)
    ]


class TiffSource:
    """The first page of a TIFF file, read region by region.

    Attributes
    ----------
    height, width : int
    channels : int
        1 (grey) or 3 (RGB), alpha not counted.
    has_alpha : bool
    bit_depth : int
        8, 16 or 32 (float), as :class:`convtool.imaging.Image` reports it.
    """

    def __init__(self, path: str, *, cache_bytes: int = CACHE_BYTES) -> None:
        import tifffile

        self.path = path
        self._tif = tifffile.TiffFile(path)
        self._cache: OrderedDict[int, Any] = OrderedDict()
        self._cached = 0
        self._cache_bytes = cache_bytes
        try:
            self._inspect(self._tif.pages.first)
        except BaseException:
            self._tif.close()
            raise

    def _inspect(self, page: Any) -> None:
        self._page = page
        separate, depth, height, width, contig = page.shaped
        samples = separate * contig
        extras = tuple(int(e) for e in page.extrasamples)
        self.has_alpha = bool(extras) and samples in (2, 4)
        color = samples - len(extras)
        photometric = int(page.photometric)
        if depth != 1 or len(extras) > 1 or (extras and extras[0] != _UNASSALPHA):
            raise Unsupported(
                f"{samples} samples with extra samples {extras or 'none'} (grey, RGB and an "
                "unassociated alpha are read in tiles)"
            )
        if (photometric, color) not in ((_MINISBLACK, 1), (_RGB, 3)):
            raise Unsupported(f"photometric {photometric} with {samples} samples")
        dtype = np.dtype(page.dtype) if page.dtype is not None else None
        if dtype is None or dtype.kind == "b":
            raise Unsupported(f"{page.bitspersample}-bit samples")
        bits = {"u1": 8, "u2": 16}.get(dtype.str[1:], 32 if dtype.kind == "f" else None)
        if bits is None:
            raise Unsupported(f"sample type {dtype}")
        self.height, self.width = int(height), int(width)
        self.channels, self.bit_depth = color, bits
        self._samples, self._separate, self._contig = samples, separate, contig
        self._dtype = dtype.newbyteorder(self._tif.byteorder)
        self._final = bool(page.is_final) and self._tif.filehandle.is_file
        self._offset = int(page.dataoffsets[0]) if self._final else 0
        self.meta = tiff_metadata(page)

    # ------------------------------------------------------------ raw samples

    def _block(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """Stored samples of rows r0:r1, columns c0:c1, as (rows, cols, samples)."""
        out = np.empty((r1 - r0, c1 - c0, self._samples), self._dtype)
        if self._final:
            self._rows(out, r0, r1, c0, c1)
        else:
            self._decoded(out, r0, r1, c0, c1)
        return out

    def _rows(self, out: np.ndarray, r0: int, r1: int, c0: int, c1: int) -> None:
        item, width, contig = self._dtype.itemsize, self.width, self._contig
        line = np.empty((c1 - c0, contig), self._dtype)
        fh = self._tif.filehandle
        for plane in range(self._separate):
            channels = slice(plane * contig, (plane + 1) * contig)
            for r in range(r0, r1):
                start = self._offset + (((plane * self.height + r) * width + c0) * contig) * item
                if self._separate == 1:
                    _read_at(fh, out[r - r0], start)
                else:
                    _read_at(fh, line, start)
                    out[r - r0, :, channels] = line

    def _segment_grid(self) -> tuple[int, int, int, int]:
        """(segment rows, segment columns, segments down, segments across)."""
        page = self._page
        if page.is_tiled:
            length, width = int(page.tilelength), int(page.tilewidth)
        else:
            length, width = int(page.rowsperstrip) or self.height, self.width
            length = min(length, self.height)
        return length, width, -(-self.height // length), -(-self.width // width)

    def _decoded(self, out: np.ndarray, r0: int, r1: int, c0: int, c1: int) -> None:
        length, width, down, across = self._segment_grid()
        for plane in range(self._separate):
            for i in range(r0 // length, (r1 - 1) // length + 1):
                for j in range(c0 // width, (c1 - 1) // width + 1):
                    index = (plane * down + i) * across + j
                    segment, (_, _, y, x, _), _ = self._segment(index)
                    seg = segment[0]  # (rows, cols, contig samples)
                    ys, ye = max(r0, y), min(r1, y + seg.shape[0])
                    xs, xe = max(c0, x), min(c1, x + seg.shape[1])
                    if ys >= ye or xs >= xe:
                        continue
                    channels = slice(plane * self._contig, (plane + 1) * self._contig)
                    out[ys - r0 : ye - r0, xs - c0 : xe - c0, channels] = seg[
                        ys - y : ye - y, xs - x : xe - x
                    ]

    def _segment(self, index: int) -> Any:
        hit = self._cache.get(index)
        if hit is not None:
            self._cache.move_to_end(index)
            return hit
        page = self._page
        fh = self._tif.filehandle
        count = int(page.databytecounts[index])
        data = None
        if count:
            fh.seek(int(page.dataoffsets[index]))
            data = fh.read(count)
        kwargs: dict[str, Any] = {"_fullsize": bool(page.is_tiled)}
        if page.compression in (6, 7, 34892, 33007):  # JPEG flavours
            kwargs.update(jpegtables=page.jpegtables, jpegheader=page.jpegheader)
        segment, where, shape = page.decode(data, index, **kwargs)
        if segment is None:  # an empty segment: zeros, as tifffile fills it
            segment = np.zeros(shape, self._dtype)
        decoded = (segment.reshape(shape), where, shape)
        self._cache[index] = decoded
        self._cached += decoded[0].nbytes
        while self._cached > self._cache_bytes and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cached -= old[0].nbytes
        return decoded

    # ------------------------------------------------------------ pixels

    def region(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Pixels at ``rows`` x ``cols`` (indices inside the picture, any order, repeats
        allowed), as read_image gives them: float32 (n, m) or (n, m, 3), and the alpha
        (n, m) or None."""
        rows, cols = np.asarray(rows, np.intp), np.asarray(cols, np.intp)
        urows, ucols = np.unique(rows), np.unique(cols)
        raw = np.empty((len(urows), len(ucols), self._samples), self._dtype)
        for ra, r0, r1 in _runs(urows):
            for ca, c0, c1 in _runs(ucols):
                raw[ra : ra + r1 - r0, ca : ca + c1 - c0] = self._block(r0, r1, c0, c1)
        if not np.array_equal(urows, rows):
            raw = raw[np.searchsorted(urows, rows)]
        if not np.array_equal(ucols, cols):
            raw = raw[:, np.searchsorted(ucols, cols)]
        full = unit_scaled(raw, self.bit_depth)
        alpha = np.ascontiguousarray(full[..., -1]) if self.has_alpha else None
        data = full[..., : self.channels]
        if self.channels == 1:
            data = data[..., 0]
        return np.ascontiguousarray(data), alpha

    def close(self) -> None:
        self._cache.clear()
        self._tif.close()

    def __enter__(self) -> TiffSource:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
