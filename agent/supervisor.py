"""Runs the device's workers, restarts the ones that die or stall, feeds the systemd watchdog.

docs/architecture.md#workers: workers record their last activity; a stuck worker
(``VideoCapture.read`` can hang forever) is restarted, with a restart-rate limit; loops wait
on a stop event, never ``sleep``; sd_notify READY, WATCHDOG at half the interval, STOPPING.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

logger = logging.getLogger(__name__)


class ServiceManager(Protocol):
    """What the supervisor tells systemd (sync/systemd.py ``Notifier``, sd_notify(3))."""

    watchdog_s: float | None

    def ready(self, status: str = "") -> None: ...

    def watchdog(self) -> None: ...

    def stopping(self) -> None: ...


class _NoServiceManager:
    """Outside systemd (tests, a terminal): nobody to notify."""

    watchdog_s: float | None = None

    def ready(self, status: str = "") -> None:
        pass

    def watchdog(self) -> None:
        pass

    def stopping(self) -> None:
        pass


class Worker(Protocol):
    """One long-running part of the agent (uplink, a pad bus, the camera pipeline)."""

    name: str
    # A worker whose last activity is older than this is considered stuck and restarted.
    stall_after_s: float

    def start(self) -> None: ...

    def stop(self, timeout: float = 5.0) -> None: ...

    def alive(self) -> bool: ...

    def last_activity(self) -> float:
        """time.monotonic() of the last loop iteration."""
        ...

    def health(self) -> dict[str, Any]:
        """Component health for the status message, e.g. {"state": "ok"}."""
        ...

    # Optional (read with getattr, default False): True when the worker ended on purpose to
    # be started afresh (the recognition process exits 75 to shed camera reader threads stuck
    # in the driver). Such a respawn is restarted at once and does not count against
    # max_restarts: it is the worker's own remedy, not a crash.
    # planned_exit: bool


def _planned_exit(worker: Worker) -> bool:
    try:
        return bool(getattr(worker, "planned_exit", False))
    except Exception:  # a broken property counts as an ordinary exit
        return False


class Supervisor:
    def __init__(
        self,
        factories: dict[str, Callable[[], Worker]],
        *,
        notifier: ServiceManager | None = None,
        max_restarts: int = 5,
        restart_window_s: float = 600.0,
        tick_s: float = 1.0,
        cooldown_s: float = 300.0,
        max_cooldown_s: float = 1800.0,
    ):
        self.factories = factories
        self.workers: dict[str, Worker] = {}
        self.notifier: ServiceManager = notifier or _NoServiceManager()
        self.max_restarts = max_restarts
        self.restart_window_s = restart_window_s
        self.tick_s = tick_s
        self.stop_event = threading.Event()
        self._restarts: dict[str, deque[float]] = {}
        # A worker that died too often rests (cooldown, doubling up to max_cooldown_s) and is
        # then tried again: hardware that comes back hours later must work without a restart.
        self.cooldown_s = cooldown_s
        self.max_cooldown_s = max_cooldown_s
        self.gave_up: dict[str, float] = {}  # name -> monotonic time of the next try
        self._cooldowns: dict[str, float] = {}

    def start_all(self) -> None:
        for name, factory in self.factories.items():
            worker = factory()
            worker.start()
            self.workers[name] = worker
            self._restarts[name] = deque()
            logger.info("worker %s started", name)

    def health(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name, worker in self.workers.items():
            try:
                out[name] = worker.health()
            except Exception as exc:  # health must never take the supervisor down
                out[name] = {"state": "fault", "detail": f"health() failed: {exc}"}
            if name in self.gave_up:
                wait = max(0.0, self.gave_up[name] - time.monotonic())
                out[name] = {
                    "state": "fault",
                    "detail": f"restarted too often; next try in {wait:.0f} s",
                }
        return out

    def _restart(self, name: str, why: str) -> None:
        history = self._restarts[name]
        now = time.monotonic()
        if _planned_exit(self.workers[name]):
            logger.warning("worker %s asked to be started afresh; restarting", name)
            self._replace(name)
            return
        while history and now - history[0] > self.restart_window_s:
            history.popleft()
        if len(history) >= self.max_restarts:
            if name not in self.gave_up:
                cooldown = self._cooldowns.get(name, self.cooldown_s)
                logger.error(
                    "worker %s %s; %d restarts in %.0f s, resting %.0f s before the next try",
                    name,
                    why,
                    len(history),
                    self.restart_window_s,
                    cooldown,
                )
                self.gave_up[name] = now + cooldown
                self._cooldowns[name] = min(cooldown * 2, self.max_cooldown_s)
            return
        history.append(now)
        logger.warning("worker %s %s; restarting (%d in window)", name, why, len(history))
        self._replace(name)

    def _replace(self, name: str) -> None:
        try:
            self.workers[name].stop(timeout=2.0)
        except Exception:
            logger.exception("worker %s failed to stop", name)
        worker = self.factories[name]()
        worker.start()
        self.workers[name] = worker

    def check_once(self) -> None:
        now = time.monotonic()
        for name, worker in list(self.workers.items()):
            if name in self.gave_up:
                if now < self.gave_up[name]:
                    continue
                del self.gave_up[name]
                self._restarts[name].clear()
            if not worker.alive():
                self._restart(name, "died")
            elif now - worker.last_activity() > worker.stall_after_s:
                self._restart(name, f"stalled for {now - worker.last_activity():.0f} s")

    def run(self) -> None:
        """Supervise until ``stop_event`` is set; then stop every worker."""
        self.start_all()
        self.notifier.ready(f"{len(self.workers)} workers running")
        watchdog_every = (self.notifier.watchdog_s or 0) / 2 or None
        last_ping = 0.0
        try:
            while not self.stop_event.wait(self.tick_s):
                self.check_once()
                now = time.monotonic()
                # Feed the watchdog only while the supervisor loop itself runs: if it hangs,
                # systemd restarts the whole agent (WatchdogSec in the unit).
                if watchdog_every and now - last_ping >= watchdog_every:
                    self.notifier.watchdog()
                    last_ping = now
        finally:
            self.notifier.stopping()
            for name, worker in self.workers.items():
                try:
                    worker.stop(timeout=5.0)
                except Exception:
                    logger.exception("worker %s failed to stop", name)
