"""``hall-agent check`` as a technician reads it: what failed, and what to do about it.

Run as the CLI (a subprocess) against real things: a real Mosquitto with a password file and
with TLS, a pty standing in for a USB serial adapter, a real system user without ``dialout``.
"""

from __future__ import annotations

import grp
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.checks import serial_adapters
from tests import media
from tests.conftest import require_or_skip
from tests.support import Mosquitto, free_port, make_password_file, make_test_ca

REPO = Path(__file__).resolve().parents[1]


def check(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "-c", str(config), "check", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def line_of(output: str, name: str) -> str:
    lines = [line for line in output.splitlines() if f"] {name}:" in line]
    assert len(lines) == 1, output
    return lines[0]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def device_toml(data_dir: Path, url: str = "mqtt://127.0.0.1:1", extra: str = "") -> str:
    return (
        f'[device]\nid = "win-01"\nsite = "jiedong"\ndata_dir = "{data_dir}"\n'
        f'[mqtt]\nurl = "{url}"\n{extra}'
    )


# --- pads ------------------------------------------------------------------------------


def test_missing_adapter_is_one_line_with_the_adapters_present(tmp_path):
    port = "/dev/serial/by-id/usb-HallPad_Missing_0000-if00-port0"
    cfg = write(
        tmp_path / "agent.toml",
        device_toml(tmp_path / "data") + f'[[pad]]\nport = "{port}"\naddress = 1\nwindow = "A01"\n',
    )
    result = check(cfg, "--only", "pads")
    assert result.returncode == 1
    line = line_of(result.stdout, "pad[1] A01@1")
    assert line.startswith("[FAIL]")
    assert line.count(port) == 1, line  # the path once, not three times
    assert "no such device" in line
    present = serial_adapters()
    expected = ", ".join(present) if present else "none found"
    assert f"serial adapters present: {expected}" in line
    assert "Errno" not in line and "could not open port" not in line
    # Root opens anything: the line names what the service user would have.
    if os.geteuid() == 0:
        assert "group dialout" in line or "no user hall-agent" in line


@pytest.fixture
def system_user() -> Iterator[str]:
    """A throw-away system user with no supplementary groups (root only)."""
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        require_or_skip("needs root and useradd to create a temporary system user (CI has both)")
    name = f"hchk{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        check=True,
    )
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], check=False)


@pytest.fixture
def readable_dir() -> Iterator[Path]:
    """A directory another user can read (pytest's tmp_path is private to root)."""
    d = Path(tempfile.mkdtemp(prefix="hall-check-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_as_user_without_dialout_sees_the_permission_error(system_user, readable_dir):
    dialout = grp.getgrnam("dialout").gr_gid
    master, slave = os.openpty()  # a pty stands in for /dev/ttyUSB0: root:dialout 0660
    try:
        port = os.ttyname(slave)
        os.chown(port, 0, dialout)
        os.chmod(port, 0o660)
        cfg = write(
            readable_dir / "agent.toml",
            device_toml(readable_dir / "data")
            + f'[[pad]]\nport = "{port}"\naddress = 3\nwindow = "B02"\n',
        )
        cfg.chmod(0o644)

        as_root = check(cfg, "--only", "user,pads")
        assert as_root.returncode == 0, as_root.stdout + as_root.stderr
        assert line_of(as_root.stdout, "user").startswith("[WARN]")
        assert "--as-user hall-agent" in as_root.stdout

        result = check(cfg, "--only", "user,pads", "--as-user", system_user)
        assert result.returncode == 1, result.stdout + result.stderr
        line = line_of(result.stdout, "pad[1] B02@3")
        assert line.startswith("[FAIL]")
        assert line.count(port) == 1
        assert "permission denied" in line
        assert f"user {system_user} is NOT in group dialout" in line
        assert f"usermod -aG dialout {system_user}" in line
        user_line = line_of(result.stdout, "user")
        assert user_line.startswith("[WARN]") and "NOT in group dialout" in user_line

        subprocess.run(["usermod", "-aG", "dialout", system_user], check=True)
        fixed = check(cfg, "--only", "user,pads", "--as-user", system_user)
        assert fixed.returncode == 0, fixed.stdout + fixed.stderr
        assert line_of(fixed.stdout, "pad[1] B02@3").startswith("[ ok ]")
        assert f"probes run as {system_user} (dialout)" in fixed.stdout
    finally:
        os.close(slave)
        os.close(master)


def test_as_user_needs_an_existing_user(tmp_path):
    cfg = write(tmp_path / "agent.toml", device_toml(tmp_path / "data"))
    result = check(cfg, "--only", "disk", "--as-user", "no-such-user-hall")
    assert result.returncode == 2
    assert "no such user 'no-such-user-hall'" in result.stderr


# --- broker ------------------------------------------------------------------------------


@pytest.fixture
def password_broker(tmp_path) -> Iterator[Mosquitto]:
    pw = make_password_file(tmp_path / "passwd", {"win-01": "right-pw"})
    with Mosquitto(tmp_path / "pw-broker", password_file=pw) as broker:
        yield broker


def test_wrong_broker_password_is_auth_failed(tmp_path, password_broker):
    secret = write(tmp_path / "mqtt.pass", "wrong-pw\n")
    secret.chmod(0o600)
    extra = f'username = "win-01"\npassword_file = "{secret}"\n'
    cfg = write(tmp_path / "agent.toml", device_toml(tmp_path / "d", password_broker.url, extra))
    result = check(cfg, "--only", "broker")
    assert result.returncode == 1
    line = line_of(result.stdout, "broker")
    assert line.startswith("[FAIL] broker: auth failed:"), line
    assert "mqtt.password_file" in line

    secret.write_text("right-pw\n")
    ok = check(cfg, "--only", "broker")
    assert ok.returncode == 0, ok.stdout
    assert "MQTT 5 connected" in line_of(ok.stdout, "broker")


def test_nothing_listening_is_refused(tmp_path):
    url = f"mqtt://127.0.0.1:{free_port()}"
    cfg = write(tmp_path / "agent.toml", device_toml(tmp_path / "d", url))
    line = line_of(check(cfg, "--only", "broker").stdout, "broker")
    assert line.startswith("[FAIL] broker: refused: nothing listens on 127.0.0.1:"), line


def test_unknown_host_is_dns(tmp_path):
    cfg = write(tmp_path / "agent.toml", device_toml(tmp_path / "d", "mqtt://no-such-host.invalid"))
    line = line_of(check(cfg, "--only", "broker").stdout, "broker")
    assert line.startswith("[FAIL] broker: no route / DNS: cannot resolve 'no-such-host.invalid'")


def test_tls_failures_are_named(tmp_path):
    ca = make_test_ca(tmp_path / "ca")
    other = make_test_ca(tmp_path / "other-ca")  # a CA that did not sign the broker's cert
    tls = {
        "cafile": str(ca["ca"]),
        "certfile": str(ca["server_cert"]),
        "keyfile": str(ca["server_key"]),
    }
    with Mosquitto(tmp_path / "tls-broker", tls=tls) as broker:
        wrong_ca = write(
            tmp_path / "wrong-ca.toml",
            device_toml(tmp_path / "d", broker.url, f'ca_file = "{other["ca"]}"\n'),
        )
        line = line_of(check(wrong_ca, "--only", "broker").stdout, "broker")
        assert line.startswith("[FAIL] broker: TLS failed: certificate verify failed"), line
        assert "mqtt.ca_file" in line

        right_ca = write(
            tmp_path / "right-ca.toml",
            device_toml(tmp_path / "d", broker.url, f'ca_file = "{ca["ca"]}"\n'),
        )
        ok = check(right_ca, "--only", "broker")
        assert ok.returncode == 0, ok.stdout
        assert "TLS verified" in line_of(ok.stdout, "broker")

    with Mosquitto(tmp_path / "plain-broker") as plain:
        tls_to_plain = write(
            tmp_path / "tls-plain.toml",
            device_toml(
                tmp_path / "d",
                f"mqtts://127.0.0.1:{plain.port}",
                f'ca_file = "{ca["ca"]}"\n',
            ),
        )
        line = line_of(check(tls_to_plain, "--only", "broker").stdout, "broker")
        assert line.startswith("[FAIL] broker: TLS failed: handshake failed"), line


# --- kiosk: gallery and roster -----------------------------------------------------------


def kiosk_toml(data_dir: Path) -> str:
    return device_toml(data_dir) + '[attendance]\ncamera = "0"\n'


def test_kiosk_fails_on_empty_gallery_and_missing_roster(tmp_path):
    np = pytest.importorskip("numpy", reason="the kiosk extra (numpy) holds the gallery")
    data = tmp_path / "data"
    cfg = write(tmp_path / "kiosk.toml", kiosk_toml(data))
    result = check(cfg, "--only", "gallery,roster")
    assert result.returncode == 1
    gallery = line_of(result.stdout, "gallery")
    assert gallery.startswith("[FAIL]") and "nobody enrolled" in gallery
    assert "hall-agent enroll" in gallery
    roster = line_of(result.stdout, "roster")
    assert roster.startswith("[FAIL]") and "no roster yet" in roster

    from agent.kiosk.gallery import Gallery, gallery_path

    g = Gallery()
    g.add("S001", "张三", np.full((2, 128), 0.1, dtype=np.float32), model=media.shipped_model())
    g.save(gallery_path(data))
    (data / "roster.json").write_text(
        '{"v":1,"version":3,"staff":[{"id":"S001","name":"张三","role":"staff","window":"A01"}]}'
    )
    ok = check(cfg, "--only", "gallery,roster")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "1 people, 2 encodings" in line_of(ok.stdout, "gallery")
    assert "version 3, 1 staff" in line_of(ok.stdout, "roster")


def test_window_device_has_no_gallery_or_roster_probe(tmp_path):
    cfg = write(tmp_path / "agent.toml", device_toml(tmp_path / "data"))
    result = check(cfg, "--only", "gallery,roster")
    assert result.returncode == 0
    assert "gallery:" not in result.stdout and "roster:" not in result.stdout


def test_a_silent_listener_is_a_timeout(tmp_path):
    import socket

    with socket.socket() as silent:  # accepts TCP (the kernel does) but never answers MQTT
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"mqtt://127.0.0.1:{silent.getsockname()[1]}"
        cfg = write(tmp_path / "agent.toml", device_toml(tmp_path / "d", url))
        line = line_of(check(cfg, "--only", "broker").stdout, "broker")
    assert line.startswith("[FAIL] broker: timeout:"), line
    assert "sent no CONNACK" in line


# --- kiosk: the camera ----------------------------------------------------------------------


def fake_video_tree(root: Path) -> tuple[Path, Path]:
    """A /dev and /sys as a UVC webcam (two nodes), a second camera and a nameless node
    leave them; the files stand in for the device nodes."""
    dev, sys_root = root / "dev", root / "sys"
    (dev / "v4l" / "by-id").mkdir(parents=True)
    for n in (0, 1, 2, 10):
        (dev / f"video{n}").touch()
    (dev / "videodev.conf").touch()  # not a node: ignored
    (dev / "v4l" / "by-id" / "usb-046d_HD_Webcam_C270_ABC-video-index0").symlink_to("../../video0")
    names = {0: "HD Webcam C270", 1: "HD Webcam C270", 10: "USB2.0 PC CAMERA"}
    for n in (0, 1, 2, 10):
        (sys_root / "class" / "video4linux" / f"video{n}").mkdir(parents=True)
        if n in names:
            (sys_root / "class" / "video4linux" / f"video{n}" / "name").write_text(names[n] + "\n")
    return dev, sys_root


def test_camera_failure_lists_the_video_devices_with_names_and_formats(tmp_path):
    from agent.checks import camera_failure, video_devices

    dev, sys_root = fake_video_tree(tmp_path)
    formats = {
        "video0": (("YUYV", "MJPG"), ""),
        "video1": ((), ""),  # UVC's metadata node: no capture format
        "video2": (None, "not readable by this user"),
        "video10": (("MJPG",), ""),
    }
    devices = video_devices(dev, sys_root, lambda p: formats[p.name])
    assert [d.path for d in devices] == [
        "/dev/video0",
        "/dev/video1",
        "/dev/video2",
        "/dev/video10",
    ]
    line = camera_failure(
        "/dev/video3",
        "/dev/video3",
        "cannot open or read",
        dev,
        sys_root,
        lambda p: formats[p.name],
    )
    what, present, user = line.split("; ")
    assert what == "/dev/video3: no such device (unplugged, or a different camera)"
    assert present == (
        "video devices present: "
        "/dev/video0 (HD Webcam C270: YUYV, MJPG) = "
        "/dev/v4l/by-id/usb-046d_HD_Webcam_C270_ABC-video-index0, "
        "/dev/video1 (HD Webcam C270: no capture formats, likely a metadata node), "
        "/dev/video2 (no name in sysfs: formats not readable by this user), "
        "/dev/video10 (USB2.0 PC CAMERA: MJPG)"
    )
    assert "group video" in user or "no user hall-agent" in user
    # An index names /dev/videoN; a node that is there keeps the reason given.
    line = camera_failure("1", "1", "cannot open or read", dev, sys_root, lambda p: formats[p.name])
    assert line.startswith(
        "1 (/dev/video1): cannot open or read; video devices present: /dev/video0"
    )


def test_formats_degrade_to_the_name_when_they_cannot_be_read(tmp_path):
    from agent.checks import camera_failure, capture_formats

    # Plain files and /dev/null answer the V4L2 ioctl with ENOTTY: no formats, no traceback.
    assert capture_formats(Path("/dev/null")) == (None, "unknown, not a V4L2 device")
    dev, sys_root = fake_video_tree(tmp_path)
    line = camera_failure("/dev/video7", "/dev/video7", "x", dev, sys_root)
    assert (
        "/dev/video0 (HD Webcam C270: formats unknown, not a V4L2 device) = /dev/v4l/by-id/" in line
    )
    # A stream or a file has no device to list.
    assert camera_failure("rtsp://***@cam/1", "rtsp://***@cam/1", "cannot open or read") == (
        "rtsp://***@cam/1: cannot open or read"
    )
    empty = tmp_path / "empty"
    (empty / "dev").mkdir(parents=True)
    line = camera_failure("0", "0", "x", empty / "dev", empty / "sys")
    assert "video devices present: none found (is the camera plugged in? dmesg | tail)" in line


def test_a_missing_camera_is_one_line_with_the_devices_present(tmp_path):
    from agent.checks import video_devices

    cfg = write(
        tmp_path / "kiosk.toml",
        device_toml(tmp_path / "data") + '[attendance]\ncamera = "/dev/video63"\n',
    )
    result = check(cfg, "--only", "camera")
    assert result.returncode == 1, result.stdout + result.stderr
    line = line_of(result.stdout, "camera")
    assert line.startswith("[FAIL] camera: /dev/video63: no such device (unplugged, or a different")
    present = ", ".join(d.describe() for d in video_devices()) or "none found"
    assert f"; video devices present: {present}" in line
    assert "group video" in line or "no user hall-agent" in line
    assert "WARN:" not in result.stdout + result.stderr  # OpenCV's own noise stays out


def test_as_user_without_video_sees_the_camera_permission_error(system_user, readable_dir):
    video = grp.getgrnam("video").gr_gid
    master, slave = os.openpty()  # a pty stands in for /dev/video0: root:video 0660
    try:
        node = os.ttyname(slave)
        os.chown(node, 0, video)
        os.chmod(node, 0o660)
        cfg = write(
            readable_dir / "kiosk.toml",
            device_toml(readable_dir / "data") + f'[attendance]\ncamera = "{node}"\n',
        )
        cfg.chmod(0o644)
        result = check(cfg, "--only", "user,camera", "--as-user", system_user)
        assert result.returncode == 1, result.stdout + result.stderr
        line = line_of(result.stdout, "camera")
        assert line.startswith(f"[FAIL] camera: {node}: permission denied; video devices present:")
        assert line.endswith(
            f"user {system_user} is NOT in group video (usermod -aG video {system_user})"
        )
        assert "NOT in group video" in line_of(result.stdout, "user")
    finally:
        os.close(slave)
        os.close(master)


# --- kiosk: who can see the page ----------------------------------------------------------


def screen_toml(data_dir: Path, listen: str, extra: str = "") -> str:
    return kiosk_toml(data_dir) + f'[screen]\nlisten = "{listen}"\n{extra}'


def test_screen_probe_says_who_can_see_the_page(tmp_path):
    token = tmp_path / "screen.token"
    token.write_text("0123456789abcdef0123\n")
    token.chmod(0o600)
    data = tmp_path / "data"

    def screen_line(text: str) -> tuple[int, str]:
        result = check(write(tmp_path / "kiosk.toml", text), "--only", "screen")
        return result.returncode, line_of(result.stdout, "screen")

    code, line = screen_line(screen_toml(data, "127.0.0.1:8080"))
    assert code == 0
    assert (
        line
        == "[ ok ] screen: page with the live camera preview on 127.0.0.1:8080, loopback only (no token)"
    )
    code, line = screen_line(screen_toml(data, "0.0.0.0:8080", f'token_file = "{token}"\n'))
    assert code == 0 and line.startswith(
        "[WARN] screen: page with the live camera preview on 0.0.0.0:8080, token required: "
        "whoever has the token sees the camera"
    )
    assert "preview = false" in line
    extra = f'token_file = "{token}"\npreview = false\n'
    code, line = screen_line(screen_toml(data, "0.0.0.0:8080", extra))
    assert code == 0
    assert line == "[ ok ] screen: page without the camera preview on 0.0.0.0:8080, token required"
    code, line = screen_line(screen_toml(data, "", ""))
    assert code == 0 and line == "[ ok ] screen: no kiosk page (listen = '')"


def test_an_exposed_page_without_a_token_stops_check_with_a_config_error(tmp_path):
    cfg = write(tmp_path / "kiosk.toml", screen_toml(tmp_path / "data", "0.0.0.0:8080"))
    result = check(cfg)
    assert result.returncode == 78, result.stdout + result.stderr
    assert f"{cfg}: screen: listen = '0.0.0.0:8080' is not a loopback address" in result.stderr
    assert "token_file" in result.stderr and "Traceback" not in result.stderr


def test_screen_probe_fails_an_exposed_page_without_a_token(tmp_path):
    # The config refuses this; a config built otherwise (model_construct skips validation)
    # still gets a FAIL, not an ok.
    from agent.checks import probe_screen
    from agent.config import AgentConfig, ScreenSection, load_agent_config

    cfg: AgentConfig = load_agent_config(write(tmp_path / "k.toml", kiosk_toml(tmp_path / "d")))
    cfg.screen = ScreenSection.model_construct(listen="0.0.0.0:8080", preview=True, preview_fps=8.0)
    [result] = probe_screen(cfg)
    assert not result.ok and "open to anyone on the network without a token" in result.detail
