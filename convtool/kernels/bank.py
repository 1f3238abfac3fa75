"""The named kernel bank: the chapter's table 17-1 first, then edges, compass and the
parameterised builders, each with its aliases, description and group.

Names are looked up in any case, with ``-``, ``_`` and spaces alike (:func:`resolve_name`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from convtool.kernels.base import MAX_SIDE, KernelSpecError, parse_number
from convtool.kernels.builders import (
    box_kernel,
    gaussian_kernel,
    motion_kernel,
    rotate_kernel,
    unsharp_kernel,
)
from convtool.kernels.imagemagick import im_kernel


class KernelInfo(NamedTuple):
    """One entry of the bank, as :func:`list_kernels` gives it."""

    name: str
    aliases: tuple[str, ...]
    kernel: np.ndarray  # the kernel, or the one its default parameters give
    description: str
    syntax: str  # the name, or e.g. "gaussian[:SIZE[,SIGMA]]"
    group: str


class BankEntry(NamedTuple):
    """A name of the bank and how to build its kernel from the parameters after ':'."""

    name: str
    aliases: tuple[str, ...]
    description: str
    group: str
    build: Callable[[list[str]], np.ndarray]  # parameter strings -> weights
    params: bool = False  # takes parameters (after ':')
    syntax: str = ""
    parts: bool = False  # build gives (n, kH, kW): the gradient magnitude of n kernels


_BANK: dict[str, BankEntry] = {}
_LOOKUP: dict[str, str] = {}  # normalised name or alias -> canonical name


def _normal(name: str) -> str:
    return re.sub(r"[\s_\-]+", "_", name.strip().lower()).strip("_")


def _add(name, aliases, description, group, build, params=False, syntax="", parts=False):
    syntax = syntax or name
    _BANK[name] = BankEntry(name, tuple(aliases), description, group, build, params, syntax, parts)
    for n in (name, *aliases):
        _LOOKUP[_normal(n)] = name


def _values(kname: str, args: list[str], names: tuple[str, ...]) -> list[float]:
    if len(args) > len(names):
        raise KernelSpecError(
            f"{kname} takes at most {len(names)} parameters ({', '.join(names)}), "
            f"got {len(args)}: {','.join(args)}"
        )
    return [
        parse_number(a.strip(), f"{kname} {n}")
        for a, n in zip(args, names[: len(args)], strict=True)
    ]


def _gaussian(args: list[str]) -> np.ndarray:
    if len(args) == 1 and "x" in args[0].lower():  # ImageMagick's form, SIZExSIGMA
        args = re.split(r"\s*[xX]\s*", args[0].strip(), maxsplit=1)
    values = _values("gaussian", args, ("size", "sigma"))
    if not values:
        return gaussian_kernel()
    size, *sigma = values
    if size == 0:  # sigma only: the size OpenCV picks for it
        if not sigma or not sigma[0] > 0:
            raise KernelSpecError("gaussian size 0 (chosen from sigma) needs a sigma > 0")
        size = min(round(6 * sigma[0] + 1) | 1, MAX_SIDE - (MAX_SIDE + 1) % 2)
    return gaussian_kernel(size, *sigma)


def _box(args: list[str]) -> np.ndarray:
    # HxW (rows x columns), as every size convtool reads (vocab.PAIR_ORDER)
    if len(args) == 1 and "x" in args[0].lower():
        args = re.split(r"\s*[xX]\s*", args[0].strip(), maxsplit=1)
    values = _values("box", args, ("height", "width"))
    return box_kernel(*values[::-1]) if values else box_kernel()


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
     "Gaussian, sums to 1; SIZE odd (3), SIGMA 0.3*((SIZE-1)/2-1)+0.8 as OpenCV; "
     "gaussian:0x2 (or 0,2): SIGMA 2, SIZE round(6*SIGMA+1) made odd, as OpenCV"),
    ("box", ["mean"], "box[:H[xW]]", _box,
     "Mean filter, H rows by W columns (default 3x3), all 1/(H*W)"),
    ("unsharp", ["unsharp_mask"], "unsharp[:SIZE[,SIGMA[,AMOUNT]]]", _unsharp,
     "Sharpen: identity + AMOUNT*(identity - gaussian:SIZE,SIGMA); AMOUNT 1"),
    ("motion", ["motion_blur"], "motion[:LENGTH[,ANGLE]]", _motion,
     "Motion blur: anti-aliased line, LENGTH (5) at ANGLE degrees clockwise from right (0)"),
]  # fmt: skip
for _name, _aliases, _syntax, _build, _text in _PARAMETERISED:
    _add(_name, _aliases, _text, "parameterised", _build, True, _syntax)
del _name, _aliases, _syntax, _build, _text


# Gradient magnitudes as scikit-image's sobel, prewitt and scharr: the x and y kernels
# with their smoothing row normalised (sobel's 1 2 1 / 4), and sqrt((gx^2 + gy^2) / 2),
# which keeps a [0, 1] picture within [0, 1]
_SMOOTH = {"sobel": [1, 2, 1], "prewitt": [1, 1, 1], "scharr": [3, 10, 3]}
for _name, _row in _SMOOTH.items():
    _x = np.outer(np.array(_row, float) / sum(_row), [-1.0, 0.0, 1.0])
    _add(
        _name,
        [f"{_name}_magnitude"],
        f"Gradient magnitude sqrt((gx^2 + gy^2) / 2) of {_name}_x and {_name}_y divided by "
        f"{sum(_row)} (scikit-image's {_name}; the x kernel shown)",
        "magnitude",
        lambda args, x=_x: np.stack([x, x.T]),
        parts=True,
    )
del _name, _row, _x

# ImageMagick's kernels whose names the bank does not use otherwise, with its arguments;
# without arguments, a usable default instead of ImageMagick's (a unity kernel for LoG)
_IM_UNPREFIXED = [
    ("log", "log[:RADIUSxSIGMA]", "0x1.4", "Laplacian of a Gaussian, ImageMagick's LoG (0x1.4)"),
    ("dog", "dog[:RADIUS,SIGMA1,SIGMA2]", "0,1,1.6", "Difference of Gaussians, ImageMagick's DoG"),
    ("comet", "comet[:WIDTHxSIGMA[,ANGLE]]", "0x2", "One-sided blur, ImageMagick's Comet (0x2)"),
    ("binomial", "binomial[:RADIUS]", "", "Pascal's triangle, not normalised (ImageMagick's)"),
    ("freichen", "freichen[:TYPE[,ANGLE]]", "", "Frei-Chen edge kernels, ImageMagick's FreiChen"),
    ("roberts", "", "", "Roberts, 3x3, ImageMagick's (roberts@45 turns it)"),
    ("compass", "", "", "Prewitt's compass, ImageMagick's Compass (compass@45 turns it)"),
]  # fmt: skip
for _name, _syntax, _default, _text in _IM_UNPREFIXED:
    _add(
        _name,
        [],
        _text,
        "imagemagick",
        lambda args, n=_name, d=_default: im_kernel(n, ",".join(args) or d),
        bool(_syntax),
        _syntax,
    )
del _name, _syntax, _default, _text


def resolve_name(name: str) -> str:
    """The canonical bank name for a name or alias (any case; ``-``, ``_``, space alike)."""
    key = _normal(name)
    if key in _LOOKUP:
        return _LOOKUP[key]
    import difflib  # for a name not found only

    close = difflib.get_close_matches(key, list(_LOOKUP), n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else "; 'convtool kernels' lists them"
    raise KernelSpecError(f"unknown kernel {name.strip()!r}{hint}")


def bank_entry(name: str) -> BankEntry:
    """The entry of a canonical name (as :func:`resolve_name` gives)."""
    return _BANK[name]


def kernel_info(name: str) -> KernelInfo:
    """The bank entry for a name or alias, with its (default-parameter) kernel."""
    e = _BANK[resolve_name(name)]
    kernel = e.build([])
    kernel = kernel[0] if e.parts else kernel  # a magnitude shows its x kernel
    return KernelInfo(e.name, e.aliases, kernel, e.description, e.syntax, e.group)


def list_kernels() -> list[KernelInfo]:
    """Every bank entry, in display order (the chapter's nine first)."""
    return [kernel_info(name) for name in _BANK]


def kernels_equal_to(weights: np.ndarray) -> list[KernelInfo]:
    """The bank's fixed kernels (no parameters, not a magnitude) equal to ``weights``:
    what a rotated kernel is, so that it is named by the kernel it is.

    >>> from convtool.kernels.builders import rotate_kernel
    >>> [i.name for i in kernels_equal_to(rotate_kernel(kernel_info("kirsch").kernel, 45))]
    ['kirsch_nw']
    """
    w = np.asarray(weights)
    return [
        kernel_info(e.name)
        for e in _BANK.values()
        if not e.params and not e.parts and np.array_equal(e.build([]), w)
    ]
