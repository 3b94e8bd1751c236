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
  levels 3-5, by the monthly report's own :class:`central.reports.ratings.Tally`; the hall's
  totals the same way, with 在岗窗口 (windows 服务中 / windows known).

An event whose clock was unsynced keeps the time the device wrote; if that is not today it is
not on today's board (the centre files such events by ``received_at`` in reports only).

A window is never shown 服务中 on the word of a device that is not heard (docs/board.md,
"Offline and stale devices"): the device of the window's last event today must be ``online`` in
its latest retained status (docs/topics.md ``…/status``; the MQTT will sets ``offline``), and
that status must be younger than ``[board] stale_after_s`` by both the centre's receipt time
and the status's own ``at`` (a live device republishes it every ``sync.status_interval_s``; a
broker that kept a dead device's ``online`` replays it with its old ``at``). Otherwise the
window is 设备离线 during the hall's hours and 未开放 outside them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from central.reports.ratings import LEVELS, Tally
from central.store import Store, StoredEvent
from contract import LEVEL_LABELS, EventType
from contract.schedule import Schedule

WINDOW_TYPES = (EventType.LOGIN, EventType.LOGOUT, EventType.PAUSED, EventType.RESUMED)
ROLE_LABELS = {"chief": "首席代表", "staff": "窗口工作人员"}
STATE_LABELS = {"open": "服务中", "paused": "暂停服务", "closed": "未开放", "offline": "设备离线"}
_DAY = timedelta(days=1)


@dataclass(frozen=True)
class DeviceStatus:
    """A device's latest retained status as the collector stored it (``devices`` table)."""

    state: str | None  # "online" | "offline" (docs/topics.md)
    heard_at: datetime | None  # when the centre last heard its status (centre's clock, UTC)


@dataclass(frozen=True)
class Liveness:
    """What decides whether a window's device is heard, and whether the hall is open now."""

    devices: dict[tuple[str, str], DeviceStatus]
    now: datetime  # aware
    stale_after: timedelta
    hall_open: bool

    def device_state(self, site: str, device: str) -> str:
        """``online``, ``offline`` (its status says so), ``stale`` (not heard for
        ``stale_after``) or ``unknown`` (no status stored)."""
        status = self.devices.get((site, device))
        if status is None or status.heard_at is None:
            return "unknown"
        if status.state != "online":
            return "offline"
        # Only the centre's clock: a device whose own clock is slow is still heard. A retained
        # ``online`` replayed after the device died is stored with its send time, not now
        # (central/collector.py), so it goes stale.
        return "stale" if self.now - status.heard_at > self.stale_after else "online"


@dataclass
class WindowBoard:
    site: str
    window: str
    state: str = "closed"  # open | paused | closed
    staff_id: str | None = None
    since: str | None = None  # HH:MM of the last state change
    device: str | None = None  # the device of the window's last window.* event today
    assigned: list[str] = field(default_factory=list)  # roster staff ids for this window
    ratings: Tally = field(default_factory=Tally)


def _data(raw: Any) -> dict[str, Any]:
    return raw if isinstance(raw, dict) else {}


def fetch_rows(store: Store, day: date, tz: ZoneInfo) -> list[StoredEvent]:
    """Today's window and rating events, by the time each device stamped them."""
    start = datetime.combine(day, time.min, tz)
    return store.events_at_between((*WINDOW_TYPES, EventType.RATING), start, start + _DAY)


def compute(
    rows: list[StoredEvent],
    rosters: dict[str, dict[str, Any]],
    day: date,
    tz: ZoneInfo,
    site: str | None = None,
    liveness: Liveness | None = None,
) -> dict[str, Any]:
    """The board as JSON-ready data; pure (tests feed it events directly). Without
    ``liveness`` every device counts as heard (the window events alone)."""
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
    for e in rows:
        if site is not None and e.site != site:
            continue
        moment = e.at.astimezone(tz)
        if moment.date() != day:
            continue
        data = _data(e.data)
        window = data.get("window")
        if not isinstance(window, str) or not window:
            continue
        events.append((moment, e.device, e.seq, e.type, e.site, window, data))
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    for moment, device, _seq, kind, s, window, data in events:
        w = board(s, window)
        if kind == EventType.RATING:
            level = data.get("level")
            if isinstance(level, int) and level in LEVEL_LABELS:
                w.ratings.levels[level] += 1
            continue
        w.device = device
        if kind == EventType.LOGIN:
            w.state, w.staff_id = "open", data.get("staff_id") or None
        elif kind == EventType.PAUSED:
            w.state = "paused"
            w.staff_id = data.get("staff_id") or w.staff_id
        elif kind == EventType.RESUMED:
            w.state = "open"
            w.staff_id = data.get("staff_id") or w.staff_id
        elif kind == EventType.LOGOUT:
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
    hall = Tally()
    for (s, name), w in sorted(windows.items(), key=lambda kv: (kv[0][0], _window_key(kv[0][1]))):
        shown, device_state = _shown_state(w, liveness)
        hall.levels.update(w.ratings.levels)
        out.append(
            {
                "site": s,
                "window": name if len(sites) == 1 else f"{s} · {name}",
                "state": shown,
                "state_label": STATE_LABELS[shown],
                "since": w.since,
                "staff": person(s, w.staff_id) if shown in ("open", "paused") else None,
                "assigned": [person(s, sid) for sid in w.assigned],
                "device": None if w.device is None else {"id": w.device, "state": device_state},
                "ratings": _ratings(w.ratings),
            }
        )
    totals = {
        **_ratings(hall),
        "in_service": sum(1 for w in out if w["state"] == "open"),
        "windows": len(out),
    }
    return {"v": 1, "date": day.isoformat(), "windows": out, "totals": totals}


def _ratings(tally: Tally) -> dict[str, Any]:
    """Counts per level, total and 满意率 (percent, one decimal), by the monthly report's
    rule (:class:`central.reports.ratings.Tally`)."""
    rate = tally.rate
    return {
        "counts": {str(level): tally.levels[level] for level in LEVELS},
        "total": tally.total,
        "satisfaction": None if rate is None else round(100 * rate, 1),
    }


def _shown_state(w: WindowBoard, liveness: Liveness | None) -> tuple[str, str | None]:
    """The state on screen and the device's state: a window whose device is not heard is
    设备离线 while the hall is open and 未开放 outside its hours, never 服务中."""
    if liveness is None or w.device is None:
        return w.state, None
    device_state = liveness.device_state(w.site, w.device)
    if device_state == "online":
        return w.state, device_state
    return ("offline" if liveness.hall_open else "closed"), device_state


def _window_key(label: str) -> tuple[Any, ...]:
    """A2 before A10: letters, then the number."""
    head = label.rstrip("0123456789")
    tail = label[len(head) :]
    return (head, int(tail) if tail else -1, label)


def fetch_devices(store: Store) -> dict[tuple[str, str], DeviceStatus]:
    """Every device's latest stored status: (site, device) -> :class:`DeviceStatus`."""
    return {(d.site, d.device): DeviceStatus(d.state, d.status_at) for d in store.device_states()}


def hall_open(schedule: Schedule, moment: datetime) -> bool:
    """The hall's hours today (contract/schedule.py): a working day, from the morning's start
    to the afternoon's end (``[schedule]`` in central.toml, the kiosks' hours)."""
    plan = schedule.plan(moment.date())
    return plan.working and plan.morning.start <= moment.time() < plan.afternoon.end


def load(
    store: Store,
    tz: ZoneInfo,
    site: str | None,
    now: datetime | None = None,
    schedule: Schedule | None = None,
    *,
    stale_after_s: float,
) -> dict[str, Any]:
    """The board at ``now``; ``stale_after_s`` is ``[board] stale_after_s``."""
    moment = (now or datetime.now(tz)).astimezone(tz)
    day = moment.date()
    rosters = {r.site: r.roster for r in store.rosters()}
    liveness = Liveness(
        fetch_devices(store),
        moment,
        timedelta(seconds=stale_after_s),
        hall_open(schedule or Schedule(), moment),
    )
    return compute(fetch_rows(store, day, tz), rosters, day, tz, site, liveness)
