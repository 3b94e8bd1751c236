"""The hall's contract in code: event types and their data, ids, topics (docs/topics.md).

``contract`` is the leaf of the project: it imports nothing of it, so the device agent, the
drivers, the uplink, the central collector, the store's views and the reports all take the
shared vocabulary from here. This module holds the events, ids, topics and the roster
payload; :mod:`contract.config` the rules every config file follows (docs/config.md), and
:mod:`contract.schedule` the hall's hours and working days (regulation, docs/attendance.md).
A change here is a change of the wire format: bump ``PAYLOAD_VERSION`` and say so in
docs/topics.md.

:mod:`contract.site_thread` and :mod:`contract.sqlite_tx` are plumbing, not contract: a device
module that may not import ``sync`` and the centre both need them, and only here may both.
"""

from __future__ import annotations

import contextlib
import json
import re
from datetime import date
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

__version__ = "0.1.0"  # of the software; the status payload carries it
PAYLOAD_VERSION = 1  # the "v" of every MQTT payload (docs/topics.md)

# --- identifiers -------------------------------------------------------------------------------

# Site, device and topic-prefix ids: safe in an MQTT topic, a file name and a client id
# (docs/topics.md "Identifiers"). Topics are built only from ids that match this.
ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
# Staff ids: one rule for the pad's LOGIN payload (ASCII, at most 64 bytes, HallPad v1 0x20),
# the roster, the kiosk gallery and the reports.
STAFF_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
# Window labels as printed above the counter, e.g. "A03".
WINDOW_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,15}$"

ID_RE = re.compile(ID_PATTERN)
STAFF_ID_RE = re.compile(STAFF_ID_PATTERN)
WINDOW_RE = re.compile(WINDOW_PATTERN)
ROSTER_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
StaffId = Annotated[str, StringConstraints(pattern=STAFF_ID_PATTERN)]
Window = Annotated[str, StringConstraints(pattern=WINDOW_PATTERN)]
PadAddress = Annotated[int, Field(ge=1, le=247, strict=True)]  # RS-485 bus addresses
InviteId = Annotated[int, Field(ge=0, le=65535, strict=True)]  # 0 on the wire means "none"


def is_id(text: object) -> bool:
    return isinstance(text, str) and ID_RE.match(text) is not None


def is_staff_id(text: object) -> bool:
    return isinstance(text, str) and STAFF_ID_RE.match(text) is not None


# --- vocabulary --------------------------------------------------------------------------------


class EventType(StrEnum):
    PUNCH = "attendance.punch"
    FACE_REJECTED = "attendance.rejected"
    RATING = "rating.submitted"
    RATING_EXPIRED = "rating.expired"
    LOGIN = "window.login"
    LOGOUT = "window.logout"
    PAUSED = "window.paused"
    RESUMED = "window.resumed"
    FAULT = "device.fault"
    RECOVERED = "device.recovered"
    TEST = "device.test"


EVENT_TYPES = frozenset(t.value for t in EventType)

Slot = Literal["morning_in", "morning_out", "afternoon_in", "afternoon_out", "extra"]
PunchStatus = Literal["on_time", "late", "early_leave", "outside_hours", "holiday"]
Liveness = Literal["passed", "failed", "off"]
RejectReason = Literal["unknown_face", "liveness_failed", "low_quality"]
Clock = Literal["synced", "unsynced"]
Role = Literal["staff", "chief"]
# A component's state in the status message (docs/topics.md "Status").
ComponentState = Literal["ok", "degraded", "fault"]
# A kiosk camera's state as drivers/camera.py Camera.health reports it; "starting" is the
# attendance worker's until its first report. The kiosk page shows each (docs/attendance.md).
CameraState = Literal["starting", "ok", "recovering", "fault", "ended"]
# Why a face was not encoded (drivers/faces.py): a track of such faces is ``low_quality``,
# and the kiosk page tells the person what to change.
FaceQuality = Literal["too_small", "blurred", "turned"]

# The slots' headings: the regulation's four daily punches (in order: contract.schedule.DAILY_SLOTS)
# and "extra", a punch outside them.
SLOT_LABELS: dict[str, str] = {
    "morning_in": "上午上班",
    "morning_out": "上午下班",
    "afternoon_in": "下午上班",
    "afternoon_out": "下午下班",
    "extra": "其他",
}

# National 好差评 scheme: five levels, 5 best.
LEVEL_LABELS: dict[int, str] = {
    5: "非常满意",
    4: "满意",
    3: "基本满意",
    2: "不满意",
    1: "非常不满意",
}
POOR_LEVELS = frozenset({1, 2})  # 差评: reasons are asked for and followed up
# HallPad v1 reason bits 0-5, default labels (a site may override them in config).
DEFAULT_REASON_LABELS: tuple[str, ...] = (
    "态度不好",
    "办事效率低",
    "未一次性告知",
    "多次跑动",
    "流程繁琐",
    "其他",
)
PAUSED_TEXT = "暂停服务"

# --- event data --------------------------------------------------------------------------------

_STRICT = ConfigDict(extra="forbid", strict=True, frozen=True)
Number = Annotated[float, Field(allow_inf_nan=False, strict=False)]


# Every field is required, null where the type allows it: the devices always write every key
# (model_dump), so a missing key is a producer that does not follow docs/topics.md.
class PunchData(BaseModel):
    model_config = _STRICT
    staff_id: StaffId
    slot: Slot
    status: PunchStatus
    minutes_off: Annotated[int, Field(ge=0)] | None
    distance: Number | None
    liveness: Liveness
    # The centre's schedule version the kiosk classified by (docs/attendance.md "One
    # schedule"); null before its first. Optional, unlike the rest: punches recorded by a
    # kiosk before it knew of published schedules are still in outboxes.
    schedule_version: Annotated[int, Field(ge=1)] | None = None


class FaceRejectedData(BaseModel):
    model_config = _STRICT
    reason: RejectReason
    distance: Number | None


class RatingData(BaseModel):
    model_config = _STRICT
    window: Window
    pad: PadAddress
    staff_id: StaffId | None
    level: Annotated[int, Field(ge=1, le=5)]
    label: str
    reasons: list[Annotated[str, Field(max_length=64)]]
    invite_id: InviteId | None


class RatingExpiredData(BaseModel):
    model_config = _STRICT
    window: Window
    pad: PadAddress
    staff_id: StaffId | None
    invite_id: InviteId | None


class WindowData(BaseModel):
    """window.login / logout / paused / resumed."""

    model_config = _STRICT
    window: Window
    pad: PadAddress
    staff_id: StaffId | None


class FaultData(BaseModel):
    """device.fault / device.recovered; component is camera, pad:<addr>, disk, clock, ..."""

    model_config = _STRICT
    component: Annotated[str, Field(min_length=1, max_length=64)]
    detail: Annotated[str, Field(max_length=1024)]


class TestData(BaseModel):
    model_config = _STRICT
    note: Annotated[str, Field(max_length=1024)]


DATA_MODELS: dict[str, type[BaseModel]] = {
    EventType.PUNCH: PunchData,
    EventType.FACE_REJECTED: FaceRejectedData,
    EventType.RATING: RatingData,
    EventType.RATING_EXPIRED: RatingExpiredData,
    EventType.LOGIN: WindowData,
    EventType.LOGOUT: WindowData,
    EventType.PAUSED: WindowData,
    EventType.RESUMED: WindowData,
    EventType.FAULT: FaultData,
    EventType.RECOVERED: FaultData,
    EventType.TEST: TestData,
}


def event_data(event_type: str, model: BaseModel) -> dict[str, Any]:
    """The ``data`` object of an event, checked against its type's model.

    Producers call this so that a body that does not fit its type fails where it is made, not
    at the centre after a round trip.
    """
    expected = DATA_MODELS.get(event_type)
    if expected is None:
        raise ValueError(
            f"unknown event type {event_type!r}; expected one of {sorted(DATA_MODELS)}"
        )
    if not isinstance(model, expected):
        raise TypeError(f"{event_type}: expected {expected.__name__}, got {type(model).__name__}")
    return model.model_dump(mode="json")


# The models' compiled validators: the collector checks every event with them, and calling
# the validator directly skips model_validate's Python-level overhead (about a third).
_VALIDATORS = {t: m.__pydantic_validator__.validate_python for t, m in DATA_MODELS.items()}


def check_data(event_type: str, data: object) -> str | None:
    """None when ``data`` fits its type, else one line naming the field and what was expected."""
    validate = _VALIDATORS.get(event_type)
    if validate is None:
        return f"type: expected one of {sorted(EVENT_TYPES)}, got {event_type!r}"
    try:
        validate(data)
    except ValueError as exc:  # pydantic.ValidationError is a ValueError
        return _first_error(exc)
    return None


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    first = errors(include_url=False)[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "data"
    got = first.get("input")
    msg = str(first.get("msg", "invalid")).replace("Input should be", "expected")
    return f"data.{where}: {msg}, got {got!r:.80}"


# --- MQTT topics and payloads ------------------------------------------------------------------

TopicKind = Literal["events", "ack", "status"]


def device_topic(prefix: str, site: str, device: str, kind: TopicKind) -> str:
    """``{prefix}/{site}/{device}/{kind}``; every part must be an id (never a display name)."""
    for name, value in (("prefix", prefix), ("site", site), ("device", device)):
        if not is_id(value):
            raise ValueError(f"{name}: expected an id matching {ID_PATTERN}, got {value!r}")
    return f"{prefix}/{site}/{device}/{kind}"


def roster_topic(prefix: str, site: str) -> str:
    for name, value in (("prefix", prefix), ("site", site)):
        if not is_id(value):
            raise ValueError(f"{name}: expected an id matching {ID_PATTERN}, got {value!r}")
    return f"{prefix}/{site}/roster"


def parse_device_topic(topic: str, prefix: str, kind: TopicKind) -> tuple[str, str] | None:
    """(site, device) of ``{prefix}/{site}/{device}/{kind}``, or None for any other topic."""
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != prefix or parts[3] != kind:
        return None
    site, device = parts[1], parts[2]
    if not is_id(site) or not is_id(device):
        return None
    return site, device


def parse_roster_topic(topic: str, prefix: str) -> str | None:
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != prefix or parts[2] != "roster" or not is_id(parts[1]):
        return None
    return parts[1]


def central_status_topic(prefix: str) -> str:
    """Where collectors announce themselves online (not retained). ``_central`` can never be
    a site id (ids start with a letter or digit), so it collides with no device or roster
    topic; a device resends its in-flight batches when it sees the announcement."""
    return f"{prefix}/_central/status"


def events_filter(prefix: str) -> str:
    return f"{prefix}/+/+/events"


class Ack(BaseModel):
    model_config = ConfigDict(extra="forbid")
    v: Literal[1] = 1
    ids: list[str]
    rejected: list[dict[str, str]] = Field(default_factory=list)


# --- the staff roster (topic {prefix}/{site}/roster, retained) ---------------------------------

MAX_ROSTER_BYTES = 4 * 1024 * 1024
ROSTER_STAFF_KEYS = frozenset({"id", "name", "role", "window", "starts", "ends"})
ROLES: tuple[Role, ...] = ("staff", "chief")


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
    extra = set(obj) - {"v", "version", "staff"}
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
