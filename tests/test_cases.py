"""差评 cases (central/cases, central/store/cases.py; docs/cases.md): opened exactly once with
their rating on both stores, deadlines on the hall's calendar, moves logged and audited, the
shell's commands, and a pad's 差评 reaching a case end to end."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from central.cases.deadlines import Limit, WorkingClock
from central.cases.desk import CaseDesk, case_deadlines, closed_in_time, due, use_config
from central.cases.states import TRANSITIONS, CaseMoveError, CaseState
from central.config import CentralConfig
from central.store import open_store
from central.store.records import BatchWrite, EventRow
from contract.config import ScheduleSection
from contract.schedule import Schedule
from tests.conftest import require_or_skip
from tests.support import PG_URL, pg_available, pg_schema

TZ = ZoneInfo("Asia/Shanghai")
REPO = Path(__file__).resolve().parents[1]


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=TZ)


def rating_row(level: int, *, at: datetime | None = None, seq: int = 1, **data) -> EventRow:
    when = at or datetime.now(UTC)
    body = {
        "window": "A03",
        "pad": 1,
        "staff_id": "S0012",
        "level": level,
        "label": "x",
        "reasons": ["态度不好", "未一次性告知"] if level <= 2 else [],
        "invite_id": None,
        **data,
    }
    return EventRow(
        str(uuid.uuid4()),
        "pad-a03",
        "jiedong",
        seq,
        "rating.submitted",
        when,
        when.isoformat(),
        "synced",
        json.dumps(body, ensure_ascii=False),
    )


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


# --- deadlines on the hall's calendar ----------------------------------------------------------


def test_working_days_skip_the_weekend_and_the_national_day_holiday():
    # chinesecalendar 2026: Oct 1-7 off (National Day), Sat Oct 10 a 调休 working day,
    # Fri Sep 25 the Mid-autumn Festival.
    clock = WorkingClock(Schedule(), TZ)
    opened = local("2026-09-30T10:00")  # the Wednesday before the holiday
    assert clock.add_days(opened, 1) == local("2026-10-09T00:00")  # all of Thursday Oct 8
    # Oct 8, 9, 10 (Saturday, worked), 12, 13: Sunday Oct 11 is not counted.
    assert clock.add_days(opened, 5) == local("2026-10-14T00:00")
    # Opened on a holiday: the clock starts with the first working day after it.
    assert clock.add_days(local("2026-09-25T15:00"), 1) == local("2026-09-29T00:00")


def test_working_hours_count_only_the_public_service_hours():
    cfg = ScheduleSection.model_validate(
        {
            "summer_months": [6, 7, 8, 9],
            "winter": {
                "morning": "08:30-12:00",
                "afternoon": "14:30-17:30",
                "friday_afternoon": "14:30-17:30",
            },
        }
    )
    clock = WorkingClock(Schedule(cfg), TZ)
    # Friday 16:00: 1.5 h that afternoon, the weekend skipped, 2.5 h on Monday morning.
    assert clock.add_hours(local("2026-12-04T16:00"), 4) == local("2026-12-07T11:00")
    # Started at lunch: counted from 14:30.
    assert clock.add_hours(local("2026-12-01T12:30"), 1) == local("2026-12-01T15:30")
    # Started in the evening: counted from the next morning.
    assert clock.add_hours(local("2026-12-01T20:00"), 1) == local("2026-12-02T09:30")


@pytest.mark.parametrize("text", ["0d", "1w", "d", "1.5d", "", "100d", "1000h", " 1d"])
def test_a_limit_must_be_whole_working_days_or_hours(text):
    with pytest.raises(ValueError, match="expected N working days as 'Nd'"):
        Limit.parse(text)


def test_a_bad_limit_in_central_toml_names_the_key(tmp_path):
    from central.config import load_central_config
    from contract.config import ConfigError

    path = tmp_path / "central.toml"
    path.write_text('[cases]\nverify = "1 day"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"cases\.verify"):
        load_central_config(path)


# --- opened exactly once, with the rating --------------------------------------------------------


def test_each_rating_at_level_1_or_2_opens_exactly_one_case(store):
    bad, worse, fair, good = (
        rating_row(2),
        rating_row(1, seq=2),
        rating_row(3, seq=3),
        rating_row(5, seq=4),
    )
    store.write_batches([BatchWrite([bad, worse, fair, good], [])])
    # A resend after a lost ack, and the same rating twice in one batch: nothing more opens.
    store.write_batches([BatchWrite([bad, worse], [])])
    store.write_batches([BatchWrite([worse, worse], [])])
    cases = store.cases()
    assert [c.rating_id for c in cases] == [bad.id, worse.id]
    first = cases[0]
    assert (first.site, first.window, first.staff_id, first.level) == ("jiedong", "A03", "S0012", 2)
    assert first.reasons == ["态度不好", "未一次性告知"]
    assert first.state == "received" and first.closed_at is None
    assert set(first.deadlines) == {"verify", "rectify", "answer", "follow_up", "close"}
    assert first.deadlines["verify"] > first.opened_at
    log = store.case_log([c.id for c in cases])
    assert [[(e.by, e.from_state, e.to_state) for e in log[c.id]] for c in cases] == [
        [("system", None, "received")]
    ] * 2


def test_a_rating_that_fails_to_store_opens_no_case(store):
    # One transaction: an event the store refuses (a conflict: its id reused with other
    # content) opens nothing, and a case never exists without its stored rating.
    row = rating_row(1)
    store.write_batches([BatchWrite([row], [])])
    other = EventRow(
        row.id,
        row.device,
        row.site,
        9,
        row.type,
        row.at,
        row.at_text,
        row.clock,
        row.data.replace('"level": 1', '"level": 2'),
    )
    batch = BatchWrite([other], [])
    store.write_batches([batch])
    assert batch.conflicts == [other]
    (case,) = store.cases()
    assert case.level == 1


def test_a_rating_sent_twice_in_one_batch_with_other_content_keeps_its_case(store):
    # The first copy is stored; the later one, another level under the same id, is refused
    # as a conflict. The stored rating has its case.
    row = rating_row(1)
    other = EventRow(
        row.id,
        row.device,
        row.site,
        2,
        row.type,
        row.at,
        row.at_text,
        row.clock,
        row.data.replace('"level": 1', '"level": 2'),
    )
    batch = BatchWrite([row, other], [])
    store.write_batches([batch])
    assert batch.conflicts == [other]
    (case,) = store.cases()
    assert (case.rating_id, case.level) == (row.id, 1)


def test_a_case_opens_with_its_rating_even_when_its_deadlines_cannot_be_computed(store):
    def broken(_opened):
        raise ValueError("no calendar")

    store.case_deadlines = broken
    row = rating_row(2)
    store.write_batches([BatchWrite([row], [])])
    (case,) = store.cases()
    assert case.rating_id == row.id and case.deadlines == {}
    assert not due(case, datetime.now(UTC) + timedelta(days=400)).overdue


def test_a_move_from_a_page_made_stale_by_another_move_is_refused(store):
    store.write_batches([BatchWrite([rating_row(1)], [])])
    (case,) = store.cases()
    desk = CaseDesk(store, case_deadlines(CentralConfig()))
    desk.move(case.id, "verified", "甲", "")
    # 乙's page still shows "received": 申诉 is allowed from both states, but 乙 acted on
    # a case that is no longer what the page showed.
    with pytest.raises(CaseMoveError, match="is verified now, not received as shown"):
        desk.move(case.id, "appealed", "乙", "", expected="received")
    assert store.case(case.id).state == "verified"


def test_the_case_carries_the_invitations_case_number(store):
    row = rating_row(1, case_no="JD-2026-000123", item_code="11445200MB2D0001XK")
    store.write_batches([BatchWrite([row], [])])
    (case,) = store.cases()
    assert (case.case_no, case.item_code) == ("JD-2026-000123", "11445200MB2D0001XK")
    # The typed view shows them too (migration ratings_case_no); NULL for a rating without.
    store.write_batches([BatchWrite([rating_row(5, seq=2)], [])])
    assert sorted(store.query("SELECT case_no, item_code FROM ratings"), key=str) == sorted(
        [("JD-2026-000123", "11445200MB2D0001XK"), (None, None)], key=str
    )


def test_a_case_left_alone_becomes_overdue_across_a_weekend_and_a_holiday(store):
    # The hall's calendar from central.toml: the next nine days are off (a statutory holiday
    # over a weekend), except one declared a 调休 working day.
    today = datetime.now(TZ).date()
    off = [today + timedelta(days=i) for i in range(1, 10) if i != 6]
    cfg = CentralConfig.model_validate(
        {
            "schedule": {
                "holidays": [d.isoformat() for d in off],
                "workdays": [(today + timedelta(days=6)).isoformat()],
            }
        }
    )
    use_config(store, cfg)
    store.write_batches([BatchWrite([rating_row(1)], [])])
    (case,) = store.cases()
    verify = datetime.combine(today + timedelta(days=7), datetime.min.time(), TZ)
    assert case.deadlines["verify"] == verify  # the end of the one working day
    weekend = [d for d in off if d.weekday() >= 5]
    assert weekend, "the span must cross a weekend"
    assert not due(case, verify - timedelta(seconds=1)).overdue
    late = due(case, verify)
    assert late.overdue and late.step == "verify"
    # Verified in time, it works towards rectification, which is not due yet.
    desk = CaseDesk(store, case_deadlines(cfg))
    moved = desk.move(case.id, "verified", "王科员", "已核实")
    assert not due(moved, verify).overdue


# --- moves ---------------------------------------------------------------------------------------


def test_a_case_moves_through_every_state_and_every_move_is_logged_and_audited(store):
    store.write_batches([BatchWrite([rating_row(1), rating_row(2, seq=2)], [])])
    first, second = store.cases()
    desk = CaseDesk(store, case_deadlines(CentralConfig()))
    path = ["verified", "appealed", "upheld", "rectified", "answered", "followed_up", "closed"]
    for state in path:
        desk.move(first.id, state, "王科员", f"{state} 办理", address="10.0.0.5")
    desk.move(second.id, "appealed", "李股长", "恶意差评")
    voided = desk.move(second.id, "void", "李股长", "监控核实，申诉成立")
    closed = store.case(first.id)
    assert closed.state == "closed" and closed.closed_at is not None
    assert closed_in_time(closed) is True
    assert voided.state == "void" and closed_in_time(voided) is None
    assert "appeal_review" in voided.deadlines
    log = store.case_log([first.id])[first.id]
    assert [(e.from_state, e.to_state) for e in log[1:]] == list(
        zip(["received", *path[:-1]], path, strict=True)
    )
    assert {e.by for e in log[1:]} == {"王科员"} and log[-1].note == "closed 办理"
    audit = store.audit_log(100)
    moves = [a for a in audit if a.action == "case.move"]
    assert len(moves) == len(path) + 2
    assert moves[-1].target == f"case:{first.id}" and moves[-1].address == "10.0.0.5"


def test_every_state_reaches_a_final_state():
    seen, todo = set(), [CaseState.RECEIVED]
    while todo:
        state = todo.pop()
        seen.add(state)
        todo.extend(s for s in TRANSITIONS[state] if s not in seen)
    assert seen == set(CaseState)


def test_a_move_the_state_does_not_allow_is_refused_and_changes_nothing(store):
    store.write_batches([BatchWrite([rating_row(1)], [])])
    (case,) = store.cases()
    desk = CaseDesk(store, case_deadlines(CentralConfig()))
    with pytest.raises(CaseMoveError, match="cannot move to closed; allowed: verified, appealed"):
        desk.move(case.id, "closed", "王科员", "")
    with pytest.raises(CaseMoveError, match="state 'done': expected one of received"):
        desk.move(case.id, "done", "王科员", "")
    with pytest.raises(CaseMoveError, match="no such case"):
        desk.move(case.id + 100, "verified", "王科员", "")
    with pytest.raises(CaseMoveError, match="--by"):
        desk.move(case.id, "verified", "  ", "")
    assert store.case(case.id) == case
    assert len(store.case_log([case.id])[case.id]) == 1
    assert not store.audit_log(10)


def test_a_move_from_a_state_the_case_left_meanwhile_writes_nothing(store):
    store.write_batches([BatchWrite([rating_row(1)], [])])
    (case,) = store.cases()
    now = datetime.now(UTC)
    assert store.move_case(case.id, "received", "verified", "甲", "", now)
    # A second clerk read the case before the first moved it: refused, nothing written.
    assert not store.move_case(case.id, "received", "appealed", "乙", "", now)
    assert store.case(case.id).state == "verified"
    assert [e.by for e in store.case_log([case.id])[case.id]] == ["system", "甲"]


def test_filters_narrow_the_list(store):
    store.write_batches(
        [BatchWrite([rating_row(1), rating_row(2, seq=2, window="B01", staff_id="S0099")], [])]
    )
    assert [c.window for c in store.cases(window="B01")] == ["B01"]
    assert [c.staff_id for c in store.cases(staff_id="S0012")] == ["S0012"]
    assert store.cases(states=[]) == [] and len(store.cases(states=["received"])) == 2
    now = datetime.now(UTC)
    assert (
        len(store.cases(rated_from=now - timedelta(hours=1), rated_to=now + timedelta(hours=1)))
        == 2
    )
    assert store.cases(rated_from=now + timedelta(hours=1)) == []


# --- the shell ------------------------------------------------------------------------------------


def hall_central(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "central.cli", "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


def test_cases_list_show_and_move_from_the_shell(tmp_path):
    url = f"sqlite:///{tmp_path}/hall.db"
    with open_store(url) as s:
        s.write_batches([BatchWrite([rating_row(1), rating_row(4, seq=2)], [])])
        (case,) = s.cases()
    config = tmp_path / "central.toml"
    config.write_text(f'[store]\nurl = "{url}"\n', encoding="utf-8")
    listed = hall_central(config, "cases", "list", "--format", "csv")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.lstrip("\ufeff").splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("编号,"))
    assert lines[header].startswith("编号,评价时间,站点,窗口")
    (row,) = [line for line in lines[header + 1 :] if line]
    assert row.startswith(f"{case.id},") and "已受理" in row
    moved = hall_central(
        config, "cases", "move", str(case.id), "verified", "--by", "王科员", "--note", "已联系群众"
    )
    assert moved.returncode == 0, moved.stderr
    assert f"case {case.id}: verified (已核实)" in moved.stdout
    refused = hall_central(
        config, "cases", "move", str(case.id), "closed", "--by", "王科员", "--note", ""
    )
    assert refused.returncode == 1
    assert "cannot move to closed; allowed: rectified, appealed" in refused.stderr
    shown = hall_central(config, "cases", "show", str(case.id), "--json")
    body = json.loads(shown.stdout)
    assert body["state"] == "verified" and body["due"] == "rectify" and not body["overdue"]
    assert [(e["by"], e["to"], e["note"]) for e in body["log"]] == [
        ("system", "received", "差评自动受理"),
        ("王科员", "verified", "已联系群众"),
    ]
    assert "差评件 (0 件)" in hall_central(config, "cases", "list", "--state", "received").stdout
    assert "差评件 (1 件)" in hall_central(config, "cases", "list", "--open").stdout
    bad = hall_central(config, "cases", "list", "--state", "done")
    assert bad.returncode == 2 and "--state: state 'done': expected one of" in bad.stderr
    out = tmp_path / "cases.xlsx"
    assert (
        hall_central(config, "cases", "list", "--format", "xlsx", "--out", str(out)).returncode == 0
    )
    import openpyxl

    sheet = openpyxl.load_workbook(out).worksheets[0]
    values = [[c.value for c in row] for row in sheet.iter_rows()]
    assert any(row and row[0] == case.id for row in values)
