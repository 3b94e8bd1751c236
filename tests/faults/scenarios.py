"""The fault scenarios, shared by the tests (short form) and ``bench/faults.py`` (long form).

Each scenario builds a :class:`~tests.faults.hall.Hall`, lets pads rate, injects its fault,
ends it, and returns an :class:`Outcome`: the history check and the resource figures. The
tests assert on the outcome with generous bounds; the bench prints the figures. ``scale``
stretches every fault (1 = the CI short form, tens of seconds; the bench and the long tests
use more).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from central.store import CONFLICT
from sync.paho_loop import stop_loop
from tests.faults.acks import AckSpy, p99
from tests.faults.biometric import scan_hall
from tests.faults.disks import SmallDisk
from tests.faults.hall import Device, Hall
from tests.faults.history import History, check_history
from tests.faults.procs import CLK_TCK, Sample, thread_deaths
from tests.support import PG_URL

# How long a drain may take in the assertions (the goal, 5 s, is reported by the bench).
DRAIN_BOUND_S = 30.0


@dataclass
class Outcome:
    scenario: str
    store: str
    seed: int
    scale: float
    history: History | None = None
    faults: int = 0
    recovery_s: float | None = None  # fault over -> every outbox empty
    wait_cpu_pct: float | None = None  # the agent while waiting for the link, % of one core
    peak_cpu_pct: float = 0.0  # any 2 s stretch, agents and collector
    peak_rss_mb: float = 0.0
    rss_growth_mb: float | None = None  # main agent: after recovery minus before the fault
    fd_growth: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and (self.history is None or self.history.ok)

    def row(self) -> dict[str, Any]:
        h = self.history.as_dict() if self.history else {}
        out = {k: v for k, v in asdict(self).items() if k not in ("history", "extra", "problems")}
        return {**out, **h, **self.extra}


# --- helpers ----------------------------------------------------------------------------------


def _sample_now(hall: Hall, dev: Device) -> tuple[int, int] | None:
    s = dev.agent.sample()
    return None if s is None else (s.rss_kb, s.fds)


def _finish(hall: Hall, out: Outcome, main: Device | None, before: tuple[int, int] | None) -> None:
    """Common ending: stop rating, wait for the drain, check the history, take figures."""
    hall.stop_rating()
    t_end = time.monotonic()
    drained = hall.wait_drained(DRAIN_BOUND_S * 2)
    if out.recovery_s is None:
        out.recovery_s = None if drained is None else round(drained, 2)
    if drained is None:
        out.problems.append(f"outboxes not drained {DRAIN_BOUND_S * 2:.0f} s after the fault")
    time.sleep(0.5)  # let the last status reach the centre; the history is read after
    if main is not None and before is not None:
        after = _sample_now(hall, main)
        if after is not None:
            out.rss_growth_mb = round((after[0] - before[0]) / 1024, 1)
            out.fd_growth = after[1] - before[1]
    usage = hall.sampler.usage
    peaks = {name: u.peak_cpu() for name, u in usage.items()}
    if peaks:
        top = max(peaks, key=lambda n: peaks[n])
        out.peak_cpu_pct = round(peaks[top], 1)
        out.extra["peak_cpu_proc"] = top
    out.peak_rss_mb = round(max((u.peak_rss_mb() for u in usage.values()), default=0.0), 1)
    out.faults = hall.faults
    out.history = check_history(hall)
    out.extra.setdefault("drain_wait_s", round(time.monotonic() - t_end, 2))
    for dev in hall.devices.values():
        lat = sorted(x for p in dev.pads for x in p.latencies_ms)
        if lat:
            out.extra.setdefault("pad_ack_p50_ms", round(lat[len(lat) // 2], 1))
            out.extra.setdefault("pad_ack_p99_ms", round(lat[int(len(lat) * 0.99)], 1))


def _cpu(hall: Hall, dev: Device, t0: float, t1: float) -> float | None:
    value = hall.sampler.usage[dev.name].cpu_percent(t0, t1)
    return None if value is None else round(value, 1)


def _recovered(hall: Hall, t_back: float, out: Outcome) -> None:
    """Recovery time: from the end of the fault until every outbox is empty (the pads stop
    rating at that moment, so the backlog only shrinks)."""
    hall.stop_rating()
    drained = hall.wait_drained(DRAIN_BOUND_S * 2)
    out.recovery_s = None if drained is None else round(time.monotonic() - t_back, 2)


def _json(value: Any) -> Any:
    """A stored JSON column: text in SQLite, already decoded by psycopg from jsonb."""
    return json.loads(value) if isinstance(value, str) else value


def _thread_deaths(hall: Hall, out: Outcome) -> None:
    """A problem for every thread of an agent or of the collector that died of an uncaught
    exception during the scenario (their stderr is their log). A dead link keeper leaves
    the agent running but without a connection; a dead uplink, recording but never sending:
    the drain may still come from a restart or luck, so the history alone is not enough."""
    procs = [d.agent for d in hall.devices.values()]
    procs += [hall.collector] if hall.collector is not None else []
    for proc in procs:
        for thread, error in thread_deaths(proc.log_text()):
            out.problems.append(f"{proc.name}: thread {thread} died: {error}")


def _warm_up(hall: Hall, dev: Device, out: Outcome) -> tuple[int, int] | None:
    if not hall.wait_connected(dev, 30):
        out.problems.append(f"{dev.name} never came online")
    hall.rate_everywhere()
    time.sleep(2)
    return _sample_now(hall, dev)


# --- scenarios --------------------------------------------------------------------------------


def baseline(hall: Hall, rng: random.Random, scale: float, out: Outcome) -> None:
    """No fault: pads rate for ``10·scale`` s, then the device idles for 5 s (the bench's
    reference for ack latency, idle CPU and drain time)."""
    dev = hall.add_window("win-01", ("A01", "A02"))
    before = _warm_up(hall, dev, out)
    time.sleep(10 * scale)
    hall.stop_rating()
    t0 = time.monotonic()
    time.sleep(5)
    out.wait_cpu_pct = _cpu(hall, dev, t0 + 0.5, time.monotonic())
    _recovered(hall, time.monotonic(), out)
    _finish(hall, out, dev, before)


def broker_down(hall: Hall, rng: random.Random, scale: float, out: Outcome) -> None:
    """The broker stops for ``12·scale`` s; pads rate for the first half, then the agent is
    restarted and only waits (that is where CPU must stay near zero). The device connects straight to the
    broker, so its reconnects are refused (ECONNREFUSED), as in a hall whose broker is down."""
    dev = hall.add_window("win-01", ("A01", "A02"), direct=True)
    before = _warm_up(hall, dev, out)
    outage = 12 * scale
    hall.broker.stop()
    hall.faults += 1
    time.sleep(outage / 2)
    hall.stop_rating()
    # The hall's power came back before the server room's: the agent starts while the broker
    # is still down, with a backlog, and must wait quietly.
    dev.restart()
    t0 = time.monotonic()
    time.sleep(outage / 2)
    out.wait_cpu_pct = _cpu(hall, dev, t0 + 1, time.monotonic())
    hall.broker.start()
    _recovered(hall, time.monotonic(), out)
    hall.rate_everywhere()
    time.sleep(1)
    _finish(hall, out, dev, before)


def collector_killed(hall: Hall, rng: random.Random, scale: float, out: Outcome) -> None:
    """SIGKILL of the collector mid-stream, back after ``5·scale`` s."""
    dev = hall.add_window("win-01", ("A01", "A02"))
    before = _warm_up(hall, dev, out)
    assert hall.collector is not None
    for _ in range(max(1, round(scale))):
        hall.collector.signal(signal.SIGKILL)
        hall.collector.wait(5)
        hall.faults += 1
        t0 = time.monotonic()
        time.sleep(5)
        hall.stop_rating()
        time.sleep(2)
        out.wait_cpu_pct = _cpu(hall, dev, t0 + 5.5, time.monotonic())
        hall.start_collector()
        _recovered(hall, time.monotonic(), out)
        hall.rate_everywhere()
        time.sleep(1)
    _finish(hall, out, dev, before)


def _sqlite_exec(hall: Hall, sql: str) -> None:
    with contextlib.closing(sqlite3.connect(hall.store_dir / "hall.db", timeout=30)) as c:
        c.execute(sql)
        c.commit()


def _pg_exec(hall: Hall, sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as c:
        c.execute(f'SET search_path TO "{hall.pg_schema}"')
        c.execute(sql)


def store_refuses(hall: Hall, rng: random.Random, scale: float, out: Outcome) -> None:
    """The store refuses inserts into ``events`` (an SQLite trigger, a PostgreSQL CHECK
    constraint, e.g. a DBA's migration gone wrong) for ``10·scale`` s, then accepts again."""
    dev = hall.add_window("win-01", ("A01", "A02"))
    before = _warm_up(hall, dev, out)
    if hall.store_kind == "sqlite":
        _sqlite_exec(
            hall,
            "CREATE TRIGGER fault_refuse BEFORE INSERT ON events "
            "BEGIN SELECT RAISE(ABORT, 'refused by the fault test'); END",
        )
    else:
        _pg_exec(hall, "ALTER TABLE events ADD CONSTRAINT fault_refuse CHECK (false) NOT VALID")
    hall.faults += 1
    time.sleep(10 * scale)
    if hall.store_kind == "sqlite":
        _sqlite_exec(hall, "DROP TRIGGER fault_refuse")
    else:
        _pg_exec(hall, "ALTER TABLE events DROP CONSTRAINT fault_refuse")
    _recovered(hall, time.monotonic(), out)
    _finish(hall, out, dev, before)


def _store_disk(hall: Hall) -> SmallDisk:
    disk = hall.store_disk
    if disk is None:
        raise RuntimeError("this scenario needs Hall(store_dir=<a SmallDisk>)")
    return disk


def store_read_only(hall: Hall, rng: random.Random, scale: float, out: Outcome) -> None:
    """The store's file system turns read-only under the running collector (an ext4 error
    with ``errors=remount-ro``) for ``10·scale`` s; then the administrator stops the
    collector, repairs and remounts the file system and starts the collector again."""
    disk = _store_disk(hall)
    dev = hall.add_window("win-01", ("A01", "A02"))
    before = _warm_up(hall, dev, out)
    assert hall.collector is not None
    disk.read_only()
    hall.faults += 1
    time.sleep(10 * scale)
    rc = hall.collector.stop(20)
    out.extra["collector_exit"] = rc
    disk.repair()
    hall.start_collector()
    _recovered(hall, time.monotonic(), out)
    _finish(hall, out, dev, before)


def store_disk_full(hall: Hall, rng: random.Random, scale: float, out: Outcome) -> None:
    """The store's disk fills up for ``10·scale`` s, then the filler file is deleted."""
    disk = _store_disk(hall)
    dev = hall.add_window("win-01", ("A01", "A02"))
    before = _warm_up(hall, dev, out)
    out.extra["filled_mb"] = round(disk.fill() / 2**20, 1)
    hall.faults += 1
    time.sleep(10 * scale)
    disk.free()
    _recovered(hall, time.monotonic(), out)
    _finish(hall, out, dev, before)


def device_disk_full(hall: Hall, rng: random.Random, scale: float, out: Outcome) -> None:
    """The device's data disk fills up for ``8·scale`` s while pads rate: the agent may not
    ack what it could not commit; once space is back, everything acked is delivered."""
    disk = SmallDisk(hall.workdir / "device-disk", 16)
    hall.cleanups.append(disk.close)
    dev = hall.add_window("win-01", ("A01", "A02"), data_dir=disk.path / "data")
    before = _warm_up(hall, dev, out)
    out.extra["filled_mb"] = round(disk.fill() / 2**20, 1)
    hall.faults += 1
    time.sleep(8 * scale)
    acked_full = sum(len(p.acked) for p in dev.pads)
    disk.free()
    t_back = time.monotonic()
    # Pads keep rating: the agent must record (and ack) again without a restart.
    while time.monotonic() - t_back < 15 and sum(len(p.acked) for p in dev.pads) <= acked_full:
        time.sleep(0.05)
    if sum(len(p.acked) for p in dev.pads) <= acked_full:
        out.problems.append("no rating acked within 15 s of the device disk having space again")
    else:
        out.extra["first_ack_after_space_s"] = round(time.monotonic() - t_back, 2)
    if not dev.agent.alive():
        out.problems.append("the agent died on a full disk")
    _recovered(hall, t_back, out)
    _finish(hall, out, dev, before)


def agent_kill_storm(hall: Hall, rng: random.Random, scale: float, out: Outcome) -> None:
    """SIGKILL of the window agent ``6·scale`` times at random moments while pads rate."""
    dev = hall.add_window("win-01", ("A01", "A02"))
    _warm_up(hall, dev, out)
    for _ in range(round(6 * scale)):
        time.sleep(rng.uniform(0.5, 2.5))
        dev.agent.signal(signal.SIGKILL)
        dev.agent.wait(5)
        hall.faults += 1
        time.sleep(rng.uniform(0.1, 1.0))
        dev.agent.start()
    _recovered(hall, time.monotonic(), out)
    _finish(hall, out, dev, None)


# The agent's CPU over the whole partition, pads rating in its first half (% of one core).
# Held without RST or FIN, the connection looks alive to paho until its keepalive gives up
# (a PINGREQ after keepalive_s = 30 s of silence, then as long again for the PINGRESP:
# longer than the short form's 9 s hold), so no reconnect back-off paces the agent: a loop
# that resends or polls while "connected" spins freely, and only CPU shows it.
# Recording ratings costs a few % (baseline: ~2 % idle, < 20 % peak with the collector
# beside it); one spinning Python thread costs 50-100 %. 30 % lies between, with room for a
# busy CI machine's accounting noise.
PARTITION_CPU_BOUND = 30.0


def _partition_cpu(dev: Device, held: Sample | None, out: Outcome) -> None:
    """CPU of the agent (with its children) from the hold until now, read straight from
    /proc/PID/stat (utime + stime), the same process throughout."""
    now = dev.agent.sample()
    if held is None or now is None or held.pids[0] != now.pids[0] or now.t <= held.t:
        out.problems.append("partition: the agent was not running throughout the hold")
        return
    pct = round(100.0 * (now.ticks - held.ticks) / CLK_TCK / (now.t - held.t), 1)
    out.extra["partition_cpu_pct"] = pct
    if pct > PARTITION_CPU_BOUND:
        out.problems.append(
            f"the agent used {pct} % of a core over the {now.t - held.t:.0f} s partition "
            f"(bound {PARTITION_CPU_BOUND:g} %): a loop spinning while paho thinks it is connected"
        )


def partition(hall: Hall, rng: random.Random, scale: float, out: Outcome) -> None:
    """The LAN between device and broker stops forwarding for ``15·scale`` s (no RST, no
    FIN), then heals; pads rate throughout the first half, then the device waits."""
    dev = hall.add_window("win-01", ("A01", "A02"))
    before = _warm_up(hall, dev, out)
    assert hall.proxy is not None
    hall.proxy.hold()
    held = dev.agent.sample()
    hall.faults += 1
    outage = 15 * scale
    time.sleep(outage / 2)
    hall.stop_rating()
    t0 = time.monotonic()
    time.sleep(outage / 2)
    out.wait_cpu_pct = _cpu(hall, dev, t0 + 1, time.monotonic())
    _partition_cpu(dev, held, out)
    hall.proxy.pass_()
    _recovered(hall, time.monotonic(), out)
    hall.rate_everywhere()
    time.sleep(1)
    _finish(hall, out, dev, before)


def link_down(hall: Hall, rng: random.Random, scale: float, out: Outcome) -> None:
    """The link drops hard (RST) and refuses connections for ``10·scale`` s: the device
    reconnects over and over; it must neither spin nor lose anything."""
    dev = hall.add_window("win-01", ("A01", "A02"))
    before = _warm_up(hall, dev, out)
    assert hall.proxy is not None
    hall.proxy.drop()
    hall.faults += 1
    outage = 10 * scale
    time.sleep(outage / 2)
    hall.stop_rating()
    t0 = time.monotonic()
    time.sleep(outage / 2)
    out.wait_cpu_pct = _cpu(hall, dev, t0 + 1, time.monotonic())
    hall.proxy.pass_()
    _recovered(hall, time.monotonic(), out)
    _finish(hall, out, dev, before)


def latency(hall: Hall, rng: random.Random, scale: float, out: Outcome) -> None:
    """300 ms added each way between device and broker for ``10·scale`` s while pads rate;
    a pad's ack must not wait for the network (it follows the local commit, docs/pads.md)."""
    dev = hall.add_window("win-01", ("A01", "A02"))
    before = _warm_up(hall, dev, out)
    assert hall.proxy is not None
    hall.proxy.delay(0.3)
    hall.faults += 1
    time.sleep(10 * scale)
    hall.proxy.pass_()
    _recovered(hall, time.monotonic(), out)
    _finish(hall, out, dev, before)


def faketime_lib() -> str | None:
    # The MT build guards libfaketime's own state with a lock: the agent has many threads.
    for lib_dir in (
        "/usr/lib/x86_64-linux-gnu/faketime",
        "/usr/lib/aarch64-linux-gnu/faketime",
        "/usr/lib/faketime",
    ):
        for name in ("libfaketimeMT.so.1", "libfaketime.so.1"):
            path = os.path.join(lib_dir, name)
            if os.path.exists(path):
                return path
    return None


def clock_steps(hall: Hall, rng: random.Random, scale: float, out: Outcome) -> None:
    """The device's wall clock steps while pads rate: a year back (RTC lost), forward by two
    days, back to the real time (NTP corrects it). libfaketime (LD_PRELOAD) reads the offset
    from a file the test rewrites; monotonic clocks are left alone, as a real step leaves
    them (clock_gettime(2): CLOCK_MONOTONIC is not affected by discontinuous jumps)."""
    lib = faketime_lib()
    if lib is None:
        raise RuntimeError("libfaketime is not installed (apt-get install faketime)")
    offset = hall.workdir / "faketime.rc"
    offset.write_text("+0\n")
    env = {
        "LD_PRELOAD": lib,
        "FAKETIME_TIMESTAMP_FILE": str(offset),
        "FAKETIME_CACHE_DURATION": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }
    dev = hall.add_window("win-01", ("A01", "A02"), env=env)
    before = _warm_up(hall, dev, out)
    for step in ("-365d", "+0", "+2d", "-1h", "+0"):
        offset.write_text(step + "\n")
        hall.faults += 1
        time.sleep(3 * scale)
    # A pad's resends straddling a forward step (NTP correcting a clock two days slow): the
    # copies of one frame must still be recognised as copies (docs/pads.md: record once).
    hall.stop_rating()
    pad = dev.pads[0]
    offset.write_text("-2d\n")
    time.sleep(1.5)  # libfaketime re-reads the offset every second
    pad.command("drop-acks 4")  # the first four acks are lost on the line: the pad resends
    rater = threading.Thread(target=pad.rate)
    rater.start()
    time.sleep(0.3)  # the first copy is committed at the slow time
    offset.write_text("+0\n")
    hall.faults += 1
    rater.join(20)
    _recovered(hall, time.monotonic(), out)
    _finish(hall, out, dev, before)
    with contextlib.closing(hall.open_store()) as store:
        rows = store.query("SELECT at, clock FROM events WHERE device = 'win-01'")
    years = sorted({str(at)[:4] for at, _ in rows})
    out.extra["years_stamped"] = ",".join(years)


def hostile_pad(hall: Hall, rng: random.Random, scale: float, out: Outcome) -> None:
    """A third pad port carries noise and well-formed nonsense (valid CRC, unknown commands,
    out-of-range levels, short payloads) at full speed for ``10·scale`` s, and the real pads'
    simulators inject garbage, bad CRCs and half frames between their ratings."""
    from agent.windows.simulator import build_frame

    dev = hall.add_window("win-01", ("A01", "A02", "A03"))
    hostile = dev.pads.pop()  # A03's port is written raw below; no ratings from it
    hostile.close()
    before = _warm_up(hall, dev, out)
    log_before = dev.agent.log.stat().st_size
    port = hall.workdir / "tty" / "win-01-A03-pad"
    fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    frames = [
        build_frame(1, 0x10, 0, bytes([9, 0, 0, 0, 0])),  # level 9
        build_frame(1, 0x10, 1, b"\x05"),  # short payload
        build_frame(1, 0x7F, 2, b"what"),  # unknown command
        build_frame(1, 0x20, 3, "张三\x00".encode()),  # LOGIN not ASCII
        build_frame(1, 0x30, 4, b""),  # HEARTBEAT without status
        build_frame(9, 0x10, 5, bytes([5, 0, 0, 0, 0])),  # an address nobody configured
    ]
    hall.faults += 1
    end = time.monotonic() + 10 * scale
    sent = 0
    while time.monotonic() < end:
        for pad in dev.pads:
            pad.command(rng.choice(("garbage 40", "badcrc", "truncate")))
        burst = b"".join(rng.choice(frames) for _ in range(50))
        burst += bytes(rng.randrange(256) for _ in range(200))
        with contextlib.suppress(BlockingIOError):
            sent += os.write(fd, burst)
        time.sleep(0.01)
    os.close(fd)
    out.extra["hostile_kb"] = sent // 1024
    log_growth = (dev.agent.log.stat().st_size - log_before) / 2**20
    out.extra["agent_log_growth_mb"] = round(log_growth, 2)
    # A rate-limited log says "N bad frames" now and then; one line per bad frame at line
    # speed fills a disk (and journald's rate limit drops the useful lines with it).
    if log_growth > 1:
        out.problems.append(f"agent log grew {log_growth:.1f} MB under hostile pad bytes")
    if not dev.agent.alive():
        out.problems.append("the agent died on hostile pad bytes")
    _recovered(hall, time.monotonic(), out)
    _finish(hall, out, dev, before)


def _pub(port: int, topic: str, payload: bytes, qos: int = 1) -> None:
    subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", str(qos), "-t", topic, "-s"],
        input=payload,
        timeout=20,
        capture_output=True,
    )


def hostile_mqtt(hall: Hall, rng: random.Random, scale: float, out: Outcome) -> None:
    """A rogue publisher (``mosquitto_pub``) sends the collector invalid JSON, deeply nested
    JSON, oversized payloads (QoS 0 and 1), a batch for another device's topic and a reused
    event id with different content, while a real window device rates."""
    dev = hall.add_window("win-01", ("A01", "A02"))
    before = _warm_up(hall, dev, out)
    port = hall.broker.port
    evil = "hall/jiedong/evil-01/events"
    event = {
        "id": "0193a5c2-0000-7000-8000-000000000001",
        "seq": 1,
        "type": "device.test",
        "at": "2026-11-26T09:12:03.120+08:00",
        "clock": "synced",
        "device": "evil-01",
        "site": "jiedong",
        "data": {"note": "first"},
    }
    good = {"v": 1, "device": "evil-01", "site": "jiedong", "events": [event]}
    conflict = json.loads(json.dumps(good))
    conflict["events"][0]["data"]["note"] = "second, same id"
    payloads: list[tuple[bytes, int]] = [
        (b"{not json", 1),
        (b"[" * 100_000 + b"]" * 100_000, 1),
        (b'{"v":1,"events":' + b"[" * 50_000 + b"]" * 50_000 + b"}", 1),
        (json.dumps(good).encode(), 1),
        (json.dumps(conflict).encode(), 1),
        (json.dumps({**good, "device": "win-01"}).encode(), 1),
        (b"x" * (3 << 20), 0),
        (b"\xff\xfe\x00garbage", 1),
    ]
    hall.faults += 1
    end = time.monotonic() + 10 * scale
    published = 0
    while time.monotonic() < end:
        for payload, qos in payloads:
            _pub(port, evil, payload, qos)
            published += 1
    out.extra["hostile_messages"] = published
    assert hall.collector is not None
    if not hall.collector.alive():
        out.problems.append("the collector died on hostile MQTT payloads")
    coll = hall.sampler.usage["collector"]
    out.extra["collector_peak_rss_mb"] = round(coll.peak_rss_mb(), 1)
    _recovered(hall, time.monotonic(), out)
    _finish(hall, out, dev, before)
    with contextlib.closing(hall.open_store()) as store:
        n, size = store.query(
            "SELECT count(*), coalesce(sum(length(payload)), 0) FROM rejected "
            "WHERE device = 'evil-01'"
        )[0]
        stored = store.query("SELECT data FROM events WHERE device = 'evil-01'")
        # rejected_counts counts every reject, also beyond the hourly budget that rejected
        # keeps whole (docs/sync.md "Rejected inputs"): the conflict cannot hide there.
        conflicts = store.query(
            "SELECT coalesce(sum(count), 0) FROM rejected_counts "
            "WHERE device = 'evil-01' AND reason = %s",
            (CONFLICT,),
        )[0][0]
    out.extra["rogue_rejected_rows"] = n
    out.extra["rogue_rejected_mb"] = round(int(size) / 2**20, 1)  # what one rogue costs the store
    out.extra["rogue_conflicts"] = int(conflicts)
    if len(stored) != 1:
        out.problems.append(f"rogue event id stored {len(stored)} times, expected once")
    elif _json(stored[0][0]) != event["data"]:
        # The first content stays: a reused id must not overwrite what was stored under it.
        out.problems.append(f"rogue event id stored as {stored[0][0]!r}, not its first content")
    # docs/topics.md: an id stored with other content is rejected as a conflict (in the ack
    # and in rejected), not acked as a resend; ON CONFLICT DO NOTHING alone would keep one
    # row and ack the second content as stored, which the device would then drop.
    if not conflicts:
        out.problems.append("the reused event id with other content was not counted a conflict")


# --- one device against the others (docs/sync.md "Fairness and isolation") -------------------

ISOLATION_DEVICES = ("win-01", "win-02", "win-03", "win-04")
# A p99 of a few milliseconds doubles on scheduling noise alone (two cores shared by four
# agents, their pads, the broker, the collector and this process): the bound is twice the
# baseline's p99 or the baseline plus 50 ms, whichever is larger. A device held up behind
# another's refused batch waits its 1 s retry or its 5 s resend, far beyond either.
ISOLATION_FLOOR_MS = 50.0


def _isolation_hall(hall: Hall, out: Outcome) -> tuple[list[Device], AckSpy]:
    """Four window devices of one pad each, rating, and a spy timing the centre's acks."""
    devs = [hall.add_window(name, ("A01",)) for name in ISOLATION_DEVICES]
    for dev in devs:
        if not hall.wait_connected(dev, 30):
            out.problems.append(f"{dev.name} never came online")
    spy = AckSpy(hall.broker.port, "jiedong", list(ISOLATION_DEVICES)).start()
    hall.cleanups.append(spy.close)
    hall.rate_everywhere()
    time.sleep(2)
    return devs, spy


def _compare_acks(
    out: Outcome,
    spy: AckSpy,
    others: set[str],
    base: tuple[float, float],
    fault: tuple[float, float],
) -> None:
    """The other devices' ack p99 during the fault against their own before it."""
    before = spy.latencies(others, *base)
    during = spy.latencies(others, *fault)
    b99, f99 = p99(before), p99(during)
    out.extra["ack_samples_baseline"] = len(before)
    out.extra["ack_samples_fault"] = len(during)
    if b99 is None or f99 is None or len(before) < 20 or len(during) < 20:
        out.problems.append(
            f"too few acks of {sorted(others)} to compare: {len(before)} before the fault, "
            f"{len(during)} during it"
        )
        return
    bound = max(2 * b99, b99 + ISOLATION_FLOOR_MS)
    out.extra["others_ack_p50_baseline_ms"] = round(sorted(before)[len(before) // 2], 1)
    out.extra["others_ack_p99_baseline_ms"] = round(b99, 1)
    out.extra["others_ack_p50_fault_ms"] = round(sorted(during)[len(during) // 2], 1)
    out.extra["others_ack_p99_fault_ms"] = round(f99, 1)
    out.extra["others_ack_p99_ratio"] = round(f99 / b99, 2) if b99 > 0 else None
    out.extra["others_ack_p99_bound_ms"] = round(bound, 1)
    if f99 > bound:
        out.problems.append(
            f"the other devices' ack p99 rose from {b99:.1f} ms to {f99:.1f} ms during the "
            f"fault (bound {bound:.1f} ms)"
        )


def _refuse_device(hall: Hall, device: str, on: bool) -> None:
    """A trigger refusing every event of one device: an SQLite BEFORE INSERT trigger, a
    PostgreSQL trigger function (a DBA's rule gone wrong for one device's data)."""
    if hall.store_kind == "sqlite":
        _sqlite_exec(
            hall,
            f"CREATE TRIGGER fault_refuse_device BEFORE INSERT ON events WHEN NEW.device = "
            f"'{device}' BEGIN SELECT RAISE(ABORT, 'refused by the fault test'); END"
            if on
            else "DROP TRIGGER fault_refuse_device",
        )
    elif on:
        _pg_exec(
            hall,
            "CREATE FUNCTION fault_refuse_device() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF NEW.device = '{device}' THEN RAISE EXCEPTION 'refused by the fault test'; "
            "END IF; RETURN NEW; END $$",
        )
        _pg_exec(
            hall,
            "CREATE TRIGGER fault_refuse_device BEFORE INSERT ON events FOR EACH ROW "
            "EXECUTE FUNCTION fault_refuse_device()",
        )
    else:
        _pg_exec(hall, "DROP TRIGGER fault_refuse_device ON events")
        _pg_exec(hall, "DROP FUNCTION fault_refuse_device()")


def device_refused(hall: Hall, rng: random.Random, scale: float, out: Outcome) -> None:
    """Four window devices rate; after a ``10·scale`` s baseline the store refuses every event
    of win-02 alone for ``10·scale`` s, then takes them again. The others' ack p99 must stay
    within twice their baseline's (or +50 ms); win-02 must drain once the trigger is gone."""
    refused = "win-02"
    devs, spy = _isolation_hall(hall, out)
    others = {d.name for d in devs} - {refused}
    t_base = time.monotonic()
    time.sleep(10 * scale)
    t_fault = time.monotonic()
    _refuse_device(hall, refused, on=True)
    hall.faults += 1
    time.sleep(10 * scale)
    t_end = time.monotonic()
    _refuse_device(hall, refused, on=False)
    t_back = time.monotonic()
    # The trigger really refused: no ack for win-02 from half a second into the fault (its
    # events committed just before it may be acked then) until the lift.
    acked_during = spy.acks(refused, t_fault + 0.5, t_end)
    out.extra["refused_acked_during_fault"] = acked_during
    if acked_during:
        out.problems.append(f"{refused} had {acked_during} events acked while refused")
    dev = hall.devices[refused]
    out.extra["refused_pending_at_lift"] = dev.pending()
    hall.stop_rating()
    while dev.pending() and time.monotonic() - t_back < DRAIN_BOUND_S * 2:
        time.sleep(0.05)
    if dev.pending():
        out.problems.append(f"{refused} not drained {DRAIN_BOUND_S * 2:.0f} s after the lift")
    else:
        out.extra["refused_drain_s"] = round(time.monotonic() - t_back, 2)
    _recovered(hall, t_back, out)
    # Compared once everything is acked: an event held up by the fault counts in full.
    _compare_acks(out, spy, others, (t_base, t_fault), (t_fault, t_end))
    _finish(hall, out, None, None)


# One client sending invalid 100 kB payloads grew the store by 20 MiB/s before the budget
# (docs/sync.md "Rejected inputs"): 200 a second is that flood, a compromised device on a LAN.
FLOOD_BYTES = 100_000
FLOOD_PER_S = 200


class _Flood:
    """A client with a device's account publishing one invalid payload at QoS 1 on the
    device's own uplink topic, ``FLOOD_PER_S`` a second; ``sent`` counts those the broker
    acknowledged (PUBACK), i.e. took for delivery to the collector."""

    def __init__(self, port: int, topic: str, payload: bytes):
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

        self.client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"fault-flood-{port}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.max_inflight_messages_set(20)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.topic, self.payload = topic, payload
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flood", daemon=True)

    def _run(self) -> None:
        infos: list[Any] = []
        t0 = time.monotonic()
        n = 0
        while not self._stop.is_set():
            infos.append(self.client.publish(self.topic, self.payload, qos=1))
            n += 1
            # Paced, not as fast as Python can: the rate of a hostile device on the LAN.
            self._stop.wait(max(0.0, t0 + n / FLOOD_PER_S - time.monotonic()))
            done = [i for i in infos if i.is_published()]
            self.sent += len(done)
            infos = [i for i in infos if not i.is_published()]
        for info in infos:
            info.wait_for_publish(10)
            self.sent += info.is_published()

    def start(self) -> _Flood:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(20)
        self.client.disconnect()
        stop_loop(self.client)


def _store_bytes(hall: Hall) -> int:
    """What the store takes on disk: SQLite's file and its WAL; PostgreSQL's tables of the
    hall's schema with their indexes and TOAST."""
    if hall.store_kind == "sqlite":
        db = hall.store_dir / "hall.db"
        return sum(p.stat().st_size for p in (db, db.with_name("hall.db-wal")) if p.exists())
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as c:
        row = c.execute(
            "SELECT coalesce(sum(pg_total_relation_size(t.oid)), 0) FROM pg_class t "
            "JOIN pg_namespace n ON n.oid = t.relnamespace "
            "WHERE n.nspname = %s AND t.relkind IN ('r', 'm')",
            (hall.pg_schema,),
        ).fetchone()
    return int(row[0]) if row else 0


def device_flood(hall: Hall, rng: random.Random, scale: float, out: Outcome) -> None:
    """Four window devices rate; after a ``10·scale`` s baseline a client with win-04's
    account floods win-04's uplink topic with invalid ~100 kB payloads (QoS 1, 200 a second)
    for ``10·scale`` s while the real win-04 rates too. The others' ack p99 must stay within
    twice their baseline's (or +50 ms), the store may grow by about the hourly budget of kept
    rejects of one device (``central.rejected_kept_per_hour``), and every flood message the
    broker took must be counted in ``rejected_counts``."""
    from central.config import load_central_config
    from central.validation import MAX_REJECT_PAYLOAD

    hostile = "win-04"
    devs, spy = _isolation_hall(hall, out)
    others = {d.name for d in devs} - {hostile}
    kept_per_hour = load_central_config(hall.central_conf).central.rejected_kept_per_hour
    # Random text does not compress: PostgreSQL's TOAST cannot make the kept rows small.
    payload = b"{" + base64.b64encode(rng.randbytes(FLOOD_BYTES * 3 // 4))[: FLOOD_BYTES - 1]
    t_base = time.monotonic()
    time.sleep(10 * scale)
    size_before = _store_bytes(hall)
    t_fault = time.monotonic()
    flood = _Flood(hall.broker.port, f"hall/jiedong/{hostile}/events", payload).start()
    hall.faults += 1
    time.sleep(10 * scale)
    t_end = time.monotonic()
    flood.stop()
    out.extra["flood_messages"] = flood.sent
    out.extra["flood_mb"] = round(flood.sent * len(payload) / 2**20, 1)

    def counted() -> tuple[int, int, int, int]:
        with contextlib.closing(hall.open_store()) as store:
            row = store.query(
                "SELECT coalesce(sum(count), 0), coalesce(sum(bytes), 0), "
                "coalesce(sum(kept), 0), count(DISTINCT hour) FROM rejected_counts "
                f"WHERE device = '{hostile}'"
            )[0]
        return int(row[0]), int(row[1]), int(row[2]), int(row[3])

    # The collector works through what the broker took; wait until the count stops moving.
    deadline, last, n = time.monotonic() + DRAIN_BOUND_S, None, (0, 0, 0, 0)
    while time.monotonic() < deadline:
        n = counted()
        if n[0] >= flood.sent or n == last:
            break
        last = n
        time.sleep(1)
    count, size, kept, hours = n
    growth = _store_bytes(hall) - size_before
    # The budget: per device and hour of the hall, kept_per_hour inputs kept whole (cut at
    # MAX_REJECT_PAYLOAD); beyond them one counted row per reason. A flood crossing an hour
    # boundary has the budget of both hours.
    budget = max(hours, 1) * kept_per_hour * min(len(payload), MAX_REJECT_PAYLOAD)
    # Allowed: twice the budget plus 2 MiB. SQLite holds a page in the WAL and again in the
    # file once checkpointed (the WAL is reused, not truncated); PostgreSQL's TOAST chunks
    # and the dead versions of the counted rows' upserts; both take the legitimate
    # devices' rows of the same stretch. Without the budget the flood is ~60 times this.
    allowed = 2 * budget + 2 * 2**20
    out.extra.update(
        rejected_kept_per_hour=kept_per_hour,
        rejected_counted=count,
        rejected_kept=kept,
        store_growth_mb=round(growth / 2**20, 2),
        store_budget_mb=round(budget / 2**20, 2),
        store_growth_to_budget=round(growth / budget, 2) if budget else None,
    )
    if growth > allowed:
        out.problems.append(
            f"the store grew {growth / 2**20:.1f} MiB under the flood; budget "
            f"{budget / 2**20:.1f} MiB (allowed {allowed / 2**20:.1f} MiB)"
        )
    if kept != min(count, max(hours, 1) * kept_per_hour):
        out.problems.append(f"{kept} flood inputs kept whole, expected the first {kept_per_hour}")
    if count != flood.sent:
        assert hall.collector is not None
        # The collector may refuse a message its queue bound has no room for (logged); it
        # never takes one without counting it.
        if count > flood.sent or "queue bound reached" not in hall.collector.log_text():
            out.problems.append(
                f"rejected_counts has {count} inputs of {hostile}; the broker took {flood.sent}"
            )
    if size != count * len(payload):
        out.problems.append(f"rejected_counts.bytes {size}, expected {count} × {len(payload)}")
    _recovered(hall, time.monotonic(), out)
    _compare_acks(out, spy, others, (t_base, t_fault), (t_fault, t_end))
    _finish(hall, out, None, None)


# --- a weekend offline ------------------------------------------------------------------------


def _faketime_env(offset_file: Path) -> dict[str, str]:
    """libfaketime preloaded with its offset in ``offset_file`` (re-read every second);
    monotonic clocks stay real, as a real wall-clock step leaves them (clock_steps)."""
    lib = faketime_lib()
    if lib is None:
        raise RuntimeError("libfaketime is not installed (apt-get install faketime)")
    return {
        "LD_PRELOAD": lib,
        "FAKETIME_TIMESTAMP_FILE": str(offset_file),
        "FAKETIME_CACHE_DURATION": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


def _set_clock(offset_file: Path, moment: datetime) -> None:
    """Make the preloaded clock read ``moment`` now (an offset in seconds from real time)."""
    offset_file.write_text(f"{round(moment.timestamp() - time.time()):+d}\n")


def _month_end_weekend(tz: ZoneInfo, now: datetime) -> date:
    """The latest month's last day that is a Monday and whose Tuesday morning is past:
    Saturday to Tuesday then holds a day of each month. 2026-11-30 on the day this was
    written. The centre keeps the host's true clock, so the weekend must be over."""
    day = now.astimezone(tz).date()
    while True:
        day = day.replace(day=1) - timedelta(days=1)  # the previous month's last day
        tuesday = datetime.combine(day + timedelta(days=1), dtime(9, 0), tz)
        if day.weekday() == 0 and tuesday < now:
            return day


def _filed_day(value: Any) -> date | None:
    """The hall's date of a view's ``filed_at``: SQLite's text in the hall's offset
    (2026-11-30T17:35:00.000+08:00), PostgreSQL's timestamp of the hall's wall time."""
    if isinstance(value, str):
        return date.fromisoformat(value[:10])
    return value.date() if isinstance(value, datetime) else None


def backlog_3day(hall: Hall, rng: random.Random, scale: float, out: Outcome) -> None:
    """A window device with a synced clock loses its link on a Saturday morning at a month's
    end and records over the weekend: Saturday, Sunday, Monday into Tuesday past midnight (the
    new month), Tuesday morning; then the link comes back and the three days' backlog drains.
    Every event must be filed on its own day (its ``at`` in the hall's timezone): the views'
    ``filed_at`` and the monthly ratings report, November's in November. The device's clock is
    libfaketime's (an offset re-read every second); the collector and the store keep the
    host's clock, days later, as on the real Tuesday the backlog arrives late."""
    from central.config import load_central_config
    from central.reports.month import Month
    from central.reports.ratings import compute
    from central.reports.source import month_events
    from central.store import stored_time

    tz = ZoneInfo(load_central_config(hall.central_conf).central.timezone)
    monday = _month_end_weekend(tz, datetime.now(tz))
    saturday, tuesday = monday - timedelta(days=2), monday + timedelta(days=1)
    out.extra["weekend"] = f"{saturday}..{tuesday}"
    offset = hall.workdir / "faketime.rc"
    _set_clock(offset, datetime.combine(saturday, dtime(9, 0), tz))
    dev = hall.add_window("win-01", ("A01", "A02"), env=_faketime_env(offset))
    before = _warm_up(hall, dev, out)  # Saturday morning, online: delivered at once
    assert hall.proxy is not None
    hall.proxy.drop()
    hall.faults += 1
    time.sleep(3 * scale)  # Saturday, offline
    steps = [
        datetime.combine(saturday + timedelta(days=1), dtime(10, 0), tz),  # Sunday
        datetime.combine(monday, dtime(16, 0), tz),
        # Monday evening into Tuesday: the ratings straddle midnight and the month's end
        # (libfaketime takes up to a second to read the new offset: 4 s before midnight).
        datetime.combine(tuesday, dtime(0, 0), tz) - timedelta(seconds=4),
        datetime.combine(tuesday, dtime(8, 30), tz),  # Tuesday morning, still offline
    ]
    for moment in steps:
        _set_clock(offset, moment)
        hall.faults += 1
        straddles = moment.date() == monday and moment.hour == 23
        # Each day needs ratings of its own: libfaketime takes up to a second to read the
        # new offset and the pads rate every few hundred ms, so no stretch is under 4 s.
        time.sleep(max(8.0, 3 * scale) if straddles else max(4.0, 3 * scale))
    offline = dev.pending()
    out.extra["backlog_events"] = offline
    hall.proxy.pass_()  # the link is back on Tuesday morning
    _recovered(hall, time.monotonic(), out)
    hall.rate_everywhere()  # and the hall works on, online, on Tuesday
    time.sleep(2)
    _finish(hall, out, dev, before)

    with contextlib.closing(hall.open_store()) as store:
        events = {
            str(i): stored_time(at)
            for i, at in store.query(
                "SELECT id, at FROM events WHERE device = 'win-01' AND type = 'rating.submitted'"
            )
        }
        filed = {str(i): f for i, f in store.query("SELECT id, filed_at FROM ratings")}
        days: dict[date, int] = {}
        for event_id, at in events.items():
            assert at is not None
            day = at.astimezone(tz).date()
            days[day] = days.get(day, 0) + 1
            filed_day = _filed_day(filed.get(event_id))
            if filed_day != day:
                out.problems.append(
                    f"rating {event_id} at {at.astimezone(tz)} filed on {filed_day}"
                )
        out.extra["ratings_per_day"] = {str(d): n for d, n in sorted(days.items())}
        # The Monday-evening stretch really crossed midnight: ratings in the month's last
        # minute and in the next month's first, a few seconds apart.
        local = [at.astimezone(tz) for at in events.values() if at is not None]
        last_minute = sum(1 for t in local if t.date() == monday and t.hour == 23)
        first_minute = sum(1 for t in local if t.date() == tuesday and t.hour == 0)
        out.extra["ratings_around_midnight"] = f"{last_minute}+{first_minute}"
        if not last_minute or not first_minute:
            out.problems.append(
                f"the ratings did not straddle midnight {monday}/{tuesday}: "
                f"{last_minute} before, {first_minute} after"
            )
        for d in (saturday, saturday + timedelta(days=1), monday, tuesday):
            if not days.get(d):
                out.problems.append(f"no rating recorded on {d} (the clock steps did not take)")
        # The monthly reports read each day where it was: nothing of November in December.
        for month in {Month(d.year, d.month, tz) for d in days}:
            report = compute(store, month, "jiedong")
            want = {
                d: n for d, n in days.items() if month.contains(datetime.combine(d, dtime(12), tz))
            }
            got = {d: t.total for d, t in report.per_day.items()}
            if got != want:
                out.problems.append(f"report {month.label} per day {got}, expected {want}")
            suspect = [e.id for e in month_events(store, month, ("rating.submitted",)) if e.suspect]
            if suspect:
                out.problems.append(f"{len(suspect)} ratings filed by received_at in {month.label}")


def _punches(hall: Hall) -> int:
    with contextlib.closing(hall.open_store()) as store:
        rows = store.query("SELECT count(*) FROM events WHERE type = 'attendance.punch'")
    return int(rows[0][0])


def _wait_punch(hall: Hall, out: Outcome, timeout: float = 90.0) -> None:
    """Wait until the kiosk has recognised someone (model loading is slow on a busy CPU)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if _punches(hall):
                return
        time.sleep(0.25)
    out.problems.append(f"no punch reached the centre within {timeout:.0f} s of the start")


# What the kiosk logs (agent/kiosk/recognition.py, drivers/camera.py) when its recognition child
# has the first frame of the video in hand (models loaded, camera open), and when the camera
# file ended (a file camera does not loop: every frame was taken).
KIOSK_FIRST_FRAME = re.compile(rb"\[recognition\]: camera .*: faces from")
KIOSK_VIDEO_END = re.compile(rb"\[recognition\]: camera .*: end of file after")


def _log_size(dev: Device) -> int:
    try:
        return dev.agent.log.stat().st_size
    except OSError:
        return 0


def _wait_log(dev: Device, since: int, pattern: re.Pattern[bytes], timeout: float) -> bool:
    """Wait until the agent's log shows ``pattern`` after byte offset ``since``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), open(dev.agent.log, "rb") as f:
            f.seek(since)
            if pattern.search(f.read()):
                return True
        time.sleep(0.25)
    return False


def _kiosk_growth_span(hall: Hall, dev: Device, out: Outcome, since: int) -> tuple[int, int] | None:
    """Let the (re)started kiosk work through the whole video and return its RSS and fds
    from the start of that work, for _finish's growth figures (its leak bounds).

    Both samples are of the same kiosk lifetime (after its last restart: growth across a
    restart is a new process, not a leak) and summed over the agent and its descendants
    (Proc.sample): the models, frames and camera live in the recognition child, not in the
    process the test started. The first sample is taken 2 s into the video (after the first
    frames allocated the models' buffers), the second after the camera file ended."""
    if not _wait_log(dev, since, KIOSK_FIRST_FRAME, 90):
        out.problems.append("the restarted kiosk had no camera frame within 90 s")
        return None
    time.sleep(2)
    before = _sample_now(hall, dev)
    if not _wait_log(dev, since, KIOSK_VIDEO_END, 90):
        out.problems.append("the restarted kiosk did not get through its video within 90 s")
    return before


def _kiosk_worked(hall: Hall, out: Outcome) -> None:
    """The kiosk really recognised someone: at least one punch reached the centre."""
    with contextlib.closing(hall.open_store()) as store:
        kinds = dict(store.query("SELECT type, count(*) FROM events GROUP BY type"))
    out.extra["punches"] = kinds.get("attendance.punch", 0)
    if not out.extra["punches"]:
        out.problems.append(f"no punch stored from the kiosk run: {kinds}")


def kiosk_killpg(hall: Hall, rng: random.Random, scale: float, out: Outcome) -> None:
    """A kiosk agent on a camera file gets SIGTERM for its whole process group (systemd's
    KillMode=control-group, Ctrl-C, ``timeout``) ``2·scale`` times; each time it must exit
    cleanly within 15 s with no process left behind, and start again."""
    from tests.faults.kiosk import add_enrolled_kiosk

    dev = add_enrolled_kiosk(hall)
    if not hall.wait_connected(dev, 60):
        out.problems.append("kiosk never came online")
    _wait_punch(hall, out)
    for _ in range(max(1, round(2 * scale))):
        time.sleep(rng.uniform(1, 4))
        pids = dev.agent.tree()
        out.extra["kiosk_processes"] = len(pids)
        t0 = time.monotonic()
        dev.agent.killpg(signal.SIGTERM)
        hall.faults += 1
        rc = dev.agent.wait(15)
        out.extra["stop_s"] = round(time.monotonic() - t0, 2)
        if rc is None:
            out.problems.append("kiosk did not exit within 15 s of a process-group SIGTERM")
            dev.agent.reap_group()
            dev.agent.wait(5)
        elif rc != 0:
            out.problems.append(f"kiosk exited {rc} after SIGTERM")
        deadline = time.monotonic() + 5
        from tests.faults.procs import is_zombie_or_gone

        while time.monotonic() < deadline and not all(is_zombie_or_gone(p) for p in pids):
            time.sleep(0.1)
        left = [p for p in pids if not is_zombie_or_gone(p)]
        if left:
            out.problems.append(f"processes left after the kiosk stopped: {left}")
            dev.agent.reap_group()
        since = _log_size(dev)
        dev.agent.start()
    before = _kiosk_growth_span(hall, dev, out, since)
    _recovered(hall, time.monotonic(), out)
    _finish(hall, out, dev, before)
    _kiosk_worked(hall, out)


def kiosk_parent_killed(hall: Hall, rng: random.Random, scale: float, out: Outcome) -> None:
    """SIGKILL of the kiosk agent alone: its recognition child must notice and exit."""
    from tests.faults.kiosk import add_enrolled_kiosk
    from tests.faults.procs import is_zombie_or_gone

    dev = add_enrolled_kiosk(hall)
    if not hall.wait_connected(dev, 60):
        out.problems.append("kiosk never came online")
    _wait_punch(hall, out)
    pids = dev.agent.tree()
    children = pids[1:]
    out.extra["kiosk_processes"] = len(pids)
    dev.agent.signal(signal.SIGKILL)
    hall.faults += 1
    t0 = time.monotonic()
    while time.monotonic() - t0 < 15 and not all(is_zombie_or_gone(p) for p in children):
        time.sleep(0.1)
    left = [p for p in children if not is_zombie_or_gone(p)]
    out.extra["orphan_exit_s"] = None if left else round(time.monotonic() - t0, 2)
    if left:
        out.problems.append(f"recognition child(ren) {left} outlived their SIGKILLed parent 15 s")
    dev.agent.reap_group()
    dev.agent.wait(5)
    since = _log_size(dev)
    dev.agent.start()
    before = _kiosk_growth_span(hall, dev, out, since)
    _recovered(hall, time.monotonic(), out)
    _finish(hall, out, dev, before)
    _kiosk_worked(hall, out)


# --- the registry -----------------------------------------------------------------------------

Scenario = Callable[[Hall, random.Random, float, Outcome], None]

SCENARIOS: dict[str, Scenario] = {
    "baseline": baseline,
    "broker_down": broker_down,
    "collector_killed": collector_killed,
    "store_refuses": store_refuses,
    "store_read_only": store_read_only,
    "store_disk_full": store_disk_full,
    "device_disk_full": device_disk_full,
    "agent_kill_storm": agent_kill_storm,
    "partition": partition,
    "link_down": link_down,
    "latency": latency,
    "clock_steps": clock_steps,
    "hostile_pad": hostile_pad,
    "hostile_mqtt": hostile_mqtt,
    "device_refused": device_refused,
    "device_flood": device_flood,
    "backlog_3day": backlog_3day,
    "kiosk_killpg": kiosk_killpg,
    "kiosk_parent_killed": kiosk_parent_killed,
}
NEEDS_STORE_DISK = {"store_read_only", "store_disk_full"}
NEEDS_MOUNT = NEEDS_STORE_DISK | {"device_disk_full"}
KIOSK = {"kiosk_killpg", "kiosk_parent_killed"}
FAKETIME = {"clock_steps", "backlog_3day"}  # need libfaketime


def run_scenario(
    name: str,
    workdir: Path,
    *,
    seed: int = 0,
    scale: float = 1.0,
    store: str = "sqlite",
    pg_schema: str | None = None,
    sync: dict[str, Any] | None = None,
) -> Outcome:
    """Build a hall, run one scenario, tear everything down; the outcome says what happened."""
    workdir.mkdir(parents=True, exist_ok=True)
    out = Outcome(name, store, seed, scale)
    disk = None
    store_dir = None
    if name in NEEDS_STORE_DISK:
        if store != "sqlite":
            raise ValueError(f"{name} runs on the SQLite store (its file system is the fault)")
        disk = SmallDisk(workdir / "store-disk", 48)
        store_dir = disk.path
    hall = Hall(
        workdir,
        store=store,
        pg_schema=pg_schema,
        store_dir=store_dir,
        seed=seed,
        sync=sync,
        # The kiosk scenarios end with the face-data scan, which reads the broker's file too.
        broker_persistence=name in KIOSK,
    )
    hall.store_disk = disk
    if disk is not None:
        hall.cleanups.append(disk.close)
    try:
        hall.start()
        SCENARIOS[name](hall, random.Random(seed), scale, out)
        if name in KIOSK:  # no face data in the store, the broker's file, data dirs or logs
            out.problems += scan_hall(hall)
    finally:
        hall.close()
    # Read after close(): a thread that dies while its program shuts down counts too.
    _thread_deaths(hall, out)
    return out
