"""Tests for convtool.imaging.arrays: .npy pictures, their errors, save_array and load_array."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image as PILImage

from convtool.imaging import (
    ImageReadError,
    ImageWriteError,
    load_array,
    read_image,
    save_array,
)
from tests.imaging.pictures import (
    RNG,
    png_bytes,
)


def test_npy_shapes_dtypes_and_non_finite(tmp_path):
    cases = {
        "hw.npy": np.array([[1.5, -2.0], [np.nan, np.inf]]),
        "hw1.npy": np.arange(6, dtype=np.int16).reshape(2, 3, 1),
        "hw3.npy": RNG.normal(size=(2, 3, 3)).astype(">f8"),
        "fortran.npy": np.asfortranarray(RNG.normal(size=(3, 4))),
        "bool.npy": np.eye(3, dtype=bool),
    }
    for name, arr in cases.items():
        np.save(tmp_path / name, arr)
        image = read_image(tmp_path / name)
        assert image.format == "NPY" and image.bit_depth == 32 and image.data.dtype == np.float32
        assert image.data.flags.c_contiguous and image.data.flags.writeable
        expected = arr[:, :, 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr
        assert np.array_equal(image.data, expected.astype(np.float32), equal_nan=True), name
    np.save(tmp_path / "rgba.npy", np.dstack([np.zeros((2, 2, 3)), np.full((2, 2), 7.0)]))
    image = read_image(tmp_path / "rgba.npy")
    assert image.mode == "RGBA" and image.alpha.tolist() == [[7, 7], [7, 7]]


@pytest.mark.parametrize(
    ("arr", "message"),
    [
        (np.zeros((0, 0)), "empty"),
        (np.zeros((3, 0, 3)), "empty"),
        (np.zeros((2, 2), complex), "dtype complex128 is not supported"),
        (np.zeros(5), r"shape \(5,\) is not \(H, W\)"),
        (np.zeros((1, 2, 3, 4)), "is not"),
        (np.zeros((2, 2, 5)), "C in 1..4"),
        (np.zeros((3, 16, 16)), "np.moveaxis"),
        (np.array(["a"]), "dtype <U1"),
    ],
)
def test_npy_errors(tmp_path, arr, message):
    np.save(tmp_path / "a.npy", arr)
    with pytest.raises(ImageReadError, match=message):
        read_image(tmp_path / "a.npy")


def test_npy_object_truncated_and_fake(tmp_path):
    np.save(tmp_path / "o.npy", np.array([1, None], dtype=object), allow_pickle=True)
    with pytest.raises(ImageReadError, match="dtype object"):
        read_image(tmp_path / "o.npy")
    buf = io.BytesIO()
    np.save(buf, np.zeros((50, 50)))
    (tmp_path / "t.npy").write_bytes(buf.getvalue()[:-8])
    with pytest.raises(ImageReadError, match=r"truncated \.npy file"):
        read_image(tmp_path / "t.npy")
    (tmp_path / "f.npy").write_bytes(png_bytes(PILImage.new("L", (2, 2))))
    with pytest.raises(ImageReadError, match=r"f\.npy: not a \.npy file"):
        read_image(tmp_path / "f.npy")
    (tmp_path / "h.npy").write_bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': oops}\n")
    with pytest.raises(ImageReadError, match=r"bad \.npy header"):
        read_image(tmp_path / "h.npy")


def test_huge_declared_npy_refused(tmp_path):
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 100000), }"
    header = header.ljust(118) + "\n"
    (tmp_path / "bomb.npy").write_bytes(
        b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode()
    )
    with pytest.raises(ImageReadError, match="100000x100000 is 10,000,000,000 pixels"):
        read_image(tmp_path / "bomb.npy")
    with pytest.raises(ImageReadError, match=r"truncated \.npy"):
        read_image(tmp_path / "bomb.npy", max_pixels=None)


def test_save_and_load_array(tmp_path):
    k = RNG.normal(size=(2, 3, 3, 3))
    save_array(tmp_path / "k.npy", k)
    assert np.array_equal(load_array(tmp_path / "k.npy"), k)
    with pytest.raises(ImageWriteError, match="exists"):
        save_array(tmp_path / "k.npy", k)
    with pytest.raises(ImageWriteError, match="dtype complex128 is not saved"):
        save_array(tmp_path / "c.npy", np.zeros(2, complex))
    np.save(tmp_path / "o.npy", np.array([{}], dtype=object), allow_pickle=True)
    with pytest.raises(ImageReadError, match="dtype object"):
        load_array(tmp_path / "o.npy")
