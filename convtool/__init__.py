"""convtool: image filtering and kernel fitting on one numba-jitted convolution core.

The public Python API is re-exported here. Names are loaded on first use, so that
``import convtool`` (and the command line's ``--help``, ``shape`` and ``kernels``)
does not pay for importing numba.
"""

from __future__ import annotations

import importlib
from typing import Any

from convtool._version import __version__

# public name -> module that defines it
_API = {
    "apply": "convtool.pictures",
    "kernel": "convtool.pictures",
    "read_image": "convtool.pictures",
    "write_image": "convtool.pictures",
    "conv2d": "convtool.ops",
    "conv2d_backward": "convtool.ops",
    "relu": "convtool.ops",
    "relu_backward": "convtool.ops",
    "max_pool2d": "convtool.ops",
    "max_pool2d_backward": "convtool.ops",
    "avg_pool2d": "convtool.ops",
    "avg_pool2d_backward": "convtool.ops",
    "output_size": "convtool.shapes",
    "fit_kernel": "convtool.fit",
    "run_pipeline": "convtool.pipeline",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'convtool' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
