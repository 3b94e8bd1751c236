"""Downlink: the staff roster from the centre (docs/topics.md, ``{prefix}/{site}/roster``).

The roster is retained on the broker, so a device gets the current one on every connect. It is
validated (:func:`contract.parse_roster`) and written durably to ``<data_dir>/roster.json``
in exactly the payload format; a bad roster, or one that cannot be written (disk full,
read-only), is logged and kept in ``last_error`` (shown in the uplink's status), and the last
good one stays. Face encodings never travel (PIPL art. 28-29): a roster entry with any key
beyond ``id/name/role/window`` is refused as a whole, so a centre that starts sending
biometric data by mistake cannot get it stored on a device.

This module only writes the file; the device reads it through :mod:`agent.roster`.
"""

from __future__ import annotations

import json
import logging
import os

from agent.durable import write_durably
from agent.roster import load_roster, roster_path
from contract import RosterError, parse_roster

logger = logging.getLogger(__name__)


class RosterKeeper:
    """Validates incoming roster payloads and keeps the last good one on disk."""

    def __init__(self, data_dir: str | os.PathLike[str]):
        self.path = roster_path(data_dir)
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
            # Stored in exactly the docs/topics.md payload format (re-serialised from the
            # validated object so that the file is canonical UTF-8 JSON).
            write_durably(self.path, json.dumps(roster, ensure_ascii=False).encode("utf-8"))
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
