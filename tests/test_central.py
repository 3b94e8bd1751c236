"""central/collector.py: batch validation, and a real collector fed by mosquitto_pub (a peer).

The peer tests build batches and read acks with the Mosquitto command-line clients, so the
topics and payloads of docs/topics.md are checked against code that is not ours.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agent.envelope import uuid7
from central.collector import Collector
from central.store import open_store
from central.validation import check_batch
from tests.conftest import require_or_skip, skip_unless
from tests.support import (
    PG_URL,
    Mosquitto,
    central_config,
    mosquitto_sub_args,
    pg_available,
    pg_schema,
    wait_for,
)
from tests.support import mosquitto_pub as peer_pub

REPO = Path(__file__).resolve().parents[1]
TOPIC = "hall/jiedong/pad-a03/events"
LIMITS = {"prefix": "hall", "max_bytes": 64 * 1024, "max_events": 100}

needs_clients = skip_unless(
    shutil.which("mosquitto_pub") is not None, "needs mosquitto_pub/mosquitto_sub"
)


RATING = {
    "window": "A03",
    "pad": 1,
    "staff_id": None,
    "level": 4,
    "label": "满意",
    "reasons": [],
    "invite_id": None,
}
PUNCH = {
    "staff_id": "S1",
    "slot": "morning_in",
    "status": "on_time",
    "minutes_off": 0,
    "distance": 0.31,
    "liveness": "off",
}


def event(seq: int = 1, **over) -> dict:
    ev = {
        "id": str(uuid7()),
        "seq": seq,
        "type": "rating.submitted",
        "at": "2026-11-26T09:12:03.120+08:00",
        "clock": "synced",
        "device": "pad-a03",
        "site": "jiedong",
        "data": dict(RATING),
    }
    ev.update(over)
    return ev


def batch(*events: dict, **over) -> bytes:
    body = {"v": 1, "device": "pad-a03", "site": "jiedong", "events": list(events)}
    body.update(over)
    return json.dumps(body, ensure_ascii=False).encode()


def check(payload: bytes, topic: str = TOPIC):
    return check_batch(topic, payload, **LIMITS)


def test_good_batch_is_accepted_in_order():
    evs = [event(i) for i in range(1, 6)]
    v = check(batch(*evs))
    assert [r.seq for r in v.good] == [1, 2, 3, 4, 5]
    assert not v.rejects
    assert v.ack() == {"v": 1, "ids": [e["id"] for e in evs], "rejected": []}


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"\xff\xfe not json", "not JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"v": 1, "device": "pad-a03", "site": "jiedong", "events": 5}', "events"),
    ],
)
def test_unparseable_batches_become_one_anonymous_reject(payload, reason):
    v = check(payload)
    assert not v.good
    assert len(v.rejects) == 1 and v.rejects[0].id is None and reason in v.rejects[0].reason
    assert v.rejects[0].device == "pad-a03"
    assert v.ack()["rejected"] == []  # nothing the device could match


def test_device_mismatch_rejects_every_event_by_id():
    evs = [event(1), event(2)]
    v = check(batch(*evs, device="kiosk-01"))
    assert not v.good
    assert [r.id for r in v.rejects] == [e["id"] for e in evs]
    assert all("does not match the topic's device" in r.reason for r in v.rejects)
    assert [r["id"] for r in v.ack()["rejected"]] == [e["id"] for e in evs]


def test_an_event_too_large_for_any_batch_is_rejected_alone():
    big = event(2, data={"window": "A03", "level": 5, "label": "x" * 70_000})
    v = check(batch(event(1), big, event(3)))
    assert [r.seq for r in v.good] == [1, 3]
    assert [r.id for r in v.rejects] == [big["id"]]
    assert "bytes; expected at most" in v.rejects[0].reason
    assert v.deferred == 0


def test_over_limit_batches_are_taken_in_part_never_rejected():
    """A batch over the centre's limits must not dead-letter valid events (docs/sync.md)."""
    evs = [event(i) for i in range(1, 102)]
    v = check(batch(*evs))  # max_events = 100
    assert [r.seq for r in v.good] == list(range(1, 101))
    assert not v.rejects and v.deferred == 1
    assert v.ack() == {"v": 1, "ids": [e["id"] for e in evs[:100]], "rejected": []}

    # 60 events of ~1.5 KB: ~90 KB, over max_bytes = 64 KiB.
    evs = [event(i, data={**RATING, "level": 5, "label": "y" * 1500}) for i in range(60)]
    payload = batch(*evs)
    assert len(payload) > LIMITS["max_bytes"]
    v = check(payload)
    assert not v.rejects and v.good and v.deferred == 60 - len(v.good)
    assert [r.id for r in v.good] == [e["id"] for e in evs[: len(v.good)]]

    # As many as fit, measured as an agent sends them (compact JSON).
    def compact(n):
        body = {"v": 1, "device": "pad-a03", "site": "jiedong", "events": evs[:n]}
        return len(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode())

    assert compact(len(v.good)) <= LIMITS["max_bytes"] < compact(len(v.good) + 1)


def test_default_limits_take_any_batch_the_agent_may_send():
    from agent.config import SyncSection
    from central.config import CentralSection

    def bound(model, name, kind):
        return next(getattr(m, kind) for m in model.model_fields[name].metadata if hasattr(m, kind))

    central = CentralSection()
    assert central.max_batch_events >= bound(SyncSection, "batch_size", "le")
    assert central.max_payload_kb >= bound(SyncSection, "max_batch_kb", "le")


@pytest.mark.parametrize(
    "over, reason",
    [
        ({"id": "not-a-uuid"}, "id: expected a UUID"),
        ({"type": "rating.deleted"}, "type:"),
        ({"at": "2026-11-26T09:12:03"}, "offset"),
        ({"clock": "atomic"}, "clock:"),
        ({"seq": -1}, "seq:"),
        ({"device": "kiosk-01"}, "device:"),
        ({"data": [1]}, "data: expected an object"),
        ({"data": {**RATING, "level": 9}}, "data.level"),
        ({"name": "张三"}, "unknown envelope key"),
        # What the PostgreSQL ratings view casts to ::integer (HallPad v1 ranges).
        ({"data": {**RATING, "pad": 2**40}}, "data.pad"),
        ({"data": {**RATING, "pad": 0}}, "data.pad"),
        ({"data": {**RATING, "pad": 248}}, "data.pad"),
        ({"data": {**RATING, "invite_id": 2**40}}, "data.invite_id"),
        ({"data": {**RATING, "invite_id": -1}}, "data.invite_id"),
        ({"data": {**RATING, "invite_id": 65536}}, "data.invite_id"),
        (
            {
                "type": "rating.expired",
                "data": {"window": "A03", "pad": 1, "staff_id": None, "invite_id": 70000},
            },
            "data.invite_id",
        ),
        # Only the extended form (the reports file events by it).
        ({"at": "20261126T091203.120+0800"}, "at:"),
        ({"at": "2026-11-26T09:12:03.120+0800"}, "at:"),
        ({"at": "2026-11-26 09:12:03.120+08:00"}, "at:"),
        ({"at": "2026-11-26T09:12:03.120+08:00\n"}, "at:"),
        ({"at": "２０２６-11-26T09:12:03.120+08:00"}, "at:"),
        ({"at": "2026-13-26T09:12:03.120+08:00"}, "at:"),
        # NaN and Infinity are not JSON; both stores refuse them.
        (
            {
                "type": "attendance.punch",
                "data": {**PUNCH, "distance": float("nan")},
            },
            "NaN or Infinity",
        ),
        ({"type": "device.test", "data": {"note": "x", "v": float("inf")}}, "NaN or Infinity"),
        ({"type": "device.test", "data": {"v": [float("-inf")]}}, "NaN or Infinity"),
        # The event type's model (contract.DATA_MODELS): fields, values, no extra keys.
        ({"data": {**RATING, "label": None}}, "data.label"),
        ({"data": {**RATING, "face": [0.1] * 128}}, "data.face"),
        ({"type": "attendance.punch", "data": {**PUNCH, "slot": "noon"}}, "data.slot"),
        ({"type": "attendance.punch", "data": {**PUNCH, "staff_id": "-S1"}}, "data.staff_id"),
        ({"type": "window.login", "data": {"window": "A03", "pad": 1}}, "data.staff_id"),
    ],
)
def test_bad_event_is_rejected_alone(over, reason):
    good, bad = event(1), {**event(2), **over}
    v = check(batch(good, bad))
    assert [r.id for r in v.good] == [good["id"]]
    assert len(v.rejects) == 1 and reason in v.rejects[0].reason
    assert v.rejects[0].id == bad["id"]


def test_lone_surrogate_is_rejected_alone_and_its_reject_is_storable(store_conf):
    """ "\\ud800" in JSON is a lone surrogate neither store can encode: it used to make the
    whole batch fail to write on every resend (the device blocked for good)."""
    store, _ = store_conf
    bad = event(2, type="device.test", data={"note": "\ud800"})
    odd_id = dict(event(3), id="x\udfff\u0000")
    payload = json.dumps(
        {"v": 1, "device": "pad-a03", "site": "jiedong", "events": [event(1), bad, odd_id]}
    )
    v = check(payload.encode())  # ensure_ascii: the surrogates travel as JSON escapes
    assert [r.seq for r in v.good] == [1]
    assert [r.id for r in v.rejects] == [bad["id"], "x\udfff\u0000"]
    assert "surrogate" in v.rejects[0].reason
    store.write_batch(v.good, v.rejects)
    assert store.query("SELECT count(*) FROM rejected")[0][0] == 2


def test_accepted_times_and_ranges():
    evs = [
        event(1, at="2026-11-26T01:12:03Z"),
        event(2, at="2026-11-26T09:12:03+08:00"),
        event(3, data={**RATING, "level": 1, "pad": 247, "invite_id": 65535}),
        event(4, data={**RATING, "level": 5, "pad": 1, "invite_id": 0}),
    ]
    v = check(batch(*evs))
    assert [r.seq for r in v.good] == [1, 2, 3, 4] and not v.rejects


def test_views_and_reports_work_after_out_of_range_input(store_conf):
    """One invite_id = 2**40 must not break every query on the PostgreSQL view."""
    store, _ = store_conf
    good = event(1, data={**RATING, "level": 5, "pad": 3, "invite_id": 7})
    bad = event(2, data={**RATING, "level": 4, "pad": 3, "invite_id": 2**40})
    v = check(batch(good, bad))
    store.write_batch(v.good, v.rejects)
    assert store.query("SELECT level, invite_id, pad FROM ratings") == [(5, 7, 3)]
    assert [r[0] for r in store.query("SELECT id FROM rejected")] == [bad["id"]]


def test_bad_topic_cannot_be_acked():
    v = check(batch(event(1)), topic="hall/jiedong/pad-a03/extra/events")
    assert v.site is None and v.rejects and not v.good


# --- a real collector on a real broker, fed by the Mosquitto clients ------------------------


def mosquitto_pub(broker, topic, payload: bytes, retain=False):
    peer_pub(broker.port, topic, payload, retain=retain)


def mosquitto_sub(broker, topic, count, timeout=10):
    return subprocess.Popen(
        mosquitto_sub_args(broker.port, topic, count=count, timeout=timeout),
        stdout=subprocess.PIPE,
        text=True,
    )


def wait_subscribed(collector, broker):
    """Publish probe batches until the collector has stored one (its subscription is live)."""
    probe = event(1, at=datetime.now(UTC).isoformat(timespec="milliseconds"))

    def stored():
        mosquitto_pub(
            broker,
            "hall/jiedong/probe-00/events",
            batch(dict(probe, device="probe-00"), device="probe-00"),
        )
        return wait_for(lambda: collector.events_stored > 0, 1.0)

    assert wait_for(stored, 10, interval=0)


@needs_clients
def test_collector_survives_bad_input_and_acks_good_batches(collector, broker, tmp_path):
    wait_subscribed(collector, broker)
    acks = mosquitto_sub(broker, "hall/jiedong/pad-a03/ack", count=2)
    wait_for(lambda: False, 0.3)  # no condition to wait on: give mosquitto_sub time to subscribe
    garbage = [
        b"\x00\xff\xfe garbage",
        b"{",
        b"[]",
        json.dumps({"v": 2, "events": []}).encode(),
        b"x" * (70 * 1024),
    ]
    for g in garbage:
        mosquitto_pub(broker, TOPIC, g)
    mosquitto_pub(broker, "hall/jiedong/kiosk-01/events", batch(event(1)))  # forged device
    good = [event(i) for i in range(1, 4)]
    bad = event(4, data={**RATING, "level": 0})
    mosquitto_pub(broker, TOPIC, batch(*good, bad))
    mosquitto_pub(broker, TOPIC, batch(*good))  # the same batch again: stored once, acked again
    out, _ = acks.communicate(timeout=20)
    got = [json.loads(line) for line in out.splitlines()]
    # 2 acks on pad-a03's topic: the mixed batch and its resend (garbage names nothing).
    assert got[0] == {
        "v": 1,
        "ids": [e["id"] for e in good],
        "rejected": [
            {"id": bad["id"], "reason": "data.level: expected greater than or equal to 1, got 0"}
        ],
    }
    assert got[1]["ids"] == [e["id"] for e in good] and got[1]["rejected"] == []
    assert collector._thread.is_alive()
    store = collector.store
    assert store.query("SELECT count(*) FROM events WHERE device = 'pad-a03'")[0][0] == 3
    reasons = [r[0] for r in store.query("SELECT reason FROM rejected")]
    assert any("not JSON" in r for r in reasons)
    assert any("bytes; expected at most" in r or "not JSON" in r for r in reasons)
    assert any("v: expected 1" in r for r in reasons)
    assert any(r.startswith("device:") or "does not match" in r for r in reasons)
    assert "data.level: expected greater than or equal to 1, got 0" in reasons


@needs_clients
def test_devices_command_shows_retained_status(collector, broker, tmp_path):
    status = {
        "v": 1,
        "state": "online",
        "version": "0.1.0",
        "outbox": {"pending": 1234, "oldest_s": 56.0, "dead_letter": 2},
        "components": {"uplink": {"state": "ok"}},
        "at": "2026-11-26T09:00:00.000+08:00",
    }
    mosquitto_pub(broker, "hall/jiedong/kiosk-01/status", json.dumps(status).encode(), retain=True)
    mosquitto_pub(broker, "hall/jiedong/kiosk-01/status", b"not json")  # ignored, not fatal
    wait_subscribed(collector, broker)
    assert wait_for(lambda: any(d["device"] == "kiosk-01" for d in collector.store.devices()), 10)
    conf = tmp_path / "central.toml"
    conf.write_text(
        f'[mqtt]\nurl = "{broker.url}"\n[store]\nurl = "sqlite:///{tmp_path}/hall.db"\n'
    )
    out = subprocess.run(
        [sys.executable, "-m", "central.cli", "-c", str(conf), "devices", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = {r["device"]: r for r in json.loads(out)}
    assert rows["kiosk-01"]["state"] == "online" and rows["kiosk-01"]["pending"] == 1234
    assert rows["kiosk-01"]["dead_letter"] == 2
    assert rows["probe-00"]["last_event_at"]  # a plausible `at` (now) moves it
    text = subprocess.run(
        [sys.executable, "-m", "central.cli", "-c", str(conf), "devices"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "kiosk-01" in text and "1234" in text and "backlog" in text


def test_central_cli_config_error_exits_78(tmp_path):
    conf = tmp_path / "central.toml"
    conf.write_text('[store]\nurl = "mysql://x"\n')
    r = subprocess.run(
        [sys.executable, "-m", "central.cli", "-c", str(conf), "devices"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 78
    assert "store.url" in r.stderr and "expected sqlite:///PATH" in r.stderr


def test_central_cli_config_schema_reads_no_config(tmp_path):
    """`hall-central config schema` describes central.toml for editors, before the file exists."""
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "central.cli",
            "-c",
            str(tmp_path / "none.toml"),
            "config",
            "schema",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    schema = json.loads(r.stdout)
    assert schema["additionalProperties"] is False and "store" in schema["properties"]


@pytest.fixture(params=["sqlite", "postgresql"])
def store_conf(request, tmp_path):
    """(store, config text) for a fresh SQLite file or a throw-away PostgreSQL schema."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/hall.db"
        yield open_store(url), f'[store]\nurl = "{url}"\n'
        return
    if not pg_available():
        require_or_skip("PostgreSQL not reachable")
    with pg_schema() as name:
        store = open_store(PG_URL, name)
        yield store, f'[store]\nurl = "{PG_URL}"\npg_schema = "{name}"\n'
        store.close()


def test_report_ratings(tmp_path, store_conf):
    store, conf_text = store_conf
    evs = [
        event(i, data={**RATING, "level": lv, "label": "x"})
        for i, lv in enumerate([5, 5, 4, 1], start=1)
    ]
    # 2026-10-31 17:00 +08:00 is October in the report's zone (Asia/Shanghai).
    evs.append(event(9, at="2026-10-31T17:00:00.000+08:00"))
    v = check_batch(TOPIC, batch(*evs), **LIMITS)
    store.write_batch(v.good, v.rejects)
    # As if each arrived when it was recorded: a plausible `at` is what the report files by.
    store.query("UPDATE events SET received_at = at RETURNING 1")
    conf = tmp_path / "central.toml"
    conf.write_text(conf_text)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "central.cli",
            "-c",
            str(conf),
            "report",
            "ratings",
            "--month",
            "2026-11",
            "--format",
            "csv",
        ],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(out, newline="")))
    assert rows[0] == ["2026-11 好差评月报"]
    at = rows.index(["# 窗口评价"])
    # site, window, total, levels 5..1, satisfaction (levels 3-5), 差评, invitations...
    assert rows[at + 2][:10] == ["jiedong", "A03", "4", "2", "1", "0", "0", "1", "75.0%", "1"]
    assert rows[at + 3] == []  # the October rating is not November's


def test_devices_shows_when_an_unsynced_device_was_last_heard_in_hall_time(tmp_path, store_conf):
    """A device whose clock is not confirmed has no trusted event time: the table says when
    the centre last received from it, in the hall's timezone, not a bare '-'."""
    store, store_text = store_conf
    now_local = datetime.now(UTC).astimezone(ZoneInfo("Asia/Kathmandu")).replace(microsecond=0)
    unsynced = event(1, clock="unsynced", at="1970-01-01T08:00:05.000+08:00")
    synced = event(1, device="pad-b01", at=now_local.isoformat(timespec="milliseconds"))
    for ev in (unsynced, synced):
        v = check_batch(
            f"hall/jiedong/{ev['device']}/events", batch(ev, device=ev["device"]), **LIMITS
        )
        assert v.good, v.rejects
        store.write_batch(v.good, v.rejects)
    store.query(
        "UPDATE devices SET last_received_at = '2026-11-30T01:12:03.000+00:00' "
        "WHERE device = 'pad-a03' RETURNING 1"
    )
    conf = tmp_path / "central.toml"
    # Kathmandu (+05:45): neither UTC nor the default Asia/Shanghai.
    conf.write_text(store_text + '[central]\ntimezone = "Asia/Kathmandu"\n')
    r = subprocess.run(
        [sys.executable, "-m", "central.cli", "-c", str(conf), "devices"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    header, *rows = r.stdout.splitlines()
    assert header.split("  ")[-1] == "last received"
    by_device = {line.split()[1]: line for line in rows[:2]}
    unsynced_row = by_device["pad-a03"]
    assert re.search(r"  -  +2026-11-30 06:57:03 \(\d+ days ago\)$", unsynced_row), unsynced_row
    assert "1970" not in unsynced_row and "+00:00" not in unsynced_row
    synced_row = by_device["pad-b01"]
    shown = now_local.strftime("%Y-%m-%d %H:%M:%S")
    assert re.search(rf"  {shown}  +20\d\d-\d\d-\d\d \d\d:\d\d:\d\d \(\d+ s ago\)$", synced_row)
    assert rows[2].startswith("last event at '-': no event with a confirmed clock yet (1 device(s)")

    r = subprocess.run(
        [sys.executable, "-m", "central.cli", "-c", str(conf), "devices", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    listed = {d["device"]: d for d in json.loads(r.stdout)}
    assert listed["pad-a03"]["last_event_at"] is None
    received = datetime.fromisoformat(listed["pad-a03"]["last_received_at"])
    assert received == datetime(2026, 11, 30, 1, 12, 3, tzinfo=UTC)


def test_roster_show_aligns_chinese_names_and_names_roles_in_chinese(tmp_path, store_conf):
    store, store_text = store_conf
    staff = [
        {"id": "S0012", "name": "张敏", "role": "staff", "window": "A03"},
        {"id": "S0001", "name": "欧阳娜娜", "role": "chief"},
        {"id": "S0100", "name": "Ann Lee", "role": "staff", "window": "B12"},
    ]
    store.put_roster("jiedong", {"v": 1, "version": 4, "staff": staff})
    conf = tmp_path / "central.toml"
    conf.write_text(store_text)
    r = central(conf, "roster", "show", "--site", "jiedong")
    assert r.returncode == 0, r.stderr
    title, *table = r.stdout.splitlines()
    assert re.fullmatch(
        r"site jiedong: roster version 4, 3 staff, "
        r"published \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(Asia/Shanghai\)",
        title,
    ), title
    # A Chinese character takes two terminal columns: each column starts at the same one.
    assert table == [
        "工号   姓名      角色              窗口",
        "S0012  张敏      窗口人员 (staff)  A03",
        "S0001  欧阳娜娜  首席代表 (chief)  -",
        "S0100  Ann Lee   窗口人员 (staff)  B12",
    ]


def test_roster_show_lists_start_and_end_dates_when_the_roster_has_them(tmp_path, store_conf):
    store, store_text = store_conf
    staff = [
        {"id": "S0012", "name": "张敏", "role": "staff", "window": "A03", "starts": "2026-11-16"},
        {"id": "S0001", "name": "欧阳娜娜", "role": "chief", "ends": "2026-11-20"},
    ]
    store.put_roster("jiedong", {"v": 1, "version": 5, "staff": staff})
    conf = tmp_path / "central.toml"
    conf.write_text(store_text)
    r = central(conf, "roster", "show", "--site", "jiedong")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1:] == [
        "工号   姓名      角色              窗口  入职日期    离职日期",
        "S0012  张敏      窗口人员 (staff)  A03   2026-11-16  -",
        "S0001  欧阳娜娜  首席代表 (chief)  -     -           2026-11-20",
    ]


def test_uuid_helper_matches_contract_form():
    # check_event insists on the canonical lower-case form the envelope writes.
    ev = event(1, id=str(uuid.uuid4()).upper())
    assert check(batch(ev)).rejects


def test_nul_in_data_is_rejected_on_every_store():
    bad = event(2, type="device.test", data={"note": "a\x00b"})
    fine = event(3, type="device.test", data={"note": "the text \\u0000 is fine"})
    v = check(batch(event(1), bad, fine))
    assert [r.seq for r in v.good] == [1, 3]
    assert [r.id for r in v.rejects] == [bad["id"]] and "NUL" in v.rejects[0].reason


def test_every_hall_central_command_has_help():
    import argparse

    from central.cli import build_parser

    def walk(parser: argparse.ArgumentParser, path: str) -> list[str]:
        missing = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {a.dest: a.help for a in action._choices_actions}
                for name, sub in action.choices.items():
                    if not helps.get(name):
                        missing.append(f"{path} {name}")
                    missing += walk(sub, f"{path} {name}")
            elif not action.help and action.dest != "help":
                missing.append(f"{path} {action.dest}")
        return missing

    assert walk(build_parser(), "hall-central") == []


# --- the collector never dies on bad input (property) ----------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_check_batch_never_raises_on_bytes(payload):
    v = check(payload)
    assert v.rejects or v.good or payload.strip().startswith(b"{")


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["id", "seq", "type", "at", "clock", "device", "site", "data", "x"]),
        _json,
    )
)
def test_check_batch_never_raises_on_mangled_events(mangle):
    ev = {**event(1), **mangle}
    v = check(batch(ev, event(2)))
    # The intact event is always accepted; the mangled one is accepted or rejected by id.
    assert v.good[-1].seq == 2
    assert len(v.good) + len(v.rejects) == 2


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["v", "device", "site", "events", "x"]), _json))
def test_check_batch_never_raises_on_mangled_batches(mangle):
    body = {"v": 1, "device": "pad-a03", "site": "jiedong", "events": [event(1)], **mangle}
    v = check(json.dumps(body).encode())
    assert v.good or v.rejects or body["events"] == []


def test_store_password_comes_from_password_file(tmp_path):
    """Secrets (docs/config.md) from *_file keys; the collector passes it to libpq."""
    from central.config import ConfigError, load_central_config

    if not pg_available():
        require_or_skip("PostgreSQL not reachable")
    secret = tmp_path / "store.pass"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    conf = tmp_path / "central.toml"
    with pg_schema() as name:
        conf.write_text(
            f'[store]\nurl = "{PG_URL}"\npg_schema = "{name}"\npassword_file = "{secret}"\n'
        )
        cfg = load_central_config(conf)
        assert cfg.store.password == "s3cret"
        collector = Collector(cfg)
        try:
            assert collector.store.conn.info.password == "s3cret"
        finally:
            collector.store.close()
        r = subprocess.run(
            [sys.executable, "-m", "central.cli", "-c", str(conf), "devices"],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, r.stderr

    secret.chmod(0o644)
    with pytest.raises(ConfigError, match=r"store\.password_file: .* readable by others"):
        load_central_config(conf)
    secret.chmod(0o600)
    conf.write_text(f'[store]\nurl = "sqlite:///{tmp_path}/h.db"\npassword_file = "{secret}"\n')
    with pytest.raises(ConfigError, match="only for a postgresql:// store"):
        load_central_config(conf)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://hall:hunter2@127.0.0.1:5432/test",
        "postgresql://hall@127.0.0.1:5432/test?password=hunter2",
    ],
)
def test_store_url_with_inline_password_is_refused_without_echoing_it(tmp_path, url):
    conf = tmp_path / "central.toml"
    conf.write_text(f'[store]\nurl = "{url}"\n')
    r = subprocess.run(
        [sys.executable, "-m", "central.cli", "-c", str(conf), "devices"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 78
    assert "store.url" in r.stderr and "store.password_file" in r.stderr
    assert "hunter2" not in r.stderr + r.stdout


# --- rosters: stored, shown, republished from the store ----------------------------------

ROSTER = {
    "v": 1,
    "version": 3,
    "staff": [
        {"id": "S0012", "name": "张敏", "role": "staff", "window": "A03"},
        {"id": "S0001", "name": "李强", "role": "chief", "window": None},
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


def retained_rosters(broker, count: int, timeout: float = 10) -> dict[str, dict]:
    """The retained rosters a fresh peer (mosquitto_sub) gets on subscribing: {topic: roster}.

    ``--retained-only`` makes a live (non-retained) message end it as a failure, so what comes
    back was retained on the broker.
    """
    out = subprocess.run(
        mosquitto_sub_args(
            broker.port,
            "hall/+/roster",
            count=count,
            timeout=timeout,
            extra=("--retained-only", "-F", "%r\t%t\t%p"),
        ),
        capture_output=True,
        text=True,
        timeout=timeout + 10,
    ).stdout
    got = {}
    for line in out.splitlines():
        flag, topic, body = line.split("\t", 2)
        assert flag == "1", line  # the retain flag
        got[topic] = json.loads(body)
    return got


def write_conf(tmp_path: Path, broker, store_text: str) -> Path:
    conf = tmp_path / "central.toml"
    conf.write_text(f'[mqtt]\nurl = "{broker.url}"\n{store_text}')
    return conf


@needs_clients
def test_roster_publish_stores_shows_and_refuses_an_older_version(tmp_path, broker, store_conf):
    store, store_text = store_conf
    conf = write_conf(tmp_path, broker, store_text)
    roster_file = tmp_path / "roster.json"
    roster_file.write_text(json.dumps(ROSTER, ensure_ascii=False), encoding="utf-8")

    r = central(conf, "roster", "publish", str(roster_file), "--site", "jiedong")
    assert r.returncode == 0, r.stderr
    assert "stored and retained on hall/jiedong/roster" in r.stdout
    stored = store.roster("jiedong")
    assert stored.version == 3 and stored.roster == ROSTER
    assert retained_rosters(broker, 1) == {"hall/jiedong/roster": ROSTER}

    r = central(conf, "roster", "show", "--site", "jiedong", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == ROSTER
    r = central(conf, "roster", "show", "--site", "jiedong")
    assert r.stdout.startswith("site jiedong: roster version 3, 2 staff, published 20")
    assert "S0012  张敏" in r.stdout and "chief" in r.stdout

    older = dict(ROSTER, version=2, staff=ROSTER["staff"][:1])
    older_file = tmp_path / "older.json"
    older_file.write_text(json.dumps(older, ensure_ascii=False), encoding="utf-8")
    r = central(conf, "roster", "publish", str(older_file), "--site", "jiedong")
    assert r.returncode == 1
    assert "jiedong has roster version 3 stored" in r.stderr
    assert "refusing the older version 2" in r.stderr and "--force" in r.stderr
    assert store.roster("jiedong").roster == ROSTER
    assert retained_rosters(broker, 1) == {"hall/jiedong/roster": ROSTER}  # not published

    r = central(conf, "roster", "publish", str(older_file), "--site", "jiedong", "--force")
    assert r.returncode == 0, r.stderr
    assert store.roster("jiedong").roster == older
    assert retained_rosters(broker, 1) == {"hall/jiedong/roster": older}


@needs_clients
@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_roster_publish_from_a_spreadsheet(tmp_path, broker, store_conf, fmt):
    store, store_text = store_conf
    conf = write_conf(tmp_path, broker, store_text)
    rows = [
        ["工号", "姓名", "角色", "窗口"],
        ["S0012", "张敏", "窗口人员", "A03"],
        ["S0001", "李强", "首席代表", ""],
    ]
    path = tmp_path / f"roster.{fmt}"
    if fmt == "csv":
        path.write_bytes("\r\n".join(",".join(r) for r in rows).encode("utf-8-sig"))
    else:
        from openpyxl import Workbook

        book = Workbook()
        for r in rows:
            book.active.append(r)
        book.save(path)
    r = central(conf, "roster", "publish", str(path), "--site", "jiedong")
    assert r.returncode == 0, r.stderr
    expected = {
        "v": 1,
        "version": 1,  # none stored: version 1
        "staff": [
            {"id": "S0012", "name": "张敏", "role": "staff", "window": "A03"},
            {"id": "S0001", "name": "李强", "role": "chief"},
        ],
    }
    assert store.roster("jiedong").roster == expected
    assert retained_rosters(broker, 1) == {"hall/jiedong/roster": expected}
    r = central(conf, "roster", "publish", str(path), "--site", "jiedong")
    assert r.returncode == 0 and store.roster("jiedong").version == 2  # one above the stored

    bad = tmp_path / "bad.csv"
    bad.write_text("工号,姓名,角色\nS0012,张敏,staff\nS 13,王五,staff\nS0014,赵六,boss\n")
    r = central(conf, "roster", "publish", str(bad), "--site", "jiedong")
    assert r.returncode == 2
    assert "line 3, column 工号 (A): expected a staff id" in r.stderr
    assert "line 4, column 角色 (C): expected one of" in r.stderr
    assert store.roster("jiedong").version == 2  # nothing stored


@needs_clients
def test_roster_republished_from_the_store_reaches_a_peer_retained(tmp_path, broker, store_conf):
    store, store_text = store_conf
    conf = write_conf(tmp_path, broker, store_text)
    r = central(conf, "roster", "publish", "--site", "jiedong")
    assert r.returncode == 1
    assert "no roster stored for site jiedong" in r.stderr and "roster publish FILE" in r.stderr
    r = central(conf, "roster", "show", "--site", "jiedong")
    assert r.returncode == 1 and "no roster stored for site jiedong" in r.stderr

    # In the store only (as a broker that lost its retained messages would leave it).
    store.put_roster("jiedong", ROSTER)
    r = central(conf, "roster", "publish", "--site", "jiedong")
    assert r.returncode == 0, r.stderr
    assert "from the store retained on hall/jiedong/roster" in r.stdout
    assert retained_rosters(broker, 1) == {"hall/jiedong/roster": ROSTER}

    r = central(conf, "roster", "publish", "--site", "jiedong", "--force")
    assert r.returncode == 2 and "only with a FILE" in r.stderr
    r = central(conf, "roster", "show", "--site", "Bad Site")
    assert r.returncode == 2 and "--site: expected" in r.stderr


def wait_rosters(broker, expected: dict[str, dict], timeout: float = 20) -> bool:
    """Poll with fresh peers until the broker retains exactly ``expected``."""
    return wait_for(
        lambda: retained_rosters(broker, len(expected), timeout=1) == expected, timeout, 0
    )


@needs_clients
def test_collector_republishes_stored_rosters_after_the_broker_lost_them(tmp_path, store_conf):
    """A broker restarted without persistence has no retained roster: the collector puts
    every stored roster back on its reconnect, and on its own (re)start (`hall-central run`)."""
    store, store_text = store_conf
    other = dict(ROSTER, version=8, staff=[{"id": "S7", "name": "王芳", "role": "staff"}])
    store.put_roster("jiedong", ROSTER)
    store.put_roster("chengxi", other)
    expected = {"hall/jiedong/roster": ROSTER, "hall/chengxi/roster": other}
    with Mosquitto(tmp_path / "broker", persistence=False) as broker:
        cfg = central_config(store.url, broker.url, **_pg_schema_kw(store_text))
        c = Collector(cfg, store=store)
        c.start()
        try:
            assert wait_for(lambda: c.roster_rounds >= 1, 10)  # once at start
            assert c.rosters_republished == 2
            assert retained_rosters(broker, 2) == expected

            broker.restart()  # persistence off: retained messages gone
            assert wait_for(lambda: c.roster_rounds >= 2, 20)  # on the reconnect
            assert c.link.connects == 2 and c.rosters_republished == 4
            assert retained_rosters(broker, 2) == expected
        finally:
            c.stop()

        broker.restart()
        assert retained_rosters(broker, 1, timeout=1) == {}  # lost, and no collector running
        conf = write_conf(tmp_path, broker, store_text)
        proc = subprocess.Popen(
            [sys.executable, "-m", "central.cli", "-c", str(conf), "run"],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert wait_rosters(broker, expected)
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert "roster version 3 republished on hall/jiedong/roster" in err


@needs_clients
def test_collector_republish_never_leaves_an_older_roster_retained(tmp_path, broker, store_conf):
    """`roster publish` storing version 4 while the collector republishes version 3: the
    collector reads the store again after its PUBACK and publishes version 4 once more, so
    its stale publish cannot be the one the broker keeps."""
    store, store_text = store_conf
    store.put_roster("jiedong", ROSTER)
    newer = dict(ROSTER, version=4)
    c = Collector(central_config(store.url, broker.url, **_pg_schema_kw(store_text)), store=store)
    c.start()
    try:
        assert wait_for(lambda: c.roster_rounds >= 1, 10)
        plain = c.link.publish
        sent: list[int] = []

        def publish_racing(topic, payload, qos=1, retain=False):
            info = plain(topic, payload, qos=qos, retain=retain)
            if not topic.endswith("/roster"):
                return info  # the collector's own announcements and schedules
            sent.append(json.loads(payload)["version"])
            if len(sent) == 1:
                store.put_roster("jiedong", newer)  # the concurrent `roster publish`
            return info

        c.link.publish = publish_racing
        c.republish_rosters()
        assert sent == [3, 4]
        assert retained_rosters(broker, 1) == {"hall/jiedong/roster": newer}
    finally:
        c.stop()


def _pg_schema_kw(store_text: str) -> dict[str, str]:
    for line in store_text.splitlines():
        if line.startswith("pg_schema"):
            return {"pg_schema": line.split("=", 1)[1].strip().strip('"')}
    return {}


# --- hostile input: a verdict, never a store back-off; bounded memory ------------------------


def _nested(depth: int) -> object:
    value: object = "x"
    for _ in range(depth):
        value = [value]
    return value


@needs_clients
def test_hostile_json_through_handle_and_store_is_rejected_without_back_off(
    tmp_path, broker, store_conf
):
    """json.loads raised RecursionError on deep nesting, which check_batch did not catch: no
    ack, no reject, and a 1 s store back-off per message that delayed every other device."""
    store, store_text = store_conf
    c = Collector(central_config(store.url, broker.url, **_pg_schema_kw(store_text)), store=store)
    c.start()
    try:
        assert c.wait_connected(10)
        wait_subscribed(c, broker)
        other_acks = mosquitto_sub(broker, "hall/jiedong/kiosk-01/ack", count=1, timeout=20)
        pad_acks = mosquitto_sub(broker, "hall/jiedong/pad-a03/ack", count=1, timeout=20)
        wait_for(lambda: False, 0.3)  # no condition to wait on: let mosquitto_sub subscribe
        deep = b"[" * 100_000 + b"]" * 100_000
        deep_batch = b'{"v":1,"device":"pad-a03","site":"jiedong","events":' + deep + b"}"
        for _ in range(10):
            mosquitto_pub(broker, TOPIC, deep_batch)
        deep_event = event(2, type="device.test", data={"note": _nested(200)})
        mosquitto_pub(broker, TOPIC, batch(deep_event))
        mosquitto_pub(broker, "hall/jiedong/pad-a03/status", b'{"x":' + deep + b"}")
        good = event(1, device="kiosk-01")
        mosquitto_pub(broker, "hall/jiedong/kiosk-01/events", batch(good, device="kiosk-01"))
        # One thread handles the queue in order: this ack comes after all of the above.
        assert json.loads(other_acks.communicate(timeout=30)[0])["ids"] == [good["id"]]
        assert json.loads(pad_acks.communicate(timeout=30)[0]) == {
            "v": 1,
            "ids": [],
            "rejected": [{"id": deep_event["id"], "reason": "data: nested deeper than 32 levels"}],
        }
        assert c.errors == 0 and c.store_errors == 0  # no back-off was taken
        reasons = [r[0] for r in store.query("SELECT reason FROM rejected")]
        assert reasons.count("batch: JSON nested too deeply to read") == 10
        [(payload,)] = store.query(
            "SELECT payload FROM rejected WHERE id = %s", (deep_event["id"],)
        )
        assert json.loads(payload) == deep_event  # the whole event as received
    finally:
        c.stop()


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_qos0_flood_of_large_messages_does_not_grow_the_collector(tmp_path, broker):
    """A QoS 0 flood has no flow control: 150 messages of 4 MB grew the collector's RSS by
    ~600 MB and it kept it. The queue now admits QoS 0 only within a small budget and counts
    what it drops. Bound: growth well under what the flood would take (a behaviour bound)."""
    import threading

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    conf = tmp_path / "central.toml"
    conf.write_text(
        f'[mqtt]\nurl = "{broker.url}"\n[store]\nurl = "sqlite:///{tmp_path}/hall.db"\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "central.cli", "-c", str(conf), "run"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    flooder = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="flood")
    try:
        probe = event(1, at=datetime.now(UTC).isoformat(timespec="milliseconds"))
        store = open_store(f"sqlite:///{tmp_path}/hall.db")

        def stored() -> bool:
            mosquitto_pub(broker, TOPIC, batch(probe))
            return wait_for(lambda: store.query("SELECT count(*) FROM events")[0][0] > 0, 1.0)

        assert wait_for(stored, 20, interval=0)  # the collector is up and subscribed
        baseline = _rss_mb(proc.pid)
        peak = [baseline]
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.wait(0.05):
                peak[0] = max(peak[0], _rss_mb(proc.pid))

        sampler = threading.Thread(target=sample)
        sampler.start()
        flooder.connect("127.0.0.1", broker.port)
        flooder.loop_start()
        junk = b"\x00" + b"j" * (4 * 1024 * 1024 - 1)
        for _ in range(150):
            flooder.publish("hall/jiedong/pad-x/events", junk, qos=0).wait_for_publish(30)
        # Then a real batch: once it is stored, the flood ahead of it has been handled.
        late = event(2, at=datetime.now(UTC).isoformat(timespec="milliseconds"))
        mosquitto_pub(broker, TOPIC, batch(late))
        assert wait_for(
            lambda: store.query("SELECT count(*) FROM events WHERE id = %s", (late["id"],))[0][0],
            60,
        )
        sampling.set()
        sampler.join()
        grown = peak[0] - baseline
        print(f"collector RSS {baseline:.0f} MB → peak {peak[0]:.0f} MB")
        assert grown < 150, f"collector RSS grew {grown:.0f} MB ({baseline:.0f} → {peak[0]:.0f})"
        store.close()
    finally:
        flooder.loop_stop()
        proc.terminate()
        proc.communicate(timeout=20)


@needs_clients
def test_a_reused_id_with_different_content_is_rejected_as_conflict(
    tmp_path, broker, store_conf, caplog
):
    """docs/topics.md: an id already stored with different content is rejected with reason
    `conflict`, logged; it used to be acked as a duplicate and silently dropped. The same
    content again is still a resend: acked, stored once."""
    store, store_text = store_conf
    c = Collector(central_config(store.url, broker.url, **_pg_schema_kw(store_text)), store=store)
    c.start()
    try:
        assert c.wait_connected(10)
        wait_subscribed(c, broker)
        acks = mosquitto_sub(broker, "hall/jiedong/pad-a03/ack", count=3, timeout=20)
        wait_for(lambda: False, 0.3)  # no condition to wait on: let mosquitto_sub subscribe
        first = event(5, at=datetime.now(UTC).isoformat(timespec="milliseconds"))
        mosquitto_pub(broker, TOPIC, batch(first))
        mosquitto_pub(broker, TOPIC, batch(first))  # an honest resend
        forged = dict(first, data={**first["data"], "level": 1})
        fresh = event(6)
        mosquitto_pub(broker, TOPIC, batch(forged, fresh))
        got = [json.loads(line) for line in acks.communicate(timeout=30)[0].splitlines()]
        assert got[0] == {"v": 1, "ids": [first["id"]], "rejected": []}
        assert got[1] == {"v": 1, "ids": [first["id"]], "rejected": []}
        assert got[2] == {
            "v": 1,
            "ids": [fresh["id"]],
            "rejected": [{"id": first["id"], "reason": "conflict"}],
        }
        levels = store.query("SELECT level FROM ratings WHERE seq = 5")
        assert levels == [(4,)]  # the stored event is untouched
        [(reason, payload)] = store.query(
            "SELECT reason, payload FROM rejected WHERE id = %s", (first["id"],)
        )
        assert reason == "conflict" and json.loads(payload) == forged
        assert any(
            "reuses an id stored with different content" in r.message for r in caplog.records
        )
    finally:
        c.stop()


# --- the collector fuzzed through handle() and a real store ----------------------------------

from hypothesis import HealthCheck  # noqa: E402

_FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
def offline_collector(store_conf):
    """A collector with a real store and no broker connection: handle() runs as on a message,
    its ack publish is merely queued by paho. Every rejected input is kept whole (the largest
    hourly budget): these tests count rows; the budget has its own."""
    store, store_text = store_conf
    cfg = central_config(store.url, "mqtt://127.0.0.1:1", **_pg_schema_kw(store_text))
    cfg.central.rejected_kept_per_hour = 100000
    c = Collector(cfg, store=store)
    yield c
    c.link.client.loop_stop()


def _settled(c: Collector, ev_id: str) -> bool:
    stored = c.store.query("SELECT count(*) FROM events WHERE id = %s", (ev_id,))[0][0]
    rejected = c.store.query("SELECT count(*) FROM rejected WHERE id = %s", (ev_id,))[0][0]
    return stored + rejected == 1


@_FUZZ
@given(
    payload=st.binary(max_size=300) | st.builds(lambda n: b"[" * n + b"]" * n, st.integers(0, 5000))
)
def test_handle_never_raises_on_bytes_and_records_every_input(offline_collector, payload):
    c = offline_collector
    before = c.store.query("SELECT count(*) FROM rejected")[0][0]
    c.handle(TOPIC, payload)  # must not raise: only a failing store may
    after = c.store.query("SELECT count(*) FROM rejected")[0][0]
    assert after >= before
    assert c.store_errors == 0


@_FUZZ
@given(
    st.dictionaries(
        st.sampled_from(["id", "seq", "type", "at", "clock", "device", "site", "data", "x"]),
        _json,
    )
)
def test_handle_stores_or_rejects_every_mangled_event_exactly_once(offline_collector, mangle):
    c = offline_collector
    mangled, intact = {**event(1), **mangle}, event(2)
    c.handle(TOPIC, batch(mangled, intact))
    assert _settled(c, intact["id"])
    assert c.store.query("SELECT count(*) FROM events WHERE id = %s", (intact["id"],))[0][0] == 1
    if isinstance(mangled.get("id"), str) and mangled["id"] != intact["id"]:
        try:
            uuid.UUID(mangled["id"])
        except ValueError:
            return  # not a UUID: rejected by id text, which the events table cannot hold
        assert _settled(c, mangled["id"])


def test_garbage_that_names_no_event_is_stored_every_time_but_logged_once_a_minute(
    offline_collector, caplog
):
    """A hostile flood of non-JSON on one device's topic: every input is kept in `rejected`,
    the log gets one line (and later one with the count), not one per message."""
    c = offline_collector
    caplog.set_level("WARNING", logger="central.collector")
    for i in range(50):
        c.handle(TOPIC, b"garbage %d" % i)
    assert c.store.query("SELECT count(*) FROM rejected WHERE id IS NULL")[0][0] == 50
    lines = [r for r in caplog.records if "names no event" in r.message]
    assert len(lines) == 1 and "pad-a03" in lines[0].message
