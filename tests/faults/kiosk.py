"""A kiosk for the fault suite: a gallery enrolled with ``hall-agent enroll`` from a real
photo, and a camera video file in which the enrolled person and a stranger walk past."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests import media
from tests.faults.hall import Device, Hall
from tests.faults.procs import ROOT

ATTENDANCE = "debounce_s = 2\nreject_interval_s = 2\n"


def kiosk_video() -> Path:
    a = media.Actor
    return media.cached_video(
        "faults-kiosk",
        [
            a("obama2.jpg", 0.3, 3.0),
            a("biden.jpg", 3.5, 6.0, flip=True),
            a("obama2.jpg", 6.5, 9.5),
        ],
        10.0,
    )


def enroll(conf: Path) -> subprocess.CompletedProcess[str]:
    photos = [str(media.photo(name)) for name in media.ENROL["obama"]]
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "agent.cli",
            "-c",
            str(conf),
            "enroll",
            "--staff-id",
            "s001",
            "--name",
            "奥巴马",
            *photos,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )


def add_enrolled_kiosk(hall: Hall, name: str = "kiosk-01", **kw: object) -> Device:
    """A kiosk device with s001 enrolled, started on the test video."""
    dev = hall.add_kiosk(name, kiosk_video(), attendance=ATTENDANCE, start=False, **kw)  # type: ignore[arg-type]
    enroll(dev.conf)
    return dev.start()
