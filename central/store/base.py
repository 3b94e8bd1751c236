"""What both stores share: the interface, and every query whose SQL reads the same on both.

A dialect says how to run a statement (:meth:`Store.query`, with ``%s`` placeholders) and how to
narrow by time (:meth:`Store._time_span`); everything else here is written once. Callers get
frozen dataclasses (central/store/records.py), never rows: nothing outside the store branches
on the dialect.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from central.store import cases as case_sql
from central.store.cases import DeadlinePolicy, Run
from central.store.chains import ChainQueries
from central.store.errors import StoreError
from central.store.filing import filed_at
from central.store.migrations import TABLE as MIGRATIONS_TABLE
from central.store.records import (
    DEVICE_KEYS,
    LEAVE_KEYS,
    AppliedMigration,
    AuditEntry,
    BatchWrite,
    CaseLogEntry,
    CaseRecord,
    DeviceState,
    DeviceTransition,
    EventRow,
    FiledEvent,
    Reject,
    StoredEvent,
    StoredRoster,
    StoredSchedule,
    UserRecord,
    required_time,
    stored_json,
    stored_time,
    utcnow,
)
from central.store.rejects import REJECTED_KEPT_PER_HOUR, hour_of
from central.store.schema import Migration

# --- SQL both dialects write the same way ({m}: the placeholder) ------------------------------

COUNT_REJECTS_SQL = """
INSERT INTO rejected_counts (device, hour, reason, count, bytes, kept)
VALUES ({m}, {m}, {m}, {m}, {m}, {m})
ON CONFLICT (device, hour, reason) DO UPDATE SET
  count = rejected_counts.count + excluded.count,
  bytes = rejected_counts.bytes + excluded.bytes,
  kept = rejected_counts.kept + excluded.kept
"""
KEPT_SQL = "SELECT coalesce(sum(kept), 0) FROM rejected_counts WHERE device = {m} AND hour = {m}"

LEAVE_INSERT = (
    "INSERT INTO leave (staff_id, kind, starts, starts_half, ends, ends_half, approver, note, "
    "imported_by, imported_at, source, slot, slot_time, starts_time, ends_time) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (staff_id, kind, starts, starts_half, ends, ends_half, slot, starts_time, "
    "ends_time) DO NOTHING"
)

# One row per change of a device's status `state` (docs/post.md), in the transaction of the
# status's upsert and before it: the row is added only when `devices` does not hold that state
# already. One primary-key probe per status, so the collector's path stays cheap. ``{at}``: the
# dialect's typed placeholder for a time (a NULL in a SELECT list has no type in PostgreSQL).
TRANSITION_INSERT = (
    "INSERT INTO device_transitions (site, device, state, at, received_at) "
    "SELECT %s, %s, %s, {at}, {at} WHERE NOT EXISTS "
    "(SELECT 1 FROM devices WHERE site = %s AND device = %s AND state = %s)"
)


def status_at(status: dict[str, Any]) -> datetime | None:
    """The status's own ``at`` (docs/topics.md), when it is an ISO time with its offset."""
    value = status.get("at")
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


_EVENT_COLUMNS = "id, site, device, seq, type, at, clock, received_at, data"
# What the devices' signed chains need besides (docs/tamper-centre.md): `prev`, `sig` and the
# `at` text as sent, which is the `at` column on SQLite and `at_text` on PostgreSQL
# (Store.at_sent_column).
_CHAIN_COLUMNS = "prev, sig"

# Every site of a roster, of a device the centre heard (`devices`: its status, or its events,
# whose batch upserts the row) or of any stored event. Events are found by walking the
# (site, device, seq) index from one site to the next (a "loose index scan"): one index probe
# per site, however many events the table holds, where SELECT DISTINCT would read the whole
# index. The same SQL on both dialects.
_SITES_SQL = """
WITH RECURSIVE seen(site) AS (
    SELECT min(site) FROM events
    UNION ALL
    SELECT (SELECT e.site FROM events e WHERE e.site > seen.site ORDER BY e.site LIMIT 1)
    FROM seen WHERE seen.site IS NOT NULL
)
SELECT site FROM seen WHERE site IS NOT NULL
UNION
SELECT site FROM rosters
UNION
SELECT site FROM devices
"""


def status_fields(status: dict[str, Any]) -> tuple[Any, ...]:
    """``devices`` columns (state, version, pending, oldest_s, dead_letter) from a retained
    status; a field of the wrong type is stored as NULL, never refused."""
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


def leave_row(row: tuple[Any, ...]) -> dict[str, Any]:
    out = dict(zip(LEAVE_KEYS, row, strict=True))
    for key in ("starts", "ends"):  # SQLite keeps ISO text, PostgreSQL a date
        if isinstance(out[key], str):
            out[key] = date.fromisoformat(out[key])
    return out


def _event(row: tuple[Any, ...]) -> StoredEvent:
    eid, site, device, seq, etype, at, clock, received, data, prev, sig, at_text = row
    return StoredEvent(
        str(eid),
        site,
        device,
        seq,
        etype,
        required_time(at),
        clock,
        required_time(received),
        stored_json(data),
        prev=prev,
        sig=sig,
        at_text=at_text,
    )


def _schedule(row: tuple[Any, ...]) -> StoredSchedule:
    version, digest, body, published_at = row
    return StoredSchedule(version, digest, stored_json(body), required_time(published_at))


class Store(ChainQueries):
    """Common interface of the two stores."""

    url: str
    tz: tzinfo  # the hall's timezone (central.timezone)
    migrations: tuple[Migration, ...]  # this dialect's, in order
    rejected_kept_per_hour: int = REJECTED_KEPT_PER_HOUR  # central.rejected_kept_per_hour

    # --- dialect ----------------------------------------------------------------------------

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one statement (``%s`` placeholders on both dialects) and return its rows.

        Product code calls the named methods below; this stays for the tests, benchmarks and
        diagnostics that look at the tables directly."""
        raise NotImplementedError

    def _time_span(self, start: datetime, end: datetime) -> tuple[Any, Any]:
        """Bounds that keep at least every row whose ``at`` or ``received_at`` lies in
        [start, end): exact instants where the dialect stores instants, wider where it does
        not. The caller filters the rows exactly."""
        raise NotImplementedError

    def is_transient(self, exc: BaseException) -> bool:
        """True when ``exc`` says the store is unavailable (retry later), not the data bad."""
        raise NotImplementedError

    def probe_write(self) -> None:
        """Prove the store writable with a write that is rolled back (``hall-central check``):
        returns when a ``rejected`` row could be inserted, raises what the insert raised."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- events in -------------------------------------------------------------------------

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

    def upsert_status(
        self, site: str, device: str, status: dict[str, Any], heard_at: datetime | None = None
    ) -> None:
        """Store a device's status; ``status_at`` is ``heard_at`` (aware), default now: when
        the centre last heard the device (docs/board.md "Offline and stale devices")."""
        raise NotImplementedError

    # --- events out ------------------------------------------------------------------------

    def _events_where(self, where: str, params: tuple[Any, ...]) -> list[StoredEvent]:
        rows = self.query(
            f"SELECT {_EVENT_COLUMNS}, {_CHAIN_COLUMNS}, {self.at_sent_column} FROM events "
            f"WHERE {where}",
            params,
        )
        return [_event(r) for r in rows]

    def events_filed_between(
        self, types: tuple[str, ...], start: datetime, end: datetime, site: str | None = None
    ) -> list[FiledEvent]:
        """Events of ``types`` that the plausible-time rule files in [start, end), ordered by
        that time, then id (the reports' months; 差评 cases of a month).

        The SQL only narrows (by type and site, and by ``at`` or ``received_at``); the rule
        itself is applied here, once, by central/store/filing.py."""
        lo, hi = self._time_span(start, end)
        marks = ", ".join(["%s"] * len(types))
        where = (
            f"type IN ({marks}) AND ((at >= %s AND at < %s) "
            "OR (received_at >= %s AND received_at < %s))"
        )
        params: tuple[Any, ...] = (*types, lo, hi, lo, hi)
        if site is not None:
            where += " AND site = %s"
            params += (site,)
        out = []
        for eid, esite, device, seq, etype, at, clock, received, data, sig in self.query(
            f"SELECT {_EVENT_COLUMNS}, sig FROM events WHERE {where}", params
        ):
            at, received = required_time(at), required_time(received)
            moment, suspect = filed_at(at, clock, received, self.tz)
            if not start <= moment < end:
                continue  # read for the margin only: its JSON is never parsed
            out.append(
                FiledEvent(
                    str(eid),
                    esite,
                    device,
                    seq,
                    etype,
                    at,
                    clock,
                    received,
                    stored_json(data),
                    moment.astimezone(self.tz),
                    suspect,
                    sig=sig,
                )
            )
        out.sort(key=lambda e: (e.filed_at, e.id))
        return out

    def events_at_between(
        self, types: tuple[str, ...], start: datetime, end: datetime
    ) -> list[StoredEvent]:
        """Events of ``types`` whose own ``at`` (as the device stamped it, believed or not) is
        in [start, end), in no particular order: the hall board's day."""
        lo, hi = self._time_span(start, end)
        marks = ", ".join(["%s"] * len(types))
        found = self._events_where(f"type IN ({marks}) AND at >= %s AND at < %s", (*types, lo, hi))
        return [e for e in found if start <= e.at < end]

    def event(self, event_id: str) -> StoredEvent | None:
        """One event by id (a 差评 case's rating), or None."""
        found = self._events_where("id = %s", (event_id,))
        return found[0] if found else None

    def device_events(
        self, site: str, device: str, after_seq: int = 0, limit: int = 1000
    ) -> list[StoredEvent]:
        """One device's events with ``seq`` > ``after_seq``, in ``seq`` order, at most
        ``limit``: an audit walks a device's whole history page by page on the
        (site, device, seq) index."""
        return self._events_where(
            "site = %s AND device = %s AND seq > %s ORDER BY seq LIMIT %s",
            (site, device, after_seq, limit),
        )

    def event_count(self, device: str | None = None) -> int:
        """How many events are stored (of one ``device``)."""
        if device is None:
            return int(self.query("SELECT count(*) FROM events")[0][0])
        return int(self.query("SELECT count(*) FROM events WHERE device = %s", (device,))[0][0])

    def sites(self) -> list[str]:
        """Every site with a stored roster, a device the centre heard (a status or events) or a
        stored event, sorted: the sites the hall's schedule is published to."""
        return sorted({row[0] for row in self.query(_SITES_SQL)})

    # --- devices and rejects ---------------------------------------------------------------

    def _device_rows(self) -> list[tuple[Any, ...]]:
        return self.query(f"SELECT {', '.join(DEVICE_KEYS)} FROM devices ORDER BY site, device")

    def devices(self) -> list[dict[str, Any]]:
        """One row per device (DEVICE_KEYS), ordered by site and device, times as stored
        (``hall-central devices`` prints them): prefer :meth:`device_states`."""
        return [dict(zip(DEVICE_KEYS, row, strict=True)) for row in self._device_rows()]

    def device_states(self) -> list[DeviceState]:
        """Every device the centre heard of, ordered by site and device."""
        out = []
        for (
            site,
            device,
            state,
            version,
            pending,
            oldest,
            dead,
            status_at,
            last,
            received,
        ) in self._device_rows():
            out.append(
                DeviceState(
                    site,
                    device,
                    state,
                    version,
                    pending,
                    oldest,
                    dead,
                    stored_time(status_at),
                    stored_time(last),
                    stored_time(received),
                )
            )
        return out

    def device_transitions(
        self, start: datetime, end: datetime, site: str | None = None
    ) -> list[DeviceTransition]:
        """Status changes heard in [start, end), and before them each device's last change
        heard before ``start`` (its state at ``start``), ordered by site, device and time."""
        lo, hi = self.stamp(start), self.stamp(end)
        narrow, extra = ("AND site = %s", (site,)) if site is not None else ("", ())
        rows = self.query(
            "SELECT site, device, state, at, received_at FROM device_transitions "
            f"WHERE received_at >= %s AND received_at < %s {narrow} "
            "UNION ALL "
            "SELECT t.site, t.device, t.state, t.at, t.received_at FROM device_transitions t "
            "JOIN (SELECT site, device, max(received_at) AS last FROM device_transitions "
            f"WHERE received_at < %s {narrow} GROUP BY site, device) b "
            "ON t.site = b.site AND t.device = b.device AND t.received_at = b.last",
            (lo, hi, *extra, lo, *extra),
        )
        out = [
            DeviceTransition(site, device, state, stored_time(at), required_time(received))
            for site, device, state, at, received in rows
        ]
        out.sort(key=lambda t: (t.site, t.device, t.received_at))
        return out

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

    # --- rosters ---------------------------------------------------------------------------

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
        return [StoredRoster(r[0], r[1], stored_json(r[2]), required_time(r[3])) for r in rows]

    def roster(self, site: str) -> StoredRoster | None:
        found = self.rosters(site)
        return found[0] if found else None

    # --- the hall's schedule ---------------------------------------------------------------

    def record_schedule(self, digest: str, body: dict[str, Any], at: datetime) -> tuple[int, bool]:
        """Record ``body`` (with its ``digest``) as the hall's schedule published at ``at``
        (aware): returns (version, created). The latest version's digest again is that
        version, not created; any other body, even one published before (A, B, A), becomes
        version = latest + 1. Atomic against concurrent publishers."""
        raise NotImplementedError

    def latest_schedule(self) -> StoredSchedule | None:
        rows = self.query(
            "SELECT version, digest, body, published_at FROM schedules "
            "ORDER BY version DESC LIMIT 1"
        )
        return _schedule(rows[0]) if rows else None

    def schedules(self) -> list[StoredSchedule]:
        """Every published version, oldest first."""
        rows = self.query(
            "SELECT version, digest, body, published_at FROM schedules ORDER BY version"
        )
        return [_schedule(r) for r in rows]

    # --- leave -----------------------------------------------------------------------------

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
        return [leave_row(r) for r in rows]

    def remove_leave(self, leave_id: int) -> dict[str, Any] | None:
        """Delete one leave row; returns it, or None when there is no such id."""
        raise NotImplementedError

    # --- schema ----------------------------------------------------------------------------

    # --- 差评 cases (docs/cases.md) -------------------------------------------------------------

    # The deadlines of a case opened at an instant: the collector sets them from central.toml
    # [cases] and the hall's calendar; a store opened without (a test, a command) uses the
    # documented example limits on the built-in calendar.
    case_deadlines: DeadlinePolicy | None = None

    def case_policy(self) -> DeadlinePolicy:
        if self.case_deadlines is None:
            from central.cases.deadlines import default_policy

            self.case_deadlines = default_policy(self.tz)
        return self.case_deadlines

    @contextmanager
    def transaction(self) -> Iterator[Run]:
        """One write transaction; yields a ``Run`` taking ``%s`` placeholders."""
        raise NotImplementedError
        yield  # pragma: no cover

    def stamp(self, moment: datetime) -> Any:
        """``moment`` (aware) as this dialect stores the centre's times."""
        raise NotImplementedError

    def cases(
        self,
        states: Iterable[str] | None = None,
        rated_from: datetime | None = None,
        rated_to: datetime | None = None,
        site: str | None = None,
        window: str | None = None,
        staff_id: str | None = None,
    ) -> list[CaseRecord]:
        """Cases, oldest first; each filter narrows (``rated_*``: the rating's filed time in
        [rated_from, rated_to))."""
        where, params = ["1 = 1"], []
        wanted = list(states) if states is not None else None
        if wanted is not None:
            if not wanted:
                return []
            where.append(f"state IN ({', '.join(['%s'] * len(wanted))})")
            params.extend(wanted)
        for column, value in (("site", site), ('"window"', window), ("staff_id", staff_id)):
            if value is not None:
                where.append(f"{column} = %s")
                params.append(value)
        if rated_from is not None:
            where.append("rated_at >= %s")
            params.append(self.stamp(rated_from))
        if rated_to is not None:
            where.append("rated_at < %s")
            params.append(self.stamp(rated_to))
        rows = self.query(
            f"SELECT {case_sql.CASE_COLUMNS} FROM cases WHERE {' AND '.join(where)} ORDER BY id",
            tuple(params),
        )
        return [case_sql.case_record(r, self.tz) for r in rows]

    def case(self, case_id: int) -> CaseRecord | None:
        rows = self.query(f"SELECT {case_sql.CASE_COLUMNS} FROM cases WHERE id = %s", (case_id,))
        return case_sql.case_record(rows[0], self.tz) if rows else None

    def cases_for_ratings(self, rating_ids: Iterable[str]) -> dict[str, CaseRecord]:
        """The case of each rating that has one, by rating id (500 ids a query)."""
        ids = list(dict.fromkeys(rating_ids))
        found: dict[str, CaseRecord] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            rows = self.query(
                f"SELECT {case_sql.CASE_COLUMNS} FROM cases "
                f"WHERE rating_id IN ({', '.join(['%s'] * len(chunk))})",
                tuple(chunk),
            )
            for row in rows:
                case = case_sql.case_record(row, self.tz)
                found[case.rating_id] = case
        return found

    def case_log(self, case_ids: Iterable[int]) -> dict[int, list[CaseLogEntry]]:
        """Every transition of each case, in order, by case id."""
        ids = list(dict.fromkeys(case_ids))
        out: dict[int, list[CaseLogEntry]] = {i: [] for i in ids}
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            rows = self.query(
                f"SELECT {case_sql.LOG_COLUMNS} FROM case_log "
                f"WHERE case_id IN ({', '.join(['%s'] * len(chunk))}) ORDER BY case_id, id",
                tuple(chunk),
            )
            for row in rows:
                entry = case_sql.log_entry(row, self.tz)
                out[entry.case_id].append(entry)
        return out

    def move_case(
        self,
        case_id: int,
        from_state: str,
        to_state: str,
        by: str,
        note: str,
        at: datetime,
        deadlines: dict[str, datetime] | None = None,
        final: bool = False,
        address: str = "",
    ) -> bool:
        """Move a case (central/cases/desk.py checks the move first), log and audit it in one
        transaction. False: it was not in ``from_state`` any more, nothing written."""
        with self.transaction() as run:
            return case_sql.move_case(
                run,
                self.stamp,
                case_id,
                from_state,
                to_state,
                by,
                note,
                at,
                deadlines,
                final,
                address,
            )

    # --- office accounts and the audit log ------------------------------------------------------

    def add_user(self, name: str, role: str, password_hash: str, at: datetime) -> None:
        """A new account; raises :class:`StoreError` if the name is taken. Audited."""
        with self.transaction() as run:
            if run("SELECT name FROM users WHERE name = %s", (name,)):
                raise StoreError(f"user {name!r} exists already")
            run(
                f"INSERT INTO users ({case_sql.USER_COLUMNS}) VALUES (%s, %s, %s, %s, %s)",
                (name, role, password_hash, self.stamp(at), False),
            )
            run(
                case_sql.INSERT_AUDIT,
                (self.stamp(at), "shell", "user.add", f"user:{name}", f"role={role}", "shell"),
            )

    def update_user(
        self,
        name: str,
        at: datetime,
        by: str,
        password_hash: str | None = None,
        role: str | None = None,
        disabled: bool | None = None,
    ) -> bool:
        """Change an account's password hash, role or disabled flag; audited. False: no such
        account."""
        sets, params, said = [], [], []
        for column, value in (
            ("password_hash", password_hash),
            ("role", role),
            ("disabled", disabled),
        ):
            if value is not None:
                sets.append(f"{column} = %s")
                params.append(value)
                said.append("password" if column == "password_hash" else f"{column}={value}")
        if not sets:
            return self.user(name) is not None
        with self.transaction() as run:
            rows = run(
                f"UPDATE users SET {', '.join(sets)} WHERE name = %s RETURNING name",
                (*params, name),
            )
            if not rows:
                return False
            run(
                case_sql.INSERT_AUDIT,
                (self.stamp(at), by, "user.change", f"user:{name}", ", ".join(said), "shell"),
            )
        return True

    def user(self, name: str) -> UserRecord | None:
        rows = self.query(f"SELECT {case_sql.USER_COLUMNS} FROM users WHERE name = %s", (name,))
        return case_sql.user_record(rows[0], self.tz) if rows else None

    def users(self) -> list[UserRecord]:
        rows = self.query(f"SELECT {case_sql.USER_COLUMNS} FROM users ORDER BY name")
        return [case_sql.user_record(r, self.tz) for r in rows]

    def record_audit(
        self, user: str, action: str, target: str, detail: str, address: str, at: datetime
    ) -> None:
        """One action of a person (a login, a failed login, an export) in ``audit_log``."""
        with self.transaction() as run:
            run(case_sql.INSERT_AUDIT, (self.stamp(at), user, action, target, detail, address))

    def audit_log(self, limit: int = 200, user: str | None = None) -> list[AuditEntry]:
        """The latest ``limit`` audit entries, newest first."""
        where, params = ("WHERE user_name = %s", (user,)) if user is not None else ("", ())
        rows = self.query(
            f"SELECT {case_sql.AUDIT_COLUMNS} FROM audit_log {where} ORDER BY id DESC LIMIT %s",
            (*params, limit),
        )
        return [case_sql.audit_entry(r, self.tz) for r in rows]

    def applied_migrations(self) -> list[AppliedMigration]:
        """The migrations recorded in this store, in this release's order."""
        rows = dict(self.query(f"SELECT name, applied_at FROM {MIGRATIONS_TABLE}"))
        return [
            AppliedMigration(m.name, stored_time(rows[m.name]))
            for m in self.migrations
            if m.name in rows
        ]

    # --- checkpoints (docs/tamper.md "Monthly seal", central/seal/) ----------------------------

    def sealable_events(self, start: datetime, end: datetime) -> list[StoredEvent]:
        """Events the centre received in [start, end), in the seal's order: ``received_at``,
        then ``id``. The centre's own time decides the month, so a late arrival joins the month
        it arrived in and never reorders a sealed one."""
        return self._events_where(
            "received_at >= %s AND received_at < %s ORDER BY received_at, id",
            (self.stamp(start), self.stamp(end)),
        )

    def add_checkpoint(self, c: Checkpoint, leaves: list[tuple[str, str]]) -> int:
        """Store a checkpoint and its leaves ((event id, leaf hash hex) in tree order) in one
        transaction; returns its id."""
        with self.transaction() as run:
            [(cid,)] = run(
                "INSERT INTO checkpoints (month, tree_size, root, signature, public_key, "
                "sealed_at, previous) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (
                    c.month,
                    c.tree_size,
                    c.root,
                    c.signature,
                    c.public_key,
                    self.stamp(c.sealed_at),
                    c.previous,
                ),
            )
            for i in range(0, len(leaves), 500):
                chunk = leaves[i : i + 500]
                marks = ", ".join(["(%s, %s, %s, %s)"] * len(chunk))
                params: list[Any] = []
                for j, (event_id, leaf) in enumerate(chunk, start=i):
                    params += [cid, j, event_id, leaf]
                run(
                    f"INSERT INTO checkpoint_leaves (checkpoint, idx, event_id, leaf) "
                    f"VALUES {marks}",
                    tuple(params),
                )
        return int(cid)

    def checkpoints(self, month: str) -> list[Checkpoint]:
        """The month's checkpoints, oldest first."""
        rows = self.query(
            f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE month = %s ORDER BY id",
            (month,),
        )
        return [_checkpoint(r) for r in rows]

    def checkpoint(self, checkpoint_id: int) -> Checkpoint | None:
        rows = self.query(
            f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE id = %s", (checkpoint_id,)
        )
        return _checkpoint(rows[0]) if rows else None

    def checkpoint_leaves(self, checkpoint_id: int) -> list[tuple[str, str]]:
        """(event id, leaf hash hex) of a checkpoint, in tree order."""
        rows = self.query(
            "SELECT event_id, leaf FROM checkpoint_leaves WHERE checkpoint = %s ORDER BY idx",
            (checkpoint_id,),
        )
        return [(str(e), str(h)) for e, h in rows]

    def checkpoints_of_event(self, event_id: str) -> list[int]:
        """Ids of the checkpoints whose tree holds ``event_id``, oldest first."""
        rows = self.query(
            "SELECT checkpoint FROM checkpoint_leaves WHERE event_id = %s ORDER BY checkpoint",
            (event_id,),
        )
        return [int(r[0]) for r in rows]


def schedule_json(body: dict[str, Any]) -> str:
    """The schedule body as stored: UTF-8 JSON text."""
    return json.dumps(body, ensure_ascii=False)


@dataclass(frozen=True)
class Checkpoint:
    """A sealed month (docs/tamper.md): ``root`` and ``public_key`` hex, ``signature`` base64
    over :func:`central.seal.checkpoint.statement`."""

    month: str
    tree_size: int
    root: str
    signature: str
    public_key: str
    sealed_at: datetime
    previous: int | None = None
    id: int | None = None


_CHECKPOINT_COLUMNS = "id, month, tree_size, root, signature, public_key, sealed_at, previous"


def _checkpoint(row: tuple[Any, ...]) -> Checkpoint:
    cid, month, size, root, sig, key, sealed_at, previous = row
    return Checkpoint(
        month,
        int(size),
        root,
        sig,
        key,
        required_time(sealed_at),
        None if previous is None else int(previous),
        int(cid),
    )
