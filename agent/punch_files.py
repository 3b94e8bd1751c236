"""What a kiosk keeps on disk besides the outbox and the gallery (docs/attendance.md).

- :class:`PendingEvents`: events the recognition decided but the outbox did not take yet (it
  refused, e.g. disk full); kept in memory across worker restarts and saved at stop, so
  nothing decided is lost while the outbox refuses.
- The debounce file: each person's last punch time, so that someone still standing in front
  of the camera during a restart of the agent is not punched twice.

Both are replaced with the one durable-write routine (agent/durable.py).
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
    if event_type == "attendance.punch":
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
