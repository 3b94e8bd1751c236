"""Identifiers of sites, devices, staff, windows, pads and invitations (docs/topics.md).

One rule for each kind of id, shared by the topics, the event data, the roster, the pads'
frames and the kiosk gallery, so that an id one side accepts is never refused by another.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, StringConstraints

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

Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
StaffId = Annotated[str, StringConstraints(pattern=STAFF_ID_PATTERN)]
Window = Annotated[str, StringConstraints(pattern=WINDOW_PATTERN)]
PadAddress = Annotated[int, Field(ge=1, le=247, strict=True)]  # RS-485 bus addresses
InviteId = Annotated[int, Field(ge=0, le=65535, strict=True)]  # 0 on the wire means "none"


def is_id(text: object) -> bool:
    return isinstance(text, str) and ID_RE.match(text) is not None


def is_staff_id(text: object) -> bool:
    return isinstance(text, str) and STAFF_ID_RE.match(text) is not None
