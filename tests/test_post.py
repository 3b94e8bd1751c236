"""Time at the post, 脱岗 and 串岗 (docs/post.md; regulation 第十九条, 第二十五条)."""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from central.leave import parse_leave_file
from central.post.compute import (
    PostPerson,
    SiteDay,
    WindowEvent,
    day_posts,
    offline_spans,
    post_days,
)
from central.post.model import Cause, Episode, EpisodeKind, HalfDay, Presence
from central.store import open_store
from central.store.records import DeviceTransition, EventRow
from contract import EventType
from contract.schedule import Schedule
from tests.conftest import require_or_skip
from tests.support import PG_URL, pg_available, pg_schema

TZ = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 11, 3)  # a Tuesday, winter hours: 08:30-11:30, 14:00-17:30
SITE = "jiedong"
ROSTER = {
    "v": 1,
    "version": 1,
    "staff": [
        {"id": "S0001", "name": "王芳", "role": "staff", "window": "A01"},
        {"id": "S0002", "name": "李娜", "role": "staff", "window": "A02"},
    ],
}


def at(hhmm: str, day: date = DAY) -> datetime:
    hour, minute = (int(x) for x in hhmm.split(":"))
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=TZ)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        with open_store(f"sqlite:///{tmp_path}/hall.db") as s:
            yield s
    else:
        if not pg_available():
            require_or_skip(f"PostgreSQL not reachable at {PG_URL}")
        with pg_schema() as name, open_store(PG_URL, name) as s:
            yield s


class Day:
    """The hand-worked day's events, as the devices send them."""

    def __init__(self) -> None:
        self.rows: list[EventRow] = []
        self.ids: dict[str, str] = {}
        self.seq: dict[str, int] = {}

    def add(self, name: str, etype: EventType, hhmm: str, device: str, **data) -> None:
        self.seq[device] = self.seq.get(device, 0) + 1
        moment = at(hhmm)
        eid = self.ids[name] = str(uuid.uuid4())
        self.rows.append(
            EventRow(
                eid,
                device,
                SITE,
                self.seq[device],
                etype.value,
                moment,
                moment.isoformat(timespec="milliseconds"),
                "synced",
                json.dumps(data, ensure_ascii=False),
            )
        )


def hand_worked_day() -> Day:
    d = Day()
    a01 = {"window": "A01", "pad": 1, "staff_id": "S0001"}
    d.add("punch_am", EventType.PUNCH, "08:25", "kiosk-01", staff_id="S0001", slot="morning_in")
    d.add("login", EventType.LOGIN, "08:30", "pad-a01", **a01)
    d.add("paused", EventType.PAUSED, "09:10", "pad-a01", **a01)
    d.add("resumed", EventType.RESUMED, "09:20", "pad-a01", **a01)
    d.add("logout", EventType.LOGOUT, "10:00", "pad-a01", **a01)
    d.add("login_again", EventType.LOGIN, "10:40", "pad-a01", **a01)
    d.add("lunch_logout", EventType.LOGOUT, "11:35", "pad-a01", **a01)  # after hours: clipped
    d.add("punch_pm", EventType.PUNCH, "14:25", "kiosk-01", staff_id="S0001", slot="afternoon_in")
    a02 = {"window": "A02", "pad": 2, "staff_id": "S0001"}
    d.add("other_window", EventType.LOGIN, "14:30", "pad-a02", **a02)
    return d


def test_the_hand_worked_day_on_both_stores(store, tmp_path):
    """S0001 (roster window A01), Tuesday 2026-11-03, winter hours 08:30-11:30 and 14:00-17:30.

    Morning, 180 minutes: logged in 08:30, paused 09:10-09:20, logged out 10:00-10:40, logged
    in again until 11:35 (after hours: clipped at 11:30).
      serving 08:30-09:10 (40) + 09:20-10:00 (40) + 10:40-11:30 (50) = 130
      paused  09:10-09:20 = 10 (under the 15-minute limit: no episode)
      away    10:00-10:40 = 40: 脱岗, cause logged_out, window A01, evidence the logout and
              the login that ended it.
    Afternoon, 210 minutes: logged out since 11:35, logs in at A02 (S0002's window) 14:30 and
    stays; leave (请假) by the hour 15:00-17:30.
      away    14:00-14:30 = 30 (the hours start at 14:00 in winter); of it, 14:25-14:30 is
              脱岗 (5), cause logged_out, window A01: the afternoon punch at 14:25 says the
              person was in the hall, not at the post. 14:00-14:25 they had not come yet,
              which the punches judge (迟到), not 脱岗. Evidence the 11:35 logout and the
              14:30 login that ended it
      serving 14:30-15:00 = 30 (at A02: time at the post, but 串岗)
      excused 15:00-17:30 = 150 (the login at A02 is not counted against them under leave)
      串岗 14:30-15:00 at A02, evidence the login.
    Time at post (serving + paused): 140 + 30 = 170 minutes.
    S0002 never came (no punch, no login) and has no leave: away all day, but no 脱岗: not
    coming is 缺卡/旷工 in the attendance columns, not leaving the post (第二十五条). S0001
    logged in at A02 is not S0002's presence.
    """
    d = hand_worked_day()
    store.write_batch(d.rows, [])
    store.put_roster(SITE, ROSTER)
    leave_file = tmp_path / "leave.csv"
    leave_file.write_text(
        "工号,类型,开始,结束,审批人\nS0001,请假,2026-11-03 15:00,2026-11-03 17:30,主任\n",
        encoding="utf-8",
    )
    rows = parse_leave_file(leave_file)
    assert rows[0]["starts_time"] == "15:00" and rows[0]["ends_time"] == "17:30"
    assert rows[0]["starts_half"] == "pm" and rows[0]["ends_half"] == "pm"
    assert store.add_leaves(rows, "test") == 1
    assert store.add_leaves(rows, "test") == 0  # imported twice: nothing doubled

    days = post_days(store, Schedule(), DAY, DAY)
    by_staff = {p.staff_id: p for p in days}
    assert sorted(by_staff) == ["S0001", "S0002"]
    s1 = by_staff["S0001"]
    assert s1.window == "A01"
    assert s1.halves == {
        "am": HalfDay(serving=130, paused=10, away=40),
        "pm": HalfDay(serving=30, away=30, excused=150),
    }
    assert s1.halves["am"].at_post + s1.halves["pm"].at_post == 170
    assert s1.episodes == (
        Episode(
            EpisodeKind.ABSENT,
            Cause.LOGGED_OUT,
            at("10:00"),
            at("10:40"),
            "A01",
            (d.ids["logout"], d.ids["login_again"]),
        ),
        Episode(
            EpisodeKind.ABSENT,
            Cause.LOGGED_OUT,
            at("14:25"),
            at("14:30"),
            "A01",
            (d.ids["lunch_logout"], d.ids["other_window"]),
        ),
        Episode(
            EpisodeKind.WRONG_WINDOW,
            Cause.NOT_ROSTERED,
            at("14:30"),
            at("15:00"),
            "A02",
            (d.ids["other_window"],),
        ),
    )
    assert [e.minutes for e in s1.episodes] == [40, 5, 30]
    assert [(s.start, s.end, s.presence, s.window) for s in s1.stretches] == [
        (at("08:30"), at("09:10"), Presence.SERVING, "A01"),
        (at("09:10"), at("09:20"), Presence.PAUSED, "A01"),
        (at("09:20"), at("10:00"), Presence.SERVING, "A01"),
        (at("10:00"), at("10:40"), Presence.AWAY, None),
        (at("10:40"), at("11:30"), Presence.SERVING, "A01"),
        (at("14:00"), at("14:30"), Presence.AWAY, None),
        (at("14:30"), at("15:00"), Presence.SERVING, "A02"),
        (at("15:00"), at("17:30"), Presence.EXCUSED, None),
    ]
    s2 = by_staff["S0002"]
    assert s2.halves == {"am": HalfDay(away=180), "pm": HalfDay(away=210)}
    assert s2.episodes == ()


def _pure_day(events, offline=None, punched=None, now=None):
    plan = Schedule().plan(DAY)
    site_day = SiteDay(
        SITE,
        plan,
        TZ,
        events,
        offline or {},
        punched or {},
        {},
        {"A01": "pad-a01"},
    )
    (day,) = day_posts([PostPerson(SITE, "S0001", "A01")], site_day, now=now)
    return day


def _ev(hhmm: str, etype: EventType, seq: int, window: str = "A01") -> WindowEvent:
    return WindowEvent(f"e{seq}", at(hhmm), "pad-a01", seq, etype.value, window, "S0001")


def test_a_pause_over_the_limit_is_absent_from_its_start_and_under_it_is_not():
    day = _pure_day(
        [
            _ev("08:30", EventType.LOGIN, 1),
            _ev("09:00", EventType.PAUSED, 2),
            _ev("09:15", EventType.RESUMED, 3),  # exactly the limit: a short absence
            _ev("10:00", EventType.PAUSED, 4),
            _ev("10:16", EventType.RESUMED, 5),  # 16 minutes: the whole pause is 脱岗
            _ev("17:40", EventType.LOGOUT, 6),
        ]
    )
    assert [(e.cause, e.start, e.end, e.evidence) for e in day.episodes] == [
        (Cause.PAUSED_TOO_LONG, at("10:00"), at("10:16"), ("e4", "e5"))
    ]
    assert day.halves["am"] == HalfDay(serving=149, paused=31)
    # Logged in over lunch: the afternoon is served (hours only, 14:00-17:30).
    assert day.halves["pm"] == HalfDay(serving=210)


def test_an_offline_device_counts_against_only_someone_who_punched_in():
    events = [_ev("08:30", EventType.LOGIN, 1), _ev("17:35", EventType.LOGOUT, 2)]
    offline = {"pad-a01": [(at("09:00"), at("10:00")), (at("15:00"), at("16:00"))]}
    day = _pure_day(events, offline, {"S0001": [("am", "p1")]})
    # Punched in the morning: 09:00-10:00 is 脱岗 (device_offline), evidence the punch.
    # No afternoon punch: 15:00-16:00 is unknown, not counted against them.
    assert day.halves["am"] == HalfDay(serving=120, away=60)
    assert day.halves["pm"] == HalfDay(serving=150, unknown=60)
    assert [(e.cause, e.start, e.end, e.window, e.evidence) for e in day.episodes] == [
        (Cause.DEVICE_OFFLINE, at("09:00"), at("10:00"), "A01", ("p1",))
    ]


def test_an_episode_running_now_is_ongoing_and_ends_now():
    events = [_ev("08:30", EventType.LOGIN, 1), _ev("09:00", EventType.PAUSED, 2)]
    day = _pure_day(events, now=at("09:40"))
    assert day.halves["am"] == HalfDay(serving=30, paused=40)
    (episode,) = day.episodes
    assert (episode.cause, episode.start, episode.end, episode.ongoing) == (
        Cause.PAUSED_TOO_LONG,
        at("09:00"),
        at("09:40"),
        True,
    )
    assert day.halves["pm"] == HalfDay()


def test_status_changes_are_recorded_once_per_change_and_become_offline_spans(store):
    t0 = at("09:00")
    store.upsert_status(SITE, "pad-a01", {"v": 1, "state": "offline"}, t0 - timedelta(days=1))
    store.upsert_status(SITE, "pad-a01", {"v": 1, "state": "online"}, t0)
    store.upsert_status(SITE, "pad-a01", {"v": 1, "state": "online"}, t0 + timedelta(minutes=1))
    store.upsert_status(SITE, "pad-a01", {"v": 1, "state": "offline"}, at("10:00"))
    store.upsert_status(SITE, "pad-a01", {"v": 1, "state": "online"}, at("10:30"))
    start, end = at("00:00"), at("00:00") + timedelta(days=1)
    found = store.device_transitions(start, end)
    assert [(t.state, t.received_at) for t in found] == [
        ("offline", t0 - timedelta(days=1)),  # the state at the start of the span
        ("online", t0),
        ("offline", at("10:00")),
        ("online", at("10:30")),
    ]
    assert offline_spans(found, start, end, TZ) == {
        (SITE, "pad-a01"): [(start, at("09:00")), (at("10:00"), at("10:30"))]
    }
    assert store.devices()[0]["state"] == "online"
    assert isinstance(found[0], DeviceTransition)


def test_the_monthly_report_counts_the_episodes_and_shows_the_day_on_click(store, tmp_path):
    """The hand-worked day in the November report (days before ``now`` are judged)."""
    from central.reports import attendance, render
    from central.reports.month import Month

    d = hand_worked_day()
    store.write_batch(d.rows, [])
    # S0001 starts on the day (roster `starts`): Monday Nov 2, with no login, is not theirs.
    first = dict(ROSTER["staff"][0], starts=DAY.isoformat())
    store.put_roster(SITE, dict(ROSTER, staff=[first, ROSTER["staff"][1]]))
    store.add_leaves(
        [
            {
                "staff_id": "S0001",
                "kind": "请假",
                "starts": DAY,
                "starts_half": "pm",
                "ends": DAY,
                "ends_half": "pm",
                "approver": "主任",
                "note": "",
                "source": "t.csv:2",
                "starts_time": "15:00",
                "ends_time": "17:30",
            }
        ],
        "test",
    )
    month = Month(2026, 11, TZ)
    att = attendance.compute(store, month, Schedule(), now=at("09:00", date(2026, 11, 4)))
    s1 = next(pm for pm in att.people if pm.person.staff_id == "S0001")
    assert (s1.absent, s1.absent_min, s1.wrong_window) == (2, 45, 1)
    # 15:00-17:30 excuses 下午下班 (17:30) only: no half day of 请假, no 缺卡 for it.
    (day,) = [x for x in s1.days if x.plan.day == DAY]
    assert [c.excuse for c in day.cells] == [None, None, None, "请假"]
    assert s1.leave_days == 0
    report = attendance.to_report(att)
    posts = next(sheet for sheet in report.sheets if sheet.name == "在岗与纪律")
    row = next(r for r in posts.rows if r[1] == "S0001")
    assert row[4:] == [170, 10, 70, 2, 45, 1]  # at post, paused, away; 脱岗 次/分钟, 串岗
    daily = next(sheet for sheet in report.sheets if sheet.name == "每日明细")
    (drow,) = [r for r in daily.rows if r[0] == DAY and r[3] == "S0001"]
    assert drow[daily.headers.index("在岗(分钟)")] == 170
    out = __import__("io").BytesIO()
    render(report, "html", out)
    page = out.getvalue().decode("utf-8")
    assert "在岗时间线" in page and 'class="post-person"' in page
    assert "10:00-10:40 离岗" in page and "14:30-15:00 服务中 A02" in page
