"""Time at the post, 脱岗 and 串岗, computed from the window events (docs/post.md).

The regulation's 第十九条 forbids 脱岗 and 串岗 and asks a short absence to show 暂停服务;
第二十五条 counts leaving during working hours without leave or 报备 as 脱岗. Per staff member
and working day, over the public service hours (the day's morning and afternoon spans,
contract/schedule.py), each moment is one :class:`~central.post.model.Presence`:

- leave or 公出 covers it (half days, or the exact times of a leave by the hour): EXCUSED;
- logged in at a window (the window's events in the device's order, as the hall board reads
  them, central/board/state.py) whose device is online: SERVING, or PAUSED while 暂停服务;
- the device of the window they are at (logged in, or else the roster's window) is offline:
  AWAY with cause ``device_offline`` when they punched in that half day, else UNKNOWN (an
  offline device is no one's absence by itself);
- otherwise AWAY (not logged in anywhere).

:func:`day_posts` is pure (tests and the live page feed it one site's day; ``now`` ends the
day so far, and an episode running at ``now`` is ``ongoing``); :func:`post_days` reads a span
of days from the store and calls it.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

from central.board.state import WINDOW_TYPES
from central.post.model import Cause, Episode, EpisodeKind, HalfDay, PostDay, Presence, Stretch
from contract import EventType
from contract.schedule import DayPlan, Schedule, ScheduleHistory

HALVES = ("am", "pm")
IN_SLOT_HALF = {"morning_in": "am", "afternoon_in": "pm"}  # "punched in" (docs/post.md)
DEFAULT_PAUSE_LIMIT = timedelta(minutes=15)  # [post] pause_limit_min
_DAY = timedelta(days=1)


@dataclass(frozen=True)
class WindowEvent:
    """One ``window.*`` event (docs/topics.md), at its hall-local filed time."""

    id: str
    at: datetime
    device: str
    seq: int
    type: str
    window: str
    staff_id: str | None


@dataclass(frozen=True)
class PostPerson:
    site: str
    staff_id: str
    window: str | None  # the roster's; None: no fixed window (docs/post.md)


@dataclass(frozen=True)
class ExcusedSpan:
    """Time that leave (请假) or 公出 covers: counted against no one."""

    start: datetime
    end: datetime
    kind: str


@dataclass(frozen=True)
class SiteDay:
    """Everything one site's working day needs, already read (times hall-local, aware)."""

    site: str
    plan: DayPlan
    tz: tzinfo
    events: Sequence[WindowEvent]  # the site's window events of the day, any order
    offline: Mapping[str, Sequence[tuple[datetime, datetime]]] = field(default_factory=dict)
    # staff id -> in-punches: (half, event id) or (half, event id, when)
    punched: Mapping[str, Sequence[tuple[Any, ...]]] = field(default_factory=dict)
    excused: Mapping[str, Sequence[ExcusedSpan]] = field(default_factory=dict)
    # window -> device, for a window without an event that day (its device may be offline)
    window_devices: Mapping[str, str] = field(default_factory=dict)


@dataclass
class _Pause:
    start: datetime
    start_id: str
    end: datetime | None = None
    end_id: str | None = None


@dataclass
class _Session:
    """One person logged in at one window, from a login (or the first event that shows it)
    to a logout, another login at that window, or the end of the day."""

    staff_id: str
    window: str
    device: str
    start: datetime
    start_id: str
    end: datetime | None = None
    end_id: str | None = None
    pauses: list[_Pause] = field(default_factory=list)

    def close(self, at: datetime, event_id: str | None) -> None:
        self.end, self.end_id = at, event_id
        if self.pauses and self.pauses[-1].end is None:
            self.pauses[-1].end, self.pauses[-1].end_id = at, event_id


def sessions(events: Iterable[WindowEvent], day_end: datetime) -> list[_Session]:
    """Every login session of the day, from the window events in the device's order (``at``,
    then device and ``seq``, as the hall board). A day starts with every window logged out;
    a pause or resume by someone not logged in proves they are, and opens a session there."""
    out: list[_Session] = []
    current: dict[str, _Session] = {}
    for e in sorted(events, key=lambda e: (e.at, e.device, e.seq)):
        now = current.get(e.window)
        if e.type == EventType.LOGIN:
            if now is not None:
                now.close(e.at, e.id)  # a window holds one person: the new login ends it
                del current[e.window]
            if e.staff_id:
                current[e.window] = _Session(e.staff_id, e.window, e.device, e.at, e.id)
                out.append(current[e.window])
        elif e.type == EventType.LOGOUT:
            if now is not None:
                now.close(e.at, e.id)
                del current[e.window]
        elif e.type in (EventType.PAUSED, EventType.RESUMED):
            if now is None and e.staff_id:
                now = current[e.window] = _Session(e.staff_id, e.window, e.device, e.at, e.id)
                out.append(now)
            if now is None:
                continue
            now.device = e.device
            open_pause = now.pauses[-1] if now.pauses and now.pauses[-1].end is None else None
            if e.type == EventType.PAUSED and open_pause is None:
                now.pauses.append(_Pause(e.at, e.id))
            elif e.type == EventType.RESUMED and open_pause is not None:
                open_pause.end, open_pause.end_id = e.at, e.id
    for s in current.values():
        s.close(day_end, None)
    return out


@dataclass(frozen=True)
class _Seg:
    half: str
    start: datetime
    end: datetime
    presence: Presence
    window: str | None
    cause: Cause | None
    session: _Session | None
    pause: _Pause | None
    wrong: tuple[_Session, ...]  # sessions at a window the roster does not give them


def _inside(spans: Iterable[tuple[datetime, datetime]], t: datetime) -> bool:
    return any(a <= t < b for a, b in spans)


def service_spans(plan: DayPlan, tz: tzinfo, now: datetime | None) -> list[tuple[str, Any, Any]]:
    """The public service hours of a working day (morning, afternoon), cut at ``now``."""
    if not plan.working:
        return []
    out = []
    for half, span in zip(HALVES, (plan.morning, plan.afternoon), strict=True):
        start = datetime.combine(plan.day, span.start, tz)
        end = datetime.combine(plan.day, span.end, tz)
        if now is not None:
            end = min(end, now)
        if start < end:
            out.append((half, start, end))
    return out


def day_posts(
    people: Iterable[PostPerson],
    site_day: SiteDay,
    pause_limit: timedelta = DEFAULT_PAUSE_LIMIT,
    now: datetime | None = None,
) -> list[PostDay]:
    """Each person's day at the post: everyone given with a roster window, and anyone who
    logged in at a window of the site that day (pure; ``now``: the day so far)."""
    sd = site_day
    day_end = datetime.combine(sd.plan.day, time.min, sd.tz) + _DAY
    if now is not None:
        day_end = min(day_end, max(now, day_end - _DAY))
    spans = service_spans(sd.plan, sd.tz, now)
    if not spans:
        return []
    all_sessions = sessions(sd.events, day_end)
    by_staff: dict[str, list[_Session]] = defaultdict(list)
    for s in all_sessions:
        by_staff[s.staff_id].append(s)
    devices = dict(sd.window_devices)
    for e in sorted(sd.events, key=lambda e: (e.at, e.device, e.seq)):
        devices[e.window] = e.device  # the window's latest device that day
    wanted = {p.staff_id: p for p in people if p.site == sd.site}
    for sid in by_staff:
        wanted.setdefault(sid, PostPerson(sd.site, sid, None))
    out = []
    for sid, person in sorted(wanted.items()):
        mine = by_staff.get(sid, [])
        if person.window is None and not mine:
            continue  # no post to keep and never at one
        out.append(_person_day(person, mine, sd, devices, spans, pause_limit, now))
    return out


def _person_day(
    person: PostPerson,
    mine: list[_Session],
    sd: SiteDay,
    devices: Mapping[str, str],
    spans: list[tuple[str, datetime, datetime]],
    pause_limit: timedelta,
    now: datetime | None,
) -> PostDay:
    excused = [(x.start, x.end) for x in sd.excused.get(person.staff_id, ())]
    punched: dict[str, list[str]] = defaultdict(list)
    arrived: dict[str, datetime] = {}  # half -> when the person was first in the hall
    for half, event_id, *when in sd.punched.get(person.staff_id, ()):
        punched[half].append(event_id)
        if when:
            arrived[half] = min(arrived.get(half, when[0]), when[0])
    for half, start, end in spans:
        for s in mine:
            if s.start < end and (s.end is None or s.end > start):
                first = max(s.start, start)
                arrived[half] = min(arrived.get(half, first), first)
    home = devices.get(person.window) if person.window else None
    watched = {s.device for s in mine} | ({home} if home else set())
    offline = {d: list(sd.offline.get(d, ())) for d in watched}
    cuts: set[datetime] = set()
    for s in mine:
        cuts.update((s.start, s.end) if s.end else (s.start,))
        for p in s.pauses:
            cuts.update((p.start, p.end) if p.end else (p.start,))
    for a, b in excused:
        cuts.update((a, b))
    for spans_of in offline.values():
        for a, b in spans_of:
            cuts.update((a, b))

    segs: list[_Seg] = []
    for half, start, end in spans:
        points = sorted({start, end, *(c for c in cuts if start < c < end)})
        for a, b in itertools.pairwise(points):
            segs.append(_segment(person, mine, half, a, b, excused, offline, home, punched))

    halves: dict[str, dict[Presence, float]] = {h: defaultdict(float) for h in HALVES}
    stretches: list[Stretch] = []
    for seg in segs:
        halves[seg.half][seg.presence] += (seg.end - seg.start).total_seconds()
        last = stretches[-1] if stretches else None
        if (
            last is not None
            and last.end == seg.start
            and (last.presence, last.window) == (seg.presence, seg.window)
        ):
            stretches[-1] = Stretch(last.start, seg.end, seg.presence, seg.window)
        else:
            stretches.append(Stretch(seg.start, seg.end, seg.presence, seg.window))
    cut_at = now if now is not None and any(b == now for _, _, b in spans) else None
    episodes = _episodes(person, mine, segs, pause_limit, punched, arrived, cut_at)
    return PostDay(
        person.site,
        person.staff_id,
        sd.plan.day,
        person.window,
        {h: _half(halves[h]) for h in HALVES},
        tuple(stretches),
        tuple(episodes),
    )


def _half(seconds: Mapping[Presence, float]) -> HalfDay:
    def m(p: Presence) -> int:
        return int(seconds.get(p, 0.0) / 60 + 0.5)  # to the nearest minute

    return HalfDay(
        m(Presence.SERVING),
        m(Presence.PAUSED),
        m(Presence.AWAY),
        m(Presence.EXCUSED),
        m(Presence.UNKNOWN),
    )


def _segment(
    person: PostPerson,
    mine: list[_Session],
    half: str,
    a: datetime,
    b: datetime,
    excused: list[tuple[datetime, datetime]],
    offline: Mapping[str, list[tuple[datetime, datetime]]],
    home: str | None,
    punched: Mapping[str, list[str]],
) -> _Seg:
    t = a + (b - a) / 2  # nothing changes inside a segment: its middle speaks for it
    active = [s for s in mine if s.start <= t and (s.end is None or t < s.end)]
    wrong = tuple(s for s in active if person.window is not None and s.window != person.window)
    if _inside(excused, t):
        # Leave or 公出 (第二十五条: absence with leave is not 脱岗): counted against no one,
        # not even a login at another's window.
        return _Seg(half, a, b, Presence.EXCUSED, None, None, None, None, ())
    chosen = max(active, key=lambda s: s.start) if active else None
    device = chosen.device if chosen else home
    window = chosen.window if chosen else person.window
    if device is not None and _inside(offline.get(device, ()), t):
        # A device that is offline shows nothing of the person: it counts against them only
        # when they punched in that half day (they were in the hall and not serving).
        if punched.get(half):
            return _Seg(
                half, a, b, Presence.AWAY, window, Cause.DEVICE_OFFLINE, chosen, None, wrong
            )
        return _Seg(half, a, b, Presence.UNKNOWN, window, None, chosen, None, wrong)
    if chosen is None:
        return _Seg(half, a, b, Presence.AWAY, None, Cause.LOGGED_OUT, None, None, ())
    pause = next((p for p in chosen.pauses if p.start <= t and (p.end is None or t < p.end)), None)
    if pause is not None:
        return _Seg(half, a, b, Presence.PAUSED, window, None, chosen, pause, wrong)
    return _Seg(half, a, b, Presence.SERVING, window, None, chosen, None, wrong)


def _runs(segs: list[_Seg], key: Any) -> list[tuple[Any, datetime, datetime]]:
    """Contiguous segments with the same non-None ``key(seg)``: (key, start, end)."""
    out: list[tuple[Any, datetime, datetime]] = []
    for seg in segs:
        k = key(seg)
        if k is None:
            continue
        if out and out[-1][0] == k and out[-1][2] == seg.start:
            out[-1] = (k, out[-1][1], seg.end)
        else:
            out.append((k, seg.start, seg.end))
    return out


def _episodes(
    person: PostPerson,
    mine: list[_Session],
    segs: list[_Seg],
    pause_limit: timedelta,
    punched: Mapping[str, list[str]],
    arrived: Mapping[str, datetime],
    cut_at: datetime | None,
) -> list[Episode]:
    out: list[Episode] = []

    def ongoing(end: datetime) -> bool:
        return cut_at is not None and end == cut_at

    if person.window is not None:  # 脱岗 is leaving one's post: only with a roster window
        for (cause, window), start, end in _runs(
            segs, lambda s: (s.cause, s.window) if s.presence == Presence.AWAY else None
        ):
            if cause == Cause.LOGGED_OUT:
                # Leaving the post is 脱岗 (第二十五条); not having come yet is not: that is
                # what the punches judge (迟到, 缺卡). Logged-out time counts from the person's
                # arrival in that half day: their in-punch, or their first login in it.
                half = next(s.half for s in segs if s.start == start)
                came = arrived.get(half)
                if came is None or came >= end:
                    continue
                start = max(start, came)
                before = [s for s in mine if s.end is not None and s.end <= start and s.end_id]
                after = [s for s in mine if s.start == end]
                left = max(before, key=lambda s: s.start) if before else None
                evidence = [left.end_id or ""] if left else []
                evidence += [s.start_id for s in after[:1]]
                window = person.window
            else:
                half = next(s.half for s in segs if s.start == start)
                evidence = list(punched.get(half, ()))
            out.append(
                Episode(
                    EpisodeKind.ABSENT,
                    cause,
                    start,
                    end,
                    window,
                    tuple(e for e in evidence if e),
                    ongoing(end),
                )
            )
        # 第十九条: 暂停服务 is for a short absence; a pause beyond the limit is 脱岗 from its
        # start (the first minutes included: the pause as a whole was not short).
        for pause, start, end in _runs(
            segs, lambda s: id(s.pause) if s.presence == Presence.PAUSED else None
        ):
            if end - start <= pause_limit:
                continue
            seg = next(s for s in segs if id(s.pause) == pause and s.start == start)
            p = seg.pause
            assert p is not None and seg.session is not None
            evidence = [p.start_id] + ([p.end_id] if p.end_id and p.end == end else [])
            out.append(
                Episode(
                    EpisodeKind.ABSENT,
                    Cause.PAUSED_TOO_LONG,
                    start,
                    end,
                    seg.session.window,
                    tuple(evidence),
                    ongoing(end),
                )
            )
    # 串岗: logged in at a window the roster gives someone else (or no one).
    by_id = {id(s): s for s in mine}
    for sid in {id(s) for seg in segs for s in seg.wrong}:
        session = by_id[sid]
        for _k, start, end in _runs(
            segs, lambda s, sid=sid: sid if any(id(w) == sid for w in s.wrong) else None
        ):
            evidence = [session.start_id]
            if session.end_id and session.end == end:
                evidence.append(session.end_id)
            out.append(
                Episode(
                    EpisodeKind.WRONG_WINDOW,
                    Cause.NOT_ROSTERED,
                    start,
                    end,
                    session.window,
                    tuple(evidence),
                    ongoing(end),
                )
            )
    out.sort(key=lambda e: (e.start, e.kind, e.cause))
    return out


# --- from the store ---------------------------------------------------------------------------


def offline_spans(
    transitions: Iterable[Any], start: datetime, end: datetime, tz: tzinfo
) -> dict[tuple[str, str], list[tuple[datetime, datetime]]]:
    """(site, device) -> the spans it was offline within [start, end), from its status changes
    (``Store.device_transitions``, ordered by device and time; the centre's receipt times). A
    device without any change recorded counts as online: nothing says otherwise."""
    out: dict[tuple[str, str], list[tuple[datetime, datetime]]] = defaultdict(list)
    since: dict[tuple[str, str], datetime | None] = {}
    for t in transitions:
        key = (t.site, t.device)
        moment = max(t.received_at.astimezone(tz), start)
        went = since.get(key)
        if t.state == "offline":
            if went is None:
                since[key] = moment
        elif went is not None:
            if went < moment:
                out[key].append((went, moment))
            since[key] = None
    for key, went in since.items():
        if went is not None and went < end:
            out[key].append((went, end))
    return out


def excused_spans(
    rows: Iterable[Mapping[str, Any]], plans: Mapping[date, DayPlan], tz: tzinfo
) -> dict[str, list[ExcusedSpan]]:
    """staff id -> time covered by 请假/公出: a leave by the hour its exact span, a leave by half
    days the service hours of each half day it covers (补卡 corrects a punch: no time)."""
    out: dict[str, list[ExcusedSpan]] = defaultdict(list)
    for r in rows:
        if r["kind"] not in ("请假", "公出") or r.get("slot"):
            continue
        sid = r["staff_id"]
        if r.get("starts_time") and r.get("ends_time"):
            out[sid].append(
                ExcusedSpan(
                    _clock(r["starts"], r["starts_time"], tz),
                    _clock(r["ends"], r["ends_time"], tz),
                    r["kind"],
                )
            )
            continue
        for day, plan in plans.items():
            for half, span in zip(HALVES, (plan.morning, plan.afternoon), strict=True):
                if (r["starts"], r["starts_half"]) <= (day, half) <= (r["ends"], r["ends_half"]):
                    out[sid].append(
                        ExcusedSpan(
                            datetime.combine(day, span.start, tz),
                            datetime.combine(day, span.end, tz),
                            r["kind"],
                        )
                    )
    return out


def _clock(day: date, hhmm: str, tz: tzinfo) -> datetime:
    hour, minute = (int(x) for x in hhmm.split(":"))
    return datetime.combine(day, time.min, tz) + timedelta(hours=hour, minutes=minute)


def post_days(
    store: Any,
    schedule: Schedule | ScheduleHistory,
    first: date,
    last: date,
    site: str | None = None,
    now: datetime | None = None,
    pause_limit: timedelta = DEFAULT_PAUSE_LIMIT,
) -> list[PostDay]:
    """Every person's working days from ``first`` to ``last`` (inclusive; with ``now``, up to
    its day, that day so far), read from ``store`` (a :class:`central.store.Store`)."""
    from central.reports.source import roster_people

    tz = store.tz
    history = ScheduleHistory.single(schedule) if isinstance(schedule, Schedule) else schedule
    if now is not None:
        now = now.astimezone(tz)
        last = min(last, now.date())
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    plans = {d: history.plan(d, tz) for d in days}
    if not days:
        return []
    start = datetime.combine(first, time.min, tz)
    end = datetime.combine(last, time.min, tz) + _DAY
    by_day: dict[tuple[str, date], list[WindowEvent]] = defaultdict(list)
    punches: dict[tuple[str, date], dict[str, list[tuple[Any, ...]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    month_devices: dict[str, dict[str, str]] = defaultdict(dict)
    for e in store.events_filed_between((*WINDOW_TYPES, EventType.PUNCH), start, end, site):
        at = e.filed_at.astimezone(tz)
        data = e.data if isinstance(e.data, dict) else {}
        staff = data.get("staff_id")
        staff = staff if isinstance(staff, str) and staff else None
        if e.type == EventType.PUNCH:
            half = IN_SLOT_HALF.get(str(data.get("slot")))
            if half and staff:
                punches[(e.site, at.date())][staff].append((half, e.id, at))
            continue
        window = data.get("window")
        if not isinstance(window, str) or not window:
            continue
        by_day[(e.site, at.date())].append(
            WindowEvent(e.id, at, e.device, e.seq, e.type, window, staff)
        )
        month_devices[e.site][window] = e.device
    offline = offline_spans(store.device_transitions(start, end, site), start, end, tz)
    excused = excused_spans(store.leaves(first, last), plans, tz)
    people = roster_people(store, site)
    sites = sorted({s for s, _ in people} | {s for s, _ in by_day})
    out: list[PostDay] = []
    for day in days:
        plan = plans[day]
        if not plan.working:
            continue
        for s in sites:
            staff = [
                PostPerson(s, p.staff_id, p.window)
                for (ps, _), p in people.items()
                if ps == s and p.employed(day)
            ]
            site_day = SiteDay(
                s,
                plan,
                tz,
                by_day.get((s, day), []),
                {d: spans for (ds, d), spans in offline.items() if ds == s},
                punches.get((s, day), {}),
                excused,
                month_devices.get(s, {}),
            )
            today_now = now if now is not None and now.date() == day else None
            out.extend(day_posts(staff, site_day, pause_limit, today_now))
    return out
