"""``bash scripts/demo.sh``: the whole demo hall for a minute, stopped like Ctrl-C.

The demo runs as a terminal would run it (its own session and process group); after 60 s
the group gets SIGINT, as from Ctrl-C. Then punches from the kiosk and ratings from the
pads must be in the central SQLite store, the month's reports printed, and no process the
demo started may be left.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import require_or_skip
from tests.support import free_port

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.kiosk, pytest.mark.slow]


def session_members(sid: int) -> list[str]:
    """Command lines of the live processes in session ``sid`` (Linux /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) != sid:
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            if state == "Z":
                continue
            out.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (ProcessLookupError, PermissionError, FileNotFoundError):
            continue
    return out


def test_the_demo_hall_runs_a_minute_and_stops_clean_on_ctrl_c(tmp_path):
    for tool in ("mosquitto", "mosquitto_ctrl", "socat"):
        if shutil.which(tool) is None:
            require_or_skip(f"the demo needs {tool}")
    from tests import media

    media.require_photos()
    work = tmp_path / "demo"
    kiosk_port, board_port = free_port(), free_port()
    proc = subprocess.Popen(
        [
            "bash",
            "scripts/demo.sh",
            "--workdir",
            str(work),
            "--kiosk-port",
            str(kiosk_port),
            "--board-port",
            str(board_port),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # like a shell's job: its own process group
    )
    pages: dict[str, str] = {}
    try:
        started = time.monotonic()
        # Both pages answer while the hall runs: the kiosk's technician view (served by the
        # kiosk agent, `hall-agent run`) and the board (served by the collector).
        while time.monotonic() - started < 60:
            for name, url in (
                ("tech", f"http://127.0.0.1:{kiosk_port}/tech.json"),
                ("board", f"http://127.0.0.1:{board_port}/board.json"),
            ):
                with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as r:
                    pages[name] = r.read().decode()  # the latest answer counts
            time.sleep(2)
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, output
    db = sqlite3.connect(work / "hall.db")
    counts = dict(db.execute("SELECT type, count(*) FROM events GROUP BY type").fetchall())
    db.close()
    assert counts.get("attendance.punch", 0) >= 2, (counts, output[-3000:])
    assert counts.get("rating.submitted", 0) >= 2, (counts, output[-3000:])
    # The live view showed them as they landed, and the reports came at the end.
    assert "attendance.punch" in output and "rating.submitted" in output
    assert "好差评月报" in output
    tech = json.loads(pages["tech"])
    assert tech["camera"]["people_enrolled"] == 2 and tech["camera"]["source"]
    assert "windows" in json.loads(pages["board"])
    # Nothing it started is left: no process in its session, nothing holding the workdir.
    deadline = time.monotonic() + 10
    while session_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert session_members(proc.pid) == []
