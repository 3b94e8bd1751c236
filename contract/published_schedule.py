"""The hall's hours and calendar as the centre publishes them (docs/topics.md, schedule).

One source (docs/attendance.md "One schedule"): the centre reads ``[schedule]`` from
central.toml, resolves each year's statutory holidays and adjusted working days (调休) itself,
records the result as a numbered version and publishes it retained on
``{prefix}/{site}/schedule``. A kiosk stores the last one it received and classifies every
punch by it, naming the version in the punch (``schedule_version``); the attendance report
classifies the punch again by that same version. Neither side consults its own copy of the
hours, so the screen and the report cannot disagree.

The calendar travels with the hours because the devices' holiday package ages: a kiosk
installed with chinesecalendar 1.11.0 knows nothing of 2027. Only the centre has to be kept
current (its package or its config's ``holidays``/``workdays``/``covered_years``).

Payload::

    {"v": 1, "version": 3, "published_at": "2026-12-04T09:00:00+08:00",
     "hours": {...[schedule] without holidays/workdays/covered_years...},
     "calendar": {"2026": {"complete": true, "source": "chinesecalendar 1.11.0",
                           "days_off": {"2026-10-01": "National Day", ...},
                           "workdays": {"2026-09-27": "National Day", ...}}}}

``days_off`` are weekdays that are off, ``workdays`` weekend days that are working days; every
other day follows Monday-Friday. A year is ``complete`` when all of its statutory days are
known (from the package or declared in ``covered_years``); an incomplete or missing year is
treated as plain Monday-Friday plus whatever days it lists, and every side warns about it.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from contract.config import ScheduleSection
from contract.payload import parse_payload, validate_payload

SCHEDULE_PAYLOAD_VERSION = 1
MAX_SCHEDULE_BYTES = 256 * 1024  # a few years of days: a few KiB; anything near this is wrong

# The keys of [schedule] that the centre folds into the published calendar; the hours carry
# the rest.
CALENDAR_KEYS = frozenset({"holidays", "workdays", "covered_years"})


class ScheduleError(ValueError):
    """A schedule payload that does not follow docs/topics.md; the message says where."""


_FROZEN = ConfigDict(extra="forbid", frozen=True)


class YearDays(BaseModel):
    """One year's exceptions to Monday-Friday, resolved by the centre."""

    model_config = _FROZEN
    complete: bool
    source: Annotated[str, Field(max_length=200)]
    days_off: dict[date, Annotated[str, Field(max_length=64)]]
    workdays: dict[date, Annotated[str, Field(max_length=64)]]


class PublishedSchedule(BaseModel):
    model_config = _FROZEN
    v: int
    version: Annotated[int, Field(ge=1)]
    published_at: datetime
    hours: ScheduleSection
    calendar: dict[int, YearDays]

    @field_validator("v")
    @classmethod
    def _payload_version(cls, value: int) -> int:
        if value != SCHEDULE_PAYLOAD_VERSION:
            raise ValueError(f"expected {SCHEDULE_PAYLOAD_VERSION}, got {value}")
        return value

    @field_validator("hours")
    @classmethod
    def _hours_only(cls, value: ScheduleSection) -> ScheduleSection:
        folded = sorted(k for k in CALENDAR_KEYS if getattr(value, k))
        if folded:
            raise ValueError(f"expected the days in calendar, not in hours; got {folded}")
        return value

    @field_validator("published_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("expected a time with its UTC offset")
        return value

    @field_validator("calendar")
    @classmethod
    def _days_in_their_year(cls, value: dict[int, YearDays]) -> dict[int, YearDays]:
        for year, days in value.items():
            stray = [d for d in (*days.days_off, *days.workdays) if d.year != year]
            if stray:
                raise ValueError(f"{year}: expected days of {year}, got {stray[0].isoformat()}")
        return value

    @property
    def digest(self) -> str:
        return body_digest(self.body())

    def body(self) -> dict[str, Any]:
        """What the version stands for: hours and calendar, without number or time."""
        return {
            "hours": hours_json(self.hours),
            "calendar": {
                str(y): d.model_dump(mode="json") for y, d in sorted(self.calendar.items())
            },
        }

    def to_json(self) -> str:
        return json.dumps(
            {
                "v": self.v,
                "version": self.version,
                "published_at": self.published_at.isoformat(),
                **self.body(),
            },
            ensure_ascii=False,
        )


def hours_json(hours: ScheduleSection) -> dict[str, Any]:
    return hours.model_dump(mode="json", exclude=set(CALENDAR_KEYS))


def body_digest(body: dict[str, Any]) -> str:
    """SHA-256 of the body in one canonical spelling: the same hours and days, one digest."""
    text = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def build_published(
    version: int, published_at: datetime, body: dict[str, Any]
) -> PublishedSchedule:
    return validate_schedule(
        {
            "v": SCHEDULE_PAYLOAD_VERSION,
            "version": version,
            "published_at": published_at.isoformat(),
            **body,
        }
    )


def validate_schedule(obj: Any) -> PublishedSchedule:
    return validate_payload(PublishedSchedule, obj, ScheduleError)


def parse_schedule(payload: bytes) -> PublishedSchedule:
    return parse_payload(PublishedSchedule, payload, MAX_SCHEDULE_BYTES, ScheduleError)
