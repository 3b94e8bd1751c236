"""Reading a month of events, rosters and leave from the store, the same way on both dialects.

The store files each event by the plausible-time rule and returns those of the month
(:meth:`central.store.Store.events_filed_between`); here they become the reports' hall-local
:class:`Event`, and the stored rosters the reports' :class:`Person`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from central.reports.month import Month
from central.store import Store


@dataclass(frozen=True)
class Event:
    id: str
    site: str
    device: str
    type: str
    at: datetime  # hall-local time the report files the event under
    suspect: bool  # filed by received_at: the device's clock was implausible
    data: dict[str, Any]
    signed: bool = True  # carried the device's signature (docs/tamper-centre.md)
    chain: str = ""  # kinds of its open chain findings, comma-separated ('' for none)


def month_events(
    store: Store, month: Month, types: tuple[str, ...], site: str | None = None
) -> list[Event]:
    """Events of ``types`` filed in ``month`` (hall time), ordered by time then id, with
    what the chain checks found about each (central/reports/chainmarks.py)."""
    filed = store.events_filed_between(types, month.start(), month.end(), site)
    flagged = store.open_findings_by_event()
    return [
        Event(
            e.id,
            e.site,
            e.device,
            e.type,
            e.filed_at.astimezone(month.tz),
            e.suspect,
            e.data,
            e.sig is not None,
            ",".join(dict.fromkeys(f.kind for f in flagged.get(e.id, ()))),
        )
        for e in filed
    ]


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
