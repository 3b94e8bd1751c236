"""ECharts options for the HTML report (https://echarts.apache.org/en/option.html).

Plain data in, plain dicts out: the HTML writer embeds them as JSON next to the vendored
library, so the file draws its charts offline.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from central.reports.model import WEEKDAYS
from contract import LEVEL_LABELS

if TYPE_CHECKING:
    from central.reports.attendance import Attendance
    from central.reports.ratings import Ratings

# Heat map categories: what a person's working day looked like.
DAY_STATES = ["正常", "迟到/早退", "缺卡", "请假/公出/补卡", "休息日打卡", "未判定 (当日未结束)"]
DAY_COLOURS = ["#91cc75", "#fac858", "#ee6666", "#73c0de", "#9a60b4", "#e0e0e0"]
NOT_JUDGED = 5  # Day.judged is False: neutral grey, never 正常 (central/reports/attendance.py)
# Ratings: greens for 满意, amber for 基本满意, reds for the 差评 levels.
LEVEL_COLOURS = {5: "#3ba272", 4: "#91cc75", 3: "#fac858", 2: "#fc8452", 1: "#ee6666"}


def _day_state(day: Any) -> int:
    if not day.judged:
        return NOT_JUDGED
    if not day.plan.working:
        return 4
    states = [c for c in day.cells if not c.excuse]
    if any(c.status == "missing" for c in states):
        return 2
    if any(c.status in ("late", "early_leave") for c in states):
        return 1
    if any(c.excuse for c in day.cells):
        return 3
    return 0


def attendance_charts(att: Attendance) -> list[tuple[str, dict[str, Any]]]:
    days = [d.isoformat()[5:] for d in att.plans]
    people = [f"{pm.person.name} {pm.person.staff_id}" for pm in att.people]
    cells = []
    late_by_weekday: Counter[int] = Counter()
    for y, pm in enumerate(att.people):
        for d in pm.days:
            cells.append([(d.plan.day - att.month.first).days, y, _day_state(d)])
            for c in d.cells:
                if c.status == "late" and not c.excuse:
                    late_by_weekday[d.plan.day.weekday()] += 1
    heat = {
        "tooltip": {"position": "top"},
        "grid": {"left": 160, "right": 20, "top": 10, "bottom": 90},
        "xAxis": {"type": "category", "data": days, "splitArea": {"show": True}},
        "yAxis": {"type": "category", "data": people, "inverse": True},
        "visualMap": {
            "type": "piecewise",
            "categories": list(range(len(DAY_STATES))),
            "pieces": [
                {"value": i, "label": s, "color": c}
                for i, (s, c) in enumerate(zip(DAY_STATES, DAY_COLOURS, strict=True))
            ],
            "orient": "horizontal",
            "left": "center",
            "bottom": 0,
        },
        "series": [{"type": "heatmap", "data": cells, "animation": False}],
    }
    weekday = {
        "tooltip": {},
        "grid": {"left": 40, "right": 20, "top": 20, "bottom": 30},
        "xAxis": {"type": "category", "data": [f"周{w}" for w in WEEKDAYS]},
        "yAxis": {"type": "value", "minInterval": 1},
        "series": [
            {
                "type": "bar",
                "data": [late_by_weekday[i] for i in range(7)],
                "animation": False,
            }
        ],
    }
    return [("出勤热力图 (人员 × 日期)", heat), ("按星期统计迟到次数", weekday)]


def ratings_charts(r: Ratings) -> list[tuple[str, dict[str, Any]]]:
    from central.reports.ratings import LEVELS

    keys = sorted(r.windows)
    labels = [f"{site}/{window}" for site, window in keys]
    per_window = {
        "tooltip": {"trigger": "axis"},
        "legend": {"top": 0},
        "grid": {"left": 40, "right": 20, "top": 40, "bottom": 60},
        "xAxis": {"type": "category", "data": labels, "axisLabel": {"rotate": 45}},
        "yAxis": {"type": "value", "minInterval": 1},
        "series": [
            {
                "name": LEVEL_LABELS[lv],
                "type": "bar",
                "stack": "level",
                "itemStyle": {"color": LEVEL_COLOURS[lv]},
                "data": [r.windows[k].levels[lv] for k in keys],
                "animation": False,
            }
            for lv in LEVELS
        ],
    }
    days = sorted(r.per_day)
    trend = {
        "tooltip": {"trigger": "axis"},
        "grid": {"left": 50, "right": 20, "top": 20, "bottom": 30},
        "xAxis": {"type": "category", "data": [d.isoformat()[5:] for d in days]},
        "yAxis": {"type": "value", "min": 0, "max": 100, "axisLabel": {"formatter": "{value}%"}},
        "series": [
            {
                "type": "line",
                "data": [
                    None if r.per_day[d].rate is None else round(100 * r.per_day[d].rate, 1)
                    for d in days
                ],
                "animation": False,
            }
        ],
    }
    return [("各窗口评价分布", per_window), ("每日满意率", trend), *notice_charts(r)]


# 差评处置通报: one colour per count, the same in every chart.
NOTICE_SERIES = (
    ("有效差评", "valid", "#fc8452"),
    ("已整改", "rectified", "#91cc75"),
    ("按期办结", "in_time", "#3ba272"),
    ("当前超期", "overdue", "#ee6666"),
    ("作废", "void", "#b0b0b0"),
)


def notice_charts(r: Ratings) -> list[tuple[str, dict[str, Any]]]:
    """The 通报 as charts: each window's 差评 and what became of them, and the windows
    ranked by 满意率 (best at the top)."""
    from central.reports.ratings import CaseTally

    keys = sorted(key for key, t in r.windows.items() if t.total)
    tallies = [r.window_cases.get(k, CaseTally()) for k in keys]
    cases = {
        "tooltip": {"trigger": "axis"},
        "legend": {"top": 0},
        "grid": {"left": 40, "right": 20, "top": 40, "bottom": 60},
        "xAxis": {
            "type": "category",
            "data": [f"{site}/{window}" for site, window in keys],
            "axisLabel": {"rotate": 45},
        },
        "yAxis": {"type": "value", "minInterval": 1},
        "series": [
            {
                "name": name,
                "type": "bar",
                "itemStyle": {"color": colour},
                "data": [getattr(t, attr) for t in tallies],
                "animation": False,
            }
            for name, attr, colour in NOTICE_SERIES
        ],
    }
    ranked = r.ranking()
    ranking = {
        "tooltip": {"trigger": "axis"},
        "grid": {"left": 140, "right": 50, "top": 10, "bottom": 30},
        "xAxis": {"type": "value", "min": 0, "max": 100, "axisLabel": {"formatter": "{value}%"}},
        "yAxis": {
            "type": "category",
            "inverse": True,
            "data": [f"{place}. {site}/{window}" for place, (site, window), _ in ranked],
        },
        "series": [
            {
                "type": "bar",
                "data": [round(100 * (t.rate or 0.0), 1) for _, _, t in ranked],
                "label": {"show": True, "position": "right", "formatter": "{c}%"},
                "itemStyle": {"color": "#5470c6"},
                "animation": False,
            }
        ],
    }
    return [("各窗口差评处置 (差评处置通报)", cases), ("窗口满意率排名", ranking)]
