"""Rejected inputs: what is kept whole, what is only counted, and how each is made storable.

docs/sync.md "Rejected inputs": of one device's rejected inputs, the first
REJECTED_KEPT_PER_HOUR in each hour (the hall's) are kept whole in ``rejected``; beyond them only
their number and size, per reason, in ``rejected_counts``. A broken or hostile device cannot
fill the centre's disk.
"""

from __future__ import annotations

import json
from datetime import datetime, tzinfo

from central.store.records import EventRow, Reject

REJECTED_KEPT_PER_HOUR = 100

CONFLICT = "conflict"  # docs/topics.md: an id already stored with different content


def reason_kind(reason: str) -> str:
    """The part of a reject reason that names what was wrong (``batch``, ``id``, ``data``,
    ``conflict`` …), without the input's own text: the key of ``rejected_counts``."""
    return reason.split(":", 1)[0].split(" (", 1)[0][:40] or "?"


def hour_of(moment: datetime, tz: tzinfo) -> str:
    """The hall's hour of ``moment`` as ``rejected_counts.hour``: 2026-12-04T09."""
    return moment.astimezone(tz).strftime("%Y-%m-%dT%H")


def budget_rejects(rejects: list[Reject], room: int) -> tuple[list[Reject], dict[str, list[int]]]:
    """One device's rejects → (those kept whole: the first ``room``, per reason counts
    ``[count, bytes, kept]`` of all of them)."""
    whole = rejects[: max(room, 0)]
    tallies: dict[str, list[int]] = {}
    for i, r in enumerate(rejects):
        tally = tallies.setdefault(reason_kind(r.reason), [0, 0, 0])
        tally[0] += 1
        tally[1] += r.size if r.size is not None else len(r.payload or "")
        tally[2] += 1 if i < len(whole) else 0
    return whole, tallies


def by_device(rejects: list[Reject]) -> dict[str, list[Reject]]:
    """Rejects grouped by device, in order; '' for input that names no device."""
    out: dict[str, list[Reject]] = {}
    for r in rejects:
        out.setdefault(r.device or "", []).append(r)
    return out


def storable(text: str | None) -> str | None:
    """``text`` as both stores can hold it: lone surrogates and NUL escaped.

    For the ``rejected`` table, which keeps whatever a device sent (a garbage id, a payload
    quoting a bad value): a reject that cannot be written would block its device forever.
    """
    if text is None:
        return None
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\0")


def as_received(event: EventRow) -> str:
    """The event as received, JSON text (its envelope and data)."""
    if event.raw is None:
        return event.data
    try:
        return json.dumps(event.raw, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return event.data


def conflict_rejects(conflicts: list[EventRow]) -> list[Reject]:
    """The ``rejected`` rows of events whose id is stored with different content."""
    return [Reject(e.id, e.device, CONFLICT, as_received(e)) for e in conflicts]
