"""The kiosk's worker for ``hall-agent run``: runs the recognition (agent/recognition.py)
in a child process or a thread, records what it decides in the outbox, keeps what the
outbox refused (agent/punch_files.py) and reports camera faults once across restarts."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from agent.config import AgentConfig
from agent.outbox import Outbox, OutboxError
from agent.punch_files import (
    FUTURE_SLACK_S,
    PendingEvents,
    TodayPunches,
    debounce_path,
    dedupe_key_for,
    load_debounce,
    pending_path,
    save_debounce,
    today_path,
)
from agent.recognition import EXIT_RESPAWN, child_main, run_loop
from contract import EventType

logger = logging.getLogger(__name__)


class AttendanceWorker:
    """Supervisor worker: recognition in a child process, events into the outbox here."""

    stall_after_s = 60.0  # the child loads models for a few seconds, then beats every second

    def __init__(
        self,
        cfg: AgentConfig,
        outbox: Outbox,
        *,
        name: str = "attendance",
        media_epoch: datetime | None = None,
        on_punch: Callable[[str], None] | None = None,
        pending: PendingEvents | None = None,
        open_faults: set[str] | None = None,
        screen: Any = None,
        today: TodayPunches | None = None,
    ):
        assert cfg.attendance is not None
        # The kiosk screen (agent/screen.py ScreenHub): look(dict) and frame(jpeg bytes).
        self.screen = screen
        # Components with a device.fault not yet followed by device.recovered. Shared by the
        # workers of one kiosk: a recognition process respawned for a camera that stays stuck
        # would otherwise record a new fault every time (about one a minute).
        self.open_faults = open_faults if open_faults is not None else set()
        self.name = name
        self.cfg = cfg
        self.outbox = outbox
        self.media_epoch = media_epoch
        self.debounce_file = debounce_path(cfg.device.data_dir)
        horizon = float(cfg.attendance.debounce_s)
        stored = load_debounce(self.debounce_file, horizon)
        # staff id -> time.time() of the last punch, as stored (only those still in window)
        self._punch_walls = {sid: time.time() - ago for sid, ago in stored.items()}
        # staff id -> seconds since the punch, as stored; _spec() lays self.punches over it
        self.debounce_seed = stored
        self.on_punch = on_punch
        self.isolation = cfg.attendance.isolation
        self.ended = threading.Event()
        self.punches: dict[str, float] = {}  # staff id -> time.monotonic() of the punch
        self._stop = threading.Event()
        self._activity = time.monotonic()
        self._health: dict[str, Any] = {"state": "starting"}
        self.pending = pending if pending is not None else PendingEvents()
        # Today's punches for the kiosk page ("your punches today"); shared by the workers
        # of one kiosk like ``pending``.
        self.today = (
            today if today is not None else TodayPunches.load(today_path(cfg.device.data_dir))
        )
        self.tz = ZoneInfo(cfg.device.timezone)
        self._proc: Any = None
        self._proc_stop: Any = None
        self._queue: Any = None
        self._threads: list[threading.Thread] = []

    def _spec(self) -> dict[str, Any]:
        assert self.cfg.attendance is not None
        now = time.monotonic()
        return {
            "attendance": self.cfg.attendance.model_dump(mode="json"),
            "data_dir": str(self.cfg.device.data_dir),
            "timezone": self.cfg.device.timezone,
            "media_epoch": self.media_epoch.isoformat() if self.media_epoch else None,
            "debounce_seed": {
                **self.debounce_seed,
                **{sid: now - t for sid, t in self.punches.items()},
            },
            "log_level": logging.getLogger().getEffectiveLevel(),
            "parent_pid": os.getpid(),
            # 0: the recognition loop encodes no preview frame at all (docs/attendance.md).
            "preview_fps": self.cfg.screen.preview_fps if self._preview_wanted else 0,
            "preview_width": self.cfg.screen.preview_width,
            # The child clears a fault it did not see itself (agent/recognition.py).
            "open_faults": sorted(self.open_faults),
        }

    @property
    def _preview_wanted(self) -> bool:
        """Preview frames only for a page that shows them ([screen] preview, preview_fps):
        with the preview off no frame is downscaled or JPEG-encoded."""
        screen = self.cfg.screen
        return self.screen is not None and screen.preview and screen.preview_fps > 0

    def start(self) -> None:
        self._activity = time.monotonic()
        assert self.cfg.attendance is not None
        from agent.schedule_file import schedule_status

        # In the parent's log too, not only the recognition child's.
        text, warn = schedule_status(
            self.cfg.device.data_dir, datetime.now(ZoneInfo(self.cfg.device.timezone)).date()
        )
        (logger.warning if warn else logger.info)("schedule: %s", text)
        if self.isolation == "process":
            ctx = mp.get_context("spawn")
            self._queue = ctx.Queue()
            # Stopping never touches a lock the child may hold: the child watches the read
            # end of this pipe, and the parent closes the write end (agent/stopflag.py).
            child_end, self._proc_stop = ctx.Pipe(duplex=False)
            # Preview frames for the kiosk screen: a second queue holding two at most, so
            # the child drops frames rather than waits and events never queue behind images.
            preview_q = ctx.Queue(maxsize=2) if self._preview_wanted else None
            self._proc = ctx.Process(
                target=child_main,
                args=(self._spec(), self._queue, child_end, preview_q),
                name=f"hall-agent-{self.name}",
                daemon=True,
            )
            self._proc.start()
            child_end.close()  # only the child's copy may remain, or EOF never comes
            drain = threading.Thread(target=self._drain, name=f"{self.name}-drain", daemon=True)
            self._threads = [drain]
            if preview_q is not None:
                self._threads.append(
                    threading.Thread(
                        target=self._drain_preview,
                        args=(preview_q,),
                        name=f"{self.name}-preview",
                        daemon=True,
                    )
                )
        else:
            from agent.stopflag import StopFlag

            self._proc_stop = StopFlag()
            loop = threading.Thread(
                target=run_loop,
                args=(
                    self._spec(),
                    self._handle,
                    self._proc_stop,
                    self.screen.frame if self._preview_wanted else None,
                ),
                name=f"{self.name}-loop",
                daemon=True,
            )
            retry = threading.Thread(
                target=self._retry_loop, name=f"{self.name}-retry", daemon=True
            )
            self._threads = [loop, retry]
        for t in self._threads:
            t.start()

    def _drain(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self._queue.get(timeout=0.5)
            except queue.Empty:
                self._flush_retry()
                continue
            except (EOFError, OSError):
                break
            try:
                self._handle(msg)
            except Exception:  # one bad message must not end the drain (and lose the rest)
                logger.exception("attendance: message %r not handled", msg[:2])

    def _drain_preview(self, preview_q: Any) -> None:
        while not self._stop.is_set():
            try:
                jpeg = preview_q.get(timeout=0.5)
            except queue.Empty:
                continue
            except (EOFError, OSError, ValueError):
                break
            self.screen.frame(jpeg)

    def _retry_loop(self) -> None:
        while not self._stop.wait(0.5):
            self._flush_retry()

    def _handle(self, msg: tuple) -> None:
        self._activity = time.monotonic()
        kind = msg[0]
        if kind == "event":
            _, event_type, data, at = msg
            if not self._fault_is_news(event_type, data):
                return
            self._record(event_type, data, datetime.fromisoformat(at))
        elif kind == "health":
            self._health = {"state": msg[1].get("state", "ok"), **msg[1]}
        elif kind == "look":
            if self.screen is not None:
                self.screen.look(self._with_today(msg[1]))
        elif kind == "ended":
            self.ended.set()
        elif kind == "error":
            self._health = {"state": "fault", "detail": msg[1]}

    def _with_today(self, look: dict[str, Any]) -> dict[str, Any]:
        """A punch or repeat look with the person's punches of today (the page lists them).

        The recognition sends the punch's event before its look, so the punch is in already.
        """
        sid = look.get("staff_id")
        if look.get("kind") not in ("punch", "repeat") or not sid:
            return look
        punches = self.today.of(str(sid))
        today = [{"slot": slot, "status": st, "at": at.isoformat()} for slot, st, at in punches]
        return {**look, "today": today}

    def _fault_is_news(self, event_type: str, data: dict[str, Any]) -> bool:
        """False for a repeated fault (or a recovery without a fault) of the same component."""
        component = str(data.get("component"))
        if event_type == EventType.FAULT:
            if component in self.open_faults:
                logger.info(
                    "%s still faulty (%s); not recorded again", component, data.get("detail")
                )
                return False
            self.open_faults.add(component)
        elif event_type == EventType.RECOVERED:
            if component not in self.open_faults:
                return False
            self.open_faults.discard(component)
        return True

    def _record(self, event_type: str, data: dict[str, Any], at: datetime) -> None:
        with self.pending.lock:
            self.pending.items.append((event_type, data, at, dedupe_key_for(event_type, data, at)))
        if not self._stop.is_set():  # stop() flushes once, with a bound, at its end
            self._flush_retry()
        if event_type == EventType.PUNCH:
            if self.screen is not None:  # the list exists only for the page to show
                self.today.record(
                    data["staff_id"], data["slot"], data["status"], at.astimezone(self.tz)
                )
            self.punches[data["staff_id"]] = time.monotonic()
            assert self.cfg.attendance is not None
            now = time.time()
            horizon = self.cfg.attendance.debounce_s
            self._punch_walls = {
                sid: t
                for sid, t in self._punch_walls.items()
                if now - t < horizon and t <= now + FUTURE_SLACK_S  # clock stepped back
            }
            self._punch_walls[data["staff_id"]] = now
            save_debounce(self.debounce_file, self._punch_walls)
            if self.on_punch:
                self.on_punch(data["staff_id"])

    def _flush_retry(self) -> None:
        # A full disk or a locked database must not lose a punch: keep it and try again
        # (docs/topics.md outbox). sqlite3.Error is what a locked or damaged database raises
        # below the outbox's own errors.
        # The lock guards the buffer only, never an append: an append may wait out SQLite's
        # 30 s busy timeout, and a stop() (the supervisor's thread) waiting for the lock that
        # long starved the systemd watchdog. Two flushers may send the
        # same head item; its stable dedupe key makes the second append find the first row.
        pending = self.pending
        while True:
            with pending.lock:
                if not pending.items:
                    return
                head = pending.items[0]
                waiting = len(pending.items)
            event_type, data, at, key = head
            try:
                self.outbox.append(event_type, data, at=at, dedupe_key=key)
            except (OutboxError, sqlite3.Error) as exc:
                logger.warning(
                    "attendance: %s not recorded yet (%d waiting): %s", event_type, waiting, exc
                )
                return
            except (ValueError, TypeError) as exc:
                # The outbox refuses this event's data for good (not JSON): retrying can
                # never succeed, and keeping it would block every event behind it.
                logger.error("attendance: %s dropped, not storable: %s", event_type, exc)
            with pending.lock:
                if pending.items and pending.items[0] is head:
                    pending.items.popleft()

    def _final_flush(self, timeout: float) -> None:
        """One last flush that gives up after ``timeout``: stop() must return in bounded time
        (the supervisor calls it from the thread that feeds the watchdog). A flush still
        waiting for the database finishes on its own; what it has not stored stays in the
        buffer."""
        flusher = threading.Thread(
            target=self._flush_retry, name=f"{self.name}-final-flush", daemon=True
        )
        flusher.start()
        flusher.join(timeout)
        if flusher.is_alive():
            logger.warning(
                "attendance: the outbox did not answer within %.1f s at stop; %d events wait",
                timeout,
                len(self.pending.items),
            )

    def stop(self, timeout: float = 5.0) -> None:
        if self._proc_stop is not None:
            # A pipe's close (process) or a plain flag (thread): neither waits for anything.
            if self._proc is not None:
                self._proc_stop.close()
            else:
                self._proc_stop.set()
        if self._proc is not None:
            self._proc.join(timeout)
            if self._proc.is_alive():
                logger.warning("attendance: recognition process did not stop; terminating")
                self._proc.terminate()
                self._proc.join(2.0)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(2.0)
        self._stop.set()
        for t in self._threads:
            t.join(timeout)
        if (
            self._proc is None
            and self._proc_stop is not None
            and not any(t.is_alive() for t in self._threads)
        ):
            self._proc_stop.close()  # the thread-mode flag's pipe, once nobody waits on it
        if self._queue is not None:
            # Whatever the child sent before it exited still goes into the outbox (or the
            # buffer: _handle's own flush may fail, the message is kept either way).
            while True:
                try:
                    msg = self._queue.get(timeout=0.2)
                except (queue.Empty, EOFError, OSError, ValueError):
                    break
                try:
                    self._handle(msg)
                except Exception:  # keep draining: every later message still counts
                    logger.exception("attendance: message %r not handled", msg[:2])
        self._final_flush(timeout)
        self.pending.save()  # what the outbox did not take survives the agent's exit

    @property
    def planned_exit(self) -> bool:
        """The recognition process left on purpose (exit 75: camera readers stuck in the
        driver, freed only by a new process), so the supervisor restarts it without counting
        it against ``max_restarts`` (agent/supervisor.py)."""
        proc = self._proc
        return proc is not None and not proc.is_alive() and proc.exitcode == EXIT_RESPAWN

    def alive(self) -> bool:
        if self._proc is not None and not self._proc.is_alive():
            return False
        return all(t.is_alive() for t in self._threads)

    def last_activity(self) -> float:
        return self._activity

    def health(self) -> dict[str, Any]:
        return dict(self._health)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None


def attendance_worker_factories(
    cfg: AgentConfig, outbox: Outbox, screen: Any = None
) -> dict[str, Callable[[], AttendanceWorker]]:
    """For agent/runtime.py: one camera pipeline per kiosk.

    Debounce survives a restart of the worker by the supervisor: the new worker starts from
    the previous one's punch times.
    """
    state: dict[str, AttendanceWorker] = {}
    open_faults: set[str] = set()
    # Outlives every worker of this kiosk and, through its file, the
    # agent.
    pending = PendingEvents(saved_to=pending_path(cfg.device.data_dir))
    pending.load()
    today = TodayPunches.load(today_path(cfg.device.data_dir))

    def make() -> AttendanceWorker:
        prev = state.get("w")
        worker = AttendanceWorker(
            cfg,
            outbox,
            pending=pending,
            open_faults=open_faults,
            screen=screen,
            today=today,
        )
        if prev is not None:
            worker.punches = dict(prev.punches)
        state["w"] = worker
        return worker

    return {"attendance": make}
