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
