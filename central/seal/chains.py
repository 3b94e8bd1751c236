"""Recompute the devices' signed chains of a month's events (docs/tamper.md "Checking a month").

Assumptions shared with the ingest checks (central/validation.py): ``events`` gains columns
``prev`` and ``sig`` (NULL for an unsigned event), table ``device_keys`` holds each device's
Ed25519 public key as (site, device, public_key hex), and the event as sent is the object
{id, seq, type, at, clock, device, site, data, prev, sig} with ``at`` exactly the device's text.
SQLite keeps that text; a store that does not (PostgreSQL keeps an instant) must keep it for
signatures to check. Until the columns exist every event is reported unsigned and only the tree
is checked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from contract import chain


@dataclass(frozen=True)
class Finding:
    event_id: str
    what: str

    def __str__(self) -> str:
        return f"event {self.event_id}: {self.what}"


def check_chains(
    events: Iterable[Mapping[str, Any]], keys: Mapping[tuple[str, str], Any]
) -> tuple[list[Finding], int]:
    """Findings over events as sent (each device's in ``seq`` order is checked link by link),
    and how many events were unsigned. ``keys``: (site, device) → Ed25519 public key."""
    by_device: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for e in events:
        by_device.setdefault((e["site"], e["device"]), []).append(e)
    findings: list[Finding] = []
    unsigned = 0
    for (site, device), group in sorted(by_device.items()):
        group.sort(key=lambda e: e["seq"])
        key = keys.get((site, device))
        previous: Mapping[str, Any] | None = None
        for e in group:
            eid = str(e["id"])
            if previous is not None and e["seq"] > previous["seq"] + 1:
                first, last = previous["seq"] + 1, e["seq"] - 1
                span = f"seq {first}" if first == last else f"seq {first}..{last}"
                findings.append(Finding(eid, f"{site}/{device} {span} missing before it"))
            if not chain.is_signed(e):
                unsigned += 1
            else:
                if key is None:
                    findings.append(Finding(eid, f"no key known for {site}/{device}"))
                elif not chain.verify(key, e):
                    findings.append(Finding(eid, "signature fails"))
                if (
                    previous is not None
                    and chain.is_signed(previous)
                    and e["prev"] != chain.digest(previous)
                ):
                    findings.append(
                        Finding(eid, "chain broken: prev does not name the event before it")
                    )
            previous = e
    return findings, unsigned


def _sent_at(value: Any) -> str:
    if isinstance(value, str):
        return value
    assert isinstance(value, datetime)
    return value.isoformat(timespec="milliseconds")


def recompute(
    store: Any, start: datetime, end: datetime, read: list[Any] | None = None
) -> tuple[list[Finding], int, bool]:
    """Chain findings of the events received in [start, end), the unsigned count, and whether
    the store holds chains at all (False: columns ``prev``/``sig`` absent). ``read``: those
    events as the caller read them already (StoredEvent), reused when there are no chains."""
    from central.store.records import stored_json

    where = "FROM events WHERE received_at >= %s AND received_at < %s"
    span = (store.stamp(start), store.stamp(end))
    columns = "id, site, device, seq, type, at, clock, data"
    try:
        rows = store.query(f"SELECT {columns}, prev, sig {where}", span)
        chained = True
    except Exception:  # no chain columns yet: seq gaps and the tree only
        if read is not None:
            rows = [
                (e.id, e.site, e.device, e.seq, e.type, e.at, e.clock, e.data, None, None)
                for e in read
            ]
        else:
            rows = [(*r, None, None) for r in store.query(f"SELECT {columns} {where}", span)]
        chained = False
    keys: dict[tuple[str, str], Any] = {}
    try:
        for site, device, raw in store.query("SELECT site, device, public_key FROM device_keys"):
            keys[(site, device)] = chain.public_key(bytes.fromhex(raw))
    except Exception:
        pass
    events = []
    for eid, site, device, seq, etype, at, clock, data, prev, sig in rows:
        e: dict[str, Any] = {
            "id": str(eid),
            "seq": seq,
            "type": etype,
            "at": _sent_at(at),
            "clock": clock,
            "device": device,
            "site": site,
            "data": stored_json(data),
        }
        if prev is not None and sig is not None:
            e["prev"], e["sig"] = prev, sig
        events.append(e)
    findings, unsigned = check_chains(events, keys)
    return findings, unsigned, chained
