"""The house's rules hold: imports point one way, as the import-linter contracts in
pyproject.toml say (layers; numba, click, rich, pillow, tifffile and dask each in its room)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_layer_contracts_hold():
    lint = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    done = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


MAX_MODULE_LINES = 500  # a room this big holds two ideas: split it along the seam


def _modules() -> list[Path]:
    return sorted((ROOT / "convtool").rglob("*.py"))


def test_no_module_outgrows_its_room():
    sizes = {p.relative_to(ROOT).as_posix(): p.read_text().count("\n") for p in _modules()}
    too_big = {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES}
    assert not too_big, f"split these along their seams: {too_big}"
    assert len(sizes) > 40  # the walk found the package
