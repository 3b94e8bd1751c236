"""Loopback ports for the demo hall (docs/demo.md) and the tests: a free one, and waiting
until one answers. Here rather than in tests/ because the demo runs on a kiosk install, which
has no tests/ to import (tests/test_imports.py); the tests import these.
"""

from __future__ import annotations

import contextlib
import socket
import time


def free_port(preferred: int = 0) -> int:
    """``preferred`` when it is free on 127.0.0.1, else any free port the kernel gives."""
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise RuntimeError("no free port")


def port_answers(port: int, within_s: float, interval: float = 0.1) -> bool:
    """True once something accepts connections on 127.0.0.1:``port``, False after ``within_s``."""
    deadline = time.monotonic() + within_s
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
