"""Punch rules: which slot a punch fills and whether it is on time (docs/attendance.md).

- Hours: summer (May–Oct) and winter (Nov–Apr) staff duty hours, Friday afternoons apart,
  from the centre's 2024 regulation (docs/attendance.md table); a site overrides any of them in
  central.toml ``[schedule]`` (:class:`contract.config.ScheduleSection`). The centre publishes
  them with the resolved calendar (:mod:`contract.published_schedule`); kiosks classify by the
  published version and the report by the version each punch names (:class:`ScheduleHistory`).
- Working days: statutory holidays are off and China's adjusted working days (调休) are on,
  from the ``chinesecalendar`` package (State Council notices, data up to its release year),
  then the config's ``holidays`` / ``workdays`` lists, which win; the centre resolves them
  (:func:`resolve_year`). For a year nobody knows, Monday–Friday are working days and a
  warning is logged once.
  An adjusted working day that falls on a weekend uses the Monday–Thursday hours.
- Slots by time band: by default each band is derived from the day's hours (an in-band runs
  from ``early_in_min`` before the start to the middle of the session, an out-band from there
  to the middle of the lunch break, or ``late_out_min`` after the end); a site may set any band
  explicitly (``[schedule.bands]``). A punch in no band is ``extra`` /
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
from datetime import date, datetime, time, timedelta, tzinfo
from typing import TYPE_CHECKING, Protocol

from contract.config import HoursSection, ScheduleSection

if TYPE_CHECKING:
    from contract.published_schedule import PublishedSchedule, YearDays

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


def _weekday_rule(day: date) -> tuple[bool, str]:
    return (True, "weekday") if day.weekday() < 5 else (False, "weekend")


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


def resolve_year(year: int, cfg: ScheduleSection) -> YearDays | None:
    """One year's days off and adjusted working days as the centre publishes them.

    From chinesecalendar when it has the year, then the config's ``holidays`` / ``workdays``
    on top (they win). A year the package lacks is complete only when listed in
    ``covered_years``; without any day at all it is None (plain Monday-Friday).
    """
    from contract.published_schedule import YearDays

    days_off: dict[date, str] = {}
    workdays: dict[date, str] = {}
    sources = []
    known = calendar_knows(year)
    if known:
        import chinese_calendar

        sources.append(f"chinesecalendar {_package_version()}")
        day = date(year, 1, 1)
        while day.year == year:
            holiday, name = chinese_calendar.get_holiday_detail(day)
            if holiday and day.weekday() < 5:
                days_off[day] = str(name or "holiday")
            elif not holiday and day.weekday() >= 5:
                workdays[day] = str(name or "调休")
            day += timedelta(days=1)
    listed = [d for d in (*cfg.holidays, *cfg.workdays) if d.year == year]
    if listed or year in cfg.covered_years:
        sources.append("central.toml [schedule]")
    for d in cfg.holidays:
        if d.year == year:
            workdays.pop(d, None)
            if d.weekday() < 5:
                days_off[d] = "holiday (config)"
    for d in cfg.workdays:
        if d.year == year:
            days_off.pop(d, None)
            if d.weekday() >= 5:
                workdays[d] = "working day (config)"
    if not sources:
        return None
    return YearDays(
        complete=known or year in cfg.covered_years,
        source=", ".join(sources),
        days_off=dict(sorted(days_off.items())),
        workdays=dict(sorted(workdays.items())),
    )


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("chinesecalendar")
    except PackageNotFoundError:
        return "?"


def published_gaps(today: date, calendar: dict[int, YearDays]) -> list[int]:
    """Years needed now (this one; from December also the next) that a published calendar
    does not cover completely: a kiosk would treat their holidays as plain days."""
    years = [today.year] + ([today.year + 1] if today.month == 12 else [])
    return [y for y in years if y not in calendar or not calendar[y].complete]


class ScheduleSource(Protocol):
    """Where a kiosk gets the schedule in force now: a fixed :class:`Schedule`, or the
    centre's latest as stored on the kiosk (agent/schedule_file.py ``ScheduleWatch``)."""

    def current(self) -> Schedule: ...


class Schedule:
    """The hall's hours and working days, and how a punch is classified by them.

    ``calendar`` is a published schedule's (:mod:`contract.published_schedule`): the days it
    lists are the whole truth and chinesecalendar is not consulted (the centre resolved them).
    Without it (the centre resolving, or a kiosk before its first schedule) the config's lists
    and the installed package decide.
    """

    def __init__(
        self,
        cfg: ScheduleSection | None = None,
        calendar: dict[int, YearDays] | None = None,
        version: int | None = None,
    ):
        self.cfg = cfg or ScheduleSection()
        self.calendar = calendar
        self.version = version  # the centre's schedule version; None: built-in defaults
        self._warned_years: set[int] = set()

    @classmethod
    def published(cls, schedule: PublishedSchedule) -> Schedule:
        return cls(schedule.hours, dict(schedule.calendar), schedule.version)

    def current(self) -> Schedule:
        """A fixed schedule is its own current one (:class:`ScheduleSource`)."""
        return self

    # --- days -------------------------------------------------------------------------

    def _warn_once(self, year: int, text: str) -> None:
        if year not in self._warned_years:
            self._warned_years.add(year)
            logger.warning(text, year)

    def working_day(self, day: date) -> tuple[bool, str]:
        if self.calendar is not None:
            return self._published_working_day(day)
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
            self._warn_once(
                day.year,
                "chinesecalendar has no data for %d: Mon-Fri are working days; list the "
                "year's holidays in [schedule] holidays/workdays or upgrade it",
            )
            return _weekday_rule(day)

    def _published_working_day(self, day: date) -> tuple[bool, str]:
        assert self.calendar is not None
        year = self.calendar.get(day.year)
        if year is not None:
            if day in year.days_off:
                return False, f"holiday: {year.days_off[day]}"
            if day in year.workdays:
                return True, f"adjusted working day (调休): {year.workdays[day]}"
        if year is None or not year.complete:
            self._warn_once(
                day.year,
                "the centre's schedule has no complete calendar for %d: its statutory holidays "
                "and 调休 days are treated as plain days (docs/attendance.md \"Next year's "
                'holidays")',
            )
        return _weekday_rule(day)

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


class ScheduleHistory:
    """Every schedule version the centre published, for judging punches after the fact.

    A punch is classified by the version it names (the one its kiosk used); a punch without
    one (recorded before the kiosk's first schedule, or by an older kiosk) by the version in
    effect when it was filed. A day's plan (working or not, its bands) is the version in effect
    at the end of that day. Without any published version, ``fallback`` (the centre's config).
    """

    def __init__(self, versions: Iterable[tuple[datetime, Schedule]], fallback: Schedule) -> None:
        self._versions = sorted(versions, key=lambda pair: pair[0])
        self._by_number = {s.version: s for _, s in self._versions if s.version is not None}
        self.fallback = fallback

    @classmethod
    def single(cls, schedule: Schedule) -> ScheduleHistory:
        return cls((), schedule)

    def by_version(self, version: int | None) -> Schedule | None:
        return None if version is None else self._by_number.get(version)

    def in_effect(self, moment: datetime) -> Schedule:
        current: Schedule | None = None
        for published_at, schedule in self._versions:
            if published_at > moment:
                break
            current = schedule
        if current is None:  # before the first version: the first is the best guess
            return self._versions[0][1] if self._versions else self.fallback
        return current

    def for_punch(self, version: int | None, filed_at: datetime) -> Schedule:
        return self.by_version(version) or self.in_effect(filed_at)

    def for_day(self, day: date, tz: tzinfo) -> Schedule:
        return self.in_effect(datetime.combine(day + timedelta(days=1), time(0), tz))

    def plan(self, day: date, tz: tzinfo) -> DayPlan:
        return self.for_day(day, tz).plan(day)


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
