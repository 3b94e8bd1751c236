"""Test helpers for the pad tests: a replugable pty pair and an agent bus wired to an outbox."""

from __future__ import annotations

import contextlib
import os
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.simulator import FdPort, SimPad


class PtyPort:
    """A pty pair; the agent opens ``link`` (a symlink, like /dev/serial/by-id/…), the
    simulator talks on the master side. ``unplug``/``plug`` close and recreate the pty."""

    def __init__(self, directory: Path, name: str = "pad0"):
        self.link = directory / name
        self.master = self.slave = -1
        self.plug()

    def plug(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no echo, no line discipline before the agent opens it
        tmp = self.link.with_suffix(".new")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(os.ttyname(self.slave))
        os.replace(tmp, self.link)

    def unplug(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.master = self.slave = -1

    def sim(self, address: int = 1, **kwargs: Any) -> SimPad:
        return SimPad(FdPort(self.master), address, **kwargs)


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, every: float = 0.01) -> Any:
    """Poll ``predicate`` until truthy; fail the test with a clear message on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {predicate}")
        threading.Event().wait(every)


def events(outbox: Any, event_type: str | None = None) -> list[dict[str, Any]]:
    import json

    out = [json.loads(p.body) for p in outbox.pending(100_000)]
    return [e for e in out if event_type is None or e["type"] == event_type]
