"""One way to replace a state file durably (docs/outbox.md, "State files").

A reader (or the agent after a power cut) sees the old content or the new, never a torn or
empty file: the bytes go to a unique temporary file in the same directory (so the rename
stays on one file system), which is fsynced, renamed over the target, and then the directory
is fsynced so that the rename itself survives a power cut. Every state file the device keeps
(window state, debounce times, the gallery, the roster) is written with :func:`write_durably`,
because an ack to a pad or a punch decision relies on it.
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
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            if owner is not None:
                os.fchown(f.fileno(), *owner)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_directory(target.parent)


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Make a rename or a new file in ``directory`` durable (rename(2) is not, by itself)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
