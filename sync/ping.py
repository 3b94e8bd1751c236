"""``hall-agent ping``: prove the path from this box to the central store, end to end.

Records N ``device.test`` events in the outbox (the same path as every real event), then waits
until the centre's acks have removed them: the uplink that delivers them is the running agent's
(another process sharing the outbox file) or, when none runs, one started here.
"""

from __future__ import annotations

import time

from agent.config import AgentConfig
from agent.outbox import Outbox


def run_ping(cfg: AgentConfig, outbox: Outbox, *, count: int, timeout: float, note: str) -> int:
    sent: dict[str, float] = {}
    for i in range(count):
        appended = outbox.append("device.test", {"note": f"{note} {i + 1}/{count}"})
        sent[appended.event["id"]] = time.monotonic()
    print(f"recorded {count} device.test events; waiting up to {timeout:.0f} s for acks")
    deadline = time.monotonic() + timeout
    rtts: list[float] = []
    while sent and time.monotonic() < deadline:
        for event_id in list(sent):
            if not outbox.contains(event_id):
                rtts.append(time.monotonic() - sent.pop(event_id))
        time.sleep(0.002)
    if sent:
        print(f"timeout: {len(sent)} of {count} events not acknowledged by the centre")
        return 1
    rtts.sort()
    print(
        f"{count} acked; p50 {rtts[len(rtts) // 2] * 1000:.1f} ms, "
        f"p95 {rtts[min(len(rtts) - 1, int(len(rtts) * 0.95))] * 1000:.1f} ms"
    )
    return 0
