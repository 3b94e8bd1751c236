"""The rules of a device's signed chain, once, for ingest and for the monthly seal
(docs/tamper-centre.md "What the verifier checks").

:func:`step` walks one event (as sent, contract/chain.py) after a device's previous one and
returns what is wrong with it as :class:`~central.store.records.NewFinding`. The ingest
verifier (central/verifier.py) and ``hall-central verify --month`` (central/seal/chains.py)
both call it, so they can never disagree on what a chain is. The caller decides only *when*
to walk an event (the verifier waits ``[chains] gap_grace_s`` before it walks across a seq gap;
the seal walks the month as it is).

Keys (:class:`KeyBook`): the device's rows of ``device_keys``. The key that checks an event is
the trusted (or, before its successor, rotation-retired) key in effect at its seq; a pending
key only while the device has no trusted key at all (:meth:`KeyBook.for_seq`). A
``device.key`` event announces the key that signs from the next event on: signed by the key in
effect it is a rotation (the new key inherits its trust); signed only by itself it is a first
announcement (pending until an administrator trusts it) or, when another key is in effect, a
key mismatch (the events after it are still checked under the key in effect).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Mapping
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from central.store.records import DeviceKey, KeyWrite, NewFinding
from contract import EventType
from contract.chain import GENESIS, digest, fingerprint, is_signed, signing_input

KEY_EVENT = EventType.KEY.value

BAD_SIGNATURE = "bad_signature"
BROKEN_LINK = "broken_link"
# ChainState.digest after an event whose signature failed (kept in chain_heads.last_digest).
UNKNOWN_DIGEST = "unknown"
SEQ_GAP = "seq_gap"
FORK = "fork"
UNTRUSTED_KEY = "untrusted_key"
KEY_MISMATCH = "key_mismatch"
UNSIGNED_AFTER_SIGNED = "unsigned_after_signed"
KINDS = (
    BAD_SIGNATURE,
    BROKEN_LINK,
    SEQ_GAP,
    FORK,
    UNTRUSTED_KEY,
    KEY_MISMATCH,
    UNSIGNED_AFTER_SIGNED,
)


def raw_key(text: str) -> bytes | None:
    """The 32 raw bytes of a base64 public key, or None when it is not one."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 32 else None


_B64_TEXT = re.compile(r"[A-Za-z0-9+/=]*", re.ASCII)
_SITE_KEY = b'"site":'


def digest_from(unsigned: bytes, sent: Mapping[str, Any]) -> str:
    """:func:`digest` of ``sent`` from its signing input (its canonical form without
    ``sig``): RFC 8785 sorts ``sig`` between ``seq`` and ``site``, and a base64 string needs
    no escaping, so the full form is the same bytes with ``"sig":"…",`` put there. The top
    level's ``"seq":N,"site":`` comes after ``data``, so the last one is it. Anything else
    is canonicalised whole."""
    sig, seq = sent.get("sig"), sent.get("seq")
    if isinstance(sig, str) and isinstance(seq, int) and _B64_TEXT.fullmatch(sig):
        marker = b'"seq":%d,' % seq + _SITE_KEY
        at = unsigned.rfind(marker)
        if at >= 0:
            cut = at + len(marker) - len(_SITE_KEY)
            full = b'%s"sig":"%s",%s' % (unsigned[:cut], sig.encode("ascii"), unsigned[cut:])
            return hashlib.sha256(full).hexdigest()
    return digest(sent)


class Canonical:
    """Each event's canonical forms, computed once per walk (the signature check and the
    next link both need them)."""

    def __init__(self) -> None:
        self._inputs: dict[int, tuple[Mapping[str, Any], bytes]] = {}

    def signing_input(self, sent: Mapping[str, Any]) -> bytes:
        found = self._inputs.get(id(sent))
        if found is not None and found[0] is sent:
            return found[1]
        unsigned = signing_input(sent)
        self._inputs[id(sent)] = (sent, unsigned)
        return unsigned

    def digest(self, sent: Mapping[str, Any]) -> str:
        return digest_from(self.signing_input(sent), sent)

    def problem(self, sent: Mapping[str, Any]) -> str | None:
        """Why ``sent`` has no canonical form (an integer beyond ±(2^53−1), which JSON
        validation accepts but RFC 8785 cannot write), or None."""
        try:
            self.signing_input(sent)
        except (ValueError, TypeError) as exc:
            return f"{NO_CANONICAL_FORM}: {exc}"
        return None


NO_CANONICAL_FORM = "no RFC 8785 canonical form"


def seed_digest(sent: Mapping[str, Any], key: BookKey | None, check: Signatures) -> str | None:
    """``ChainState.digest`` after ``sent`` walked before (the event before a re-walk or a
    month): its digest when its signature verifies under ``key``, :data:`UNKNOWN_DIGEST`
    when it does not (or it has no canonical form), so the next link is not checked against
    a digest no one can vouch for and one changed row stays one finding; None unsigned."""
    if not is_signed(sent):
        return None
    if check.canon.problem(sent) is not None:
        return UNKNOWN_DIGEST
    signers = [key] if key is not None else []
    data = sent.get("data")
    announced = data.get("public_key") if isinstance(data, dict) else None
    if sent.get("type") == KEY_EVENT and isinstance(announced, str) and raw_key(announced):
        signers.append(BookKey(announced, "", "pending", None, 0))  # it may sign itself
    if not any(check(k, sent) for k in signers):
        return UNKNOWN_DIGEST
    return check.canon.digest(sent)


def _short(hex_digest: Any) -> str:
    return f"{str(hex_digest)[:12]}…"


# --- keys -----------------------------------------------------------------------------------


@dataclass
class BookKey:
    public_key: str  # base64, as device.key carries it
    fingerprint: str
    state: str  # pending | trusted | retired
    from_seq: int | None
    order: int  # later rows win a tie of from_seq
    _obj: Any = None

    def obj(self) -> Any:
        """The cryptography public key, made once."""
        if self._obj is None:
            from contract.chain import public_key

            raw = raw_key(self.public_key)
            if raw is None:
                raise ValueError(f"device key {self.fingerprint}: not 32 bytes of base64")
            self._obj = public_key(raw)
        return self._obj

    def raw(self) -> bytes:
        raw = raw_key(self.public_key)
        if raw is None:
            raise ValueError(f"device key {self.fingerprint}: not 32 bytes of base64")
        return raw

    def named(self) -> str:
        return f"{self.fingerprint} ({self.state})"


class KeyBook:
    """A device's keys as the walk goes; what it decides to change is kept in ``writes``
    (the verifier stores them with the findings; the seal only looks)."""

    def __init__(self, rows: Iterable[DeviceKey] = ()):
        self.keys: list[BookKey] = [
            BookKey(r.public_key, r.fingerprint, r.state, r.from_seq, r.id) for r in rows
        ]
        self.writes: list[KeyWrite] = []
        self._order = max((k.order for k in self.keys), default=0)

    def for_seq(self, seq: int) -> BookKey | None:
        """The key that checks the event of ``seq`` (docs/tamper-centre.md "Keys").

        Of the keys whose ``from_seq`` is at or below ``seq`` (none: from the start): while the
        device has a trusted key, a pending one never checks anything (a self-signed
        announcement, from the device or from whoever could write the store, cannot take
        over from the trusted key); the trusted key wins over retired ones (a key an
        administrator retired with ``devices trust --replace`` never wins over the key that
        replaced it), and of retired keys the latest ``from_seq`` (a key retired by a rotation
        checks the seqs before its successor's). With no trusted key at all (a first
        announcement not trusted yet), pending and retired keys rank by ``from_seq``."""
        trusted = any(k.state == "trusted" for k in self.keys)
        best: BookKey | None = None
        best_rank: tuple[Any, ...] = ()
        for k in self.keys:
            start = -1 if k.from_seq is None else k.from_seq
            if start > seq:
                continue
            if trusted:
                if k.state == "pending":
                    continue
                rank: tuple[Any, ...] = (k.state == "trusted", start, k.order)
            else:
                rank = (start, k.state != "retired", k.order)
            if best is None or rank > best_rank:
                best, best_rank = k, rank
        return best

    def first_change(self, other: KeyBook) -> int | None:
        """The first seq whose key (:meth:`for_seq`) differs in ``other``, -1 when it is the
        chain's start, None when every seq keeps its key. The choice only changes at a key's
        ``from_seq``, so those are the seqs compared."""
        points = {-1} | {k.from_seq for k in (*self.keys, *other.keys) if k.from_seq is not None}
        for seq in sorted(points):
            a, b = self.for_seq(seq), other.for_seq(seq)
            if (a.public_key if a else None) != (b.public_key if b else None):
                return seq
        return None

    def find(self, public_key: str) -> BookKey | None:
        return next((k for k in self.keys if k.public_key == public_key), None)

    def _new(self, public_key: str, state: str, from_seq: int) -> BookKey:
        self._order += 1
        raw = raw_key(public_key) or b""
        key = BookKey(public_key, fingerprint(raw), state, from_seq, self._order)
        self.keys.append(key)
        return key

    def add_pending(self, public_key: str, from_seq: int, announced_in: str) -> BookKey:
        found = self.find(public_key)
        if found is None:
            found = self._new(public_key, "pending", from_seq)
        self.writes.append(KeyWrite("add", public_key, found.fingerprint, from_seq, announced_in))
        return found

    def rotate(self, old: BookKey, public_key: str, from_seq: int, announced_in: str) -> BookKey:
        """``old`` signed the announcement of ``public_key``: the new key inherits its trust."""
        new = self.find(public_key)
        trusted = old.state == "trusted"
        if new is None:
            new = self._new(public_key, "trusted" if trusted else "pending", from_seq)
        else:
            new.from_seq = from_seq if new.from_seq is None else max(new.from_seq, from_seq)
            if trusted:
                new.state = "trusted"
        by = f"rotation signed by {old.fingerprint} in event {announced_in}"
        op = "trust" if trusted else "add"
        self.writes.append(KeyWrite(op, public_key, new.fingerprint, from_seq, announced_in, by))
        if old.state != "retired":
            old.state = "retired"
            self.writes.append(KeyWrite("retire", old.public_key, old.fingerprint))
        return new


# --- signatures -----------------------------------------------------------------------------


class Signatures:
    """Ed25519 checks, optionally ahead of the walk on ``workers`` threads or processes.

    cryptography's verify releases the GIL, so threads run checks in parallel while the walk
    waits for them (the verifier's catch-up). A thread must take the GIL back after each
    check, though, so beside a main thread that is busy itself (verify --month hashing the
    month's leaves meanwhile) threads gain little; forked processes (``processes``) have no
    GIL to share. Only a process with no other threads may fork: the CLI, not the collector.
    """

    CHUNK = 256
    # Few large chunks for processes: each one crosses a pipe, handed over by the executor's
    # thread, which needs the GIL of a busy main thread to do it.
    PROCESS_CHUNK = 512

    def __init__(self, workers: int = 0, processes: bool = False):
        self._pool: Executor | None = None
        self._processes = processes and workers > 0
        if self._processes:
            import multiprocessing

            self._pool = ProcessPoolExecutor(workers, multiprocessing.get_context("fork"))
        elif workers > 0:
            self._pool = ThreadPoolExecutor(workers, "chain-verify")
        self._ahead: dict[tuple[str, str, str], tuple[Future[list[bool]], int]] = {}
        self.checked = 0
        self.canon = Canonical()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Signatures:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def prefetch(self, items: Iterable[tuple[BookKey, Mapping[str, Any]]]) -> None:
        """Start checking ``(key, event)`` pairs on the workers (no-op without workers), a
        chunk as soon as it is ready, so the workers start while the rest is prepared."""
        if self._pool is None:
            return
        chunk: list[tuple[tuple[str, str, str], Any, bytes, bytes]] = []
        for key, sent in items:
            sig = _sig_bytes(sent)
            if sig is None:
                continue
            try:
                obj = key.raw() if self._processes else key.obj()
                message = self.canon.signing_input(sent)
            except (ValueError, TypeError):
                continue  # checked (and recorded) when the walk gets there
            chunk.append(((sent["id"], key.public_key, sent["sig"]), obj, sig, message))
            if len(chunk) == (self.PROCESS_CHUNK if self._processes else self.CHUNK):
                self._submit(chunk)
                chunk = []
        if chunk:
            self._submit(chunk)

    def _submit(self, chunk: list[tuple[tuple[str, str, str], Any, bytes, bytes]]) -> None:
        assert self._pool is not None
        future = self._pool.submit(_verify_all, [(o, s, m) for _, o, s, m in chunk])
        for j, (ck, _o, _s, _m) in enumerate(chunk):
            self._ahead[ck] = (future, j)

    def __call__(self, key: BookKey, sent: Mapping[str, Any]) -> bool:
        self.checked += 1
        ahead = self._ahead.pop((sent["id"], key.public_key, str(sent.get("sig"))), None)
        if ahead is not None:
            future, j = ahead
            return future.result()[j]
        sig = _sig_bytes(sent)
        if sig is None:
            return False
        try:
            return _verify_one(key.obj(), sig, self.canon.signing_input(sent))
        except (ValueError, TypeError):
            return False


def _sig_bytes(sent: Mapping[str, Any]) -> bytes | None:
    sig = sent.get("sig")
    if not isinstance(sig, str):
        return None
    try:
        raw = base64.b64decode(sig, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 64 else None


def _verify_one(key: Any, sig: bytes, message: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        key.verify(sig, message)
    except InvalidSignature:
        return False
    return True


def _verify_all(items: list[tuple[Any, bytes, bytes]]) -> list[bool]:
    """Check each (key, signature, message); a key given as its raw bytes (sent to a
    process, which cannot take cryptography's objects) is made here, once."""
    from contract.chain import public_key

    made: dict[bytes, Any] = {}
    out = []
    for key, sig, message in items:
        if isinstance(key, bytes):
            key = made.get(key) or made.setdefault(key, public_key(key))
        out.append(_verify_one(key, sig, message))
    return out


# --- the walk -------------------------------------------------------------------------------


@dataclass
class ChainState:
    """A device's chain as walked so far (table ``chain_heads``)."""

    seq: int | None = None  # the last walked event's seq
    event_id: str | None = None  # and its id
    digest: str | None = None  # digest of the last signed event walked
    first_seq: int | None = None
    signed: int = 0
    unsigned: int = 0
    key: str | None = None  # fingerprint of the key in effect after the last event
    no_key_said: bool = field(default=False, repr=False)

    @property
    def signed_seen(self) -> bool:
        return self.digest is not None


def needs_key(sent: Mapping[str, Any], book: KeyBook) -> bool:
    """A signed event no key can check: no key registered or announced for its device (a
    device.key announcement checks itself)."""
    return is_signed(sent) and sent["type"] != KEY_EVENT and book.for_seq(sent["seq"]) is None


def no_key_finding(sent: Mapping[str, Any]) -> NewFinding:
    return NewFinding(
        UNTRUSTED_KEY,
        sent["seq"],
        sent["id"],
        f"signed, but no key is registered or announced for {sent['site']}/{sent['device']}: "
        f"register the device's key (hall-central devices trust {sent['device']} KEYFILE)",
    )


def gap_finding(site: str, device: str, first: int, last: int, after: Mapping[str, Any]) -> str:
    span = f"seq {first}" if first == last else f"seq {first}..{last}"
    return f"{site}/{device} {span} missing before event {after['id']} (seq {after['seq']})"


def step(
    state: ChainState, sent: Mapping[str, Any], book: KeyBook, check: Signatures
) -> list[NewFinding]:
    """Walk ``sent`` (the device's next event in seq order, as sent) after ``state``; update
    ``state`` and ``book``; return the findings."""
    eid, seq = sent["id"], sent["seq"]
    if state.seq is not None and seq <= state.seq:
        # A second event of a seq the chain holds: the first received stays in the chain.
        return [
            NewFinding(
                FORK,
                seq,
                eid,
                f"seq {seq} again: event {state.event_id} (seq {state.seq}) came first; "
                "two events of one seq mean two histories of the device",
            )
        ]
    out: list[NewFinding] = []
    gap: NewFinding | None = None
    if state.seq is not None and seq > state.seq + 1:
        first, last = state.seq + 1, seq - 1
        # Named by the event after the missing seqs: a gap partly filled later leaves holes
        # with other events after them, so each is a finding of its own.
        gap = NewFinding(
            SEQ_GAP, first, eid, gap_finding(sent["site"], sent["device"], first, last, sent), last
        )
    if state.first_seq is None:
        state.first_seq = seq
    if not is_signed(sent):
        state.unsigned += 1
        if state.signed_seen:
            out.append(
                NewFinding(
                    UNSIGNED_AFTER_SIGNED,
                    seq,
                    eid,
                    f"unsigned, after signed events (the last at seq {state.seq}): the device "
                    "stopped signing, or the event did not come from it",
                )
            )
        _advance(state, sent, None)
        return [gap, *out] if gap else out
    state.signed += 1
    key = book.for_seq(seq)
    no_form = check.canon.problem(sent)
    if no_form is not None:
        # Nothing to check a signature or a link against: recorded, and the walk goes on.
        out.append(NewFinding(BAD_SIGNATURE, seq, eid, no_form))
    elif sent["type"] == KEY_EVENT:
        out += _announcement(sent, key, book, check)
    elif key is None:
        if not state.no_key_said:
            out.append(no_key_finding(sent))
            state.no_key_said = True
    elif not check(key, sent):
        out.append(
            NewFinding(BAD_SIGNATURE, seq, eid, f"signature does not verify under {key.named()}")
        )
    prev = sent["prev"]
    if state.digest == UNKNOWN_DIGEST:
        pass  # the event before failed its signature: what its digest was is not known
    elif state.digest is not None and prev != state.digest:
        named = "the chain's start (GENESIS)" if prev == GENESIS else _short(prev)
        if gap is not None:
            gap = NewFinding(
                gap.kind,
                gap.seq,
                gap.event_id,
                f"{gap.detail}; its prev names {named}, not the event before the gap: the "
                "missing events were signed and are not at the centre",
                gap.seq_end,
            )
        else:
            out.append(
                NewFinding(
                    BROKEN_LINK,
                    seq,
                    eid,
                    f"prev names {named}, expected {_short(state.digest)}, the digest of event "
                    f"{state.event_id} (seq {state.seq}) before it",
                )
            )
    elif gap is not None and state.digest is not None:
        gap = NewFinding(
            gap.kind,
            gap.seq,
            gap.event_id,
            f"{gap.detail}; the link is intact (prev names the event before the gap): "
            "dropped on the device before it signed them",
            gap.seq_end,
        )
    # An event whose signature fails was changed after signing (or forged): the next event's
    # prev names the digest of what was signed, which the centre no longer has. Its link is
    # then not checked, so one changed row is one finding, not two (docs/tamper.md).
    bad = any(f.kind == BAD_SIGNATURE for f in out)
    _advance(state, sent, UNKNOWN_DIGEST if bad else check.canon.digest(sent))
    after = book.for_seq(seq + 1)
    state.key = after.fingerprint if after is not None else None
    return [gap, *out] if gap else out


def _advance(state: ChainState, sent: Mapping[str, Any], signed_digest: str | None) -> None:
    state.seq, state.event_id = sent["seq"], sent["id"]
    if signed_digest is not None:
        state.digest = signed_digest


def _announcement(
    sent: Mapping[str, Any], before: BookKey | None, book: KeyBook, check: Signatures
) -> list[NewFinding]:
    """A device.key event: rotation, first announcement, or a key that does not belong."""
    eid, seq = sent["id"], sent["seq"]
    data = sent.get("data") if isinstance(sent.get("data"), dict) else {}
    new_key = data.get("public_key") if isinstance(data, dict) else None
    raw = raw_key(new_key) if isinstance(new_key, str) else None
    if raw is None:
        return [NewFinding(KEY_MISMATCH, seq, eid, "device.key without a 32-byte public key")]
    announced = BookKey(new_key, fingerprint(raw), "pending", seq + 1, 0)  # type: ignore[arg-type]
    if before is not None and check(before, sent):
        if before.public_key != new_key:
            book.rotate(before, new_key, seq + 1, eid)  # type: ignore[arg-type]
        return []
    if not check(announced, sent):
        says = f"the key in effect {before.named()} nor " if before is not None else ""
        return [
            NewFinding(
                BAD_SIGNATURE,
                seq,
                eid,
                f"device.key announcing {announced.fingerprint}: the signature verifies under "
                f"neither {says}the announced key",
            )
        ]
    known = book.find(new_key)  # type: ignore[arg-type]
    if known is not None and known.state == "trusted":
        return []  # registered by an administrator: nothing to decide
    book.add_pending(new_key, seq + 1, eid)  # type: ignore[arg-type]
    if before is None:
        return [
            NewFinding(
                UNTRUSTED_KEY,
                seq,
                eid,
                f"announces key {announced.fingerprint}, signed by itself; pending until an "
                f"administrator trusts it (hall-central devices trust {sent['device']} KEYFILE)",
            )
        ]
    return [
        NewFinding(
            KEY_MISMATCH,
            seq,
            eid,
            f"announces key {announced.fingerprint} signed by itself, while {before.named()} "
            "is in effect: a rotation is signed by the key it replaces. Events from here on are "
            "still checked under the key in effect; if the device was replaced, an "
            "administrator trusts the announced key (devices trust --replace) and they are "
            "checked again",
        )
    ]
