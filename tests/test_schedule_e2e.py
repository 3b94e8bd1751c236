"""One schedule, end to end: the centre changes the hall's hours, a kiosk classifies by them,
and the report agrees with what the kiosk decided (docs/attendance.md "One schedule").

Real Mosquitto, a real collector on a real SQLite store, the kiosk's real uplink and its real
recognition child process punching a real face from a video, and the real
``hall-central schedule publish`` command.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agent.attendance_worker import AttendanceWorker
from agent.gallery import gallery_path
from agent.outbox import Outbox
from agent.schedule_file import load_published, schedule_path
from central.collector import Collector
from central.config import load_central_config
from central.reports import attendance, build
from central.reports.month import Month
from central.schedule_publish import history
from central.store import open_store
from contract.schedule import Schedule
from sync.uplink import Uplink
from tests import media
from tests.conftest import skip_unless
from tests.media import Actor
from tests.support import wait_for

pytestmark = [
    pytest.mark.kiosk,
    skip_unless(shutil.which("mosquitto") is not None, "needs mosquitto"),
]

TZ = ZoneInfo("Asia/Shanghai")
REPO = Path(__file__).resolve().parents[1]
ROSTER = {
    "v": 1,
    "version": 1,
    "staff": [{"id": "obama", "name": "测试员", "role": "staff", "window": "A01"}],
}


def central_toml(path: Path, broker_url: str, store: Path, morning: str | None) -> Path:
    hours = f'\n[schedule.winter]\nmorning = "{morning}"\n' if morning else ""
    path.write_text(
        f'[mqtt]\nurl = "{broker_url}"\n\n[store]\nurl = "sqlite:///{store}"\n'
        f'\n[board]\nlisten = ""\n{hours}',
        encoding="utf-8",
    )
    return path


def kiosk_toml(path: Path, broker_url: str, data_dir: Path, video: Path) -> Path:
    path.write_text(
        f'[device]\nid = "kiosk-01"\nsite = "jiedong"\ndata_dir = "{data_dir}"\n\n'
        f'[mqtt]\nurl = "{broker_url}"\n\n[sync]\nmin_free_mb = 0\n\n'
        f'[attendance]\ncamera = "{video}"\nrealtime = false\nisolation = "process"\n# two punches on two days from one video\ndebounce_s = 0\n',
        encoding="utf-8",
    )
    return path


def punch_once(cfg, outbox: Outbox, at: datetime) -> None:
    """The kiosk's recognition child plays the video with its clock at ``at``."""
    worker = AttendanceWorker(cfg, outbox, media_epoch=at)
    worker.start()
    try:
        assert worker.ended.wait(90), worker.health()
        assert worker.health()["punches"] == 1
    finally:
        worker.stop()


def test_hours_changed_at_the_centre_reach_the_kiosk_and_the_report_agrees(
    tmp_path, broker, monkeypatch
) -> None:
    from agent.config import load_agent_config

    # The punches are in the past (the video's clock): a kiosk whose clock is confirmed has
    # them filed by their own time, as a kiosk that was offline for days (docs/sync.md).
    monkeypatch.setenv("HALL_AGENT_CLOCK", "synced")

    store = tmp_path / "hall.db"
    v1_toml = central_toml(tmp_path / "central.toml", broker.url, store, None)
    collector = Collector(load_central_config(v1_toml))
    collector.store.put_roster("jiedong", ROSTER)  # the site the schedule goes to
    collector.start()
    video = media.cached_video("walk", [Actor("obama2.jpg", 0.2, 3.6)], 4.0)
    data_dir = tmp_path / "kiosk"
    cfg = load_agent_config(kiosk_toml(tmp_path / "kiosk.toml", broker.url, data_dir, video))
    media.gallery_of("obama").save(gallery_path(cfg.device.data_dir))
    outbox = Outbox(tmp_path / "outbox.db", device="kiosk-01", site="jiedong", min_free_bytes=0)
    uplink = Uplink(cfg, outbox)
    uplink.start()
    try:
        # The centre's first version reaches the kiosk: the regulation's winter hours.
        assert wait_for(lambda: schedule_path(data_dir).exists(), 20)
        first = load_published(data_dir)
        assert first is not None and first.version == 1
        assert first.hours.winter.morning == "08:30-11:30"
        assert wait_for(lambda: (data_dir / "roster.json").exists(), 20)
        # Wednesday 25 November, 08:50: twenty minutes late by 08:30.
        punch_once(cfg, outbox, datetime(2026, 11, 25, 8, 50, tzinfo=TZ))

        # The office moves the winter morning to 09:00 at the centre and publishes it.
        v2_toml = central_toml(tmp_path / "central-2.toml", broker.url, store, "09:00-12:00")
        done = subprocess.run(
            [sys.executable, "-m", "central.cli", "-c", str(v2_toml), "schedule", "publish"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert "schedule version 2 retained for jiedong" in done.stdout
        assert wait_for(lambda: (load_published(data_dir) or first).version == 2, 20)
        # Thursday 26 November, 08:50: on time by 09:00, judged by the new version.
        punch_once(cfg, outbox, datetime(2026, 11, 26, 8, 50, tzinfo=TZ))
        assert wait_for(lambda: outbox.pending_count() == 0, 30), outbox.stats()
    finally:
        uplink.stop()
        collector.stop()
        outbox.close()

    cfg2 = load_central_config(v2_toml)
    with open_store(cfg2.store.url, timezone=cfg2.central.timezone) as hall:
        rows = hall.query("SELECT data FROM events WHERE type = 'attendance.punch' ORDER BY at")
        kiosk = [r[0] if isinstance(r[0], dict) else json.loads(r[0]) for r in rows]
        decided = [(p["slot"], p["status"], p["schedule_version"]) for p in kiosk]
        assert decided == [("morning_in", "late", 1), ("morning_in", "on_time", 2)]
        late_by = kiosk[0]["minutes_off"]  # the face is in the frame 0.2 s after 08:50
        assert late_by in (20, 21)
        # The report judges each punch by the version its kiosk used, not by today's config:
        # by the current hours alone the first punch would be on time.
        wednesday = datetime(2026, 11, 25, 8, 50, tzinfo=TZ)
        assert Schedule(cfg2.schedule).classify(wednesday).status == "on_time"
        month, now = Month(2026, 11, TZ), datetime(2026, 11, 28, tzinfo=TZ)
        att = attendance.compute(hall, month, history(hall, cfg2.schedule), now=now)
        [person] = [p for p in att.people if p.person.staff_id == "obama"]
        cells = {
            d.plan.day.day: {c.slot: (c.status, c.minutes) for c in d.cells} for d in person.days
        }
        assert cells[25]["morning_in"] == ("late", late_by)
        assert cells[26]["morning_in"] == ("on_time", 0)
        assert person.late == 1 and person.late_min == late_by
        # The command's report takes the same path (central/reports build).
        table = build("attendance", hall, month, cfg2.schedule, now=now)
        assert "迟到" in json.dumps([s.rows for s in table.sheets], ensure_ascii=False, default=str)
