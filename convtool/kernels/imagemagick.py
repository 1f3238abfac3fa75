"""ImageMagick's convolution kernels, by its names and geometry arguments.

``-k im:NAME[:ARGS]`` gives the kernel ImageMagick's ``-morphology Convolve NAME:ARGS``
uses, as ImageMagick defines it (MagickCore/morphology.c, read and re-derived here):
Unity, Gaussian, DoG, LoG, Blur, Comet, Binomial, Laplacian:0-7 (and 15, 19), Sobel,
Roberts, Prewitt, Compass, Kirsch and FreiChen. ARGS is ImageMagick's geometry,
``RADIUSxSIGMA``, ``A,B,C`` or ``AxB+C+D``; names ignore case.

ImageMagick's kernels have an origin; one off the centre (Comet's) is padded with
zeros here so that the kernel is centred, which gives the same result. Sizes the
Gaussians choose themselves (radius 0) follow ImageMagick's Q16 build, the common
one: the smallest width whose edge weight is below 1/65535 of the total.

ImageMagick *convolves* (the kernel turned 180 degrees): ``--flip`` gives its result.
It neither normalises nor offsets ``-morphology Convolve``'s result, and clips it to
[0, 1] (negative results become 0), as convtool's default ``--map clip`` does.
"""

from __future__ import annotations

import math
import re

import numpy as np

from convtool.kernels.base import MAX_SIDE, KernelSpecError

__all__ = ["IM_NAMES", "im_kernel", "im_kernels"]

_QUANTUM_SCALE = 1.0 / 65535.0  # Q16
_EPSILON = 1e-12
_CYLINDRICAL = ("gaussian", "dog", "log", "laplacian")
_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"

IM_NAMES = {
    "unity": "Unity[:SCALE]",
    "gaussian": "Gaussian:RADIUSxSIGMA",
    "dog": "DoG:RADIUS,SIGMA1,SIGMA2",
    "log": "LoG:RADIUSxSIGMA",
    "blur": "Blur:RADIUSxSIGMA[,ANGLE]",
    "comet": "Comet:WIDTHxSIGMA[,ANGLE]",
    "binomial": "Binomial[:RADIUS]",
    "laplacian": "Laplacian[:TYPE]",
    "sobel": "Sobel[:ANGLE]",
    "roberts": "Roberts[:ANGLE]",
    "prewitt": "Prewitt[:ANGLE]",
    "compass": "Compass[:ANGLE]",
    "kirsch": "Kirsch[:ANGLE]",
    "freichen": "FreiChen[:TYPE[,ANGLE]]",
}

_LAPLACIANS = {
    0: "-1 -1 -1 / -1 8 -1 / -1 -1 -1",
    1: "0 -1 0 / -1 4 -1 / 0 -1 0",
    2: "-2 1 -2 / 1 4 1 / -2 1 -2",
    3: "1 -2 1 / -2 4 -2 / 1 -2 1",
    5: "-4 -1 0 -1 -4 / -1 2 3 2 -1 / 0 3 4 3 0 / -1 2 3 2 -1 / -4 -1 0 -1 -4",
    7: "-10 -5 -2 -1 -2 -5 -10 / -5 0 3 4 3 0 -5 / -2 3 6 7 6 3 -2 / -1 4 7 8 7 4 -1 / "
    "-2 3 6 7 6 3 -2 / -5 0 3 4 3 0 -5 / -10 -5 -2 -1 -2 -5 -10",
    15: "0 0 -1 0 0 / 0 -1 -2 -1 0 / -1 -2 16 -2 -1 / 0 -1 -2 -1 0 / 0 0 -1 0 0",
    19: "0 -1 -1 -2 -2 -2 -1 -1 0 / -1 -2 -4 -5 -5 -5 -4 -2 -1 / -1 -4 -5 -3 0 -3 -5 -4 -1 / "
    "-2 -5 -3 12 24 12 -3 -5 -2 / -2 -5 0 24 40 24 0 -5 -2 / -2 -5 -3 12 24 12 -3 -5 -2 / "
    "-1 -4 -5 -3 0 -3 -5 -4 -1 / -1 -2 -4 -5 -5 -5 -4 -2 -1 / 0 -1 -1 -2 -2 -2 -1 -1 0",
}
_FIXED = {
    "sobel": "1 0 -1 / 2 0 -2 / 1 0 -1",
    "roberts": "0 0 0 / 1 -1 0 / 0 0 0",
    "prewitt": "1 0 -1 / 1 0 -1 / 1 0 -1",
    "compass": "1 1 -1 / 1 -2 -1 / 1 1 -1",
    "kirsch": "5 -3 -3 / 5 0 -3 / 5 -3 -3",
}
_R2 = math.sqrt(2.0)
# FreiChen's types: rows, with 'r' standing for sqrt(2), and the factor applied
_FREICHEN = {
    0: ("1 0 -1 / r 0 -r / 1 0 -1", 1.0),
    1: ("1 0 -1 / r 0 -r / 1 0 -1", _R2 / 2),
    2: ("1 r 0 / r 0 -r / 0 -r -1", _R2 / 2),
    11: ("1 0 -1 / r 0 -r / 1 0 -1", _R2 / 2),
    12: ("1 r 1 / 0 0 0 / 1 r 1", _R2 / 2),
    13: ("r -1 0 / -1 0 1 / 0 1 -r", _R2 / 2),
    14: ("0 1 -r / -1 0 1 / r -1 0", _R2 / 2),
    15: ("0 -1 0 / 1 0 1 / 0 -1 0", 0.5),
    16: ("1 0 -1 / 0 0 0 / -1 0 1", 0.5),
    17: ("1 -2 1 / -2 4 -2 / -1 -2 1", 1 / 6),
    18: ("-2 1 -2 / 1 4 1 / -2 1 -2", 1 / 6),
    19: ("1 1 1 / 1 1 1 / 1 1 1", 1 / 3),
}
# ImageMagick's factor for types 1, 2 and 11-14 is written 1.0/2.0*sqrt(2), which C
# evaluates as sqrt(2)/2 (not 1/(2 sqrt 2) as its comment says): kept, for its results


def _rows(text: str) -> np.ndarray:
    rows = [[_R2 if v == "r" else -_R2 if v == "-r" else float(v) for v in r.split()]
            for r in text.split("/")]  # fmt: skip
    return np.array(rows, dtype=np.float64)


def parse_geometry(text: str) -> tuple[list[float], int]:
    """ImageMagick's kernel arguments: up to four numbers (rho, sigma, xi, psi), and how
    many were given.

    Numbers are separated by ``x`` or ``,``; a signed number right after another one
    starts the next (``3x1+90`` is 3, 1, 90).
    """
    body = re.sub(r"[@<>!^%]", "", text).strip()  # flags: im_kernels reads @ > <
    if body[:1] in ("x", "X"):  # 'x2': no radius
        body = "0" + body
    values: list[float] = []
    pos = 0
    unread = f"ImageMagick kernel arguments {text!r}: cannot read"
    while pos < len(body):
        m = re.match(r"\s*(" + _NUMBER + r")\s*", body[pos:])
        if not m:
            raise KernelSpecError(f"{unread} {body[pos:]!r}")
        values.append(float(m.group(1)))
        pos += m.end()
        if pos < len(body) and body[pos] in "xX,":
            pos += 1
            if pos == len(body):
                raise KernelSpecError(f"ImageMagick kernel arguments {text!r} end in a separator")
        elif pos < len(body) and body[pos] not in "+-":
            raise KernelSpecError(f"{unread} {body[pos:]!r}")
    if len(values) > 4:
        raise KernelSpecError(f"ImageMagick kernel arguments {text!r}: at most 4 numbers")
    if any(not math.isfinite(v) for v in values):
        raise KernelSpecError(f"ImageMagick kernel arguments {text!r} must be finite")
    given = len(values)
    return values + [0.0] * (4 - given), given


def _sigma(value: float) -> float:
    """A sigma as the Gaussians use it: its size; below 1e-6 a point (as ImageMagick's
    kernels are there, to float precision); above 10000 refused (its powers overflow)."""
    value = abs(value)
    if value > 1e4:
        raise KernelSpecError(f"sigma {value:g} is too large; at most 10000")
    return 0.0 if value < 1e-6 else value


def _optimal_width(radius: float, sigma: float, dims: int) -> int:
    """ImageMagick's Gaussian width: 2*ceil(radius)+1, or (radius 0) the smallest odd
    width whose edge weight falls below 1/65535 of the whole (Q16's quantum)."""
    if radius > _EPSILON:
        return int(2.0 * math.ceil(radius) + 1.0)
    g = abs(sigma)
    if g <= _EPSILON:
        return 3
    width = 5
    while True:
        j = (width - 1) // 2
        x = np.arange(-j, j + 1, dtype=np.float64)
        if dims == 2:
            sq = x[:, None] ** 2 + x[None, :] ** 2
            e = np.exp(-sq / (2 * g * g)) / (2 * math.pi * g * g)
        else:
            e = np.exp(-(x**2) / (2 * g * g)) / (math.sqrt(2 * math.pi) * g)
        edge = math.exp(-(j * j) / (2 * g * g))
        edge /= 2 * math.pi * g * g if dims == 2 else math.sqrt(2 * math.pi) * g
        if edge / e.sum() < _QUANTUM_SCALE or edge / e.sum() < _EPSILON:
            return width - 2
        width += 2
        if width > MAX_SIDE + 2:
            raise KernelSpecError(f"a Gaussian of sigma {sigma:g} is wider than {MAX_SIDE}")


def _normalize(k: np.ndarray) -> np.ndarray:
    """ImageMagick's 'correlate normalize': positive weights sum to 1, negative to -1."""
    k = np.where(np.abs(k) < _EPSILON, 0.0, k)
    pos, neg = k[k > 0].sum(), k[k < 0].sum()
    pos = pos if abs(pos) >= _EPSILON else 1.0
    neg = -neg if abs(neg) >= _EPSILON else 1.0
    return np.where(k >= 0, k / pos, k / neg)


def _check_width(width: int, name: str) -> int:
    if width > MAX_SIDE:
        raise KernelSpecError(f"{name} would be {width} wide; at most {MAX_SIDE} is allowed")
    return width


def _gaussians(name: str, rho: float, sigma: float, sigma2: float) -> np.ndarray:
    sigma, sigma2 = _sigma(sigma), _sigma(sigma2)
    if rho >= 1.0:
        width = int(rho) * 2 + 1
    else:
        width = _optimal_width(rho, sigma2 if name == "dog" and sigma < sigma2 else sigma, 2)
    r = (_check_width(width, name) - 1) // 2
    x = np.arange(-r, r + 1, dtype=np.float64)
    sq = x[:, None] ** 2 + x[None, :] ** 2
    unity = np.zeros_like(sq)
    unity[r, r] = 1.0

    def gauss(s: float) -> np.ndarray:
        return np.exp(-sq / (2 * s * s)) / (2 * math.pi * s * s) if s > _EPSILON else unity

    if name == "log":
        if sigma > _EPSILON:
            q = sq / (2 * sigma * sigma)
            k = (1 - q) * np.exp(-q) / (math.pi * sigma**4)
        else:
            k = unity
    else:
        k = gauss(sigma)
        if name == "dog":
            k = k - gauss(sigma2)
    return _normalize(k)


def _blur(rho: float, sigma: float) -> np.ndarray:
    sigma = _sigma(sigma)
    width = int(rho) * 2 + 1 if rho >= 1.0 else _optimal_width(rho, sigma, 1)
    k = np.zeros(_check_width(width, "blur"))
    if sigma > _EPSILON:
        # a Gaussian sampled three times per pixel, each pixel the sum of its three
        v = (width * 3 - 1) // 2
        u = np.arange(-v, v + 1, dtype=np.float64)
        s = sigma * 3
        np.add.at(k, (u.astype(int) + v) // 3, np.exp(-(u**2) / (2 * s * s)))
    else:
        k[(width - 1) // 2] = 1.0
    return _normalize(k)[None, :]


def _comet(rho: float, sigma: float) -> np.ndarray:
    sigma = _sigma(sigma)
    width = (_optimal_width(rho, sigma, 1) - 1) // 2 + 1 if rho < 1.0 else int(rho)
    k = np.zeros(_check_width(width, "comet"))
    if sigma > _EPSILON:
        u = np.arange(width * 3, dtype=np.float64)
        s = sigma * 3
        np.add.at(k, u.astype(int) // 3, np.exp(-(u**2) / (2 * s * s)))
    else:
        k[0] = 1.0
    k /= k.sum()
    # the origin is the first weight: zeros before it centre the kernel
    return np.concatenate([np.zeros(width - 1), k])[None, :]


def _binomial(rho: float) -> np.ndarray:
    width = 3 if rho < 1.0 else int(rho) * 2 + 1
    if width > 21:
        raise KernelSpecError(
            f"binomial radius {int(rho)}: ImageMagick's Binomial overflows past radius 10"
        )
    row = np.array([math.comb(width - 1, i) for i in range(width)], dtype=np.float64)
    return np.outer(row, row)


def rotate_im(k: np.ndarray, angle: float, name: str) -> np.ndarray:
    """Turn a centred kernel as ImageMagick's RotateKernelInfo does: the angle rounded to
    45-degree steps, cylindrical kernels unchanged, Blur only turned by 90."""
    angle = math.fmod(angle, 360.0)
    angle += 360.0 if angle < 0 else 0.0
    if angle > 337.5 or angle <= 22.5 or name in _CYLINDRICAL:
        return k
    if name == "blur":
        if 135.0 < angle <= 225.0:
            return k
        if 225.0 < angle <= 315.0:
            angle -= 180.0
    if 22.5 < math.fmod(angle, 90.0) <= 67.5:
        if k.shape != (3, 3):
            raise KernelSpecError(f"{name}: only 3x3 kernels turn by 45 degrees")
        ring = [(0, 0), (0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (1, 0)]  # clockwise
        out = k.copy()
        for i, cell in enumerate(ring):
            out[ring[(i + 1) % 8]] = k[cell]
        k, angle = out, math.fmod(angle + 315.0, 360.0)
    if 45.0 < math.fmod(angle, 180.0) <= 135.0:
        if 1 in k.shape:  # a line: transposed
            k = np.ascontiguousarray(k.T)
            angle = math.fmod(angle + (270.0 if k.shape[1] == 1 else 90.0), 360.0)
        elif k.shape[0] == k.shape[1]:
            k, angle = np.rot90(k, -1), math.fmod(angle + 270.0, 360.0)
        else:
            raise KernelSpecError(f"{name}: a non-square kernel turns by 90 degrees only if 1-D")
    if 135.0 < angle <= 225.0:
        k = k[::-1, ::-1]
    return np.ascontiguousarray(k)


def _expanded(k: np.ndarray, flags: str, name: str) -> list[np.ndarray]:
    """ImageMagick's rotated lists: ``@`` turns by 45 degrees and ``>`` by 90 until the
    kernel repeats; ``<`` gives the kernel, it turned 180, that turned 90, that turned 180."""
    if "@" in flags or ">" in flags:
        step = 45.0 if "@" in flags else 90.0
        out = [k]
        while True:
            turned = rotate_im(out[-1], step, name)
            if turned.shape == k.shape and np.allclose(turned, k, rtol=0, atol=_EPSILON):
                return out
            out.append(turned)
            if len(out) > 8:  # (a rotation that never comes back: cannot happen)
                return out
    if "<" in flags:
        out = [k]
        for step in (180.0, 90.0, 180.0):
            out.append(rotate_im(out[-1], step, name))
        return out
    return [k]


def im_kernels(text: str) -> list[np.ndarray]:
    """ImageMagick's kernel list: ``K1;K2;...``, each ``NAME[:ARGS]`` with its flags
    (``@``, ``>``, ``<``) expanded; ImageMagick applies them one after another.

    >>> [k.tolist()[0] for k in im_kernels("Sobel>")]
    [[1.0, 0.0, -1.0], [1.0, 2.0, 1.0], [-1.0, 0.0, 1.0], [-1.0, -2.0, -1.0]]
    """
    kernels = []
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        m = re.match(r"([A-Za-z][\w\- ]*?)\s*(?::|(?=[@<>])|$)", part)
        if m is None:
            raise KernelSpecError(f"ImageMagick kernel {part!r}: expected NAME[:ARGS]")
        name, args = m.group(1), part[m.end() :]
        kernels += _expanded(im_kernel(name, args), re.sub(r"[^@<>]", "", args), _key(name))
    if not kernels:
        raise KernelSpecError(f"no ImageMagick kernel in {text!r}")
    if len(kernels) > 64:
        raise KernelSpecError(f"{text!r} makes {len(kernels)} kernels; at most 64 are allowed")
    return kernels


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name.lower())


def im_kernel(name: str, args: str = "") -> np.ndarray:
    """ImageMagick's kernel ``NAME:ARGS``, centred, as weights to correlate with.

    >>> im_kernel("Sobel").tolist()
    [[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]]
    >>> im_kernel("Kirsch", "45")[0].tolist()
    [5.0, 5.0, -3.0]
    """
    key = _key(name)
    if key not in IM_NAMES:
        known = ", ".join(s.split(":")[0].split("[")[0] for s in IM_NAMES.values())
        raise KernelSpecError(f"unknown ImageMagick kernel {name!r}; known: {known}")
    (rho, sigma, xi, _), given = parse_geometry(args)
    if key in ("gaussian", "dog", "log", "blur", "comet", "binomial") and rho > MAX_SIDE:
        raise KernelSpecError(f"{name}: {rho:g} is too large; kernels are at most {MAX_SIDE} wide")
    if key == "unity":
        return np.array([[rho if given else 1.0]])
    if key in ("gaussian", "dog", "log"):
        return _gaussians(key, rho, sigma, xi)
    if key in ("blur", "comet"):
        k = _blur(rho, sigma) if key == "blur" else _comet(rho, sigma)
        return rotate_im(k, xi, key)
    if key == "binomial":
        return _binomial(rho)
    if key == "laplacian":
        return _rows(_LAPLACIANS.get(int(rho), _LAPLACIANS[0]))
    if key == "freichen":
        rows, factor = _FREICHEN.get(int(rho), _FREICHEN[0])
        if int(rho) == 10:
            raise KernelSpecError("FreiChen:10 is a list of nine kernels; give one type, 11-19")
        k = _rows(rows) * factor
        if abs(sigma) >= _EPSILON:
            return rotate_im(k, sigma, key)
        return rotate_im(k, rho, key) if abs(rho) > 30.0 else k
    return rotate_im(_rows(_FIXED[key]), rho, key)
