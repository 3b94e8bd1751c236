"""``bash scripts/demo.sh``: the whole demo hall for a minute, stopped like Ctrl-C.

The demo runs as a terminal would run it (its own session and process group); after 60 s
the group gets SIGINT, as from Ctrl-C. Then punches from the kiosk and ratings from the
pads must be in the central SQLite store, the month's reports printed, and no process the
demo started may be left.

This suite runs in the dev install; that the demo also runs on a fresh clone with only the
kiosk install (no pytest) is shown by scripts/ci_fresh_clone.sh in CI, and here by preparing
the demo's media with pytest and tests/ made unimportable.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from scripts import demo
from tests.conftest import require_or_skip
from tests.support import free_port

ROOT = Path(__file__).resolve().parents[1]


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


NAMES = {"s001": "张三", "s003": "王五"}


@pytest.mark.parametrize(
    ("kind", "data", "expected"),
    [
        (
            "attendance.punch",
            {"staff_id": "s001", "slot": "morning_in", "status": "late", "minutes_off": 3},
            "打卡     张三 · 上午上班 · 迟到 3 分钟  [kiosk-01 #5]",
        ),
        (
            "attendance.punch",
            {"staff_id": "s001", "slot": "extra", "status": "holiday", "minutes_off": None},
            "打卡     张三 · 其他 · 休息日  [kiosk-01 #5]",
        ),
        (
            "rating.submitted",
            {"window": "A01", "staff_id": "s003", "level": 4, "reasons": []},
            "评价     A01 · 王五 · 满意(4)  [kiosk-01 #5]",
        ),
        (
            "rating.submitted",
            {"window": "A02", "staff_id": None, "level": 1, "reasons": ["态度不好", "其他"]},
            "评价     A02 · 非常不满意(1) · 原因：态度不好、其他  [kiosk-01 #5]",
        ),
        ("attendance.rejected", {"reason": "unknown_face"}, "未通过   未识别的人(unknown_face)"),
        ("window.paused", {"window": "A01", "staff_id": "s003"}, "暂停服务 A01 · 王五"),
        ("window.login", {"window": "A02", "staff_id": "s404"}, "登录     A02 · s404"),
        ("device.fault", {"component": "camera", "detail": "no frames"}, "设备故障 camera: no"),
        ("some.future_type", {}, "some.future_type "),
    ],
)
def test_the_live_view_line_is_chinese_with_the_codes_in_brackets(kind, data, expected):
    line = demo.event_line("2026-11-26T09:12:03.120+08:00", "kiosk-01", 5, kind, data, NAMES)
    assert line.startswith(f"  09:12:03 {expected}"), line
    assert line.endswith("[kiosk-01 #5]")


def test_the_live_view_shows_the_halls_time_not_the_demo_machines(monkeypatch):
    """The devices stamp events in the hall's zone ([device] timezone, Asia/Shanghai); the
    punch was classified in it and the reports use it, so the live view must too."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        assert demo.clock_text("2026-12-04T01:37:56.806+08:00") == "01:37:56"
        assert demo.clock_text("2026-12-03T17:37:57.018+00:00") == "17:37:57"
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.kiosk
def test_the_demo_prepares_its_media_without_pytest_or_the_tests(tmp_path):
    """A kiosk install has no pytest; the demo must not reach tests/ (it once did, through
    tests/media.py and tests/conftest.py, and a fresh clone's demo ended in a traceback)."""
    from tests import media

    media.require_photos()  # fetched here (skip or fail as the suite does) before the probe
    probe = textwrap.dedent(
        """
        import json, runpy, sys
        from pathlib import Path
        sys.modules["pytest"] = None  # an import of either now raises ImportError
        sys.modules["tests"] = None
        ns = runpy.run_path("scripts/demo.py", run_name="demo_probe")
        work = Path(sys.argv[1])
        video = ns["sample_media"](work)
        print(json.dumps({
            "video": str(video),
            "enrolled": sorted(str(p.relative_to(work)) for p in work.rglob("*.jpg")),
            "loaded": sorted(m for m in sys.modules if m.split(".")[0] in ("tests", "pytest")),
        }))
        """
    )
    r = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.splitlines()[-1])
    assert Path(out["video"]).stat().st_size > 0
    assert out["enrolled"] == [
        "enrol/s001/obama.jpg",
        "enrol/s001/obama3.jpg",
        "enrol/s002/biden.jpg",
    ]
    assert out["loaded"] == ["pytest", "tests"]  # only the blocking entries themselves


@pytest.mark.kiosk
@pytest.mark.slow
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
    # The live view showed them as they landed, in Chinese, and the reports came at the end.
    assert " 打卡     张三 · " in output and " 打卡     李四 · " in output, output[-3000:]
    assert " 评价     A01 · 王五 · " in output, output[-3000:]
    assert "attendance.punch" not in output and "rating.submitted" not in output
    assert "好差评月报" in output
    tech = json.loads(pages["tech"])
    assert tech["camera"]["people_enrolled"] == 2 and tech["camera"]["source"]
    assert "windows" in json.loads(pages["board"])
    # Nothing it started is left: no process in its session, nothing holding the workdir.
    deadline = time.monotonic() + 10
    while session_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert session_members(proc.pid) == []
