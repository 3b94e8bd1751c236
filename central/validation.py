"""Validation of event batches at the centre (docs/topics.md, docs/sync.md "Validation").

Only validation may reject an event (a store that refuses a write has said nothing about it).
:func:`check_batch` never raises: the batch's JSON, its envelope, each event's envelope and its
``data`` against the event type's model in :mod:`contract` (the same models the devices build
their events from), then the limits of what both stores can hold (finite numbers, valid
Unicode, no NUL, bounded nesting). The result is a :class:`Verdict`: rows to store, rejects
with their reason and the whole event as received, and events deferred to the device's resend.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from central.store import EventRow, Reject
from contract import EVENT_TYPES, check_data, parse_device_topic

logger = logging.getLogger(__name__)

# The ISO 8601 *extended* form with an offset, as docs/topics.md shows `at`
# (2026-11-26T09:12:03.120+08:00). fromisoformat also takes the basic form
# (20261126T091203+0800), which the reports could not file: only the extended form passes.
_AT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})", re.ASCII)
# The canonical lower-case UUID text, as str(uuid.UUID(x)) == x checked it: one regex instead
# of parsing and formatting a UUID object per event.
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.ASCII)
_ENVELOPE = frozenset(("id", "seq", "type", "at", "clock", "device", "site", "data", "prev", "sig"))
# prev and sig are optional (older agents send neither) and bounded: what they say is checked
# after the event is stored (docs/tamper.md), so a bad one is a finding, not a reject.
MAX_CHAIN_FIELD = 128
# json.dumps with non-default arguments builds a new JSONEncoder per call.
_DATA_TEXT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
MAX_REJECT_PAYLOAD = 64 * 1024  # of a payload kept for a technician to look at
# A JSON-escaped NUL (\u0000 after an even number of backslashes), not the text "\u0000".
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
# Event data is flat (docs/topics.md: a list of reason labels at most). Deeper data is refused
# by validation: SQLite's json_valid() stops at 1000 levels and a store refusal is never a
# reject.
MAX_DATA_DEPTH = 32


def depth_over(value: Any, limit: int) -> bool:
    """True when ``value`` nests lists/objects deeper than ``limit`` (iterative: no recursion).

    Only containers are pushed: the usual flat event data costs one pass over its values."""
    stack = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return False


def check_event(ev: Any, site: str, device: str) -> tuple[EventRow | None, str | None]:
    """(row, None) for a good event, (None, reason) for a bad one."""
    if not isinstance(ev, dict):
        return None, f"event: expected an object, got {type(ev).__name__}"
    event_id = ev.get("id")
    if not isinstance(event_id, str) or not _UUID.fullmatch(event_id):
        try:
            uuid.UUID(event_id)
        except (TypeError, ValueError, AttributeError):
            return None, f"id: expected a UUID, got {event_id!r}"
        return None, f"id: expected the canonical lower-case UUID form, got {event_id!r}"
    if ev.get("device") != device:
        return None, f"device: {ev.get('device')!r} does not match the topic's device {device!r}"
    if ev.get("site") != site:
        return None, f"site: {ev.get('site')!r} does not match the topic's site {site!r}"
    seq = ev.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0 or seq >= 2**63:
        return None, f"seq: expected a non-negative integer, got {seq!r}"
    event_type = ev.get("type")
    if not isinstance(event_type, str) or event_type not in EVENT_TYPES:
        return None, f"type: expected one of {sorted(EVENT_TYPES)}, got {event_type!r}"
    at_text = ev.get("at")
    expected_at = "an ISO 8601 time with offset such as 2026-11-26T09:12:03.120+08:00"
    if not isinstance(at_text, str) or not _AT.fullmatch(at_text):
        return None, f"at: expected {expected_at}, got {at_text!r}"
    try:
        at = datetime.fromisoformat(at_text)
    except ValueError:  # the right shape, but no such date or time (e.g. month 13)
        return None, f"at: expected {expected_at}, got {at_text!r}"
    clock = ev.get("clock")
    if not isinstance(clock, str) or clock not in ("synced", "unsynced"):
        return None, f"clock: expected 'synced' or 'unsynced', got {clock!r}"
    data = ev.get("data")
    if not isinstance(data, dict):
        return None, f"data: expected an object, got {type(data).__name__}"
    if depth_over(data, MAX_DATA_DEPTH):
        return None, f"data: nested deeper than {MAX_DATA_DEPTH} levels"
    extra = ev.keys() - _ENVELOPE
    if extra:
        return None, f"unknown envelope key(s) {sorted(extra)}"
    for name in ("prev", "sig"):
        value = ev.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > MAX_CHAIN_FIELD):
            return None, (
                f"{name}: expected a string of at most {MAX_CHAIN_FIELD} characters, "
                f"got {value!r:.80}"
            )
    # What no store can hold is named as such, before the model's own messages.
    try:
        data_text = _DATA_TEXT(data)
    except ValueError:
        return None, "data: contains NaN or Infinity; expected finite numbers (RFC 8259 JSON)"
    try:
        data_text.encode("utf-8")
    except UnicodeEncodeError:
        # A JSON escape such as "\ud800" decodes to a lone surrogate, which neither store can
        # encode: without this check the whole batch failed to write, again on every resend.
        return None, "data: contains a lone UTF-16 surrogate; expected valid Unicode text"
    if "\\u0000" in data_text and _NUL_ESCAPE.search(data_text):
        # PostgreSQL's jsonb cannot hold NUL; refuse it on SQLite too, so both stores agree.
        return None, "data: contains a NUL character (\\u0000)"
    # The event type's fields, as the devices build them (contract.DATA_MODELS).
    problem = check_data(event_type, data)
    if problem:
        return None, problem
    return (
        EventRow(
            id=event_id,
            device=device,
            site=site,
            seq=seq,
            type=event_type,
            at=at,
            at_text=at_text,
            clock=clock,
            data=data_text,
            raw=ev,
            prev=ev.get("prev"),
            sig=ev.get("sig"),
        ),
        None,
    )


@dataclass
class Verdict:
    site: str | None
    device: str | None
    good: list[EventRow] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    # Events of an over-limit batch left for later: neither stored nor rejected, so not in
    # the ack; the device resends them (go-back-N) after its ack timeout.
    deferred: int = 0

    def ack(self) -> dict[str, Any]:
        return {
            "v": 1,
            "ids": [e.id for e in self.good],
            "rejected": [{"id": r.id, "reason": r.reason} for r in self.rejects if r.id],
        }


def _as_received(ev: Any) -> str:
    """The whole event (envelope and data) as JSON text for ``rejected.payload``."""
    try:
        return json.dumps(ev, ensure_ascii=False)[:MAX_REJECT_PAYLOAD]
    except (ValueError, RecursionError) as exc:  # NaN is fine here; a cycle cannot come from JSON
        return f"(not serialisable: {type(exc).__name__})"


def check_batch(
    topic: str, payload: bytes, *, prefix: str, max_bytes: int, max_events: int
) -> Verdict:
    """Validate one batch. Never raises: whatever is wrong ends up in ``rejects``."""
    where = parse_device_topic(topic, prefix, "events")
    site, device = where if where else (None, None)
    text = payload.decode("utf-8", errors="replace")
    verdict = Verdict(site, device)

    def reject_all(reason: str, events: Any = None) -> Verdict:
        # Name every event that has an id, so that the agent can dead-letter each one
        # instead of resending the batch forever (docs/topics.md).
        named = []
        if isinstance(events, list):
            named = [e for e in events if isinstance(e, dict) and isinstance(e.get("id"), str)]
        verdict.rejects = [Reject(e["id"], device, reason, _as_received(e)) for e in named] or [
            Reject(None, device, reason, text[:MAX_REJECT_PAYLOAD], len(payload))
        ]
        return verdict

    if where is None:
        return reject_all(f"topic {topic!r}: expected {prefix}/SITE/DEVICE/events")
    try:
        batch = json.loads(payload)
    except RecursionError:
        # The C decoder gives up at the interpreter's recursion limit (~1000 levels).
        return reject_all("batch: JSON nested too deeply to read")
    except (UnicodeDecodeError, ValueError) as exc:
        return reject_all(f"batch: not JSON ({exc})")
    if not isinstance(batch, dict):
        return reject_all(f"batch: expected a JSON object, got {type(batch).__name__}")
    events = batch.get("events")
    if batch.get("v") != 1:
        return reject_all(f"batch: v: expected 1, got {batch.get('v')!r}", events)
    if batch.get("device") != device:
        return reject_all(
            f"batch: device {batch.get('device')!r} does not match the topic's device {device!r}",
            events,
        )
    if batch.get("site") != site:
        return reject_all(
            f"batch: site {batch.get('site')!r} does not match the topic's site {site!r}", events
        )
    if not isinstance(events, list):
        return reject_all("batch: events: expected a list")
    if len(events) > max_events or len(payload) > max_bytes:
        events = _within_limits(verdict, events, len(payload), max_bytes, max_events)
    for ev in events:
        try:
            row, problem = check_event(ev, site, device)  # type: ignore[arg-type]
        except Exception as exc:  # a check we got wrong must not make the batch a poison pill
            logger.exception("check_event failed")
            row, problem = None, f"invalid event ({type(exc).__name__}: {exc})"
        if row is not None:
            verdict.good.append(row)
        else:
            event_id = ev.get("id") if isinstance(ev, dict) else None
            verdict.rejects.append(
                Reject(
                    event_id if isinstance(event_id, str) else None,
                    device,
                    problem or "invalid",
                    _as_received(ev),
                )
            )
    return verdict


def _within_limits(
    verdict: Verdict, events: list[Any], payload_bytes: int, max_bytes: int, max_events: int
) -> list[Any]:
    """The events of an over-limit batch to judge now; the rest is deferred, never rejected.

    A batch over ``central.max_batch_events`` or ``central.max_payload_kb`` says nothing bad
    about its events (an agent configured for bigger batches than this collector takes), so
    none of them is dead-lettered for it: the leading events that fit the limits are taken,
    the others are left out of the ack and come again with the device's resend. Only an event
    that could not fit even a batch of its own is rejected, by id (it would never get in).
    """
    assert verdict.site is not None and verdict.device is not None
    envelope = {"v": 1, "device": verdict.device, "site": verdict.site, "events": []}
    overhead = len(json.dumps(envelope, separators=(",", ":")).encode())
    taken: list[Any] = []
    used = overhead
    judged = 0
    for ev in events:
        if judged >= max_events:
            break
        text = json.dumps(ev, ensure_ascii=False, separators=(",", ":"))
        size = len(text.encode("utf-8", errors="replace"))
        if overhead + size > max_bytes:
            event_id = ev.get("id") if isinstance(ev, dict) else None
            verdict.rejects.append(
                Reject(
                    event_id if isinstance(event_id, str) else None,
                    verdict.device,
                    f"event: {size} bytes; expected at most {max_bytes - overhead} "
                    f"(central.max_payload_kb)",
                    text[:MAX_REJECT_PAYLOAD],
                )
            )
            judged += 1
            continue
        if used + size + (1 if taken else 0) > max_bytes:
            break
        taken.append(ev)
        used += size + (1 if len(taken) > 1 else 0)
        judged += 1
    verdict.deferred = len(events) - judged
    logger.warning(
        "batch from %s/%s over the limits (%d events, %d bytes; at most %d events, %d bytes): "
        "taking %d, leaving %d for the device to resend (align sync.batch_size and "
        "sync.max_batch_kb with central.max_batch_events and central.max_payload_kb)",
        verdict.site,
        verdict.device,
        len(events),
        payload_bytes,
        max_events,
        max_bytes,
        judged,
        verdict.deferred,
    )
    return taken
