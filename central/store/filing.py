"""The plausible-time rule: whether an event is filed by its own ``at`` or by ``received_at``.

An event's ``at`` is implausible only when its clock is ``unsynced``, when it is more than
PLAUSIBLE_AHEAD after the centre's ``received_at``, or before PLAUSIBLE_FROM at midnight in the
hall's timezone. Such an event is kept as sent and filed by ``received_at``; a synced event that
arrives late, however late (a kiosk offline over a weekend), is filed by its own ``at``.

The rule is needed in three places: Python (the reports, and the collector's
``devices.last_event_at``), SQLite's views and PostgreSQL's views. It is written here once: the
constants below, and three renderings of the same three clauses that read nothing but them.
tests/test_store_filing.py evaluates all three on a table of edge cases.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Protocol, TypeVar

from central.store.hallzone import PG_HALL_ZONE, sqlite_hall_offset

SYNCED = "synced"  # the only clock state whose `at` may be believed (docs/topics.md `clock`)
PLAUSIBLE_AHEAD_S = 600  # how far `at` may run ahead of received_at: clocks drift, NTP steps
PLAUSIBLE_AHEAD = timedelta(seconds=PLAUSIBLE_AHEAD_S)
PLAUSIBLE_FROM = date(2024, 1, 1)  # nothing was recorded before the hall's system existed


def plausible_from(tz: tzinfo) -> datetime:
    """The first plausible instant: PLAUSIBLE_FROM at midnight in the hall's timezone."""
    return datetime.combine(PLAUSIBLE_FROM, time(), tz)


def plausible_window(received_at: datetime, tz: tzinfo) -> tuple[datetime, datetime]:
    """The plausible ``at`` of a synced event received at ``received_at``: lo <= at <= hi."""
    return plausible_from(tz), received_at + PLAUSIBLE_AHEAD


def plausible(at: datetime, clock: str, received_at: datetime, tz: tzinfo) -> bool:
    """Whether ``at`` may be believed (the rule above); ``tz`` is the hall's timezone."""
    lo, hi = plausible_window(received_at, tz)
    return clock == SYNCED and lo <= at <= hi


def filed_at(at: datetime, clock: str, received_at: datetime, tz: tzinfo) -> tuple[datetime, bool]:
    """The instant the event is filed under, and whether that is ``received_at`` (the clock
    was not believed: the reports mark such an event)."""
    if plausible(at, clock, received_at, tz):
        return at, False
    return received_at, True


class _Timed(Protocol):
    @property
    def at(self) -> datetime: ...

    @property
    def clock(self) -> str: ...


T = TypeVar("T", bound=_Timed)


def latest_plausible(events: Iterable[T], received_at: datetime, tz: tzinfo) -> T | None:
    """Of events received together, the latest plausible one: what may move
    ``devices.last_event_at`` (an implausible time never does)."""
    # plausible(), with the window computed once per batch. The latest event is nearly always
    # plausible: check it alone first, filter only when it is not.
    events = list(events)
    lo, hi = plausible_window(received_at, tz)
    latest = max(events, key=lambda e: e.at, default=None)
    if latest is None or (latest.clock == SYNCED and lo <= latest.at <= hi):
        return latest
    good = [e for e in events if e.clock == SYNCED and lo <= e.at <= hi]
    return max(good, key=lambda e: e.at) if good else None


def sqlite_plausible(at: str = "at", clock: str = "clock", received_at: str = "received_at") -> str:
    """The rule as an SQLite expression over the named columns.

    SQLite keeps ``at`` as the device's text (with its offset) and ``received_at`` as UTC text;
    julianday() reads both, and is NULL for a time outside 0000-9999, which the views' CASE
    then treats as implausible. PLAUSIBLE_FROM's midnight is the hall's, through ``hall_zone``.
    """
    start = repr(PLAUSIBLE_FROM.isoformat())
    return (
        f"({clock} = '{SYNCED}' AND julianday({at}) <= julianday({received_at}) + "
        f"{PLAUSIBLE_AHEAD_S} / 86400.0 AND julianday({at}) >= julianday({start}) - "
        f"{sqlite_hall_offset(start)} / 1440.0)"
    )


def pg_plausible(at: str = "at", clock: str = "clock", received_at: str = "received_at") -> str:
    """The rule as a PostgreSQL expression over the named (timestamptz) columns; the hall's
    midnight through ``hall_zone``'s zone name."""
    return (
        f"({clock} = '{SYNCED}' AND {at} <= {received_at} + "
        f"interval '{PLAUSIBLE_AHEAD_S} seconds' "
        f"AND {at} >= timestamp '{PLAUSIBLE_FROM} 00:00' AT TIME ZONE {PG_HALL_ZONE})"
    )


SQLITE_PLAUSIBLE = sqlite_plausible()
PG_PLAUSIBLE = pg_plausible()
