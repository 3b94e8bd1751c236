"""The monthly 好差评 report (the regulation's 第三十五条: ratings feed staff assessment;
docs/attendance.md levels 5 非常满意 … 1 非常不满意).

Per site and window and per staff member (the one logged in at the window when the rating
was made, as the pad event records it): counts per level, the satisfaction rate, every 差评
(levels 1–2) with reasons, window, staff and time for follow-up, invitations sent, answered and
expired, and the time each window was paused (暂停服务). Windows are keyed by (site, label):
two sites' "A03" are different windows. Definitions: docs/reports.md.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from central.reports.model import BAD, SUSPECT_NOTE, Rate, Report, Sheet
from central.reports.month import Month
from central.reports.source import Event, month_events, roster_people
from central.store import Store
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


@dataclass
class Ratings:
    month: Month
    site: str | None
    windows: dict[tuple[str, str], Tally]
    staff: dict[tuple[str, str | None], Tally]
    bad: list[Event]
    per_day: dict[date, Tally]
    names: dict[tuple[str, str], str]


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
    return Ratings(month, site, dict(windows), dict(staff), bad, dict(per_day), names)


def _rate(tally: Tally) -> Rate | str:
    rate = tally.rate
    return "" if rate is None else Rate(rate)


def _when(e: Event) -> datetime | str:
    # A real date-time (hall time) for xlsx; one filed by received_at stays text with its "†".
    if e.suspect:
        return e.at.strftime("%Y-%m-%d %H:%M") + "†"
    return e.at.replace(tzinfo=None, second=0, microsecond=0)


def _minutes(delta: timedelta) -> int:
    return round(delta.total_seconds() / 60)


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
    return Report(
        f"{r.month.label}{where} 好差评月报",
        [win, per_staff, bad, trend],
        notes=[
            "满意率 = (非常满意 + 满意 + 基本满意) / 合计; 差评 = 不满意 + 非常不满意",
            f"邀请 = 已评 + 超时; {SUSPECT_NOTE}",
        ],
        charts=charts.ratings_charts(r),
    )
