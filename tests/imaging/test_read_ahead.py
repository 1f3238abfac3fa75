"""Tests for reading ahead (convtool.imaging.read_ahead): the picture a later read_image
takes is the one it would have read, errors included; other formats are left to it."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image as PILImage

from convtool.imaging import DEFAULT, ImageReadError, ahead, read_ahead, read_image
from convtool.imaging.source import pixel_limit
from tests.imaging.pictures import ints
from tests.imaging.test_jpeg import exif_bytes, pillow_jpeg


def _same(a, b):
    assert a.format == b.format and a.mode == b.mode and a.bit_depth == b.bit_depth
    assert np.array_equal(a.data, b.data) and a.meta == b.meta
    assert (a.alpha is None) == (b.alpha is None)


def _key(path, limit=DEFAULT):
    return (str(path), pixel_limit(limit))


def _settled(path, limit=DEFAULT):
    """Wait until the read ahead of ``path`` is over (it is still to be taken)."""
    ahead._pending[_key(path, limit)].thread.join()


def _write(path, pixels, **options):
    PILImage.fromarray(pixels).save(path, **options)
    return path


@pytest.mark.parametrize("name", ["x.png", "x.jpg", "rgba.png"])
def test_the_picture_read_ahead_is_the_one_read_image_reads(tmp_path, name):
    pixels = ints((37, 23, 4 if name == "rgba.png" else 3)).astype(np.uint8)
    path = _write(tmp_path / name, pixels, dpi=(300, 300))
    expected = read_image(path)
    read_ahead(path)
    _settled(path)
    path.write_bytes(b"replaced")  # read_image takes what was read ahead
    _same(read_image(path), expected)
    with pytest.raises(ImageReadError):  # once: the next read reads the file
        read_image(path)


def test_an_error_read_ahead_is_raised_as_read_image_raises_it(tmp_path):
    path = tmp_path / "cut.jpg"
    path.write_bytes(pillow_jpeg(ints((64, 64, 3)).astype(np.uint8))[:300] + b"\xff\xd9")
    with pytest.raises(ImageReadError) as plain:
        read_image(path)
    read_ahead(path)
    with pytest.raises(ImageReadError) as early:
        read_image(path)
    assert str(early.value) == str(plain.value)


def test_the_limit_read_ahead_with_holds(tmp_path):
    path = _write(tmp_path / "x.png", ints((40, 50, 3)).astype(np.uint8))
    read_ahead(path, max_pixels=1000)
    with pytest.raises(ImageReadError, match="pixels"):
        read_image(path, max_pixels=1000)
    read_ahead(path, max_pixels=1000)  # another limit: read_image reads the file itself
    assert read_image(path, max_pixels=None).data.shape == (40, 50, 3)
    with pytest.raises(ImageReadError, match="pixels"):  # still there, for its own limit
        ahead.take(_key(path, 1000))


@pytest.mark.parametrize("kind", ["tiff", "exif jpeg", "palette png", "missing"])
def test_pictures_not_read_by_imagecodecs_are_left_to_read_image(tmp_path, kind):
    pixels = ints((16, 16, 3)).astype(np.uint8)
    path = tmp_path / "x.tif"
    if kind == "tiff":
        _write(path, pixels)
    elif kind == "exif jpeg":
        path = tmp_path / "x.jpg"
        path.write_bytes(pillow_jpeg(pixels, exif=exif_bytes(6)))
    elif kind == "palette png":
        path = tmp_path / "x.png"
        PILImage.fromarray(pixels).convert("P").save(path)
    read_ahead(path)
    assert ahead.take(_key(path)) is None
