"""Reading a month of events, rosters and leave from either store, the same way on both.

The SQL only narrows the rows (by type, site and a margin of two days around the month, on
``at`` or ``received_at``); the exact month and the hall-local day are decided in Python by
:mod:`central.reports.month`, so both stores give identical reports.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from central.reports.month import Month, filed_at
from central.store import PostgresStore, Store, stored_time

_MARGIN = timedelta(days=2)


@dataclass(frozen=True)
class Event:
    id: str
    site: str
    device: str
    type: str
    at: datetime  # hall-local time the report files the event under
    suspect: bool  # filed by received_at: the device's clock was implausible
    data: dict[str, Any]


def _moment(value: Any) -> datetime:
    moment = stored_time(value)
    if moment is None:
        raise ValueError(f"expected a stored time, got {value!r}")
    return moment


def month_events(
    store: Store, month: Month, types: tuple[str, ...], site: str | None = None
) -> list[Event]:
    """Events of ``types`` filed in ``month`` (hall time), ordered by time then id."""
    lo, hi = month.start() - _MARGIN, month.end() + _MARGIN
    if isinstance(store, PostgresStore):
        bounds: tuple[Any, ...] = (lo, hi, lo, hi)
    else:
        # SQLite compares ISO text; the day margin absorbs any device offset (≤ ±14 h).
        lo_text, hi_text = lo.date().isoformat(), hi.date().isoformat()
        bounds = (lo_text, hi_text, lo_text, hi_text)
    marks = ", ".join(["%s"] * len(types))
    sql = (
        "SELECT id, site, device, type, at, clock, received_at, data FROM events "
        f"WHERE type IN ({marks}) AND ((at >= %s AND at < %s) "
        "OR (received_at >= %s AND received_at < %s))"
    )
    params: tuple[Any, ...] = (*types, *bounds)
    if site is not None:
        sql += " AND site = %s"
        params += (site,)
    out = []
    for eid, esite, device, etype, at, clock, received, data in store.query(sql, params):
        moment, suspect = filed_at(_moment(at), clock, _moment(received), month.tz)
        if not month.contains(moment):
            continue
        body = json.loads(data) if isinstance(data, str | bytes) else data
        out.append(
            Event(str(eid), esite, device, etype, moment.astimezone(month.tz), suspect, body)
        )
    out.sort(key=lambda e: (e.at, e.id))
    return out


@dataclass(frozen=True)
class Person:
    site: str
    staff_id: str
    name: str
    role: str | None  # None: not in the site's roster
    window: str | None
    starts: date | None = None  # roster `starts`: first day at the hall (None: before the month)
    ends: date | None = None  # roster `ends`: last day at the hall (None: still there)

    def employed(self, day: date) -> bool:
        """Whether ``day`` is within the roster's starts..ends (inclusive): judged at all."""
        after_start = self.starts is None or day >= self.starts
        return after_start and (self.ends is None or day <= self.ends)


def roster_people(store: Store, site: str | None = None) -> dict[tuple[str, str], Person]:
    """(site, staff id) → person, from the rosters stored by ``roster publish``."""
    people = {}
    for stored in store.rosters(site):
        for e in stored.roster.get("staff", []):
            people[(stored.site, e["id"])] = Person(
                stored.site,
                e["id"],
                e["name"],
                e.get("role"),
                e.get("window"),
                _date(e.get("starts")),
                _date(e.get("ends")),
            )
    return people


def _date(value: Any) -> date | None:
    # The stored roster passed contract.validate_roster: a date is YYYY-MM-DD text.
    return date.fromisoformat(value) if isinstance(value, str) else None
