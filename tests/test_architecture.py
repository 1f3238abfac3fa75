"""The house's rules hold: imports point one way, as the import-linter contracts in
pyproject.toml say (layers; numba, click, rich, pillow, tifffile and dask each in its room)."""

from __future__ import annotations

import ast
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


MAX_FUNCTION_LINES = 80  # of code: a docstring (a public function's manual) does not count


def _code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    lines = node.end_lineno - node.lineno + 1
    first = node.body[0]
    value = first.value if isinstance(first, ast.Expr) else None
    if isinstance(value, ast.Constant) and isinstance(value.value, str):
        lines -= first.end_lineno - first.lineno + 1
    return lines


def test_no_function_outgrows_a_screen():
    long = {}
    for path in _modules():
        functions = [
            node
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        ]
        for node in functions:
            if _code_lines(node) > MAX_FUNCTION_LINES:
                long[f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"] = _code_lines(node)
    assert not long, f"split these into steps: {long}"
