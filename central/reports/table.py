"""The terminal table: columns aligned by display width, so Chinese text lines up.

A CJK character takes two terminal cells (Unicode East Asian Width W/F, UAX #11); padding by
``len()`` misaligns every column after a Chinese name.
"""

from __future__ import annotations

import unicodedata
from typing import TextIO

from central.reports.model import PENDING, Report, Sheet, cell_text


def display_width(text: str) -> int:
    if text.isascii():  # most cells (times, counts, ids): one cell per character
        return len(text)
    width = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def pad(text: str, width: int) -> str:
    return text + " " * max(0, width - display_width(text))


def write_sheet(sheet: Sheet, out: TextIO) -> None:
    cells = [[cell_text(v) for v in row] for row in sheet.rows]
    for (r, c), kind in sheet.marks.items():
        if kind != PENDING:  # not judged yet: nothing to look at, shown as it is
            cells[r][c] += "*"
    widths = [display_width(h) for h in sheet.headers]
    for row in cells:
        widths = [max(w, display_width(v)) for w, v in zip(widths, row, strict=True)]
    out.write(f"== {sheet.name}\n")
    for row in (sheet.headers, *cells):
        out.write("  ".join(pad(v, w) for v, w in zip(row, widths, strict=True)).rstrip() + "\n")
    if not cells:
        out.write("(无)\n")


def write(report: Report, out: TextIO) -> None:
    out.write(f"{report.title}\n")
    for sheet in report.sheets:
        out.write("\n")
        write_sheet(sheet, out)
    if report.notes:
        out.write("\n" + "\n".join(f"注: {n}" for n in report.notes) + "\n")
    if report.seal_qr:
        from central.seal.report import qr_blocks

        out.write(qr_blocks(report.seal_qr) + "\n")
    if any(k != PENDING for sheet in report.sheets for k in sheet.marks.values()):
        out.write("注: * 迟到/早退/缺卡/请假/差评等需关注的单元格\n")
