"""Builds convtool with its compiled core, an optional extension: see convtool/core/aot_pycc.py.

Everything else about the package is in pyproject.toml.
"""

import importlib.util
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
# by path: the package's own __init__ files are not for a build process to run
spec = importlib.util.spec_from_file_location("aot_pycc", ROOT / "convtool/core/aot_pycc.py")
aot_pycc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(aot_pycc)

setup(**aot_pycc.setup_arguments(ROOT))
