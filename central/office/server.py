"""Serves the office's pages for 差评 cases beside the collector (docs/office.md).

aiohttp on its own thread and event loop, as the hall board (central/board/server.py), with
its own store connection used from one worker thread (the stores are synchronous). Password
checks (scrypt: a few hundred milliseconds, 128 MiB each) run on two more threads, so a
login never stalls the pages and no more than two checks hold memory at once.

``/today`` (central/office/today.py) is live: its stream ``/today/events`` (Server-Sent
Events, as the hall board's) needs the session too, checks it again every few seconds and
ends when it ends.

Every page needs a session (central/office/sessions.py); every POST also needs the session's
CSRF token (the login form: the token of its own cookie) and, when the browser names one, an
Origin (or Referer) of this host. A refused POST changes nothing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import ipaddress
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from aiohttp import web

from central.cases.desk import NOTE_MAX, CaseDesk, case_deadlines, due
from central.cases.states import (
    ACTION_LABELS,
    OPEN,
    STATE_LABELS,
    TRANSITIONS,
    CaseMoveError,
    CaseState,
)
from central.config import CentralConfig
from central.office import pages
from central.office.passwords import dummy_hash, verify_password
from central.office.sessions import LoginLimiter, Session, Sessions, same_token
from central.office.today import TodayFeed
from contract.site_thread import SiteThread

logger = logging.getLogger(__name__)

COOKIE = "hall_office"
LOGIN_COOKIE = "hall_office_login"  # the login form's own CSRF token (no session yet)
MAX_BODY = 64 * 1024
SESSION_CHECK_S = 5.0  # an open /today/events stream checks its session this often
KEEPALIVE_S = 15.0  # an SSE comment so proxies and the browser keep the stream open
AUDIT_SHOWN = 200
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_FILTER_TEXT = re.compile(r"^[A-Za-z0-9_.-]{0,64}$")

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "object-src 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

Clock = Callable[[], datetime]
T = TypeVar("T")


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Office:
    """The pages' state: the store, the case desk, sessions and the login limit."""

    def __init__(self, cfg: CentralConfig, store: Any, clock: Clock | None = None):
        office = cfg.office
        self.cfg = cfg
        self.store = store
        self.clock = clock or _utc_now
        self.tz = ZoneInfo(cfg.central.timezone)
        self.desk = CaseDesk(store, case_deadlines(cfg))
        self.sessions = Sessions(
            timedelta(minutes=office.session_idle_min), timedelta(hours=office.session_max_hours)
        )
        self.limiter = LoginLimiter(
            office.login_attempts, timedelta(minutes=office.login_window_min)
        )
        self._db = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="office-store")
        self._hashes = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="office-hash")
        self.today = TodayFeed(cfg, store, self.clock, self._db, pages.today_sections)

    async def db(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db, functools.partial(fn, *args, **kw))

    async def check_password(self, password: str, stored: str) -> bool:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._hashes, verify_password, password, stored)

    async def audit(self, user: str, action: str, target: str, detail: str, address: str) -> None:
        await self.db(self.store.record_audit, user, action, target, detail, address, self.clock())

    def close(self) -> None:
        self._db.shutdown(wait=True)
        self._hashes.shutdown(wait=True)


OFFICE = web.AppKey("office", Office)


# --- helpers ---------------------------------------------------------------------------


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def client_address(request: web.Request, behind_proxy: bool) -> str:
    """The client's address; behind a proxy on this host, the one it names in X-Real-IP."""
    remote = request.remote or ""
    if behind_proxy:
        try:
            loopback = ipaddress.ip_address(remote).is_loopback
        except ValueError:
            loopback = False
        real = request.headers.get("X-Real-IP", "").strip()
        if loopback and real:
            try:
                return str(ipaddress.ip_address(real))
            except ValueError:
                pass
    return remote


def same_origin(request: web.Request) -> bool:
    """The browser's Origin (or, without one, its Referer) names this host; a request naming
    neither is left to the CSRF token."""
    host = request.headers.get("Host", "")
    origin = request.headers.get("Origin")
    if origin is not None:
        return origin != "null" and urlsplit(origin).netloc == host
    referer = request.headers.get("Referer")
    if referer:
        return urlsplit(referer).netloc == host
    return True


async def session_of(request: web.Request) -> Session | None:
    """The request's live session, checked against its account (disabled, password changed
    or removed: the session ends); the account's role now."""
    office = request.app[OFFICE]
    token = request.cookies.get(COOKIE)
    session = office.sessions.get(token, office.clock())
    if session is None:
        return None
    user = await office.db(office.store.user, session.user)
    if user is None or user.disabled or user.password_hash != session.password_hash:
        office.sessions.end(token)
        return None
    session.role = user.role
    return session


def _frame(session: Session) -> dict[str, str]:
    return {"user": session.user, "role": session.role, "csrf": session.csrf}


def _forbidden(text: str = "请求无效或已过期，请刷新页面后重试。") -> web.Response:
    return _html(pages.message_page("拒绝访问", text), 403)


async def _posted(request: web.Request, session: Session | None) -> dict[str, str] | None:
    """The form of a POST that passes the checks (session, CSRF token, origin), or None."""
    if session is None or not same_origin(request):
        return None
    form = await request.post()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    if not same_token(fields.get("csrf"), session.csrf):
        return None
    return fields


# --- login and logout --------------------------------------------------------------------


def _set_session_cookie(office: Office, response: web.Response, token: str) -> None:
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="Strict",
        path="/",
        secure=office.cfg.office.secure_cookies,
    )


def _login_form(office: Office, error: str | None = None, name: str = "", status: int = 200):
    token = secrets.token_urlsafe(32)
    response = _html(pages.login_page(token, error, name), status)
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        httponly=True,
        samesite="Strict",
        path="/login",
        secure=office.cfg.office.secure_cookies,
    )
    return response


async def _login_get(request: web.Request) -> web.Response:
    office = request.app[OFFICE]
    if await session_of(request) is not None:
        return _redirect("/cases")
    return _login_form(office)


async def _login_post(request: web.Request) -> web.Response:
    office = request.app[OFFICE]
    form = await request.post()
    token = form.get("csrf")
    if (
        not same_origin(request)
        or not isinstance(token, str)
        or not same_token(request.cookies.get(LOGIN_COOKIE), token)
    ):
        return _forbidden("登录页面已过期，请重新打开登录页面。")
    name = str(form.get("name", "")).strip()[:64]
    password = str(form.get("password", ""))[:1024]
    address = client_address(request, office.cfg.office.behind_proxy)
    keys = [f"addr:{address}", f"user:{name}"]
    now = office.clock()
    minutes = office.cfg.office.login_window_min
    too_many = f"登录失败次数过多，请 {minutes} 分钟后再试。"
    # A check is reserved before the slow hash and counted with the failures: logins sent in
    # parallel cannot all pass the limit while their hashes are being computed.
    if not office.limiter.begin(keys, now):
        if office.limiter.first_report(keys, now):
            await office.audit(name or "-", "login.locked", f"user:{name}", "refused", address)
        return _login_form(office, too_many, name, 429)
    try:
        user = await office.db(office.store.user, name) if name else None
        usable = user is not None and not user.disabled
        stored = user.password_hash if usable and user is not None else dummy_hash()
        matched = await office.check_password(password, stored)
    finally:
        office.limiter.finish(keys)
    if not (usable and matched) or user is None:
        why = "no such user" if user is None else "disabled" if user.disabled else "wrong password"
        reached = office.limiter.fail(keys, now)
        await office.audit(name or "-", "login.failed", f"user:{name}", why, address)
        if reached:
            office.limiter.first_report(keys, now)
            await office.audit(
                name or "-",
                "login.locked",
                f"user:{name}",
                f"{office.limiter.attempts} failures in {minutes} min",
                address,
            )
            return _login_form(office, too_many, name, 429)
        return _login_form(office, "用户名或密码错误。", name, 401)
    office.limiter.succeed([f"user:{name}"])
    office.sessions.end(request.cookies.get(COOKIE))  # the browser's earlier session, if any
    session_token = office.sessions.create(user.name, user.role, user.password_hash, now)
    await office.audit(user.name, "login.ok", f"user:{user.name}", user.role, address)
    response = _redirect("/cases")
    _set_session_cookie(office, response, session_token)
    response.del_cookie(LOGIN_COOKIE, path="/login")
    return response


async def _logout(request: web.Request) -> web.Response:
    office = request.app[OFFICE]
    session = await session_of(request)
    if session is None:
        return _redirect("/login")
    if await _posted(request, session) is None:
        return _forbidden()
    office.sessions.end(request.cookies.get(COOKIE))
    address = client_address(request, office.cfg.office.behind_proxy)
    await office.audit(session.user, "logout", f"user:{session.user}", "", address)
    response = _redirect("/login")
    response.del_cookie(COOKIE, path="/")
    return response


# --- cases ---------------------------------------------------------------------------------


def _month_span(text: str, tz: ZoneInfo) -> tuple[datetime, datetime] | None:
    found = _MONTH.match(text)
    if not found:
        return None
    year, month = int(found.group(1)), int(found.group(2))
    start = datetime(year, month, 1, tzinfo=tz)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=tz)
    return start, end


def _staff_names(store: Any) -> dict[tuple[str, str], str]:
    names = {}
    for roster in store.rosters():
        for entry in roster.roster.get("staff", []):
            names[(roster.site, str(entry.get("id")))] = str(entry.get("name", ""))
    return names


def _list_cases(office: Office, filters: pages.Filters) -> tuple[list[Any], str | None]:
    query: dict[str, Any] = {}
    error = None
    if filters.state in ("open", "overdue"):
        query["states"] = sorted(OPEN)
    elif filters.state != "all":
        try:
            query["states"] = [CaseState(filters.state).value]
        except ValueError:
            return [], "状态筛选无效。"
    if filters.month:
        span = _month_span(filters.month, office.tz)
        if span is None:
            return [], "月份格式应为 YYYY-MM，例如 2026-03。"
        query["rated_from"], query["rated_to"] = span
    for key, value, label in (
        ("window", filters.window, "窗口"),
        ("staff_id", filters.staff, "工号"),
    ):
        if value:
            if not _FILTER_TEXT.match(value):
                return [], f"{label}筛选只能包含字母、数字和 . _ -。"
            query[key] = value
    cases = office.store.cases(**query)
    now = office.clock()
    if filters.state == "overdue":
        cases = [c for c in cases if due(c, now).overdue]

    def order(case: Any) -> tuple[Any, ...]:
        d = due(case, now)
        return (d.deadline is None, d.deadline or now, case.id)

    return sorted(cases, key=order), error


async def _cases(request: web.Request) -> web.Response:
    office = request.app[OFFICE]
    session = await session_of(request)
    if session is None:
        return _redirect("/login")
    q = request.query
    filters = pages.Filters(
        state=q.get("state", "open") or "open",
        window=q.get("window", "").strip()[:64],
        staff=q.get("staff", "").strip()[:64],
        month=q.get("month", "").strip()[:16],
    )
    cases, error = await office.db(_list_cases, office, filters)
    names = await office.db(_staff_names, office.store)
    by_id = {c.staff_id: names.get((c.site, c.staff_id or ""), "") for c in cases}
    text = pages.cases_page(
        cases, filters, office.clock(), office.tz, by_id, error, **_frame(session)
    )
    return _html(text, 400 if error else 200)


def _case_view(office: Office, case_id: int) -> tuple[Any, list[Any], str] | None:
    case = office.store.case(case_id)
    if case is None:
        return None
    log = office.store.case_log([case_id])[case_id]
    name = _staff_names(office.store).get((case.site, case.staff_id or ""), "")
    return case, log, name


def _case_id(request: web.Request) -> int | None:
    text = request.match_info["case_id"]
    return int(text) if text.isdigit() and len(text) < 19 else None


async def _render_case(
    request: web.Request,
    session: Session,
    case_id: int,
    error: str | None = None,
    notice: str | None = None,
    status: int = 200,
) -> web.Response:
    office = request.app[OFFICE]
    view = await office.db(_case_view, office, case_id)
    if view is None:
        return _html(pages.message_page("未找到", f"没有编号为 {case_id} 的案件。"), 404)
    case, log, name = view
    text = pages.case_page(
        case,
        log,
        office.clock(),
        office.tz,
        name,
        error,
        notice,
        **_frame(session),
    )
    return _html(text, status)


async def _case(request: web.Request) -> web.Response:
    session = await session_of(request)
    if session is None:
        return _redirect("/login")
    case_id = _case_id(request)
    if case_id is None:
        return _html(pages.message_page("未找到", "案件编号无效。"), 404)
    moved = request.query.get("moved", "")
    notice = None
    if moved in {s.value for s in CaseState} and CaseState(moved) in ACTION_LABELS:
        notice = f"已办理：{ACTION_LABELS[CaseState(moved)]}。"
    return await _render_case(request, session, case_id, notice=notice)


async def _move(request: web.Request) -> web.Response:
    office = request.app[OFFICE]
    session = await session_of(request)
    form = await _posted(request, session)
    if form is None or session is None:
        return _forbidden()
    case_id = _case_id(request)
    if case_id is None:
        return _html(pages.message_page("未找到", "案件编号无效。"), 404)
    case = await office.db(office.store.case, case_id)
    if case is None:
        return _html(pages.message_page("未找到", f"没有编号为 {case_id} 的案件。"), 404)
    shown, target, note = form.get("from", ""), form.get("target", ""), form.get("note", "")
    current = CaseState(case.state)
    if shown != case.state:
        # The page the clerk acted on was out of date: someone moved the case meanwhile.
        error = f"案件已被他人办理，当前状态为「{STATE_LABELS[current]}」，请核对后再办理。"
        return await _render_case(request, session, case_id, error, status=409)
    allowed = {s.value: s for s in TRANSITIONS[current]}
    if target not in allowed:
        error = f"「{STATE_LABELS[current]}」状态的案件不能办理该操作。"
        return await _render_case(request, session, case_id, error, status=409)
    if len(note) > NOTE_MAX:
        error = f"办理说明不能超过 {NOTE_MAX} 字。"
        return await _render_case(request, session, case_id, error, status=400)
    address = client_address(request, office.cfg.office.behind_proxy)
    try:
        await office.db(
            functools.partial(office.desk.move, expected=case.state),
            case_id,
            target,
            session.user,
            note,
            address,
            office.clock(),
        )
    except CaseMoveError as exc:
        logger.info("office: %s could not move case %d: %s", session.user, case_id, exc)
        fresh = await office.db(office.store.case, case_id)
        now_state = STATE_LABELS[CaseState(fresh.state)] if fresh else "未知"
        error = f"办理未成功：案件已被他人办理，当前状态为「{now_state}」。"
        return await _render_case(request, session, case_id, error, status=409)
    return _redirect(f"/cases/{case_id}?moved={allowed[target].value}")


# --- admin ---------------------------------------------------------------------------------


async def _admin(request: web.Request) -> Session | web.Response:
    session = await session_of(request)
    if session is None:
        return _redirect("/login")
    if session.role != "admin":
        return _html(pages.message_page("无权访问", "该页面仅限管理员。", **_frame(session)), 403)
    return session


async def _audit(request: web.Request) -> web.Response:
    office = request.app[OFFICE]
    found = await _admin(request)
    if isinstance(found, web.Response):
        return found
    user = request.query.get("user", "").strip()[:64]
    entries = await office.db(office.store.audit_log, AUDIT_SHOWN, user or None)
    return _html(pages.audit_page(entries, office.tz, user, **_frame(found)))


async def _users(request: web.Request) -> web.Response:
    office = request.app[OFFICE]
    found = await _admin(request)
    if isinstance(found, web.Response):
        return found
    users = await office.db(office.store.users)
    return _html(pages.users_page(users, office.tz, **_frame(found)))


# --- today, live -----------------------------------------------------------------------------


async def _today(request: web.Request) -> web.Response:
    office = request.app[OFFICE]
    session = await session_of(request)
    if session is None:
        return _redirect("/login")
    await office.today.refresh()
    state = json.loads(office.today.current)["state"] if office.today.current else {}
    return _html(pages.today_page(state, **_frame(session)))


async def _still_signed_in(office: Office, token: str | None) -> bool:
    """The stream's session is live (without restarting its idle time) and its account
    unchanged; otherwise the session ends, as on any request."""
    session = office.sessions.peek(token, office.clock())
    if session is None:
        return False
    user = await office.db(office.store.user, session.user)
    if user is None or user.disabled or user.password_hash != session.password_hash:
        office.sessions.end(token)
        return False
    return True


async def _today_events(request: web.Request) -> web.StreamResponse:
    office = request.app[OFFICE]
    if await session_of(request) is None:
        return web.Response(status=401, text="请先登录。", content_type="text/plain")
    token = request.cookies.get(COOKIE)
    response = web.StreamResponse(
        headers={
            **SECURITY_HEADERS,
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    feed = office.today
    if not feed.subscribers:  # nobody listened: what the feed holds may be old
        await feed.refresh()
    queue: asyncio.Queue[str] = asyncio.Queue()
    feed.subscribers.add(queue)
    loop = asyncio.get_running_loop()
    checked = quiet = loop.time()
    try:
        if feed.current:
            await response.write(f"data: {feed.current}\n\n".encode())
        while True:
            try:
                text = await asyncio.wait_for(queue.get(), SESSION_CHECK_S)
            except TimeoutError:
                text = None
            now = loop.time()
            if now - checked >= SESSION_CHECK_S:
                checked = now
                if not await _still_signed_in(office, token):
                    await response.write(b"event: ended\ndata: session\n\n")
                    break
            if text == "":  # the server is stopping
                break
            if text is not None:
                await response.write(f"data: {text}\n\n".encode())
                quiet = now
            elif now - quiet >= KEEPALIVE_S:
                await response.write(b": keepalive\n\n")
                quiet = now
    except ConnectionResetError:
        pass
    finally:
        feed.subscribers.discard(queue)
    return response


async def _today_js(_request: web.Request) -> web.Response:
    js = resources.files("central.office").joinpath("today.js").read_text("utf-8")
    return web.Response(text=js, content_type="text/javascript", charset="utf-8")


async def _index(request: web.Request) -> web.Response:
    return _redirect("/cases")


async def _css(_request: web.Request) -> web.Response:
    css = resources.files("central.office").joinpath("office.css").read_text("utf-8")
    return web.Response(text=css, content_type="text/css", charset="utf-8")


@web.middleware
async def _headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # an unknown path, a wrong method, a body too large
        response = _html(pages.message_page("错误", exc.reason), exc.status)
    except Exception:
        logger.exception("office: %s %s failed", request.method, request.path)
        response = _html(pages.message_page("错误", "服务器内部错误，请稍后重试。"), 500)
    response.headers.update(SECURITY_HEADERS)
    if request.path not in ("/office.css", "/today.js"):
        response.headers["Cache-Control"] = "no-store"
    return response


def make_app(office: Office) -> web.Application:
    app = web.Application(middlewares=[_headers], client_max_size=MAX_BODY)
    app[OFFICE] = office
    app.router.add_get("/", _index)
    app.router.add_get("/office.css", _css)
    app.router.add_get("/login", _login_get)
    app.router.add_post("/login", _login_post)
    app.router.add_post("/logout", _logout)
    app.router.add_get("/cases", _cases)
    app.router.add_get("/cases/{case_id}", _case)
    app.router.add_post("/cases/{case_id}/move", _move)
    app.router.add_get("/today", _today)
    app.router.add_get("/today/events", _today_events)
    app.router.add_get("/today.js", _today_js)
    app.router.add_get("/audit", _audit)
    app.router.add_get("/users", _users)
    return app


class OfficeServer(SiteThread):
    """The office's pages on their own thread and event loop; ``start`` returns once they
    listen. Pages that cannot start are logged and the collector goes on without them."""

    def __init__(self, cfg: CentralConfig, clock: Clock | None = None):
        super().__init__("office", cfg.office.listen, "set [office] listen, or '' for none")
        self.cfg = cfg
        self._clock = clock  # tests set the time (session idle, deadlines)
        self.office: Office | None = None

    async def _serve(self, stop: asyncio.Event) -> None:
        from central.cases.desk import use_config
        from central.store import open_store

        store = await asyncio.get_running_loop().run_in_executor(
            None,
            open_store,
            self.cfg.store.url,
            self.cfg.store.pg_schema,
            self.cfg.store.password,
            True,
            self.cfg.central.timezone,
        )
        use_config(store, self.cfg)
        office = Office(self.cfg, store, self._clock)
        self.office = office
        try:
            async with self._site(make_app(office)) as host:
                logger.info("office: http://%s:%d/", host, self.port)
                self._listening()
                try:
                    await office.today.run(stop)
                finally:
                    # Open event streams never end by themselves: end them before the runner
                    # waits.
                    office.today.end_all()
        finally:
            office.close()
            store.close()
