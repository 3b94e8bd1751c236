"""central/store/schema.py and migrations.py: named migrations, and stores from the numbered era.

tests/data/legacy_store holds what the last release that numbered its migrations (schema
version 7) wrote: an sqlite3 dump and a pg_dump of a store its collector filled. Each is opened
here by the current code, which must adopt it in place: every row kept, no released step run
again, only the new steps run, and the result shaped exactly like a store created today.
"""

from __future__ import annotations

import sqlite3
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
from tests.conftest import require_or_skip
from tests.storekit import fully_migrated, numbered_sqlite
from tests.support import PG_URL, pg_available

LEGACY = Path(__file__).parent / "data" / "legacy_store"
# What this release adds to a store of the numbered era (tables, their indexes).
NEW_TABLES = {"hall_migrations", "schedules"}


@pytest.fixture
def pg_schema():
    if not pg_available():
        require_or_skip(f"PostgreSQL not reachable at {PG_URL}")
    with testing.pg_schema() as name:
        yield name


def test_both_dialects_name_the_same_migrations_in_the_same_order():
    names = [m.name for m in SQLITE_MIGRATIONS]
    assert names == [m.name for m in PG_MIGRATIONS]
    assert len(set(names)) == len(names)
    assert names[: len(LEGACY_NAMES)] == list(LEGACY_NAMES)
    assert names[len(LEGACY_NAMES) :] == ["schedules"]


# --- SQLite --------------------------------------------------------------------------------


def _sqlite_legacy(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.executescript((LEGACY / "store_v7.sqlite.sql").read_text(encoding="utf-8"))
    conn.close()


def _sqlite_shape(path: Path) -> set[tuple[str, str, str | None]]:
    """Every table, index and view: (type, name, its SQL as stored)."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
        ).fetchall()
    return {(kind, name, sql) for kind, name, table, sql in rows if table not in NEW_TABLES}


def _sqlite_contents(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's and view's rows, sorted (views too: filed_at is computed)."""
    with sqlite3.connect(path) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY name"
            )
        ]
        return {n: sorted(conn.execute(f'SELECT * FROM "{n}"'), key=repr) for n in names}


def test_a_numbered_sqlite_store_is_adopted_in_place_keeping_every_row(tmp_path):
    path = tmp_path / "hall.db"
    _sqlite_legacy(path)
    before = _sqlite_contents(path)
    assert before["events"] and before["leave"] and before["rejected_counts"]
    with open_store(f"sqlite:///{path}") as s:
        applied = s.applied_migrations()
        assert [m.name for m in applied] == [m.name for m in SQLITE_MIGRATIONS]
        # The numbered steps ran under the old release: when is not known; only the new one
        # ran now.
        assert [m.applied_at for m in applied[: len(LEGACY_NAMES)]] == [None] * len(LEGACY_NAMES)
        assert all(m.applied_at is not None for m in applied[len(LEGACY_NAMES) :])
        # The number an older hall-central reads: now past its own list, so it refuses.
        assert s.query("PRAGMA user_version") == [(len(SQLITE_MIGRATIONS),)]
        assert s.schedules() == [] and s.sites() == ["chengxi", "jiedong"]
    after = _sqlite_contents(path)
    assert {name: rows for name, rows in after.items() if name not in NEW_TABLES} == before
    # A leave id, once removed, is still never reused after the adoption.
    with open_store(f"sqlite:///{path}") as s:
        assert [r["id"] for r in s.leaves()] == [1, 2]
        row = dict(s.leaves()[0], note="again", starts_half="am")
        assert s.add_leaves([row], "office") == 1
        assert sorted(r["id"] for r in s.leaves()) == [1, 2, 4]


def test_a_fresh_sqlite_store_is_shaped_like_an_adopted_one(tmp_path):
    """Created today, step by step, the store has exactly the tables, indexes and views the
    numbered release made (with the same SQL text: no released step was edited), plus the new
    migrations' own."""
    _sqlite_legacy(tmp_path / "old.db")
    open_store(f"sqlite:///{tmp_path}/old.db").close()
    open_store(f"sqlite:///{tmp_path}/new.db").close()
    shape = _sqlite_shape(tmp_path / "new.db")
    assert {kind for kind, _, _ in shape} == {"table", "index", "view"}
    assert shape == _sqlite_shape(tmp_path / "old.db")
    with sqlite3.connect(tmp_path / "new.db") as new, sqlite3.connect(tmp_path / "old.db") as old:
        query = "SELECT type, name, sql FROM sqlite_master WHERE tbl_name IN ('schedules')"
        assert new.execute(query).fetchall() == old.execute(query).fetchall() != []


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
        s.query("INSERT INTO hall_migrations (name, applied_at) VALUES ('cases', '2027-01-01')")
    with pytest.raises(SchemaTooNewError, match="migrations cases are unknown"):
        open_store(url)


def test_a_numbered_store_beyond_the_last_numbered_release_is_refused(tmp_path):
    path = tmp_path / "hall.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(SchemaTooNewError, match="schema version 99 is newer"):
        open_store(f"sqlite:///{path}")


# --- PostgreSQL ----------------------------------------------------------------------------


def _pg_legacy(schema: str) -> None:
    import psycopg

    dump = (LEGACY / "store_v7.postgres.sql").read_text(encoding="utf-8")
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(dump.replace("hall_legacy", schema))


def _pg_contents(schema: str) -> dict[str, list[tuple[Any, ...]]]:
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
        return {
            n: sorted(conn.execute(f'SELECT * FROM "{schema}"."{n}"').fetchall(), key=repr)
            for n in names
        }


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
        "columns": {c for c in columns if c[0] not in NEW_TABLES},
        "constraints": {(plain(t), n, d) for t, n, d in constraints if plain(t) not in NEW_TABLES},
        "indexes": {(t, n, plain(d)) for t, n, d in indexes if t not in NEW_TABLES},
        "views": {(v, plain(d)) for v, d in views},
    }


def test_a_numbered_postgres_store_is_adopted_in_place_keeping_every_row(pg_schema):
    _pg_legacy(pg_schema)
    before = _pg_contents(pg_schema)
    assert before["events"] and before["leave"] and before["hall_schema"] == [(7,)]
    with PostgresStore(PG_URL, pg_schema) as s:
        applied = s.applied_migrations()
        assert [m.name for m in applied] == [m.name for m in PG_MIGRATIONS]
        assert [m.applied_at for m in applied[: len(LEGACY_NAMES)]] == [None] * len(LEGACY_NAMES)
        assert all(m.applied_at is not None for m in applied[len(LEGACY_NAMES) :])
        assert s.query("SELECT version FROM hall_schema") == [(len(PG_MIGRATIONS),)]
        assert s.schedules() == [] and s.sites() == ["chengxi", "jiedong"]
    after = _pg_contents(pg_schema)
    kept = {n: rows for n, rows in after.items() if n not in NEW_TABLES | {"hall_schema"}}
    assert kept == {n: rows for n, rows in before.items() if n != "hall_schema"}
    with PostgresStore(PG_URL, pg_schema) as s:
        row = dict(s.leaves()[0], note="again", starts_half="am")
        assert s.add_leaves([row], "office") == 1
        assert sorted(r["id"] for r in s.leaves()) == [1, 2, 4]


def test_a_fresh_postgres_store_is_shaped_like_an_adopted_one(pg_schema):
    _pg_legacy(pg_schema)
    PostgresStore(PG_URL, pg_schema).close()
    with testing.pg_schema() as fresh:
        PostgresStore(PG_URL, fresh).close()
        shape = _pg_shape(fresh)
        assert all(shape.values()) and shape == _pg_shape(pg_schema)


def test_a_postgres_store_migrated_by_a_newer_release_is_refused(pg_schema):
    with PostgresStore(PG_URL, pg_schema) as s:
        s.query("INSERT INTO hall_migrations (name) VALUES ('cases') RETURNING name")
    with pytest.raises(SchemaTooNewError, match="migrations cases are unknown"):
        PostgresStore(PG_URL, pg_schema)
