"""The collector's inbound queue (central/lanes.py): round-robin per device, parked lanes
retried alone, a down store probed by one lane at a time, bounds per lane and in all."""

from __future__ import annotations

import threading
import time

from central.lanes import Inbound, Lanes


def lanes(**over: float) -> Lanes:
    kw = {
        "lane_messages": 4,
        "lane_bytes": 1000,
        "total_bytes": 2500,
        "qos0_messages": 2,
        "qos0_bytes": 100,
        "retry_s": 0.2,
        "give_up_s": 5.0,
        **over,
    }
    return Lanes(**kw)  # type: ignore[arg-type]


def msg(device: str, n: int = 0, size: int = 10, qos: int = 1) -> Inbound:
    return Inbound(f"hall/s/{device}/events", bytes([n]) * size, qos, False, size, ("s", device))


def names(items: list[Inbound]) -> list[tuple[str, int]]:
    return [(i.lane[1], i.payload[0]) for i in items]


def test_a_group_takes_the_devices_in_turn_and_keeps_each_devices_order():
    q = lanes()
    for n in range(3):
        assert q.put(msg("flood", n))
    assert q.put(msg("a", 0)) and q.put(msg("b", 0)) and q.put(msg("a", 1))
    group = q.take(max_messages=4, max_bytes=10_000)
    # One message per device per round: a's first comes second, not after the flood.
    assert names(group) == [("flood", 0), ("a", 0), ("b", 0), ("flood", 1)]
    assert names(q.take(10, 10_000)) == [("a", 1), ("flood", 2)]


def test_a_parked_lane_is_left_out_of_groups_and_retried_alone():
    q = lanes()
    q.put(msg("bad", 0))
    q.put(msg("bad", 1))
    q.put(msg("good", 0))
    group = q.take(10, 10_000)
    assert names(group) == [("bad", 0), ("good", 0), ("bad", 1)]
    # The store refused bad's batches: back to the front of bad's lane, in order.
    assert q.park(("s", "bad"), [group[0], group[2]]) == 1
    q.put(msg("good", 1))
    assert names(q.take(10, 10_000)) == [("good", 1)]  # no wait for bad
    t0 = time.monotonic()
    retry = q.take(10, 10_000, timeout=2)
    assert names(retry) == [("bad", 0)]  # alone, the head, after retry_s
    assert time.monotonic() - t0 >= 0.15
    q.done({("s", "bad")})
    assert names(q.take(10, 10_000)) == [("bad", 1)]


def test_a_message_parked_longer_than_give_up_is_left_to_the_devices_resend():
    q = lanes(give_up_s=0.1, retry_s=0.2)
    q.put(msg("bad", 0))
    q.park(("s", "bad"), q.take(10, 10_000))
    assert q.take(10, 10_000, timeout=0.5) == []
    assert q.gave_up() == 1 and q.queued() == (0, 0)


def test_a_store_that_takes_nothing_is_probed_by_one_lane_a_second():
    q = lanes(retry_s=0.3)
    for d in ("a", "b", "c"):
        q.put(msg(d))
    group = q.take(10, 10_000)
    for item in group:
        q.park(item.lane, [item])
    q.store_down()
    q.put(msg("d"))  # a new device while the store is down waits too
    t0 = time.monotonic()
    probes = []
    while time.monotonic() - t0 < 1.0:
        got = q.take(10, 10_000, timeout=0.05)
        if got:
            probes.append((round(time.monotonic() - t0, 1), names(got)))
            q.park(got[0].lane, got)
            q.store_down()
    assert 2 <= len(probes) <= 4, probes  # ~1 per retry_s, not one per device
    assert all(len(p[1]) == 1 for p in probes)
    q.done({("s", probes[-1][1][0][0])})  # a probe went in: the store is back
    rest = q.take(10, 10_000, timeout=0.05)
    assert sorted(names(rest)) == [("a", 0), ("b", 0), ("c", 0), ("d", 0)]  # all at once


def test_bounds_per_lane_in_all_and_for_qos0():
    q = lanes()
    assert all(q.put(msg("a", n)) for n in range(4))
    assert not q.put(msg("a", 4))  # lane_messages
    assert q.put(msg("b", 0, size=900))
    assert not q.put(msg("b", 1, size=200))  # lane_bytes
    assert q.put(msg("c", 0, size=900))
    assert q.put(msg("d", 0, size=600))
    assert not q.put(msg("e", 0, size=200))  # total_bytes (40 + 900 + 900 + 600 + 200)
    assert not q.put(msg("f", 0, qos=0))  # QoS 0 only within its small budget
    assert q.queued() == (7, 2440)


def test_take_wakes_on_put_and_returns_empty_on_timeout():
    q = lanes()
    assert q.take(10, 10_000, timeout=0.05) == []
    threading.Timer(0.1, lambda: q.put(msg("a"))).start()
    assert names(q.take(10, 10_000, timeout=5)) == [("a", 0)]
    marker = object()
    q.put(msg("b"))
    q.put_control(marker)
    assert q.take(10, 10_000) is marker  # control jobs go first
