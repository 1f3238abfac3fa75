"""Every name a user types, once: the options every command spells alike, borders,
value maps, colour modes, combining, colour maps, fit methods and bit depths, with the
help text that explains them.

The command line offers these as choices and the library checks them with
:func:`check`, so a name means the same everywhere. :func:`pad_mode` is the one
translation of a border name into what the array code pads with (numpy.pad's
modes), as scipy.ndimage turns its mode names into codes in one function.

Standard library only: the command line reads this module at start-up.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import NamedTuple

from convtool._shared import Param

# Two sizes are written HxW: rows x columns (height x width), as numpy, torch and the
# chapter write an array's shape. Only ImageMagick's own forms keep its WxH geometry,
# where they say so: inline 'WxH: ...' kernels and im:NAME:ARGS.
PAIR_ORDER = "HxW"
PAIR = "N|HxW"


# Borders: what lies outside the picture, for a row ``a b c d``
#   zero       0 0 | a b c d   the chapter's and torch's zero padding
#   reflect    b a | a b c d   edge repeated: scipy's reflect, numpy's symmetric
#   mirror     c b | a b c d   edge not repeated: scipy's mirror, OpenCV's default,
#                              torch's and numpy's reflect (BORDER_REFLECT_101)
#   replicate  a a | a b c d   scipy's nearest, OpenCV's BORDER_REPLICATE, ImageMagick's Edge
#   wrap       c d | a b c d   periodic, scipy's wrap
BORDERS = ("zero", "reflect", "mirror", "replicate", "wrap")
BORDER_HELP = (
    "Outside the picture: zeros, reflect (dcba|abcd), mirror (dcb|abcd), "
    "replicate (aaaa|abcd) or wrap."
)
# the fit also knows 'interior': no border at all, only the target pixels it cannot touch
FIT_BORDERS = ("interior", *BORDERS)
_PAD_MODES = {
    "zero": "constant",
    "reflect": "symmetric",
    "mirror": "reflect",
    "replicate": "edge",
    "wrap": "wrap",
}

# Values outside [0, 1] in a picture
MAPS = ("clip", "abs", "normalize", "offset")

# Colour pictures, for 2-D kernels, in every command: each channel filtered alike
# (channels), the ITU-R 601 luma first (gray), or the kernel on every channel summed into
# one map (sum: the chapter's 3-in, 1-out filter)
COLORS = ("channels", "gray", "sum")

# Alpha in apply: filtered with the picture, premultiplied (as ImageMagick), or kept as read
ALPHAS = ("premultiply", "keep")

# Several kernels into one picture
COMBINES = ("magnitude", "max", "sum")

# Colour maps of drawn feature maps
CMAPS = ("viridis", "diverging", "gray")

# The fit's solvers
METHODS = ("cg", "gd", "lstsq")

# Bits per sample of written pictures, as the command line takes them
DEPTHS = ("8", "16", "32")

# A picture's integer samples (by numpy dtype name) and their full scale: read as [0, 1],
# full scale 1.0, by the readers, the Python API and the filters alike; floats as they are
FULL_SCALE = {"uint8": 255, "uint16": 65535}


class Option(NamedTuple):
    """One idea's option: its long name, short name (or None) and what it takes."""

    long: str
    short: str | None
    takes: str


# The options that mean the same in every command that has them (tests/cli hold the
# commands to this table, and README.md's). A short option means one thing everywhere.
OPTIONS = {
    "kernel": Option("--kernel", "-k", "SPEC"),
    "size": Option("--size", None, PAIR),
    "stride": Option("--stride", "-s", PAIR),
    "padding": Option("--padding", "-p", f"same|valid|{PAIR}"),
    "dilation": Option("--dilation", "-d", PAIR),
    "output": Option("--output", "-o", "PATH"),
    "jobs": Option("--jobs", "-j", "N"),
    "method": Option("--method", "-m", "|".join(METHODS)),
    "verbose": Option("--verbose", "-v", ""),
    "color": Option("--color", None, "|".join(COLORS)),
    "border": Option("--border", None, "|".join(BORDERS)),
    "map": Option("--map", None, "|".join(MAPS)),
    "depth": Option("--depth", None, "|".join(DEPTHS)),
    "format": Option("--format", None, "EXT"),
    "overwrite": Option("--overwrite", None, ""),
    "json": Option("--json", None, ""),
    "max_pixels": Option("--max-pixels", None, "N|none"),
    "seed": Option("--seed", None, "N"),
    "tile": Option("--tile", None, "N"),
    "cell": Option("--cell", None, "PX"),
}

# Old spellings kept working, hidden, with a line on stderr: (command, old) -> the new
# option and why it changed
ALIASES = {
    ("shape", "-k/--kernel"): ("--size", "-k names a kernel spec in every command"),
    ("fit", "-s"): ("--size", "-s is the stride in every command"),
    ("fit", "--grey/--gray"): ("--color gray", "--color is colour in every command"),
    ("pipeline", "--tile"): ("--cell", "--tile is apply's TIFF tiling"),
}


def deprecation(command: str, old: str) -> str:
    """The line on stderr for an old spelling (see :data:`ALIASES`).

    >>> deprecation("fit", "-s")
    'convtool fit: -s is now --size (-s is the stride in every command); -s will go'
    """
    new, why = ALIASES[(command, old)]
    return f"convtool {command}: {old} is now {new} ({why}); {old} will go"


def check(name: str, value: str, choices: Collection[str], sep: str = ";") -> str:
    """``value`` if it is one of ``choices``, else ValueError naming the parameter.

    >>> check("border", "wrap", BORDERS)
    'wrap'
    """
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}{sep} got {value!r}")
    return value


def pad_mode(border: str) -> str:
    """numpy.pad's mode for a border name: the one translation of the names.

    >>> pad_mode("mirror")
    'reflect'
    """
    return _PAD_MODES[check("border", border, BORDERS)]


# The command line's flags for the library's parameters: a library message names a
# parameter (convtool._shared.Param); the command line shows it as its flag.
FLAGS = {
    "overwrite": "--overwrite",
    "padding": "--padding",
    "grey": "--color gray",
    "tol": "--tol",
    "max_iter": "--max-iter",
    "scale": "--scale",
    "normalize": "--normalize",
    "bias": "--bias",
    "kernels": "-k",
    "stride": "--stride",
    "size": "--size",
    "color": "--color",
}


def as_flag(param: Param) -> str:
    """How the command line names ``param``: its flag, then the value unless True.

    >>> as_flag(Param("padding", "same")), as_flag(Param("overwrite")), as_flag(Param("tol", 1e-7))
    ('--padding same', '--overwrite', '--tol 1e-07')
    """
    flag = FLAGS[param.name]
    if param.value is True:
        return flag
    value = f"{param.value:g}" if isinstance(param.value, float) else param.value
    return f"{flag} {value}"
