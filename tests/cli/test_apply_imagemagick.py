"""`convtool apply -k im:NAME[:ARGS] --flip` against ImageMagick's own
`convert IN -morphology Convolve NAME:ARGS OUT`, pixel by pixel, on a grey and a colour
picture: 99.9 % of the pixels within one level, none off by more than two.

The samples hold no camera photograph; the colour picture is scene.jpg (the test chart
through JPEG: texture, noise, ramps and compression noise, as photographs have) decoded
once to PNG, so that both programs read the same pixels; the grey one is gray.png.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from convtool.cli import cli
from tests.imagemagick import convert, needs_imagemagick

SAMPLES = Path(__file__).resolve().parents[2] / "samples"

KERNELS = [
    "Unity", "Gaussian:0x2", "Gaussian:3x1.5", "LoG:0x1", "DoG:0,1,1.6", "DoG:0,2,1",
    "Blur:0x2", "Blur:0x2,90", "Comet:0x3", "Comet:0x3,90", "Comet:0x2,180", "Binomial",
    "Laplacian:0", "Laplacian:1", "Laplacian:2", "Laplacian:3", "Laplacian:5",
    "Laplacian:7", "Laplacian:15", "Laplacian:19", "Sobel", "Sobel:90", "Sobel:45",
    "Roberts", "Roberts:135", "Prewitt",
    "Prewitt:270", "Compass", "Compass:45", "Kirsch", "Kirsch:90", "FreiChen",
    "FreiChen:2", "FreiChen:12", "FreiChen:17",
    # kernel lists: one kernel after another, Q16 pixels between
    "Sobel:>", "Kirsch:@", "Compass:@", "Prewitt:<", "Blur:0x2>", "Comet:0x2,90>",
    "Sobel;Prewitt:90",
]  # fmt: skip


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("photos")
    colour = folder / "colour.png"
    with Image.open(SAMPLES / "scene.jpg") as im:
        im.convert("RGB").save(colour)
    return {"grey": SAMPLES / "gray.png", "colour": colour}


def levels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB" if im.mode != "L" else "L"), dtype=np.int32)


@needs_imagemagick
@pytest.mark.parametrize("which", ["grey", "colour"])
@pytest.mark.parametrize("spec", KERNELS)
def test_im_kernels_equal_imagemagick(pictures, tmp_path, which, spec):
    source = pictures[which]
    theirs = tmp_path / "theirs.png"
    convert(str(source), "-morphology", "Convolve", spec, str(theirs))
    ours = tmp_path / "ours.png"
    # replicate is the default border; --flip makes the correlation ImageMagick's convolution
    result = CliRunner().invoke(cli, ["apply", str(source), "-k", f"im:{spec}", "--flip",
                                      "-o", str(ours)])  # fmt: skip
    assert result.exit_code == 0, result.output
    a, b = levels(ours), levels(theirs)
    assert a.shape == b.shape
    off = np.abs(a - b)
    if off.ndim == 3:
        off = off.max(axis=2)  # a pixel is off by its worst channel
    assert np.count_nonzero(off > 1) <= 0.001 * off.size, (spec, which, off.max())
    assert off.max() <= 2, (spec, which, off.max())


@needs_imagemagick
def test_the_default_border_is_imagemagicks_edge(pictures, tmp_path):
    # a blur near the edges: with zeros the first row darkens, with edge pixels it does not
    theirs, ours = tmp_path / "theirs.png", tmp_path / "ours.png"
    convert(str(pictures["colour"]), "-morphology", "Convolve", "Gaussian:0x3", str(theirs))
    result = CliRunner().invoke(
        cli, ["apply", str(pictures["colour"]), "-k", "im:Gaussian:0x3", "-o", str(ours)]
    )
    assert result.exit_code == 0, result.output
    a, b = levels(ours), levels(theirs)
    assert np.abs(a[0] - b[0]).max() <= 1 and np.abs(a[:, -1] - b[:, -1]).max() <= 1


@needs_imagemagick
@pytest.mark.parametrize("spec", ["Gaussian:0x2", "Blur:0x3,90", "Comet:0x2", "Unity"])
def test_alpha_is_filtered_as_imagemagick_filters_it(tmp_path, spec):
    # colour and alpha both vary: ImageMagick weighs each colour by its alpha, and filters
    # the alpha with the colour; so does --alpha premultiply (the default). (For kernels
    # that do not sum to 1, convtool divides the alpha's result by the sum, where
    # ImageMagick 6 filters its opacity as it is: Binomial's makes everything transparent.)
    with Image.open(SAMPLES / "scene.png") as im:
        rgb = np.asarray(im.convert("RGB"))[:160, :200]
    yy, xx = np.mgrid[:160, :200]
    alpha = np.clip(255 * np.sin(xx / 15) ** 2 * np.cos(yy / 25) ** 2, 0, 255).astype(np.uint8)
    source = tmp_path / "in.png"
    Image.fromarray(np.dstack([rgb, alpha])).save(source)
    theirs, ours = tmp_path / "theirs.png", tmp_path / "ours.png"
    convert(str(source), "-morphology", "Convolve", spec, str(theirs))
    result = CliRunner().invoke(cli, ["apply", str(source), "-k", f"im:{spec}", "--flip",
                                      "-o", str(ours)])  # fmt: skip
    assert result.exit_code == 0, result.output
    with Image.open(theirs) as a, Image.open(ours) as b:
        a, b = (np.asarray(p.convert("RGBA"), dtype=np.int32) for p in (a, b))
    seen = a[..., 3] > 2  # colour under (almost) no alpha is rounding noise in either
    assert np.abs(a[..., 3] - b[..., 3]).max() <= 1
    off = np.abs(a[..., :3] - b[..., :3]).max(axis=2)[seen]
    assert np.count_nonzero(off > 1) <= 0.001 * off.size and off.max() <= 2


@needs_imagemagick
@pytest.mark.parametrize("asked", [[], ["-quality", "70"]])
def test_a_jpeg_is_written_with_imagemagicks_quality_and_subsampling(pictures, tmp_path, asked):
    """A JPEG from a JPEG keeps the input's quality (unless asked) and chroma subsampling,
    as ImageMagick does: what ImageMagick's identify reads from both outputs is the same."""
    from convtool.imaging import jpeg

    source = tmp_path / "in.jpg"
    convert(str(pictures["colour"]), "-quality", "85", "-sampling-factor", "2x1", str(source))
    ours, theirs = tmp_path / "ours.jpg", tmp_path / "theirs.jpg"
    mine = [f"-{a}" if a.startswith("-") else a for a in asked]  # --quality N
    done = CliRunner().invoke(cli, ["apply", str(source), "-k", "sobel_x", "-o", str(ours), *mine])
    assert done.exit_code == 0, done.output
    convert(str(source), "-morphology", "Convolve", "Sobel", *asked, str(theirs))
    said = [
        convert(str(p), "-format", "%Q %[jpeg:sampling-factor]", "info:").stdout
        for p in (ours, theirs)
    ]
    assert said[0] == said[1] == ("70" if asked else "85") + " 2x1,1x1,1x1"
    assert jpeg.header(ours.read_bytes()).coding.subsampling == "4:2:2"
