"""The kiosk screen: a local page for a browser in kiosk mode beside the camera.

What it shows (docs/attendance.md "Kiosk screen"): the live preview with face boxes, the
result of each look in large Chinese text from one table below (a punch and what it counted
as, with the person's punches of today and their month so far; a repeat; an unknown face; a
face too far, blurred or turned; a failed blink), the clock, today's hours and current slot,
a camera fault (打卡暂不可用) while the camera is down, and a quiet connection/backlog
indicator. ``/tech`` is the technician's view, in Chinese: outbox depth, camera state and
frame rates, pads online, the latest problems.

:class:`ScreenHub` is fed from ordinary threads (the attendance worker's drain threads, or
enrolment): ``look(dict)``, ``frame(jpeg)``, ``guide(text)``. :class:`ScreenServer` serves it
with aiohttp (docs/board.md "Why aiohttp") on its own thread and event loop; updates are
pushed as Server-Sent Events, the preview as an MJPEG stream, nothing is polled.

Preview frames exist only in memory here (the latest one) and on the wire to the local page:
never written to disk, never sent off the device (PIPL art. 28-29). A screen that cannot
start (port taken) is logged and the kiosk keeps recognising and punching.

Access (docs/attendance.md "Access and preview"): with ``[screen] token_file`` set, every
route needs the token, given once as ``?token=…`` (answered with an HttpOnly, SameSite=Strict
cookie and a redirect to the same URL without it) or by that cookie; without the token a
request gets a short 401 page, never the stream. ``[screen] preview = false`` leaves the
MJPEG route out (404) and the page without its video area.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from multidict import MultiDict

from agent.config import AgentConfig, is_loopback_listen
from agent.roster import RosterWatch
from contract import SLOT_LABELS
from contract.schedule import DAILY_SLOTS
from contract.site_thread import SiteThread

logger = logging.getLogger(__name__)

STATUS_S = 1.0  # status and technician data are recomputed this often, pushed on change
KEEPALIVE_S = 15.0
BOUNDARY = "hallframe"

IDLE_PROMPT = "请正对摄像头打卡"

# Every outcome the kiosk page can show, in one place; docs/attendance.md "Kiosk screen"
# lists them. tests/test_screen.py checks that each code of contract/ has its text here.
#
# A punch's status: (the word after the time, what the punch counted as, tone). {m} is
# ``minutes_off``. A punch outside the hours or on a rest day is recorded but is none of
# the regulation's four daily punches, so it is not shown as a green success.
PUNCH_TEXT: dict[str, tuple[str, str, str]] = {
    "on_time": ("正常", "打卡成功", "ok"),
    "late": ("迟到 {m} 分钟", "打卡成功，记为迟到", "warn"),
    "early_leave": ("早退 {m} 分钟", "打卡成功，记为早退", "warn"),
    "outside_hours": ("非工作时段打卡", "已记录，不计入上下班打卡", "info"),
    "holiday": ("休息日打卡", "已记录，今日休息", "info"),
}
# attendance.rejected reasons: (title, guidance). The unknown face's text names nobody, not
# even the nearest enrolled person; a failed liveness check may be someone's photo, so it
# names nobody either.
REJECT_TEXT: dict[str, tuple[str, str]] = {
    "unknown_face": ("未识别", "请正对摄像头再试一次\n尚未录入人脸的请联系管理员"),
    "liveness_failed": ("未检测到眨眼", "请正对摄像头，眨眨眼后重新打卡"),
    "low_quality": ("看不清面部", "请靠近一些，正对摄像头，保持不动"),
}
# The face quality problem of a low_quality look (contract FaceQuality): what to change.
QUALITY_TEXT: dict[str, str] = {
    "too_small": "离得太远：请靠近一些",
    "blurred": "画面模糊：请保持不动；光线不足时请站到亮处",
    "turned": "侧脸：请正对摄像头",
}
# Prompts to a recognised person: (title, detail); the detail follows the name.
PROMPT_TEXT: dict[str, tuple[str, str]] = {
    "repeat": ("已打卡，请勿重复", ""),
    "blink": ("请眨眨眼", "正在确认真人"),
}
# The camera's state (contract CameraState): (text, whether punching is unavailable). The
# page turns to a fault while it is; "recovering" has frames again and punches.
CAMERA_TEXT: dict[str, tuple[str, bool]] = {
    "starting": ("摄像头启动中…", False),
    "ok": ("正常", False),
    "recovering": ("摄像头恢复中", False),
    "fault": ("摄像头故障", True),
    "ended": ("摄像头画面已中断", True),
}
# Any component's state (contract ComponentState), on /tech.
COMPONENT_TEXT: dict[str, str] = {"ok": "正常", "degraded": "降级", "fault": "故障"}
# Recognition blocked although the camera works (agent/kiosk/recognition.py health "blocked"):
# the model files are missing, or the gallery was enrolled with another recognizer.
BLOCKED_TEXT: dict[str, str] = {
    "models": "人脸识别模型缺失或损坏",
    "gallery": "人脸库需用新模型重新录入",
}
FAULT_TITLE = "打卡暂不可用"
FAULT_DETAIL = "请联系管理员"
PUNCH_MARK = {"on_time": "✓", "late": "迟到", "early_leave": "早退"}


def punch_status(status: str, minutes: int) -> str:
    word = PUNCH_TEXT.get(status, (status, "", ""))[0]
    return word.format(m=minutes)


# The supervisor's workers on /tech (agent/runtime.py names them; a pad bus is "pads:<port>").
WORKER_LABELS: dict[str, str] = {
    "attendance": "考勤识别",
    "uplink": "上行同步",
    "pads": "评价器总线",
}


def worker_label(name: str) -> str:
    """A worker's name for the technician: 评价器总线 /dev/ttyUSB0 (pads)."""
    kind, _, port = name.partition(":")
    label = WORKER_LABELS.get(kind)
    if label is None:
        return name
    return f"{label} {port} ({kind})" if port else f"{label} ({kind})"


def _state_words(state: str) -> tuple[str, bool]:
    """(Chinese text, is a fault) of a camera or component state; an unknown one is a fault."""
    return CAMERA_TEXT.get(state, (COMPONENT_TEXT.get(state, "状态未知"), True))


def state_text(state: str | None) -> str:
    """A component or camera state in Chinese with its code, for the technician."""
    if state is None:
        return "未知"
    return f"{_state_words(state)[0].rstrip('…')} ({state})"


def camera_state(health: dict[str, Any]) -> dict[str, Any]:
    """The kiosk camera's state for the page, from the attendance worker's health (its
    state is the camera's, or "fault" when the recognition itself failed)."""
    att = health.get("attendance")
    if not isinstance(att, dict):
        return {"state": None, "text": "", "fault": False}
    state = str(att.get("state"))
    text, fault = _state_words(state)
    blocked = BLOCKED_TEXT.get(str(att.get("blocked")))
    if blocked is not None:  # the camera may be fine: say what really stops the punches
        text, fault = blocked, True
    out: dict[str, Any] = {"state": state, "text": text, "fault": fault}
    if fault:
        out.update(title=FAULT_TITLE, detail=f"{text}，{FAULT_DETAIL}")
    return out


def today_rows(punches: list[dict[str, Any]], tz: ZoneInfo) -> list[dict[str, str]]:
    """A person's punches of today as the page lists them: the four daily slots (the first
    punch of an "in" slot, the last of an "out" slot, as the reports count them), then the
    punches outside them."""
    rows = []
    for slot in DAILY_SLOTS:
        mine = [p for p in punches if p.get("slot") == slot]
        row = {"label": SLOT_LABELS[slot], "time": "—", "mark": ""}
        if mine:
            p = mine[0] if slot.endswith("_in") else mine[-1]
            at = datetime.fromisoformat(str(p["at"])).astimezone(tz)
            row.update(time=at.strftime("%H:%M"), mark=PUNCH_MARK.get(str(p.get("status")), ""))
        rows.append(row)
    extra = [p for p in punches if p.get("slot") not in DAILY_SLOTS]
    if extra:
        last = datetime.fromisoformat(str(extra[-1]["at"])).astimezone(tz)
        count = f"共 {len(extra)} 次"
        rows.append(
            {"label": "其他时段", "time": last.strftime("%H:%M"), "mark": count, "wide": "1"}
        )
    return rows


class ScreenHub:
    """The screen's state and its subscribers. Thread-safe entry points; the fan-out runs
    on the server's event loop (``attach``)."""

    def __init__(
        self,
        cfg: AgentConfig,
        status: Callable[[], dict[str, Any]] | None = None,
        health: Callable[[], dict[str, Any]] | None = None,
    ):
        from agent.schedule_file import ScheduleWatch
        from agent.summary_file import SummaryWatch

        self.cfg = cfg
        self.tz = ZoneInfo(cfg.device.timezone)
        self.schedule = ScheduleWatch(cfg.device.data_dir)  # the centre's, as the punches
        self.roster = RosterWatch(cfg.device.data_dir)
        # The centre's month so far per person, shown beside today's punches.
        self.summary = SummaryWatch(cfg.device.data_dir, cfg.device.site)
        self.clock: Callable[[], datetime] = lambda: datetime.now(self.tz)  # tests set it
        self.status_source = status
        self.health_source = health
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subs: dict[str, set[asyncio.Queue[str]]] = {"main": set(), "tech": set()}
        self._frame_subs: set[asyncio.Queue[bytes]] = set()
        self.last: dict[str, str] = {}  # "channel:kind" -> the last message, as JSON
        self.frame_times: deque[float] = deque(maxlen=32)
        self.frames_seen = 0
        self.looks = 0
        self.errors: deque[dict[str, str]] = deque(maxlen=10)
        self._last_problem: dict[str, str] = {}
        self._rec_frames: tuple[float, int] | None = None
        self.recognition_fps: float | None = None

    # --- from any thread ------------------------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self._loop = loop

    def look(self, look: dict[str, Any]) -> dict[str, Any]:
        """Show one look's outcome; returns the message pushed to the page."""
        msg = self.render(look)
        self.looks += 1
        self._push("main", "look", msg)
        return msg

    def guide(self, title: str, detail: str = "", tone: str = "info") -> None:
        """A prompt on the screen (enrolment from the camera)."""
        msg = {"kind": "guide", "title": title, "detail": detail, "tone": tone}
        self._push("main", "guide", msg)  # the latest prompt is replayed to a page opening

    def frame(self, jpeg: bytes) -> None:
        """A preview frame (JPEG bytes, in memory only)."""
        with self._lock:
            self.frames_seen += 1
            self.frame_times.append(time.monotonic())
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closing
                loop.call_soon_threadsafe(self._fan_frame, jpeg)

    # --- rendering ------------------------------------------------------------------

    def render(self, look: dict[str, Any]) -> dict[str, Any]:
        kind = str(look.get("kind"))
        sid = look.get("staff_id") if kind in ("punch", "repeat", "blink") else None
        name = self.roster.name(sid) if sid else ""
        msg: dict[str, Any] = {
            "kind": kind,
            "box": look.get("box"),
            "staff_id": sid,
            "name": name,
            "shown_at": time.time(),
        }
        if kind == "punch":
            msg.update(self._render_punch(look, name))
        elif kind in PROMPT_TEXT:
            title, detail = PROMPT_TEXT[kind]
            msg.update(title=title, detail=" · ".join(t for t in (name, detail) if t))
            msg["tone"] = "info"
        else:
            title, detail = REJECT_TEXT.get(kind, REJECT_TEXT["unknown_face"])
            if kind == "low_quality":
                detail = QUALITY_TEXT.get(str(look.get("quality")), detail)
            msg.update(title=title, detail=detail)
            msg["tone"] = "warn" if kind == "low_quality" else "bad"
        if kind in ("punch", "repeat") and isinstance(look.get("today"), list):
            msg["today"] = today_rows(look["today"], self.tz)
            # Only a summary of this site and month with the person in it: never numbers
            # that are not theirs (agent/summary_file.py).
            month = self.summary.line(str(sid), self.clock().astimezone(self.tz)) if sid else None
            if month:
                msg["month"] = month
        return msg

    def _render_punch(self, look: dict[str, Any], name: str) -> dict[str, str]:
        """Name, slot, time and how the punch counted; the slot is left out for a punch
        outside the four daily slots (its status says what it was)."""
        at = datetime.fromisoformat(look["at"]).astimezone(self.tz)
        status = str(look.get("status"))
        word, counted, tone = PUNCH_TEXT.get(status, (status, "已记录", "info"))
        slot = str(look.get("slot"))
        parts = [name, SLOT_LABELS[slot]] if slot in DAILY_SLOTS else [name]
        parts += [at.strftime("%H:%M"), word.format(m=int(look.get("minutes_off") or 0))]
        # The page's status line says what this punch counted as while it shows, so it never
        # reads "now: outside the hours" beside a punch that counted as 上午上班.
        counted_as = SLOT_LABELS[slot] if slot in DAILY_SLOTS else word.format(m=0)
        return {
            "title": " · ".join(parts),
            "detail": counted,
            "tone": tone,
            "counted_as": counted_as,
        }

    def today(self, now: datetime | None = None) -> dict[str, Any]:
        now = now or datetime.now(self.tz)
        schedule = self.schedule.current()
        plan = schedule.plan(now.date())
        out: dict[str, Any] = {"working": plan.working}
        if plan.working:
            m, a = plan.morning, plan.afternoon
            out["hours"] = (
                f"上午 {m.start:%H:%M}-{m.end:%H:%M} · 下午 {a.start:%H:%M}-{a.end:%H:%M}"
            )
            slot = schedule.classify(now, plan).slot
            out["slot"] = SLOT_LABELS.get(slot, slot) if slot != "extra" else "非工作时段"
        else:
            out["hours"] = "今日休息"
            out["slot"] = ""
        return out

    def status(self) -> dict[str, Any]:
        """What the kiosk page's indicator shows (called on the server's worker thread)."""
        out: dict[str, Any] = {"timezone": str(self.tz), "sound": self.cfg.screen.sound}
        out["result_s"] = self.cfg.screen.result_s
        out["idle"] = IDLE_PROMPT
        out.update(self.today())
        out["camera"] = camera_state(self._health())
        if self.status_source is not None:
            try:
                out.update(self.status_source())
            except Exception as exc:  # the outbox busy: the indicator waits a second
                logger.debug("screen: status not read: %s", exc)
        return out

    def tech(self, status: dict[str, Any] | None = None) -> dict[str, Any]:
        """The technician's view: outbox, camera, recognition, pads, the latest problems.

        ``status`` is :meth:`status` when the caller has just computed it; read here otherwise.
        """
        now = time.monotonic()
        with self._lock:
            times = [t for t in self.frame_times if now - t < 5.0]
        preview_fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 2 else 0.0
        health = self._health()
        att = health.get("attendance", {})
        frames = att.get("frames")
        if isinstance(frames, int):
            if self._rec_frames is not None and now > self._rec_frames[0]:
                dt = now - self._rec_frames[0]
                self.recognition_fps = max(0.0, (frames - self._rec_frames[1]) / dt)
            self._rec_frames = (now, frames)
        pads = [
            {"address": addr, **pad}
            for worker in health.values()
            for addr, pad in (worker.get("pads") or {}).items()
        ]
        stamp = datetime.now(self.tz).strftime("%H:%M:%S")
        for name, worker in health.items():
            problem = worker.get("detail") if worker.get("state") != "ok" else None
            if problem and self._last_problem.get(name) != problem:
                self.errors.appendleft({"at": stamp, "worker": name, "detail": str(problem)})
            self._last_problem[name] = problem or ""
        camera = camera_state(health)
        alerts = []
        if camera["fault"]:
            why = att.get("detail") or state_text(camera["state"])
            alerts.append(f"{FAULT_TITLE}：{camera['text']}（{why}），{FAULT_DETAIL}")
        return {
            "status": self.status() if status is None else status,
            "alerts": alerts,
            "workers": {n: w.get("state", "?") for n, w in health.items()},
            "worker_text": {n: state_text(w.get("state")) for n, w in health.items()},
            "worker_label": {n: worker_label(n) for n in health},
            "camera": {
                "state": att.get("state"),
                "state_text": state_text(att.get("state")) if att else "无摄像头",
                "detail": att.get("detail"),
                "source": att.get("source"),
                "frame_age_s": att.get("frame_age_s"),
                "preview_fps": round(preview_fps, 1),
                "recognition_fps": None
                if self.recognition_fps is None
                else round(self.recognition_fps, 1),
                "people_enrolled": att.get("people"),
                "punches": att.get("punches"),
                "rejected": att.get("rejected"),
            },
            "pads": pads,
            "pads_online": sum(1 for p in pads if p.get("online")),
            "uplink": health.get("uplink", {}),
            "errors": list(self.errors),
        }

    def _health(self) -> dict[str, Any]:
        if self.health_source is None:
            return {}
        try:
            return self.health_source()
        except Exception as exc:  # shown on /tech, never fatal to the page
            return {"screen": {"state": "fault", "detail": f"health(): {exc}"}}

    # --- on the loop ----------------------------------------------------------------

    def _push(self, channel: str, kind: str, msg: dict[str, Any]) -> None:
        text = json.dumps({"type": kind, **msg}, ensure_ascii=False, separators=(",", ":"))
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._fan, channel, kind, text)

    def _fan(self, channel: str, kind: str, text: str) -> None:
        self.last[f"{channel}:{kind}"] = text
        for q in list(self._subs[channel]):
            q.put_nowait(text)

    def _fan_frame(self, jpeg: bytes) -> None:
        for q in list(self._frame_subs):
            if q.full():  # a slow page skips frames; the newest wins
                with contextlib.suppress(asyncio.QueueEmpty):
                    q.get_nowait()
            q.put_nowait(jpeg)

    def publish_status(self, channel: str, msg: dict[str, Any]) -> None:
        text = json.dumps({"type": "status", **msg}, ensure_ascii=False, separators=(",", ":"))
        if self.last.get(f"{channel}:status") != text:
            self._fan(channel, "status", text)


HUB = web.AppKey("hub", ScreenHub)
PREVIEW = web.AppKey("preview", bool)

TOKEN_PARAM = "token"
COOKIE = "hall_screen"
# Chromium keeps no cookie longer than 400 days (RFC 6265bis section 5.5); a kiosk browser
# left running for a year keeps its access without the token in its start URL.
COOKIE_MAX_AGE_S = 400 * 86400

REFUSED_PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>需要访问令牌</title>
<style>body{font-family:"Noto Sans CJK SC",sans-serif;background:#0f1722;color:#eef2f7;
margin:10vh auto;max-width:40em;padding:0 1em;line-height:1.6}code{color:#ffd479}</style>
</head><body>
<h1>需要访问令牌</h1>
<p>本页面需要访问令牌。请技术人员用带令牌的地址打开：<code>http://本机地址:端口/?token=令牌</code>
（令牌在考勤机的 <code>[screen] token_file</code> 文件中）。</p>
<p lang="en">Access token required. Open this page once as <code>/?token=TOKEN</code>; the
token is in the kiosk's <code>[screen] token_file</code> (docs/attendance.md).</p>
</body></html>
"""


def cookie_value(token: str) -> str:
    """What the browser keeps: derived from the token, so the token itself is not stored in
    the browser's cookie jar; a new token invalidates every cookie."""
    return hmac.new(token.encode(), b"hall-agent kiosk page", hashlib.sha256).hexdigest()


def _same(offered: str, expected: str) -> bool:
    # Constant time: a byte-by-byte comparison would tell an attacker how much was right.
    # aiohttp decodes headers with surrogateescape: a non-UTF-8 byte must be a refusal (401),
    # not an encoding error (500 and a traceback in the log).
    return hmac.compare_digest(
        offered.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape")
    )


def _refused() -> web.Response:
    return web.Response(
        status=401,
        text=REFUSED_PAGE,
        content_type="text/html",
        charset="utf-8",
        headers={"Cache-Control": "no-store", "WWW-Authenticate": 'Bearer realm="kiosk page"'},
    )


def _without_token(request: web.Request) -> str:
    """The request's path and query without the token (the redirect target)."""
    rest = MultiDict((k, v) for k, v in request.query.items() if k != TOKEN_PARAM)
    target = str(request.rel_url.with_query(rest or None))
    # "//host/…" would be read as another site's address: never redirect off this page.
    return "/" + target.lstrip("/")


PAGES = ("/", "/tech")


def _grant(response: web.StreamResponse, cookie: str) -> None:
    response.set_cookie(
        COOKIE, cookie, max_age=COOKIE_MAX_AGE_S, path="/", httponly=True, samesite="Strict"
    )


def token_middleware(token: str) -> Any:
    """Every route behind the token: ``?token=`` once (cookie + redirect), then the cookie.

    ``Authorization: Bearer TOKEN`` is accepted too, for a technician's curl of /tech.json.
    """
    cookie = cookie_value(token)

    @web.middleware
    async def require_token(request: web.Request, handler: Any) -> web.StreamResponse:
        offered = request.query.getall(TOKEN_PARAM, [])
        if offered:
            if not all(_same(o, token) for o in offered):
                return _refused()
            # Redirect to the URL without the token, so it stays out of the history and the
            # address bar; the cookie carries the access from now on.
            response = web.Response(status=303, headers={"Location": _without_token(request)})
            _grant(response, cookie)
            response.headers["Cache-Control"] = "no-store"
            return response
        scheme, _, bearer = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and bearer and _same(bearer.strip(), token):
            return await handler(request)
        if _same(request.cookies.get(COOKIE, ""), cookie):
            response = await handler(request)
            # Each load of a page renews the cookie: a screen in daily use never reaches
            # COOKIE_MAX_AGE_S. Streams are prepared already and keep theirs.
            if request.path in PAGES and not response.prepared:
                _grant(response, cookie)
            return response
        return _refused()

    return require_token


def _html(name: str, preview: bool = True) -> web.Response:
    body = resources.files("agent.kiosk").joinpath(name).read_bytes()
    if not preview:
        # The page hides its video area and never asks for the stream (screen_page.html).
        body = body.replace(b"<html ", b'<html data-preview="off" ', 1)
    return web.Response(
        body=body, content_type="text/html", charset="utf-8", headers={"Cache-Control": "no-store"}
    )


async def _index(request: web.Request) -> web.Response:
    return _html("screen_page.html", request.app[PREVIEW])


async def _tech_page(_request: web.Request) -> web.Response:
    return _html("screen_tech.html")


async def _sse(request: web.Request, channel: str) -> web.StreamResponse:
    hub: ScreenHub = request.app[HUB]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    queue: asyncio.Queue[str] = asyncio.Queue()
    hub._subs[channel].add(queue)
    try:
        for kind in ("status", "guide"):
            last = hub.last.get(f"{channel}:{kind}")
            if last:
                await response.write(f"data: {last}\n\n".encode())
        while True:
            try:
                text = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            if not text:
                break
            await response.write(f"data: {text}\n\n".encode())
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        hub._subs[channel].discard(queue)
    return response


async def _events(request: web.Request) -> web.StreamResponse:
    return await _sse(request, "main")


async def _tech_events(request: web.Request) -> web.StreamResponse:
    return await _sse(request, "tech")


async def _tech_json(request: web.Request) -> web.Response:
    hub: ScreenHub = request.app[HUB]
    data = await asyncio.get_running_loop().run_in_executor(None, hub.tech)
    return web.json_response(data, dumps=lambda o: json.dumps(o, ensure_ascii=False))


async def _preview(request: web.Request) -> web.StreamResponse:
    """multipart/x-mixed-replace JPEG frames (MJPEG): an <img> shows it as live video."""
    hub: ScreenHub = request.app[HUB]
    response = web.StreamResponse(
        headers={
            "Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}",
            "Cache-Control": "no-store",
        }
    )
    await response.prepare(request)
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1)
    hub._frame_subs.add(queue)
    try:
        while True:
            jpeg = await queue.get()
            if not jpeg:
                break
            head = (
                f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
            ).encode()
            await response.write(head + jpeg + b"\r\n")
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        hub._frame_subs.discard(queue)
    return response


def make_app(hub: ScreenHub, token: str | None = None, preview: bool = True) -> web.Application:
    """The page's routes; behind ``token`` when given, without the MJPEG route when the
    preview is off (then no frame is served, and none is encoded for it upstream)."""
    app = web.Application(middlewares=[token_middleware(token)] if token else [])
    app[HUB] = hub
    app[PREVIEW] = preview
    app.router.add_get("/", _index)
    app.router.add_get("/events", _events)
    if preview:
        app.router.add_get("/preview.mjpg", _preview)
    app.router.add_get("/tech", _tech_page)
    app.router.add_get("/tech/events", _tech_events)
    app.router.add_get("/tech.json", _tech_json)
    return app


def preview_enabled(cfg: AgentConfig) -> bool:
    """Whether the page shows the live preview: ``[screen] preview`` on and a frame rate."""
    return cfg.screen.preview and cfg.screen.preview_fps > 0


class ScreenServer(SiteThread):
    """The kiosk page on its own thread and event loop; ``start`` returns once it listens.

    A screen that cannot start is logged and the kiosk punches on without its page."""

    def __init__(self, hub: ScreenHub, listen: str):
        super().__init__("screen", listen, "set [screen] listen, or '' for no page")
        self.hub = hub
        # Access and preview follow the hub's [screen] section (docs/attendance.md).
        self.token = hub.cfg.screen.token
        self.preview = preview_enabled(hub.cfg)

    def _ended(self) -> None:
        self.hub.attach(None)

    async def _serve(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        if not self.token and not is_loopback_listen(self.listen):
            # The config refuses this (ScreenSection); a caller that built its own must not
            # put the live camera image on the network either.
            raise RuntimeError(
                f"{self.listen} is not loopback and [screen] token_file is not set: the live "
                "camera image would be open to the network"
            )
        async with self._site(make_app(self.hub, self.token, self.preview)) as host:
            try:
                self.hub.attach(loop)
                logger.info(
                    "screen: http://%s:%d/ (technician: /tech; %s; preview %s)",
                    host,
                    self.port,
                    "token required" if self.token else "no token",
                    "on" if self.preview else "off",
                )
                self._listening()
                while not stop.is_set():
                    status = await loop.run_in_executor(None, self.hub.status)
                    self.hub.publish_status("main", status)
                    if self.hub._subs["tech"]:
                        tech = await loop.run_in_executor(None, self.hub.tech, status)
                        self.hub.publish_status("tech", tech)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), STATUS_S)
            finally:
                # Open streams never end by themselves: end them before the runner waits.
                self.hub.attach(None)
                for subs in self.hub._subs.values():
                    for q in list(subs):
                        q.put_nowait("")
                for fq in list(self.hub._frame_subs):
                    with contextlib.suppress(asyncio.QueueEmpty):
                        fq.get_nowait()
                    fq.put_nowait(b"")


def status_source(outbox: Any, health: Callable[[], dict[str, Any]]) -> Callable[[], dict]:
    """The indicator's data: events waiting in the outbox, and whether the uplink is up."""

    def read() -> dict[str, Any]:
        pending = outbox.pending_count()
        uplink = health().get("uplink", {})
        return {"pending": pending, "connected": bool(uplink.get("connected"))}

    return read
