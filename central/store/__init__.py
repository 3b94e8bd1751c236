"""The central store (docs/store.md): SQLite (embedded default) or PostgreSQL (psycopg 3).

The store is the only place that writes SQL. Its modules, each with one job:

- ``records``: the typed values in and out (events, rosters, schedules, devices);
- ``filing``: the plausible-time rule, once, for Python and for both dialects' SQL;
- ``hallzone``: the hall's timezone as the SQL reads it;
- ``rejects``: what of a device's rejected input is kept and what only counted;
- ``schema``: tables and views of both dialects as named migrations;
- ``migrations``: which migrations ran, which are due, adopting a numbered store;
- ``base``: the interface and every query both dialects write alike;
- ``sqlite``, ``postgres``: the two stores.

This module re-exports what callers use, so ``from central.store import …`` is the one import.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from central.store.base import Store
from central.store.errors import RosterVersionError, SchemaTooNewError, StoreMissingError
from central.store.filing import (
    PG_PLAUSIBLE,
    PLAUSIBLE_AHEAD,
    PLAUSIBLE_AHEAD_S,
    PLAUSIBLE_FROM,
    SQLITE_PLAUSIBLE,
    filed_at,
    latest_plausible,
    plausible,
    plausible_from,
)
from central.store.hallzone import HALL_TIMEZONE, sqlite_hall_zone
from central.store.postgres import PostgresStore
from central.store.records import (
    DEVICE_KEYS,
    LEAVE_KEYS,
    AppliedMigration,
    BatchWrite,
    DeviceState,
    DeviceTransition,
    EventRow,
    FiledEvent,
    Reject,
    StoredEvent,
    StoredRoster,
    StoredSchedule,
    stored_time,
    utcnow,
)
from central.store.rejects import (
    CONFLICT,
    REJECTED_KEPT_PER_HOUR,
    as_received,
    budget_rejects,
    by_device,
    conflict_rejects,
    hour_of,
    reason_kind,
    storable,
)
from central.store.schema import LEGACY_NAMES, PG_MIGRATIONS, SQLITE_MIGRATIONS, Migration
from central.store.sqlite import SqliteStore

# The roster's canonical text is the contract's (contract/roster.py); re-exported for old imports.
from contract.roster import ROSTER_KEYS, STAFF_ORDER, roster_json

__all__ = [
    "CONFLICT",
    "DEVICE_KEYS",
    "HALL_TIMEZONE",
    "LEAVE_KEYS",
    "LEGACY_NAMES",
    "PG_MIGRATIONS",
    "PG_PLAUSIBLE",
    "PLAUSIBLE_AHEAD",
    "PLAUSIBLE_AHEAD_S",
    "PLAUSIBLE_FROM",
    "REJECTED_KEPT_PER_HOUR",
    "ROSTER_KEYS",
    "SQLITE_MIGRATIONS",
    "SQLITE_PLAUSIBLE",
    "STAFF_ORDER",
    "AppliedMigration",
    "BatchWrite",
    "DeviceState",
    "DeviceTransition",
    "EventRow",
    "FiledEvent",
    "Migration",
    "PostgresStore",
    "Reject",
    "RosterVersionError",
    "SchemaTooNewError",
    "SqliteStore",
    "Store",
    "StoreMissingError",
    "StoredEvent",
    "StoredRoster",
    "StoredSchedule",
    "as_received",
    "budget_rejects",
    "by_device",
    "conflict_rejects",
    "filed_at",
    "hour_of",
    "latest_plausible",
    "open_store",
    "plausible",
    "plausible_from",
    "reason_kind",
    "roster_json",
    "sqlite_hall_zone",
    "storable",
    "stored_time",
    "utcnow",
]


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
