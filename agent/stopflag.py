"""A stop flag that a signal handler may set, and one that also ends when a parent process dies.

``threading.Event.set()`` and ``multiprocessing.Event.set()`` take a lock. A signal handler
runs in the main thread between two bytecodes, possibly while that same thread holds the very
lock (inside ``is_set()``/``wait()``): the handler then waits for itself forever. With
``multiprocessing.Event`` it is worse: ``set()`` waits for every sleeper of ``wait()`` to wake,
and the sleeper is the thread the handler interrupted. systemd (``KillMode=control-group``),
Ctrl-C and ``timeout`` signal the whole process group, so the recognition child gets the
SIGTERM too (docs/architecture.md#signals; Python docs, "signal — Execution of
Python signal handlers": handlers must not rely on locks the interrupted code may hold).

:class:`StopFlag` is a plain bool plus one byte written to a non-blocking self-pipe
(``os.write`` is async-signal-safe and takes no Python lock); ``wait`` is a ``select`` on
that pipe. :class:`ParentStop` adds the read end of a pipe whose write end only the parent
holds: the parent closes it to ask for a stop, and the kernel closes it when the parent dies,
so an orphaned child notices within one wait.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import select
import signal

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class StopFlag:
    """``set()`` is safe from signal handlers and other threads; ``wait`` never spins."""

    def __init__(self) -> None:
        self._flag = False
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)

    def set(self) -> None:
        self._flag = True
        with contextlib.suppress(OSError):  # full (already woken) or closed: the flag is set
            os.write(self._w, b"x")

    def is_set(self) -> bool:
        return self._flag

    def _fds(self) -> list[int]:
        return [self._r]

    def wait(self, timeout: float | None = None) -> bool:
        if self.is_set():
            return True
        with contextlib.suppress(OSError, ValueError):  # closed meanwhile: report the flag
            select.select(self._fds(), [], [], timeout)
        return self.is_set()

    def close(self) -> None:
        for fd in (self._r, self._w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._r = self._w = -1


class ParentStop(StopFlag):
    """Set by a signal handler, by the parent closing its end of ``fd``'s pipe, or by the
    parent's death (which closes that end too)."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._parent = fd

    def is_set(self) -> bool:
        if not self._flag:
            try:
                ready, _, _ = select.select([self._parent], [], [], 0)
            except (OSError, ValueError):
                ready = [self._parent]
            if ready:  # EOF (closed or dead parent) or a byte: either way, stop
                self._flag = True
        return self._flag

    def _fds(self) -> list[int]:
        return [self._r, self._parent]


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Ask Linux to send ``sig`` when the parent exits (``prctl(PR_SET_PDEATHSIG)``).

    Linux sends it when the *thread* that forked us ends, so the worker must be started from
    a long-lived thread (the supervisor's); the pipe in :class:`ParentStop` is the second line.
    Returns False where prctl is unavailable (not Linux).
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False
