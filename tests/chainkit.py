"""A device that signs its events as contract/chain.py says, for the centre's chain tests.

Independent of the agent's own signing (built separately): events are made here, signed with
contract.chain and a real Ed25519 key, validated by the collector's check_event and stored
through the store's write path, as a batch from the device would be.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from central.store import EventRow, Store
from central.validation import check_event
from contract import chain

HALL_OFFSET = timezone(timedelta(hours=8))
PUNCH = {
    "staff_id": "S0012",
    "slot": "morning_in",
    "status": "on_time",
    "minutes_off": 0,
    "distance": 0.31,
    "liveness": "passed",
}
RATING = {
    "window": "A03",
    "pad": 1,
    "staff_id": "S0012",
    "level": 5,
    "label": "非常满意",
    "reasons": [],
    "invite_id": None,
}


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def public_b64(key: Ed25519PrivateKey) -> str:
    return base64.b64encode(raw_public(key)).decode()


def write_keyfile(path: Path, key: Ed25519PrivateKey) -> Path:
    """The device's ``device.pub``: one line, base64 of the raw key."""
    path.write_text(public_b64(key) + "\n", encoding="ascii")
    return path


class SigningDevice:
    """A device's outbox as signed: seq, prev and sig as the device side makes them."""

    def __init__(
        self,
        device: str = "k1",
        site: str = "jiedong",
        key: Ed25519PrivateKey | None = None,
        start: datetime | None = None,
    ):
        self.device, self.site = device, site
        self.key = key or Ed25519PrivateKey.generate()
        self.seq = 0
        self.prev = chain.GENESIS
        self.at = start or datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)

    def event(
        self,
        type: str = "attendance.punch",
        data: dict[str, Any] | None = None,
        signer: Ed25519PrivateKey | None = None,
        signed: bool = True,
    ) -> dict[str, Any]:
        """The device's next event, signed by ``signer`` (default: its key)."""
        self.seq += 1
        self.at += timedelta(minutes=1)
        ev: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "seq": self.seq,
            "type": type,
            # The hall's offset, to the millisecond: the signature covers this text exactly.
            "at": self.at.astimezone(HALL_OFFSET).isoformat(timespec="milliseconds"),
            "clock": "synced",
            "device": self.device,
            "site": self.site,
            "data": dict(PUNCH if data is None and type == "attendance.punch" else data or {}),
        }
        if signed:
            ev["prev"] = self.prev
            ev["sig"] = chain.sign(signer or self.key, ev)
            self.prev = chain.digest(ev)
        return ev

    def announce(
        self, new: Ed25519PrivateKey, signer: Ed25519PrivateKey | None = None
    ) -> dict[str, Any]:
        """A device.key event announcing ``new`` (signed by ``signer``, default ``new``: a
        first announcement); ``new`` signs from the next event on."""
        ev = self.event("device.key", {"public_key": public_b64(new)}, signer=signer or new)
        self.key = new
        return ev

    def events(self, n: int, **kw: Any) -> list[dict[str, Any]]:
        return [self.event(**kw) for _ in range(n)]


def row(ev: dict[str, Any]) -> EventRow:
    """``ev`` as the collector's validation makes it (refuses what it would reject)."""
    found, problem = check_event(json.loads(json.dumps(ev)), ev["site"], ev["device"])
    assert found is not None, problem
    return found


def store_events(store: Store, events: list[dict[str, Any]]) -> None:
    """Store ``events`` as one batch, the collector's way."""
    conflicts = store.write_batch([row(e) for e in events], [])
    assert not conflicts
