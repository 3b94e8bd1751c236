"""The store's side of the devices' signed chains (docs/tamper-centre.md): tables
``device_keys``, ``chain_findings`` and ``chain_heads``, and the events in chain order.

Mixed into :class:`central.store.base.Store`; every statement reads the same on both dialects
(``%s`` placeholders). The verifier (central/verifier.py) writes a device's findings, key
changes and head in ONE transaction (:meth:`ChainQueries.commit_chain`), so a crash between
them can neither lose a finding nor walk an event twice.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from central.store.cases import INSERT_AUDIT, Run
from central.store.records import (
    ChainFinding,
    ChainHead,
    DeviceKey,
    KeyWrite,
    NewFinding,
    StoredEvent,
    required_time,
    stored_time,
)

KEY_COLUMNS = (
    "id, site, device, public_key, fingerprint, state, from_seq, announced_in, first_seen, "
    "trusted_at, trusted_by"
)
FINDING_COLUMNS = "id, site, device, event_id, seq, seq_end, kind, detail, found_at, resolved_at"
HEAD_COLUMNS = (
    "site, device, first_seq, last_seq, last_event_id, last_digest, key_fingerprint, signed, "
    "unsigned, updated_at"
)
# Kinds an administrator settles by trusting a key (`hall-central devices trust`).
KEY_KINDS = ("untrusted_key", "key_mismatch")
# Kinds that depend on which key checks an event: resolved from the first seq whose key a
# `devices trust` changed, and found again by the re-walk where still true.
REWALK_KINDS = ("bad_signature", "broken_link", *KEY_KINDS)

_ADD_FINDING = (
    "INSERT INTO chain_findings (site, device, event_id, seq, seq_end, kind, detail, found_at) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
    # Found again after it was resolved (a re-walk after `devices trust`, a gap still
    # missing): open again, never a second row.
    "ON CONFLICT (site, device, kind, seq, event_id) DO UPDATE SET resolved_at = NULL, "
    "seq_end = excluded.seq_end, detail = excluded.detail"
)


class HeadMoved(Exception):
    """The device's chain head changed under a verifier step (``devices trust``)."""


@dataclass(frozen=True)
class HeadMark:
    """The head a verifier step started from: (last_seq, last_event_id), None for no head."""

    at: tuple[int | None, str | None] | None


def head_mark(head: ChainHead | None) -> HeadMark:
    return HeadMark(None if head is None else (head.last_seq, head.last_event_id))


_PUT_HEAD = f"""
INSERT INTO chain_heads ({HEAD_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (site, device) DO UPDATE SET
  first_seq = excluded.first_seq, last_seq = excluded.last_seq,
  last_event_id = excluded.last_event_id,
  last_digest = excluded.last_digest, key_fingerprint = excluded.key_fingerprint,
  signed = excluded.signed, unsigned = excluded.unsigned, updated_at = excluded.updated_at
"""
_ADD_KEY = (
    "INSERT INTO device_keys (site, device, public_key, fingerprint, state, from_seq, "
    "announced_in, first_seen) VALUES (%s, %s, %s, %s, 'pending', %s, %s, %s) "
    "ON CONFLICT (site, device, public_key) DO NOTHING"
)
_TRUST_KEY = """
INSERT INTO device_keys (site, device, public_key, fingerprint, state, from_seq, announced_in,
                         first_seen, trusted_at, trusted_by)
VALUES (%s, %s, %s, %s, 'trusted', %s, %s, %s, %s, %s)
ON CONFLICT (site, device, public_key) DO UPDATE SET
  state = 'trusted', from_seq = coalesce(excluded.from_seq, device_keys.from_seq),
  announced_in = coalesce(device_keys.announced_in, excluded.announced_in),
  trusted_at = excluded.trusted_at, trusted_by = excluded.trusted_by
"""


def key_record(row: tuple[Any, ...]) -> DeviceKey:
    kid, site, device, key, fp, state, from_seq, announced, first, trusted_at, by = row
    return DeviceKey(
        int(kid),
        site,
        device,
        key,
        fp,
        state,
        None if from_seq is None else int(from_seq),
        announced,
        required_time(first),
        stored_time(trusted_at),
        by,
    )


def finding_record(row: tuple[Any, ...]) -> ChainFinding:
    fid, site, device, event_id, seq, seq_end, kind, detail, found, resolved = row
    return ChainFinding(
        int(fid),
        site,
        device,
        str(event_id),
        int(seq),
        None if seq_end is None else int(seq_end),
        kind,
        detail,
        required_time(found),
        stored_time(resolved),
    )


def head_record(row: tuple[Any, ...]) -> ChainHead:
    site, device, first, last, last_id, digest, fp, signed, unsigned, updated = row
    return ChainHead(
        site,
        device,
        None if first is None else int(first),
        None if last is None else int(last),
        None if last_id is None else str(last_id),
        digest,
        fp,
        int(signed),
        int(unsigned),
        stored_time(updated),
    )


class ChainQueries:
    """Chain reads and writes; :class:`central.store.base.Store` provides the dialect."""

    # The column holding `at` exactly as the device sent it (PostgreSQL: at_text).
    at_sent_column = "at"

    if TYPE_CHECKING:

        def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]: ...
        def transaction(self) -> AbstractContextManager[Run]: ...
        def stamp(self, moment: datetime) -> Any: ...
        def _events_where(self, where: str, params: tuple[Any, ...]) -> list[StoredEvent]: ...

    # --- events in chain order -------------------------------------------------------------

    def chain_events(
        self, site: str, device: str, after_seq: int, limit: int, upto: int | None = None
    ) -> list[StoredEvent]:
        """One device's events with ``after_seq`` < seq (≤ ``upto``), in seq order; two of one
        seq (a fork) in the order the centre received them. At most ``limit``."""
        where = "site = %s AND device = %s AND seq > %s"
        params: tuple[Any, ...] = (site, device, after_seq)
        if upto is not None:
            where += " AND seq <= %s"
            params += (upto,)
        return self._events_where(
            f"{where} ORDER BY seq, received_at, id LIMIT %s", (*params, limit)
        )

    def chain_event_count(self, site: str, device: str, lo: int, hi: int) -> int:
        """How many events of the device the store holds with seq in [``lo``, ``hi``]."""
        [(n,)] = self.query(
            "SELECT COUNT(*) FROM events WHERE site = %s AND device = %s AND seq >= %s "
            "AND seq <= %s",
            (site, device, lo, hi),
        )
        return int(n)

    def chain_event_before(self, site: str, device: str, seq: int) -> StoredEvent | None:
        """The device's event just before ``seq`` (the first received of its seq), or None."""
        found = self._events_where(
            "site = %s AND device = %s AND seq < %s ORDER BY seq DESC, received_at, id LIMIT 1",
            (site, device, seq),
        )
        return found[0] if found else None

    def chain_devices(self) -> list[tuple[str, str]]:
        """Every device with stored events (``devices`` holds a row for each) or a chain head."""
        rows = self.query(
            "SELECT site, device FROM devices WHERE last_received_at IS NOT NULL "
            "UNION SELECT site, device FROM chain_heads"
        )
        return sorted((str(s), str(d)) for s, d in rows)

    # --- keys, findings, heads ---------------------------------------------------------------

    def device_keys(self, site: str | None = None, device: str | None = None) -> list[DeviceKey]:
        where, params = _narrow(site, device)
        rows = self.query(
            f"SELECT {KEY_COLUMNS} FROM device_keys {where} ORDER BY site, device, id", params
        )
        return [key_record(r) for r in rows]

    def chain_findings(
        self,
        site: str | None = None,
        device: str | None = None,
        open_only: bool = False,
        kinds: tuple[str, ...] | None = None,
    ) -> list[ChainFinding]:
        """Findings, oldest first; ``open_only``: not resolved."""
        where, params = _narrow(site, device)
        clauses = [where] if where else []
        if open_only:
            clauses.append(("AND" if clauses else "WHERE") + " resolved_at IS NULL")
        if kinds:
            marks = ", ".join(["%s"] * len(kinds))
            clauses.append(("AND" if clauses else "WHERE") + f" kind IN ({marks})")
            params = (*params, *kinds)
        rows = self.query(
            f"SELECT {FINDING_COLUMNS} FROM chain_findings {' '.join(clauses)} ORDER BY id",
            params,
        )
        return [finding_record(r) for r in rows]

    def open_finding_counts(self) -> dict[tuple[str, str], int]:
        """How many open findings each device has (``hall-central devices``)."""
        rows = self.query(
            "SELECT site, device, COUNT(*) FROM chain_findings WHERE resolved_at IS NULL "
            "GROUP BY site, device"
        )
        return {(str(site), str(device)): int(n) for site, device, n in rows}

    def open_findings_by_event(self) -> dict[str, list[ChainFinding]]:
        """Open findings about an event itself, by event id (the reports' marks): a seq gap
        names the event after it, but says nothing about that event."""
        out: dict[str, list[ChainFinding]] = {}
        rows = self.query(
            f"SELECT {FINDING_COLUMNS} FROM chain_findings "
            "WHERE resolved_at IS NULL AND kind <> 'seq_gap' ORDER BY id"
        )
        for row in rows:
            f = finding_record(row)
            out.setdefault(f.event_id, []).append(f)
        return out

    def chain_head(self, site: str, device: str) -> ChainHead | None:
        rows = self.query(
            f"SELECT {HEAD_COLUMNS} FROM chain_heads WHERE site = %s AND device = %s",
            (site, device),
        )
        return head_record(rows[0]) if rows else None

    def chain_heads(self) -> list[ChainHead]:
        rows = self.query(f"SELECT {HEAD_COLUMNS} FROM chain_heads ORDER BY site, device")
        return [head_record(r) for r in rows]

    def commit_chain(
        self,
        head: ChainHead,
        found: list[NewFinding],
        resolved: list[int],
        keys: list[KeyWrite],
        at: datetime,
        expected: HeadMark | None = None,
    ) -> None:
        """One verifier step of one device, all or nothing: the gaps filled since, its new
        findings (one already recorded stays one row, open again if it was resolved: after
        the resolved gaps, so a gap the re-walk finds again stays open), the key changes and
        its head.

        ``expected``: the head the step started from (:func:`head_mark`). When the stored
        head is no longer that one (``devices trust`` took it back meanwhile), nothing is
        written and :class:`HeadMoved` is raised: the verifier walks the device again from
        the head as it is now, so a re-walk asked for by a trust is never overwritten."""
        now = self.stamp(at)
        site, device = head.site, head.device
        with self.transaction() as run:
            if expected is not None:
                # A no-op write first: on PostgreSQL it locks the row until the commit, so a
                # trust cannot move the head between this check and the write below.
                run(
                    "UPDATE chain_heads SET updated_at = updated_at "
                    "WHERE site = %s AND device = %s",
                    (site, device),
                )
                rows = run(
                    "SELECT last_seq, last_event_id FROM chain_heads "
                    "WHERE site = %s AND device = %s",
                    (site, device),
                )
                current = (rows[0][0], rows[0][1]) if rows else None
                if current != expected.at:
                    raise HeadMoved(f"{site}/{device}: head {current}, expected {expected.at}")
            for k in keys:
                _write_key(run, site, device, k, now)
            for fid in resolved:
                run(
                    "UPDATE chain_findings SET resolved_at = %s "
                    "WHERE id = %s AND resolved_at IS NULL",
                    (now, fid),
                )
            for f in found:
                run(
                    _ADD_FINDING,
                    (site, device, f.event_id, f.seq, f.seq_end, f.kind, f.detail, now),
                )
            run(
                _PUT_HEAD,
                (
                    site,
                    device,
                    head.first_seq,
                    head.last_seq,
                    head.last_event_id,
                    head.last_digest,
                    head.key_fingerprint,
                    head.signed,
                    head.unsigned,
                    now,
                ),
            )

    def _rewound(self, head: ChainHead, seq: int, book: Any) -> ChainHead:
        """``head`` taken back to just before ``seq`` (``last_seq`` None: to the start)."""
        from central.chainrules import UNKNOWN_DIGEST, digest

        site, device = head.site, head.device
        before = self.chain_event_before(site, device, seq) if seq >= 0 else None
        if before is None or head.first_seq is None or seq <= head.first_seq:
            return ChainHead(site, device, None, None, None, None, None, 0, 0, None)
        last_signed = self._events_where(
            "site = %s AND device = %s AND seq < %s AND sig IS NOT NULL "
            "ORDER BY seq DESC, received_at, id LIMIT 1",
            (site, device, seq),
        )
        signed_digest = None
        if last_signed:
            e = last_signed[0]
            failed = self.query(
                "SELECT 1 FROM chain_findings WHERE site = %s AND device = %s AND event_id = %s "
                "AND kind = 'bad_signature' AND resolved_at IS NULL",
                (site, device, e.id),
            )
            try:
                signed_digest = UNKNOWN_DIGEST if failed else digest(e.as_sent())
            except (ValueError, TypeError):  # no canonical form: recorded as bad_signature
                signed_digest = UNKNOWN_DIGEST
        counts = dict(
            self.query(
                "SELECT CASE WHEN sig IS NULL THEN 0 ELSE 1 END, COUNT(DISTINCT seq) FROM events "
                "WHERE site = %s AND device = %s AND seq >= %s AND seq < %s "
                "GROUP BY CASE WHEN sig IS NULL THEN 0 ELSE 1 END",
                (site, device, head.first_seq, seq),
            )
        )
        key = book.for_seq(seq)
        return ChainHead(
            site,
            device,
            head.first_seq,
            before.seq,
            before.id,
            signed_digest,
            key.fingerprint if key is not None else None,
            int(counts.get(1, 0)),
            int(counts.get(0, 0)),
            None,
        )

    def trust_key(
        self,
        site: str,
        device: str,
        public_key: str,
        fingerprint: str,
        by: str,
        at: datetime,
        from_seq: int | None = None,
        replace: bool = False,
    ) -> DeviceKey:
        """Trust ``public_key`` for the device (``hall-central devices trust``): a pending row
        becomes trusted, a new one is added; ``replace`` retires the device's other keys. The
        device's open key findings are resolved and the action is audited, in one
        transaction. The caller decided that trusting it is what the administrator meant.

        When that changes the key of events already walked, the device's head goes back to
        before the first of them and its open signature, link and key findings from there on
        are resolved: the verifier walks them again and records (re-opens) what is still
        true."""
        from central.chainrules import KeyBook

        now = self.stamp(at)
        rows = self.device_keys(site, device)
        after: list[DeviceKey] = []
        for k in rows:
            if k.public_key == public_key:
                k = replace_record(
                    k, state="trusted", from_seq=k.from_seq if from_seq is None else from_seq
                )
            elif replace and k.state != "retired":
                k = replace_record(k, state="retired")
            after.append(k)
        if not any(k.public_key == public_key for k in rows):
            order = max((k.id for k in rows), default=0) + 1
            after.append(
                DeviceKey(
                    order,
                    site,
                    device,
                    public_key,
                    fingerprint,
                    "trusted",
                    from_seq,
                    None,
                    at,
                    None,
                    None,
                )
            )
        changed = KeyBook(rows).first_change(KeyBook(after))
        head = self.chain_head(site, device)
        rewind = None
        walked_to = -2 if head is None or head.last_seq is None else head.last_seq
        if head is not None and changed is not None and changed <= walked_to:
            rewind = self._rewound(head, changed, KeyBook(after))
        with self.transaction() as run:
            if replace:
                run(
                    "UPDATE device_keys SET state = 'retired' WHERE site = %s AND device = %s "
                    "AND public_key <> %s AND state <> 'retired'",
                    (site, device, public_key),
                )
            run(
                _TRUST_KEY,
                (site, device, public_key, fingerprint, from_seq, None, now, now, by),
            )
            marks = ", ".join(["%s"] * len(KEY_KINDS))
            run(
                "UPDATE chain_findings SET resolved_at = %s WHERE site = %s AND device = %s "
                f"AND resolved_at IS NULL AND kind IN ({marks})",
                (now, site, device, *KEY_KINDS),
            )
            if rewind is not None:
                marks = ", ".join(["%s"] * len(REWALK_KINDS))
                run(
                    "UPDATE chain_findings SET resolved_at = %s WHERE site = %s AND device = %s "
                    f"AND resolved_at IS NULL AND seq >= %s AND kind IN ({marks})",
                    (now, site, device, changed, *REWALK_KINDS),
                )
                if rewind.last_seq is None:
                    run(
                        "DELETE FROM chain_heads WHERE site = %s AND device = %s",
                        (site, device),
                    )
                else:
                    run(
                        _PUT_HEAD,
                        (
                            site,
                            device,
                            rewind.first_seq,
                            rewind.last_seq,
                            rewind.last_event_id,
                            rewind.last_digest,
                            rewind.key_fingerprint,
                            rewind.signed,
                            rewind.unsigned,
                            now,
                        ),
                    )
            run(
                INSERT_AUDIT,
                (
                    now,
                    by,
                    "device.trust",
                    f"device:{site}/{device}",
                    f"{fingerprint}{' (replacing the other keys)' if replace else ''}",
                    "shell",
                ),
            )
            [row] = run(
                f"SELECT {KEY_COLUMNS} FROM device_keys WHERE site = %s AND device = %s "
                "AND public_key = %s",
                (site, device, public_key),
            )
        return key_record(row)


def replace_record(k: DeviceKey, **changes: Any) -> DeviceKey:
    from dataclasses import replace

    return replace(k, **changes)


def _write_key(run: Run, site: str, device: str, k: KeyWrite, now: Any) -> None:
    if k.op == "add":
        run(_ADD_KEY, (site, device, k.public_key, k.fingerprint, k.from_seq, k.announced_in, now))
    elif k.op == "trust":
        run(
            _TRUST_KEY,
            (
                site,
                device,
                k.public_key,
                k.fingerprint,
                k.from_seq,
                k.announced_in,
                now,
                now,
                k.by,
            ),
        )
    elif k.op == "retire":
        run(
            "UPDATE device_keys SET state = 'retired' WHERE site = %s AND device = %s "
            "AND public_key = %s",
            (site, device, k.public_key),
        )
    else:
        raise ValueError(f"key write: expected add, trust or retire, got {k.op!r}")


def _narrow(site: str | None, device: str | None) -> tuple[str, tuple[Any, ...]]:
    clauses, params = [], []
    for column, value in (("site", site), ("device", device)):
        if value is not None:
            clauses.append(f"{column} = %s")
            params.append(value)
    return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), tuple(params)
