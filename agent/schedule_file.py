"""The centre's schedule on a kiosk: keep the last one received, classify by it.

The centre publishes the hall's hours and calendar retained on ``{prefix}/{site}/schedule``
(docs/topics.md; docs/attendance.md "One schedule"). The uplink hands each payload to
:class:`ScheduleKeeper`, which validates it and writes it durably to
``<data_dir>/schedule.json``; a bad one, or one that cannot be written, is logged, shown in
the uplink's status and the last good one stays. Everything that classifies or shows the day
(the recognition process, the kiosk screen, ``check``) reads it through :class:`ScheduleWatch`,
which reloads the file when it changes. Until the first schedule arrives a kiosk uses the
regulation's hours (``ScheduleSection`` defaults) and its punches carry
``schedule_version: null``.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import date
from pathlib import Path

from agent.durable import write_durably
from contract.published_schedule import PublishedSchedule, ScheduleError, parse_schedule
from contract.schedule import Schedule

logger = logging.getLogger(__name__)

SCHEDULE_FILE = "schedule.json"


def schedule_path(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / SCHEDULE_FILE


def load_published(data_dir: str | os.PathLike[str]) -> PublishedSchedule | None:
    """The last good schedule stored on this kiosk, or None (none yet, or unreadable:
    logged; a damaged file must never stop a kiosk)."""
    path = schedule_path(data_dir)
    try:
        return parse_schedule(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ScheduleError) as exc:
        logger.error("schedule %s unreadable (%s); using the regulation's hours", path, exc)
        return None


class ScheduleKeeper:
    """Validates incoming schedule payloads and keeps the last good one on disk."""

    def __init__(self, data_dir: str | os.PathLike[str]):
        self.path = schedule_path(data_dir)
        current = load_published(data_dir)
        self.version: int | None = None if current is None else current.version
        self._digest: str | None = None if current is None else current.digest
        self.last_error: str | None = None

    def handle(self, payload: bytes) -> bool:
        """Store a schedule payload if valid; True when the file was (re)written."""
        if not payload:
            return False  # the retained schedule was cleared: keep the last good one
        try:
            schedule = parse_schedule(payload)
        except ScheduleError as exc:
            self.last_error = f"schedule refused: {exc}"
            logger.error("%s; keeping version %s", self.last_error, self.version)
            return False
        if schedule.version == self.version and schedule.digest == self._digest:
            return False  # the same retained schedule again after a reconnect
        if self.version is not None and schedule.version < self.version:
            # Taken anyway: the retained schedule is the centre's truth (a store rebuilt from
            # scratch numbers from 1 again), but a step back is worth a line in the log.
            logger.warning(
                "schedule version went back from %s to %s", self.version, schedule.version
            )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_durably(self.path, schedule.to_json().encode("utf-8"))
        except OSError as exc:
            # Disk full or read-only: it is retained, so it comes again on every reconnect.
            self.last_error = (
                f"schedule version {schedule.version} not stored in {self.path}: {exc}"
            )
            logger.error("%s; keeping version %s", self.last_error, self.version)
            return False
        self.version, self._digest = schedule.version, schedule.digest
        self.last_error = None
        logger.info("schedule version %s stored", schedule.version)
        return True


class ScheduleWatch:
    """The stored schedule as a :class:`Schedule`, reloaded when its file changes (mtime).

    Thread-safe; cheap to ask on every punch (one ``stat``)."""

    def __init__(self, data_dir: str | os.PathLike[str]):
        self.data_dir = Path(data_dir)
        self.path = schedule_path(data_dir)
        self._mtime: int | None = -1
        self._schedule = Schedule()
        self._lock = threading.Lock()

    def current(self) -> Schedule:
        try:
            mtime: int | None = self.path.stat().st_mtime_ns
        except OSError:
            mtime = None
        with self._lock:
            if mtime != self._mtime:
                self._mtime = mtime
                published = load_published(self.data_dir) if mtime is not None else None
                self._schedule = Schedule() if published is None else Schedule.published(published)
                logger.info(
                    "classifying by %s",
                    "the regulation's hours (no schedule from the centre yet)"
                    if published is None
                    else f"the centre's schedule version {published.version}",
                )
            return self._schedule


def schedule_status(data_dir: str | os.PathLike[str], today: date) -> tuple[str, bool]:
    """One line for ``check`` and the log: the version in force and what its calendar lacks;
    True when it deserves a warning."""
    from contract.schedule import published_gaps

    published = load_published(data_dir)
    if published is None:
        return (
            "no schedule from the centre yet: punches are classified by the regulation's "
            "hours and carry schedule_version null until the first arrives "
            '(docs/attendance.md "One schedule")',
            True,
        )
    when = published.published_at.strftime("%Y-%m-%d %H:%M%z")
    text = f"version {published.version} from the centre (recorded {when})"
    gaps = published_gaps(today, dict(published.calendar))
    if gaps:
        years = ", ".join(map(str, gaps))
        return (
            f"{text}; it lacks the statutory holidays and 调休 days of {years}, which are "
            "treated as plain Monday-Friday: the centre must add them "
            '(docs/attendance.md "Next year\'s holidays")',
            True,
        )
    years = f"{today.year}" + (f" and {today.year + 1}" if today.month == 12 else "")
    return f"{text}; holidays and 调休 days known for {years}", False
