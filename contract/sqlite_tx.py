"""SQLite transaction helpers that the device's outbox and the central store both need.

Here in ``contract`` because it is the only package both ``agent/outbox.py`` and
``central/store/`` may import (tests/test_imports.py: ``central`` never imports ``agent``,
and ``agent`` reaches ``sync`` only from its entry points and agent/link/). Standard library
only.
"""

from __future__ import annotations

import contextlib
import sqlite3


def rollback(conn: sqlite3.Connection) -> None:
    """Roll back if a transaction is still open, never raising over the error being handled.

    SQLite rolls a transaction back by itself on some errors (SQLITE_FULL, SQLITE_IOERR): a
    plain ROLLBACK then raises "cannot rollback - no transaction is active", and that error,
    not "database or disk is full", is what the user got to see.
    """
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
