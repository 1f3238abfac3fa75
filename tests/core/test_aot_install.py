"""The install's build of the compiled core (setup.py): what it builds, for which CPU, and
that any failure leaves an install without it. Configured, not compiled (minutes): the
full build is `pip install .`'s, which CI runs."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from convtool.core import aot_pycc

ROOT = Path(__file__).resolve().parents[2]

# setup.py's call, in a child: the build imports copies of the kernels' modules under
# their own names, which this process has loaded already
LOAD = """
import importlib.util, json, sys
path = sys.argv[1] + "/convtool/core/aot_pycc.py"
spec = importlib.util.spec_from_file_location("aot_pycc", path)
aot_pycc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(aot_pycc)
"""
CONFIGURE = (
    LOAD
    + """
try:
    args = aot_pycc.setup_arguments(sys.argv[1])
except ValueError as e:
    print(json.dumps({"error": str(e)}))
    sys.exit()
if not args:
    print(json.dumps({}))
    sys.exit()
(ext,) = args["ext_modules"]
command = args["cmdclass"]["build_ext"]
print(json.dumps({
    "name": ext.name, "optional": ext.optional, "cpu": ext._cc.target_cpu,
    "exports": sorted(ext._cc._exported_functions), "command": command.__mro__[1].__name__,
}))
"""
)


def _configure(monkeypatch, **env: str) -> tuple[dict, str]:
    for name in ("CONVTOOL_CPU", "CONVTOOL_AOT", "NUMBA_DISABLE_JIT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    done = subprocess.run(
        [sys.executable, "-c", CONFIGURE, str(ROOT)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), done.stderr


def test_the_install_builds_every_kernel_for_this_cpu(monkeypatch):
    found, _ = _configure(monkeypatch)
    assert found["name"] == "convtool.core._compiled"
    assert found["optional"] is True
    assert found["cpu"] == "host"
    expected = {f"{k}_{t}" for k, (*_, types) in aot_pycc.KERNELS.items() for t in types}
    assert set(found["exports"]) == expected | {"sources_digest"}
    assert found["command"] == "_CC_build_ext"  # numba's, which compiles the kernels


@pytest.mark.parametrize(
    "cpu", ["generic", "x86-64-v2" if platform.machine() in ("x86_64", "AMD64") else "generic"]
)
def test_a_wheel_names_its_baseline_cpu(monkeypatch, cpu):
    found, _ = _configure(monkeypatch, CONVTOOL_CPU=f" {cpu} ")
    assert found["cpu"] == cpu


def test_an_unknown_cpu_is_refused_before_anything_is_built(monkeypatch):
    found, _ = _configure(monkeypatch, CONVTOOL_CPU="no-such-cpu")
    assert "CONVTOOL_CPU='no-such-cpu'" in found["error"]


def test_switched_off_the_install_builds_no_extension(monkeypatch):
    found, err = _configure(monkeypatch, CONVTOOL_AOT="0")
    assert found == {} and "not building the compiled core: CONVTOOL_AOT=0" in err


def test_no_c_compiler_means_an_install_without_it(monkeypatch):
    found, err = _configure(monkeypatch, CC="no-such-compiler-xyz")
    assert found == {} and "not building the compiled core" in err


BUILD_FAILS = (
    LOAD
    + """
from setuptools import Distribution
args = aot_pycc.setup_arguments(sys.argv[1])
(ext,) = args["ext_modules"]

def broken(command):
    raise RuntimeError("numba cannot type this")

ext._prepare_object_files = broken  # where numba compiles the kernels
dist = Distribution({"name": "probe", **args})
command = dist.get_command_obj("build_ext")
command.build_lib, command.build_temp = sys.argv[2], sys.argv[2] + "/temp"
command.ensure_finalized()
command.run()
print("installed without it")
"""
)


def test_a_failed_build_leaves_an_install_without_it(monkeypatch, tmp_path):
    monkeypatch.delenv("CONVTOOL_AOT", raising=False)
    done = subprocess.run(
        [sys.executable, "-c", BUILD_FAILS, str(ROOT), str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == "installed without it"
    assert "the compiled core was not built: numba cannot type this" in done.stderr
    assert not list(tmp_path.rglob("_compiled*"))
