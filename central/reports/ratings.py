"""The monthly 好差评 report (the regulation's 第三十五条: ratings feed staff assessment;
docs/attendance.md levels 5 非常满意 … 1 非常不满意).

Per site and window and per staff member (the one logged in at the window when the rating
was made, as the pad event records it): counts per level, the satisfaction rate, every 差评
(levels 1–2) with reasons, window, staff and time for follow-up, invitations sent, answered and
expired, and the time each window was paused (暂停服务). Windows are keyed by (site, label):
two sites' "A03" are different windows. Definitions: docs/reports.md.

The monthly 通报 on the month's 差评 cases (docs/cases.md), per window and per staff member:
差评, 作废, 整改率, 按期办结率, overdue now, appeals and their outcomes, read from the cases
and their logs (an appeal's outcome stays in the log after an upheld case moved on); and the
windows ranked by 满意率.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from central.cases.desk import closed_in_time, due
from central.cases.states import STATE_LABELS, CaseState
from central.reports.chainmarks import MARK, ChainSummary, add_marks, summarize
from central.reports.model import BAD, SUSPECT_NOTE, Rate, Report, Sheet
from central.reports.month import Month
from central.reports.source import Event, month_events, roster_people
from central.store import Store
from central.store.records import CaseLogEntry, CaseRecord
from contract import LEVEL_LABELS, POOR_LEVELS, EventType

LEVELS = (5, 4, 3, 2, 1)
GOOD = (5, 4, 3)  # 满意率 counts 基本满意 and better: the national scheme's 差评 are 1-2
_TYPES = (
    EventType.RATING,
    EventType.RATING_EXPIRED,
    EventType.LOGIN,
    EventType.LOGOUT,
    EventType.PAUSED,
    EventType.RESUMED,
)


@dataclass
class Tally:
    levels: Counter[int] = field(default_factory=Counter)
    answered: int = 0  # ratings that answered an invitation (invite_id set)
    expired: int = 0
    paused: timedelta = timedelta(0)

    @property
    def total(self) -> int:
        return sum(self.levels.values())

    @property
    def rate(self) -> float | None:
        total = self.total
        return None if not total else sum(self.levels[lv] for lv in GOOD) / total

    @property
    def sent(self) -> int:
        return self.answered + self.expired


# A case that reached 整改 or any later step (the states never go back).
RECTIFIED_OR_LATER = frozenset(
    {CaseState.RECTIFIED, CaseState.ANSWERED, CaseState.FOLLOWED_UP, CaseState.CLOSED}
)


@dataclass
class CaseTally:
    """The 通报 of one window or staff member: the month's 差评 cases and what became of them."""

    total: int = 0  # 差评: the cases of the month's ratings at levels 1-2
    void: int = 0  # 作废: voided by an appeal (申诉成立)
    rectified: int = 0  # not void, at 已整改 or a later step
    in_time: int = 0  # 按期办结: closed by the close deadline
    overdue: int = 0  # open and past the deadline of the step it is working towards, now
    appeals: int = 0  # cases appealed (申诉)
    appeals_void: int = 0  # 申诉成立（差评作废）: the appeal succeeded
    appeals_upheld: int = 0  # 申诉驳回（差评维持）: the appeal failed, the 差评 stands
    appeals_pending: int = 0  # 申诉中: not reviewed yet

    @property
    def valid(self) -> int:
        return self.total - self.void

    @property
    def rectified_rate(self) -> float | None:
        return self.rectified / self.valid if self.valid else None

    @property
    def in_time_rate(self) -> float | None:
        return self.in_time / self.valid if self.valid else None

    def add(self, case: CaseRecord, log: list[CaseLogEntry], now: datetime) -> None:
        state = CaseState(case.state)
        self.total += 1
        if state is CaseState.VOID:
            self.void += 1
        elif state in RECTIFIED_OR_LATER:
            self.rectified += 1
        self.in_time += closed_in_time(case) is True
        self.overdue += due(case, now).overdue
        reached = {entry.to_state for entry in log} | {case.state}
        if CaseState.APPEALED in reached:
            self.appeals += 1
            if CaseState.VOID in reached:
                self.appeals_void += 1
            elif CaseState.UPHELD in reached:
                self.appeals_upheld += 1
            else:
                self.appeals_pending += 1


@dataclass
class Ratings:
    month: Month
    site: str | None
    windows: dict[tuple[str, str], Tally]
    staff: dict[tuple[str, str | None], Tally]
    bad: list[Event]
    per_day: dict[date, Tally]
    names: dict[tuple[str, str], str]
    # The 通报: cases of the month's 差评, per window and per staff member, as of ``now``.
    window_cases: dict[tuple[str, str], CaseTally] = field(default_factory=dict)
    staff_cases: dict[tuple[str, str | None], CaseTally] = field(default_factory=dict)
    now: datetime | None = None
    chain: ChainSummary = field(default_factory=ChainSummary)  # the chain checks' view

    def ranking(self) -> list[tuple[int, tuple[str, str], Tally]]:
        """Windows with ratings by 满意率, best first (equal rates share a rank: 1, 2, 2, 4);
        among equals the one with more ratings first."""
        rated = [(key, t) for key, t in self.windows.items() if t.total]
        rated.sort(key=lambda kv: (-(kv[1].rate or 0.0), -kv[1].total, kv[0]))
        out = []
        for i, (key, t) in enumerate(rated):
            same = out and out[-1][2].rate == t.rate
            out.append((out[-1][0] if same else i + 1, key, t))
        return out


def compute(
    store: Store, month: Month, site: str | None = None, now: datetime | None = None
) -> Ratings:
    events = month_events(store, month, _TYPES, site)
    windows: dict[tuple[str, str], Tally] = defaultdict(Tally)
    staff: dict[tuple[str, str | None], Tally] = defaultdict(Tally)
    per_day: dict[date, Tally] = defaultdict(Tally)
    bad: list[Event] = []
    paused_since: dict[tuple[str, str, str], datetime] = {}
    for e in events:
        window = e.data.get("window")
        if not isinstance(window, str):
            continue
        key = (e.site, window)
        if e.type == EventType.RATING:
            level = e.data.get("level")
            if not isinstance(level, int) or level not in LEVEL_LABELS:
                continue
            sid = e.data.get("staff_id")
            for tally in (windows[key], staff[(e.site, sid)], per_day[e.at.date()]):
                tally.levels[level] += 1
                tally.answered += e.data.get("invite_id") is not None
            if level in POOR_LEVELS:
                bad.append(e)
        elif e.type == EventType.RATING_EXPIRED:
            windows[key].expired += 1
            staff[(e.site, e.data.get("staff_id"))].expired += 1
        else:
            # A pause ends at resume, logout or a new login on the same window's pad.
            pad = (e.site, e.device, window)
            since = paused_since.pop(pad, None)
            if since is not None:
                windows[key].paused += e.at - since
            if e.type == EventType.PAUSED:
                paused_since[pad] = e.at
            else:
                windows.setdefault(key, Tally())
    # Still paused: count up to the end of the month, or now in the current month.
    until = min(month.end(), (now or datetime.now(month.tz)).astimezone(month.tz))
    for (site_id, _device, window), since in paused_since.items():
        windows[(site_id, window)].paused += max(until - since, timedelta(0))
    names = {key: p.name for key, p in roster_people(store, site).items()}
    at = (now or datetime.now(month.tz)).astimezone(month.tz)
    # The month's 差评 are its ratings at levels 1-2; their cases are looked up by rating, so
    # the 通报 counts exactly the 差评 of this report, filed by the same rule.
    cases = store.cases_for_ratings(e.id for e in bad)
    logs = store.case_log(c.id for c in cases.values())
    window_cases: dict[tuple[str, str], CaseTally] = defaultdict(CaseTally)
    staff_cases: dict[tuple[str, str | None], CaseTally] = defaultdict(CaseTally)
    for e in bad:
        case = cases.get(e.id)
        if case is None:  # stored before cases existed: no case to report on
            continue
        for tally in (
            window_cases[(e.site, e.data["window"])],
            staff_cases[(e.site, e.data.get("staff_id"))],
        ):
            tally.add(case, logs.get(case.id, []), at)
    return Ratings(
        month,
        site,
        dict(windows),
        dict(staff),
        bad,
        dict(per_day),
        names,
        dict(window_cases),
        dict(staff_cases),
        at,
        summarize(events),
    )


def _rate(tally: Tally) -> Rate | str:
    rate = tally.rate
    return "" if rate is None else Rate(rate)


def _when(e: Event) -> datetime | str:
    # A real date-time (hall time) for xlsx; one filed by received_at stays text with its "†".
    if e.suspect or e.chain:
        marks = ("†" if e.suspect else "") + (MARK if e.chain else "")
        return e.at.strftime("%Y-%m-%d %H:%M") + marks
    return e.at.replace(tzinfo=None, second=0, microsecond=0)


def _minutes(delta: timedelta) -> int:
    return round(delta.total_seconds() / 60)


def _fraction(value: float | None) -> Rate | str:
    return "" if value is None else Rate(value)


APPEAL_VOID = STATE_LABELS[CaseState.VOID]  # 申诉成立（差评作废）
APPEAL_UPHELD = STATE_LABELS[CaseState.UPHELD]  # 申诉驳回（差评维持）
NOTICE_HEADERS = [
    "差评",
    "作废",
    "有效差评",
    "已整改",
    "整改率",
    "按期办结",
    "按期办结率",
    "当前超期",
    "申诉",
    APPEAL_VOID,
    APPEAL_UPHELD,
    "申诉复核中",
]
NOTICE_NOTES = [
    "差评处置通报: 差评 = 本月评价中不满意、非常不满意的件数; 作废 = 经申诉复核作废的差评; "
    "有效差评 = 差评 - 作废",
    "整改率 = 已整改 (已整改、已反馈、已回访、已办结) / 有效差评; "
    "按期办结率 = 在办结时限内办结 / 有效差评",
    f"申诉: 提出申诉的差评; {APPEAL_VOID} = 申诉成立, 差评不计入考核; "
    f"{APPEAL_UPHELD} = 申诉不成立, 差评照常整改",
]


def _notice_cells(t: CaseTally) -> list[object]:
    return [
        t.total,
        t.void,
        t.valid,
        t.rectified,
        _fraction(t.rectified_rate),
        t.in_time,
        _fraction(t.in_time_rate),
        t.overdue,
        t.appeals,
        t.appeals_void,
        t.appeals_upheld,
        t.appeals_pending,
    ]


def notice_sheets(r: Ratings) -> list[Sheet]:
    """差评处置通报 per window and per staff member, and the windows ranked by 满意率."""
    win = Sheet("差评处置通报（窗口）", ["站点", "窗口", *NOTICE_HEADERS], [])
    keys = sorted(key for key, t in r.windows.items() if t.total)
    for i, key in enumerate(keys):
        t = r.window_cases.get(key, CaseTally())
        win.rows.append([*key, *_notice_cells(t)])
        if t.overdue:
            win.mark(i, "当前超期", BAD)
    people = Sheet("差评处置通报（人员）", ["站点", "工号", "姓名", *NOTICE_HEADERS], [])
    staff = sorted((k for k, t in r.staff.items() if t.total), key=lambda k: (k[0], k[1] or ""))
    for i, (site, sid) in enumerate(staff):
        t = r.staff_cases.get((site, sid), CaseTally())
        name = r.names.get((site, sid), "") if sid else "(未登录)"
        people.rows.append([site, sid or "", name, *_notice_cells(t)])
        if t.overdue:
            people.mark(i, "当前超期", BAD)
    rank = Sheet("窗口满意率排名", ["排名", "站点", "窗口", "合计", "满意率", "差评"], [])
    for place, (site, window), t in r.ranking():
        nbad = sum(t.levels[lv] for lv in POOR_LEVELS)
        rank.rows.append([place, site, window, t.total, _rate(t), nbad])
    return [win, people, rank]


def to_report(r: Ratings) -> Report:
    from central.reports import charts

    counts = ["合计", *(LEVEL_LABELS[lv] for lv in LEVELS), "满意率"]
    win = Sheet(
        "窗口评价",
        ["站点", "窗口", *counts, "差评", "邀请", "已评", "超时", "暂停服务(分钟)"],
        [],
    )
    for i, ((site, window), t) in enumerate(sorted(r.windows.items())):
        nbad = sum(t.levels[lv] for lv in POOR_LEVELS)
        win.rows.append(
            [
                site,
                window,
                t.total,
                *(t.levels[lv] for lv in LEVELS),
                _rate(t),
                nbad,
                t.sent,
                t.answered,
                t.expired,
                _minutes(t.paused),
            ]
        )
        if nbad:
            win.mark(i, "差评", BAD)
    per_staff = Sheet("人员评价", ["站点", "工号", "姓名", *counts, "差评", "超时"], [])
    ordered = sorted(r.staff.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))
    for i, ((site, sid), t) in enumerate(ordered):
        nbad = sum(t.levels[lv] for lv in POOR_LEVELS)
        name = r.names.get((site, sid), "") if sid else "(未登录)"
        per_staff.rows.append(
            [
                site,
                sid or "",
                name,
                t.total,
                *(t.levels[lv] for lv in LEVELS),
                _rate(t),
                nbad,
                t.expired,
            ]
        )
        if nbad:
            per_staff.mark(i, "差评", BAD)
    bad = Sheet("差评明细", ["时间", "站点", "窗口", "工号", "姓名", "评价", "原因"], [])
    for e in r.bad:
        sid = e.data.get("staff_id")
        bad.rows.append(
            [
                _when(e),
                e.site,
                e.data["window"],
                sid or "",
                r.names.get((e.site, sid), "") if sid else "(未登录)",
                LEVEL_LABELS[e.data["level"]],
                "、".join(x for x in e.data.get("reasons") or [] if isinstance(x, str)),
            ]
        )
    trend = Sheet("每日满意率", ["日期", "合计", "满意率"], [])
    for day in sorted(r.per_day):
        t = r.per_day[day]
        trend.rows.append([day, t.total, _rate(t)])
    where = f" {r.site}" if r.site else ""
    as_of = ""
    if r.now is not None:
        as_of = f"当前超期: 截至 {r.now:%Y-%m-%d %H:%M}, 未办结且已过当前环节时限的差评"
    sheets = [win, per_staff, bad, trend, *notice_sheets(r)]
    notes = [
        "满意率 = (非常满意 + 满意 + 基本满意) / 合计; 差评 = 不满意 + 非常不满意",
        f"邀请 = 已评 + 超时; {SUSPECT_NOTE}",
        *NOTICE_NOTES,
        *([as_of] if as_of else []),
        "窗口满意率排名: 按满意率从高到低, 满意率相同的名次相同, 评价多者在前",
    ]
    add_marks(sheets, notes, r.chain, r.names)
    title = f"{r.month.label}{where} 好差评月报"
    return Report(title, sheets, notes=notes, charts=charts.ratings_charts(r))
