"""xlsx (openpyxl): one worksheet per table, frozen header row, column widths from the
content's display width, marked cells filled (late/early amber, missing red, leave blue).
"""

from __future__ import annotations

from typing import BinaryIO

from central.reports.model import BAD, LATE, LEAVE, MISSING, Report
from central.reports.table import display_width

FILLS = {LATE: "FFE699", MISSING: "F4B6B6", LEAVE: "BDD7EE", BAD: "F4B6B6"}


def write(report: Report, out: BinaryIO) -> None:
    try:
        from openpyxl import Workbook
        from openpyxl.styles import Font, PatternFill
        from openpyxl.utils import get_column_letter
    except ImportError:
        raise RuntimeError(
            "xlsx reports need openpyxl: pip install 'hall-agent[central]'"
        ) from None
    book = Workbook()
    book.remove(book.active)
    fills = {k: PatternFill("solid", start_color=v, end_color=v) for k, v in FILLS.items()}
    bold = Font(bold=True)
    for sheet in report.sheets:
        ws = book.create_sheet(sheet.name[:31])  # Excel's limit on sheet names
        ws.append(sheet.headers)
        for cell in ws[1]:
            cell.font = bold
        for row in sheet.rows:
            ws.append(["" if v is None else v for v in row])
        for (r, c), kind in sheet.marks.items():
            ws.cell(row=r + 2, column=c + 1).fill = fills[kind]
        ws.freeze_panes = "A2"
        for c, header in enumerate(sheet.headers):
            width = max(
                [display_width(header)] + [display_width(str(row[c])) for row in sheet.rows]
            )
            ws.column_dimensions[get_column_letter(c + 1)].width = min(60, width + 2)
    info = book.create_sheet("说明")
    info.append([report.title])
    for note in report.notes:
        info.append([note])
    info.column_dimensions["A"].width = 80
    book.save(out)
