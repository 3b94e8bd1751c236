"""The fault suite's history checker (tests/faults/history.py) on a real store, without
processes: what a pad sent, stored once and intact, passes; one stored row whose content was
changed afterwards (level, reasons, staff, window, ``at``) fails as ``altered``.

The fault scenarios cannot show that the checker would notice a store that keeps the id and
loses the content: they only ever run against a correct store. Here the row is tampered
with directly in the database, as a faulty write path would leave it.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from central.store import EventRow, Store, open_store
from contract import DEFAULT_REASON_LABELS, LEVEL_LABELS
from tests.conftest import require_or_skip
from tests.faults.hall import Rated
from tests.faults.history import check_history
from tests.support import PG_URL, pg_available
from tests.support import pg_schema as make_pg_schema

TZ = timezone(timedelta(hours=8))  # the hall's offset, as the agent writes it


@dataclass
class FakePad:
    """What tests/faults/hall.py Pad tells the checker: its window, tags and their content."""

    window: str = "A01"
    address: int = 1
    staff: str | None = "S-A01"
    sent: set[int] = field(default_factory=set)
    acked: set[int] = field(default_factory=set)
    ratings: dict[int, Rated] = field(default_factory=dict)


@dataclass
class FakeDevice:
    name: str
    pads: list[FakePad]
    seqs: int
    clock_faked: bool = False
    expect_rejected: set[str] = field(default_factory=set)

    def last_seq(self) -> int:
        return self.seqs

    def dead_letters(self) -> list[tuple[int, str, str, str]]:
        return []


@dataclass
class FakeHall:
    opener: Callable[[], Store]
    devices: dict[str, FakeDevice]

    def open_store(self) -> Store:
        return self.opener()


@dataclass
class Stored:
    hall: FakeHall
    kind: str
    tamper: Callable[[str, Any], None]  # (SQL with one %s, value) on the store's own database


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, TZ).isoformat(timespec="milliseconds")


def _row(seq: int, etype: str, data: dict[str, Any], at: float) -> EventRow:
    return EventRow(
        id=str(uuid.uuid4()),
        device="win-01",
        site="jiedong",
        seq=seq,
        type=etype,
        at=datetime.fromtimestamp(at, TZ),
        at_text=_iso(at),
        clock="synced",
        data=json.dumps(data, ensure_ascii=False),
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def stored(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stored]:
    """A store holding what one pad sent: a login, then three ratings (one 差评 with
    reasons), each stamped while the pad waited for its ack, as the agent stamps them."""
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url, schema = f"sqlite:///{tmp_path}/hall.db", None
        else:
            if not pg_available():
                require_or_skip(f"PostgreSQL not reachable at {PG_URL}")
            url, schema = PG_URL, stack.enter_context(make_pg_schema())

        def opener() -> Store:
            return open_store(url, schema)

        pad = FakePad()
        now = time.time() - 60
        rows = [_row(1, "window.login", {"window": "A01", "pad": 1, "staff_id": "S-A01"}, now)]
        for tag, (level, bits) in enumerate(((5, ()), (1, (0, 2)), (4, ())), start=1):
            sent_at = now + tag
            pad.sent.add(tag)
            pad.acked.add(tag)
            pad.ratings[tag] = Rated(level, bits, sent_at, sent_at + 0.2)
            data = {
                "window": "A01",
                "pad": 1,
                "staff_id": "S-A01",
                "level": level,
                "label": LEVEL_LABELS[level],
                "reasons": [DEFAULT_REASON_LABELS[b] for b in bits],
                "invite_id": tag,
            }
            rows.append(_row(tag + 1, "rating.submitted", data, sent_at + 0.05))
        with contextlib.closing(opener()) as store:
            store.write_batch(rows, [])

        def tamper(sql: str, value: Any) -> None:
            if request.param == "sqlite":
                import sqlite3

                with contextlib.closing(sqlite3.connect(f"{tmp_path}/hall.db")) as c:
                    c.execute(sql.replace("%s", "?"), (value,))
                    c.commit()
            else:
                import psycopg

                with psycopg.connect(PG_URL, autocommit=True) as c:
                    c.execute(f'SET search_path TO "{schema}"')
                    c.execute(sql, (value,))

        hall = FakeHall(opener, {"win-01": FakeDevice("win-01", [pad], seqs=len(rows))})
        yield Stored(hall, request.param, tamper)


def _set_data(stored: Stored, seq: int, **changes: Any) -> None:
    """Rewrite one stored row's data with ``changes`` (read, change, write back whole)."""
    with contextlib.closing(stored.hall.open_store()) as store:
        (raw,) = store.query("SELECT data FROM events WHERE seq = %s", (seq,))[0]
    data = raw if isinstance(raw, dict) else json.loads(raw)
    data.update(changes)
    cast = "::jsonb" if stored.kind == "postgresql" else ""
    stored.tamper(
        f"UPDATE events SET data = %s{cast} WHERE seq = {seq}", json.dumps(data, ensure_ascii=False)
    )


def _at(stored: Stored, seq: int) -> datetime:
    with contextlib.closing(stored.hall.open_store()) as store:
        (at,) = store.query("SELECT at FROM events WHERE seq = %s", (seq,))[0]
    return at if isinstance(at, datetime) else datetime.fromisoformat(at)


def test_what_the_pad_sent_stored_intact_passes(stored: Stored) -> None:
    h = check_history(stored.hall)  # type: ignore[arg-type]
    assert h.ok, h
    assert (h.sent, h.acked, h.stored, h.lost, h.duplicated, h.altered) == (3, 3, 4, 0, 0, 0)


@pytest.mark.parametrize(
    "changes",
    [
        {"level": 4},  # the level of the 差评 (seq 3, tag 2)
        {"reasons": [DEFAULT_REASON_LABELS[0]]},  # one reason lost
        {"staff_id": "S-B07"},  # filed under another member of staff
        {"staff_id": None},
        {"pad": 2},
    ],
    ids=["level", "reasons", "staff", "staff-dropped", "pad"],
)
def test_a_rating_stored_with_other_content_is_altered(stored: Stored, changes: dict) -> None:
    _set_data(stored, 3, **changes)
    h = check_history(stored.hall)  # type: ignore[arg-type]
    assert not h.ok
    assert h.altered == 1, h
    assert h.lost == 0 and h.duplicated == 0, h
    field_name = next(iter(changes))
    assert any("tag 2" in p and field_name in p for p in h.problems), h


def test_a_login_stored_for_other_staff_is_altered(stored: Stored) -> None:
    _set_data(stored, 1, staff_id="S-B07")
    h = check_history(stored.hall)  # type: ignore[arg-type]
    assert not h.ok and h.altered == 1, h


@pytest.mark.parametrize(
    "shift",
    [timedelta(hours=8), timedelta(seconds=-30), timedelta(seconds=5)],
    ids=["time-zone", "before-sent", "after-ack"],
)
def test_a_rating_stored_at_another_time_is_altered(stored: Stored, shift: timedelta) -> None:
    moved = _at(stored, 2) + shift
    # Text with the device's offset (SQLite keeps it as sent; PostgreSQL reads it).
    stored.tamper("UPDATE events SET at = %s WHERE seq = 2", moved.isoformat())
    h = check_history(stored.hall)  # type: ignore[arg-type]
    assert not h.ok and h.altered == 1, h
    assert any("tag 1" in p and "at " in p for p in h.problems), h


def test_at_is_not_held_to_the_test_clock_under_libfaketime(stored: Stored) -> None:
    stored.tamper("UPDATE events SET at = %s WHERE seq = 2", "2025-11-26T09:12:03.120+08:00")
    stored.hall.devices["win-01"].clock_faked = True
    h = check_history(stored.hall)  # type: ignore[arg-type]
    assert h.ok, h


def test_a_rating_moved_to_another_window_is_lost_not_silent(stored: Stored) -> None:
    _set_data(stored, 4, window="A02")
    h = check_history(stored.hall)  # type: ignore[arg-type]
    assert not h.ok and h.lost == 1, h
