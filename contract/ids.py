"""Identifiers of sites, devices, staff, windows, pads, invitations and cases (docs/topics.md).

One rule for each kind of id, shared by the topics, the event data, the roster, the pads'
frames and the kiosk gallery, so that an id one side accepts is never refused by another.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

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

# 事项编码: the code of a service item in the national 政务服务事项 catalogue (basic and
# implementation codes are up to ~31 characters of digits and capital letters; some provinces
# add hyphens or dots). The staff-id alphabet covers them and nothing that needs escaping.
ITEM_CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
ITEM_CODE_RE = re.compile(ITEM_CODE_PATTERN)

# 办件编号: the case number a window's case-handling system gives a case. Its form is that
# system's (some put a region name or 〔2026〕 in it), so any printable text goes, but nothing
# that changes how a line or a report cell reads: no control or format characters (NUL, line
# breaks, bidi overrides, zero-width), no spaces around it.
CASE_NO_MAX = 64
_NOT_IN_CASE_NO = frozenset(("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"))


def case_no_problem(text: str) -> str | None:
    """None for a good 办件编号, else what is wrong with it (for an error message)."""
    if not 1 <= len(text) <= CASE_NO_MAX:
        return f"expected 1-{CASE_NO_MAX} characters, it has {len(text)}"
    if text != text.strip():
        return "expected no spaces at its start or end"
    for i, ch in enumerate(text):
        if unicodedata.category(ch) in _NOT_IN_CASE_NO:
            return f"expected printable characters, it has U+{ord(ch):04X} at index {i}"
    return None


def _case_no(text: str) -> str:
    problem = case_no_problem(text)
    if problem:
        raise ValueError(problem)
    return text


def _item_code(text: str) -> str:
    if not ITEM_CODE_RE.match(text):
        # Spelled out: the regex alone tells a case system's developer little.
        raise ValueError(
            "expected 1-64 characters of A-Z a-z 0-9 _ . - starting with a letter or digit"
        )
    return text


CaseNo = Annotated[str, AfterValidator(_case_no)]
ItemCode = Annotated[str, AfterValidator(_item_code)]


def is_id(text: object) -> bool:
    return isinstance(text, str) and ID_RE.match(text) is not None


def is_staff_id(text: object) -> bool:
    return isinstance(text, str) and STAFF_ID_RE.match(text) is not None


def is_item_code(text: object) -> bool:
    return isinstance(text, str) and ITEM_CODE_RE.match(text) is not None


def is_case_no(text: object) -> bool:
    return isinstance(text, str) and case_no_problem(text) is None
