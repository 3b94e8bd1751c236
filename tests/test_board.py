"""The hall board: its state from the store's events, and the page live in headless Chromium.

The browser test drives Debian's ``chromium`` over the DevTools protocol (a WebSocket, with
aiohttp's client): it opens the board, then writes window events into a real SQLite store the
way the collector does, and waits for the page (pushed over SSE, never reloaded) to show
each one. Set ``HALL_BOARD_SCREENSHOT=docs/img/board.png`` to keep the final screenshot.
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
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from central.board.server import BoardServer
from central.board.state import compute
from central.config import CentralConfig
from central.store import EventRow, open_store
from tests.conftest import require_or_skip
from tests.support import free_port

TZ = ZoneInfo("Asia/Shanghai")
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


def rows_of(events: list[EventRow]) -> list[tuple[Any, ...]]:
    return [(e.site, e.device, e.seq, e.type, e.at_text, e.data) for e in events]


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
        [pad.event("window.login", datetime.now(TZ), window="A10", pad=3, staff_id="S003")], []
    )
    server = BoardServer(cfg)
    assert server.start(), server.error
    try:

        async def get() -> dict[str, Any]:
            url = f"http://127.0.0.1:{server.port}/board.json"
            async with aiohttp.ClientSession() as http, http.get(url) as r:
                return await r.json()

        board = asyncio.run(get())
        a10 = next(w for w in board["windows"] if w["window"] == "A10")
        assert a10["state"] == "open" and a10["staff"]["name"] == "王五"
        # No face data anywhere: the board carries ids, names and posts only.
        assert "encoding" not in json.dumps(board) and "image" not in json.dumps(board)
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


def board_config(tmp_path: Path, port: int) -> CentralConfig:
    return CentralConfig.model_validate(
        {
            "store": {"url": f"sqlite:///{tmp_path}/hall.db"},
            "board": {"listen": f"127.0.0.1:{port}"},
        }
    )


@pytest.fixture
def chromium(tmp_path) -> Iterator[str]:
    """Headless Chromium with the DevTools protocol; yields the page's WebSocket URL."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        require_or_skip(
            "needs Debian's chromium (apt-get install chromium; scripts/services.sh installs it)"
        )
    proc = subprocess.Popen(
        [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'chromium'}",
            "--remote-debugging-port=0",
            "--window-size=1280,720",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = None
        for line in proc.stderr:  # type: ignore[union-attr]
            if line.startswith("DevTools listening on ws://"):
                port = int(line.split("ws://127.0.0.1:")[1].split("/")[0])
                break
        assert port, "chromium did not start its DevTools server"

        async def page_url() -> str:
            url = f"http://127.0.0.1:{port}/json/list"
            async with aiohttp.ClientSession() as http, http.get(url) as r:
                targets = await r.json()
            return next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"]

        yield asyncio.run(page_url())
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Cdp:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self.ws, self.next_id = ws, 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params})
        while True:
            msg = await self.ws.receive_json()
            if msg.get("id") == self.next_id:
                assert "error" not in msg, msg
                return msg["result"]

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


def test_board_shows_a_login_a_pause_and_a_logout_as_they_happen(tmp_path, chromium):
    cfg = board_config(tmp_path, free_port())
    writer = open_store(cfg.store.url)  # the collector's side: its own connection
    writer.put_roster("jiedong", ROSTER)
    pad = Pad()
    now = datetime.now(TZ)
    writer.write_batch(
        [
            pad.event("window.login", now, window="A02", pad=2, staff_id="S002"),
            *(
                pad.event("rating.submitted", now, window="A02", pad=2, staff_id="S002", level=lv)
                for lv in (5, 5, 4, 3, 5, 1)
            ),
        ],
        [],
    )
    server = BoardServer(cfg)
    assert server.start(), server.error

    def write(kind: str) -> None:
        writer.write_batch(
            [pad.event(kind, datetime.now(TZ), window="A01", pad=1, staff_id="S001")], []
        )

    async def drive() -> bytes:
        async with aiohttp.ClientSession() as http, http.ws_connect(chromium, max_msg_size=0) as ws:
            cdp = Cdp(ws)
            await cdp.call("Page.enable")
            await cdp.call("Page.navigate", url=f"http://127.0.0.1:{server.port}/")
            cards = await cdp.wait_for("the windows", lambda c: "A01" in c and "A02" in c)
            assert cards["A01"]["state"] == "closed" and "未开放" in cards["A01"]["text"]
            assert "张三（首席代表）" in cards["A01"]["text"]  # the roster's assignment
            assert "李四" in cards["A02"]["text"] and "服务中" in cards["A02"]["text"]
            assert "今日评价 6 次" in cards["A02"]["text"]
            assert "满意率 83.3%" in cards["A02"]["text"]
            loads = await cdp.call(
                "Runtime.evaluate",
                expression="performance.getEntriesByType('navigation').length",
                returnByValue=True,
            )

            write("window.login")
            cards = await cdp.wait_for("the login", lambda c: c["A01"]["state"] == "open")
            assert "张三" in cards["A01"]["text"] and "首席代表" in cards["A01"]["text"]
            assert "服务中" in cards["A01"]["text"]

            write("window.paused")
            cards = await cdp.wait_for("the pause", lambda c: c["A01"]["state"] == "paused")
            assert "暂停服务" in cards["A01"]["text"] and "张三" in cards["A01"]["text"]
            shot = await cdp.call("Page.captureScreenshot", format="png")

            write("window.logout")
            cards = await cdp.wait_for("the logout", lambda c: c["A01"]["state"] == "closed")
            assert "未开放" in cards["A01"]["text"]
            # Pushed into the same page: it was never reloaded.
            again = await cdp.call(
                "Runtime.evaluate",
                expression="performance.getEntriesByType('navigation').length",
                returnByValue=True,
            )
            assert again["result"]["value"] == loads["result"]["value"] == 1
            return base64.b64decode(shot["data"])

    try:
        png = asyncio.run(drive())
    finally:
        server.stop()
        writer.close()
    assert png.startswith(b"\x89PNG")
    (tmp_path / "board.png").write_bytes(png)
    keep = os.environ.get("HALL_BOARD_SCREENSHOT")
    if keep:
        Path(keep).parent.mkdir(parents=True, exist_ok=True)
        Path(keep).write_bytes(png)


def test_hall_central_run_serves_the_board(tmp_path):
    """`hall-central run` starts the board at [board] listen beside the collector."""
    import signal
    import sys

    from tests.support import Mosquitto, wait_for

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
