"""ICC profile, resolution and EXIF: read with the pixels, written back by every format
that holds them, the EXIF orientation reset where the pixels were turned; --strip and
--quality through `convtool apply`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageCms

from convtool import imaging
from convtool.cli import cli
from convtool.imaging.metadata import Metadata

PROFILE = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def exif(orientation: int) -> bytes:
    tags = Image.Exif()
    tags[0x0112] = orientation
    tags[0x010F] = "TestCam"
    return tags.tobytes()


@pytest.fixture
def photo(tmp_path) -> Path:
    """A 40x60 JPEG whose EXIF says: turn me 90 degrees clockwise (orientation 6)."""
    pixels = (np.random.default_rng(0).random((40, 60, 3)) * 255).astype(np.uint8)
    path = tmp_path / "photo.jpg"
    Image.fromarray(pixels).save(path, icc_profile=PROFILE, dpi=(300, 300), exif=exif(6))
    return path


def apply(*args) -> None:
    result = CliRunner().invoke(cli, ["apply", *map(str, args)])
    assert result.exit_code == 0, result.output


def test_reading_keeps_the_metadata_and_resets_the_orientation(photo):
    image = imaging.read_image(photo)
    assert image.data.shape == (60, 40, 3)  # turned upright
    assert image.meta.icc == PROFILE and image.meta.dpi == (300.0, 300.0)
    tags = Image.Exif()
    tags.load(image.meta.exif)
    assert tags[0x0112] == 1 and tags[0x010F] == "TestCam"


@pytest.mark.parametrize("ext", ["png", "jpg", "webp", "tif"])
def test_every_format_writes_what_it_holds(photo, tmp_path, ext):
    out = tmp_path / f"out.{ext}"
    apply(photo, "-k", "blur", "-o", out)
    with Image.open(out) as im:
        assert im.size == (40, 60)
        assert im.info.get("icc_profile") == PROFILE
        if ext != "webp":  # WebP has no resolution
            assert im.info["dpi"] == pytest.approx(
                (300, 300), abs=0.05
            )  # PNG holds whole pixels per metre
        if ext != "tif":  # TIFF: the profile and the resolution only
            tags = im.getexif()
            assert tags[0x0112] == 1 and tags[0x010F] == "TestCam"


def test_strip_writes_none(photo, tmp_path):
    apply(photo, "-k", "blur", "--strip", "-o", tmp_path / "s.jpg")
    with Image.open(tmp_path / "s.jpg") as im:
        assert "icc_profile" not in im.info and not len(im.getexif())
        assert im.info.get("dpi", (1, 1)) in ((1, 1), (72, 72))  # JFIF's default density


def test_a_stride_lowers_the_resolution(photo, tmp_path):
    apply(photo, "-k", "blur", "--stride", "2", "-o", tmp_path / "half.png")
    with Image.open(tmp_path / "half.png") as im:
        assert im.size == (20, 30) and im.info["dpi"] == pytest.approx(
            (150, 150), abs=0.05
        )  # PNG holds whole pixels per metre


def test_sixteen_bit_colour_png_keeps_the_metadata(tmp_path):
    pixels = np.random.default_rng(1).random((20, 30, 3))
    meta = Metadata(PROFILE, (72.0, 96.0), exif(1))
    imaging.write_image(tmp_path / "in.png", pixels, bit_depth=16, meta=meta)
    image = imaging.read_image(tmp_path / "in.png")
    assert image.bit_depth == 16 and image.meta.icc == PROFILE
    assert image.meta.dpi == pytest.approx((72, 96), abs=0.05)  # PNG holds whole pixels per metre
    apply(tmp_path / "in.png", "-k", "blur", "-o", tmp_path / "out.png")
    with Image.open(tmp_path / "out.png") as im:
        assert im.info["icc_profile"] == PROFILE and im.getexif()[0x010F] == "TestCam"
    assert imaging.read_image(tmp_path / "out.png").bit_depth == 16


def test_quality(photo, tmp_path):
    apply(photo, "-k", "nothing", "-o", tmp_path / "q95.jpg")
    apply(photo, "-k", "nothing", "--quality", "30", "-o", tmp_path / "q30.jpg")
    assert (tmp_path / "q30.jpg").stat().st_size < 0.8 * (tmp_path / "q95.jpg").stat().st_size
    # WebP is lossless unless a quality is given
    apply(photo, "-k", "nothing", "-o", tmp_path / "a.webp")
    apply(photo, "-k", "nothing", "--quality", "50", "-o", tmp_path / "b.webp")
    upright = np.rint(imaging.read_image(photo).data * 255)
    assert np.array_equal(np.rint(imaging.read_image(tmp_path / "a.webp").data * 255), upright)
    assert not np.array_equal(np.rint(imaging.read_image(tmp_path / "b.webp").data * 255), upright)
    result = CliRunner().invoke(cli, ["apply", str(photo), "-k", "blur", "--quality", "101"])
    assert result.exit_code == 2 and "--quality" in result.output


def test_write_image_refuses_a_bad_quality(tmp_path):
    with pytest.raises(imaging.ImageWriteError, match=r"quality must be 1\.\.100"):
        imaging.write_image(tmp_path / "x.jpg", np.zeros((2, 2)), quality=0)


def test_eight_bit_png_without_imagecodecs_goes_through_pillow(tmp_path, monkeypatch):
    from convtool.imaging import png

    def missing():
        raise ImportError("16-bit colour PNG needs the imagecodecs package")

    pixels = np.random.default_rng(4).random((6, 7, 3))
    meta = Metadata(PROFILE, (100.0, 100.0), exif(1))
    imaging.write_image(tmp_path / "a.png", pixels, meta=meta)
    monkeypatch.setattr(png, "_codecs", missing)
    imaging.write_image(tmp_path / "b.png", pixels, meta=meta)
    with Image.open(tmp_path / "a.png") as a, Image.open(tmp_path / "b.png") as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))
        assert a.info["icc_profile"] == b.info["icc_profile"] == PROFILE
        assert a.info["dpi"] == pytest.approx(b.info["dpi"], abs=0.05)  # PNG: whole pixels/m
        assert a.getexif()[0x010F] == b.getexif()[0x010F] == "TestCam"
    with pytest.raises(imaging.ImageWriteError, match="needs the imagecodecs package"):
        imaging.write_image(tmp_path / "c.png", pixels, bit_depth=16)


@pytest.mark.parametrize("tile", ["0", "32"])
def test_tiff_in_tiles_or_whole_keeps_profile_and_resolution(tmp_path, tile):
    import tifffile

    pixels = (np.random.default_rng(5).random((70, 90, 3)) * 255).astype(np.uint8)
    tifffile.imwrite(
        tmp_path / "in.tif", pixels, photometric="rgb", resolution=(240, 120),
        resolutionunit="INCH", iccprofile=PROFILE,
    )  # fmt: skip
    apply(tmp_path / "in.tif", "-k", "blur", "--tile", tile, "-o", tmp_path / "out.tif")
    with Image.open(tmp_path / "out.tif") as im:
        assert im.info.get("icc_profile") == PROFILE
        assert im.info["dpi"] == pytest.approx((240, 120))
    apply(tmp_path / "in.tif", "-k", "blur", "--tile", tile, "--strip", "-o", tmp_path / "s.tif")
    with Image.open(tmp_path / "s.tif") as im:
        assert "icc_profile" not in im.info and "dpi" not in im.info
