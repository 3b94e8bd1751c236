"""A sealed event's leaf: the bytes its RFC 9162 leaf hash is taken over (docs/tamper.md).

The leaf is the RFC 8785 canonical form of the object

    {id, device, site, seq, type, clock, at, data[, prev, sig]}

with ``at`` the instant the device stamped, in UTC to the millisecond
(``2026-11-03T01:30:00.000Z``): SQLite keeps the device's own text, PostgreSQL a timestamptz,
and both give the same instant, so both stores give the same leaf. ``prev`` and ``sig`` are
included when the store holds them (the device's signed chain, contract/chain.py); an unsigned
event's leaf has neither. ``received_at`` is not in the leaf: it orders the tree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from central.seal.merkle import leaf_hash
from contract.chain import fast_canonical  # RFC 8785, fast (tests/test_seal.py imports it here)


def utc_ms(moment: datetime) -> str:
    """``moment`` in UTC to the millisecond, with ``Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def leaf_object(event: Any) -> dict[str, Any]:
    """The object the leaf is the canonical form of (``event``: a StoredEvent)."""
    out: dict[str, Any] = {
        "id": str(event.id),
        "device": event.device,
        "site": event.site,
        "seq": event.seq,
        "type": event.type,
        "clock": event.clock,
        "at": utc_ms(event.at),
        "data": event.data,
    }
    for key in ("prev", "sig"):
        value = getattr(event, key, None)
        if value is not None:
            out[key] = value
    return out


def leaf_bytes(event: Any) -> bytes:
    return fast_canonical(leaf_object(event))


def event_leaf_hash(event: Any) -> bytes:
    return leaf_hash(leaf_bytes(event))
