"""The shipped units pass ``systemd-analyze verify``; the collector speaks sd_notify.

``systemd-analyze verify`` needs no running systemd (it works in a container); the units'
``/opt/hall-agent`` paths are pointed at this checkout's .venv so that the "is not executable"
check means something.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import require_or_skip
from tests.support import Mosquitto

REPO = Path(__file__).resolve().parents[1]
UNITS = ["hall-agent.service", "hall-central.service"]


def _needs_systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        require_or_skip("systemd-analyze is not installed (apt-get install systemd)")
    return tool


def _localised(unit: str, tmp_path: Path) -> Path:
    text = (REPO / "systemd" / unit).read_text()
    out = tmp_path / unit
    out.write_text(text.replace("/opt/hall-agent/.venv", str(REPO / ".venv")))
    return out


@pytest.mark.parametrize("unit", UNITS)
def test_unit_passes_systemd_analyze_verify(unit, tmp_path):
    tool = _needs_systemd_analyze()
    if not (REPO / ".venv" / "bin" / "hall-central").exists():
        pytest.fail("run scripts/setup.sh first: the units' commands must exist")
    path = _localised(unit, tmp_path)
    result = subprocess.run([tool, "verify", str(path)], capture_output=True, text=True, timeout=60)
    # verify exits 0 on mere parse warnings ("Failed to parse ..., ignoring"): any line that
    # names the unit is a finding.
    findings = [line for line in result.stderr.splitlines() if unit in line]
    assert result.returncode == 0 and not findings, result.stderr


def test_verify_would_catch_a_broken_unit(tmp_path):
    """The check above can fail: a misspelt Type= is reported."""
    tool = _needs_systemd_analyze()
    path = _localised("hall-central.service", tmp_path)
    path.write_text(path.read_text().replace("Type=notify", "Type=notifyy"))
    result = subprocess.run([tool, "verify", str(path)], capture_output=True, text=True)
    assert "hall-central.service" in result.stderr


def test_central_unit_is_notify_with_a_config_check_and_a_watchdog():
    text = (REPO / "systemd" / "hall-central.service").read_text()
    lines = {
        line.split("=", 1)[0]: line.split("=", 1)[1]
        for line in text.splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert lines["Type"] == "notify"
    assert lines["ExecStartPre"].endswith("check --only config")
    assert int(lines["WatchdogSec"]) > 0
    assert lines["RestartPreventExitStatus"] == "78"


def test_collector_sends_ready_watchdog_and_stopping(tmp_path):
    """hall-central run under a fake systemd: a datagram socket in NOTIFY_SOCKET."""
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(20)
    with Mosquitto(tmp_path / "broker") as broker:
        cfg = tmp_path / "central.toml"
        cfg.write_text(
            f'[mqtt]\nurl = "{broker.url}"\n[store]\nurl = "sqlite:///{tmp_path}/hall.db"\n'
            '[board]\nlisten = ""\n'
        )
        env = {**os.environ, "NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000"}
        env.pop("WATCHDOG_PID", None)
        proc = subprocess.Popen(
            [sys.executable, "-m", "central.cli", "-c", str(cfg), "run"],
            cwd=REPO,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            messages: list[str] = []
            while sum(m == "WATCHDOG=1" for m in messages) < 2:
                messages.append(sock.recv(4096).decode())
            assert messages[0].startswith("READY=1"), messages
            proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 20
            while "STOPPING=1" not in messages and time.monotonic() < deadline:
                messages.append(sock.recv(4096).decode())
            assert "STOPPING=1" in messages
            assert proc.wait(20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            sock.close()
