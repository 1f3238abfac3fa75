"""JPEG through imagecodecs (convtool.imaging.jpeg): the pixels Pillow reads, the bytes
Pillow writes, the metadata laid out as Pillow lays it out, and which files go to Pillow."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image as PILImage

from convtool import imaging
from convtool.imaging import jpeg
from convtool.imaging.metadata import Metadata
from convtool.imaging.read_pillow import read_with_pillow
from tests.imagemagick import convert, needs_imagemagick
from tests.imaging.pictures import ints

SMOOTH = np.clip(
    np.add.outer(np.arange(45), np.arange(67))[:, :, None] * [2.0, 1.5, 3.0]
    + ints((45, 67, 3), 40),
    0,
    255,
).astype(np.uint8)


def pillow_jpeg(pixels: np.ndarray, mode: str | None = None, **options) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(pixels).convert(mode).save(buf, "JPEG", **options)
    return buf.getvalue()


def exif_bytes(orientation: int) -> bytes:
    tags = PILImage.Exif()
    tags[0x010F], tags[0x0112] = "TestCam", orientation
    return tags.tobytes()


def made_elsewhere() -> dict[str, bytes]:
    files = {
        "pillow 4:4:4": pillow_jpeg(SMOOTH, quality=90, subsampling=0),
        "pillow 4:2:2": pillow_jpeg(SMOOTH, quality=90, subsampling=1),
        "pillow 4:2:0": pillow_jpeg(SMOOTH, quality=75, subsampling=2),
        "pillow progressive": pillow_jpeg(SMOOTH, quality=80, progressive=True),
        "pillow grey": pillow_jpeg(SMOOTH[:, :, 0], quality=85),
        "opencv": cv2.imencode(".jpg", SMOOTH[:, :, ::-1])[1].tobytes(),
        "opencv restarts": cv2.imencode(
            ".jpg", SMOOTH[:, :, ::-1], [cv2.IMWRITE_JPEG_RST_INTERVAL, 2]
        )[1].tobytes(),
    }
    convert = shutil.which("convert")
    if convert is not None:  # ImageMagick: installed by the CI script
        done = subprocess.run(
            [convert, "png:-", "-quality", "85", "jpg:-"],
            input=cv2.imencode(".png", SMOOTH)[1].tobytes(),
            capture_output=True,
            check=True,
        )
        files["imagemagick"] = done.stdout
    return files


@pytest.mark.parametrize(("maker", "buf"), list(made_elsewhere().items()))
def test_jpegs_read_as_pillow_reads_them(maker, buf):
    assert jpeg.decodable(jpeg.header(buf)), maker
    got = imaging.read_image(io.BytesIO(buf))
    want = read_with_pillow(buf, "<x>", None)
    assert (got.mode, got.bit_depth, got.format, got.meta) == (
        want.mode,
        want.bit_depth,
        want.format,
        want.meta,
    )
    assert np.array_equal(got.data, want.data)


def test_profile_and_resolution_read_as_pillow_reads_them():
    profile = bytes(range(256)) * 600  # 153,600 bytes: three segments
    buf = pillow_jpeg(SMOOTH, icc_profile=profile, dpi=(300, 72))
    got = imaging.read_image(io.BytesIO(buf))
    assert got.meta == read_with_pillow(buf, "<x>", None).meta
    assert got.meta.icc == profile and got.meta.dpi == (300.0, 72.0)


@pytest.mark.parametrize("quality", [1, 50, 95, 100])
@pytest.mark.parametrize("grey", [False, True])
def test_written_bytes_are_pillows(quality, grey):
    pixels = SMOOTH[:, :, 1] if grey else SMOOTH
    assert jpeg.encode(pixels, quality) == pillow_jpeg(pixels, quality=quality, subsampling=0)


@pytest.mark.parametrize(("subsampling", "pillows"), [("4:4:4", 0), ("4:2:2", 1), ("4:2:0", 2)])
def test_written_subsampled_bytes_are_pillows(subsampling, pillows):
    mine = jpeg.encode(SMOOTH, 85, subsampling=subsampling)
    assert mine == pillow_jpeg(SMOOTH, quality=85, subsampling=pillows)


def test_coding_is_read_as_libjpeg_wrote_it():
    """Every quality and subsampling Pillow (libjpeg) writes is read back as written."""
    names = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}
    for quality in range(1, 101):
        for pillows, name in names.items():
            buf = pillow_jpeg(SMOOTH[:16, :16], quality=quality, subsampling=pillows)
            assert jpeg.header(buf).coding == (quality, name)
    grey = jpeg.header(pillow_jpeg(SMOOTH[:, :, 0], quality=77)).coding
    assert grey == (77, None)


def test_a_cameras_own_table_gets_the_nearest_quality():
    table = list(jpeg._scaled(80))
    assert jpeg.quality_of(tuple(table)) == 80
    table[5] += 1  # no libjpeg quality makes this table: the nearest by its sum
    assert jpeg.quality_of(tuple(table)) == 80
    assert jpeg.quality_of(tuple(v * 2 for v in jpeg._scaled(90))) == 80  # scaled twice
    assert jpeg.quality_of((1,) * 63) is None


@needs_imagemagick
@pytest.mark.parametrize(
    ("quality", "factors"), [(92, "1x1"), (90, "2x2"), (63, "2x1"), (30, "1x2")]
)
def test_coding_is_what_imagemagick_estimates(tmp_path, quality, factors):
    made = tmp_path / "im.jpg"
    made.write_bytes(cv2.imencode(".png", SMOOTH)[1].tobytes())
    convert(str(made), "-quality", str(quality), "-sampling-factor", factors, f"jpg:{made}")
    said = convert(str(made), "-format", "%Q %[jpeg:sampling-factor]", "info:").stdout.split()
    coding = jpeg.header(made.read_bytes()).coding
    assert coding.quality == int(said[0]) == quality
    named = {"1x1,1x1,1x1": "4:4:4", "2x2,1x1,1x1": "4:2:0", "2x1,1x1,1x1": "4:2:2"}
    assert coding.subsampling == named.get(said[1], "4:4:0")


def test_an_exif_jpegs_coding_is_read_too():
    buf = pillow_jpeg(SMOOTH, quality=80, subsampling=1, exif=exif_bytes(6))
    assert imaging.read_image(io.BytesIO(buf)).coding == (80, "4:2:2")


def test_a_jpeg_written_from_a_jpeg_keeps_its_coding(tmp_path):
    """As ImageMagick keeps them: the quality unless given, the subsampling always; a
    picture from elsewhere is written at 95 with full-resolution chroma."""
    read = imaging.read_image(io.BytesIO(pillow_jpeg(SMOOTH, quality=70, subsampling=2)))
    for quality, want in ((None, (70, "4:2:0")), (88, (88, "4:2:0"))):
        imaging.write_image(tmp_path / "o.jpg", read.data, quality=quality, coding=read.coding,
                            overwrite=True)  # fmt: skip
        assert jpeg.header((tmp_path / "o.jpg").read_bytes()).coding == want
    imaging.write_image(tmp_path / "p.jpg", read.data)
    assert jpeg.header((tmp_path / "p.jpg").read_bytes()).coding == (95, "4:4:4")


def test_metadata_is_laid_out_as_pillow_lays_it_out():
    profile = bytes(range(256)) * 600
    exif = exif_bytes(1)
    mine = jpeg.encode(SMOOTH, 95, icc=profile, dpi=(300.4, 150), exif=exif)
    theirs = pillow_jpeg(
        SMOOTH, quality=95, subsampling=0, icc_profile=profile, dpi=(300.4, 150), exif=exif
    )
    assert mine == theirs


def test_too_much_exif_is_refused(tmp_path):
    meta = Metadata(exif=b"Exif\x00\x00" + bytes(70000))
    with pytest.raises(imaging.ImageWriteError, match="EXIF data is too long"):
        imaging.write_image(tmp_path / "x.jpg", SMOOTH / 255, meta=meta)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("buf", "why"),
    [
        (pillow_jpeg(SMOOTH, exif=exif_bytes(6)), "EXIF: Pillow turns it upright"),
        (pillow_jpeg(SMOOTH)[:-300], "cut short: Pillow says so"),
        (pillow_jpeg(SMOOTH, mode="CMYK"), "CMYK"),
        (b"\xff\xd8\xff\xe0\x00", "a broken header"),
    ],
)
def test_jpegs_left_to_pillow(buf, why):
    assert not jpeg.decodable(jpeg.header(buf)), why


def test_an_exif_jpeg_is_still_turned_upright():
    buf = pillow_jpeg(SMOOTH, quality=95, exif=exif_bytes(6))  # turn 90 degrees clockwise
    got = imaging.read_image(io.BytesIO(buf))
    assert got.data.shape == (67, 45, 3)


def test_jpeg_in_and_out_never_imports_pillow(tmp_path):
    source = tmp_path / "in.jpg"
    source.write_bytes(pillow_jpeg(SMOOTH, icc_profile=b"icc" * 30, dpi=(200, 200)))
    code = (
        "import sys\n"
        "from convtool import imaging\n"
        "im = imaging.read_image(sys.argv[1])\n"
        "imaging.write_image(sys.argv[2], im.data, meta=im.meta)\n"
        "print(imaging.picture_shape(sys.argv[1]))\n"
        "print(sorted(m for m in sys.modules if m.startswith('PIL')))\n"
    )
    out = tmp_path / "out.jpg"
    done = subprocess.run(
        [sys.executable, "-c", code, str(source), str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.splitlines() == ["('JPEG', (3, 45, 67))", "[]"]
    with PILImage.open(out) as im:
        assert im.info["icc_profile"] == b"icc" * 30 and im.info["dpi"] == (200, 200)


def test_a_big_jpegs_shape_comes_from_its_header_alone(tmp_path):
    pixels = ints((700, 900, 3)).astype(np.uint8)  # noise: far more than the 64 KB read
    path = tmp_path / "big.jpg"
    path.write_bytes(pillow_jpeg(pixels, quality=95))
    assert path.stat().st_size > 1 << 16
    code = (
        "import sys\n"
        "from convtool import imaging\n"
        "print(imaging.picture_shape(sys.argv[1]))\n"
        "print('PIL' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
    )
    assert done.stdout.splitlines() == ["('JPEG', (3, 700, 900))", "False"]


def test_a_size_libjpeg_refuses_is_a_write_error(tmp_path):
    with pytest.raises(imaging.ImageWriteError, match=r"wide\.jpg.*65535"):
        imaging.write_image(tmp_path / "wide.jpg", np.zeros((1, 70000)))
    assert list(tmp_path.iterdir()) == []
