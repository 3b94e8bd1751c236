"""CSV: UTF-8 with a byte-order mark, so Excel (which reads BOM-less CSV as the ANSI code
page, GBK on a Chinese Windows) shows the Chinese headings.

One file holds every table of the report: a title row, the header row, the rows, then an
empty row before the next table; last a ``# 说明`` table with the report's notes.
"""

from __future__ import annotations

import csv
from typing import BinaryIO

from central.reports.model import Report, cell_text, inert


def write(report: Report, out: BinaryIO) -> None:
    import io

    text = io.StringIO(newline="")
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow([report.title])
    for sheet in report.sheets:
        writer.writerow([])
        writer.writerow([f"# {sheet.name}"])
        writer.writerow(sheet.headers)
        writer.writerows([[cell_text(inert(v)) for v in row] for row in sheet.rows])
    if report.notes:  # the rules the numbers follow travel with them, as in the other formats
        writer.writerow([])
        writer.writerow(["# 说明"])
        writer.writerows([[note] for note in report.notes])
    out.write(text.getvalue().encode("utf-8-sig"))
