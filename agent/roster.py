"""The staff roster on a device: load it, watch it, look names up (docs/topics.md, roster).

The centre publishes the roster retained on ``{prefix}/{site}/roster``; the downlink
(agent/link/downlink.py) validates it with :func:`contract.validate_roster` and writes it to
``<data_dir>/roster.json`` in exactly the payload format. Everything on the device that needs
it (the pad display's names, enrolment, the kiosk's gallery pruning) reads it through this
module, which imports neither paho nor MQTT.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from contract import validate_roster

logger = logging.getLogger(__name__)

ROSTER_FILE = "roster.json"


def roster_path(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / ROSTER_FILE


def load_roster(data_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The last good roster stored on this device, or None when there is none (yet).

    A damaged file counts as no roster (logged): it must never stop a kiosk or a pad.
    """
    path = roster_path(data_dir)
    try:
        return validate_roster(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError) as exc:
        logger.error("roster %s unreadable (%s); ignoring it", path, exc)
        return None


def staff_by_id(data_dir: str | os.PathLike[str]) -> dict[str, dict[str, Any]] | None:
    """``{staff id: entry}`` of the stored roster; None when there is no roster."""
    roster = load_roster(data_dir)
    if roster is None:
        return None
    return {entry["id"]: entry for entry in roster["staff"]}


class RosterWatch:
    """The stored roster, reloaded when its file changes (mtime). Thread-safe."""

    def __init__(self, data_dir: str | os.PathLike[str]):
        self.data_dir = Path(data_dir)
        self.path = roster_path(data_dir)
        self._mtime: int | None = None
        self._staff: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def _current_mtime(self) -> int | None:
        try:
            return self.path.stat().st_mtime_ns
        except OSError:
            return None

    def refresh(self) -> bool:
        """Reload when the file changed; True when it did (including appearing/vanishing)."""
        with self._lock:
            mtime = self._current_mtime()
            if mtime == self._mtime:
                return False
            self._mtime = mtime
            self._staff = (staff_by_id(self.data_dir) or {}) if mtime is not None else {}
            return True

    def name(self, staff_id: str | None) -> str:
        """The display name of ``staff_id``, or the id itself when the roster lacks it."""
        if not staff_id:
            return ""
        self.refresh()
        with self._lock:
            entry = self._staff.get(staff_id)
        return str(entry["name"]) if entry else staff_id
