"""The working-time rules the centre judges punches by: the kiosks' own schedule code.

One import point, so the attendance report and the kiosks can never disagree about hours,
seasons, statutory holidays or adjusted working days (调休) (CONTRACT §1, from the
regulation's attendance articles, 第二十四、二十六条). When the schedule moves to a module
both sides share, only this file changes.
"""

from agent.config import ScheduleSection
from agent.schedule import CHIEF_MONTHLY_MIN, DAILY_SLOTS, DayPlan, Schedule, rule_for_role

__all__ = [
    "CHIEF_MONTHLY_MIN",
    "DAILY_SLOTS",
    "DayPlan",
    "Schedule",
    "ScheduleSection",
    "rule_for_role",
]
