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
| 时段 | slot | 补卡 only: 上午上班, 上午下班, 下午上班 or 下午下班 |

``2026-11-03 下午`` to ``2026-11-03 下午`` is one afternoon; ``2026-11-03`` to ``2026-11-04``
two whole days. 请假/公出 may instead name times of day in both cells (``2026-11-03 15:00`` to
``2026-11-03 17:30``): the exact span is excused (docs/post.md "Leave by the hour"); its half days
are those of its ends (before 12:00 a morning). A 补卡 corrects one forgotten punch: its 时段
names the slot, 开始 the day and optionally the punch's time (``2026-11-03 08:31``), 结束 is
empty or the same day.
Staff ids must be in a stored roster unless the caller allows unknown ones: a typo'd id
would otherwise excuse nobody, silently.

Every row is checked before anything is stored; one bad cell rejects the whole file, with
every problem listed by line and column, so the office fixes the file and imports it again
(rows already stored are skipped, never doubled).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from pathlib import Path
from typing import Any

from central.tables import Row, TableError, read_table
from contract import SLOT_LABELS, is_staff_id

KINDS = ("请假", "公出", "补卡")
HALF_KINDS = ("请假", "公出")  # counted in half days; a 补卡 names one slot
SLOTS = {label: slot for slot, label in SLOT_LABELS.items() if slot != "extra"}
SLOT_NAMES = {**SLOTS, **{slot: slot for slot in SLOTS.values()}}
HALF_OF_SLOT = {
    "morning_in": "am",
    "morning_out": "am",
    "afternoon_in": "pm",
    "afternoon_out": "pm",
}
CORRECTION_FORM = (
    "a 补卡 corrects one punch: name its slot in column 时段 (上午上班, 上午下班, 下午上班 or "
    "下午下班) and its day, optionally with the time, in 开始 (2026-11-03 or 2026-11-03 08:31)"
)
COLUMNS = {
    "staff_id": ("工号", "staff_id", "staff id", "id"),
    "kind": ("类型", "kind", "type"),
    "from": ("开始", "from", "starts", "开始时间", "开始日期"),
    "to": ("结束", "to", "ends", "结束时间", "结束日期"),
    "approver": ("审批人", "approver"),
    "note": ("备注", "note"),
    "slot": ("时段", "slot"),
}
REQUIRED = ("staff_id", "kind", "from", "to", "approver")
_DATE = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:\s*(上午|下午|am|pm|AM|PM))?$")
HALVES = {"上午": "am", "下午": "pm", "am": "am", "pm": "pm"}
_TIMED = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})\s+(\d{1,2}):(\d{2})$")
NOON = "12:00"  # a timed leave's half days: a time before noon is the morning's
_PUNCH = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:\s+(\d{1,2}):(\d{2})(?::\d{2})?)?$")
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


def _punch(value: Any) -> tuple[date, str]:
    """A 补卡's 开始: the day and the punch time (``HH:MM``, or '' when not written)."""
    if isinstance(value, datetime):  # an xlsx date or date-time cell
        moment = value.strftime("%H:%M")
        return value.date(), "" if moment == "00:00" else moment
    if isinstance(value, date):
        return value, ""
    text = str(value).strip()
    m = _PUNCH.match(text)
    if not m:
        raise ValueError(f"expected a day such as 2026-11-03 or 2026-11-03 08:31, got {text!r}")
    try:
        day = date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError as exc:
        raise ValueError(f"expected a real date, got {text!r} ({exc})") from None
    if m.group(4) is None:
        return day, ""
    hour, minute = int(m.group(4)), int(m.group(5))
    if hour > 23 or minute > 59:
        raise ValueError(f"expected a time from 00:00 to 23:59, got {text!r}")
    return day, f"{hour:02d}:{minute:02d}"


def _correction(row: Row, out: dict[str, Any], bad: Any, where: dict[str, str]) -> None:
    """A 补卡 row: one slot of one day (and the punch time written on the approval)."""
    cells = row.cells
    label = str(cells.get("slot", "")).strip()
    if "slot" not in where:
        bad("kind", f"{CORRECTION_FORM}; this file has no 时段 column")
    elif label not in SLOT_NAMES:
        shown = f"got {label!r}" if label else "got an empty cell"
        bad("slot", f"{CORRECTION_FORM}; {shown}")
    slot = SLOT_NAMES.get(label, "")
    try:
        day, clock = _punch(cells["from"])
    except ValueError as exc:
        bad("from", f"{exc}: a 补卡 names one punch, not a half day")
        return
    end = cells["to"]
    if not (isinstance(end, str) and not end.strip()):
        try:
            end_day, _half = _moment(end, "pm")
        except ValueError:
            end_day = None
        if end_day != day:
            bad("to", f"expected an empty cell or the same day as 开始 ({day}), got {end!r}")
    half = HALF_OF_SLOT.get(slot, "am")
    out.update(starts=day, starts_half=half, ends=day, ends_half=half, slot=slot, slot_time=clock)


def _row(
    row: Row,
    path: Path,
    where: dict[str, str],
    problems: list[str],
    known_ids: set[str] | None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "source": f"{path.name}:{row.line}",
        "slot": "",
        "slot_time": "",
        "starts_time": "",
        "ends_time": "",
    }

    def bad(key: str, message: str) -> None:
        problems.append(f"{path}: line {row.line}, column {where[key]}: {message}")

    cells = row.cells
    sid = str(cells["staff_id"]).strip()
    # The roster's staff-id rule (contract.is_staff_id): a leave row for an id no roster can
    # hold would never match anyone.
    if not is_staff_id(sid):
        bad("staff_id", f"expected a staff id such as S0012, got {sid!r}")
    elif known_ids is not None and sid not in known_ids:
        bad(
            "staff_id",
            f"staff id {sid!r} is in no stored roster (a typo excuses nobody); correct it, "
            "publish the roster first, or import with --allow-unknown",
        )
    out["staff_id"] = sid
    kind = str(cells["kind"]).strip()
    if kind not in KINDS:
        bad("kind", f"expected one of {', '.join(KINDS)}, got {kind!r}")
    out["kind"] = kind
    if kind == "补卡":
        _correction(row, out, bad, where)
    else:
        if str(cells.get("slot", "")).strip():
            bad(
                "slot",
                f"only a 补卡 names a slot; {kind or 'leave'} covers half days "
                "(开始 2026-11-03 下午, 结束 2026-11-03 下午): leave this cell empty",
            )
        _span(cells, out, bad)
    approver = str(cells["approver"]).strip()
    if not approver:
        bad("approver", "expected the approver's name, got an empty cell")
    out["approver"] = approver
    note = str(cells.get("note", "")).strip()
    if len(note) > MAX_NOTE:
        bad("note", f"expected at most {MAX_NOTE} characters, got {len(note)}")
    out["note"] = note
    return out


def _timed(value: Any) -> tuple[date, str] | None:
    """A cell with a date and a time of day (``2026-11-03 15:00``), or None when it has none."""
    if isinstance(value, datetime):  # an xlsx date-time cell; midnight is a bare date
        moment = value.strftime("%H:%M")
        return None if moment == "00:00" else (value.date(), moment)
    m = _TIMED.match(str(value).strip()) if isinstance(value, str) else None
    if not m:
        return None
    hour, minute = int(m.group(4)), int(m.group(5))
    if hour > 24 or minute > 59 or (hour == 24 and minute):
        raise ValueError(f"expected a time from 00:00 to 24:00, got {value!r}")
    try:
        day = date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError as exc:
        raise ValueError(f"expected a real date, got {value!r} ({exc})") from None
    return day, f"{hour:02d}:{minute:02d}"


def _span(cells: dict[str, Any], out: dict[str, Any], bad: Any) -> None:
    """请假/公出: from a half day to a half day, or from a time to a time."""
    out["starts_time"] = out["ends_time"] = ""
    try:
        begin, end = _timed(cells["from"]), _timed(cells["to"])
    except ValueError as exc:
        bad("from", str(exc))
        return
    if (begin is None) != (end is None):
        bad(
            "to" if begin else "from",
            "a leave by the hour names a time in both 开始 and 结束 (2026-11-03 15:00 .. "
            f"2026-11-03 17:30), got {cells['from']!r} .. {cells['to']!r}",
        )
        return
    if begin is not None and end is not None:
        out["starts"], out["starts_time"] = begin
        out["ends"], out["ends_time"] = end
        out["starts_half"] = "am" if begin[1] < NOON else "pm"
        out["ends_half"] = "am" if end[1] <= NOON else "pm"
        if begin >= end:
            bad("to", f"ends before it starts ({cells['from']} .. {cells['to']})")
        return
    span_ok = True
    for key, half, name in (("from", "am", "starts"), ("to", "pm", "ends")):
        try:
            out[name], out[f"{name}_half"] = _moment(cells[key], half)
        except ValueError as exc:
            bad(key, str(exc))
            span_ok = False
    if span_ok and (out["starts"], out["starts_half"]) > (out["ends"], out["ends_half"]):
        bad("to", f"ends before it starts ({cells['from']} .. {cells['to']})")


def parse_leave_file(path: Path, known_ids: set[str] | None = None) -> list[dict[str, Any]]:
    """Validated rows for :meth:`central.store.Store.add_leaves`; raises :class:`LeaveError`.

    ``known_ids``: the staff ids of the stored rosters; an id not among them is a row error.
    None accepts any well-formed id (``leave import --allow-unknown``).
    """
    try:
        rows, where = read_table(path, COLUMNS, REQUIRED)
    except TableError as exc:
        raise LeaveError([str(exc)]) from None
    problems: list[str] = []
    out = [_row(row, path, where, problems, known_ids) for row in rows]
    if problems:
        raise LeaveError(problems)
    if not out:
        raise LeaveError([f"{path}: no rows below the headings; nothing to import"])
    return out
