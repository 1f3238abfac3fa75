"""The hardening battery's harness: hostile inputs, the runners, and the checks.

The files every hostile command line reads (missing, empty, truncated, corrupt and
disguised files, decompression bombs, odd but valid pictures, broken kernel files), built
by ``make_inputs`` (the ``files`` fixture of ``conftest.py``); the two ways to run a
command line (``convtool.cli.main`` in this process with click's runner for the streams,
or the program in a subprocess, so that a traceback cannot hide); the tables that several
commands share (pictures that cannot be read, kernel specs that cannot be); and the check
that a failure gives a clear answer and leaves every file as it was. The
``test_*_errors.py`` files beside this one hold each command's table and topics.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
import scipy.ndimage as ndi
from click.testing import CliRunner
from PIL import Image

from convtool.cli import main

PROC = "/proc/convtool-hardening"  # creating a file here fails, even for root
BLUR = np.full((3, 3), 0.11)  # the chapter's blur


class Result(NamedTuple):
    code: int
    out: str
    err: str


def as_in_a_terminal() -> None:
    """A child's Ctrl-C as a terminal leaves it (``preexec_fn``): a shell's background job,
    and so a test run started with ``&``, ignores SIGINT, and its children inherit that."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_main(args, input: bytes | None = None, env: dict | None = None) -> Result:
    """``convtool.cli.main(args)`` with click's isolated streams: main's own error handling."""
    with CliRunner().isolation(input=input, env=env) as (out, err, _):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else int(e.code is not None)
        return Result(code, out.getvalue().decode(errors="replace"), err.getvalue().decode())


def run_program(args, **kwargs) -> subprocess.CompletedProcess:
    """The real entry point, ``convtool.cli.main``, in a fresh interpreter."""
    cmd = [sys.executable, "-m", "convtool", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kwargs)


def run_limited(args, megabytes: int, timeout: float = 120) -> subprocess.CompletedProcess:
    """The program under an address-space limit (``resource.setrlimit``) of ``megabytes``
    more than the interpreter holds when it starts, so that the limit is the room the
    command itself has."""
    driver = (
        "import resource, sys\n"
        "from convtool.shapes.budget import _status_bytes\n"
        f"room = _status_bytes('VmSize') + ({int(megabytes)} << 20)\n"
        "resource.setrlimit(resource.RLIMIT_AS, (room, resource.RLIM_INFINITY))\n"
        "from convtool.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    cmd = [sys.executable, "-c", driver, *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


# ----------------------------------------------------------------- the files


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = struct.pack(">I", zlib.crc32(kind + payload))
    return struct.pack(">I", len(payload)) + kind + payload + crc


def _encoded(array: np.ndarray, fmt: str, mode: str | None = None, **options) -> bytearray:
    buffer = io.BytesIO()
    picture = Image.fromarray(array)
    (picture.convert(mode) if mode else picture).save(buffer, format=fmt, **options)
    return bytearray(buffer.getvalue())


def bombs() -> dict[str, bytes]:
    """Tiny files whose headers declare far more pixels than Pillow's limit."""
    small = np.zeros((4, 4, 3), np.uint8)
    png = _PNG_SIGNATURE + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0))
    png += _png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _png_chunk(b"IEND", b"")
    bmp = _encoded(small, "BMP")
    bmp[18:26] = struct.pack("<ii", 20000, 20000)
    gif = _encoded(small[..., 0], "GIF")
    gif[6:10] = struct.pack("<HH", 60000, 60000)
    i = gif.index(b"\x2c")
    gif[i + 5 : i + 9] = struct.pack("<HH", 60000, 60000)
    jpeg = _encoded(small, "JPEG")
    i = jpeg.index(b"\xff\xc0")
    jpeg[i + 5 : i + 9] = struct.pack(">HH", 60000, 60000)
    tiff = _encoded(small, "TIFF")
    ifd = struct.unpack_from("<I", tiff, 4)[0]
    for k in range(struct.unpack_from("<H", tiff, ifd)[0]):
        entry = ifd + 2 + 12 * k
        tag, kind = struct.unpack_from("<HH", tiff, entry)
        if tag in (256, 257):  # ImageWidth, ImageLength
            struct.pack_into("<H" if kind == 3 else "<I", tiff, entry + 8, 60000)
    webp = _encoded(small, "WEBP", lossless=True)
    bits = struct.unpack_from("<I", webp, 21)[0] & ~((1 << 28) - 1)
    struct.pack_into("<I", webp, 21, bits | 16382 | (16382 << 14))  # 16383x16383
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (20000, 20000)}
    )
    npy = header.getvalue() + bytes(64)
    return {"png": png, "bmp": bmp, "gif": gif, "jpg": jpeg, "tif": tiff, "webp": webp, "npy": npy}


def make_inputs(folder: Path) -> dict[str, Path]:
    from convtool import imaging as cio

    rng = np.random.default_rng(7)
    rgb = (rng.random((20, 24, 3)) * 255).astype(np.uint8)
    grey = rng.random((30, 30))
    f: dict[str, Path] = {}

    def put(name: str, data: bytes) -> None:
        f[name] = folder / name
        f[name].write_bytes(bytes(data))

    put("ok.png", _encoded(rgb, "PNG"))
    put("grey.png", _encoded((grey * 255).astype(np.uint8), "PNG"))
    f["grey.npy"] = folder / "grey.npy"
    np.save(f["grey.npy"], grey.astype(np.float32))
    f["target.npy"] = folder / "target.npy"  # grey.npy through a 3x3 kernel, valid
    np.save(f["target.npy"], ndi.correlate(grey, BLUR)[1:-1, 1:-1].astype(np.float32))
    f["wide.npy"] = folder / "wide.npy"
    np.save(f["wide.npy"], rng.random((28, 40)).astype(np.float32))
    f["colour.npy"] = folder / "colour.npy"
    np.save(f["colour.npy"], rng.random((28, 28, 3)).astype(np.float32))
    f["missing.png"] = folder / "missing.png"
    f["dir.png"] = folder / "dir.png"
    f["dir.png"].mkdir()
    put("empty.png", b"")
    put("text.png", b"I am not a picture, only a careless name.\n")
    put("trunc.png", f["ok.png"].read_bytes()[:700])
    corrupt = bytearray(f["ok.png"].read_bytes())
    corrupt[60:80] = bytes(20)  # inside IDAT: its CRC no longer matches
    put("corrupt.png", corrupt)
    big = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    jpeg = _encoded(big, "JPEG")
    put("trunc.jpg", jpeg[: int(len(jpeg) * 0.9)])
    jpeg[jpeg.index(b"\xff\xc0") + 4] = 0  # sample precision 0
    put("corrupt.jpg", jpeg)
    put(
        "zero.png",
        _PNG_SIGNATURE + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 0, 8, 2, 0, 0, 0)),
    )
    f["zero.npy"] = folder / "zero.npy"
    np.save(f["zero.npy"], np.zeros((0, 0), np.float32))
    for kind, data in bombs().items():
        put(f"bomb.{kind}", data)
    # odd but valid pictures
    put("one.png", _encoded(rgb[:1, :1], "PNG"))
    g16 = (rng.random((20, 24)) * 65535).astype(np.uint16)
    put("g16.png", _encoded(g16, "PNG"))
    put("i16.tif", _encoded(g16, "TIFF"))
    f["rgb16.png"] = folder / "rgb16.png"
    cio.write_image(f["rgb16.png"], rgb.astype(np.float64) / 255, bit_depth=16)
    put("pal.png", _encoded(rgb, "PNG", "P"))
    put("palt.png", _encoded(rgb, "PNG", "P", transparency=3))
    put("cmyk.jpg", _encoded(rgb, "JPEG", "CMYK"))
    put("cmyk.tif", _encoded(rgb, "TIFF", "CMYK"))
    put("la.png", _encoded(rgb, "PNG", "LA"))
    for name, value in (("nan.npy", np.nan), ("inf.npy", np.inf)):
        a = rng.random((20, 24)).astype(np.float32)
        a[5, 7] = value
        f[name] = folder / name
        np.save(f[name], a)
    # kernel files
    put("ragged.txt", b"1 2 3\n4 5\n")
    put("empty.npy", b"")
    put("words.txt", b"one two\nthree four\n")
    put("blank.txt", b"# nothing but a comment\n")
    put("bad.json", b'{"kernel": [[1, 2], [3, "x"]]}')
    put("deep.json", b"[" * 100000 + b"]" * 100000)
    put("nanbias.json", b'{"kernel": [[1]], "bias": NaN}')
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (100000, 100000)}
    )
    put("hugek.npy", header.getvalue() + bytes(64))
    for name, size in (("sparse.txt", 5 << 30), ("sparse.png", 4 << 30)):
        f[name] = folder / name
        with open(f[name], "wb") as sparse:
            sparse.truncate(size)  # gigabytes declared, none stored
    return f


def snapshot(*folders: Path) -> dict[str, str]:
    """Every entry under the folders: a hash of its bytes (size and time for huge files)."""
    seen = {}
    for folder in folders:
        for root, dirs, names in os.walk(folder):
            for d in dirs:
                seen[os.path.join(root, d)] = "folder"
            for name in names:
                path = os.path.join(root, name)
                info = os.stat(path)
                if info.st_size > 1 << 26:
                    seen[path] = f"{info.st_size}:{info.st_mtime_ns}"
                else:
                    seen[path] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return seen


# ----------------------------------------------------------------- the table


class Case(NamedTuple):
    args: tuple[str, ...]
    code: int
    words: str  # the message must hold these (case-insensitive)


def C(line: str, code: int, words: str) -> Case:
    return Case(tuple(line.split()), code, words)


READS = [  # one picture that cannot be read: exit 1, a line naming the file and the problem
    ("missing.png", "no such file"),
    ("dir.png", "is a directory"),
    ("empty.png", "the file is empty"),
    ("text.png", "not a picture"),
    ("trunc.png", "truncated or corrupt PNG"),
    ("corrupt.png", "corrupt PNG"),
    ("trunc.jpg", "truncated or corrupt JPEG"),
    ("corrupt.jpg", "corrupt JPEG"),
    ("zero.png", "0x0"),
    ("zero.npy", "empty"),
    ("sparse.png", "raise it with --max-pixels"),
    *[
        (f"bomb.{kind}", "--max-pixels")
        for kind in ("png", "bmp", "gif", "jpg", "tif", "webp", "npy")
    ],
]

SPECS = {  # kernel specs that cannot be: bad usage, exit 2, naming the problem
    "ragged": ("1,2,3;4,5", "row 2 has 2 values"),
    "blank": ("  ", "empty kernel spec"),
    "word": ("1,two;3,4", "'two' is not a number"),
    "nan": ("nan,1;1,1", "not finite"),
    "inf": ("1,inf;1,1", "not finite"),
    "overflow": ("1e400,1;1,1", "not finite"),
    "enormous": ("10001x10001:", "at most 1024"),
    "enormous-gaussian": ("gaussian:10001", "at most 1024"),
    "box-0": ("box:0", "positive integer"),
    "rotation": ("sobel_x@30", "multiple of 45"),
    "unknown": ("nosuchkernel", "unknown kernel"),
    "file-missing": ("@{missing.png}", "does not exist"),
    "file-dir": ("@{dir.png}", "is a directory"),
    "file-ragged": ("@{ragged.txt}", "row 2 has 2 values"),
    "file-words": ("@{words.txt}", "not a number"),
    "file-blank": ("@{blank.txt}", "no numbers"),
    "file-empty": ("@{empty.npy}", "is empty"),
    "file-json": ("@{bad.json}", "not a number"),
    "file-json-deep": ("@{deep.json}", "JSON"),
    "file-json-nan": ("@{nanbias.json}", "not finite"),
    "file-huge-npy": ("@{hugek.npy}", "at most 1024"),
    "file-gigabytes": ("@{sparse.txt}", "bytes; at most"),
}


def expand(args: tuple[str, ...], files: dict[str, Path], out: Path) -> list[str]:
    """``{name}`` -> that file's path, ``{out}`` -> the output folder."""
    names = {"out": str(out), **{name: str(path) for name, path in files.items()}}
    return [re.sub(r"\{([^{}]+)\}", lambda m: names[m.group(1)], a) for a in args]


def check_failure(result, code: int, words: str, before: dict, after: dict) -> None:
    """The exit code, words and shape of the message; every file as it was."""
    if isinstance(result, Result):
        got, err = result.code, result.err
    else:
        got, err = result.returncode, result.stderr
    assert got == code, err
    assert "Traceback" not in err, err
    assert words.lower() in err.lower(), err
    lines = [line for line in err.splitlines() if line.strip()]
    if code == 1:
        assert len(lines) == 1, err  # one line for a failure
    else:
        assert lines[0].startswith("Usage:") and lines[-1].startswith("Error:"), err
    assert after == before  # nothing new (no partial, empty or temporary file), nothing changed
    assert not os.path.lexists(PROC + ".png") and not os.path.lexists(PROC + ".json")


def check_case(case: Case, files: dict[str, Path], tmp_path: Path, run=run_main) -> None:
    """Run one case (through ``run_main`` or ``run_program``) and check its failure."""
    out = tmp_path / "out"
    out.mkdir()
    before = snapshot(files["ok.png"].parent, out)
    result = run(expand(case.args, files, out))
    check_failure(result, case.code, case.words, before, snapshot(files["ok.png"].parent, out))
