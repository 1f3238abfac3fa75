"""Tests for convtool.imaging.formats: extensions and format names."""

from __future__ import annotations

import pytest

from convtool.imaging.formats import (
    READ_EXTENSIONS,
    WRITE_EXTENSIONS,
    extension_for,
    format_for,
    format_named,
    write_format,
    written_as,
)


def test_extension_sets_and_format_for():
    assert ".gif" in READ_EXTENSIONS and ".gif" not in WRITE_EXTENSIONS
    assert set(WRITE_EXTENSIONS) <= set(READ_EXTENSIONS)
    assert format_for("a/b.PNG") == "png"
    assert format_for("x.jpeg") == format_for("x.JPG") == "jpeg"
    assert format_for("x.tif", writing=True) == "tiff"
    assert format_for("x.gif") == "gif"
    with pytest.raises(ValueError, match=r"x\.gif: extension '\.gif'; can write"):
        format_for("x.gif", writing=True)
    with pytest.raises(ValueError, match=r"extension '\.xyz'"):
        format_for("x.xyz")
    with pytest.raises(ValueError, match="no extension"):
        format_for("noext")
    with pytest.raises(ValueError, match="give the format"):
        format_for("-")


def test_format_named_is_format_for_of_the_name_as_an_extension():
    for name in ("png", ".png", "PNG", "jpg", ".JPEG", "tif", "tiff", "bmp", "webp", "npy"):
        assert format_named(name) == format_for(f"x.{name.lstrip('.')}", writing=True)
    assert format_named("jpg") == "jpeg" and format_named(".TIF") == "tiff"
    with pytest.raises(ValueError, match=r"output\.gif: extension '\.gif'; can write"):
        format_named("gif")
    with pytest.raises(ValueError, match=r"extension '\.psd'"):
        format_named("psd")


def test_write_format_takes_names_and_aliases():
    assert [write_format(f) for f in ("png", "JPG", ".tif", "jpeg", "npy")] == [
        "png",
        "jpeg",
        "tiff",
        "jpeg",
        "npy",
    ]
    for fmt in ("gif", "psd", "x.png"):
        with pytest.raises(ValueError, match=rf"unknown format '{fmt}'; can write bmp, jpeg, npy"):
            write_format(fmt)


def test_extension_for_and_written_as_invert_format_for():
    for ext in WRITE_EXTENSIONS:
        assert format_for("x" + extension_for(format_for("x" + ext))) == format_for("x" + ext)
    assert extension_for("JPEG") == ".jpg" and extension_for("tiff") == ".tif"
    assert extension_for("png") == ".png" and extension_for("gif") == ".gif"
    with pytest.raises(ValueError, match="unknown format 'psd'"):
        extension_for("psd")
    assert (
        written_as("GIF") == "png" and written_as("TIFF") == "tiff" and written_as("npy") == "npy"
    )
