"""Lossy targets: colour pictures filtered by other programs (OpenCV, ImageMagick, pillow),
clipped to 8 bits and saved as JPEG with 4:2:0 chroma, and what the fit makes of them."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFilter

from convtool.fit.lossy import inspect_file
from convtool.fit.pairs import fit_pair, prepare_pair
from convtool.imaging import read_image

ROOT = Path(__file__).resolve().parents[2]
SCENE = ROOT / "samples" / "scene.png"
KERNELS = {
    "sharpen": np.array([[0.0, -1, 0], [-1, 5, -1], [0, -1, 0]]),
    "random3": np.array([[0.13, 0.4, 0.28], [-0.27, 1.8, 0.37], [-0.49, 0.32, 0.3]]),
    "blur3": np.full((3, 3), 1 / 9),
    "random5": np.eye(5) * 0.1 - np.fliplr(np.eye(5)) * 0.05 + np.pad([[0.8]], 2),
}


def make(maker: str, kernel: np.ndarray, quality: int, folder: Path) -> Path:
    """The scene filtered by another program, clipped to 8 bits, saved as 4:2:0 JPEG.

    Returns the JPEG; the kernel each applies, as a correlation, is ``kernel`` (pillow's
    Kernel filter turns it upside down, so it is given the kernel upside down)."""
    rgb = np.asarray(Image.open(SCENE).convert("RGB"))
    out = folder / f"{maker}_{quality}.jpg"
    if maker == "opencv":
        filtered = cv2.filter2D(rgb[:, :, ::-1], -1, kernel)  # correlation, saturated
        cv2.imwrite(str(out), filtered, [cv2.IMWRITE_JPEG_QUALITY, quality])  # 4:2:0
    elif maker == "pillow":
        flipped = kernel[::-1].ravel().tolist()
        filtered = Image.fromarray(rgb).filter(ImageFilter.Kernel(kernel.shape, flipped, 1))
        filtered.save(out, quality=quality, subsampling=2)  # 2: 4:2:0
    else:
        values = ",".join(f"{v:g}" for v in kernel.ravel())
        subprocess.run(
            [shutil.which("convert") or "/usr/bin/convert", str(SCENE),
             "-define", "convolve:scale=1", "-morphology", "Correlate",
             f"{kernel.shape[1]}x{kernel.shape[0]}: {values}",
             "-quality", str(quality), "-sampling-factor", "4:2:0", str(out)],
            check=True,
        )  # fmt: skip
    return out


def fit_file(target: Path, **options):
    source, picture = read_image(SCENE), read_image(target)
    pair = prepare_pair(
        source.data, picture.data, target_bit_depth=picture.bit_depth,
        lossy=inspect_file(target),
    )  # fmt: skip
    return fit_pair(pair, **options)


@pytest.mark.parametrize("maker", ["opencv", "imagemagick", "pillow"])
@pytest.mark.parametrize("quality", [90, 75])
def test_jpeg_targets_of_other_programs_give_the_kernel_back(tmp_path, maker, quality):
    """Every entry within 0.05 at quality 90 and 0.2 at 75, the size detected right."""
    within = 0.05 if quality == 90 else 0.2
    for name, kernel in KERNELS.items():
        target = make(maker, kernel, quality, tmp_path)
        result, pair = fit_file(target)
        assert result.size == kernel.shape, (name, result.size)
        error = float(np.abs(result.kernel - kernel).max())
        assert error < within, (name, error)
        assert result.bias is None, name  # no offset made up from the noise
        assert pair.color == "gray" and "luma" in " ".join(pair.notes)


def test_the_file_says_how_it_was_compressed(tmp_path):
    rgb = np.asarray(Image.open(SCENE).convert("RGB"))
    for quality, sampling, subsampled in ((90, 2, True), (75, 0, False), (50, 1, True)):
        path = tmp_path / f"q{quality}.jpg"
        Image.fromarray(rgb).save(path, quality=quality, subsampling=sampling)
        info = inspect_file(path)
        assert info.kind == "JPEG" and info.subsampled is subsampled
        assert abs(info.quality - quality) <= 1
    Image.fromarray(rgb).save(tmp_path / "lossy.webp", quality=80)
    Image.fromarray(rgb).save(tmp_path / "lossless.webp", lossless=True)
    Image.fromarray(rgb).save(tmp_path / "plain.png")
    assert inspect_file(tmp_path / "lossy.webp").kind == "WebP"
    assert inspect_file(tmp_path / "lossless.webp") is None
    assert inspect_file(tmp_path / "plain.png") is None
    assert inspect_file(tmp_path / "missing.jpg") is None


def test_the_report_says_the_target_is_lossy_and_what_it_costs(tmp_path):
    from click.testing import CliRunner

    from convtool.cli import cli

    target = make("opencv", KERNELS["sharpen"], 90, tmp_path)
    result = CliRunner().invoke(cli, ["fit", str(SCENE), str(target), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    np.testing.assert_allclose(data["kernel"], KERNELS["sharpen"], atol=0.05)
    assert "a lossy JPEG (quality about 90, chroma subsampled)" in result.stderr
    assert "fitting on the luma" in result.stderr
    assert "target pixels censored" in result.stderr and "within 0.02" in result.stderr
    assert data["lossy"] == {"kind": "JPEG", "quality": 90, "subsampled": True}
    assert data["color"] == "gray"


def test_censoring_is_what_makes_clipped_jpeg_targets_fit(tmp_path):
    """Without the censoring (the file not known as lossy), a clipped sharpen is far off."""
    target = make("opencv", KERNELS["sharpen"], 90, tmp_path)
    source, picture = read_image(SCENE), read_image(target)
    plain = prepare_pair(source.data, picture.data, target_bit_depth=8, color="gray")
    result, _ = fit_pair(plain, size=3, bias=False)
    assert np.abs(result.kernel - KERNELS["sharpen"]).max() > 0.5


def test_a_per_channel_fit_of_a_lossy_target_censors_each_channel(tmp_path):
    target = make("opencv", KERNELS["blur3"], 90, tmp_path)
    source, picture = read_image(SCENE), read_image(target)
    pair = prepare_pair(
        source.data, picture.data, target_bit_depth=8, color="channels",
        lossy=inspect_file(target),
    )  # fmt: skip
    result, pair = fit_pair(pair, per_channel=True, size=3)
    assert pair.color == "channels" and result.kernel.shape == (3, 3, 3)
    # the luma keeps full resolution; the chroma, blurred by 4:2:0, pulls the others off
    assert np.abs(result.kernel[1] - KERNELS["blur3"]).max() < 0.05
