"""Each staff member's month so far, as the centre publishes it to a site's kiosks
(docs/topics.md ``{prefix}/{site}/summary``; docs/attendance.md "Your month on the screen").

After a punch a kiosk shows, beside the person's punches of today, their month so far: how
many times late (迟到), left early (早退), missed a punch (缺卡) and were away from the post
(脱岗). The centre computes it with the attendance report's own code, for the month in the
hall's timezone and only over the days that are over (today is never judged), and publishes
it retained, QoS 1, on the site's topic; a kiosk keeps the last good one in
``<data_dir>/summary.json``.

Payload::

    {"v": 1, "site": "jiedong", "month": "2026-12",
     "as_of": "2026-12-04T09:00:00+08:00", "through": "2026-12-03",
     "staff": {"S0012": {"late": 1, "early": 0, "missing": 2, "absent": 0}}}

``as_of`` is when the centre computed it; ``through`` the last day counted (the day before
``as_of``'s, or null on the first of the month, when no day is over yet). ``staff`` holds one
entry per person held to the daily hours (roster role ``staff``) of that site: staff ids and
counts only, never a name, a face or a time. Chief representatives (held to a monthly count,
not to the hours) and ids in no roster have no entry.

The digest (:attr:`PublishedSummary.digest`) covers everything but ``as_of``: the centre
publishes again only when it changed.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from contract.ids import Id, StaffId
from contract.payload import parse_payload, validate_payload

SUMMARY_PAYLOAD_VERSION = 1
MAX_SUMMARY_STAFF = 5000
# 5000 entries of ~70 bytes: ~350 KiB; anything larger is not a summary of one hall's site.
MAX_SUMMARY_BYTES = 512 * 1024
# At most four punches a working day in at most 31 days: a count above this is wrong.
MAX_COUNT = 4 * 31
MONTH_RE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")

_FROZEN = ConfigDict(extra="forbid", frozen=True)
Count = Annotated[int, Field(ge=0, le=MAX_COUNT, strict=True)]


class SummaryError(ValueError):
    """A summary payload that does not follow docs/topics.md; the message says where."""


class StaffMonth(BaseModel):
    """One person's counts over the judged days of the month."""

    model_config = _FROZEN
    late: Count  # 迟到: 上班 punches after the start
    early: Count  # 早退: 下班 punches before the end
    missing: Count  # 缺卡: slots of a judged working day without a punch or an excuse
    absent: Count  # 脱岗: episodes away from the post


class PublishedSummary(BaseModel):
    model_config = _FROZEN
    v: int
    site: Id
    month: str
    as_of: datetime
    through: date | None
    staff: Annotated[dict[StaffId, StaffMonth], Field(max_length=MAX_SUMMARY_STAFF)]

    @field_validator("v")
    @classmethod
    def _payload_version(cls, value: int) -> int:
        if value != SUMMARY_PAYLOAD_VERSION:
            raise ValueError(f"expected {SUMMARY_PAYLOAD_VERSION}, got {value}")
        return value

    @field_validator("month")
    @classmethod
    def _month(cls, value: str) -> str:
        if not MONTH_RE.match(value):
            raise ValueError(f"expected YYYY-MM, got {value!r}")
        return value

    @field_validator("as_of")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("expected a time with its UTC offset")
        return value

    @model_validator(mode="after")
    def _days_agree(self) -> PublishedSummary:
        if self.as_of.strftime("%Y-%m") != self.month:
            raise ValueError(f"as_of {self.as_of.isoformat()} is not in month {self.month}")
        if self.through is not None:
            if self.through.strftime("%Y-%m") != self.month:
                raise ValueError(f"through {self.through.isoformat()} is not in month {self.month}")
            if self.through >= self.as_of.date():
                raise ValueError(
                    f"through {self.through.isoformat()}: expected a day before as_of's "
                    "(a day is counted only once it is over)"
                )
        return self

    @property
    def digest(self) -> str:
        return body_digest(self.body())

    def body(self) -> dict[str, Any]:
        """What the counts stand for: everything but ``as_of``."""
        return {
            "site": self.site,
            "month": self.month,
            "through": None if self.through is None else self.through.isoformat(),
            "staff": {sid: m.model_dump() for sid, m in sorted(self.staff.items())},
        }

    def to_json(self) -> str:
        return json.dumps(
            {"v": self.v, "as_of": self.as_of.isoformat(), **self.body()},
            ensure_ascii=False,
            separators=(",", ":"),
        )


def body_digest(body: dict[str, Any]) -> str:
    """SHA-256 of the body in one canonical spelling."""
    text = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def build_summary(
    site: str,
    month: str,
    as_of: datetime,
    through: date | None,
    staff: dict[str, dict[str, int]],
) -> PublishedSummary:
    return validate_summary(
        {
            "v": SUMMARY_PAYLOAD_VERSION,
            "site": site,
            "month": month,
            "as_of": as_of.isoformat(),
            "through": None if through is None else through.isoformat(),
            "staff": staff,
        }
    )


def validate_summary(obj: Any) -> PublishedSummary:
    return validate_payload(PublishedSummary, obj, SummaryError)


def parse_summary(payload: bytes) -> PublishedSummary:
    return parse_payload(PublishedSummary, payload, MAX_SUMMARY_BYTES, SummaryError)
