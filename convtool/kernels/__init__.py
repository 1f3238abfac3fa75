"""The named kernel bank and the kernel-spec parser.

A *kernel spec* is the text a user gives to ``-k``; :func:`parse_kernel_spec`
turns it into a :class:`KernelSpec` (weights, optional bias, display name) and
:func:`parse_kernel` into the weights alone. Kernels are applied as
cross-correlations (no flip), as in the chapter, OpenCV's filter2D and torch.

Spec forms
----------
``sobel_x``, ``Sobel X``, ``sobel-x``
    A name from the bank (:func:`list_kernels`). Case does not matter, and
    ``-``, ``_`` and spaces are the same character.
``gaussian:7,1.5``, ``box:5x3``, ``motion:9,30``
    A parameterised name: the parameters follow a colon, separated by commas.
    ``gaussian[:SIZE[,SIGMA]]`` (SIZE odd, SIGMA > 0, default
    ``0.3*((SIZE-1)/2-1)+0.8`` as OpenCV's getGaussianKernel), ``box[:W[xH]]``
    (also ``box:W,H``; W columns, H rows), ``unsharp[:SIZE[,SIGMA[,AMOUNT]]]``
    and ``motion[:LENGTH[,ANGLE]]``.
``sobel_x@90``, ``kirsch@45``, ``motion:9@90``
    Rotation, one rule: ``@ANGLE`` after any name, with or without parameters.
    For a name that takes no parameters, ImageMagick's ``sobel_x:90`` is
    accepted too and means the same. Angles turn the kernel *clockwise* as
    displayed (rows downward), as ImageMagick's ``Sobel:90`` does: ImageMagick's
    ``Sobel`` ``1 0 -1 / 2 0 -2 / 1 0 -1`` becomes ``1 2 1 / 0 0 0 / -1 -2 -1``,
    so ``sobel_x:90`` equals ``sobel_y``. Multiples of 90 degrees work for every
    kernel (exact, ``np.rot90``); odd multiples of 45 degrees only for 3x3
    kernels, by moving the ring of eight outer cells one place per 45 degrees
    (as ImageMagick does; ``kirsch@45`` is ``kirsch_nw``).
``0,-1,0; -1,5,-1; 0,-1,0``
    Inline rows, split by ``;``, ``/`` or newlines; numbers split by commas
    and/or whitespace. A spec is inline when its first token is a number.
``3x3: 0,-1,0 -1,5,-1 0,-1,0``
    ImageMagick's form: ``WxH:`` (or ``N:`` for NxN), then W*H values row-major.
``@path``
    A file. ``.txt``/``.csv``/no suffix: rows of numbers (commas or whitespace;
    ``#`` starts a comment; the ``WxH:`` form is accepted too). ``.json``: a
    nested list, or an object ``{"kernel": [...], "bias": ...}``. ``.npy``: a 2-D
    (kH, kW) array or a 4-D (C_out, C_in, kH, kW) one. JSON kernels may be 2-D
    or 4-D as well; 1-D and 3-D arrays are refused as ambiguous.

Names come first from the chapter's table 17-1 (sharpness, vertical_edge,
surround, sobel_y, nothing, horizontal_edge, blur, sobel_x, embossing, with
their exact values; ``blur`` is 0.11 everywhere as the chapter has it, ``box3``
is exactly 1/9). Derivative kernels follow the chapter's sign: ``*_x`` is right
minus left, ``*_y`` bottom minus top (ImageMagick's Sobel and Prewitt are the
negatives). ``laplacian`` is ``laplacian4``, the 4-neighbour discrete Laplacian
``0 1 0 / 1 -4 1 / 0 1 0`` (OpenCV's cv2.Laplacian, scipy's laplace);
ImageMagick's Laplacian:1 and :0 are the negatives of ``laplacian4`` and
``laplacian8``.

Every failure raises :class:`KernelSpecError` (a ValueError) with a one-line
message naming the offending value. Kernels larger than ``MAX_SIDE`` rows or
columns, or with more than ``MAX_WEIGHTS`` weights, are refused.
"""

from __future__ import annotations

import difflib
import io
import json
import math
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = [
    "MAX_SIDE",
    "MAX_WEIGHTS",
    "KernelInfo",
    "KernelSpec",
    "KernelSpecError",
    "box_kernel",
    "format_kernel",
    "format_number",
    "gaussian_kernel",
    "kernel_info",
    "list_kernels",
    "motion_kernel",
    "normalize_kernel",
    "parse_kernel",
    "parse_kernel_spec",
    "resolve_name",
    "rotate_kernel",
    "unsharp_kernel",
]

MAX_SIDE = 1024  # rows or columns
MAX_WEIGHTS = 1024 * 1024  # all weights, every channel
MAX_FILE_BYTES = 64 * 1024 * 1024


class KernelSpecError(ValueError):
    """A kernel spec that cannot be understood; the message names the problem."""


@dataclass(frozen=True, eq=False)
class KernelSpec:
    """A parsed kernel spec.

    Attributes
    ----------
    weights : ndarray of float64
        (kH, kW), or (C_out, C_in, kH, kW) from a 4-D ``.npy``/``.json`` file.
    name : str
        Display name: the canonical name with its parameters and rotation
        (``gaussian:7,1.5``, ``sobel_x@90``), ``custom`` for inline kernels, or
        the file's name without its suffix.
    bias : float, tuple of float, or None
        A bias from a JSON file: one float for every output channel, or (4-D
        kernels only) one value per output channel. None when not given.
    base : str or None
        The canonical bank name for named kernels, otherwise None.
    """

    weights: np.ndarray
    name: str
    bias: float | tuple[float, ...] | None = None
    base: str | None = None

    @property
    def slug(self) -> str:
        """The name made safe for file names: ``gaussian:7,1.5@90`` -> ``gaussian_7_1.5_r90``."""
        text = re.sub(r"[^A-Za-z0-9.\-]+", "_", self.name.replace("@", "_r"))
        return text.strip("_.") or "kernel"


class KernelInfo(NamedTuple):
    """One entry of the bank, as :func:`list_kernels` gives it."""

    name: str
    aliases: tuple[str, ...]
    kernel: np.ndarray  # the kernel, or the one its default parameters give
    description: str
    syntax: str  # the name, or e.g. "gaussian[:SIZE[,SIGMA]]"
    group: str


# ----------------------------------------------------------------------------- numbers


def _check_size(shape: tuple[int, ...], what: str = "kernel") -> None:
    if any(n < 1 for n in shape):
        raise KernelSpecError(f"{what} is empty (shape {tuple(shape)})")
    if shape[-2] > MAX_SIDE or shape[-1] > MAX_SIDE:
        raise KernelSpecError(
            f"{what} is {shape[-2]}x{shape[-1]}; at most {MAX_SIDE} rows and columns are allowed"
        )
    if math.prod(shape) > MAX_WEIGHTS:
        raise KernelSpecError(
            f"{what} has {math.prod(shape)} weights; at most {MAX_WEIGHTS} are allowed"
        )


def _number(token: str, where: str) -> float:
    try:
        value = float(token)
    except (ValueError, OverflowError):
        raise KernelSpecError(f"{where}: {token!r} is not a number") from None
    if not math.isfinite(value):
        raise KernelSpecError(f"{where}: {token!r} is not finite (NaN and infinity are refused)")
    return value


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _check_finite(w: np.ndarray, what: str) -> None:
    bad = np.argwhere(~np.isfinite(w))
    if bad.size:
        index = tuple(int(i) for i in bad[0])
        raise KernelSpecError(
            f"{what} contains {w[index]} at index {index}; weights must be finite"
        )


def format_number(value: float) -> str:
    """Compact text for one weight: integers without decimals, others to 3 significant digits."""
    value = float(value)
    if value.is_integer() and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.3g}"


def format_kernel(w: np.ndarray, *, max_rows: int = 15, max_cols: int = 15) -> str:
    """A 2-D kernel as right-aligned text rows; large kernels are elided in the middle."""
    w = np.asarray(w)
    if w.ndim != 2:
        raise ValueError(f"format_kernel needs a 2-D kernel, got shape {w.shape}")

    def pick(n: int, limit: int) -> list[int | None]:
        if n <= limit:
            return list(range(n))
        head = (limit - 1) // 2
        tail = limit - 1 - head
        return [*range(head), None, *range(n - tail, n)]

    rows, cols = pick(w.shape[0], max_rows), pick(w.shape[1], max_cols)
    cells = [
        [
            ("…" if c is None else "⋮") if r is None or c is None else format_number(w[r, c])
            for c in cols
        ]
        for r in rows
    ]
    widths = [max(len(row[j]) for row in cells) for j in range(len(cols))]
    return "\n".join(
        "  ".join(t.rjust(n) for t, n in zip(row, widths, strict=True)) for row in cells
    )


def normalize_kernel(w: np.ndarray) -> np.ndarray:
    """Divide a kernel by its sum, so that it keeps the mean brightness.

    A 4-D (C_out, C_in, kH, kW) kernel is normalised per output channel. Kernels
    whose sum is zero (relative to the sum of absolute weights, within 1e-12),
    such as edge detectors, are returned unchanged: there is nothing to divide
    by. Always returns a new float64 array.
    """
    w = np.array(w, dtype=np.float64)
    if w.ndim == 4:
        for o in range(w.shape[0]):
            w[o] = normalize_kernel(w[o])
        return w
    total = w.sum()
    if abs(total) > 1e-12 * np.abs(w).sum():
        w /= total
    return w


# ----------------------------------------------------------------------------- builders


def _odd_size(value: float, what: str) -> int:
    if not (value.is_integer() and value >= 1 and value % 2 == 1):
        raise KernelSpecError(f"{what} must be a positive odd integer, got {format_number(value)}")
    if value > MAX_SIDE:
        raise KernelSpecError(f"{what} is {format_number(value)}; at most {MAX_SIDE} is allowed")
    return int(value)


def _default_sigma(size: int) -> float:
    return 0.3 * ((size - 1) * 0.5 - 1) + 0.8


def gaussian_kernel(size: int = 3, sigma: float | None = None) -> np.ndarray:
    """A size x size Gaussian that sums to 1.

    ``size`` must be a positive odd integer (as OpenCV requires; an even kernel
    has no centre). ``sigma`` defaults to ``0.3*((size-1)*0.5-1)+0.8``, OpenCV's
    getGaussianKernel rule (when OpenCV picks sigma itself it uses fixed tables
    for small sizes, up to 7 in 4.x and 9 in 5.0; this function always uses the
    formula).
    """
    size = _odd_size(float(size), "gaussian size")
    if sigma is None:
        sigma = _default_sigma(size)
    if not (math.isfinite(sigma) and sigma > 0):
        raise KernelSpecError(f"gaussian sigma must be > 0, got {format_number(sigma)}")
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    with np.errstate(over="ignore"):  # a tiny sigma overflows x / sigma: exp(-inf) is 0
        g = np.exp(-0.5 * (x / sigma) ** 2)  # (no 0/0 for a tiny sigma)
    g /= g.sum()
    k = np.outer(g, g)
    return k / k.sum()


def box_kernel(width: int = 3, height: int | None = None) -> np.ndarray:
    """A mean filter of ``height`` rows and ``width`` columns, every weight 1/(width*height)."""
    height = width if height is None else height
    for value, what in ((width, "width"), (height, "height")):
        value = float(value)
        if not (value.is_integer() and value >= 1):
            raise KernelSpecError(
                f"box {what} must be a positive integer, got {format_number(value)}"
            )
        if value > MAX_SIDE:
            raise KernelSpecError(
                f"box {what} is {format_number(value)}; at most {MAX_SIDE} is allowed"
            )
    h, w = int(height), int(width)
    _check_size((h, w), "box kernel")
    return np.full((h, w), 1.0 / (h * w))


def unsharp_kernel(size: int = 3, sigma: float | None = None, amount: float = 1.0) -> np.ndarray:
    """Unsharp masking as one kernel: ``identity + amount * (identity - gaussian)``; sums to 1."""
    if not math.isfinite(amount):
        raise KernelSpecError(f"unsharp amount must be finite, got {amount}")
    g = gaussian_kernel(size, sigma)
    identity = np.zeros_like(g)
    identity[g.shape[0] // 2, g.shape[1] // 2] = 1.0
    return identity + amount * (identity - g)


def motion_kernel(length: float = 5, angle: float = 0.0) -> np.ndarray:
    """A straight motion blur: a line ``length`` pixels long through the centre, summing to 1.

    ``angle`` is in degrees, clockwise from pointing right as displayed (rows
    downward), the same sense as the ``@ANGLE`` rotation: ``motion:9,90`` is a
    vertical 9x1 line, ``motion:9,45`` runs from top-left to bottom-right.
    Each cell's weight is the length of the (zero-width) segment that crosses
    the cell, an exact area-sampled rasterisation: an axis-aligned line of odd
    length gives exactly 1/length per cell, other angles are anti-aliased along
    the line. The kernel is the smallest odd-sized box that holds the segment,
    centred on it (``motion:9`` is 1x9, not 9x9).
    """
    length, angle = float(length), float(angle)
    if not (math.isfinite(length) and length >= 1):
        raise KernelSpecError(f"motion length must be at least 1, got {format_number(length)}")
    if not math.isfinite(angle):
        raise KernelSpecError(f"motion angle must be finite, got {angle}")
    if length > MAX_SIDE:
        raise KernelSpecError(
            f"motion length is {format_number(length)}; at most {MAX_SIDE} is allowed"
        )
    angle %= 180.0  # the segment is the same turned half a turn
    if angle in (0.0, 90.0):  # exact directions for the axes
        dx, dy = (1.0, 0.0) if angle == 0.0 else (0.0, 1.0)
    else:
        dx, dy = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    half = length / 2.0
    rx = math.ceil(round(half * abs(dx) - 0.5, 9))  # cells each side of the centre
    ry = math.ceil(round(half * abs(dy) - 0.5, 9))
    _check_size((2 * ry + 1, 2 * rx + 1), "motion kernel")
    # Liang-Barsky: clip the segment p(t) = -half*d + t*length*d, t in [0, 1], to every cell
    cx = np.arange(-rx, rx + 1, dtype=np.float64)[None, :]
    cy = np.arange(-ry, ry + 1, dtype=np.float64)[:, None]
    t0 = np.zeros((2 * ry + 1, 2 * rx + 1))
    t1 = np.ones_like(t0)
    for centre, d in ((cx, dx), (cy, dy)):
        if abs(d) < 1e-15:  # the segment runs along x = 0 (or y = 0): only the middle column
            inside = np.abs(centre) < 0.5
            t1 = np.where(inside, t1, 0.0)
            continue
        a = (centre - 0.5 + half * d) / (length * d)
        b = (centre + 0.5 + half * d) / (length * d)
        t0 = np.maximum(t0, np.minimum(a, b))
        t1 = np.minimum(t1, np.maximum(a, b))
    k = np.round((t1 - t0) * length, 12)  # the segment's length in each cell, in pixels
    k[k < 1e-9] = 0.0  # cells the line only touches at a corner
    k = (k + k[::-1, ::-1]) / 2  # exactly centred
    return k / k.sum()


def rotate_kernel(w: np.ndarray, angle: float) -> np.ndarray:
    """Turn a 2-D kernel clockwise (as displayed) by ``angle`` degrees, as ImageMagick does.

    Multiples of 90 work for any kernel and are exact (``np.rot90``). Odd
    multiples of 45 work for 3x3 kernels only: the eight outer cells move one
    place clockwise per 45 degrees and the centre stays.
    """
    w = np.asarray(w, dtype=np.float64)
    angle = float(angle)
    if not math.isfinite(angle) or angle % 45 != 0:
        raise KernelSpecError(
            f"rotation must be a multiple of 45 degrees, got {format_number(angle)}"
        )
    steps = int(angle // 45) % 8
    if steps % 2 == 0:
        return np.ascontiguousarray(np.rot90(w, -(steps // 2)))
    if w.shape != (3, 3):
        raise KernelSpecError(
            f"rotation by {format_number(angle)} degrees needs a 3x3 kernel, got "
            f"{w.shape[0]}x{w.shape[1]}; use a multiple of 90"
        )
    ring = [(0, 0), (0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (1, 0)]  # clockwise
    out = w.copy()
    for i, (r, c) in enumerate(ring):
        out[ring[(i + steps) % 8]] = w[r, c]
    return out


# ----------------------------------------------------------------------------- the bank


@dataclass(frozen=True)
class _Entry:
    name: str
    aliases: tuple[str, ...]
    description: str
    group: str
    build: Callable[[list[str]], np.ndarray]  # parameter strings -> weights
    params: bool = False  # takes parameters (after ':')
    syntax: str = ""


_BANK: dict[str, _Entry] = {}
_LOOKUP: dict[str, str] = {}  # normalised name or alias -> canonical name


def _normal(name: str) -> str:
    return re.sub(r"[\s_\-]+", "_", name.strip().lower()).strip("_")


def _add(name, aliases, description, group, build, params=False, syntax=""):
    _BANK[name] = _Entry(name, tuple(aliases), description, group, build, params, syntax or name)
    for n in (name, *aliases):
        _LOOKUP[_normal(n)] = name


def _values(kname: str, args: list[str], names: tuple[str, ...]) -> list[float]:
    if len(args) > len(names):
        raise KernelSpecError(
            f"{kname} takes at most {len(names)} parameters ({', '.join(names)}), "
            f"got {len(args)}: {','.join(args)}"
        )
    return [
        _number(a.strip(), f"{kname} {n}") for a, n in zip(args, names[: len(args)], strict=True)
    ]


def _gaussian(args: list[str]) -> np.ndarray:
    return gaussian_kernel(*_values("gaussian", args, ("size", "sigma")))


def _box(args: list[str]) -> np.ndarray:
    if len(args) == 1 and "x" in args[0].lower():
        args = re.split(r"\s*[xX]\s*", args[0].strip(), maxsplit=1)
    return box_kernel(*_values("box", args, ("width", "height")))


def _unsharp(args: list[str]) -> np.ndarray:
    return unsharp_kernel(*_values("unsharp", args, ("size", "sigma", "amount")))


def _motion(args: list[str]) -> np.ndarray:
    return motion_kernel(*_values("motion", args, ("length", "angle")))


# The fixed kernels: "name (aliases): rows", then an indented one-line description.
# The chapter's table 17-1 comes first, in its order, with its names and values.
_FIXED = """
[chapter]
sharpness (sharpen): 0 -1 0 / -1 5 -1 / 0 -1 0
    Sharpen: 5*centre minus the 4 neighbours (sum 1)
vertical_edge: 0 0 0 / -1 2 -1 / 0 0 0
    Vertical lines: 2*centre minus left and right (sum 0)
surround: 1 1 1 / 1 -9 1 / 1 1 1
    The 8 neighbours minus 9*centre (sum -1)
sobel_y: -1 -2 -1 / 0 0 0 / 1 2 1
    Sobel vertical gradient, bottom minus top
nothing (identity, unity): 0 0 0 / 0 1 0 / 0 0 0
    Identity: the picture unchanged
horizontal_edge: 0 -1 0 / 0 2 0 / 0 -1 0
    Horizontal lines: 2*centre minus above and below (sum 0)
blur: 0.11 0.11 0.11 / 0.11 0.11 0.11 / 0.11 0.11 0.11
    Blur, 0.11 everywhere as the chapter has it (sum 0.99; box3 is exact)
sobel_x: -1 0 1 / -2 0 2 / -1 0 1
    Sobel horizontal gradient, right minus left (ImageMagick's Sobel negated)
embossing (emboss): 2 0 0 / 0 -1 0 / 0 0 -1
    Emboss: 2*top-left minus centre and bottom-right
box3: 1/9
    3x3 mean, exactly 1/9 everywhere (= box:3)
[edges]
prewitt_x: -1 0 1 / -1 0 1 / -1 0 1
    Prewitt horizontal gradient, right minus left (ImageMagick's Prewitt negated)
prewitt_y: -1 -1 -1 / 0 0 0 / 1 1 1
    Prewitt vertical gradient, bottom minus top
scharr_x: -3 0 3 / -10 0 10 / -3 0 3
    Scharr horizontal gradient (OpenCV's), right minus left
scharr_y: -3 -10 -3 / 0 0 0 / 3 10 3
    Scharr vertical gradient (OpenCV's), bottom minus top
laplacian4 (laplacian, laplacian_4): 0 1 0 / 1 -4 1 / 0 1 0
    4-neighbour Laplacian as OpenCV and scipy (ImageMagick's Laplacian:1 negated)
laplacian8 (laplacian_8): 1 1 1 / 1 -8 1 / 1 1 1
    8-neighbour Laplacian (ImageMagick's Laplacian:0 negated)
roberts_x (roberts_pos_diag): 1 0 / 0 -1
    Roberts cross, 2x2, as scikit-image's roberts_pos_diag
roberts_y (roberts_neg_diag): 0 1 / -1 0
    Roberts cross, 2x2, as scikit-image's roberts_neg_diag
[compass]
kirsch (kirsch_w): 5 -3 -3 / 5 0 -3 / 5 -3 -3
    Kirsch compass, ImageMagick's Kirsch: 5s on the W side; kirsch@45 turns it clockwise
"""


def _load_fixed() -> None:
    group = ""
    lines = iter(_FIXED.strip().splitlines())
    for line in lines:
        if line.startswith("["):
            group = line.strip("[]")
            continue
        head, rows = line.split(":")
        name, _, aliases = head.partition(" (")
        if rows.strip() == "1/9":
            values = np.full((3, 3), 1.0 / 9.0)
        else:
            values = np.array([[float(v) for v in row.split()] for row in rows.split("/")])
        names = [a.strip() for a in aliases.rstrip(")").split(",") if a]
        description = next(lines).strip()
        _add(name, names, description, group, lambda args, v=values: v.copy())


_load_fixed()
_KIRSCH = _BANK["kirsch"].build([])
for _step, _dir in enumerate(["nw", "n", "ne", "e", "se", "s", "sw"], start=1):
    _add(
        f"kirsch_{_dir}",
        [],
        f"Kirsch compass, 5s on the {_dir.upper()} side (= kirsch@{45 * _step})",
        "compass",
        lambda args, a=45 * _step: rotate_kernel(_KIRSCH, a),
    )
del _step, _dir

_PARAMETERISED = [
    ("gaussian", [], "gaussian[:SIZE[,SIGMA]]", _gaussian,
     "Gaussian, sums to 1; SIZE odd (3), SIGMA 0.3*((SIZE-1)/2-1)+0.8 as OpenCV"),
    ("box", ["mean"], "box[:W[xH]]", _box,
     "Mean filter, W columns by H rows (default 3x3), all 1/(W*H)"),
    ("unsharp", ["unsharp_mask"], "unsharp[:SIZE[,SIGMA[,AMOUNT]]]", _unsharp,
     "Sharpen: identity + AMOUNT*(identity - gaussian:SIZE,SIGMA); AMOUNT 1"),
    ("motion", ["motion_blur"], "motion[:LENGTH[,ANGLE]]", _motion,
     "Motion blur: anti-aliased line, LENGTH (5) at ANGLE degrees clockwise from right (0)"),
]  # fmt: skip
for _name, _aliases, _syntax, _build, _text in _PARAMETERISED:
    _add(_name, _aliases, _text, "parameterised", _build, True, _syntax)
del _name, _aliases, _syntax, _build, _text


def resolve_name(name: str) -> str:
    """The canonical bank name for a name or alias (any case; ``-``, ``_``, space alike)."""
    key = _normal(name)
    if key in _LOOKUP:
        return _LOOKUP[key]
    close = difflib.get_close_matches(key, list(_LOOKUP), n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else "; 'convtool kernels' lists them"
    raise KernelSpecError(f"unknown kernel {name.strip()!r}{hint}")


def kernel_info(name: str) -> KernelInfo:
    """The bank entry for a name or alias, with its (default-parameter) kernel."""
    e = _BANK[resolve_name(name)]
    return KernelInfo(e.name, e.aliases, e.build([]), e.description, e.syntax, e.group)


def list_kernels() -> list[KernelInfo]:
    """Every bank entry, in display order (the chapter's nine first)."""
    return [kernel_info(name) for name in _BANK]


# ----------------------------------------------------------------------------- the parser

_GEOMETRY = re.compile(r"\s*(\d+)\s*(?:[xX]\s*(\d+))?\s*([+-]\s*\d+\s*[+-]\s*\d+)?\s*:(.*)\Z", re.S)


def parse_kernel(spec: str) -> np.ndarray:
    """Parse a kernel spec into float64 weights: (kH, kW), or (C_out, C_in, kH, kW) from a file.

    See the module docstring for the forms accepted.

    Examples
    --------
    >>> parse_kernel("sobel_x:90").tolist()
    [[-1.0, -2.0, -1.0], [0.0, 0.0, 0.0], [1.0, 2.0, 1.0]]
    >>> parse_kernel("3x1: 1 2 1").shape
    (1, 3)
    """
    return parse_kernel_spec(spec).weights


def parse_kernel_spec(spec: str) -> KernelSpec:
    """Parse a kernel spec into a :class:`KernelSpec` (weights, optional bias, display name).

    Raises :class:`KernelSpecError`, and nothing else, for any text that is not a
    kernel spec; its message is one line (control characters of the spec quoted in
    it are escaped). An accepted kernel is finite, non-empty and within MAX_SIDE
    and MAX_WEIGHTS.
    """
    if not isinstance(spec, str):
        raise KernelSpecError(f"a kernel spec must be text, got {type(spec).__name__}")
    text = spec.strip()
    if not text:
        raise KernelSpecError("empty kernel spec")
    try:
        if text.startswith("@"):
            return _parse_file(text[1:].strip())
        return _parse_text(text, "custom", allow_names=True)
    except KernelSpecError as e:
        message = str(e)
        if message.isprintable():
            raise
        # a message quotes the spec: its line breaks and control characters, escaped,
        # keep the message one line
        escaped = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
        raise KernelSpecError(escaped) from None


def _parse_text(text: str, label: str, *, allow_names: bool) -> KernelSpec:
    m = _GEOMETRY.match(text)
    if m:
        return KernelSpec(_parse_geometry(m), label)
    first = re.split(r"[\s,;/]+", text.strip(), maxsplit=1)[0]
    try:
        float(first)
    except (ValueError, OverflowError):
        # a name: its part before ':' or '@' holds only letters, digits, '_', '-' and spaces
        if allow_names and re.fullmatch(r"[^\W_][\w\- ]*", re.split(r"[:@]", text, maxsplit=1)[0]):
            return _parse_named(text)
    return KernelSpec(_parse_rows(text), label)


def _parse_rows(text: str) -> np.ndarray:
    rows: list[list[float]] = []
    for line in re.split(r"[;/\n\r]", text):
        line = line.strip().rstrip(",").strip()
        if not line:
            continue
        r = len(rows) + 1
        if r > MAX_SIDE:
            raise KernelSpecError(f"more than {MAX_SIDE} rows; at most {MAX_SIDE} are allowed")
        tokens = re.split(r"\s*,\s*|\s+", line)
        if "" in tokens:
            raise KernelSpecError(f"row {r} has an empty value (two commas in a row?): {line!r}")
        if len(tokens) > MAX_SIDE:
            raise KernelSpecError(
                f"row {r} has {len(tokens)} values; at most {MAX_SIDE} are allowed"
            )
        if rows and len(tokens) != len(rows[0]):
            raise KernelSpecError(
                f"row {r} has {_count(len(tokens), 'value')}, row 1 has {len(rows[0])}"
            )
        rows.append([_number(t, f"row {r}") for t in tokens])
    if not rows:
        raise KernelSpecError("empty kernel: no numbers found")
    return np.array(rows, dtype=np.float64)


def _parse_geometry(m: re.Match[str]) -> np.ndarray:
    w_text, h_text, offset, body = m.groups()
    geom = f"{w_text}x{h_text}" if h_text else w_text
    if offset:
        raise KernelSpecError(
            f"origin offsets like {offset.replace(' ', '')!r} are not supported; "
            "kernels are centred at index (kH//2, kW//2)"
        )
    sizes = []
    for t in (w_text, h_text or w_text):
        n = int(t) if len(t) <= 9 else MAX_SIDE + 1
        if n < 1:
            raise KernelSpecError(f"'{geom}:' has a zero size; width and height must be at least 1")
        sizes.append(n)
    width, height = sizes
    if max(width, height) > MAX_SIDE:  # said with the sizes as typed, however long
        rows, cols = (h_text or w_text).lstrip("0"), w_text.lstrip("0")
        raise KernelSpecError(
            f"'{geom}:' kernel is {rows}x{cols}; at most {MAX_SIDE} rows and columns are allowed"
        )
    _check_size((height, width), f"'{geom}:' kernel")
    tokens = [t for t in re.split(r"[\s,;/]+", body.strip()) if t]
    if len(tokens) != width * height:
        raise KernelSpecError(f"'{geom}:' needs {width * height} values, got {len(tokens)}")
    values = [_number(t, f"'{geom}:' value {i + 1}") for i, t in enumerate(tokens)]
    return np.array(values, dtype=np.float64).reshape(height, width)


def _show_arg(text: str) -> str:
    try:
        return format_number(float(text))
    except ValueError:  # box's WxH
        return text.replace(" ", "").lower()


def _parse_named(text: str) -> KernelSpec:
    rest, at, angle_text = text.rpartition("@") if "@" in text else (text, "", "")
    name_text, colon, args_text = rest.partition(":")
    name = resolve_name(name_text)
    entry = _BANK[name]
    args = [a.strip() for a in args_text.split(",")] if colon else []
    angles = [angle_text.strip()] if at else []
    if colon and not args_text.strip():
        raise KernelSpecError(f"{name_text.strip()!r} is followed by ':' but nothing after it")
    if args and not entry.params:  # ImageMagick's NAME:ANGLE
        if len(args) > 1 or at:
            raise KernelSpecError(
                f"{name} takes no parameters; rotate with {name}:ANGLE or {name}@ANGLE, "
                f"got {args_text.strip()!r}"
            )
        angles, args = args, []
    weights = entry.build(args)
    display = name + (":" + ",".join(_show_arg(a) for a in args) if args else "")
    if angles:
        if not angles[0]:
            raise KernelSpecError(f"missing rotation angle after '@' in {text!r}")
        angle = _number(angles[0], f"{name} rotation")
        weights = rotate_kernel(weights, angle)
        if angle % 360:
            display += f"@{format_number(angle)}"
    _check_size(weights.shape)
    _check_finite(weights, display)
    return KernelSpec(np.ascontiguousarray(weights, dtype=np.float64), display, None, name)


# ----------------------------------------------------------------------------- files

_TEXT_SUFFIXES = {"", ".txt", ".csv", ".tsv", ".dat", ".kernel"}


def _parse_file(path_text: str) -> KernelSpec:
    if not path_text:
        raise KernelSpecError("missing file name after '@'")
    try:
        path = Path(path_text).expanduser()
    except RuntimeError:  # '~name' of no known user: taken literally
        path = Path(path_text)
    try:
        if not path.exists():
            raise KernelSpecError(f"kernel file {path_text!r} does not exist")
        if path.is_dir():
            raise KernelSpecError(f"kernel file {path_text!r} is a directory")
        if not path.is_file():
            raise KernelSpecError(f"kernel file {path_text!r} is not a regular file")
        size = path.stat().st_size
        if size == 0:
            raise KernelSpecError(f"kernel file {path_text!r} is empty")
        if size > MAX_FILE_BYTES:
            raise KernelSpecError(
                f"kernel file {path_text!r} is {size} bytes; at most {MAX_FILE_BYTES} are read"
            )
        suffix = path.suffix.lower()
        if suffix == ".npy":
            return KernelSpec(_read_npy(path, path_text), path.stem)
        if suffix not in _TEXT_SUFFIXES and suffix != ".json":
            raise KernelSpecError(
                f"unsupported kernel file type {suffix!r} in {path_text!r}; "
                "use .txt, .csv, .json or .npy"
            )
        raw = path.read_bytes()
    except (OSError, ValueError) as e:
        if isinstance(e, KernelSpecError):
            raise
        raise KernelSpecError(f"cannot read kernel file {path_text!r}: {e}") from None
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise KernelSpecError(f"kernel file {path_text!r} is not UTF-8 text") from None
    if suffix == ".json":
        weights, bias = _read_json(content, path_text)
        return KernelSpec(weights, path.stem, bias)
    content = re.sub(r"#[^\n]*", "", content)
    try:
        return KernelSpec(_parse_text(content, path.stem, allow_names=False).weights, path.stem)
    except KernelSpecError as e:
        raise KernelSpecError(f"{path_text}: {e}") from None


def _check_npy_header(raw: bytes, path_text: str) -> None:
    """Check a .npy header's dtype and shape against the data, before numpy allocates."""
    fp = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fp)
        else:
            raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
    except Exception as e:  # numpy's header parser raises ValueError, SyntaxError, ...
        raise KernelSpecError(f"cannot read {path_text!r} as .npy: {_one_line(e)}") from None
    if dtype.hasobject or dtype.fields is not None or dtype.kind not in "biuf":
        raise KernelSpecError(f"{path_text!r} holds {dtype} values; kernels must be real numbers")
    if any(n < 0 for n in shape):
        raise KernelSpecError(f"cannot read {path_text!r} as .npy: bad header (shape {shape})")
    if len(shape) in (2, 4):
        _check_size(shape, f"kernel in {path_text}")
    needed = math.prod(shape) * dtype.itemsize
    if needed > len(raw) - fp.tell():
        raise KernelSpecError(
            f"{path_text!r} is a truncated .npy file: shape {shape} needs {needed} bytes of "
            f"data, {len(raw) - fp.tell()} found"
        )


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _read_npy(path: Path, path_text: str) -> np.ndarray:
    raw = path.read_bytes()  # at most MAX_FILE_BYTES: the caller checked
    try:
        with warnings.catch_warnings():  # numpy's header parser may warn on odd bytes
            warnings.simplefilter("ignore")
            if raw.startswith(b"\x93NUMPY"):
                _check_npy_header(raw, path_text)
            arr = np.load(io.BytesIO(raw), allow_pickle=False)
    except KernelSpecError:
        raise
    except Exception as e:  # numpy raises many kinds for a bad file
        raise KernelSpecError(f"cannot read {path_text!r} as .npy: {_one_line(e)}") from None
    if not isinstance(arr, np.ndarray):
        if hasattr(arr, "close"):
            arr.close()
        raise KernelSpecError(f"{path_text!r} holds several arrays (an .npz?); give one .npy array")
    if arr.dtype.kind not in "biuf":
        raise KernelSpecError(
            f"{path_text!r} holds {arr.dtype} values; kernels must be real numbers"
        )
    return _check_array(arr.astype(np.float64), path_text)


def _check_array(arr: np.ndarray, where: str) -> np.ndarray:
    if arr.ndim not in (2, 4):
        raise KernelSpecError(
            f"{where} holds a {arr.ndim}-D array of shape {arr.shape}; give a 2-D (kH, kW) "
            "or a 4-D (C_out, C_in, kH, kW) kernel (3-D would be ambiguous)"
        )
    _check_size(arr.shape, f"kernel in {where}")
    _check_finite(arr, f"kernel in {where}")
    return np.ascontiguousarray(arr, dtype=np.float64)


def _read_json(content: str, where: str) -> tuple[np.ndarray, float | tuple[float, ...] | None]:
    try:
        obj = json.loads(content)
    except (ValueError, RecursionError) as e:
        raise KernelSpecError(f"{where} is not valid JSON: {e}") from None
    bias_obj = None
    if isinstance(obj, dict):
        if "kernel" not in obj:
            raise KernelSpecError(f"{where}: a JSON object needs a 'kernel' key")
        obj, bias_obj = obj["kernel"], obj.get("bias")
    if not isinstance(obj, list):
        raise KernelSpecError(f"{where}: expected a list of rows or an object with a 'kernel' key")
    weights = _check_array(_nested(obj, where), where)
    return weights, _bias(bias_obj, weights, where)


def _nested(obj: list, where: str) -> np.ndarray:
    shape: list[int] = []
    x = obj
    while isinstance(x, list) and len(shape) < 5:
        shape.append(len(x))
        if not x:
            break
        x = x[0]
    if len(shape) not in (2, 4):
        raise KernelSpecError(
            f"{where} holds a {len(shape)}-D list; give rows (2-D) or a 4-D "
            "(C_out, C_in, kH, kW) nested list"
        )
    _check_size(tuple(shape), f"kernel in {where}")
    flat: list[float] = []

    def walk(x: object, index: tuple[int, ...]) -> None:
        depth = len(index)
        if depth == len(shape):
            if isinstance(x, bool) or not isinstance(x, (int, float)):
                raise KernelSpecError(f"{where}: {json.dumps(x)} at {list(index)} is not a number")
            flat.append(_number(repr(x), f"{where}: value at {list(index)}"))
            return
        if not isinstance(x, list):
            raise KernelSpecError(f"{where}: {json.dumps(x)} at {list(index)} should be a list")
        if len(x) != shape[depth]:
            if len(shape) == 2:
                raise KernelSpecError(
                    f"{where}: row {index[0] + 1} has {_count(len(x), 'value')}, "
                    f"row 1 has {shape[1]}"
                )
            raise KernelSpecError(
                f"{where}: the list at {list(index)} has {len(x)} entries, expected {shape[depth]}"
            )
        for i, y in enumerate(x):
            walk(y, (*index, i))

    walk(obj, ())
    return np.array(flat, dtype=np.float64).reshape(shape)


def _bias(obj: object, weights: np.ndarray, where: str) -> float | tuple[float, ...] | None:
    if obj is None:
        return None
    values = obj if isinstance(obj, list) else [obj]
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise KernelSpecError(f"{where}: bias {json.dumps(v)} is not a number")
        out.append(_number(repr(v), f"{where}: bias"))
    if len(out) == 1:
        return out[0]
    channels = weights.shape[0] if weights.ndim == 4 else 1
    if len(out) != channels:
        raise KernelSpecError(
            f"{where}: bias has {len(out)} values but the kernel has {channels} output channel(s)"
        )
    return tuple(out)
