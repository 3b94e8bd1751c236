"""The report month, in the hall's timezone.

Every instant is converted to the hall's timezone in Python, on both stores: SQLite keeps
``at`` as the device wrote it (with its own offset) and PostgreSQL as an instant, so grouping
in SQL would put 2026-10-31T20:00Z in October on one and November on the other. The time an
event is filed under is the store's (central/store/filing.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

MONTH_PATTERN = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


@dataclass(frozen=True)
class Month:
    year: int
    month: int
    tz: ZoneInfo

    @classmethod
    def parse(cls, text: str | None, tz: ZoneInfo, now: datetime | None = None) -> Month:
        """``YYYY-MM``, or None for the current month in the hall's timezone."""
        if text is None:
            local = (now or datetime.now(tz)).astimezone(tz)
            return cls(local.year, local.month, tz)
        m = MONTH_PATTERN.match(text)
        if not m:
            raise ValueError(f"--month: expected YYYY-MM (e.g. 2026-11), got {text!r}")
        return cls(int(m.group(1)), int(m.group(2)), tz)

    @property
    def label(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def first(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def last(self) -> date:
        nxt = date(self.year + self.month // 12, self.month % 12 + 1, 1)
        return nxt - timedelta(days=1)

    def days(self) -> list[date]:
        n = (self.last - self.first).days + 1
        return [self.first + timedelta(days=i) for i in range(n)]

    def start(self) -> datetime:
        return datetime.combine(self.first, datetime.min.time(), self.tz)

    def end(self) -> datetime:
        """The first instant after the month."""
        return datetime.combine(self.last + timedelta(days=1), datetime.min.time(), self.tz)

    def contains(self, moment: datetime) -> bool:
        local = moment.astimezone(self.tz)
        return local.year == self.year and local.month == self.month
