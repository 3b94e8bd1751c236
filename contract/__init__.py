"""The hall's contract in code: event types and their data, ids, topics (docs/topics.md).

``contract`` is the leaf of the project: it imports nothing of it, so the device agent, the
drivers, the uplink, the central collector, the store's views and the reports all take the
shared vocabulary from here. One module a part of the contract, each re-exported here so that
``from contract import X`` names the contract, not the file it sits in:

- :mod:`contract.ids`: site, device, staff, window, pad and invitation ids, case numbers;
- :mod:`contract.events`: :class:`EventType` and each type's ``data`` model;
- :mod:`contract.topics`: MQTT topics and the payload version;
- :mod:`contract.roster`: the roster payload's rules and its canonical text;
- :mod:`contract.labels`: the words people read (slots, rating levels, reasons);
- :mod:`contract.status`: the states a device reports about itself.

A change to the events, ids, topics or roster is a change of the wire format: bump
``PAYLOAD_VERSION`` and say so in docs/topics.md.

:mod:`contract.config` holds the rules every config file follows (docs/config.md), and
:mod:`contract.schedule` the hall's hours and working days (regulation, docs/attendance.md);
they are imported by their own names.

:mod:`contract.site_thread` and :mod:`contract.sqlite_tx` are plumbing, not contract: a device
module that may not import ``sync`` and the centre both need them, and only here may both.
"""

from __future__ import annotations

from contract.events import (
    DATA_MODELS,
    EVENT_TYPES,
    Clock,
    EventType,
    FaceRejectedData,
    FaultData,
    KeyData,
    Liveness,
    PunchData,
    PunchStatus,
    RatingData,
    RatingExpiredData,
    RejectReason,
    Slot,
    TestData,
    WindowData,
    check_data,
    event_data,
)
from contract.ids import (
    CASE_NO_MAX,
    ID_PATTERN,
    ID_RE,
    ITEM_CODE_PATTERN,
    STAFF_ID_PATTERN,
    STAFF_ID_RE,
    WINDOW_PATTERN,
    WINDOW_RE,
    CaseNo,
    Id,
    InviteId,
    ItemCode,
    PadAddress,
    StaffId,
    Window,
    case_no_problem,
    is_id,
    is_staff_id,
)
from contract.labels import (
    DEFAULT_REASON_LABELS,
    LEVEL_LABELS,
    PAUSED_TEXT,
    POOR_LEVELS,
    SLOT_LABELS,
)
from contract.roster import (
    MAX_ROSTER_BYTES,
    ROLES,
    ROSTER_DATE_RE,
    ROSTER_STAFF_KEYS,
    Role,
    RosterError,
    parse_roster,
    roster_json,
    validate_roster,
)
from contract.status import CameraState, ComponentState, FaceQuality
from contract.topics import (
    PAYLOAD_VERSION,
    Ack,
    TopicKind,
    central_status_topic,
    device_topic,
    events_filter,
    parse_device_topic,
    parse_roster_topic,
    roster_topic,
    schedule_topic,
    summary_topic,
)

# A literal, not an import: setuptools reads it from this file without importing the package
# (pyproject.toml [tool.setuptools.dynamic]); the status payload carries it.
__version__ = "0.1.0"

__all__ = [
    "CASE_NO_MAX",
    "DATA_MODELS",
    "DEFAULT_REASON_LABELS",
    "EVENT_TYPES",
    "ID_PATTERN",
    "ID_RE",
    "ITEM_CODE_PATTERN",
    "LEVEL_LABELS",
    "MAX_ROSTER_BYTES",
    "PAUSED_TEXT",
    "PAYLOAD_VERSION",
    "POOR_LEVELS",
    "ROLES",
    "ROSTER_DATE_RE",
    "ROSTER_STAFF_KEYS",
    "SLOT_LABELS",
    "STAFF_ID_PATTERN",
    "STAFF_ID_RE",
    "WINDOW_PATTERN",
    "WINDOW_RE",
    "Ack",
    "CameraState",
    "CaseNo",
    "Clock",
    "ComponentState",
    "EventType",
    "FaceQuality",
    "FaceRejectedData",
    "FaultData",
    "Id",
    "InviteId",
    "ItemCode",
    "KeyData",
    "Liveness",
    "PadAddress",
    "PunchData",
    "PunchStatus",
    "RatingData",
    "RatingExpiredData",
    "RejectReason",
    "Role",
    "RosterError",
    "Slot",
    "StaffId",
    "TestData",
    "TopicKind",
    "Window",
    "WindowData",
    "__version__",
    "case_no_problem",
    "central_status_topic",
    "check_data",
    "device_topic",
    "event_data",
    "events_filter",
    "is_id",
    "is_staff_id",
    "parse_device_topic",
    "parse_roster",
    "parse_roster_topic",
    "roster_json",
    "roster_topic",
    "schedule_topic",
    "summary_topic",
    "validate_roster",
]
