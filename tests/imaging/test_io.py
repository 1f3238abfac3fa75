"""Tests for convtool.io: formats and modes, scaling, errors, atomic writes, fuzzing."""

from __future__ import annotations

import io
import os
import stat
import struct
import sys
import warnings
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage
from PIL import ImageFile

from convtool.imaging import ImageReadError, ImageWriteError, read_image, write_image
from convtool.imaging import io as cio

RNG = np.random.default_rng(20240601)


def ints(shape, top=255):
    return RNG.integers(0, top + 1, size=shape)


def png_bytes(im: PILImage.Image, **options) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG", **options)
    return buf.getvalue()


def chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def make_png(width, height, depth, ctype, scanlines: bytes, interlace=0, extra=b"") -> bytes:
    header = struct.pack(">IIBBBBB", width, height, depth, ctype, 0, 0, interlace)
    return b"".join(
        [
            b"\x89PNG\r\n\x1a\n",
            chunk(b"IHDR", header),
            extra,
            chunk(b"IDAT", zlib.compress(scanlines)),
            chunk(b"IEND", b""),
        ]
    )


def filtered(raw: np.ndarray, bpp: int, kinds) -> bytes:
    """PNG-filter (rows, bytes) uint8, one filter type per row: an independent encoder."""
    x = raw.astype(np.int32)
    left = np.zeros_like(x)
    left[:, bpp:] = x[:, :-bpp]
    up = np.zeros_like(x)
    up[1:] = x[:-1]
    upleft = np.zeros_like(x)
    upleft[1:, bpp:] = x[:-1, :-bpp]
    p = left + up - upleft
    pa, pb, pc = abs(p - left), abs(p - up), abs(p - upleft)
    paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
    preds = [np.zeros_like(x), left, up, (left + up) // 2, paeth]
    rows = [
        bytes([k]) + ((x[i] - preds[k][i]) & 0xFF).astype(np.uint8).tobytes()
        for i, k in enumerate(kinds)
    ]
    return b"".join(rows)


ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)


def png16(pixels: np.ndarray, interlace=False) -> bytes:
    """An independent 16-bit PNG encoder: every filter type in turn, Adam7 optionally."""
    h, w = pixels.shape[:2]
    c = 1 if pixels.ndim == 2 else pixels.shape[2]
    ctype = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    subs = [pixels[y0::dy, x0::dx] for x0, y0, dx, dy in ADAM7] if interlace else [pixels]
    out = b""
    for sub in subs:
        if sub.size == 0:
            continue
        raw = sub.astype(">u2").reshape(sub.shape[0], -1).view(np.uint8)
        out += filtered(raw, 2 * c, [i % 5 for i in range(raw.shape[0])])
    return make_png(w, h, 16, ctype, out, interlace=int(interlace))


def full(image: cio.Image) -> np.ndarray:
    """data with alpha appended as the last channel."""
    if image.alpha is None:
        return image.data
    data = image.data if image.data.ndim == 3 else image.data[:, :, None]
    return np.concatenate([data, image.alpha[:, :, None]], axis=2)


# ---------------------------------------------------------------- names


def test_extension_sets_and_format_for():
    assert ".gif" in cio.READ_EXTENSIONS and ".gif" not in cio.WRITE_EXTENSIONS
    assert set(cio.WRITE_EXTENSIONS) <= set(cio.READ_EXTENSIONS)
    assert cio.format_for("a/b.PNG") == "png"
    assert cio.format_for("x.jpeg") == cio.format_for("x.JPG") == "jpeg"
    assert cio.format_for("x.tif", writing=True) == "tiff"
    assert cio.format_for("x.gif") == "gif"
    with pytest.raises(ValueError, match=r"x\.gif: extension '\.gif'; can write"):
        cio.format_for("x.gif", writing=True)
    with pytest.raises(ValueError, match=r"extension '\.xyz'"):
        cio.format_for("x.xyz")
    with pytest.raises(ValueError, match="no extension"):
        cio.format_for("noext")
    with pytest.raises(ValueError, match="give the format"):
        cio.format_for("-")


# ---------------------------------------------------------------- round trips


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


def test_float_tiff_is_raw_and_exact(tmp_path):
    values = np.array([[-3.5, 0.25, 1e6], [np.nan, np.inf, 2.0]], np.float32)
    for data in (values, np.dstack([values, values * 2, -values])):
        write_image(tmp_path / "f.tif", data, bit_depth=32, overwrite=True)
        image = read_image(tmp_path / "f.tif")
        assert image.bit_depth == 32 and image.data.dtype == np.float32
        assert np.array_equal(image.data, data, equal_nan=True)


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


def test_npy_shapes_dtypes_and_non_finite(tmp_path):
    cases = {
        "hw.npy": np.array([[1.5, -2.0], [np.nan, np.inf]]),
        "hw1.npy": np.arange(6, dtype=np.int16).reshape(2, 3, 1),
        "hw3.npy": RNG.normal(size=(2, 3, 3)).astype(">f8"),
        "fortran.npy": np.asfortranarray(RNG.normal(size=(3, 4))),
        "bool.npy": np.eye(3, dtype=bool),
    }
    for name, arr in cases.items():
        np.save(tmp_path / name, arr)
        image = read_image(tmp_path / name)
        assert image.format == "NPY" and image.bit_depth == 32 and image.data.dtype == np.float32
        assert image.data.flags.c_contiguous and image.data.flags.writeable
        expected = arr[:, :, 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr
        assert np.array_equal(image.data, expected.astype(np.float32), equal_nan=True), name
    np.save(tmp_path / "rgba.npy", np.dstack([np.zeros((2, 2, 3)), np.full((2, 2), 7.0)]))
    image = read_image(tmp_path / "rgba.npy")
    assert image.mode == "RGBA" and image.alpha.tolist() == [[7, 7], [7, 7]]


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


def test_png_compress_level(tmp_path):
    smooth = np.tile(np.linspace(0, 1, 64), (64, 1))
    write_image(tmp_path / "0.png", smooth, compress_level=0)
    write_image(tmp_path / "9.png", smooth, compress_level=9)
    assert (tmp_path / "9.png").stat().st_size < (tmp_path / "0.png").stat().st_size
    with pytest.raises(ImageWriteError, match=r"compress_level must be 0\.\.9"):
        write_image(tmp_path / "x.png", smooth, compress_level=10)


def test_save_and_load_array(tmp_path):
    k = RNG.normal(size=(2, 3, 3, 3))
    cio.save_array(tmp_path / "k.npy", k)
    assert np.array_equal(cio.load_array(tmp_path / "k.npy"), k)
    with pytest.raises(ImageWriteError, match="exists"):
        cio.save_array(tmp_path / "k.npy", k)
    with pytest.raises(ImageWriteError, match="dtype complex128 is not saved"):
        cio.save_array(tmp_path / "c.npy", np.zeros(2, complex))
    np.save(tmp_path / "o.npy", np.array([{}], dtype=object), allow_pickle=True)
    with pytest.raises(ImageReadError, match="dtype object"):
        cio.load_array(tmp_path / "o.npy")


# ---------------------------------------------------------------- read errors


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


@pytest.mark.parametrize(
    ("arr", "message"),
    [
        (np.zeros((0, 0)), "empty"),
        (np.zeros((3, 0, 3)), "empty"),
        (np.zeros((2, 2), complex), "dtype complex128 is not supported"),
        (np.zeros(5), r"shape \(5,\) is not \(H, W\)"),
        (np.zeros((1, 2, 3, 4)), "is not"),
        (np.zeros((2, 2, 5)), "C in 1..4"),
        (np.zeros((3, 16, 16)), "np.moveaxis"),
        (np.array(["a"]), "dtype <U1"),
    ],
)
def test_npy_errors(tmp_path, arr, message):
    np.save(tmp_path / "a.npy", arr)
    with pytest.raises(ImageReadError, match=message):
        read_image(tmp_path / "a.npy")


def test_npy_object_truncated_and_fake(tmp_path):
    np.save(tmp_path / "o.npy", np.array([1, None], dtype=object), allow_pickle=True)
    with pytest.raises(ImageReadError, match="dtype object"):
        read_image(tmp_path / "o.npy")
    buf = io.BytesIO()
    np.save(buf, np.zeros((50, 50)))
    (tmp_path / "t.npy").write_bytes(buf.getvalue()[:-8])
    with pytest.raises(ImageReadError, match=r"truncated \.npy file"):
        read_image(tmp_path / "t.npy")
    (tmp_path / "f.npy").write_bytes(png_bytes(PILImage.new("L", (2, 2))))
    with pytest.raises(ImageReadError, match=r"f\.npy: not a \.npy file"):
        read_image(tmp_path / "f.npy")
    (tmp_path / "h.npy").write_bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': oops}\n")
    with pytest.raises(ImageReadError, match=r"bad \.npy header"):
        read_image(tmp_path / "h.npy")


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


def test_huge_declared_npy_refused(tmp_path):
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 100000), }"
    header = header.ljust(118) + "\n"
    (tmp_path / "bomb.npy").write_bytes(
        b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode()
    )
    with pytest.raises(ImageReadError, match="100000x100000 is 10,000,000,000 pixels"):
        read_image(tmp_path / "bomb.npy")
    with pytest.raises(ImageReadError, match=r"truncated \.npy"):
        read_image(tmp_path / "bomb.npy", max_pixels=None)


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


# ---------------------------------------------------------------- writing and atomicity


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


def test_overwrite_refused_then_allowed(tmp_path):
    target = tmp_path / "o.png"
    target.write_bytes(b"old")
    with pytest.raises(ImageWriteError, match=r"o\.png exists; pass --overwrite to replace it"):
        write_image(target, np.zeros((2, 2)))
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["o.png"]
    write_image(target, np.ones((2, 2)), overwrite=True)
    assert read_image(target).data.tolist() == [[1, 1], [1, 1]]
    assert os.listdir(tmp_path) == ["o.png"]


@pytest.mark.parametrize("error", [OSError("No space left on device"), RuntimeError("bug")])
def test_failed_encoding_leaves_old_target_and_no_temp(tmp_path, monkeypatch, error):
    target = tmp_path / "t.png"
    target.write_bytes(b"precious")

    def broken(f, pixels, **kwargs):
        f.write(b"half a picture")
        raise error

    monkeypatch.setitem(cio._ENCODERS, "png", broken)
    expected = ImageWriteError if isinstance(error, OSError) else RuntimeError
    with pytest.raises(expected, match=r"No space left|bug"):
        write_image(target, np.zeros((2, 2)), overwrite=True)
    assert target.read_bytes() == b"precious"
    assert os.listdir(tmp_path) == ["t.png"]
    with pytest.raises(expected):
        write_image(tmp_path / "new.png", np.zeros((2, 2)))
    assert os.listdir(tmp_path) == ["t.png"]


def test_failed_rename_leaves_old_target_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "t.npy"
    target.write_bytes(b"precious")

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(ImageWriteError, match=r"t\.npy: Permission denied"):
        write_image(target, np.zeros((2, 2)), overwrite=True)
    assert target.read_bytes() == b"precious" and os.listdir(tmp_path) == ["t.npy"]


def test_target_appearing_during_write_is_not_clobbered(tmp_path):
    target = tmp_path / "race.csv"
    with pytest.raises(ImageWriteError, match="exists"), cio.atomic_write(target) as f:
        f.write(b"mine")
        target.write_bytes(b"theirs")
    assert target.read_bytes() == b"theirs" and os.listdir(tmp_path) == ["race.csv"]


def test_no_hard_links_falls_back_to_replace(tmp_path, monkeypatch):
    def no_link(src, dst):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    cio.atomic_write_bytes(tmp_path / "a.txt", b"hello")
    assert (tmp_path / "a.txt").read_bytes() == b"hello" and os.listdir(tmp_path) == ["a.txt"]
    with pytest.raises(ImageWriteError, match="exists"):
        cio.atomic_write_bytes(tmp_path / "a.txt", b"again")


def test_error_inside_atomic_block_passes_through(tmp_path):
    with pytest.raises(KeyError), cio.atomic_write(tmp_path / "k.json") as f:
        f.write(b"{")
        raise KeyError("x")
    assert os.listdir(tmp_path) == []


def test_permissions_follow_umask_and_are_kept_on_overwrite(tmp_path):
    old = os.umask(0o022)
    try:
        cio.atomic_write_bytes(tmp_path / "new.txt", b"x")
        assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o644
        (tmp_path / "private.txt").write_bytes(b"secret")
        os.chmod(tmp_path / "private.txt", 0o600)
        cio.atomic_write_bytes(tmp_path / "private.txt", b"still secret", overwrite=True)
        assert stat.S_IMODE((tmp_path / "private.txt").stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_write_errors_name_the_folder(tmp_path):
    with pytest.raises(ImageWriteError, match=r"the folder .*missing does not exist"):
        write_image(tmp_path / "missing" / "x.png", np.zeros((2, 2)))
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(ImageWriteError, match=r"the folder .*file is not a folder"):
        write_image(tmp_path / "file" / "x.png", np.zeros((2, 2)))
    (tmp_path / "d.png").mkdir()
    with pytest.raises(ImageWriteError, match=r"d\.png: it is a directory"):
        write_image(tmp_path / "d.png", np.zeros((2, 2)), overwrite=True)


def test_read_only_folder_message_without_chmod(tmp_path, monkeypatch):
    """Root ignores permission bits, so fake the refusal to check the message."""
    real_open = os.open

    def refuse(path, flags, mode=0o777, **kwargs):
        if str(path).endswith(".tmp"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, mode, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(
        ImageWriteError, match=r"x\.png: cannot create a file in .* \(Permission denied\)"
    ):
        write_image(tmp_path / "x.png", np.zeros((2, 2)))
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- fuzzing

FUZZ = settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])
PREFIXES = [
    b"",
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"GIF89a",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
    b"RIFF",
    b"\x93NUMPY",
]


def read_or_refuse(data: bytes) -> None:
    """read_image either returns a well-formed Image or raises ImageReadError."""
    try:
        image = read_image(io.BytesIO(data))
    except ImageReadError as e:
        assert "\n" not in str(e)
        return
    assert image.data.dtype == np.float32 and image.data.ndim in (2, 3)
    assert image.alpha is None or image.alpha.shape == image.data.shape[:2]


def fix_crcs(data: bytes) -> bytes:
    """Recompute PNG chunk CRCs so that mutations reach the decoder."""
    out, pos = bytearray(data), 8
    while pos + 12 <= len(out):
        (length,) = struct.unpack_from(">I", out, pos)
        end = pos + 8 + length
        if end + 4 > len(out):
            break
        out[end : end + 4] = struct.pack(">I", zlib.crc32(bytes(out[pos + 4 : end])))
        pos = end + 4
    return bytes(out)


def mutate(base: bytes, edits, cut) -> bytes:
    out = bytearray(base)
    for where, value in edits:
        out[where % len(out)] = value
    return bytes(out[: max(1, len(out) - cut)])


EDITS = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8)
SMALL_PNG = png_bytes(PILImage.fromarray(ints((6, 5, 4)).astype(np.uint8)))
SMALL_PNG16 = png16(ints((5, 6, 3), 65535))


def _bytes(write, *args, **kwargs) -> bytes:
    buf = io.BytesIO()
    write(buf, *args, **kwargs)
    return buf.getvalue()


SMALL_TIFF = _bytes(cio._encode_tiff, RNG.normal(size=(4, 5, 3)).astype(np.float32))
SMALL_NPY = _bytes(np.save, np.zeros((3, 4, 3), np.float32))
SMALL_JPEG = _bytes(lambda f: PILImage.fromarray(ints((8, 8, 3)).astype(np.uint8)).save(f, "JPEG"))


@pytest.mark.filterwarnings("ignore:.*(Tag data|EXIF|Truncated File):UserWarning")
@FUZZ
@given(prefix=st.sampled_from(PREFIXES), body=st.binary(max_size=600))
def test_fuzz_random_bytes(prefix, body):
    read_or_refuse(prefix + body)


@pytest.mark.filterwarnings("ignore:.*(Tag data|EXIF|Truncated File):UserWarning")
@FUZZ
@given(
    base=st.sampled_from([SMALL_PNG, SMALL_PNG16, SMALL_TIFF, SMALL_NPY, SMALL_JPEG]),
    edits=EDITS,
    cut=st.integers(0, 40),
    crc=st.booleans(),
)
def test_fuzz_mutated_files(base, edits, cut, crc):
    data = mutate(base, edits, cut)
    read_or_refuse(fix_crcs(data) if crc and base.startswith(b"\x89PNG") else data)


@FUZZ
@given(
    width=st.integers(1, 9),
    height=st.integers(1, 9),
    ctype=st.sampled_from([2, 4, 6]),
    interlace=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
    valid_filters=st.booleans(),
)
def test_fuzz_16bit_colour_scanlines_against_pillow(
    width, height, ctype, interlace, seed, valid_filters
):
    """Random filtered scanlines: our decoder's high bytes must match Pillow's own 8-bit reading."""
    channels = {2: 3, 4: 2, 6: 4}[ctype]
    passes = [(height, width)]
    if interlace:
        passes = [(-(-(height - y0) // dy), -(-(width - x0) // dx)) for x0, y0, dx, dy in ADAM7]
    rng = np.random.default_rng(seed)
    lines = []
    for rows, cols in passes:
        if rows > 0 and cols > 0:
            line = rng.integers(0, 256, (rows, 1 + 2 * channels * cols), dtype=np.uint8)
            if valid_filters:
                line[:, 0] %= 5
            lines.append(line.tobytes())
    data = make_png(width, height, 16, ctype, b"".join(lines), interlace=int(interlace))
    try:
        ours = read_image(io.BytesIO(data))
    except ImageReadError:
        assert not valid_filters
        return
    with PILImage.open(io.BytesIO(data)) as im:
        theirs = np.asarray(im)
    high = (np.rint(full(ours) * 65535).astype(np.uint16) >> 8).astype(np.uint8)
    if ctype == 4:  # Pillow reads 16-bit grey+alpha as 8-bit RGBA
        high = high[:, :, [0, 0, 0, 1]]
    assert np.array_equal(high, theirs)
