"""central/leave.py and ``hall-central leave``: import (all rows or none), list, remove, on
both stores; and read-only commands that must never create a store."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from central.leave import LeaveError, parse_leave_file
from central.store import StoreMissingError, open_store
from tests import support as testing
from tests.conftest import require_or_skip
from tests.storekit import fully_migrated, numbered_postgres, numbered_sqlite
from tests.support import PG_URL, pg_available

REPO = Path(__file__).resolve().parent.parent

GOOD = """工号,类型,开始,结束,审批人,备注,时段
S001,请假,2026-10-13 下午,2026-10-13 下午,张主任,家中有事,
S002,公出,2026/10/19,2026/10/20,张主任,,
S002,补卡,2026-10-21 08:29,,李科长,忘记打卡,上午上班
"""
# A file from before 补卡 named a slot: no 时段 column; its 请假/公出 rows still import.
OLD = """工号,类型,开始,结束,审批人,备注
S001,请假,2026-10-13 下午,2026-10-13 下午,张主任,家中有事
S002,公出,2026/10/19,2026/10/20,张主任,
"""
ROSTER = {
    "v": 1,
    "version": 1,
    "staff": [
        {"id": "S001", "name": "王芳", "role": "staff"},
        {"id": "S002", "name": "李娜", "role": "staff"},
    ],
}


def central(conf: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "central.cli", "-c", str(conf), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def store_conf(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/hall.db"
        store = open_store(url)
        conf = tmp_path / "central.toml"
        conf.write_text(f'[store]\nurl = "{url}"\n')
        yield store, conf
        store.close()
        return
    if not pg_available():
        require_or_skip(f"PostgreSQL not reachable at {PG_URL}")
    with testing.pg_schema() as name:
        store = open_store(PG_URL, name)
        conf = tmp_path / "central.toml"
        conf.write_text(f'[store]\nurl = "{PG_URL}"\npg_schema = "{name}"\n')
        yield store, conf
        store.close()


def test_parse_half_days_and_whole_days(tmp_path):
    path = tmp_path / "leave.csv"
    path.write_text(GOOD, encoding="utf-8")
    rows = parse_leave_file(path)
    assert [(r["staff_id"], r["kind"]) for r in rows] == [
        ("S001", "请假"),
        ("S002", "公出"),
        ("S002", "补卡"),
    ]
    assert (rows[0]["starts"], rows[0]["starts_half"], rows[0]["ends_half"]) == (
        date(2026, 10, 13),
        "pm",
        "pm",
    )
    assert (rows[1]["starts_half"], rows[1]["ends"], rows[1]["ends_half"]) == (
        "am",
        date(2026, 10, 20),
        "pm",
    )
    assert rows[2]["source"] == "leave.csv:4" and rows[2]["approver"] == "李科长"
    # A 补卡 is one slot of one day, with the punch time from the approval.
    assert (rows[2]["starts"], rows[2]["ends"], rows[2]["slot"], rows[2]["slot_time"]) == (
        date(2026, 10, 21),
        date(2026, 10, 21),
        "morning_in",
        "08:29",
    )
    assert rows[0]["slot"] == rows[1]["slot"] == ""


def test_old_files_of_leave_still_import(tmp_path):
    path = tmp_path / "old.csv"
    path.write_text(OLD, encoding="utf-8")
    rows = parse_leave_file(path)
    assert [(r["kind"], r["starts_half"], r["ends_half"]) for r in rows] == [
        ("请假", "pm", "pm"),
        ("公出", "am", "pm"),
    ]


def test_a_correction_must_name_one_slot(tmp_path):
    path = tmp_path / "old.csv"
    path.write_text(OLD + "S002,补卡,2026-10-21 上午,2026-10-21 上午,李科长,\n", encoding="utf-8")
    with pytest.raises(LeaveError) as info:
        parse_leave_file(path)
    problems = info.value.problems
    assert len(problems) == 2, problems
    assert problems[0].startswith(f"{path}: line 4, column 类型 (B): a 补卡 corrects one punch")
    assert "this file has no 时段 column" in problems[0]
    assert problems[1].startswith(f"{path}: line 4, column 开始 (C): expected a day such as")
    path = tmp_path / "new.csv"
    path.write_text(
        "工号,类型,开始,结束,审批人,时段\n"
        "S002,补卡,2026-10-21,,李科长,上午\n"  # a half day is not a slot
        "S002,补卡,2026-10-21 08:29,2026-10-22,李科长,上午上班\n"  # two days
        "S002,补卡,2026-10-21 25:10,,李科长,下午下班\n"  # no such time
        "S001,请假,2026-10-21,2026-10-21,李科长,上午上班\n",  # leave names no slot
        encoding="utf-8",
    )
    with pytest.raises(LeaveError) as info:
        parse_leave_file(path)
    problems = info.value.problems
    assert len(problems) == 4, problems
    assert problems[0].startswith(f"{path}: line 2, column 时段 (F): a 补卡 corrects one punch")
    assert problems[0].endswith("got '上午'")
    assert problems[1].startswith(
        f"{path}: line 3, column 结束 (D): expected an empty cell or the same day as 开始"
    )
    assert problems[2].startswith(
        f"{path}: line 4, column 开始 (C): expected a time from 00:00 to 23:59"
    )
    assert problems[3].startswith(f"{path}: line 5, column 时段 (F): only a 补卡 names a slot")


def test_unknown_staff_ids_are_row_errors(tmp_path):
    path = tmp_path / "leave.csv"
    path.write_text(GOOD + "S0O3,请假,2026-10-13,2026-10-13,张主任,,\n", encoding="utf-8")
    with pytest.raises(LeaveError) as info:
        parse_leave_file(path, {"S001", "S002"})
    assert info.value.problems == [
        f"{path}: line 5, column 工号 (A): staff id 'S0O3' is in no stored roster (a typo "
        "excuses nobody); correct it, publish the roster first, or import with --allow-unknown"
    ]
    assert len(parse_leave_file(path)) == 4  # None: any well-formed id (--allow-unknown)


def test_every_bad_cell_is_named_by_line_and_column(tmp_path):
    path = tmp_path / "leave.csv"
    path.write_text(
        "工号,类型,开始,结束,审批人\n"
        "S001,病假,2026-10-13,2026-10-13,张主任\n"
        "S002,请假,2026-10-32,2026-10-13,张主任\n"
        "S003,请假,2026-10-14,2026-10-13,\n"
        "S004,请假,2026-10-14 下午,2026-10-14 上午,张主任\n",
        encoding="utf-8",
    )
    with pytest.raises(LeaveError) as info:
        parse_leave_file(path)
    problems = info.value.problems
    assert (
        f"{path}: line 2, column 类型 (B): expected one of 请假, 公出, 补卡, got '病假'" in problems
    )
    assert any(
        p.startswith(f"{path}: line 3, column 开始 (C): expected a real date") for p in problems
    )
    assert any(
        p.startswith(f"{path}: line 4, column 结束 (D): ends before it starts") for p in problems
    )
    assert (
        f"{path}: line 4, column 审批人 (E): expected the approver's name, got an empty cell"
        in problems
    )
    assert any(
        p.startswith(f"{path}: line 5, column 结束 (D): ends before it starts") for p in problems
    )
    assert len(problems) == 5


def test_headings_are_checked(tmp_path):
    path = tmp_path / "leave.csv"
    path.write_text("工号,类型,开始,审批人,部门\nS001,请假,2026-10-13,张主任,x\n", encoding="utf-8")
    with pytest.raises(LeaveError, match=r"line 1, column E: unknown heading '部门'"):
        parse_leave_file(path)
    path.write_text("工号,类型,开始,审批人\nS001,请假,2026-10-13,张主任\n", encoding="utf-8")
    with pytest.raises(LeaveError, match=r"line 1: missing column\(s\) 结束"):
        parse_leave_file(path)


def test_gbk_csv_as_excel_saves_it(tmp_path):
    path = tmp_path / "leave.csv"
    path.write_bytes(GOOD.encode("gb18030"))
    assert len(parse_leave_file(path)) == 3


def test_xlsx_with_date_cells(tmp_path):
    from datetime import datetime

    from openpyxl import Workbook

    book = Workbook()
    ws = book.active
    ws.append(["工号", "类型", "开始", "结束", "审批人", "备注"])
    ws.append(["S001", "请假", datetime(2026, 10, 13), "2026-10-14 上午", "张主任", None])
    ws.append([None, None, None, None, None, None])  # blank rows are skipped
    ws.append(
        ["S002", "公出", datetime(2026, 10, 15), datetime(2026, 10, 15), "张主任", "市里开会"]
    )
    path = tmp_path / "leave.xlsx"
    book.save(path)
    rows = parse_leave_file(path)
    assert [(r["starts"], r["starts_half"], r["ends"], r["ends_half"]) for r in rows] == [
        (date(2026, 10, 13), "am", date(2026, 10, 14), "am"),
        (date(2026, 10, 15), "am", date(2026, 10, 15), "pm"),
    ]
    assert rows[1]["source"] == "leave.xlsx:4" and rows[1]["note"] == "市里开会"


def test_import_list_remove_on_both_stores(tmp_path, store_conf):
    store, conf = store_conf
    store.put_roster("jiedong", ROSTER)
    path = tmp_path / "leave.csv"
    path.write_text(GOOD, encoding="utf-8")
    r = central(conf, "leave", "import", str(path), "--by", "王科员")
    assert r.returncode == 0, r.stderr
    assert "3 row(s) added, 0 already stored, imported by 王科员" in r.stdout
    assert r.stderr == ""
    r = central(conf, "leave", "import", str(path), "--by", "王科员")
    assert "0 row(s) added, 3 already stored" in r.stdout  # the same file again adds nothing
    rows = store.leaves()
    assert [r["kind"] for r in rows] == ["请假", "公出", "补卡"]
    assert rows[0]["imported_by"] == "王科员" and rows[0]["source"] == "leave.csv:2"
    r = central(conf, "leave", "list", "--month", "2026-10")
    assert r.returncode == 0, r.stderr
    assert "2026-10-13 下午" in r.stdout and "家中有事" in r.stdout
    assert "上午上班 08:29" in r.stdout  # the 补卡's slot and time
    assert central(conf, "leave", "list", "--month", "2026-09").stdout.count("S00") == 0
    r = central(conf, "leave", "remove", str(rows[1]["id"]))
    assert r.returncode == 0 and "公出" in r.stdout
    assert [r["kind"] for r in store.leaves()] == ["请假", "补卡"]
    r = central(conf, "leave", "remove", str(rows[1]["id"]))
    assert r.returncode == 1 and f"no leave with id {rows[1]['id']}" in r.stderr


def test_an_unknown_staff_id_refuses_the_file_unless_allowed(tmp_path, store_conf):
    store, conf = store_conf
    store.put_roster("jiedong", ROSTER)
    path = tmp_path / "leave.csv"
    path.write_text(GOOD + "S0O2,请假,2026-10-14,2026-10-14,张主任,,\n", encoding="utf-8")
    r = central(conf, "leave", "import", str(path))
    assert r.returncode == 1
    assert f"{path}: line 5, column 工号 (A): staff id 'S0O2' is in no stored roster" in r.stderr
    assert "1 problem(s)" in r.stderr and "nothing imported" in r.stderr
    assert store.leaves() == []
    r = central(conf, "leave", "import", str(path), "--allow-unknown")
    assert r.returncode == 0, r.stderr
    assert "4 row(s) added" in r.stdout
    assert "staff id(s) in no stored roster (--allow-unknown): S0O2" in r.stderr
    assert len(store.leaves()) == 4


def test_two_corrections_of_one_morning_are_two_rows(tmp_path, store_conf):
    store, conf = store_conf
    store.put_roster("jiedong", ROSTER)
    path = tmp_path / "fix.csv"
    path.write_text(
        "工号,类型,开始,结束,审批人,时段\n"
        "S001,补卡,2026-10-21 08:29,,李科长,上午上班\n"
        "S001,补卡,2026-10-21,,李科长,上午下班\n",
        encoding="utf-8",
    )
    r = central(conf, "leave", "import", str(path))
    assert r.returncode == 0, r.stderr
    assert "2 row(s) added, 0 already stored" in r.stdout
    assert [(x["slot"], x["slot_time"]) for x in store.leaves()] == [
        ("morning_in", "08:29"),
        ("morning_out", ""),
    ]
    r = central(conf, "leave", "import", str(path))
    assert "0 row(s) added, 2 already stored" in r.stdout
    # The office corrects the time: not "already stored" (the old time would stay), but a
    # refusal that says what differs and how to replace the row.
    path.write_text(
        "工号,类型,开始,结束,审批人,时段\n"
        "S001,补卡,2026-10-21 08:13,,李科长,上午上班\n"
        "S001,补卡,2026-10-21,,李科长,上午下班\n",
        encoding="utf-8",
    )
    first = store.leaves()[0]["id"]
    r = central(conf, "leave", "import", str(path))
    assert r.returncode == 1
    assert f"is stored already as id {first} with other details (时间 (time) 08:29 → 08:13)" in (
        r.stderr
    )
    assert f"hall-central leave remove {first}" in r.stderr and "nothing imported" in r.stderr
    assert [x["slot_time"] for x in store.leaves()] == ["08:29", ""]
    assert central(conf, "leave", "remove", str(first)).returncode == 0
    r = central(conf, "leave", "import", str(path))
    assert r.returncode == 0 and "1 row(s) added, 1 already stored" in r.stdout, r.stderr
    assert sorted(x["slot_time"] for x in store.leaves()) == ["", "08:13"]


def test_a_bad_file_imports_nothing(tmp_path, store_conf):
    store, conf = store_conf
    store.put_roster("jiedong", ROSTER)
    path = tmp_path / "leave.csv"
    path.write_text(GOOD + "S001,年假,2026-10-01,2026-10-02,张主任,,\n", encoding="utf-8")
    r = central(conf, "leave", "import", str(path))
    assert r.returncode == 1
    assert "line 5, column 类型 (B)" in r.stderr and "nothing imported" in r.stderr
    assert store.leaves() == []


@pytest.mark.parametrize(
    "args",
    [("devices",), ("report", "ratings"), ("report", "attendance"), ("leave", "list")],
)
def test_read_only_commands_never_create_a_store(tmp_path, args):
    conf = tmp_path / "central.toml"
    missing = tmp_path / "typo" / "hall.db"
    conf.write_text(f'[store]\nurl = "sqlite:///{missing}"\n')
    r = central(conf, *args)
    assert r.returncode == 1
    assert f"store {missing}: no such file" in r.stderr
    assert not missing.parent.exists()
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()  # a 0-byte file: what sqlite3 leaves behind
    conf.write_text(f'[store]\nurl = "sqlite:///{empty}"\n')
    r = central(conf, *args)
    assert r.returncode == 1 and f"store {empty}: empty database" in r.stderr
    assert empty.stat().st_size == 0


def test_read_only_on_postgresql_without_tables(tmp_path):
    if not pg_available():
        require_or_skip(f"PostgreSQL not reachable at {PG_URL}")
    with pytest.raises(StoreMissingError, match="schema hall_nope_x of postgresql://"):
        open_store(PG_URL, "hall_nope_x", create=False)
    import psycopg

    with psycopg.connect(PG_URL) as conn:
        assert conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'hall_nope_x'"
        ).fetchone() == (0,)


def test_hall_agent_outbox_never_creates_one(tmp_path):
    conf = tmp_path / "agent.toml"
    data = tmp_path / "nowhere"
    conf.write_text(f'[device]\nid = "k1"\nsite = "jiedong"\ndata_dir = "{data}"\n')
    r = subprocess.run(
        [sys.executable, "-m", "agent.cli", "-c", str(conf), "outbox"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1
    assert f"outbox {data / 'outbox.db'}: no such file" in r.stderr
    assert not data.exists()


def test_every_central_command_has_help_text():
    from central.cli import build_parser
    from tests.test_cli import _subcommands

    commands = {path: (text, sub) for path, text, sub in _subcommands(build_parser())}
    for path in [("report", "attendance"), ("report", "ratings"), ("leave", "import")]:
        assert path in commands
    for path, (text, sub) in commands.items():
        assert text, f"`{' '.join(path)}` has no help in the command list"
        assert sub.description, f"`{' '.join(path)}` has no description"


def test_leave_in_sqlite_read_by_a_peer(tmp_path):
    """The leave table as the sqlite3 command-line tool sees it (docs/sync.md)."""
    import shutil

    if shutil.which("sqlite3") is None:
        pytest.skip("sqlite3 command-line tool not installed")
    path = tmp_path / "leave.csv"
    path.write_text(GOOD, encoding="utf-8")
    with open_store(f"sqlite:///{tmp_path}/hall.db") as store:
        store.add_leaves(parse_leave_file(path), "王科员")
    out = subprocess.run(
        [
            "sqlite3",
            str(tmp_path / "hall.db"),
            "SELECT staff_id, kind, starts, starts_half, ends, ends_half, approver, imported_by, "
            "slot, slot_time FROM leave ORDER BY id",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert out == [
        "S001|请假|2026-10-13|pm|2026-10-13|pm|张主任|王科员||",
        "S002|公出|2026-10-19|am|2026-10-20|pm|张主任|王科员||",
        "S002|补卡|2026-10-21|am|2026-10-21|am|李科长|王科员|morning_in|08:29",
    ]


V4_LEAVE = (
    "INSERT INTO leave (staff_id, kind, starts, starts_half, ends, ends_half, approver, note, "
    "imported_by, imported_at, source) VALUES "
    "('S002', '补卡', '2026-10-21', 'am', '2026-10-21', 'am', '李科长', '', '王科员', "
    "'2026-10-22T01:00:00+00:00', 'old.csv:4')"
)


def _check_migrated(store) -> None:
    [row] = store.leaves()
    # A 补卡 stored before slots keeps its half day (slot ''); new ones name a slot.
    assert (row["id"], row["kind"], row["starts_half"], row["slot"]) == (1, "补卡", "am", "")
    added = store.add_leaves(
        [
            {
                "staff_id": "S002",
                "kind": "补卡",
                "starts": date(2026, 10, 21),
                "starts_half": "am",
                "ends": date(2026, 10, 21),
                "ends_half": "am",
                "approver": "李科长",
                "note": "",
                "source": "new.csv:2",
                "slot": slot,
                "slot_time": "",
            }
            for slot in ("morning_in", "morning_out")
        ],
        "王科员",
    )
    assert added == 2
    assert [(r["id"], r["slot"]) for r in store.leaves()] == [
        (1, ""),
        (2, "morning_in"),
        (3, "morning_out"),
    ]


def test_sqlite_v4_leave_is_migrated_to_slots(tmp_path):
    path = tmp_path / "hall.db"
    conn = numbered_sqlite(path, 4)
    conn.execute(V4_LEAVE)
    conn.commit()
    conn.close()
    with open_store(f"sqlite:///{path}") as store:
        assert fully_migrated(store)
        _check_migrated(store)


def test_sqlite_leave_migration_never_reuses_a_removed_id(tmp_path):
    """`leave remove 2` before the upgrade: the next row after it is 3, as PostgreSQL's
    identity would give, never 2 again (an id once printed names one approval)."""
    path = tmp_path / "hall.db"
    conn = numbered_sqlite(path, 4)
    conn.execute(V4_LEAVE)
    conn.execute(V4_LEAVE.replace("'2026-10-21'", "'2026-10-28'"))
    conn.execute("DELETE FROM leave WHERE id = 2")
    conn.commit()
    conn.close()
    with open_store(f"sqlite:///{path}") as store:
        added = store.add_leaves(
            [
                {
                    "staff_id": "S002",
                    "kind": "请假",
                    "starts": date(2026, 11, 2),
                    "starts_half": "am",
                    "ends": date(2026, 11, 2),
                    "ends_half": "pm",
                    "approver": "李科长",
                    "note": "",
                    "source": "new.csv:2",
                    "slot": "",
                    "slot_time": "",
                }
            ],
            "王科员",
        )
        assert added == 1
        assert [r["id"] for r in store.leaves()] == [1, 3]


def test_postgres_v4_leave_is_migrated_to_slots():
    if not pg_available():
        require_or_skip(f"PostgreSQL not reachable at {PG_URL}")
    import psycopg

    with testing.pg_schema() as name:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            numbered_postgres(conn, name, 4)
            conn.execute(V4_LEAVE)
        with open_store(PG_URL, name) as store:
            assert fully_migrated(store)
            _check_migrated(store)
