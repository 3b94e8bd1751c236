"""drivers/pad/link.py + agent/windows/state.py over real ptys, with the simulator as the pad."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import termios
import textwrap
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import serial

from agent.outbox import Outbox
from agent.windows.simulator import CMD, SimBus, build_frame
from drivers.pad.codec import Display, FrameParser, Message, Time, encode
from drivers.pad.link import HallPadLink
from tests.padkit import Agent, PtyPort, events, pad_config, wait_until

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def pty(tmp_path: Path):
    port = PtyPort(tmp_path)
    yield port
    port.unplug()


@pytest.fixture
def agent(pty: PtyPort, tmp_path: Path, write_config, outbox: Outbox):
    cfg = pad_config(write_config, tmp_path / "data", [(str(pty.link), 1, "A01")])
    running = Agent(cfg, outbox)
    running.wait_up()
    yield running
    running.stop()


@pytest.mark.slow
def test_ratings_with_garbage_duplicates_and_lost_acks_are_recorded_exactly_once(
    agent: Agent, pty: PtyPort, outbox: Outbox
) -> None:
    rng = random.Random(4)
    pad = pty.sim(1, resend_s=0.1, seed=4)
    n = 300  # more than 256: the pad's seq wraps and reuses numbers
    levels = []
    for _ in range(n):
        if rng.random() < 0.10:
            pad.garbage(rng.randint(1, 30))
        if rng.random() < 0.10:
            pad.drop_acks += 1  # the ack is "lost": the pad resends the same seq
        level = rng.randint(1, 5)
        levels.append(level)
        result = pad.rate(level, [0, 3] if level <= 2 else [], duplicate=rng.random() < 0.10)
        assert result.acked, f"rating {len(levels)} not acked"
    ratings = events(outbox, "rating.submitted")
    assert [e["data"]["level"] for e in ratings] == levels
    assert len({e["id"] for e in ratings}) == n
    health = agent.bus.health()
    assert health["pads"]["1"]["recorded"] == n
    assert health["pads"]["1"]["duplicates"] >= pad.got.ignored_acks > 0
    assert health["link"]["garbage_bytes"] > 0
    assert pad.got.acks >= n


def test_agent_crash_after_commit_before_ack_records_once(
    pty: PtyPort, tmp_path: Path, write_config
) -> None:
    data = tmp_path / "data"
    config = write_config(
        f'[device]\nid = "pad-01"\nsite = "jiedong"\ndata_dir = "{data}"\n'
        f'[[pad]]\nport = "{pty.link}"\naddress = 1\nwindow = "A01"\n'
    )
    # A real process that dies (os._exit) right after the outbox commit of the first rating,
    # before the ack is written; then a second, normal agent process on the same files.
    script = textwrap.dedent(
        f"""
        import os, sys, threading
        from agent.config import load_agent_config
        from agent.outbox import Outbox
        from agent.windows.state import window_worker_factories
        from drivers.pad.link import HallPadLink
        crash = sys.argv[1] == "crash"
        class CrashingLink(HallPadLink):
            def send(self, addr, msg, seq=None):
                if crash and type(msg).__name__ == "Ack" and seq == 1:
                    os._exit(17)  # committed, not acked
                super().send(addr, msg, seq)
        cfg = load_agent_config({str(config)!r})
        box = Outbox.for_config(cfg, clock=lambda: "synced")
        box.min_free_bytes = 0
        (make,) = window_worker_factories(
            cfg, box, driver_factory=lambda p, b: CrashingLink(p, b)).values()
        w = make(); w.start()
        print("up", flush=True)
        sys.stdin.read()  # run until the test closes stdin
        w.stop(); box.close()
        """
    )

    def start(mode: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", script, mode],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "up"
        return proc

    first = start("crash")
    # Resends every 500 ms like a pad; more than the contract's 10 times, so that a slow
    # process start on a loaded machine still lands inside the resend window.
    pad = pty.sim(1, max_tries=41)
    assert pad.hello().acked  # seq 0
    result: dict[str, Any] = {}
    import threading

    sender = threading.Thread(target=lambda: result.setdefault("r", pad.rate(2, [1])))
    sender.start()  # seq 1: committed by the first process, which then dies
    assert first.wait(10) == 17
    second = start("normal")
    sender.join(10)
    assert result["r"].acked and result["r"].tries > 1  # acked only after the restart
    assert pad.rate(5).acked
    second.stdin.close()  # type: ignore[union-attr]
    assert second.wait(10) == 0
    box = Outbox(data / "outbox.db", device="pad-01", site="jiedong", min_free_bytes=0)
    try:
        ratings = events(box, "rating.submitted")
    finally:
        box.close()
    assert [(e["data"]["level"], e["data"]["reasons"]) for e in ratings] == [
        (2, ["办事效率低"]),
        (5, []),
    ]


def test_unplug_and_replug_recovers_without_restart(
    agent: Agent, pty: PtyPort, outbox: Outbox
) -> None:
    worker = agent.worker
    pad = pty.sim(1)
    assert pad.rate(4).acked
    pad.close()
    pty.unplug()  # the USB adapter is pulled: reads fail with EIO, the by-id link vanishes
    wait_until(lambda: events(outbox, "device.fault"))
    fault = events(outbox, "device.fault")[0]["data"]
    assert fault["component"] == "pad:1"
    assert "A01" in fault["detail"]
    assert worker.health()["state"] == "fault"
    pty.plug()  # plugged back in: a new pty, the stable name points to it again
    pad = pty.sim(1)
    wait_until(lambda: events(outbox, "device.recovered"))
    assert events(outbox, "device.recovered")[0]["data"]["component"] == "pad:1"
    assert pad.hello().acked  # a USB pad powers up with its port: HELLO, seq from 0 again
    assert pad.rate(3).acked
    assert [e["data"]["level"] for e in events(outbox, "rating.submitted")] == [4, 3]
    assert agent.worker is worker and worker.alive()
    assert len(events(outbox, "device.fault")) == 1  # one fault per outage, not per retry
    assert worker.health()["link"]["opens"] >= 2


def test_outbox_refusing_means_no_ack_and_the_resend_is_recorded(
    agent: Agent, pty: PtyPort, outbox: Outbox
) -> None:
    pad = pty.sim(1, resend_s=0.1, max_tries=2)
    outbox.min_free_bytes = 1 << 60  # the disk is "full": append raises OutboxFullError
    refused = pad.rate(5)
    assert not refused.acked and refused.tries == 2
    assert events(outbox, "rating.submitted") == []
    assert agent.bus.append_failures >= 2
    outbox.min_free_bytes = 0
    pad.seq = refused.seq  # the pad keeps trying the same frame
    assert pad.rate(5).acked
    assert len(events(outbox, "rating.submitted")) == 1


def test_bad_payload_and_foreign_address_are_counted_not_acked(
    agent: Agent, pty: PtyPort, outbox: Outbox
) -> None:
    pad = pty.sim(1, resend_s=0.1, max_tries=1)
    assert not pad.send(CMD["rating"], b"\x05\x00\x00\x00").acked  # 4 bytes, CRC is right
    assert not pad.send(CMD["rating"], b"\x09\x00\x00\x00\x00").acked  # level 9
    assert not pad.login("S1\x00").acked  # a C string's NUL: the centre would refuse it
    stranger = pty.sim(9, resend_s=0.1, max_tries=1)
    assert not stranger.rate(5).acked  # address 9 is not configured: not ours to ack
    wait_until(lambda: agent.bus.foreign_frames == 1)
    assert agent.bus.health()["link"]["bad_payload"] == 3
    assert events(outbox, "rating.submitted") == []
    assert events(outbox, "window.login") == []
    assert agent.bus.pads[1].state.staff_id is None


def test_several_pads_on_one_bus_and_one_usb_port_per_pad(
    tmp_path: Path, write_config, outbox: Outbox
) -> None:
    bus_port, usb_port = PtyPort(tmp_path, "bus"), PtyPort(tmp_path, "usb")
    cfg = pad_config(
        write_config,
        tmp_path / "data",
        [
            (str(bus_port.link), 1, "A01"),
            (str(bus_port.link), 2, "A02"),
            (str(usb_port.link), 1, "B01"),
        ],
    )
    agent = Agent(cfg, outbox)
    try:
        assert sorted(agent.workers) == [f"pads:{bus_port.link}", f"pads:{usb_port.link}"]
        agent.wait_up()
        from agent.windows.simulator import FdPort

        bus = SimBus(FdPort(bus_port.master), [1, 2], resend_s=0.1)
        bus_port._sims.append(bus)  # type: ignore[arg-type]  # closed by unplug()
        usb = usb_port.sim(1, resend_s=0.1)
        import threading

        results = []

        def run(pad: Any, level: int) -> None:
            for _ in range(20):
                results.append(pad.rate(level).acked)

        threads = [
            threading.Thread(target=run, args=(bus.pads[1], 5)),
            threading.Thread(target=run, args=(bus.pads[2], 1)),
            threading.Thread(target=run, args=(usb, 3)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert results.count(True) == 60
        got = Counter(
            (e["data"]["window"], e["data"]["pad"], e["data"]["level"])
            for e in events(outbox, "rating.submitted")
        )
        assert got == {("A01", 1, 5): 20, ("A02", 2, 1): 20, ("B01", 1, 3): 20}
    finally:
        agent.stop()
        bus_port.unplug()
        usb_port.unplug()


class FakeSerial:
    """The neighbour of the unit under test: a port whose input the test controls."""

    def __init__(self) -> None:
        self.incoming = bytearray()
        self.written: list[bytes] = []

    @property
    def in_waiting(self) -> int:
        return len(self.incoming)

    def write(self, data: bytes) -> int:
        self.written.append(data)
        return len(data)


def test_half_duplex_no_transmit_while_a_frame_is_arriving() -> None:
    link = HallPadLink("fake://", 9600)
    port = FakeSerial()
    link._ser = port
    frame = encode(1, 4, Display("x"))
    link.parser.feed(frame[:5])  # a pad's frame is half-way in
    link._thread_id = __import__("threading").get_ident()
    link.send(1, Display("暂停服务"))
    assert port.written == []  # queued, not talked over the arriving frame
    link.parser.feed(frame[5:])
    port.incoming += b"\xaa"  # and the next byte is already waiting in the driver
    assert not link._bus_idle()
    port.incoming.clear()
    assert link._bus_idle()
    link.send(1, Display("欢迎"))  # bus idle and in the I/O thread: written at once
    assert FrameParser().feed(port.written[0])[0].payload == "欢迎".encode()


def test_spy_url_and_bad_port_errors(
    tmp_path: Path, pty: PtyPort, outbox: Outbox, write_config
) -> None:
    # spy:// (pyserial's hex-dump wrapper, what a technician would use) opens the same pty.
    cfg = pad_config(
        write_config, tmp_path / "data", [(f"spy://{pty.link}?file={os.devnull}", 1, "A01")]
    )
    agent = Agent(cfg, outbox)
    try:
        agent.wait_up()
        pad = pty.sim(1)
        assert pad.login("S007").acked
        assert events(outbox, "window.login")[0]["data"]["staff_id"] == "S007"
    finally:
        agent.stop()
    missing = pad_config(write_config, tmp_path / "data2", [(str(tmp_path / "nope"), 1, "A09")])
    box = Outbox(tmp_path / "ob2.db", device="pad-01", site="jiedong", min_free_bytes=0)
    agent = Agent(missing, box)
    try:
        wait_until(lambda: events(box, "device.fault"))
        detail = events(box, "device.fault")[0]["data"]["detail"]
        assert "cannot open" in detail and "nope" in detail
    finally:
        agent.stop()
        box.close()


def test_raw_frame_bytes_from_the_simulator_are_acked_with_the_same_seq(
    agent: Agent, pty: PtyPort
) -> None:
    pad = pty.sim(1)
    pad.seq = 200
    result = pad.heartbeat()
    assert result.acked and result.seq == 200
    assert build_frame(1, CMD["heartbeat"], 0, b"\x00") == encode(
        1, 0, __import__("drivers.pad.codec", fromlist=["Heartbeat"]).Heartbeat(0)
    )


class SocketPort:
    """The pad end of a TCP connection (a serial-to-Ethernet converter), for SimPad."""

    def __init__(self, conn: Any):
        self.conn = conn
        conn.settimeout(0.05)

    def read(self, size: int = 1) -> bytes:
        try:
            return self.conn.recv(4096)
        except TimeoutError:
            return b""

    def write(self, data: bytes) -> int:
        self.conn.sendall(data)
        return len(data)


def test_socket_url_reaches_a_pad_behind_a_serial_server(
    tmp_path: Path, write_config, outbox: Outbox
) -> None:
    import socket

    from agent.windows.simulator import SimPad
    from tests.conftest import free_port

    port = free_port()
    server = socket.create_server(("127.0.0.1", port))
    cfg = pad_config(write_config, tmp_path / "data", [(f"socket://127.0.0.1:{port}", 5, "C01")])
    agent = Agent(cfg, outbox)
    try:
        server.settimeout(10)
        conn, _ = server.accept()
        pad = SimPad(SocketPort(conn), 5)
        assert pad.rate(5).acked
        assert pad.wait_for(lambda g: g.times and g.displays)
        assert events(outbox, "rating.submitted")[0]["data"]["pad"] == 5
        pad.close()
        conn.close()
    finally:
        agent.stop()
        server.close()


def test_loop_url_own_frames_echoed_back_are_ignored(
    tmp_path: Path, write_config, outbox: Outbox
) -> None:
    # An RS-485 adapter with local echo hands the agent its own DISPLAY/TIME frames back:
    # they must be ignored, never acked or recorded.
    cfg = pad_config(write_config, tmp_path / "data", [("loop://", 1, "A01")])
    agent = Agent(cfg, outbox)
    try:
        agent.wait_up()
        wait_until(lambda: agent.bus.health()["link"]["ignored"] >= 2)  # DISPLAY + TIME
        assert agent.bus.health()["link"]["rx_frames"] == 0
        assert events(outbox) == []
    finally:
        agent.stop()


def test_seq_wrap_through_heartbeats_does_not_swallow_a_rating(
    agent: Agent, pty: PtyPort, outbox: Outbox
) -> None:
    pad = pty.sim(1, resend_s=0.1)
    assert pad.rate(5).acked  # seq 0
    for _ in range(255):
        assert pad.heartbeat().acked  # seq 1..255: nothing recorded, but the window moves
    assert pad.seq == 0
    assert pad.rate(2).acked  # seq 0 again, a new rating seconds later
    assert [e["data"]["level"] for e in events(outbox, "rating.submitted")] == [5, 2]


# --- link faults the pty cannot produce: a scripted port as the link's neighbour -----------


class ScriptedSerial:
    """A port whose reads or writes fail the way a vanishing USB adapter makes them fail."""

    def __init__(self, read_error: Exception | None = None, write_error: Exception | None = None):
        self.read_error = read_error
        self.write_error = write_error
        self.closed = False

    @property
    def in_waiting(self) -> int:
        return 0

    def read(self, size: int = 1) -> bytes:
        if self.read_error is not None:
            raise self.read_error
        threading.Event().wait(0.002)  # the read timeout of a silent line
        return b""

    def write(self, data: bytes) -> int:
        if self.write_error is not None:
            raise self.write_error
        return len(data)

    def close(self) -> None:
        self.closed = True


class LinkHandler:
    """A PadHandler that records link transitions and writes through the link like PadBus
    does: a DISPLAY when the port opens, a TIME from its timer."""

    def __init__(
        self, link: HallPadLink, on_up: Message | None = None, on_tick: Message | None = None
    ):
        self.link = link
        self.up_message = on_up
        self.tick_message = on_tick
        self.links: list[tuple[bool, str]] = []

    def on_link(self, up: bool, detail: str) -> None:
        self.links.append((up, detail))
        if up and self.up_message is not None:
            self.link.send(1, self.up_message)

    def on_message(self, addr: int, seq: int, msg: Message) -> None:
        pass

    def on_tick(self, now: float) -> None:
        if self.tick_message is not None and self.link.up:
            self.link.send(1, self.tick_message)


def serve_in_thread(link: HallPadLink, handler: LinkHandler) -> tuple[threading.Event, Any]:
    stop = threading.Event()
    thread = threading.Thread(target=link.serve, args=(handler, stop), daemon=True)
    thread.start()
    return stop, thread


def test_termios_error_from_open_or_read_is_a_link_fault_not_the_end_of_the_thread() -> None:
    # Serial.open() lets a raw termios.error (not an OSError) out of tcsetattr/tcflush when a
    # USB adapter vanishes mid-open; the same can come from a session's termios calls.
    calls: list[int] = []

    def open_port(port: str, **kwargs: Any) -> ScriptedSerial:
        calls.append(len(calls))
        if len(calls) <= 3:
            raise termios.error(5, "Input/output error")
        if len(calls) == 4:
            return ScriptedSerial(read_error=termios.error(5, "Input/output error"))
        return ScriptedSerial()  # the adapter is back for good

    link = HallPadLink("/dev/ttyUSB9", open_port=open_port, backoff_s=(0.01,))
    handler = LinkHandler(link)
    stop, thread = serve_in_thread(link, handler)
    try:
        wait_until(lambda: link.counts["opens"] == 2 and handler.links[-1][0], timeout=5)
        assert thread.is_alive()
        assert [up for up, _ in handler.links] == [False, True, False, True]
        assert "cannot open /dev/ttyUSB9" in handler.links[0][1]
        assert "Input/output error" in handler.links[2][1]
        assert link.counts["faults"] == 2
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


@pytest.mark.parametrize("when", ["display after the open", "time from the timer"])
def test_a_failed_write_in_a_handler_callback_is_a_link_fault_with_growing_backoff(
    when: str,
) -> None:
    # A write that times out (adapter wedged) used to be swallowed as a handler error: the
    # timer retried it every tick, with a traceback each time, and the link never reopened.
    ports: list[ScriptedSerial] = []

    def open_port(port: str, **kwargs: Any) -> ScriptedSerial:
        ports.append(ScriptedSerial(write_error=serial.SerialTimeoutException("Write timeout")))
        return ports[-1]

    link = HallPadLink("/dev/ttyUSB9", open_port=open_port, backoff_s=(0.01, 0.02, 0.04))
    delays: list[float] = []
    real_wait = link._wait

    def wait(stop: threading.Event, delay: float, handler: Any) -> None:
        delays.append(delay)
        real_wait(stop, delay, handler)

    link._wait = wait  # type: ignore[method-assign]
    if when == "display after the open":
        handler = LinkHandler(link, on_up=Display("暂停服务"))
    else:
        handler = LinkHandler(link, on_tick=Time(1_800_000_000))
    stop, thread = serve_in_thread(link, handler)
    try:
        wait_until(lambda: len(ports) >= 5, timeout=5)
    finally:
        stop.set()
        thread.join(5)
    assert link.counts["faults"] >= 4
    assert all(port.closed for port in ports)
    assert delays[:4] == [0.01, 0.02, 0.04, 0.04]  # sessions that fail at once back off
    assert [up for up, _ in handler.links[:4]] == [True, False, True, False]
    assert "Write timeout" in handler.links[1][1]


def test_valid_crc_nonsense_is_counted_but_its_log_lines_are_limited(
    agent: Agent, pty: PtyPort, outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    """A pad sending valid-CRC nonsense used to log one warning per frame (67 MB in 15 s).
    Every frame is still counted; the lines per pad are limited and say how many were left."""
    from agent.windows.simulator import build_frame

    caplog.set_level("WARNING", logger="drivers.pad.link")
    n = 2000
    junk = b"".join(
        build_frame(1, CMD["rating"], i % 256, b"\x09\x00\x00\x00\x00") for i in range(n)
    )
    os.write(pty.master, junk)
    wait_until(lambda: agent.bus.health()["link"]["bad_payload"] == n, 30)
    lines = [r for r in caplog.records if r.name == "drivers.pad.link" and "pad 1 seq" in r.message]
    assert 1 <= len(lines) <= 5
    assert agent.bus.health()["link"]["log_lines_suppressed"] == n - len(lines)
    assert events(outbox, "rating.submitted") == []
    pad = pty.sim(1, resend_s=0.1)
    assert pad.rate(4).acked  # the pad is still served


def test_log_limiter_lets_a_burst_through_per_key_and_reports_what_it_left_out() -> None:
    from drivers.pad.base import LogLimiter

    now = [0.0]
    limiter = LogLimiter(burst=2, period_s=60.0, clock=lambda: now[0])
    assert [limiter.allow(1) for _ in range(5)] == [(True, 0), (True, 0)] + [(False, 0)] * 3
    assert limiter.allow(2) == (True, 0)  # another pad has its own budget
    now[0] = 61.0
    assert limiter.allow(1) == (True, 3)  # the next line says 3 were left out
    assert limiter.suppressed_total == 3
