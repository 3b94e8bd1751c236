"""Small file systems a test can fill up or make read-only: a size-limited tmpfs.

Mounting needs root (CAP_SYS_ADMIN); :func:`can_mount` says whether this machine allows it.
A full disk is made by writing one file until ENOSPC, the way a log or a core dump fills a
real one; freeing it is deleting that file. Read-only is ``mount -o remount,ro``, what the
kernel does itself to an ext4 after an I/O error (``errors=remount-ro``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from pathlib import Path

_probe: bool | None = None


def can_mount() -> bool:
    global _probe
    if _probe is None:
        if os.geteuid() != 0:
            _probe = False
        else:
            import tempfile

            d = Path(tempfile.mkdtemp(prefix="hall-mount-probe-"))
            ok = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(d)], capture_output=True
            )
            _probe = ok.returncode == 0
            if _probe:
                subprocess.run(["umount", str(d)], capture_output=True)
            d.rmdir()
    return _probe


class SmallDisk:
    """A tmpfs of ``size_mb`` at ``path`` (created), unmounted by :meth:`close`."""

    def __init__(self, path: Path, size_mb: int):
        self.path = path
        self.size_mb = size_mb
        self.filler = path / "filler.bin"
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(path)],
            check=True,
            capture_output=True,
        )

    def fill(self) -> int:
        """Write until the disk is full; returns the bytes written."""
        written = 0
        chunk = b"\0" * 65536
        with open(self.filler, "ab") as f:
            while True:
                try:
                    f.write(chunk)
                    f.flush()
                    written += len(chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
            # Whatever fits of a last partial chunk: leave no free block at all.
            with contextlib.suppress(OSError):
                f.write(b"\0" * 4096)
                f.flush()
        return written

    def free(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.filler.unlink()

    def read_only(self) -> None:
        subprocess.run(
            ["mount", "-o", "remount,ro", str(self.path)], check=True, capture_output=True
        )

    def read_write(self) -> None:
        subprocess.run(
            ["mount", "-o", "remount,rw", str(self.path)], check=True, capture_output=True
        )

    def close(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)
