"""The history checker: what the devices were promised against what the centre stored.

docs/topics.md and docs/pads.md together promise, per device:

1. every rating a pad saw acknowledged (the agent acks only after its outbox commit) is stored
   centrally exactly once; a rating the pad gave up on may be stored once or not at all;
   nothing the pads never sent is stored (each rating carries a unique tag in ``invite_id``);
2. every event the outbox recorded (seq 1 … last_seq, which the outbox never reuses) is
   either stored exactly once or was rejected by validation: it then sits in the device's
   dead letters and in the centre's ``rejected`` table, and the scenario meant it to be
   invalid. A dead letter the scenario did not make invalid is a store failure taken for a
   verdict, i.e. a lost event;
3. what is stored is what was recorded: each stored rating carries the level, reasons,
   window, pad and staff the pad sent (the staff it logged in), its ``at`` lies between the
   moment the pad was told to rate and the pad's ack (same machine, same clock; not checked
   for an agent under libfaketime), and each ``window.login`` names the staff the pad sent.
   A row that differs is ``altered``: stored once, but not what the hall was promised.

Central rows are read after the scenario, once the outboxes are empty.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from contract import DEFAULT_REASON_LABELS, LEVEL_LABELS, EventType

if TYPE_CHECKING:
    from tests.faults.hall import Hall, Pad, Rated

# The agent stamps ``at`` when it commits the frame, after the pad was told to rate and
# before the pad prints its ack. Both bounds already lean the safe way (the send time is
# taken before the pad is told, the ack time after its line is read, however late a busy
# machine schedules that), so the slack is for the ms rounding of ``at`` and nothing else
# real: a wrong time zone is hours off, a stamp taken at publish time the outage's length.
AT_SLACK_S = 1.0


@dataclass
class History:
    sent: int = 0  # ratings the pads sent (each once, whatever the resends)
    acked: int = 0  # ... and saw acknowledged
    recorded: int = 0  # events the outboxes recorded (sum of last_seq)
    stored: int = 0  # central rows of these devices
    lost: int = 0
    duplicated: int = 0
    altered: int = 0  # stored rows whose content differs from what the pad sent
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and not (self.lost or self.duplicated or self.altered)

    def as_dict(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "acked": self.acked,
            "recorded": self.recorded,
            "stored": self.stored,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "altered": self.altered,
        }

    def __str__(self) -> str:
        head = " ".join(f"{k}={v}" for k, v in self.as_dict().items())
        return head + "".join(f"\n  - {p}" for p in self.problems[:30])


def _data(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else json.loads(value)


def _epoch(at: Any) -> float | None:
    """A stored ``at`` (SQLite: ISO text with the device's offset; PostgreSQL: an aware
    datetime) as seconds since the epoch; None if unreadable (itself a difference)."""
    try:
        moment = at if isinstance(at, datetime) else datetime.fromisoformat(str(at))
    except ValueError:
        return None
    return None if moment.tzinfo is None else moment.timestamp()


def _iso(t: float | None) -> str:
    if t is None:
        return "?"
    return datetime.fromtimestamp(t).astimezone().isoformat(timespec="milliseconds")


def rating_differences(
    pad: Pad, rated: Rated, data: dict[str, Any], at: Any, *, check_at: bool = True
) -> list[str]:
    """How a stored rating differs from what ``pad`` sent for it (empty: it does not)."""
    reasons = [DEFAULT_REASON_LABELS[b] for b in rated.reasons] if rated.level <= 2 else []
    want = {
        "level": rated.level,
        "label": LEVEL_LABELS.get(rated.level),
        "reasons": reasons,
        "window": pad.window,
        "pad": pad.address,
        "staff_id": pad.staff,
    }
    out = [f"{k} {data.get(k)!r} != sent {v!r}" for k, v in want.items() if data.get(k) != v]
    if check_at:
        t = _epoch(at)
        lo, hi = rated.sent_at - AT_SLACK_S, None
        # A rating the pad gave up on may be recorded later from the resends still in the
        # line: only an acked one has an upper bound (the commit precedes the ack).
        if rated.verdict_at is not None and data.get("invite_id") in pad.acked:
            hi = rated.verdict_at + AT_SLACK_S
        if t is None or t < lo or (hi is not None and t > hi):
            out.append(
                f"at {at!s} outside the pad's send..ack {_iso(rated.sent_at)}.."
                f"{_iso(rated.verdict_at) if hi is not None else '(not acked)'}"
            )
    return out


def check_history(hall: Hall) -> History:
    h = History()
    with contextlib.closing(hall.open_store()) as store:
        rows = store.query("SELECT id, device, seq, type, at, data FROM events")
        rejected = {str(r[0]): r[1] for r in store.query("SELECT id, reason FROM rejected")}
    by_device: dict[str, list[tuple[str, int, str, dict[str, Any], Any]]] = {}
    for event_id, device, seq, etype, at, data in rows:
        by_device.setdefault(device, []).append((str(event_id), int(seq), etype, _data(data), at))

    for name, dev in hall.devices.items():
        mine = by_device.get(name, [])
        h.stored += len(mine)
        # 2. the outbox's own account: seq 1..last_seq, each stored once or rejected.
        last = dev.last_seq()
        h.recorded += last
        seqs = Counter(seq for _, seq, _, _, _ in mine)
        dup = {s: n for s, n in seqs.items() if n > 1}
        if dup:
            h.duplicated += sum(n - 1 for n in dup.values())
            h.problems.append(f"{name}: seq stored more than once: {sorted(dup)[:10]}")
        dead = dev.dead_letters()
        dead_seqs = {seq for seq, _, _, _ in dead}
        missing = sorted(set(range(1, last + 1)) - set(seqs) - dead_seqs)
        outbox_lost = len(missing)
        if missing:
            h.problems.append(
                f"{name}: {len(missing)} recorded events neither stored nor rejected, "
                f"seq {missing[:10]}"
            )
        beyond = sorted(s for s in seqs if s > last)
        if beyond:
            h.problems.append(f"{name}: stored seqs the outbox never recorded: {beyond[:10]}")
        for seq, event_id, etype, reason in dead:
            if event_id not in dev.expect_rejected:
                outbox_lost += 1
                h.problems.append(
                    f"{name}: seq {seq} ({etype}) in dead letters but valid: {reason}"
                )
            elif event_id not in rejected:
                h.problems.append(f"{name}: dead letter {event_id} has no central rejected row")
        # 1. the pads' account, by tag. The same loss may show in both accounts (an acked
        # rating recorded then lost is a missing seq too): count the larger of the two.
        tags_lost = 0
        for pad in dev.pads:
            tags = Counter(
                d.get("invite_id")
                for _, _, etype, d, _ in mine
                if etype == "rating.submitted" and d.get("window") == pad.window
            )
            # 3. content: what the pad sent is what is stored.
            altered: list[str] = []
            for _, seq, etype, d, at in mine:
                if d.get("window") != pad.window:
                    continue
                if etype == EventType.RATING and d.get("invite_id") in pad.ratings:
                    rated = pad.ratings[d["invite_id"]]
                    diff = rating_differences(pad, rated, d, at, check_at=not dev.clock_faked)
                    if diff:
                        altered.append(f"seq {seq} tag {d['invite_id']}: {'; '.join(diff)}")
                elif etype == EventType.LOGIN and d.get("staff_id") != pad.staff:
                    altered.append(f"seq {seq} login of {d.get('staff_id')!r} != {pad.staff!r}")
            if altered:
                h.altered += len(altered)
                h.problems.append(
                    f"{name}/{pad.window}: {len(altered)} stored events differ from what the "
                    f"pad sent: {altered[:3]}"
                )
            h.sent += len(pad.sent)
            h.acked += len(pad.acked)
            lost = sorted(pad.acked - set(tags))
            if lost:
                tags_lost += len(lost)
                h.problems.append(f"{name}/{pad.window}: acked ratings not stored: {lost[:10]}")
            twice = {t: n for t, n in tags.items() if n > 1}
            if twice:
                h.duplicated += sum(n - 1 for n in twice.values())
                h.problems.append(
                    f"{name}/{pad.window}: ratings stored more than once: {sorted(twice)[:10]}"
                )
            extra = sorted(t for t in tags if t not in pad.sent)
            if extra:
                h.problems.append(
                    f"{name}/{pad.window}: stored ratings the pad never sent: {extra[:10]}"
                )
        h.lost += max(outbox_lost, tags_lost)
    return h
