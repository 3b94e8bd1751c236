"""Case deadlines counted in the hall's working time (docs/cases.md "Deadlines").

A step's limit is ``"Nd"`` (N working days) or ``"Nh"`` (N working hours), on the hall's own
calendar (:class:`contract.schedule.Schedule`: weekends, statutory holidays and 调休 days).

- Working days: the day the clock starts is not counted (民法典 第二百零一条: a period counted in
  days starts on the next day); the limit ends when the Nth working day after it ends (24:00
  hall time). Days off are not counted (行政许可法 第八十二条: 期限以工作日计算，不含法定节假日).
- Working hours: only the hall's public service hours of working days count (the morning and
  afternoon spans of the day's plan); a clock started outside them starts at the next span.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from contract.schedule import Schedule

# Up to 99 working days or 999 working hours: far beyond any 好差评 rule's step, and always
# found within the days scanned below.
LIMIT_PATTERN = r"^(?:[1-9][0-9]?d|[1-9][0-9]{0,2}h)$"
_LIMIT = re.compile(LIMIT_PATTERN)
# A calendar that never yields a working day (a misconfiguration) must not loop for ever.
_MAX_DAYS_SCANNED = 3 * 366


@dataclass(frozen=True)
class Limit:
    amount: int
    unit: str  # "d" working days, "h" working hours

    @classmethod
    def parse(cls, text: str) -> Limit:
        if not _LIMIT.match(text):
            raise ValueError(
                f"expected N working days as 'Nd' (1-99) or hours as 'Nh' (1-999), got {text!r}"
            )
        return cls(int(text[:-1]), text[-1])


class WorkingClock:
    """Adds working days or hours to an instant on the hall's calendar."""

    def __init__(self, schedule: Schedule, tz: ZoneInfo):
        self.schedule = schedule
        self.tz = tz

    def _working(self, day: date) -> bool:
        return self.schedule.working_day(day)[0]

    def add(self, start: datetime, limit: Limit) -> datetime:
        if limit.unit == "d":
            return self.add_days(start, limit.amount)
        return self.add_hours(start, limit.amount)

    def add_days(self, start: datetime, days: int) -> datetime:
        day = start.astimezone(self.tz).date()
        left = days
        for _ in range(_MAX_DAYS_SCANNED):
            day += timedelta(days=1)
            if self._working(day):
                left -= 1
                if left == 0:
                    return datetime.combine(day + timedelta(days=1), time(0), self.tz)
        raise ValueError(f"no {days} working days within {_MAX_DAYS_SCANNED} days of {start}")

    def add_hours(self, start: datetime, hours: int) -> datetime:
        local = start.astimezone(self.tz)
        left = timedelta(hours=hours)
        day = local.date()
        for _ in range(_MAX_DAYS_SCANNED):
            if self._working(day):
                plan = self.schedule.plan(day)
                for span in (plan.morning, plan.afternoon):
                    begin = datetime.combine(day, span.start, self.tz)
                    end = datetime.combine(day, span.end, self.tz)
                    begin = max(begin, local)
                    if begin >= end:
                        continue
                    if end - begin >= left:
                        return begin + left
                    left -= end - begin
            day += timedelta(days=1)
        raise ValueError(f"no {hours} working hours within {_MAX_DAYS_SCANNED} days of {start}")


class CaseDeadlines:
    """The deadlines of a case opened at an instant: one per step, each from the opening."""

    def __init__(self, limits: Mapping[str, str], clock: WorkingClock):
        self.limits = {step: Limit.parse(text) for step, text in limits.items()}
        self.clock = clock

    def step(self, name: str, start: datetime) -> datetime:
        return self.clock.add(start, self.limits[name])

    def opening(self, opened_at: datetime, steps: tuple[str, ...]) -> dict[str, datetime]:
        return {name: self.step(name, opened_at) for name in steps}


# Examples, not the centre's rule (docs/cases.md "Deadlines"): 核实 the next working day,
# 整改 and 反馈 within five, 回访 within ten, 办结 within fifteen; an appeal reviewed within five.
DEFAULT_LIMITS: dict[str, str] = {
    "verify": "1d",
    "rectify": "5d",
    "answer": "5d",
    "follow_up": "10d",
    "close": "15d",
    "appeal_review": "5d",
}


def opening_policy(deadlines: CaseDeadlines) -> Callable[[datetime], dict[str, datetime]]:
    """The store's hook: the deadlines of a case opened at an instant."""
    from central.cases.states import OPENING_STEPS

    return lambda opened_at: deadlines.opening(opened_at, OPENING_STEPS)


def default_policy(tz: ZoneInfo) -> Callable[[datetime], dict[str, datetime]]:
    return opening_policy(CaseDeadlines(DEFAULT_LIMITS, WorkingClock(Schedule(), tz)))
