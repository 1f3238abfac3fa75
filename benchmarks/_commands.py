"""Whole commands as a user runs them, shared by the benchmark scripts (not part of the
package): the real binaries, convtool's console script, the pictures they work on."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["ROOT", "child_env", "convtool_command", "draw_pictures", "find_binary", "run"]


def find_binary(*names: str) -> str | None:
    """The first of ``names`` on PATH that is a real program, not a script wrapper."""
    for name in names:
        for folder in os.environ.get("PATH", "").split(os.pathsep):
            path = Path(folder) / name
            if not (path.is_file() and os.access(path, os.X_OK)):
                continue
            with open(path.resolve(), "rb") as f:
                if f.read(4) == b"\x7fELF":
                    return str(path)
    return None


def convtool_command() -> list[str]:
    script = Path(sys.executable).parent / "convtool"
    return [str(script)] if script.exists() else [sys.executable, "-m", "convtool"]


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(extra)
    return env


def run(command: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr.decode()}")


def draw_pictures(folder: Path) -> tuple[Path, list[Path]]:
    spec = importlib.util.spec_from_file_location("make_samples", ROOT / "samples/make_samples.py")
    assert spec is not None and spec.loader is not None
    samples = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(samples)
    scene = samples.draw_scene(1024)
    big = folder / "in.png"
    Image.fromarray(scene).save(big)
    small_dir = folder / "batch"
    small_dir.mkdir()
    smalls = []
    for i in range(24):
        tile = np.roll(scene, (i * 37, i * 71), axis=(0, 1))[:512, :512]
        if i % 2:
            tile = tile[:, ::-1]
        path = small_dir / f"p{i:02d}.png"
        Image.fromarray(np.ascontiguousarray(tile)).save(path)
        smalls.append(path)
    return big, smalls
