"""What the hall board shows, computed from the central store (docs/board.md).

Per window, from today's ``window.*`` events (docs/topics.md) in the hall's time zone, in the
order the device recorded them (``at``, then ``seq``):

- ``window.login`` → 服务中 with that staff member; ``window.paused`` → 暂停服务 (regulation
  art. 19), ``window.resumed`` → 服务中 again; ``window.logout`` → 未开放.
- A window nobody logged in to today is 未开放; the roster's assignment is shown beside it, so
  the board still names every window's staff and post (art. 32).
- Names and posts come from the site's stored roster (docs/topics.md ``name``, ``role``); an id
  the roster does not know is shown as the id. No face data exists centrally, and none is read.
- Today's 好差评 per window: counts per level (5 非常满意 … 1 非常不满意) and the share of
  levels 3-5, as in ``hall-central report ratings``.

An event whose clock was unsynced keeps the time the device wrote; if that is not today it is
not on today's board (the centre files such events by ``received_at`` in reports only).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from central.reports.ratings import GOOD, LEVELS
from contract import LEVEL_LABELS

WINDOW_TYPES = ("window.login", "window.logout", "window.paused", "window.resumed")
ROLE_LABELS = {"chief": "首席代表", "staff": "窗口工作人员"}
STATE_LABELS = {"open": "服务中", "paused": "暂停服务", "closed": "未开放"}


@dataclass
class WindowBoard:
    site: str
    window: str
    state: str = "closed"  # open | paused | closed
    staff_id: str | None = None
    since: str | None = None  # HH:MM of the last state change
    assigned: list[str] = field(default_factory=list)  # roster staff ids for this window
    ratings: dict[int, int] = field(default_factory=dict)


def _local(at: Any, tz: ZoneInfo) -> datetime | None:
    if isinstance(at, datetime):
        moment = at
    else:
        try:
            moment = datetime.fromisoformat(str(at))
        except ValueError:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return moment.astimezone(tz)


def _data(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def fetch_rows(store: Any, day: date, tz: ZoneInfo) -> list[tuple[Any, ...]]:
    """Today's window and rating events: (site, device, seq, type, at, data)."""
    from central.store import PostgresStore

    types = (*WINDOW_TYPES, "rating.submitted")
    marks = ", ".join(["%s"] * len(types))
    start = datetime.combine(day, time.min, tz)
    end = start + timedelta(days=1)
    if isinstance(store, PostgresStore):
        params: tuple[Any, ...] = (*types, start, end)
    else:
        # SQLite keeps `at` as the device wrote it (docs/topics.md, hall-local offset): a day's
        # events share its date prefix; a day either side is read and filtered below, so an
        # offset other than the hall's is still placed correctly.
        params = (
            *types,
            (day - timedelta(days=1)).isoformat(),
            (day + timedelta(days=2)).isoformat(),
        )
    sql = (
        f"SELECT site, device, seq, type, at, data FROM events WHERE type IN ({marks}) "
        "AND at >= %s AND at < %s"
    )
    return store.query(sql, params)


def compute(
    rows: list[tuple[Any, ...]],
    rosters: dict[str, dict[str, Any]],
    day: date,
    tz: ZoneInfo,
    site: str | None = None,
) -> dict[str, Any]:
    """The board as JSON-ready data; pure (tests feed it rows directly)."""
    windows: dict[tuple[str, str], WindowBoard] = {}

    def board(s: str, w: str) -> WindowBoard:
        return windows.setdefault((s, w), WindowBoard(s, w))

    names: dict[tuple[str, str], dict[str, Any]] = {}
    for s, roster in rosters.items():
        if site is not None and s != site:
            continue
        for entry in roster.get("staff", []):
            names[(s, entry["id"])] = entry
            if entry.get("window"):
                board(s, entry["window"]).assigned.append(entry["id"])

    events = []
    for s, device, seq, kind, at, raw in rows:
        if site is not None and s != site:
            continue
        moment = _local(at, tz)
        if moment is None or moment.date() != day:
            continue
        data = _data(raw)
        window = data.get("window")
        if not isinstance(window, str) or not window:
            continue
        events.append((moment, device, seq, kind, s, window, data))
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    for moment, _device, _seq, kind, s, window, data in events:
        w = board(s, window)
        if kind == "rating.submitted":
            level = data.get("level")
            if isinstance(level, int) and level in LEVEL_LABELS:
                w.ratings[level] = w.ratings.get(level, 0) + 1
            continue
        if kind == "window.login":
            w.state, w.staff_id = "open", data.get("staff_id") or None
        elif kind == "window.paused":
            w.state = "paused"
            w.staff_id = data.get("staff_id") or w.staff_id
        elif kind == "window.resumed":
            w.state = "open"
            w.staff_id = data.get("staff_id") or w.staff_id
        elif kind == "window.logout":
            w.state, w.staff_id = "closed", None
        w.since = moment.strftime("%H:%M")

    def person(s: str, staff_id: str | None) -> dict[str, Any] | None:
        if staff_id is None:
            return None
        entry = names.get((s, staff_id), {})
        role = entry.get("role")
        return {
            "id": staff_id,
            "name": entry.get("name") or staff_id,
            "post": ROLE_LABELS.get(role, "窗口工作人员"),
        }

    sites = {s for s, _ in windows}
    out = []
    for (s, name), w in sorted(windows.items(), key=lambda kv: (kv[0][0], _window_key(kv[0][1]))):
        total = sum(w.ratings.values())
        good = sum(w.ratings.get(level, 0) for level in GOOD)
        out.append(
            {
                "site": s,
                "window": name if len(sites) == 1 else f"{s} · {name}",
                "state": w.state,
                "state_label": STATE_LABELS[w.state],
                "since": w.since,
                "staff": person(s, w.staff_id),
                "assigned": [person(s, sid) for sid in w.assigned],
                "ratings": {
                    "counts": {str(level): w.ratings.get(level, 0) for level in LEVELS},
                    "total": total,
                    "satisfaction": round(100 * good / total, 1) if total else None,
                },
            }
        )
    return {"v": 1, "date": day.isoformat(), "windows": out}


def _window_key(label: str) -> tuple[Any, ...]:
    """A2 before A10: letters, then the number."""
    head = label.rstrip("0123456789")
    tail = label[len(head) :]
    return (head, int(tail) if tail else -1, label)


def load(store: Any, tz: ZoneInfo, site: str | None, now: datetime | None = None) -> dict[str, Any]:
    day = (now or datetime.now(tz)).astimezone(tz).date()
    rosters = {r.site: r.roster for r in store.rosters()}
    return compute(fetch_rows(store, day, tz), rosters, day, tz, site)
