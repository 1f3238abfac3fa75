"""The program as a whole, hardened: what every command shares.

Usage errors before any command; the limits every command that reads pictures shares
(``--max-pixels`` and decompression bombs, devices and endless streams); ``--debug`` and
the one-line unexpected error; writes that fail halfway.
"""

from __future__ import annotations

import io
import json
import os
import resource
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.cli.hardening import C, Case, check_case, check_failure, run_main, run_program, snapshot

CASES: dict[str, Case] = {
    "usage-unknown-command": C("frobnicate", 2, "no such command"),
    "usage-unknown-option": C("apply {ok.png} -k blur --frob", 2, "no such option"),
}


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_bad_input_gets_a_clear_answer_and_nothing_is_lost(case, files, tmp_path):
    check_case(case, files, tmp_path)


# ----------------------------------------------------------------- reading limits


def peak_rss_mb(args) -> tuple[subprocess.CompletedProcess, float]:
    """Run the program in a child of a fresh interpreter; return it and the child's peak RSS."""
    code = (
        "import json, resource, subprocess, sys\n"
        "done = subprocess.run([sys.executable, '-m', 'convtool', *sys.argv[1:]],"
        " capture_output=True, text=True)\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "print(json.dumps([done.returncode, done.stderr, peak]))\n"
    )
    probe = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True
    )
    returncode, stderr, peak = json.loads(probe.stdout)
    return subprocess.CompletedProcess(args, returncode, "", stderr), peak


@pytest.mark.parametrize("kind", ["png", "jpg", "tif", "webp"])
def test_bombs_are_refused_before_anything_is_allocated(kind, files, tmp_path):
    bomb = files[f"bomb.{kind}"]
    done, peak = peak_rss_mb(["apply", bomb, "-k", "blur", "-o", tmp_path / "x.png"])
    assert done.returncode == 1 and "--max-pixels" in done.stderr, done.stderr
    assert "89,478,485" in done.stderr  # Pillow's own limit, the default
    # decoding would take gigabytes (20000x20000 RGB is 1.2 GB, 4.8 GB as floats)
    _, baseline = peak_rss_mb(["apply", files["ok.png"], "-k", "blur", "-o", tmp_path / "y.png"])
    assert peak < baseline + 60, (peak, baseline)
    assert os.listdir(tmp_path) == ["y.png"]


def test_max_pixels_default_follows_pillow_and_0_or_none_lift_it(files, tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200)  # ok.png has 480 pixels
    ok = files["ok.png"]
    refused = run_main(["apply", ok, "-k", "blur", "-o", tmp_path / "a.png"])
    assert refused.code == 1 and "limit of 200" in refused.err
    for n, limit in enumerate(["0", "none", "NONE", "480"]):
        done = run_main(
            ["apply", ok, "-k", "blur", "-o", tmp_path / f"{n}.png", "--max-pixels", limit]
        )
        assert done.code == 0, done.err
    assert (
        run_main(["apply", ok, "-k", "blur", "-o", tmp_path / "b.png", "--max-pixels", "479"]).code
        == 1
    )
    fit = run_main(["fit", files["grey.npy"], files["target.npy"], "--max-pixels", "none"])
    assert fit.code == 0, fit.err
    assert "limit of 200" in run_main(["fit", files["grey.npy"], files["target.npy"]]).err
    helps = [run_main([cmd, "--help"]).out for cmd in ("apply", "fit")]
    assert all("--max-pixels N|none" in h and "0 or none: no limit" in h for h in helps)


class _Endless(io.RawIOBase):
    """A stream that never ends, as /dev/zero through a pipe."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        buffer[:] = bytes(len(buffer))
        return len(buffer)


def test_devices_and_endless_streams_are_refused_unread(tmp_path):
    from convtool import imaging as cio

    done = run_program(["apply", "/dev/zero", "-k", "blur", "-o", tmp_path / "x.png"])
    assert done.returncode == 1 and "/dev/zero: it is a device" in done.stderr, done.stderr
    with open("/dev/zero", "rb") as zero:
        done = run_program(["apply", "-", "-k", "blur", "-o", tmp_path / "x.png"], stdin=zero)
    assert done.returncode == 1 and "standard input: it is a device" in done.stderr, done.stderr
    assert os.listdir(tmp_path) == []
    with pytest.raises(cio.ImageReadError, match="the stream goes on, more than any picture"):
        cio.read_image(io.BufferedReader(_Endless()), max_pixels=1000)
    with pytest.raises(cio.ImageReadError, match="gives text, not bytes"):
        cio.read_image(io.StringIO("not bytes"))


# ----------------------------------------------------------------- --debug


def _boom(*args, **kwargs):
    raise RuntimeError("an unexpected\nfailure")


def test_an_unexpected_error_is_one_line_unless_debug(monkeypatch):
    import convtool.kernels

    monkeypatch.setattr(convtool.kernels, "list_kernels", _boom)
    plain = run_main(["kernels"])
    assert plain.code == 1 and "Traceback" not in plain.err
    assert plain.err.strip() == (
        "convtool: error: RuntimeError: an unexpected failure "
        "(run with --debug or CONVTOOL_DEBUG=1 for the traceback)"
    )
    for args, env in ((["--debug", "kernels"], None), (["kernels"], {"CONVTOOL_DEBUG": "1"})):
        with pytest.raises(RuntimeError, match="an unexpected"):  # main lets it through
            run_main(args, env=env)
    assert run_main(["kernels"], env={"CONVTOOL_DEBUG": "0"}).code == 1
    # --debug changes nothing else: expected failures stay one line
    assert run_main(["--debug", "apply", "nowhere.png", "-k", "blur"]).err.count("\n") == 1
    assert "--debug" in run_main(["--help"]).out


def test_the_program_shows_the_traceback_with_debug():
    code = (
        "import sys, convtool.kernels as k\n"
        "def boom(*a): raise RuntimeError('planted')\n"
        "k.list_kernels = boom\n"
        "from convtool.cli import main\n"
        "sys.argv[0] = 'convtool'\n"
        "main()\n"
    )
    plain = subprocess.run([sys.executable, "-c", code, "kernels"], capture_output=True, text=True)
    debug = subprocess.run(
        [sys.executable, "-c", code, "--debug", "kernels"], capture_output=True, text=True
    )
    env = {**os.environ, "CONVTOOL_DEBUG": "1"}
    by_env = subprocess.run(
        [sys.executable, "-c", code, "kernels"], capture_output=True, text=True, env=env
    )
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    assert "planted" in plain.stderr and len(plain.stderr.splitlines()) == 1
    for done in (debug, by_env):
        assert done.returncode == 1 and "Traceback" in done.stderr
        assert "RuntimeError: planted" in done.stderr and "list_kernels" in done.stderr


# ----------------------------------------------------------------- writes that fail


def _small_files() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))  # Python ignores SIGXFSZ


@pytest.mark.parametrize("ext", ["npy", "png", "tif", "bmp", "webp"])
def test_a_write_that_fails_halfway_leaves_nothing(ext, tmp_path):
    # a full disk, as root can meet it: files may grow to 60 kB, the output needs more
    rng = np.random.default_rng(3)
    source = tmp_path / "in.png"
    Image.fromarray((rng.random((200, 200, 3)) * 255).astype(np.uint8)).save(source)
    depth = ["--depth", "32"] if ext == "tif" else []
    fit = ["fit", source, source, "--size", "1", "--max-iter", "20000", "--method", "gd",
           "--lr", "1e-3", "--tol", "1e-300", "--seed", "1", "--log"]  # fmt: skip
    warm = tmp_path / "warm"  # first without the limit: numba's and the core's caches are
    warm.mkdir()  # written then, as after any install
    assert (
        run_program(["apply", source, "-k", "blur", "-o", warm / f"x.{ext}", *depth]).returncode
        == 0
    )
    # a gd run cut short at --max-iter: its report and log are written, and it exits 1
    assert run_program([*fit, warm / "loss.csv"]).returncode == 1
    assert (warm / "loss.csv").stat().st_size > 60_000
    out = tmp_path / "out"
    out.mkdir()
    before = snapshot(tmp_path)
    args = ["apply", source, "-k", "blur", "-o", out / f"x.{ext}", *depth]
    done = run_program(args, preexec_fn=_small_files)
    check_failure(
        done, 1, f"cannot write {out / ('x.' + ext)}: File too large", before, snapshot(tmp_path)
    )
    done = run_program([*fit, out / "loss.csv"], preexec_fn=_small_files)
    check_failure(done, 1, "loss.csv: File too large", before, snapshot(tmp_path))


def test_the_collector_is_off_for_one_picture_and_on_for_a_batch(files, tmp_path, monkeypatch):
    """main() runs one picture with the cyclic collector off (the start-up's objects are
    not scanned again and again), a batch with it on, and leaves it as it found it."""
    import gc

    from convtool.batch import apply_task

    seen, real = [], apply_task.run_task

    def run_task(*args, **kwargs):
        seen.append(gc.isenabled())
        return real(*args, **kwargs)

    monkeypatch.setattr(apply_task, "run_task", run_task)
    ok = files["ok.png"]
    assert run_main(["apply", ok, "-k", "blur", "-o", tmp_path / "one.png"]).code == 0
    assert seen == [False] and gc.isenabled()
    other = tmp_path / "other.png"
    other.write_bytes(ok.read_bytes())
    many = ["apply", ok, other, "-k", "blur", "-o", f"{tmp_path}/many/", "-j", "1"]
    assert run_main(many).code == 0
    assert seen[1:] == [True, True] and gc.isenabled()
