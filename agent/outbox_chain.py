"""The device's signed chain, kept in the outbox (docs/device-keys.md "Signing at send").

Events are signed lazily, just before they are first handed to the uplink, never in
``append``: an Ed25519 signature and two canonical forms cost about as much as a batched
append itself (bench/outbox.py), and a pad's rating or a punch must not wait for them.

The one-row table ``chain`` (outbox schema v2) says how far the chain has come:

- ``head_seq``: every pending event with ``seq`` up to it has been signed (or could not be:
  below); those above it are not yet;
- ``head_digest``: :func:`contract.chain.digest` of the last signed event, the next one's
  ``prev``; :data:`contract.chain.GENESIS` before the first;
- ``key``: the public key in effect, announced by the last signed ``device.key`` event; NULL
  before the first announcement.

:func:`sign_through` runs inside the outbox's write transaction, so the rewritten bodies and
the new head are committed together: a row is signed once, and a resend sends the same bytes.
Which key signs: the key in effect when the device holds it, else the device's own key (its
key file was replaced: the announcement that follows is then self-signed). A ``device.key``
event is signed by the key in effect before it; the key it announces signs from the next one.

An event that has no canonical form (a NaN or a lone surrogate an older agent let in) cannot
be signed: it is left as it is, outside the chain, and sent unsigned; the centre refuses it
with its reason. The chain skips it like any other gap.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from agent.keys import Keyring, fingerprint
from contract import EventType
from contract import chain as contract_chain
from contract.events import PUBLIC_KEY_PATTERN

logger = logging.getLogger(__name__)

_PUBLIC_KEY = re.compile(PUBLIC_KEY_PATTERN)


def create_chain(conn: sqlite3.Connection, last_seq: int) -> None:
    """Migration v2: the chain starts at GENESIS just below the oldest pending event (or after
    the last seq ever used when none is pending), so an upgraded device signs what it still
    holds and everything after it."""
    conn.execute(
        "CREATE TABLE chain (id INTEGER PRIMARY KEY CHECK (id = 1), "
        "head_seq INTEGER NOT NULL, head_digest TEXT NOT NULL, key TEXT)"
    )
    oldest = conn.execute("SELECT min(seq) FROM outbox").fetchone()[0]
    head = oldest - 1 if oldest is not None else last_seq
    conn.execute(
        "INSERT INTO chain (id, head_seq, head_digest, key) VALUES (1, ?, ?, NULL)",
        (head, contract_chain.GENESIS),
    )


def start_at(conn: sqlite3.Connection, seq: int) -> bool:
    """Begin a chain that has never signed anything at ``seq`` (its first announcement):
    what is pending below it was recorded before the device signed and goes out unsigned,
    so the first signed event the centre sees is the key that checks the rest
    (docs/device-keys.md "Upgrading a device"). False when the chain has signed before."""
    cur = conn.execute(
        "UPDATE chain SET head_seq = max(head_seq, ?) WHERE id = 1 AND key IS NULL "
        "AND head_digest = ?",
        (seq - 1, contract_chain.GENESIS),
    )
    return cur.rowcount == 1


@dataclass(frozen=True)
class Head:
    seq: int
    digest: str
    key: str | None


def read_head(conn: sqlite3.Connection) -> Head:
    seq, digest, key = conn.execute(
        "SELECT head_seq, head_digest, key FROM chain WHERE id = 1"
    ).fetchone()
    return Head(int(seq), str(digest), key)


def announced_key(conn: sqlite3.Connection) -> str | None:
    """The key that will be in effect once every pending event is signed: that of the last
    ``device.key`` event not signed yet, else the chain's."""
    head = read_head(conn)
    row = conn.execute(
        "SELECT body FROM outbox WHERE type = ? AND seq > ? ORDER BY seq DESC LIMIT 1",
        (EventType.KEY.value, head.seq),
    ).fetchone()
    if row is not None:
        key = _announced(row[0])
        if key is not None:
            return key
    return head.key


def _announced(body: str | dict[str, Any]) -> str | None:
    try:
        event = json.loads(body) if isinstance(body, str) else body
        key = event["data"]["public_key"]
    except (ValueError, TypeError, KeyError):
        return None
    return key if isinstance(key, str) and _PUBLIC_KEY.fullmatch(key) else None


@dataclass
class Signed:
    """What :func:`sign_through` changed, for the outbox to apply after the commit."""

    head: Head
    bodies: dict[int, str] = field(default_factory=dict)  # seq -> the signed event's JSON
    grown: int = 0  # bytes the pending events grew by (the outbox's cap counts them)
    unsignable: list[int] = field(default_factory=list)
    announced: bool = False  # a device.key event was signed: the key in effect changed


def _signing_key(keyring: Keyring, in_effect: str | None) -> Any:
    if in_effect is not None:
        key = keyring.private(in_effect)
        if key is not None:
            return key
    current, key = keyring.current()
    if in_effect is not None:
        logger.warning(
            "the chain's key in effect %s is not on this device (device.key replaced?); "
            "signing with the device's key %s, which the next device.key event announces "
            "self-signed",
            fingerprint(in_effect),
            fingerprint(current),
        )
    return key


def sign_through(conn: sqlite3.Connection, keyring: Keyring, upto: int) -> Signed:
    """Sign every pending event above the chain's head up to ``upto``, in seq order, inside
    the caller's write transaction; DeviceKeyError (nothing written) when no key can sign."""
    head = read_head(conn)
    rows = conn.execute(
        "SELECT seq, id, type, body FROM outbox WHERE seq > ? AND seq <= ? ORDER BY seq",
        (head.seq, upto),
    ).fetchall()
    out = Signed(head)
    if not rows:
        return out
    in_effect, digest, done = head.key, head.digest, head.seq
    key = _signing_key(keyring, in_effect)
    updates: list[tuple[str, int, int]] = []
    for seq, event_id, event_type, body in rows:
        done = seq
        try:
            event = json.loads(body)
            if not isinstance(event, dict):
                raise ValueError("not a JSON object")
            event.pop("sig", None)
            event["prev"] = digest
            event["sig"] = contract_chain.sign(key, event)
            text = contract_chain.canonical(event)
        except (ValueError, TypeError, RecursionError) as exc:
            out.unsignable.append(seq)
            logger.error(
                "outbox event seq %d (%s) cannot be signed (%s): sent unsigned, outside the "
                "chain; the centre refuses it and says why",
                seq,
                event_id,
                exc,
            )
            continue
        # The stored body is the canonical form itself: the digest is taken over exactly the
        # bytes that are sent, and no third encoding is needed.
        signed_body = text.decode("utf-8")
        digest = hashlib.sha256(text).hexdigest()
        updates.append((signed_body, len(signed_body), seq))
        out.bodies[seq] = signed_body
        out.grown += len(signed_body) - len(body)
        if event_type == EventType.KEY:
            announced = _announced(event)
            if announced is None:
                logger.error("device.key event seq %d names no valid key: chain key unchanged", seq)
            else:
                in_effect = announced
                out.announced = True
                key = _signing_key(keyring, in_effect)
    conn.executemany("UPDATE outbox SET body = ?, size = ? WHERE seq = ?", updates)
    conn.execute(
        "UPDATE chain SET head_seq = ?, head_digest = ?, key = ? WHERE id = 1",
        (done, digest, in_effect),
    )
    out.head = Head(done, digest, in_effect)
    return out
