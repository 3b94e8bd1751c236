"""``export ratings`` and the ratings report's 差评处置通报, on a real SQLite file and the real
PostgreSQL (the ``store`` fixture of tests/test_reports.py).

A hand-made October 2026: ratings written through the store (which opens a case for each 差评
in the same transaction), cases moved by the CaseDesk as the office would. Every expected
value is worked out by hand from what is written here (docs/export.md, docs/reports.md).
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from central import export_ratings
from central.cases.deadlines import DEFAULT_LIMITS, CaseDeadlines, WorkingClock
from central.cases.desk import CaseDesk
from central.reports import ratings
from central.reports.model import cell_text
from central.reports.month import Month
from central.store.cases import CASE_LEVELS
from contract import LEVEL_LABELS
from contract.schedule import Schedule
from tests import test_reports
from tests.conftest import require_or_skip
from tests.reportkit import CST, roster
from tests.reportkit import Month as Events

store = test_reports.store

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 12, 15, 12, 0, tzinfo=TZ)
OCTOBER = Month(2026, 10, TZ)
# Every case's deadlines, whenever it opens: all steps by the start of 20 October (hall time).
DEADLINE = datetime(2026, 10, 20, 0, 0, tzinfo=TZ)
ITEM = "11445200MB2D0123404442211700001"
CASE_NO = "4452002026100800001"


def fixed_deadlines(_opened_at: datetime) -> dict[str, datetime]:
    return {step: DEADLINE for step in ("verify", "rectify", "answer", "follow_up", "close")}


def at(day: int, hour: int = 9, minute: int = 0, month: int = 10) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=CST)


def write_month(store) -> dict[str, str]:
    """The ratings below; returns name → rating id. Cases: c1 closed in time, c2 overdue,
    c3 voided by appeal, c4 appealed, the 差评 upheld, then closed late."""
    store.case_deadlines = fixed_deadlines
    roster(store, "jiedong", [("S001", "王芳", "staff", "A03"), ("S002", "李娜", "staff", "A05")])
    ev = Events(store)
    ids: dict[str, str] = {}

    def rating(name, when, window, staff, level, reasons=(), **extra):
        data = {
            "window": window,
            "pad": 1 if window == "A03" else 2,
            "staff_id": staff,
            "level": level,
            "label": LEVEL_LABELS[level],
            "reasons": list(reasons),
            "invite_id": None,
            **extra,
        }
        ev.event("rating.submitted", when, data, device="pad-hub")
        ids[name] = ev.rows[-1].id

    rating("c1", at(8, 9, 14), "A03", "S001", 2, ["态度不好"], item_code=ITEM, case_no=CASE_NO)
    rating("c2", at(9, 10, 0), "A03", "S001", 1, ["办事效率低", "多次跑动"])
    rating("c3", at(12, 11, 0), "A05", "S002", 2, ["未一次性告知"])
    rating("c4", at(13, 15, 30), "A05", "S002", 1, ["态度不好"], item_code=None, case_no=None)
    rating("good", at(14, 9, 0), "A03", "S001", 5, item_code=ITEM, case_no="4452002026101400007")
    rating("fair", at(14, 9, 5), "A03", "S001", 3)
    rating("nobody", at(15, 16, 0), "A05", None, 4)
    # 2026-10-31T20:00Z is 04:00 on 1 November in the hall: November's, with its own case.
    ev.event(
        "rating.submitted",
        datetime(2026, 10, 31, 20, 0, tzinfo=ZoneInfo("UTC")),
        {"window": "A03", "pad": 1, "staff_id": "S001", "level": 2, "label": "不满意"}
        | {"reasons": [], "invite_id": None},
        device="pad-hub",
    )
    ids["november"] = ev.rows[-1].id
    ev.flush()

    cases = store.cases_for_ratings(ids.values())
    desk = CaseDesk(store, CaseDeadlines(DEFAULT_LIMITS, WorkingClock(Schedule(), TZ)))

    def walk(name, *steps):
        case = cases[ids[name]]
        for target, when in steps:
            desk.move(case.id, target, "张科员", f"{target} 测试", now=when)

    walk(
        "c1",
        ("verified", at(8, 15)),
        ("rectified", at(9, 10)),
        ("answered", at(12, 10)),
        ("followed_up", at(14, 10)),
        ("closed", at(15, 10)),
    )
    walk("c2", ("verified", at(9, 15)))  # then nothing: past its rectify deadline by NOW
    walk("c3", ("appealed", at(12, 14)), ("void", at(13, 9)))
    walk(
        "c4",
        ("appealed", at(13, 16)),
        ("upheld", at(14, 9)),
        ("rectified", at(16, 9)),
        ("answered", at(19, 9)),
        ("followed_up", at(22, 9)),
        ("closed", at(28, 9)),  # after 20 October: closed late
    )
    return ids


def _flat(key, value) -> str:
    """A value as every format must carry it: text, reasons joined, nothing as ''."""
    return cell_text(export_ratings.cell(key, value))


def test_export_matches_the_store_row_for_row(store):
    ids = write_month(store)
    export = export_ratings.compute(store, OCTOBER, now=NOW)
    october = {k: v for k, v in ids.items() if k != "november"}
    assert [r["rating_id"] for r in export.rows] == list(october.values())  # filed-time order
    assert ids["november"] not in {r["rating_id"] for r in export.rows}
    cases = store.cases_for_ratings(october.values())
    assert sorted(c.level for c in cases.values()) == [1, 1, 2, 2]
    for row in export.rows:
        assert list(row) == list(export_ratings.KEYS)
        stored = store.event(row["rating_id"])
        assert stored is not None
        data = stored.data
        assert row["rated_at"] == stored.at.astimezone(TZ).isoformat(timespec="seconds")
        assert (row["level"], row["level_name"]) == (data["level"], LEVEL_LABELS[data["level"]])
        assert row["satisfaction_code"] == 6 - data["level"]
        assert row["reasons"] == data["reasons"]
        assert (row["site"], row["window"]) == (stored.site, data["window"])
        assert row["staff_id"] == data["staff_id"]
        assert row["staff_name"] == {"S001": "王芳", "S002": "李娜", None: None}[data["staff_id"]]
        assert row["item_code"] == data.get("item_code")
        assert row["case_no"] == data.get("case_no")
        assert (row["channel"], row["channel_code"]) == ("评价器", "5")
        assert row["time_suspect"] == "否" and row["area_code"] is None
        case = cases.get(row["rating_id"])
        if data["level"] not in CASE_LEVELS:
            assert case is None
            assert {k: row[k] for k in ("case_id", "case_state", "rectification")} == {
                "case_id": None,
                "case_state": None,
                "rectification": None,
            }
            assert row["closed_in_time"] is None and row["overdue"] is None
        else:
            assert case is not None and row["case_id"] == case.id
    by_name = {
        name: next(r for r in export.rows if r["rating_id"] == i)
        for name, i in ids.items()
        if name != "november"
    }
    shown = ("case_state", "rectification", "closed_in_time", "overdue")
    case_cells = {name: tuple(by_name[name][k] for k in shown) for name in ("c1", "c2", "c3", "c4")}
    assert case_cells == {
        "c1": ("已办结", "已整改", "是", "否"),
        "c2": ("已核实", "未整改", "未办结", "是"),
        "c3": ("申诉成立（差评作废）", "无需整改（差评作废）", None, "否"),
        "c4": ("已办结", "已整改", "否", "否"),
    }
    # 事项编码 and 办件编号: filled when the rating carried them, present and empty when not.
    assert (by_name["c1"]["item_code"], by_name["c1"]["case_no"]) == (ITEM, CASE_NO)
    assert (by_name["good"]["item_code"], by_name["good"]["case_no"]) == (
        ITEM,
        "4452002026101400007",
    )
    for name in ("c2", "c4", "fair", "nobody"):
        assert (by_name[name]["item_code"], by_name[name]["case_no"]) == (None, None)
    assert by_name["nobody"]["staff_id"] is None and by_name["nobody"]["staff_name"] is None
    assert by_name["c2"]["reasons"] == ["办事效率低", "多次跑动"]
    assert by_name["c1"]["rated_at"] == "2026-10-08T09:14:00+08:00"
    november = export_ratings.compute(store, Month(2026, 11, TZ), now=NOW)
    assert [r["rating_id"] for r in november.rows] == [ids["november"]]
    assert november.rows[0]["rated_at"] == "2026-11-01T04:00:00+08:00"
    assert november.rows[0]["case_state"] == "已受理"


def test_csv_xlsx_and_json_read_back_to_the_same_rows(store):
    from openpyxl import load_workbook

    write_month(store)
    export = export_ratings.compute(store, OCTOBER, now=NOW)
    expected = [[_flat(k, row[k]) for k in export_ratings.KEYS] for row in export.rows]
    headings = [h for _, h in export_ratings.COLUMNS]
    out = {}
    for fmt in export_ratings.FORMATS:
        buf = io.BytesIO()
        export_ratings.write(export, fmt, buf)
        out[fmt] = buf.getvalue()

    assert out["csv"].startswith(b"\xef\xbb\xbf")  # BOM: Excel reads it as UTF-8
    table = list(csv.reader(io.StringIO(out["csv"].decode("utf-8-sig"), newline="")))
    assert table[0] == headings
    assert table[1:] == expected

    book = load_workbook(io.BytesIO(out["xlsx"]))
    assert book.sheetnames == [export_ratings.SHEET]
    cells = [list(r) for r in book[export_ratings.SHEET].iter_rows(values_only=True)]
    assert cells[0] == headings
    assert [["" if v is None else str(v) for v in r] for r in cells[1:]] == expected
    assert isinstance(cells[1][headings.index("评价等级")], int)

    body = json.loads(out["json"])
    assert body["headers"] == dict(export_ratings.COLUMNS)
    assert (body["month"], body["timezone"], body["site"]) == ("2026-10", "Asia/Shanghai", None)
    assert [list(r) for r in body["rows"]] == [list(export_ratings.KEYS)] * len(expected)
    assert [[_flat(k, r[k]) for k in export_ratings.KEYS] for r in body["rows"]] == expected
    assert body["rows"] == export.rows  # null stays null, lists stay lists


def test_the_notice_by_hand(store):
    ids = write_month(store)
    r = ratings.compute(store, OCTOBER, now=NOW)
    a03, a05 = r.window_cases[("jiedong", "A03")], r.window_cases[("jiedong", "A05")]
    # A03: c1 closed by 20 October, c2 verified and past its rectify deadline.
    assert (a03.total, a03.void, a03.valid, a03.rectified, a03.in_time, a03.overdue) == (
        *(2, 0, 2, 1, 1, 1),
    )
    assert (a03.rectified_rate, a03.in_time_rate) == (0.5, 0.5)
    assert (a03.appeals, a03.appeals_void, a03.appeals_upheld, a03.appeals_pending) == (0,) * 4
    # A05: c3 voided on appeal; c4's appeal rejected (差评 upheld), rectified, closed late.
    assert (a05.total, a05.void, a05.valid, a05.rectified, a05.in_time, a05.overdue) == (
        *(2, 1, 1, 1, 0, 0),
    )
    assert (a05.rectified_rate, a05.in_time_rate) == (1.0, 0.0)
    assert (a05.appeals, a05.appeals_void, a05.appeals_upheld, a05.appeals_pending) == (2, 1, 1, 0)
    assert r.staff_cases[("jiedong", "S001")] == a03
    assert r.staff_cases[("jiedong", "S002")] == a05
    assert ("jiedong", None) not in r.staff_cases  # the 基本满意 of nobody is no 差评
    assert ids["november"] not in {e.id for e in r.bad}

    report = ratings.to_report(r)
    sheets = {s.name: s for s in report.sheets}
    win = sheets["差评处置通报（窗口）"]
    assert win.headers == [
        *("站点", "窗口", "差评", "作废", "有效差评", "已整改", "整改率", "按期办结"),
        *("按期办结率", "当前超期", "申诉", "申诉成立（差评作废）", "申诉驳回（差评维持）"),
        "申诉复核中",
    ]
    assert [[cell_text(v) for v in row] for row in win.rows] == [
        ["jiedong", "A03", "2", "0", "2", "1", "50.0%", "1", "50.0%", "1", "0", "0", "0", "0"],
        ["jiedong", "A05", "2", "1", "1", "1", "100.0%", "0", "0.0%", "0", "2", "1", "1", "0"],
    ]
    assert win.marks == {(0, win.headers.index("当前超期")): "bad"}
    people = sheets["差评处置通报（人员）"]
    assert [[cell_text(v) for v in row[:6]] for row in people.rows] == [
        ["jiedong", "", "(未登录)", "0", "0", "0"],
        ["jiedong", "S001", "王芳", "2", "0", "2"],
        ["jiedong", "S002", "李娜", "2", "1", "1"],
    ]
    assert [cell_text(v) for v in people.rows[0][6:]] == ["0", "", "0", "", "0", "0", "0", "0", "0"]
    # 满意率 (levels 3-5 over all): A03 2 of 4 (5, 3 | 2, 1), A05 1 of 3 (4 | 2, 1).
    rank = sheets["窗口满意率排名"]
    assert [[cell_text(v) for v in row] for row in rank.rows] == [
        ["1", "jiedong", "A03", "4", "50.0%", "2"],
        ["2", "jiedong", "A05", "3", "33.3%", "2"],
    ]


def test_appeal_under_review_and_equal_rates_share_a_rank(store):
    store.case_deadlines = fixed_deadlines
    ev = Events(store)
    for window, levels in (("A01", (5, 1)), ("A02", (4, 2)), ("A03", (5, 5, 5))):
        for i, level in enumerate(levels):
            data = {"window": window, "pad": 1, "staff_id": None, "level": level}
            data |= {"label": "x", "reasons": [], "invite_id": None}
            ev.event("rating.submitted", at(8, 9, i), data, device=f"pad-{window}")
    ev.flush()
    case = next(c for c in store.cases() if c.window == "A01")
    desk = CaseDesk(store, CaseDeadlines(DEFAULT_LIMITS, WorkingClock(Schedule(), TZ)))
    desk.move(case.id, "appealed", "王芳", "误评", now=at(9, 9))
    r = ratings.compute(store, OCTOBER, now=at(9, 10))
    a01 = r.window_cases[("jiedong", "A01")]
    assert (a01.appeals, a01.appeals_pending, a01.overdue) == (1, 1, 0)
    # Review due 5 working days after the 9th (a Friday; the 10th is a 调休 working day).
    r = ratings.compute(store, OCTOBER, now=NOW)
    assert r.window_cases[("jiedong", "A01")].overdue == 1
    assert [(place, key[1]) for place, key, _ in r.ranking()] == [
        (1, "A03"),
        (2, "A01"),
        (2, "A02"),
    ]


def test_html_draws_the_notice_charts(store, tmp_path):
    from central.reports import build, render
    from tests.test_report_formats import _chromium, _dump_dom

    write_month(store)
    report = build("ratings", store, OCTOBER, None, now=NOW)
    titles = [title for title, _ in report.charts]
    assert titles[-2:] == ["各窗口差评处置 (差评处置通报)", "窗口满意率排名"]
    ranking = report.charts[-1][1]
    assert ranking["yAxis"]["data"] == ["1. jiedong/A03", "2. jiedong/A05"]
    assert ranking["series"][0]["data"] == [50.0, 33.3]
    cases = {s["name"]: s["data"] for s in report.charts[-2][1]["series"]}
    assert cases == {
        "有效差评": [2, 1],
        "已整改": [1, 1],
        "按期办结": [1, 0],
        "当前超期": [1, 0],
        "作废": [0, 1],
    }
    buf = io.BytesIO()
    render(report, "html", buf)
    page = tmp_path / "ratings.html"
    page.write_bytes(buf.getvalue())
    text = buf.getvalue().decode("utf-8")
    assert "<h2>窗口满意率排名</h2>" in text and "<h2>差评处置通报（窗口）</h2>" in text
    if _chromium() is None:
        require_or_skip("chromium not installed (apt-get install chromium)")
    dom = _dump_dom(page, tmp_path)
    assert dom.count("<svg") >= 4  # every chart drawn
    assert "1. jiedong/A03" in dom and "有效差评" in dom


def test_export_command(tmp_path):
    import subprocess
    import sys

    from central.store import open_store
    from tests.test_report_formats import REPO

    with open_store(f"sqlite:///{tmp_path}/hall.db") as s:
        ids = write_month(s)
    conf = tmp_path / "central.toml"
    conf.write_text(f'[store]\nurl = "sqlite:///{tmp_path}/hall.db"\n')

    def central(*args):
        return subprocess.run(
            [sys.executable, "-m", "central.cli", "-c", str(conf), "export", "ratings", *args],
            cwd=REPO,
            capture_output=True,
        )

    r = central("--month", "2026-10", "--format", "json")
    assert r.returncode == 0, r.stderr.decode()
    assert len(json.loads(r.stdout)["rows"]) == len(ids) - 1
    out = tmp_path / "october.xlsx"
    r = central("--month", "2026-10", "--format", "xlsx", "--out", str(out), "--site", "jiedong")
    assert r.returncode == 0 and out.read_bytes()[:2] == b"PK"
    assert "7 row(s)" in r.stderr.decode()
    r = central("--month", "2026-13")
    assert r.returncode == 2 and "export ratings --month: expected YYYY-MM" in r.stderr.decode()
    r = central("--site", "Bad Site")
    assert r.returncode == 2 and "export ratings --site: expected" in r.stderr.decode()
    r = central("--month", "2026-11")  # default csv
    rows = list(csv.reader(io.StringIO(r.stdout.decode("utf-8-sig"), newline="")))
    assert rows[0][0] == "评价编号" and [row[0] for row in rows[1:]] == [ids["november"]]


def test_one_rating_per_row_even_when_resent(store):
    """A resent rating (same event id, after a lost ack) is stored once and exported once."""
    store.case_deadlines = fixed_deadlines
    ev = Events(store)
    data = {"window": "A03", "pad": 1, "staff_id": "S001", "level": 1, "label": "x"}
    ev.event("rating.submitted", at(8), data | {"reasons": [], "invite_id": None})
    row = ev.rows[0]
    ev.flush()
    store.write_batch([row], [])
    export = export_ratings.compute(store, OCTOBER, now=at(8, 10) + timedelta(hours=1))
    assert [r["rating_id"] for r in export.rows] == [row.id]
    assert len(store.cases()) == 1


@pytest.mark.parametrize("fmt", ["xml", "table"])
def test_unknown_format_is_refused(fmt):
    with pytest.raises(ValueError, match="--format: expected one of"):
        export_ratings.write(export_ratings.Export(OCTOBER, None, []), fmt, io.BytesIO())


def test_text_a_spreadsheet_would_run_is_written_as_text(store):
    """A 办件编号 comes from the window's case system: one that starts like a formula stays
    text in the CSV (a leading apostrophe) and in the xlsx (a text cell), never a formula."""
    from openpyxl import load_workbook

    store.case_deadlines = fixed_deadlines
    ev = Events(store)
    hostile = '=HYPERLINK("http://example.invalid","点此")'
    data = {"window": "A03", "pad": 1, "staff_id": "S001", "level": 1, "label": "x"}
    ev.event(
        "rating.submitted",
        at(8),
        data | {"reasons": [], "invite_id": 7, "case_no": hostile, "item_code": "-1+1"},
    )
    ev.flush()
    export = export_ratings.compute(store, OCTOBER, now=at(8, 10))
    headings = [h for _, h in export_ratings.COLUMNS]
    buf = io.BytesIO()
    export_ratings.write(export, "csv", buf)
    (row,) = list(csv.reader(io.StringIO(buf.getvalue().decode("utf-8-sig"), newline="")))[1:]
    assert row[headings.index("办件编号")] == "'" + hostile
    assert row[headings.index("事项编码")] == "'-1+1"
    buf = io.BytesIO()
    export_ratings.write(export, "xlsx", buf)
    sheet = load_workbook(io.BytesIO(buf.getvalue()))[export_ratings.SHEET]
    cell = sheet.cell(row=2, column=headings.index("办件编号") + 1)
    assert (cell.value, cell.data_type) == (hostile, "s")
