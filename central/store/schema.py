"""The central store's schema: tables and views of both dialects, as named migrations.

Each migration has a name and its statements for SQLite and for PostgreSQL; the store records
the names it ran in ``hall_migrations`` (central/store/migrations.py). The lists are append
only: a step, once released, is never edited (a store that ran it would differ from one
created afterwards), so superseded rules (v3's plausible window) stay below as they shipped.

Tables ``events`` and ``rejected`` are docs/sync.md's; ``devices`` (the collector's view of each
device's retained status, for ``hall-central devices``), ``rosters`` (the last roster published
per site), ``leave`` (docs/reports.md), ``rejected_counts`` and ``schedules`` are additions.
Columns: docs/store.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from central.store.filing import PG_PLAUSIBLE, SQLITE_PLAUSIBLE
from central.store.hallzone import (
    HALL_TIMEZONE,
    PG_HALL_ZONE,
    sqlite_hall_offset,
    sqlite_hall_zone,
)
from contract import EventType


@dataclass(frozen=True)
class Migration:
    """One named step of the schema: its statements, run in one transaction with the record
    of its name."""

    name: str
    steps: tuple[str, ...]


# --- events: docs/sync.md's tables and views, and `devices` ---------------------------------

# The typed views' types, named through the contract (the SQL text is what it always was).
_PUNCH = EventType.PUNCH.value
_RATING = EventType.RATING.value

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
    f"""CREATE VIEW punches AS SELECT
        id, site, device, seq, at, clock, received_at,
        json_extract(data, '$.staff_id') AS staff_id,
        json_extract(data, '$.slot') AS slot,
        json_extract(data, '$.status') AS status,
        json_extract(data, '$.minutes_off') AS minutes_off,
        json_extract(data, '$.distance') AS distance,
        json_extract(data, '$.liveness') AS liveness
      FROM events WHERE type = '{_PUNCH}'""",
    f"""CREATE VIEW ratings AS SELECT
        id, site, device, seq, at, clock, received_at,
        json_extract(data, '$.window') AS window,
        json_extract(data, '$.pad') AS pad,
        json_extract(data, '$.staff_id') AS staff_id,
        json_extract(data, '$.level') AS level,
        json_extract(data, '$.label') AS label,
        json_extract(data, '$.reasons') AS reasons,
        json_extract(data, '$.invite_id') AS invite_id
      FROM events WHERE type = '{_RATING}'""",
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
    f"""CREATE VIEW punches AS SELECT
        id, site, device, seq, at, clock, received_at,
        data->>'staff_id' AS staff_id,
        data->>'slot' AS slot,
        data->>'status' AS status,
        (data->>'minutes_off')::numeric AS minutes_off,
        (data->>'distance')::double precision AS distance,
        data->>'liveness' AS liveness
      FROM events WHERE type = '{_PUNCH}'""",
    f"""CREATE VIEW ratings AS SELECT
        id, site, device, seq, at, clock, received_at,
        data->>'window' AS "window",
        (data->>'pad')::integer AS pad,
        data->>'staff_id' AS staff_id,
        (data->>'level')::integer AS level,
        data->>'label' AS label,
        data->'reasons' AS reasons,
        (data->>'invite_id')::integer AS invite_id
      FROM events WHERE type = '{_RATING}'""",
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
#   each time hall-central opens it (central/store/hallzone.py); the views read it from there, so a
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
# The rule itself is central/store/filing.py's, rendered for each dialect. Should the rule ever
# change, this step must keep today's text (tests/test_store_schema.py compares a fresh store
# with one the numbered release made) and a new step must replace the views.
_SQLITE_FILED = f"(CASE WHEN {SQLITE_PLAUSIBLE} THEN at ELSE received_at END)"
_SQLITE_FILED_OFFSET = sqlite_hall_offset(_SQLITE_FILED)
_SQLITE_FILED_AT = (
    f"strftime('%Y-%m-%dT%H:%M:%f', {_SQLITE_FILED}, {_SQLITE_FILED_OFFSET} || ' minutes') || "
    f"printf('%s%02d:%02d', CASE WHEN {_SQLITE_FILED_OFFSET} < 0 THEN '-' ELSE '+' END, "
    f"abs({_SQLITE_FILED_OFFSET}) / 60, abs({_SQLITE_FILED_OFFSET}) % 60) AS filed_at"
)
_PG_FILED_AT = (
    f"(CASE WHEN {PG_PLAUSIBLE} THEN at ELSE received_at END) AT TIME ZONE {PG_HALL_ZONE} "
    "AS filed_at"
)

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

# v8 "schedules" (docs/attendance.md "One schedule"): the schedule versions the centre published,
# one row per version. A version is recorded whenever the body changes, so an earlier body can
# come back under a new version (A, B, A): `digest` is not unique. Released as numbered v8.
_SCHEDULES = """CREATE TABLE schedules (
        version {int} PRIMARY KEY,
        digest {text} NOT NULL,
        body {json} NOT NULL,
        published_at {ts} NOT NULL
    )"""
_SQLITE_V8 = [_SCHEDULES.format(int="INTEGER", text="TEXT", json="TEXT", ts="TEXT")]
_PG_V8 = [_SCHEDULES.format(int="bigint", text="text", json="jsonb", ts="timestamptz")]

# "schedules_digest": `digest` names a body; finding the versions that carried one (an audit of
# what the kiosks were told, a body coming back) stays an index probe as versions accumulate.
_SCHEDULES_DIGEST = ["CREATE INDEX schedules_digest ON schedules (digest)"]


# "punch_schedule_version": attendance.punch gained `schedule_version` (docs/attendance.md "One
# schedule": the centre's schedule version the kiosk classified by; absent from punches recorded
# before, which the view shows as NULL). The view's columns are the contract's fields, then
# `filed_at` last; a column cannot be inserted into a view in place, so it is created again.
def _view_with(steps: list[str], view: str, columns: str, filed_at: str) -> str:
    """``steps``' ``view`` with ``columns`` after the contract's fields and ``filed_at``."""
    with_column = [
        q.replace("\n      FROM events", f",\n        {columns}\n      FROM events")
        if q.startswith(f"CREATE VIEW {view} ")
        else q
        for q in steps
    ]
    return _with_filed_at(with_column, view, filed_at)


def _punches_with(steps: list[str], column: str, filed_at: str) -> str:
    return _view_with(steps, "punches", column, filed_at)


_SQLITE_PUNCH_SCHEDULE = [
    "DROP VIEW punches",
    _punches_with(
        _SQLITE_V1,
        "json_extract(data, '$.schedule_version') AS schedule_version",
        _SQLITE_FILED_AT,
    ),
]
_PG_PUNCH_SCHEDULE = [
    "DROP VIEW punches",
    _punches_with(_PG_V1, "(data->>'schedule_version')::integer AS schedule_version", _PG_FILED_AT),
]


# "cases" (docs/cases.md): 差评 cases, one per rating at level 1-2 (`rating_id` unique, so a
# resent rating opens nothing), opened in the transaction that stores the rating; `case_log`
# holds every transition and is never deleted; `users` the office's accounts (a memory-hard
# hash, never a password); `audit_log` every action a person took on the centre's data.
# "window" and "by" are quoted: WINDOW is a reserved word of PostgreSQL.
_CASES = [
    """CREATE TABLE cases (
        id {serial},
        rating_id {text} NOT NULL UNIQUE,
        site {text} NOT NULL,
        "window" {text} NOT NULL,
        staff_id {text},
        level {int} NOT NULL CHECK (level BETWEEN 1 AND 2),
        reasons {json} NOT NULL,
        case_no {text},
        item_code {text},
        rated_at {ts} NOT NULL,
        opened_at {ts} NOT NULL,
        state {text} NOT NULL,
        deadlines {json} NOT NULL,
        updated_at {ts} NOT NULL,
        closed_at {ts}
    )""",
    "CREATE INDEX cases_state ON cases (state)",
    "CREATE INDEX cases_rated_at ON cases (rated_at)",
    """CREATE TABLE case_log (
        id {serial},
        case_id {int} NOT NULL,
        at {ts} NOT NULL,
        "by" {text} NOT NULL,
        from_state {text},
        to_state {text} NOT NULL,
        note {text} NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX case_log_case ON case_log (case_id, id)",
    """CREATE TABLE users (
        name {text} PRIMARY KEY,
        role {text} NOT NULL CHECK (role IN ('clerk', 'admin')),
        password_hash {text} NOT NULL,
        created_at {ts} NOT NULL,
        disabled {bool} NOT NULL DEFAULT FALSE
    )""",
    """CREATE TABLE audit_log (
        id {serial},
        at {ts} NOT NULL,
        user_name {text} NOT NULL,
        action {text} NOT NULL,
        target {text} NOT NULL DEFAULT '',
        detail {text} NOT NULL DEFAULT '',
        address {text} NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX audit_log_at ON audit_log (at)",
]
_SQLITE_CASES = [
    q.format(
        serial="INTEGER PRIMARY KEY AUTOINCREMENT",
        text="TEXT",
        int="INTEGER",
        json="TEXT",
        ts="TEXT",
        bool="INTEGER",
    )
    for q in _CASES
]
_PG_CASES = [
    q.format(
        serial="bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
        text="text",
        int="bigint",
        json="jsonb",
        ts="timestamptz",
        bool="boolean",
    )
    for q in _CASES
]


# "ratings_case_no": rating.submitted gained `case_no` (办件编号) and `item_code` (事项编码)
# from the invitation it answered (docs/pads.md "Invitations"); NULL for ratings without.
_SQLITE_RATINGS_CASE_NO = [
    "DROP VIEW ratings",
    _view_with(
        _SQLITE_V1,
        "ratings",
        "json_extract(data, '$.case_no') AS case_no,\n"
        "        json_extract(data, '$.item_code') AS item_code",
        _SQLITE_FILED_AT,
    ),
]
_PG_RATINGS_CASE_NO = [
    "DROP VIEW ratings",
    _view_with(
        _PG_V1,
        "ratings",
        "data->>'case_no' AS case_no,\n        data->>'item_code' AS item_code",
        _PG_FILED_AT,
    ),
]


# "leave_times" (docs/post.md "Leave by the hour"): 请假/公出 may name times of day (开始
# 2026-11-03 15:00, 结束 2026-11-03 17:30), so leaving an afternoon early is excused exactly and
# not by the half day. `starts_time` / `ends_time` are HH:MM, or '' for a row by half days (every
# row stored before, and every 补卡). Two timed leaves of one afternoon are two rows: the unique
# key gains the times. SQLite rebuilds the table as for "leave_slot", ids and counter kept.
_LEAVE_TIMES_KEY = (
    "UNIQUE (staff_id, kind, starts, starts_half, ends, ends_half, slot, starts_time, ends_time)"
)
_SQLITE_LEAVE_TIMES = [
    f"""CREATE TABLE leave_t (
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
        starts_time TEXT NOT NULL DEFAULT '',
        ends_time TEXT NOT NULL DEFAULT '',
        {_LEAVE_TIMES_KEY}
    )""",
    """INSERT INTO leave_t (id, staff_id, kind, starts, starts_half, ends, ends_half, approver,
        note, imported_by, imported_at, source, slot, slot_time)
      SELECT id, staff_id, kind, starts, starts_half, ends, ends_half, approver, note,
        imported_by, imported_at, source, slot, slot_time FROM leave""",
    "DELETE FROM sqlite_sequence WHERE name = 'leave_t'",
    """INSERT INTO sqlite_sequence (name, seq)
      SELECT 'leave_t', seq FROM sqlite_sequence WHERE name = 'leave'""",
    "DROP TABLE leave",
    "ALTER TABLE leave_t RENAME TO leave",
    "CREATE INDEX leave_dates ON leave (starts, ends)",
]
_PG_LEAVE_TIMES = [
    "ALTER TABLE leave ADD COLUMN starts_time text NOT NULL DEFAULT ''",
    "ALTER TABLE leave ADD COLUMN ends_time text NOT NULL DEFAULT ''",
    "ALTER TABLE leave DROP CONSTRAINT leave_slot_key",
    f"ALTER TABLE leave ADD CONSTRAINT leave_times_key {_LEAVE_TIMES_KEY}",
]

# "device_transitions" (docs/post.md "Device online and offline"): `devices` keeps only a
# device's latest status, but 脱岗 by an offline device (regulation 第十九条, 第二十五条) needs
# when it went offline and came back. One row per change of `state` (online/offline), written by
# upsert_status in the statement's transaction; the status republished every minute with the
# same state adds nothing. `at` is the status's own time (NULL when it has none or it does not
# parse), `received_at` when the centre heard it: the MQTT will's `offline` carries the `at` of
# the connect that registered it, so the centre's time is the one used.
_TRANSITIONS = [
    """CREATE TABLE device_transitions (
        site {text} NOT NULL,
        device {text} NOT NULL,
        state {text} NOT NULL,
        at {ts},
        received_at {ts} NOT NULL
    )""",
    "CREATE INDEX device_transitions_device ON device_transitions (site, device, received_at)",
    "CREATE INDEX device_transitions_received ON device_transitions (received_at)",
]
_SQLITE_TRANSITIONS = [q.format(text="TEXT", ts="TEXT") for q in _TRANSITIONS]
_PG_TRANSITIONS = [q.format(text="text", ts="timestamptz") for q in _TRANSITIONS]


# "checkpoints" (docs/tamper.md "Monthly seal"): each `hall-central seal` of a month, its RFC 9162
# tree's size and root (hex), the centre's Ed25519 signature (base64) over the checkpoint's
# statement, the centre's public key (hex) and the month's previous checkpoint (NULL for the
# first). `checkpoint_leaves` holds each leaf hash of the sealed tree in tree order, so `verify`
# can name the event that differs and `prove` can build a proof for the sealed tree itself.
_CHECKPOINTS = [
    """CREATE TABLE checkpoints (
        id {serial},
        month {text} NOT NULL,
        tree_size {int} NOT NULL,
        root {text} NOT NULL,
        signature {text} NOT NULL,
        public_key {text} NOT NULL,
        sealed_at {ts} NOT NULL,
        previous {int}
    )""",
    "CREATE INDEX checkpoints_month ON checkpoints (month, id)",
    """CREATE TABLE checkpoint_leaves (
        checkpoint {int} NOT NULL,
        idx {int} NOT NULL,
        event_id {text} NOT NULL,
        leaf {text} NOT NULL,
        PRIMARY KEY (checkpoint, idx)
    )""",
    "CREATE INDEX checkpoint_leaves_event ON checkpoint_leaves (event_id)",
]
_SQLITE_CHECKPOINTS = [
    q.format(serial="INTEGER PRIMARY KEY AUTOINCREMENT", text="TEXT", int="INTEGER", ts="TEXT")
    for q in _CHECKPOINTS
]
_PG_CHECKPOINTS = [
    q.format(
        serial="bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
        text="text",
        int="bigint",
        ts="timestamptz",
    )
    for q in _CHECKPOINTS
]


# "event_chain" (docs/tamper-centre.md): the devices' signed chains, checked by the centre.
# `events` keeps what the signature covers: `prev` and `sig` as sent (NULL: unsigned, an agent
# older than chains), and on PostgreSQL `at_text`, the device's `at` byte for byte (its
# timestamptz keeps the instant, not the text the signature covers; SQLite's `at` is that text).
# `device_keys`: each key a device announced (device.key) or an administrator registered
# (`hall-central devices trust`), its state and the seq it signs from. `chain_findings`: what the
# verifier (central/verifier.py) found, one row per kind, seq and event (a seq gap: `seq`..
# `seq_end` the missing seqs, `event_id` the event after them), `resolved_at` set when a gap is
# filled or a key is trusted. `chain_heads`: how far each device's chain is verified, so a
# restart carries on.
_EVENT_CHAIN = [
    "ALTER TABLE events ADD COLUMN prev {text}",
    "ALTER TABLE events ADD COLUMN sig {text}",
    """CREATE TABLE device_keys (
        id {serial},
        site {text} NOT NULL,
        device {text} NOT NULL,
        public_key {text} NOT NULL,
        fingerprint {text} NOT NULL,
        state {text} NOT NULL CHECK (state IN ('pending', 'trusted', 'retired')),
        from_seq {int},
        announced_in {text},
        first_seen {ts} NOT NULL,
        trusted_at {ts},
        trusted_by {text},
        UNIQUE (site, device, public_key)
    )""",
    """CREATE TABLE chain_findings (
        id {serial},
        site {text} NOT NULL,
        device {text} NOT NULL,
        event_id {text} NOT NULL DEFAULT '',
        seq {int} NOT NULL,
        seq_end {int},
        kind {text} NOT NULL,
        detail {text} NOT NULL,
        found_at {ts} NOT NULL,
        resolved_at {ts},
        UNIQUE (site, device, kind, seq, event_id)
    )""",
    "CREATE INDEX chain_findings_event ON chain_findings (event_id)",
    "CREATE INDEX chain_findings_open ON chain_findings (resolved_at, site, device)",
    """CREATE TABLE chain_heads (
        site {text} NOT NULL,
        device {text} NOT NULL,
        first_seq {int},
        last_seq {int},
        last_event_id {text},
        last_digest {text},
        key_fingerprint {text},
        signed {int} NOT NULL DEFAULT 0,
        unsigned {int} NOT NULL DEFAULT 0,
        updated_at {ts} NOT NULL,
        PRIMARY KEY (site, device)
    )""",
]
_SQLITE_EVENT_CHAIN = [
    q.format(serial="INTEGER PRIMARY KEY AUTOINCREMENT", text="TEXT", int="INTEGER", ts="TEXT")
    for q in _EVENT_CHAIN
]
_PG_EVENT_CHAIN = [
    _EVENT_CHAIN[0].format(text="text"),
    _EVENT_CHAIN[1].format(text="text"),
    "ALTER TABLE events ADD COLUMN at_text text",
    *[
        q.format(
            serial="bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
            text="text",
            int="bigint",
            ts="timestamptz",
        )
        for q in _EVENT_CHAIN[2:]
    ],
]


def _named(*steps: tuple[str, list[str]]) -> tuple[Migration, ...]:
    return tuple(Migration(name, tuple(sql)) for name, sql in steps)


# Append only; never edit or reorder a released step. The first eight ran under version
# numbers 1..8 (PRAGMA user_version, table hall_schema) before the store recorded names:
# LEGACY_NAMES maps such a number to the names it stands for.
SQLITE_MIGRATIONS = _named(
    ("events", _SQLITE_V1),
    ("rosters", _SQLITE_V2),
    ("filed_at", _SQLITE_V3),
    ("leave", _SQLITE_V4),
    ("leave_slot", _SQLITE_V5),
    ("plausible_window", _SQLITE_V6),
    ("rejected_budget", _SQLITE_V7),
    ("schedules", _SQLITE_V8),
    ("schedules_digest", _SCHEDULES_DIGEST),
    ("punch_schedule_version", _SQLITE_PUNCH_SCHEDULE),
    ("cases", _SQLITE_CASES),
    ("ratings_case_no", _SQLITE_RATINGS_CASE_NO),
    ("leave_times", _SQLITE_LEAVE_TIMES),
    ("device_transitions", _SQLITE_TRANSITIONS),
    ("checkpoints", _SQLITE_CHECKPOINTS),
    ("event_chain", _SQLITE_EVENT_CHAIN),
)
PG_MIGRATIONS = _named(
    ("events", _PG_V1),
    ("rosters", _PG_V2),
    ("filed_at", _PG_V3),
    ("leave", _PG_V4),
    ("leave_slot", _PG_V5),
    ("plausible_window", _PG_V6),
    ("rejected_budget", _PG_V7),
    ("schedules", _PG_V8),
    ("schedules_digest", _SCHEDULES_DIGEST),
    ("punch_schedule_version", _PG_PUNCH_SCHEDULE),
    ("cases", _PG_CASES),
    ("ratings_case_no", _PG_RATINGS_CASE_NO),
    ("leave_times", _PG_LEAVE_TIMES),
    ("device_transitions", _PG_TRANSITIONS),
    ("checkpoints", _PG_CHECKPOINTS),
    ("event_chain", _PG_EVENT_CHAIN),
)
LEGACY_NAMES = (
    "events",
    "rosters",
    "filed_at",
    "leave",
    "leave_slot",
    "plausible_window",
    "rejected_budget",
    "schedules",
)
