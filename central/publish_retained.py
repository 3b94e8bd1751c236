"""Publish retained messages from a command and wait for the broker's word on each.

``hall-central roster publish`` and ``hall-central schedule publish`` both open a short-lived
link with the collector's account, publish retained at QoS 1 and report a missing or refusing
PUBACK as a one-line error (the running collector republishes both on its next connect anyway).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from central.config import CentralConfig
from sync.cli_common import CliError


def publish_retained(
    cfg: CentralConfig, what: str, messages: list[tuple[str, bytes]], timeout: float
) -> None:
    """Publish each (topic, payload) retained, one PUBACK at a time; CliError on failure.

    ``what`` names the command in errors, e.g. "roster publish"."""
    from sync.mqtt import MqttLink

    name = what.split()[0]
    link = MqttLink(cfg.mqtt, f"{cfg.central.id}-{name}-{os.getpid()}", name=name)
    link.start()
    try:
        if not link.connected.wait(timeout):
            raise CliError(
                f"{what}: not connected to {cfg.mqtt.host}:{cfg.mqtt.port} within "
                f"{timeout:.0f} s ({link.last_error or 'no answer'})"
            )
        acks: dict[int, Any] = {}
        acked = threading.Condition()

        def on_publish(_c: Any, _u: Any, mid: int, rc: Any, _p: Any) -> None:
            with acked:
                acks[mid] = rc
                acked.notify_all()

        link.client.on_publish = on_publish
        for topic, payload in messages:
            mid = link.publish(topic, payload, qos=1, retain=True).mid
            with acked:
                if not acked.wait_for(lambda mid=mid: mid in acks, timeout):
                    raise CliError(f"{what}: no PUBACK for {topic} within {timeout:.0f} s")
                rc = acks[mid]
            if getattr(rc, "is_failure", False):
                raise CliError(f"{what}: broker refused {topic}: {rc}")
    finally:
        link.stop()
