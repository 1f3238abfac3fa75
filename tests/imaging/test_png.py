"""PNG through imagecodecs (convtool.imaging.png): which files take that route, that they
read as Pillow reads them, and that every compression level writes what Pillow reads back."""

from __future__ import annotations

import io
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image as PILImage

from convtool import imaging
from convtool.imaging import png
from convtool.imaging.read_pillow import read_with_pillow
from tests.imaging.pictures import chunk, full, ints, png_bytes

MODES = {"L": (), "LA": (2,), "RGB": (3,), "RGBA": (4,)}


def pillow_png(mode: str, shape=(23, 31), **options) -> bytes:
    pixels = ints(shape + MODES[mode]).astype(np.uint8)
    return png_bytes(PILImage.fromarray(pixels, mode), **options)


def with_chunk(buf: bytes, kind: bytes, payload: bytes) -> bytes:
    """``buf`` with a chunk put right after IHDR."""
    return buf[:33] + chunk(kind, payload) + buf[33:]


def same_picture(a: imaging.Image, b: imaging.Image) -> None:
    assert (a.mode, a.bit_depth, a.format) == (b.mode, b.bit_depth, b.format)
    assert a.data.dtype == b.data.dtype == np.float32
    assert np.array_equal(full(a), full(b))
    assert a.meta == b.meta


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("interlace", [False, True])
def test_eight_bit_png_reads_as_pillow_reads_it(mode, interlace):
    buf = pillow_png(mode, optimize=False)
    if interlace:  # Pillow writes no Adam7: re-encode through libpng
        buf = png_bytes(PILImage.open(io.BytesIO(buf)))
        assert png.decodable(buf)
    assert png.decodable(buf)
    same_picture(imaging.read_image(io.BytesIO(buf)), read_with_pillow(buf, "<x>", None))


def test_sixteen_bit_grey_reads_as_pillow_reads_it():
    pixels = ints((9, 14), 65535).astype(np.uint16)
    buf = png_bytes(PILImage.fromarray(pixels))
    assert png.decodable(buf)
    got = imaging.read_image(io.BytesIO(buf))
    same_picture(got, read_with_pillow(buf, "<x>", None))
    assert got.bit_depth == 16 and np.array_equal(got.data, pixels / np.float32(65535))


@pytest.mark.parametrize(("mode", "key"), [("L", 7), ("RGB", (1, 2, 3))])
def test_transparent_key_colour_becomes_alpha_as_in_pillow(mode, key):
    pixels = ints((12, 10) + MODES[mode], 8).astype(np.uint8)
    pixels[3, 4] = key
    buf = png_bytes(PILImage.fromarray(pixels, mode), transparency=key)
    got = imaging.read_image(io.BytesIO(buf))
    same_picture(got, read_with_pillow(buf, "<x>", None))
    assert got.mode == mode + "A" and 0 < got.alpha.sum() < got.alpha.size


def test_profile_and_resolution_read_as_pillow_reads_them():
    profile = b"not really an ICC profile, but bytes" * 20
    buf = pillow_png("RGB", icc_profile=profile, dpi=(300, 150))
    got = imaging.read_image(io.BytesIO(buf))
    same_picture(got, read_with_pillow(buf, "<x>", None))
    assert got.meta.icc == profile
    assert got.meta.dpi == pytest.approx((300, 150), abs=0.02)


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda: pillow_png("L"), "8-bit grey"),
        (lambda: png_bytes(PILImage.new("P", (4, 4))), "palette"),
        (lambda: png_bytes(PILImage.new("1", (4, 4))), "1 bit"),
        (lambda: with_chunk(pillow_png("RGB"), b"eXIf", b"MM\x00*" + bytes(6)), "EXIF"),
        (lambda: b"GIF89a" + bytes(40), "not a PNG"),
    ],
)
def test_which_pngs_take_the_imagecodecs_route(make, why):
    assert png.decodable(make()) == (why == "8-bit grey")


def test_a_broken_png_is_one_clear_error():
    buf = bytearray(pillow_png("RGB", shape=(40, 40)))
    buf[60:90] = bytes(30)  # inside the compressed pixels
    with pytest.raises(imaging.ImageReadError, match="truncated or corrupt PNG"):
        imaging.read_image(io.BytesIO(bytes(buf)))


@pytest.mark.parametrize("level", range(10))
@pytest.mark.parametrize(("channels", "depth"), [(1, 8), (2, 8), (3, 8), (4, 8), (3, 16), (4, 16)])
def test_every_level_writes_what_pillow_and_zlib_read_back(tmp_path, level, channels, depth):
    top = 255 if depth == 8 else 65535
    pixels = ints((17, 29, channels), top).squeeze() / top
    path = tmp_path / "x.png"
    imaging.write_image(path, pixels, bit_depth=depth, compress_level=level)
    back = imaging.read_image(path)
    assert np.array_equal(full(back).reshape(pixels.shape), pixels.astype(np.float32))
    if depth == 8:
        with PILImage.open(path) as im:
            assert np.array_equal(np.asarray(im), np.rint(pixels * 255).astype(np.uint8))
    data = path.read_bytes()
    idat = b"".join(payload for kind, payload in _all_chunks(data) if kind == b"IDAT")
    zlib.decompress(idat)  # a whole zlib stream, its checksum right


def _all_chunks(buf: bytes):
    pos = 8
    while pos < len(buf):
        length = int.from_bytes(buf[pos : pos + 4], "big")
        yield buf[pos + 4 : pos + 8], buf[pos + 8 : pos + 8 + length]
        pos += 12 + length


def test_higher_levels_give_smaller_files(tmp_path):
    smooth = np.add.outer(np.sin(np.arange(300) / 9), np.cos(np.arange(200) / 7))
    pixels = np.dstack([smooth, smooth * 0.5, smooth**2]) / 4 + 0.5
    sizes = {}
    for level in (0, 1, 6, 9):
        imaging.write_image(tmp_path / f"{level}.png", pixels, compress_level=level)
        sizes[level] = (tmp_path / f"{level}.png").stat().st_size
    assert sizes[0] > max(sizes[1], sizes[6]) and sizes[9] < min(sizes[1], sizes[6])


def test_png_in_and_out_never_imports_pillow(tmp_path):
    source = tmp_path / "in.png"
    source.write_bytes(pillow_png("RGBA", icc_profile=b"icc" * 30, dpi=(72, 72)))
    code = (
        "import sys\n"
        "from convtool import imaging\n"
        f"im = imaging.read_image({str(source)!r})\n"
        f"imaging.write_image({str(tmp_path / 'out.png')!r}, im.data, alpha=im.alpha,"
        " meta=im.meta)\n"
        "print(imaging.picture_shape({0!r}))\n"
        "print(sorted(m for m in sys.modules if m.startswith('PIL')))\n"
    ).replace("{0!r}", repr(str(source)))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == ["('PNG', (3, 23, 31))", "[]"]
    with PILImage.open(tmp_path / "out.png") as im:
        assert im.info["icc_profile"] == b"icc" * 30 and im.mode == "RGBA"


def test_the_default_pixel_limit_is_pillows_own_without_importing_it():
    from convtool.imaging import source

    assert source.PILLOW_MAX_IMAGE_PIXELS == PILImage.MAX_IMAGE_PIXELS
