"""Draw convtool's sample pictures, deterministically, with numpy and pillow only.

Usage: ``python samples/make_samples.py [OUT_DIR]`` (default: this script's folder).

Every run writes the same bytes: randomness comes from fixed-seed PCG64 streams,
and the drawing uses only +, -, *, /, sqrt, floor and comparisons (all exactly
rounded in IEEE arithmetic), never sin/exp/FFT, whose last bits can differ
between CPUs and numpy builds. Shapes are rasterised here rather than with
ImageDraw/ImageFont, so the pixels do not depend on pillow's or FreeType's version.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

Array = np.ndarray
Point = tuple[float, float]

WHITE = (255, 255, 255)
RED = (237, 28, 36)  # the chapter's picture uses MS Paint's palette
GREEN = (34, 177, 76)

DISC_SIZE = 80
# Fitted against the chapter's circle.png: centre on the picture's centre, and a
# radius between about 34.82 and 34.90 gives the fewest differing pixels (14, all
# on the rim, where the hand-drawn original is slightly irregular).
DISC_RADIUS = 34.875

SCENE_SIZE = 512
GRAY_SIZE = 256
GRAY16_SIZE = 128
JPEG_QUALITY = 90


# ------------------------------------------------------------------ helpers


def _grid(h: int, w: int) -> tuple[Array, Array]:
    """Pixel-centre coordinates (y, x), in pixels, as float64."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    return y + 0.5, x + 0.5


def _to_u8(img: Array) -> Array:
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _tri(t: Array) -> Array:
    """Triangle wave with period 1 and range [0, 1]: a sine stand-in built from exact ops."""
    f = t - np.floor(t)
    return 1.0 - 2.0 * np.abs(f - 0.5)


def _smoothstep(t: Array) -> Array:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _value_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> Array:
    """Lattice noise with one feature per ``cell`` pixels, in [0, 1]; cell 1 is white noise."""
    if cell == 1:
        return rng.random((h, w))
    lat = rng.random((h // cell + 2, w // cell + 2))

    def axis(n: int) -> tuple[Array, Array]:
        t = (np.arange(n) + 0.5) / cell
        i = np.floor(t).astype(np.intp)
        return i, _smoothstep(t - i)

    iy, fy = axis(h)
    ix, fx = axis(w)
    fy, fx = fy[:, None], fx[None, :]
    top = lat[iy][:, ix] * (1 - fx) + lat[iy][:, ix + 1] * fx
    bot = lat[iy + 1][:, ix] * (1 - fx) + lat[iy + 1][:, ix + 1] * fx
    return top * (1 - fy) + bot * fy


def _fractal_noise(
    seed: int, h: int, w: int, cells: Sequence[int] = (64, 32, 16, 8, 4, 2, 1)
) -> Array:
    """Sum of octaves with a 1/f-like falloff, like natural texture; roughly in [0, 1]."""
    rng = np.random.default_rng(seed)
    total = np.zeros((h, w))
    weight_sum = 0.0
    for cell in cells:
        # cell ** 0.25: a shallow falloff keeps pixel-level detail strong; two sqrts
        # rather than pow(), as pow is not exactly rounded on every platform.
        weight = math.sqrt(math.sqrt(cell))
        total += weight * (_value_noise(rng, h, w, cell) - 0.5)
        weight_sum += weight
    # Octaves partly cancel (std ~0.09), so stretch to std ~0.18: under 0.3% clipped.
    return np.clip(0.5 + 2.0 * total / weight_sum, 0.0, 1.0)


def _segment_mask(y: Array, x: Array, p: Point, q: Point, width: float) -> Array:
    """Pixels whose centre lies within width/2 of the segment p-q (hard edged)."""
    (x0, y0), (x1, y1) = p, q
    dx, dy = x1 - x0, y1 - y0
    length2 = dx * dx + dy * dy
    t = (
        np.zeros_like(x)
        if length2 == 0
        else np.clip(((x - x0) * dx + (y - y0) * dy) / length2, 0, 1)
    )
    ex, ey = x - (x0 + t * dx), y - (y0 + t * dy)
    return ex * ex + ey * ey <= (width / 2) ** 2


def _polygon_mask(y: Array, x: Array, pts: Sequence[Point]) -> Array:
    """Even-odd point-in-polygon test on pixel centres (works for non-convex shapes)."""
    inside = np.zeros(x.shape, dtype=bool)
    n = len(pts)
    for k in range(n):
        (xa, ya), (xb, yb) = pts[k], pts[(k + 1) % n]
        if ya == yb:
            continue
        crosses = (ya > y) != (yb > y)
        x_at = xa + (y - ya) * (xb - xa) / (yb - ya)
        inside ^= crosses & (x < x_at)
    return inside


# Stroke "font": glyphs as polylines on a 4 x 6 grid (x right, y down), so the
# scene gets text-like thin strokes without depending on any font file.
_GLYPHS: dict[str, list[list[Point]]] = {
    "C": [[(4, 0), (0, 0), (0, 6), (4, 6)]],
    "O": [[(0, 0), (4, 0), (4, 6), (0, 6), (0, 0)]],
    "N": [[(0, 6), (0, 0), (4, 6), (4, 0)]],
    "V": [[(0, 0), (2, 6), (4, 0)]],
    "T": [[(0, 0), (4, 0)], [(2, 0), (2, 6)]],
    "L": [[(0, 0), (0, 6), (4, 6)]],
    "K": [[(0, 0), (0, 6)], [(4, 0), (0, 3), (4, 6)]],
    "E": [[(4, 0), (0, 0), (0, 6), (4, 6)], [(0, 3), (3, 3)]],
    "R": [[(0, 6), (0, 0), (4, 0), (4, 3), (0, 3), (4, 6)]],
    "1": [[(1, 1), (2, 0), (2, 6)], [(1, 6), (3, 6)]],
    "7": [[(0, 0), (4, 0), (1, 6)]],
    "A": [[(0, 6), (2, 0), (4, 6)], [(1, 3), (3, 3)]],
    "S": [[(4, 0), (0, 0), (0, 3), (4, 3), (4, 6), (0, 6)]],
    "Z": [[(0, 0), (4, 0), (0, 6), (4, 6)]],
    " ": [],
}


def _draw_text(
    img: Array,
    y: Array,
    x: Array,
    text: str,
    origin: Point,
    unit: float,
    width: float,
    colour: Sequence[float],
) -> None:
    ox, oy = origin
    for i, ch in enumerate(text):
        for line in _GLYPHS[ch]:
            for (ax, ay), (bx, by) in itertools.pairwise(line):
                base = ox + i * 6 * unit
                p = (base + ax * unit, oy + ay * unit)
                q = (base + bx * unit, oy + by * unit)
                img[_segment_mask(y, x, p, q, width)] = colour


# -------------------------------------------------------------------- disc


def draw_disc(size: int = DISC_SIZE, radius: float = DISC_RADIUS) -> Array:
    """The chapter's test picture: a quartered disc on black, (size, size, 3) uint8."""
    y, x = _grid(size, size)
    c = size / 2
    disc = (x - c) ** 2 + (y - c) ** 2 <= radius * radius  # hard edged, as in the original
    top, left = y < c, x < c
    img = np.zeros((size, size, 3), dtype=np.uint8)
    img[disc & (top == left)] = WHITE  # top-left and bottom-right
    img[disc & top & ~left] = RED
    img[disc & ~top & left] = GREEN
    return img


def draw_disc_rgba(size: int = DISC_SIZE, radius: float = DISC_RADIUS) -> Array:
    """The disc as RGBA. The chapter's circle.png is RGBA but fully opaque (alpha 255
    everywhere, background included), so this mirrors it rather than cutting the disc out."""
    rgb = draw_disc(size, radius)
    alpha = np.full((size, size, 1), 255, dtype=np.uint8)
    return np.concatenate([rgb, alpha], axis=2)


# ------------------------------------------------------------------- scene


def draw_scene(size: int = SCENE_SIZE) -> Array:
    """A test chart with photo-like richness: flat areas, hard edges, smooth ramps and
    texture down to single pixels, so kernel fitting on it sees every frequency.
    Layout is in fractions of ``size``; texture scales are in pixels. Returns uint8 RGB."""
    n = size
    y, x = _grid(n, n)
    u, v = x / n, y / n
    s = n / 512  # lengths below are given for the 512-pixel version

    # Background: a linear colour ramp in both directions.
    img = np.stack([40 + 190 * u, 50 + 170 * v, 210 - 160 * (u + v) / 2], axis=-1)

    # Top left: multi-octave noise texture, each channel its own field (like foliage).
    q0, q1 = int(0.04 * n), int(0.46 * n)
    h = q1 - q0
    tex = np.stack([_fractal_noise(seed, h, h) for seed in (1701, 1702, 1703)], axis=-1)
    lum = _fractal_noise(1704, h, h)[..., None]
    img[q0:q1, q0:q1] = 255 * (0.55 * lum + 0.45 * tex) * np.array([0.85, 1.0, 0.75])

    # Top right: a zone plate (rings whose frequency grows with radius, reaching
    # 0.33 cycles/pixel at the box's sides and 0.47 in its corners, below Nyquist),
    # tinted by a radial colour ramp.
    a0, a1 = int(0.54 * n), int(0.96 * n)
    cy, cx = (q0 + q1) / 2, (a0 + a1) / 2
    rmax = (a1 - a0) / 2
    r2 = (x - cx) ** 2 + (y - cy) ** 2
    r = np.sqrt(r2) / rmax
    rings = _tri(r2 / (6.0 * rmax))
    ramp = np.stack([255 * (1 - r / 1.5), 90 + 150 * r, 60 + 190 * r * r], axis=-1)
    zone = (np.abs(x - cx) < rmax) & (np.abs(y - cy) < rmax)
    img[zone] = np.clip((0.25 + 0.75 * rings[..., None]) * ramp, 0, 255)[zone]

    # Bottom left, upper half: checkerboards with 1, 2, 4 and 8 pixel cells.
    b0, b1 = int(0.54 * n), int(0.96 * n)
    bm = (b0 + b1) // 2
    xi, yi = np.floor(x).astype(np.intp), np.floor(y).astype(np.intp)
    stripe = (q1 - q0) // 4
    for k, cell in enumerate((1, 2, 4, 8)):
        x0 = q0 + k * stripe
        box = (xi >= x0) & (xi < x0 + stripe) & (yi >= b0) & (yi < bm)
        odd = ((xi // cell + yi // cell) % 2).astype(bool)
        img[box & odd] = (235, 225, 200)
        img[box & ~odd] = (30, 35, 70)

    # Bottom left, lower half: crossed hatching and a gradient grating of rising frequency.
    hatch = (yi >= bm) & (yi < b1) & (xi >= q0) & (xi < (q0 + q1) // 2)
    diag = (((xi + yi) % 7) == 0) | (((xi - yi) % 5) == 0)
    img[hatch] = (200, 170, 120)
    img[hatch & diag] = (70, 30, 20)
    chirp = (yi >= bm) & (yi < b1) & (xi >= (q0 + q1) // 2) & (xi < q1)
    t = (x - (q0 + q1) / 2) / (q1 - (q0 + q1) / 2)  # 0..1 across the box
    grating = _tri((x - (q0 + q1) / 2) * (0.05 + 0.2 * t) + 0.3 * (y - bm) * t)
    g = np.stack([60 + 180 * grating, 60 + 120 * grating * v, 200 - 150 * grating], axis=-1)
    img[chirp] = g[chirp]

    # Bottom right: a radial colour ramp carrying hard-edged shapes.
    rc = (a0 + a1) / 2, (b0 + b1) / 2
    rr = np.sqrt((x - rc[0]) ** 2 + (y - rc[1]) ** 2) / ((a1 - a0) / 2)
    radial = np.stack([250 - 120 * rr, 200 - 150 * rr, 90 + 140 * rr], axis=-1)
    br = (xi >= a0) & (xi < a1) & (yi >= b0) & (yi < b1)
    img[br] = np.clip(radial, 0, 255)[br]
    img[(xi >= a0 + 12 * s) & (xi < a0 + 95 * s) & (yi >= b0 + 14 * s) & (yi < b0 + 70 * s)] = (
        20,
        90,
        160,
    )
    img[(xi >= a0 + 40 * s) & (xi < a0 + 130 * s) & (yi >= b0 + 45 * s) & (yi < b0 + 100 * s)] = (
        240,
        240,
        235,
    )
    # A five-pointed star (non-convex polygon); vertices from exact decimal constants, not cos/sin.
    star_unit = [
        (0.0, -1.0), (0.2245, -0.309), (0.9511, -0.309), (0.3633, 0.118), (0.5878, 0.809),
        (0.0, 0.382), (-0.5878, 0.809), (-0.3633, 0.118), (-0.9511, -0.309), (-0.2245, -0.309),
    ]  # fmt: skip
    sx, sy, sr = a0 + 150 * s, b0 + 150 * s, 48 * s
    img[_polygon_mask(y, x, [(sx + sr * px, sy + sr * py) for px, py in star_unit])] = (200, 20, 40)
    tri = [(a0 + 20 * s, b1 - 15 * s), (a0 + 85 * s, b1 - 15 * s), (a0 + 30 * s, b0 + 115 * s)]
    img[_polygon_mask(y, x, tri)] = (250, 200, 0)
    d2 = (x - (a1 - 45 * s)) ** 2 + (y - (b0 + 45 * s)) ** 2
    img[d2 <= (30 * s) ** 2] = (10, 10, 10)
    img[(d2 <= (22 * s) ** 2) & (d2 > (16 * s) ** 2)] = (120, 230, 255)

    # A large circle and a tilted rectangle straddling the quadrants: long edges at every angle.
    img[(x - n / 2) ** 2 + (y - n / 2) ** 2 <= (0.09 * n) ** 2] = (250, 130, 30)
    tilt = [(0.40 * n, 0.62 * n), (0.56 * n, 0.55 * n), (0.60 * n, 0.64 * n), (0.44 * n, 0.71 * n)]
    img[_polygon_mask(y, x, tilt)] = (90, 40, 130)

    # Thin lines: a fan of 1-pixel strokes from one point (all angles), and 2-pixel ones.
    fan_origin = (0.5 * n, 0.02 * n)
    for k in range(9):
        end = (0.5 * n + (k - 4) * 0.055 * n, 0.5 * n)
        img[_segment_mask(y, x, fan_origin, end, 1.0)] = (255, 255, 255) if k % 2 else (0, 0, 0)
    for k in range(4):
        off = (k + 1) * 0.02 * n
        img[
            _segment_mask(
                y, x, (0.02 * n, 0.98 * n - off), (0.98 * n - off, 0.02 * n), 2.0 if k % 2 else 1.0
            )
        ] = (255, 240, 0) if k % 2 else (0, 60, 0)

    # Text-like strokes: small letters, at a size where strokes are 1-2 pixels wide.
    _draw_text(
        img, y, x, "CONVTOOL 17", (0.05 * n, 0.475 * n), 2.2 * s, 1.3 * s + 0.2, (255, 255, 255)
    )
    _draw_text(img, y, x, "KERNEL", (0.58 * n, 0.475 * n), 1.6 * s, 1.0 * s + 0.3, (10, 10, 40))
    return _to_u8(img)


def draw_gray(size: int = GRAY_SIZE) -> Array:
    """The scene redrawn at ``size`` and turned to luma (integer Rec. 601 weights)."""
    rgb = draw_scene(size).astype(np.int64)
    luma = (299 * rgb[..., 0] + 587 * rgb[..., 1] + 114 * rgb[..., 2] + 500) // 1000
    return luma.astype(np.uint8)


def draw_gray16(size: int = GRAY16_SIZE) -> Array:
    """16-bit test picture: smooth ramps (exercising the low byte) plus texture and one hard
    edge, stretched to exactly 0..65535."""
    y, x = _grid(size, size)
    u, v = x / size, y / size
    f = 0.55 * (u + v) / 2 + 0.25 * _smoothstep(1 - 2.2 * np.sqrt((u - 0.7) ** 2 + (v - 0.3) ** 2))
    f += 0.2 * _fractal_noise(4242, size, size, cells=(16, 8, 4, 2, 1))
    f[(u > 0.1) & (u < 0.35) & (v > 0.6) & (v < 0.9)] += 0.15
    lo, hi = f.min(), f.max()
    return np.rint((f - lo) / (hi - lo) * 65535).astype(np.uint16)


# -------------------------------------------------------------------- output


def write_samples(out_dir: Path | str | None = None) -> list[Path]:
    """Draw every sample picture into ``out_dir`` (default: this script's folder)."""
    out = Path(out_dir) if out_dir is not None else Path(__file__).resolve().parent
    out.mkdir(parents=True, exist_ok=True)
    scene = Image.fromarray(draw_scene(), "RGB")
    images: dict[str, Image.Image] = {
        "disc.png": Image.fromarray(draw_disc(), "RGB"),
        "disc_rgba.png": Image.fromarray(draw_disc_rgba(), "RGBA"),
        "scene.png": scene,
        "gray.png": Image.fromarray(draw_gray(), "L"),
        "gray16.png": Image.fromarray(draw_gray16()),  # uint16 -> mode 'I;16'
    }
    written = []
    for name, im in images.items():
        path = out / name
        im.save(path, optimize=True)
        written.append(path)
    jpg = out / "scene.jpg"
    scene.save(jpg, quality=JPEG_QUALITY)
    written.append(jpg)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "out_dir", nargs="?", type=Path, default=None, help="where to write (default: samples/)"
    )
    args = parser.parse_args(argv)
    for path in write_samples(args.out_dir):
        print(f"{path}  {path.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
