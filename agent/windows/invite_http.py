"""The invitation endpoint: a window's case-handling system asks the citizen to rate a case.

``POST /invite`` with ``{"window": "A03", "case_no": "…", "item_code": "…"}`` sends the
window's pad an INVITE (:meth:`agent.windows.state.PadBus.send_invite`); the rating that
answers it carries the case (docs/pads.md "Invitations"). ``GET /health`` lists the windows
and whether each can be invited now.

Standard library only (``http.server``): a window device runs no web framework and must not
load the kiosk's (tests/test_imports.py). One :class:`InviteWorker` under the supervisor
serves it. A port that is taken (another program, a second agent) is not the end of the
device: the worker keeps the pads running, reports a fault in its health and tries to listen
again with a growing pause.

The endpoint has no access control: whoever reaches it can send INVITEs and attach a case
number to a citizen's rating. It is bound to loopback by default ([windows] invite_listen),
where only programs on the window's own machine reach it.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, ValidationError

from agent.config import AgentConfig, is_loopback_listen
from agent.supervisor import Worker
from agent.windows.state import PadBuses, PadBusWorker
from contract import CaseNo, ItemCode, Window

logger = logging.getLogger(__name__)

MAX_BODY = 4096  # an invitation is a few dozen bytes; more is not a case system talking
REQUEST_TIMEOUT_S = 5.0  # a client that stops sending mid-request must not hold a thread
# Pauses between attempts to listen while the port is taken: soon at first (a previous agent
# still closing), then every 30 s (another program holds it until someone acts).
LISTEN_RETRY_S = (1.0, 2.0, 5.0, 10.0, 30.0)
EXAMPLE = '{"window": "A03", "case_no": "SQ20261126000123", "item_code": "000201001000"}'
FIELDS = ("window", "case_no", "item_code")


class InviteRequest(BaseModel):
    """The body of ``POST /invite``: the same rules as the event that will carry the case."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    window: Window
    case_no: CaseNo | None = None
    item_code: ItemCode | None = None


class Refused(Exception):
    """A request answered with an error status and a one-line message."""

    def __init__(self, status: HTTPStatus, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def _field_error(exc: ValidationError) -> str:
    """Every problem of the body, each naming its key, what was expected and what came."""
    parts = []
    for err in exc.errors(include_url=False):
        key = ".".join(str(p) for p in err.get("loc", ())) or "body"
        kind = err.get("type")
        if kind == "missing":
            parts.append(f"{key}: required")
        elif kind == "extra_forbidden":
            parts.append(f"{key}: unknown key; expected only {', '.join(FIELDS)}")
        elif key == "window" and kind == "string_pattern_mismatch":
            parts.append(
                f"window: expected a window label such as 'A03' (1-16 characters of A-Z a-z "
                f"0-9 _ - starting with a letter or digit), got {err.get('input')!r:.80}"
            )
        else:
            msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            msg = msg.replace("Input should be", "expected")
            optional = " (null when there is none)" if key in ("case_no", "item_code") else ""
            parts.append(f"{key}: {msg}, got {err.get('input')!r:.80}{optional}")
    return "; ".join(parts)


class InviteService:
    """What the endpoint does, apart from HTTP: parse a body, invite, describe the windows."""

    def __init__(self, buses: PadBuses, timezone: str):
        self.buses = buses
        self.tz = ZoneInfo(timezone)
        self.counts = {"invites": 0, "refused": 0}
        self._counts_lock = threading.Lock()

    def count(self, what: str) -> None:
        with self._counts_lock:
            self.counts[what] += 1

    def parse(self, body: bytes) -> InviteRequest:
        try:
            raw = json.loads(body)
        except (UnicodeDecodeError, ValueError) as exc:
            raise Refused(
                HTTPStatus.BAD_REQUEST,
                f"body is not UTF-8 JSON ({exc}); expected an object such as {EXAMPLE}",
            ) from None
        if not isinstance(raw, dict):
            raise Refused(
                HTTPStatus.BAD_REQUEST,
                f"body is a JSON {type(raw).__name__}; expected an object such as {EXAMPLE}",
            )
        try:
            return InviteRequest.model_validate(raw)
        except ValidationError as exc:
            raise Refused(HTTPStatus.BAD_REQUEST, _field_error(exc)) from None

    def not_ready(self, window: str, worker: PadBusWorker) -> str | None:
        """Why the window's pad cannot be invited now (an INVITE would reach nobody)."""
        bus = worker.bus
        if not worker.alive():
            return f"the pad bus of window {window} ({bus.port}) is not running"
        if not bus.link_up:
            return f"the serial port {bus.port} of window {window} is not open"
        pad = bus.pads[bus.by_window[window]]
        if not pad.online:
            return f"the pad of window {window} is offline (no heartbeat)"
        return None

    def invite(self, body: bytes) -> dict[str, Any]:
        req = self.parse(body)
        worker = self.buses.get(req.window)
        if worker is None:
            here = ", ".join(self.buses.windows()) or "none"
            raise Refused(
                HTTPStatus.NOT_FOUND,
                f"window {req.window!r} has no pad on this device; its windows: {here}",
            )
        why = self.not_ready(req.window, worker)
        if why:
            raise Refused(
                HTTPStatus.SERVICE_UNAVAILABLE,
                f"{why}; the invitation was not sent, try again later",
                {"Retry-After": "5"},
            )
        try:
            invite_id, inv = worker.bus.send_invite(req.window, req.case_no, req.item_code)
        except ValueError as exc:  # the model checked the same rules; kept for safety
            raise Refused(HTTPStatus.BAD_REQUEST, str(exc)) from None
        logger.info(
            "invite %d at %s: case_no %r, item_code %r",
            invite_id,
            req.window,
            req.case_no,
            req.item_code,
        )
        return {
            "invite_id": invite_id,
            "window": req.window,
            "case_no": inv.case_no,
            "item_code": inv.item_code,
            "expires_at": datetime.fromtimestamp(inv.deadline, self.tz).isoformat("T", "seconds"),
            "timeout_s": worker.bus.settings.invite_timeout_s,
        }

    def windows(self) -> dict[str, Any]:
        out = {}
        for window, worker in self.buses.windows().items():
            why = self.not_ready(window, worker)
            addr = worker.bus.by_window[window]
            st = worker.bus.pads[addr].state
            out[window] = {
                "pad": addr,
                "port": worker.bus.port,
                "ready": why is None,
                "detail": why,
                "staff_id": st.staff_id,
                "paused": st.paused,
                "open_invites": len(st.invites),
            }
        return out


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = REQUEST_TIMEOUT_S
    server_version = "hall-agent-invite"
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        service = self.server.service
        path = self.path.split("?", 1)[0]
        try:
            host = self.headers.get("Host", "")
            name = host.rpartition(":")[0] if host.rpartition(":")[2].isdigit() else host
            if name.strip("[]").lower() not in self.server.hosts:
                raise Refused(
                    HTTPStatus.MISDIRECTED_REQUEST,
                    f"Host {host!r}: expected this device's address, such as 127.0.0.1",
                )
            if path == "/invite":
                if method != "POST":
                    raise Refused(
                        HTTPStatus.METHOD_NOT_ALLOWED,
                        f"{method} /invite: expected POST with a JSON body such as {EXAMPLE}",
                        {"Allow": "POST"},
                    )
                answer = service.invite(self._body())
                service.count("invites")
            elif path == "/health":
                if method != "GET":
                    raise Refused(
                        HTTPStatus.METHOD_NOT_ALLOWED,
                        f"{method} /health: expected GET",
                        {"Allow": "GET"},
                    )
                answer = {"windows": service.windows()}
            else:
                raise Refused(
                    HTTPStatus.NOT_FOUND,
                    f"no such path {path!r}; expected POST /invite or GET /health",
                )
        except Refused as refused:
            service.count("refused")
            # The body may be left unread (a refusal before it): this connection is done.
            self.close_connection = True
            logger.warning("%s %s refused (%d): %s", method, path, refused.status, refused)
            self._reply(refused.status, {"error": refused.message}, refused.headers)
            return
        except Exception as exc:  # one request's failure is not the endpoint's
            service.count("refused")
            logger.exception("%s %s failed", method, path)
            self.close_connection = True
            self._reply(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"internal error: {exc}"})
            return
        self._reply(HTTPStatus.OK, answer)

    def _body(self) -> bytes:
        ctype = self.headers.get("Content-Type", "")
        if ctype.split(";", 1)[0].strip().lower() != "application/json":
            raise Refused(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                f"Content-Type {ctype or '(none)'!r}: expected application/json",
            )
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise Refused(
                HTTPStatus.LENGTH_REQUIRED,
                f"Content-Length {length!r}: expected the body's length in bytes",
            )
        if int(length) > MAX_BODY:
            raise Refused(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"body of {length} bytes: expected at most {MAX_BODY}",
            )
        return self.rfile.read(int(length))

    def _reply(self, status: HTTPStatus, doc: dict[str, Any], headers: dict | None = None) -> None:
        data = json.dumps(doc, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        # Requests are logged by _dispatch; http.server's access line would go to stderr.
        logger.debug("%s " + format, self.address_string(), *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a hung client never delays the agent's stop
    service: InviteService
    # Host names a request may name (the listen host and loopback's): a web page the window's
    # PC opens cannot reach the endpoint through a DNS name it points at 127.0.0.1 (DNS
    # rebinding), because its requests carry that name.
    hosts: frozenset[str] = frozenset({"127.0.0.1", "localhost", "::1"})


class _Server6(_Server):
    address_family = socket.AF_INET6  # a bracketed listen such as [::1]:8091


class InviteWorker:
    """A :class:`agent.supervisor.Worker` serving the endpoint on its own thread."""

    stall_after_s = 30.0

    def __init__(self, service: InviteService, listen: str):
        self.name = "invite"
        self.service = service
        self.listen = listen
        host, _, port = listen.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        self.bound_port: int | None = None  # the port listened on (port 0: the one given)
        self.error: str | None = None
        self._activity = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.listening = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def _bind(self) -> _Server:
        server_class = _Server6 if ":" in self.host else _Server
        server = server_class((self.host, self.port), _Handler)
        server.service = self.service
        server.hosts = _Server.hosts | {self.host.lower()}
        server.timeout = 0.5  # handle_request returns at least this often: stop, activity
        return server

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            self._activity = time.monotonic()
            try:
                server = self._bind()
            except OSError as exc:
                delay = LISTEN_RETRY_S[min(failures, len(LISTEN_RETRY_S) - 1)]
                error = (
                    f"cannot listen on {self.listen}: {exc}; invitations are refused until it "
                    f"can (set [windows] invite_listen, or '' for no endpoint)"
                )
                # Once per cause, not every retry: the pads keep working meanwhile.
                (logger.error if error != self.error else logger.debug)("invite: %s", error)
                self.error = error
                failures += 1
                self._wait(delay)
                continue
            with server:
                self.error, failures = None, 0
                self.bound_port = server.server_address[1]
                if not is_loopback_listen(self.listen):
                    logger.warning(
                        "invite: %s is not loopback: anyone who reaches it can invite "
                        "ratings and name their case (no access control; docs/pads.md)",
                        self.listen,
                    )
                logger.info("invite: POST http://%s:%d/invite", self.host, self.bound_port)
                self.listening.set()
                while not self._stop.is_set():
                    self._activity = time.monotonic()
                    server.handle_request()
            self.listening.clear()

    def _wait(self, delay: float) -> None:
        end = time.monotonic() + delay
        while not self._stop.is_set() and time.monotonic() < end:
            self._activity = time.monotonic()
            self._stop.wait(min(1.0, end - time.monotonic()))

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def last_activity(self) -> float:
        return self._activity

    def health(self) -> dict[str, Any]:
        if self.error:
            return {"state": "fault", "listen": self.listen, "detail": self.error}
        return {"state": "ok", "listen": self.listen, **self.service.counts}


def invite_worker_factories(cfg: AgentConfig, buses: PadBuses) -> dict[str, Callable[[], Worker]]:
    """The endpoint's worker when ``[windows] invite_listen`` is set (used by agent/runtime.py)."""
    listen = cfg.windows.invite_listen
    if not listen:
        return {}
    service = InviteService(buses, cfg.device.timezone)
    return {"invite": lambda: InviteWorker(service, listen)}
