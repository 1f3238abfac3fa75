"""Fuzzing read_image: random and mutated bytes are read or refused in one line."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage

from convtool.imaging import (
    ImageReadError,
    read_image,
)
from convtool.imaging.write import _encode_tiff
from tests.imaging.pictures import (
    ADAM7,
    RNG,
    full,
    ints,
    make_png,
    png16,
    png_bytes,
)

FUZZ = settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])


PREFIXES = [
    b"",
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"GIF89a",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
    b"RIFF",
    b"\x93NUMPY",
]


def read_or_refuse(data: bytes) -> None:
    """read_image either returns a well-formed Image or raises ImageReadError."""
    try:
        image = read_image(io.BytesIO(data))
    except ImageReadError as e:
        assert "\n" not in str(e)
        return
    assert image.data.dtype == np.float32 and image.data.ndim in (2, 3)
    assert image.alpha is None or image.alpha.shape == image.data.shape[:2]


def fix_crcs(data: bytes) -> bytes:
    """Recompute PNG chunk CRCs so that mutations reach the decoder."""
    out, pos = bytearray(data), 8
    while pos + 12 <= len(out):
        (length,) = struct.unpack_from(">I", out, pos)
        end = pos + 8 + length
        if end + 4 > len(out):
            break
        out[end : end + 4] = struct.pack(">I", zlib.crc32(bytes(out[pos + 4 : end])))
        pos = end + 4
    return bytes(out)


def mutate(base: bytes, edits, cut) -> bytes:
    out = bytearray(base)
    for where, value in edits:
        out[where % len(out)] = value
    return bytes(out[: max(1, len(out) - cut)])


EDITS = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8)


SMALL_PNG = png_bytes(PILImage.fromarray(ints((6, 5, 4)).astype(np.uint8)))


SMALL_PNG16 = png16(ints((5, 6, 3), 65535))


def _bytes(write, *args, **kwargs) -> bytes:
    buf = io.BytesIO()
    write(buf, *args, **kwargs)
    return buf.getvalue()


SMALL_TIFF = _bytes(_encode_tiff, RNG.normal(size=(4, 5, 3)).astype(np.float32))


SMALL_NPY = _bytes(np.save, np.zeros((3, 4, 3), np.float32))


SMALL_JPEG = _bytes(lambda f: PILImage.fromarray(ints((8, 8, 3)).astype(np.uint8)).save(f, "JPEG"))


@pytest.mark.filterwarnings("ignore:.*(Tag data|EXIF|Truncated File):UserWarning")
@FUZZ
@given(prefix=st.sampled_from(PREFIXES), body=st.binary(max_size=600))
def test_fuzz_random_bytes(prefix, body):
    read_or_refuse(prefix + body)


@pytest.mark.filterwarnings("ignore:.*(Tag data|EXIF|Truncated File):UserWarning")
@FUZZ
@given(
    base=st.sampled_from([SMALL_PNG, SMALL_PNG16, SMALL_TIFF, SMALL_NPY, SMALL_JPEG]),
    edits=EDITS,
    cut=st.integers(0, 40),
    crc=st.booleans(),
)
def test_fuzz_mutated_files(base, edits, cut, crc):
    data = mutate(base, edits, cut)
    read_or_refuse(fix_crcs(data) if crc and base.startswith(b"\x89PNG") else data)


@FUZZ
@given(
    width=st.integers(1, 9),
    height=st.integers(1, 9),
    ctype=st.sampled_from([2, 4, 6]),
    interlace=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
    valid_filters=st.booleans(),
)
def test_fuzz_16bit_colour_scanlines_against_pillow(
    width, height, ctype, interlace, seed, valid_filters
):
    """Random filtered scanlines: our decoder's high bytes must match Pillow's own 8-bit reading."""
    channels = {2: 3, 4: 2, 6: 4}[ctype]
    passes = [(height, width)]
    if interlace:
        passes = [(-(-(height - y0) // dy), -(-(width - x0) // dx)) for x0, y0, dx, dy in ADAM7]
    rng = np.random.default_rng(seed)
    lines = []
    for rows, cols in passes:
        if rows > 0 and cols > 0:
            line = rng.integers(0, 256, (rows, 1 + 2 * channels * cols), dtype=np.uint8)
            if valid_filters:
                line[:, 0] %= 5
            lines.append(line.tobytes())
    data = make_png(width, height, 16, ctype, b"".join(lines), interlace=int(interlace))
    try:
        ours = read_image(io.BytesIO(data))
    except ImageReadError:
        assert not valid_filters
        return
    with PILImage.open(io.BytesIO(data)) as im:
        theirs = np.asarray(im)
    high = (np.rint(full(ours) * 65535).astype(np.uint16) >> 8).astype(np.uint8)
    if ctype == 4:  # Pillow reads 16-bit grey+alpha as 8-bit RGBA
        high = high[:, :, [0, 0, 0, 1]]
    assert np.array_equal(high, theirs)
