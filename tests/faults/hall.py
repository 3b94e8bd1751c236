"""A whole hall in miniature, made of real processes, for the fault suite and bench/faults.py.

- a Mosquitto of its own on a free port (``tests.support.Mosquitto``);
- a :class:`~tests.faults.proxy.FaultProxy` in front of it: every device reaches the broker
  only through the proxy, the collector connects directly (a partition is the hall's LAN,
  the server room's link to its broker is not the subject);
- ``hall-central run`` as a process, storing into SQLite (optionally on a small loop-mounted
  ext4 that a test can fill or turn read-only) or PostgreSQL (a throw-away schema);
- window devices: ``hall-agent run`` with one ``[[pad]]`` per window, each pad a
  ``hall-agent simulate pad`` process on the far end of a ``socat`` pty pair;
- kiosks: ``hall-agent run`` with ``[attendance] camera`` set to a video file.

The pad driver (:class:`Pad`) feeds the simulator one rating at a time on its stdin and reads
its verdict lines, so the history checker knows which ratings the pad saw acknowledged.
Every rating carries a unique ``invite_id`` (the pad's tag): a central row is matched to the
exact frame that produced it.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import sqlite3
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.faults.procs import Proc, Sampler, read_lines, spawn_socat_pair
from tests.faults.proxy import FaultProxy
from tests.support import PG_URL, Mosquitto

RESULT = re.compile(r"^-> rate (\d)(?: reasons=\S+)? invite=(\d+) seq=(\d+): (acked|NOT acked)")
LOGIN = re.compile(r"^-> login (\S+) seq=\d+: (acked|NOT acked)")


@dataclass
class Rated:
    """What the pad sent for one tag, for the history's content check: the agent must record
    exactly this (level, reasons), stamped between the send and the pad's verdict."""

    level: int
    reasons: tuple[int, ...]  # bit numbers, as on the wire
    sent_at: float  # wall clock (time.time()) just before the pad was told to rate
    verdict_at: float | None = None  # wall clock when the pad printed acked / NOT acked


# --- a pad ------------------------------------------------------------------------------------


class Pad:
    """One simulated pad process: rates on request, remembers what it saw acked."""

    def __init__(self, port: Path, address: int, window: str, log: Path, seed: int):
        self.window = window
        self.address = address
        self.rng = random.Random(seed)
        self.proc = Proc.python(
            f"pad-{window}",
            "agent.cli",
            [
                "simulate",
                "pad",
                "--port",
                str(port),
                "--address",
                str(address),
                "--seed",
                str(seed),
            ],
            log,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.proc.env["PYTHONIOENCODING"] = "utf-8"
        self.next_tag = 1
        self.sent: set[int] = set()
        self.acked: set[int] = set()
        self.ratings: dict[int, Rated] = {}  # tag -> what was sent
        # The staff logged in at this window, as the pad saw its LOGIN acked (None: nobody),
        # so that every rating row can be checked for the staff it is filed under.
        self.staff: str | None = None
        self._results: dict[int, bool] = {}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.latencies_ms: list[float] = []

    def start(self) -> Pad:
        self.proc.start()
        read_lines(self.proc.popen.stdout, self._on_line)  # type: ignore[union-attr]
        self.command("hello SIM-1.0")
        # A staff member at the window: every rating is filed under them (the content check
        # compares it), not under None, which a store dropping the field would also give.
        self.command(f"login S-{self.window}")
        return self

    def _on_line(self, line: str) -> None:
        login = LOGIN.match(line)
        if login:
            if login.group(2) == "acked":
                with self._cond:
                    self.staff = login.group(1)
            return
        m = RESULT.match(line)
        if not m:
            return
        tag, ok = int(m.group(2)), m.group(4) == "acked"
        lat = re.search(r"acked in ([\d.]+) ms", line)
        with self._cond:
            self._results[tag] = ok
            if tag in self.ratings:
                self.ratings[tag].verdict_at = time.time()
            if ok:
                self.acked.add(tag)
            if lat:
                self.latencies_ms.append(float(lat.group(1)))
            self._cond.notify_all()

    def command(self, text: str) -> None:
        stdin = self.proc.popen.stdin  # type: ignore[union-attr]
        stdin.write(text + "\n")
        stdin.flush()

    def rate(self, timeout: float = 15.0) -> bool | None:
        """One rating, stop-and-wait; True acked, False given up by the pad, None no verdict."""
        tag = self.next_tag
        self.next_tag += 1
        level = self.rng.choice((1, 2, 3, 4, 5, 5, 5, 4))
        bits = (0, 2) if level <= 2 else ()
        reasons = f" reasons={','.join(map(str, bits))}" if bits else ""
        with self._cond:
            self.sent.add(tag)
            self.ratings[tag] = Rated(level, bits, time.time())
        self.command(f"rate {level}{reasons} invite={tag}")
        with self._cond:
            self._cond.wait_for(lambda: tag in self._results or self._stop.is_set(), timeout)
            return self._results.get(tag)

    def rate_in_background(self, every_s: float = 0.2) -> None:
        """Rate continuously (one rating every ``every_s`` plus the pad's own waiting)."""

        def run() -> None:
            while not self._stop.is_set():
                self.rate()
                self._stop.wait(self.rng.uniform(0.5, 1.5) * every_s)

        self._stop.clear()
        self._thread = threading.Thread(target=run, name=f"rater-{self.window}", daemon=True)
        self._thread.start()

    def pause_rating(self) -> None:
        """Stop rating and wait for the verdict on the rating in progress."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(20)
            self._thread = None
        self._stop.clear()

    def close(self) -> None:
        self.pause_rating()
        self._stop.set()
        with contextlib.suppress(Exception):
            self.proc.popen.stdin.close()  # type: ignore[union-attr]
        self.proc.stop(5)


# --- devices ----------------------------------------------------------------------------------


@dataclass
class Device:
    hall: Hall
    name: str
    data_dir: Path
    conf: Path
    agent: Proc
    pads: list[Pad] = field(default_factory=list)
    socats: list[Proc] = field(default_factory=list)
    expect_rejected: set[str] = field(default_factory=set)  # ids a scenario made invalid

    @property
    def clock_faked(self) -> bool:
        """The agent runs under libfaketime (clock_steps): its ``at`` stamps are off on
        purpose, so the history cannot hold them to the test's own clock."""
        return "faketime" in self.agent.env.get("LD_PRELOAD", "")

    def start(self) -> Device:
        self.agent.start()
        self.hall.sampler.watch(self.agent)
        return self

    def restart(self) -> None:
        self.agent.stop()
        self.agent.start()

    def outbox_query(self, sql: str) -> list[tuple[Any, ...]]:
        path = self.data_dir / "outbox.db"
        if not path.exists():
            return []
        for _ in range(50):
            try:
                with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as c:
                    c.execute("PRAGMA busy_timeout = 2000")
                    return c.execute(sql).fetchall()
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    return []
                time.sleep(0.05)
        raise RuntimeError(f"{path}: cannot read the outbox")

    def pending(self) -> int:
        rows = self.outbox_query("SELECT count(*) FROM outbox")
        return rows[0][0] if rows else 0

    def last_seq(self) -> int:
        rows = self.outbox_query(
            "SELECT max(coalesce((SELECT max(seq) FROM outbox), 0), "
            "(SELECT value FROM meta WHERE key = 'last_seq'))"
        )
        return int(rows[0][0] or 0) if rows else 0

    def dead_letters(self) -> list[tuple[int, str, str, str]]:
        return self.outbox_query("SELECT seq, id, type, reason FROM dead_letter ORDER BY seq")

    def close(self) -> None:
        for pad in self.pads:
            pad.close()
        self.agent.stop()
        for s in self.socats:
            s.stop(2)


# --- the hall ---------------------------------------------------------------------------------


class Hall:
    """Broker, proxy, collector and devices of one scenario; ``close()`` ends them all."""

    def __init__(
        self,
        workdir: Path,
        *,
        store: str = "sqlite",
        pg_schema: str | None = None,
        store_dir: Path | None = None,
        seed: int = 0,
        sync: dict[str, Any] | None = None,
        broker_persistence: bool = False,
    ):
        """``broker_persistence``: Mosquitto keeps ``broker/mosquitto.db`` (retained and queued
        messages), for the biometric scan of the broker's file; off by default, because it
        changes what a broker restart keeps (the broker_down scenario)."""
        self.workdir = workdir
        self.seed = seed
        self.rng = random.Random(seed)
        self.store_kind = store
        self.pg_schema = pg_schema
        self.store_dir = store_dir or workdir / "central"
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.sync = {"ack_timeout_s": 10, "status_interval_s": 30, **(sync or {})}
        self.broker = Mosquitto(workdir / "broker", persistence=broker_persistence)
        self.proxy: FaultProxy | None = None
        self.sampler = Sampler()
        self.devices: dict[str, Device] = {}
        self.collector: Proc | None = None
        self.faults = 0  # injected, for the bench's table
        self.cleanups: list[Any] = []  # run after every process has stopped (unmounts)
        self.store_disk: Any = None  # the SmallDisk under store_dir, for file-system faults
        self.central_conf = workdir / "central.toml"  # the collector's config, written by start()

    # --- central side ------------------------------------------------------------------------

    @property
    def store_url(self) -> str:
        if self.store_kind == "sqlite":
            return f"sqlite:///{self.store_dir}/hall.db"
        return PG_URL

    def start(self) -> Hall:
        self.broker.start()
        self.proxy = FaultProxy(self.broker.port).start()
        conf = self.central_conf
        store = f'url = "{self.store_url}"\n'
        if self.pg_schema:
            store += f'pg_schema = "{self.pg_schema}"\n'
        conf.write_text(f'[mqtt]\nurl = "{self.broker.url}"\n[store]\n{store}', encoding="utf-8")
        self.collector = Proc.python(
            "collector",
            "central.cli",
            ["-c", str(conf), "-v", "run"],
            self.workdir / "collector.log",
        )
        self.start_collector()
        self.sampler.start()
        return self

    def start_collector(self) -> None:
        assert self.collector is not None
        self.collector.start()
        self.sampler.watch(self.collector)

    def open_store(self) -> Any:
        from central.store import open_store

        return open_store(self.store_url, self.pg_schema)

    # --- devices ---------------------------------------------------------------------------

    def _agent_conf(
        self, name: str, data_dir: Path, body: str, sync: dict[str, Any], direct: bool = False
    ) -> Path:
        assert self.proxy is not None
        conf = self.workdir / f"{name}.toml"
        url = self.broker.url if direct else self.proxy.url
        sync_lines = "".join(f"{k} = {json.dumps(v)}\n" for k, v in {**self.sync, **sync}.items())
        conf.write_text(
            f'[device]\nid = "{name}"\nsite = "jiedong"\ndata_dir = "{data_dir}"\n'
            f'[mqtt]\nurl = "{url}"\n[sync]\nmin_free_mb = 0\n{sync_lines}{body}',
            encoding="utf-8",
        )
        return conf

    def add_window(
        self,
        name: str = "win-01",
        windows: tuple[str, ...] = ("A01",),
        *,
        data_dir: Path | None = None,
        sync: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        start: bool = True,
        direct: bool = False,
    ) -> Device:
        """A window device; ``direct`` connects it to the broker itself, not via the proxy
        (then a stopped broker refuses its connections, as a real one does)."""
        data_dir = data_dir or self.workdir / f"{name}-data"
        ports = self.workdir / "tty"
        ports.mkdir(exist_ok=True)
        body, device_pads, socats = "", [], []
        for i, window in enumerate(windows):
            a, b = ports / f"{name}-{window}-agent", ports / f"{name}-{window}-pad"
            socats.append(spawn_socat_pair(a, b, self.workdir / f"socat-{name}-{window}.log"))
            body += f'\n[[pad]]\nport = "{a}"\naddress = 1\nwindow = "{window}"\n'
            device_pads.append((b, window, self.seed * 1000 + i))
        conf = self._agent_conf(name, data_dir, body, sync or {}, direct)
        agent = Proc.python(
            name,
            "agent.cli",
            ["-c", str(conf), "-v", "run"],
            self.workdir / f"{name}.log",
            env={"HALL_AGENT_CLOCK": "synced", **(env or {})},
        )
        dev = Device(self, name, data_dir, conf, agent, socats=socats)
        self.devices[name] = dev
        if start:
            dev.start()
        for port, window, seed in device_pads:
            log = self.workdir / f"pad-{name}-{window}.log"
            dev.pads.append(Pad(port, 1, window, log, seed).start())
        return dev

    def add_kiosk(
        self,
        name: str,
        video: Path,
        *,
        data_dir: Path | None = None,
        attendance: str = "",
        env: dict[str, str] | None = None,
        start: bool = True,
    ) -> Device:
        data_dir = data_dir or self.workdir / f"{name}-data"
        body = f'\n[attendance]\ncamera = "{video}"\n{attendance}'
        conf = self._agent_conf(name, data_dir, body, {})
        agent = Proc.python(
            name,
            "agent.cli",
            ["-c", str(conf), "-v", "run"],
            self.workdir / f"{name}.log",
            env={"HALL_AGENT_CLOCK": "synced", **(env or {})},
        )
        dev = Device(self, name, data_dir, conf, agent)
        self.devices[name] = dev
        if start:
            dev.start()
        return dev

    # --- waiting -----------------------------------------------------------------------------

    def all_pads(self) -> list[Pad]:
        return [p for d in self.devices.values() for p in d.pads]

    def rate_everywhere(self, every_s: float = 0.2) -> None:
        for pad in self.all_pads():
            pad.rate_in_background(every_s)

    def stop_rating(self) -> None:
        for pad in self.all_pads():
            pad.pause_rating()

    def drained(self) -> bool:
        return all(d.pending() == 0 for d in self.devices.values() if d.agent.alive())

    def wait_drained(self, timeout: float) -> float | None:
        """Seconds until every running device's outbox is empty, None on timeout."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.drained():
                return time.monotonic() - t0
            time.sleep(0.1)
        return None

    def wait_connected(self, device: Device, timeout: float = 20.0) -> bool:
        """The centre saw the device online (its retained status reached the store)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception), contextlib.closing(self.open_store()) as store:
                for row in store.devices():
                    if row.get("device") == device.name and row.get("state") == "online":
                        return True
            time.sleep(0.2)
        return False

    # --- the end -----------------------------------------------------------------------------

    def close(self) -> None:
        self.sampler.stop()
        for dev in self.devices.values():
            dev.close()
        if self.collector is not None:
            self.collector.stop()
        if self.proxy is not None:
            self.proxy.close()
        self.broker.stop()
        for cleanup in reversed(self.cleanups):
            with contextlib.suppress(Exception):
                cleanup()
