"""agent/windows/state.py: log-in/out, pause/resume, invitations, ratings, TIME, state, config."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import serial

from agent.config import ConfigError, PadSection, WindowsSection
from agent.outbox import Outbox
from agent.roster import RosterWatch
from agent.windows import state as window_state
from drivers.pad.codec import Ack, Expired
from tests.padkit import Agent, PtyPort, events, pad_config, wait_until


@pytest.fixture
def pty(tmp_path: Path):
    port = PtyPort(tmp_path)
    yield port
    port.unplug()


def write_roster(data_dir: Path, staff: list[dict]) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    roster = {"v": 1, "version": 3, "staff": staff}
    (data_dir / "roster.json").write_text(json.dumps(roster, ensure_ascii=False), "utf-8")


def start(tmp_path: Path, write_config, outbox: Outbox, pty: PtyPort, windows_toml: str = ""):
    cfg = pad_config(write_config, tmp_path / "data", [(str(pty.link), 1, "A03")], windows_toml)
    agent = Agent(cfg, outbox)
    agent.wait_up()
    return agent


def test_login_pause_resume_logout_events_and_display(
    tmp_path: Path, write_config, outbox: Outbox, pty: PtyPort
) -> None:
    write_roster(
        tmp_path / "data", [{"id": "S001", "name": "张三", "role": "staff", "window": "A03"}]
    )
    agent = start(tmp_path, write_config, outbox, pty)
    try:
        pad = pty.sim(1)
        # At start nobody is logged in: the window shows 暂停服务 and gets the time.
        assert pad.wait_for(lambda g: g.displays and g.displays[-1] == "暂停服务")
        assert pad.wait_for(lambda g: g.times and abs(g.times[-1] - time.time()) < 5)
        assert pad.login("S001").acked
        assert pad.wait_for(lambda g: g.displays[-1] == "张三")
        assert pad.rate(1, [1, 4]).acked
        assert pad.pause().acked
        assert pad.wait_for(lambda g: g.displays[-1] == "暂停服务")
        assert pad.rate(5).acked  # a citizen may still rate a paused window
        assert pad.resume().acked
        assert pad.wait_for(lambda g: g.displays[-1] == "张三")
        assert pad.logout().acked
        assert pad.wait_for(lambda g: g.displays[-1] == "暂停服务")
        assert pad.rate(4).acked
        got = [(e["type"], e["data"]) for e in events(outbox)]
        base = {"window": "A03", "pad": 1}
        assert got == [
            ("window.login", {**base, "staff_id": "S001"}),
            (
                "rating.submitted",
                {
                    **base,
                    "staff_id": "S001",
                    "level": 1,
                    "label": "非常不满意",
                    "reasons": ["办事效率低", "流程繁琐"],
                    "invite_id": None,
                    "case_no": None,
                    "item_code": None,
                },
            ),
            ("window.paused", {**base, "staff_id": "S001"}),
            (
                "rating.submitted",
                {
                    **base,
                    "staff_id": "S001",
                    "level": 5,
                    "label": "非常满意",
                    "reasons": [],
                    "invite_id": None,
                    "case_no": None,
                    "item_code": None,
                },
            ),
            ("window.resumed", {**base, "staff_id": "S001"}),
            ("window.logout", {**base, "staff_id": "S001"}),
            (
                "rating.submitted",
                {
                    **base,
                    "staff_id": None,
                    "level": 4,
                    "label": "满意",
                    "reasons": [],
                    "invite_id": None,
                    "case_no": None,
                    "item_code": None,
                },
            ),
        ]
        health = agent.bus.health()
        assert health["pads"]["1"]["staff_id"] is None
    finally:
        agent.stop()


def test_name_falls_back_to_staff_id_and_follows_roster_updates(
    tmp_path: Path, write_config, outbox: Outbox, pty: PtyPort
) -> None:
    agent = start(tmp_path, write_config, outbox, pty)
    try:
        pad = pty.sim(1)
        assert pad.login("S404").acked  # no roster file yet
        assert pad.wait_for(lambda g: g.displays and g.displays[-1] == "S404")
        write_roster(
            tmp_path / "data", [{"id": "S404", "name": "李四", "role": "chief", "window": "A03"}]
        )
        assert pad.resume().acked
        assert pad.wait_for(lambda g: g.displays[-1] == "李四")
        (tmp_path / "data" / "roster.json").write_text("{broken", "utf-8")
        assert pad.resume().acked  # a broken roster never stops the pad
        assert pad.wait_for(lambda g: g.displays[-1] == "S404")
    finally:
        agent.stop()


def test_invite_unanswered_expires_and_answered_invite_does_not(
    tmp_path: Path, write_config, outbox: Outbox, pty: PtyPort
) -> None:
    write_roster(
        tmp_path / "data", [{"id": "S001", "name": "张三", "role": "staff", "window": "A03"}]
    )
    agent = start(tmp_path, write_config, outbox, pty, "[windows]\ninvite_timeout_s = 1\n")
    try:
        pad = pty.sim(1)
        assert pad.login("S001").acked
        answered = agent.bus.invite("A03")
        assert pad.wait_for(lambda g: g.invites and g.invites[-1] == (answered, "张三"))
        assert pad.rate(2, [5], invite=answered).acked
        assert agent.bus.pads[1].state.invites == {}  # closed: it cannot expire any more
        ignored = agent.bus.invite("A03")
        assert ignored != answered and ignored != 0
        wait_until(lambda: events(outbox, "rating.expired"), timeout=10)
        (expired,) = events(outbox, "rating.expired")
        assert expired["data"] == {
            "window": "A03",
            "pad": 1,
            "staff_id": "S001",
            "invite_id": ignored,
        }
        (rating,) = events(outbox, "rating.submitted")
        assert rating["data"]["invite_id"] == answered
        assert rating["data"]["reasons"] == ["其他"]
        with pytest.raises(KeyError, match="Z99"):
            agent.bus.invite("Z99")
    finally:
        agent.stop()


def test_pad_expired_and_agent_timeout_record_one_expiry(
    tmp_path: Path, write_config, outbox: Outbox, pty: PtyPort
) -> None:
    agent = start(tmp_path, write_config, outbox, pty, "[windows]\ninvite_timeout_s = 60\n")
    try:
        pad = pty.sim(1)
        invite_id = agent.bus.invite("A03")
        assert pad.wait_for(lambda g: g.invites)
        assert pad.expired(invite_id).acked  # the pad's own timer ran out first
        assert len(events(outbox, "rating.expired")) == 1
        # Crash between the commit and the state save: the invitation is still open on disk
        # and the agent's timer fires for it later. The shared invite key keeps it single.
        state = agent.bus.pads[1].state
        state.invites[invite_id] = window_state.Invitation(deadline=time.time() - 1, staff_id=None)
        wait_until(lambda: state.invites == {})
        assert len(events(outbox, "rating.expired")) == 1
    finally:
        agent.stop()


def test_window_state_survives_an_agent_restart(
    tmp_path: Path, write_config, outbox: Outbox, pty: PtyPort
) -> None:
    agent = start(tmp_path, write_config, outbox, pty)
    pad = pty.sim(1)
    assert pad.login("S002").acked
    assert pad.pause().acked
    agent.stop()
    saved = json.loads((tmp_path / "data" / "windows-state.json").read_text("utf-8"))
    assert saved["windows"]["A03"]["staff_id"] == "S002"
    agent = start(tmp_path, write_config, outbox, pty)
    try:
        assert pad.wait_for(lambda g: g.displays.count("暂停服务") >= 2)
        assert pad.rate(3).acked
        assert events(outbox, "rating.submitted")[0]["data"]["staff_id"] == "S002"
    finally:
        agent.stop()


def test_time_at_start_every_period_and_after_hello(
    tmp_path: Path, write_config, outbox: Outbox, pty: PtyPort
) -> None:
    agent = start(tmp_path, write_config, outbox, pty)
    try:
        pad = pty.sim(1)
        assert pad.wait_for(lambda g: len(g.times) == 1)
        # The bus thread schedules the next TIME just after sending this one; wait for
        # that, or the test's "the hour has passed" would be overwritten by it.
        assert wait_until(lambda: agent.bus._next_time > 0.0)
        agent.bus._next_time = 0.0  # the hour has passed
        assert pad.wait_for(lambda g: len(g.times) == 2)
        assert pad.hello("FW-2.1").acked  # a rebooted pad lost its clock and display
        assert pad.wait_for(lambda g: len(g.times) == 3 and g.displays[-1] == "暂停服务")
        assert agent.bus.pads[1].firmware == "FW-2.1"
    finally:
        agent.stop()


def test_hello_resets_the_seq_window(
    tmp_path: Path, write_config, outbox: Outbox, pty: PtyPort
) -> None:
    agent = start(tmp_path, write_config, outbox, pty)
    try:
        pad = pty.sim(1)
        for level in (1, 2, 3):
            assert pad.rate(level).acked  # seq 0, 1, 2
        assert pad.reboot().acked  # HELLO with seq 0
        for level in (4, 5):
            assert pad.rate(level).acked  # seq 1, 2 again: new ratings, not duplicates
        assert [e["data"]["level"] for e in events(outbox, "rating.submitted")] == [1, 2, 3, 4, 5]
    finally:
        agent.stop()


def test_stale_dedupe_key_after_a_reboot_without_hello(
    tmp_path: Path, write_config, outbox: Outbox, pty: PtyPort, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The pad rebooted while the agent was down and its HELLO was lost: its seq restarts at
    # 0 without a HELLO. A key older than any possible resend is stale and must not eat a
    # new frame, even one with the same content (same level, no reasons) at the same seq.
    monkeypatch.setattr(window_state, "DUPLICATE_HORIZON_S", 0.3)
    agent = start(tmp_path, write_config, outbox, pty)
    try:
        pad = pty.sim(1, resend_s=0.1)
        assert pad.rate(5).acked
        dup = pad.send(0x10, b"\x05\x00\x00\x00\x00", duplicate=True)  # seq 1, sent twice
        assert dup.acked
        pad.close()
        time.sleep(0.4)
        fresh = pty.sim(1, resend_s=0.1)  # a new pad life, seq 0 again
        assert fresh.rate(5).acked  # byte-identical to the first rating
        assert [e["data"]["level"] for e in events(outbox, "rating.submitted")] == [5, 5, 5]
        # The keys kept in memory are the fresh frame's alone: expired ones are dropped as
        # frames come in, so a pad sending back to back cannot grow the table past the horizon.
        assert len(agent.bus._seen) == 1
    finally:
        agent.stop()


@pytest.mark.slow
def test_silent_pad_goes_offline_and_comes_back(
    tmp_path: Path, write_config, outbox: Outbox, pty: PtyPort
) -> None:
    agent = start(tmp_path, write_config, outbox, pty, "[windows]\nheartbeat_s = 1\n")
    try:
        pad = pty.sim(1)
        assert pad.heartbeat().acked
        wait_until(lambda: events(outbox, "device.fault"), timeout=10)
        fault = events(outbox, "device.fault")[0]["data"]
        assert fault["component"] == "pad:1" and "offline" in fault["detail"]
        assert agent.bus.health()["pads"]["1"]["online"] is False
        assert pad.heartbeat().acked
        wait_until(lambda: events(outbox, "device.recovered"))
        assert agent.bus.health()["pads"]["1"]["online"] is True
    finally:
        agent.stop()


def test_reason_labels_from_config(
    tmp_path: Path, write_config, outbox: Outbox, pty: PtyPort
) -> None:
    agent = start(
        tmp_path, write_config, outbox, pty, '[windows]\nreason_labels = ["态度差", "慢"]\n'
    )
    try:
        pad = pty.sim(1)
        assert pad.rate(1, [1, 7]).acked
        assert pad.rate(3, [0]).acked  # reasons are for levels 1-2 only
        got = [e["data"]["reasons"] for e in events(outbox, "rating.submitted")]
        assert got == [["慢", "原因7"], []]
    finally:
        agent.stop()


def test_factories_one_worker_per_port(tmp_path: Path, write_config, outbox: Outbox) -> None:
    cfg = pad_config(
        write_config,
        tmp_path / "data",
        [("loop://", 1, "A01"), ("loop://", 2, "A02"), ("/dev/ttyUSB7", 1, "B01")],
    )
    factories = window_state.window_worker_factories(cfg, outbox)
    assert sorted(factories) == ["pads:/dev/ttyUSB7", "pads:loop://"]
    worker = factories["pads:loop://"]()
    assert worker.name == "pads:loop://" and not worker.alive()
    assert sorted(worker.bus.pads) == [1, 2]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[windows]\ninvite_timout_s = 5\n",
            "windows.invite_timout_s: unknown key 'invite_timout_s'; "
            "did you mean 'invite_timeout_s'?",
        ),
        (
            "[windows]\nheartbeat_s = 0\n",
            "windows.heartbeat_s: expected greater than or equal to 1, got 0",
        ),
        (
            '[windows]\nreason_labels = ["a", " "]\n',
            "windows.reason_labels: expected a non-empty label for reason bit 1",
        ),
    ],
)
def test_bad_windows_config(tmp_path: Path, write_config, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        pad_config(write_config, tmp_path, [("loop://", 1, "A01")], text)
    assert message in str(err.value)


def test_one_baud_rate_per_bus(tmp_path: Path, write_config) -> None:
    path = write_config(
        f'[device]\nid = "p"\nsite = "s"\ndata_dir = "{tmp_path}"\n'
        '[[pad]]\nport = "/dev/ttyUSB0"\naddress = 1\nwindow = "A01"\n'
        '[[pad]]\nport = "/dev/ttyUSB0"\nbaud = 19200\naddress = 2\nwindow = "A02"\n'
    )
    from agent.config import load_agent_config

    with pytest.raises(ConfigError) as err:
        load_agent_config(path)
    assert "pad[2]: baud 19200 on /dev/ttyUSB0 differs from pad[1] (9600)" in str(err.value)


def test_expired_without_invite_id_uses_the_frame_key(
    tmp_path: Path, write_config, outbox: Outbox, pty: PtyPort
) -> None:
    agent = start(tmp_path, write_config, outbox, pty)
    try:
        pad = pty.sim(1)
        assert pad.expired(0).acked
        assert pad.expired(0).acked  # a second one (new seq): not a duplicate of the first
        got = [e["data"]["invite_id"] for e in events(outbox, "rating.expired")]
        assert got == [None, None]
    finally:
        agent.stop()


def test_time_withheld_while_the_clock_is_implausible(
    tmp_path: Path, write_config, outbox: Outbox, pty: PtyPort, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A device that lost its RTC says 1970: the pads keep their own clock rather than that.
    monkeypatch.setattr(window_state, "CLOCK_FLOOR_UNIX", int(time.time()) + 10**6)
    agent = start(tmp_path, write_config, outbox, pty)
    try:
        pad = pty.sim(1)
        assert pad.hello().acked
        # HELLO is answered with TIME then DISPLAY: the display arrives, the time does not.
        assert pad.wait_for(lambda g: len(g.displays) >= 2)
        assert pad.got.times == []
        monkeypatch.setattr(window_state, "CLOCK_FLOOR_UNIX", 0)  # NTP fixed the clock
        agent.bus._next_time = 0.0
        assert pad.wait_for(lambda g: g.times)
        assert pad.got.times and abs(pad.got.times[0] - time.time()) < 5
    finally:
        agent.stop()


def test_workers_run_under_the_supervisor(
    tmp_path: Path, write_config, outbox: Outbox, pty: PtyPort
) -> None:
    from agent.supervisor import Supervisor

    cfg = pad_config(write_config, tmp_path / "data", [(str(pty.link), 1, "A03")])
    sup = Supervisor(window_state.window_worker_factories(cfg, outbox), tick_s=0.05)
    sup.start_all()
    try:
        name = f"pads:{pty.link}"
        first = sup.workers[name]
        wait_until(lambda: sup.health()[name]["state"] == "ok")
        first.stop(5.0)  # the worker dies (as if its thread crashed)
        sup.check_once()  # the supervisor notices and builds a fresh one
        second = sup.workers[name]
        assert second is not first and second.alive()
        wait_until(lambda: sup.health()[name]["state"] == "ok")
        pad = pty.sim(1)
        assert pad.login("S003").acked  # state file shared: the new worker carries on
        assert events(outbox, "window.login")[0]["data"]["staff_id"] == "S003"
    finally:
        for worker in sup.workers.values():
            worker.stop(5.0)


class UnwritableDriver:
    """A driver whose port accepts nothing: every write fails as on a vanished adapter."""

    port = "/dev/ttyUSB7"

    def send(self, addr: int, msg: object, seq: int | None = None) -> None:
        raise serial.SerialException("write failed: [Errno 5] Input/output error")

    def stats(self) -> dict:
        return {}


def test_a_failed_display_write_on_link_up_leaves_no_pad_half_recovered(
    tmp_path: Path, outbox: Outbox
) -> None:
    pads = [PadSection(port=UnwritableDriver.port, address=a, window=f"B0{a}") for a in (1, 2)]
    bus = window_state.PadBus(
        UnwritableDriver.port,
        pads,
        UnwritableDriver(),  # type: ignore[arg-type]
        outbox,
        WindowsSection(),
        window_state.StateFile(tmp_path / "windows-state.json"),
        RosterWatch(tmp_path),
    )
    bus.on_link(False, "unplugged")
    assert len(events(outbox, "device.fault")) == 2
    # The DISPLAY write fails: the error goes to the link (a link fault, it reopens), but
    # only after every pad's state was brought up to date.
    with pytest.raises(serial.SerialException):
        bus.on_link(True, "open")
    assert all(p.online and not p.fault_reported for p in bus.pads.values())
    recovered = [e["data"]["component"] for e in events(outbox, "device.recovered")]
    assert recovered == ["pad:1", "pad:2"]
    assert bus._next_time == 0.0  # TIME goes out as soon as the link is back


class ListDriver:
    port = "/dev/ttyUSB7"

    def __init__(self) -> None:
        self.sent: list[tuple[int, object, int | None]] = []

    def send(self, addr: int, msg: object, seq: int | None = None) -> None:
        self.sent.append((addr, msg, seq))

    def stats(self) -> dict:
        return {}


def test_an_invite_id_issued_again_expires_again(tmp_path: Path, outbox: Outbox) -> None:
    def new_bus(state_file: str) -> window_state.PadBus:
        return window_state.PadBus(
            ListDriver.port,
            [PadSection(port=ListDriver.port, address=1, window="B01")],
            ListDriver(),  # type: ignore[arg-type]
            outbox,
            WindowsSection(),
            window_state.StateFile(tmp_path / state_file),
            RosterWatch(tmp_path),
        )

    def let_it_expire(bus: window_state.PadBus, invite_id: int) -> None:
        bus.pads[1].state.invites[invite_id].deadline = 0.0  # the timeout passed
        bus.on_tick(time.monotonic())

    bus = new_bus("windows-state.json")
    first = bus.invite("B01")
    let_it_expire(bus, first)
    # The state file is lost (a restored backup, a wiped data_dir but for the outbox): the
    # invite counter starts again and hands out the same id within the day.
    bus = new_bus("windows-state-new.json")
    bus.pads[1].state.next_invite = first
    assert bus.invite("B01") == first
    let_it_expire(bus, first)
    assert [e["data"]["invite_id"] for e in events(outbox, "rating.expired")] == [first, first]
    # The pad's own EXPIRED for the second invitation is the same expiry, recorded once.
    bus.on_message(1, 9, Expired(first))
    assert len(events(outbox, "rating.expired")) == 2
    assert (1, Ack(), 9) in bus.driver.sent
