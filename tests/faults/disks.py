"""Small file systems a test can fill up or turn read-only: ext4 on a loop device.

Mounting needs root (CAP_SYS_ADMIN and a loop device); :func:`can_mount` says whether this
machine allows it.

- A full disk is one file written until ENOSPC, the way a log or a core dump fills a real
  one (``mkfs -m 0``: no blocks reserved for root, who runs the tests); freeing it is deleting
  that file.
- Read-only is what the kernel does to an ext4 mounted ``errors=remount-ro`` after an I/O or
  metadata error (ext4(5)); ``/sys/fs/ext4/<dev>/trigger_fs_error`` raises such an error on
  purpose. Like the real thing it cannot be undone under running programs (``mount -o
  remount,rw`` is refused after an emergency read-only): the way back is an administrator's,
  stop the program, unmount, ``e2fsck``, mount, start it again (:meth:`SmallDisk.repair`).
  A plain ``mount -o remount,ro`` is no substitute: the kernel refuses it (EBUSY) while a file
  is open for writing, which a database always has.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import tempfile
from pathlib import Path

_probe: bool | None = None


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), check=True, capture_output=True, text=True)


def can_mount() -> bool:
    global _probe
    if _probe is None:
        _probe = False
        if os.geteuid() == 0:
            with (
                tempfile.TemporaryDirectory(prefix="hall-mount-probe-") as d,
                contextlib.suppress(Exception),
            ):
                disk = SmallDisk(Path(d) / "m", 4)
                disk.close()
                _probe = True
    return _probe


class SmallDisk:
    """An ext4 of ``size_mb`` in an image file next to ``path``, mounted at ``path``."""

    def __init__(self, path: Path, size_mb: int):
        self.path = path
        self.image = path.with_name(path.name + ".img")
        self.filler = path / "filler.bin"
        path.mkdir(parents=True, exist_ok=True)
        with open(self.image, "wb") as f:
            f.truncate(size_mb << 20)
        _run("mkfs.ext4", "-q", "-F", "-m", "0", str(self.image))
        self._mount()

    def _mount(self) -> None:
        _run("mount", "-o", "loop,errors=remount-ro", str(self.image), str(self.path))
        self.device = _run("findmnt", "-no", "SOURCE", str(self.path)).stdout.strip()

    def fill(self) -> int:
        """Write until the disk is full; returns the bytes written."""
        written = 0
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (1 << 20, 4096, 512):  # big chunks first, then the last blocks
                chunk = b"\0" * size
                while True:
                    try:
                        written += os.write(fd, chunk)
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
            with contextlib.suppress(OSError):
                os.fsync(fd)
        finally:
            os.close(fd)
        return written

    def free(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.filler.unlink()

    def read_only(self) -> None:
        """An ext4 error: the kernel turns the file system read-only under everyone."""
        name = os.path.basename(self.device)
        Path(f"/sys/fs/ext4/{name}/trigger_fs_error").write_text("hall fault test\n")

    def repair(self) -> None:
        """What an administrator does after a read-only event (programs stopped first)."""
        _run("umount", str(self.path))
        subprocess.run(["e2fsck", "-fy", str(self.image)], capture_output=True)
        self._mount()

    def close(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)
        with contextlib.suppress(OSError):
            self.image.unlink()
