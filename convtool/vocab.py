"""Every name a user types, once: borders, value maps, colour modes, combining, colour
maps, fit methods and bit depths, with the help text that explains them.

The command line offers these as choices and the library checks them with
:func:`check`, so a name means the same everywhere. :func:`pad_mode` is the one
translation of a border name into what the array code pads with (numpy.pad's
modes), as scipy.ndimage turns its mode names into codes in one function.

Standard library only: the command line reads this module at start-up.
"""

from __future__ import annotations

from collections.abc import Collection

from convtool._shared import Param

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

# Colour pictures: apply's modes for 2-D kernels; the pipeline's (it keeps channels as maps)
COLORS = ("channels", "gray", "sum")
PIPELINE_COLORS = ("sum", "gray")

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
    "grey": "--grey",
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
