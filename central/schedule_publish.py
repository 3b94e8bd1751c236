"""The centre as the one source of the hall's hours (docs/attendance.md "One schedule").

central.toml ``[schedule]`` plus the resolved calendar of this year and the next (statutory
holidays and 调休 days from chinesecalendar, the config's lists on top) make a schedule
body. The store numbers each different body (``schedules`` table): the same body keeps its
version, a changed one gets the next. The collector records and publishes it retained on
``{prefix}/{site}/schedule`` for every site on every connect and re-checks it hourly (the new
year changes the body by itself); ``hall-central schedule publish`` does the same at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from contract.config import ScheduleSection
from contract.published_schedule import (
    PublishedSchedule,
    YearDays,
    body_digest,
    build_published,
    hours_json,
)
from contract.schedule import Schedule, ScheduleHistory, published_gaps, resolve_year
from contract.topics import schedule_topic

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from central.store import Store, StoredSchedule

logger = logging.getLogger(__name__)


def current_calendar(cfg: ScheduleSection, today: date) -> dict[int, YearDays]:
    """The years the centre publishes today, each as far as it can resolve it.

    Years: this one and the next, and any later year the config lists days for. Earlier
    years are left out (no kiosk classifies a punch in the past), so the body, and with it
    the version, changes on January 1 by itself.
    """
    later = {d.year for d in (*cfg.holidays, *cfg.workdays)} | set(cfg.covered_years)
    years = sorted({today.year, today.year + 1} | {y for y in later if y >= today.year})
    resolved = {year: resolve_year(year, cfg) for year in years}
    return {year: days for year, days in resolved.items() if days is not None}


def current_body(cfg: ScheduleSection, today: date) -> dict[str, Any]:
    """The body the centre publishes today: hours, and :func:`current_calendar`'s days."""
    calendar = current_calendar(cfg, today)
    return {
        "hours": hours_json(cfg),
        "calendar": {str(y): days.model_dump(mode="json") for y, days in calendar.items()},
    }


def record_current(store: Store, cfg: ScheduleSection, tz: ZoneInfo) -> PublishedSchedule:
    """Record today's body (a new version only when it changed) and return it to publish."""
    now = datetime.now(tz)
    body = current_body(cfg, now.date())
    version, created = store.record_schedule(body_digest(body), body, now)
    if created:
        logger.info("schedule version %d recorded", version)
    latest = store.latest_schedule()
    assert latest is not None and latest.version == version
    return as_published(latest)


def as_published(stored: StoredSchedule) -> PublishedSchedule:
    return build_published(stored.version, stored.published_at, stored.body)


def history(store: Store, cfg: ScheduleSection) -> ScheduleHistory:
    """Every recorded version, for the report; the config itself when none was recorded."""
    versions = [(s.published_at, Schedule.published(as_published(s))) for s in store.schedules()]
    return ScheduleHistory(versions, Schedule(cfg))


def calendar_warning(cfg: ScheduleSection, today: date) -> str | None:
    """From December 1 (and all year for the current year): which years the centre cannot
    publish complete, and how to fix it. None when nothing is missing."""
    gaps = published_gaps(today, current_calendar(cfg, today))
    if not gaps:
        return None
    years = ", ".join(map(str, gaps))
    return (
        f"no statutory holidays or 调休 days for {years}: every kiosk would treat them as "
        "plain Monday-Friday. Upgrade chinesecalendar on the centre (pip install -U "
        "chinesecalendar) once it has the State Council's notice, or list the year's days off "
        f"and adjusted working days in central.toml [schedule] holidays / workdays and add "
        f"covered_years = [{gaps[0]}]; then restart hall-central or run "
        "'hall-central schedule publish' (docs/attendance.md \"Next year's holidays\")"
    )


# How often the collector re-checks the body: the new year, a site seen for the first time.
RECHECK_S = 300.0
PUBACK_TIMEOUT_S = 5.0


class SchedulePublisher:
    """The collector's side: record the current body and keep it retained on every site's
    schedule topic. Runs on the collector's store thread; never raises."""

    def __init__(
        self,
        store: Store,
        cfg: ScheduleSection,
        tz: ZoneInfo,
        prefix: str,
        publish: Any,  # MqttLink.publish
        today: Callable[[], date] | None = None,  # the hall's date; tests set it
    ) -> None:
        self.store, self.cfg, self.tz, self.prefix = store, cfg, tz, prefix
        self._today = today or (lambda: datetime.now(tz).date())
        self._publish = publish
        self.version: int | None = None  # the version retained on every site's topic
        self._sites: list[str] = []
        self._due = 0.0
        self._warned_on: date | None = None
        self.published = 0  # PUBACKed schedule messages
        self.errors = 0
        self._warn_daily()  # at startup, before any broker: the log says it at once

    def site_seen(self, site: str) -> None:
        """A device's status: a site not yet served gets the schedule on the next tick."""
        if site not in self._sites:
            self._due = 0.0

    def tick(self, now: float) -> None:
        if now >= self._due:
            self.publish(force=False)

    def publish(self, force: bool) -> None:
        """``force``: after a (re)connect the broker may have lost what it retained."""
        import time

        self._due = time.monotonic() + RECHECK_S
        try:
            current = record_current(self.store, self.cfg, self.tz)
            sites = self.store.sites()
        except Exception as exc:
            self.errors += 1
            logger.error("collector: schedule not recorded (%s); retried in a minute", exc)
            self._due = time.monotonic() + 60.0
            return
        self._warn_daily()
        if not force and current.version == self.version and sites == self._sites:
            return
        payload = current.to_json().encode("utf-8")
        done = True
        for site in sites:
            topic = schedule_topic(self.prefix, site)
            try:
                info = self._publish(topic, payload, qos=1, retain=True)
                info.wait_for_publish(PUBACK_TIMEOUT_S)
            except (RuntimeError, ValueError) as exc:  # paho: not connected, queue full
                logger.warning("collector: schedule not published on %s: %s", topic, exc)
                done = False
                continue
            if not info.is_published():
                logger.warning("collector: no PUBACK for the schedule on %s", topic)
                done = False
                continue
            self.published += 1
        if done:
            if current.version != self.version:
                logger.info(
                    "collector: schedule version %d published for %d site(s)",
                    current.version,
                    len(sites),
                )
            self.version, self._sites = current.version, sites
        else:
            self._due = time.monotonic() + 60.0

    def _warn_daily(self) -> None:
        today = self._today()
        if self._warned_on == today:
            return
        self._warned_on = today
        warning = calendar_warning(self.cfg, today)
        if warning:
            logger.warning("schedule: %s", warning)
