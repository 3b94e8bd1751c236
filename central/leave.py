"""Leave and corrections from the office (请假, 公出, 补卡 approved on paper; docs/sync.md).

A file (CSV or xlsx, row 1 the headings) has one row per approval:

| heading | also accepted | value |
|---|---|---|
| 工号 | staff_id | the staff id of the roster |
| 类型 | kind | 请假, 公出 or 补卡 |
| 开始 | from | a date (2026-11-03 or 2026/11/03), optionally 上午/下午 (am/pm) |
| 结束 | to | the same; a bare date is the whole day |
| 审批人 | approver | who approved it |
| 备注 | note | optional |

``2026-11-03 下午`` to ``2026-11-03 下午`` is one afternoon; ``2026-11-03`` to ``2026-11-04``
two whole days. Every row is checked before anything is stored; one bad cell rejects the whole
file, with every problem listed by line and column, so the office fixes the file and imports
it again (rows already stored are skipped, never doubled).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from pathlib import Path
from typing import Any

from central.tables import Row, TableError, read_table
from contract import is_staff_id

KINDS = ("请假", "公出", "补卡")
COLUMNS = {
    "staff_id": ("工号", "staff_id", "staff id", "id"),
    "kind": ("类型", "kind", "type"),
    "from": ("开始", "from", "starts", "开始时间", "开始日期"),
    "to": ("结束", "to", "ends", "结束时间", "结束日期"),
    "approver": ("审批人", "approver"),
    "note": ("备注", "note"),
}
REQUIRED = ("staff_id", "kind", "from", "to", "approver")
_DATE = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:\s*(上午|下午|am|pm|AM|PM))?$")
HALVES = {"上午": "am", "下午": "pm", "am": "am", "pm": "pm"}
MAX_NOTE = 200


class LeaveError(ValueError):
    """The file cannot be imported; ``problems`` lists each bad cell."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def _moment(value: Any, default_half: str) -> tuple[date, str]:
    if isinstance(value, datetime):  # an xlsx date cell
        return value.date(), default_half
    if isinstance(value, date):
        return value, default_half
    text = str(value).strip()
    m = _DATE.match(text)
    if not m:
        raise ValueError(f"expected a date such as 2026-11-03 or '2026-11-03 下午', got {text!r}")
    try:
        day = date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError as exc:
        raise ValueError(f"expected a real date, got {text!r} ({exc})") from None
    half = m.group(4)
    return day, HALVES[half.lower() if half in ("AM", "PM") else half] if half else default_half


def _row(row: Row, path: Path, where: dict[str, str], problems: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"source": f"{path.name}:{row.line}"}

    def bad(key: str, message: str) -> None:
        problems.append(f"{path}: line {row.line}, column {where[key]}: {message}")

    cells = row.cells
    sid = str(cells["staff_id"]).strip()
    # The roster's staff-id rule (contract.is_staff_id): a leave row for an id no roster can
    # hold would never match anyone.
    if not is_staff_id(sid):
        bad("staff_id", f"expected a staff id such as S0012, got {sid!r}")
    out["staff_id"] = sid
    kind = str(cells["kind"]).strip()
    if kind not in KINDS:
        bad("kind", f"expected one of {', '.join(KINDS)}, got {kind!r}")
    out["kind"] = kind
    span_ok = True
    for key, half, name in (("from", "am", "starts"), ("to", "pm", "ends")):
        try:
            out[name], out[f"{name}_half"] = _moment(cells[key], half)
        except ValueError as exc:
            bad(key, str(exc))
            span_ok = False
    if span_ok and (out["starts"], out["starts_half"]) > (out["ends"], out["ends_half"]):
        bad("to", f"ends before it starts ({cells['from']} .. {cells['to']})")
    approver = str(cells["approver"]).strip()
    if not approver:
        bad("approver", "expected the approver's name, got an empty cell")
    out["approver"] = approver
    note = str(cells.get("note", "")).strip()
    if len(note) > MAX_NOTE:
        bad("note", f"expected at most {MAX_NOTE} characters, got {len(note)}")
    out["note"] = note
    return out


def parse_leave_file(path: Path) -> list[dict[str, Any]]:
    """Validated rows for :meth:`central.store.Store.add_leaves`; raises :class:`LeaveError`."""
    try:
        rows, where = read_table(path, COLUMNS, REQUIRED)
    except TableError as exc:
        raise LeaveError([str(exc)]) from None
    problems: list[str] = []
    out = [_row(row, path, where, problems) for row in rows]
    if problems:
        raise LeaveError(problems)
    if not out:
        raise LeaveError([f"{path}: no rows below the headings; nothing to import"])
    return out
