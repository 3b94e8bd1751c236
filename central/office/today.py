"""Today, live, for the 政务服务股 (docs/office.md "Today").

What the office's ``/today`` page shows, computed from the store at one moment:

- 人员: per person of the stored rosters (employed today), the first morning and afternoon
  in-punch (``attendance.punch``, slot and status as the kiosk classified them), 迟到 n 分,
  请假/公出 by half day (``store.leaves``), an approved 补卡 standing in for a punch, and
  缺勤 for a half whose in-punch band (contract/schedule.py ``DayPlan.bands``) has ended with
  no in-punch, no 补卡 and no leave. A chief representative (role ``chief``) is held to
  records a month, not punches a day, so is never 缺勤 here.
- 窗口: the hall board's own computation (central/board/state.py ``load``), device liveness
  included: 服务中, 暂停服务 since HH:MM, 未开放, 设备离线, and who.
- 脱岗: :func:`ongoing_absences`.

:func:`ongoing_absences` takes them from the time-at-post computation (central/post,
docs/post.md): the 脱岗 episodes of today that are still running. A window the board shows
设备离线 is still 脱岗 for a person who punched in and is not serving elsewhere (第二十五条:
the device being off does not make the post staffed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from central.board import state as board_state
from central.config import CentralConfig
from central.post.model import Cause, Episode, EpisodeKind
from central.reports.source import Person, roster_people
from central.schedule_publish import history
from central.store import StoredEvent
from contract import EventType
from contract.schedule import DayPlan, Schedule

logger = logging.getLogger(__name__)

REFRESH_S = 1.0  # the store is read this often while a page listens; a push only on a change
HALVES = {"am": "上午", "pm": "下午"}
IN_SLOTS = {"am": "morning_in", "pm": "afternoon_in"}
HALF_KINDS = ("请假", "公出")
CAUSE_LABELS = {
    Cause.LOGGED_OUT: "未登录窗口",
    Cause.PAUSED_TOO_LONG: "暂停服务超时",
    Cause.DEVICE_OFFLINE: "设备离线",
    Cause.NOT_ROSTERED: "不在本人窗口",
}
_DAY = timedelta(days=1)


@dataclass(frozen=True)
class Absence:
    """An ongoing 脱岗 episode and whose it is (the post model's Episode names no one)."""

    site: str
    staff_id: str
    episode: Episode


@dataclass(frozen=True)
class Inputs:
    """What one moment's page is computed from, read once."""

    moment: datetime  # in the hall's time zone
    schedule: Schedule
    plan: DayPlan
    people: dict[tuple[str, str], Person]
    punches: list[StoredEvent]  # today's attendance.punch events
    leaves: list[dict[str, Any]]
    board: dict[str, Any]  # central.board.state.load, every site


def read_inputs(store: Any, cfg: CentralConfig, now: datetime) -> Inputs:
    tz = ZoneInfo(cfg.central.timezone)
    moment = now.astimezone(tz)
    day = moment.date()
    schedule = history(store, cfg.schedule).for_day(day, tz)
    start = datetime.combine(day, time.min, tz)
    punches = [
        e
        for e in store.events_at_between((EventType.PUNCH,), start, start + _DAY)
        if e.at.astimezone(tz).date() == day
    ]
    board = board_state.load(
        store, tz, None, now=moment, schedule=schedule, stale_after_s=cfg.board.stale_after_s
    )
    people = {k: p for k, p in roster_people(store).items() if p.employed(day)}
    return Inputs(
        moment, schedule, schedule.plan(day), people, punches, store.leaves(day, day), board
    )


def _covers(row: dict[str, Any], day: date, half: str, plan: DayPlan | None = None) -> bool:
    starts, ends = row.get("starts"), row.get("ends")
    if not isinstance(starts, date) or not isinstance(ends, date):
        return False
    here = (day, half)
    if not (starts, row.get("starts_half") or "am") <= here <= (ends, row.get("ends_half") or "pm"):
        return False
    begins, until = row.get("starts_time"), row.get("ends_time")
    if plan is None or not begins or not until:
        return True  # by half days
    # A leave by the hour covers the half's in-punch only when it covers the moment the half
    # starts, as the monthly report judges the slot (docs/post.md "Leave by the hour").
    span = plan.morning if half == "am" else plan.afternoon
    moment = span.start.strftime("%H:%M")
    first = begins if day == starts else "00:00"
    last = until if day == ends else "24:00"
    return first <= moment <= last


def _excuses(
    leaves: list[dict[str, Any]], day: date, plan: DayPlan | None = None
) -> dict[tuple[str, str], str]:
    """(staff id, half) -> 请假 / 公出 (a 补卡 without a slot, stored before slots were
    recorded, covers its half days as 补卡)."""
    out: dict[tuple[str, str], str] = {}
    for row in leaves:
        kind = row.get("kind")
        if kind in HALF_KINDS or (kind == "补卡" and not row.get("slot")):
            for half in HALVES:
                if _covers(row, day, half, plan):
                    out.setdefault((str(row.get("staff_id")), half), str(kind))
    return out


def _corrections(leaves: list[dict[str, Any]], day: date) -> dict[tuple[str, str], str]:
    """(staff id, slot) -> the approved 补卡's time (HH:MM, or '' without one)."""
    out = {}
    for row in leaves:
        if row.get("kind") == "补卡" and row.get("slot") and row.get("starts") == day:
            at = row.get("slot_time")
            out[(str(row.get("staff_id")), str(row["slot"]))] = str(at)[:5] if at else ""
    return out


def _first_punches(punches: list[StoredEvent]) -> dict[tuple[str, str, str], StoredEvent]:
    """(site, staff id, slot) -> the first punch of that slot today."""
    out: dict[tuple[str, str, str], StoredEvent] = {}
    for e in sorted(punches, key=lambda e: (e.at, e.device, e.seq)):
        data = e.data if isinstance(e.data, dict) else {}
        sid, slot = data.get("staff_id"), data.get("slot")
        if isinstance(sid, str) and isinstance(slot, str):
            out.setdefault((e.site, sid, slot), e)
    return out


def _in_span(plan: DayPlan, t: time) -> tuple[str, time] | None:
    """The half whose public service span ``t`` is in, and the span's start."""
    if plan.morning.contains(t):
        return "am", plan.morning.start
    if plan.afternoon.contains(t):
        return "pm", plan.afternoon.start
    return None


def ongoing_absences(store: Any, cfg: CentralConfig, now: datetime) -> list[Absence]:
    """脱岗 in progress at ``now``: the episodes of today so far that run until ``now``, by the
    time-at-post computation the monthly report uses (docs/post.md), so the page and the
    report never disagree on what counts."""
    from central.post.compute import post_days

    tz = ZoneInfo(cfg.central.timezone)
    moment = now.astimezone(tz)
    days = post_days(
        store,
        history(store, cfg.schedule),
        moment.date(),
        moment.date(),
        now=moment,
        pause_limit=timedelta(minutes=cfg.post.pause_limit_min),
    )
    return [
        Absence(d.site, d.staff_id, e)
        for d in days
        for e in d.episodes
        if e.ongoing and e.kind is EpisodeKind.ABSENT
    ]


def _hhmm(moment: datetime, tz: Any) -> str:
    return moment.astimezone(tz).strftime("%H:%M")


def compute_today(inputs: Inputs, absences: list[Absence]) -> dict[str, Any]:
    """The page's state as JSON-ready data (pure: tests feed it inputs directly)."""
    moment, plan = inputs.moment, inputs.plan
    tz, day, now_t = moment.tzinfo, moment.date(), moment.time()
    firsts = _first_punches(inputs.punches)
    excused = _excuses(inputs.leaves, day, plan)
    corrected = _corrections(inputs.leaves, day)
    people = []
    for (site, sid), p in sorted(
        inputs.people.items(), key=lambda kv: (kv[0][0], kv[1].window or "~", kv[0][1])
    ):
        entry: dict[str, Any] = {
            "site": site,
            "id": sid,
            "name": p.name,
            "window": p.window,
            "chief": p.role == "chief",
            "halves": {},
        }
        for half, slot in IN_SLOTS.items():
            punch = firsts.get((site, sid, slot))
            data = punch.data if punch is not None else {}
            late = data.get("minutes_off") if data.get("status") == "late" else None
            band_over = plan.working and now_t >= plan.bands[slot].end
            fixed = corrected.get((sid, slot))
            leave = excused.get((sid, half))
            entry["halves"][half] = {
                "punch": None if punch is None else _hhmm(punch.at, tz),
                "late": late if isinstance(late, int) else None,
                "correction": fixed,
                "leave": leave,
                "absent": bool(
                    band_over
                    and punch is None
                    and fixed is None
                    and leave is None
                    and p.role != "chief"
                ),
            }
        people.append(entry)
    names = {(site, sid): p.name for (site, sid), p in inputs.people.items()}
    absent = [
        {
            "site": a.site,
            "id": a.staff_id,
            "name": names.get((a.site, a.staff_id), a.staff_id),
            "window": a.episode.window,
            "cause": CAUSE_LABELS.get(a.episode.cause, str(a.episode.cause)),
            "since": _hhmm(a.episode.start, tz),
            "minutes": a.episode.minutes,
        }
        for a in absences
    ]
    return {
        "v": 1,
        "date": day.isoformat(),
        "as_of": moment.strftime("%H:%M"),
        "working": plan.working,
        "people": people,
        "windows": inputs.board["windows"],
        "absences": absent,
    }


def load_today(store: Any, cfg: CentralConfig, now: datetime) -> dict[str, Any]:
    """The page's state at ``now``."""
    return compute_today(read_inputs(store, cfg, now), ongoing_absences(store, cfg, now))


class TodayFeed:
    """The page's state shared by every open page, as the hall board's (central/board/server.py):
    read at most once a second on the office's store thread, and only while a page listens;
    pushed only when it changed."""

    def __init__(
        self,
        cfg: CentralConfig,
        store: Any,
        clock: Callable[[], datetime],
        executor: Executor,
        render: Callable[[dict[str, Any]], dict[str, str]],
    ):
        self.cfg, self.store, self.clock = cfg, store, clock
        self._executor = executor
        self._render = render  # state -> {section: HTML}
        self.current = ""  # the last message (JSON: state and sections)
        self.subscribers: set[asyncio.Queue[str]] = set()
        self.errors = 0

    def _read(self) -> str:
        today = load_today(self.store, self.cfg, self.clock())
        message = {"state": today, "html": self._render(today)}
        return json.dumps(message, ensure_ascii=False, separators=(",", ":"))

    async def refresh(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            text = await loop.run_in_executor(self._executor, self._read)
        except Exception as exc:  # a store restarting: keep the last state, try again
            self.errors += 1
            if self.errors == 1 or self.errors % 60 == 0:
                logger.warning("office: today: cannot read the store: %s", exc)
            return
        self.errors = 0
        if text != self.current:
            self.current = text
            for queue in list(self.subscribers):
                queue.put_nowait(text)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if self.subscribers:
                await self.refresh()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), REFRESH_S)

    def end_all(self) -> None:
        """End every open stream (the server is stopping)."""
        for queue in list(self.subscribers):
            queue.put_nowait("")
