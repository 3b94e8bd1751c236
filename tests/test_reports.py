"""central/reports on a hand-made month, on a real SQLite file and the real PostgreSQL.

Every expected number below is worked out by hand from the events written here and the
hall's rules (docs/attendance.md; docs/reports.md), never by calling the code under test.
October 2026 (chinesecalendar): 1-7 National Day off, Saturday 10 an adjusted working day
(调休), weekends 3-4, 11, 17-18, 24-25, 31 off: 18 working days (8, 9, 10, 12-16, 19-23,
26-30). Summer hours all month: 08:30-11:30, 14:30-17:30, Fridays alike.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from central.reports import attendance, ratings
from central.reports.model import cell_text
from central.reports.month import Month
from central.store import open_store
from contract.schedule import Schedule
from tests import support as testing
from tests.conftest import require_or_skip
from tests.reportkit import CST, correction, leave, roster
from tests.reportkit import Month as Events
from tests.support import PG_URL, pg_available

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 12, 15, 12, 0, tzinfo=TZ)  # both months are over
OCTOBER_WORKDAYS = [
    date(2026, 10, d)
    for d in (8, 9, 10, 12, 13, 14, 15, 16, 19, 20, 21, 22, 23, 26, 27, 28, 29, 30)
]


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = open_store(f"sqlite:///{tmp_path}/hall.db")
        yield s
        s.close()
        return
    if not pg_available():
        require_or_skip(f"PostgreSQL not reachable at {PG_URL}")
    with testing.pg_schema() as name:
        s = open_store(PG_URL, name)
        yield s
        s.close()


def write_october(store) -> None:
    roster(
        store,
        "jiedong",
        [
            ("S001", "王芳", "staff", "A03"),
            ("S002", "李娜", "staff", "A05"),
            ("C001", "陈刚", "chief", None),
            ("C002", "赵敏", "chief", None),
        ],
    )
    ev = Events(store)
    for d in OCTOBER_WORKDAYS:
        if d == date(2026, 10, 8):  # late 11 min: 08:41 against 08:30
            ev.day("S001", d, morning_in=time(8, 41))
        elif d == date(2026, 10, 9):  # a Friday; left 20 min early: 17:10 against 17:30
            ev.day("S001", d, afternoon_out=time(17, 10))
        elif d == date(2026, 10, 12):  # no afternoon "in"
            ev.day("S001", d, skip=("afternoon_in",))
        elif d == date(2026, 10, 13):  # half day 请假 in the afternoon, no punches then
            ev.day("S001", d, skip=("afternoon_in", "afternoon_out"))
        elif d == date(2026, 10, 30):  # summer Friday: 14:29 is on time (14:30)
            ev.day("S001", d, afternoon_in=time(14, 29))
        else:
            ev.day("S001", d)
    ev.punch("S001", date(2026, 10, 1), time(9, 0))  # National Day: a punch on a day off
    for d in OCTOBER_WORKDAYS:
        if d == date(2026, 10, 15):
            # Written by a device on UTC: 2026-10-14T23:55+00:00 is 07:55 on the 15th here.
            ev.day("S002", d, skip=("morning_in",))
            ev.punch("S002", d, time(7, 55), tz=UTC)
        elif d == date(2026, 10, 16):
            continue  # absent, no leave: four missing punches
        elif d == date(2026, 10, 19):
            continue  # 公出 the whole day
        elif d == date(2026, 10, 20):  # forgot the morning "in"; 补卡 approved
            ev.day("S002", d, skip=("morning_in",))
        else:
            ev.day("S002", d)
    # 2026-10-31T20:00Z is 04:00 on Sunday 1 November here: November, a day off.
    ev.punch("S002", date(2026, 11, 1), time(4, 0), tz=UTC)
    for d in (date(2026, 10, 8), date(2026, 10, 21)):  # chief below the rule: 3 records
        ev.punch("C001", d, time(8, 20))
    ev.punch("C001", date(2026, 10, 21), time(17, 40))
    for d in (8, 9, 22, 23):  # chief at the rule: 4 records
        ev.punch("C002", date(2026, 10, d), time(9, 5))
    ev.flush()
    leave(
        store,
        ("S001", "请假", "2026-10-13", "pm", "2026-10-13", "pm"),
        ("S002", "公出", "2026-10-19", "am", "2026-10-19", "pm"),
    )
    correction(store, "S002", "2026-10-20", "morning_in", "08:28")


def october(store):
    return attendance.compute(store, Month(2026, 10, TZ), Schedule(), now=NOW)


def person(att, staff_id):
    return next(p for p in att.people if p.person.staff_id == staff_id)


def test_month_summary_by_hand(store):
    write_october(store)
    att = october(store)
    s1 = person(att, "S001")
    assert (s1.working_days, s1.days_present) == (18, 18)
    assert (s1.late, s1.late_min, s1.early, s1.early_min) == (1, 11, 1, 20)
    assert s1.missing == 1  # 12 Oct afternoon in; the 13th's afternoon is on leave
    assert (s1.leave_days, s1.business_days, s1.corrections) == (0.5, 0, 0)
    assert s1.off_day_punches == 1
    assert s1.records == 18 * 4 - 1 - 2 + 1
    s2 = person(att, "S002")
    assert (s2.working_days, s2.days_present) == (18, 16)
    assert (s2.late, s2.early) == (0, 0)
    assert s2.missing == 4  # the 16th; the 15th's 07:55 UTC-stamped punch counts
    assert (s2.leave_days, s2.business_days, s2.corrections) == (0, 1, 1)
    assert s2.off_day_punches == 0  # the 1 November punch is not October's
    assert s2.records == 18 * 4 - 4 - 4 - 1
    c1, c2 = person(att, "C001"), person(att, "C002")
    assert (c1.records, c1.chief_ok) == (3, False)
    assert (c2.records, c2.chief_ok) == (4, True)
    assert c1.missing == 0 and c2.missing == 0  # chiefs are not held to four a day


def test_day_cells_by_hand(store):
    write_october(store)
    att = october(store)
    days = {d.plan.day: d for d in person(att, "S001").days}
    assert [c.text() for c in days[date(2026, 10, 8)].cells] == [
        "08:41 迟到11分",
        "11:35",
        "14:25",
        "17:35",
    ]
    assert days[date(2026, 10, 9)].cells[3].text() == "17:10 早退20分"
    assert [c.text() for c in days[date(2026, 10, 13)].cells][2:] == ["请假", "请假"]
    assert days[date(2026, 10, 30)].cells[2].status == "on_time"
    assert date(2026, 10, 10) in days and days[date(2026, 10, 10)].plan.working  # 调休
    assert not days[date(2026, 10, 1)].plan.working and days[date(2026, 10, 1)].extra == 1
    s2 = {d.plan.day: d for d in person(att, "S002").days}
    assert s2[date(2026, 10, 15)].cells[0].text() == "07:55"
    assert [c.text() for c in s2[date(2026, 10, 16)].cells] == ["缺卡"] * 4
    assert [c.text() for c in s2[date(2026, 10, 19)].cells] == ["公出"] * 4
    assert s2[date(2026, 10, 20)].cells[0].text() == "补卡 08:28"


def test_the_first_in_and_the_last_out_count(store):
    roster(store, "jiedong", [("S001", "王芳", "staff", None)])
    ev = Events(store)
    d = date(2026, 10, 8)
    ev.day("S001", d, morning_in=time(8, 20), afternoon_out=time(17, 40))
    ev.punch("S001", d, time(8, 50))  # a second "in": not later for it
    ev.punch("S001", d, time(17, 0))  # an earlier "out" before the real one
    ev.flush()
    cells = {d.plan.day: d for d in person(october(store), "S001").days}[d].cells
    assert [c.text() for c in cells] == ["08:20", "11:35", "14:25", "17:40"]


def test_season_changes_and_winter_friday(store):
    """14:20 is late on winter Mon-Thu afternoons (14:00), on time in summer (14:30) and on
    winter Fridays (14:30). 30 April is winter, 6 May summer; 30 Oct summer, 2 Nov winter."""
    roster(store, "jiedong", [("S003", "周杰", "staff", None)])
    ev = Events(store)
    days = [date(2026, 4, 30), date(2026, 5, 6), date(2026, 10, 30), date(2026, 11, 2)]
    days.append(date(2026, 11, 6))
    for d in days:
        ev.day("S003", d, afternoon_in=time(14, 20))
    ev.flush()
    seen = {}
    for year, month in ((2026, 4), (2026, 5), (2026, 10), (2026, 11)):
        att = attendance.compute(store, Month(year, month, TZ), Schedule(), now=NOW)
        for d in person(att, "S003").days:
            if d.plan.day in days:
                seen[d.plan.day] = d.cells[2].text()
    assert seen == {
        date(2026, 4, 30): "14:20 迟到20分",
        date(2026, 5, 6): "14:20",
        date(2026, 10, 30): "14:20",
        date(2026, 11, 2): "14:20 迟到20分",
        date(2026, 11, 6): "14:20",
    }


def test_month_boundary_in_the_halls_timezone(store):
    write_october(store)
    nov = attendance.compute(store, Month(2026, 11, TZ), Schedule(), now=NOW)
    assert person(nov, "S002").off_day_punches == 1
    assert person(nov, "S002").records == 1


def test_implausible_clock_is_filed_by_received_at(store):
    roster(store, "jiedong", [("C002", "赵敏", "chief", None)])
    ev = Events(store)
    ev.punch("C002", date(1970, 1, 1), time(8, 0), clock="unsynced")
    ev.flush()
    received = datetime(2026, 10, 8, 9, 1, tzinfo=CST)
    store.query(
        "UPDATE events SET received_at = %s RETURNING id",
        (received.astimezone(UTC).isoformat() if "sqlite" in store.url else received,),
    )
    att = october(store)
    c2 = person(att, "C002")
    assert c2.records == 1 and c2.suspect == 1
    assert c2.days[0].plan.day == date(2026, 10, 8)
    assert c2.days[0].cells[0].text() == "09:01†"


def test_current_month_judges_only_past_days(store):
    roster(store, "jiedong", [("S001", "王芳", "staff", None)])
    now = datetime(2026, 10, 9, 10, 0, tzinfo=TZ)  # Friday morning
    ev = Events(store)
    ev.day("S001", date(2026, 10, 8))
    ev.punch("S001", date(2026, 10, 9), time(8, 29))
    ev.flush()
    att = attendance.compute(store, Month.parse(None, TZ, now), Schedule(), now=now)
    s1 = person(att, "S001")
    # Friday the 9th is not over: listed, but judged neither way and counted in no total.
    assert (s1.working_days, s1.days_present, s1.missing) == (1, 1, 0)
    assert [c.text() for c in s1.days[-1].cells] == ["08:29", "—", "—", "—"]
    assert not s1.days[-1].judged and s1.days[0].judged


def write_ratings(store) -> None:
    if store.roster("jiedong") is None:
        roster(store, "jiedong", [("S001", "王芳", "staff", "A03")])
    roster(store, "puning", [("S009", "吴磊", "staff", "A03")])
    ev = Events(store)
    day = datetime(2026, 10, 8, 9, 0, tzinfo=CST)

    def at(minutes: int, d: datetime = day) -> datetime:
        return d + timedelta(minutes=minutes)

    base = {"window": "A03", "pad": 1, "staff_id": "S001"}
    ev.event("window.login", at(0), base, device="pad-a03")
    for i, (level, reasons, invite) in enumerate(
        [
            (5, [], 11),
            (5, [], None),
            (4, [], 12),
            (3, [], None),
            (2, ["态度不好"], 13),
            (1, ["办事效率低", "多次跑动"], 14),
        ]
    ):
        ev.event(
            "rating.submitted",
            at(10 + i),
            {**base, "level": level, "label": "x", "reasons": reasons, "invite_id": invite},
            device="pad-a03",
        )
    for i in (21, 22):
        ev.event("rating.expired", at(30 + i), {**base, "invite_id": i}, device="pad-a03")
    ev.event("window.paused", at(60), base, device="pad-a03")  # 10:00
    ev.event("window.resumed", at(75), base, device="pad-a03")  # 10:15: 15 min
    ev.event("window.paused", at(360), base, device="pad-a03")  # 15:00
    ev.event("window.logout", at(365), base, device="pad-a03")  # 15:05: 5 min
    other = {"window": "A03", "pad": 1, "staff_id": "S009", "reasons": [], "invite_id": None}
    for i in range(2):
        ev.event(
            "rating.submitted",
            at(i, datetime(2026, 10, 9, 10, 0, tzinfo=CST)),
            {**other, "level": 5, "label": "x"},
            site="puning",
            device="pad-p03",
        )
    nobody = {"window": "A05", "pad": 2, "staff_id": None, "reasons": [], "invite_id": None}
    ev.event("rating.submitted", at(100), {**nobody, "level": 4, "label": "x"}, device="pad-a03")
    ev.flush()


def test_ratings_by_hand(store):
    write_ratings(store)
    r = ratings.compute(store, Month(2026, 10, TZ), now=NOW)
    a03 = r.windows[("jiedong", "A03")]
    assert dict(a03.levels) == {5: 2, 4: 1, 3: 1, 2: 1, 1: 1}
    assert (a03.answered, a03.expired, a03.sent) == (4, 2, 6)
    assert a03.rate == pytest.approx(4 / 6)
    assert a03.paused == timedelta(minutes=20)
    assert dict(r.windows[("puning", "A03")].levels) == {5: 2}  # not added to jiedong's A03
    assert dict(r.staff[("jiedong", None)].levels) == {4: 1}
    assert dict(r.staff[("jiedong", "S001")].levels) == {5: 2, 4: 1, 3: 1, 2: 1, 1: 1}
    report = ratings.to_report(r)
    bad = next(s for s in report.sheets if s.name == "差评明细")
    assert [[cell_text(v) for v in row] for row in bad.rows] == [
        ["2026-10-08 09:14", "jiedong", "A03", "S001", "王芳", "不满意", "态度不好"],
        [
            "2026-10-08 09:15",
            "jiedong",
            "A03",
            "S001",
            "王芳",
            "非常不满意",
            "办事效率低、多次跑动",
        ],
    ]
    win = next(s for s in report.sheets if s.name == "窗口评价")
    assert [cell_text(v) for v in win.rows[0]] == [
        *("jiedong", "A03", "6", "2", "1", "1", "1", "1", "66.7%", "2", "6", "4", "2", "20")
    ]


def test_both_stores_give_identical_reports(tmp_path):
    if not pg_available():
        require_or_skip(f"PostgreSQL not reachable at {PG_URL}")
    from central.reports import build, render

    outputs = []
    with testing.pg_schema() as name:
        for s in (open_store(f"sqlite:///{tmp_path}/hall.db"), open_store(PG_URL, name)):
            with s:
                write_october(s)
                write_ratings(s)
                text = b""
                for kind in ("attendance", "ratings"):
                    report = build(kind, s, Month(2026, 10, TZ), None, now=NOW)
                    import io

                    buf = io.BytesIO()
                    render(report, "csv", buf)
                    text += buf.getvalue()
                outputs.append(text.replace(b"test.csv:2", b""))
    # Leave ids and import times are store-made; everything else must match byte for byte.
    assert outputs[0] == outputs[1]
    assert "王芳".encode() in outputs[0]


def test_default_month_is_the_halls():
    # 22:30 UTC on 30 November is 06:30 on 1 December in the hall.
    late_utc = datetime(2026, 11, 30, 22, 30, tzinfo=UTC)
    assert Month.parse(None, TZ, late_utc).label == "2026-12"
    assert Month.parse(None, ZoneInfo("UTC"), late_utc).label == "2026-11"
    with pytest.raises(
        ValueError, match=r"--month: expected YYYY-MM \(e.g. 2026-11\), got '2026-13'"
    ):
        Month.parse("2026-13", TZ)


def daily_rows(report, day: date) -> list[tuple[int, list]]:
    sheet = next(s for s in report.sheets if s.name == "每日明细")
    return [(i, row) for i, row in enumerate(sheet.rows) if row[0] == day]


def test_a_correction_excuses_one_slot_only(store):
    roster(store, "jiedong", [("S001", "王芳", "staff", None)])
    ev = Events(store)
    for d in OCTOBER_WORKDAYS:
        if d == date(2026, 10, 8):  # forgot both morning punches; one 补卡 approved
            ev.day("S001", d, skip=("morning_in", "morning_out"))
        else:
            ev.day("S001", d)
    ev.flush()
    correction(store, "S001", "2026-10-08", "morning_in", "08:27")
    att = october(store)
    s1 = person(att, "S001")
    day = next(d for d in s1.days if d.plan.day == date(2026, 10, 8))
    assert [c.text() for c in day.cells] == ["补卡 08:27", "缺卡", "14:25", "17:35"]
    assert (s1.corrections, s1.missing, s1.leave_days) == (1, 1, 0)
    report = attendance.to_report(att)
    sheet = next(s for s in report.sheets if s.name == "每日明细")
    [(row, values)] = daily_rows(report, date(2026, 10, 8))
    assert sheet.marks[(row, sheet.headers.index("上午上班"))] == "leave"
    assert sheet.marks[(row, sheet.headers.index("上午下班"))] == "missing"
    assert values[sheet.headers.index("缺卡")] == 1
    leave_sheet = next(s for s in report.sheets if s.name == "请假与更正")
    assert leave_sheet.rows[0][leave_sheet.headers.index("时段")] == "上午上班 08:27"


def test_today_is_not_judged_in_any_total_mark_or_chart(store):
    roster(store, "jiedong", [("S001", "王芳", "staff", None), ("S002", "李娜", "staff", None)])
    now = datetime(2026, 10, 9, 10, 0, tzinfo=TZ)  # Friday morning
    ev = Events(store)
    ev.day("S001", date(2026, 10, 8))
    ev.day("S002", date(2026, 10, 8))
    ev.punch("S001", date(2026, 10, 9), time(8, 41))  # late, but the day is not over
    ev.flush()
    att = attendance.compute(store, Month.parse(None, TZ, now), Schedule(), now=now)
    assert not att.complete
    s1, s2 = person(att, "S001"), person(att, "S002")
    absent_today = s2.days[-1]
    assert absent_today.plan.day == date(2026, 10, 9) and not absent_today.judged
    assert [c.text() for c in absent_today.cells] == ["—"] * 4
    assert [c.text() for c in s1.days[-1].cells] == ["08:41", "—", "—", "—"]
    assert (s1.working_days, s1.late, s1.missing) == (1, 0, 0)
    assert (s2.working_days, s2.days_present, s2.missing) == (1, 1, 0)
    report = attendance.to_report(att)
    sheet = next(s for s in report.sheets if s.name == "每日明细")
    today = daily_rows(report, date(2026, 10, 9))
    assert len(today) == 2
    for row, values in today:
        slots = [
            sheet.headers.index(label) for label in ("上午上班", "上午下班", "下午上班", "下午下班")
        ]
        assert {sheet.marks[(row, c)] for c in slots} == {"pending"}
        assert values[sheet.headers.index("缺卡")] == "" and "当日未结束" in values[-1]
    assert any("本月尚未结束" in n for n in report.notes)
    # The heat map: today's cell of the person who never punched is "未判定", not 正常.
    _title, heat = report.charts[0]
    states = {(x, y): v for x, y, v in heat["series"][0]["data"]}
    pieces = heat["visualMap"]["pieces"]
    assert pieces[states[(8, 1)]]["label"].startswith("未判定")
    assert pieces[states[(7, 1)]]["label"] == "正常"  # the 8th: four punches, judged


def test_people_on_the_roster_part_of_the_month(store):
    roster(
        store,
        "jiedong",
        [
            ("S003", "孙悦", "staff", None),
            ("S004", "周强", "staff", None),
            ("C003", "陈新", "chief", None),
            ("S005", "郑离", "staff", None),
        ],
        dates={
            "S003": {"starts": "2026-10-20"},
            "S004": {"ends": "2026-10-14"},
            "C003": {"starts": "2026-10-20"},
            "S005": {"ends": "2026-09-30"},  # left before October: not in its report
        },
    )
    ev = Events(store)
    for d in OCTOBER_WORKDAYS:
        if d >= date(2026, 10, 20):
            ev.day("S003", d)
        if d <= date(2026, 10, 14):
            ev.day("S004", d)
    ev.punch("C003", date(2026, 10, 21), time(8, 20))
    ev.punch("C003", date(2026, 10, 28), time(8, 20))
    ev.flush()
    att = october(store)
    assert {p.person.staff_id for p in att.people} == {"S003", "S004", "C003"}
    s3, s4, c3 = person(att, "S003"), person(att, "S004"), person(att, "C003")
    # 20-23, 26-30 October: 9 working days on the roster; nothing before counts as 缺卡.
    assert (s3.working_days, s3.days_present, s3.missing) == (9, 9, 0)
    assert min(d.plan.day for d in s3.days) == date(2026, 10, 20)
    assert (s4.working_days, s4.days_present, s4.missing) == (6, 6, 0)  # 8-10, 12-14
    # The chief's four a month, pro rata: 4 × 9/18 = 2 records, and two were made.
    assert (c3.chief_required, c3.chief_records, c3.chief_ok) == (2, 2, True)
    report = attendance.to_report(att)
    summary = report.sheets[0]
    rules = {row[1]: row[summary.headers.index("考勤规则")] for row in summary.rows}
    assert rules["C003"] == "每月≥2条 (在岗9/18个工作日, 按比例): 达标"
    _title, heat = report.charts[0]
    y = [pm.person.staff_id for pm in att.people].index("S003")
    assert min(x for x, row, _ in heat["series"][0]["data"] if row == y) == 19  # the 20th


def test_a_chief_is_not_failed_before_the_month_is_over(store):
    roster(store, "jiedong", [("C001", "陈刚", "chief", None)])
    now = datetime(2026, 10, 9, 10, 0, tzinfo=TZ)
    ev = Events(store)
    ev.punch("C001", date(2026, 10, 8), time(8, 20))
    ev.flush()
    att = attendance.compute(store, Month.parse(None, TZ, now), Schedule(), now=now)
    c1 = person(att, "C001")
    assert (c1.chief_records, c1.chief_ok) == (1, None)
    summary = attendance.to_report(att).sheets[0]
    assert summary.rows[0][summary.headers.index("考勤规则")] == "每月≥4条: 已1条, 月末判定"
    assert not summary.marks  # no verdict, no red
    # The same records, the month over: now it is a verdict.
    c1 = person(october(store), "C001")
    assert (c1.chief_records, c1.chief_ok) == (1, False)


def test_a_correction_stored_before_slots_keeps_its_half_day(store):
    """A 补卡 row from before migration 5 has no slot: it excuses its half day, as it did."""
    roster(store, "jiedong", [("S001", "王芳", "staff", None)])
    ev = Events(store)
    for d in OCTOBER_WORKDAYS:
        ev.day("S001", d, skip=("morning_in", "morning_out") if d == date(2026, 10, 8) else ())
    ev.flush()
    leave(store, ("S001", "补卡", "2026-10-08", "am", "2026-10-08", "am"))
    s1 = person(october(store), "S001")
    day = next(d for d in s1.days if d.plan.day == date(2026, 10, 8))
    assert [c.text() for c in day.cells][:2] == ["补卡", "补卡"]
    assert (s1.corrections, s1.missing) == (2, 0)


def test_a_synced_backlog_is_reported_on_its_own_days(store):
    """A synced kiosk offline from Friday 27 to Tuesday 1 December 2026 delivers everything at
    09:00 on the 1st: Friday and Monday show their punches (no 缺卡), nothing moves to
    December, and 1 December's punch is not November's."""
    roster(store, "jiedong", [("S001", "王芳", "staff", None)])
    ev = Events(store)
    for d in (27, 28, 29, 30):  # Saturday 28 and Sunday 29 are days off
        ev.day("S001", date(2026, 11, d))
    ev.punch("S001", date(2026, 12, 1), time(8, 20))
    store.write_batch(ev.rows, [])  # not flush(): every event keeps the real received_at
    received = datetime(2026, 12, 1, 9, 0, tzinfo=CST)
    store.query(
        "UPDATE events SET received_at = %s RETURNING id",
        (received.astimezone(UTC).isoformat() if "sqlite" in store.url else received,),
    )
    nov = attendance.compute(store, Month(2026, 11, TZ), Schedule(), now=NOW)
    s1 = person(nov, "S001")
    days = {d.plan.day: d for d in s1.days}
    for d in (27, 30):
        cells = [c.text() for c in days[date(2026, 11, d)].cells]
        assert "缺卡" not in cells and cells[0] == "08:25", (d, cells)
        assert days[date(2026, 11, d)].extra == 0
    assert days[date(2026, 11, 28)].extra == 4 and days[date(2026, 11, 29)].extra == 4
    assert s1.records == 16 and s1.suspect == 0 and s1.off_day_punches == 8
    dec = attendance.compute(store, Month(2026, 12, TZ), Schedule(), now=NOW)
    assert person(dec, "S001").records == 1
