"""The SQLite store: the embedded default (docs/store.md).

WAL mode with ``synchronous=FULL``: the agent deletes its copy of an event as soon as the ack
arrives, so a commit that a power cut could undo would lose the event. Every write transaction
starts with ``BEGIN IMMEDIATE``, so a check and the write that depends on it see the same rows,
and collectors (or commands) opening one file at once queue on its lock instead of racing.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote
from zoneinfo import ZoneInfo

from central.store import migrations
from central.store.base import (
    COUNT_REJECTS_SQL,
    KEPT_SQL,
    LEAVE_INSERT,
    TRANSITION_INSERT,
    Store,
    leave_row,
    schedule_json,
    status_at,
    status_fields,
)
from central.store.cases import Run, open_cases
from central.store.errors import RosterVersionError, StoreMissingError
from central.store.filing import latest_plausible
from central.store.hallzone import HALL_TIMEZONE, sqlite_hall_zone
from central.store.records import (
    LEAVE_KEYS,
    BatchWrite,
    EventRow,
    StoredRoster,
    aware,
    iso,
    required_time,
    utcnow,
)
from central.store.rejects import budget_rejects, by_device, conflict_rejects, hour_of, storable
from central.store.schema import SQLITE_MIGRATIONS
from contract.roster import roster_json
from contract.sqlite_tx import rollback

logger = logging.getLogger(__name__)

_DEVICE_SQL = """
INSERT INTO devices (site, device, last_event_at, last_received_at) VALUES (?, ?, ?, ?)
ON CONFLICT (site, device) DO UPDATE SET
  last_event_at = nullif(max(coalesce(devices.last_event_at, ''),
                             coalesce(excluded.last_event_at, '')), ''),
  last_received_at = excluded.last_received_at
"""

_STATUS_SQL = """
INSERT INTO devices (site, device, state, version, pending, oldest_s, dead_letter, status,
                     status_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (site, device) DO UPDATE SET
  state = excluded.state, version = excluded.version, pending = excluded.pending,
  oldest_s = excluded.oldest_s, dead_letter = excluded.dead_letter, status = excluded.status,
  status_at = excluded.status_at
"""

# hall-central check's write: a rejected input no device can send (its id is not a UUID).
_PROBE_SQL = (
    "INSERT INTO rejected (id, device, reason, payload, received_at) "
    "VALUES ('hall-central-check', NULL, 'check', NULL, ?)"
)

_MIGRATIONS_TABLE = f"CREATE TABLE {migrations.TABLE} (name TEXT PRIMARY KEY, applied_at TEXT)"

# `at` is the device's text with its own offset (within ±14 h of UTC) and `received_at` UTC
# text: compared as text with dates this much wider than the span, they keep every row whose
# instant is in it (the rows are then filtered exactly).
_TEXT_MARGIN = timedelta(days=2)


class SqliteStore(Store):
    migrations = SQLITE_MIGRATIONS

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
            named = _has_table(conn, migrations.TABLE)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreMissingError(f"store {self.path}: not an SQLite database ({exc})") from None
        if version == 0 and not named:
            conn.close()
            raise StoreMissingError(
                f"store {self.path}: empty database, not initialised by hall-central; "
                "check [store] url in the config"
            )
        return conn

    def _migrate(self) -> None:
        c = self.conn
        where = str(self.path)

        def run(sql: str, params: tuple[Any, ...] | None) -> list[tuple[Any, ...]]:
            return c.execute(sql, params or ()).fetchall()

        c.execute("BEGIN IMMEDIATE")
        try:
            if not _has_table(c, migrations.TABLE):
                version = c.execute("PRAGMA user_version").fetchone()[0]
                migrations.adopt_legacy(run, _MIGRATIONS_TABLE, version, where, "?")
            names = migrations.apply_due(run, self.migrations, where, iso(utcnow()), "?")
            # For releases that read a number (migrations.py): how many steps ran.
            if c.execute("PRAGMA user_version").fetchone()[0] != len(names):
                c.execute(f"PRAGMA user_version = {len(names)}")
            zone = sqlite_hall_zone(self.tz.key)
            if tuple(c.execute("SELECT since, offset_min FROM hall_zone ORDER BY since")) != zone:
                c.execute("DELETE FROM hall_zone")
                c.executemany("INSERT INTO hall_zone (since, offset_min) VALUES (?, ?)", zone)
            c.execute("COMMIT")
        except BaseException:
            rollback(c)
            raise

    def _time_span(self, start: datetime, end: datetime) -> tuple[Any, Any]:
        lo = (start - _TEXT_MARGIN).astimezone(self.tz).date().isoformat()
        hi = (end + _TEXT_MARGIN).astimezone(self.tz).date().isoformat()
        return lo, hi

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self.conn.execute(sql.replace("%s", "?"), params).fetchall()

    @contextmanager
    def transaction(self) -> Iterator[Run]:
        with self._lock:
            c = self.conn
            c.execute("BEGIN IMMEDIATE")
            try:
                yield _runner(c)
                c.execute("COMMIT")
            except BaseException:
                rollback(c)
                raise

    def stamp(self, moment: datetime) -> Any:
        # UTC text to the millisecond: one format, so text order is time order.
        return iso(aware(moment).astimezone(UTC))

    def is_transient(self, exc: BaseException) -> bool:
        # "database is locked", "disk I/O error", "unable to open": the file, not the data.
        return isinstance(exc, sqlite3.OperationalError)

    # --- events in -------------------------------------------------------------------------

    def write_batches(self, batches: list[BatchWrite]) -> None:
        received = utcnow()
        now = iso(received)
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
                "received_at, data, prev, sig) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO NOTHING",
                [
                    (
                        e.id,
                        e.device,
                        e.site,
                        e.seq,
                        e.type,
                        e.at_text,
                        e.clock,
                        now,
                        e.data,
                        e.prev,
                        e.sig,
                    )
                    for e in events
                ],
            )
            if c.total_changes - before != len(events):
                conflicts = self._conflicts(c, events)
        batch.conflicts = conflicts
        if conflicts:
            # By identity, not id: a batch may hold one id twice, the first copy stored and
            # a later one with other content refused; the stored copy goes on (its 差评 case).
            taken = {id(e) for e in conflicts}
            events = [e for e in events if id(e) not in taken]
            rejects = [*rejects, *conflict_rejects(conflicts)]
        if events:
            last = latest_plausible(events, received, self.tz)
            c.execute(
                _DEVICE_SQL,
                (events[0].site, events[0].device, last.at_text if last else None, now),
            )
            open_cases(_runner(c), self.stamp, events, received, self.tz, self.case_policy())
        for device, group in by_device(rejects).items():
            kept = c.execute(KEPT_SQL.format(m="?"), (device, hour)).fetchone()[0]
            whole, tallies = budget_rejects(group, self.rejected_kept_per_hour - int(kept))
            c.executemany(
                COUNT_REJECTS_SQL.format(m="?"),
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
        return [e for e in events if e.id in found and not _same_event(found[e.id], e)]

    def upsert_status(
        self, site: str, device: str, status: dict[str, Any], heard_at: datetime | None = None
    ) -> None:
        fields = status_fields(status)
        heard = iso((heard_at or utcnow()).astimezone(UTC))
        with self._lock:
            c = self.conn
            c.execute("BEGIN IMMEDIATE")  # the transition and the status: both or neither
            try:
                if fields[0] is not None:
                    own = status_at(status)
                    c.execute(
                        TRANSITION_INSERT.format(at="?").replace("%s", "?"),
                        (
                            site,
                            device,
                            fields[0],
                            own and iso(own.astimezone(UTC)),
                            heard,
                            site,
                            device,
                            fields[0],
                        ),
                    )
                c.execute(
                    _STATUS_SQL,
                    (site, device, *fields, json.dumps(status, ensure_ascii=False), heard),
                )
                c.execute("COMMIT")
            except BaseException:
                rollback(c)
                raise

    # --- writes that check first: one BEGIN IMMEDIATE each ---------------------------------

    def put_roster(self, site: str, roster: dict[str, Any], force: bool = False) -> StoredRoster:
        payload, now = roster_json(roster), iso(utcnow())
        with self._lock:
            c = self.conn
            c.execute("BEGIN IMMEDIATE")  # the check and the write see the same row
            try:
                row = c.execute(
                    "SELECT version, published_at FROM rosters WHERE site = ?", (site,)
                ).fetchone()
                if row is not None and row[0] > roster["version"] and not force:
                    stored = StoredRoster(site, row[0], {}, required_time(row[1]))
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
        return StoredRoster(site, roster["version"], json.loads(payload), required_time(now))

    def record_schedule(self, digest: str, body: dict[str, Any], at: datetime) -> tuple[int, bool]:
        published = aware(at).isoformat()  # the publisher's own offset, as released
        text = schedule_json(body)
        with self._lock:
            c = self.conn
            c.execute("BEGIN IMMEDIATE")  # the latest version and the insert see the same table
            try:
                row = c.execute(
                    "SELECT version, digest FROM schedules ORDER BY version DESC LIMIT 1"
                ).fetchone()
                if row is not None and row[1] == digest:
                    c.execute("COMMIT")
                    return row[0], False
                version = 1 if row is None else row[0] + 1
                c.execute(
                    "INSERT INTO schedules (version, digest, body, published_at) "
                    "VALUES (?, ?, ?, ?)",
                    (version, digest, text, published),
                )
                c.execute("COMMIT")
            except BaseException:
                rollback(c)
                raise
        logger.info("store %s: schedule version %d recorded (%s)", self.path, version, digest)
        return version, True

    def add_leaves(self, rows: list[dict[str, Any]], imported_by: str) -> int:
        now = iso(utcnow())
        with self._lock:
            c = self.conn
            c.execute("BEGIN IMMEDIATE")
            try:
                before = c.total_changes
                c.executemany(
                    LEAVE_INSERT.replace("%s", "?"),
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
                            r.get("starts_time", ""),
                            r.get("ends_time", ""),
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
        return None if row is None else leave_row(row)

    def probe_write(self) -> None:
        with self._lock:
            c = self.conn
            c.execute("BEGIN IMMEDIATE")
            try:
                c.execute(_PROBE_SQL, (iso(utcnow()),))
            finally:
                rollback(c)

    def close(self) -> None:
        with self._lock:
            self.conn.close()


def _runner(c: sqlite3.Connection) -> Run:
    def run(sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        return c.execute(sql.replace("%s", "?"), params).fetchall()

    return run


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
    return found.fetchone() is not None


def _same_event(stored: tuple[Any, ...], e: EventRow) -> bool:
    """Whether a resent event is the one stored. ``data`` is compared as JSON, not as text,
    as PostgreSQL's jsonb compares it: a device that started signing resends an event stored
    before in its canonical form (sorted keys, ``3.0`` as ``3``), which is the same event."""
    if stored[:-1] != (e.device, e.site, e.seq, e.type, e.at_text, e.clock):
        return False
    if stored[-1] == e.data:
        return True
    try:
        return bool(json.loads(stored[-1]) == json.loads(e.data))
    except ValueError:
        return False
