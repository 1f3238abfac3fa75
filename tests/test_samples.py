"""The committed sample pictures are exactly what samples/make_samples.py draws,
and they have the properties the other tests rely on."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
NAMES = ["disc.png", "disc_rgba.png", "scene.png", "scene.jpg", "gray.png", "gray16.png"]


def _load_script() -> ModuleType:
    # samples/ is not a package, so import the script from its path.
    spec = importlib.util.spec_from_file_location("make_samples", SAMPLES / "make_samples.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("samples")
    written = _load_script().write_samples(out)
    assert sorted(p.name for p in written) == sorted(NAMES)
    return out


def _pixels(path: Path) -> tuple[str, np.ndarray]:
    with Image.open(path) as im:
        return im.mode, np.asarray(im)


@pytest.mark.parametrize("name", NAMES)
def test_regenerated_files_match_committed(regenerated: Path, name: str) -> None:
    committed, fresh = SAMPLES / name, regenerated / name
    assert committed.exists(), f"{committed} missing: run python samples/make_samples.py"
    # Pixels, not bytes: the encoder (zlib, libjpeg) may differ between machines.
    (mode_a, a), (mode_b, b) = _pixels(committed), _pixels(fresh)
    assert mode_a == mode_b
    if name.endswith(".jpg"):  # lossy: the decoded pixels depend on libjpeg's version
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 1.0, f"{name}: drawing changed"
    else:
        np.testing.assert_array_equal(a, b, err_msg=f"{name}: drawing changed")


def test_files_are_small() -> None:
    for name in NAMES:
        assert (SAMPLES / name).stat().st_size < 400_000, name


def test_disc_quadrant_colours() -> None:
    mode, disc = _pixels(SAMPLES / "disc.png")
    assert mode == "RGB" and disc.shape == (80, 80, 3)
    white, red, green, black = (255, 255, 255), (237, 28, 36), (34, 177, 76), (0, 0, 0)
    expected = {
        (20, 20): white,  # (row, col): top left
        (20, 60): red,  # top right
        (60, 20): green,  # bottom left
        (60, 60): white,  # bottom right
        (39, 39): white,  # the four pixels around the centre
        (39, 40): red,
        (40, 39): green,
        (40, 40): white,
        (39, 5): white,  # leftmost disc column
        (4, 39): black,  # just above the disc
        (0, 0): black,
        (79, 79): black,
    }
    for (r, c), colour in expected.items():
        assert tuple(disc[r, c]) == colour, (r, c)
    assert len(np.unique(disc.reshape(-1, 3), axis=0)) == 4  # hard edged, no anti-aliasing


def test_disc_rgba_is_the_disc_fully_opaque() -> None:
    mode, rgba = _pixels(SAMPLES / "disc_rgba.png")
    assert mode == "RGBA"
    np.testing.assert_array_equal(rgba[..., :3], _pixels(SAMPLES / "disc.png")[1])
    assert (rgba[..., 3] == 255).all()  # like the chapter's circle.png


def _abs_laplacian(img: np.ndarray) -> np.ndarray:
    f = img.astype(np.float64)
    return np.abs(4 * f[1:-1, 1:-1] - f[:-2, 1:-1] - f[2:, 1:-1] - f[1:-1, :-2] - f[1:-1, 2:])


def test_scene_has_high_frequency_detail() -> None:
    mode, scene = _pixels(SAMPLES / "scene.png")
    assert mode == "RGB" and scene.shape == (512, 512, 3)
    luma = scene @ np.array([0.299, 0.587, 0.114])
    lap = _abs_laplacian(luma)
    assert lap.mean() > 40  # measured ~76
    # The noise texture (top left) has pixel-level detail everywhere, not only at edges:
    # every 16x16 tile of it, not just the average, is busy (measured min ~23).
    tiles = lap[24:232, 24:232].reshape(13, 16, 13, 16).mean(axis=(1, 3))
    assert tiles.min() > 10
    assert len(np.unique(scene.reshape(-1, 3), axis=0)) > 50_000  # photo-like colour count


def test_scene_jpeg_is_close_to_png() -> None:
    mode, jpg = _pixels(SAMPLES / "scene.jpg")
    assert mode == "RGB" and jpg.shape == (512, 512, 3)
    png = _pixels(SAMPLES / "scene.png")[1]
    assert np.abs(jpg.astype(int) - png.astype(int)).mean() < 12  # measured ~6.9


def test_gray() -> None:
    mode, gray = _pixels(SAMPLES / "gray.png")
    assert mode == "L" and gray.shape == (256, 256)
    assert gray.min() < 20 and gray.max() > 235
    assert _abs_laplacian(gray).mean() > 40


def test_gray16_uses_full_16_bit_range() -> None:
    mode, g = _pixels(SAMPLES / "gray16.png")
    assert mode == "I;16" and g.shape == (128, 128) and g.dtype == np.uint16
    assert g.min() == 0 and g.max() == 65535
    # Real 16-bit data: the low byte varies, it is not an 8-bit picture scaled by 257.
    assert len(np.unique(g & 0xFF)) == 256
    assert np.mean(g % 257 != 0) > 0.9
