"""The office's pages for 差评 cases (central/office/): a real server on a free port over a
real store, driven over HTTP and, for the whole loop of a case, by headless Chromium.

Cases are opened the way the collector opens them: a rating at level 1 or 2 written with
``store.write_batches``. The HTTP tests speak plain http.client so that every header and
cookie attribute is seen as sent.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from central.config import CentralConfig
from central.office.passwords import (
    MIN_LENGTH,
    PasswordError,
    check_name,
    check_password,
    hash_password,
    needs_rehash,
    verify_password,
)
from central.office.server import OfficeServer
from central.store import BatchWrite, EventRow, open_store
from central.store.records import utcnow
from scripts.cdp import Cdp, headless_chromium
from tests.conftest import require_or_skip
from tests.support import PG_URL, pg_available, pg_schema, wait_for

REPO = Path(__file__).resolve().parents[1]
TZ = ZoneInfo("Asia/Shanghai")
PASSWORD = "correct-horse-1"
ROSTER = {
    "v": 1,
    "version": 1,
    "staff": [
        {"id": "S001", "name": "张三", "role": "staff", "window": "A01"},
        {"id": "S002", "name": "李四", "role": "staff", "window": "A02"},
    ],
}
LOOP = ["verified", "appealed", "upheld", "rectified", "answered", "followed_up", "closed"]


def office_config(tmp_path: Path, **office: Any) -> CentralConfig:
    return CentralConfig.model_validate(
        {
            "store": {"url": f"sqlite:///{tmp_path}/hall.db"},
            "board": {"listen": ""},
            "office": {"listen": "127.0.0.1:0", **office},
        }
    )


class Pad:
    """A window device's ratings (docs/topics.md), one seq counter."""

    def __init__(self, device: str = "win-01", site: str = "jiedong"):
        self.device, self.site, self.seq = device, site, 0

    def rating(self, level: int, at: datetime, window: str = "A01", **data: Any) -> EventRow:
        self.seq += 1
        body = {
            "window": window,
            "pad": 1,
            "staff_id": "S001",
            "level": level,
            "label": "非常不满意" if level == 1 else "不满意",
            "reasons": ["办事效率低"],
            "invite_id": None,
            **data,
        }
        return EventRow(
            id=str(uuid.uuid4()),
            device=self.device,
            site=self.site,
            seq=self.seq,
            type="rating.submitted",
            at=at,
            at_text=at.isoformat(timespec="milliseconds"),
            clock="synced",
            data=json.dumps(body, ensure_ascii=False),
        )


def open_case(store: Any, pad: Pad, level: int = 1, at: datetime | None = None, **data: Any) -> int:
    """A 差评 written as the collector writes it; returns the case it opened."""
    event = pad.rating(level, at or datetime.now(TZ) - timedelta(minutes=5), **data)
    store.write_batches([BatchWrite([event], [])])
    return store.cases_for_ratings([event.id])[event.id].id


def add_user(store: Any, name: str, role: str = "clerk", password: str = PASSWORD) -> None:
    store.add_user(name, role, hash_password(password), utcnow())


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: str

    def cookies(self) -> list[str]:
        return self.headers.get_all("Set-Cookie") or []


CSRF = re.compile(r'name="csrf" value="([^"]*)"')


class Client:
    """One browser's worth of cookies over http.client; redirects are not followed."""

    def __init__(self, port: int):
        self.port = port
        self.host = f"127.0.0.1:{port}"
        self.cookies: dict[str, str] = {}

    def request(
        self,
        method: str,
        path: str,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        sent = dict(headers or {})
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form)
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body, sent)
            r = conn.getresponse()
            reply = Reply(r.status, r.msg, r.read().decode("utf-8"))
        finally:
            conn.close()
        for cookie in reply.cookies():
            name, _, rest = cookie.partition("=")
            value = rest.split(";")[0]
            if "Max-Age=0" in cookie:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return reply

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post(self, path: str, form: dict[str, str], **headers: str) -> Reply:
        sent = {"Origin": f"http://{self.host}", **headers}
        return self.request("POST", path, form, {k: v for k, v in sent.items() if v})

    def login(self, name: str, password: str = PASSWORD) -> Reply:
        page = self.get("/login")
        token = CSRF.search(page.body)
        assert token, page.body
        return self.post("/login", {"csrf": token.group(1), "name": name, "password": password})

    def csrf(self, path: str = "/cases") -> str:
        page = self.get(path)
        assert page.status == 200, (page.status, page.body)
        found = CSRF.search(page.body)
        assert found, page.body
        return found.group(1)

    def move(self, case_id: int, target: str, from_state: str, note: str = "", **kw: str) -> Reply:
        token = kw.pop("csrf", None)
        if token is None:
            token = self.csrf(f"/cases/{case_id}")
        form = {"csrf": token, "from": from_state, "target": target, "note": note}
        return self.post(f"/cases/{case_id}/move", form, **kw)


class Clock:
    """The pages' clock, set by the test (idle sessions, the login window)."""

    def __init__(self) -> None:
        self.shift = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.shift


@dataclass
class Running:
    server: OfficeServer
    store: Any
    cfg: CentralConfig
    clock: Clock
    pad: Pad

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port

    def client(self) -> Client:
        return Client(self.port)

    def state(self, case_id: int) -> str:
        case = self.store.case(case_id)
        assert case is not None
        return case.state


def serve(cfg: CentralConfig) -> Iterator[Running]:
    clock = Clock()
    store = open_store(cfg.store.url, cfg.store.pg_schema)  # the collector's own connection
    store.put_roster("jiedong", ROSTER)
    server = OfficeServer(cfg, clock=clock)
    assert server.start(), server.error
    try:
        yield Running(server, store, cfg, clock, Pad())
    finally:
        server.stop()
        store.close()


@pytest.fixture
def office(tmp_path: Path) -> Iterator[Running]:
    yield from serve(office_config(tmp_path, login_attempts=3))


@pytest.fixture(params=["sqlite", "postgresql"])
def any_office(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Running]:
    cfg = office_config(tmp_path)
    if request.param == "sqlite":
        yield from serve(cfg)
        return
    if not pg_available():
        require_or_skip(f"PostgreSQL not reachable at {PG_URL}")
    with pg_schema() as schema:
        cfg.store.url, cfg.store.pg_schema = PG_URL, schema
        yield from serve(cfg)


# --- passwords and accounts --------------------------------------------------------------


def test_passwords_are_scrypt_hashes_with_their_parameters_and_a_salt():
    stored = hash_password(PASSWORD)
    kind, n, r, p, salt, digest = stored.split("$")
    assert (kind, n, r, p) == ("scrypt", str(2**17), "8", "1")
    assert PASSWORD not in stored and len(salt) >= 20 and len(digest) >= 40
    assert hash_password(PASSWORD) != stored  # a new salt every time
    assert verify_password(PASSWORD, stored)
    assert not verify_password(PASSWORD + "x", stored)
    assert not needs_rehash(stored)
    # A malformed or hostile row matches nothing and costs nothing.
    for bad in (
        "",
        PASSWORD,
        "scrypt$0$8$1$AAAA$AAAA",
        f"scrypt${2**30}$8$1$AAAAAAAAAAAA$" + "A" * 43,
    ):
        assert not verify_password(PASSWORD, bad)
    with pytest.raises(PasswordError, match=f"at least {MIN_LENGTH}"):
        check_password("short")
    with pytest.raises(PasswordError, match="reserved"):
        check_name("system")
    with pytest.raises(PasswordError, match="lower-case"):
        check_name("Bad Name")


def test_hall_central_users_add_from_stdin_then_the_login_works(tmp_path):
    cfg = office_config(tmp_path)
    conf = tmp_path / "central.toml"
    conf.write_text(f'[store]\nurl = "{cfg.store.url}"\n', encoding="utf-8")

    def users(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "central.cli", "-c", str(conf), "users", *args],
            input=stdin,
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
        )

    done = users("add", "wang", "--role", "clerk", "--password-stdin", stdin=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    again = users("add", "wang", "--role", "admin", "--password-stdin", stdin=PASSWORD + "\n")
    assert again.returncode == 1 and "exists already" in again.stderr
    short = users("add", "li", "--role", "clerk", "--password-stdin", stdin="short\n")
    assert short.returncode == 2 and f"at least {MIN_LENGTH}" in short.stderr
    listed = users("list")
    assert listed.returncode == 0 and "wang\tclerk\tactive" in listed.stdout
    assert "li" not in listed.stdout
    for running in serve(cfg):
        stored = running.store.user("wang")
        assert stored is not None and stored.password_hash.startswith("scrypt$131072$8$1$")
        assert PASSWORD not in stored.password_hash
        client = running.client()
        reply = client.login("wang")
        assert reply.status == 303 and reply.headers["Location"] == "/cases"
        assert client.get("/cases").status == 200
        # A password changed from the shell ends the session that is open.
        changed = users("passwd", "wang", "--password-stdin", stdin="another-pass-2\n")
        assert changed.returncode == 0, changed.stderr
        assert client.get("/cases").status == 303
        assert client.login("wang").status == 401
        assert client.login("wang", "another-pass-2").status == 303
        assert users("disable", "wang").returncode == 0
        assert client.get("/cases").status == 303  # a disabled account's session ends
        assert client.login("wang", "another-pass-2").status == 401
        assert users("enable", "wang").returncode == 0
        assert client.login("wang", "another-pass-2").status == 303
        actions = [a.action for a in running.store.audit_log(50, user="shell")]
        assert actions.count("user.change") == 3 and "user.add" in actions


# --- sessions, CSRF, rate limit, headers ------------------------------------------------


def test_the_session_cookie_is_httponly_samesite_strict_and_pages_carry_security_headers(
    office,
):
    add_user(office.store, "zhang")
    client = office.client()
    page = client.get("/login")
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Cache-Control"] == "no-store"
    reply = client.login("zhang")
    assert reply.status == 303
    (cookie,) = [c for c in reply.cookies() if c.startswith("hall_office=")]
    attributes = [a.strip().lower() for a in cookie.split(";")[1:]]
    assert "httponly" in attributes and "samesite=strict" in attributes and "path=/" in attributes
    assert "secure" not in attributes  # plain HTTP on loopback unless configured
    token = cookie.split(";")[0].split("=", 1)[1]
    assert len(token) >= 43  # secrets.token_urlsafe(32)
    cases = client.get("/cases")
    assert cases.status == 200 and cases.headers["Cache-Control"] == "no-store"
    assert "<script" not in cases.body


def test_secure_cookies_marks_the_cookie_secure(tmp_path):
    for running in serve(office_config(tmp_path, secure_cookies=True)):
        add_user(running.store, "zhang")
        reply = running.client().login("zhang")
        (cookie,) = [c for c in reply.cookies() if c.startswith("hall_office=")]
        assert "secure" in [a.strip().lower() for a in cookie.split(";")[1:]]


def test_a_post_without_a_session_is_refused_and_changes_nothing(office):
    case_id = open_case(office.store, office.pad)
    anonymous = office.client()
    reply = anonymous.post(
        f"/cases/{case_id}/move", {"csrf": "x", "from": "received", "target": "verified"}
    )
    assert reply.status == 403
    assert office.state(case_id) == "received"
    assert len(office.store.case_log([case_id])[case_id]) == 1
    # A page without a session sends to the login.
    assert anonymous.get(f"/cases/{case_id}").status == 303


def test_a_post_with_a_wrong_or_missing_csrf_token_or_a_foreign_origin_is_refused(office):
    add_user(office.store, "zhang")
    case_id = open_case(office.store, office.pad)
    client = office.client()
    assert client.login("zhang").status == 303
    token = client.csrf(f"/cases/{case_id}")
    for form in (
        {"from": "received", "target": "verified"},
        {"csrf": "", "from": "received", "target": "verified"},
        {
            "csrf": token[:-1] + ("A" if token[-1] != "A" else "B"),
            "from": "received",
            "target": "verified",
        },
    ):
        assert client.post(f"/cases/{case_id}/move", form).status == 403
    # The right token from another site's page: the browser names that origin.
    evil = client.move(case_id, "verified", "received", csrf=token, Origin="http://evil.example")
    assert evil.status == 403
    referer = client.move(
        case_id, "verified", "received", csrf=token, Origin="", Referer="http://evil.example/x"
    )
    assert referer.status == 403
    assert office.state(case_id) == "received"
    assert len(office.store.case_log([case_id])[case_id]) == 1
    assert not [a for a in office.store.audit_log(50) if a.action == "case.move"]
    # Another session's token is no good either.
    add_user(office.store, "li")
    other = office.client()
    other.login("li")
    assert other.move(case_id, "verified", "received", csrf=token).status == 403
    assert office.state(case_id) == "received"
    # The right one moves it.
    assert client.move(case_id, "verified", "received", csrf=token).status == 303
    assert office.state(case_id) == "verified"
    # A login form posted without its own token is refused too.
    fresh = office.client()
    assert fresh.post("/login", {"name": "zhang", "password": PASSWORD}).status == 403


def test_logins_are_limited_per_name_and_per_address_and_audited(office):
    add_user(office.store, "zhang")
    add_user(office.store, "li")
    client = office.client()
    assert client.login("zhang", "wrong-password-1").status == 401
    assert client.login("zhang", "wrong-password-2").status == 401
    third = client.login("zhang", "wrong-password-3")
    assert third.status == 429 and "登录失败次数过多" in third.body
    # Now refused even with the right password, and for another name from this address.
    assert client.login("zhang").status == 429
    assert client.login("li").status == 429
    audit = office.store.audit_log(50)
    failed = [a for a in audit if a.action == "login.failed"]
    assert len(failed) == 3 and {a.user for a in failed} == {"zhang"}
    assert all(a.address == "127.0.0.1" and a.detail == "wrong password" for a in failed)
    locked = [a for a in audit if a.action == "login.locked"]
    assert len(locked) == 1  # the block is audited once, not every refused try
    assert not [a for a in audit if a.action == "login.ok"]
    # After the window, the right password logs in, and that is audited.
    office.clock.shift = timedelta(minutes=office.cfg.office.login_window_min + 1)
    assert client.login("zhang").status == 303
    ok = [a for a in office.store.audit_log(50) if a.action == "login.ok"]
    assert [(a.user, a.address) for a in ok] == [("zhang", "127.0.0.1")]


def test_logins_sent_at_once_cannot_pass_the_limit_while_their_hashes_run(tmp_path):
    """41 logins in parallel (40 wrong, then the right one) with a limit of 3: at most 3 are
    checked; the rest, the right password included, are refused before any hash runs."""
    import asyncio

    import aiohttp

    for run in serve(office_config(tmp_path, login_attempts=3)):
        add_user(run.store, "wang")

        async def burst(url: str) -> list[int]:

            async def one(password: str) -> int:
                cookies = {"hall_office_login": "t"}
                async with aiohttp.ClientSession(cookies=cookies) as session:
                    form = {"csrf": "t", "name": "wang", "password": password}
                    async with session.post(url, data=form, allow_redirects=False) as answer:
                        return answer.status

            guesses = [f"wrong-guess-{i:04d}" for i in range(40)] + [PASSWORD]
            return await asyncio.gather(*(one(p) for p in guesses))

        statuses = asyncio.run(burst(f"http://127.0.0.1:{run.port}/login"))
        assert 303 not in statuses
        audit = run.store.audit_log(500)
        assert len([a for a in audit if a.action == "login.failed"]) <= 3
        assert not [a for a in audit if a.action == "login.ok"]


def test_an_unknown_name_fails_like_a_wrong_password(office):
    reply = office.client().login("nobody", PASSWORD)
    assert reply.status == 401 and "用户名或密码错误" in reply.body
    (entry,) = [a for a in office.store.audit_log(10) if a.action == "login.failed"]
    assert entry.user == "nobody" and entry.detail == "no such user"


def test_an_idle_session_ends_and_logout_ends_the_session(office):
    add_user(office.store, "zhang")
    client = office.client()
    client.login("zhang")
    assert client.get("/cases").status == 200
    office.clock.shift = timedelta(minutes=office.cfg.office.session_idle_min + 1)
    assert client.get("/cases").status == 303
    client.login("zhang")
    token = client.csrf()
    kept = dict(client.cookies)
    assert client.post("/logout", {"csrf": token}).status == 303
    assert "hall_office" not in client.cookies
    client.cookies = kept  # the old cookie, replayed, is no longer a session
    assert client.get("/cases").status == 303
    assert office.store.audit_log(3, user="zhang")[0].action == "logout"


def test_a_clerk_cannot_see_the_audit_log_or_the_accounts_an_admin_can(office):
    add_user(office.store, "zhang", "clerk")
    add_user(office.store, "boss", "admin")
    clerk = office.client()
    clerk.login("zhang")
    assert clerk.get("/audit").status == 403
    assert clerk.get("/users").status == 403
    assert 'href="/audit"' not in clerk.get("/cases").body
    admin = office.client()
    admin.login("boss")
    audit = admin.get("/audit")
    assert audit.status == 200 and "登录" in audit.body and "zhang" in audit.body
    users = admin.get("/users")
    assert users.status == 200 and "boss" in users.body and "管理员" in users.body


# --- cases -------------------------------------------------------------------------------


def test_the_case_list_shows_open_cases_with_deadlines_flags_overdue_and_filters(office):
    add_user(office.store, "zhang")
    march = datetime(2026, 3, 5, 10, 0, tzinfo=TZ)
    a = open_case(office.store, office.pad, at=march)
    b = open_case(
        office.store,
        office.pad,
        level=2,
        at=march + timedelta(days=40),
        window="A02",
        staff_id="S002",
    )
    c = open_case(office.store, office.pad, at=march + timedelta(days=1))
    client = office.client()
    client.login("zhang")
    client.move(c, "appealed", "received")
    client.move(c, "void", "appealed")

    def listed(query: str = "") -> list[int]:
        page = client.get("/cases" + query)
        assert page.status == 200, page.body
        return [int(i) for i in re.findall(r'<tr data-case="(\d+)"', page.body)]

    assert sorted(listed()) == [a, b]  # open ones only: c is void
    assert sorted(listed("?state=all")) == [a, b, c]
    assert listed("?state=void") == [c]
    assert listed("?window=A02") == [b]
    assert listed("?staff=S002") == [b]
    assert sorted(listed("?month=2026-03&state=all")) == [a, c]
    assert listed("?month=2026-04") == [b]
    page = client.get("/cases")
    assert "张三 S001" in page.body and "李四 S002" in page.body
    assert "核实：" in page.body and "已逾期" not in page.body.split("<tbody>")[1]
    assert listed("?state=overdue") == []
    office.clock.shift = timedelta(days=30)  # every verify deadline has passed
    client.login("zhang")  # the session did not last that long
    assert sorted(listed("?state=overdue")) == [a, b]
    assert 'class="overdue"' in client.get("/cases").body
    bad = client.get("/cases?month=2026-13")
    assert bad.status == 400 and "YYYY-MM" in bad.body


def test_the_case_page_escapes_what_it_shows_and_refuses_a_stale_or_wrong_move(office):
    add_user(office.store, "zhang")
    case_id = open_case(office.store, office.pad, reasons=["<script>alert(1)</script>"])
    client = office.client()
    client.login("zhang")
    page = client.get(f"/cases/{case_id}")
    assert "<script>alert" not in page.body and "&lt;script&gt;alert(1)" in page.body
    assert 'data-target="verified"' in page.body and 'data-target="appealed"' in page.body
    assert 'data-target="closed"' not in page.body
    wrong = client.move(case_id, "closed", "received")
    assert wrong.status == 409 and "不能办理该操作" in wrong.body
    assert client.move(case_id, "verified", "received", "核实属实").status == 303
    stale = client.move(case_id, "appealed", "received")  # acted on the old page
    assert stale.status == 409 and "已被他人办理" in stale.body and "已核实" in stale.body
    assert office.state(case_id) == "verified"
    long = client.move(case_id, "rectified", "verified", "长" * 2001)
    assert long.status == 400 and office.state(case_id) == "verified"
    assert client.get("/cases/999999").status == 404


def test_moves_over_http_are_logged_and_audited_on_either_store(any_office):
    running = any_office
    add_user(running.store, "zhang")
    case_id = open_case(running.store, running.pad)
    client = running.client()
    assert client.login("zhang").status == 303
    token = client.csrf(f"/cases/{case_id}")
    assert client.move(case_id, "verified", "received", csrf="nope").status == 403
    assert client.move(case_id, "verified", "received", "电话核实", csrf=token).status == 303
    assert client.move(case_id, "appealed", "verified", "申请复核").status == 303
    assert client.move(case_id, "void", "appealed", "复核成立").status == 303
    case = running.store.case(case_id)
    assert case.state == "void" and case.closed_at is not None
    log = running.store.case_log([case_id])[case_id]
    assert [(e.by, e.to_state, e.note) for e in log[1:]] == [
        ("zhang", "verified", "电话核实"),
        ("zhang", "appealed", "申请复核"),
        ("zhang", "void", "复核成立"),
    ]
    moves = [a for a in running.store.audit_log(50) if a.action == "case.move"]
    assert [(a.user, a.address) for a in moves] == [("zhang", "127.0.0.1")] * 3
    assert "已办结" not in client.get(f"/cases/{case_id}").body
    assert "案件已终结" in client.get(f"/cases/{case_id}").body


# --- the whole loop in Chromium ----------------------------------------------------------


@pytest.fixture
def chromium(tmp_path) -> Iterator[str]:
    """Headless Chromium with the DevTools protocol; yields the page's WebSocket URL."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        require_or_skip(
            "needs Debian's chromium (apt-get install chromium; scripts/services.sh installs it)"
        )
    with headless_chromium(exe, tmp_path / "chromium", 1280, 900) as url:
        yield url


class Page(Cdp):
    async def until(self, what: str, expression: str, timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            try:
                value = await self.value(expression)
            except Exception:  # the page is between two documents
                value = None
            if value:
                return value
            await asyncio.sleep(0.05)
        raise AssertionError(f"the page never showed {what}: {value!r}")

    async def loaded(self, what: str, action: Any) -> None:
        """Run ``action`` (a coroutine function) and wait until a new document has loaded."""
        await self.value("window.seen = true")
        await action()
        await self.until(what, "!window.seen && document.readyState === 'complete'")

    async def go(self, url: str) -> None:
        await self.loaded(url, lambda: self.call("Page.navigate", url=url))


def test_a_clerk_moves_cases_through_every_state_in_the_browser(office, chromium):
    add_user(office.store, "zhang")
    first = open_case(office.store, office.pad)
    second = open_case(office.store, office.pad, level=2)
    base = f"http://127.0.0.1:{office.port}"

    async def drive() -> None:
        async with aiohttp.ClientSession() as http, http.ws_connect(chromium, max_msg_size=0) as ws:
            page = Page(ws)
            await page.call("Page.enable")
            await page.go(f"{base}/cases")  # no session: the login page
            await page.until("the login form", "location.pathname === '/login'")
            await page.value(
                "document.querySelector('[name=name]').value = 'zhang';"
                f"document.querySelector('[name=password]').value = {json.dumps(PASSWORD)};"
                "document.querySelector('form.login button').click(); true"
            )
            await page.until(
                "the case list",
                "location.pathname === '/cases' && document.readyState === 'complete'",
            )
            rows = await page.value(
                "[...document.querySelectorAll('tr[data-case]')].map(r => +r.dataset.case)"
            )
            assert sorted(rows) == [first, second]
            assert not await page.value("document.cookie")  # HttpOnly: no script sees it

            async def act(case_id: int, target: str, note: str) -> None:
                await page.value(
                    f"(() => {{ const f = document.querySelector('form[data-target={target}]');"
                    f"f.querySelector('textarea').value = {json.dumps(note)};"
                    "f.querySelector('button').click(); return true })()"
                )
                await page.until(
                    f"case {case_id} {target}",
                    f"document.readyState === 'complete' && document.getElementById('case') "
                    f"&& document.getElementById('case').dataset.state === '{target}'",
                )

            await page.go(f"{base}/cases/{first}")
            for target in LOOP:
                await act(first, target, f"{target} 办理说明")
                notice = await page.value("document.querySelector('.notice').innerText")
                assert notice.startswith("已办理")
            assert "案件已终结" in await page.value("document.body.innerText")
            history = await page.value(
                "[...document.querySelectorAll('#log tbody tr')].map(r => r.innerText)"
            )
            assert len(history) == 1 + len(LOOP)
            assert all("zhang" in line for line in history[1:])

            await page.go(f"{base}/cases/{second}")
            await act(second, "appealed", "工作人员申诉")
            await act(second, "void", "申诉成立")

    asyncio.run(drive())
    log = office.store.case_log([first, second])
    assert [e.to_state for e in log[first]] == ["received", *LOOP]
    assert [(e.by, e.note) for e in log[first][1:]] == [("zhang", f"{t} 办理说明") for t in LOOP]
    assert [e.to_state for e in log[second]] == ["received", "appealed", "void"]
    assert all(e.by == "zhang" for e in log[second][1:])
    moves = [a for a in office.store.audit_log(100) if a.action == "case.move"]
    assert len(moves) == len(LOOP) + 2
    assert all(a.user == "zhang" and a.address == "127.0.0.1" for a in moves)
    assert {a.target for a in moves} == {f"case:{first}", f"case:{second}"}
    assert office.state(first) == "closed" and office.state(second) == "void"


# --- the collector serves it ---------------------------------------------------------------


def test_hall_central_run_serves_the_office_pages(tmp_path):
    import signal

    from tests.support import Mosquitto, free_port

    port = free_port()
    with Mosquitto(tmp_path / "broker") as broker:
        conf = tmp_path / "central.toml"
        conf.write_text(
            f'[mqtt]\nurl = "{broker.url}"\n[store]\nurl = "sqlite:///{tmp_path}/hall.db"\n'
            f'[board]\nlisten = ""\n[office]\nlisten = "127.0.0.1:{port}"\n',
            encoding="utf-8",
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "central.cli", "-c", str(conf), "run"],
            cwd=REPO,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:

            def up() -> bool:
                try:
                    return Client(port).get("/login").status == 200
                except OSError:
                    return False

            assert wait_for(up, 30, interval=0.2), "the office pages never listened"
            assert Client(port).get("/cases").headers["Location"] == "/login"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
