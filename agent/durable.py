"""One way to replace a state file durably (docs/outbox.md, "State files").

A reader (or the agent after a power cut) sees the old content or the new, never a torn or
empty file: the bytes go to a unique temporary file in the same directory (so the rename
stays on one file system), which is fsynced, renamed over the target, and then the directory
is fsynced so that the rename itself survives a power cut. Every state file the device keeps
(window state, debounce times, the gallery, the roster) is written with :func:`write_durably`,
because an ack to a pad or a punch decision relies on it. A file that must never be replaced
once it exists (the device's private key) is made with :func:`create_durably` instead.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_durably(
    path: str | os.PathLike[str],
    data: bytes,
    *,
    mode: int = 0o600,
    owner: tuple[int, int] | None = None,
) -> None:
    """Replace ``path`` with ``data``; raises OSError (disk full, read-only) leaving the old.

    ``owner`` (uid, gid) is given to the file before the rename, so no reader ever sees it
    with another owner (``sudo hall-agent enroll`` writing a file the agent must read).
    """
    target = Path(path)
    tmp = _temp_copy(target, data, mode, owner)
    try:
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(target.parent)


def _temp_copy(target: Path, data: bytes, mode: int, owner: tuple[int, int] | None) -> Path:
    """A temporary file beside ``target`` holding ``data`` on disk, with its mode and owner
    set before anything is written, so no reader ever sees it otherwise."""
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            if owner is not None:
                os.fchown(f.fileno(), *owner)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def create_durably(
    path: str | os.PathLike[str],
    data: bytes,
    *,
    mode: int = 0o600,
    owner: tuple[int, int] | None = None,
) -> None:
    """Create ``path`` holding ``data``, complete or not at all, never replacing a file that
    exists: raises FileExistsError then (another process made it first).

    As :func:`write_durably`, but the temporary file is hard-linked to the name instead of
    renamed over it: link(2) fails where the name exists, so two processes creating the same
    file at once (``keygen`` beside a starting agent) cannot both believe they made it.
    """
    target = Path(path)
    tmp = _temp_copy(target, data, mode, owner)
    try:
        os.link(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_directory(target.parent)


def data_dir_owner(data_dir: str | os.PathLike[str]) -> tuple[int, int] | None:
    """(uid, gid) that root must give the files it writes for the agent, else None.

    ``sudo hall-agent enroll`` or ``sudo hall-agent keygen`` must not leave root-owned files
    the agent cannot read: the agent runs as the owner of ``data_dir`` (user hall-agent,
    docs/attendance.md). None for anyone but root, and when root owns the data directory.
    """
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None
    try:
        st = os.stat(data_dir)
    except OSError:
        return None
    return None if st.st_uid == 0 else (st.st_uid, st.st_gid)


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Make a rename or a new file in ``directory`` durable (rename(2) is not, by itself)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
