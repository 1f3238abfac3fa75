"""Tests for convtool.imaging.atomic: whole files or none, overwrite, permissions, folders."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from convtool import vocab
from convtool._shared import message
from convtool.imaging import (
    ImageWriteError,
    atomic_write,
    atomic_write_bytes,
    read_image,
    write_image,
)
from convtool.imaging.atomic import exists_error, temporary_name, temporary_target


def test_overwrite_refused_then_allowed(tmp_path):
    target = tmp_path / "o.png"
    target.write_bytes(b"old")
    with pytest.raises(ImageWriteError, match=r"o\.png exists; pass overwrite=True to replace it"):
        write_image(target, np.zeros((2, 2)))
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["o.png"]
    write_image(target, np.ones((2, 2)), overwrite=True)
    assert read_image(target).data.tolist() == [[1, 1], [1, 1]]
    assert os.listdir(tmp_path) == ["o.png"]


def test_failed_rename_leaves_old_target_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "t.npy"
    target.write_bytes(b"precious")

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(ImageWriteError, match=r"t\.npy: Permission denied"):
        write_image(target, np.zeros((2, 2)), overwrite=True)
    assert target.read_bytes() == b"precious" and os.listdir(tmp_path) == ["t.npy"]


def test_target_appearing_during_write_is_not_clobbered(tmp_path):
    target = tmp_path / "race.csv"
    with pytest.raises(ImageWriteError, match="exists"), atomic_write(target) as f:
        f.write(b"mine")
        target.write_bytes(b"theirs")
    assert target.read_bytes() == b"theirs" and os.listdir(tmp_path) == ["race.csv"]


def test_no_hard_links_falls_back_to_replace(tmp_path, monkeypatch):
    def no_link(src, dst):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    atomic_write_bytes(tmp_path / "a.txt", b"hello")
    assert (tmp_path / "a.txt").read_bytes() == b"hello" and os.listdir(tmp_path) == ["a.txt"]
    with pytest.raises(ImageWriteError, match="exists"):
        atomic_write_bytes(tmp_path / "a.txt", b"again")


def test_error_inside_atomic_block_passes_through(tmp_path):
    with pytest.raises(KeyError), atomic_write(tmp_path / "k.json") as f:
        f.write(b"{")
        raise KeyError("x")
    assert os.listdir(tmp_path) == []


def test_permissions_follow_umask_and_are_kept_on_overwrite(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "new.txt", b"x")
        assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o644
        (tmp_path / "private.txt").write_bytes(b"secret")
        os.chmod(tmp_path / "private.txt", 0o600)
        atomic_write_bytes(tmp_path / "private.txt", b"still secret", overwrite=True)
        assert stat.S_IMODE((tmp_path / "private.txt").stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_write_errors_name_the_folder(tmp_path):
    with pytest.raises(ImageWriteError, match=r"the folder .*missing does not exist"):
        write_image(tmp_path / "missing" / "x.png", np.zeros((2, 2)))
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(ImageWriteError, match=r"the folder .*file is not a folder"):
        write_image(tmp_path / "file" / "x.png", np.zeros((2, 2)))
    (tmp_path / "d.png").mkdir()
    with pytest.raises(ImageWriteError, match=r"d\.png: it is a directory"):
        write_image(tmp_path / "d.png", np.zeros((2, 2)), overwrite=True)


def test_read_only_folder_message_without_chmod(tmp_path, monkeypatch):
    """Root ignores permission bits, so fake the refusal to check the message."""
    real_open = os.open

    def refuse(path, flags, mode=0o777, **kwargs):
        if str(path).endswith(".tmp"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, mode, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(
        ImageWriteError, match=r"x\.png: cannot create a file in .* \(Permission denied\)"
    ):
        write_image(tmp_path / "x.png", np.zeros((2, 2)))
    assert os.listdir(tmp_path) == []


def test_temporary_names_are_recognised_and_removed(tmp_path, monkeypatch):
    long = "n" * 250 + ".png"
    for name in ("edges.png", "a.b.c.tif", long):
        temp = temporary_name(name)
        assert temp.startswith("." + name[:200] + ".") and temp.endswith(".tmp")
        assert temporary_target(temp) == name[:200]
    for entry in ("edges.png", ".edges.png.tmp", ".edges.png.0123ABCD.tmp", ".x.0123abc.tmp"):
        assert temporary_target(entry) is None
    seen = []
    real_open = os.open

    def spy(path, flags, mode=0o777, **kwargs):
        seen.append(os.path.basename(path))
        return real_open(path, flags, mode, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    atomic_write_bytes(tmp_path / "made.txt", b"x")
    assert temporary_target(seen[0]) == "made.txt" and os.listdir(tmp_path) == ["made.txt"]


def test_exists_error_is_the_refusal_atomic_write_gives(tmp_path):
    (tmp_path / "o.png").write_bytes(b"old")
    with pytest.raises(ImageWriteError) as e:
        atomic_write_bytes(tmp_path / "o.png", b"new")
    assert str(e.value) == str(exists_error(str(tmp_path / "o.png")))
    # the library names the parameter; the command line says it as its flag
    assert str(exists_error("o.png")) == "o.png exists; pass overwrite=True to replace it"
    said = message(exists_error("o.png"), vocab.as_flag)
    assert said == "o.png exists; pass --overwrite to replace it"
