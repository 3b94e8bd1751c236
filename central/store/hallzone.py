"""The hall's timezone as the store's SQL reads it (table ``hall_zone``).

``filed_at`` and the plausible-time rule need the hall's wall time inside SQL. PostgreSQL has a
time zone database and keeps the zone's name. SQLite has none: it keeps the zone's UTC offsets,
one row per change, worked out here by Python's zoneinfo. Every ``hall-central`` process
rewrites the table from ``[central] timezone`` when it opens the store, so a changed timezone
needs no migration.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

HALL_TIMEZONE = "Asia/Shanghai"  # central.timezone's default (central/config.py)

# The first row's `since`: from the start of time. Later rows start at a change of offset.
ZONE_FIRST = "0000-01-01T00:00:00"

# Offsets are worked out for this span: the plausible-time rule starts in 2024 (filing.py), and
# the rows after 2100 would only grow the table.
_FROM = datetime(2024, 1, 1, tzinfo=UTC)
_UNTIL = datetime(2100, 1, 1, tzinfo=UTC)


@lru_cache(maxsize=8)
def sqlite_hall_zone(name: str) -> tuple[tuple[str, int], ...]:
    """``hall_zone``'s rows on SQLite for the IANA zone ``name``: (since, offset_min), the
    first from the start of time, then one per change of offset from 2024 to 2100."""
    tz = ZoneInfo(name)

    def offset(second: int) -> int:
        moment = datetime.fromtimestamp(second, UTC).astimezone(tz)
        return int(moment.utcoffset().total_seconds() // 60)  # type: ignore[union-attr]

    start, end = int(_FROM.timestamp()), int(_UNTIL.timestamp())
    day = 86400
    current = offset(start)
    rows = [(ZONE_FIRST, current)]
    for t in range(start, end, day):
        if offset(t + day) == current:
            continue
        lo, hi = t, t + day  # lo has the old offset, hi the new: bisect to the second
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if offset(mid) == current else (lo, mid)
        current = offset(hi)
        rows.append((datetime.fromtimestamp(hi, UTC).strftime("%Y-%m-%dT%H:%M:%S"), current))
    return tuple(rows)


def sqlite_hall_offset(instant: str) -> str:
    """SQL (SQLite): the hall's UTC offset in minutes at ``instant``, an SQL expression that
    julianday() reads."""
    return (
        "(SELECT offset_min FROM hall_zone WHERE since <= "
        f"strftime('%Y-%m-%dT%H:%M:%S', {instant}) ORDER BY since DESC LIMIT 1)"
    )


# SQL (PostgreSQL): the hall's zone name, for AT TIME ZONE.
PG_HALL_ZONE = "(SELECT timezone FROM hall_zone)"
