"""The central store (docs/sync.md): SQLite (embedded default) or PostgreSQL (psycopg 3).

Tables ``events`` and ``rejected`` as docs/sync.md, plus two additions: ``devices`` (the
collector's view of each device's retained status, for ``hall-central devices``) and
``rosters`` (the last roster published per site, schema version 2: ``hall-central roster``
publishes from it and the collector republishes it on every connect); typed views
``punches`` and ``ratings``; and docs/sync.md's ``leave`` (schema version 4, filled by
``hall-central leave import``; columns in docs/reports.md). The schema is created and
migrated on open, inside a lock (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: an advisory
lock), so several collectors can start at once.

A batch is written in ONE transaction with ``INSERT … ON CONFLICT (id) DO NOTHING``: a resent
event is ignored and acked again, which turns at-least-once delivery into exactly-once rows
(docs/topics.md). :meth:`Store.write_batch` returns only after the commit; the collector acks
after that.

SQLite runs in WAL mode with ``synchronous=FULL``: the agent deletes its copy of an event as
soon as the ack arrives, so a commit that a power cut could undo would lose the event.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo

from contract.sqlite_tx import rollback

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reject:
    id: str | None
    device: str | None
    reason: str
    payload: str
    # Bytes received for this input (the whole message for one that names no event); None:
    # the payload's own length. Counted in ``rejected_counts`` whether or not kept whole.
    size: int | None = None


@dataclass
class BatchWrite:
    """One validated batch of one device for :meth:`Store.write_batches`.

    ``conflicts`` is filled by the write: events whose id is stored with other content."""

    events: list[EventRow]
    rejects: list[Reject]
    conflicts: list[EventRow] = field(default_factory=list)


# docs/sync.md "Rejected inputs": of one device's rejected inputs, the first this many in each
# hour (the hall's) are kept whole in ``rejected``; beyond them only their number and size,
# per reason, in ``rejected_counts``. A broken or hostile device cannot fill the centre's disk.
REJECTED_KEPT_PER_HOUR = 100


def reason_kind(reason: str) -> str:
    """The part of a reject reason that names what was wrong (``batch``, ``id``, ``data``,
    ``conflict`` …), without the input's own text: the key of ``rejected_counts``."""
    return reason.split(":", 1)[0].split(" (", 1)[0][:40] or "?"


def hour_of(moment: datetime, tz: tzinfo) -> str:
    """The hall's hour of ``moment`` as ``rejected_counts.hour``: 2026-12-04T09."""
    return moment.astimezone(tz).strftime("%Y-%m-%dT%H")


def budget_rejects(rejects: list[Reject], room: int) -> tuple[list[Reject], dict[str, list[int]]]:
    """One device's rejects → (those kept whole: the first ``room``, per reason counts
    ``[count, bytes, kept]`` of all of them)."""
    whole = rejects[: max(room, 0)]
    tallies: dict[str, list[int]] = {}
    for i, r in enumerate(rejects):
        tally = tallies.setdefault(reason_kind(r.reason), [0, 0, 0])
        tally[0] += 1
        tally[1] += r.size if r.size is not None else len(r.payload or "")
        tally[2] += 1 if i < len(whole) else 0
    return whole, tallies


def by_device(rejects: list[Reject]) -> dict[str, list[Reject]]:
    """Rejects grouped by device, in order; '' for input that names no device."""
    out: dict[str, list[Reject]] = {}
    for r in rejects:
        out.setdefault(r.device or "", []).append(r)
    return out


@dataclass(frozen=True)
class EventRow:
    id: str
    device: str
    site: str
    seq: int
    type: str
    at: datetime
    at_text: str
    clock: str
    data: str  # JSON text
    # The whole event as received (the parsed object), for `rejected.payload` should it be
    # rejected as a conflict; serialised only then.
    raw: Any = field(default=None, compare=False, repr=False)


CONFLICT = "conflict"  # docs/topics.md: an id already stored with different content


def storable(text: str | None) -> str | None:
    """``text`` as both stores can hold it: lone surrogates and NUL escaped.

    For the ``rejected`` table, which keeps whatever a device sent (a garbage id, a payload
    quoting a bad value): a reject that cannot be written would block its device forever.
    """
    if text is None:
        return None
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\0")


def as_received(event: EventRow) -> str:
    """The event as received, JSON text (its envelope and data)."""
    if event.raw is None:
        return event.data
    try:
        return json.dumps(event.raw, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return event.data


def conflict_rejects(conflicts: list[EventRow]) -> list[Reject]:
    """The ``rejected`` rows of events whose id is stored with different content."""
    return [Reject(e.id, e.device, CONFLICT, as_received(e)) for e in conflicts]


def utcnow() -> datetime:
    return datetime.now(UTC)


def plausible(at: datetime, clock: str, received_at: datetime, tz: tzinfo) -> bool:
    """docs/sync.md: a synced clock, `at` at most PLAUSIBLE_AHEAD after when the centre
    received it and not before PLAUSIBLE_FROM in the hall's timezone ``tz``. The store's views
    apply the same rule in SQL (SQLITE_PLAUSIBLE, PG_PLAUSIBLE)."""
    return clock == "synced" and plausible_from(tz) <= at <= received_at + PLAUSIBLE_AHEAD


def latest_plausible(events: list[EventRow], received_at: datetime, tz: tzinfo) -> EventRow | None:
    """The event that may move ``devices.last_event_at``: an implausible one never does."""
    # plausible(), with both bounds computed once per batch. The latest event is nearly
    # always plausible: check it alone first, filter only when it is not.
    lo, hi = plausible_from(tz).astimezone(UTC), received_at + PLAUSIBLE_AHEAD
    latest = max(events, key=lambda e: e.at, default=None)
    if latest is None or (latest.clock == "synced" and lo <= latest.at <= hi):
        return latest
    good = [e for e in events if e.clock == "synced" and lo <= e.at <= hi]
    return max(good, key=lambda e: e.at) if good else None


def stored_time(value: Any) -> datetime | None:
    """A time as a store returns it (a datetime from PostgreSQL, ISO text from SQLite) as an
    aware datetime; a naive one is UTC, as the stores write them. None (or '') stays None."""
    if value is None or value == "":
        return None
    found = datetime.fromisoformat(value) if isinstance(value, str) else value
    return found if found.tzinfo is not None else found.replace(tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


# --- SQL ------------------------------------------------------------------------------------

_SQLITE_V1 = [
    """CREATE TABLE events (
        id TEXT PRIMARY KEY,
        device TEXT NOT NULL,
        site TEXT NOT NULL,
        seq INTEGER NOT NULL,
        type TEXT NOT NULL,
        at TEXT NOT NULL,
        clock TEXT NOT NULL,
        received_at TEXT NOT NULL,
        data TEXT NOT NULL CHECK (json_valid(data))
    )""",
    "CREATE INDEX events_device_seq ON events (site, device, seq)",
    "CREATE INDEX events_type_at ON events (type, at)",
    """CREATE TABLE rejected (
        id TEXT UNIQUE,
        device TEXT,
        reason TEXT NOT NULL,
        payload TEXT,
        received_at TEXT NOT NULL
    )""",
    """CREATE TABLE devices (
        site TEXT NOT NULL,
        device TEXT NOT NULL,
        state TEXT,
        version TEXT,
        pending INTEGER,
        oldest_s REAL,
        dead_letter INTEGER,
        status TEXT,
        status_at TEXT,
        last_event_at TEXT,
        last_received_at TEXT,
        PRIMARY KEY (site, device)
    )""",
    """CREATE VIEW punches AS SELECT
        id, site, device, seq, at, clock, received_at,
        json_extract(data, '$.staff_id') AS staff_id,
        json_extract(data, '$.slot') AS slot,
        json_extract(data, '$.status') AS status,
        json_extract(data, '$.minutes_off') AS minutes_off,
        json_extract(data, '$.distance') AS distance,
        json_extract(data, '$.liveness') AS liveness
      FROM events WHERE type = 'attendance.punch'""",
    """CREATE VIEW ratings AS SELECT
        id, site, device, seq, at, clock, received_at,
        json_extract(data, '$.window') AS window,
        json_extract(data, '$.pad') AS pad,
        json_extract(data, '$.staff_id') AS staff_id,
        json_extract(data, '$.level') AS level,
        json_extract(data, '$.label') AS label,
        json_extract(data, '$.reasons') AS reasons,
        json_extract(data, '$.invite_id') AS invite_id
      FROM events WHERE type = 'rating.submitted'""",
]

_PG_V1 = [
    """CREATE TABLE events (
        id uuid PRIMARY KEY,
        device text NOT NULL,
        site text NOT NULL,
        seq bigint NOT NULL,
        type text NOT NULL,
        at timestamptz NOT NULL,
        clock text NOT NULL,
        received_at timestamptz NOT NULL DEFAULT now(),
        data jsonb NOT NULL
    )""",
    "CREATE INDEX events_device_seq ON events (site, device, seq)",
    "CREATE INDEX events_type_at ON events (type, at)",
    """CREATE TABLE rejected (
        id text UNIQUE,
        device text,
        reason text NOT NULL,
        payload text,
        received_at timestamptz NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE devices (
        site text NOT NULL,
        device text NOT NULL,
        state text,
        version text,
        pending bigint,
        oldest_s double precision,
        dead_letter bigint,
        status jsonb,
        status_at timestamptz,
        last_event_at timestamptz,
        last_received_at timestamptz,
        PRIMARY KEY (site, device)
    )""",
    # Casts through numeric: the collector checks these are JSON numbers (central/collector.py).
    """CREATE VIEW punches AS SELECT
        id, site, device, seq, at, clock, received_at,
        data->>'staff_id' AS staff_id,
        data->>'slot' AS slot,
        data->>'status' AS status,
        (data->>'minutes_off')::numeric AS minutes_off,
        (data->>'distance')::double precision AS distance,
        data->>'liveness' AS liveness
      FROM events WHERE type = 'attendance.punch'""",
    """CREATE VIEW ratings AS SELECT
        id, site, device, seq, at, clock, received_at,
        data->>'window' AS "window",
        (data->>'pad')::integer AS pad,
        data->>'staff_id' AS staff_id,
        (data->>'level')::integer AS level,
        data->>'label' AS label,
        data->'reasons' AS reasons,
        (data->>'invite_id')::integer AS invite_id
      FROM events WHERE type = 'rating.submitted'""",
]

# v2: the roster per site (not in docs/sync.md, an addition like `devices`). `payload` is exactly
# the docs/topics.md roster as published; `version` repeats its version for the ordering check.
_SQLITE_V2 = [
    """CREATE TABLE rosters (
        site TEXT PRIMARY KEY,
        version INTEGER NOT NULL,
        payload TEXT NOT NULL CHECK (json_valid(payload)),
        published_at TEXT NOT NULL
    )""",
]

_PG_V2 = [
    """CREATE TABLE rosters (
        site text PRIMARY KEY,
        version bigint NOT NULL,
        payload jsonb NOT NULL,
        published_at timestamptz NOT NULL DEFAULT now()
    )""",
]

# v3: `filed_at` in the typed views, the time reports file an event under (docs/sync.md): `at`
# when it is plausible, else the centre's `received_at`. v3's rule (superseded by v6, below;
# kept only because a shipped migration is never edited): implausible = clock `unsynced`, or
# more than a day from `received_at`. `at` itself stays as sent. Also repairs
# `devices.last_event_at`, which an implausible `at` used to pin for good (PostgreSQL
# `greatest()` kept a year-10000 value that no client can read back).
_V3_PLAUSIBLE_S = 24 * 3600

# SQLite keeps `at` as text with the device's offset and `received_at` as UTC text; julianday()
# reads both (and is NULL for a time outside 0000-9999, which counts as implausible). v3 filed
# an implausible event at `received_at` shown in the device's own offset.
_SQLITE_OFFSET = "(CASE WHEN at LIKE '%Z' THEN '+00:00' ELSE substr(at, -6) END)"
_SQLITE_OFFSET_MIN = (
    f"((CASE substr({_SQLITE_OFFSET}, 1, 1) WHEN '-' THEN -1 ELSE 1 END) * "
    f"(CAST(substr({_SQLITE_OFFSET}, 2, 2) AS INTEGER) * 60 + "
    f"CAST(substr({_SQLITE_OFFSET}, 5, 2) AS INTEGER)))"
)
_V3_SQLITE_PLAUSIBLE = (
    "(clock = 'synced' AND abs(julianday(at) - julianday(received_at)) <= "
    f"{_V3_PLAUSIBLE_S / 86400:g})"
)
_V3_SQLITE_FILED_AT = (
    f"CASE WHEN {_V3_SQLITE_PLAUSIBLE} THEN at ELSE "
    f"strftime('%Y-%m-%dT%H:%M:%f', received_at, {_SQLITE_OFFSET_MIN} || ' minutes') "
    f"|| {_SQLITE_OFFSET} END AS filed_at"
)
_V3_PG_PLAUSIBLE = (
    "(clock = 'synced' AND at BETWEEN received_at - interval '1 day' "
    "AND received_at + interval '1 day')"
)
_V3_PG_FILED_AT = f"CASE WHEN {_V3_PG_PLAUSIBLE} THEN at ELSE received_at END AS filed_at"


def _with_filed_at(steps: list[str], view: str, filed_at: str, replace: bool = False) -> str:
    """The CREATE VIEW of ``view`` in ``steps``, with ``filed_at`` as its last column."""
    [sql] = [q for q in steps if q.startswith(f"CREATE VIEW {view} ")]
    sql = sql.replace("\n      FROM events", f",\n        {filed_at}\n      FROM events")
    return sql.replace("CREATE VIEW", "CREATE OR REPLACE VIEW") if replace else sql


_SQLITE_V3 = [
    "DROP VIEW punches",
    "DROP VIEW ratings",
    _with_filed_at(_SQLITE_V1, "punches", _V3_SQLITE_FILED_AT),
    _with_filed_at(_SQLITE_V1, "ratings", _V3_SQLITE_FILED_AT),
    """UPDATE devices SET last_event_at = (
        SELECT e.at FROM events e WHERE e.site = devices.site AND e.device = devices.device
        AND e.clock = 'synced' AND abs(julianday(e.at) - julianday(e.received_at)) <= 1
        ORDER BY julianday(e.at) DESC LIMIT 1)""",
]

_PG_V3 = [
    # CREATE OR REPLACE VIEW may add columns at the end, which is where filed_at goes.
    _with_filed_at(_PG_V1, "punches", _V3_PG_FILED_AT, replace=True),
    _with_filed_at(_PG_V1, "ratings", _V3_PG_FILED_AT, replace=True),
    """UPDATE devices SET last_event_at = (
        SELECT max(e.at) FROM events e WHERE e.site = devices.site AND e.device = devices.device
        AND e.clock = 'synced' AND e.at BETWEEN e.received_at - interval '1 day'
        AND e.received_at + interval '1 day')""",
]

# v4: leave and corrections (docs/sync.md table `leave`), imported from the office's files by
# `hall-central leave import` (central/leave.py). Additions to the contract's columns:
# `starts_half`/`ends_half` ('am' or 'pm': half days, so 2026-11-03 pm .. 2026-11-03 pm is one
# afternoon) and `approver` (who signed the paper). `starts`/`ends` are local dates in the
# hall's timezone. The unique key makes importing the same file twice a no-op.
_LEAVE_KINDS = "('请假', '公出', '补卡')"
_SQLITE_V4 = [
    f"""CREATE TABLE leave (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        staff_id TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN {_LEAVE_KINDS}),
        starts TEXT NOT NULL CHECK (date(starts) = starts),
        starts_half TEXT NOT NULL CHECK (starts_half IN ('am', 'pm')),
        ends TEXT NOT NULL CHECK (date(ends) = ends),
        ends_half TEXT NOT NULL CHECK (ends_half IN ('am', 'pm')),
        approver TEXT NOT NULL,
        note TEXT NOT NULL DEFAULT '',
        imported_by TEXT NOT NULL,
        imported_at TEXT NOT NULL,
        source TEXT NOT NULL,
        UNIQUE (staff_id, kind, starts, starts_half, ends, ends_half)
    )""",
    "CREATE INDEX leave_dates ON leave (starts, ends)",
]

_PG_V4 = [
    f"""CREATE TABLE leave (
        id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        staff_id text NOT NULL,
        kind text NOT NULL CHECK (kind IN {_LEAVE_KINDS}),
        starts date NOT NULL,
        starts_half text NOT NULL CHECK (starts_half IN ('am', 'pm')),
        ends date NOT NULL,
        ends_half text NOT NULL CHECK (ends_half IN ('am', 'pm')),
        approver text NOT NULL,
        note text NOT NULL DEFAULT '',
        imported_by text NOT NULL,
        imported_at timestamptz NOT NULL DEFAULT now(),
        source text NOT NULL,
        UNIQUE (staff_id, kind, starts, starts_half, ends, ends_half)
    )""",
    "CREATE INDEX leave_dates ON leave (starts, ends)",
]

# v5 "leave_slot": a 补卡 corrects ONE punch (docs/reports.md), so a leave row may name its
# slot (`slot`: morning_in … afternoon_out, '' for 请假/公出 and for 补卡 rows stored before
# v5, which keep their half days) and the punch time from the approval (`slot_time`, HH:MM or
# ''). Two 补卡 of one morning (in and out) are two rows: the unique key gains `slot`.
# SQLite cannot change a table's constraints in place: the table is rebuilt, ids kept.
_SLOTS = "('', 'morning_in', 'morning_out', 'afternoon_in', 'afternoon_out')"
_LEAVE_V5_KEY = "UNIQUE (staff_id, kind, starts, starts_half, ends, ends_half, slot)"
_SQLITE_V5 = [
    f"""CREATE TABLE leave_v5 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        staff_id TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN {_LEAVE_KINDS}),
        starts TEXT NOT NULL CHECK (date(starts) = starts),
        starts_half TEXT NOT NULL CHECK (starts_half IN ('am', 'pm')),
        ends TEXT NOT NULL CHECK (date(ends) = ends),
        ends_half TEXT NOT NULL CHECK (ends_half IN ('am', 'pm')),
        approver TEXT NOT NULL,
        note TEXT NOT NULL DEFAULT '',
        imported_by TEXT NOT NULL,
        imported_at TEXT NOT NULL,
        source TEXT NOT NULL,
        slot TEXT NOT NULL DEFAULT '' CHECK (slot IN {_SLOTS}),
        slot_time TEXT NOT NULL DEFAULT '',
        {_LEAVE_V5_KEY}
    )""",
    """INSERT INTO leave_v5 (id, staff_id, kind, starts, starts_half, ends, ends_half, approver,
        note, imported_by, imported_at, source)
      SELECT id, staff_id, kind, starts, starts_half, ends, ends_half, approver, note,
        imported_by, imported_at, source FROM leave""",
    # Ids are never reused (docs/reports.md: `leave remove ID`): the new table's AUTOINCREMENT
    # counter continues the old one's, which DROP TABLE would forget.
    "DELETE FROM sqlite_sequence WHERE name = 'leave_v5'",
    """INSERT INTO sqlite_sequence (name, seq)
      SELECT 'leave_v5', seq FROM sqlite_sequence WHERE name = 'leave'""",
    "DROP TABLE leave",
    "ALTER TABLE leave_v5 RENAME TO leave",
    "CREATE INDEX leave_dates ON leave (starts, ends)",
]

_PG_V5 = [
    f"ALTER TABLE leave ADD COLUMN slot text NOT NULL DEFAULT '' CHECK (slot IN {_SLOTS})",
    "ALTER TABLE leave ADD COLUMN slot_time text NOT NULL DEFAULT ''",
    # The name PostgreSQL gave v4's UNIQUE (table_columns_key, within 63 characters).
    "ALTER TABLE leave DROP CONSTRAINT leave_staff_id_kind_starts_starts_half_ends_ends_half_key",
    f"ALTER TABLE leave ADD CONSTRAINT leave_slot_key {_LEAVE_V5_KEY}",
]

# v6 "plausible_window" (docs/sync.md "Implausible times"): an `at` is implausible only when its
# clock is `unsynced`, when it is more than PLAUSIBLE_AHEAD after `received_at`, or before
# PLAUSIBLE_FROM (midnight in the hall's timezone). A synced kiosk that was offline over a
# weekend delivers Friday's punches on Monday, and they are filed on Friday. `filed_at` is in
# the hall's timezone on both stores, whatever offset the device stamped:
# - The hall's timezone is `central.timezone`, which the store writes into table `hall_zone`
#   each time hall-central opens it (Store.set_hall_zone); the views read it from there, so a
#   changed timezone needs no migration. Until then it holds the config's default zone.
# - SQLite has no time zone database: `hall_zone` holds the zone's UTC offsets, one row per
#   change (`since`: the UTC instant from which `offset_min` applies, ISO text; the first row's
#   `since` is '0000-01-01T00:00:00'), computed by Python's zoneinfo from 2024 to 2100.
#   `filed_at` is text, the instant shown in the hall's offset then
#   (2026-11-30T17:35:00.000+08:00), so substr(filed_at, 1, 7) is the hall's month and
#   substr(filed_at, 1, 10) its date. PLAUSIBLE_FROM is compared as the instant 2024-01-01T00:00
#   in the hall's offset in force at 2024-01-01T00:00 UTC.
# - PostgreSQL: `hall_zone` holds the zone's name; `filed_at` is a `timestamp` (without time
#   zone), the hall's wall time, so to_char(filed_at, 'YYYY-MM') is the hall's month whatever
#   the session's TimeZone. (v3's was a `timestamptz`; a view column cannot change its type in
#   place, so the views are dropped and created again.)
# Also recomputes `devices.last_event_at` from the events plausible under the new rule.
PLAUSIBLE_AHEAD_S = 600
PLAUSIBLE_AHEAD = timedelta(seconds=PLAUSIBLE_AHEAD_S)
PLAUSIBLE_FROM = date(2024, 1, 1)
HALL_TIMEZONE = "Asia/Shanghai"  # central.timezone's default (central/config.py)


def plausible_from(tz: tzinfo) -> datetime:
    """The first plausible instant: PLAUSIBLE_FROM at midnight in the hall's timezone."""
    return datetime.combine(PLAUSIBLE_FROM, time(), tz)


_ZONE_FIRST = "0000-01-01T00:00:00"


def _sqlite_hall_offset(instant: str) -> str:
    """SQL: the hall's UTC offset in minutes at ``instant`` (SQL text julianday() reads)."""
    return (
        "(SELECT offset_min FROM hall_zone WHERE since <= "
        f"strftime('%Y-%m-%dT%H:%M:%S', {instant}) ORDER BY since DESC LIMIT 1)"
    )


SQLITE_PLAUSIBLE = (
    "(clock = 'synced' AND julianday(at) <= julianday(received_at) + "
    f"{PLAUSIBLE_AHEAD_S} / 86400.0 AND julianday(at) >= julianday('{PLAUSIBLE_FROM}') - "
    f"{_sqlite_hall_offset(repr(PLAUSIBLE_FROM.isoformat()))} / 1440.0)"
)
_SQLITE_FILED = f"(CASE WHEN {SQLITE_PLAUSIBLE} THEN at ELSE received_at END)"
_SQLITE_FILED_OFFSET = _sqlite_hall_offset(_SQLITE_FILED)
_SQLITE_FILED_AT = (
    f"strftime('%Y-%m-%dT%H:%M:%f', {_SQLITE_FILED}, {_SQLITE_FILED_OFFSET} || ' minutes') || "
    f"printf('%s%02d:%02d', CASE WHEN {_SQLITE_FILED_OFFSET} < 0 THEN '-' ELSE '+' END, "
    f"abs({_SQLITE_FILED_OFFSET}) / 60, abs({_SQLITE_FILED_OFFSET}) % 60) AS filed_at"
)
_PG_HALL_ZONE = "(SELECT timezone FROM hall_zone)"
PG_PLAUSIBLE = (
    f"(clock = 'synced' AND at <= received_at + interval '{PLAUSIBLE_AHEAD_S} seconds' "
    f"AND at >= timestamp '{PLAUSIBLE_FROM} 00:00' AT TIME ZONE {_PG_HALL_ZONE})"
)
_PG_FILED_AT = (
    f"(CASE WHEN {PG_PLAUSIBLE} THEN at ELSE received_at END) AT TIME ZONE {_PG_HALL_ZONE} "
    "AS filed_at"
)


@lru_cache(maxsize=8)
def sqlite_hall_zone(name: str) -> tuple[tuple[str, int], ...]:
    """``hall_zone``'s rows on SQLite for the IANA zone ``name``: (since, offset_min), the
    first from the start of time, then one per change of offset from 2024 to 2100."""
    tz = ZoneInfo(name)

    def offset(second: int) -> int:
        moment = datetime.fromtimestamp(second, UTC).astimezone(tz)
        return int(moment.utcoffset().total_seconds() // 60)  # type: ignore[union-attr]

    start = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp())
    end = int(datetime(2100, 1, 1, tzinfo=UTC).timestamp())
    day = 86400
    current = offset(start)
    rows = [(_ZONE_FIRST, current)]
    for t in range(start, end, day):
        if offset(t + day) == current:
            continue
        lo, hi = t, t + day  # lo has the old offset, hi the new: bisect to the second
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if offset(mid) == current else (lo, mid)
        current = offset(hi)
        rows.append((datetime.fromtimestamp(hi, UTC).strftime("%Y-%m-%dT%H:%M:%S"), current))
    return tuple(rows)


_SQLITE_V6 = [
    "CREATE TABLE hall_zone (since TEXT PRIMARY KEY, offset_min INTEGER NOT NULL)",
    *[
        f"INSERT INTO hall_zone (since, offset_min) VALUES ('{since}', {minutes})"
        for since, minutes in sqlite_hall_zone(HALL_TIMEZONE)
    ],
    "DROP VIEW punches",
    "DROP VIEW ratings",
    _with_filed_at(_SQLITE_V1, "punches", _SQLITE_FILED_AT),
    _with_filed_at(_SQLITE_V1, "ratings", _SQLITE_FILED_AT),
    # Unqualified columns in the subquery are the events' (the innermost scope).
    f"""UPDATE devices SET last_event_at = (
        SELECT at FROM events WHERE site = devices.site AND device = devices.device
        AND {SQLITE_PLAUSIBLE}
        ORDER BY julianday(at) DESC LIMIT 1)""",
]

_PG_V6 = [
    "CREATE TABLE hall_zone (timezone text NOT NULL)",
    f"INSERT INTO hall_zone (timezone) VALUES ('{HALL_TIMEZONE}')",
    "DROP VIEW punches",
    "DROP VIEW ratings",
    _with_filed_at(_PG_V1, "punches", _PG_FILED_AT),
    _with_filed_at(_PG_V1, "ratings", _PG_FILED_AT),
    f"""UPDATE devices SET last_event_at = (
        SELECT max(at) FROM events WHERE site = devices.site AND device = devices.device
        AND {PG_PLAUSIBLE})""",
]

# v7 "rejected_budget" (docs/sync.md "Rejected inputs"): per device (topic's device, '' when
# the topic names none), hour of the hall ('2026-12-04T09') and reason kind (reason_kind), how
# many inputs were rejected, their bytes, and how many of them ``rejected`` keeps whole.
_REJECTED_COUNTS = """CREATE TABLE rejected_counts (
        device {text} NOT NULL,
        hour {text} NOT NULL,
        reason {text} NOT NULL,
        count {int} NOT NULL,
        bytes {int} NOT NULL,
        kept {int} NOT NULL,
        PRIMARY KEY (device, hour, reason)
    )"""
_SQLITE_V7 = [_REJECTED_COUNTS.format(text="TEXT", int="INTEGER")]
_PG_V7 = [_REJECTED_COUNTS.format(text="text", int="bigint")]
_COUNT_REJECTS_SQL = """
INSERT INTO rejected_counts (device, hour, reason, count, bytes, kept)
VALUES ({m}, {m}, {m}, {m}, {m}, {m})
ON CONFLICT (device, hour, reason) DO UPDATE SET
  count = rejected_counts.count + excluded.count,
  bytes = rejected_counts.bytes + excluded.bytes,
  kept = rejected_counts.kept + excluded.kept
"""
_KEPT_SQL = "SELECT coalesce(sum(kept), 0) FROM rejected_counts WHERE device = {m} AND hour = {m}"

# v8: the schedule versions the centre published (docs/attendance.md "One schedule").
_SCHEDULES = """CREATE TABLE schedules (
        version {int} PRIMARY KEY,
        digest {text} NOT NULL,
        body {json} NOT NULL,
        published_at {ts} NOT NULL
    )"""
_SQLITE_V8 = [_SCHEDULES.format(int="INTEGER", text="TEXT", json="TEXT", ts="TEXT")]
_PG_V8 = [_SCHEDULES.format(int="bigint", text="text", json="jsonb", ts="timestamptz")]

# Index i brings the schema from version i to i + 1. Append only; never edit a shipped step.
# Names, in order: v1 events, v2 rosters, v3 filed_at views, v4 leave, v5 leave_slot,
# v6 plausible_window, v7 rejected_budget.
SQLITE_MIGRATIONS: list[list[str]] = [
    _SQLITE_V1,
    _SQLITE_V2,
    _SQLITE_V3,
    _SQLITE_V4,
    _SQLITE_V5,
    _SQLITE_V6,
    _SQLITE_V7,
    _SQLITE_V8,
]
PG_MIGRATIONS: list[list[str]] = [_PG_V1, _PG_V2, _PG_V3, _PG_V4, _PG_V5, _PG_V6, _PG_V7, _PG_V8]
SCHEMA_VERSION = len(SQLITE_MIGRATIONS)

DEVICE_KEYS = (
    "site",
    "device",
    "state",
    "version",
    "pending",
    "oldest_s",
    "dead_letter",
    "status_at",
    "last_event_at",
    "last_received_at",
)


def _status_fields(status: dict[str, Any]) -> tuple[Any, ...]:
    outbox = status.get("outbox") if isinstance(status.get("outbox"), dict) else {}

    def num(value: Any) -> Any:
        return value if isinstance(value, int | float) and not isinstance(value, bool) else None

    state = status.get("state")
    version = status.get("version")
    return (
        state if isinstance(state, str) else None,
        version if isinstance(version, str) else None,
        num(outbox.get("pending")),
        num(outbox.get("oldest_s")),
        num(outbox.get("dead_letter")),
    )


ROSTER_KEYS = ("v", "version", "staff")
STAFF_ORDER = ("id", "name", "role", "window", "starts", "ends")


def roster_json(roster: dict[str, Any]) -> str:
    """The roster as published and stored: docs/topics.md key order, compact UTF-8 JSON.

    One canonical text whatever the source (a file, SQLite's text, PostgreSQL's jsonb, which
    reorders keys), so a republish from either store is byte-identical to the first publish.
    ``roster`` must be validated (contract.validate_roster): only the contract's keys.
    """
    canonical = {
        "v": roster["v"],
        "version": roster["version"],
        "staff": [{k: e[k] for k in STAFF_ORDER if k in e} for e in roster["staff"]],
    }
    return json.dumps(canonical, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class StoredRoster:
    site: str
    version: int
    roster: dict[str, Any]  # the payload, parsed
    published_at: Any  # ISO text (SQLite) or datetime (PostgreSQL)

    @property
    def payload(self) -> str:
        return roster_json(self.roster)


@dataclass(frozen=True)
class StoredSchedule:
    version: int
    digest: str
    body: dict[str, Any]
    published_at: datetime


def _stored_schedule(row: tuple[Any, ...]) -> StoredSchedule:
    body = row[2] if isinstance(row[2], dict) else json.loads(row[2])
    at = row[3] if isinstance(row[3], datetime) else datetime.fromisoformat(row[3])
    return StoredSchedule(int(row[0]), row[1], body, at)


class RosterVersionError(ValueError):
    """A roster older than the one stored for its site, without ``force``."""

    def __init__(self, site: str, version: int, stored: StoredRoster):
        self.site, self.version, self.stored = site, version, stored
        super().__init__(
            f"site {site} has roster version {stored.version} stored (published "
            f"{_text(stored.published_at)}); refusing the older version {version} "
            "(use --force to publish it anyway)"
        )


class StoreMissingError(RuntimeError):
    """A read-only command found no store (or an empty one) where the config points.

    Read-only commands (``devices``, ``report``, ``leave list``) never create a store: a typo
    in ``[store] url`` must be an error naming the path, not an empty report that exits 0.
    """


LEAVE_KEYS = (
    "id",
    "staff_id",
    "kind",
    "starts",
    "starts_half",
    "ends",
    "ends_half",
    "approver",
    "note",
    "imported_by",
    "imported_at",
    "source",
    "slot",
    "slot_time",
)
_LEAVE_INSERT = (
    "INSERT INTO leave (staff_id, kind, starts, starts_half, ends, ends_half, approver, note, "
    "imported_by, imported_at, source, slot, slot_time) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (staff_id, kind, starts, starts_half, ends, ends_half, slot) DO NOTHING"
)


def _leave_row(row: tuple[Any, ...]) -> dict[str, Any]:
    out = dict(zip(LEAVE_KEYS, row, strict=True))
    for key in ("starts", "ends"):  # SQLite keeps ISO text, PostgreSQL a date
        if isinstance(out[key], str):
            out[key] = date.fromisoformat(out[key])
    return out


def _text(moment: Any) -> str:
    return moment.isoformat(timespec="seconds") if hasattr(moment, "isoformat") else str(moment)


class Store:
    """Common interface of the two stores."""

    url: str
    rejected_kept_per_hour: int = REJECTED_KEPT_PER_HOUR  # central.rejected_kept_per_hour

    def write_batch(self, events: list[EventRow], rejects: list[Reject]) -> list[EventRow]:
        """Store ``events`` and ``rejects`` in one transaction; returns after the commit.

        An event whose id is stored already with the same content is a resend: ignored (the
        caller acks it again). One whose id is stored with *different* content is not stored
        and is returned: it is recorded in ``rejected`` with reason ``conflict`` in the same
        transaction (docs/topics.md), and the caller rejects it in the ack.
        """
        batch = BatchWrite(events, rejects)
        self.write_batches([batch])
        return batch.conflicts

    def write_batches(self, batches: list[BatchWrite]) -> None:
        """Store several batches, each of one device, in ONE transaction (a group commit:
        one fsync for all); returns after the commit, raises on any failure (nothing of any
        of them is then stored). Each batch as :meth:`write_batch`; its conflicts are set on
        it. Rejects beyond a device's hourly budget are counted, not kept whole."""
        raise NotImplementedError

    def record_rejects(self, rejects: list[Reject]) -> None:
        self.write_batch([], rejects)

    def is_transient(self, exc: BaseException) -> bool:
        """True when ``exc`` says the store is unavailable (retry later), not the data bad."""
        raise NotImplementedError

    def upsert_status(
        self, site: str, device: str, status: dict[str, Any], heard_at: datetime | None = None
    ) -> None:
        """Store a device's status; ``status_at`` is ``heard_at`` (aware), default now: when
        the centre last heard the device (docs/board.md "Offline and stale devices")."""
        raise NotImplementedError

    def devices(self) -> list[dict[str, Any]]:
        """One row per device (DEVICE_KEYS), ordered by site and device."""
        rows = self.query(
            "SELECT site, device, state, version, pending, oldest_s, dead_letter, status_at, "
            "last_event_at, last_received_at FROM devices ORDER BY site, device"
        )
        return [dict(zip(DEVICE_KEYS, row, strict=True)) for row in rows]

    def rejected_summary(self, hours: int = 24) -> dict[str, dict[str, Any]]:
        """Per device ('' for input naming none), rejected inputs of the last ``hours`` hours
        of the hall: ``count``, ``kept`` (whole in ``rejected``), ``bytes`` and per reason kind
        ``reasons`` {kind: count}, from ``rejected_counts``."""
        since = hour_of(utcnow() - timedelta(hours=hours - 1), self.tz)
        out: dict[str, dict[str, Any]] = {}
        for device, kind, count, size, kept in self.query(
            "SELECT device, reason, sum(count), sum(bytes), sum(kept) FROM rejected_counts "
            "WHERE hour >= %s GROUP BY device, reason ORDER BY device, reason",
            (since,),
        ):
            row = out.setdefault(device, {"count": 0, "kept": 0, "bytes": 0, "reasons": {}})
            row["count"] += int(count)
            row["kept"] += int(kept)
            row["bytes"] += int(size)
            row["reasons"][kind] = int(count)
        return out

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def put_roster(self, site: str, roster: dict[str, Any], force: bool = False) -> StoredRoster:
        """Store a validated roster as ``site``'s current one, in one transaction.

        Raises :class:`RosterVersionError` when the stored version is higher and not
        ``force``; the same version again is accepted (a re-run of the same publish).
        """
        raise NotImplementedError

    def rosters(self, site: str | None = None) -> list[StoredRoster]:
        """The stored rosters (of one ``site``, or all), ordered by site."""
        where, params = ("WHERE site = %s", (site,)) if site is not None else ("", ())
        rows = self.query(
            f"SELECT site, version, payload, published_at FROM rosters {where} ORDER BY site",
            params,
        )
        return [
            StoredRoster(
                site=r[0],
                version=r[1],
                roster=json.loads(r[2]) if isinstance(r[2], str | bytes) else r[2],
                published_at=r[3],
            )
            for r in rows
        ]

    def record_schedule(self, digest: str, body: dict[str, Any], at: datetime) -> tuple[int, bool]:
        """The version of ``body``: the latest one when its digest matches, else a new one."""
        raise NotImplementedError

    def schedules(self) -> list[StoredSchedule]:
        rows = self.query(
            "SELECT version, digest, body, published_at FROM schedules ORDER BY version"
        )
        return [_stored_schedule(r) for r in rows]

    def latest_schedule(self) -> StoredSchedule | None:
        rows = self.query(
            "SELECT version, digest, body, published_at FROM schedules "
            "ORDER BY version DESC LIMIT 1"
        )
        return _stored_schedule(rows[0]) if rows else None

    def sites(self) -> list[str]:
        rows = self.query("SELECT site FROM rosters UNION SELECT site FROM devices ORDER BY 1")
        return [r[0] for r in rows]

    def roster(self, site: str) -> StoredRoster | None:
        found = self.rosters(site)
        return found[0] if found else None

    def add_leaves(self, rows: list[dict[str, Any]], imported_by: str) -> int:
        """Insert validated leave rows (central/leave.py) in ONE transaction: all or none.

        A row equal to a stored one (same person, kind and half days) is skipped, so a file
        imported twice adds nothing. Returns the number of rows added.
        """
        raise NotImplementedError

    def leaves(self, first: date | None = None, last: date | None = None) -> list[dict[str, Any]]:
        """Leave rows overlapping the dates ``first``..``last`` (inclusive), oldest first."""
        clauses, params = [], []
        if first is not None:
            clauses.append("ends >= %s")
            params.append(first.isoformat())
        if last is not None:
            clauses.append("starts <= %s")
            params.append(last.isoformat())
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self.query(
            f"SELECT {', '.join(LEAVE_KEYS)} FROM leave {where} ORDER BY starts, staff_id, id",
            tuple(params),
        )
        return [_leave_row(r) for r in rows]

    def remove_leave(self, leave_id: int) -> dict[str, Any] | None:
        """Delete one leave row; returns it, or None when there is no such id."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- SQLite -----------------------------------------------------------------------------------

_DEVICE_SQL_SQLITE = """
INSERT INTO devices (site, device, last_event_at, last_received_at) VALUES (?, ?, ?, ?)
ON CONFLICT (site, device) DO UPDATE SET
  last_event_at = nullif(max(coalesce(devices.last_event_at, ''),
                             coalesce(excluded.last_event_at, '')), ''),
  last_received_at = excluded.last_received_at
"""

_STATUS_SQL_SQLITE = """
INSERT INTO devices (site, device, state, version, pending, oldest_s, dead_letter, status,
                     status_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (site, device) DO UPDATE SET
  state = excluded.state, version = excluded.version, pending = excluded.pending,
  oldest_s = excluded.oldest_s, dead_letter = excluded.dead_letter, status = excluded.status,
  status_at = excluded.status_at
"""


class SqliteStore(Store):
    def __init__(self, url: str, create: bool = True, timezone: str = HALL_TIMEZONE):
        self.url = url
        self.tz = ZoneInfo(timezone)
        path = url[len("sqlite:///") :]
        self.path = Path(unquote(path))
        self._lock = threading.Lock()
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
        else:
            self.conn = self._open_existing()
        self.conn.execute("PRAGMA busy_timeout = 30000")
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = FULL")
        self._migrate()

    def _open_existing(self) -> sqlite3.Connection:
        if not self.path.is_file():
            raise StoreMissingError(
                f"store {self.path}: no such file; check [store] url in the config "
                "(the collector creates the store when it first runs)"
            )
        # mode=rw: never create the file (sqlite3.connect would, silently).
        conn = sqlite3.connect(
            f"file:{self.path}?mode=rw",
            uri=True,
            timeout=30.0,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreMissingError(f"store {self.path}: not an SQLite database ({exc})") from None
        if version == 0:
            conn.close()
            raise StoreMissingError(
                f"store {self.path}: empty database, not initialised by hall-central; "
                "check [store] url in the config"
            )
        return conn

    def _migrate(self) -> None:
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            version = c.execute("PRAGMA user_version").fetchone()[0]
            if version > len(SQLITE_MIGRATIONS):
                raise RuntimeError(
                    f"{self.path}: schema version {version} is newer than this hall-central "
                    f"({len(SQLITE_MIGRATIONS)})"
                )
            for step in range(version, len(SQLITE_MIGRATIONS)):
                for sql in SQLITE_MIGRATIONS[step]:
                    c.execute(sql)
                c.execute(f"PRAGMA user_version = {step + 1}")
                logger.info("store %s: schema migrated to version %d", self.path, step + 1)
            zone = sqlite_hall_zone(self.tz.key)
            if tuple(c.execute("SELECT since, offset_min FROM hall_zone ORDER BY since")) != zone:
                c.execute("DELETE FROM hall_zone")
                c.executemany("INSERT INTO hall_zone (since, offset_min) VALUES (?, ?)", zone)
            c.execute("COMMIT")
        except BaseException:
            rollback(c)
            raise

    def write_batches(self, batches: list[BatchWrite]) -> None:
        received = utcnow()
        now = _iso(received)
        hour = hour_of(received, self.tz)
        with self._lock:
            c = self.conn
            c.execute("BEGIN IMMEDIATE")
            try:
                for batch in batches:
                    self._write(c, batch, received, now, hour)
                c.execute("COMMIT")
            except BaseException:
                rollback(c)
                raise

    def _write(
        self, c: sqlite3.Connection, batch: BatchWrite, received: datetime, now: str, hour: str
    ) -> None:
        events, rejects = batch.events, batch.rejects
        conflicts: list[EventRow] = []
        if events:
            # Insert first: a batch of new events (total_changes grew by its size) needs no
            # lookup. Otherwise some ids were stored before: compare them all (the rows just
            # inserted equal themselves; ON CONFLICT left the others alone).
            before = c.total_changes
            c.executemany(
                "INSERT INTO events (id, device, site, seq, type, at, clock, "
                "received_at, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO NOTHING",
                [
                    (e.id, e.device, e.site, e.seq, e.type, e.at_text, e.clock, now, e.data)
                    for e in events
                ],
            )
            if c.total_changes - before != len(events):
                conflicts = self._conflicts(c, events)
        batch.conflicts = conflicts
        if conflicts:
            taken = {e.id for e in conflicts}
            events = [e for e in events if e.id not in taken]
            rejects = [*rejects, *conflict_rejects(conflicts)]
        if events:
            last = latest_plausible(events, received, self.tz)
            c.execute(
                _DEVICE_SQL_SQLITE,
                (events[0].site, events[0].device, last.at_text if last else None, now),
            )
        for device, group in by_device(rejects).items():
            kept = c.execute(_KEPT_SQL.format(m="?"), (device, hour)).fetchone()[0]
            whole, tallies = budget_rejects(group, self.rejected_kept_per_hour - int(kept))
            c.executemany(
                _COUNT_REJECTS_SQL.format(m="?"),
                [(device, hour, kind, *tally) for kind, tally in tallies.items()],
            )
            c.executemany(
                "INSERT INTO rejected (id, device, reason, payload, received_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                [
                    (storable(r.id), r.device, storable(r.reason), storable(r.payload), now)
                    for r in whole
                ],
            )

    @staticmethod
    def _conflicts(c: sqlite3.Connection, events: list[EventRow]) -> list[EventRow]:
        """Events whose id is stored with other content (one indexed lookup per 500 ids)."""
        found: dict[str, tuple[Any, ...]] = {}
        for i in range(0, len(events), 500):
            chunk = [e.id for e in events[i : i + 500]]
            marks = ",".join("?" * len(chunk))
            for row in c.execute(
                "SELECT id, device, site, seq, type, at, clock, data FROM events "
                f"WHERE id IN ({marks})",
                chunk,
            ):
                found[row[0]] = row[1:]
        return [
            e
            for e in events
            if e.id in found
            and found[e.id] != (e.device, e.site, e.seq, e.type, e.at_text, e.clock, e.data)
        ]

    def is_transient(self, exc: BaseException) -> bool:
        # "database is locked", "disk I/O error", "unable to open": the file, not the data.
        return isinstance(exc, sqlite3.OperationalError)

    def upsert_status(
        self, site: str, device: str, status: dict[str, Any], heard_at: datetime | None = None
    ) -> None:
        with self._lock:
            self.conn.execute(
                _STATUS_SQL_SQLITE,
                (
                    site,
                    device,
                    *_status_fields(status),
                    json.dumps(status, ensure_ascii=False),
                    _iso((heard_at or utcnow()).astimezone(UTC)),
                ),
            )

    def put_roster(self, site: str, roster: dict[str, Any], force: bool = False) -> StoredRoster:
        payload, now = roster_json(roster), _iso(utcnow())
        with self._lock:
            c = self.conn
            c.execute("BEGIN IMMEDIATE")  # the check and the write see the same row
            try:
                row = c.execute(
                    "SELECT version, published_at FROM rosters WHERE site = ?", (site,)
                ).fetchone()
                if row is not None and row[0] > roster["version"] and not force:
                    stored = StoredRoster(site, row[0], {}, row[1])
                    raise RosterVersionError(site, roster["version"], stored)
                c.execute(
                    "INSERT INTO rosters (site, version, payload, published_at) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (site) DO UPDATE SET "
                    "version = excluded.version, payload = excluded.payload, "
                    "published_at = excluded.published_at",
                    (site, roster["version"], payload, now),
                )
                c.execute("COMMIT")
            except BaseException:
                rollback(c)
                raise
        return StoredRoster(site, roster["version"], json.loads(payload), now)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self.conn.execute(sql.replace("%s", "?"), params).fetchall()

    def record_schedule(self, digest: str, body: dict[str, Any], at: datetime) -> tuple[int, bool]:
        with self._lock:
            c = self.conn
            c.execute("BEGIN IMMEDIATE")
            try:
                row = c.execute(
                    "SELECT version, digest FROM schedules ORDER BY version DESC LIMIT 1"
                ).fetchone()
                if row is not None and row[1] == digest:
                    c.execute("COMMIT")
                    return int(row[0]), False
                version = 1 if row is None else int(row[0]) + 1
                c.execute(
                    "INSERT INTO schedules (version, digest, body, published_at) "
                    "VALUES (?, ?, ?, ?)",
                    (version, digest, json.dumps(body, ensure_ascii=False), at.isoformat()),
                )
                c.execute("COMMIT")
            except BaseException:
                rollback(c)
                raise
        return version, True

    def add_leaves(self, rows: list[dict[str, Any]], imported_by: str) -> int:
        now = _iso(utcnow())
        with self._lock:
            c = self.conn
            c.execute("BEGIN IMMEDIATE")
            try:
                before = c.total_changes
                c.executemany(
                    _LEAVE_INSERT.replace("%s", "?"),
                    [
                        (
                            r["staff_id"],
                            r["kind"],
                            r["starts"].isoformat(),
                            r["starts_half"],
                            r["ends"].isoformat(),
                            r["ends_half"],
                            r["approver"],
                            r["note"],
                            imported_by,
                            now,
                            r["source"],
                            r.get("slot", ""),
                            r.get("slot_time", ""),
                        )
                        for r in rows
                    ],
                )
                added = c.total_changes - before
                c.execute("COMMIT")
            except BaseException:
                rollback(c)
                raise
        return added

    def remove_leave(self, leave_id: int) -> dict[str, Any] | None:
        with self._lock:
            row = self.conn.execute(
                f"DELETE FROM leave WHERE id = ? RETURNING {', '.join(LEAVE_KEYS)}", (leave_id,)
            ).fetchone()
        return None if row is None else _leave_row(row)

    def close(self) -> None:
        with self._lock:
            self.conn.close()


# --- PostgreSQL -------------------------------------------------------------------------------

_DEVICE_SQL_PG = """
INSERT INTO devices (site, device, last_event_at, last_received_at) VALUES (%s, %s, %s, now())
ON CONFLICT (site, device) DO UPDATE SET
  last_event_at = greatest(devices.last_event_at, excluded.last_event_at),
  last_received_at = excluded.last_received_at
"""

# A whole batch in one statement: one round trip, whatever its size. RETURNING names the ids
# this statement stored; ON CONFLICT leaves the others to PostgresStore._conflicts.
_INSERT_EVENTS_PG = """
INSERT INTO events (id, device, site, seq, type, at, clock, data)
SELECT * FROM unnest(%b::uuid[], %b::text[], %b::text[], %b::bigint[], %b::text[],
                     %b::timestamptz[], %b::text[], %b::jsonb[])
ON CONFLICT (id) DO NOTHING
RETURNING id::text
"""


def _columns(events: list[EventRow]) -> tuple[list[Any], ...]:
    """The events as one list per column, in _INSERT_EVENTS_PG's order."""
    return (
        [e.id for e in events],
        [e.device for e in events],
        [e.site for e in events],
        [e.seq for e in events],
        [e.type for e in events],
        [e.at for e in events],
        [e.clock for e in events],
        [e.data for e in events],
    )


_STATUS_SQL_PG = """
INSERT INTO devices (site, device, state, version, pending, oldest_s, dead_letter, status,
                     status_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s)
ON CONFLICT (site, device) DO UPDATE SET
  state = excluded.state, version = excluded.version, pending = excluded.pending,
  oldest_s = excluded.oldest_s, dead_letter = excluded.dead_letter, status = excluded.status,
  status_at = excluded.status_at
"""

_PG_LOCK_KEY = 0x48414C4C  # "HALL": advisory lock serialising migrations between collectors


class PostgresStore(Store):
    def __init__(
        self,
        url: str,
        schema: str | None = None,
        password: str | None = None,
        create: bool = True,
        timezone: str = HALL_TIMEZONE,
    ):
        try:
            import psycopg
        except ImportError:
            raise RuntimeError(
                "a postgresql:// store needs psycopg 3: pip install 'hall-agent[postgres]'"
            ) from None

        self.url = url
        self.schema = schema
        self.tz = ZoneInfo(timezone)
        self._lock = threading.Lock()
        self._psycopg = psycopg
        # store.password_file (docs/config.md: never inline in the URL); None: the URL, the
        # server's trust/peer rules or libpq's own PGPASSFILE decide.
        self._connect_kw: dict[str, Any] = {"autocommit": True}
        if password is not None:
            self._connect_kw["password"] = password
        self.conn = psycopg.connect(url, **self._connect_kw)
        if not create:
            self._check_exists()
        self._migrate()

    def _conn(self) -> Any:
        """The connection, reopened if PostgreSQL went away (restart, failover)."""
        if self.conn.closed or self.conn.broken:
            logger.warning("store: PostgreSQL connection lost; reconnecting")
            self.conn = self._psycopg.connect(self.url, **self._connect_kw)
            if self.schema:
                self.conn.execute(f'SET search_path TO "{self.schema}"')
        return self.conn

    def is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, self._psycopg.OperationalError)

    def _check_exists(self) -> None:
        table = f'"{self.schema}".hall_schema' if self.schema else "hall_schema"
        row = self.conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()
        if row[0] is None:
            info = self.conn.info
            where = f"schema {self.schema} of " if self.schema else ""
            where += f"postgresql://{info.host}:{info.port}/{info.dbname}"
            self.conn.close()
            raise StoreMissingError(
                f"store {where}: no "
                "hall-central tables; check [store] url and pg_schema in the config"
            )

    def _migrate(self) -> None:
        with self._lock, self.conn.transaction():
            c = self.conn
            # Under the lock: CREATE SCHEMA IF NOT EXISTS itself races between collectors.
            c.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK_KEY,))
            if self.schema:
                # The schema name is validated by central.config.StoreSection (pattern).
                c.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                c.execute(f'SET search_path TO "{self.schema}"')
            c.execute("CREATE TABLE IF NOT EXISTS hall_schema (version integer NOT NULL)")
            row = c.execute("SELECT version FROM hall_schema").fetchone()
            version = 0 if row is None else row[0]
            if row is None:
                c.execute("INSERT INTO hall_schema (version) VALUES (0)")
            if version > len(PG_MIGRATIONS):
                raise RuntimeError(
                    f"schema version {version} is newer than this hall-central "
                    f"({len(PG_MIGRATIONS)})"
                )
            for step in range(version, len(PG_MIGRATIONS)):
                for sql in PG_MIGRATIONS[step]:
                    c.execute(sql)
                c.execute("UPDATE hall_schema SET version = %s", (step + 1,))
                logger.info("store: PostgreSQL schema migrated to version %d", step + 1)
            c.execute(
                "UPDATE hall_zone SET timezone = %s WHERE timezone IS DISTINCT FROM %s",
                (self.tz.key, self.tz.key),
            )

    def write_batches(self, batches: list[BatchWrite]) -> None:
        hour = hour_of(utcnow(), self.tz)
        with self._lock:
            conn = self._conn()
            with conn.transaction():
                cur = conn.cursor()
                for batch in batches:
                    self._write(cur, batch, hour)

    def _write(self, cur: Any, batch: BatchWrite, hour: str) -> None:
        events, rejects = batch.events, batch.rejects
        batch.conflicts = conflicts = []
        if events:
            # One statement inserts the batch and names the ids it took; only the others (a
            # resend after a lost ack, or an id reused with other content) are compared with
            # what is stored, so a batch of new events costs no lookup at all.
            inserted = {r[0] for r in cur.execute(_INSERT_EVENTS_PG, _columns(events))}
            # A later copy of an id within the batch was not inserted either (ON CONFLICT
            # skips it), though RETURNING names its id for the first copy.
            seen: set[str] = set()
            again = []
            for e in events:
                if e.id not in inserted or e.id in seen:
                    again.append(e)
                seen.add(e.id)
            batch.conflicts = conflicts = self._conflicts(cur, again) if again else []
            if conflicts:
                taken = {e.id for e in conflicts}
                events = [e for e in events if e.id not in taken]
                rejects = [*rejects, *conflict_rejects(conflicts)]
        if events:
            # now() of this transaction is received_at; the client's clock stands in for it
            # (the same host's, or one kept in step by NTP: the window ahead is 10 minutes).
            last = latest_plausible(events, utcnow(), self.tz)
            cur.execute(
                _DEVICE_SQL_PG, (events[0].site, events[0].device, last.at if last else None)
            )
        for device, group in by_device(rejects).items():
            kept = cur.execute(_KEPT_SQL.format(m="%s"), (device, hour)).fetchone()[0]
            whole, tallies = budget_rejects(group, self.rejected_kept_per_hour - int(kept))
            cur.executemany(
                _COUNT_REJECTS_SQL.format(m="%s"),
                [(device, hour, kind, *tally) for kind, tally in tallies.items()],
            )
            if whole:
                cur.executemany(
                    "INSERT INTO rejected (id, device, reason, payload) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
                    # PostgreSQL text cannot hold NUL; garbage payloads may contain it.
                    [
                        (storable(r.id), r.device, storable(r.reason), storable(r.payload))
                        for r in whole
                    ],
                )

    @staticmethod
    def _conflicts(cur: Any, events: list[EventRow]) -> list[EventRow]:
        """Of events whose id is already stored, those stored with other content. Compared
        in SQL (jsonb equality, timestamptz as an instant): reading back a stored year-10000
        `at` would fail.

        Never prepared (``prepare=False``): a server-side prepared statement keeps the
        generic plan PostgreSQL chose when the table was small, and a collector started on
        an empty store would then scan the whole table for every resend (docs/sync.md,
        "Throughput")."""
        rows = cur.execute(
            "SELECT e.id::text FROM events e JOIN unnest(%s::uuid[], %s::text[], %s::text[], "
            "%s::bigint[], %s::text[], %s::timestamptz[], %s::text[], %s::jsonb[]) "
            "AS v(id, device, site, seq, type, at, clock, data) ON e.id = v.id "
            "WHERE (e.device, e.site, e.seq, e.type, e.at, e.clock, e.data) "
            "IS DISTINCT FROM (v.device, v.site, v.seq, v.type, v.at, v.clock, v.data)",
            _columns(events),
            prepare=False,
        ).fetchall()
        differ = {r[0] for r in rows}
        return [e for e in events if e.id in differ]

    def upsert_status(
        self, site: str, device: str, status: dict[str, Any], heard_at: datetime | None = None
    ) -> None:
        with self._lock:
            self._conn().execute(
                _STATUS_SQL_PG,
                (
                    site,
                    device,
                    *_status_fields(status),
                    json.dumps(status, ensure_ascii=False),
                    heard_at or utcnow(),
                ),
            )

    def put_roster(self, site: str, roster: dict[str, Any], force: bool = False) -> StoredRoster:
        payload = roster_json(roster)
        with self._lock:
            conn = self._conn()
            with conn.transaction():
                # Serialises publishers of one site, even before its first row exists
                # (a FOR UPDATE row lock would not).
                conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_PG_LOCK_KEY, site))
                row = conn.execute(
                    "SELECT version, published_at FROM rosters WHERE site = %s", (site,)
                ).fetchone()
                if row is not None and row[0] > roster["version"] and not force:
                    stored = StoredRoster(site, row[0], {}, row[1])
                    raise RosterVersionError(site, roster["version"], stored)
                published_at = conn.execute(
                    "INSERT INTO rosters (site, version, payload) VALUES (%s, %s, %s::jsonb) "
                    "ON CONFLICT (site) DO UPDATE SET version = excluded.version, "
                    "payload = excluded.payload, published_at = excluded.published_at "
                    "RETURNING published_at",
                    (site, roster["version"], payload),
                ).fetchone()[0]
        return StoredRoster(site, roster["version"], json.loads(payload), published_at)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn().execute(sql, params).fetchall()

    def record_schedule(self, digest: str, body: dict[str, Any], at: datetime) -> tuple[int, bool]:
        with self._lock:
            conn = self._conn()
            with conn.transaction():
                conn.execute(
                    "SELECT pg_advisory_xact_lock(%s, hashtext('schedules'))", (_PG_LOCK_KEY,)
                )
                row = conn.execute(
                    "SELECT version, digest FROM schedules ORDER BY version DESC LIMIT 1"
                ).fetchone()
                if row is not None and row[1] == digest:
                    return int(row[0]), False
                version = 1 if row is None else int(row[0]) + 1
                conn.execute(
                    "INSERT INTO schedules (version, digest, body, published_at) "
                    "VALUES (%s, %s, %s::jsonb, %s)",
                    (version, digest, json.dumps(body, ensure_ascii=False), at),
                )
        return version, True

    def add_leaves(self, rows: list[dict[str, Any]], imported_by: str) -> int:
        with self._lock:
            conn = self._conn()
            with conn.transaction():
                cur = conn.cursor()
                added = 0
                for r in rows:
                    cur.execute(
                        _LEAVE_INSERT,
                        (
                            r["staff_id"],
                            r["kind"],
                            r["starts"],
                            r["starts_half"],
                            r["ends"],
                            r["ends_half"],
                            r["approver"],
                            r["note"],
                            imported_by,
                            utcnow(),
                            r["source"],
                            r.get("slot", ""),
                            r.get("slot_time", ""),
                        ),
                    )
                    added += cur.rowcount
        return added

    def remove_leave(self, leave_id: int) -> dict[str, Any] | None:
        with self._lock:
            row = (
                self._conn()
                .execute(
                    f"DELETE FROM leave WHERE id = %s RETURNING {', '.join(LEAVE_KEYS)}",
                    (leave_id,),
                )
                .fetchone()
            )
        return None if row is None else _leave_row(row)

    def close(self) -> None:
        with self._lock:
            self.conn.close()


def open_store(
    url: str,
    schema: str | None = None,
    password: str | None = None,
    create: bool = True,
    timezone: str = HALL_TIMEZONE,
) -> Store:
    """Open (and create or migrate) the store at ``url`` (``sqlite:///…`` or ``postgresql://…``).

    ``password`` is ``cfg.store.password`` (read from ``store.password_file``), PostgreSQL only.
    ``create=False`` (read-only commands): a missing or empty store raises
    :class:`StoreMissingError` naming it; an existing store of an older schema is migrated,
    as the collector would on its next start. ``timezone`` is ``central.timezone``, the hall's:
    the views' ``filed_at`` is in it (table ``hall_zone``, rewritten on open when it changed).
    """
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        return SqliteStore(url, create, timezone)
    if scheme in ("postgresql", "postgres"):
        return PostgresStore(url, schema, password, create, timezone)
    raise ValueError(f"store url: expected sqlite:///PATH or postgresql://…, got {url!r}")
