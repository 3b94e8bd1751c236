"""Who can see the kiosk page (agent/kiosk/screen.py ScreenServer, docs/attendance.md "Access and
preview"): the access token, the cookie it leaves, and the preview switched off.

Real servers on free loopback ports, real HTTP requests (aiohttp's client) and, for what a
browser does with the redirect, the cookie and the hidden video area, Debian's headless
``chromium`` over the DevTools protocol (tests/test_board.py's helpers). Nothing here binds
anything but 127.0.0.1: the server's refusal of an exposed listen is tested before it binds.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.config import AgentConfig, load_agent_config
from agent.kiosk.screen import COOKIE, ScreenHub, ScreenServer, cookie_value
from tests.support import free_port
from tests.test_board import Cdp, chromium  # noqa: F401  (the fixture)

TOKEN = "3f9c2a7d5e8b41c0a6d2e9f7b3c5a1d8"
# A real 32x24 JPEG (half green), so the browser's <img> decodes a frame of the stream.
JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDABALDA4MChAODQ4SERATGCgaGBYWGDEjJR0oOjM9PDkzODdASFxOQERXRTc4"
    "UG1RV19iZ2hnPk1xeXBkeFxlZ2P/2wBDARESEhgVGC8aGi9jQjhCY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2Nj"
    "Y2NjY2NjY2NjY2NjY2NjY2NjY2P/wAARCAAYACADASIAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcI"
    "CQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRol"
    "JicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ip"
    "qrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QAHwEAAwEBAQEBAQEBAQAAAAAA"
    "AAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdhcRMiMoEIFEKRobHBCSMzUvAVYnLR"
    "ChYkNOEl8RcYGRomJygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOEhYaHiImKkpOUlZaX"
    "mJmaoqOkpaanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEA"
    "PwCtRRRXmHjnEUUUV6Z7B29FFFeYeOcRRRRXpnsH/9k="
)
ROUTES = ("/", "/events", "/preview.mjpg", "/tech", "/tech/events", "/tech.json")


def token_file(tmp_path: Path, token: str = TOKEN, mode: int = 0o600) -> Path:
    path = tmp_path / "screen.token"
    path.write_text(token + "\n")
    path.chmod(mode)
    return path


def kiosk(write_config, tmp_path: Path, **screen: Any) -> AgentConfig:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    screen.setdefault("listen", f"127.0.0.1:{free_port()}")
    lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in screen.items())
    return load_agent_config(
        write_config(
            f"""
            [device]
            id = "kiosk-01"
            site = "jiedong"
            data_dir = "{data}"
            [attendance]
            camera = "0"
            [screen]
            {lines}
            """
        )
    )


@contextmanager
def serving(cfg: AgentConfig) -> Iterator[tuple[ScreenHub, str]]:
    hub = ScreenHub(cfg, status=lambda: {"pending": 3, "connected": True})
    server = ScreenServer(hub, cfg.screen.listen)
    assert server.start(), server.error
    try:
        yield hub, f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


class Reply:
    def __init__(self, status: int, headers: Any, head: bytes):
        self.status, self.headers, self.head = status, headers, head

    @property
    def text(self) -> str:
        return self.head.decode("utf-8", "replace")


def get(url: str, hub: ScreenHub | None = None, **kwargs: Any) -> Reply:
    """One GET; a stream's first chunk only (pushing preview frames while it waits)."""

    async def run() -> Reply:
        async with (
            aiohttp.ClientSession() as http,
            http.get(url, allow_redirects=False, **kwargs) as r,
        ):
            feeding = asyncio.create_task(feed_frames(hub)) if hub is not None else None
            try:
                if r.content_type.startswith("multipart/") or r.content_type.endswith("stream"):
                    head = await asyncio.wait_for(r.content.readany(), 30)
                else:
                    head = await r.read()
            finally:
                if feeding is not None:
                    feeding.cancel()
            return Reply(r.status, r.headers, head)

    return asyncio.run(run())


async def feed_frames(hub: ScreenHub) -> None:
    while True:  # the stream sends frames pushed after it subscribed
        await asyncio.to_thread(hub.frame, JPEG)
        await asyncio.sleep(0.05)


def assert_refused(reply: Reply) -> None:
    assert reply.status == 401
    assert reply.headers["Content-Type"].startswith("text/html")
    assert "需要访问令牌" in reply.text and "Access token required" in reply.text
    assert b"\xff\xd8" not in reply.head and "data:" not in reply.text  # no frame, no event


# --- loopback without a token: as before ------------------------------------------------


def test_a_loopback_page_without_a_token_serves_every_route(write_config, tmp_path):
    cfg = kiosk(write_config, tmp_path)
    assert cfg.screen.token is None and not cfg.screen.exposed
    with serving(cfg) as (hub, base):
        page = get(base + "/")
        assert page.status == 200 and 'id="preview"' in page.text
        assert '<html data-preview="off"' not in page.text
        assert get(base + "/events").text.startswith("data: ")
        assert JPEG in get(base + "/preview.mjpg", hub).head
        assert json.loads(get(base + "/tech.json").text)["status"]["pending"] == 3


# --- a token ----------------------------------------------------------------------------


def test_without_the_token_every_route_is_refused(write_config, tmp_path):
    cfg = kiosk(write_config, tmp_path, token_file=str(token_file(tmp_path)))
    assert cfg.screen.token == TOKEN
    with serving(cfg) as (hub, base):
        for path in (*ROUTES, "/no-such-page"):
            assert_refused(get(base + path, hub))
            assert_refused(get(base + path + "?token=not-the-token", hub))
            assert_refused(get(base + path, hub, cookies={COOKIE: "forged"}))
            # The token itself is not the cookie: the cookie is derived from it.
            assert_refused(get(base + path, hub, cookies={COOKIE: TOKEN}))
        # One wrong value among several is a wrong token.
        assert_refused(get(f"{base}/?token={TOKEN}&token=x"))


def test_the_token_in_the_url_leaves_a_strict_http_only_cookie_and_is_redirected_away(
    write_config, tmp_path
):
    cfg = kiosk(write_config, tmp_path, token_file=str(token_file(tmp_path)))
    with serving(cfg) as (_hub, base):
        first = get(f"{base}/tech?x=1&token={TOKEN}&y=2")
        assert first.status == 303
        assert first.headers["Location"] == "/tech?x=1&y=2"  # the token gone, the rest kept
        cookie = first.headers["Set-Cookie"]
        assert cookie.startswith(f"{COOKIE}={cookie_value(TOKEN)};")
        assert TOKEN not in cookie
        attrs = {a.strip().split("=")[0].lower(): a for a in cookie.split(";")[1:]}
        assert {"httponly", "samesite", "path", "max-age"} <= set(attrs)
        assert attrs["samesite"].strip() == "SameSite=Strict" and attrs["path"].strip() == "Path=/"
        root = get(f"{base}/?token={TOKEN}")
        assert root.status == 303 and root.headers["Location"] == "/"
        # Never a redirect to another site ("//host/" is a network-path reference).
        other = get(f"{base}//example.org/?token={TOKEN}")
        assert other.status == 303 and other.headers["Location"] == "/example.org/"


def test_the_cookie_opens_the_page_its_events_and_the_preview(write_config, tmp_path):
    cfg = kiosk(write_config, tmp_path, token_file=str(token_file(tmp_path)))
    jar = {COOKIE: cookie_value(TOKEN)}
    with serving(cfg) as (hub, base):
        page = get(base + "/", cookies=jar)
        assert page.status == 200 and 'id="preview"' in page.text
        # Each page load renews the cookie, so a screen in daily use never sees it expire.
        renewed = page.headers.get("Set-Cookie", "")
        assert renewed.startswith(f"{COOKIE}={cookie_value(TOKEN)}") and "Max-Age=" in renewed
        events = get(base + "/events", cookies=jar)
        assert events.status == 200 and events.text.startswith("data: ")
        assert json.loads(events.text[6:].split("\n")[0])["pending"] == 3
        preview = get(base + "/preview.mjpg", hub, cookies=jar)
        assert preview.status == 200 and JPEG in preview.head
        assert get(base + "/tech/events", cookies=jar).text.startswith("data: ")
        assert get(base + "/tech", cookies=jar).status == 200
        # A technician's curl: the token as a bearer header, nothing kept.
        bearer = get(base + "/tech.json", headers={"Authorization": f"Bearer {TOKEN}"})
        assert bearer.status == 200 and json.loads(bearer.text)["status"]["pending"] == 3
        assert "Set-Cookie" not in bearer.headers
        assert_refused(get(base + "/tech.json", headers={"Authorization": "Bearer nope"}))
        # Bytes that are not UTF-8 in a header are a refusal, not a server error.
        for header in (b"Authorization: Bearer \xff", b"Cookie: " + COOKIE.encode() + b"=\xff"):
            assert raw_status(base, b"/tech.json", header) == 401


def raw_status(base: str, path: bytes, header: bytes) -> int:
    """The status of a GET sent as raw bytes (a client library would refuse to send them)."""
    import socket
    from urllib.parse import urlsplit

    where = urlsplit(base)
    with socket.create_connection((where.hostname, where.port), timeout=10) as sock:
        sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n\r\n")
        return int(sock.recv(64).split(b" ")[1])


def test_an_exposed_listen_without_a_token_is_not_served(write_config, tmp_path):
    # The config refuses it (tests/test_config.py); a server handed one anyway refuses too,
    # before it binds anything.
    cfg = kiosk(write_config, tmp_path)
    server = ScreenServer(ScreenHub(cfg), f"0.0.0.0:{free_port()}")
    assert not server.start()
    assert server.port is None and "token_file" in (server.error or "")


# --- the preview switched off -----------------------------------------------------------


def test_preview_off_has_no_stream_and_a_page_without_video(write_config, tmp_path):
    cfg = kiosk(write_config, tmp_path, token_file=str(token_file(tmp_path)), preview=False)
    jar = {COOKIE: cookie_value(TOKEN)}
    with serving(cfg) as (hub, base):
        assert get(base + "/preview.mjpg", hub, cookies=jar).status == 404
        assert_refused(get(base + "/preview.mjpg", hub))  # the token first, even for a 404
        page = get(base + "/", cookies=jar)
        assert page.status == 200 and '<html data-preview="off" ' in page.text
        assert get(base + "/events", cookies=jar).text.startswith("data: ")
    # preview_fps = 0 is the same switch.
    cfg = kiosk(write_config, tmp_path, preview_fps=0)
    with serving(cfg) as (hub, base):
        assert get(base + "/preview.mjpg", hub).status == 404


# --- in a browser -----------------------------------------------------------------------


async def evaluate(cdp: Cdp, js: str) -> Any:
    r = await cdp.call("Runtime.evaluate", expression=js, returnByValue=True)
    return r["result"].get("value")


async def wait_js(cdp: Cdp, what: str, js: str, timeout: float = 30.0) -> Any:
    """Wait until ``js`` is truthy in the page (a wait, not a speed assertion)."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = await evaluate(cdp, js)
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"the kiosk page never showed {what}: {value!r}")


def pushing_frames(hub: ScreenHub) -> threading.Event:
    stop = threading.Event()

    def push() -> None:
        while not stop.wait(0.05):
            hub.frame(JPEG)

    threading.Thread(target=push, daemon=True).start()
    return stop


FOOTER = "document.querySelector('footer') && document.querySelector('footer').innerText"


def test_a_browser_opens_the_page_once_with_the_token_and_keeps_no_trace_of_it(
    write_config,
    tmp_path,
    chromium,  # noqa: F811
):
    cfg = kiosk(write_config, tmp_path, token_file=str(token_file(tmp_path)))
    with serving(cfg) as (hub, base):
        stop = pushing_frames(hub)

        async def drive() -> None:
            async with (
                aiohttp.ClientSession() as http,
                http.ws_connect(chromium, max_msg_size=0) as ws,
            ):
                cdp = Cdp(ws)
                await cdp.call("Page.enable")
                await cdp.call("Page.navigate", url=f"{base}/")
                await wait_js(
                    cdp, "the refusal", "document.body.innerText.includes('需要访问令牌')"
                )
                await cdp.call("Page.navigate", url=f"{base}/?token={TOKEN}")
                await wait_js(cdp, "the status", f"({FOOTER} || '').includes('待上传 3 条')")
                assert await evaluate(cdp, "location.href") == f"{base}/"
                history = await cdp.call("Page.getNavigationHistory")
                assert not [e["url"] for e in history["entries"] if "token" in e["url"]]
                assert await evaluate(cdp, "document.cookie") == ""  # HttpOnly
                width = "document.getElementById('preview').naturalWidth"
                assert await wait_js(cdp, "a preview frame", width) == 32
                # A reload (no token in the URL) still opens: the cookie carries it.
                await cdp.call("Page.reload")
                await wait_js(cdp, "the status again", f"({FOOTER} || '').includes('待上传')")
                hub.look({"kind": "unknown_face"})
                await wait_js(
                    cdp,
                    "a look",
                    "document.getElementById('result').innerText.includes('未识别')",
                )

        try:
            asyncio.run(drive())
        finally:
            stop.set()


def test_a_browser_shows_results_without_a_video_area_when_the_preview_is_off(
    write_config,
    tmp_path,
    chromium,  # noqa: F811
):
    cfg = kiosk(write_config, tmp_path, preview=False)
    with serving(cfg) as (hub, base):

        async def drive() -> None:
            async with (
                aiohttp.ClientSession() as http,
                http.ws_connect(chromium, max_msg_size=0) as ws,
            ):
                cdp = Cdp(ws)
                await cdp.call("Page.enable")
                await cdp.call("Page.navigate", url=f"{base}/")
                await wait_js(cdp, "the status", f"({FOOTER} || '').includes('待上传 3 条')")
                hub.look({"kind": "unknown_face"})
                await wait_js(
                    cdp,
                    "a look",
                    "document.getElementById('result').innerText.includes('未识别')",
                )
                video = "getComputedStyle(document.getElementById('video')).display"
                assert await evaluate(cdp, video) == "none"
                asked = "performance.getEntriesByType('resource').map(e => e.name).join(' ')"
                assert "preview.mjpg" not in await evaluate(cdp, asked)
                assert await evaluate(cdp, "document.getElementById('preview').src") == ""

        asyncio.run(drive())


# --- no frame encoded when the preview is off --------------------------------------------


@pytest.mark.kiosk
@pytest.mark.parametrize("preview", [True, False])
def test_with_the_preview_off_the_recognition_loop_encodes_no_frame(
    write_config, tmp_path, monkeypatch, preview
):
    import cv2

    from agent.kiosk.attendance_worker import AttendanceWorker
    from agent.outbox import Outbox
    from tests.test_camera import write_numbered_video

    video = write_numbered_video(tmp_path / "camera.avi", 40)
    data = tmp_path / "data"
    data.mkdir()
    cfg = load_agent_config(
        write_config(
            f"""
            [device]
            id = "kiosk-01"
            site = "jiedong"
            data_dir = "{data}"
            [attendance]
            camera = "{video}"
            realtime = false
            isolation = "thread"
            [screen]
            preview = {json.dumps(preview)}
            """
        )
    )
    encoded: list[str] = []
    real_imencode = cv2.imencode

    def imencode(ext: str, *args: Any) -> Any:
        encoded.append(ext)
        return real_imencode(ext, *args)

    monkeypatch.setattr(cv2, "imencode", imencode)  # isolation = "thread": this process
    hub = ScreenHub(cfg)
    outbox = Outbox(data / "outbox.db", device="kiosk-01", site="jiedong", min_free_bytes=0)
    worker = AttendanceWorker(cfg, outbox, screen=hub)
    assert worker._spec()["preview_fps"] == (8.0 if preview else 0)
    try:
        worker.start()
        assert worker.ended.wait(60), "the video never ended"
    finally:
        worker.stop()
        outbox.close()
    if preview:  # the control: the same run with the preview on does encode frames
        assert ".jpg" in encoded and hub.frames_seen > 0
    else:
        assert encoded == [] and hub.frames_seen == 0
