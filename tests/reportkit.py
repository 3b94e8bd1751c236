"""Writing a hand-made month into a real store for the report tests."""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from central.store import EventRow, Store

CST = timezone(timedelta(hours=8))

# A perfect working day: 5 min early in, 5 min late out (summer hours 08:30-11:30,
# 14:30-17:30; docs/reports.md).
PERFECT = {
    "morning_in": time(8, 25),
    "morning_out": time(11, 35),
    "afternoon_in": time(14, 25),
    "afternoon_out": time(17, 35),
}


class Month:
    """Collects events for one store; ``flush`` writes them in one batch."""

    def __init__(self, store: Store):
        self.store = store
        self.rows: list[EventRow] = []
        self.seq = 0

    def event(
        self,
        type_: str,
        at: datetime,
        data: dict[str, Any],
        *,
        device: str = "kiosk-01",
        site: str = "jiedong",
        clock: str = "synced",
    ) -> None:
        self.seq += 1
        self.rows.append(
            EventRow(
                id=str(uuid.uuid4()),
                device=device,
                site=site,
                seq=self.seq,
                type=type_,
                at=at,
                at_text=at.isoformat(timespec="milliseconds"),
                clock=clock,
                data=json.dumps(data, ensure_ascii=False),
            )
        )

    def punch(self, staff: str, day: date, t: time, tz: timezone = CST, **kw: Any) -> None:
        at = datetime.combine(day, t, CST).astimezone(tz)
        # slot/status as a kiosk would send them; the report recomputes both from the time.
        data = {
            "staff_id": staff,
            "slot": "extra",
            "status": "on_time",
            "minutes_off": 0,
            "distance": 0.3,
            "liveness": "off",
        }
        self.event("attendance.punch", at, data, **kw)

    def day(self, staff: str, day: date, skip: tuple[str, ...] = (), **times: time) -> None:
        for slot, t in PERFECT.items():
            if slot not in skip:
                self.punch(staff, day, times.get(slot, t))

    def flush(self) -> None:
        """Write the events as if each arrived when it was made (received_at = at).

        The store stamps received_at with the real clock; left so, a synced event would still
        be filed by its `at` (docs/sync.md), but an `unsynced` one by today.
        """
        self.store.write_batch(self.rows, [])
        ids = [r.id for r in self.rows if r.clock == "synced"]
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ", ".join(["%s"] * len(chunk))
            self.store.query(
                f"UPDATE events SET received_at = at WHERE id IN ({marks}) RETURNING id",
                tuple(chunk),
            )
        self.rows = []


def roster(
    store: Store,
    site: str,
    staff: list[tuple[str, str, str, str | None]],
    dates: dict[str, dict[str, str]] | None = None,
) -> None:
    """``dates``: staff id → roster ``starts``/``ends`` for people on it part of the month."""
    entries = [
        {"id": i, "name": n, "role": r, **({"window": w} if w else {}), **(dates or {}).get(i, {})}
        for i, n, r, w in staff
    ]
    store.put_roster(site, {"v": 1, "version": 1, "staff": entries})


def leave(store: Store, *rows: tuple[str, str, str, str, str, str]) -> None:
    store.add_leaves(
        [
            {
                "staff_id": sid,
                "kind": kind,
                "starts": date.fromisoformat(a),
                "starts_half": ah,
                "ends": date.fromisoformat(b),
                "ends_half": bh,
                "approver": "张主任",
                "note": "",
                "source": "test.csv:2",
            }
            for sid, kind, a, ah, b, bh in rows
        ],
        "tester",
    )


def correction(store: Store, sid: str, day: str, slot: str, punch_time: str = "") -> None:
    """A 补卡 of one slot, as central/leave.py stores it."""
    half = "am" if slot.startswith("morning") else "pm"
    store.add_leaves(
        [
            {
                "staff_id": sid,
                "kind": "补卡",
                "starts": date.fromisoformat(day),
                "starts_half": half,
                "ends": date.fromisoformat(day),
                "ends_half": half,
                "approver": "张主任",
                "note": "",
                "source": "test.csv:3",
                "slot": slot,
                "slot_time": punch_time,
            }
        ],
        "tester",
    )
