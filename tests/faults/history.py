"""The history checker: what the devices were promised against what the centre stored.

docs/topics.md and docs/pads.md together promise, per device:

1. every rating a pad saw acknowledged (the agent acks only after its outbox commit) is stored
   centrally exactly once; a rating the pad gave up on may be stored once or not at all;
   nothing the pads never sent is stored (each rating carries a unique tag in ``invite_id``);
2. every event the outbox recorded (seq 1 … last_seq, which the outbox never reuses) is
   either stored exactly once or was rejected by validation: it then sits in the device's
   dead letters and in the centre's ``rejected`` table, and the scenario meant it to be
   invalid. A dead letter the scenario did not make invalid is a store failure taken for a
   verdict, i.e. a lost event.

Central rows are read after the scenario, once the outboxes are empty.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.faults.hall import Hall


@dataclass
class History:
    sent: int = 0  # ratings the pads sent (each once, whatever the resends)
    acked: int = 0  # ... and saw acknowledged
    recorded: int = 0  # events the outboxes recorded (sum of last_seq)
    stored: int = 0  # central rows of these devices
    lost: int = 0
    duplicated: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "acked": self.acked,
            "recorded": self.recorded,
            "stored": self.stored,
            "lost": self.lost,
            "duplicated": self.duplicated,
        }

    def __str__(self) -> str:
        head = " ".join(f"{k}={v}" for k, v in self.as_dict().items())
        return head + "".join(f"\n  - {p}" for p in self.problems[:30])


def _data(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else json.loads(value)


def check_history(hall: Hall) -> History:
    h = History()
    with contextlib.closing(hall.open_store()) as store:
        rows = store.query("SELECT id, device, seq, type, data FROM events")
        rejected = {str(r[0]): r[1] for r in store.query("SELECT id, reason FROM rejected")}
    by_device: dict[str, list[tuple[str, int, str, dict[str, Any]]]] = {}
    for event_id, device, seq, etype, data in rows:
        by_device.setdefault(device, []).append((str(event_id), int(seq), etype, _data(data)))

    for name, dev in hall.devices.items():
        mine = by_device.get(name, [])
        h.stored += len(mine)
        # 2. the outbox's own account: seq 1..last_seq, each stored once or rejected.
        last = dev.last_seq()
        h.recorded += last
        seqs = Counter(seq for _, seq, _, _ in mine)
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
                for _, _, etype, d in mine
                if etype == "rating.submitted" and d.get("window") == pad.window
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
