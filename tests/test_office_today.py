"""The office's live ``/today`` page (central/office/today.py): who punched, who is late,
absent or on leave, each window's state and 脱岗 in progress, pushed to an open page.

A real server on a free port over a real store; events are written the way the collector
writes them (``store.write_batches``), device statuses with ``upsert_status``. The pages' clock
is fixed at a working morning so that bands and service hours do not depend on when the test
runs.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from central.config import CentralConfig
from central.office.server import OfficeServer
from central.office.today import load_today
from central.store import BatchWrite, EventRow, open_store
from contract import EventType
from tests.conftest import require_or_skip
from tests.support import PG_URL, pg_available, pg_schema
from tests.test_office import TZ, Client, Page, add_user, chromium, office_config

__all__ = ["chromium"]  # the fixture, used by name

PAUSE_LIMIT = timedelta(minutes=15)  # [post] pause_limit_min's default

DAY = date(2026, 3, 5)  # a Thursday: winter hours 08:30-11:30, 14:00-17:30
NOW = datetime(2026, 3, 5, 10, 30, tzinfo=TZ)  # the morning-in band (until 10:00) is over
ROSTER = {
    "v": 1,
    "version": 1,
    "staff": [
        {"id": "S001", "name": "张三", "role": "staff", "window": "A01"},
        {"id": "S002", "name": "李四", "role": "staff", "window": "A02"},
        {"id": "S003", "name": "王五", "role": "staff", "window": "A03"},
        {"id": "S004", "name": "赵六", "role": "staff", "window": "A04"},
        {"id": "S005", "name": "钱七", "role": "chief", "window": "A05"},
    ],
}


class Device:
    """A device's events (docs/topics.md), one seq counter."""

    def __init__(self, device: str, site: str = "jiedong"):
        self.device, self.site, self.seq = device, site, 0

    def event(self, kind: EventType, at: datetime, **data: Any) -> EventRow:
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

    def punch(self, staff_id: str, at: datetime, status: str = "on_time", late: int = 0):
        return self.event(
            EventType.PUNCH,
            at,
            staff_id=staff_id,
            slot="morning_in",
            status=status,
            minutes_off=late,
            distance=0.31,
            liveness="passed",
            schedule_version=None,
        )

    def window(self, kind: EventType, at: datetime, window: str, staff_id: str) -> EventRow:
        return self.event(kind, at, window=window, pad=1, staff_id=staff_id)


def online(at: datetime) -> dict[str, Any]:
    """A device's retained status as agent/link/uplink.py publishes it (docs/topics.md)."""
    return {"v": 1, "state": "online", "version": "0.1.0", "at": at.isoformat()}


class Clock:
    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@dataclass
class Hall:
    server: OfficeServer
    store: Any
    cfg: CentralConfig
    clock: Clock
    kiosk: Device
    pads: dict[str, Device]

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port

    def write(self, *events: EventRow) -> None:
        self.store.write_batches([BatchWrite(list(events), [])])


def seed(store: Any, kiosk: Device, pads: dict[str, Device]) -> None:
    """The morning: 张三 on time, 李四 11 minutes late, 王五 on leave, 赵六 nowhere; 张三 and
    李四 logged in at their windows, 钱七 (chief) at A05."""
    store.put_roster("jiedong", ROSTER)
    store.add_leaves(
        [
            {
                "staff_id": "S003",
                "kind": "请假",
                "starts": DAY,
                "starts_half": "am",
                "ends": DAY,
                "ends_half": "pm",
                "approver": "李科长",
                "note": "",
                "source": "test",
            }
        ],
        "王科员",
    )
    morning = datetime.combine(DAY, datetime.min.time(), TZ)
    events = [
        kiosk.punch("S001", morning + timedelta(hours=8, minutes=25)),
        kiosk.punch("S002", morning + timedelta(hours=8, minutes=41), "late", 11),
    ]
    for window, staff in (("A01", "S001"), ("A02", "S002"), ("A05", "S005")):
        pad = pads[window]
        at = morning + timedelta(hours=8, minutes=45)
        events.append(pad.window(EventType.LOGIN, at, window, staff))
        store.upsert_status("jiedong", pad.device, online(NOW), NOW)
    store.write_batches([BatchWrite(events, [])])


def serve(cfg: CentralConfig) -> Iterator[Hall]:
    clock = Clock(NOW)
    store = open_store(cfg.store.url, cfg.store.pg_schema)  # the collector's own connection
    kiosk = Device("kiosk-01")
    pads = {w: Device(f"win-{w[1:]}") for w in ("A01", "A02", "A03", "A04", "A05")}
    seed(store, kiosk, pads)
    server = OfficeServer(cfg, clock=clock)
    assert server.start(), server.error
    try:
        yield Hall(server, store, cfg, clock, kiosk, pads)
    finally:
        server.stop()
        store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def hall(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Hall]:
    cfg = office_config(tmp_path)
    if request.param == "sqlite":
        yield from serve(cfg)
        return
    if not pg_available():
        require_or_skip(f"PostgreSQL not reachable at {PG_URL}")
    with pg_schema() as schema:
        cfg.store.url, cfg.store.pg_schema = PG_URL, schema
        yield from serve(cfg)


def person(state: dict[str, Any], staff_id: str) -> dict[str, Any]:
    (found,) = [p for p in state["people"] if p["id"] == staff_id]
    return found


# --- the state ------------------------------------------------------------------------------


def test_punches_late_leave_absent_windows_and_absences_on_either_store(hall):
    state = load_today(hall.store, hall.cfg, NOW)
    assert state["date"] == "2026-03-05" and state["working"]
    am = {sid: person(state, sid)["halves"]["am"] for sid in ("S001", "S002", "S003", "S004")}
    assert am["S001"]["punch"] == "08:25" and am["S001"]["late"] is None
    assert am["S002"]["punch"] == "08:41" and am["S002"]["late"] == 11
    assert am["S003"]["leave"] == "请假" and not am["S003"]["absent"]
    assert am["S004"]["punch"] is None and am["S004"]["absent"]
    chief = person(state, "S005")
    assert chief["chief"] and not chief["halves"]["am"]["absent"]  # held to a month, not a day
    assert not person(state, "S001")["halves"]["pm"]["absent"]  # the afternoon band is ahead
    windows = {w["window"]: w for w in state["windows"]}
    assert windows["A01"]["state"] == "open" and windows["A01"]["staff"]["name"] == "张三"
    assert windows["A03"]["state"] == "closed" and windows["A03"]["staff"] is None
    assert state["absences"] == []  # 赵六 never punched in: 缺勤, not 脱岗

    # 李四 pauses at 10:30; still within the limit at 10:45, 脱岗 after it.
    hall.write(hall.pads["A02"].window(EventType.PAUSED, NOW, "A02", "S002"))
    assert load_today(hall.store, hall.cfg, NOW + PAUSE_LIMIT)["absences"] == []
    moment = NOW + PAUSE_LIMIT + timedelta(minutes=2)
    offline = load_today(hall.store, hall.cfg, moment)  # the device unheard since 10:30
    assert {w["window"]: w["state"] for w in offline["windows"]}["A02"] == "offline"
    # 设备离线 does not staff the post: 李四 punched in, so the pause still counts.
    assert [a["id"] for a in offline["absences"]] == ["S002"]
    hall.store.upsert_status("jiedong", hall.pads["A02"].device, online(moment), moment)
    later = load_today(hall.store, hall.cfg, moment)
    (absence,) = later["absences"]
    assert (absence["id"], absence["name"], absence["window"]) == ("S002", "李四", "A02")
    assert (absence["cause"], absence["since"], absence["minutes"]) == ("暂停服务超时", "10:30", 17)
    # Over lunch nobody is 脱岗: the public service hours are not running.
    lunch = datetime(2026, 3, 5, 12, 30, tzinfo=TZ)
    assert load_today(hall.store, hall.cfg, lunch)["absences"] == []


# --- over HTTP ------------------------------------------------------------------------------


def test_the_page_and_its_stream_need_a_session(hall):
    add_user(hall.store, "zhang")
    anonymous = Client(hall.port)
    assert anonymous.get("/today").status == 303
    refused = anonymous.get("/today/events")
    assert refused.status == 401 and "data:" not in refused.body
    assert refused.headers["Content-Type"].startswith("text/plain")
    client = Client(hall.port)
    assert client.login("zhang").status == 303
    page = client.get("/today")
    assert page.status == 200
    assert "script-src" not in page.headers["Content-Security-Policy"]  # default-src 'self'
    assert '<script src="/today.js" defer></script>' in page.body
    assert "<script>" not in page.body  # nothing inline
    for text in ("人员", "窗口", "脱岗", "迟到 11 分", "请假", "缺勤", "服务中"):
        assert text in page.body, text
    assert 'href="/today"' in client.get("/cases").body  # in the navigation
    js = client.get("/today.js")
    assert js.status == 200 and "EventSource" in js.body
    assert js.headers["Content-Type"].startswith("text/javascript")


@pytest.mark.parametrize("how", ["logout", "idle"])
def test_the_stream_ends_when_the_session_ends(hall, how):
    add_user(hall.store, "zhang")
    client = Client(hall.port)
    client.login("zhang")
    cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    token = client.csrf("/today")

    async def listen() -> list[str]:
        url = f"http://127.0.0.1:{hall.port}/today/events"
        lines: list[str] = []
        async with (
            aiohttp.ClientSession() as http,
            http.get(url, headers={"Cookie": cookie}) as r,
        ):
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/event-stream")
            first = (await r.content.readline()).decode()
            assert first.startswith("data: ")
            assert "迟到 11 分" in json.loads(first[6:])["html"]["people"]
            if how == "logout":  # elsewhere, the same session: the stream says so and ends
                await asyncio.get_running_loop().run_in_executor(
                    None, lambda: client.post("/logout", {"csrf": token})
                )
            else:  # an open stream is no use of the session: it ends when idle
                idle = timedelta(minutes=hall.cfg.office.session_idle_min)
                hall.clock.at = NOW + idle + timedelta(seconds=1)
            async with asyncio.timeout(15):
                async for raw in r.content:
                    lines.append(raw.decode())
        return lines

    lines = asyncio.run(listen())
    assert "event: ended\n" in lines


# --- in the browser --------------------------------------------------------------------------


def test_a_pause_shows_on_the_open_page_without_a_reload(hall, chromium):
    add_user(hall.store, "zhang")
    base = f"http://127.0.0.1:{hall.port}"

    async def drive() -> float:
        async with aiohttp.ClientSession() as http, http.ws_connect(chromium, max_msg_size=0) as ws:
            page = Page(ws)
            await page.call("Page.enable")
            await page.go(f"{base}/login")
            await page.value(
                "document.querySelector('[name=name]').value = 'zhang';"
                "document.querySelector('[name=password]').value = 'correct-horse-1';"
                "document.querySelector('form.login button').click(); true"
            )
            await page.until("the case list", "location.pathname === '/cases'")
            await page.go(f"{base}/today")
            await page.until(
                "the live stream", "document.getElementById('today-live').dataset.state === 'live'"
            )
            row = "document.querySelector('#today-windows tr[data-window=A01]')"
            assert await page.value(f"{row}.dataset.state") == "open"
            late = await page.value(
                "document.querySelector('#today-people tr[data-staff=S002] .status').innerText"
            )
            assert "迟到 11 分" in late
            await page.value("window.notReloaded = true")
            started = time.monotonic()
            hall.write(hall.pads["A01"].window(EventType.PAUSED, NOW, "A01", "S001"))
            await page.until(
                "A01 暂停服务",
                f"{row} && {row}.dataset.state === 'paused' "
                f"&& {row}.innerText.includes('暂停服务')",
                timeout=5.0,
            )
            latency = time.monotonic() - started
            assert await page.value("window.notReloaded === true")  # the same document
            text = await page.value(f"{row}.innerText")
            assert "暂停服务（自 10:30）" in text and "张三" in text
            return latency

    latency = asyncio.run(drive())
    print(f"pause -> page: {latency:.2f} s")


def test_a_leave_by_the_hour_excuses_a_half_only_from_its_start():
    """As the monthly report: 15:00-17:30 does not excuse the afternoon's 14:00 in-punch (the
    person should be there at 14:00), 13:30-17:30 does; a half-day row covers the half."""
    from central.office.today import _excuses
    from contract.schedule import Schedule

    plan = Schedule().plan(DAY)
    base = {"staff_id": "S001", "kind": "请假", "starts": DAY, "ends": DAY}
    late = base | {
        "starts_half": "pm",
        "ends_half": "pm",
        "starts_time": "15:00",
        "ends_time": "17:30",
    }
    early = late | {"starts_time": "13:30"}
    half = base | {"starts_half": "pm", "ends_half": "pm", "starts_time": "", "ends_time": ""}
    assert _excuses([late], DAY, plan) == {}
    assert _excuses([early], DAY, plan) == {("S001", "pm"): "请假"}
    assert _excuses([half], DAY, plan) == {("S001", "pm"): "请假"}
