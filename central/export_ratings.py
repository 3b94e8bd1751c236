"""``hall-central export ratings``: one row per rating of a month, for the provincial 好差评
platform (docs/export.md).

The month is the reports' month: every ``rating.submitted`` the plausible-time rule files in it
(hall timezone, :meth:`central.store.Store.events_filed_between`), with the same validity check
as the ratings report, so the export's rows are the report's 合计. Each row carries the data
items the platform takes (channel, time, level, reasons, window, staff, 事项编码, 办件编号) and,
for a 差评, its case: number, state, 整改 state and 按期办结.

Three formats: CSV (UTF-8 with BOM, Chinese headings), xlsx (one sheet, Chinese headings) and
JSON (stable English keys, with the key → heading mapping). Values are the same in all three;
an empty value is an empty cell in CSV/xlsx and ``null`` in JSON.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO

from central.cases.desk import closed_in_time, due
from central.cases.states import STATE_LABELS, CaseState
from central.reports.model import as_text_cells, inert
from central.reports.month import Month
from central.reports.source import roster_people
from central.store import Store
from central.store.records import CaseRecord
from contract import LEVEL_LABELS, EventType

FORMATS = ("csv", "xlsx", "json")

# (key, heading): the JSON key and the CSV/xlsx heading, in column order. Keys never change
# once released; a new item is a new key.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("rating_id", "评价编号"),
    ("rated_at", "评价时间"),
    ("time_suspect", "时间存疑"),
    ("channel", "评价渠道"),
    ("channel_code", "评价渠道代码"),
    ("level", "评价等级"),
    ("level_name", "评价等级名称"),
    ("satisfaction_code", "满意度代码"),
    ("reasons", "差评原因"),
    ("area_code", "行政区划代码"),
    ("site", "站点"),
    ("window", "服务窗口"),
    ("staff_id", "工作人员工号"),
    ("staff_name", "工作人员姓名"),
    ("item_code", "事项编码"),
    ("case_no", "办件编号"),
    ("case_id", "差评工单号"),
    ("case_state", "差评处置状态"),
    ("rectification", "整改状态"),
    ("closed_in_time", "按期办结"),
    ("overdue", "当前超期"),
)
KEYS = tuple(k for k, _ in COLUMNS)
HEADINGS = dict(COLUMNS)

# A rating made on a window's pad (HallPad v1: keys on the counter, not a tablet) is 评价器.
# 窗口评价 would be one recorded at the window without a pad (the window's business system, a
# paper form, a QR code shown there); the pads send none, so today every row is 评价器.
PAD = "评价器"
WINDOW = "窗口评价"
# The provincial interfaces' 评价渠道 code (pf): 4 政务大厅平板电脑, 5 政务大厅其他终端. Our pad
# is a keypad, so 5: an assumption the province confirms (docs/export.md).
CHANNEL_CODES = {PAD: "5", WINDOW: ""}

# 整改状态 of a case: not yet, done (rectified or any later step), or not needed (voided).
RECTIFIED_OR_LATER = frozenset(
    {CaseState.RECTIFIED, CaseState.ANSWERED, CaseState.FOLLOWED_UP, CaseState.CLOSED}
)
NOT_RECTIFIED = "未整改"
RECTIFIED = "已整改"
NO_RECTIFICATION = "无需整改（差评作废）"
YES, NO = "是", "否"
NOT_CLOSED = "未办结"


@dataclass(frozen=True)
class Export:
    month: Month
    site: str | None
    rows: list[dict[str, Any]]  # KEYS → value (str, int, list of str for reasons, or None)


def rectification(case: CaseRecord) -> str:
    state = CaseState(case.state)
    if state is CaseState.VOID:
        return NO_RECTIFICATION
    return RECTIFIED if state in RECTIFIED_OR_LATER else NOT_RECTIFIED


def in_time(case: CaseRecord) -> str | None:
    """按期办结: 是 / 否 once closed, 未办结 while open, nothing for a voided 差评."""
    if case.state == CaseState.VOID:
        return None
    verdict = closed_in_time(case)
    if verdict is None:
        return NOT_CLOSED
    return YES if verdict else NO


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def compute(
    store: Store, month: Month, site: str | None = None, now: datetime | None = None
) -> Export:
    now = now or datetime.now(month.tz)
    filed = store.events_filed_between((EventType.RATING,), month.start(), month.end(), site)
    ratings = [
        e
        for e in filed
        if isinstance(e.data.get("window"), str) and e.data.get("level") in LEVEL_LABELS
    ]
    cases = store.cases_for_ratings(e.id for e in ratings)
    names = {key: p.name for key, p in roster_people(store, site).items()}
    rows = []
    for e in ratings:
        data = e.data
        level = data["level"]
        staff_id = _text(data.get("staff_id"))
        channel = PAD if isinstance(data.get("pad"), int) else WINDOW
        case = cases.get(e.id)
        row: dict[str, Any] = {
            "rating_id": e.id,
            "rated_at": e.filed_at.astimezone(month.tz).isoformat(timespec="seconds"),
            "time_suspect": YES if e.suspect else NO,
            "channel": channel,
            "channel_code": CHANNEL_CODES[channel] or None,
            "level": level,
            "level_name": LEVEL_LABELS[level],
            "satisfaction_code": 6 - level,
            "reasons": [r for r in data.get("reasons") or [] if isinstance(r, str)],
            "area_code": None,
            "site": e.site,
            "window": data["window"],
            "staff_id": staff_id,
            "staff_name": names.get((e.site, staff_id)) if staff_id else None,
            "item_code": _text(data.get("item_code")),
            "case_no": _text(data.get("case_no")),
            "case_id": None,
            "case_state": None,
            "rectification": None,
            "closed_in_time": None,
            "overdue": None,
        }
        if case is not None:
            row["case_id"] = case.id
            row["case_state"] = STATE_LABELS[CaseState(case.state)]
            row["rectification"] = rectification(case)
            row["closed_in_time"] = in_time(case)
            row["overdue"] = YES if due(case, now).overdue else NO
        rows.append(row)
    return Export(month, site, rows)


REASON_SEPARATOR = "、"


def cell(key: str, value: Any) -> Any:
    """A value as a CSV/xlsx cell: reasons joined by 、, nothing as empty."""
    if value is None:
        return ""
    if key == "reasons":
        return REASON_SEPARATOR.join(value)
    return value


def csv_cell(key: str, value: Any) -> Any:
    return inert(cell(key, value))


def write_csv(export: Export, out: BinaryIO) -> None:
    """Row 1 the headings, then one row per rating; UTF-8 with a BOM so Excel reads it."""
    text = io.StringIO(newline="")
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow([h for _, h in COLUMNS])
    for row in export.rows:
        writer.writerow([csv_cell(k, row[k]) for k in KEYS])
    out.write(text.getvalue().encode("utf-8-sig"))


SHEET = "好差评数据"


def write_xlsx(export: Export, out: BinaryIO) -> None:
    """One sheet: row 1 the headings, frozen, with a filter; times stay ISO text (with the
    hall's offset, which an Excel date cannot hold)."""
    from openpyxl import Workbook
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    from central.reports.table import display_width

    book = Workbook()
    ws = book.active
    ws.title = SHEET
    ws.append([h for _, h in COLUMNS])
    for c in ws[1]:
        c.font = Font(bold=True)
    for row in export.rows:
        values = [cell(k, row[k]) for k in KEYS]
        ws.append(values)
        as_text_cells(ws, ws.max_row, values)
    ws.freeze_panes = "A2"
    ws.auto_filter.ref = f"A1:{get_column_letter(len(COLUMNS))}{len(export.rows) + 1}"
    for i, (key, heading) in enumerate(COLUMNS, start=1):
        widest = max(
            [display_width(heading) + 2]
            + [display_width(str(cell(key, row[key]))) for row in export.rows]
        )
        ws.column_dimensions[get_column_letter(i)].width = min(60, widest + 2)
    book.save(out)


def write_json(export: Export, out: BinaryIO) -> None:
    body = {
        "month": export.month.label,
        "timezone": export.month.tz.key,
        "site": export.site,
        "headers": HEADINGS,
        "rows": export.rows,
    }
    out.write(json.dumps(body, ensure_ascii=False, indent=1).encode("utf-8") + b"\n")


def write(export: Export, fmt: str, out: BinaryIO) -> None:
    writers = {"csv": write_csv, "xlsx": write_xlsx, "json": write_json}
    if fmt not in writers:
        raise ValueError(f"--format: expected one of {FORMATS}, got {fmt!r}")
    writers[fmt](export, out)
