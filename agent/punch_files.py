"""What a kiosk keeps on disk besides the outbox and the gallery (docs/attendance.md).

- :class:`PendingEvents`: events the recognition decided but the outbox did not take yet (it
  refused, e.g. disk full); kept in memory across worker restarts and saved at stop, so
  nothing decided is lost while the outbox refuses.
- The debounce file: each person's last punch time, so that someone still standing in front
  of the camera during a restart of the agent is not punched twice.
- :class:`TodayPunches`: today's punches (staff id, slot, status, time), so the kiosk page
  shows a person their own punches of the day.

All are replaced with the one durable-write routine (agent/durable.py).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.durable import write_durably
from contract import EventType

logger = logging.getLogger(__name__)


@dataclass
class PendingEvents:
    """Events not yet in the outbox (disk full, database locked), one buffer per kiosk.

    The factory hands the same buffer to every worker it builds, so a restart by the
    supervisor while the outbox refuses loses nothing. Each item
    carries its dedupe key, made once, so a retry after a partial failure (committed, then an
    error) finds the first row instead of adding a second one. The lock guards
    the deque only; two threads may send the same head item, and the dedupe key makes that
    harmless. What is still here when a worker stops is saved to ``saved_to``
    (``<data_dir>/attendance-pending.json``) and read back by the next agent start.
    """

    items: deque[tuple[str, dict[str, Any], datetime, str]] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)
    saved_to: Path | None = None  # the file holding a copy of the items, if any

    def save(self) -> None:
        """Write the buffer to ``saved_to`` (or remove the file once the buffer is empty).

        If the file cannot be written, each punch that would be lost is logged at ERROR
        with its staff id and time, so it can be entered by hand.
        """
        if self.saved_to is None:
            return
        with self.lock:
            items = list(self.items)
        if not items:
            try:
                self.saved_to.unlink(missing_ok=True)
            except OSError as exc:
                logger.warning("attendance: %s not removed: %s", self.saved_to, exc)
            return
        rows = [
            {"type": t, "data": data, "at": at.isoformat(), "dedupe_key": key}
            for t, data, at, key in items
        ]
        try:
            write_json_atomic(self.saved_to, rows)
        except (OSError, ValueError, TypeError) as exc:
            logger.error("attendance: %d events not saved to %s: %s", len(rows), self.saved_to, exc)
            for t, data, at, _ in items:
                logger.error(
                    "attendance: LOST %s staff_id=%s at=%s", t, data.get("staff_id"), at.isoformat()
                )
            return
        logger.warning(
            "attendance: %d events the outbox did not take saved to %s for the next start",
            len(rows),
            self.saved_to,
        )

    def load(self) -> None:
        """Put the events a previous run saved back in front of the buffer.

        The file stays until they are stored (the next save() after the buffer empties
        removes it): deleting it now would lose them if the agent died before storing them;
        reading them twice only finds their dedupe keys already stored.
        """
        path = self.saved_to
        if path is None:
            return
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(rows, list):
                raise ValueError("expected a list of events")
            loaded = [
                (
                    str(r["type"]),
                    dict(r["data"]),
                    datetime.fromisoformat(r["at"]),
                    str(r["dedupe_key"]),
                )
                for r in rows
            ]
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, KeyError) as exc:
            logger.error("attendance: saved events in %s unreadable (%s); left there", path, exc)
            return
        with self.lock:
            self.items.extendleft(reversed(loaded))
        logger.warning("attendance: %d events saved at the last stop will be recorded", len(loaded))


def write_json_atomic(path: Path, obj: Any) -> None:
    """``obj`` as JSON at ``path``, durably (agent/durable.py): the old file or the new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_durably(path, json.dumps(obj, ensure_ascii=False).encode("utf-8"))


def pending_path(data_dir: Path) -> Path:
    return Path(data_dir) / "attendance-pending.json"


def dedupe_key_for(event_type: str, data: dict[str, Any], at: datetime) -> str:
    """A punch is one person at one first-seen time; any other event gets a fresh key."""
    if event_type == EventType.PUNCH:
        return f"punch:{data['staff_id']}:{at.isoformat()}"
    return f"{event_type}:{uuid.uuid4().hex}"


FUTURE_SLACK_S = 60.0  # debounce times further ahead than this predate a clock step back


def debounce_path(data_dir: Path) -> Path:
    return Path(data_dir) / "attendance-debounce.json"


def load_debounce(path: Path, horizon_s: float) -> dict[str, float]:
    """``{staff id: seconds since their last punch}`` from the file, within ``horizon_s``.

    Debounce must survive a restart of the whole agent: someone still
    standing in front of the camera during a restart must not be punched twice. Wall-clock
    times are stored; a damaged file only costs that protection, never the start.
    """
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict):
            raise ValueError("expected an object {staff id: unix time}")
        now = time.time()
        # A time more than a minute in the future was written before the clock was stepped
        # back (NTP after a dead RTC): it would never expire, so it is dropped. A little
        # ahead is clock jitter and counts as "just now".
        ago = {
            str(k): max(0.0, now - float(v))
            for k, v in raw.items()
            if float(v) <= now + FUTURE_SLACK_S
        }
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, TypeError) as exc:
        logger.warning("debounce state %s unreadable (%s); starting without it", path, exc)
        return {}
    return {sid: a for sid, a in ago.items() if a < horizon_s}


def save_debounce(path: Path, walls: dict[str, float]) -> None:
    """Atomically (a unique temporary file, fsync, rename, fsync of the directory), so a
    power cut leaves the old or the new one and two writers never share a temporary file."""
    try:
        write_json_atomic(path, walls)
    except OSError as exc:  # losing this only weakens debounce across a restart
        logger.warning("debounce state %s not saved: %s", path, exc)


TODAY_MAX_PUNCHES = 20_000  # far above a hall's day; bounds the file if a clock runs wild


def today_path(data_dir: Path) -> Path:
    return Path(data_dir) / "attendance-today.json"


@dataclass
class TodayPunches:
    """The kiosk's own record of today's punches, for the page's "your punches today".

    The outbox deletes what the centre acknowledged, so the page cannot ask it. This holds
    staff id, slot, status and time of each punch of one day (the hall's date) and nothing
    else: no image, no encoding, no name (PIPL art. 28-29). A punch of a new day drops the
    previous day's; the file (``<data_dir>/attendance-today.json``) survives an agent
    restart within the day and is written durably (agent/durable.py).
    """

    saved_to: Path
    day: str = ""  # ISO date of the punches held
    punches: list[tuple[str, str, str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def load(cls, path: Path) -> TodayPunches:
        """The record in ``path``; an unreadable file is logged and starts an empty day."""
        record = cls(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            day = str(raw["day"])
            punches = [(str(s), str(sl), str(st), str(at)) for s, sl, st, at in raw["punches"]]
        except FileNotFoundError:
            return record
        except (OSError, ValueError, TypeError, KeyError) as exc:
            logger.warning("today's punches %s unreadable (%s); starting an empty day", path, exc)
            return record
        record.day, record.punches = day, punches[-TODAY_MAX_PUNCHES:]
        return record

    def record(self, staff_id: str, slot: str, status: str, at: datetime) -> None:
        """Add one punch (``at`` in the hall's time zone) and save; a failed save is logged:
        it costs only the page's list, never the punch (that is in the outbox)."""
        day = at.date().isoformat()
        with self.lock:
            if day != self.day:  # the first punch of a new day (or a stepped clock)
                self.day, self.punches = day, []
            self.punches.append((staff_id, slot, status, at.isoformat()))
            del self.punches[:-TODAY_MAX_PUNCHES]
            body = {"day": self.day, "punches": self.punches}
            try:
                write_json_atomic(self.saved_to, body)
            except OSError as exc:
                logger.warning("today's punches %s not saved: %s", self.saved_to, exc)

    def of(self, staff_id: str) -> list[tuple[str, str, datetime]]:
        """``(slot, status, at)`` of ``staff_id``'s punches of the record's day, in order.

        The page asks right after a punch or a repeat (a punch within ``debounce_s``), so the
        record's day is that punch's day."""
        with self.lock:
            return [
                (slot, status, datetime.fromisoformat(at))
                for sid, slot, status, at in self.punches
                if sid == staff_id
            ]
