"""central/store/schema.py and migrations.py: named migrations, and stores from the numbered era.

tests/data/legacy_store holds what releases that numbered their migrations wrote: an sqlite3
dump and a pg_dump of a store their collector filled, at schema version 7 (before the schedule)
and 8 (the last numbered release). Each is opened here by the current code, which must adopt it
in place: every row kept, no released step run again, only the new steps run, and the result
shaped exactly like a store created today.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from central.store import (
    LEGACY_NAMES,
    PG_MIGRATIONS,
    SQLITE_MIGRATIONS,
    PostgresStore,
    SchemaTooNewError,
    open_store,
)
from tests import support as testing
from tests.storekit import fully_migrated, numbered_sqlite
from tests.support import PG_URL

LEGACY = Path(__file__).parent / "data" / "legacy_store"
VERSIONS = (7, 8)


def new_tables(version: int) -> set[str]:
    """The tables this release adds to a store of numbered ``version``."""
    cases = {"cases", "case_log", "users", "audit_log"}
    chains = {"device_keys", "chain_findings", "chain_heads"}
    added = {
        "hall_migrations",
        "device_transitions",
        "checkpoints",
        "checkpoint_leaves",
        *cases,
        *chains,
    }
    return added | ({"schedules"} if version < 8 else set())


def test_both_dialects_name_the_same_migrations_in_the_same_order():
    names = [m.name for m in SQLITE_MIGRATIONS]
    assert names == [m.name for m in PG_MIGRATIONS]
    assert len(set(names)) == len(names)
    assert names[: len(LEGACY_NAMES)] == list(LEGACY_NAMES)
    assert names[len(LEGACY_NAMES) :] == [
        "schedules_digest",
        "punch_schedule_version",
        "cases",
        "ratings_case_no",
        "leave_times",
        "device_transitions",
        "checkpoints",
        "event_chain",
    ]


# --- SQLite --------------------------------------------------------------------------------


def _sqlite_legacy(path: Path, version: int) -> None:
    conn = sqlite3.connect(path)
    conn.executescript((LEGACY / f"store_v{version}.sqlite.sql").read_text(encoding="utf-8"))
    conn.close()


def _sqlite_shape(path: Path) -> set[tuple[str, str, str | None]]:
    """Every table, index and view: (type, name, its SQL as stored)."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
        ).fetchall()
    return set(rows)


Contents = dict[str, list[dict[str, Any]]]


def _rows(cursor: Any) -> list[dict[str, Any]]:
    columns = [d[0] for d in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def _kept(after: Contents, before: Contents, added: set[str]) -> Contents:
    """``after`` as ``before`` saw it: its tables and views but ``added``, their columns only
    (a migration may add a column to a view), rows in a stable order."""

    def key(row: dict[str, Any]) -> str:
        return repr(tuple(row.values()))

    out = {}
    for name, rows in after.items():
        if name in added:
            continue
        columns = list(before[name][0]) if before.get(name) else list(rows[0] if rows else [])
        out[name] = sorted(({c: r[c] for c in columns} for r in rows), key=key)
    return out


def _sqlite_contents(path: Path) -> Contents:
    """Every table's and view's rows (views too: filed_at is computed)."""
    with sqlite3.connect(path) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY name"
            )
        ]
        return {n: _rows(conn.execute(f'SELECT * FROM "{n}"')) for n in names}


@pytest.mark.parametrize("version", VERSIONS)
def test_a_numbered_sqlite_store_is_adopted_in_place_keeping_every_row(tmp_path, version):
    path = tmp_path / "hall.db"
    _sqlite_legacy(path, version)
    before = _sqlite_contents(path)
    assert before["events"] and before["leave"] and before["rejected_counts"]
    with open_store(f"sqlite:///{path}") as s:
        applied = s.applied_migrations()
        assert [m.name for m in applied] == [m.name for m in SQLITE_MIGRATIONS]
        # The numbered steps ran under the old release: when is not known; only the new ones
        # ran now.
        assert [m.applied_at for m in applied[:version]] == [None] * version
        assert all(m.applied_at is not None for m in applied[version:])
        # The number an older hall-central reads: now past its own list, so it refuses.
        assert s.query("PRAGMA user_version") == [(len(SQLITE_MIGRATIONS),)]
        assert s.sites() == ["chengxi", "jiedong"]
        _check_schedules(s, version)
    after = _sqlite_contents(path)
    assert _kept(after, before, new_tables(version)) == _kept(before, before, set())
    # A leave id, once removed, is still never reused after the adoption.
    with open_store(f"sqlite:///{path}") as s:
        assert [r["id"] for r in s.leaves()] == [1, 2]
        row = dict(s.leaves()[0], note="again", starts_half="am")
        assert s.add_leaves([row], "office") == 1
        assert sorted(r["id"] for r in s.leaves()) == [1, 2, 4]


def _check_schedules(store, version: int) -> None:
    """Version 8's schedules read back typed; a version-7 store starts with none."""
    found = store.schedules()
    if version < 8:
        assert found == []
        return
    assert [(s.version, s.digest) for s in found] == [
        (1, "digest-a"),
        (2, "digest-b"),
        (3, "digest-a"),
    ]
    assert found[0].body == {
        "hours": {"grace_min": 0},
        "calendar": {"2026": {"holidays": ["2026-10-01"]}},
    }
    assert found[0].published_at == datetime(2026, 12, 1, 1, 0, 0, 123456, tzinfo=UTC)
    assert store.record_schedule("digest-a", found[0].body, datetime.now(UTC)) == (3, False)


@pytest.mark.parametrize("version", VERSIONS)
def test_a_fresh_sqlite_store_is_shaped_like_an_adopted_one(tmp_path, version):
    """Created today, step by step, the store has exactly the tables, indexes and views (with
    the same SQL text: no released step was edited) of one a numbered release created and this
    release then migrated."""
    _sqlite_legacy(tmp_path / "old.db", version)
    open_store(f"sqlite:///{tmp_path}/old.db").close()
    open_store(f"sqlite:///{tmp_path}/new.db").close()
    shape = _sqlite_shape(tmp_path / "new.db")
    assert {kind for kind, _, _ in shape} == {"table", "index", "view"}
    assert shape == _sqlite_shape(tmp_path / "old.db")


@pytest.mark.parametrize("version", range(len(LEGACY_NAMES) + 1))
def test_every_numbered_sqlite_version_runs_exactly_the_missing_steps(tmp_path, version):
    path = tmp_path / "hall.db"
    numbered_sqlite(path, version).close()
    with open_store(f"sqlite:///{path}") as s:
        assert fully_migrated(s)
        ran_now = [m.name for m in s.applied_migrations() if m.applied_at is not None]
        assert ran_now == [m.name for m in SQLITE_MIGRATIONS[version:]]


def test_reopening_runs_nothing(tmp_path):
    url = f"sqlite:///{tmp_path}/hall.db"
    with open_store(url) as s:
        first = s.applied_migrations()
    with open_store(url) as s:
        assert s.applied_migrations() == first


def test_a_store_migrated_by_a_newer_release_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path}/hall.db"
    with open_store(url) as s:
        s.query(
            "INSERT INTO hall_migrations (name, applied_at) VALUES ('later_step', '2027-01-01')"
        )
    with pytest.raises(SchemaTooNewError, match="migrations later_step are unknown"):
        open_store(url)


def test_a_numbered_store_beyond_the_last_numbered_release_is_refused(tmp_path):
    path = tmp_path / "hall.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(SchemaTooNewError, match="schema version 99 is newer"):
        open_store(f"sqlite:///{path}")


# --- PostgreSQL ----------------------------------------------------------------------------


def _pg_legacy(schema: str, version: int) -> None:
    import psycopg

    dump = (LEGACY / f"store_v{version}.postgres.sql").read_text(encoding="utf-8")
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(dump.replace("hall_legacy", schema))


def _pg_contents(schema: str) -> Contents:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        names = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (schema,),
            )
        ]
        return {n: _rows(conn.execute(f'SELECT * FROM "{schema}"."{n}"')) for n in names}


def _pg_shape(schema: str) -> dict[str, set[tuple[Any, ...]]]:
    """Columns, constraints, indexes and view definitions, with the schema's name taken out."""
    import psycopg

    def plain(text: str) -> str:
        return text.replace(f"{schema}.", "")

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        columns = conn.execute(
            "SELECT table_name, ordinal_position, column_name, data_type, column_default, "
            "is_nullable, is_identity FROM information_schema.columns WHERE table_schema = %s",
            (schema,),
        ).fetchall()
        constraints = conn.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(c.oid) "
            "FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
            "WHERE n.nspname = %s",
            (schema,),
        ).fetchall()
        indexes = conn.execute(
            "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = %s",
            (schema,),
        ).fetchall()
        views = conn.execute(
            "SELECT viewname, definition FROM pg_views WHERE schemaname = %s", (schema,)
        ).fetchall()
    return {
        "columns": set(columns),
        "constraints": {(plain(t), n, d) for t, n, d in constraints},
        "indexes": {(t, n, plain(d)) for t, n, d in indexes},
        "views": {(v, plain(d)) for v, d in views},
    }


@pytest.mark.parametrize("version", VERSIONS)
def test_a_numbered_postgres_store_is_adopted_in_place_keeping_every_row(pg_schema, version):
    _pg_legacy(pg_schema, version)
    before = _pg_contents(pg_schema)
    assert before["events"] and before["leave"] and before["hall_schema"] == [{"version": version}]
    with PostgresStore(PG_URL, pg_schema) as s:
        applied = s.applied_migrations()
        assert [m.name for m in applied] == [m.name for m in PG_MIGRATIONS]
        assert [m.applied_at for m in applied[:version]] == [None] * version
        assert all(m.applied_at is not None for m in applied[version:])
        assert s.query("SELECT version FROM hall_schema") == [(len(PG_MIGRATIONS),)]
        assert s.sites() == ["chengxi", "jiedong"]
        _check_schedules(s, version)
    after = _pg_contents(pg_schema)
    changed = new_tables(version) | {"hall_schema"}
    assert _kept(after, before, changed) == _kept(before, before, {"hall_schema"})
    with PostgresStore(PG_URL, pg_schema) as s:
        row = dict(s.leaves()[0], note="again", starts_half="am")
        assert s.add_leaves([row], "office") == 1
        assert sorted(r["id"] for r in s.leaves()) == [1, 2, 4]


@pytest.mark.parametrize("version", VERSIONS)
def test_a_fresh_postgres_store_is_shaped_like_an_adopted_one(pg_schema, version):
    _pg_legacy(pg_schema, version)
    PostgresStore(PG_URL, pg_schema).close()
    with testing.pg_schema() as fresh:
        PostgresStore(PG_URL, fresh).close()
        shape = _pg_shape(fresh)
        assert all(shape.values()) and shape == _pg_shape(pg_schema)


def test_a_postgres_store_migrated_by_a_newer_release_is_refused(pg_schema):
    with PostgresStore(PG_URL, pg_schema) as s:
        s.query("INSERT INTO hall_migrations (name) VALUES ('later_step') RETURNING name")
    with pytest.raises(SchemaTooNewError, match="migrations later_step are unknown"):
        PostgresStore(PG_URL, pg_schema)
