"""Central stores as earlier releases left them, for the tests of migrations.

Releases before named migrations numbered their steps: SQLite ``PRAGMA user_version`` and
PostgreSQL table ``hall_schema`` held N, "the first N steps ran". These helpers build such a
store at any N from the released steps (which are never edited, central/store/schema.py);
tests/data/legacy_store holds the last numbered release's own output, data included.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from central.store import LEGACY_NAMES, PG_MIGRATIONS, SQLITE_MIGRATIONS, Store


def numbered_sqlite(path: Path, version: int) -> sqlite3.Connection:
    """An SQLite store at numbered schema ``version``; the open connection, for the caller to
    add rows to, commit and close."""
    conn = sqlite3.connect(path)
    for migration in SQLITE_MIGRATIONS[:version]:
        assert migration.name in LEGACY_NAMES
        for sql in migration.steps:
            conn.execute(sql)
    conn.execute(f"PRAGMA user_version = {version}")
    conn.commit()  # sqlite3 opened a transaction at the first DML statement of a step
    return conn


def numbered_postgres(conn: Any, schema: str, version: int) -> None:
    """A PostgreSQL store at numbered schema ``version`` in a new ``schema``; ``conn``
    (autocommit) is left with that schema on its search_path."""
    conn.execute(f'CREATE SCHEMA "{schema}"')
    conn.execute(f'SET search_path TO "{schema}"')
    for migration in PG_MIGRATIONS[:version]:
        assert migration.name in LEGACY_NAMES
        for sql in migration.steps:
            conn.execute(sql)
    conn.execute("CREATE TABLE hall_schema (version integer NOT NULL)")
    conn.execute("INSERT INTO hall_schema (version) VALUES (%s)", (version,))


def fully_migrated(store: Store) -> bool:
    """Every migration of this release is recorded in ``store``, in order."""
    return [m.name for m in store.applied_migrations()] == [m.name for m in store.migrations]
