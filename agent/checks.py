"""``hall-agent check``: probes a technician runs after installing or changing a box.

Each probe returns a :class:`ProbeResult`; none raises. Hardware probes import their driver
lazily so that checking a window device never loads the vision stack.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from agent.config import AgentConfig
from agent.envelope import CLOCK_FLOOR_UNIX, system_clock_state
from sync.cli_common import ProbeResult

if TYPE_CHECKING:  # numpy only where a gallery is opened
    from agent.kiosk.gallery import Gallery
    from agent.kiosk.gallery_audit import LookAlike


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
    """Connect once with the device's credentials; a failure says which kind (sync.probe)."""
    from sync.probe import probe_broker as connect_once

    account = f"add-device {cfg.device.site} {cfg.device.id}"  # user name = device.id
    result = connect_once(
        cfg.mqtt, client_id=f"{cfg.device.id}-check", timeout=timeout, add_account=account
    )
    return [ProbeResult("broker", result.ok, result.line())]


SERVICE_USER = "hall-agent"  # systemd/hall-agent.service User=


# --- the user the probes run as --------------------------------------------------------


def user_groups(user: str | None = None) -> tuple[str, set[str]]:
    """(user name, group names) of ``user`` per /etc/group, or of this process.

    A named user's groups are what a new login (or ``check --as-user``) gets; this process's
    own groups are what it can open right now.
    """
    import grp
    import pwd

    if user is None:
        name = pwd.getpwuid(os.geteuid()).pw_name
        gids = {os.getegid(), *os.getgroups()}
    else:
        entry = pwd.getpwnam(user)
        name = entry.pw_name
        gids = set(os.getgrouplist(entry.pw_name, entry.pw_gid))
    names = set()
    for gid in gids:
        try:
            names.add(grp.getgrgid(gid).gr_name)
        except KeyError:
            names.add(str(gid))
    return name, names


def needed_groups(cfg: AgentConfig) -> list[str]:
    """Groups the service user needs: dialout for serial pads, video for a local camera."""
    needed = []
    if any(pad.port.startswith("/dev/") for pad in cfg.pad):
        needed.append("dialout")
    camera = cfg.attendance.camera if cfg.attendance else None
    if camera is not None and (camera.isdigit() or camera.startswith("/dev/")):
        needed.append("video")
    return needed


def _group_hint(user: str, groups: set[str], group: str) -> str:
    if group in groups:
        return f"user {user} is in group {group}"
    return f"user {user} is NOT in group {group} (usermod -aG {group} {user})"


def probe_user(cfg: AgentConfig) -> list[ProbeResult]:
    """Who the probes run as and whether that user has the device groups."""
    user, groups = user_groups()
    needed = needed_groups(cfg)
    if os.geteuid() == 0:
        detail = (
            "running as root, which opens every port and file the service user may not: "
            f"run `check --as-user {SERVICE_USER}` (the unit's User=) to see what the "
            "agent will see"
        )
        try:
            service = user_groups(SERVICE_USER)
        except KeyError:
            service = None
        if service is not None and needed:
            detail += "; " + "; ".join(_group_hint(*service, g) for g in needed)
        return [ProbeResult("user", True, detail, warn=True)]
    missing = [g for g in needed if g not in groups]
    if missing:
        hints = "; ".join(_group_hint(user, groups, g) for g in missing)
        return [
            ProbeResult(
                "user",
                True,
                f"{hints}; systemd/hall-agent.service adds it (SupplementaryGroups=), a "
                "shell or another unit does not",
                warn=True,
            )
        ]
    have = ", ".join(f"{g}" for g in needed) or "no device groups needed"
    return [ProbeResult("user", True, f"probes run as {user} ({have})")]


# --- pads ------------------------------------------------------------------------------


def serial_adapters() -> list[str]:
    """The serial adapters the kernel names stably (udev's /dev/serial/by-id links)."""
    by_id = Path("/dev/serial/by-id")
    try:
        return sorted(str(p) for p in by_id.iterdir())
    except OSError:
        return []


def device_group_hint(group: str) -> str:
    """Whether the user the probes run as has ``group``; run as root, the service user's.

    Under ``check --as-user`` the probes run as that user, so it is that user's membership.
    """
    if os.geteuid() != 0:
        return _group_hint(*user_groups(), group)
    # Root opens anything: say what the unit's user (User=hall-agent) would get.
    try:
        return _group_hint(*user_groups(SERVICE_USER), group)
    except KeyError:
        return f"no user {SERVICE_USER} yet (README, Installing a device)"


def _port_failure(port: str, exc: Exception) -> str:
    """One line: what failed for this port, the adapters present, the user's dialout."""
    import errno

    code = getattr(exc, "errno", None)
    if code == errno.ENOENT:
        what = "no such device (unplugged, or a different adapter)"
    elif code in (errno.EACCES, errno.EPERM):
        what = "permission denied"
    elif isinstance(code, int) and code > 0:
        what = os.strerror(code)
    else:
        # pyserial repeats the port in its messages; keep only the last clause.
        what = str(exc).replace(port, "").split(": ")[-1].strip() or type(exc).__name__
    parts = [f"{port}: {what}"]
    if port.startswith("/dev/"):
        adapters = serial_adapters()
        parts.append("serial adapters present: " + (", ".join(adapters) or "none found"))
        parts.append(device_group_hint("dialout"))
    return "; ".join(parts)


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
                    opened[pad.port] = (False, False, _port_failure(pad.port, exc))
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


# --- cameras ---------------------------------------------------------------------------

# VIDIOC_ENUM_FMT = _IOWR('V', 2, struct v4l2_fmtdesc) (linux/videodev2.h): the struct is
# index, type, flags (u32 each), description[32], pixelformat, mbus_code, reserved[3]: 64
# bytes. Asked directly, so listing formats needs no v4l-utils.
VIDIOC_ENUM_FMT = 0xC0405602
V4L2_BUF_TYPE_VIDEO_CAPTURE = 1
FMTDESC_PIXELFORMAT_AT = 12 + 32  # after index, type, flags and description[32]


@dataclass(frozen=True)
class VideoDevice:
    """A /dev/video* node as a technician needs it: path, kernel name, capture formats."""

    path: str
    name: str | None
    formats: tuple[str, ...] | None  # None: not readable (the note says why)
    note: str = ""
    by_id: str | None = None  # the stable /dev/v4l/by-id/… link to it, if udev made one

    def describe(self) -> str:
        """``/dev/video0 (HD Webcam C270: YUYV, MJPG) = /dev/v4l/by-id/…``; no ";" inside, the
        probe's line uses it between its parts."""
        if self.formats:
            formats = ", ".join(self.formats)
        elif self.formats is not None:
            formats = "no capture formats, likely a metadata node"
        else:
            formats = f"formats {self.note or 'unknown'}"
        text = f"{self.path} ({self.name or 'no name in sysfs'}: {formats})"
        return text + (f" = {self.by_id}" if self.by_id else "")


def capture_formats(path: Path) -> tuple[tuple[str, ...] | None, str]:
    """The capture pixel formats of a V4L2 node as fourcc codes ("YUYV", "MJPG"), or
    (None, why) when they cannot be read; never raises."""
    import errno
    import fcntl
    import struct

    try:
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):
            return None, "not readable by this user"
        return None, os.strerror(exc.errno or 0) if exc.errno else str(exc)
    found: list[str] = []
    try:
        for index in range(64):
            buf = bytearray(64)
            struct.pack_into("II", buf, 0, index, V4L2_BUF_TYPE_VIDEO_CAPTURE)
            try:
                fcntl.ioctl(fd, VIDIOC_ENUM_FMT, buf)
            except OSError as exc:
                if exc.errno == errno.EINVAL:  # past the last format (or not a capture node)
                    break
                return None, "unknown, not a V4L2 device" if exc.errno == errno.ENOTTY else str(exc)
            pixelformat = struct.unpack_from("I", buf, FMTDESC_PIXELFORMAT_AT)[0]
            fourcc = pixelformat.to_bytes(4, "little").decode("ascii", "replace").strip()
            found.append(fourcc)
    finally:
        os.close(fd)
    return tuple(found), ""


FormatReader = Callable[[Path], tuple[tuple[str, ...] | None, str]]


def video_devices(
    dev_root: Path = Path("/dev"),
    sys_root: Path = Path("/sys"),
    formats: FormatReader = capture_formats,
) -> list[VideoDevice]:
    """The video nodes present (``/dev/video*``), with their names from
    ``/sys/class/video4linux/*/name``, their capture formats and their by-id links."""
    import re

    nodes = [p for p in dev_root.glob("video*") if re.fullmatch(r"video\d+", p.name)]
    by_id: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for link in sorted((dev_root / "v4l" / "by-id").iterdir()):
            with contextlib.suppress(OSError):
                by_id.setdefault(Path(os.readlink(link)).name, f"/dev/v4l/by-id/{link.name}")
    out = []
    for node in sorted(nodes, key=lambda p: int(p.name[5:])):
        try:
            name: str | None = (sys_root / "class/video4linux" / node.name / "name").read_text()
            name = name.strip() or None
        except (OSError, UnicodeDecodeError):
            name = None
        fmts, note = formats(node)
        shown = f"/dev/{node.name}"
        out.append(VideoDevice(shown, name, fmts, note, by_id.get(node.name)))
    return out


def camera_device(source: str, dev_root: Path = Path("/dev")) -> Path | None:
    """The device node a camera source opens: ``0`` is /dev/video0; None for a stream or file."""
    if source.strip().isdigit():
        return dev_root / f"video{int(source)}"
    if source.startswith("/dev/"):
        return dev_root / source[len("/dev/") :]
    return None


def camera_failure(
    source: str,
    shown: str,
    what: str,
    dev_root: Path = Path("/dev"),
    sys_root: Path = Path("/sys"),
    formats: FormatReader = capture_formats,
) -> str:
    """One line, the shape of a pad port's: what failed, the video devices present with
    names and formats, the ``video`` membership (docs/check.md)."""
    node = camera_device(source, dev_root)
    if node is None:  # a stream or a file: no device to list
        return f"{shown}: {what}"
    if not node.exists():
        what = "no such device (unplugged, or a different camera)"
    elif not os.access(node, os.R_OK | os.W_OK):
        what = "permission denied"
    label = shown if shown.startswith("/dev/") else f"{shown} (/dev/{node.name})"
    devices = video_devices(dev_root, sys_root, formats)
    present = ", ".join(d.describe() for d in devices) or (
        "none found (is the camera plugged in? dmesg | tail)"
    )
    return "; ".join(
        [f"{label}: {what}", f"video devices present: {present}", device_group_hint("video")]
    )


# --- what a kiosk needs besides its camera ---------------------------------------------


def probe_gallery(cfg: AgentConfig) -> list[ProbeResult]:
    """A kiosk with nobody enrolled records nothing but attendance.rejected."""
    if cfg.attendance is None:
        return []
    try:
        from agent.kiosk.gallery import Gallery, GalleryError, gallery_path
    except ImportError:
        return [ProbeResult("gallery", False, "numpy is not installed (kiosk extra)")]
    path = gallery_path(cfg.device.data_dir)
    try:
        gallery = Gallery.load(path)
    except GalleryError as exc:
        return [ProbeResult("gallery", False, str(exc))]
    if len(gallery) == 0:
        return [
            ProbeResult(
                "gallery",
                False,
                f"{path}: nobody enrolled; every face will be rejected as unknown: run "
                "`hall-agent enroll --staff-id ID --name NAME PHOTO…` (docs/attendance.md)",
            )
        ]
    counts = f"{len(gallery)} people, {gallery.rows} encodings"
    from agent.kiosk.gallery import reenrol_hint
    from agent.kiosk.recognition import model_id

    model = model_id(cfg.attendance)
    if gallery.model != model:
        # The kiosk recognises nobody with this gallery (agent/kiosk/recognition.py _load_gallery).
        return [
            ProbeResult(
                "gallery",
                False,
                f"{path}: {counts} enrolled with the {gallery.model} model, but [attendance] "
                f"recognizer = {cfg.attendance.recognizer!r} ({model}): nobody will be "
                "recognised. " + reenrol_hint(gallery.model or ""),
            )
        ]
    pairs = _lookalike_pairs(cfg, gallery)
    if not pairs:
        return [ProbeResult("gallery", True, counts)]
    # A warning, not a failure: the kiosk refuses rather than guesses between two people it
    # cannot tell apart, but the technician should know who they are and what to do.
    rule = cfg.attendance.rule()
    closest = pairs[0]
    more = f" (and {len(pairs) - 1} more pairs)" if len(pairs) > 1 else ""
    return [
        ProbeResult(
            "gallery",
            True,
            f"{counts}; look-alike: {closest.a} and {closest.b} at distance "
            f"{closest.distance:.3f}, below tolerance + margin "
            f"{rule.tolerance + rule.margin:.2f}{more}: the kiosk may refuse them or take "
            "one for the other; run `hall-agent gallery audit` (docs/attendance.md)",
            warn=True,
        )
    ]


def _lookalike_pairs(cfg: AgentConfig, gallery: Gallery) -> list[LookAlike]:
    """Pairs of enrolled people the decision rule cannot safely separate, closest first;
    none when the gallery is another recognizer's (its distances are on another scale)."""
    from agent.kiosk.gallery_audit import lookalikes_of
    from drivers.face_models import RECOGNIZERS

    att = cfg.attendance
    if att is None or gallery.model != RECOGNIZERS[att.recognizer].model_id:
        return []
    return lookalikes_of(gallery, [p.staff_id for p in gallery.people()], att.rule())


def probe_models(cfg: AgentConfig) -> list[ProbeResult]:
    """Kiosks: the configured recognizer's model files, present and the pinned ones."""
    if cfg.attendance is None:
        return []
    from drivers.face_models import RECOGNIZERS, ModelError, default_models_dir, locate

    spec = RECOGNIZERS[cfg.attendance.recognizer]
    if not spec.files:
        return [ProbeResult("models", True, f"recognizer {spec.name}: models of its package")]
    directory = cfg.attendance.models_dir or default_models_dir()
    try:
        locate(spec, directory)
    except ModelError as exc:
        return [ProbeResult("models", False, str(exc))]
    names = ", ".join(m.name for m in spec.files)
    return [ProbeResult("models", True, f"recognizer {spec.name}: {names} in {directory}")]


def probe_roster(cfg: AgentConfig) -> list[ProbeResult]:
    """The roster names the staff; it arrives retained from the centre (docs/topics.md)."""
    if cfg.attendance is None:
        return []
    from agent.roster import load_roster, roster_path

    path = roster_path(cfg.device.data_dir)
    if not path.exists():
        return [
            ProbeResult(
                "roster",
                False,
                f"{path}: no roster yet; it arrives from the centre once the agent has run "
                f"connected (hall-central roster publish FILE --site {cfg.device.site})",
            )
        ]
    roster = load_roster(cfg.device.data_dir)
    if roster is None:
        return [ProbeResult("roster", False, f"{path}: unreadable or invalid (see the log)")]
    return [
        ProbeResult("roster", True, f"version {roster['version']}, {len(roster['staff'])} staff")
    ]


def probe_camera(cfg: AgentConfig, timeout: float = 10.0) -> list[ProbeResult]:
    """Open the camera, read one frame: its size, frame rate and the kiosk's working range."""
    att = cfg.attendance
    assert att is not None
    source = att.camera
    try:
        _quiet_opencv()
        import cv2

        from drivers.camera import describe_range, open_capture, redact, working_range
    except ImportError:
        return [ProbeResult("camera", False, "OpenCV is not installed (kiosk extra)")]
    shown = redact(source)  # no RTSP password in the output
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
                detail = camera_failure(
                    source, shown, "cannot open or read (in use by a running hall-agent?)"
                )
                result.append(ProbeResult("camera", False, detail))
        finally:
            cap.release()

    thread = threading.Thread(target=_grab, daemon=True)
    thread.start()
    thread.join(timeout)
    if not result:
        detail = camera_failure(source, shown, f"no frame within {timeout:.0f} s")
        return [ProbeResult("camera", False, detail)]
    return result


def probe_screen(cfg: AgentConfig) -> list[ProbeResult]:
    """Kiosks: who can see the kiosk page and its live camera image (docs/attendance.md
    "Access and preview"): loopback is ok; beyond it a token is required (a config error
    without one) and a live preview going over the network is a warning."""
    if cfg.attendance is None:
        return []
    from agent.config import is_loopback_listen

    screen = cfg.screen
    listen = screen.listen
    if not listen:
        return [ProbeResult("screen", True, "no kiosk page (listen = '')")]
    preview = screen.preview and screen.preview_fps > 0
    what = "page with the live camera preview" if preview else "page without the camera preview"
    token = "token required" if screen.token else "no token"
    if is_loopback_listen(listen):
        return [ProbeResult("screen", True, f"{what} on {listen}, loopback only ({token})")]
    if not screen.token:
        return [
            ProbeResult(
                "screen",
                False,
                f"{what} on {listen} is open to anyone on the network without a token: set "
                "[screen] token_file, or listen on 127.0.0.1 (docs/attendance.md)",
            )
        ]
    if preview:
        return [
            ProbeResult(
                "screen",
                True,
                f"{what} on {listen}, {token}: whoever has the token sees the camera, over "
                "plain HTTP; set [screen] preview = false unless the screen there needs the "
                "video (docs/attendance.md)",
                warn=True,
            )
        ]
    return [ProbeResult("screen", True, f"{what} on {listen}, {token}")]


def probe_schedule(cfg: AgentConfig, today: date | None = None) -> list[ProbeResult]:
    """Kiosks: which of the centre's schedule versions classifies punches, and does its
    calendar cover this year (and from December the next)?"""
    if cfg.attendance is None:
        return []
    from agent.schedule_file import schedule_status

    if today is None:
        today = datetime.now(ZoneInfo(cfg.device.timezone)).date()
    text, warn = schedule_status(cfg.device.data_dir, today)
    return [ProbeResult("schedule", True, text, warn=warn)]


def probe_summary(cfg: AgentConfig, now: datetime | None = None) -> list[ProbeResult]:
    """Kiosks: the centre's summary of the month (shown after a punch): its month and age."""
    if cfg.attendance is None:
        return []
    from agent.summary_file import summary_status

    now = now or datetime.now(ZoneInfo(cfg.device.timezone))
    text, warn = summary_status(cfg.device.data_dir, cfg.device.site, now)
    return [ProbeResult("summary", True, text, warn=warn)]


PROBES: dict[str, Callable[[AgentConfig], list[ProbeResult]]] = {
    "user": probe_user,
    "disk": probe_disk,
    "clock": probe_clock,
    "broker": probe_broker,
    "pads": probe_pads,
    "camera": probe_camera,
    "models": probe_models,
    "gallery": probe_gallery,
    "roster": probe_roster,
    "screen": probe_screen,
    "schedule": probe_schedule,
    "summary": probe_summary,
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


def _preload() -> None:
    """Import what the probes import lazily, while still root.

    The dropped child may not be able to read the Python installation (a pyenv under /root)
    or the source tree; a probe's lazy import would then fail as a confusing "probe failed".
    """
    import contextlib
    import importlib

    for module in (
        "fcntl",
        "grp",
        "json",
        "ssl",
        "termios",
        "serial",
        "sync.probe",
        "sync.mqtt",
        "agent.roster",
        "agent.schedule_file",
        "agent.summary_file",
        "contract.schedule",
        "agent.kiosk.gallery",
        "agent.config",
    ):
        # e.g. numpy on a window device: the gallery probe says so itself.
        with contextlib.suppress(ImportError):
            importlib.import_module(module)


def run_as_user(user: str, probes: Callable[[], list[ProbeResult]]) -> list[ProbeResult]:
    """Run ``probes`` in a child process that has dropped to ``user`` and its groups.

    The child gets exactly what a login of that user gets (initgroups from /etc/group), so a
    missing ``dialout`` shows as the permission error the agent would meet. Only root can do
    this. Results come back over a pipe as JSON.
    """
    import json
    import pwd
    import sys

    if os.geteuid() != 0:
        raise PermissionError("check --as-user needs root (it switches to that user)")
    entry = pwd.getpwnam(user)  # KeyError: no such user
    groups = os.getgrouplist(entry.pw_name, entry.pw_gid)
    _preload()
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # child: never return into the caller's code
        code = 0
        try:
            os.close(read_fd)
            os.setgroups(groups)
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
            os.environ.update(HOME=entry.pw_dir, USER=entry.pw_name, LOGNAME=entry.pw_name)
            try:
                results = probes()
            except Exception as exc:  # the config, unreadable to this user, for one
                results = [ProbeResult("config", False, f"as {user}: {exc}")]
            data = json.dumps([r.__dict__ for r in results]).encode()
            with os.fdopen(write_fd, "wb") as out:
                out.write(data)
        except BaseException as exc:
            # The parent sees only the exit code ("the probes could not run as USER"): say why
            # on the stderr both share. Not through logging: the child ends with os._exit,
            # which flushes no handler.
            code = 1
            with contextlib.suppress(BaseException):
                sys.stderr.write(f"check as {user}: {exc!r}\n")
                sys.stderr.flush()
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as inp:
        data = inp.read()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0 or not data:
        return [ProbeResult("user", False, f"the probes could not run as {user}")]
    return [ProbeResult(**r) for r in json.loads(data)]
