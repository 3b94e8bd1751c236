"""central/store/ against real SQLite files and the real PostgreSQL (own schema per run).

The tables and views are also read back with the ``sqlite3`` and ``psql`` command-line tools:
a peer that does not share this project's code (docs/sync.md).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import threading
import uuid
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from central.store import (
    EventRow,
    PostgresStore,
    Reject,
    RosterVersionError,
    SqliteStore,
    open_store,
    roster_json,
)
from contract import PunchData, RatingData
from tests.conftest import skip_unless
from tests.storekit import fully_migrated, numbered_postgres, numbered_sqlite
from tests.support import PG_URL

TZ = timezone(timedelta(hours=8))


def row(seq: int, event_type: str = "rating.submitted", data: dict | None = None, **kw) -> EventRow:
    at = kw.get("at") or datetime(2026, 11, 26, 9, 12, 3, 120000, tzinfo=TZ) + timedelta(
        seconds=seq
    )
    data = (
        data
        if data is not None
        else {
            "window": "A03",
            "pad": 1,
            "staff_id": "S0012",
            "level": 5,
            "label": "非常满意",
            "reasons": [],
            "invite_id": None,
        }
    )
    return EventRow(
        id=kw.get("id", str(uuid.uuid4())),
        device=kw.get("device", "pad-a03"),
        site="jiedong",
        seq=seq,
        type=event_type,
        at=at,
        at_text=kw.get("at_text") or at.isoformat(timespec="milliseconds"),
        clock=kw.get("clock", "synced"),
        data=json.dumps(data, ensure_ascii=False),
    )


def count(store, table="events"):
    return store.query(f"SELECT count(*) FROM {table}")[0][0]


def test_batch_is_idempotent_by_id(store):
    rows = [row(i) for i in range(1, 101)]
    store.write_batch(rows, [])
    store.write_batch(rows[50:], [])  # a resend after a lost ack
    store.write_batch([*rows[:10], row(101)], [])
    assert count(store) == 101
    seqs = [r[0] for r in store.query("SELECT seq FROM events ORDER BY seq")]
    assert seqs == list(range(1, 102))


def test_rejects_are_recorded_once(store):
    bad = Reject("0193a5c2-0000-7000-8000-000000000001", "pad-a03", "data.level: 9", "{}")
    garbage = Reject(None, "pad-a03", "batch: not JSON", "\x00\xff garbage")
    store.write_batch([], [bad, garbage])
    store.write_batch([], [bad, garbage])  # resent after a lost ack
    rows = store.query("SELECT id, device, reason FROM rejected ORDER BY reason")
    # The named reject once; anonymous garbage each time it arrives (it has no id to match).
    assert [r[0] for r in rows].count(bad.id) == 1
    assert [r for r in rows if r[0] is None and r[2] == "batch: not JSON"]
    assert len(rows) == 3


def test_views_are_typed(store):
    punch = row(
        1,
        "attendance.punch",
        {
            "staff_id": "S0007",
            "slot": "morning_in",
            "status": "late",
            "minutes_off": 4,
            "distance": 0.41,
            "liveness": "off",
        },
    )
    rating = row(
        2,
        data={
            "window": "A03",
            "pad": 1,
            "staff_id": None,
            "level": 2,
            "label": "不满意",
            "reasons": ["办事效率低"],
            "invite_id": 17,
        },
    )
    other = row(3, "device.test", {"note": "ping"})
    store.write_batch([punch, rating, other], [])
    p = store.query("SELECT staff_id, slot, status, minutes_off, distance, liveness FROM punches")
    assert len(p) == 1
    staff, slot, status, minutes, distance, liveness = p[0]
    assert (staff, slot, status, liveness) == ("S0007", "morning_in", "late", "off")
    assert float(minutes) == 4 and abs(float(distance) - 0.41) < 1e-9
    r = store.query('SELECT "window", pad, staff_id, level, label, invite_id FROM ratings')
    assert r == [("A03", 1, None, 2, "不满意", 17)]


def test_a_replayed_status_keeps_its_send_time_and_a_live_one_is_heard_now(store, tmp_path):
    """The board judges liveness by when the centre last heard a device (docs/board.md):
    a retained status the broker replays to a restarted collector must not look fresh, and a
    device whose own clock runs slow must not look stale."""
    from central.board.state import fetch_devices
    from central.collector import _replayed_heard_at

    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    replay = {"v": 1, "state": "online", "at": hour_ago.astimezone(TZ).isoformat()}
    store.upsert_status("jiedong", "win-01", replay, _replayed_heard_at(replay))
    # A live status from a device whose clock is 200 s slow, heard now.
    slow = {
        "v": 1,
        "state": "online",
        "at": (datetime.now(TZ) - timedelta(seconds=200)).isoformat(),
    }
    store.upsert_status("jiedong", "win-02", slow)
    heard = fetch_devices(store)
    assert abs(heard[("jiedong", "win-01")].heard_at - hour_ago) < timedelta(seconds=1)
    assert datetime.now(UTC) - heard[("jiedong", "win-02")].heard_at < timedelta(seconds=30)
    # A replay without a usable `at` (or from the future) is never heard later than now.
    assert _replayed_heard_at({"at": "garbage"}) == datetime.fromtimestamp(0, UTC)
    assert _replayed_heard_at({"at": "2999-01-01T00:00:00+08:00"}) <= datetime.now(UTC)


def test_devices_track_status_and_last_event(store):
    store.upsert_status(
        "jiedong",
        "pad-a03",
        {
            "v": 1,
            "state": "online",
            "version": "0.1.0",
            "outbox": {"pending": 42, "oldest_s": 3.5, "dead_letter": 1},
            "components": {},
        },
    )
    base = datetime.now(TZ).replace(microsecond=120000) - timedelta(hours=1)
    store.write_batch([row(i, at=base + timedelta(seconds=i)) for i in (1, 5, 3)], [])
    [d] = store.devices()
    assert (d["site"], d["device"], d["state"], d["pending"], d["dead_letter"]) == (
        "jiedong",
        "pad-a03",
        "online",
        42,
        1,
    )
    last = base + timedelta(seconds=5)
    assert (
        str(d["last_event_at"])[:19].replace(" ", "T")
        in (
            last.isoformat()[:19],  # SQLite keeps the device's text and offset
            last.astimezone(UTC).isoformat()[:19],  # PostgreSQL: the session zone (UTC)
        )
    )


def test_reopen_does_not_migrate_again(tmp_path):
    url = f"sqlite:///{tmp_path}/hall.db"
    with open_store(url) as s:
        s.write_batch([row(1)], [])
    with open_store(url) as s:
        assert count(s) == 1
        assert fully_migrated(s)


def test_concurrent_first_open_postgres(pg_schema):
    """Two collectors starting at once: the advisory lock serialises the migration."""
    errors = []
    stores = []

    def opener():
        try:
            stores.append(PostgresStore(PG_URL, pg_schema))
        except Exception as exc:  # pragma: no cover - the failure we look for
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    stores[0].write_batch([row(1)], [])
    assert count(stores[1]) == 1
    for s in stores:
        s.close()


@skip_unless(shutil.which("sqlite3") is not None, "needs the sqlite3 CLI")
def test_contract_sqlite3_cli_reads_tables_and_views(tmp_path):
    path = tmp_path / "hall.db"
    with SqliteStore(f"sqlite:///{path}") as s:
        s.write_batch(
            [
                row(1),
                row(
                    2,
                    data={
                        "window": "B01",
                        "pad": 2,
                        "staff_id": "S1",
                        "level": 1,
                        "label": "非常不满意",
                        "reasons": ["态度不好"],
                        "invite_id": None,
                    },
                ),
            ],
            [Reject("x-1", "pad-a03", "id: expected a UUID", "{}")],
        )
    out = subprocess.run(
        [
            "sqlite3",
            "-json",
            str(path),
            "SELECT id, device, site, seq, type, at, clock, received_at, data FROM events "
            "ORDER BY seq",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    events = json.loads(out)
    assert [e["seq"] for e in events] == [1, 2]
    assert json.loads(events[1]["data"])["reasons"] == ["态度不好"]
    out = subprocess.run(
        [
            "sqlite3",
            str(path),
            "SELECT window || '|' || level FROM ratings ORDER BY seq;"
            "SELECT id || '|' || reason FROM rejected;",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert out == ["A03|5", "B01|1", "x-1|id: expected a UUID"]


@skip_unless(shutil.which("psql") is not None, "needs the psql CLI")
def test_contract_psql_reads_tables_and_views(pg_schema):
    with PostgresStore(PG_URL, pg_schema) as s:
        s.write_batch(
            [
                row(1),
                row(
                    2,
                    "attendance.punch",
                    {
                        "staff_id": "S0007",
                        "slot": "afternoon_out",
                        "status": "early_leave",
                        "minutes_off": 12,
                        "distance": 0.38,
                        "liveness": "passed",
                    },
                ),
            ],
            [],
        )
    env = {**os.environ, "PGOPTIONS": f"-c search_path={pg_schema}"}
    sql = (
        "SELECT pg_typeof(id), pg_typeof(at), pg_typeof(data) FROM events LIMIT 1;"
        "SELECT level FROM ratings;"
        "SELECT staff_id || '|' || status || '|' || minutes_off FROM punches;"
    )
    out = subprocess.run(
        ["psql", PG_URL, "-At", "-c", sql], capture_output=True, text=True, check=True, env=env
    ).stdout.split("\n")
    assert out[0] == "uuid|timestamp with time zone|jsonb"
    assert out[1] == "5"
    assert out[2] == "S0007|early_leave|12"


def test_postgres_connection_loss_is_transient_and_reconnects(pg_schema):
    import psycopg

    with PostgresStore(PG_URL, pg_schema) as s:
        s.write_batch([row(1)], [])
        pid = s.conn.info.backend_pid
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(psycopg.OperationalError) as info:
            s.write_batch([row(2)], [])
        assert s.is_transient(info.value)  # the collector does not ack; the device resends
        s.write_batch([row(2)], [])  # a fresh connection, in the same schema
        assert count(s) == 2
        assert s.conn.info.backend_pid != pid


def test_postgres_password_is_passed_and_kept_across_reconnects(pg_schema):
    """store.password_file's password goes to libpq as a keyword, never in the URL
    (the test server trusts local connections, so libpq's record of it is what we check)."""
    import psycopg

    with open_store(PG_URL, pg_schema, password="s3cret pass") as s:
        assert s.conn.info.password == "s3cret pass"
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (s.conn.info.backend_pid,))
        with pytest.raises(psycopg.OperationalError):
            s.write_batch([row(1)], [])
        s.write_batch([row(1)], [])  # reconnected, with the same password
        assert s.conn.info.password == "s3cret pass"
        assert "s3cret" not in s.url


# --- rosters (schema v2; not in docs/sync.md, an addition like `devices`) ------------------------

ROSTER = {
    "v": 1,
    "version": 3,
    "staff": [
        {"id": "S0012", "name": "张敏", "role": "staff", "window": "A03"},
        {"id": "S0001", "name": "李强", "role": "chief", "window": None},
    ],
}


def test_roster_is_stored_exactly_and_older_versions_are_refused(store):
    assert store.roster("jiedong") is None and store.rosters() == []
    stored = store.put_roster("jiedong", ROSTER)
    assert (stored.site, stored.version, stored.roster) == ("jiedong", 3, ROSTER)
    got = store.roster("jiedong")
    assert got.roster == ROSTER and got.version == 3 and got.published_at is not None
    # Byte-identical to what was published, whichever store (jsonb reorders keys).
    assert got.payload == roster_json(ROSTER)
    assert json.loads(got.payload) == ROSTER

    older = dict(ROSTER, version=2, staff=ROSTER["staff"][:1])
    with pytest.raises(RosterVersionError) as info:
        store.put_roster("jiedong", older)
    message = str(info.value)
    assert "jiedong has roster version 3 stored" in message
    assert "refusing the older version 2" in message and "--force" in message
    assert store.roster("jiedong").roster == ROSTER  # unchanged

    store.put_roster("jiedong", ROSTER)  # the same version again: a re-run, accepted
    store.put_roster("jiedong", older, force=True)
    assert store.roster("jiedong").roster == older
    newer = dict(ROSTER, version=4)
    store.put_roster("jiedong", newer)
    store.put_roster("chengxi", ROSTER)  # another site has its own version line
    assert [(r.site, r.version) for r in store.rosters()] == [("chengxi", 3), ("jiedong", 4)]
    assert store.roster("jiedong").roster == newer


def test_sqlite_v1_store_is_migrated_keeping_its_data(tmp_path):
    """A store created by an earlier release (schema v1) gains `rosters` and `leave` on open."""

    path = tmp_path / "hall.db"
    conn = numbered_sqlite(path, 1)
    conn.execute(
        "INSERT INTO events VALUES ('0193a5c2-0000-7000-8000-000000000001', 'pad-a03', "
        "'jiedong', 1, 'device.test', '2026-11-26T09:12:03.120+08:00', 'synced', "
        "'2026-11-26T01:12:03.200+00:00', '{}')"
    )
    conn.commit()
    conn.close()
    with open_store(f"sqlite:///{path}") as s:
        assert fully_migrated(s)
        assert count(s) == 1 and s.leaves() == []
        s.put_roster("jiedong", ROSTER)
    out = subprocess.run(
        ["sqlite3", str(path), "SELECT site, version, json_extract(payload, '$.v') FROM rosters"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out == "jiedong|3|1"


def test_postgres_v1_store_is_migrated_keeping_its_data(pg_schema):
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        numbered_postgres(conn, pg_schema, 1)
        conn.execute(
            "INSERT INTO events (id, device, site, seq, type, at, clock, data) VALUES "
            "('0193a5c2-0000-7000-8000-000000000001', 'pad-a03', 'jiedong', 1, 'device.test', "
            "'2026-11-26T09:12:03.120+08:00', 'synced', '{}')"
        )
    with PostgresStore(PG_URL, pg_schema) as s:
        assert fully_migrated(s)
        assert count(s) == 1 and s.leaves() == []
        s.put_roster("jiedong", ROSTER)
    # Read back by a peer (psql): jsonb holding exactly the roster.
    env = {**os.environ, "PGOPTIONS": f"-c search_path={pg_schema}"}
    out = subprocess.run(
        [
            "psql",
            PG_URL,
            "-At",
            "-c",
            "SELECT site, version, pg_typeof(payload), payload->'staff'->0->>'name' FROM rosters",
        ],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout.strip()
    assert out == "jiedong|3|jsonb|张敏"


def test_concurrent_roster_publishers_postgres(pg_schema):
    """Two publishers of one site at once: the advisory lock makes the check and the write
    one step, so the newer version always ends up stored."""
    stores = [PostgresStore(PG_URL, pg_schema) for _ in range(2)]
    refused: list[RosterVersionError] = []

    def put(s, r):
        try:
            s.put_roster("jiedong", r)
        except RosterVersionError as exc:
            refused.append(exc)

    try:
        for version in range(1, 30):
            newer, older = dict(ROSTER, version=version + 1), dict(ROSTER, version=version)

            threads = [
                threading.Thread(target=put, args=(stores[0], newer)),
                threading.Thread(target=put, args=(stores[1], older)),
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert stores[0].roster("jiedong").version == version + 1
        assert all("refusing the older version" in str(e) for e in refused)
    finally:
        for s in stores:
            s.close()


def _is_pg(store) -> bool:
    return isinstance(store, PostgresStore)


def test_implausible_times_are_kept_filed_by_received_at_and_never_break_devices(store):
    """docs/sync.md: an `at` with clock `unsynced`, more than 10 minutes after `received_at` or
    before 2024 is stored as sent and filed by `received_at`. Year 9999 at -14:00 (year 10000
    in UTC) used to pin `devices.last_event_at` through greatest() and break `hall-central
    devices`."""
    now = datetime.now(TZ).replace(microsecond=120000)
    fine = row(1, at=now - timedelta(minutes=5))
    far = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-14)))
    future = row(2, at=far, at_text="9999-12-31T23:59:59-14:00")
    epoch = datetime(1970, 1, 1, 8, tzinfo=TZ)
    rtc_lost = row(3, at=epoch, clock="unsynced")
    old_synced = row(4, at=epoch)
    unsynced_now = row(5, at=now, clock="unsynced")
    week_ahead = row(6, at=now + timedelta(days=7))
    store.write_batch([fine, future, rtc_lost, old_synced, unsynced_now, week_ahead], [])
    [d] = store.devices()  # used to raise on PostgreSQL (a timestamp after year 9999)
    got = d["last_event_at"]
    got = got if isinstance(got, str) else got.astimezone(TZ).isoformat(timespec="milliseconds")
    assert got == fine.at_text
    if _is_pg(store):
        years = store.query("SELECT seq, extract(year FROM at)::int FROM events ORDER BY seq")
        assert years[1:4] == [(2, 10000), (3, 1970), (4, 1970)]  # kept as sent (UTC years)
        filed = store.query(
            "SELECT seq, filed_at = at AT TIME ZONE z.timezone, "
            "filed_at = received_at AT TIME ZONE z.timezone FROM ratings, hall_zone z "
            "ORDER BY seq"
        )
    else:
        ats = store.query("SELECT at FROM events ORDER BY seq")
        assert [a[0] for a in ats] == [
            r.at_text for r in (fine, future, rtc_lost, old_synced, unsynced_now, week_ahead)
        ]
        filed = store.query(
            "SELECT seq, filed_at = at, "
            "abs(julianday(filed_at) - julianday(received_at)) * 86400 < 0.002 FROM ratings "
            "ORDER BY seq"
        )
        # Filed in the hall's offset whatever the device's: substr(filed_at, 1, 7) is the
        # hall's month (v3 wrote the event's own offset, -14:00 for the year-9999 one).
        offsets = store.query("SELECT substr(filed_at, -6) FROM ratings ORDER BY seq")
        assert [o[0] for o in offsets] == ["+08:00"] * 6
    assert [(seq, bool(a), bool(b)) for seq, a, b in filed] == [
        (1, True, False),
        (2, False, True),
        (3, False, True),
        (4, False, True),
        (5, False, True),
        (6, False, True),
    ]


def test_sqlite_v2_store_with_a_pinned_last_event_is_repaired_on_open(tmp_path):
    """A store written before the fix holds an implausible last_event_at; v3 recomputes it."""
    path = tmp_path / "hall.db"

    conn = numbered_sqlite(path, 2)
    recent = (datetime.now(TZ) - timedelta(hours=2)).isoformat(timespec="milliseconds")
    received = datetime.now(UTC).isoformat(timespec="milliseconds")
    conn.execute(
        "INSERT INTO events VALUES ('0193a5c2-0000-7000-8000-000000000001', 'pad-a03', "
        "'jiedong', 1, 'device.test', ?, 'synced', ?, '{}')",
        (recent, received),
    )
    conn.execute(
        "INSERT INTO events VALUES ('0193a5c2-0000-7000-8000-000000000002', 'pad-a03', "
        "'jiedong', 2, 'device.test', '9999-12-31T23:59:59-14:00', 'synced', ?, '{}')",
        (received,),
    )
    conn.execute(
        "INSERT INTO devices (site, device, last_event_at, last_received_at) VALUES "
        "('jiedong', 'pad-a03', '9999-12-31T23:59:59-14:00', ?)",
        (received,),
    )
    conn.commit()
    conn.close()
    with open_store(f"sqlite:///{path}") as s:
        assert s.devices()[0]["last_event_at"] == recent


def test_postgres_v2_store_with_a_pinned_last_event_is_repaired_on_open(pg_schema):
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        numbered_postgres(conn, pg_schema, 2)
        conn.execute(
            "INSERT INTO events (id, device, site, seq, type, at, clock, data) VALUES "
            "('0193a5c2-0000-7000-8000-000000000001', 'pad-a03', 'jiedong', 1, 'device.test', "
            "now() - interval '2 hours', 'synced', '{}'), "
            "('0193a5c2-0000-7000-8000-000000000002', 'pad-a03', 'jiedong', 2, 'device.test', "
            "'9999-12-31T23:59:59-14:00', 'synced', '{}')"
        )
        conn.execute(
            "INSERT INTO devices (site, device, last_event_at, last_received_at) VALUES "
            "('jiedong', 'pad-a03', '9999-12-31T23:59:59-14:00', now())"
        )
    with PostgresStore(PG_URL, pg_schema) as s:
        [d] = s.devices()  # used to raise: year 10000 cannot be read back
        [(expected,)] = s.query("SELECT at FROM events WHERE seq = 1")
        assert d["last_event_at"] == expected


def test_postgres_resend_lookups_stay_indexed_as_the_table_grows(pg_schema):
    """A collector starts on an empty store and runs for months: the lookup of a resent
    batch's ids must not keep a plan chosen for the empty table (a sequential scan of every
    stored event per resend; docs/sync.md, "Throughput")."""

    def seq_scans(s: PostgresStore) -> int:
        s.query("SELECT pg_stat_force_next_flush()")
        [(n,)] = s.query(
            "SELECT seq_scan FROM pg_stat_user_tables WHERE schemaname = %s AND relname = %s",
            (pg_schema, "events"),
        )
        return n

    with PostgresStore(PG_URL, pg_schema) as s:
        for seq in range(1, 11):  # the first resends: enough for a prepared, generic plan
            first = [row(seq)]
            s.write_batch(first, [])
            assert s.write_batch(first, []) == []
        for start in range(100, 20_100, 500):
            s.write_batch([row(seq) for seq in range(start, start + 500)], [])
        resends = [[row(seq)] for seq in range(30_000, 30_010)]
        for batch in resends:
            s.write_batch(batch, [])
        before = seq_scans(s)
        for batch in resends:
            assert s.write_batch(batch, []) == []
        forged = dataclasses.replace(resends[0][0], seq=1)
        assert s.write_batch([forged], []) == [forged]
        assert seq_scans(s) == before
        assert count(s) == 10 + 20_000 + 10


def test_views_carry_exactly_the_contract_fields(store):
    """The views `punches` and `ratings` unpack `data` under the field names of the contract's
    models (contract/events.py), no more and no fewer: a field added to a model without a
    store migration shows here, not in a report that reads NULL."""
    envelope = ["id", "site", "device", "seq", "at", "clock", "received_at"]
    for view, model in (("punches", PunchData), ("ratings", RatingData)):
        if isinstance(store, PostgresStore):
            rows = store.query(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = %s "
                "ORDER BY ordinal_position",
                (view,),
            )
        else:
            rows = store.query(f"SELECT name FROM pragma_table_info('{view}')")
        columns = [r[0] for r in rows]
        assert columns == [*envelope, *model.model_fields, "filed_at"], view


# --- filed_at: the plausible window and the hall's timezone (schema v6) ---------------------

HALL = ZoneInfo("Asia/Shanghai")  # open_store's default hall timezone (central.timezone)
RECEIVED = datetime(2026, 12, 1, 9, 0, tzinfo=TZ)  # Tuesday morning, the kiosk is back


def _receive_all_at(store, received: datetime) -> None:
    """Pretend every stored event arrived at ``received`` (the store stamps the real clock)."""
    value = received.astimezone(UTC).isoformat(timespec="milliseconds")
    store.query(
        "UPDATE events SET received_at = %s RETURNING id",
        (value if not _is_pg(store) else received,),
    )


def _filed(store, view: str = "punches") -> dict[int, str]:
    """seq → filed_at as the hall's wall time, ``YYYY-MM-DDTHH:MM:SS.mmm``, read by SQL alone.

    SQLite: the text itself, which must carry the hall's offset (+08:00). PostgreSQL:
    to_char() of the column, which must not depend on the session's TimeZone (set to UTC).
    """
    if _is_pg(store):
        store.query("SELECT set_config('TimeZone', 'UTC', false)")
        rows = store.query(
            f"""SELECT seq, to_char(filed_at, 'YYYY-MM-DD"T"HH24:MI:SS.MS') FROM {view}"""
        )
        return dict(rows)
    rows = store.query(f"SELECT seq, filed_at FROM {view}")
    assert all(f.endswith("+08:00") for _, f in rows), rows
    return {seq: f[:23] for seq, f in rows}


def _wall(moment: datetime) -> str:
    return moment.astimezone(HALL).strftime("%Y-%m-%dT%H:%M:%S.%f")[:23]


def _backlog() -> list[datetime]:
    """A synced kiosk offline from Friday 27 November to Tuesday 1 December 2026."""
    days = [datetime(2026, 11, d, tzinfo=TZ) for d in (27, 28, 29, 30)]
    times = [(8, 25), (11, 35), (14, 25), (17, 35)]
    out = [d.replace(hour=h, minute=m) for d in days for h, m in times]
    return [*out, datetime(2026, 12, 1, 8, 20, tzinfo=TZ)]


def test_a_synced_backlog_across_a_month_end_is_filed_by_its_own_at(store):
    """A synced kiosk offline over a weekend: each punch is filed on its own day, and the
    2026-11-30 punches stay in November (they used to move to 1 December)."""
    ats = _backlog()
    store.write_batch([row(i, "attendance.punch", {}, at=at) for i, at in enumerate(ats)], [])
    _receive_all_at(store, RECEIVED)
    filed = _filed(store)
    assert filed == {i: _wall(at) for i, at in enumerate(ats)}
    month = "to_char(filed_at, 'YYYY-MM')" if _is_pg(store) else "substr(filed_at, 1, 7)"
    months = store.query(f"SELECT {month}, count(*) FROM punches GROUP BY 1 ORDER BY 1")
    assert months == [("2026-11", 16), ("2026-12", 1)]


def test_the_plausible_window_is_ten_minutes_ahead_and_not_before_2024(store):
    """Implausible only when unsynced, more than 10 minutes after received_at, or before
    2024-01-01T00:00 in the hall's timezone; a late synced event is filed by its own at."""
    cases = {
        1: (RECEIVED - timedelta(minutes=1), "unsynced", "received"),
        2: (RECEIVED + timedelta(minutes=11), "synced", "received"),
        3: (RECEIVED + timedelta(minutes=9), "synced", "at"),
        4: (datetime(2023, 12, 31, 23, 59, 59, tzinfo=TZ), "synced", "received"),
        5: (datetime(2024, 1, 1, 0, 0, tzinfo=TZ), "synced", "at"),  # the hall's midnight
        6: (datetime(2024, 1, 1, 0, 0, tzinfo=UTC), "synced", "at"),
        7: (RECEIVED - timedelta(days=3, hours=1), "synced", "at"),  # offline over a weekend
        8: (RECEIVED - timedelta(days=400), "synced", "at"),
    }
    rows = [row(seq, at=at, clock=clock) for seq, (at, clock, _) in cases.items()]
    store.write_batch(rows, [])
    _receive_all_at(store, RECEIVED)
    expected = {seq: _wall(at if by == "at" else RECEIVED) for seq, (at, _, by) in cases.items()}
    assert _filed(store, "ratings") == expected


def test_filed_at_is_in_the_halls_month_whatever_the_devices_offset(store):
    """Offsets -14:00 and +14:00 near a month end: substr(filed_at, 1, 7) (SQLite) and
    to_char(filed_at, 'YYYY-MM') (PostgreSQL) are the hall's month, for events filed by `at`
    and by `received_at` alike."""
    minus14, plus14 = timezone(timedelta(hours=-14)), timezone(timedelta(hours=14))
    far = datetime(9999, 12, 31, 23, 59, 59, tzinfo=minus14)
    rows = [
        # 2026-11-30 10:30 at -14:00 is 1 December 08:30 in the hall: December.
        row(1, at=datetime(2026, 11, 30, 10, 30, tzinfo=minus14)),
        # 2026-12-01 00:30 at +14:00 is 30 November 18:30 in the hall: November.
        row(2, at=datetime(2026, 12, 1, 0, 30, tzinfo=plus14)),
        # Filed by received_at (1 December 09:00 in the hall, still 30 November at -14:00).
        row(3, at=far, at_text="9999-12-31T23:59:59-14:00"),
        row(4, at=datetime(2026, 11, 30, 10, 0, tzinfo=minus14), clock="unsynced"),
    ]
    store.write_batch(rows, [])
    _receive_all_at(store, RECEIVED)
    month = "to_char(filed_at, 'YYYY-MM')" if _is_pg(store) else "substr(filed_at, 1, 7)"
    if _is_pg(store):
        store.query("SELECT set_config('TimeZone', 'UTC', false)")
    got = dict(store.query(f"SELECT seq, {month} FROM ratings"))
    assert got == {1: "2026-12", 2: "2026-11", 3: "2026-12", 4: "2026-12"}
    assert _filed(store, "ratings") == {
        1: "2026-12-01T08:30:00.000",
        2: "2026-11-30T18:30:00.000",
        3: "2026-12-01T09:00:00.000",
        4: "2026-12-01T09:00:00.000",
    }


def _backlog_sql_rows() -> list[tuple[str, str]]:
    return [(str(uuid.uuid4()), at.isoformat(timespec="milliseconds")) for at in _backlog()]


def test_sqlite_v5_store_gets_the_new_filed_at_views_on_open(tmp_path):

    path = tmp_path / "hall.db"
    conn = numbered_sqlite(path, 5)
    received = RECEIVED.astimezone(UTC).isoformat(timespec="milliseconds")
    for seq, (eid, at) in enumerate(_backlog_sql_rows()):
        conn.execute(
            "INSERT INTO events VALUES (?, 'kiosk-01', 'jiedong', ?, 'attendance.punch', ?, "
            "'synced', ?, '{}')",
            (eid, seq, at, received),
        )
    conn.commit()
    conn.close()
    with open_store(f"sqlite:///{path}") as s:
        assert fully_migrated(s)
        assert _filed(s) == {i: _wall(at) for i, at in enumerate(_backlog())}


def test_postgres_v5_store_gets_the_new_filed_at_views_on_open(pg_schema):
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        numbered_postgres(conn, pg_schema, 5)
        for seq, (eid, at) in enumerate(_backlog_sql_rows()):
            conn.execute(
                "INSERT INTO events (id, device, site, seq, type, at, clock, received_at, data) "
                "VALUES (%s, 'kiosk-01', 'jiedong', %s, 'attendance.punch', %s, 'synced', %s, "
                "'{}')",
                (eid, seq, at, RECEIVED),
            )
    with PostgresStore(PG_URL, pg_schema) as s:
        assert fully_migrated(s)
        assert _filed(s) == {i: _wall(at) for i, at in enumerate(_backlog())}


def test_one_id_twice_in_a_batch_with_other_content_is_a_conflict_on_both_stores(store):
    """The first copy is stored; the second, with other content, is a conflict (as an id
    reused across batches), whether the store inserts first (both do) or looks up first."""
    first = row(1)
    forged = dataclasses.replace(first, seq=2)
    assert store.write_batch([first, forged], []) == [forged]
    assert store.query("SELECT seq FROM events") == [(1,)]
    assert store.query("SELECT reason FROM rejected") == [("conflict",)]
    # The same content twice is one row and no conflict.
    again = row(3)
    assert store.write_batch([again, again], []) == []
    assert count(store) == 2


def test_a_resend_in_canonical_form_is_the_stored_event_not_a_conflict(store):
    """A device that starts signing resends an event it had sent unsigned with its data in
    RFC 8785 form (sorted keys, 3.0 as 3): the same event, acked, not a conflict."""
    first = row(1, data={"window": "A03", "pad": 1, "level": 5, "distance": 3.0})
    assert store.write_batch([first], []) == []
    canonical = '{"distance":3,"level":5,"pad":1,"window":"A03"}'
    resent = dataclasses.replace(first, data=canonical, prev="0" * 64, sig="x" * 88)
    assert store.write_batch([resent], []) == []
    assert count(store) == 1 and count(store, "rejected") == 0
    changed = dataclasses.replace(first, data=canonical.replace('"level":5', '"level":4'))
    assert store.write_batch([changed], []) == [changed]


def test_a_group_commit_is_all_or_nothing_and_budgets_rejects_per_device(store):
    from central.store import BatchWrite, Reject

    store.rejected_kept_per_hour = 3
    garbage = [Reject(None, "evil-01", f"batch: not JSON ({i})", "x" * 10, 100) for i in range(5)]
    batches = [BatchWrite([row(1)], []), BatchWrite([], garbage), BatchWrite([row(2)], [])]
    store.write_batches(batches)
    assert count(store) == 2 and count(store, "rejected") == 3
    summary = store.rejected_summary()
    assert summary == {"evil-01": {"count": 5, "kept": 3, "bytes": 500, "reasons": {"batch": 5}}}
    store.write_batches([BatchWrite([], garbage[:1])])  # over budget: counted only
    assert count(store, "rejected") == 3
    assert store.rejected_summary()["evil-01"]["count"] == 6
    # A batch the store refuses takes the whole group with it: nothing of it is stored.
    broken = dataclasses.replace(row(3), data="{not json")
    with pytest.raises(Exception):  # noqa: B017 - either store's own error type
        store.write_batches([BatchWrite([row(4)], []), BatchWrite([broken], [])])
    assert count(store) == 2
