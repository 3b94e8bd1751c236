"""What a report is, independent of its format: titled tables, cell marks and charts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Cell marks, shown by every format that can (xlsx fill, HTML class, "*" in the table).
LATE = "late"  # late or early: 迟到/早退
MISSING = "missing"  # 缺卡
LEAVE = "leave"  # excused by 请假/公出/补卡
BAD = "bad"  # 差评 or a chief below the monthly minimum

# An event filed by `received_at` is marked "†" (docs/sync.md); every report notes why.
SUSPECT_NOTE = "† 设备时钟不可信, 按中心收到时间记入"
WEEKDAYS = "一二三四五六日"  # date.weekday() 0-6: 周一 … 周日


@dataclass
class Sheet:
    name: str  # sheet name (xlsx) and section title; Chinese, ≤ 31 characters
    headers: list[str]
    rows: list[list[Any]]
    marks: dict[tuple[int, int], str] = field(default_factory=dict)  # (row, column) → mark

    def mark(self, row: int, column: str, kind: str) -> None:
        self.marks[(row, self.headers.index(column))] = kind


@dataclass
class Report:
    title: str
    sheets: list[Sheet]
    notes: list[str] = field(default_factory=list)
    # HTML only: (title, ECharts option) pairs, built by central.reports.charts.
    charts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
