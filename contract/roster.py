"""The staff roster: the retained payload on ``{prefix}/{site}/roster`` (docs/topics.md "Roster").

The centre validates a roster before it stores and publishes it, and every device validates
it again on arrival, with the same function: a roster one side accepts, the other does too.
Its canonical text (:func:`roster_json`) is what the centre publishes and stores, so that a
republish is byte-identical to the first publish.
"""

from __future__ import annotations

import contextlib
import json
import re
from datetime import date
from typing import Any, Literal

from contract.ids import WINDOW_RE, is_staff_id
from contract.topics import PAYLOAD_VERSION

Role = Literal["staff", "chief"]

MAX_ROSTER_BYTES = 4 * 1024 * 1024
ROSTER_KEYS = ("v", "version", "staff")
# A staff entry's keys, in the order docs/topics.md writes them (and roster_json keeps).
STAFF_ORDER = ("id", "name", "role", "window", "starts", "ends")
ROSTER_STAFF_KEYS = frozenset(STAFF_ORDER)
ROLES: tuple[Role, ...] = ("staff", "chief")
ROSTER_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class RosterError(ValueError):
    """The roster payload does not follow docs/topics.md; the message says where and why."""


def _printable(text: str) -> bool:
    # Control characters cannot show on a pad or the hall board, and NUL or a lone surrogate
    # cannot be stored in PostgreSQL's jsonb: refused on every side alike.
    return not any(ord(c) < 0x20 or ord(c) == 0x7F or 0xD800 <= ord(c) <= 0xDFFF for c in text)


def validate_roster(obj: Any) -> dict[str, Any]:
    """Return the roster when it is a valid roster payload, else raise :class:`RosterError`.

    ``{"v":1,"version":N,"staff":[{"id","name","role","window","starts","ends"}]}``; no other
    key is allowed, so biometric data can never travel in it by mistake (PIPL art. 28-29).
    ``starts``/``ends`` (optional, ``YYYY-MM-DD``) bound the days a person is assessed on.
    """
    if not isinstance(obj, dict):
        raise RosterError(f"expected a JSON object, got {type(obj).__name__}")
    extra = set(obj) - set(ROSTER_KEYS)
    if extra:
        raise RosterError(f"unknown key(s) {sorted(extra)}; expected v, version, staff")
    if obj.get("v") != PAYLOAD_VERSION:
        raise RosterError(f"v: expected {PAYLOAD_VERSION}, got {obj.get('v')!r}")
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
        extra = set(entry) - ROSTER_STAFF_KEYS
        if extra:
            raise RosterError(
                f"{where}: unknown key(s) {sorted(extra)}; expected only id, name, role, "
                "window, starts, ends (no biometric data travels)"
            )
        sid = entry.get("id")
        if not is_staff_id(sid):
            raise RosterError(f"{where}.id: expected a staff id such as 'S0012', got {sid!r}")
        if sid in seen:
            raise RosterError(f"{where}.id: {sid!r} appears twice")
        seen.add(sid)
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 64:
            raise RosterError(f"{where}.name: expected a name of 1-64 characters, got {name!r}")
        if not _printable(name):
            raise RosterError(f"{where}.name: expected printable text, got {name!r}")
        if entry.get("role") not in ROLES:
            raise RosterError(f"{where}.role: expected one of {ROLES}, got {entry.get('role')!r}")
        window = entry.get("window")
        if window is not None and (not isinstance(window, str) or not WINDOW_RE.match(window)):
            raise RosterError(f"{where}.window: expected a window label or null, got {window!r}")
        _check_employment(entry, where)
    return obj


def _roster_date(entry: dict[str, Any], key: str, where: str) -> date | None:
    value = entry.get(key)
    if value is None:
        return None
    if isinstance(value, str) and ROSTER_DATE_RE.match(value):
        with contextlib.suppress(ValueError):
            return date.fromisoformat(value)
    raise RosterError(f"{where}.{key}: expected a date YYYY-MM-DD (e.g. 2026-11-16), got {value!r}")


def _check_employment(entry: dict[str, Any], where: str) -> None:
    """``starts``/``ends``: the first and last day the person works at the hall (inclusive)."""
    starts = _roster_date(entry, "starts", where)
    ends = _roster_date(entry, "ends", where)
    if starts is not None and ends is not None and starts > ends:
        raise RosterError(
            f"{where}.ends: {entry['ends']} is before starts {entry['starts']}; "
            "expected starts <= ends"
        )


def parse_roster(payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_ROSTER_BYTES:
        raise RosterError(f"{len(payload)} bytes; expected at most {MAX_ROSTER_BYTES}")
    try:
        obj = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise RosterError(f"not JSON: {exc}") from None
    return validate_roster(obj)


def roster_json(roster: dict[str, Any]) -> str:
    """The roster as published and stored: docs/topics.md key order, compact UTF-8 JSON.

    One canonical text whatever the source (a file, SQLite's text, PostgreSQL's jsonb, which
    reorders keys), so a republish from either store is byte-identical to the first publish.
    ``roster`` must be validated (:func:`validate_roster`): only the contract's keys.
    """
    canonical = {
        "v": roster["v"],
        "version": roster["version"],
        "staff": [{k: e[k] for k in STAFF_ORDER if k in e} for e in roster["staff"]],
    }
    return json.dumps(canonical, ensure_ascii=False, separators=(",", ":"))
