"""Time at the post, 脱岗 and 串岗: the values (docs/post.md).

The regulation's discipline rules are about the post, not only the punch: 第十九条 — no 迟到,
早退, 脱岗, 串岗, and a short absence shows 暂停服务; 第二十五条 — leaving during working hours
without leave or 报备 is 脱岗. These records say, per staff member with a window and working
day, how the public service hours were spent, and which stretches were 脱岗 or 串岗, each with
the events that show it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum


class Presence(StrEnum):
    """What a stretch of a person's public service hours was."""

    SERVING = "serving"  # logged in at a window, not paused (服务中)
    PAUSED = "paused"  # logged in, 暂停服务
    AWAY = "away"  # not logged in anywhere (离岗), device offline while punched in included
    EXCUSED = "excused"  # covered by leave or 公出: counted against no one
    UNKNOWN = "unknown"  # the window's device was offline and the person had not punched in


class EpisodeKind(StrEnum):
    ABSENT = "absent"  # 脱岗
    WRONG_WINDOW = "wrong_window"  # 串岗


class Cause(StrEnum):
    LOGGED_OUT = "logged_out"  # not logged in during service hours
    PAUSED_TOO_LONG = "paused_too_long"  # 暂停服务 beyond [post] pause_limit_min
    DEVICE_OFFLINE = "device_offline"  # the window's device offline while punched in
    NOT_ROSTERED = "not_rostered"  # logged in at a window the roster does not give them


@dataclass(frozen=True)
class Stretch:
    """One stretch of a person's day within the public service hours."""

    start: datetime
    end: datetime
    presence: Presence
    window: str | None  # where, when at a window


@dataclass(frozen=True)
class Episode:
    """A 脱岗 or 串岗 episode, with the events that show it (ids, in order)."""

    kind: EpisodeKind
    cause: Cause
    start: datetime
    end: datetime  # the end so far when ``ongoing``
    window: str | None
    evidence: tuple[str, ...]
    ongoing: bool = False

    @property
    def minutes(self) -> int:
        return int((self.end - self.start).total_seconds() // 60)


@dataclass(frozen=True)
class HalfDay:
    """Minutes of one half day's public service hours (am: morning span, pm: afternoon)."""

    serving: int = 0
    paused: int = 0
    away: int = 0
    excused: int = 0
    unknown: int = 0

    @property
    def at_post(self) -> int:
        """Logged in, paused or not: the 'time at post' column."""
        return self.serving + self.paused


@dataclass(frozen=True)
class PostDay:
    """One staff member's working day at the post."""

    site: str
    staff_id: str
    day: date
    window: str | None  # the roster's window
    halves: dict[str, HalfDay]  # "am", "pm"
    stretches: tuple[Stretch, ...]
    episodes: tuple[Episode, ...] = field(default=())
