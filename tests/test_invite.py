"""Invitations from a case system: POST /invite with 办件编号 and 事项编码 (docs/pads.md
"Invitations"), real HTTP over 127.0.0.1 to an agent whose pad is the simulator on a pty."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from agent.config import ConfigError, PadSection, WindowsSection
from agent.outbox import Outbox
from agent.roster import RosterWatch
from agent.windows import state as window_state
from agent.windows.invite_http import InviteService, InviteWorker, invite_worker_factories
from agent.windows.simulator import run_script
from scripts.loopback import free_port
from tests.padkit import Agent, PtyPort, events, pad_config, wait_until

CASE = {"case_no": "穗天政务〔2026〕SQ-000123号", "item_code": "11440106MB2C94563X4440111009000"}


@pytest.fixture
def pty(tmp_path: Path) -> Iterator[PtyPort]:
    port = PtyPort(tmp_path)
    yield port
    port.unplug()


class Window:
    """The window workers of a config plus the invitation endpoint, on a free loopback port."""

    def __init__(self, tmp_path: Path, write_config: Any, outbox: Outbox, pty: PtyPort):
        self.port = free_port()
        roster = {"v": 1, "version": 3, "staff": [{"id": "S001", "name": "张三", "role": "staff"}]}
        data = tmp_path / "data"
        data.mkdir(exist_ok=True)
        (data / "roster.json").write_text(json.dumps(roster, ensure_ascii=False), "utf-8")
        self.cfg = pad_config(
            write_config,
            data,
            [(str(pty.link), 1, "A03")],
            f'[windows]\ninvite_listen = "127.0.0.1:{self.port}"\n',
        )
        self.outbox = outbox
        self.start()

    def start(self) -> None:
        buses = window_state.PadBuses()
        self.agent = Agent(self.cfg, self.outbox, buses=buses)
        (make,) = invite_worker_factories(self.cfg, buses).values()
        self.http = make()
        self.http.start()
        assert self.http.listening.wait(5), self.http.health()
        self.agent.wait_up()

    def stop(self) -> None:
        self.http.stop()
        self.agent.stop()

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        content_type: str | None = "application/json",
    ) -> tuple[int, dict[str, Any], Any]:
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data, method=method)
        if content_type is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status, json.loads(resp.read()), resp.headers
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read()), err.headers


@pytest.fixture
def window(tmp_path: Path, write_config: Any, outbox: Outbox, pty: PtyPort) -> Iterator[Window]:
    running = Window(tmp_path, write_config, outbox, pty)
    yield running
    running.stop()


def test_the_rating_that_answers_an_invitation_carries_its_case(
    window: Window, outbox: Outbox, pty: PtyPort
) -> None:
    pad = pty.sim(1)
    assert pad.login("S001").acked
    status, answer, _ = window.call("POST", "/invite", {"window": "A03", **CASE})
    assert status == 200, answer
    invite_id = answer["invite_id"]
    assert answer["window"] == "A03" and 1 <= invite_id <= 0xFFFF
    assert {k: answer[k] for k in CASE} == CASE
    assert answer["timeout_s"] == 120
    left = datetime.fromisoformat(answer["expires_at"]).timestamp() - time.time()
    assert 100 < left <= 121 and answer["expires_at"].endswith("+08:00")
    assert pad.wait_for(lambda g: g.invites and g.invites[-1] == (invite_id, "张三"))
    # The simulator's script language answers the INVITE it received last.
    assert run_script(pad, ["rate 2 reasons=0 invite=last", "rate 5"]) == 0
    unknown = invite_id % 0xFFFF + 1  # never issued: no case to carry
    assert run_script(pad, [f"rate 4 invite={unknown}"]) == 0
    got = [e["data"] for e in events(outbox, "rating.submitted")]
    assert got[0] == {
        "window": "A03",
        "pad": 1,
        "staff_id": "S001",
        "level": 2,
        "label": "不满意",
        "reasons": ["态度不好"],
        "invite_id": invite_id,
        **CASE,
    }
    assert (got[1]["invite_id"], got[1]["case_no"], got[1]["item_code"]) == (None, None, None)
    assert (got[2]["invite_id"], got[2]["case_no"], got[2]["item_code"]) == (unknown, None, None)
    assert window.agent.bus.pads[1].state.invites == {}  # answered: it will not expire
    assert window.http.health() == {
        "state": "ok",
        "listen": f"127.0.0.1:{window.port}",
        "invites": 1,
        "refused": 0,
    }


def test_a_resent_answer_is_recorded_once_with_its_case(
    window: Window, outbox: Outbox, pty: PtyPort
) -> None:
    pad = pty.sim(1)
    status, answer, _ = window.call("POST", "/invite", {"window": "A03", "case_no": "SQ-1"})
    assert status == 200 and answer["item_code"] is None
    assert pad.wait_for(lambda g: g.invites)
    # The first ACK is lost: the pad resends after the invitation was closed by the first
    # copy. The copy is a duplicate; the event recorded is the first, with its case.
    assert run_script(pad, ["drop-acks 1", "rate 5 invite=last"]) == 0
    (rating,) = events(outbox, "rating.submitted")
    assert (rating["data"]["case_no"], rating["data"]["item_code"]) == ("SQ-1", None)
    assert window.agent.bus.pads[1].counts == {"recorded": 1, "duplicates": 1}


BAD_REQUESTS = [
    # (method, path, raw body, content type, status, words of the message)
    ("POST", "/invite", b"{", "application/json", 400, "body is not UTF-8 JSON"),
    ("POST", "/invite", b"\xff\xfe", "application/json", 400, "body is not UTF-8 JSON"),
    ("POST", "/invite", b"[1]", "application/json", 400, "body is a JSON list; expected an"),
    ("POST", "/invite", b"{}", "application/json", 400, "window: required"),
    (
        "POST",
        "/invite",
        b'{"window": 3}',
        "application/json",
        400,
        "window: expected a valid string, got 3",
    ),
    (
        "POST",
        "/invite",
        b'{"window": "A 03"}',
        "application/json",
        400,
        "window: expected a window label such as 'A03'",
    ),
    (
        "POST",
        "/invite",
        b'{"window": "A03", "caseNo": "SQ1"}',
        "application/json",
        400,
        "caseNo: unknown key; expected only window, case_no, item_code",
    ),
    (
        "POST",
        "/invite",
        b'{"window": "A03", "case_no": "SQ\\u0000 1"}',
        "application/json",
        400,
        "case_no: expected printable characters, it has U+0000 at index 2, got",
    ),
    (
        "POST",
        "/invite",
        b'{"window": "A03", "case_no": ""}',
        "application/json",
        400,
        "case_no: expected 1-64 characters, it has 0, got '' (null when there is none)",
    ),
    (
        "POST",
        "/invite",
        b'{"window": "A03", "item_code": "0002 01"}',
        "application/json",
        400,
        "item_code: expected 1-64 characters of A-Z a-z 0-9 _ . - starting with a letter",
    ),
    (
        "POST",
        "/invite",
        b'{"window": "A03", "case_no": 12345}',
        "application/json",
        400,
        "case_no: expected a valid string, got 12345",
    ),
    ("POST", "/invite", b'{"window": "A03"}', "text/plain", 415, "expected application/json"),
    ("POST", "/invite", b'{"window": "A03"}', None, 415, "expected application/json"),
    ("POST", "/invite", b"x" * 5000, "application/json", 413, "expected at most 4096"),
    ("GET", "/invite", None, None, 405, "GET /invite: expected POST"),
    ("PUT", "/invite", b'{"window": "A03"}', "application/json", 405, "expected POST"),
    ("POST", "/health", b"{}", "application/json", 405, "POST /health: expected GET"),
    ("GET", "/invites", None, None, 404, "no such path '/invites'"),
    (
        "POST",
        "/invite",
        b'{"window": "Z99"}',
        "application/json",
        404,
        "window 'Z99' has no pad on this device; its windows: A03",
    ),
]


def test_bad_requests_are_refused_with_clear_messages_and_change_nothing(
    window: Window, outbox: Outbox, pty: PtyPort
) -> None:
    pad = pty.sim(1)
    state_file = window.cfg.device.data_dir / "windows-state.json"
    before = state_file.read_bytes() if state_file.exists() else None
    for method, path, raw, ctype, status, words in BAD_REQUESTS:
        got, answer, headers = window.call(method, path, raw=raw, content_type=ctype)
        assert (got, words) == (status, words) and words in answer["error"], answer
        if status == 405:
            assert headers["Allow"] in ("POST", "GET")
    assert window.http.health()["refused"] == len(BAD_REQUESTS)
    assert window.agent.bus.pads[1].state.invites == {}
    assert (state_file.read_bytes() if state_file.exists() else None) == before
    time.sleep(0.3)  # an INVITE sent by mistake would have reached the pad by now
    assert pad.got.invites == []
    assert events(outbox, "rating.submitted") == [] and events(outbox, "rating.expired") == []


def test_health_lists_the_windows_and_a_closed_port_refuses_with_503(
    window: Window, pty: PtyPort
) -> None:
    pad = pty.sim(1)
    assert pad.login("S001").acked
    status, answer, _ = window.call("GET", "/health")
    assert status == 200
    assert answer["windows"]["A03"] == {
        "pad": 1,
        "port": str(pty.link),
        "ready": True,
        "detail": None,
        "staff_id": "S001",
        "paused": False,
        "open_invites": 0,
    }
    pty.unplug()  # the USB adapter is pulled
    wait_until(lambda: not window.agent.bus.link_up)
    status, answer, headers = window.call("POST", "/invite", {"window": "A03", **CASE})
    assert status == 503 and headers["Retry-After"] == "5"
    assert answer["error"] == (
        f"the serial port {pty.link} of window A03 is not open; the invitation was not sent, "
        "try again later"
    )
    assert window.agent.bus.pads[1].state.invites == {}
    window.agent.stop()  # the bus's worker ended (as if it died)
    status, answer, _ = window.call("POST", "/invite", {"window": "A03"})
    assert status == 503 and "the pad bus of window A03" in answer["error"]


def test_an_invitation_and_its_case_survive_an_agent_restart(
    window: Window, outbox: Outbox, pty: PtyPort
) -> None:
    pad = pty.sim(1)
    status, answer, _ = window.call("POST", "/invite", {"window": "A03", **CASE})
    assert status == 200
    assert pad.wait_for(lambda g: g.invites)
    window.stop()
    saved = json.loads((window.cfg.device.data_dir / "windows-state.json").read_text("utf-8"))
    inv = saved["windows"]["A03"]["invites"][str(answer["invite_id"])]
    assert {k: inv[k] for k in CASE} == CASE
    window.start()
    assert run_script(pad, ["rate 3 invite=last"]) == 0
    (rating,) = events(outbox, "rating.submitted")
    assert rating["data"]["invite_id"] == answer["invite_id"]
    assert {k: rating["data"][k] for k in CASE} == CASE


def test_an_unanswered_invitation_expires_without_its_case(
    tmp_path: Path, write_config: Any, outbox: Outbox, pty: PtyPort
) -> None:
    # rating.expired keeps its four fields (docs/topics.md): the case stays on the device.
    cfg = pad_config(write_config, tmp_path / "data", [(str(pty.link), 1, "A03")], "[windows]\n")
    agent = Agent(cfg, outbox)
    try:
        agent.wait_up()
        invite_id = agent.bus.invite("A03", case_no="SQ-9", item_code="000201")
        agent.bus.pads[1].state.invites[invite_id].deadline = 0.0
        wait_until(lambda: events(outbox, "rating.expired"))
        (expired,) = events(outbox, "rating.expired")
        assert expired["data"] == {
            "window": "A03",
            "pad": 1,
            "staff_id": None,
            "invite_id": invite_id,
        }
    finally:
        agent.stop()


class ListDriver:
    port = "/dev/ttyUSB7"

    def __init__(self) -> None:
        self.sent: list[tuple[int, object, int | None]] = []

    def send(self, addr: int, msg: object, seq: int | None = None) -> None:
        self.sent.append((addr, msg, seq))

    def stats(self) -> dict:
        return {}


def new_bus(path: Path, outbox: Outbox) -> window_state.PadBus:
    return window_state.PadBus(
        ListDriver.port,
        [PadSection(port=ListDriver.port, address=1, window="B01")],
        ListDriver(),  # type: ignore[arg-type]
        outbox,
        WindowsSection(),
        window_state.StateFile(path),
        RosterWatch(path.parent),
    )


def test_invite_refuses_a_case_that_could_not_be_recorded(tmp_path: Path, outbox: Outbox) -> None:
    bus = new_bus(tmp_path / "windows-state.json", outbox)
    with pytest.raises(ValueError, match=r"case_no: expected printable characters"):
        bus.invite("B01", case_no="SQ\n1")
    with pytest.raises(ValueError, match=r"item_code: expected 1-64 characters"):
        bus.invite("B01", item_code="事项")
    assert bus.pads[1].state.invites == {} and bus.driver.sent == []
    assert not (tmp_path / "windows-state.json").exists()


def test_state_files_without_a_case_or_with_a_broken_one_still_load(
    tmp_path: Path, outbox: Outbox
) -> None:
    path = tmp_path / "windows-state.json"
    deadline = time.time() + 60
    path.write_text(
        json.dumps(
            {
                "v": 1,
                "windows": {
                    "B01": {
                        "staff_id": "S001",
                        "paused": False,
                        "invites": {
                            "7": {"deadline": deadline, "staff_id": "S001"},  # an older agent's
                            "8": {"deadline": deadline, "staff_id": None, "case_no": "a\x00b"},
                            "9": {"deadline": deadline, "staff_id": None, **CASE},
                        },
                        "next_invite": 10,
                    }
                },
            }
        ),
        "utf-8",
    )
    bus = new_bus(path, outbox)
    invites = bus.pads[1].state.invites
    assert sorted(invites) == [7, 8, 9]
    assert (invites[7].case_no, invites[7].item_code) == (None, None)
    assert (invites[8].case_no, invites[8].item_code) == (None, None)  # the case is dropped
    assert (invites[9].case_no, invites[9].item_code) == (CASE["case_no"], CASE["item_code"])


def test_a_taken_port_is_a_fault_in_health_not_the_end_of_the_device(tmp_path: Path) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    worker = InviteWorker(
        InviteService(window_state.PadBuses(), "Asia/Shanghai"), f"127.0.0.1:{port}"
    )
    worker.start()
    try:
        wait_until(lambda: worker.health()["state"] == "fault", timeout=5)
        detail = worker.health()["detail"]
        assert detail.startswith(f"cannot listen on 127.0.0.1:{port}: [Errno 98]"), detail
        assert "set [windows] invite_listen, or '' for no endpoint" in detail
        assert worker.alive()  # the supervisor has nothing to restart
        holder.close()  # the other program ends: the endpoint comes up on its next try
        assert worker.listening.wait(10)
        assert worker.health()["state"] == "ok"
    finally:
        holder.close()
        worker.stop()
    assert not worker.alive()


def test_the_runtime_runs_the_endpoint_only_when_configured(
    tmp_path: Path, write_config: Any, outbox: Outbox
) -> None:
    from agent.runtime import build_workers

    pads = [("/dev/ttyUSB7", 1, "A01")]
    on = pad_config(write_config, tmp_path / "a", pads)
    assert on.windows.invite_listen == "127.0.0.1:8091"
    assert "invite" in build_workers(on, outbox, dict)
    off = pad_config(write_config, tmp_path / "b", pads, '[windows]\ninvite_listen = ""\n')
    assert "invite" not in build_workers(off, outbox, dict)
    with pytest.raises(ConfigError) as err:
        pad_config(write_config, tmp_path / "c", pads, '[windows]\ninvite_listen = "8091"\n')
    assert (
        "windows.invite_listen: expected host:port such as '127.0.0.1:8091' or '', got '8091'"
        in str(err.value)
    )


def test_a_request_naming_another_host_is_refused(window: Window, pty: PtyPort) -> None:
    """A web page on the window's PC could point a name of its own at 127.0.0.1 (DNS
    rebinding); its requests name that host and are refused before anything happens."""
    import http.client

    pad = pty.sim(1)
    conn = http.client.HTTPConnection("127.0.0.1", window.port, timeout=5)
    body = json.dumps({"window": "A03"})
    headers = {"Content-Type": "application/json", "Host": f"evil.example:{window.port}"}
    conn.request("POST", "/invite", body, headers)
    answer = conn.getresponse()
    assert answer.status == 421 and "evil.example" in json.loads(answer.read())["error"]
    conn.close()
    assert window.agent.bus.pads[1].state.invites == {} and pad.got.invites == []
    status, _answer, _ = window.call("POST", "/invite", {"window": "A03"})
    assert status == 200  # by its own address it is served
