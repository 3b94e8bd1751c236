"""``hall-agent ping``: prove the path from this box to the central store, end to end.

Records N ``device.test`` events in the outbox (the same path as every real event), one at a
time, and waits for the centre's ack to remove each before recording the next, so every
figure is one full round trip: outbox → broker → collector commit → ack → outbox delete.

Who delivers the events: the uplink holds an exclusive lock on ``<data_dir>/uplink.lock``
while it runs (agent/link/uplink.py). If the lock is held, a running agent shares this outbox file
and its uplink delivers ping's events (it polls the outbox every 20 ms for rows appended by
other processes); otherwise ping starts an uplink in this process for the duration, which
signs what it sends as the agent's would (docs/device-keys.md).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from agent.config import AgentConfig
from agent.link.lock import uplink_running
from agent.link.uplink import Uplink
from agent.outbox import Outbox
from agent.signing import start_signing
from contract import EventType, TestData, event_data

PING_MARGIN_S = 10.0


def default_timeout(cfg: AgentConfig) -> float:
    """How long ping waits for each ack unless told: long enough for one resend.

    A batch lost once (a collector restarting, a store refusing a write) is sent again after
    ``sync.ack_timeout_s``; a ping that gave up after one ack timeout failed exactly then.
    """
    return 2 * cfg.sync.ack_timeout_s + PING_MARGIN_S


def _percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


def run_ping(
    cfg: AgentConfig,
    outbox: Outbox,
    *,
    count: int,
    timeout: float | None,
    note: str,
    config: Path | None = None,
) -> int:
    """``timeout``: seconds to wait for the connection and for each ack (None: the default).
    ``config``: the config file, named in the advice printed on a time-out."""
    timeout = default_timeout(cfg) if timeout is None else timeout
    uplink: Uplink | None = None
    acked = threading.Event()
    if uplink_running(cfg.device.data_dir):
        print("an agent is running on this outbox; its uplink delivers the ping events")
    else:
        # Sending by itself, ping signs as the agent would (a key problem is its error).
        start_signing(cfg.device.data_dir, outbox, strict=True)
        uplink = Uplink(cfg, outbox, lambda: {"ping": {"state": "ok"}})
        uplink.add_ack_listener(lambda _ids: acked.set())
        uplink.start()
    try:
        result = measure(cfg, outbox, uplink, acked, count=count, timeout=timeout, note=note)
    except PingError as exc:
        print(f"timeout: {exc}")
        print(f"what to do: {advice(cfg, exc, beside_agent=uplink is None, config=config)}")
        return 1
    finally:
        if uplink is not None:
            uplink.stop()
    print(result.summary())
    return 0


class PingError(Exception):
    """The path did not work: not connected (``connected`` False), or an ack did not come in
    time (``connected`` True)."""

    def __init__(self, message: str, connected: bool):
        super().__init__(message)
        self.connected = connected


def advice(cfg: AgentConfig, exc: PingError, *, beside_agent: bool, config: Path | None) -> str:
    """The next step for a technician after a time-out: the broker, or the collector."""
    conf = f"-c {config} " if config is not None else ""
    if not exc.connected:
        return f"`hall-agent {conf}check --only broker` says why the broker is not reached"
    delivering = (
        "the running agent delivers them (journalctl -u hall-agent shows its connection); "
        if beside_agent
        else ""
    )
    return (
        f"{delivering}acks come from the central collector: is it running? On the collector's "
        "host: `systemctl status hall-central`, and `hall-central -c "
        f'/etc/hall-agent/central.toml devices` (the "last received" time of '
        f"{cfg.device.site}/{cfg.device.id} shows whether its events arrive)"
    )


@dataclass(frozen=True)
class PingResult:
    rtts: list[float]  # seconds, sorted
    total_s: float

    @property
    def p50(self) -> float:
        return _percentile(self.rtts, 0.5)

    @property
    def p95(self) -> float:
        return _percentile(self.rtts, 0.95)

    @property
    def rate(self) -> float:
        return len(self.rtts) / self.total_s if self.total_s > 0 else 0.0

    def summary(self) -> str:
        return (
            f"{len(self.rtts)} acked by the centre: p50 {self.p50 * 1000:.1f} ms, "
            f"p95 {self.p95 * 1000:.1f} ms, max {self.rtts[-1] * 1000:.1f} ms, "
            f"rate {self.rate:.0f}/s"
        )


def measure(
    cfg: AgentConfig,
    outbox: Outbox,
    uplink: Uplink | None,
    acked: threading.Event,
    *,
    count: int,
    timeout: float,
    note: str,
) -> PingResult:
    """Record ``count`` device.test events one after another; time each until its ack.

    ``timeout`` bounds the connection and each round trip (not the whole run)."""
    deadline = time.monotonic() + timeout
    if uplink is not None:
        # Connecting is not part of a round trip: wait for the link before the first event.
        while uplink.link is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if uplink.link is None or not uplink.link.connected.wait(
            max(0.0, deadline - time.monotonic())
        ):
            detail = uplink.link.last_error if uplink.link else uplink.lock_error
            raise PingError(
                f"not connected to {cfg.mqtt.host}:{cfg.mqtt.port} within {timeout:.0f} s "
                f"({detail or 'no answer'})",
                connected=False,
            )
    rtts: list[float] = []
    started = time.monotonic()
    for i in range(count):
        acked.clear()
        body = event_data(EventType.TEST, TestData(note=f"{note} {i + 1}/{count}"))
        appended = outbox.append(EventType.TEST, body)
        event_id = appended.event["id"]
        t0 = time.monotonic()
        deadline = t0 + timeout
        while outbox.contains(event_id):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PingError(
                    f"{count - i} of {count} events not acknowledged by the centre within "
                    f"{timeout:.0f} s (event {event_id} still pending)",
                    connected=True,
                )
            # In-process: woken by the uplink's ack listener; beside an agent: poll.
            acked.wait(min(remaining, 0.5 if uplink is not None else 0.002))
            acked.clear()
        rtts.append(time.monotonic() - t0)
    total = time.monotonic() - started
    rtts.sort()
    return PingResult(rtts, total)
