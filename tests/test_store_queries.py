"""The store's named queries on both dialects: typed records, the same answers from SQLite and
PostgreSQL, and the schedule's versions."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from central.store import (
    DeviceState,
    EventRow,
    FiledEvent,
    PostgresStore,
    StoredEvent,
    StoredSchedule,
    open_store,
)
from central.store.base import _SITES_SQL
from tests.support import PG_URL

HALL = ZoneInfo("Asia/Shanghai")
MINUS14 = timezone(timedelta(hours=-14))
ROSTER = {"v": 1, "version": 1, "staff": [{"id": "S1", "name": "张敏", "role": "staff"}]}


def event(seq: int, at: datetime, **kw) -> EventRow:
    data = kw.get("data", {"window": "A03", "level": 5, "staff_id": "S1"})
    return EventRow(
        id=kw.get("id", str(uuid.uuid4())),
        device=kw.get("device", "pad-a03"),
        site=kw.get("site", "jiedong"),
        seq=seq,
        type=kw.get("type", "rating.submitted"),
        at=at,
        at_text=at.isoformat(timespec="milliseconds"),
        clock=kw.get("clock", "synced"),
        data=json.dumps(data, ensure_ascii=False),
    )


def receive_at(store, received: datetime) -> None:
    """Pretend every stored event arrived at ``received``."""
    value = received if isinstance(store, PostgresStore) else received.astimezone(UTC).isoformat()
    store.query("UPDATE events SET received_at = %s RETURNING id", (value,))


# --- the hall's schedule -------------------------------------------------------------------


def test_a_schedule_gets_a_new_version_only_when_its_digest_changes(store):
    assert store.latest_schedule() is None and store.schedules() == []
    at = datetime(2026, 12, 1, 9, 0, 0, 123000, tzinfo=HALL)
    a = {"v": 1, "name": "冬季作息", "morning": ["08:30", "11:30"], "holidays": ["2027-01-01"]}
    b = {**a, "morning": ["09:00", "12:00"]}
    assert store.record_schedule("digest-a", a, at) == (1, True)
    assert store.record_schedule("digest-a", a, at + timedelta(hours=1)) == (1, False)
    assert store.record_schedule("digest-b", b, at + timedelta(days=1)) == (2, True)
    # A body published before but not the latest is published again: a new version.
    assert store.record_schedule("digest-a", a, at + timedelta(days=2)) == (3, True)
    versions = store.schedules()
    assert [(s.version, s.digest, s.body) for s in versions] == [
        (1, "digest-a", a),
        (2, "digest-b", b),
        (3, "digest-a", a),
    ]
    assert all(isinstance(s, StoredSchedule) for s in versions)
    assert versions[0].published_at == at and versions[0].published_at.tzinfo is not None
    assert store.latest_schedule() == versions[-1]


def test_a_schedule_time_must_carry_its_zone(store):
    with pytest.raises(ValueError, match="zone"):
        store.record_schedule("d", {}, datetime(2026, 12, 1, 9, 0))
    assert store.schedules() == []


def _publish_together(stores, rounds: int) -> list[tuple[int, bool]]:
    results: list[tuple[int, bool]] = []
    at = datetime.now(UTC)

    def publish(s, digest):
        results.append(s.record_schedule(digest, {"digest": digest}, at))

    for i in range(rounds):
        threads = [
            threading.Thread(target=publish, args=(s, f"d{i}-{n}")) for n, s in enumerate(stores)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return results


def test_concurrent_publishers_never_share_a_version_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path}/hall.db"
    stores = [open_store(url) for _ in range(3)]
    try:
        results = _publish_together(stores, 15)
        assert sorted(v for v, _ in results) == list(range(1, 46))
        assert all(created for _, created in results)
    finally:
        for s in stores:
            s.close()


def test_concurrent_publishers_never_share_a_version_postgres(pg_schema):
    stores = [open_store(PG_URL, pg_schema) for _ in range(3)]
    try:
        results = _publish_together(stores, 15)
        assert sorted(v for v, _ in results) == list(range(1, 46))
    finally:
        for s in stores:
            s.close()


# --- sites ---------------------------------------------------------------------------------


def test_sites_are_those_with_a_roster_a_heard_device_or_an_event(store):
    assert store.sites() == []
    now = datetime.now(HALL)
    store.put_roster("zeta", ROSTER)
    store.put_roster("jiedong", ROSTER)
    store.write_batch([event(i, now, site="jiedong", device=f"pad-{i}") for i in range(3)], [])
    store.write_batch([event(1, now, site="alpha", device="kiosk-01")], [])
    # A device heard only by its status: its site gets the schedule before its first event.
    store.upsert_status("beta", "pad-9", {"v": 1, "state": "online"})
    assert store.sites() == ["alpha", "beta", "jiedong", "zeta"]


def test_sites_walk_the_index_on_sqlite(tmp_path):
    """One index probe per site, never a scan of every event (SQLite's plan)."""
    with open_store(f"sqlite:///{tmp_path}/hall.db") as s:
        plan = " / ".join(row[-1] for row in s.query(f"EXPLAIN QUERY PLAN {_SITES_SQL}"))
    assert "SCAN events" not in plan and "SCAN e " not in plan, plan
    assert "COVERING INDEX events_device_seq" in plan, plan


def test_sites_walk_the_index_on_postgres(pg_schema):
    with open_store(PG_URL, pg_schema) as s:
        now = datetime.now(HALL)
        for site in ("alpha", "beta", "gamma"):
            for start in range(0, 6000, 2000):
                batch = [event(seq, now, site=site) for seq in range(start, start + 2000)]
                s.write_batch(batch, [])
        s.conn.execute("ANALYZE events")
        plan = "\n".join(r[0] for r in s.query(f"EXPLAIN {_SITES_SQL}"))
        assert s.sites() == ["alpha", "beta", "gamma"]
    assert "Seq Scan on events" not in plan, plan
    assert "Index Only Scan" in plan, plan


# --- events --------------------------------------------------------------------------------


def test_events_filed_in_a_span_by_the_plausible_time_rule(store):
    received = datetime(2026, 12, 1, 9, 0, tzinfo=HALL)
    november = datetime(2026, 11, 1, tzinfo=HALL), datetime(2026, 12, 1, tzinfo=HALL)
    december = datetime(2026, 12, 1, tzinfo=HALL), datetime(2027, 1, 1, tzinfo=HALL)
    late = event(1, datetime(2026, 11, 30, 23, 59, tzinfo=HALL))  # offline over the month end
    rtc_lost = event(2, datetime(1970, 1, 1, tzinfo=UTC), clock="unsynced")
    elsewhere = event(3, datetime(2026, 11, 30, 9, 0, tzinfo=HALL), site="chengxi")
    punch = event(4, datetime(2026, 11, 30, 8, 0, tzinfo=HALL), type="attendance.punch")
    store.write_batch([late, rtc_lost, elsewhere, punch], [])
    receive_at(store, received)

    got = store.events_filed_between(("rating.submitted",), *november)
    assert [e.id for e in got] == [elsewhere.id, late.id]  # by filed time
    assert all(isinstance(e, FiledEvent) for e in got)
    first = got[1]
    assert (first.filed_at, first.suspect, first.data["level"]) == (late.at, False, 5)
    assert first.filed_at.tzinfo is not None and first.received_at == received
    assert [
        e.id for e in store.events_filed_between(("rating.submitted",), *november, "jiedong")
    ] == [late.id]
    [suspect] = store.events_filed_between(("rating.submitted",), *december)
    assert (suspect.id, suspect.filed_at, suspect.suspect) == (rtc_lost.id, received, True)
    assert suspect.at == rtc_lost.at  # kept as the device sent it


def test_events_stamped_in_a_span_whatever_the_devices_offset(store):
    day = datetime(2026, 12, 3, tzinfo=HALL)
    inside = event(1, datetime(2026, 12, 2, 11, 0, tzinfo=MINUS14))  # 3 December 09:00 hall
    before = event(2, day - timedelta(milliseconds=1))
    last = event(3, day + timedelta(days=1) - timedelta(milliseconds=1), clock="unsynced")
    after = event(4, day + timedelta(days=1))
    store.write_batch([inside, before, last, after], [])
    got = store.events_at_between(("rating.submitted",), day, day + timedelta(days=1))
    assert sorted(e.id for e in got) == sorted([inside.id, last.id])
    assert all(isinstance(e, StoredEvent) for e in got)
    [moved] = [e for e in got if e.id == inside.id]
    assert moved.at == inside.at and moved.seq == 1 and moved.clock == "synced"


def test_one_event_by_id_and_a_devices_history_in_seq_order(store):
    now = datetime.now(HALL)
    rows = [event(seq, now, device="kiosk-01") for seq in (3, 1, 2, 5, 4)]
    store.write_batch(rows, [])
    store.write_batch([event(1, now, device="pad-a03")], [])
    found = store.event(rows[0].id)
    assert found is not None and (found.id, found.seq, found.device) == (rows[0].id, 3, "kiosk-01")
    assert store.event(str(uuid.uuid4())) is None
    assert store.event("not-a-uuid") is None
    page = store.device_events("jiedong", "kiosk-01", limit=2)
    assert [e.seq for e in page] == [1, 2]
    page = store.device_events("jiedong", "kiosk-01", after_seq=page[-1].seq, limit=10)
    assert [e.seq for e in page] == [3, 4, 5]
    assert store.event_count() == 6 and store.event_count("kiosk-01") == 5


def test_device_states_are_typed(store):
    heard = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
    store.upsert_status(
        "jiedong",
        "pad-a03",
        {"v": 1, "state": "online", "version": "0.2.0", "outbox": {"pending": 2}},
        heard,
    )
    at = datetime.now(HALL).replace(microsecond=0) - timedelta(minutes=1)
    store.write_batch([event(1, at)], [])
    [d] = store.device_states()
    assert isinstance(d, DeviceState)
    assert (d.site, d.device, d.state, d.version, d.pending) == (
        "jiedong",
        "pad-a03",
        "online",
        "0.2.0",
        2,
    )
    assert d.status_at == heard and d.last_event_at == at
    assert d.last_received_at is not None and d.last_received_at.tzinfo is not None


def test_a_probe_write_leaves_nothing(store):
    store.probe_write()
    store.probe_write()  # the same id again: nothing was kept to collide with
    assert store.query("SELECT count(*) FROM rejected") == [(0,)]
