"""The hall board: its state from the store's events and devices' statuses, and the page live
in headless Chromium.

The browser tests drive Debian's ``chromium`` over the DevTools protocol (a WebSocket, with
aiohttp's client): they open the board, then write window events and device statuses into a
real SQLite store the way the collector does (or publish statuses to a real Mosquitto for a
real collector), and wait for the page (pushed over SSE, never reloaded) to show each one.
The board's clock is the test's (``BoardServer(clock=…)``): the hall's hours and a device's
staleness are judged at a moment the test sets, never at the machine's time of day.
Set ``HALL_BOARD_SCREENSHOTS=docs/img`` to keep the screenshots (docs/board.md).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from central.board.server import BoardServer
from central.board.state import DeviceStatus, Liveness, compute, hall_open
from central.config import CentralConfig
from central.store import EventRow, StoredEvent, open_store
from contract.schedule import Schedule
from scripts.cdp import Cdp as PageCdp
from scripts.cdp import headless_chromium
from tests.conftest import require_or_skip
from tests.support import free_port, wait_for

TZ = ZoneInfo("Asia/Shanghai")
# A Thursday, a working day in winter hours (08:30-11:30, 14:00-17:30): the board's "now" in
# the tests, so the hall is open whatever the time of day the tests run at.
HALL_OPEN = datetime(2026, 3, 5, 10, 0, tzinfo=TZ)
AFTER_HOURS = datetime(2026, 3, 5, 18, 0, tzinfo=TZ)
STALE = timedelta(seconds=180)
ROSTER = {
    "v": 1,
    "version": 1,
    "staff": [
        {"id": "S001", "name": "张三", "role": "chief", "window": "A01"},
        {"id": "S002", "name": "李四", "role": "staff", "window": "A02"},
        {"id": "S003", "name": "王五", "role": "staff", "window": "A10"},
    ],
}


class Pad:
    """Events as a window device records them (docs/topics.md), one seq counter per device."""

    def __init__(self, device: str = "win-01", site: str = "jiedong"):
        self.device, self.site, self.seq = device, site, 0

    def event(self, kind: str, at: datetime, **data: Any) -> EventRow:
        self.seq += 1
        return EventRow(
            id=str(uuid.uuid4()),
            device=self.device,
            site=self.site,
            seq=self.seq,
            type=kind,
            at=at,
            at_text=at.isoformat(timespec="milliseconds"),
            clock="synced",
            data=json.dumps(data, ensure_ascii=False),
        )


def rows_of(events: list[EventRow]) -> list[StoredEvent]:
    """The events as the store returns them (received now: the board reads only `at`)."""
    now = datetime.now(UTC)
    return [
        StoredEvent(e.id, e.site, e.device, e.seq, e.type, e.at, e.clock, now, json.loads(e.data))
        for e in events
    ]


def status(state: str, at: datetime) -> dict[str, Any]:
    """A device's retained status as agent/link/uplink.py publishes it (docs/topics.md)."""
    return {
        "v": 1,
        "state": state,
        "version": "0.1.0",
        "outbox": {"pending": 0, "oldest_s": None, "dead_letter": 0, "bytes": 28672},
        "components": {"uplink": {"state": "ok", "connected": True, "in_flight": 0}},
        "at": at.isoformat(timespec="milliseconds"),
    }


class Clock:
    """The board's clock, set by the test."""

    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def keep_screenshot(png: bytes, name: str) -> None:
    """``HALL_BOARD_SCREENSHOTS=docs/img`` keeps the page's screenshots for docs/board.md."""
    assert png.startswith(b"\x89PNG")
    folder = os.environ.get("HALL_BOARD_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / name).write_bytes(png)


# --- state ----------------------------------------------------------------------------


def test_state_follows_login_pause_resume_logout_and_counts_todays_ratings():
    now = datetime(2026, 11, 26, 10, 0, tzinfo=TZ)
    pad = Pad()
    events = [
        pad.event("window.login", now - timedelta(days=1), window="A02", pad=2, staff_id="S002"),
        pad.event("window.login", now, window="A01", pad=1, staff_id="S001"),
        pad.event("rating.submitted", now, window="A01", pad=1, staff_id="S001", level=5),
        pad.event("rating.submitted", now, window="A01", pad=1, staff_id="S001", level=2),
        pad.event(
            "window.paused", now + timedelta(minutes=5), window="A01", pad=1, staff_id="S001"
        ),
        pad.event("window.login", now, window="B07", pad=7, staff_id="X9"),
    ]
    board = compute(rows_of(events), {"jiedong": ROSTER}, now.date(), TZ)
    by = {w["window"]: w for w in board["windows"]}
    assert [w["window"] for w in board["windows"]] == ["A01", "A02", "A10", "B07"]
    assert by["A01"]["state"] == "paused" and by["A01"]["state_label"] == "暂停服务"
    assert by["A01"]["staff"] == {"id": "S001", "name": "张三", "post": "首席代表"}
    assert by["A01"]["since"] == "10:05"
    assert by["A01"]["ratings"] == {
        "counts": {"5": 1, "4": 0, "3": 0, "2": 1, "1": 0},
        "total": 2,
        "satisfaction": 50.0,
    }
    # Yesterday's login does not open today's window; the roster still names its staff.
    assert by["A02"]["state"] == "closed" and by["A02"]["staff"] is None
    assert by["A02"]["assigned"][0]["name"] == "李四"
    # Someone the roster does not know is shown by id.
    assert by["B07"]["staff"]["name"] == "X9" and by["B07"]["state"] == "open"

    later = [
        pad.event(
            "window.resumed", now + timedelta(minutes=9), window="A01", pad=1, staff_id="S001"
        ),
        pad.event(
            "window.logout", now + timedelta(minutes=30), window="A01", pad=1, staff_id="S001"
        ),
    ]
    board = compute(rows_of(events + later), {"jiedong": ROSTER}, now.date(), TZ)
    a01 = board["windows"][0]
    assert (a01["state"], a01["staff"], a01["since"]) == ("closed", None, "10:30")


def heard(state: str, at: datetime) -> DeviceStatus:
    """A device's status as the centre last heard it, by the centre's clock."""
    return DeviceStatus(state, at.astimezone(UTC))


def test_a_window_is_never_in_service_on_a_device_that_is_not_heard():
    now = HALL_OPEN
    pads = {d: Pad(d) for d in ("win-01", "win-02", "win-03", "win-04", "win-05", "win-06")}
    events = [
        pads["win-01"].event("window.login", now, window="A01", pad=1, staff_id="S001"),
        pads["win-02"].event("window.login", now, window="A02", pad=1, staff_id="S002"),
        pads["win-03"].event("window.login", now, window="A03", pad=1, staff_id="S003"),
        pads["win-04"].event("window.login", now, window="A04", pad=1, staff_id="S004"),
        pads["win-05"].event("window.login", now, window="A05", pad=1, staff_id="S005"),
        pads["win-06"].event("window.paused", now, window="A06", pad=1, staff_id="S006"),
    ]
    devices = {
        ("jiedong", "win-01"): heard("online", now - timedelta(seconds=60)),
        ("jiedong", "win-02"): heard("offline", now - timedelta(seconds=5)),  # the will
        # Not heard for longer than its statuses allow.
        ("jiedong", "win-03"): heard("online", now - STALE - timedelta(seconds=1)),
        # win-04: no status ever stored.
        # A retained `online` replayed to a restarted collector, an hour after the device
        # died: the collector stores the hour-old send time (test_store.py), not now.
        ("jiedong", "win-05"): heard("online", now - timedelta(hours=1)),
        ("jiedong", "win-06"): heard("offline", now - timedelta(seconds=5)),
    }
    live = Liveness(devices, now, STALE, hall_open=True)
    board = compute(rows_of(events), {"jiedong": ROSTER}, now.date(), TZ, liveness=live)
    by = {w["window"]: w for w in board["windows"]}
    assert (by["A01"]["state"], by["A01"]["state_label"]) == ("open", "服务中")
    assert by["A01"]["device"] == {"id": "win-01", "state": "online"}
    expected = {
        "A02": "offline",
        "A03": "stale",
        "A04": "unknown",
        "A05": "stale",
        "A06": "offline",
    }
    for window, device_state in expected.items():
        w = by[window]
        assert (w["state"], w["state_label"]) == ("offline", "设备离线"), w
        assert w["device"]["state"] == device_state and w["staff"] is None
    assert board["totals"]["in_service"] == 1 and board["totals"]["windows"] == 7  # A10 too

    # After the hall's hours the same windows are 未开放; an online device's login stands.
    live = Liveness(devices, AFTER_HOURS, STALE, hall_open=False)
    board = compute(rows_of(events), {"jiedong": ROSTER}, now.date(), TZ, liveness=live)
    states = {w["window"]: (w["state"], w["state_label"]) for w in board["windows"]}
    assert states["A02"] == states["A06"] == states["A10"] == ("closed", "未开放")
    # Three hours later win-01 is not heard either.
    assert states["A01"] == ("closed", "未开放")


def test_the_hall_is_open_within_the_schedules_hours_on_working_days():
    schedule = Schedule()
    assert hall_open(schedule, HALL_OPEN)
    assert hall_open(schedule, HALL_OPEN.replace(hour=8, minute=30))
    assert hall_open(schedule, HALL_OPEN.replace(hour=12, minute=30))  # the lunch break
    assert not hall_open(schedule, HALL_OPEN.replace(hour=8, minute=29))
    assert not hall_open(schedule, HALL_OPEN.replace(hour=17, minute=30))
    assert not hall_open(schedule, AFTER_HOURS)
    assert not hall_open(schedule, HALL_OPEN + timedelta(days=2))  # Saturday


def test_totals_count_todays_ratings_the_way_the_monthly_report_does():
    from central.reports.ratings import Tally

    now = HALL_OPEN
    pad = Pad()
    levels = {"A01": [5, 5, 4, 3, 2, 1], "A02": [5, 2, 4]}
    events = [pad.event("window.login", now, window="A01", pad=1, staff_id="S001")]
    for window, marks in levels.items():
        events += [
            pad.event("rating.submitted", now, window=window, pad=1, level=lv) for lv in marks
        ]
    devices = {("jiedong", "win-01"): heard("online", now)}
    board = compute(
        rows_of(events),
        {"jiedong": ROSTER},
        now.date(),
        TZ,
        liveness=Liveness(devices, now, STALE, hall_open=True),
    )
    totals = board["totals"]
    assert totals["total"] == 9
    assert totals["counts"] == {"5": 3, "4": 2, "3": 1, "2": 2, "1": 1}
    report = Tally()
    report.levels.update([5, 5, 4, 3, 2, 1, 5, 2, 4])
    assert report.rate is not None
    assert totals["satisfaction"] == round(100 * report.rate, 1) == 66.7
    # A01 is in service; A02 (ratings, no login) and A10 (the roster's) are known windows.
    assert (totals["in_service"], totals["windows"]) == (1, 3)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_cfg(request, tmp_path) -> Iterator[CentralConfig]:
    if request.param == "sqlite":
        yield board_config(tmp_path, free_port())
        return
    from tests.support import PG_URL, pg_available, pg_schema

    if not pg_available():
        require_or_skip(f"PostgreSQL not reachable at {PG_URL}")
    with pg_schema() as schema:
        cfg = board_config(tmp_path, free_port())
        cfg.store.url, cfg.store.pg_schema = PG_URL, schema
        yield cfg


def test_board_json_from_a_real_store(store_cfg):
    cfg = store_cfg
    store = open_store(cfg.store.url, cfg.store.pg_schema)
    store.put_roster("jiedong", ROSTER)
    pad = Pad()
    store.write_batch(
        [pad.event("window.login", HALL_OPEN, window="A10", pad=3, staff_id="S003")], []
    )
    store.upsert_status("jiedong", "win-01", status("online", HALL_OPEN), HALL_OPEN)
    clock = Clock(HALL_OPEN)
    server = BoardServer(cfg, clock=clock)
    assert server.start(), server.error
    try:

        async def get() -> dict[str, Any]:
            url = f"http://127.0.0.1:{server.port}/board.json"
            async with aiohttp.ClientSession() as http, http.get(url) as r:
                return await r.json()

        def a10() -> dict[str, Any]:
            return next(w for w in asyncio.run(get())["windows"] if w["window"] == "A10")

        board = asyncio.run(get())
        assert a10()["state"] == "open" and a10()["staff"]["name"] == "王五"
        assert board["totals"]["in_service"] == 1
        # No face data anywhere: the board carries ids, names and posts only.
        assert "encoding" not in json.dumps(board) and "image" not in json.dumps(board)

        # The store's own types (jsonb and timestamptz on PostgreSQL) are read as such: the
        # device's status going offline, then its status growing old, close the window.
        store.upsert_status("jiedong", "win-01", status("offline", HALL_OPEN), HALL_OPEN)
        assert wait_for(lambda: a10()["state"] == "offline", 20, interval=0.1)
        assert a10()["device"] == {"id": "win-01", "state": "offline"}
        store.upsert_status("jiedong", "win-01", status("online", HALL_OPEN), HALL_OPEN)
        assert wait_for(lambda: a10()["state"] == "open", 20, interval=0.1)
        clock.at = HALL_OPEN + STALE + timedelta(seconds=1)
        assert wait_for(lambda: a10()["state"] == "offline", 20, interval=0.1)
        assert a10()["device"]["state"] == "stale"
    finally:
        server.stop()
        store.close()


def test_a_taken_port_leaves_the_board_off_without_raising(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        cfg = board_config(tmp_path, taken.getsockname()[1])
        server = BoardServer(cfg)
        assert not server.start()
        assert server.error and "address" in server.error.lower()


# --- the page in Chromium ---------------------------------------------------------------


def board_config(
    tmp_path: Path, port: int, mqtt_url: str | None = None, rotate_s: int = 10
) -> CentralConfig:
    settings: dict[str, Any] = {
        "store": {"url": f"sqlite:///{tmp_path}/hall.db"},
        "board": {"listen": f"127.0.0.1:{port}", "rotate_s": rotate_s},
    }
    if mqtt_url:
        settings["mqtt"] = {"url": mqtt_url}
    return CentralConfig.model_validate(settings)


@pytest.fixture
def chromium(tmp_path) -> Iterator[str]:
    """Headless Chromium with the DevTools protocol; yields the page's WebSocket URL."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        require_or_skip(
            "needs Debian's chromium (apt-get install chromium; scripts/services.sh installs it)"
        )
    with headless_chromium(exe, tmp_path / "chromium", 1280, 720) as url:
        yield url


class Cdp(PageCdp):
    """The DevTools client (scripts/cdp.py) with the board's own reads."""

    async def cards(self) -> dict[str, dict[str, str]]:
        js = (
            "JSON.stringify([...document.querySelectorAll('.card')].map(c => ({"
            "window: c.dataset.window, state: c.dataset.state, text: c.innerText})))"
        )
        result = await self.call("Runtime.evaluate", expression=js, returnByValue=True)
        return {c["window"]: c for c in json.loads(result["result"]["value"])}

    async def wait_for(self, what: str, predicate: Any, timeout: float = 20.0) -> dict:
        """Wait until the page shows something (a wait, not a speed assertion)."""
        deadline = time.monotonic() + timeout
        cards: dict[str, dict[str, str]] = {}
        while time.monotonic() < deadline:
            cards = await self.cards()
            if predicate(cards):
                return cards
            await asyncio.sleep(0.1)
        raise AssertionError(f"the board never showed {what}: {cards}")


NAVIGATIONS = "performance.getEntriesByType('navigation').length"
HEADER = "document.querySelector('header').innerText.replace(/\\s+/g, '')"


async def open_board(cdp: Cdp, port: int, width: int = 1280, height: int = 720) -> None:
    await cdp.call("Page.enable")
    await cdp.call(
        "Emulation.setDeviceMetricsOverride",
        width=width,
        height=height,
        deviceScaleFactor=1,
        mobile=False,
    )
    await cdp.call("Page.navigate", url=f"http://127.0.0.1:{port}/")


async def screenshot(cdp: Cdp) -> bytes:
    shot = await cdp.call("Page.captureScreenshot", format="png")
    return base64.b64decode(shot["data"])


def test_board_shows_a_login_a_pause_and_a_logout_as_they_happen(tmp_path, chromium):
    cfg = board_config(tmp_path, free_port())
    writer = open_store(cfg.store.url)  # the collector's side: its own connection
    writer.put_roster("jiedong", ROSTER)
    writer.upsert_status("jiedong", "win-01", status("online", HALL_OPEN), HALL_OPEN)
    pad = Pad()
    moments = (HALL_OPEN - timedelta(minutes=30) + timedelta(minutes=m) for m in range(30))
    writer.write_batch(
        [
            pad.event("window.login", next(moments), window="A02", pad=2, staff_id="S002"),
            *(
                pad.event(
                    "rating.submitted",
                    next(moments),
                    window="A02",
                    pad=2,
                    staff_id="S002",
                    level=lv,
                )
                for lv in (5, 5, 4, 3, 5, 1)
            ),
        ],
        [],
    )
    server = BoardServer(cfg, clock=Clock(HALL_OPEN))
    assert server.start(), server.error

    def write(kind: str) -> None:
        writer.write_batch(
            [pad.event(kind, next(moments), window="A01", pad=1, staff_id="S001")], []
        )

    async def drive() -> None:
        async with aiohttp.ClientSession() as http, http.ws_connect(chromium, max_msg_size=0) as ws:
            cdp = Cdp(ws)
            await open_board(cdp, server.port)
            cards = await cdp.wait_for("the windows", lambda c: "A01" in c and "A02" in c)
            assert cards["A01"]["state"] == "closed" and "未开放" in cards["A01"]["text"]
            # The roster's assignment names a closed window's staff and post (art. 32).
            assert "张三" in cards["A01"]["text"] and "首席代表" in cards["A01"]["text"]
            assert "李四" in cards["A02"]["text"] and "服务中" in cards["A02"]["text"]
            assert "评价 6 次" in cards["A02"]["text"]
            assert "满意率 83.3%" in cards["A02"]["text"]
            header = await cdp.value(HEADER)
            assert "今日评价6次" in header and "满意率83.3%" in header
            assert "在岗窗口1/3" in header

            write("window.login")
            cards = await cdp.wait_for("the login", lambda c: c["A01"]["state"] == "open")
            assert "张三" in cards["A01"]["text"] and "首席代表" in cards["A01"]["text"]
            assert "服务中" in cards["A01"]["text"]
            assert "在岗窗口2/3" in await cdp.value(HEADER)

            write("window.paused")
            cards = await cdp.wait_for("the pause", lambda c: c["A01"]["state"] == "paused")
            assert "暂停服务" in cards["A01"]["text"] and "张三" in cards["A01"]["text"]
            assert "在岗窗口1/3" in await cdp.value(HEADER)

            write("window.logout")
            cards = await cdp.wait_for("the logout", lambda c: c["A01"]["state"] == "closed")
            assert "未开放" in cards["A01"]["text"]
            # Pushed into the same page: it was never reloaded.
            assert await cdp.value(NAVIGATIONS) == 1

    try:
        asyncio.run(drive())
    finally:
        server.stop()
        writer.close()


ROSTER4 = {
    **ROSTER,
    "staff": [*ROSTER["staff"], {"id": "S004", "name": "赵六", "role": "staff", "window": "A03"}],
}


def test_a_window_not_heard_goes_offline_and_closes_after_hours_without_a_new_message(
    tmp_path, chromium
):
    """In service, paused, device offline and closed side by side; then the devices' last
    statuses grow old and the windows flip to 设备离线, and after the hall's hours to 未开放,
    with nothing written anywhere: the board's own once-a-second read does it."""
    cfg = board_config(tmp_path, free_port())
    writer = open_store(cfg.store.url)
    writer.put_roster("jiedong", ROSTER4)
    earlier = HALL_OPEN - timedelta(minutes=50)
    pads = {d: Pad(d) for d in ("win-01", "win-02", "win-03")}
    writer.write_batch(
        [
            pads["win-01"].event("window.login", earlier, window="A01", pad=1, staff_id="S001"),
            *(
                pads["win-01"].event(
                    "rating.submitted", earlier, window="A01", pad=1, staff_id="S001", level=lv
                )
                for lv in (5, 5, 5, 4, 2)
            ),
            pads["win-02"].event("window.login", earlier, window="A02", pad=1, staff_id="S002"),
            pads["win-02"].event(
                "window.paused",
                HALL_OPEN - timedelta(minutes=5),
                window="A02",
                pad=1,
                staff_id="S002",
            ),
            pads["win-03"].event("window.login", earlier, window="A03", pad=1, staff_id="S004"),
        ],
        [],
    )
    writer.upsert_status("jiedong", "win-01", status("online", HALL_OPEN), HALL_OPEN)
    writer.upsert_status("jiedong", "win-02", status("online", HALL_OPEN), HALL_OPEN)
    writer.upsert_status("jiedong", "win-03", status("offline", HALL_OPEN), HALL_OPEN)  # the will
    clock = Clock(HALL_OPEN)
    server = BoardServer(cfg, clock=clock)
    assert server.start(), server.error

    def states(c: dict[str, dict[str, str]]) -> dict[str, str]:
        return {w: card["state"] for w, card in c.items()}

    async def drive() -> bytes:
        async with aiohttp.ClientSession() as http, http.ws_connect(chromium, max_msg_size=0) as ws:
            cdp = Cdp(ws)
            await open_board(cdp, server.port)
            cards = await cdp.wait_for("four windows", lambda c: len(c) == 4)
            assert states(cards) == {
                "A01": "open",
                "A02": "paused",
                "A03": "offline",
                "A10": "closed",
            }
            assert "服务中" in cards["A01"]["text"] and "张三" in cards["A01"]["text"]
            assert "暂停服务" in cards["A02"]["text"]
            assert "设备离线" in cards["A03"]["text"] and "服务中" not in cards["A03"]["text"]
            assert "赵六" in cards["A03"]["text"]  # the roster's, not "in service"
            assert "未开放" in cards["A10"]["text"]
            header = await cdp.value(HEADER)
            assert "今日评价5次" in header and "满意率80.0%" in header
            assert "在岗窗口1/4" in header
            png = await screenshot(cdp)

            clock.at = HALL_OPEN + STALE + timedelta(seconds=1)  # no status since HALL_OPEN
            cards = await cdp.wait_for(
                "the unheard windows offline",
                lambda c: (
                    states(c)
                    == {"A01": "offline", "A02": "offline", "A03": "offline", "A10": "closed"}
                ),
            )
            assert all("设备离线" in cards[w]["text"] for w in ("A01", "A02", "A03"))
            assert "在岗窗口0/4" in await cdp.value(HEADER)

            clock.at = AFTER_HOURS
            cards = await cdp.wait_for(
                "every window closed after hours",
                lambda c: set(states(c).values()) == {"closed"},
            )
            assert all("未开放" in card["text"] for card in cards.values())
            assert await cdp.value(NAVIGATIONS) == 1
            return png

    try:
        png = asyncio.run(drive())
    finally:
        server.stop()
        writer.close()
    keep_screenshot(png, "board.png")


def test_a_stopped_device_shows_offline_live_and_after_a_collector_restart(
    tmp_path, broker, chromium
):
    """The reported case: the window agent stopped, and even after a collector restart the
    board said 服务中. A real collector on a real Mosquitto takes the device's retained
    status (docs/topics.md); the page stays open across the restart (EventSource
    reconnects)."""
    from central.collector import Collector
    from tests.support import mosquitto_pub

    port = free_port()
    cfg = board_config(tmp_path, port, mqtt_url=broker.url)
    writer = open_store(cfg.store.url)
    writer.put_roster("jiedong", ROSTER)
    pad = Pad("win-01")
    earlier = HALL_OPEN - timedelta(hours=1)
    writer.write_batch(
        [
            pad.event("window.login", earlier, window="A01", pad=1, staff_id="S001"),
            pad.event("window.login", earlier, window="A02", pad=2, staff_id="S002"),
        ],
        [],
    )

    def device(state: str) -> None:
        payload = json.dumps(status(state, HALL_OPEN))
        mosquitto_pub(broker.port, "hall/jiedong/win-01/status", payload, retain=True)

    def start() -> tuple[Collector, BoardServer]:
        collector = Collector(cfg)
        collector.start()
        assert collector.wait_connected(10)
        server = BoardServer(cfg, clock=Clock(HALL_OPEN))
        assert server.start(), server.error
        return collector, server

    def stop(running: tuple[Collector, BoardServer]) -> None:
        running[1].stop()
        running[0].stop()

    def both(state: str) -> Any:
        return lambda c: all(c.get(w, {}).get("state") == state for w in ("A01", "A02"))

    device("online")
    running = start()

    async def drive() -> None:
        nonlocal running
        async with aiohttp.ClientSession() as http, http.ws_connect(chromium, max_msg_size=0) as ws:
            cdp = Cdp(ws)
            await open_board(cdp, port)
            cards = await cdp.wait_for("both windows in service", both("open"))
            assert "服务中" in cards["A01"]["text"] and "服务中" in cards["A02"]["text"]

            device("offline")  # a clean stop, or the will
            cards = await cdp.wait_for("both windows offline", both("offline"))
            assert all("设备离线" in cards[w]["text"] for w in ("A01", "A02"))
            device("online")
            await cdp.wait_for("both windows back in service", both("open"))

            # The collector (and its board) restart; meanwhile the window agent stops.
            stop(running)
            device("offline")
            running = start()
            cards = await cdp.wait_for("both windows offline after the restart", both("offline"))
            assert not any("服务中" in card["text"] for card in cards.values())
            assert await cdp.value(NAVIGATIONS) == 1
        # What `hall-central devices` reads says the same.
        [row] = writer.devices()
        assert (row["device"], row["state"]) == ("win-01", "offline")

    try:
        asyncio.run(drive())
    finally:
        stop(running)
        writer.close()


SURNAMES = "张李王赵陈刘杨黄吴周徐孙马朱胡郭何林罗高"
GIVEN = ["伟", "芳", "秀英", "敏", "静", "建国", "丽", "强", "磊", "洋"]


def sixty_windows() -> tuple[dict[str, Any], list[EventRow], dict[str, str]]:
    """60 windows A01-C20, one staff member each (some with four-character names), in every
    state, one device per window, and the longest rating lines (three-digit counts, 100.0%)."""
    windows = [f"{row}{n:02d}" for row in "ABC" for n in range(1, 21)]
    staff, events, devices = [], [], {}
    for i, window in enumerate(windows):
        sid = f"S{i + 1:03d}"
        name = "欧阳明远" if i % 9 == 0 else SURNAMES[i % 20] + GIVEN[i % 10]
        staff.append(
            {"id": sid, "name": name, "role": "chief" if i % 4 == 0 else "staff", "window": window}
        )
        pad = Pad(f"win-{i + 1:02d}")
        devices[pad.device] = "offline" if i % 7 == 3 else "online"
        if i % 5 == 4:
            continue  # nobody logged in: 未开放
        at = HALL_OPEN - timedelta(minutes=60 - i)
        events.append(pad.event("window.login", at, window=window, pad=1, staff_id=sid))
        if i % 6 == 1:
            events.append(pad.event("window.paused", at, window=window, pad=1, staff_id=sid))
        marks = [5] * 150 if i == 0 else [5, 4, 3, 2, 1, 5, 5] * 18 if i == 1 else [5, 4] * (i % 4)
        events += [
            pad.event("rating.submitted", at, window=window, pad=1, staff_id=sid, level=lv)
            for lv in marks
        ]
    return {"v": 1, "version": 1, "staff": staff}, events, devices


MEASURE = """JSON.stringify((() => {
  const main = document.getElementById('board');
  const limit = document.querySelector('footer').getBoundingClientRect().top;
  // A card's content taller than the card, or a line's text wider than its line.
  const overflows = e => e.scrollHeight > e.clientHeight + 1;
  const clipped = e => e.scrollWidth > e.clientWidth + 1;
  const shown = [...document.querySelectorAll('.card')].filter(c => !c.hidden);
  return {
    page: main.dataset.page, pages: main.dataset.pages, width: innerWidth, height: innerHeight,
    footer: limit, body: document.body.scrollHeight,
    cards: shown.map(c => {
      const r = c.getBoundingClientRect();
      const rate = c.querySelector('.rate');
      const oneLine = rate.getBoundingClientRect().height;
      rate.style.whiteSpace = 'normal';  // would it need a second line if it could wrap?
      const wrapped = rate.getBoundingClientRect().height;
      rate.style.whiteSpace = '';
      return {
        window: c.dataset.window, left: r.left, right: r.right, top: r.top, bottom: r.bottom,
        card: overflows(c), oneLine, wrapped,
        parts: ['.win', '.state', '.who', '.sub', '.rate']
          .filter(s => clipped(c.querySelector(s))),
        fontWin: parseFloat(getComputedStyle(c.querySelector('.win')).fontSize),
        fontRate: parseFloat(getComputedStyle(rate).fontSize),
      };
    }),
  };
})())"""


def test_sixty_windows_fit_a_1920x1080_screen_page_by_page(tmp_path, chromium):
    cfg = board_config(tmp_path, free_port(), rotate_s=1)
    roster, events, devices = sixty_windows()
    writer = open_store(cfg.store.url)
    writer.put_roster("jiedong", roster)
    writer.write_batch(events, [])
    for device, state in devices.items():
        writer.upsert_status("jiedong", device, status(state, HALL_OPEN), HALL_OPEN)
    server = BoardServer(cfg, clock=Clock(HALL_OPEN))
    assert server.start(), server.error
    windows = [w["window"] for w in roster["staff"]]

    async def drive() -> tuple[dict[str, dict[str, Any]], dict[str, list[str]], bytes]:
        async with aiohttp.ClientSession() as http, http.ws_connect(chromium, max_msg_size=0) as ws:
            cdp = Cdp(ws)
            await open_board(cdp, server.port, 1920, 1080)
            await cdp.wait_for("60 windows", lambda c: len(c) == 60)
            seen: dict[str, dict[str, Any]] = {}
            pages: dict[str, list[str]] = {}
            png = b""
            deadline = time.monotonic() + 60
            while set(seen) != set(windows) and time.monotonic() < deadline:
                m = json.loads(await cdp.value(MEASURE))
                if m["page"] not in pages:
                    pages[m["page"]] = [c["window"] for c in m["cards"]]
                    if m["page"] == "1":
                        png = await screenshot(cdp)
                for c in m["cards"]:
                    seen[c["window"]] = {**c, "geometry": m}
                await asyncio.sleep(0.2)
            return seen, pages, png

    try:
        seen, pages, png = asyncio.run(drive())
    finally:
        server.stop()
        writer.close()
    # Every window is reachable: the pages rotate through all 60, each on exactly one page.
    assert set(seen) == set(windows), sorted(set(windows) - set(seen))
    assert sorted(w for page in pages.values() for w in page) == sorted(windows)
    assert len(pages) >= 2 and all(len(page) >= 12 for page in pages.values()), pages
    for c in seen.values():
        m = c["geometry"]
        assert (m["width"], m["height"]) == (1920, 1080)
        assert m["body"] <= 1080, "the page scrolls"
        # On screen, above the footer, and nothing inside the card cut off.
        assert c["left"] >= 0 and c["right"] <= 1920 and c["top"] >= 0, c
        assert c["bottom"] <= m["footer"], c
        assert not c["card"] and c["parts"] == [], c
        # The rating line fits one line even where it may wrap.
        assert c["wrapped"] == c["oneLine"], c
        # Legible from across the hall: the window number 40 px, the rating line 20 px.
        assert c["fontWin"] >= 40 and c["fontRate"] >= 20, c
    keep_screenshot(png, "board-60-windows.png")


def test_hall_central_run_serves_the_board(tmp_path):
    """`hall-central run` starts the board at [board] listen beside the collector."""
    import signal
    import sys

    from tests.support import Mosquitto

    port = free_port()
    with Mosquitto(tmp_path / "broker") as broker:
        conf = tmp_path / "central.toml"
        conf.write_text(
            f'[mqtt]\nurl = "{broker.url}"\n[store]\nurl = "sqlite:///{tmp_path}/hall.db"\n'
            f'[board]\nlisten = "127.0.0.1:{port}"\ntitle = "测试大厅"\n'
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "central.cli", "-c", str(conf), "run"],
            cwd=Path(__file__).resolve().parents[1],
            stderr=subprocess.PIPE,
            text=True,
        )
        try:

            async def fetch(path: str) -> tuple[int, str]:
                url = f"http://127.0.0.1:{port}{path}"
                async with aiohttp.ClientSession() as http, http.get(url) as r:
                    return r.status, await r.text()

            def up() -> bool:
                try:
                    return asyncio.run(fetch("/board.json"))[0] == 200
                except aiohttp.ClientError:
                    return False

            assert wait_for(up, 30, interval=0.2), "the board never listened"
            status, page = asyncio.run(fetch("/"))
            assert status == 200 and "EventSource" in page
            assert "http://" not in page and "https://" not in page  # nothing from a CDN
            board = json.loads(asyncio.run(fetch("/board.json"))[1])
            assert board["title"] == "测试大厅" and board["windows"] == []
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def test_the_technician_view_shows_the_schedule_and_next_years_gap(tmp_path):
    """/tech (docs/attendance.md "Next year's holidays"): the version the kiosks have and,
    from December 1, the warning that next year's holidays are missing; the hall's own page
    never shows it."""
    from central.schedule_publish import record_current
    from contract.schedule import calendar_knows

    known = max(y for y in range(2024, 2040) if calendar_knows(y))
    cfg = board_config(tmp_path, free_port())
    store = open_store(cfg.store.url)
    record_current(store, cfg.schedule, ZoneInfo(cfg.central.timezone))
    clock = Clock(datetime(known, 11, 30, 10, tzinfo=ZoneInfo("Asia/Shanghai")))
    server = BoardServer(cfg, clock=clock)
    assert server.start(), server.error
    try:

        async def get(path: str) -> tuple[str, str]:
            url = f"http://127.0.0.1:{server.port}{path}"
            async with aiohttp.ClientSession() as http, http.get(url) as r:
                return r.headers["Content-Type"], await r.text()

        _, text = asyncio.run(get("/tech.json"))
        assert json.loads(text) == {"schedule_version": 1, "notices": [], "store_errors": 0}
        clock.at = datetime(known, 12, 1, 10, tzinfo=ZoneInfo("Asia/Shanghai"))
        tech = json.loads(asyncio.run(get("/tech.json"))[1])
        assert len(tech["notices"]) == 1 and str(known + 1) in tech["notices"][0]
        kind, page = asyncio.run(get("/tech"))
        assert kind.startswith("text/html") and "技术人员视图" in page and str(known + 1) in page
        assert str(known + 1) not in asyncio.run(get("/board.json"))[1]
    finally:
        server.stop()
        store.close()
