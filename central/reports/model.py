"""What a report is, independent of its format: titled tables, cell marks and charts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

# Cell marks, shown by every format that can (xlsx fill, HTML class, "*" in the table).
LATE = "late"  # late or early: 迟到/早退
MISSING = "missing"  # 缺卡
LEAVE = "leave"  # excused by 请假/公出/补卡
BAD = "bad"  # 差评 or a chief below the monthly minimum
# Not yet judged (today before it ends): neutral in every format, never a verdict. Set only by
# the attendance model from ``Day.judged`` (central/reports/attendance.py), the one place that
# decides which days are over.
PENDING = "pending"

# An event filed by `received_at` is marked "†" (docs/sync.md); every report notes why.
SUSPECT_NOTE = (
    "† 设备时钟不可信 (未与时间服务器同步, 或与中心收到时间相差超过一天), 按中心收到时间记入"
)
WEEKDAYS = "一二三四五六日"  # date.weekday() 0-6: 周一 … 周日


class Rate(float):
    """A fraction (0.83) shown as a percentage (83.3%); xlsx stores the number, formatted %."""

    def __str__(self) -> str:
        return f"{100 * self:.1f}%"


# Text a spreadsheet would run as a formula ("CSV injection"): cells hold text from outside
# (a 办件编号 from a window's case system, a name from the office's roster file). CSV gets a
# leading apostrophe, as OWASP advises; xlsx keeps the text and types the cell as text
# (:func:`as_text_cells`).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def inert(value: Any) -> Any:
    """``value``, with a leading apostrophe when it is text a spreadsheet would evaluate."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def as_text_cells(ws: Any, row: int, values: list[Any]) -> None:
    """Keep openpyxl from having turned text that starts with '=' (the only text it takes
    for a formula) into one: nothing this project writes is a formula, so such cells of
    ``row`` just appended are typed as text. Looks only at the values, not every cell."""
    for column, value in enumerate(values, start=1):
        if isinstance(value, str) and value.startswith("="):
            ws.cell(row=row, column=column).data_type = "s"


def cell_text(value: Any) -> str:
    """How every text format (table, CSV, HTML) writes a cell; xlsx keeps the typed value."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


@dataclass
class Sheet:
    name: str  # sheet name (xlsx) and section title; Chinese, ≤ 31 characters
    headers: list[str]
    rows: list[list[Any]]
    marks: dict[tuple[int, int], str] = field(default_factory=dict)  # (row, column) → mark

    def mark(self, row: int, column: str, kind: str) -> None:
        self.marks[(row, self.headers.index(column))] = kind


@dataclass(frozen=True)
class TimelineBar:
    """One stretch of a day at the post (docs/post.md): HH:MM to HH:MM, its minutes, its
    presence (serving, paused, away, excused, unknown) and its label."""

    start: str
    end: str
    minutes: int
    kind: str
    label: str


# (person heading, [(day heading, bars)]): the HTML report's per-person day timelines.
Timeline = tuple[str, list[tuple[str, list[TimelineBar]]]]


@dataclass
class Report:
    title: str
    sheets: list[Sheet]
    notes: list[str] = field(default_factory=list)
    # HTML only: (title, ECharts option) pairs, built by central.reports.charts.
    charts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    # HTML only: per person, a <details> per day with its time at the post, opened by a click.
    timelines: list[Timeline] = field(default_factory=list)
    # The month's seal as QR text (central/seal/report.py); '' when not sealed.
    seal_qr: str = ""
