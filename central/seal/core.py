"""Seal a month, verify it against the store, prove one event (docs/tamper.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from central.seal import merkle
from central.seal.chains import start as start_chains
from central.seal.checkpoint import sign, signature_ok
from central.seal.keys import public_hex
from central.seal.leaf import event_leaf_hash, leaf_object
from central.store.base import Checkpoint

FORMAT = "hall-proof v1"


class SealError(Exception):
    pass


def _now_ms() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@dataclass
class Sealed:
    checkpoint: Checkpoint
    created: bool  # False: nothing new since the month's last checkpoint
    extends: Checkpoint | None = None  # the earlier checkpoint this one was proved to extend
    consistency: list[str] = field(default_factory=list)  # its proof, hex


def seal(store: Any, month: Any, key: Any, now: datetime | None = None) -> Sealed:
    """Build the month's tree from the store and store a signed checkpoint of it. A month
    sealed before must be extended, never rewritten: the earlier tree must be a prefix of
    this one (a consistency proof, RFC 9162 §2.1.4), else nothing is stored."""
    events = store.sealable_events(month.start(), month.end())
    hashes = [event_leaf_hash(e) for e in events]
    root = merkle.root(hashes)
    earlier = store.checkpoints(month.label)
    last = earlier[-1] if earlier else None
    proof: list[bytes] = []
    if last is not None:
        if last.tree_size == len(hashes) and last.root == root.hex():
            return Sealed(last, False)
        ok = last.tree_size <= len(hashes)
        if ok and last.tree_size > 0:
            proof = merkle.consistency_proof(last.tree_size, hashes)
            ok = merkle.verify_consistency(
                last.tree_size, len(hashes), bytes.fromhex(last.root), root, proof
            )
        if not ok:
            raise SealError(
                f"seal {month.label}: the store no longer extends checkpoint {last.id} "
                f"({last.tree_size} events): run 'hall-central verify --month {month.label}'"
            )
    c = Checkpoint(
        month.label,
        len(hashes),
        root.hex(),
        "",
        public_hex(key),
        now or _now_ms(),
        last.id if last else None,
    )
    c = Checkpoint(**{**c.__dict__, "signature": sign(key, c)})
    cid = store.add_checkpoint(c, [(e.id, h.hex()) for e, h in zip(events, hashes, strict=True)])
    c = Checkpoint(**{**c.__dict__, "id": cid})
    return Sealed(c, True, last, [p.hex() for p in proof])


@dataclass
class Verified:
    month: str
    checkpoint: Checkpoint | None
    problems: list[str]  # each names what differs; empty: the month checks
    notes: list[str]  # not failures (events received after the seal, unsigned events)

    @property
    def ok(self) -> bool:
        return self.checkpoint is not None and not self.problems


def verify(store: Any, month: Any, public_key: str) -> Verified:
    """Compare the store with the month's checkpoints: each checkpoint's signature under
    ``public_key`` (hex), its stored leaves against its signed root, each against the one
    before (consistency), the latest against the events the store holds now, and every
    device's chain."""
    problems: list[str] = []
    notes: list[str] = []
    checkpoints = store.checkpoints(month.label)
    events = store.sealable_events(month.start(), month.end())
    # The signatures are checked on worker threads while the tree is recomputed here.
    chains = start_chains(events, store)
    try:
        return _verify(store, month, public_key, checkpoints, events, problems, notes)
    finally:
        findings, unsigned = chains.result()
        problems[:0] = [str(f) for f in findings]
        if unsigned:
            notes.insert(0, f"{unsigned} unsigned events (sent by agents older than chains)")


def _verify(
    store: Any,
    month: Any,
    public_key: str,
    checkpoints: list[Checkpoint],
    events: list[Any],
    problems: list[str],
    notes: list[str],
) -> Verified:
    """:func:`verify`'s tree part; ``problems`` and ``notes`` are filled in place (the
    Verified returned holds the same lists, so the chains' findings join them)."""
    if not checkpoints:
        problems.insert(0, f"no checkpoint of {month.label}")
        return Verified(month.label, None, problems, notes)
    previous: tuple[Checkpoint, list[bytes]] | None = None
    leaves: list[tuple[str, str]] = []
    for c in checkpoints:
        if not signature_ok(public_key, c):
            problems.append(f"checkpoint {c.id}: signature fails under the centre's key")
        leaves = store.checkpoint_leaves(c.id)
        hashes = [bytes.fromhex(h) for _, h in leaves]
        if len(hashes) != c.tree_size or merkle.root(hashes).hex() != c.root:
            problems.append(f"checkpoint {c.id}: its stored leaves do not give its signed root")
        if previous is not None:
            p, _ = previous
            ok = p.tree_size <= len(hashes) and (
                p.tree_size == 0
                or merkle.verify_consistency(
                    p.tree_size,
                    len(hashes),
                    bytes.fromhex(p.root),
                    bytes.fromhex(c.root),
                    merkle.consistency_proof(p.tree_size, hashes),
                )
            )
            if not ok:
                problems.append(f"checkpoint {c.id}: does not extend checkpoint {p.id}")
        previous = (c, hashes)
    latest = checkpoints[-1]
    sealed = {eid: (i, h) for i, (eid, h) in enumerate(leaves)}
    now = {e.id: (i, event_leaf_hash(e).hex(), e) for i, e in enumerate(events)}
    for eid, (i, h) in sealed.items():
        found = now.get(eid)
        if found is None:
            problems.append(f"event {eid} (leaf {i}): sealed, missing from the store")
        elif found[1] != h:
            problems.append(f"event {eid} (leaf {i}): changed since the seal")
        elif found[0] != i:
            problems.append(f"event {eid}: sealed as leaf {i}, now leaf {found[0]}")
    late = 0
    for eid, (_, _, e) in now.items():
        if eid in sealed:
            continue
        if e.received_at < latest.sealed_at:
            problems.append(f"event {eid}: in the store, received before the seal, not sealed")
        else:
            late += 1
    if late:
        notes.append(f"{late} events received after the seal: not sealed yet")
    return Verified(month.label, latest, problems, notes)


def prove(store: Any, event_id: str) -> dict[str, Any]:
    """An inclusion proof of ``event_id`` in the latest checkpoint holding it, with what a
    checker needs (scripts/verify_proof.py)."""
    ids = store.checkpoints_of_event(event_id)
    if not ids:
        raise SealError(f"prove: event {event_id} is in no checkpoint (not sealed yet?)")
    c = store.checkpoint(ids[-1])
    leaves = store.checkpoint_leaves(ids[-1])
    index = next(i for i, (eid, _) in enumerate(leaves) if eid == event_id)
    hashes = [bytes.fromhex(h) for _, h in leaves]
    event = store.event(event_id)
    return {
        "format": FORMAT,
        "event_id": event_id,
        "month": c.month,
        "leaf_index": index,
        "tree_size": c.tree_size,
        "leaf_hash": leaves[index][1],
        "path": [p.hex() for p in merkle.inclusion_proof(index, hashes)],
        "root": c.root,
        "sealed_at": c.sealed_at.astimezone(UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "signature": c.signature,
        "public_key": c.public_key,
        "checkpoint": c.id,
        "event": leaf_object(event) if event is not None else None,
    }
