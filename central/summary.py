"""Each staff member's month so far, for the kiosks of their site (docs/attendance.md "Your
month on the screen"; payload: contract/published_summary.py).

Per site: the attendance report's own computation (:func:`central.reports.attendance.compute`)
for the current month in the hall's timezone, each punch judged by the schedule version its
kiosk used, counted over the days that are over only; 迟到, 早退 and 缺卡 per person held to
the daily hours, and 脱岗 episodes from the same computation (docs/post.md). The collector
publishes each site's summary retained on ``{prefix}/{site}/summary`` and nowhere else: on
every connect, when a site is seen for the first time, and on a check every few minutes when
its digest changed (a day ending, a leave or 补卡 imported, a late batch of punches);
``hall-central summary publish`` does the same at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from contract.published_summary import PublishedSummary, build_summary
from contract.topics import summary_topic

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from central.config import CentralConfig
    from central.store import Store

logger = logging.getLogger(__name__)

RECHECK_S = 300.0  # as the schedule: a new day, a leave imported, a late batch
RETRY_S = 60.0
PUBACK_TIMEOUT_S = 5.0


def compute_summary(
    store: Store, cfg: CentralConfig, site: str, now: datetime, tz: ZoneInfo
) -> PublishedSummary:
    """``site``'s summary for the month of ``now`` in the hall's timezone."""
    from central.reports.attendance import compute
    from central.reports.month import Month
    from central.schedule_publish import history

    local = now.astimezone(tz)
    month = Month.parse(None, tz, local)
    result = compute(
        store, month, history(store, cfg.schedule), site, local, cfg.post.pause_limit_min
    )
    yesterday = local.date() - timedelta(days=1)
    through = yesterday if yesterday >= month.first else None
    staff = {
        pm.person.staff_id: {
            "late": pm.late,
            "early": pm.early,
            "missing": pm.missing,
            "absent": pm.absent,
        }
        for pm in result.people
        # Only people held to the daily hours (role staff): a chief's punches are never
        # late or early, and an id in no roster is not assessed.
        if pm.daily and pm.person.site == site
    }
    return build_summary(site, month.label, local, through, staff)


class SummaryPublisher:
    """The collector's side: keep every site's summary retained on its own topic.

    Runs on a thread of its own with its own store connection (as the board does): computing
    a site's month takes about a second for 200 staff, which must not hold up the collector's
    store thread and the devices' acks. The collector only wakes it (:meth:`kick`, never
    blocking): on each connect, and for a site seen for the first time. Never raises."""

    def __init__(
        self,
        cfg: CentralConfig,
        tz: ZoneInfo,
        prefix: str,
        publish: Any,  # MqttLink.publish
        connected: Callable[[], bool],
        store: Store | None = None,  # the collector's, when it was given one (tests)
        now: Callable[[], datetime] | None = None,  # the hall's time; tests set it
    ) -> None:
        self.cfg, self.tz, self.prefix = cfg, tz, prefix
        self.now = now or (lambda: datetime.now(tz))
        self._publish = publish
        self._connected = connected
        self._given = store
        self.store: Store | None = store
        self.digests: dict[str, str] = {}  # site -> digest retained on its topic
        self.published = 0  # PUBACKed summary messages
        self.rounds = 0  # checks done (each site computed, changed ones published)
        self.errors = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._force = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="summary", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def kick(self, force: bool = False) -> None:
        """Check now; ``force``: publish every site even when unchanged (after a (re)connect
        the broker may have lost what it retained). Any thread; never blocks."""
        self._force = self._force or force
        self._wake.set()

    def site_seen(self, site: str) -> None:
        """A device's status: a site not yet served gets its summary at once."""
        if site not in self.digests:
            self.kick()

    def _run(self) -> None:
        own = self._given is None
        try:
            while not self._stop.is_set():
                self._wake.wait(RECHECK_S)
                self._wake.clear()
                if self._stop.is_set():
                    break
                if not self._connected():
                    continue  # the connect kicks again
                force, self._force = self._force, False
                if self.store is None and not self._open():
                    self._force = self._force or force
                    self._stop.wait(RETRY_S)
                    self._wake.set()
                    continue
                if not self.publish(force):
                    self._force = self._force or force
                    if not self._stop.wait(RETRY_S):
                        self._wake.set()
        finally:
            if own and self.store is not None:
                self.store.close()

    def _open(self) -> bool:
        from central.store import open_store

        store = self.cfg.store
        try:
            self.store = open_store(
                store.url, store.pg_schema, store.password, timezone=self.cfg.central.timezone
            )
        except Exception as exc:
            self.errors += 1
            logger.error("collector: store not opened for the summaries (%s); retried", exc)
            return False
        return True

    def publish(self, force: bool) -> bool:
        """Compute every site's summary and publish those that changed (all with ``force``);
        True when every one is retained as computed."""
        assert self.store is not None
        try:
            sites = self.store.sites()
        except Exception as exc:
            self.errors += 1
            logger.error("collector: sites not read for the summaries (%s); retried", exc)
            return False
        done = True
        for site in sites:
            try:
                summary = compute_summary(self.store, self.cfg, site, self.now(), self.tz)
            except Exception as exc:
                self.errors += 1
                logger.error("collector: summary of %s not computed (%s)", site, exc)
                done = False
                continue
            if not force and self.digests.get(site) == summary.digest:
                continue
            if self._send(site, summary):
                self.digests[site] = summary.digest
            else:
                done = False
        self.rounds += 1
        return done

    def _send(self, site: str, summary: PublishedSummary) -> bool:
        topic = summary_topic(self.prefix, site)
        payload = summary.to_json().encode("utf-8")
        try:
            info = self._publish(topic, payload, qos=1, retain=True)
            info.wait_for_publish(PUBACK_TIMEOUT_S)
        except (RuntimeError, ValueError) as exc:  # paho: not connected, queue full
            logger.warning("collector: summary not published on %s: %s", topic, exc)
            return False
        if not info.is_published():
            logger.warning("collector: no PUBACK for the summary on %s", topic)
            return False
        self.published += 1
        logger.info(
            "collector: summary of %s for %s (through %s, %d staff) published",
            site,
            summary.month,
            summary.through or "no day yet",
            len(summary.staff),
        )
        return True
