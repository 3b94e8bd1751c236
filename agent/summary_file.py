"""The centre's per-site summary on a kiosk: each staff member's month so far.

The centre publishes it retained on ``{prefix}/{site}/summary`` (docs/topics.md,
contract/published_summary.py). The uplink hands each payload to
:class:`agent.link.downlink.SummaryKeeper`, which validates it and writes it durably to
``<data_dir>/summary.json``; a bad one, one for another site, or one that cannot be written is
logged, shown in the uplink's status, and the last good one stays. The kiosk screen reads it
through :class:`SummaryWatch` (reloaded when the file changes) and shows, after a punch, the
person's line (docs/attendance.md "Your month on the screen"); a summary of another month, or
one without the person, shows nothing: never numbers that are not theirs or not this month's.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import datetime
from pathlib import Path

from contract.published_summary import PublishedSummary, SummaryError, parse_summary

logger = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"


def summary_path(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / SUMMARY_FILE


def load_summary(data_dir: str | os.PathLike[str]) -> PublishedSummary | None:
    """The last good summary stored on this kiosk, or None (none yet, or unreadable: logged;
    a damaged file must never stop a kiosk)."""
    path = summary_path(data_dir)
    try:
        return parse_summary(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, SummaryError) as exc:
        logger.error("summary %s unreadable (%s); no month shown after a punch", path, exc)
        return None


def month_line(
    summary: PublishedSummary | None, site: str, staff_id: str, now: datetime
) -> str | None:
    """``本月：迟到 1 次 · 早退 0 次 · 缺卡 2 次 · 脱岗 0 次（截至 12月3日）`` for ``staff_id``, or
    None when there is nothing true to say: no summary, one of another site or of another
    month than ``now``'s (the kiosk's local time), no day of the month over yet, or no entry
    for the person."""
    if summary is None or summary.through is None or summary.site != site:
        return None
    if summary.month != now.strftime("%Y-%m"):
        return None
    mine = summary.staff.get(staff_id)
    if mine is None:
        return None
    through = summary.through
    return (
        f"本月：迟到 {mine.late} 次 · 早退 {mine.early} 次 · 缺卡 {mine.missing} 次 · "
        f"脱岗 {mine.absent} 次（截至 {through.month}月{through.day}日）"
    )


class SummaryWatch:
    """The stored summary, reloaded when its file changes (mtime). Thread-safe; one ``stat``
    a call."""

    def __init__(self, data_dir: str | os.PathLike[str], site: str):
        self.data_dir = Path(data_dir)
        self.site = site
        self.path = summary_path(data_dir)
        self._mtime: int | None = -1
        self._summary: PublishedSummary | None = None
        self._lock = threading.Lock()

    def current(self) -> PublishedSummary | None:
        try:
            mtime: int | None = self.path.stat().st_mtime_ns
        except OSError:
            mtime = None
        with self._lock:
            if mtime != self._mtime:
                self._mtime = mtime
                self._summary = load_summary(self.data_dir) if mtime is not None else None
            return self._summary

    def line(self, staff_id: str, now: datetime) -> str | None:
        return month_line(self.current(), self.site, staff_id, now)


def summary_status(data_dir: str | os.PathLike[str], site: str, now: datetime) -> tuple[str, bool]:
    """One line for ``check``: the stored summary's month and age; True when it deserves a
    warning (none yet, or not of this site and month: the screen shows no month line)."""
    summary = load_summary(data_dir)
    if summary is None or summary.site != site:
        return (
            "no summary from the centre yet: the screen shows no month line after a punch "
            '(docs/attendance.md "Your month on the screen")',
            True,
        )
    age_h = (now - summary.as_of).total_seconds() / 3600
    through = summary.through.isoformat() if summary.through else "no day over yet"
    text = (
        f"month {summary.month} through {through}, {len(summary.staff)} staff, "
        f"computed {summary.as_of.strftime('%Y-%m-%d %H:%M%z')} ({age_h:.1f} h ago)"
    )
    if summary.month != now.strftime("%Y-%m"):
        return f"{text}: not this month, so not shown; is the collector running?", True
    return text, False
