"""Punch rules: which slot a punch fills and whether it is on time (docs/attendance.md).

- Hours: summer (May–Oct) and winter (Nov–Apr) staff duty hours, Friday afternoons apart,
  from the centre's 2024 regulation (docs/attendance.md table); a site overrides any of them in
  ``[attendance.schedule]`` (``agent/config.py`` ``ScheduleSection``).
- Working days: statutory holidays are off and China's adjusted working days (调休) are on,
  from the ``chinesecalendar`` package (State Council notices, data up to its release year),
  then the config's ``holidays`` / ``workdays`` lists, which win. For a year the package does
  not know, Monday–Friday are working days and a warning is logged once.
  An adjusted working day that falls on a weekend uses the Monday–Thursday hours.
- Slots by time band: by default each band is derived from the day's hours (an in-band runs
  from ``early_in_min`` before the start to the middle of the session, an out-band from there
  to the middle of the lunch break, or ``late_out_min`` after the end); a site may set any band
  explicitly (``[attendance.schedule.bands]``). A punch in no band is ``extra`` /
  ``outside_hours``; any punch on a day off is ``extra`` / ``holiday``.
- Status: ``late`` after start + ``grace_min``, ``early_leave`` before end - ``grace_min``,
  else ``on_time``; ``minutes_off`` is how late or early, in whole minutes (rounded up).
- Chief representatives (首席代表, roster role ``chief``) need only at least four records a
  month, not four a day: :func:`rule_for_role` and :func:`month_summary` expose that for the
  report.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from contract.config import HoursSection, ScheduleSection

logger = logging.getLogger(__name__)

SLOTS = ("morning_in", "morning_out", "afternoon_in", "afternoon_out", "extra")
DAILY_SLOTS = SLOTS[:4]
CHIEF_MONTHLY_MIN = 4  # docs/attendance.md: chief representatives, at least four records a month


@dataclass(frozen=True)
class Span:
    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> Span:
        a, b = text.split("-")
        return cls(time.fromisoformat(a), time.fromisoformat(b))

    def contains(self, t: time) -> bool:
        return self.start <= t < self.end


@dataclass(frozen=True)
class DayPlan:
    day: date
    working: bool
    season: str  # "summer" / "winter"
    morning: Span
    afternoon: Span
    bands: dict[str, Span]
    reason: str  # why working or not: "weekday", "weekend", "holiday: National Day", ...


@dataclass(frozen=True)
class Classified:
    slot: str
    status: str
    minutes_off: int


@dataclass(frozen=True)
class Rule:
    """What attendance rule applies to a role (for the monthly report)."""

    kind: str  # "daily": every working day's four slots; "monthly": at least N records
    slots: tuple[str, ...] = DAILY_SLOTS
    min_records: int = 0


def rule_for_role(role: str | None) -> Rule:
    if role == "chief":
        return Rule("monthly", slots=(), min_records=CHIEF_MONTHLY_MIN)
    return Rule("daily")


def _minutes(t: time) -> int:
    return t.hour * 60 + t.minute


def _at(minutes: int) -> time:
    minutes = max(0, min(minutes, 24 * 60 - 1))
    return time(minutes // 60, minutes % 60)


def calendar_knows(year: int) -> bool:
    """Whether the installed chinesecalendar has the State Council's notice for ``year``."""
    try:
        import chinese_calendar
    except ImportError:
        return False
    try:
        chinese_calendar.get_holiday_detail(date(year, 6, 1))
    except NotImplementedError:
        return False
    return True


def calendar_gaps(today: date, cfg: ScheduleSection | None = None) -> list[int]:
    """Years needed now (this one; from December also the next) that nobody covers.

    A year is covered by chinesecalendar's data or by ``covered_years``: the site declares
    that it listed the year's statutory holidays and 调休 days in ``holidays`` / ``workdays``
    itself (when the package lags behind the State Council's notice, usually published in
    November-December). One entry in ``holidays`` (a local day off) does not cover a year.
    An uncovered year would silently become plain Monday-Friday, so
    ``hall-agent check`` and the agent warn (docs/attendance.md).
    """
    years = [today.year] + ([today.year + 1] if today.month == 12 else [])
    covered = set(cfg.covered_years) if cfg is not None else set()
    return [y for y in years if y not in covered and not calendar_knows(y)]


def calendar_advice(gaps: list[int]) -> str:
    years = ", ".join(map(str, gaps))
    return (
        f"chinesecalendar has no holiday data for {years}: statutory holidays and adjusted "
        "working days (调休) would be treated as plain Mon-Fri. Upgrade it "
        "(pip install -U chinesecalendar) or list the year's days off and adjusted working "
        f"days in [attendance.schedule] holidays / workdays and add the year to covered_years "
        f"(covered_years = [{gaps[0]}])"
    )


def warn_calendar_gaps(cfg: ScheduleSection, today: date) -> list[int]:
    gaps = calendar_gaps(today, cfg)
    if gaps:
        logger.warning("%s", calendar_advice(gaps))
    return gaps


class Schedule:
    def __init__(self, cfg: ScheduleSection | None = None):
        self.cfg = cfg or ScheduleSection()
        self._warned_years: set[int] = set()

    # --- days -------------------------------------------------------------------------

    def working_day(self, day: date) -> tuple[bool, str]:
        if day in self.cfg.holidays:
            return False, "holiday (config)"
        if day in self.cfg.workdays:
            return True, "working day (config)"
        try:
            import chinese_calendar

            holiday, name = chinese_calendar.get_holiday_detail(day)
            if holiday:
                return False, f"holiday: {name}" if name else "weekend"
            if day.weekday() >= 5:
                return True, f"adjusted working day (调休): {name}"
            return True, "weekday"
        except NotImplementedError:
            if day.year not in self._warned_years:
                self._warned_years.add(day.year)
                logger.warning(
                    "chinesecalendar has no data for %d: Mon-Fri are working days; list the "
                    "year's holidays in attendance.schedule.holidays/workdays or upgrade it",
                    day.year,
                )
            return day.weekday() < 5, "weekday" if day.weekday() < 5 else "weekend"

    def plan(self, day: date) -> DayPlan:
        working, reason = self.working_day(day)
        season = "summer" if day.month in self.cfg.summer_months else "winter"
        hours: HoursSection = getattr(self.cfg, season)
        morning = Span.parse(hours.morning)
        afternoon = Span.parse(hours.friday_afternoon if day.weekday() == 4 else hours.afternoon)
        m0, m1 = _minutes(morning.start), _minutes(morning.end)
        a0, a1 = _minutes(afternoon.start), _minutes(afternoon.end)
        lunch_mid = (m1 + a0) // 2
        bands = {
            "morning_in": Span(_at(m0 - self.cfg.early_in_min), _at((m0 + m1) // 2)),
            "morning_out": Span(_at((m0 + m1) // 2), _at(lunch_mid)),
            "afternoon_in": Span(_at(lunch_mid), _at((a0 + a1) // 2)),
            "afternoon_out": Span(_at((a0 + a1) // 2), _at(a1 + self.cfg.late_out_min)),
        }
        for slot in DAILY_SLOTS:
            explicit = getattr(self.cfg.bands, slot)
            if explicit:
                bands[slot] = Span.parse(explicit)
        return DayPlan(day, working, season, morning, afternoon, bands, reason)

    # --- punches ----------------------------------------------------------------------

    def classify(self, at: datetime, plan: DayPlan | None = None) -> Classified:
        """Slot, status and minutes off for a punch at local time ``at``; ``plan`` is
        ``self.plan(at.date())``, passed in by a caller that already has it."""
        if plan is None:
            plan = self.plan(at.date())
        if not plan.working:
            return Classified("extra", "holiday", 0)
        t = at.time()
        slot = next((s for s in DAILY_SLOTS if plan.bands[s].contains(t)), "extra")
        if slot == "extra":
            return Classified("extra", "outside_hours", 0)
        grace = timedelta(minutes=self.cfg.grace_min)
        span = plan.morning if slot.startswith("morning") else plan.afternoon
        if slot.endswith("_in"):
            due = datetime.combine(at.date(), span.start, at.tzinfo)
            late = at - (due + grace)
            if late > timedelta(0):
                return Classified(slot, "late", math.ceil((at - due).total_seconds() / 60))
        else:
            due = datetime.combine(at.date(), span.end, at.tzinfo)
            early = (due - grace) - at
            if early > timedelta(0):
                return Classified(slot, "early_leave", math.ceil((due - at).total_seconds() / 60))
        return Classified(slot, "on_time", 0)


@dataclass(frozen=True)
class MonthSummary:
    """One person's month, as the attendance report needs it."""

    staff_id: str
    rule: Rule
    records: int  # punches in the month
    working_days: int
    missing: dict[date, tuple[str, ...]]  # daily rule: working day -> slots without a punch
    late: int
    early_leave: int
    ok: bool  # daily: nothing missing, nobody late/early; monthly: records ≥ min_records


def month_summary(
    schedule: Schedule,
    staff_id: str,
    role: str | None,
    year: int,
    month: int,
    punches: Iterable[tuple[datetime, str, str]],
) -> MonthSummary:
    """Apply the role's rule to one person's punches ``(at, slot, status)`` of a month."""
    rule = rule_for_role(role)
    punches = [p for p in punches if p[0].year == year and p[0].month == month]
    first = date(year, month, 1)
    days = [
        first + timedelta(days=i) for i in range(31) if (first + timedelta(days=i)).month == month
    ]
    working = [d for d in days if schedule.working_day(d)[0]]
    late = sum(1 for _, _, st in punches if st == "late")
    early = sum(1 for _, _, st in punches if st == "early_leave")
    if rule.kind == "monthly":
        return MonthSummary(
            staff_id,
            rule,
            len(punches),
            len(working),
            {},
            late,
            early,
            len(punches) >= rule.min_records,
        )
    seen: dict[date, set[str]] = {}
    for at, slot, _ in punches:
        seen.setdefault(at.date(), set()).add(slot)
    missing = {
        d: tuple(s for s in rule.slots if s not in seen.get(d, set()))
        for d in working
        if any(s not in seen.get(d, set()) for s in rule.slots)
    }
    return MonthSummary(
        staff_id,
        rule,
        len(punches),
        len(working),
        missing,
        late,
        early,
        not missing and not late and not early,
    )
