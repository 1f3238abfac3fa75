"""Pictures as arrays: colour handling, correlation with borders, value maps."""

from convtool.filtering.colour import to_gray
from convtool.filtering.correlate import (
    BORDERS,
    CLIP_TOLERANCE,
    COLORS,
    COMBINES,
    MAPS,
    Prepared,
    clipped_share,
    combine,
    correlate,
    map_values,
    prepare_kernel,
    resample_alpha,
    stats,
)

__all__ = [
    "BORDERS",
    "CLIP_TOLERANCE",
    "COLORS",
    "COMBINES",
    "MAPS",
    "Prepared",
    "clipped_share",
    "combine",
    "correlate",
    "map_values",
    "prepare_kernel",
    "resample_alpha",
    "stats",
    "to_gray",
]
