"""The centre's ack latency per device, seen from the broker, for the isolation scenarios.

A pad's own ack follows the device's local commit (docs/pads.md), so it says nothing about
the collector. What one device can cost another is the time from its batch reaching the
broker to the collector's ack: broker → collector lane → store commit → ack → broker. A spy
client subscribes to the watched devices' ``events`` and ``ack`` topics and times every event
id from the first batch that carried it to the ack naming it (a resent batch keeps the first
time, so a wait for the device's resend shows in full).

The spy sits on the broker's host, as the collector does; the flooded device's topic is not
watched (the spy would read the flood too and measure its own backlog).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from sync.paho_loop import stop_loop


@dataclass(frozen=True)
class AckSample:
    device: str
    sent: float  # monotonic time the spy first saw the event's batch
    ms: float  # until the spy saw its ack


def p99(values: list[float]) -> float | None:
    """The 99th percentile as ``_finish`` takes it (index ``int(n·0.99)`` of the sorted)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


class AckSpy:
    def __init__(self, port: int, site: str, devices: list[str], prefix: str = "hall"):
        self.topics = [f"{prefix}/{site}/{d}/{kind}" for d in devices for kind in ("events", "ack")]
        self._lock = threading.Lock()
        self._first: dict[str, float] = {}  # event id -> when its first batch was seen
        self.samples: list[AckSample] = []
        self._subscribed = threading.Event()
        self.client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"fault-ack-spy-{port}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_a: self._subscribed.set()
        self.port = port

    def start(self, timeout: float = 10.0) -> AckSpy:
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        # QoS 0: the spy must not slow the broker's delivery to the collector, and on
        # loopback nothing is lost; one missed sample would only shrink the sample.
        self.client.subscribe([(t, 0) for t in self.topics])
        if not self._subscribed.wait(timeout):
            raise RuntimeError("ack spy: no SUBACK from the hall's broker")
        return self

    def close(self) -> None:
        self.client.disconnect()
        stop_loop(self.client)

    def _on_message(self, _client: Any, _userdata: Any, msg: Any) -> None:
        now = time.monotonic()
        parts = msg.topic.split("/")
        if len(parts) != 4:
            return
        device, kind = parts[2], parts[3]
        try:
            body = json.loads(msg.payload)
        except ValueError:
            return
        if not isinstance(body, dict):
            return
        with self._lock:
            if kind == "events":
                for event in body.get("events") or []:
                    if isinstance(event, dict) and isinstance(event.get("id"), str):
                        self._first.setdefault(event["id"], now)
            elif kind == "ack":
                for event_id in body.get("ids") or []:
                    sent = self._first.pop(event_id, None)
                    if sent is not None:
                        self.samples.append(AckSample(device, sent, (now - sent) * 1000))

    def latencies(self, devices: set[str], t0: float, t1: float) -> list[float]:
        """Ack times (ms) of the events of ``devices`` first seen between t0 and t1."""
        with self._lock:
            return [s.ms for s in self.samples if s.device in devices and t0 <= s.sent < t1]

    def acks(self, device: str, t0: float, t1: float) -> int:
        """Events of ``device`` acked between t0 and t1 (whenever first seen)."""
        with self._lock:
            return sum(
                1 for s in self.samples if s.device == device and t0 <= s.sent + s.ms / 1000 < t1
            )
