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

from agent.windows.simulator import FdPort, SimPad


class PtyPort:
    """A pty pair; the agent opens ``link`` (a symlink, like /dev/serial/by-id/…), the
    simulator talks on the master side. ``unplug``/``plug`` close and recreate the pty."""

    def __init__(self, directory: Path, name: str = "pad0"):
        self.link = directory / name
        self.master = self.slave = -1
        self._sims: list[SimPad] = []
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
        # Stop the simulators' reader threads first: a reader left polling a closed fd number
        # would steal bytes from whatever pty reuses that number in the next test.
        for sim in self._sims:
            sim.close()
        self._sims.clear()
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.master = self.slave = -1

    def sim(self, address: int = 1, **kwargs: Any) -> SimPad:
        pad = SimPad(FdPort(self.master), address, **kwargs)
        self._sims.append(pad)
        return pad


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


def pad_config(
    write_config: Callable[..., Path],
    data_dir: Path,
    pads: list[tuple[str, int, str]],
    windows: str = "",
    baud: int = 9600,
) -> Any:
    """An AgentConfig with one [[pad]] table per (port, address, window)."""
    from agent.config import load_agent_config

    tables = "".join(
        f'\n[[pad]]\nport = "{port}"\nbaud = {baud}\naddress = {addr}\nwindow = "{win}"\n'
        for port, addr, win in pads
    )
    text = (
        f'[device]\nid = "pad-01"\nsite = "jiedong"\ndata_dir = "{data_dir}"\n{tables}\n{windows}\n'
    )
    return load_agent_config(write_config(text))


class Agent:
    """The window workers of a config, started against an outbox; stop() at the end."""

    def __init__(self, cfg: Any, outbox: Any, **kwargs: Any):
        from agent.windows.state import window_worker_factories

        self.factories = window_worker_factories(cfg, outbox, **kwargs)
        self.workers = {name: make() for name, make in self.factories.items()}
        for worker in self.workers.values():
            worker.start()

    @property
    def worker(self) -> Any:
        (only,) = self.workers.values()
        return only

    @property
    def bus(self) -> Any:
        return self.worker.bus

    def wait_up(self, timeout: float = 10.0) -> None:
        wait_until(lambda: all(w.bus.link_up for w in self.workers.values()), timeout)

    def stop(self) -> None:
        for worker in self.workers.values():
            worker.stop(5.0)


class PtyBridge:
    """Two ptys joined back to back (what ``socat pty pty`` does): the agent opens
    ``a.link``, a separate process such as ``hall-agent simulate pad`` opens ``b.link``."""

    def __init__(self, directory: Path):
        import select

        self.a = PtyPort(directory, "agent-side")
        self.b = PtyPort(directory, "pad-side")
        self._select = select.select
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        pairs = {self.a.master: self.b.master, self.b.master: self.a.master}
        while not self._stop.is_set():
            try:
                ready, _, _ = self._select(list(pairs), [], [], 0.05)
                for fd in ready:
                    os.write(pairs[fd], os.read(fd, 4096))
            except OSError:
                # Nobody has the other slave open yet (EIO): wait for it.
                self._stop.wait(0.01)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1.0)
        self.a.unplug()
        self.b.unplug()
