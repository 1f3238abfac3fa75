"""Tests for convtool.imaging.write: round trips, quantising, encoders, validation."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image as PILImage

from convtool.imaging import (
    ImageWriteError,
    read_image,
    write_image,
)
from convtool.imaging.write import _ENCODERS, prepare_pixels
from tests.imaging.pictures import (
    full,
    ints,
)


@pytest.mark.parametrize("ext", ["png", "tif", "npy", "webp"])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_round_trip_8bit_exact(tmp_path, ext, channels):
    shape = (6, 9) if channels == 1 else (6, 9, channels)
    k = ints(shape)
    path = tmp_path / f"p.{ext}"
    write_image(path, k / 255)
    image = read_image(path)
    got = full(image)
    if ext == "webp" and channels in (1, 2):  # WebP has no grey: three equal channels come back
        assert image.mode == ("RGB" if channels == 1 else "RGBA")
        grey = k if channels == 1 else k[:, :, 0]
        assert np.array_equal(np.rint(image.data * 255), np.dstack([grey] * 3))
        return
    assert image.mode == {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]
    assert image.bit_depth == (32 if ext == "npy" else 8)
    assert got.dtype == np.float32 and got.shape == k.shape
    assert np.array_equal(np.rint(got * 255), k)
    if channels in (2, 4):
        assert image.alpha is not None and image.alpha.shape == (6, 9)


@pytest.mark.parametrize("ext", ["png", "tif"])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_round_trip_16bit_exact(tmp_path, ext, channels):
    shape = (5, 11) if channels == 1 else (5, 11, channels)
    k = ints(shape, 65535)
    k.flat[0], k.flat[1] = 0, 65535
    write_image(tmp_path / f"p.{ext}", k / 65535, bit_depth=16)
    image = read_image(tmp_path / f"p.{ext}")
    assert image.bit_depth == 16 and image.format == ext.upper().replace("TIF", "TIFF")
    assert np.array_equal(np.rint(full(image) * 65535), k)
    assert full(image).min() == 0.0 and full(image).max() == 1.0


def test_alpha_is_separate_and_written_back(tmp_path):
    rgb, a = ints((4, 5, 3)) / 255, ints((4, 5)) / 255
    write_image(tmp_path / "a.png", rgb, alpha=a)
    image = read_image(tmp_path / "a.png")
    assert image.mode == "RGBA" and image.data.shape == (4, 5, 3)
    assert np.allclose(image.data, rgb, atol=1e-7) and np.allclose(image.alpha, a, atol=1e-7)
    write_image(tmp_path / "b.png", image.data, alpha=image.alpha)
    assert np.array_equal(
        np.asarray(PILImage.open(tmp_path / "b.png")), np.rint(np.dstack([rgb, a]) * 255)
    )


def test_pillow_reads_16bit_colour_png_as_8bit_and_our_encoder_agrees(tmp_path):
    """Pillow keeps only the high byte of 16-bit colour samples (why io reads them itself).

    It also checks our Paeth-filtering writer with Pillow's decoder."""
    k = ints((13, 17, 3), 65535)
    write_image(tmp_path / "c.png", k / 65535, bit_depth=16)
    with PILImage.open(tmp_path / "c.png") as im:
        assert im.mode == "RGB"
        assert np.array_equal(np.asarray(im), k >> 8)
    k4 = ints((7, 3, 4), 65535)
    write_image(tmp_path / "d.png", k4 / 65535, bit_depth=16)
    with PILImage.open(tmp_path / "d.png") as im:
        assert im.mode == "RGBA" and np.array_equal(np.asarray(im), k4 >> 8)


def test_float_tiff_is_raw_and_exact(tmp_path):
    values = np.array([[-3.5, 0.25, 1e6], [np.nan, np.inf, 2.0]], np.float32)
    for data in (values, np.dstack([values, values * 2, -values])):
        write_image(tmp_path / "f.tif", data, bit_depth=32, overwrite=True)
        image = read_image(tmp_path / "f.tif")
        assert image.bit_depth == 32 and image.data.dtype == np.float32
        assert np.array_equal(image.data, data, equal_nan=True)


@pytest.mark.parametrize("ext", ["jpg", "bmp"])
def test_formats_without_alpha_drop_it(tmp_path, ext):
    rgb = np.clip(np.linspace(0, 1, 8 * 8 * 3).reshape(8, 8, 3), 0, 1)
    write_image(tmp_path / f"x.{ext}", rgb, alpha=np.zeros((8, 8)))
    image = read_image(tmp_path / f"x.{ext}")
    assert image.alpha is None and image.mode == "RGB"
    tolerance = 0.03 if ext == "jpg" else 0.5 / 255 + 1e-6
    assert np.abs(image.data - rgb).max() <= tolerance
    write_image(tmp_path / f"g.{ext}", rgb[:, :, 0], alpha=np.ones((8, 8)))
    assert read_image(tmp_path / f"g.{ext}").mode == "L"


def test_write_to_stdout(capsysbinary):
    k = ints((3, 4)).astype(np.uint8)
    write_image("-", k / 255, format="png")
    out = capsysbinary.readouterr().out
    assert np.array_equal(np.asarray(PILImage.open(io.BytesIO(out))), k)
    write_image("-", k / 255, format="NPY")
    assert np.array_equal(
        np.load(io.BytesIO(capsysbinary.readouterr().out)), (k / 255).astype(np.float32)
    )
    with pytest.raises(ImageWriteError, match=r"cannot write standard output: .* give the format"):
        write_image("-", k / 255)


def test_rounding_and_clipping(tmp_path):
    data = np.array([[-0.5, 0.0, 0.2, 1.0, 1.7, np.nan, np.inf, -np.inf, 0.5 / 255, 1.5 / 255]])
    write_image(tmp_path / "r.png", data)
    got = np.asarray(PILImage.open(tmp_path / "r.png"))
    assert got.tolist() == [[0, 0, 51, 255, 255, 0, 255, 0, 0, 2]]  # np.rint: halves to even


@settings(max_examples=60, deadline=None)
@given(
    values=hnp.arrays(
        st.sampled_from([np.float32, np.float64]),
        hnp.array_shapes(min_dims=2, max_dims=3, min_side=1, max_side=9),
        elements=st.floats(-2, 3, width=32) | st.sampled_from([np.nan, np.inf, -np.inf, 0.5]),
    ),
    depth=st.sampled_from([8, 16]),
    planes=st.booleans(),
)
def test_quantising_is_rint_of_the_clipped_product(values, depth, planes):
    """Whichever route quantises (the compiled core's pass, or numpy's): the same."""
    if values.ndim == 3:
        values = values[:, :, :3]
        if planes:  # as a filter's result: planes seen channels-last
            values = np.ascontiguousarray(values.transpose(2, 0, 1)).transpose(1, 2, 0)
    top = 255 if depth == 8 else 65535
    product = np.nan_to_num(values * values.dtype.type(top), nan=0.0, posinf=top, neginf=0.0)
    expected = np.rint(np.clip(product, 0, top)).astype(np.uint8 if depth == 8 else np.uint16)
    if expected.ndim == 3 and expected.shape[2] == 1:  # one channel: written as grey
        expected = expected[:, :, 0]
    np.testing.assert_array_equal(prepare_pixels(values, None, "png", depth, "x.png"), expected)


def test_png_compress_level(tmp_path):
    smooth = np.tile(np.linspace(0, 1, 64), (64, 1))
    write_image(tmp_path / "0.png", smooth, compress_level=0)
    write_image(tmp_path / "9.png", smooth, compress_level=9)
    assert (tmp_path / "9.png").stat().st_size < (tmp_path / "0.png").stat().st_size
    with pytest.raises(ImageWriteError, match=r"compress_level must be 0\.\.9"):
        write_image(tmp_path / "x.png", smooth, compress_level=10)


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("x.jpg", {"bit_depth": 16}, "JPEG takes bit_depth 8, not 16"),
        ("x.png", {"bit_depth": 32}, r"PNG takes bit_depth 8 or 16, not 32; use \.tif or \.npy"),
        ("x.gif", {}, r"extension '\.gif'; can write"),
        ("x.xyz", {}, r"extension '\.xyz'"),
        ("x.png", {"format": "psd"}, "unknown format 'psd'"),
        ("x.png", {"data": np.zeros((2, 2, 5))}, r"C in 1..4; got shape \(2, 2, 5\)"),
        ("x.png", {"data": np.zeros((2, 2, 2, 2))}, "got shape"),
        ("x.png", {"data": np.zeros((0, 3))}, "empty"),
        ("x.png", {"data": np.zeros((2, 2), complex)}, "real numbers, not complex128"),
        ("x.png", {"alpha": np.zeros((3, 3))}, r"alpha must be real numbers of shape \(2, 2\)"),
        ("x.png", {"data": np.zeros((2, 2, 4)), "alpha": np.zeros((2, 2))}, "alpha is given too"),
    ],
)
def test_write_validation(tmp_path, name, kwargs, message):
    data = kwargs.pop("data", np.zeros((2, 2)))
    with pytest.raises(ImageWriteError, match=message):
        write_image(tmp_path / name, data, **kwargs)
    assert os.listdir(tmp_path) == []


def test_format_overrides_extension(tmp_path):
    write_image(tmp_path / "weird.dat", np.zeros((2, 2)), format="tif")
    assert read_image(tmp_path / "weird.dat").format == "TIFF"


@pytest.mark.parametrize("error", [OSError("No space left on device"), RuntimeError("bug")])
def test_failed_encoding_leaves_old_target_and_no_temp(tmp_path, monkeypatch, error):
    target = tmp_path / "t.png"
    target.write_bytes(b"precious")

    def broken(f, pixels, **kwargs):
        f.write(b"half a picture")
        raise error

    monkeypatch.setitem(_ENCODERS, "png", broken)
    expected = ImageWriteError if isinstance(error, OSError) else RuntimeError
    with pytest.raises(expected, match=r"No space left|bug"):
        write_image(target, np.zeros((2, 2)), overwrite=True)
    assert target.read_bytes() == b"precious"
    assert os.listdir(tmp_path) == ["t.png"]
    with pytest.raises(expected):
        write_image(tmp_path / "new.png", np.zeros((2, 2)))
    assert os.listdir(tmp_path) == ["t.png"]
