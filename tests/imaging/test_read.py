"""Tests for convtool.imaging.read: formats and modes, scaling, read errors, size limits."""

from __future__ import annotations

import io
import struct
import sys
import warnings

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import ImageFile

from convtool.imaging import (
    ImageReadError,
    read_image,
)
from tests.imaging.pictures import (
    RNG,
    chunk,
    filtered,
    full,
    ints,
    make_png,
    png16,
    png_bytes,
)


@pytest.mark.parametrize("channels", [2, 3, 4])
@pytest.mark.parametrize("interlace", [False, True])
def test_16bit_colour_png_from_an_independent_encoder(channels, interlace):
    for h, w in [(1, 1), (3, 2), (9, 13), (16, 8)]:
        k = ints((h, w, channels), 65535)
        image = read_image(io.BytesIO(png16(k, interlace)))
        assert np.array_equal(np.rint(full(image) * 65535), k), (h, w)


def test_16bit_rgb_png_key_colour_becomes_alpha():
    k = ints((4, 4, 3), 65535)
    k[1, 2] = (1000, 2000, 3000)
    trns = chunk(b"tRNS", struct.pack(">3H", 1000, 2000, 3000))
    raw = k.astype(">u2").reshape(4, -1).view(np.uint8)
    image = read_image(io.BytesIO(make_png(4, 4, 16, 2, filtered(raw, 6, [0] * 4), extra=trns)))
    expected = np.ones((4, 4), np.float32)
    expected[1, 2] = 0
    assert np.array_equal(image.alpha, expected)


def test_16bit_grey_from_pillow(tmp_path):
    k = ints((6, 7), 65535).astype(np.uint16)
    PILImage.fromarray(k).save(tmp_path / "g.png")
    image = read_image(tmp_path / "g.png")
    assert image.mode == "L" and image.bit_depth == 16
    assert np.array_equal(image.data, (k / 65535).astype(np.float32))


def test_scaling_to_unit_range(tmp_path):
    PILImage.fromarray(np.array([[0, 128, 255]], np.uint8)).save(tmp_path / "s.png")
    assert read_image(tmp_path / "s.png").data.tolist() == [[0.0, np.float32(128 / 255), 1.0]]


def test_palette_without_and_with_transparency(tmp_path):
    idx = np.array([[0, 1], [2, 1]], np.uint8)
    im = PILImage.new("P", (2, 2))
    im.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 759)
    im.putdata(idx.ravel().tolist())
    im.save(tmp_path / "p.png")
    image = read_image(tmp_path / "p.png")
    assert image.mode == "RGB" and image.alpha is None
    assert image.data[0, 0].tolist() == [1, 0, 0] and image.data[1, 0].tolist() == [0, 0, 1]
    for ext in ("png", "gif"):
        im.save(tmp_path / f"t.{ext}", transparency=1)
        image = read_image(tmp_path / f"t.{ext}")
        assert image.mode == "RGBA", ext
        assert image.alpha.tolist() == [[1, 0], [1, 0]], ext
        assert image.data[0, 0].tolist() == [1, 0, 0], ext


def test_gif_first_frame(tmp_path):
    frames = [PILImage.new("RGB", (4, 3), c) for c in [(255, 0, 0), (0, 0, 255)]]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    image = read_image(tmp_path / "a.gif")
    assert image.format == "GIF" and image.data.shape == (3, 4, 3)
    assert np.allclose(image.data, [1, 0, 0])


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    PILImage.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=95)
    image = read_image(tmp_path / "c.jpg")
    assert image.mode == "RGB" and image.format == "JPEG" and image.data.shape == (8, 8, 3)
    r, g, b = image.data.mean(axis=(0, 1))
    assert r > 0.9 and g < 0.1 and b < 0.1


def test_la_and_bilevel(tmp_path):
    k = ints((3, 4, 2)).astype(np.uint8)
    PILImage.fromarray(k).save(tmp_path / "la.png")
    image = read_image(tmp_path / "la.png")
    assert image.mode == "LA" and image.data.shape == (3, 4)
    assert np.array_equal(np.rint(image.data * 255), k[:, :, 0])
    assert np.array_equal(np.rint(image.alpha * 255), k[:, :, 1])
    bits = ints((5, 6), 1).astype(bool)
    PILImage.fromarray(bits).save(tmp_path / "b.png")
    assert PILImage.open(tmp_path / "b.png").mode == "1"
    image = read_image(tmp_path / "b.png")
    assert image.mode == "L" and image.bit_depth == 8
    assert np.array_equal(image.data, bits.astype(np.float32))


def test_rgb_key_colour_becomes_alpha(tmp_path):
    k = ints((3, 3, 3)).astype(np.uint8)
    k[0, 0] = (10, 20, 30)
    PILImage.fromarray(k).save(tmp_path / "k.png", transparency=(10, 20, 30))
    image = read_image(tmp_path / "k.png")
    assert image.mode == "RGBA" and image.alpha[0, 0] == 0 and image.alpha.sum() == 8


def test_32bit_integer_tiff(tmp_path):
    k = ints((3, 4), 65535).astype(np.int32)
    PILImage.fromarray(k).save(tmp_path / "i.tif")
    image = read_image(tmp_path / "i.tif")
    assert image.bit_depth == 16 and np.array_equal(np.rint(image.data * 65535), k)
    k[0, 0] = 70000
    PILImage.fromarray(k).save(tmp_path / "big.tif")
    with pytest.raises(ImageReadError, match=r"big\.tif: 32-bit integer picture"):
        read_image(tmp_path / "big.tif")


def test_tiffs_from_tifffile(tmp_path):
    import tifffile

    f64 = RNG.normal(size=(4, 5))
    tifffile.imwrite(tmp_path / "d.tif", f64)
    assert np.array_equal(read_image(tmp_path / "d.tif").data, f64.astype(np.float32))
    planar = ints((3, 4, 5), 65535).astype(np.uint16)  # channels first on disk
    tifffile.imwrite(tmp_path / "p.tif", planar, photometric="rgb", planarconfig="separate")
    image = read_image(tmp_path / "p.tif")
    assert image.mode == "RGB" and np.array_equal(
        np.rint(image.data * 65535), np.moveaxis(planar, 0, -1)
    )


def test_exif_orientation_applied_to_jpeg(tmp_path):
    stored = np.zeros((20, 40), np.uint8)
    stored[:, :20] = 255  # left half white
    exif = PILImage.Exif()
    exif[0x0112] = 6  # stored picture must be turned 90 degrees clockwise for display
    PILImage.fromarray(stored).save(tmp_path / "o.jpg", exif=exif, quality=95)
    image = read_image(tmp_path / "o.jpg")
    assert image.data.shape == (40, 20)
    assert image.data[:15].mean() > 0.95 and image.data[25:].mean() < 0.05  # white on top


def test_read_from_stream_and_stdin(monkeypatch):
    k = ints((3, 4, 3)).astype(np.uint8)
    data = png_bytes(PILImage.fromarray(k))
    stream = io.BytesIO(data)
    assert read_image(stream).source == "<stream>"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    image = read_image("-")
    assert image.source == "-" and np.array_equal(np.rint(image.data * 255), k)
    npy = io.BytesIO()
    np.save(npy, np.ones((2, 2), np.float32))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(npy.getvalue())))
    assert read_image("-").format == "NPY"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    with pytest.raises(ImageReadError, match="standard input: it is empty"):
        read_image("-")


def test_read_error_missing_directory_empty(tmp_path):
    with pytest.raises(ImageReadError, match=r"cannot read .*nope\.png: no such file"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageReadError, match="is a directory"):
        read_image(tmp_path)
    (tmp_path / "e.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"e\.png: the file is empty"):
        read_image(tmp_path / "e.png")


def test_text_named_png(tmp_path):
    (tmp_path / "t.png").write_text("hello, I am not a picture\n")
    with pytest.raises(ImageReadError, match=r"t\.png: not a picture Pillow can read"):
        read_image(tmp_path / "t.png")


def test_zero_size_png(tmp_path):
    (tmp_path / "z.png").write_bytes(make_png(0, 0, 8, 0, b""))
    with pytest.raises(ImageReadError, match=r"z\.png: the picture is 0x0 pixels \(empty\)"):
        read_image(tmp_path / "z.png")


def test_compressed_tiff_read_by_pillow(tmp_path):
    k = ints((5, 6, 3)).astype(np.uint8)
    PILImage.fromarray(k).save(tmp_path / "lzw.tif", compression="tiff_lzw")
    assert np.array_equal(np.rint(read_image(tmp_path / "lzw.tif").data * 255), k)


def test_image_is_a_plain_record(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((2, 3)))
    image = read_image(tmp_path / "a.npy")
    assert (image.height, image.width, image.source) == (2, 3, str(tmp_path / "a.npy"))
    assert image != read_image(tmp_path / "a.npy")  # identity, no element-wise array comparison


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_picture(tmp_path, fmt):
    buf = io.BytesIO()
    PILImage.fromarray(ints((64, 64, 3)).astype(np.uint8)).save(buf, fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    with pytest.raises(
        ImageReadError, match=rf"cut\.{fmt.lower()}: truncated or corrupt {fmt}"
    ) as e:
        read_image(path)
    assert "\n" not in str(e.value)


def test_truncated_16bit_colour_png(tmp_path):
    data = png16(ints((16, 16, 3), 65535))
    (tmp_path / "c.png").write_bytes(data[: len(data) - 40])
    with pytest.raises(ImageReadError, match=r"c\.png: truncated or corrupt PNG"):
        read_image(tmp_path / "c.png")


def _fail_if_decoded(monkeypatch):
    def load(self, *args, **kwargs):
        raise AssertionError("decoded a picture that should have been refused from its header")

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)


@pytest.mark.parametrize(("depth", "ctype"), [(8, 0), (16, 2), (8, 6)])
def test_huge_declared_png_refused_before_decoding(tmp_path, monkeypatch, depth, ctype):
    (tmp_path / "bomb.png").write_bytes(make_png(100000, 100000, depth, ctype, b"\x00" * 10))
    _fail_if_decoded(monkeypatch)
    limit = PILImage.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageReadError) as e:
            read_image(tmp_path / "bomb.png")
    message = str(e.value)
    assert "bomb.png: 100000x100000 is 10,000,000,000 pixels" in message
    assert f"limit of {limit:,}" in message and "--max-pixels" in message
    assert limit == PILImage.MAX_IMAGE_PIXELS
    with pytest.raises(ImageReadError, match="limit of 1,000"):
        read_image(tmp_path / "bomb.png", max_pixels=1000)


def test_max_pixels_follows_pillow_and_overrides_it(tmp_path, monkeypatch):
    PILImage.fromarray(ints((100, 100)).astype(np.uint8)).save(tmp_path / "p.png")
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 1000)  # Pillow itself would now refuse
    with pytest.raises(ImageReadError, match="limit of 1,000"):
        read_image(tmp_path / "p.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither Pillow's warning nor its error leaks out
        assert read_image(tmp_path / "p.png", max_pixels=None).data.shape == (100, 100)
        assert read_image(tmp_path / "p.png", max_pixels=10_000).data.shape == (100, 100)
        monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 6000)  # 10,000 is only a warning here
        assert read_image(tmp_path / "p.png", max_pixels=10_000).data.shape == (100, 100)
    assert PILImage.MAX_IMAGE_PIXELS == 6000
    with pytest.raises(ValueError, match="max_pixels"):
        read_image(tmp_path / "p.png", max_pixels=0)
    with pytest.raises(TypeError, match="max_pixels"):
        read_image(tmp_path / "p.png", max_pixels=1e6)


def test_an_rgb_tiff_with_an_undeclared_fourth_sample_is_refused():
    # found by fuzzing: photometric RGB, four 16-bit samples and no ExtraSamples tag;
    # a picture is grey or RGB, and an extra sample must say it is alpha
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "data/fuzz/rgb_four_samples_no_extrasamples.tif"
    with pytest.raises(ImageReadError, match=r"unsupported TIFF \(photometric 2, 4 samples\)"):
        read_image(path)


def test_picture_shape_from_the_header_as_the_read_gives_the_data(tmp_path):
    """What the single-picture size checks read before a job: the read's planes (alpha
    apart), upright; None where the picture is over the limit or is not one."""
    from convtool.imaging import picture_shape

    rng = np.random.default_rng(3)
    cases = {
        "rgb.png": (rng.random((7, 5, 3)) * 255).astype(np.uint8),
        "rgba.png": (rng.random((7, 5, 4)) * 255).astype(np.uint8),
        "grey.png": (rng.random((7, 5)) * 255).astype(np.uint8),
    }
    for name, pixels in cases.items():
        PILImage.fromarray(pixels).save(tmp_path / name)
    np.save(tmp_path / "la.npy", rng.random((7, 5, 2)))
    exif = PILImage.Exif()
    exif[0x0112] = 6  # stored on its side: read upright, 5 wide and 7 high become 7 x 5
    PILImage.fromarray(cases["rgb.png"]).save(tmp_path / "turned.jpg", exif=exif)
    for name in [*cases, "la.npy", "turned.jpg"]:
        data = read_image(tmp_path / name).data
        fmt, shape = picture_shape(tmp_path / name)
        assert fmt == {"png": "PNG", "npy": "NPY", "jpg": "JPEG"}[name.rsplit(".", 1)[1]]
        assert shape == (1 if data.ndim == 2 else data.shape[2], *data.shape[:2]), name
    assert picture_shape(tmp_path / "rgb.png", max_pixels=34) is None  # 35 pixels
    assert picture_shape(tmp_path / "rgb.png", max_pixels=35)[1] == (3, 7, 5)
    (tmp_path / "text.png").write_text("not a picture")
    assert picture_shape(tmp_path / "text.png") is None
    assert picture_shape(tmp_path / "missing.png") is None


@pytest.mark.parametrize(
    ("mode", "fmt", "dtype"),
    [
        ("L", "PNG", np.uint8),
        ("RGB", "PNG", np.uint8),
        ("RGBA", "PNG", np.uint8),
        ("I;16", "PNG", np.uint16),
        ("RGB", "JPEG", np.uint8),
        ("L", "JPEG", np.uint8),
        ("RGB", "BMP", np.float32),  # Pillow's route: float32 as always
    ],
)
def test_samples_read_as_the_pixels_they_stand_for(mode, fmt, dtype):
    top = 65535 if mode == "I;16" else 255
    arr = ints((7, 9) if mode in ("L", "I;16") else (7, 9, len(mode)), top)
    im = PILImage.fromarray(arr.astype(np.uint16 if top > 255 else np.uint8))
    assert im.mode == mode
    buf = png_bytes(im) if fmt == "PNG" else _saved(im, fmt)
    pixels = read_image(io.BytesIO(buf))
    kept = read_image(io.BytesIO(buf), samples=True)
    assert kept.data.dtype == dtype and kept.data.shape == pixels.data.shape
    scaled = kept.data.astype(np.float32) / np.float32(top if dtype != np.float32 else 1)
    np.testing.assert_array_equal(scaled, pixels.data)
    assert (kept.alpha is None) == (pixels.alpha is None)
    if pixels.alpha is not None:  # alpha is float32 in [0, 1] either way
        np.testing.assert_array_equal(kept.alpha, pixels.alpha)
    assert (kept.mode, kept.bit_depth, kept.format) == (pixels.mode, pixels.bit_depth, fmt)


def _saved(im: PILImage.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()
