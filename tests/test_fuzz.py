"""Fuzzing the two parsers that meet hostile input: nothing but the documented errors.

- :func:`convtool.kernels.parse_kernel_spec` raises only :class:`KernelSpecError`
  (a ValueError), on any text and on valid specs mutated, inline or in a file; what it
  accepts is a finite, non-empty kernel within the size limits.
- :func:`convtool.io.read_image` raises only :class:`ImageReadError`, on any bytes and on
  valid PNG, JPEG, TIFF, BMP, GIF, WebP and .npy files mutated; its message is one line
  naming the file; what it accepts is a float32 picture as documented.

Neither prints anything (warnings, log records, a decoder's own complaints) on the way.
Each property runs a bounded number of examples, a few seconds in all; ``tests/fuzz/``
holds coverage-guided atheris versions for longer runs.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import tempfile
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from convtool import imaging as cio
from convtool.kernels import (
    MAX_SIDE,
    MAX_WEIGHTS,
    KernelSpecError,
    list_kernels,
    parse_kernel_spec,
)

FAST = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# ----------------------------------------------------------------- kernel specs

VALID_SPECS = [
    "sobel_x",
    "Sobel X",
    "gaussian:7,1.5",
    "gaussian:5",
    "box:5x3",
    "box:4,2",
    "unsharp:5,1,2",
    "motion:9,30",
    "motion:9@90",
    "sobel_x@90",
    "sobel_x:90",
    "kirsch@45",
    "0,-1,0; -1,5,-1; 0,-1,0",
    "1 2 1 / 2 4 2 / 1 2 1",
    "3x3: 0,-1,0 -1,5,-1 0,-1,0",
    "2x1: 1 -1",
    "5: " + " ".join(["1"] * 25),
    "1e-3, 2.5e2; -0.0, .5",
    *[info.name for info in list_kernels()],
]
TOKENS = [
    *"0123456789,;/ :@x.-+eE\n\t",
    "nan",
    "inf",
    "-inf",
    "1e308",
    "1e-320",
    "999999999",
    "0x10",
    "@",
    "~",
    "\x00",
    "é",
    "∞",
    "gaussian:",
    "box:0",
    "@45",
    ":90",
    "3x3:",
]


@st.composite
def mutated_specs(draw) -> str:
    text = list(draw(st.sampled_from(VALID_SPECS)))
    for _ in range(draw(st.integers(1, 5))):
        pos = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["replace", "insert", "delete", "token"]))
        if kind == "replace" and text:
            text[min(pos, len(text) - 1)] = draw(st.sampled_from(TOKENS))
        elif kind == "delete" and text:
            del text[min(pos, len(text) - 1) : pos + draw(st.integers(1, 4))]
        else:
            text.insert(pos, draw(st.sampled_from(TOKENS) if kind == "token" else st.characters()))
    return "".join(text)


def check_spec(spec: str) -> None:
    """Only KernelSpecError, one line; anything accepted is a usable kernel; no warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning would be printed on stderr: not allowed
        try:
            k = parse_kernel_spec(spec)
        except KernelSpecError as e:
            assert str(e) and str(e).isprintable(), repr(str(e))  # one line, no control codes
            return
    w = k.weights
    assert w.dtype == np.float64 and w.ndim in (2, 4) and w.size > 0
    assert w.shape[-1] <= MAX_SIDE and w.shape[-2] <= MAX_SIDE and w.size <= MAX_WEIGHTS
    assert np.isfinite(w).all(), spec
    assert k.name and "\n" not in k.slug


@FAST
@given(st.text(max_size=80))
def test_kernel_specs_from_any_text(spec):
    check_spec(spec)


@FAST
@given(mutated_specs())
def test_kernel_specs_mutated_from_valid_ones(spec):
    check_spec(spec)


def test_the_valid_specs_are_valid():  # so that the mutations start from real kernels
    for spec in VALID_SPECS:
        assert parse_kernel_spec(spec).weights.size


@pytest.fixture(scope="module")
def kernel_file(tmp_path_factory):
    return tmp_path_factory.mktemp("kernels")


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


KERNEL_FILES = {
    ".txt": b"0 -1 0\n-1 5 -1\n0 -1 0\n",
    ".csv": b"# a comment\n1,2,1\n2,4,2\n1,2,1\n",
    ".json": b'{"kernel": [[[[1, 0], [0, -1]]], [[[0, 1], [-1, 0]]]], "bias": [0.5, -0.5]}',
    ".npy": _npy_bytes(np.arange(12, dtype=np.float32).reshape(3, 4)),
}


@st.composite
def mutated_bytes(draw, samples: list[bytes]) -> bytes:
    """A sample with a few bytes changed, inserted, deleted or cut, headers most often."""
    data = bytearray(draw(st.sampled_from(samples)))
    for _ in range(draw(st.integers(1, 6))):
        n = max(len(data) - 1, 0)
        pos = draw(st.one_of(st.integers(0, min(n, 63)), st.integers(0, n)))
        kind = draw(st.sampled_from(["set", "insert", "delete", "cut", "word"]))
        if kind == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 64))]
        elif kind == "cut":
            del data[pos:]
        else:  # a 32-bit field set to an extreme: sizes, offsets, counts
            words = [b"\0\0\0\0", b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x00\x01\x00\x00"]
            data[pos : pos + 4] = draw(st.sampled_from(words))
    return bytes(data)


@FAST
@given(st.sampled_from(sorted(KERNEL_FILES)), st.data())
def test_kernel_files_mutated(kernel_file, suffix, data):
    raw = data.draw(mutated_bytes([KERNEL_FILES[suffix]]))
    path = kernel_file / f"k{suffix}"
    path.write_bytes(raw)
    check_spec(f"@{path}")


# ----------------------------------------------------------------- pictures


def _picture_samples() -> dict[str, bytes]:
    rng = np.random.default_rng(1)
    rgb = (rng.random((9, 11, 3)) * 255).astype(np.uint8)
    grey16 = (rng.random((9, 11)) * 65535).astype(np.uint16)
    samples = {}

    def pil(name, array, fmt, mode=None, **options):
        buffer = io.BytesIO()
        picture = Image.fromarray(array)
        (picture.convert(mode) if mode else picture).save(buffer, format=fmt, **options)
        samples[name] = buffer.getvalue()

    pil("png", rgb, "PNG")
    pil("png-interlaced", rgb, "PNG", interlace=1)
    pil("png-palette", rgb, "PNG", "P", transparency=2)
    pil("png-grey16", grey16, "PNG")
    pil("jpeg", rgb, "JPEG")
    pil("jpeg-progressive", rgb, "JPEG", progressive=True)
    pil("jpeg-cmyk", rgb, "JPEG", "CMYK")
    pil("tiff", rgb, "TIFF")
    pil("tiff-deflate", rgb, "TIFF", compression="tiff_adobe_deflate")
    pil("bmp", rgb, "BMP")
    pil("gif", rgb, "GIF")
    pil("webp", rgb, "WEBP", lossless=True)
    with tempfile.TemporaryDirectory() as folder:  # convtool's own writers, with alpha
        for name, depth, ext in (
            ("png16", 16, "png"),
            ("tiff16", 16, "tif"),
            ("tiff32", 32, "tif"),
        ):
            path = os.path.join(folder, f"{name}.{ext}")
            cio.write_image(path, rgb / 255, alpha=rng.random((9, 11)), bit_depth=depth)
            with open(path, "rb") as f:
                samples[name] = f.read()
    samples["npy"] = _npy_bytes(rng.random((9, 11, 3)).astype(np.float32))
    samples["npy-int"] = _npy_bytes((rng.random((9, 11, 2)) * 9).astype(np.int16))
    return samples


PICTURES = _picture_samples()
LIMIT = 1_000_000  # pixels: a mutated header may declare any size; keep decoding cheap


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def silent(capfd):
    """Nothing may reach the user: no warning, no log record, no byte on stdout or stderr."""
    handler = _Records()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:  # checked whether the call raised or not
        root.removeHandler(handler)
        assert not caught, [str(w.message) for w in caught]
        assert not handler.records, [r.getMessage() for r in handler.records]
        printed = capfd.readouterr()
        assert printed.out == "" and printed.err == "", printed


def check_picture(raw: bytes, capfd) -> None:
    """Only ImageReadError, one line naming the file; an accepted picture as documented."""
    source = io.BytesIO(raw)
    source.name = "fuzzed.bin"
    try:
        with silent(capfd):
            image = cio.read_image(source, max_pixels=LIMIT)
    except cio.ImageReadError as e:
        text = str(e)
        assert text.startswith("cannot read fuzzed.bin: ") and "\n" not in text, repr(text)
    else:
        data = image.data
        assert data.dtype == np.float32 and data.flags.c_contiguous
        assert data.ndim == 2 or (data.ndim == 3 and data.shape[2] == 3)
        assert 0 < data.shape[0] * data.shape[1] <= LIMIT
        assert image.bit_depth in (8, 16, 32) and image.format in (
            "PNG", "JPEG", "TIFF", "BMP", "WEBP", "GIF", "NPY",
        )  # fmt: skip
        if image.alpha is not None:
            assert image.alpha.shape == data.shape[:2] and image.alpha.dtype == np.float32
        if image.bit_depth != 32:  # scaled integers: in [0, 1]
            assert math.isfinite(float(data.min())) and 0 <= data.min() <= data.max() <= 1


@FAST
@given(st.binary(max_size=512))
def test_pictures_from_any_bytes(capfd, raw):
    check_picture(raw, capfd)


@FAST
@given(st.binary(max_size=256))
def test_pictures_from_any_bytes_after_a_real_header(capfd, raw):
    for magic in (
        b"\x89PNG\r\n\x1a\n",
        b"\xff\xd8\xff",
        b"II*\x00",
        b"BM",
        b"GIF89a",
        b"\x93NUMPY",
    ):
        check_picture(magic + raw, capfd)


@FAST
@given(mutated_bytes(list(PICTURES.values())))
def test_pictures_mutated_from_valid_ones(capfd, raw):
    check_picture(raw, capfd)


@pytest.mark.parametrize("name", sorted(PICTURES))
def test_the_samples_are_valid(name, capfd):  # so that the mutations start from real files
    image = cio.read_image(io.BytesIO(PICTURES[name]))
    assert image.data.shape[:2] == (9, 11)
    assert capfd.readouterr().err == ""
