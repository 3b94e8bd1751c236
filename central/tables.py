"""Reading the office's spreadsheets: CSV (UTF-8, with or without BOM, or GB18030 as Excel
saves it on a Chinese Windows) or xlsx (the first worksheet). Row 1 holds the headings.

Used by leave import and roster publish; both report problems as ``FILE: line N, column
NAME (X): …`` so the office can find the cell.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class TableError(ValueError):
    """The file cannot be read as a table; the message names the file and why."""


@dataclass(frozen=True)
class Row:
    line: int  # 1-based line (CSV) or row (xlsx) in the file
    cells: dict[str, Any]  # canonical column key → value ("" when empty)


def column_letter(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def _decode(raw: bytes, path: Path) -> str:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise TableError(f"{path}: expected UTF-8 or GB18030 text")


def _raw_rows(path: Path) -> list[tuple[int, list[Any]]]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise TableError(f"{path}: cannot read: {exc.strerror}") from None
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        try:
            from openpyxl import load_workbook
        except ImportError:
            raise TableError(
                f"{path}: reading xlsx needs openpyxl: pip install 'hall-agent[central]'"
            ) from None
        try:
            book = load_workbook(io.BytesIO(raw), read_only=True, data_only=True)
        except Exception as exc:
            raise TableError(f"{path}: not a readable xlsx file ({exc})") from None
        sheet = book.worksheets[0]
        return [(i, list(r)) for i, r in enumerate(sheet.iter_rows(values_only=True), start=1)]
    if path.suffix.lower() not in (".csv", ".txt"):
        raise TableError(f"{path}: expected a .csv or .xlsx file")
    reader = csv.reader(io.StringIO(_decode(raw, path), newline=""))
    rows = []
    try:
        for cells in reader:
            rows.append((reader.line_num, cells))
    except csv.Error as exc:
        raise TableError(f"{path}: line {reader.line_num}: {exc}") from None
    return rows


def read_table(
    path: Path, columns: dict[str, tuple[str, ...]], required: tuple[str, ...]
) -> tuple[list[Row], dict[str, str]]:
    """Rows keyed by canonical column; ``columns`` maps each key to its accepted headings.

    Returns the rows (blank ones dropped) and key → "NAME (X)" for error messages.
    """
    raw = _raw_rows(path)
    if not raw:
        raise TableError(f"{path}: empty file; expected a heading row")
    line, headings = raw[0]
    lookup = {alias.lower(): key for key, aliases in columns.items() for alias in aliases}
    where: dict[str, str] = {}
    index: dict[str, int] = {}
    for i, heading in enumerate(headings):
        text = "" if heading is None else str(heading).strip()
        if not text:
            continue
        key = lookup.get(text.lower())
        if key is None:
            known = ", ".join(aliases[0] for aliases in columns.values())
            raise TableError(
                f"{path}: line {line}, column {column_letter(i)}: unknown heading {text!r}; "
                f"expected {known}"
            )
        if key in index:
            raise TableError(f"{path}: line {line}: column {text!r} appears twice")
        index[key] = i
        where[key] = f"{text} ({column_letter(i)})"
    missing = [columns[k][0] for k in required if k not in index]
    if missing:
        raise TableError(f"{path}: line {line}: missing column(s) {', '.join(missing)}")
    rows = []
    for line, cells in raw[1:]:
        values = {
            key: ("" if i >= len(cells) or cells[i] is None else cells[i])
            for key, i in index.items()
        }
        if all(isinstance(v, str) and not v.strip() for v in values.values()):
            continue
        rows.append(Row(line, values))
    return rows, where
