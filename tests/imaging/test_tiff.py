"""Tests for convtool.imaging.tiff's writing side: the tiled TIFF sink and its layout options."""

from __future__ import annotations

import io

import numpy as np
import pytest

from convtool.imaging import read_image
from convtool.imaging.tiff import TiffSource, layout_options, write_tiles


def _tiles(pixels: np.ndarray, tile: int):
    height, width = pixels.shape[:2]
    for r in range(0, height, tile):
        for c in range(0, width, tile):
            block = pixels[r : r + tile, c : c + tile]
            padded = np.zeros((tile, tile, *pixels.shape[2:]), pixels.dtype)
            padded[: block.shape[0], : block.shape[1]] = block
            yield padded


@pytest.mark.parametrize("samples", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_write_tiles_reads_back_whole_and_by_region(tmp_path, samples, dtype):
    rng = np.random.default_rng(samples)
    shape = (37, 21) if samples == 1 else (37, 21, samples)
    top = 1.0 if dtype == np.float32 else np.iinfo(dtype).max
    pixels = (rng.random(shape) * top).astype(dtype)
    path = tmp_path / "t.tif"
    with open(path, "wb") as f:
        write_tiles(f, _tiles(pixels, 16), name="t.tif", shape=shape, dtype=dtype, tile=16)
    scale = 1 if dtype == np.float32 else top
    image = read_image(path)
    whole = image.data if image.alpha is None else np.dstack([image.data, image.alpha])
    assert np.array_equal(whole.reshape(shape) * np.float32(scale), pixels.astype(np.float32))
    with TiffSource(str(path)) as source:
        data, alpha = source.region(np.arange(3, 30), np.arange(20))
    assert np.array_equal(data, image.data[3:30, :20])
    assert (alpha is None) == (image.alpha is None)


def test_write_tiles_matches_tifffile_with_the_same_options():
    import tifffile

    pixels = np.arange(32 * 16 * 3, dtype=np.uint8).reshape(32, 16, 3)
    ours = io.BytesIO()
    write_tiles(ours, _tiles(pixels, 16), name="x.tif", shape=pixels.shape, dtype=np.uint8, tile=16)
    theirs = io.BytesIO()
    tifffile.imwrite(theirs, pixels, tile=(16, 16), metadata=None, **layout_options(3))
    assert ours.getvalue() == theirs.getvalue()


def test_layout_options():
    assert layout_options(1) == {"photometric": "minisblack"}
    assert layout_options(2) == {
        "photometric": "minisblack",
        "planarconfig": "contig",
        "extrasamples": ("unassalpha",),
    }
    assert layout_options(3) == {"photometric": "rgb", "planarconfig": "contig"}
    assert layout_options(4)["extrasamples"] == ("unassalpha",)
