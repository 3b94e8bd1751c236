"""``hall-agent check``: probes a technician runs after installing or changing a box.

Each probe returns a :class:`ProbeResult`; none raises. Hardware probes import their driver
lazily so that checking a window device never loads the vision stack.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from agent.config import AgentConfig
from agent.envelope import CLOCK_FLOOR_UNIX, system_clock_state


@dataclass(frozen=True)
class ProbeResult:
    name: str
    ok: bool
    detail: str
    warn: bool = False  # passed, but worth a technician's attention

    @property
    def label(self) -> str:
        return "FAIL" if not self.ok else "WARN" if self.warn else " ok "


def probe_disk(cfg: AgentConfig) -> list[ProbeResult]:
    data_dir = Path(cfg.device.data_dir)
    existing = data_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not os.access(existing, os.W_OK):
        return [ProbeResult("disk", False, f"{existing} is not writable by this user")]
    free = shutil.disk_usage(existing).free
    floor = cfg.sync.min_free_mb * 1024 * 1024
    where = str(data_dir) if data_dir.exists() else f"{data_dir} (will be created)"
    if free < floor + cfg.sync.max_outbox_mb * 1024 * 1024 // 4:
        return [
            ProbeResult(
                "disk",
                False,
                f"{where}: {free // 2**20} MiB free; expected at least sync.min_free_mb "
                f"({cfg.sync.min_free_mb}) plus a quarter of sync.max_outbox_mb",
            )
        ]
    return [ProbeResult("disk", True, f"{where}: {free // 2**20} MiB free")]


def probe_clock(cfg: AgentConfig) -> list[ProbeResult]:
    if time.time() < CLOCK_FLOOR_UNIX:
        return [
            ProbeResult("clock", False, "clock is before 2026: RTC lost? events will be unsynced")
        ]
    state = system_clock_state()
    if state == "synced":
        return [ProbeResult("clock", True, "synchronised (NTP)")]
    return [
        ProbeResult(
            "clock",
            True,
            "not confirmed by NTP (timedatectl show -p NTPSynchronized); events are marked "
            "clock=unsynced and the centre keeps received_at",
            warn=True,
        )
    ]


def probe_broker(cfg: AgentConfig, timeout: float = 5.0) -> list[ProbeResult]:
    host, port = cfg.mqtt.host, cfg.mqtt.port
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        return [ProbeResult("broker", False, f"{host}:{port}: {exc.strerror or exc}")]
    try:
        from sync.mqtt import probe_connect
    except ImportError:
        return [ProbeResult("broker", True, f"{host}:{port}: TCP reachable")]
    ok, detail = probe_connect(cfg.mqtt, client_id=f"{cfg.device.id}-check", timeout=timeout)
    return [ProbeResult("broker", ok, f"{host}:{port}: {detail}")]


def probe_pads(cfg: AgentConfig) -> list[ProbeResult]:
    """Open each pad port once (pads sharing an RS-485 bus share it); never acks anything."""
    import errno
    import re

    import serial  # pyserial: light, always installed

    results = []
    opened: dict[str, tuple[bool, bool, str]] = {}  # port -> (ok, warn, detail)
    for i, pad in enumerate(cfg.pad, start=1):
        name = f"pad[{i}] {pad.window}@{pad.address}"
        if pad.port not in opened:
            try:
                # exclusive: the agent opens its ports the same way, so a busy port is seen.
                port = serial.serial_for_url(
                    pad.port, baudrate=pad.baud, timeout=0.2, exclusive=True
                )
                port.close()
                warn = bool(re.match(r"^/dev/tty(USB|ACM)\d+$", pad.port))
                detail = f"{pad.port} opens at {pad.baud} baud"
                if warn:
                    detail += "; use /dev/serial/by-id/… (ttyUSB numbers change on replug)"
                opened[pad.port] = (True, warn, detail)
            except (serial.SerialException, ValueError, OSError) as exc:
                busy = getattr(exc, "errno", None) in (errno.EAGAIN, errno.EBUSY) or (
                    "exclusively lock" in str(exc)
                )
                if busy:
                    opened[pad.port] = (
                        True,
                        True,
                        f"{pad.port} is in use by another process (a running hall-agent?)",
                    )
                else:
                    opened[pad.port] = (False, False, f"{pad.port}: {exc}")
        ok, warn, detail = opened[pad.port]
        results.append(ProbeResult(name, ok, detail, warn))
    return results


def _quiet_opencv() -> None:
    """Keep OpenCV's and FFmpeg's own messages (``[ WARN:0@0.04] global cap_v4l.cpp …``,
    ``[tcp @ 0x…] Connection refused``) out of the probe's output: the probe states the
    problem itself, in one line. The variables are read when cv2 is first imported."""
    os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    import cv2

    log = getattr(getattr(cv2, "utils", None), "logging", None)  # absent in some builds
    if log is not None:
        log.setLogLevel(log.LOG_LEVEL_SILENT)


def probe_camera(cfg: AgentConfig, timeout: float = 10.0) -> list[ProbeResult]:
    """Open the camera, read one frame: its size, frame rate and the kiosk's working range."""
    att = cfg.attendance
    assert att is not None
    source = att.camera
    shown = source.split("@")[-1] if "://" in source else source  # no RTSP password in output
    try:
        _quiet_opencv()
        import cv2

        from drivers.camera import describe_range, open_capture, redact, working_range
    except ImportError:
        return [ProbeResult("camera", False, "OpenCV is not installed (kiosk extra)")]
    shown = redact(source)
    result: list[ProbeResult] = []

    def _grab() -> None:
        cap = open_capture(source)
        try:
            ok, frame = cap.read() if cap.isOpened() else (False, None)
            if ok and frame is not None:
                h, w = frame.shape[:2]
                fps = cap.get(cv2.CAP_PROP_FPS) or 0
                rate = f" at {fps:.0f} fps" if fps else " (frame rate not reported)"
                span = describe_range(att.min_face_px, w, h, att.camera_hfov_deg)
                detail = f"{shown}: frame {w}x{h}{rate}; {span}"
                # A kiosk people must walk up to within a metre of is not what a hall buys.
                short = working_range(att.min_face_px, w, h, att.camera_hfov_deg)[1] < 1.0
                if short:
                    detail += (
                        "; people must come within 1 m: lower attendance.min_face_px or use a "
                        "camera with more pixels"
                    )
                result.append(ProbeResult("camera", True, detail, warn=short))
            else:
                result.append(ProbeResult("camera", False, f"{shown}: cannot open or read"))
        finally:
            cap.release()

    thread = threading.Thread(target=_grab, daemon=True)
    thread.start()
    thread.join(timeout)
    if not result:
        return [ProbeResult("camera", False, f"{shown}: no frame within {timeout:.0f} s")]
    return result


def probe_calendar(cfg: AgentConfig, today: date | None = None) -> list[ProbeResult]:
    """Kiosks: does chinesecalendar (or the config) know this year's holidays (and next)?"""
    if cfg.attendance is None:
        return []
    from agent.schedule import calendar_advice, calendar_gaps

    if today is None:
        today = datetime.now(ZoneInfo(cfg.device.timezone)).date()
    gaps = calendar_gaps(today, cfg.attendance.schedule)
    if gaps:
        return [ProbeResult("calendar", True, calendar_advice(gaps), warn=True)]
    years = f"{today.year}" + (f" and {today.year + 1}" if today.month == 12 else "")
    return [ProbeResult("calendar", True, f"holiday data covers {years}")]


PROBES: dict[str, Callable[[AgentConfig], list[ProbeResult]]] = {
    "disk": probe_disk,
    "clock": probe_clock,
    "broker": probe_broker,
    "pads": probe_pads,
    "camera": probe_camera,
    "calendar": probe_calendar,
}


def run_probes(cfg: AgentConfig, only: set[str] | None = None) -> list[ProbeResult]:
    results: list[ProbeResult] = []
    for name, probe in PROBES.items():
        if only is not None and name not in only:
            continue
        if name == "pads" and not cfg.pad:
            continue
        if name == "camera" and cfg.attendance is None:
            continue
        try:
            results.extend(probe(cfg))
        except Exception as exc:  # a probe bug must not hide the other results
            results.append(ProbeResult(name, False, f"probe failed: {exc!r}"))
    return results
