"""The PostgreSQL store (psycopg 3), for a centre that already runs PostgreSQL (docs/store.md).

The connection is in autocommit mode; each write is an explicit transaction. Migrations and
the check-then-write methods (roster, schedule) take an advisory lock first, so several
collectors or commands starting at once queue instead of racing: a row lock cannot serialise
writers before the first row exists.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any
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
from central.store.hallzone import HALL_TIMEZONE
from central.store.records import (
    LEAVE_KEYS,
    BatchWrite,
    EventRow,
    StoredEvent,
    StoredRoster,
    aware,
    utcnow,
)
from central.store.rejects import budget_rejects, by_device, conflict_rejects, hour_of, storable
from central.store.schema import PG_MIGRATIONS
from contract.roster import roster_json

logger = logging.getLogger(__name__)

_DEVICE_SQL = """
INSERT INTO devices (site, device, last_event_at, last_received_at) VALUES (%s, %s, %s, now())
ON CONFLICT (site, device) DO UPDATE SET
  last_event_at = greatest(devices.last_event_at, excluded.last_event_at),
  last_received_at = excluded.last_received_at
"""

# A whole batch in one statement: one round trip, whatever its size. RETURNING names the ids
# this statement stored; ON CONFLICT leaves the others to PostgresStore._conflicts.
_INSERT_EVENTS = """
INSERT INTO events (id, device, site, seq, type, at, clock, data, at_text, prev, sig)
SELECT * FROM unnest(%b::uuid[], %b::text[], %b::text[], %b::bigint[], %b::text[],
                     %b::timestamptz[], %b::text[], %b::jsonb[], %b::text[], %b::text[],
                     %b::text[])
ON CONFLICT (id) DO NOTHING
RETURNING id::text
"""


def _columns(events: list[EventRow]) -> tuple[list[Any], ...]:
    """The events as one list per column, in _conflicts's order."""
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


def _insert_columns(events: list[EventRow]) -> tuple[list[Any], ...]:
    """The events as one list per column, in _INSERT_EVENTS's order: `at` as sent and the
    chain fields besides (docs/tamper-centre.md)."""
    return (
        *_columns(events),
        [e.at_text for e in events],
        [e.prev for e in events],
        [e.sig for e in events],
    )


_STATUS_SQL = """
INSERT INTO devices (site, device, state, version, pending, oldest_s, dead_letter, status,
                     status_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s)
ON CONFLICT (site, device) DO UPDATE SET
  state = excluded.state, version = excluded.version, pending = excluded.pending,
  oldest_s = excluded.oldest_s, dead_letter = excluded.dead_letter, status = excluded.status,
  status_at = excluded.status_at
"""

_LOCK_KEY = 0x48414C4C  # "HALL": the advisory lock of migrations, and with a second key of writes

_MIGRATIONS_TABLE = (
    f"CREATE TABLE {migrations.TABLE} (name text PRIMARY KEY, applied_at timestamptz)"
)
_LEGACY_TABLE = "hall_schema"  # the numbered releases' version, still written (migrations.py)


class PostgresStore(Store):
    migrations = PG_MIGRATIONS
    at_sent_column = "at_text"  # timestamptz keeps the instant, not the text as sent

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

    def _where(self) -> str:
        """The store for messages: host, port, database and schema, never a credential."""
        info = self.conn.info
        where = f"schema {self.schema} of " if self.schema else ""
        return f"{where}postgresql://{info.host}:{info.port}/{info.dbname}"

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

    def _qualified(self, table: str) -> str:
        return f'"{self.schema}".{table}' if self.schema else table

    def _check_exists(self) -> None:
        row = self.conn.execute(
            "SELECT coalesce(to_regclass(%s), to_regclass(%s))",
            (self._qualified(migrations.TABLE), self._qualified(_LEGACY_TABLE)),
        ).fetchone()
        if row[0] is None:
            where = self._where()
            self.conn.close()
            raise StoreMissingError(
                f"store {where}: no "
                "hall-central tables; check [store] url and pg_schema in the config"
            )

    def _migrate(self) -> None:
        with self._lock, self.conn.transaction():
            c = self.conn

            def run(sql: str, params: tuple[Any, ...] | None) -> list[tuple[Any, ...]]:
                cur = c.execute(sql, params)
                return cur.fetchall() if cur.description is not None else []

            def exists(table: str) -> bool:
                return c.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is not None

            # Under the lock: CREATE SCHEMA IF NOT EXISTS itself races between collectors.
            c.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            if self.schema:
                # The schema name is validated by central.config.StoreSection (pattern).
                c.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                c.execute(f'SET search_path TO "{self.schema}"')
            where = self._where()
            if not exists(migrations.TABLE):
                version = 0
                if exists(_LEGACY_TABLE):
                    row = c.execute(f"SELECT version FROM {_LEGACY_TABLE}").fetchone()
                    version = 0 if row is None else row[0]
                migrations.adopt_legacy(run, _MIGRATIONS_TABLE, version, where, "%s")
            names = migrations.apply_due(run, self.migrations, where, utcnow(), "%s")
            # For releases that read a number (migrations.py): how many steps ran.
            c.execute(f"CREATE TABLE IF NOT EXISTS {_LEGACY_TABLE} (version integer NOT NULL)")
            if c.execute(f"UPDATE {_LEGACY_TABLE} SET version = %s", (len(names),)).rowcount == 0:
                c.execute(f"INSERT INTO {_LEGACY_TABLE} (version) VALUES (%s)", (len(names),))
            c.execute(
                "UPDATE hall_zone SET timezone = %s WHERE timezone IS DISTINCT FROM %s",
                (self.tz.key, self.tz.key),
            )

    def _time_span(self, start: datetime, end: datetime) -> tuple[Any, Any]:
        return start, end  # timestamptz: instants compare exactly

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn().execute(sql, params).fetchall()

    @contextmanager
    def transaction(self) -> Iterator[Run]:
        with self._lock:
            conn = self._conn()
            with conn.transaction():
                yield _runner(conn.cursor())

    def stamp(self, moment: datetime) -> Any:
        return aware(moment)

    def event(self, event_id: str) -> StoredEvent | None:
        try:
            uuid.UUID(event_id)
        except ValueError:
            return None  # `id` is a uuid column: anything else names no event
        return super().event(event_id)

    # --- events in -------------------------------------------------------------------------

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
            inserted = {r[0] for r in cur.execute(_INSERT_EVENTS, _insert_columns(events))}
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
                # By identity, not id: a batch may hold one id twice, the first copy stored
                # and a later one with other content refused; the stored copy goes on.
                taken = {id(e) for e in conflicts}
                events = [e for e in events if id(e) not in taken]
                rejects = [*rejects, *conflict_rejects(conflicts)]
        if events:
            # now() of this transaction is received_at; the client's clock stands in for it
            # (the same host's, or one kept in step by NTP: the window ahead is 10 minutes).
            received = utcnow()
            last = latest_plausible(events, received, self.tz)
            cur.execute(_DEVICE_SQL, (events[0].site, events[0].device, last.at if last else None))
            open_cases(_runner(cur), self.stamp, events, received, self.tz, self.case_policy())
        for device, group in by_device(rejects).items():
            kept = cur.execute(KEPT_SQL.format(m="%s"), (device, hour)).fetchone()[0]
            whole, tallies = budget_rejects(group, self.rejected_kept_per_hour - int(kept))
            cur.executemany(
                COUNT_REJECTS_SQL.format(m="%s"),
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
        fields = status_fields(status)
        heard = heard_at or utcnow()
        with self._lock:
            conn = self._conn()
            with conn.transaction():  # the transition and the status: both or neither
                if fields[0] is not None:
                    conn.execute(
                        TRANSITION_INSERT.format(at="%s::timestamptz"),
                        (
                            site,
                            device,
                            fields[0],
                            status_at(status),
                            heard,
                            site,
                            device,
                            fields[0],
                        ),
                    )
                conn.execute(
                    _STATUS_SQL,
                    (site, device, *fields, json.dumps(status, ensure_ascii=False), heard),
                )

    # --- writes that check first: under an advisory lock each ------------------------------

    def put_roster(self, site: str, roster: dict[str, Any], force: bool = False) -> StoredRoster:
        payload = roster_json(roster)
        with self._lock:
            conn = self._conn()
            with conn.transaction():
                # Serialises publishers of one site, even before its first row exists
                # (a FOR UPDATE row lock would not).
                conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_KEY, site))
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

    def record_schedule(self, digest: str, body: dict[str, Any], at: datetime) -> tuple[int, bool]:
        published = aware(at)
        text = schedule_json(body)
        with self._lock:
            conn = self._conn()
            with conn.transaction():
                # Publishers queue here, so "latest + 1" is never taken twice.
                conn.execute(
                    "SELECT pg_advisory_xact_lock(%s, hashtext('schedules'))", (_LOCK_KEY,)
                )
                row = conn.execute(
                    "SELECT version, digest FROM schedules ORDER BY version DESC LIMIT 1"
                ).fetchone()
                if row is not None and row[1] == digest:
                    return row[0], False
                version = 1 if row is None else row[0] + 1
                conn.execute(
                    "INSERT INTO schedules (version, digest, body, published_at) "
                    "VALUES (%s, %s, %s::jsonb, %s)",
                    (version, digest, text, published),
                )
        logger.info("store: schedule version %d recorded (%s)", version, digest)
        return version, True

    def add_leaves(self, rows: list[dict[str, Any]], imported_by: str) -> int:
        with self._lock:
            conn = self._conn()
            with conn.transaction():
                cur = conn.cursor()
                added = 0
                for r in rows:
                    cur.execute(
                        LEAVE_INSERT,
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
                            r.get("starts_time", ""),
                            r.get("ends_time", ""),
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
        return None if row is None else leave_row(row)

    def probe_write(self) -> None:
        with self._lock:
            conn = self._conn()
            with conn.transaction(force_rollback=True):
                conn.execute(
                    "INSERT INTO rejected (id, device, reason, payload) "
                    "VALUES ('hall-central-check', NULL, 'check', NULL)"
                )

    def close(self) -> None:
        with self._lock:
            self.conn.close()


def _runner(cur: Any) -> Run:
    def run(sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        cur.execute(sql, params, prepare=False)
        return cur.fetchall() if cur.description is not None else []

    return run
