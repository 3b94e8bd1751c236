"""central/store/filing.py: the plausible-time rule agrees with itself in Python, SQLite and
PostgreSQL, on the edges where copies of a rule drift apart.

Each case is judged three ways: the Python function, the rule's SQL expression of each dialect
evaluated by the database on the same values, and the views' ``filed_at`` of an event written
through the store.
"""

from __future__ import annotations

import json
import uuid
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from central.store import (
    PG_PLAUSIBLE,
    PLAUSIBLE_AHEAD,
    PLAUSIBLE_FROM,
    SQLITE_PLAUSIBLE,
    EventRow,
    PostgresStore,
    filed_at,
    open_store,
    plausible,
)
from central.store.filing import pg_plausible, sqlite_plausible
from tests import support as testing
from tests.conftest import require_or_skip
from tests.support import PG_URL, pg_available

MS = timedelta(milliseconds=1)
MINUS14, PLUS14 = timezone(timedelta(hours=-14)), timezone(timedelta(hours=14))


def cases(tz: ZoneInfo) -> list[tuple[str, datetime, str, datetime, bool]]:
    """(what, at, clock, received_at, plausible) in the hall's timezone ``tz``."""
    received = datetime(2026, 12, 1, 9, 0, tzinfo=tz)
    midnight = datetime(2024, 1, 1, tzinfo=tz)  # PLAUSIBLE_FROM in the hall
    soon = midnight + timedelta(minutes=5)
    utc_new_year = datetime(2024, 1, 1, tzinfo=UTC)
    return [
        ("on time", received, "synced", received, True),
        ("exactly 10 min ahead", received + PLAUSIBLE_AHEAD, "synced", received, True),
        ("10 min + 1 ms ahead", received + PLAUSIBLE_AHEAD + MS, "synced", received, False),
        ("10 min + 1 s ahead", received + PLAUSIBLE_AHEAD + timedelta(seconds=1), "synced",
         received, False),
        ("exactly 10 min ahead, device at -14:00", (received + PLAUSIBLE_AHEAD).astimezone(MINUS14),
         "synced", received, True),
        ("10 min + 1 s ahead, device at +14:00",
         (received + PLAUSIBLE_AHEAD + timedelta(seconds=1)).astimezone(PLUS14), "synced",
         received, False),
        ("unsynced, on time", received, "unsynced", received, False),
        ("unsynced, late", received - timedelta(days=1), "unsynced", received, False),
        ("synced, 3 days late", received - timedelta(days=3), "synced", received, True),
        ("synced, 400 days late", received - timedelta(days=400), "synced", received, True),
        ("2023-12-31T23:59 hall time", midnight - timedelta(minutes=1), "synced", soon, False),
        ("2023-12-31T23:59:59.999 hall time", midnight - MS, "synced", soon, False),
        ("2024-01-01T00:00 hall time", midnight, "synced", soon, True),
        ("2024-01-01T00:00 hall time, device at -14:00", midnight.astimezone(MINUS14), "synced",
         soon, True),
        ("1 ms before it, device at +14:00", (midnight - MS).astimezone(PLUS14), "synced", soon,
         False),
        # Before the hall's midnight west of Greenwich, after it east of it.
        ("2024-01-01T00:00 UTC", utc_new_year, "synced", soon + timedelta(days=1),
         utc_new_year >= midnight),
        ("RTC lost: 1970, synced", datetime(1970, 1, 1, 8, tzinfo=tz), "synced", received, False),
        ("year 9999 at -14:00 (10000 in UTC)", datetime(9999, 12, 31, 23, 59, 59, tzinfo=MINUS14),
         "synced", received, False),
    ]  # fmt: skip


HALLS = ["Asia/Shanghai", "America/New_York"]


@pytest.fixture(params=["sqlite", "postgresql"])
def dialect(request) -> str:
    if request.param == "postgresql" and not pg_available():
        require_or_skip(f"PostgreSQL not reachable at {PG_URL}")
    return request.param


def _open(dialect: str, tmp_path, schema: str | None, zone: str):
    if dialect == "sqlite":
        return open_store(f"sqlite:///{tmp_path}/hall.db", timezone=zone)
    return open_store(PG_URL, schema, timezone=zone)


def _text(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


@pytest.mark.parametrize("zone", HALLS)
def test_python_and_both_dialects_sql_agree_on_the_edges(dialect, tmp_path, zone):
    tz = ZoneInfo(zone)
    table = cases(tz)
    python = {what: plausible(at, clock, received, tz) for what, at, clock, received, _ in table}
    assert python == {what: expected for what, *_, expected in table}
    with (
        testing.pg_schema() if dialect == "postgresql" else nullcontext() as schema,
        _open(dialect, tmp_path, schema, zone) as store,
    ):
        for what, at, clock, received, expected in table:
            if isinstance(store, PostgresStore):
                sql = (
                    f"SELECT coalesce({pg_plausible('a', 'c', 'r')}, false) FROM (SELECT "
                    "%s::timestamptz AS a, %s::text AS c, %s::timestamptz AS r) v"
                )
                params: tuple = (at, clock, received)
            else:
                sql = (
                    f"SELECT coalesce({sqlite_plausible('a', 'c', 'r')}, 0) FROM (SELECT "
                    "%s AS a, %s AS c, %s AS r)"
                )
                params = (_text(at), clock, _text(received.astimezone(UTC)))
            [(got,)] = store.query(sql, params)
            assert bool(got) is expected, what


@pytest.mark.parametrize("zone", HALLS)
def test_the_views_file_every_edge_as_python_does(dialect, tmp_path, zone):
    tz = ZoneInfo(zone)
    table = cases(tz)
    rows = {
        str(uuid.uuid4()): (what, at, clock, received) for what, at, clock, received, _ in table
    }
    with (
        testing.pg_schema() if dialect == "postgresql" else nullcontext() as schema,
        _open(dialect, tmp_path, schema, zone) as store,
    ):
        pg = isinstance(store, PostgresStore)
        store.write_batch(
                [
                    EventRow(eid, "pad-a03", "jiedong", seq, "rating.submitted", at, _text(at),
                             clock, json.dumps({"window": "A03", "level": 5}))
                    for seq, (eid, (_, at, clock, _)) in enumerate(rows.items(), start=1)
                ],
                [],
            )  # fmt: skip
        for eid, (_, _, _, received) in rows.items():
            value = received if pg else _text(received.astimezone(UTC))
            store.query(
                "UPDATE events SET received_at = %s WHERE id = %s RETURNING id", (value, eid)
            )
        if pg:
            store.query("SELECT set_config('TimeZone', 'UTC', false)")
            shown = "to_char(filed_at, 'YYYY-MM-DD\"T\"HH24:MI:SS.MS')"
        else:
            shown = "substr(filed_at, 1, 23)"
        views = {str(i): f for i, f in store.query(f"SELECT id, {shown} FROM ratings")}
        for eid, (what, at, clock, received) in rows.items():
            moment, _ = filed_at(at, clock, received, tz)
            assert views[eid] == _text(moment.astimezone(tz))[:23], what


def test_the_rule_has_one_definition():
    """The SQL of both dialects is rendered from the rule's constants, and the views of a
    store created today carry exactly that SQL."""
    for sql in (SQLITE_PLAUSIBLE, PG_PLAUSIBLE):
        assert f"'{PLAUSIBLE_FROM}" in sql and str(int(PLAUSIBLE_AHEAD.total_seconds())) in sql
    assert sqlite_plausible() == SQLITE_PLAUSIBLE and pg_plausible() == PG_PLAUSIBLE


def test_a_fresh_sqlite_store_views_use_the_rule(tmp_path):
    with open_store(f"sqlite:///{tmp_path}/hall.db") as store:
        views = store.query("SELECT sql FROM sqlite_master WHERE type = 'view'")
    assert len(views) == 2 and all(SQLITE_PLAUSIBLE in sql for (sql,) in views)
