"""Named migrations: which ran, which are due, and how a store from the numbered era is adopted.

The store records each migration it ran by name, with when (``hall_migrations``), the way
sqlite-utils records its migrations: a release runs exactly the steps whose names are missing,
and a store that has a name this release does not know was migrated by a newer one and is
refused. Releases before this one kept a single number instead (SQLite ``PRAGMA user_version``,
PostgreSQL ``hall_schema.version``): N meant "the first N steps ran". On its first open such a
store gets the table, filled with the first N names (LEGACY_NAMES), and carries on from there;
no statement of those steps runs again and no row is touched.

The number is still written after each migration (the count of names recorded): an older
hall-central reads it, and refuses a store whose number exceeds its own list rather than run on
a schema it does not know.

The callers (sqlite.py, postgres.py) hold their lock and transaction around all of this.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from central.store.errors import SchemaTooNewError
from central.store.schema import LEGACY_NAMES, Migration

logger = logging.getLogger(__name__)

TABLE = "hall_migrations"

# Runs one statement (params None: no placeholders to bind) and returns its rows, if any.
Run = Callable[[str, "tuple[Any, ...] | None"], list[tuple[Any, ...]]]


def legacy_names(version: int, where: str) -> tuple[str, ...]:
    """The names a numbered store's ``version`` stands for: the first ``version`` steps."""
    if version > len(LEGACY_NAMES):
        raise SchemaTooNewError(
            f"{where}: schema version {version} is newer than this hall-central "
            f"({len(LEGACY_NAMES)})"
        )
    return LEGACY_NAMES[:version]


def due(migrations: Sequence[Migration], applied: Sequence[str], where: str) -> list[Migration]:
    """The migrations not yet applied, in order; refuses a store with names unknown here."""
    known = {m.name for m in migrations}
    unknown = [name for name in applied if name not in known]
    if unknown:
        raise SchemaTooNewError(
            f"{where}: migrated by a newer hall-central (migrations {', '.join(unknown)} are "
            f"unknown to this one, which knows up to {migrations[-1].name})"
        )
    done = set(applied)
    return [m for m in migrations if m.name not in done]


def adopt_legacy(run: Run, create_table: str, version: int, where: str, mark: str) -> None:
    """Create ``hall_migrations`` (``create_table``) and record the names a numbered store's
    ``version`` stands for, without a time: when they ran is not known."""
    names = legacy_names(version, where)
    run(create_table, None)
    for name in names:
        run(f"INSERT INTO {TABLE} (name, applied_at) VALUES ({mark}, NULL)", (name,))
    if names:
        logger.info("store %s: adopted schema version %d as migrations %s", where, version, names)


def applied(run: Run) -> list[str]:
    """The names recorded in ``hall_migrations``."""
    return [row[0] for row in run(f"SELECT name FROM {TABLE}", None)]


def apply_due(
    run: Run, migrations: Sequence[Migration], where: str, now: Any, mark: str
) -> list[str]:
    """Run every migration not yet recorded, each followed by the record of its name;
    returns all names recorded afterwards."""
    names = applied(run)
    for migration in due(migrations, names, where):
        for sql in migration.steps:
            run(sql, None)
        run(
            f"INSERT INTO {TABLE} (name, applied_at) VALUES ({mark}, {mark})",
            (migration.name, now),
        )
        names.append(migration.name)
        logger.info("store %s: migration %s applied", where, migration.name)
    return names
