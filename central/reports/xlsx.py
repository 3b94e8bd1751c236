"""xlsx (openpyxl): one worksheet per table, typed cells, ready to filter and to print.

- Dates are Excel dates (``yyyy-mm-dd``), date-times ``yyyy-mm-dd hh:mm``, rates numbers with
  a ``0.0%`` format (model.Rate), so a manager can sort, filter and sum them.
- Each table has an autofilter over its header and rows and a frozen header row.
- Print setup: A4 landscape, fit to one page wide, the header row repeated on every page.
- Marked cells are filled (late/early amber, missing and 差评 red, leave blue); a day not yet
  judged is grey text, no fill: no verdict either way.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, BinaryIO

from central.reports.model import (
    BAD,
    LATE,
    LEAVE,
    MISSING,
    PENDING,
    Rate,
    Report,
    Sheet,
    as_text_cells,
    cell_text,
)
from central.reports.table import display_width

FILLS = {LATE: "FFE699", MISSING: "F4B6B6", LEAVE: "BDD7EE", BAD: "F4B6B6"}
PENDING_FONT = "999999"
DATE_FORMAT = "yyyy-mm-dd"
DATETIME_FORMAT = "yyyy-mm-dd hh:mm"
RATE_FORMAT = "0.0%"


def _value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, Rate):
        return float(value)
    return value


def _number_format(value: Any) -> str | None:
    if isinstance(value, Rate):
        return RATE_FORMAT
    if isinstance(value, datetime):
        return DATETIME_FORMAT
    if isinstance(value, date):
        return DATE_FORMAT
    return None


def _print_setup(ws: Any) -> None:
    ws.page_setup.orientation = "landscape"
    ws.page_setup.paperSize = ws.PAPERSIZE_A4
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0  # as many pages down as it takes
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    ws.print_title_rows = "1:1"
    ws.print_options.gridLines = True


def _write_sheet(book: Any, sheet: Sheet, styles: dict[str, Any]) -> None:
    from openpyxl.utils import get_column_letter

    ws = book.create_sheet(sheet.name[:31])  # Excel's limit on sheet names
    ws.append(sheet.headers)
    for cell in ws[1]:
        cell.font = styles["bold"]
    for r, row in enumerate(sheet.rows, start=2):
        values = [_value(v) for v in row]
        ws.append(values)
        as_text_cells(ws, r, values)
        for c, value in enumerate(row, start=1):
            fmt = _number_format(value)
            if fmt:
                ws.cell(row=r, column=c).number_format = fmt
    for (r, c), kind in sheet.marks.items():
        cell = ws.cell(row=r + 2, column=c + 1)
        if kind == PENDING:
            cell.font = styles["pending"]
        else:
            cell.fill = styles["fills"][kind]
    ws.freeze_panes = "A2"
    last = get_column_letter(len(sheet.headers))
    ws.auto_filter.ref = f"A1:{last}{len(sheet.rows) + 1}"
    for c, header in enumerate(sheet.headers):
        width = max(
            [display_width(header) + 2]  # room for the filter button
            + [display_width(cell_text(row[c])) for row in sheet.rows]
        )
        ws.column_dimensions[get_column_letter(c + 1)].width = min(60, width + 2)
    _print_setup(ws)


def write(report: Report, out: BinaryIO) -> None:
    try:
        from openpyxl import Workbook
        from openpyxl.styles import Font, PatternFill
    except ImportError:
        raise RuntimeError(
            "xlsx reports need openpyxl: pip install 'hall-agent[central]'"
        ) from None
    book = Workbook()
    book.remove(book.active)
    styles = {
        "bold": Font(bold=True),
        "pending": Font(color=PENDING_FONT),
        "fills": {k: PatternFill("solid", start_color=v, end_color=v) for k, v in FILLS.items()},
    }
    for sheet in report.sheets:
        _write_sheet(book, sheet, styles)
    info = book.create_sheet("说明")
    info.append([report.title])
    for note in report.notes:
        info.append([note])
    info.column_dimensions["A"].width = 100
    book.save(out)
