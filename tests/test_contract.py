"""contract/: the event data models, ids, topics and roster every side shares (docs/topics.md)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import contract as c
from tests import test_reports

store = test_reports.store  # a store on each of SQLite and PostgreSQL


def test_every_event_type_has_a_data_model():
    assert set(c.DATA_MODELS) == c.EVENT_TYPES
    assert len(c.EVENT_TYPES) == 12


def test_rating_body_round_trips():
    body = c.event_data(
        "rating.submitted",
        c.RatingData(
            window="A03",
            pad=1,
            staff_id="S0012",
            level=2,
            label="不满意",
            reasons=["态度不好"],
            invite_id=17,
        ),
    )
    assert body == {
        "window": "A03",
        "pad": 1,
        "staff_id": "S0012",
        "level": 2,
        "label": "不满意",
        "reasons": ["态度不好"],
        "invite_id": 17,
        "case_no": None,
        "item_code": None,
    }
    assert c.check_data("rating.submitted", body) is None


def test_rating_case_is_optional_and_checked():
    # Ratings of agents older than invitations with a case lack both keys: still valid.
    assert c.check_data("rating.submitted", RATING) is None
    case = {
        "case_no": "穗天政办〔2026〕SQ-000123号",
        "item_code": "11440106MB2C94563X4440111009000",
    }
    assert c.check_data("rating.submitted", {**RATING, **case}) is None
    assert c.check_data("rating.submitted", {**RATING, "case_no": None, "item_code": None}) is None
    for key, value, why in (
        ("case_no", "", "expected 1-64 characters, it has 0"),
        ("case_no", "x" * 65, "expected 1-64 characters, it has 65"),
        ("case_no", "SQ\x00001", None),
        ("case_no", "SQ\n001", "expected printable characters, it has U+000A at index 2"),
        ("case_no", "SQ001\u202e", "expected printable characters, it has U+202E at index 5"),
        ("case_no", " SQ001", "expected no spaces at its start or end"),
        ("case_no", 123, "expected a valid string"),
        ("item_code", "0002 0100", "expected 1-64 characters of A-Z a-z 0-9 _ . -"),
        ("item_code", "事项", "expected 1-64 characters of A-Z a-z 0-9 _ . -"),
        ("item_code", "A" * 65, "expected 1-64 characters of A-Z a-z 0-9 _ . -"),
    ):
        problem = c.check_data("rating.submitted", {**RATING, key: value})
        assert problem is not None and problem.startswith(f"data.{key}: "), problem
        assert why is None or why in problem, problem


def test_event_data_refuses_the_wrong_model():
    with pytest.raises(TypeError, match="expected RatingData"):
        c.event_data("rating.submitted", c.TestData(note="x"))
    with pytest.raises(ValueError, match="unknown event type"):
        c.event_data("rating.deleted", c.TestData(note="x"))


RATING = {"window": "A03", "pad": 1, "staff_id": None, "level": 3, "label": "基本满意",
          "reasons": [], "invite_id": None}  # fmt: skip
PUNCH = {"staff_id": "S1", "slot": "morning_in", "status": "late", "minutes_off": 3,
         "distance": 0.4, "liveness": "off"}  # fmt: skip


@pytest.mark.parametrize(
    ("event_type", "data", "field"),
    [
        ("rating.submitted", {**RATING, "pad": 0}, "pad"),
        ("rating.submitted", {**RATING, "level": 6}, "level"),
        ("rating.submitted", {**RATING, "level": True}, "level"),
        ("rating.submitted", {**RATING, "window": "A 03"}, "window"),
        ("rating.submitted", {k: v for k, v in RATING.items() if k != "label"}, "label"),
        ("attendance.punch", {**PUNCH, "slot": "noon"}, "slot"),
        ("attendance.punch", {**PUNCH, "distance": float("inf")}, "distance"),
        ("attendance.punch", {**PUNCH, "staff_id": "-S1"}, "staff_id"),
        ("window.login", {"window": "A03", "pad": 1, "staff_id": "S1", "face": [0.1]}, "face"),
        ("window.login", {"window": "A03", "pad": 1}, "staff_id"),
        ("device.test", {"note": "x" * 2000}, "note"),
    ],
)
def test_bad_data_names_the_field(event_type, data, field):
    problem = c.check_data(event_type, data)
    assert problem is not None and problem.startswith(f"data.{field}"), problem


def test_unknown_type_is_refused():
    assert "expected one of" in (c.check_data("rating.deleted", {}) or "")


@given(
    prefix=st.from_regex(c.ID_PATTERN, fullmatch=True),
    site=st.from_regex(c.ID_PATTERN, fullmatch=True),
    device=st.from_regex(c.ID_PATTERN, fullmatch=True),
    kind=st.sampled_from(["events", "ack", "status"]),
)
def test_topics_round_trip(prefix, site, device, kind):
    topic = c.device_topic(prefix, site, device, kind)
    assert c.parse_device_topic(topic, prefix, kind) == (site, device)
    assert c.parse_roster_topic(c.roster_topic(prefix, site), prefix) == site


@pytest.mark.parametrize("device", ["Pad-A03", "pad/a03", "+", "#", "", "a" * 65, "窗口"])
def test_topics_are_built_only_from_ids(device):
    with pytest.raises(ValueError, match="device"):
        c.device_topic("hall", "jiedong", device, "events")
    assert c.parse_device_topic(f"hall/jiedong/{device}/events", "hall", "events") is None


@given(st.text(max_size=80))
def test_one_staff_id_rule(text):
    # The pad's LOGIN payload is at most 64 ASCII bytes (HallPad v1 0x20): every id the rule
    # admits fits in one frame.
    if c.is_staff_id(text):
        assert len(text.encode("ascii")) <= 64
        assert c.check_data("window.login", {"window": "A1", "pad": 1, "staff_id": text}) is None


def test_roster_refuses_biometric_keys_and_control_text():
    good = {"v": 1, "version": 3, "staff": [{"id": "S1", "name": "张三", "role": "chief"}]}
    assert c.validate_roster(good)["staff"][0]["role"] == "chief"
    for entry in (
        {"id": "S1", "name": "张三", "role": "staff", "encoding": [0.1] * 128},
        {"id": "S1", "name": "a\x00", "role": "staff"},
        {"id": "S1", "name": " ", "role": "staff"},
        {"id": "S1", "name": "张三", "role": "boss"},
    ):
        with pytest.raises(c.RosterError, match=r"staff\[1\]"):
            c.validate_roster({"v": 1, "version": 3, "staff": [entry]})


def test_roster_starts_and_ends_are_optional_dates_in_order():
    entry = {"id": "S1", "name": "张三", "role": "staff"}
    roster = {"v": 1, "version": 3, "staff": [{**entry, "starts": "2026-11-16"}]}
    assert c.validate_roster(roster)["staff"][0]["starts"] == "2026-11-16"
    both = {**entry, "starts": "2026-11-01", "ends": "2026-11-01"}  # one day is a span
    assert c.validate_roster({"v": 1, "version": 3, "staff": [both]})
    for bad, message in (
        ({**entry, "starts": "2026-02-30"}, r"staff\[1\]\.starts: expected a date YYYY-MM-DD"),
        ({**entry, "ends": "2026/11/16"}, r"staff\[1\]\.ends: expected a date YYYY-MM-DD"),
        ({**entry, "ends": 20261116}, r"staff\[1\]\.ends: expected a date YYYY-MM-DD"),
        (
            {**entry, "starts": "2026-11-20", "ends": "2026-11-19"},
            r"staff\[1\]\.ends: 2026-11-19 is before starts 2026-11-20; expected starts <= ends",
        ),
    ):
        with pytest.raises(c.RosterError, match=message):
            c.validate_roster({"v": 1, "version": 3, "staff": [bad]})
        # Every entry is checked, not only the last one.
        good = {"id": "S2", "name": "李四", "role": "staff"}
        with pytest.raises(c.RosterError, match=message):
            c.validate_roster({"v": 1, "version": 3, "staff": [bad, good]})


def test_an_empty_roster_is_valid():
    assert c.validate_roster({"v": 1, "version": 3, "staff": []})["staff"] == []


def test_roster_spreadsheet_with_joining_and_leaving_dates(tmp_path):
    from datetime import datetime

    from openpyxl import Workbook

    from central.roster_files import parse_roster_table

    path = tmp_path / "roster.csv"
    path.write_text(
        "工号,姓名,角色,窗口,入职日期,离职日期\n"
        "S0012,张敏,窗口人员,A03,2026/11/16,\n"  # as Excel saves a date in a Chinese CSV
        "S0013,王五,窗口人员,A04,,2026-11-20\n"
        "S0014,赵六,首席代表,,,\n",
        encoding="utf-8",
    )
    staff = parse_roster_table(path, 7)["staff"]
    assert staff == [
        {"id": "S0012", "name": "张敏", "role": "staff", "window": "A03", "starts": "2026-11-16"},
        {"id": "S0013", "name": "王五", "role": "staff", "window": "A04", "ends": "2026-11-20"},
        {"id": "S0014", "name": "赵六", "role": "chief"},
    ]
    book = Workbook()
    book.active.append(["工号", "姓名", "角色", "starts", "ends"])
    book.active.append(["S0012", "张敏", "staff", datetime(2026, 11, 16), None])
    xlsx = tmp_path / "roster.xlsx"
    book.save(xlsx)
    assert parse_roster_table(xlsx, 1)["staff"][0]["starts"] == "2026-11-16"
    path.write_text(
        "工号,姓名,角色,入职日期,离职日期\n"
        "S0012,张敏,staff,2026-11-31,\n"
        "S0013,王五,staff,2026-11-20,2026-11-19\n",
        encoding="utf-8",
    )
    with pytest.raises(c.RosterError) as info:
        parse_roster_table(path, 7)
    text = str(info.value)
    assert f"{path}: line 2, column 入职日期 (D): expected a date YYYY-MM-DD" in text
    assert f"{path}: line 3, column 离职日期 (E): 2026-11-19 is before starts 2026-11-20" in text


def test_roster_dates_are_stored_and_republished(store):
    roster = {
        "v": 1,
        "version": 4,
        "staff": [
            {"id": "S1", "name": "张三", "role": "staff", "starts": "2026-11-16"},
            {"id": "S2", "name": "李四", "role": "chief", "ends": "2026-11-20"},
        ],
    }
    store.put_roster("jiedong", roster)
    stored = store.roster("jiedong")
    assert stored.roster == roster
    assert '"starts":"2026-11-16"' in stored.payload and '"ends":"2026-11-20"' in stored.payload
