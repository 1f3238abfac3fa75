"""Pictures as arrays: colour handling, correlation with borders, value maps, tile geometry.

The names these functions take (borders, colour modes, maps, combining) are
:mod:`convtool.vocab`'s.
"""

from convtool.filtering.alpha import correlate_premultiplied
from convtool.filtering.colour import to_gray
from convtool.filtering.correlate import (
    Prepared,
    as_pixels,
    combine,
    correlate,
    prepare_kernel,
    resample_alpha,
)
from convtool.filtering.values import (
    CLIP_TOLERANCE,
    clipped_share,
    finite_stats,
    map_values,
    pixels_inside,
    shift_values,
    stats,
)

__all__ = [
    "CLIP_TOLERANCE",
    "Prepared",
    "as_pixels",
    "clipped_share",
    "combine",
    "correlate",
    "correlate_premultiplied",
    "finite_stats",
    "map_values",
    "pixels_inside",
    "prepare_kernel",
    "resample_alpha",
    "shift_values",
    "stats",
    "to_gray",
]
