"""One uplink per outbox: an exclusive ``flock`` on ``<data_dir>/uplink.lock``.

``hall-agent ping`` and a second ``hall-agent run`` look at it before they touch the broker
with the device's account (docs/sync.md "ping").
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

LOCK_FILE = "uplink.lock"


class UplinkLock:
    """Exclusive lock on ``<data_dir>/uplink.lock``: at most one uplink drains an outbox.

    ``flock`` locks die with the process (even on SIGKILL), so a crashed agent never leaves a
    stale lock behind.
    """

    def __init__(self, data_dir: str | os.PathLike[str]):
        self.path = Path(data_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> bool:
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def holder(self) -> str:
        try:
            return self.path.read_text().strip() or "?"
        except OSError:
            return "?"


def uplink_running(data_dir: str | os.PathLike[str]) -> bool:
    """True when another uplink (a running ``hall-agent run``) holds this outbox's lock."""
    lock = UplinkLock(data_dir)
    if lock.acquire():
        lock.release()
        return False
    return True
