"""Each staff member's month so far on their site's kiosks (docs/attendance.md "Your month on
the screen"): the payload (contract/published_summary.py), the centre's computation on a real
store (central/summary.py), the kiosk's keeper and its screen line (agent/summary_file.py),
and end to end through a real Mosquitto: a punch 10 minutes late in the store, the collector's
retained summary, the kiosk's file, the page in headless Chromium."""

from __future__ import annotations

import asyncio
import json
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import aiohttp
import pytest

from agent.config import AgentConfig
from agent.link.downlink import SummaryKeeper
from agent.summary_file import load_summary, month_line, summary_status
from central.summary import compute_summary
from contract import summary_topic
from contract.published_summary import (
    MAX_SUMMARY_BYTES,
    SummaryError,
    build_summary,
    parse_summary,
)
from contract.schedule import Schedule
from tests import reportkit
from tests.support import PG_URL, central_config, mosquitto_pub, pg_available, wait_for
from tests.test_board import Cdp, chromium  # noqa: F401  (the fixture)

CST = timezone(timedelta(hours=8))
AS_OF = datetime(2026, 11, 26, 10, 0, tzinfo=CST)
LATE_DAY = date(2026, 11, 25)  # a Wednesday, a working day
STAFF = {"S001": {"late": 1, "early": 0, "missing": 3, "absent": 0}}


def summary_json(**change) -> dict:
    body = {
        "v": 1,
        "site": "jiedong",
        "month": "2026-11",
        "as_of": AS_OF.isoformat(),
        "through": "2026-11-25",
        "staff": STAFF,
    }
    return {**body, **change}


def raw(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


# --- the payload ---------------------------------------------------------------------------


def test_the_payload_round_trips_and_its_digest_ignores_as_of():
    s = parse_summary(raw(summary_json()))
    assert s.staff["S001"].late == 1 and s.through == LATE_DAY
    assert parse_summary(s.to_json().encode()) == s
    later = parse_summary(raw(summary_json(as_of=(AS_OF + timedelta(hours=1)).isoformat())))
    assert later.digest == s.digest
    other = parse_summary(raw(summary_json(staff={"S001": {**STAFF["S001"], "late": 2}})))
    assert other.digest != s.digest
    assert build_summary("jiedong", "2026-11", AS_OF, LATE_DAY, STAFF) == s


@pytest.mark.parametrize(
    "change, where",
    [
        ({"v": 2}, "v: Value error, expected 1"),
        ({"site": "Jie Dong"}, "site:"),
        ({"month": "2026-13"}, "month:"),
        ({"as_of": "2026-11-26T10:00:00"}, "as_of: Value error, expected a time with its UTC"),
        ({"as_of": "2026-12-01T10:00:00+08:00"}, "not in month 2026-11"),
        ({"through": "2026-11-26"}, "expected a day before as_of's"),
        ({"through": "2026-10-31"}, "not in month 2026-11"),
        ({"name": "张三"}, "name: Extra inputs are not permitted"),
        ({"staff": {"S001": {**STAFF["S001"], "face": "base64"}}}, "staff.S001.face"),
        ({"staff": {"S001": {**STAFF["S001"], "late": -1}}}, "staff.S001.late"),
        ({"staff": {"S001": {**STAFF["S001"], "late": "1"}}}, "staff.S001.late"),
        ({"staff": {"S001": {"late": 1}}}, "staff.S001.early: Field required"),
        ({"staff": {"../x": STAFF["S001"]}}, "staff.../x.[key]"),
    ],
)
def test_a_bad_payload_is_refused_saying_where(change, where):
    with pytest.raises(SummaryError) as err:
        parse_summary(raw(summary_json(**change)))
    assert where in str(err.value)


def test_the_payload_is_bounded():
    with pytest.raises(SummaryError, match="bytes; expected at most"):
        parse_summary(b" " * (MAX_SUMMARY_BYTES + 1))
    with pytest.raises(SummaryError, match="not JSON"):
        parse_summary(b"\xff{")
    with pytest.raises(SummaryError, match="expected a JSON object"):
        parse_summary(b"[]")


# --- the centre's computation ----------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    from central.store import open_store

    if request.param == "sqlite":
        with open_store(f"sqlite:///{tmp_path}/hall.db") as s:
            yield s
        return
    if not pg_available():
        from tests.conftest import require_or_skip

        require_or_skip(f"PostgreSQL not reachable at {PG_URL}")
    from tests.support import pg_schema

    with pg_schema() as name, open_store(PG_URL, name) as s:
        yield s


def late_punch(store) -> None:
    """S001 (from 2026-11-25 on the roster) punches once, 10 minutes late, on LATE_DAY; a
    chief punches late too; a person of another site is late as well."""
    reportkit.roster(
        store,
        "jiedong",
        [("S001", "张三", "staff", "A01"), ("C001", "李四", "chief", None)],
        {"S001": {"starts": "2026-11-25"}, "C001": {"starts": "2026-11-25"}},
    )
    reportkit.roster(store, "chengxi", [("S900", "王五", "staff", "B01")])
    start = Schedule().plan(LATE_DAY).morning.start
    late = (datetime.combine(LATE_DAY, start) + timedelta(minutes=10)).time()
    month = reportkit.Month(store)
    month.punch("S001", LATE_DAY, late)
    month.punch("C001", LATE_DAY, late)
    month.punch("S900", LATE_DAY, late, site="chengxi")
    month.flush()


def cfg_for(tmp_path, url: str = "mqtt://127.0.0.1:1"):
    return central_config(f"sqlite:///{tmp_path}/unused.db", url)


def test_the_centre_counts_judged_days_of_the_site_only(store, tmp_path):
    from zoneinfo import ZoneInfo

    late_punch(store)
    tz = ZoneInfo("Asia/Shanghai")
    s = compute_summary(store, cfg_for(tmp_path), "jiedong", AS_OF, tz)
    assert s.site == "jiedong" and s.month == "2026-11" and s.through == LATE_DAY
    # One late 上班, the other three slots of the day missing; the chief is held to a monthly
    # count (no entry), the other site's person is not here.
    assert {k: v.model_dump() for k, v in s.staff.items()} == STAFF
    # The day itself is not over: nothing judged, no numbers yet.
    same_day = datetime.combine(LATE_DAY, time(18), CST)
    today = compute_summary(store, cfg_for(tmp_path), "jiedong", same_day, tz)
    assert today.staff["S001"].model_dump() == {"late": 0, "early": 0, "missing": 0, "absent": 0}
    first = datetime(2026, 12, 1, 9, tzinfo=CST)
    assert compute_summary(store, cfg_for(tmp_path), "jiedong", first, tz).through is None
    other = compute_summary(store, cfg_for(tmp_path), "chengxi", AS_OF, tz)
    assert set(other.staff) == {"S900"}


# --- the kiosk -------------------------------------------------------------------------------


def test_the_screen_line_is_shown_only_when_it_is_true():
    s = parse_summary(raw(summary_json()))
    line = month_line(s, "jiedong", "S001", AS_OF)
    assert line == "本月：迟到 1 次 · 早退 0 次 · 缺卡 3 次 · 脱岗 0 次（截至 11月25日）"
    assert month_line(s, "jiedong", "S002", AS_OF) is None  # not in it
    assert month_line(s, "chengxi", "S001", AS_OF) is None  # another site's
    assert month_line(s, "jiedong", "S001", datetime(2026, 12, 1, 8, tzinfo=CST)) is None
    assert month_line(None, "jiedong", "S001", AS_OF) is None
    first = parse_summary(raw(summary_json(through=None)))
    assert month_line(first, "jiedong", "S001", AS_OF) is None  # no day over yet


def test_the_kiosk_keeps_the_last_good_summary(tmp_path, caplog):
    keeper = SummaryKeeper(tmp_path, "jiedong")
    good = raw(summary_json())
    assert keeper.handle(good)
    assert load_summary(tmp_path) == parse_summary(good)
    assert not keeper.handle(good)  # the retained one again after a reconnect
    for bad, why in (
        (raw(summary_json(site="chengxi")), "site: expected 'jiedong', got 'chengxi'"),
        (raw(summary_json(staff={"S001": {**STAFF["S001"], "name": "张三"}})), "staff.S001"),
        (b"{ broken", "not JSON"),
    ):
        assert not keeper.handle(bad)
        assert keeper.last_error and why in keeper.last_error
        assert load_summary(tmp_path) == parse_summary(good)
    assert not keeper.handle(b"")  # retained message cleared: keep what we have
    newer = summary_json(as_of=(AS_OF + timedelta(days=1)).isoformat(), through="2026-11-26")
    assert keeper.handle(raw(newer)) and keeper.last_error is None
    assert load_summary(tmp_path).through == date(2026, 11, 26)
    text, warn = summary_status(tmp_path, "jiedong", AS_OF + timedelta(days=1, hours=1))
    assert not warn and "month 2026-11 through 2026-11-26, 1 staff" in text and "1.0 h ago" in text
    text, warn = summary_status(tmp_path, "jiedong", datetime(2026, 12, 1, 8, tzinfo=CST))
    assert warn and "not this month" in text
    assert summary_status(tmp_path / "none", "jiedong", AS_OF)[1]


# --- end to end ------------------------------------------------------------------------------


def kiosk_config(data_dir: Path, url: str, **screen) -> AgentConfig:
    data_dir.mkdir(parents=True, exist_ok=True)
    return AgentConfig.model_validate(
        {
            "device": {"id": "kiosk-01", "site": "jiedong", "data_dir": str(data_dir)},
            "mqtt": {"url": url},
            "sync": {"min_free_mb": 0},
            "attendance": {"camera": "0", "realtime": False},
            "screen": {"listen": "", **screen},
        }
    )


def test_a_late_punch_reaches_the_kiosk_screen_as_its_month(tmp_path, broker, chromium):  # noqa: F811
    from agent.kiosk.screen import ScreenHub, ScreenServer
    from agent.link.uplink import Uplink
    from agent.outbox import Outbox
    from central.collector import Collector
    from central.store import open_store
    from tests.support import free_port
    from tests.test_screen import wait_page

    db = f"sqlite:///{tmp_path}/hall.db"
    with open_store(db) as store:
        late_punch(store)
    collector = Collector(central_config(db, broker.url))
    collector.summaries.now = lambda: AS_OF  # the hall's clock, the day after the punch
    collector.start()
    data = tmp_path / "kiosk"
    cfg = kiosk_config(data, broker.url, listen=f"127.0.0.1:{free_port()}")
    box = Outbox.for_config(cfg, clock=lambda: "synced")
    up = Uplink(cfg, box)
    hub = ScreenHub(cfg)
    hub.clock = lambda: AS_OF
    server = ScreenServer(hub, cfg.screen.listen)
    try:
        assert collector.wait_connected(10)
        up.start()
        assert wait_for(lambda: load_summary(data) is not None, 15), up.health()
        kept = load_summary(data)
        assert kept.site == "jiedong" and kept.month == "2026-11" and kept.through == LATE_DAY
        assert kept.staff["S001"].late == 1 and set(kept.staff) == {"S001"}
        assert collector.summaries.published >= 2  # jiedong and chengxi, each on its own topic
        assert up.health().get("summary") is None

        # Nothing changed: the periodic check publishes nothing again.
        published = collector.summaries.published
        collector.summaries.publish(force=False)
        assert collector.summaries.published == published

        # Another site's summary on its own topic never reaches this kiosk (it subscribes
        # only to its own site's topic); a bad one on its own topic is refused, the last
        # good one stays.
        other = raw(summary_json(site="chengxi", staff={"S001": {**STAFF["S001"], "late": 9}}))
        mosquitto_pub(broker.port, summary_topic("hall", "chengxi"), other, retain=True)
        mosquitto_pub(broker.port, summary_topic("hall", "jiedong"), other, retain=True)
        assert wait_for(lambda: "summary" in up.health(), 10)
        assert "site: expected 'jiedong'" in up.health()["summary"]
        assert up.health()["state"] == "degraded"
        assert load_summary(data) == kept

        assert server.start(), server.error
        line = "本月：迟到 1 次 · 早退 0 次 · 缺卡 3 次 · 脱岗 0 次（截至 11月25日）"

        async def drive() -> dict:
            async with (
                aiohttp.ClientSession() as http,
                http.ws_connect(chromium, max_msg_size=0) as ws,
            ):
                cdp = Cdp(ws)
                await cdp.call("Page.enable")
                await cdp.call("Page.navigate", url=f"http://127.0.0.1:{server.port}/")
                await wait_page(cdp, "the status", lambda p: p["hours"] != "")
                punch = {
                    "kind": "punch",
                    "staff_id": "S001",
                    "slot": "morning_in",
                    "status": "on_time",
                    "minutes_off": 0,
                    "at": "2026-11-26T08:25:00+08:00",
                    "today": [{"slot": "morning_in", "status": "on_time", "at": AS_OF.isoformat()}],
                }
                msg = hub.look(punch)
                assert msg["month"] == line
                shown = await wait_page(cdp, "the month line", lambda p: line in p["text"])
                # A chief (held to a monthly count: not in the summary): today's punches,
                # no month line at all.
                hub.look({**punch, "staff_id": "C001"})
                return shown, await wait_page(
                    cdp,
                    "the chief's punch",
                    lambda p: "李四" in p["text"] and "本月" not in p["text"],
                )

        shown, _ = asyncio.run(drive())
        assert "上午上班" in shown["text"]  # beside today's punches
    finally:
        server.stop()
        up.stop()
        collector.stop()
        box.close()


def test_hall_central_summary_show_and_publish(tmp_path, broker):
    import subprocess
    import sys

    from central.store import open_store

    db = f"sqlite:///{tmp_path}/hall.db"
    with open_store(db) as store:
        late_punch(store)
    conf = tmp_path / "central.toml"
    conf.write_text(f'[mqtt]\nurl = "{broker.url}"\n[store]\nurl = "{db}"\n')
    root = Path(__file__).resolve().parents[1]

    def hall_central(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "central.cli", "-c", str(conf), "summary", *args],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=60,
        )

    r = hall_central("show", "--site", "jiedong", "--json")
    assert r.returncode == 0, r.stderr
    shown = parse_summary(r.stdout.strip().encode())
    assert shown.site == "jiedong" and set(shown.staff) == {"S001"}
    r = hall_central("show")
    assert r.returncode == 0 and "chengxi" in r.stdout and "S001" in r.stdout, r.stderr
    r = hall_central("show", "--site", "nowhere")
    assert r.returncode == 1 and "no site 'nowhere'" in r.stderr
    r = hall_central("publish", "--site", "jiedong")
    assert r.returncode == 0, r.stderr
    assert "retained on hall/jiedong/summary" in r.stdout
    sub = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-C", "1", "-W", "10"]
    got = subprocess.run(
        [*sub, "-t", "hall/jiedong/summary"],
        capture_output=True,
        timeout=20,
        check=True,
    )
    assert parse_summary(got.stdout.strip()).digest == shown.digest
