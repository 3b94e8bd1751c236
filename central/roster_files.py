"""Staff rosters from the office's spreadsheets (CSV or xlsx) for ``roster publish``.

Headings (row 1): 工号 (id), 姓名 (name), 角色 (role: 窗口人员/staff or 首席代表/chief),
窗口 (window, optional), 入职日期 (starts) and 离职日期 (ends) (optional dates: the person is
assessed from the first to the last, docs/reports.md). The rows become exactly the
docs/topics.md roster and pass the same validation as a JSON roster (contract.validate_roster);
a spreadsheet carries no version, so the caller supplies one (``--version``, or one above the
stored roster).
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

from central.tables import TableError, read_table
from contract import RosterError, validate_roster

COLUMNS = {
    "id": ("工号", "id", "staff_id"),
    "name": ("姓名", "name"),
    "role": ("角色", "role"),
    "window": ("窗口", "window"),
    "starts": ("入职日期", "starts", "入职"),
    "ends": ("离职日期", "ends", "离职"),
}
OPTIONAL = ("window", "starts", "ends")
ROLES = {"窗口人员": "staff", "首席代表": "chief", "staff": "staff", "chief": "chief"}
TABLE_SUFFIXES = (".csv", ".txt", ".xlsx", ".xlsm")


def is_table(path: Path) -> bool:
    return path.suffix.lower() in TABLE_SUFFIXES


def _cell_text(value: Any) -> str:
    # An xlsx date cell arrives as a datetime; the roster carries the date as YYYY-MM-DD.
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    text = str(value).strip()
    # Excel on a Chinese Windows saves dates in CSV as 2026/11/16.
    parts = text.split("/")
    if len(parts) == 3 and all(p.isdigit() for p in parts) and len(parts[0]) == 4:
        return f"{parts[0]}-{int(parts[1]):02d}-{int(parts[2]):02d}"
    return text


def parse_roster_table(path: Path, version: int) -> dict[str, Any]:
    """The roster in ``path`` as a validated docs/topics.md payload; raises RosterError."""
    try:
        rows, where = read_table(path, COLUMNS, ("id", "name", "role"))
    except TableError as exc:
        raise RosterError(str(exc)) from None
    staff = []
    problems = []
    for row in rows:
        entry: dict[str, Any] = {k: _cell_text(v) for k, v in row.cells.items()}
        role = entry.get("role", "")
        entry["role"] = ROLES.get(role, ROLES.get(role.lower(), role))
        for key in OPTIONAL:
            if not entry.get(key):
                entry.pop(key, None)
        try:
            validate_roster({"v": 1, "version": version, "staff": [entry]})
        except RosterError as exc:
            # "staff[1].role: expected …" → the cell of this row
            text = str(exc)
            key = text.split(":", 1)[0].removeprefix("staff[1]").lstrip(".")
            column = where.get(key)
            detail = text.split(": ", 1)[1] if ": " in text else text
            cell = f", column {column}" if column else ""
            problems.append(f"{path}: line {row.line}{cell}: {detail}")
            continue
        staff.append(entry)
    if problems:
        raise RosterError("; ".join(problems))
    try:
        return validate_roster({"v": 1, "version": version, "staff": staff})
    except RosterError as exc:  # e.g. an id twice: name the line
        text = str(exc)
        if text.startswith("staff[") and "]" in text:
            i = int(text[6 : text.index("]")]) - 1
            text = f"line {rows[i].line}: {text.split(': ', 1)[1]}"
        raise RosterError(f"{path}: {text}") from None
