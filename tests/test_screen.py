"""The kiosk screen (agent/kiosk/screen.py): texts, the page in headless Chromium, a real kiosk.

The browser tests drive Debian's ``chromium`` over the DevTools protocol, as
tests/test_board.py does. Most feed the screen's hub directly (a look as the recognition
process reports it, a camera state as the worker's health reports it) and wait for the page,
pushed over SSE and never reloaded, to show it: every outcome, the camera fault and its
recovery, /tech at load. The last runs a real attendance worker (child process, composed
video, enrolled gallery) behind the page and waits for its punch, then checks that no image
was written anywhere in the data directory.

Screenshots (docs/attendance.md "Kiosk screen"): ``HALL_KIOSK_SCREENSHOTS=docs/img`` keeps
one per state (kiosk-punch.png, ...), ``HALL_KIOSK_SCREENSHOT=docs/img/kiosk.png`` the one of
the end-to-end run.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, get_args
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from agent.config import AgentConfig, load_agent_config
from agent.kiosk.screen import (
    CAMERA_TEXT,
    COMPONENT_TEXT,
    PUNCH_TEXT,
    QUALITY_TEXT,
    REJECT_TEXT,
    ScreenHub,
    ScreenServer,
    camera_state,
    punch_status,
    state_text,
)
from contract import CameraState, ComponentState, FaceQuality, PunchStatus, RejectReason, Slot
from tests.support import free_port
from tests.test_board import Cdp, chromium  # noqa: F401  (the fixture)

TZ = ZoneInfo("Asia/Shanghai")
ROOT = Path(__file__).resolve().parents[1]
ROSTER = {
    "v": 1,
    "version": 1,
    "staff": [
        {"id": "S001", "name": "张三", "role": "staff", "window": "A01"},
        {"id": "obama", "name": "奥巴马", "role": "staff", "window": None},
    ],
}


def kiosk_cfg(write_config, data_dir: Path, camera: str = "0", **screen: Any) -> AgentConfig:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "roster.json").write_text(json.dumps(ROSTER, ensure_ascii=False))
    lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in screen.items())
    return load_agent_config(
        write_config(
            f"""
            [device]
            id = "kiosk-01"
            site = "jiedong"
            data_dir = "{data_dir}"
            [attendance]
            camera = "{camera}"
            realtime = false
            [screen]
            listen = "127.0.0.1:{free_port()}"
            {lines}
            """
        )
    )


PUNCH = {
    "kind": "punch",
    "staff_id": "S001",
    "slot": "morning_in",
    "status": "late",
    "minutes_off": 3,
    "at": "2026-11-25T08:27:40+08:00",
    "box": [100, 300, 300, 100],
}


def test_each_kind_of_look_has_its_chinese_text(write_config, tmp_path):
    hub = ScreenHub(kiosk_cfg(write_config, tmp_path / "data"))
    late = hub.render(PUNCH)
    assert (late["title"], late["detail"]) == (
        "张三 · 上午上班 · 08:27 · 迟到 3 分钟",
        "打卡成功，记为迟到",
    )
    assert late["tone"] == "warn" and late["counted_as"] == "上午上班"
    on_time = hub.render({**PUNCH, "status": "on_time", "minutes_off": 0, "slot": "afternoon_out"})
    assert (on_time["title"], on_time["tone"]) == ("张三 · 下午下班 · 08:27 · 正常", "ok")
    # Outside the hours: Chinese, no slot of the four, not a green success, and the status
    # line (counted_as) says the same.
    night = {**PUNCH, "slot": "extra", "status": "outside_hours", "minutes_off": 0}
    night["at"] = "2026-11-25T00:22:05+08:00"
    shown = hub.render(night)
    assert shown["title"] == "张三 · 00:22 · 非工作时段打卡"
    assert shown["tone"] != "ok" and "不计入" in shown["detail"]
    assert shown["counted_as"] == "非工作时段打卡"
    rest = hub.render({**night, "status": "holiday"})
    assert rest["title"] == "张三 · 00:22 · 休息日打卡" and rest["tone"] != "ok"
    repeat = hub.render({"kind": "repeat", "staff_id": "S001"})
    assert (repeat["title"], repeat["detail"]) == ("已打卡，请勿重复", "张三")
    blink = hub.render({"kind": "blink", "staff_id": "S001"})
    assert blink["title"] == "请眨眨眼" and blink["detail"].startswith("张三")
    # Rejections name nobody: not the nearest person, not the owner of a photo.
    for reason in ("unknown_face", "liveness_failed", "low_quality"):
        msg = hub.render({"kind": reason, "staff_id": "S001", "box": None})
        assert msg["name"] == "" and msg["staff_id"] is None
        assert "张三" not in msg["title"] + msg["detail"] and "S001" not in json.dumps(msg)
    low = hub.render({"kind": "low_quality", "quality": "too_small"})
    assert (low["title"], low["tone"]) == ("看不清面部", "warn") and "请靠近一些" in low["detail"]
    # A staff id the roster does not know is shown as the id.
    assert hub.render({**PUNCH, "staff_id": "X9"})["title"].startswith("X9 · ")
    assert punch_status("early_leave", 12) == "早退 12 分钟"


CJK = re.compile(r"[\u4e00-\u9fff]")
LATIN = re.compile(r"[A-Za-z]")


def test_every_code_of_the_contract_has_its_chinese_text(write_config, tmp_path):
    tables = {
        PunchStatus: PUNCH_TEXT,
        RejectReason: REJECT_TEXT,
        CameraState: CAMERA_TEXT,
        ComponentState: COMPONENT_TEXT,
        FaceQuality: QUALITY_TEXT,
    }
    for literal, table in tables.items():
        missing = [code for code in get_args(literal) if code not in table]
        assert missing == [], f"no kiosk text for {missing}"
    hub = ScreenHub(kiosk_cfg(write_config, tmp_path / "data"))
    looks = [
        {**PUNCH, "slot": slot, "status": status, "minutes_off": 4}
        for slot in get_args(Slot)
        for status in get_args(PunchStatus)
    ]
    looks += [{"kind": reason, "box": None} for reason in get_args(RejectReason)]
    looks += [{"kind": "low_quality", "quality": q} for q in get_args(FaceQuality)]
    looks += [{"kind": kind, "staff_id": "S001"} for kind in ("repeat", "blink")]
    for look in looks:
        msg = hub.render(look)
        text = msg["title"] + msg["detail"]
        assert CJK.search(msg["title"]) and CJK.search(msg["detail"]), (look, msg)
        assert not LATIN.search(text), f"a code on the kiosk page: {text!r} for {look}"
    for state in get_args(CameraState):
        camera = camera_state({"attendance": {"state": state}})
        assert CJK.search(camera["text"]) and not LATIN.search(camera["text"]), state
        assert state_text(state).endswith(f"({state})") and CJK.search(state_text(state))
        if camera["fault"]:
            assert camera["title"] == "打卡暂不可用" and "请联系管理员" in camera["detail"]
    for state in get_args(ComponentState):
        assert CJK.search(state_text(state)), state


def quoted_in(path: str, pattern: str) -> set[str]:
    """The quoted codes on the source lines of ``path`` that match ``pattern``."""
    lines = (ROOT / path).read_text(encoding="utf-8").splitlines()
    return {c for line in lines if re.search(pattern, line) for c in re.findall(r'"(\w+)"', line)}


def test_the_codes_the_drivers_report_are_the_contracts():
    # The contract's literals are what the page's tables are checked against; a state or a
    # quality problem a driver reports without one would reach the page as a raw code.
    camera = quoted_in("drivers/camera.py", r"^\s+state = ")
    assert camera >= {"ok", "fault", "ended", "recovering"}
    source = (ROOT / "agent/kiosk/attendance_worker.py").read_text(encoding="utf-8")
    worker = set(re.findall(r'"state": "(\w+)"', source))
    assert worker and camera | worker <= set(get_args(CameraState))
    quality = set()
    for engine in ("drivers/faces.py", "drivers/faces_sface.py"):  # every recognizer's
        quality |= quoted_in(engine, r'^\s+return "\w+"(, None)?$')
    assert quality and quality == set(get_args(FaceQuality))


def test_todays_punches_are_kept_per_day_and_survive_a_restart(write_config, tmp_path):
    from agent.kiosk.attendance_worker import AttendanceWorker
    from agent.kiosk.punch_files import TodayPunches, today_path
    from agent.outbox import Outbox

    data = tmp_path / "data"
    cfg = kiosk_cfg(write_config, data)
    shown: list[dict] = []

    class Screen:
        def look(self, msg: dict) -> None:
            shown.append(msg)

    punch = {
        "staff_id": "S001",
        "slot": "morning_in",
        "status": "late",
        "minutes_off": 3,
        "distance": 0.31,
        "liveness": "off",
    }
    at = "2026-11-25T08:27:40+08:00"
    mine = [{"slot": "morning_in", "status": "late", "at": at}]
    with Outbox(data / "outbox.db", device="kiosk-01", site="jiedong", min_free_bytes=0) as box:
        worker = AttendanceWorker(cfg, box, screen=Screen())
        worker._handle(("event", "attendance.punch", punch, at))
        worker._handle(("look", {"kind": "punch", **punch, "at": at, "box": None}))
        assert shown[-1]["today"] == mine
        # The agent restarts: a new worker reads the day's record back.
        again = AttendanceWorker(cfg, box, screen=Screen())
        again._handle(("look", {"kind": "repeat", "staff_id": "S001", "box": None}))
        assert shown[-1]["today"] == mine
        again._handle(("look", {"kind": "unknown_face", "staff_id": None, "box": None}))
        assert "today" not in shown[-1]
        # Staff ids, slots, statuses and times only.
        saved = json.loads(today_path(data).read_text(encoding="utf-8"))
        assert saved == {"day": "2026-11-25", "punches": [["S001", "morning_in", "late", at]]}
        # The first punch of the next day drops the previous day's.
        next_day = "2026-11-26T08:01:00+08:00"
        again._handle(("event", "attendance.punch", {**punch, "staff_id": "obama"}, next_day))
        again._handle(("look", {"kind": "repeat", "staff_id": "S001", "box": None}))
        assert shown[-1]["today"] == []
        saved = json.loads(today_path(data).read_text(encoding="utf-8"))
        assert saved["day"] == "2026-11-26" and [p[0] for p in saved["punches"]] == ["obama"]
        assert box.pending_count() == 2  # the punches themselves went to the outbox
    # A damaged record costs the list, never the start.
    today_path(data).write_text("{not json", encoding="utf-8")
    assert TodayPunches.load(today_path(data)).of("obama") == []
    # What the page lists: the four daily slots, first "in", last "out", then the others.
    hub = ScreenHub(cfg)
    rows = hub.render(
        {
            **PUNCH,
            "status": "on_time",
            "today": [
                {"slot": "morning_in", "status": "on_time", "at": "2026-11-25T08:27:00+08:00"},
                {"slot": "morning_in", "status": "on_time", "at": "2026-11-25T08:29:00+08:00"},
                {"slot": "extra", "status": "outside_hours", "at": "2026-11-25T12:40:00+08:00"},
            ],
        }
    )["today"]
    assert [(r["label"], r["time"], r["mark"]) for r in rows] == [
        ("上午上班", "08:27", "✓"),
        ("上午下班", "—", ""),
        ("下午上班", "—", ""),
        ("下午下班", "—", ""),
        ("其他时段", "12:40", "共 1 次"),
    ]


def test_today_shows_the_hours_and_the_current_slot(write_config, tmp_path):
    hub = ScreenHub(kiosk_cfg(write_config, tmp_path / "data"))
    workday = hub.today(datetime(2026, 11, 25, 8, 40, tzinfo=TZ))  # a Wednesday
    assert workday["working"] and workday["slot"] == "上午上班"
    assert workday["hours"].startswith("上午 ") and " · 下午 " in workday["hours"]
    sunday = hub.today(datetime(2026, 11, 29, 10, 0, tzinfo=TZ))
    assert not sunday["working"] and sunday["hours"] == "今日休息"


def test_a_taken_port_leaves_the_screen_off(write_config, tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        cfg = kiosk_cfg(write_config, tmp_path / "data")
        server = ScreenServer(ScreenHub(cfg), f"127.0.0.1:{taken.getsockname()[1]}")
        assert not server.start()
        assert server.error and "address" in server.error.lower()


async def result_text(cdp: Cdp) -> dict[str, str]:
    js = (
        "document.getElementById('result') && "
        "JSON.stringify({kind: document.getElementById('result').dataset.kind,"
        " text: document.getElementById('result').innerText,"
        " footer: document.querySelector('footer').innerText,"
        " hours: document.getElementById('hours').innerText,"
        " shown: performance.now() + performance.timeOrigin})"
    )
    r = await cdp.call("Runtime.evaluate", expression=js, returnByValue=True)
    value = r["result"].get("value")  # null while the page is still loading
    return json.loads(value) if value else {"kind": "", "text": "", "footer": "", "hours": ""}


async def wait_page(cdp: Cdp, what: str, predicate: Any, timeout: float = 30.0) -> dict:
    """Wait until the page shows something (a wait, not a speed assertion)."""
    deadline = time.monotonic() + timeout
    seen: dict[str, str] = {}
    while time.monotonic() < deadline:
        seen = await result_text(cdp)
        if predicate(seen):
            return seen
        await asyncio.sleep(0.02)
    raise AssertionError(f"the kiosk page never showed {what}: {seen}")


def test_the_page_shows_each_pushed_look_without_reloading(write_config, tmp_path, chromium):  # noqa: F811
    cfg = kiosk_cfg(write_config, tmp_path / "data")
    state = {"pending": 7, "connected": False}
    hub = ScreenHub(cfg, status=lambda: dict(state))
    server = ScreenServer(hub, cfg.screen.listen)
    assert server.start(), server.error

    async def drive() -> list[float]:
        async with aiohttp.ClientSession() as http, http.ws_connect(chromium, max_msg_size=0) as ws:
            cdp = Cdp(ws)
            await cdp.call("Page.enable")
            await cdp.call("Page.navigate", url=f"http://127.0.0.1:{server.port}/")
            page = await wait_page(cdp, "the status", lambda p: "待上传 7 条" in p["footer"])
            assert "离线" in page["footer"] and page["hours"]
            delays = []
            for look, expected in (
                (PUNCH, "张三 · 上午上班 · 08:27 · 迟到 3 分钟"),
                ({"kind": "repeat", "staff_id": "S001"}, "已打卡，请勿重复"),
                ({"kind": "unknown_face"}, "未识别"),
                ({"kind": "blink", "staff_id": "S001"}, "请眨眨眼"),
            ):
                sent = time.time() * 1000
                hub.look(look)
                shown = await wait_page(cdp, expected, lambda p, e=expected: e in p["text"])
                assert shown["kind"] == look["kind"]
                delays.append(shown["shown"] - sent)
            state.update(pending=0, connected=True)
            page = await wait_page(cdp, "the uplink back", lambda p: "已连接" in p["footer"])
            assert "待上传" not in page["footer"]
            loads = await cdp.call(
                "Runtime.evaluate",
                expression="performance.getEntriesByType('navigation').length",
                returnByValue=True,
            )
            assert loads["result"]["value"] == 1  # pushed into one page, never reloaded
            return delays

    try:
        delays = asyncio.run(drive())
    finally:
        server.stop()
    # Reported, not asserted (bench/ holds speed targets): decision to text on the page.
    print(f"kiosk page: look shown after {', '.join(f'{d:.0f}' for d in delays)} ms")


PAGE_STATE = """JSON.stringify({
  kind: document.getElementById('result').dataset.kind,
  tone: document.getElementById('result').dataset.tone,
  text: document.getElementById('result').innerText,
  slot: document.getElementById('slot').innerText,
  video: document.getElementById('video').innerText,
  fault: !document.getElementById('camfault').hidden,
  preview: document.getElementById('preview').naturalWidth})"""


async def page_state(cdp: Cdp) -> dict[str, Any]:
    r = await cdp.call("Runtime.evaluate", expression=PAGE_STATE, returnByValue=True)
    value = r["result"].get("value")  # null while the page is still loading
    return json.loads(value) if value else {}


async def wait_state(cdp: Cdp, what: str, predicate: Any, timeout: float = 30.0) -> dict:
    """Wait until the page shows something (a wait, not a speed assertion)."""
    deadline = time.monotonic() + timeout
    seen: dict[str, Any] = {}
    while time.monotonic() < deadline:
        seen = await page_state(cdp)
        if seen and predicate(seen):
            return seen
        await asyncio.sleep(0.05)
    raise AssertionError(f"the kiosk page never showed {what}: {seen}")


async def screenshot(cdp: Cdp, name: str) -> None:
    """Keep the page as docs/img/<name> when HALL_KIOSK_SCREENSHOTS names a directory
    (README "Kiosk screen": how to regenerate the screenshots)."""
    keep = os.environ.get("HALL_KIOSK_SCREENSHOTS")
    if not keep:
        return
    # Chromium shows an MJPEG part when the next one begins: wait for two more frames.
    await asyncio.sleep(0.7)
    shot = await cdp.call("Page.captureScreenshot", format="png")
    Path(keep).mkdir(parents=True, exist_ok=True)
    (Path(keep) / name).write_bytes(base64.b64decode(shot["data"]))


BOX_BGR = {"green": (80, 200, 60), "amber": (0, 190, 255), "red": (60, 60, 230)}


def preview_jpeg(box: str, far: bool = False) -> bytes:
    """A preview frame as the recognition process draws it (agent/kiosk/recognition.py: green
    punched, amber looking, red not recognised): a face photo of the test media, or (media
    not fetched) a plain frame. ``far``: the face small, as for "please come closer"."""
    import cv2
    import numpy as np

    try:
        from tests import media

        photo = cv2.resize(media.load_bgr("obama2.jpg"), (480, 360))
    except Exception:  # MediaUnavailable: the page's states are the same without the photo
        photo = np.full((360, 480, 3), 70, np.uint8)
    rect = (150, 60, 330, 260)  # the face in the photo, at 480x360
    if far:
        image = np.full_like(photo, 60)
        image[135:225, 180:300] = cv2.resize(photo, (120, 90))
        rect = (218, 150, 263, 200)
    else:
        image = photo
    cv2.rectangle(image, rect[:2], rect[2:], BOX_BGR[box], 3)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return buf.tobytes()


TODAY = [{"slot": "morning_in", "status": "on_time", "at": "2026-11-25T08:27:40+08:00"}]
# The person in the preview photo is the roster's "obama" (奥巴马).
OBAMA = {**PUNCH, "staff_id": "obama", "status": "on_time", "minutes_off": 0}


def test_the_page_shows_every_state_and_the_camera_fault(write_config, tmp_path, chromium):  # noqa: F811
    # result_s long enough that no look clears before it is checked (no timed assert).
    cfg = kiosk_cfg(write_config, tmp_path / "data", result_s=60)
    health: dict[str, Any] = {"attendance": {"state": "ok", "source": "0", "people": 2}}
    hub = ScreenHub(cfg, status=lambda: {"pending": 0, "connected": True}, health=lambda: health)
    server = ScreenServer(hub, cfg.screen.listen)
    assert server.start(), server.error
    frames = threading.Event()
    preview: dict[str, bytes | None] = {"jpeg": preview_jpeg("amber")}

    def feed() -> None:  # the preview stream, as a running recognition sends it
        while not frames.wait(0.2):
            if preview["jpeg"]:
                hub.frame(preview["jpeg"])

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    punch = {**OBAMA, "today": TODAY}
    night = {
        **OBAMA,
        "slot": "extra",
        "status": "outside_hours",
        "minutes_off": 0,
        "at": "2026-11-25T00:22:05+08:00",
    }
    night["today"] = [{"slot": "extra", "status": "outside_hours", "at": night["at"]}]
    states = [
        # (look, screenshot, tone, texts the page must show, the preview's box)
        (punch, "kiosk-punch.png", "ok", ["奥巴马 · 上午上班 · 08:27 · 正常", "打卡成功"]),
        (
            {"kind": "repeat", "staff_id": "obama", "box": None, "today": TODAY},
            "kiosk-repeat.png",
            "info",
            ["已打卡，请勿重复", "上午上班 08:27 ✓", "下午下班 —"],
        ),
        (
            {"kind": "unknown_face", "staff_id": None, "box": None},
            "kiosk-unknown.png",
            "bad",
            ["未识别", "联系管理员"],
        ),
        (
            {"kind": "low_quality", "quality": "too_small", "box": None},
            "kiosk-low-quality.png",
            "warn",
            ["看不清面部", "请靠近一些"],
        ),
        (
            night,
            "kiosk-outside-hours.png",
            "info",
            ["奥巴马 · 00:22 · 非工作时段打卡", "不计入", "其他时段 00:22 共 1 次"],
        ),
        (
            {"kind": "liveness_failed", "staff_id": "obama", "box": None},
            "kiosk-liveness-failed.png",
            "bad",
            ["未检测到眨眼", "眨眨眼"],
        ),
        ({"kind": "blink", "staff_id": "obama", "box": None}, None, "info", ["请眨眨眼", "奥巴马"]),
    ]

    async def drive() -> None:
        async with aiohttp.ClientSession() as http, http.ws_connect(chromium, max_msg_size=0) as ws:
            cdp = Cdp(ws)
            await cdp.call("Page.enable")
            await cdp.call("Page.navigate", url=f"http://127.0.0.1:{server.port}/")
            await wait_state(cdp, "the preview", lambda p: p["preview"] > 0)
            for look, shot, tone, texts in states:
                box = {"punch": "green", "repeat": "green", "unknown_face": "red"}.get(
                    look["kind"], "amber"
                )
                preview["jpeg"] = preview_jpeg(box, far=look["kind"] == "low_quality")
                hub.look(look)
                page = await wait_state(
                    cdp,
                    f"{look['kind']}: {texts}",
                    lambda p, t=texts, k=look["kind"]: (
                        p["kind"] == k and all(x in p["text"] for x in t)
                    ),
                )
                assert page["tone"] == tone and not page["fault"]
                assert not LATIN.search(page["text"]), page["text"]  # no raw code
                if look["kind"] == "unknown_face":
                    assert "张三" not in page["text"] and "奥巴马" not in page["text"]
                if look["kind"] == "punch":  # the status line agrees with the result
                    assert page["slot"] == (
                        "本次记为：非工作时段打卡" if look is night else "本次记为：上午上班"
                    )
                if shot:
                    await screenshot(cdp, shot)
            # The camera's video ends: the fault replaces the result at once, and the
            # idle prompt never claims punching works.
            health["attendance"] = {"state": "ended", "source": "0", "people": 2}
            preview["jpeg"] = None  # no more frames
            page = await wait_state(cdp, "the camera fault", lambda p: p["kind"] == "fault")
            assert page["fault"] and page["tone"] == "fault"
            assert "打卡暂不可用" in page["text"] and "请联系管理员" in page["text"]
            assert "请正对摄像头打卡" not in page["text"]
            assert "摄像头画面已中断" in page["video"]
            await screenshot(cdp, "kiosk-camera-fault.png")
            # A page opened during the fault shows it from its first status.
            await cdp.call("Page.navigate", url=f"http://127.0.0.1:{server.port}/")
            page = await wait_state(cdp, "the fault at load", lambda p: p["kind"] == "fault")
            assert page["fault"] and "打卡暂不可用" in page["text"]
            # The camera comes back: the idle prompt returns, the fault is gone.
            health["attendance"] = {"state": "ok", "source": "0", "people": 2}
            preview["jpeg"] = preview_jpeg("amber")
            page = await wait_state(
                cdp, "the recovery", lambda p: not p["fault"] and "请正对摄像头打卡" in p["text"]
            )
            assert page["kind"] == "" and "打卡暂不可用" not in page["text"]

    try:
        asyncio.run(drive())
    finally:
        frames.set()
        feeder.join(5)
        server.stop()


async def tech_state(cdp: Cdp) -> dict[str, Any]:
    js = (
        "JSON.stringify({alerts: document.getElementById('alerts').innerText,"
        " camera: document.getElementById('camera').innerText,"
        " workers: document.getElementById('workers').innerText,"
        " title: document.title})"
    )
    r = await cdp.call("Runtime.evaluate", expression=js, returnByValue=True)
    value = r["result"].get("value")
    return json.loads(value) if value else {}


def test_tech_shows_the_last_state_at_load_in_chinese(write_config, tmp_path, chromium):  # noqa: F811
    cfg = kiosk_cfg(write_config, tmp_path / "data")
    health: dict[str, Any] = {
        "attendance": {"state": "fault", "source": "0", "detail": "no frame for 5 s"},
        "uplink": {"state": "ok", "connected": True},
    }
    hub = ScreenHub(cfg, status=lambda: {"pending": 2, "connected": True}, health=lambda: health)
    server = ScreenServer(hub, cfg.screen.listen)
    assert server.start(), server.error
    # No push reaches /tech until the page shows the fault: what it shows, it read at load.
    pushes = {"tech": False}
    publish = hub.publish_status

    def publish_when_allowed(channel: str, msg: dict[str, Any]) -> None:
        if channel != "tech" or pushes["tech"]:
            publish(channel, msg)

    hub.publish_status = publish_when_allowed  # type: ignore[method-assign]

    async def drive() -> None:
        async with aiohttp.ClientSession() as http, http.ws_connect(chromium, max_msg_size=0) as ws:
            cdp = Cdp(ws)
            await cdp.call("Page.enable")
            await cdp.call("Page.navigate", url=f"http://127.0.0.1:{server.port}/tech")
            deadline = time.monotonic() + 30
            page: dict[str, Any] = {}
            while time.monotonic() < deadline and "打卡暂不可用" not in page.get("alerts", ""):
                page = await tech_state(cdp)
                await asyncio.sleep(0.05)
            assert "摄像头故障" in page["alerts"] and "no frame for 5 s" in page["alerts"]
            assert "故障 (fault)" in page["camera"] and "正常 (ok)" in page["workers"]
            assert "上行同步 (uplink)" in page["workers"]
            assert page["title"] == "考勤机 · 维护视图"
            await screenshot(cdp, "kiosk-tech.png")
            assert "tech:status" not in hub.last
            pushes["tech"] = True  # now the pushes: the recovery arrives by one
            health["attendance"] = {"state": "ok", "source": "0"}
            while time.monotonic() < deadline and page["alerts"]:
                page = await tech_state(cdp)
                await asyncio.sleep(0.05)
            assert page["alerts"] == "" and "正常 (ok)" in page["camera"]

    try:
        asyncio.run(drive())
    finally:
        server.stop()


def test_tech_view_reports_outbox_camera_pads_and_problems(write_config, tmp_path):
    cfg = kiosk_cfg(write_config, tmp_path / "data")
    health = {
        "attendance": {"state": "ok", "source": "0", "frames": 10, "people": 3},
        "uplink": {"state": "degraded", "connected": False, "detail": "connection refused"},
        "pads:/dev/ttyUSB0": {
            "state": "fault",
            "pads": {
                "1": {"window": "A01", "online": True},
                "2": {"window": "A02", "online": False},
            },
        },
    }
    hub = ScreenHub(cfg, status=lambda: {"pending": 4, "connected": False}, health=lambda: health)
    server = ScreenServer(hub, cfg.screen.listen)
    assert server.start(), server.error

    async def get(path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{server.port}{path}"
        async with aiohttp.ClientSession() as http, http.get(url) as r:
            return r.status, await r.text()

    try:
        hub.frame(b"\xff\xd8not-really-a-jpeg")
        tech = json.loads(asyncio.run(get("/tech.json"))[1])
        health["attendance"]["frames"] = 40
        time.sleep(0.2)
        tech = json.loads(asyncio.run(get("/tech.json"))[1])
        assert tech["status"]["pending"] == 4 and tech["camera"]["people_enrolled"] == 3
        assert tech["camera"]["recognition_fps"] > 0
        assert tech["pads_online"] == 1 and len(tech["pads"]) == 2
        assert [e["detail"] for e in tech["errors"]] == ["connection refused"]
        assert tech["worker_label"]["pads:/dev/ttyUSB0"] == "评价器总线 /dev/ttyUSB0 (pads)"
        assert tech["worker_text"]["uplink"] == "降级 (degraded)"
        status, page = asyncio.run(get("/tech"))
        assert status == 200 and "EventSource" in page
        status, page = asyncio.run(get("/"))
        assert "http://" not in page and "https://" not in page  # nothing from a CDN
    finally:
        server.stop()


def test_the_indicator_reads_the_outbox_pending_count_and_the_uplink(tmp_path):
    from agent.kiosk.screen import status_source
    from agent.outbox import Outbox

    with Outbox(tmp_path / "outbox.db", device="kiosk-01", site="jiedong", min_free_bytes=0) as box:
        read = status_source(box, lambda: {"uplink": {"connected": True}})
        assert read() == {"pending": 0, "connected": True}
        for _ in range(3):
            box.append("device.test", {})
        assert box.pending_count() == box.stats().pending == 3
        assert status_source(box, dict)() == {"pending": 3, "connected": False}


# --- a real kiosk behind the page -------------------------------------------------------

IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"BM", b"RIFF", b"GIF8")


def images_under(root: Path) -> list[Path]:
    """Every file under ``root`` that starts like an image (JPEG, PNG, BMP, AVI/WebP, GIF)."""
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            with path.open("rb") as f:
                head = f.read(4)
            if any(head.startswith(m) for m in IMAGE_MAGIC):
                found.append(path)
    return found


@pytest.mark.kiosk
@pytest.mark.slow
def test_a_real_kiosk_punch_reaches_the_page_and_no_image_reaches_the_disk(
    write_config,
    tmp_path,
    chromium,  # noqa: F811
):
    from agent.kiosk.attendance_worker import AttendanceWorker
    from agent.kiosk.gallery import gallery_path
    from agent.outbox import Outbox
    from tests import media
    from tests.media import Actor

    # Walks in after 2 s, so the page is open before the decision.
    video = media.cached_video("screen-walk", [Actor("obama2.jpg", 2.0, 7.0)], 8.0)
    data = tmp_path / "data"
    cfg = kiosk_cfg(write_config, data, str(video))
    cfg.attendance.realtime = True  # type: ignore[union-attr]
    media.gallery_of("obama").save(gallery_path(data))
    outbox = Outbox(data / "outbox.db", device="kiosk-01", site="jiedong", min_free_bytes=0)
    hub = ScreenHub(cfg, status=lambda: {"pending": 0, "connected": True})
    server = ScreenServer(hub, cfg.screen.listen)
    assert server.start(), server.error
    punched_at: dict[str, float] = {}
    looks: list[dict] = []
    original = hub.look

    def look(msg: dict) -> dict:
        looks.append(msg)
        if msg["kind"] == "punch":
            punched_at.setdefault("t", time.time() * 1000)
        return original(msg)

    hub.look = look  # type: ignore[method-assign]
    worker = AttendanceWorker(cfg, outbox, screen=hub)

    async def drive() -> tuple[dict, bytes]:
        async with aiohttp.ClientSession() as http, http.ws_connect(chromium, max_msg_size=0) as ws:
            cdp = Cdp(ws)
            await cdp.call("Page.enable")
            await cdp.call("Page.navigate", url=f"http://127.0.0.1:{server.port}/")
            shown = await wait_page(
                cdp, "the punch", lambda p: p["kind"] == "punch" and "奥巴马 · " in p["text"], 60
            )
            # The preview: the MJPEG <img> decoded frames from the live stream.
            width = await cdp.call(
                "Runtime.evaluate",
                expression="document.getElementById('preview').naturalWidth",
                returnByValue=True,
            )
            assert width["result"]["value"] == cfg.screen.preview_width
            await asyncio.sleep(0.6)  # a few more preview frames: the box turns green
            shot = await cdp.call("Page.captureScreenshot", format="png")
            return shown, base64.b64decode(shot["data"])

    try:
        worker.start()
        shown, png = asyncio.run(drive())
    finally:
        worker.stop()
        server.stop()
        outbox.close()
    assert "打卡成功" in shown["text"] or "已记录" in shown["text"]
    print(f"kiosk page: real punch shown after {shown['shown'] - punched_at['t']:.0f} ms")
    assert hub.frames_seen > 0
    punch = next(m for m in looks if m["kind"] == "punch")
    assert punch["box"] and len(punch["box"]) == 4
    # The worker attached the person's punches of today, this one included.
    assert [p["slot"] for p in punch["today"]] == [punch["slot"]]
    # PIPL: the preview lived in memory only; nothing in the data directory is an image.
    assert images_under(data) == []
    keep = os.environ.get("HALL_KIOSK_SCREENSHOT")
    if keep:
        Path(keep).parent.mkdir(parents=True, exist_ok=True)
        Path(keep).write_bytes(png)


def test_blocked_recognition_says_why_on_the_page():
    """Missing model files or another model's gallery stop every punch although the camera
    works: the page says which, in Chinese, as a fault (not 摄像头故障, not 正常)."""
    from agent.kiosk.screen import BLOCKED_TEXT

    for reason in ("models", "gallery"):
        shown = camera_state({"attendance": {"state": "ok", "blocked": reason}})
        assert shown["fault"] is True and shown["text"] == BLOCKED_TEXT[reason]
        assert "摄像头" not in shown["detail"] and not re.search(r"[A-Za-z]", shown["detail"])
    assert camera_state({"attendance": {"state": "ok"}})["fault"] is False
