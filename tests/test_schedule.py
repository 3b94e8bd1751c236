"""contract/schedule.py: docs/attendance.md hours, holidays and 调休 from chinesecalendar, overrides."""

from __future__ import annotations

import logging
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from central.config import load_central_config
from contract.config import ConfigError, ScheduleSection
from contract.schedule import Schedule, month_summary, rule_for_role

TZ = ZoneInfo("Asia/Shanghai")


def at(day: str, hhmm: str) -> datetime:
    return datetime.fromisoformat(f"{day}T{hhmm}:00").replace(tzinfo=TZ)


def table(schedule: Schedule, day: str, rows: list[tuple[str, str, str, int]]) -> None:
    got = []
    for hhmm, *_ in rows:
        c = schedule.classify(at(day, hhmm))
        # The day plan a caller passes in gives the same answer as the one classify builds.
        assert schedule.classify(at(day, hhmm), schedule.plan(date.fromisoformat(day))) == c
        got.append((hhmm, c.slot, c.status, c.minutes_off))
    assert got == rows


# 2026-06-10 is a Wednesday in summer: 08:30-11:30, 14:30-17:30.
def test_summer_weekday() -> None:
    table(
        Schedule(),
        "2026-06-10",
        [
            ("05:00", "extra", "outside_hours", 0),
            ("06:30", "morning_in", "on_time", 0),
            ("08:30", "morning_in", "on_time", 0),
            ("08:31", "morning_in", "late", 1),
            ("08:45", "morning_in", "late", 15),
            ("10:00", "morning_out", "early_leave", 90),
            ("11:20", "morning_out", "early_leave", 10),
            ("11:30", "morning_out", "on_time", 0),
            ("12:00", "morning_out", "on_time", 0),
            ("13:00", "afternoon_in", "on_time", 0),
            ("14:20", "afternoon_in", "on_time", 0),
            ("14:40", "afternoon_in", "late", 10),
            ("17:00", "afternoon_out", "early_leave", 30),
            ("17:30", "afternoon_out", "on_time", 0),
            ("19:00", "afternoon_out", "on_time", 0),
            ("22:00", "extra", "outside_hours", 0),
        ],
    )


# 2026-11-25 is a Wednesday in winter: afternoon starts at 14:00.
def test_winter_weekday() -> None:
    table(
        Schedule(),
        "2026-11-25",
        [
            ("08:29", "morning_in", "on_time", 0),
            ("08:50", "morning_in", "late", 20),
            ("13:55", "afternoon_in", "on_time", 0),
            ("14:10", "afternoon_in", "late", 10),
            ("17:10", "afternoon_out", "early_leave", 20),
            ("17:31", "afternoon_out", "on_time", 0),
        ],
    )


# 2026-11-27 is a Friday in winter: Friday afternoon is 14:30-17:30 in both seasons.
def test_winter_friday() -> None:
    table(
        Schedule(),
        "2026-11-27",
        [
            ("14:10", "afternoon_in", "on_time", 0),
            ("14:40", "afternoon_in", "late", 10),
            ("17:29", "afternoon_out", "early_leave", 1),
        ],
    )


def test_statutory_holiday_and_weekend() -> None:
    s = Schedule()
    # National Day 2026-10-01 (Thursday) and an ordinary Saturday.
    for day in ("2026-10-01", "2026-11-28", "2026-01-01"):
        c = s.classify(at(day, "08:40"))
        assert (c.slot, c.status, c.minutes_off) == ("extra", "holiday", 0), day
    assert s.working_day(date(2026, 10, 1)) == (False, "holiday: National Day")


def test_adjusted_working_days() -> None:
    """调休: Saturday 2026-10-10 and Sunday 2026-09-20 are working days (State Council 2026)."""
    s = Schedule()
    ok, reason = s.working_day(date(2026, 10, 10))
    assert ok and reason.startswith("adjusted working day")
    table(
        s, "2026-10-10", [("08:40", "morning_in", "late", 10), ("14:35", "afternoon_in", "late", 5)]
    )
    # Winter 调休 Saturday 2026-02-14 uses the Mon-Thu winter hours (afternoon 14:00).
    table(s, "2026-02-14", [("14:10", "afternoon_in", "late", 10)])
    assert s.working_day(date(2026, 9, 20))[0]
    assert s.working_day(date(2025, 9, 28))[0]


def test_config_overrides(write_config, tmp_path) -> None:
    path = write_config(
        """
        [schedule]
        grace_min = 5
        summer_months = [6, 7, 8]
        holidays = [2026-06-10]
        workdays = ["2026-06-13"]

        [schedule.summer]
        morning = "09:00-12:00"

        [schedule.bands]
        morning_in = "07:00-09:30"
        """
    )
    s = Schedule(load_central_config(path).schedule)
    assert s.classify(at("2026-06-10", "09:00")).status == "holiday"  # config holiday
    # Config workday on a Saturday, summer hours from the override, 5 minutes of grace.
    table(
        s,
        "2026-06-13",
        [
            ("08:55", "morning_in", "on_time", 0),
            ("09:04", "morning_in", "on_time", 0),
            ("09:06", "morning_in", "late", 6),
            ("09:40", "extra", "outside_hours", 0),  # explicit band ends 09:30
            ("11:56", "morning_out", "on_time", 0),
            ("11:50", "morning_out", "early_leave", 10),
        ],
    )
    # May is winter here (summer_months = 6-8): winter afternoon 14:00.
    assert s.classify(at("2026-05-12", "14:10")).status == "late"


def test_overriding_one_winter_key_keeps_the_other_winter_defaults(write_config, tmp_path) -> None:
    path = write_config(
        """
        [schedule.winter]
        morning = "09:00-12:00"
        """
    )
    cfg = load_central_config(path)
    winter = cfg.schedule.winter
    assert (winter.morning, winter.afternoon, winter.friday_afternoon) == (
        "09:00-12:00",
        "14:00-17:30",
        "14:30-17:30",
    )
    table(Schedule(cfg.schedule), "2026-11-25", [("14:10", "afternoon_in", "late", 10)])


def test_bad_schedule_config_names_the_key(write_config, tmp_path) -> None:
    path = write_config(
        """
        [schedule.winter]
        morning = "8:30 to 11:30"
        """
    )
    with pytest.raises(ConfigError) as err:
        load_central_config(path)
    assert "schedule.winter.morning" in str(err.value)
    path = write_config(
        """
        [schedule]
        summer_months = [5, 13]
        """
    )
    with pytest.raises(ConfigError, match=r"summer_months: expected months 1-12, got \[13\]"):
        load_central_config(path)


def test_year_without_calendar_data_falls_back_to_weekdays(caplog) -> None:
    s = Schedule()
    with caplog.at_level(logging.WARNING):
        assert s.working_day(date(2031, 1, 6)) == (True, "weekday")  # a Monday
        assert s.working_day(date(2031, 1, 4)) == (False, "weekend")
    assert "no data for 2031" in caplog.text


def test_chief_follows_the_monthly_rule() -> None:
    s = Schedule(ScheduleSection())
    assert rule_for_role("chief").kind == "monthly" and rule_for_role("chief").min_records == 4
    assert rule_for_role("staff").kind == "daily"
    punches = [(at(f"2026-11-{d:02d}", "08:40"), "morning_in", "late") for d in (2, 9, 16, 23)]
    chief = month_summary(s, "c1", "chief", 2026, 11, punches)
    assert chief.ok and chief.records == 4 and not chief.missing
    assert not month_summary(s, "c1", "chief", 2026, 11, punches[:3]).ok
    staff = month_summary(s, "s1", "staff", 2026, 11, punches)
    assert not staff.ok
    assert staff.working_days == 21  # November 2026: no holidays, 21 weekdays
    assert staff.missing[date(2026, 11, 2)] == ("morning_out", "afternoon_in", "afternoon_out")
    assert date(2026, 11, 3) in staff.missing and staff.late == 4


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ('[schedule.summer]\nmorning = "11:30-08:30"', "summer.morning"),
        ('[schedule.winter]\nfriday_afternoon = "17:30-17:30"', "friday_afternoon"),
        ('[schedule.bands]\nmorning_in = "10:00-06:30"', "bands.morning_in"),
    ],
)
def test_a_range_must_start_before_it_ends(write_config, tmp_path, section, key) -> None:
    # A swapped range must be refused: it would make every punch "extra".
    path = write_config(section + "\n")
    with pytest.raises(ConfigError, match=rf"{key}.*expected the start before the end"):
        load_central_config(path)
