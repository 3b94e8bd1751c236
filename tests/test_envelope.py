"""The event envelope (docs/topics.md)."""

from __future__ import annotations

import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from agent.envelope import make_event, uuid7

TZ = ZoneInfo("Asia/Shanghai")


def test_uuid7_fields():
    value = uuid7()
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    ms = value.int >> 80
    assert abs(ms / 1000 - datetime.now().timestamp()) < 5


def test_uuid7_sorts_in_creation_order_within_one_millisecond():
    fixed = 1_790_000_000_000_000_000  # the same nanosecond: only the counter differs
    ids = [uuid7(fixed) for _ in range(1000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 1000


def test_uuid7_string_order_matches_time_order():
    ids = [str(uuid7(t * 1_000_000)) for t in range(1_790_000_000_000, 1_790_000_000_050)]
    assert ids == sorted(ids)


def test_make_event_shape():
    at = datetime(2026, 11, 26, 1, 12, 3, 120000, tzinfo=ZoneInfo("UTC"))
    event = make_event(
        event_type="device.test",
        data={"note": "x"},
        seq=7,
        device="k1",
        site="jiedong",
        tz=TZ,
        clock="synced",
        at=at,
    )
    assert event["at"] == "2026-11-26T09:12:03.120+08:00"
    assert event["seq"] == 7 and event["clock"] == "synced"
    assert uuid.UUID(event["id"]).version == 7
    assert set(event) == {"id", "seq", "type", "at", "clock", "device", "site", "data"}


def test_make_event_refuses_unknown_type():
    with pytest.raises(ValueError, match=r"unknown event type 'rating\.deleted'"):
        make_event(
            event_type="rating.deleted", data={}, seq=1, device="k", site="s", tz=TZ, clock="synced"
        )
