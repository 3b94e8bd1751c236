"""Downlink: the staff roster from the centre (CONTRACT §3, topic ``{prefix}/{site}/roster``).

The roster is retained on the broker, so a device gets the current one on every connect. It is
validated and written atomically to ``<data_dir>/roster.json`` in exactly the CONTRACT §3
payload format; a bad roster, or one that cannot be written (disk full, read-only), is logged
and kept in ``last_error`` (shown in the uplink's status), and the last good one stays.
Face encodings never travel (CONTRACT §3; PIPL art. 28-29): a roster entry with any key
beyond ``id/name/role/window`` is refused as a whole, so a centre that starts sending
biometric data by mistake cannot get it stored on a device.

:func:`load_roster` is all the kiosk and window code need: it imports neither paho nor MQTT.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

ROSTER_FILE = "roster.json"
MAX_ROSTER_BYTES = 4 * 1024 * 1024
STAFF_KEYS = {"id", "name", "role", "window"}
ROLES = ("staff", "chief")
_STAFF_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_WINDOW = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,15}$")  # agent.config.WINDOW_PATTERN


class RosterError(ValueError):
    """The roster payload does not follow CONTRACT §3; the message says where and why."""


def validate_roster(obj: Any) -> dict[str, Any]:
    """Return the roster when it follows CONTRACT §3, else raise :class:`RosterError`."""
    if not isinstance(obj, dict):
        raise RosterError(f"expected a JSON object, got {type(obj).__name__}")
    extra = set(obj) - {"v", "version", "staff"}
    if extra:
        raise RosterError(f"unknown key(s) {sorted(extra)}; expected v, version, staff")
    if obj.get("v") != 1:
        raise RosterError(f"v: expected 1, got {obj.get('v')!r}")
    version = obj.get("version")
    # Bounded by what both stores hold (SQLite INTEGER and PostgreSQL bigint are 64-bit).
    if not isinstance(version, int) or isinstance(version, bool) or not 0 <= version < 2**63:
        raise RosterError(f"version: expected an integer from 0 to 2^63-1, got {version!r}")
    staff = obj.get("staff")
    if not isinstance(staff, list):
        raise RosterError(f"staff: expected a list, got {type(staff).__name__}")
    seen: set[str] = set()
    for i, entry in enumerate(staff, start=1):
        where = f"staff[{i}]"
        if not isinstance(entry, dict):
            raise RosterError(f"{where}: expected an object, got {type(entry).__name__}")
        extra = set(entry) - STAFF_KEYS
        if extra:
            raise RosterError(
                f"{where}: unknown key(s) {sorted(extra)}; expected only id, name, role, "
                "window (no biometric data travels, CONTRACT §3)"
            )
        sid = entry.get("id")
        if not isinstance(sid, str) or not _STAFF_ID.match(sid):
            raise RosterError(f"{where}.id: expected a staff id such as 'S0012', got {sid!r}")
        if sid in seen:
            raise RosterError(f"{where}.id: {sid!r} appears twice")
        seen.add(sid)
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 64:
            raise RosterError(f"{where}.name: expected a name of 1-64 characters, got {name!r}")
        if any(ord(c) < 0x20 or ord(c) == 0x7F or 0xD800 <= ord(c) <= 0xDFFF for c in name):
            # Control characters cannot show on a pad, and NUL or a lone surrogate cannot be
            # stored in PostgreSQL's jsonb: refuse on both stores alike.
            raise RosterError(f"{where}.name: expected printable text, got {name!r}")
        if entry.get("role") not in ROLES:
            raise RosterError(f"{where}.role: expected one of {ROLES}, got {entry.get('role')!r}")
        window = entry.get("window")
        if window is not None and (not isinstance(window, str) or not _WINDOW.match(window)):
            raise RosterError(f"{where}.window: expected a window label or null, got {window!r}")
    return obj


def parse_roster(payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_ROSTER_BYTES:
        raise RosterError(f"{len(payload)} bytes; expected at most {MAX_ROSTER_BYTES}")
    try:
        obj = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RosterError(f"not JSON: {exc}") from None
    return validate_roster(obj)


def load_roster(data_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The last good roster stored on this device, or None when there is none (yet)."""
    path = Path(data_dir) / ROSTER_FILE
    try:
        return validate_roster(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # a damaged file: treat as absent, never crash a kiosk
        logger.error("roster %s unreadable (%s); ignoring it", path, exc)
        return None


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` so that a reader sees the old file or the new one, never a torn one."""
    fd, tmp = tempfile.mkstemp(prefix=".roster-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


class RosterKeeper:
    """Validates incoming roster payloads and keeps the last good one on disk."""

    def __init__(self, data_dir: str | os.PathLike[str]):
        self.path = Path(data_dir) / ROSTER_FILE
        current = load_roster(data_dir)
        self.version: int | None = None if current is None else current["version"]
        self.last_error: str | None = None

    def handle(self, payload: bytes) -> bool:
        """Store a roster payload if valid; returns True when the file was (re)written."""
        if not payload:
            return False  # the retained roster was cleared: keep the last good one
        try:
            roster = parse_roster(payload)
        except RosterError as exc:
            self.last_error = f"roster refused: {exc}"
            logger.error("%s; keeping version %s", self.last_error, self.version)
            return False
        if self.version is not None and roster["version"] < self.version:
            # Accepted anyway: the retained roster is the centre's truth (it may have been
            # re-created), but a step backwards is worth a line in the log.
            logger.warning(
                "roster version went back from %s to %s", self.version, roster["version"]
            )
        if roster["version"] == self.version and load_roster(self.path.parent) == roster:
            return False  # the same retained roster again after a reconnect
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Stored in exactly the CONTRACT §3 payload format (re-serialised from the
            # validated object so that the file is canonical UTF-8 JSON).
            _write_atomic(self.path, json.dumps(roster, ensure_ascii=False).encode("utf-8"))
        except OSError as exc:
            # Disk full, read-only or not ours: the roster is retained, so it comes again on
            # every reconnect; raising would end the uplink each time. Keep the last good
            # file, show the fault in status (Uplink.health) and try again next delivery.
            self.last_error = f"roster version {roster['version']} not stored in {self.path}: {exc}"
            logger.error("%s; keeping version %s", self.last_error, self.version)
            return False
        self.version = roster["version"]
        self.last_error = None
        logger.info("roster version %s stored (%d staff)", roster["version"], len(roster["staff"]))
        return True
