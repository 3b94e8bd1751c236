"""Event types and the ``data`` of each (docs/topics.md "Events").

The devices build every event's data from these models (:func:`event_data`) and the collector
checks every event it receives against the same models (:func:`check_data`), so a body that
one side writes the other always reads. Everywhere else an event type is named through
:class:`EventType`, never spelled as a string (tests/test_event_type_literals.py).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from contract.ids import CaseNo, InviteId, ItemCode, PadAddress, StaffId, Window


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
    KEY = "device.key"


EVENT_TYPES = frozenset(t.value for t in EventType)

Slot = Literal["morning_in", "morning_out", "afternoon_in", "afternoon_out", "extra"]
PunchStatus = Literal["on_time", "late", "early_leave", "outside_hours", "holiday"]
Liveness = Literal["passed", "failed", "off"]
RejectReason = Literal["unknown_face", "liveness_failed", "low_quality"]
Clock = Literal["synced", "unsynced"]

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
    # The case the rating is about (办件编号, 事项编码), as the window's case-handling system
    # gave them with the invitation; null for a rating without one. Optional, unlike the
    # rest: ratings of agents older than invitations with a case are still in outboxes.
    case_no: CaseNo | None = None
    item_code: ItemCode | None = None


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


# An Ed25519 public key: its 32 raw bytes in standard, padded base64 (44 characters).
PUBLIC_KEY_PATTERN = r"^[A-Za-z0-9+/]{43}=$"


class KeyData(BaseModel):
    """device.key: the device announces the key that signs its events from the next one on
    (docs/tamper.md "Device keys"). The first is signed by itself; a rotation's by the key
    it replaces, so only the holder of the old key can announce the new one."""

    model_config = _STRICT
    public_key: Annotated[str, StringConstraints(pattern=PUBLIC_KEY_PATTERN)]


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
    EventType.KEY: KeyData,
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
    msg = msg.removeprefix("Value error, ")  # a validator's own ValueError says it all
    return f"data.{where}: {msg}, got {got!r:.80}"
