"""agent/windows/simulator.py: the pad simulator as a library and as ``hall-agent simulate pad``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.outbox import Outbox
from agent.windows.simulator import CMD, FdPort, SimPad, build_frame
from tests.padkit import Agent, PtyBridge, PtyPort, events, pad_config

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """\
# a morning at window A01
hello SIM-9.9
login S001
expect display S001
garbage 40
rate 5
truncate
badcrc
drop-acks 1
rate 1 reasons=0,2
pause
expect display 暂停服务
repeat 3 rate 4
resume
reboot
rate 3
logout
"""


def simulate(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "simulate", "pad", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def bridged(tmp_path: Path, write_config, outbox: Outbox):
    bridge = PtyBridge(tmp_path)
    cfg = pad_config(write_config, tmp_path / "data", [(str(bridge.a.link), 1, "A01")])
    agent = Agent(cfg, outbox)
    agent.wait_up()
    yield bridge, agent
    agent.stop()
    bridge.close()


def test_cli_script_drives_the_agent_end_to_end(bridged, tmp_path: Path, outbox: Outbox) -> None:
    bridge, agent = bridged
    script = tmp_path / "morning.pad"
    script.write_text(SCRIPT, encoding="utf-8")
    proc = simulate("--port", str(bridge.b.link), "--script", str(script), "--seed", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "expect display '暂停服务': ok" in proc.stdout
    assert "<- TIME" in proc.stdout
    assert "frames_acked=" in proc.stdout.splitlines()[-1]
    got = [(e["type"], e["data"].get("level")) for e in events(outbox)]
    assert got == [
        ("window.login", None),
        ("rating.submitted", 5),
        ("rating.submitted", 1),
        ("window.paused", None),
        ("rating.submitted", 4),
        ("rating.submitted", 4),
        ("rating.submitted", 4),
        ("window.resumed", None),
        ("rating.submitted", 3),
        ("window.logout", None),
    ]
    link = agent.bus.health()["link"]
    assert link["garbage_bytes"] > 0 and link["bad_crc"] + link["truncated"] >= 2
    assert agent.bus.health()["pads"]["1"]["duplicates"] >= 1  # the dropped ack's resend
    assert agent.bus.pads[1].firmware == "SIM-1.0"  # reboot sends the default firmware


def test_cli_script_from_stdin_and_failed_expectation(bridged) -> None:
    bridge, _agent = bridged
    proc = subprocess.run(
        [sys.executable, "-m", "agent.cli", "simulate", "pad", "--port", str(bridge.b.link)],
        cwd=ROOT,
        input="login S001\nexpect display 不是这个 0.3\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "expect display '不是这个': FAILED" in proc.stdout


def test_cli_reports_script_and_port_errors(tmp_path: Path) -> None:
    pty = PtyPort(tmp_path)
    try:
        bad = tmp_path / "bad.pad"
        bad.write_text("# fine\nrate 5 colour=red\n", encoding="utf-8")
        proc = simulate("--port", str(pty.link), "--script", str(bad))
        assert proc.returncode == 2
        assert "script line 2" in proc.stderr and "unknown option 'colour=red'" in proc.stderr
        bad.write_text("dance\n", encoding="utf-8")
        proc = simulate("--port", str(pty.link), "--script", str(bad))
        assert proc.returncode == 2 and "unknown command 'dance'" in proc.stderr
    finally:
        pty.unplug()
    proc = simulate("--port", str(tmp_path / "no-such-port"), "--script", "/dev/null")
    assert proc.returncode == 1 and "cannot open" in proc.stderr
    proc = simulate("--port", "loop://", "--address", "300")
    assert proc.returncode == 2 and "expected 1..247" in proc.stderr


def test_help_lists_the_scriptable_options() -> None:
    proc = simulate("--help")
    assert proc.returncode == 0
    for flag in ("--port", "--address", "--baud", "--script", "--heartbeat", "--linger"):
        assert flag in proc.stdout


def test_library_parser_tolerates_garbage_and_other_addresses(tmp_path: Path) -> None:
    master, slave = os.openpty()
    try:
        pad = SimPad(FdPort(master), 3)
        disp = "暂停服务".encode()
        os.write(slave, b"\x00\xaa\x13" + build_frame(3, CMD["display"], 0, disp))
        os.write(slave, build_frame(4, CMD["display"], 0, b"other pad"))
        bad = bytearray(build_frame(3, CMD["display"], 1, b"broken"))
        bad[-2] ^= 0xFF
        os.write(slave, bytes(bad) + build_frame(3, CMD["invite"], 2, b"\x07\x00\xe5\xbc\xa0"))
        assert pad.wait_for(lambda g: g.invites == [(7, "张")])
        assert pad.got.displays == ["暂停服务"]
        assert pad.got.bad == 2  # the other address and the bad CRC
        pad.close()
    finally:
        os.close(master)
        os.close(slave)


def test_unanswered_frame_is_resent_with_the_same_seq(tmp_path: Path) -> None:
    master, slave = os.openpty()
    try:
        import tty

        tty.setraw(slave)
        pad = SimPad(FdPort(master), 1, resend_s=0.05, max_tries=3)
        result = pad.rate(5)
        assert not result.acked and result.tries == 3
        data = b""
        while len(data) < 3 * 13:
            data += os.read(slave, 4096)
        frame = build_frame(1, CMD["rating"], 0, b"\x05\x00\x00\x00\x00")
        assert data == frame * 3
        pad.close()
    finally:
        os.close(master)
        os.close(slave)
