"""agent/durable.py: state files are replaced whole or not at all."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from agent import durable


def test_replaces_content_and_leaves_no_temporary(tmp_path: Path):
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    durable.write_durably(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    target = tmp_path / "state.json"
    target.write_bytes(b"old")

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        durable.write_durably(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_directory_is_fsynced_after_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    order: list[str] = []
    real_replace, real_fsync = os.replace, os.fsync

    def replace(src, dst):
        order.append("rename")
        real_replace(src, dst)

    def fsync(fd: int) -> None:
        order.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "fsync", fsync)
    durable.write_durably(tmp_path / "s", b"x")
    assert order == ["file", "rename", "dir"]


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_owner_is_given_before_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # `sudo hall-agent enroll`: a reader must never see the new file still owned by root.
    seen: list[tuple[int, int]] = []
    real_replace = os.replace

    def replace(src, dst):
        st = os.stat(src)
        seen.append((st.st_uid, st.st_gid))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    target = tmp_path / "gallery.npz"
    durable.write_durably(target, b"x", owner=(12345, 12346))
    assert seen == [(12345, 12346)]
    assert (target.stat().st_uid, target.stat().st_gid) == (12345, 12346)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
