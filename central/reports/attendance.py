"""The monthly attendance report, for the assessment the regulation's attendance articles
(第二十四、二十六条) ask of the centre: four records a working day, by face (docs/attendance.md).

Per person and working day, the four slots with the punch that counts (the earliest in a
"上班" band, the latest in a "下班" band, so a second punch never makes anyone later), late and
early minutes and missing punches; leave (请假, 公出) excuses the half days it covers and an
approved correction (补卡) the one slot it names. Per person and month: days present, late and
early counts and minutes, missing punches, days on leave, punches on days off. Chief
representatives (首席代表, roster role ``chief``) are held only to at least four records a month
(pro rata when on the roster part of the month).

Only days that are over are judged (``Day.judged``), and only days within the roster's
``starts``..``ends``: today is listed without a verdict and counted in no total, every format
shows it neutral.

Slots, lateness, working days and holidays are recomputed from the filed time with the
kiosks' own schedule code (:mod:`contract.schedule`) and the schedule version the punch names
(the one its kiosk classified by, docs/attendance.md "One schedule"), so the report agrees with
the kiosk's screen, and a punch filed by ``received_at`` (implausible device clock,
docs/sync.md) is judged like any other and flagged "†".
Definitions of every column: docs/reports.md.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from central.post.compute import post_days
from central.post.model import EpisodeKind, PostDay
from central.reports.chainmarks import MARK, ChainSummary, add_marks, summarize
from central.reports.model import (
    BAD,
    LATE,
    LEAVE,
    MISSING,
    PENDING,
    SUSPECT_NOTE,
    WEEKDAYS,
    Report,
    Sheet,
    Timeline,
    TimelineBar,
)
from central.reports.month import Month
from central.reports.source import Event, Person, month_events, roster_people
from central.store import Store
from contract import SLOT_LABELS, EventType
from contract.schedule import DAILY_SLOTS, DayPlan, Schedule, ScheduleHistory, rule_for_role

HALF_OF = {"morning_in": "am", "morning_out": "am", "afternoon_in": "pm", "afternoon_out": "pm"}
SLOTS_OF = {"am": ("morning_in", "morning_out"), "pm": ("afternoon_in", "afternoon_out")}
ROLE_NAMES = {"staff": "窗口人员", "chief": "首席代表", None: "不在名册"}


@dataclass
class Cell:
    slot: str
    punch: datetime | None = None
    status: str = "missing"  # on_time / late / early_leave / missing / pending / none
    minutes: int = 0
    excuse: str | None = None  # 请假 / 公出 / 补卡 covering this slot
    excuse_time: str | None = None  # a 补卡's punch time (HH:MM) from the approval
    suspect: bool = False
    chain: bool = False  # its event has an open chain finding (central/reports/chainmarks.py)

    def text(self) -> str:
        if self.punch is None:
            if self.excuse:
                return f"{self.excuse} {self.excuse_time}" if self.excuse_time else self.excuse
            return {"missing": "缺卡", "pending": "—"}.get(self.status, "")
        out = self.punch.strftime("%H:%M") + ("†" if self.suspect else "")
        out += MARK if self.chain else ""
        if self.excuse:
            return f"{out} ({self.excuse})"
        if self.status == "late":
            return f"{out} 迟到{self.minutes}分"
        if self.status == "early_leave":
            return f"{out} 早退{self.minutes}分"
        return out


@dataclass
class Day:
    person: Person
    plan: DayPlan
    cells: list[Cell]
    extra: int = 0  # punches outside every band (or on a day off)
    # The one source of "judged or not" for every format: False for today (the day is not
    # over, so an empty slot may still be punched); such a day shows no verdict and counts
    # in no total. Future days and days outside the roster's starts..ends are not listed.
    judged: bool = True


@dataclass
class PersonMonth:
    person: Person
    working_days: int = 0
    days_present: int = 0
    late: int = 0
    late_min: int = 0
    early: int = 0
    early_min: int = 0
    missing: int = 0
    leave_days: float = 0.0
    business_days: float = 0.0
    corrections: int = 0
    off_day_punches: int = 0
    records: int = 0
    suspect: int = 0
    daily: bool = False  # held to four punches each working day (role staff)
    monthly: bool = False  # held to a monthly count (role chief, 首席代表)
    chief_ok: bool | None = None  # monthly only; None until decided (the month is not over)
    chief_required: int = 0  # records the monthly rule asks of this person this month
    chief_records: int = 0  # records on days the person was on the roster
    employed_days: int = 0  # working days of the month within the roster's starts..ends
    month_days: int = 0  # working days of the month
    days: list[Day] = field(default_factory=list)
    # Time at the post (docs/post.md), judged days only: 脱岗 episodes and minutes, 串岗.
    posts: dict[date, PostDay] = field(default_factory=dict)
    absent: int = 0
    absent_min: int = 0
    wrong_window: int = 0


@dataclass
class Attendance:
    month: Month
    site: str | None
    plans: dict[date, DayPlan]
    people: list[PersonMonth]
    leave: list[dict[str, Any]]
    assessed_before: date  # days before this are judged (Day.judged); today is not
    chain: ChainSummary = field(default_factory=ChainSummary)  # the punches' chain checks

    @property
    def complete(self) -> bool:
        """Every day of the month is judged: the month is over."""
        return self.month.last < self.assessed_before


@dataclass(frozen=True)
class Excuse:
    kind: str  # 请假 / 公出 / 补卡
    time: str | None = None  # a 补卡's punch time, HH:MM


def _leave_index(
    rows: list[dict[str, Any]], month: Month, plans: dict[date, DayPlan] | None = None
) -> dict[tuple[str, date, str], Excuse]:
    """(staff id, day, slot) → excuse, for every slot a leave row covers in the month.

    请假 and 公出 cover half days (both slots of a morning or afternoon); a 补卡 with a slot
    corrects that one slot. A 补卡 stored before slots were recorded covers its half days.
    A leave by the hour (docs/post.md "Leave by the hour") excuses the slots whose scheduled
    moment (the span's start for 上班, its end for 下班) lies inside it, ends included.
    """
    index: dict[tuple[str, date, str], Excuse] = {}
    for r in rows:
        sid = r["staff_id"]
        if r.get("starts_time") and r.get("ends_time"):
            begin = (r["starts"], r["starts_time"])
            end = (r["ends"], r["ends_time"])
            for day, plan in (plans or {}).items():
                for slot in DAILY_SLOTS:
                    span = plan.morning if slot.startswith("morning") else plan.afternoon
                    due = span.start if slot.endswith("_in") else span.end
                    if begin <= (day, due.strftime("%H:%M")) <= end:
                        index.setdefault((sid, day, slot), Excuse(r["kind"]))
            continue
        if r.get("slot"):
            if month.first <= r["starts"] <= month.last:
                excuse = Excuse(r["kind"], r.get("slot_time") or None)
                index.setdefault((sid, r["starts"], r["slot"]), excuse)
            continue
        day = max(r["starts"], month.first)
        while day <= min(r["ends"], month.last):
            for half in ("am", "pm"):
                if (day, half) < (r["starts"], r["starts_half"]):
                    continue
                if (day, half) > (r["ends"], r["ends_half"]):
                    continue
                for slot in SLOTS_OF[half]:
                    index.setdefault((sid, day, slot), Excuse(r["kind"]))
            day += timedelta(days=1)
    return index


def compute(
    store: Store,
    month: Month,
    schedule: Schedule | ScheduleHistory,
    site: str | None = None,
    now: datetime | None = None,
    pause_limit_min: int = 15,
) -> Attendance:
    today = (now or datetime.now(month.tz)).astimezone(month.tz).date()
    if isinstance(schedule, Schedule):
        schedule = ScheduleHistory.single(schedule)
    plans = {d: schedule.plan(d, month.tz) for d in month.days()}
    people = roster_people(store, site)
    punches: dict[tuple[str, str], list[Event]] = defaultdict(list)
    events = month_events(store, month, (EventType.PUNCH,), site)
    for e in events:
        sid = e.data.get("staff_id")
        if not isinstance(sid, str):
            continue
        punches[(e.site, sid)].append(e)
        if (e.site, sid) not in people:
            people[(e.site, sid)] = Person(e.site, sid, sid, None, None)
    # Someone who left before the month (or starts after it) and never punched in it is not
    # part of this month's report.
    people = {
        key: p for key, p in people.items() if key in punches or any(p.employed(d) for d in plans)
    }
    leave = store.leaves(month.first, month.last)
    staff_ids = {sid for _, sid in people}
    leave = [r for r in leave if r["staff_id"] in staff_ids]
    excused = _leave_index(leave, month, plans)
    out = [
        _person_month(p, punches.get(key, []), plans, schedule, excused, today)
        for key, p in sorted(people.items())
    ]
    _add_posts(store, month, schedule, site, today, pause_limit_min, out)
    return Attendance(month, site, plans, out, leave, today, summarize(events))


def _add_posts(
    store: Store,
    month: Month,
    schedule: ScheduleHistory,
    site: str | None,
    today: date,
    pause_limit_min: int,
    people: list[PersonMonth],
) -> None:
    """Time at the post, 脱岗 and 串岗 (第十九条, 第二十五条; docs/post.md) of the days that are
    over, on each person's month."""
    last = min(month.last, today - timedelta(days=1))
    if last < month.first:
        return
    by_key = {(pm.person.site, pm.person.staff_id): pm for pm in people}
    limit = timedelta(minutes=pause_limit_min)
    for post in post_days(store, schedule, month.first, last, site, pause_limit=limit):
        pm = by_key.get((post.site, post.staff_id))
        if pm is None or not pm.person.employed(post.day):
            continue
        pm.posts[post.day] = post
        for e in post.episodes:
            if e.kind == EpisodeKind.ABSENT:
                pm.absent += 1
                pm.absent_min += e.minutes
            else:
                pm.wrong_window += 1


def _required_records(minimum: int, employed_days: int, month_days: int) -> int:
    """The monthly minimum, pro rata for a person on the roster part of the month.

    The regulation's "at least four records a month" (docs/attendance.md) is for a whole
    month; a chief who joins or leaves mid-month is held to the share of the month's working
    days they were on the roster, rounded up (4 × 9/18 = 2), never more than the minimum.
    """
    if month_days == 0 or employed_days >= month_days:
        return minimum
    return min(minimum, -(-minimum * employed_days // month_days))


def _person_month(
    person: Person,
    events: list[Event],
    plans: dict[date, DayPlan],
    schedule: ScheduleHistory,
    excused: dict[tuple[str, date, str], Excuse],
    today: date,
) -> PersonMonth:
    pm = PersonMonth(person, records=len(events))
    rule = rule_for_role(person.role)
    pm.daily = person.role is not None and rule.kind == "daily"
    pm.monthly = person.role is not None and rule.kind == "monthly"
    by_day: dict[date, list[Event]] = defaultdict(list)
    for e in events:
        by_day[e.at.date()].append(e)
    pm.suspect = sum(e.suspect for e in events)
    last_employed = None
    for day, plan in plans.items():
        todays = by_day.get(day, [])
        pm.month_days += plan.working
        if not person.employed(day):
            continue  # before starts or after ends: not judged, not listed, not counted
        last_employed = day
        pm.employed_days += plan.working
        pm.chief_records += len(todays)
        if day > today:
            continue  # future: nothing to say yet
        judged = day < today
        if not plan.working:
            pm.off_day_punches += len(todays)
            if todays:
                cells = [Cell(s, status="none") for s in DAILY_SLOTS]
                pm.days.append(Day(person, plan, cells, extra=len(todays), judged=judged))
            continue
        if not pm.daily and not todays:
            if judged:
                pm.working_days += 1
                _count_leave(pm, excused, day)
            continue
        cells, extra = _cells(person, todays, plan, schedule, excused, judged, pm.daily)
        pm.days.append(Day(person, plan, cells, extra, judged=judged))
        if judged:
            pm.working_days += 1
            _count_leave(pm, excused, day)
            _count_cells(pm, cells)
    if pm.monthly:
        pm.chief_required = _required_records(rule.min_records, pm.employed_days, pm.month_days)
        if pm.chief_records >= pm.chief_required:
            pm.chief_ok = True
        elif last_employed is not None and last_employed < today:
            pm.chief_ok = False  # every day the person could punch on is over
    return pm


def _count_leave(pm: PersonMonth, excused: dict[tuple[str, date, str], Excuse], day: date) -> None:
    for half in ("am", "pm"):
        excuse = excused.get((pm.person.staff_id, day, SLOTS_OF[half][0]))
        later = excused.get((pm.person.staff_id, day, SLOTS_OF[half][1]))
        # Half a day only when leave excuses both of its slots (a leave by the hour may
        # excuse one: docs/post.md "Leave by the hour").
        if excuse is None or later is None or later.kind != excuse.kind:
            continue
        if excuse.kind == "请假":
            pm.leave_days += 0.5
        elif excuse.kind == "公出":
            pm.business_days += 0.5


def _count_cells(pm: PersonMonth, cells: list[Cell]) -> None:
    if any(c.punch is not None for c in cells):
        pm.days_present += 1
    for c in cells:
        if c.excuse:
            pm.corrections += c.excuse == "补卡" and c.punch is None
            continue
        if c.status == "late":
            pm.late += 1
            pm.late_min += c.minutes
        elif c.status == "early_leave":
            pm.early += 1
            pm.early_min += c.minutes
        elif c.status == "missing":
            pm.missing += 1


def _cells(
    person: Person,
    events: list[Event],
    plan: DayPlan,
    schedules: ScheduleHistory,
    excused: dict[tuple[str, date, str], Excuse],
    judged: bool,
    daily: bool,
) -> tuple[list[Cell], int]:
    """The four cells of one working day; ``events`` are that day's (``plan.day``)."""
    day = plan.day
    cells = {s: Cell(s) for s in DAILY_SLOTS}
    extra = 0
    planned_by = schedules.for_day(day, events[0].at.tzinfo or UTC) if events else None
    for e in events:
        version = e.data.get("schedule_version")
        schedule = schedules.for_punch(version if isinstance(version, int) else None, e.at)
        # ``plan`` came from ``planned_by``; another version plans the day itself.
        c = schedule.classify(e.at, plan if schedule is planned_by else None)
        if c.slot not in cells:
            extra += 1
            continue
        cell = cells[c.slot]
        later = cell.punch is not None and e.at > cell.punch
        # The punch that counts: the first "in", the last "out".
        if cell.punch is None or (later == c.slot.endswith("_out")):
            cell.punch, cell.status, cell.minutes, cell.suspect, cell.chain = (
                e.at,
                c.status,
                c.minutes_off,
                e.suspect,
                bool(e.chain),
            )
    for slot, cell in cells.items():
        excuse = excused.get((person.staff_id, day, slot))
        if excuse is not None:
            cell.excuse, cell.excuse_time = excuse.kind, excuse.time
        if not daily and cell.punch is not None:
            # Chiefs (and ids in no roster) are held to a monthly count, not to the hours.
            cell.status, cell.minutes = "on_time", 0
        if not judged:
            # The day is not over: a punch is shown as it is, with no verdict either way.
            cell.status, cell.minutes = "pending", 0
        elif cell.punch is None and not cell.excuse:
            cell.status = "missing" if daily else "none"
    return list(cells.values()), extra


SUMMARY_HEADERS = [
    "站点",
    "工号",
    "姓名",
    "角色",
    "窗口",
    "应出勤(天)",
    "出勤(天)",
    "迟到(次)",
    "迟到(分钟)",
    "早退(次)",
    "早退(分钟)",
    "缺卡(次)",
    "请假(天)",
    "公出(天)",
    "补卡(次)",
    "休息日打卡(次)",
    "记录数",
    "考勤规则",
    "时间存疑(条)",
]
# Time at the post and its discipline (第十九条, 第二十五条; docs/post.md), a sheet of its own:
# the summary is already as wide as a landscape page holds.
POST_HEADERS = [
    "站点",
    "工号",
    "姓名",
    "窗口",
    "在岗(分钟)",
    "其中暂停(分钟)",
    "离岗(分钟)",
    "脱岗(次)",
    "脱岗(分钟)",
    "串岗(次)",
]
DAY_HEADERS = [
    "日期",
    "星期",
    "站点",
    "工号",
    "姓名",
    *(SLOT_LABELS[s] for s in DAILY_SLOTS),
    "迟到(分钟)",
    "早退(分钟)",
    "缺卡",
    "在岗(分钟)",
    "说明",
]
LEAVE_HEADERS = [
    "编号",
    "工号",
    "类型",
    "开始",
    "结束",
    "时段",
    "审批人",
    "备注",
    "导入人",
    "来源",
]
CALENDAR_HEADERS = ["日期", "星期", "工作日", "说明", "上午", "下午"]
HALF_NAMES = {"am": "上午", "pm": "下午"}
NOT_OVER = "当日未结束, 不作判定"


def leave_cells(r: dict[str, Any]) -> list[Any]:
    """One stored leave row as the report (and ``leave list``) shows it."""
    slot = r.get("slot") or ""
    slot_text = f"{SLOT_LABELS[slot]} {r.get('slot_time') or ''}".strip() if slot else ""
    return [
        r["id"],
        r["staff_id"],
        r["kind"],
        f"{r['starts'].isoformat()} {r.get('starts_time') or HALF_NAMES[r['starts_half']]}",
        f"{r['ends'].isoformat()} {r.get('ends_time') or HALF_NAMES[r['ends_half']]}",
        slot_text,
        r["approver"],
        r["note"],
        r["imported_by"],
        r["source"],
    ]


def _days(value: float) -> int | float:
    # Half days: 1.5 stays a number (xlsx sums it), 2.0 shows as 2.
    return int(value) if value == int(value) else value


def _rule_text(pm: PersonMonth) -> str:
    if pm.person.role is None:
        return "不在名册(未考核)"
    if not pm.monthly:
        return "每日四次"
    if pm.chief_ok is None:
        verdict = f"已{pm.chief_records}条, 月末判定"
    else:
        verdict = "达标" if pm.chief_ok else "未达标"
    share = ""
    if pm.employed_days < pm.month_days:
        share = f" (在岗{pm.employed_days}/{pm.month_days}个工作日, 按比例)"
    return f"每月≥{pm.chief_required}条{share}: {verdict}"


def _summary(att: Attendance) -> Sheet:
    summary = Sheet("月度汇总", SUMMARY_HEADERS, [])
    for i, pm in enumerate(att.people):
        p = pm.person
        summary.rows.append(
            [
                p.site,
                p.staff_id,
                p.name,
                ROLE_NAMES.get(p.role, p.role),
                p.window or "",
                pm.working_days,
                pm.days_present,
                pm.late,
                pm.late_min,
                pm.early,
                pm.early_min,
                pm.missing if pm.daily else "",
                _days(pm.leave_days),
                _days(pm.business_days),
                pm.corrections,
                pm.off_day_punches,
                pm.records,
                _rule_text(pm),
                pm.suspect,
            ]
        )
        for column, value in (("迟到(次)", pm.late), ("早退(次)", pm.early)):
            if value:
                summary.mark(i, column, LATE)
        if pm.missing and pm.daily:
            summary.mark(i, "缺卡(次)", MISSING)
        if pm.chief_ok is False:
            summary.mark(i, "考勤规则", BAD)
    return summary


def _posts(att: Attendance) -> Sheet:
    """Per person with a window: the month's minutes at the post and its 脱岗 and 串岗."""
    sheet = Sheet("在岗与纪律", POST_HEADERS, [])
    for pm in att.people:
        if not pm.posts:
            continue
        halves = [h for post in pm.posts.values() for h in post.halves.values()]
        p = pm.person
        sheet.rows.append(
            [
                p.site,
                p.staff_id,
                p.name,
                p.window or "",
                sum(h.at_post for h in halves),
                sum(h.paused for h in halves),
                sum(h.away for h in halves),
                pm.absent,
                pm.absent_min,
                pm.wrong_window,
            ]
        )
        row = len(sheet.rows) - 1
        if pm.absent:
            sheet.mark(row, "脱岗(次)", BAD)
        if pm.wrong_window:
            sheet.mark(row, "串岗(次)", BAD)
    return sheet


def _at_post(post: PostDay | None) -> int | str:
    """Minutes logged in (serving or paused) in the day's public service hours."""
    return "" if post is None else sum(h.at_post for h in post.halves.values())


def _day_row(d: Day, post: PostDay | None = None) -> list[Any]:
    counted = [c for c in d.cells if not c.excuse] if d.judged else []
    late = sum(c.minutes for c in counted if c.status == "late")
    early = sum(c.minutes for c in counted if c.status == "early_leave")
    missing = sum(c.status == "missing" for c in counted)
    note = [] if d.plan.working else [_plan_reason(d.plan)]
    if not d.judged:
        note.append(NOT_OVER)
    if d.extra:
        note.append(f"其他打卡{d.extra}次")
    return [
        d.plan.day,
        WEEKDAYS[d.plan.day.weekday()],
        d.person.site,
        d.person.staff_id,
        d.person.name,
        *(c.text() for c in d.cells),
        late or "",
        early or "",
        missing or "",
        _at_post(post),
        "; ".join(note),
    ]


def _daily(att: Attendance) -> Sheet:
    daily = Sheet("每日明细", DAY_HEADERS, [])
    days = sorted(
        ((d, pm.posts.get(d.plan.day)) for pm in att.people for d in pm.days),
        key=lambda dp: (dp[0].plan.day, dp[0].person.site, dp[0].person.staff_id),
    )
    for d, post in days:
        row = len(daily.rows)
        daily.rows.append(_day_row(d, post))
        for c in d.cells:
            column = SLOT_LABELS[c.slot]
            if not d.judged:
                daily.mark(row, column, PENDING)
            elif c.excuse:
                daily.mark(row, column, LEAVE)
            elif c.status in ("late", "early_leave"):
                daily.mark(row, column, LATE)
            elif c.status == "missing":
                daily.mark(row, column, MISSING)
    return daily


def _notes(att: Attendance) -> list[str]:
    notes = [
        SUSPECT_NOTE,
        "窗口人员每个工作日打卡四次 (上午上班、上午下班、下午上班、下午下班); "
        "首席代表每月不少于四条记录, 月中入职或离职的按在岗工作日占当月工作日的比例折算 "
        "(向上取整), 不按每日四次考核",
        "请假、公出按半天免除对应时段; 补卡只更正所写的一个时段, 每个时段计补卡1次",
        "名册中入职日期之前、离职日期之后的日期不考核, 留空, 不计入任何合计",
    ]
    if not att.complete:
        notes.append(_open_month_note(att))
    return notes


def _open_month_note(att: Attendance) -> str:
    today = att.assessed_before
    if today <= att.month.first:
        return "本月尚无已结束的日期: 不作判定, 不计入任何合计"
    last = min(today - timedelta(days=1), att.month.last)
    return (
        f"本月尚未结束: 统计截至 {last.isoformat()} (含); {today.isoformat()} 当天尚未结束, "
        "只列出已有的打卡, 不判定迟到、早退、缺卡 (— 为尚未打卡的时段), 之后的日期不列出, "
        "均不计入合计"
    )


def to_report(att: Attendance) -> Report:
    from central.reports import charts

    leave = Sheet("请假与更正", LEAVE_HEADERS, [leave_cells(r) for r in att.leave])
    calendar = Sheet("工作日历", CALENDAR_HEADERS, [])
    for day, plan in att.plans.items():
        calendar.rows.append(
            [
                day,
                WEEKDAYS[day.weekday()],
                "是" if plan.working else "否",
                _plan_reason(plan),
                _span(plan.morning) if plan.working else "",
                _span(plan.afternoon) if plan.working else "",
            ]
        )
    where = f" {att.site}" if att.site else ""
    sheets = [_summary(att), _posts(att), _daily(att), leave, calendar]
    notes = _notes(att)
    names = {(pm.person.site, pm.person.staff_id): pm.person.name for pm in att.people}
    add_marks(sheets, notes, att.chain, names)
    return Report(
        f"{att.month.label}{where} 考勤月报",
        sheets,
        notes=notes,
        charts=charts.attendance_charts(att),
        timelines=_timelines(att),
    )


PRESENCE_NAMES = {
    "serving": "服务中",
    "paused": "暂停服务",
    "away": "离岗",
    "excused": "请假/公出",
    "unknown": "设备离线(未打卡)",
}


def _timelines(att: Attendance) -> list[Timeline]:
    """HTML only: per person, each judged working day's stretches (docs/post.md)."""
    out = []
    for pm in att.people:
        if not pm.posts:
            continue
        p = pm.person
        days = []
        for day, post in sorted(pm.posts.items()):
            absent = sum(e.kind == EpisodeKind.ABSENT for e in post.episodes)
            wrong = len(post.episodes) - absent
            label = f"{day.isoformat()} 周{WEEKDAYS[day.weekday()]} 在岗{_at_post(post)}分钟"
            label += f" 脱岗{absent}次" if absent else ""
            label += f" 串岗{wrong}次" if wrong else ""
            bars = [
                TimelineBar(
                    s.start.strftime("%H:%M"),
                    s.end.strftime("%H:%M"),
                    int((s.end - s.start).total_seconds() // 60),
                    s.presence.value,
                    f"{PRESENCE_NAMES[s.presence.value]}{' ' + s.window if s.window else ''}",
                )
                for s in post.stretches
            ]
            days.append((label, bars))
        out.append((f"{p.staff_id} {p.name} (窗口 {p.window or '无'}) 脱岗{pm.absent}次", days))
    return out


def _span(span: Any) -> str:
    return f"{span.start.strftime('%H:%M')}-{span.end.strftime('%H:%M')}"


# chinesecalendar's holiday names (its Holiday enum) as the staff read them.
HOLIDAY_NAMES = {
    "New Year's Day": "元旦",
    "Spring Festival": "春节",
    "Tomb-sweeping Day": "清明节",
    "Labour Day": "劳动节",
    "Dragon Boat Festival": "端午节",
    "National Day": "国庆节",
    "Mid-autumn Festival": "中秋节",
}


def _plan_reason(plan: DayPlan) -> str:
    reason = plan.reason
    if reason.startswith("holiday: "):
        name = reason.split(": ", 1)[1]
        return f"法定节假日 ({HOLIDAY_NAMES.get(name, name)})"
    if reason.startswith("adjusted working day"):
        return "调休上班"
    return {
        "weekday": "工作日",
        "weekend": "休息日",
        "holiday (config)": "休息日 (本地配置)",
        "working day (config)": "工作日 (本地配置)",
    }.get(reason, reason)
