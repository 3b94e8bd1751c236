"""Recompute the devices' signed chains of a month's events (docs/tamper.md "Checking a month").

:func:`check_chains` checks events as sent ({id, seq, type, at, clock, device, site, data,
prev, sig}, ``at`` exactly the device's text): each device's events in ``seq`` order, link by
link, each signature against the device's key, and the seqs missing between them. This release
of the store keeps no ``prev``/``sig`` (the centre's chain verification is still to land):
:func:`recompute` then sees every event unsigned and checks the month's seq gaps only; the tree
is checked either way (central/seal/core.py).
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


def recompute(events: Iterable[Any]) -> tuple[list[Finding], int, bool]:
    """Chain findings of a month's events as the store returns them (``StoredEvent``), the
    number of unsigned ones, and whether the store holds chains at all (not yet: False)."""
    sent = [
        {
            "id": str(e.id),
            "seq": e.seq,
            "type": e.type,
            "at": _sent_at(e.at),
            "clock": e.clock,
            "device": e.device,
            "site": e.site,
            "data": e.data,
        }
        for e in events
    ]
    findings, unsigned = check_chains(sent, {})
    return findings, unsigned, False
