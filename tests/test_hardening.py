"""Hardening: every bad input gets a clear answer, and nothing is lost.

One table of hostile or careless command lines (missing, empty, truncated, corrupt and
disguised files, decompression bombs, broken kernel specs, impossible geometry, fit
pairs that cannot be, outputs that cannot be written or would overwrite an input), each
with the exit code and the words its message must hold. Every case runs through
``convtool.cli.main`` (in this process, with click's runner for the streams) and must
leave every file as it was: no new file, partial, empty or temporary, and no existing
byte changed. A representative subset runs in a real subprocess, so that a traceback
cannot hide. Then: odd but valid pictures against an independent reference, the
``--max-pixels`` limit and its memory, ``--debug``, write failures, Ctrl-C in the
middle of a batch, NaN and infinity, and determinism whatever ``--jobs`` is.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import resource
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
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


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    return make_inputs(tmp_path_factory.mktemp("inputs"))


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

APPLY = "apply {ok.png} -k blur"
CASES: dict[str, Case] = {
    **{f"apply-{n}": C(f"apply {{{n}}} -k blur -o {{out}}/x.png", 1, w) for n, w in READS},
    **{
        f"apply-spec-{n}": Case(("apply", "{ok.png}", "-k", s), 2, w) for n, (s, w) in SPECS.items()
    },
    **{f"kernels-spec-{n}": Case(("kernels", s), 2, w) for n, (s, w) in SPECS.items()},
    # a TIFF kept as TIFF is filtered in tiles (--tile), never whole: its header's size
    # is not refused, but the data it promises must be there
    "apply-bomb.tif-to-tif": C("apply {bomb.tif} -k blur -o {out}/", 1, "bomb.tif"),
    "apply-smaller-than-kernel": C(
        "apply {one.png} -k gaussian:5 --padding valid -o {out}/x.png", 1, "kernel is 5x5"
    ),
    "apply-stride-0": C(f"{APPLY} --stride 0 -o {{out}}/x.png", 2, "stride must be at least 1"),
    "apply-stride-0x2": C(f"{APPLY} --stride 0x2 -o {{out}}/x.png", 2, "stride"),
    "apply-padding-negative": C(f"{APPLY} --padding -1 -o {{out}}/x.png", 2, "'-1'"),
    "apply-padding-negative-hxw": C(f"{APPLY} --padding 1x-2 -o {{out}}/x.png", 2, "padding"),
    "apply-scale-nan": C(f"{APPLY} --scale nan -o {{out}}/x.png", 2, "finite"),
    "apply-bias-inf": C(f"{APPLY} --bias inf -o {{out}}/x.png", 2, "finite"),
    "apply-scale-overflow": C(f"{APPLY} --scale 1e300 -o {{out}}/x.png", 2, "float32"),
    "apply-max-pixels-negative": C(f"{APPLY} --max-pixels -5 -o {{out}}/x.png", 2, "pixel count"),
    "apply-max-pixels-word": C(f"{APPLY} --max-pixels lots -o {{out}}/x.png", 2, "pixel count"),
    "apply-max-pixels-small": C(f"{APPLY} --max-pixels 100 -o {{out}}/x.png", 1, "limit of 100"),
    "apply-folder-missing": C(f"{APPLY} -o {{out}}/nowhere/x.png", 2, "does not exist"),
    "apply-folder-missing-dir": C(f"{APPLY} -o {{out}}/nowhere/", 2, "does not exist"),
    "apply-folder-is-a-file": C(f"{APPLY} -o {{ok.png}}/x.png", 2, "is not a folder"),
    "apply-out-folder-is-a-file": C(
        "apply {ok.png} {grey.png} -k blur -o {ok.png}/", 2, "ok.png' is not a folder"
    ),
    "apply-folder-unwritable": C(f"{APPLY} -o {PROC}.png", 1, f"cannot write {PROC}.png"),
    "apply-folder-unwritable-dir": C(f"{APPLY} -o /proc/", 1, "cannot write /proc/ok.blur.png"),
    "apply-output-is-input": C(f"{APPLY} -o {{ok.png}}", 2, "is an input"),
    "apply-output-is-input-overwrite": C(f"{APPLY} -o {{ok.png}} --overwrite", 2, "is an input"),
    "apply-output-exists": C(f"{APPLY} -o {{grey.png}}", 1, "exists; pass --overwrite"),
    "apply-two-inputs-one-name": C(
        "apply {ok.png} {ok.png} -k blur -o {out}/", 2, "would both write"
    ),
    "fit-missing": C("fit {missing.png} {target.npy}", 1, "no such file"),
    "fit-dir": C("fit {grey.npy} {dir.png}", 2, "is a directory"),
    "fit-empty": C("fit {empty.png} {target.npy}", 1, "the file is empty"),
    "fit-text": C("fit {grey.npy} {text.png}", 1, "not a picture"),
    "fit-trunc": C("fit {trunc.png} {target.npy}", 1, "truncated or corrupt PNG"),
    "fit-zero": C("fit {zero.npy} {target.npy}", 1, "empty"),
    "fit-bomb": C("fit {bomb.png} {target.npy}", 1, "--max-pixels"),
    "fit-swapped": C("fit {target.npy} {grey.npy}", 2, "swapped"),
    "fit-mismatched": C("fit {grey.npy} {wide.npy}", 2, "wider than"),
    "fit-colour-target": C("fit {grey.npy} {colour.npy}", 2, "--grey"),
    "fit-size-wrong": C("fit {grey.npy} {target.npy} --size 5", 2, "size-5 kernel"),
    "fit-size-0": C("fit {grey.npy} {target.npy} --size 0", 2, "at least 1"),
    "fit-stride-0": C("fit {grey.npy} {target.npy} --stride 0", 2, "at least 1"),
    "fit-stride-too-small-target": C(
        "fit {grey.npy} {target.npy} --stride 2", 2, "can be at most 15 along the height"
    ),
    "fit-tol-nan": C("fit {grey.npy} {target.npy} --tol nan", 2, "positive number"),
    "fit-nan-input": C("fit {nan.npy} {target.npy}", 1, "nan.npy holds 1 nan or infinite"),
    "fit-inf-target": C(
        "fit {grey.npy} {inf.npy} --size 11x5", 1, "inf.npy holds 1 nan or infinite"
    ),
    "fit-diverging-step": C("fit {grey.npy} {target.npy} --lr 1e6", 1, "diverge"),
    "fit-max-pixels-small": C("fit {grey.npy} {target.npy} --max-pixels 100", 1, "limit of 100"),
    "fit-output-is-input": C(
        "fit {grey.npy} {target.npy} -o {target.npy} --overwrite", 2, "is an input"
    ),
    "fit-log-is-input": C(
        "fit {grey.npy} {target.npy} --log {grey.npy} --overwrite", 2, "is an input"
    ),
    "fit-output-is-log": C(
        "fit {grey.npy} {target.npy} -o {out}/k.json --log {out}/k.json", 2, "two files"
    ),
    "fit-output-exists": C("fit {grey.npy} {target.npy} -o {grey.png}", 2, "exists"),
    "fit-folder-missing": C(
        "fit {grey.npy} {target.npy} -o {out}/nowhere/k.json", 2, "does not exist"
    ),
    "fit-folder-is-a-file": C(
        "fit {grey.npy} {target.npy} --log {ok.png}/l.csv", 2, "not a folder"
    ),
    "fit-folder-unwritable": C(
        f"fit {{grey.npy}} {{target.npy}} -o {PROC}.json", 1, "cannot write"
    ),
    "fit-output-kind": C("fit {grey.npy} {target.npy} -o {out}/k.png", 2, "kernels are written as"),
    "fit-compare-ragged": C("fit {grey.npy} {target.npy} --compare 1,2;3", 2, "row 2"),
    "shape-kernel-0": C("shape 28 -k 0", 2, "kernel must be at least 1"),
    "shape-stride-0": C("shape 28 -k 3 -s 0", 2, "stride must be at least 1"),
    "shape-padding-negative": C("shape 28 -k 3 -p -1", 2, "padding"),
    "shape-kernel-too-large": C("shape 28 -k 30", 2, "larger than the padded input"),
    "shape-input-0": C("shape 0 -k 3", 2, "at least 1"),
    "shape-input-nan": C("shape nan -k 3", 2, "integer"),
    "shape-layer-unknown": C("shape 1x28x28 conv:4@5 bogus", 2, "unknown layer"),
    "shape-layer-too-large": C("shape 1x28x28 conv:4@50", 2, "larger than the padded input"),
    "usage-unknown-command": C("frobnicate", 2, "no such command"),
    "usage-unknown-option": C("apply {ok.png} -k blur --frob", 2, "no such option"),
}

# `convtool pipeline` reads pictures and kernel specs as apply does: its own table.
PIPELINE_CASES: dict[str, Case] = {
    **{f"pipeline-{n}": C(f"pipeline {{{n}}} -k blur -o {{out}}/", 1, w) for n, w in READS},
    **{
        f"pipeline-spec-{n}": Case(("pipeline", "{ok.png}", "-k", s), 2, w)
        for n, (s, w) in SPECS.items()
    },
    "pipeline-stride-0": C("pipeline {ok.png} -k blur --stride 0 -o {out}/x.npy", 2, "stride"),
    "pipeline-padding-negative": C(
        "pipeline {ok.png} -k blur --padding -1 -o {out}/x.npy", 2, "padding"
    ),
    "pipeline-max-pixels-word": C("pipeline {ok.png} -k blur --max-pixels lots", 2, "pixel count"),
    "pipeline-smaller-than-kernel": C("pipeline {one.png} -k gaussian:5 -o {out}/x.npy", 1, "5x5"),
    "pipeline-folder-missing": C(
        "pipeline {ok.png} -k blur -o {out}/nowhere/x.npy", 2, "does not exist"
    ),
    "pipeline-folder-unwritable": C(
        f"pipeline {{ok.png}} -k blur -o {PROC}.npy", 1, "cannot write"
    ),
    "pipeline-output-is-input": C(
        "pipeline {ok.png} -k blur -o {ok.png} --overwrite", 2, "is an input"
    ),
    "pipeline-output-exists": C("pipeline {ok.png} -k blur -o {grey.png}", 1, "exists; pass"),
    "pipeline-panel-unwritable": C(f"pipeline {{ok.png}} -k blur --panel {PROC}.png", 1, "cannot"),
    "pipeline-scale-nan": C("pipeline {ok.png} -k blur --scale nan", 2, "finite"),
    "pipeline-stage-stride-0": C("pipeline {ok.png} --stage conv:blur,s=0", 2, "stride must be"),
    "pipeline-stage-window-0": C("pipeline {ok.png} --stage maxpool:0", 2, "at least 1"),
    "pipeline-stage-unknown": C("pipeline {ok.png} --stage bogus", 2, "unknown stage"),
    # kernels beyond float32, whatever made them so, naming the value
    "pipeline-scale-overflow": C("pipeline {ok.png} -k blur --scale 1e300", 2, "--scale 1e+300"),
    "pipeline-bias-overflow": C("pipeline {ok.png} -k blur --bias -1e39", 2, "--bias -1e+39 is"),
    "pipeline-stage-scale-overflow": C(
        "pipeline {ok.png} --stage conv:sobel_x,scale=1e300", 2, "scale=1e+300 makes kernel"
    ),
    "pipeline-stage-bias-overflow": C(
        "pipeline {ok.png} --stage conv:blur,bias=1e39", 2, "bias=1e+39 is beyond float32"
    ),
    "pipeline-kernel-overflow": C("pipeline {ok.png} -k 1e39,1", 2, "beyond float32"),
    # a file where a folder should be
    "pipeline-folder-is-a-file": C(
        "pipeline {ok.png} -k blur -o {ok.png}/x.npy", 2, "ok.png' is not a folder"
    ),
    "pipeline-folder-dir-is-a-file": C(
        "pipeline {ok.png} {grey.png} -k blur -o {ok.png}/", 2, "ok.png' is not a folder"
    ),
    "pipeline-stages-in-a-file": C(
        "pipeline {ok.png} -k blur --save-stages {ok.png}/st", 2, "ok.png' is not a folder"
    ),
    "pipeline-stages-is-a-file": C(
        "pipeline {ok.png} -k blur --save-stages {ok.png}/", 2, "ok.png' is not a folder"
    ),
    "pipeline-panel-in-a-file": C(
        "pipeline {ok.png} -k blur --panel {ok.png}/f.png", 2, "ok.png' is not a folder"
    ),
    "pipeline-grid-folder-is-a-file": C(
        "pipeline {ok.png} {grey.png} -k blur --grid {ok.png}", 2, "ok.png' is not a folder"
    ),
    # --scheduler: usage first, then one line for a scheduler out of reach
    "pipeline-scheduler-and-jobs": C(
        "pipeline {ok.png} -k blur --scheduler tcp://127.0.0.1:1 --jobs 2", 2, "give one of them"
    ),
    "pipeline-scheduler-stdin": C(
        "pipeline - -k blur --scheduler tcp://127.0.0.1:1", 2, "standard input and output"
    ),
    "pipeline-scheduler-unreachable": C(
        "pipeline {ok.png} -k blur --save-stages {out}/st --scheduler tcp://127.0.0.1:1",
        1,
        "cannot reach the Dask scheduler",
    ),
}
CASES.update(PIPELINE_CASES)


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


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_bad_input_gets_a_clear_answer_and_nothing_is_lost(case, files, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    before = snapshot(files["ok.png"].parent, out)
    result = run_main(expand(case.args, files, out))
    check_failure(result, case.code, case.words, before, snapshot(files["ok.png"].parent, out))


def test_a_million_inline_numbers_are_refused_quickly(files, tmp_path):
    # too long for a real command line (128 KB per argument), not for a script's call
    start = time.perf_counter()
    for spec, words in (
        (",".join(["1"] * 10**6), "row 1 has 1000000 values"),
        ("1 " * 10**6, "at most 1024"),
    ):
        before = snapshot(files["ok.png"].parent, tmp_path)
        result = run_main(["apply", files["ok.png"], "-k", spec, "-o", tmp_path / "x.png"])
        check_failure(result, 2, words, before, snapshot(files["ok.png"].parent, tmp_path))
    assert time.perf_counter() - start < 10


SUBPROCESS = [
    "apply-corrupt.png",
    "apply-bomb.png",
    "apply-spec-ragged",
    "apply-folder-unwritable",
    "apply-output-is-input-overwrite",
    "fit-swapped",
    "fit-nan-input",
    "fit-folder-unwritable",
    "kernels-spec-file-huge-npy",
    "apply-bomb.tif-to-tif",
    "shape-stride-0",
    "pipeline-bomb.png",
    "pipeline-spec-word",
    "pipeline-stage-scale-overflow",
    "pipeline-scheduler-unreachable",
]


@pytest.mark.parametrize("name", SUBPROCESS)
def test_the_program_itself_prints_no_traceback(name, files, tmp_path):
    case = CASES[name]
    out = tmp_path / "out"
    out.mkdir()
    before = snapshot(files["ok.png"].parent, out)
    done = run_program(expand(case.args, files, out))
    check_failure(done, case.code, case.words, before, snapshot(files["ok.png"].parent, out))


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


# ----------------------------------------------------------------- odd but valid pictures


def _reference(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Pixels in [0, 1] and alpha, by Pillow alone (16-bit colour: the values written)."""
    with Image.open(path) as im:
        if path.name == "rgb16.png":  # Pillow reads 16-bit colour down to 8 bits
            rng = np.random.default_rng(7)
            return (rng.random((20, 24, 3)) * 255).astype(np.uint8) / 255.0, None
        if im.mode in ("I;16", "I;16B", "I"):
            return np.asarray(im, dtype=np.float64) / 65535, None
        if im.mode == "P" and "transparency" in im.info:
            im = im.convert("RGBA")
        elif im.mode in ("P", "CMYK"):
            im = im.convert("RGB")
        a = np.asarray(im, dtype=np.float64) / 255
    if im.mode in ("LA", "RGBA"):
        return (a[..., 0] if im.mode == "LA" else a[..., :3]), a[..., -1]
    return a, None


@pytest.mark.parametrize(
    "name",
    [
        "one.png",
        "g16.png",
        "i16.tif",
        "rgb16.png",
        "pal.png",
        "palt.png",
        "cmyk.jpg",
        "cmyk.tif",
        "la.png",
    ],
)
def test_odd_pictures_are_filtered_like_their_pixels(name, files, tmp_path):
    out = tmp_path / "x.npy"
    done = run_main(["apply", files[name], "-k", "blur", "-o", out])
    assert done.code == 0 and done.err == "", done.err  # no warning, no noise
    got = np.load(out)
    x, alpha = _reference(files[name])
    planes = x[..., None] if x.ndim == 2 else x
    want = np.stack(
        [ndi.correlate(planes[..., c], BLUR, mode="constant") for c in range(planes.shape[2])], -1
    )
    if alpha is not None:
        want = np.concatenate([want, alpha[..., None]], axis=-1)
    np.testing.assert_allclose(got.reshape(want.shape), want, atol=1e-5)


def test_a_picture_smaller_than_the_kernel_takes_same_padding(files, tmp_path):
    done = run_main(["apply", files["one.png"], "-k", "gaussian:5", "-o", tmp_path / "x.npy"])
    assert done.code == 0, done.err
    from convtool.kernels import parse_kernel

    x, _ = _reference(files["one.png"])
    np.testing.assert_allclose(
        np.load(tmp_path / "x.npy")[0, 0], x[0, 0] * parse_kernel("gaussian:5")[2, 2], rtol=1e-6
    )
    fit = run_main(["fit", files["one.png"], files["one.png"], "--json"])
    assert fit.code == 0, fit.err
    assert json.loads(fit.out)["kernel"] == [[pytest.approx(1.0)]]


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
    assert run_program([*fit, warm / "loss.csv"]).returncode == 0
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


# ----------------------------------------------------------------- Ctrl-C


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("batch")
    rng = np.random.default_rng(11)
    paths = []
    for i in range(40):
        paths.append(folder / f"p{i:02d}.png")
        Image.fromarray((rng.random((480, 480, 3)) * 255).astype(np.uint8)).save(paths[-1])
    return paths


@pytest.mark.parametrize("jobs", ["1", "2"])
@pytest.mark.parametrize("whom", ["group", "process"])
def test_ctrl_c_mid_batch_keeps_whole_files_and_says_how_far(jobs, whom, batch, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    cmd = [
        sys.executable,
        "-m",
        "convtool",
        "apply",
        *batch,
        "-k",
        "gaussian:9",
        "-o",
        out,
        "--jobs",
        jobs,
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if len([n for n in os.listdir(out) if not n.startswith(".")]) >= 3:
            break
        time.sleep(0.005)
    # a terminal's Ctrl-C reaches the whole group; `kill -INT` only the process
    (os.killpg if whom == "group" else os.kill)(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    err = err.decode()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    m = re.fullmatch(
        r"convtool: interrupted after (\d+) of 40 picture\(s\); (\d+) output\(s\) written, each "
        r"whole; no partial file left",
        err.strip(),
    )
    assert m, err
    done, written = map(int, m.groups())
    names = sorted(os.listdir(out))
    assert all(not n.startswith(".") for n in names), names  # no temporary file
    # every whole file is counted, also one finished just as the stop arrived
    assert 3 <= done == written == len(names) < 40, (err, names)
    want = {p.stem for p in batch}
    for name in names:
        assert name.endswith(".gaussian_9.png") and name.split(".")[0] in want
        with Image.open(out / name) as im:
            im.load()  # decodes fully: a whole file
            assert im.size == (480, 480)


# ----------------------------------------------------------------- numbers


def test_apply_warns_when_the_output_holds_nan_or_infinity(files, tmp_path):
    nan = run_main(
        ["apply", files["nan.npy"], "-k", "gaussian:5", "-o", tmp_path / "n.npy", "--json"]
    )
    assert nan.code == 0
    got = np.load(tmp_path / "n.npy")
    assert np.isnan(got).sum() == 25 and np.isnan(got[3:8, 5:10]).all()  # the 5x5 window's reach
    assert json.loads(nan.out)["nonfinite"] == 25
    assert nan.err.strip() == (
        f"convtool: warning: {tmp_path / 'n.npy'}: 25 values of the result are NaN or infinite "
        "(kept as they are); they come from NaN or infinity in the input, or from values beyond "
        "float32's range"
    )
    both = run_main(["apply", files["nan.npy"], files["inf.npy"], files["grey.npy"], "-k", "blur",
                     "-o", tmp_path, "--format", "png", "--map", "normalize"])  # fmt: skip
    assert both.code == 0
    assert "warning: 2 of 3 outputs hold NaN or infinite values (NaN written as 0" in both.err
    with Image.open(tmp_path / "nan.blur.png") as im:
        assert np.asarray(im)[5, 7].max() == 0  # NaN written as 0
    # an overflow in float32 is named too; finite results say nothing
    big = run_main(["apply", files["ok.png"], "-k", "3e38,3e38", "-o", tmp_path / "o.npy"])
    assert (
        big.code == 0
        and "NaN or infinite" in big.err
        and np.isinf(np.load(tmp_path / "o.npy")).any()
    )
    quiet = run_main(["apply", files["grey.npy"], "-k", "blur", "-o", tmp_path / "q.npy", "--json"])
    assert quiet.err == "" and json.loads(quiet.out)["nonfinite"] == 0


def test_pipeline_warns_when_a_map_holds_nan_or_infinity(files, tmp_path):
    tail = (
        "(kept in .npy files, not in pictures); they come from NaN or infinity in the input, "
        "or from values beyond float32's range"
    )
    st = tmp_path / "st"
    nan = run_main(["pipeline", files["nan.npy"], "-k", "gaussian:5", "--save-stages", st,
                    "-o", tmp_path / "m.npy", "--json"])  # fmt: skip
    assert nan.code == 0, nan.err
    record = json.loads(nan.out)
    stages = [
        np.load(st / f"0{i}-{kind}.npy") for i, kind in ((1, "conv"), (2, "relu"), (3, "maxpool"))
    ]
    counts = [int(np.count_nonzero(~np.isfinite(m))) for m in stages]
    assert counts[0] == 25 and counts[2] > 0  # the 5x5 window's reach, then pooled
    assert record["source_nonfinite"] == 1 and [s["nonfinite"] for s in record["stages"]] == counts
    assert record["nonfinite"] == counts[2] == record["outputs"][0]["nonfinite"]
    assert (
        nan.err.strip()
        == f"convtool: warning: {files['nan.npy']}: 1 value of the input is NaN or infinite {tail}"
    )
    # an overflow in float32: named at the stage where it happens
    big = run_main(["pipeline", files["grey.npy"], files["inf.npy"], files["ok.png"], "--stage",
                    "conv:3e38,3e38,p=same -> relu", "--json"])  # fmt: skip
    assert big.code == 0, big.err
    stages = [r["stages"] for r in map(json.loads, big.out.splitlines())]
    assert stages[0][0]["nonfinite"] > 0 and stages[2][0]["nonfinite"] > 0
    assert big.err.strip() == (
        "convtool: warning: 3 of 3 pictures have NaN or infinite values in their maps "
        f"{tail.split(';')[0]}, {stages[0][0]['nonfinite']:,} values in stage 1 (conv) of "
        f"{files['grey.npy']} first;{tail.split(';')[1]}"
    )
    # finite maps say nothing
    quiet = run_main(["pipeline", files["grey.npy"], "-k", "blur", "--json"])
    assert quiet.err == "" and json.loads(quiet.out)["nonfinite"] == 0


def test_fit_stops_on_nan_infinity_and_divergence(tmp_path):
    from convtool.fit import DivergenceError, FitError, fit_kernel

    rng = np.random.default_rng(5)
    x = rng.random((20, 20))
    y = ndi.correlate(x, BLUR)[1:-1, 1:-1]
    for bad in (np.nan, np.inf, -np.inf):
        for which in ("input", "target"):
            xx, yy = x.copy(), y.copy()
            (xx if which == "input" else yy)[3, 4] = bad
            with pytest.raises(FitError, match=f"the {which} holds NaN or infinite values"):
                fit_kernel(xx, yy)
    with pytest.raises(DivergenceError, match="diverge"):
        fit_kernel(x, y, method="gd", lr=100.0)
    with pytest.raises(DivergenceError, match=r"overflowed: cg diverged.*'lstsq'"):
        fit_kernel(x * 1e100, y, method="cg", seed=1)
    for method in ("cg", "gd", "lstsq"):  # sums beyond float64: a FitError, not numpy's
        with pytest.raises(FitError, match="overflow float64"):
            fit_kernel(x * 1e200, y, method=method, seed=1)
    np.testing.assert_allclose(
        fit_kernel(x * 1e100, y, method="lstsq").kernel * 1e100, BLUR, rtol=1e-6
    )


def test_a_batch_gives_the_same_bytes_whatever_jobs_is(batch, tmp_path):
    # pictures of two sizes, and an engine threshold between them: the big ones run on
    # the JIT, the small on the compiled core, whichever process takes them
    small = tmp_path / "small"
    small.mkdir()
    inputs = []
    for i, path in enumerate(batch[:8]):
        if i % 2:
            with Image.open(path) as im:
                im.crop((0, 0, 96, 80)).save(small / path.name)
            inputs.append(small / path.name)
        else:
            inputs.append(path)
    driver = (
        "import sys\nimport convtool.batch.apply_task as jobs\n"
        "jobs.LARGE_WORK = 3 * 480 * 480 * 3 * 25 / 2  # between the two sizes' work\n"
        "from convtool.cli import main\nmain()\n"
    )
    outputs = {}
    for jobs in ("1", "2"):
        out = tmp_path / f"out{jobs}"
        out.mkdir()
        for fmt in ("npy", "png"):
            done = subprocess.run(
                [sys.executable, "-c", driver, "apply", *inputs, "-k", "gaussian:5,0.7", "-k",
                 "3x3: 0.1 -1.3 0.7 2.1 -0.4 0.33 -0.9 1.7 0.2", "-o", out, "--format", fmt,
                 "--jobs", jobs, "--json"],
                capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            outputs[jobs, fmt] = done.stdout.replace(f"out{jobs}", "out")
        outputs[jobs] = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    assert len(outputs["1"]) == 8 * 2 * 2
    assert outputs["1"] == outputs["2"]  # byte for byte
    assert outputs["1", "npy"] == outputs["2", "npy"] and outputs["1", "png"] == outputs["2", "png"]


def test_fit_gives_the_same_kernel_for_the_same_seed(files, tmp_path):
    for method in ("cg", "gd"):
        args = ["fit", files["grey.png"], files["target.npy"], "--method", method, "--json"]
        first = json.loads(run_main([*args, "--seed", "7"]).out)
        second = json.loads(run_main([*args, "--seed", "7"]).out)
        assert first["kernel"] == second["kernel"] and first["iterations"] == second["iterations"]
        unseeded = json.loads(run_main(args).out)  # the seed it drew is reported, and repeats it
        again = json.loads(run_main([*args, "--seed", str(unseeded["seed"])]).out)
        assert again["kernel"] == unseeded["kernel"] and again["loss"] == unseeded["loss"]
    for n in (1, 2):
        done = run_main(
            [
                "fit",
                files["grey.npy"],
                files["target.npy"],
                "--seed",
                "3",
                "-o",
                tmp_path / f"k{n}.npy",
            ]
        )
        assert done.code == 0, done.err
    assert (tmp_path / "k1.npy").read_bytes() == (tmp_path / "k2.npy").read_bytes()
