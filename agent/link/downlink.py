"""Downlink: what the centre publishes retained for a site's devices (docs/topics.md).

- The staff roster (``{prefix}/{site}/roster``), on every device: validated
  (:func:`contract.parse_roster`) and written to ``<data_dir>/roster.json`` in exactly the
  payload format. Face encodings never travel (PIPL art. 28-29): a roster entry with any key
  beyond ``id/name/role/window`` is refused as a whole, so a centre that starts sending
  biometric data by mistake cannot get it stored on a device.
- The hall's hours and calendar (``{prefix}/{site}/schedule``), on a kiosk: validated
  (:func:`contract.published_schedule.parse_schedule`) and written to
  ``<data_dir>/schedule.json`` (docs/attendance.md "One schedule").
- Each staff member's month so far (``{prefix}/{site}/summary``), on a kiosk: validated
  (:func:`contract.published_summary.parse_summary`), refused when it names another site,
  and written to ``<data_dir>/summary.json`` (docs/attendance.md "Your month on the screen").

All are retained on the broker, so a device gets the current one on every connect; one
:class:`RetainedFileKeeper` per topic writes it durably. A bad payload, or one that cannot be
written (disk full, read-only), is logged and kept in ``last_error`` (shown in the uplink's
status), and the last good file stays.

This module only writes the files; the device reads them through :mod:`agent.roster`,
:mod:`agent.schedule_file` and :mod:`agent.summary_file`.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from agent.durable import write_durably
from agent.roster import load_roster, roster_path
from agent.schedule_file import load_published, schedule_path
from agent.summary_file import load_summary, summary_path
from contract import RosterError, parse_roster
from contract.published_schedule import PublishedSchedule, ScheduleError, parse_schedule
from contract.published_summary import PublishedSummary, SummaryError, parse_summary

logger = logging.getLogger(__name__)

T = TypeVar("T")


class RetainedFileKeeper(Generic[T]):
    """Validates the payloads of one retained topic and keeps the last good one on disk.

    A subclass says what the payload is: its parser (:meth:`parse`, raising ``refused``), its
    version, its bytes on disk and when a delivery is the one already stored."""

    what: ClassVar[str]  # "roster", "schedule": the first word of its log lines and errors
    refused: ClassVar[type[Exception]]

    def __init__(self, path: Path, current: T | None):
        self.path = path
        self.version: int | None = None if current is None else self.version_of(current)
        self.last_error: str | None = None

    def parse(self, payload: bytes) -> T:
        raise NotImplementedError

    def version_of(self, item: T) -> int:
        raise NotImplementedError

    def encode(self, item: T) -> bytes:
        raise NotImplementedError

    def unchanged(self, item: T) -> bool:
        """The stored one again (a reconnect delivers the retained payload each time)."""
        raise NotImplementedError

    def detail(self, item: T) -> str:
        """What the "stored" log line adds after the version."""
        return ""

    def handle(self, payload: bytes) -> bool:
        """Store a payload if valid; returns True when the file was (re)written."""
        if not payload:
            return False  # the retained message was cleared: keep the last good one
        try:
            item = self.parse(payload)
        except self.refused as exc:
            self.last_error = f"{self.what} refused: {exc}"
            logger.error("%s; keeping version %s", self.last_error, self.version)
            return False
        version = self.version_of(item)
        if self.unchanged(item):
            return False
        if self.version is not None and version < self.version:
            # Taken anyway: the retained payload is the centre's truth (a store rebuilt from
            # scratch numbers from 1 again, a roster rolled back with --force), but a step
            # back is worth a line in the log.
            logger.warning("%s version went back from %s to %s", self.what, self.version, version)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_durably(self.path, self.encode(item))
        except OSError as exc:
            # Disk full, read-only or not ours: it is retained, so it comes again on every
            # reconnect; raising would end the uplink each time. Keep the last good file,
            # show the fault in status (Uplink.health) and try again next delivery.
            self.last_error = f"{self.what} version {version} not stored in {self.path}: {exc}"
            logger.error("%s; keeping version %s", self.last_error, self.version)
            return False
        self.version = version
        self.last_error = None
        logger.info("%s version %s stored%s", self.what, version, self.detail(item))
        return True


class RosterKeeper(RetainedFileKeeper[dict[str, Any]]):
    """The staff roster in ``<data_dir>/roster.json``."""

    what = "roster"
    refused = RosterError

    def __init__(self, data_dir: str | os.PathLike[str]):
        super().__init__(roster_path(data_dir), load_roster(data_dir))

    def parse(self, payload: bytes) -> dict[str, Any]:
        return parse_roster(payload)

    def version_of(self, item: dict[str, Any]) -> int:
        return item["version"]

    def encode(self, item: dict[str, Any]) -> bytes:
        # Stored in exactly the docs/topics.md payload format (re-serialised from the
        # validated object so that the file is canonical UTF-8 JSON).
        return json.dumps(item, ensure_ascii=False).encode("utf-8")

    def unchanged(self, item: dict[str, Any]) -> bool:
        # Compared with the file, not memory: a roster.json lost or damaged since is written
        # again on the next delivery.
        return item["version"] == self.version and load_roster(self.path.parent) == item

    def detail(self, item: dict[str, Any]) -> str:
        return f" ({len(item['staff'])} staff)"


class ScheduleKeeper(RetainedFileKeeper[PublishedSchedule]):
    """The hall's schedule in ``<data_dir>/schedule.json`` (kiosks only)."""

    what = "schedule"
    refused = ScheduleError

    def __init__(self, data_dir: str | os.PathLike[str]):
        super().__init__(schedule_path(data_dir), load_published(data_dir))

    def parse(self, payload: bytes) -> PublishedSchedule:
        return parse_schedule(payload)

    def version_of(self, item: PublishedSchedule) -> int:
        return item.version

    def encode(self, item: PublishedSchedule) -> bytes:
        return item.to_json().encode("utf-8")

    def unchanged(self, item: PublishedSchedule) -> bool:
        # Compared with the file, as the roster is: a schedule.json lost or damaged since is
        # written again on the next delivery instead of leaving the regulation's hours.
        stored = load_published(self.path.parent) if item.version == self.version else None
        return stored is not None and stored.digest == item.digest


class SummaryKeeper(RetainedFileKeeper[PublishedSummary]):
    """The site's month so far in ``<data_dir>/summary.json`` (kiosks only).

    Its "version" is ``as_of`` in seconds (a summary has no number): the centre publishes
    again only when the counts changed, so each new one is later."""

    what = "summary"
    refused = SummaryError

    def __init__(self, data_dir: str | os.PathLike[str], site: str):
        self.site = site
        current = load_summary(data_dir)
        super().__init__(summary_path(data_dir), current if self._ours(current) else None)

    def _ours(self, item: PublishedSummary | None) -> bool:
        return item is not None and item.site == self.site

    def parse(self, payload: bytes) -> PublishedSummary:
        item = parse_summary(payload)
        if not self._ours(item):
            # Only the site's own topic is subscribed (and the broker's ACL grants no other):
            # a payload naming another site is a centre's mistake, never stored.
            raise SummaryError(f"site: expected {self.site!r}, got {item.site!r}")
        return item

    def version_of(self, item: PublishedSummary) -> int:
        return int(item.as_of.timestamp())

    def encode(self, item: PublishedSummary) -> bytes:
        return item.to_json().encode("utf-8")

    def unchanged(self, item: PublishedSummary) -> bool:
        # Compared with the file, as the schedule is.
        stored = load_summary(self.path.parent)
        return stored is not None and stored.to_json() == item.to_json()

    def detail(self, item: PublishedSummary) -> str:
        through = item.through.isoformat() if item.through else "no day over yet"
        return f" ({item.month} through {through}, {len(item.staff)} staff)"
