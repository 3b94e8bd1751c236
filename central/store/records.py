"""The values that cross the store's boundary, as frozen dataclasses.

Callers hand the store :class:`EventRow` and :class:`Reject` and get typed records back, never a
driver's raw rows: SQLite returns ISO text and JSON text where PostgreSQL returns datetimes and
parsed jsonb, and that difference ends here (:func:`stored_time`, :func:`stored_json`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from contract.roster import roster_json


@dataclass(frozen=True)
class EventRow:
    """A validated event on its way into ``events`` (central/validation.py builds it)."""

    id: str
    device: str
    site: str
    seq: int
    type: str
    at: datetime
    at_text: str
    clock: str
    data: str  # JSON text
    # The whole event as received (the parsed object), for `rejected.payload` should it be
    # rejected as a conflict; serialised only then.
    raw: Any = field(default=None, compare=False, repr=False)
    # The device's signed chain as sent (contract/chain.py), None for an unsigned event: kept
    # as they came, checked after the commit (central/verifier.py), never a reason to reject.
    prev: str | None = None
    sig: str | None = None


@dataclass(frozen=True)
class Reject:
    id: str | None
    device: str | None
    reason: str
    payload: str
    # Bytes received for this input (the whole message for one that names no event); None:
    # the payload's own length. Counted in ``rejected_counts`` whether or not kept whole.
    size: int | None = None


@dataclass
class BatchWrite:
    """One validated batch of one device for :meth:`Store.write_batches`.

    ``conflicts`` is filled by the write: events whose id is stored with other content."""

    events: list[EventRow]
    rejects: list[Reject]
    conflicts: list[EventRow] = field(default_factory=list)


@dataclass(frozen=True)
class StoredEvent:
    """An event as stored. ``at`` is the device's time as sent (SQLite keeps its offset,
    PostgreSQL an instant); ``received_at`` the centre's clock when it arrived."""

    id: str
    site: str
    device: str
    seq: int
    type: str
    at: datetime
    clock: str
    received_at: datetime
    data: dict[str, Any]
    # The chain fields as sent (None: unsigned, or stored before the store kept them) and the
    # device's `at` text exactly as sent, which the signature covers (None: not kept).
    prev: str | None = field(default=None, kw_only=True)
    sig: str | None = field(default=None, kw_only=True)
    at_text: str | None = field(default=None, kw_only=True)

    def as_sent(self) -> dict[str, Any]:
        """The event object as the device sent it (contract/chain.py): what its signature
        and the next event's ``prev`` cover. ``at`` falls back to the stored instant's ISO
        text for an event stored before its text was kept (never a signed one)."""
        out: dict[str, Any] = {
            "id": self.id,
            "seq": self.seq,
            "type": self.type,
            "at": self._at_as_sent(),
            "clock": self.clock,
            "device": self.device,
            "site": self.site,
            "data": self.data,
        }
        if self.prev is not None:
            out["prev"] = self.prev
        if self.sig is not None:
            out["sig"] = self.sig
        return out

    def _at_as_sent(self) -> str:
        """The signed ``at`` text, but only while it still names the stored instant that the
        reports file by. On PostgreSQL the two are separate columns (``at`` timestamptz,
        ``at_text``): a moved ``at`` with the text left alone must fail the signature, so then
        the stored instant is what is checked (docs/tamper-centre.md "What the store keeps")."""
        if self.at_text is None:
            return self.at.isoformat()
        try:
            same = datetime.fromisoformat(self.at_text) == self.at
        except ValueError:
            same = False
        return self.at_text if same else self.at.isoformat()


@dataclass(frozen=True)
class FiledEvent(StoredEvent):
    """A stored event with the instant it is filed under (central/store/filing.py)."""

    filed_at: datetime  # in the hall's timezone
    suspect: bool  # filed by received_at: the device's clock was not believed


@dataclass(frozen=True)
class DeviceKey:
    """A device's public key (table ``device_keys``, docs/tamper-centre.md)."""

    id: int
    site: str
    device: str
    public_key: str  # base64 of the 32 raw bytes, as device.key carries it
    fingerprint: str  # SHA256:<unpadded base64 of sha256(raw)>
    state: str  # pending | trusted | retired
    from_seq: int | None  # the first seq it signs (None: registered by hand, from the start)
    announced_in: str | None  # the device.key event that announced it (None: by hand)
    first_seen: datetime
    trusted_at: datetime | None
    trusted_by: str | None


@dataclass(frozen=True)
class ChainFinding:
    """What the chain verifier found (table ``chain_findings``, docs/tamper-centre.md)."""

    id: int
    site: str
    device: str
    event_id: str  # for a seq gap: the event after the missing seqs
    seq: int
    seq_end: int | None  # a gap's last missing seq
    kind: str
    detail: str
    found_at: datetime
    resolved_at: datetime | None


@dataclass(frozen=True)
class ChainHead:
    """How far a device's chain is verified (table ``chain_heads``)."""

    site: str
    device: str
    first_seq: int | None
    last_seq: int | None
    last_event_id: str | None
    last_digest: str | None  # digest of the last signed event walked
    key_fingerprint: str | None  # the key in effect after it
    signed: int
    unsigned: int
    updated_at: datetime | None


@dataclass(frozen=True)
class DeviceState:
    """A device as the collector last heard it (table ``devices``)."""

    site: str
    device: str
    state: str | None  # "online" | "offline" from its retained status (docs/topics.md)
    version: str | None
    pending: int | None
    oldest_s: float | None
    dead_letter: int | None
    status_at: datetime | None  # when the centre last heard its status (centre's clock)
    last_event_at: datetime | None  # the latest plausible `at` of its events
    last_received_at: datetime | None  # when its events last arrived (centre's clock)


@dataclass(frozen=True)
class DeviceTransition:
    """A change of a device's retained status (table ``device_transitions``, docs/post.md)."""

    site: str
    device: str
    state: str  # "online" | "offline" (docs/topics.md ``…/status``)
    at: datetime | None  # the status's own time, as the device wrote it (None: none or bad)
    received_at: datetime  # when the centre heard it: the time the post computation uses


@dataclass(frozen=True)
class StoredRoster:
    site: str
    version: int
    roster: dict[str, Any]  # the payload, parsed
    published_at: datetime

    @property
    def payload(self) -> str:
        return roster_json(self.roster)


@dataclass(frozen=True)
class StoredSchedule:
    """One published version of the hall's schedule (table ``schedules``)."""

    version: int
    digest: str
    body: dict[str, Any]
    published_at: datetime


@dataclass(frozen=True)
class AppliedMigration:
    """A row of ``hall_migrations``. ``applied_at`` is None for a step that a release which
    numbered its migrations ran: when is not known."""

    name: str
    applied_at: datetime | None


@dataclass(frozen=True)
class CaseRecord:
    """A 差评 case (table ``cases``, docs/cases.md): one per rating at level 1-2."""

    id: int
    rating_id: str
    site: str
    window: str
    staff_id: str | None
    level: int
    reasons: list[str]
    rated_at: datetime  # the rating's filed time (central/store/filing.py), hall timezone
    opened_at: datetime  # when the centre stored the rating: the deadlines count from it
    state: str
    deadlines: dict[str, datetime]  # step name -> instant (central/cases/states.py DUE_STEP)
    updated_at: datetime
    closed_at: datetime | None  # when it reached a final state (办结 or 作废)
    case_no: str | None = None  # 办件编号 the rating's invitation carried
    item_code: str | None = None  # 事项编码


@dataclass(frozen=True)
class CaseLogEntry:
    """One transition of a case (table ``case_log``, never deleted)."""

    case_id: int
    at: datetime
    by: str
    from_state: str | None  # None: the case was opened
    to_state: str
    note: str


@dataclass(frozen=True)
class UserRecord:
    """An office account (table ``users``) for the centre's pages."""

    name: str
    role: str  # "clerk" | "admin"
    password_hash: str  # memory-hard (docs/office.md), never the password
    created_at: datetime
    disabled: bool


@dataclass(frozen=True)
class AuditEntry:
    """One action of a person on the centre's data (table ``audit_log``, never deleted)."""

    id: int
    at: datetime
    user: str
    action: str
    target: str
    detail: str
    address: str


DEVICE_KEYS = (
    "site",
    "device",
    "state",
    "version",
    "pending",
    "oldest_s",
    "dead_letter",
    "status_at",
    "last_event_at",
    "last_received_at",
)

LEAVE_KEYS = (
    "id",
    "staff_id",
    "kind",
    "starts",
    "starts_half",
    "ends",
    "ends_half",
    "approver",
    "note",
    "imported_by",
    "imported_at",
    "source",
    "slot",
    "slot_time",
    "starts_time",
    "ends_time",
)


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """A time as SQLite keeps the centre's own times: ISO text to the millisecond."""
    return moment.isoformat(timespec="milliseconds")


def stored_time(value: Any) -> datetime | None:
    """A time as a store returns it (a datetime from PostgreSQL, ISO text from SQLite) as an
    aware datetime; a naive one is UTC, as the stores write them. None (or '') stays None."""
    if value is None or value == "":
        return None
    found = datetime.fromisoformat(value) if isinstance(value, str) else value
    return found if found.tzinfo is not None else found.replace(tzinfo=UTC)


def required_time(value: Any) -> datetime:
    """:func:`stored_time` of a NOT NULL column."""
    moment = stored_time(value)
    if moment is None:
        raise ValueError(f"expected a stored time, got {value!r}")
    return moment


def aware(moment: datetime) -> datetime:
    """``moment``, refused when naive: the store never guesses a time's zone."""
    if moment.tzinfo is None:
        raise ValueError(f"expected a time with its zone, got {moment!r}")
    return moment


def stored_json(value: Any) -> Any:
    """A JSON column as a store returns it (text from SQLite, parsed jsonb from PostgreSQL)."""
    return json.loads(value) if isinstance(value, str | bytes) else value


@dataclass(frozen=True)
class NewFinding:
    """A finding of the chain rules (central/chainrules.py) on its way into ``chain_findings``."""

    kind: str
    seq: int
    event_id: str  # for a seq gap: the event after the missing seqs
    detail: str
    seq_end: int | None = None


@dataclass(frozen=True)
class KeyWrite:
    """A change of ``device_keys`` the chain rules decided: ``add`` a pending key (nothing if
    the key is known), ``trust`` a key a rotation announced (signed by the trusted key it
    replaces), ``retire`` the key a rotation replaced."""

    op: str  # add | trust | retire
    public_key: str
    fingerprint: str
    from_seq: int | None = None
    announced_in: str | None = None
    by: str | None = None
