"""`convtool kernels`: the listing, single specs, --json, errors, and its start-up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from convtool.cli import cli
from convtool.kernels import list_kernels, parse_kernel

WIDE = {"COLUMNS": "120"}
ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, env: dict | None = None):
    return CliRunner().invoke(cli, ["kernels", *args], env=env or WIDE)


def test_listing_shows_every_kernel_and_the_rules():
    result = run()
    assert result.exit_code == 0, result.output
    for info in list_kernels():
        assert info.name in result.output
        for alias in info.aliases:
            assert alias in result.output
    assert "gaussian[:SIZE[,SIGMA]]" in result.output
    assert "motion[:LENGTH[,ANGLE]]" in result.output
    assert "0.11" in result.output and "0.111" in result.output  # blur and box3, compact
    assert "0.110" not in result.output and "-1.0" not in result.output  # no padding decimals
    assert "clockwise" in result.output


def test_listing_fits_a_narrow_terminal():
    result = run(env={"COLUMNS": "80"})
    assert result.exit_code == 0
    assert max(len(line) for line in result.output.splitlines()) <= 80


def test_listing_json():
    result = run("--json")
    assert result.exit_code == 0
    data = json.loads(result.output)
    infos = list_kernels()
    assert [d["name"] for d in data] == [i.name for i in infos]
    for d, i in zip(data, infos, strict=True):
        assert set(d) >= {"name", "aliases", "shape", "kernel", "description"}
        assert d["aliases"] == list(i.aliases)
        assert d["shape"] == list(i.kernel.shape)
        np.testing.assert_array_equal(np.array(d["kernel"]), i.kernel)
    sobel = next(d for d in data if d["name"] == "sobel_x")
    assert sobel["kernel"] == [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]


@pytest.mark.parametrize(
    ("spec", "rows"),
    [
        ("sobel_x:90", ["-1  -2  -1", " 0   0   0", " 1   2   1"]),
        ("Sobel X", ["-1  0  1", "-2  0  2"]),
        ("kirsch@45", [" 5   5  -3", "-3  -3  -3"]),
        ("0,-1,0; -1,5,-1; 0,-1,0", ["-1   5  -1"]),
        ("3x3: 1,2,1 2,4,2 1,2,1", ["2  4  2"]),
    ],
)
def test_one_spec(spec, rows):
    result = run(spec)
    assert result.exit_code == 0, result.output
    for row in rows:
        assert row in result.output


def test_one_spec_shows_name_shape_and_sum():
    result = run("gaussian:5,1")
    assert result.exit_code == 0
    assert "gaussian:5,1" in result.output
    assert "shape (5, 5)" in result.output and "sum 1" in result.output
    result = run("sharpen")
    assert "sharpness" in result.output and "sharpen" in result.output


def test_one_spec_json():
    result = run("gaussian:5,1", "--json")
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["name"] == "gaussian:5,1"
    assert data["shape"] == [5, 5]
    np.testing.assert_allclose(np.array(data["kernel"]), parse_kernel("gaussian:5,1"), rtol=1e-15)
    assert data["bias"] is None and data["description"]
    data = json.loads(run("identity", "--json").output)
    assert data["name"] == "nothing" and "identity" in data["aliases"]


def test_several_specs_json_is_a_list():
    data = json.loads(run("sobel_x", "sobel_y:180", "--json").output)
    assert [d["name"] for d in data] == ["sobel_x", "sobel_y@180"]
    assert data[1]["kernel"] == [[1, 2, 1], [0, 0, 0], [-1, -2, -1]]


def test_file_specs(tmp_path):
    path = tmp_path / "k.json"
    path.write_text(json.dumps({"kernel": [[0, 1, 0], [1, -4, 1], [0, 1, 0]], "bias": 0.5}))
    data = json.loads(run(f"@{path}", "--json").output)
    assert data["name"] == "k" and data["bias"] == 0.5 and data["shape"] == [3, 3]
    result = run(f"@{path}")
    assert result.exit_code == 0 and "bias 0.5" in result.output
    np.save(tmp_path / "four.npy", np.ones((2, 3, 3, 3)))
    result = run(f"@{tmp_path / 'four.npy'}")
    assert result.exit_code == 0
    assert "shape (2, 3, 3, 3)" in result.output and "out 1, in 2" in result.output


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("sobelx", ["unknown kernel 'sobelx'", "did you mean sobel_x"]),
        ("gaussian:4", ["positive odd integer"]),
        ("1,2;3", ["row 2 has 1 value, row 1 has 2"]),
        ("@/no/such/file.txt", ["does not exist"]),
        ("sobel_x@30", ["multiple of 45"]),
    ],
)
def test_bad_specs_exit_2_with_one_clear_message(spec, words):
    result = run(spec)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.output
    result = run(spec, "--json")
    assert result.exit_code == 2


def test_help_explains_the_rules():
    result = CliRunner().invoke(cli, ["kernels", "--help"], env=WIDE)
    assert result.exit_code == 0
    for word in ["@ANGLE", "clockwise", "sobel_x:90", "3x3:", "--json"]:
        assert word in result.output


# ---------------------------------------------------------------- start-up, in a fresh process

PROBE = """
import runpy, sys
sys.argv = ["convtool", "kernels", *sys.argv[1:]]
code = 0
try:
    runpy.run_module("convtool", run_name="__main__", alter_sys=True)
except SystemExit as e:
    code = e.code or 0
print("numba loaded:", "numba" in sys.modules, "exit:", code)
"""


@pytest.mark.parametrize("args", [[], ["gaussian:5,1", "--json"], ["sobelx"], ["--help"]])
def test_kernels_command_does_not_import_numba(args):
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "100"},
        cwd=ROOT,
    )
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith("numba loaded: False"), (out.stdout[-500:], out.stderr[-2000:])
    expected = 2 if args == ["sobelx"] else 0
    assert last.endswith(f"exit: {expected}"), (last, out.stderr[-2000:])
    assert "Traceback" not in out.stderr


def test_python_m_convtool_kernels_exit_codes():
    ok = subprocess.run(
        [sys.executable, "-m", "convtool", "kernels", "box:2", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["kernel"] == [[0.25, 0.25], [0.25, 0.25]]
    bad = subprocess.run(
        [sys.executable, "-m", "convtool", "kernels", "sobelx"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert bad.returncode == 2
    assert "did you mean sobel_x" in bad.stderr and "Traceback" not in bad.stderr


def test_imagemagick_and_magnitude_specs_are_shown():
    result = run("im:Comet:0x1", "im:sobel:45")
    assert result.exit_code == 0, result.output
    assert "ImageMagick's Comet:0x1" in result.output and "1x9" not in result.output
    data = json.loads(run("sobel", "--json").output)
    assert len(data["parts"]) == 2 and data["parts"][0] == data["kernel"]
    assert np.array_equal(np.array(data["parts"][1]), np.array(data["kernel"]).T)


def test_imagemagick_kernel_lists_are_shown():
    result = run("im:Sobel:>")
    assert result.exit_code == 0, result.output
    assert "kernel 4 of 4" in result.output and "turned" not in result.output
    data = json.loads(run("im:Sobel:>", "--json").output)
    assert len(data["chain"]) == 3 and data["chain"][0] == [[1, 2, 1], [0, 0, 0], [-1, -2, -1]]


def test_a_rotated_kernel_is_named_by_the_kernel_it_is():
    # each name a rotated kernel gets is a bank kernel with exactly its weights, and
    # every bank kernel with its weights is named; the base's own aliases never are
    from convtool.kernels import kernel_info

    fixed = [i for i in list_kernels() if i.syntax == i.name and i.group != "magnitude"]
    for info in fixed:
        steps = 45 if info.kernel.shape == (3, 3) else 90
        for angle in range(steps, 360, steps):
            done = CliRunner().invoke(cli, ["kernels", f"{info.name}@{angle}", "--json"])
            assert done.exit_code == 0, done.output
            record = json.loads(done.stdout)
            weights = np.array(record["kernel"])
            want = {n for i in fixed if np.array_equal(i.kernel, weights)
                    for n in (i.name, *i.aliases)}  # fmt: skip
            assert set(record["aliases"]) == want, (info.name, angle)
            named = record["is"]
            assert (named is None) == (not want)
            if named is not None:
                np.testing.assert_array_equal(kernel_info(named).kernel, weights)
    compass = ["w", "nw", "n", "ne", "e", "se", "s", "sw"]
    for step, side in enumerate(compass):
        done = CliRunner().invoke(cli, ["kernels", f"kirsch@{45 * step}", "--json"])
        record = json.loads(done.stdout)
        assert record.get("is", record["name"]) == ("kirsch" if step == 0 else f"kirsch_{side}")
    shown = CliRunner().invoke(cli, ["kernels", "kirsch@45"]).stdout
    assert "kirsch@45 = kirsch_nw" in shown and "kirsch_w" not in shown
