"""Recompute the devices' signed chains of a month's events (docs/tamper.md "Checking a month").

The rules are central/chainrules.py's, the same the ingest verifier (central/verifier.py)
applies, so ``verify --month`` and the findings of ingest never disagree. Here the month is
walked as the store holds it now, with no grace for gaps: each device's events in ``seq``
order, starting after its last event before the month (so the month's first link is checked
too), each signature under the key ``device_keys`` says was in effect at its seq (rotations
within the month switch it as they did on ingest). The signatures are checked ahead on two
forked processes while verify recomputes the tree (central/chainrules.py ``Signatures``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from central.chainrules import (
    SEQ_GAP,
    BookKey,
    ChainState,
    KeyBook,
    Signatures,
    fingerprint,
    seed_digest,
    step,
)
from contract import chain

# Workers checking signatures ahead of the walk: the machine's two cores. Processes, forked
# from the CLI: beside the leaf hashing that verify does meanwhile, threads would wait for the
# GIL after every check (central/chainrules.py Signatures).
VERIFY_WORKERS = 2
VERIFY_IN_PROCESSES = True


@dataclass(frozen=True)
class Finding:
    event_id: str
    what: str

    def __str__(self) -> str:
        return f"event {self.event_id}: {self.what}"


def _book(value: Any) -> KeyBook:
    """A KeyBook, or one made of a bare Ed25519 public key (trusted from the start)."""
    if isinstance(value, KeyBook):
        return value
    book = KeyBook()
    if value is not None:
        import base64

        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        raw = value.public_bytes(Encoding.Raw, PublicFormat.Raw)
        book.keys.append(
            BookKey(base64.b64encode(raw).decode(), fingerprint(raw), "trusted", None, 0, value)
        )
    return book


def check_chains(
    events: Iterable[Mapping[str, Any]],
    keys: Mapping[tuple[str, str], Any],
    before: Mapping[tuple[str, str], Mapping[str, Any]] | None = None,
    workers: int = 0,
) -> tuple[list[Finding], int]:
    """Findings over events as sent (each device's in ``seq`` order, two of one seq in the
    order given), and how many were unsigned. ``keys``: (site, device) → KeyBook or an
    Ed25519 public key; ``before``: (site, device) → the device's event before these, as sent."""
    walk = ChainWalk(events, keys, before, workers)
    return walk.result()


class ChainWalk:
    """:func:`check_chains` in two steps: made, it starts every signature check on the
    workers; :meth:`result` walks the chains (waiting for the checks it needs). In between
    the caller's own work runs alongside the checks (verify's leaf hashes)."""

    def __init__(
        self,
        events: Iterable[Mapping[str, Any]],
        keys: Mapping[tuple[str, str], Any],
        before: Mapping[tuple[str, str], Mapping[str, Any]] | None = None,
        workers: int = 0,
        processes: bool = False,
        others: Iterable[str] = (),
    ):
        # Events of other months walked only to fill the month's chains (``others``, their
        # ids): what is wrong with them is their own month's finding; a gap or a fork of the
        # month's events across them is this month's.
        self.others = set(others)
        self.by_device: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
        for e in events:
            self.by_device.setdefault((e["site"], e["device"]), []).append(e)
        for group in self.by_device.values():
            group.sort(key=lambda e: e["seq"])  # stable: the order given within a seq
        self.books = {where: _book(keys.get(where)) for where in self.by_device}
        self.before = before or {}
        self.check = Signatures(workers, processes)
        # Every signature under the key its seq had before the walk; a rotation within the
        # events is checked inline when the walk gets there.
        self.check.prefetch(
            (key, e)
            for where, group in self.by_device.items()
            for e in group
            if chain.is_signed(e) and (key := self.books[where].for_seq(e["seq"])) is not None
        )

    def result(self) -> tuple[list[Finding], int]:
        findings: list[Finding] = []
        unsigned = 0
        try:
            for where, group in sorted(self.by_device.items()):
                state = ChainState()
                first = self.before.get(where)
                if first is not None:
                    state.seq, state.event_id = first["seq"], first["id"]
                    # Checked like the walk would: a failed signature seeds UNKNOWN_DIGEST.
                    book = self.books[where]
                    state.digest = seed_digest(first, book.for_seq(first["seq"]), self.check)
                for e in group:
                    other = e["id"] in self.others
                    unsigned_before = state.unsigned
                    for f in step(state, e, self.books[where], self.check):
                        if not other or f.kind == SEQ_GAP:
                            findings.append(Finding(f.event_id, f"{f.kind}: {f.detail}"))
                    if other:
                        state.unsigned = unsigned_before
                unsigned += state.unsigned
        finally:
            self.check.close()
        return findings, unsigned


def start(events: Iterable[Any], store: Any = None) -> ChainWalk:
    """Start checking the chains of a month's events as the store returns them
    (``StoredEvent``, with their prev, sig and ``at`` as sent): the device keys and each
    device's event before the month from ``store``."""
    # Stable: two events of one seq stay in the store's order (received_at, then id).
    stored = sorted(events, key=lambda e: (e.site, e.device, e.seq))
    others: list[Any] = []
    if store is not None:
        others = _from_other_months(store, stored)
        if others:
            stored = sorted(
                [*stored, *others], key=lambda e: (e.site, e.device, e.seq, e.received_at, e.id)
            )
    sent = [e.as_sent() for e in stored]
    keys: dict[tuple[str, str], KeyBook] = {}
    before: dict[tuple[str, str], Mapping[str, Any]] = {}
    if store is not None:
        rows: dict[tuple[str, str], list[Any]] = {}
        for k in store.device_keys():
            rows.setdefault((k.site, k.device), []).append(k)
        firsts: dict[tuple[str, str], int] = {}
        for e in stored:
            firsts.setdefault((e.site, e.device), e.seq)
        for where, seq in firsts.items():
            keys[where] = KeyBook(rows.get(where, []))
            found = store.chain_event_before(where[0], where[1], seq)
            if found is not None:
                before[where] = found.as_sent()
    return ChainWalk(
        sent,
        keys,
        before,
        VERIFY_WORKERS,
        processes=VERIFY_IN_PROCESSES,
        others=(e.id for e in others),
    )


def _from_other_months(store: Any, stored: list[Any]) -> list[Any]:
    """The device's events received in another month within the seq span of the month's
    (``stored``, sorted by device and seq): a batch lost and resent after midnight fills the
    month's seqs from the next month, so only seqs the store does not hold at all are a gap;
    a second copy of a seq received in another month is a fork. One count per device; the
    span is read only when the store holds more than the month."""
    spans: dict[tuple[str, str], list[int]] = {}
    for e in stored:
        span = spans.setdefault((e.site, e.device), [e.seq, e.seq, 0])
        span[1] = e.seq
        span[2] += 1
    mine = {e.id for e in stored}
    out: list[Any] = []
    for (site, device), (lo, hi, n) in spans.items():
        if store.chain_event_count(site, device, lo, hi) <= n:
            continue
        held = store.chain_events(site, device, lo - 1, 1 << 62, upto=hi)
        out += [e for e in held if e.id not in mine]
    return out


def recompute(events: Iterable[Any], store: Any = None) -> tuple[list[Finding], int, bool]:
    """Chain findings of a month's events (see :func:`start`), the number of unsigned ones,
    and whether chains were checked (always, with a store that keeps them)."""
    findings, unsigned = start(events, store).result()
    return findings, unsigned, True
