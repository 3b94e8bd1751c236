"""Monthly reports for the centre: attendance and 好差评, in four formats.

``build(kind, ...)`` turns the store's events into a :class:`~central.reports.model.Report`;
``render(report, fmt, out)`` writes it as a terminal table, CSV, xlsx or HTML.
"""

from __future__ import annotations

from datetime import datetime
from typing import BinaryIO

from central.reports.model import Report
from central.reports.month import Month
from central.store import Store

FORMATS = ("table", "csv", "xlsx", "html")
KINDS = ("attendance", "ratings")


def build(
    kind: str,
    store: Store,
    month: Month,
    schedule_cfg: object | None = None,
    site: str | None = None,
    now: datetime | None = None,
    pause_limit_min: int = 15,
) -> Report:
    """The report, with the month's seal (docs/tamper.md) in its notes."""
    from central.seal.report import add_seal

    report = _build(kind, store, month, schedule_cfg, site, now, pause_limit_min)
    add_seal(report, store, month)
    return report


def _build(
    kind: str,
    store: Store,
    month: Month,
    schedule_cfg: object | None,
    site: str | None,
    now: datetime | None,
    pause_limit_min: int,
) -> Report:
    if kind == "attendance":
        from central.reports import attendance
        from central.schedule_publish import history
        from contract.config import ScheduleSection

        # Each punch judged by the schedule version its kiosk used (docs/attendance.md).
        cfg = schedule_cfg if isinstance(schedule_cfg, ScheduleSection) else ScheduleSection()
        schedules = history(store, cfg)
        return attendance.to_report(
            attendance.compute(store, month, schedules, site, now, pause_limit_min)
        )
    if kind == "ratings":
        from central.reports import ratings

        return ratings.to_report(ratings.compute(store, month, site, now))
    raise ValueError(f"report: expected one of {KINDS}, got {kind!r}")


def render(report: Report, fmt: str, out: BinaryIO) -> None:
    """Write ``report`` as ``fmt`` to the binary stream ``out``."""
    import io

    if fmt in ("csv", "xlsx"):
        from central.reports import csvfile, xlsx

        (csvfile if fmt == "csv" else xlsx).write(report, out)
        return
    if fmt not in ("table", "html"):
        raise ValueError(f"--format: expected one of {FORMATS}, got {fmt!r}")
    from central.reports import html, table

    text = io.StringIO()
    (table if fmt == "table" else html).write(report, text)
    out.write(text.getvalue().encode("utf-8"))
