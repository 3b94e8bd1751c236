"""drivers/camera.py: files through real OpenCV, newest-frame reads, the hang watchdog."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from drivers.camera import Camera, is_file, parse_source, redact

pytestmark = pytest.mark.kiosk  # needs the vision stack (cv2, dlib)

WAIT = 10.0  # generous upper bound for conditions; never a sleep


def write_numbered_video(path: Path, n: int, fps: float = 25.0) -> Path:
    """Frame i carries its number in the blue channel of the top-left pixel block."""
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (160, 120))
    for i in range(n):
        img = np.zeros((120, 160, 3), np.uint8)
        img[:40, :40, 0] = (i * 7) % 256
        w.write(img)
    w.release()
    return path


def test_redact_hides_credentials() -> None:
    assert redact("rtsp://admin:s3cret@10.0.0.5:554/stream1") == "rtsp://***@10.0.0.5:554/stream1"
    # The query is dropped whole: it is where tokens and ?password= live.
    assert redact("http://cam.lan/video?user=a&password=s3cret") == "http://cam.lan/video"
    assert redact("/dev/video0") == "/dev/video0"
    assert parse_source("0") == 0 and parse_source("/dev/video2") == "/dev/video2"
    assert is_file("/tmp/x.avi") and not is_file("rtsp://h/x") and not is_file("1")


@pytest.mark.parametrize(
    ("source", "shown"),
    [
        ("rtsp://admin:p@ss@10.0.0.5/s1", "rtsp://***@10.0.0.5/s1"),
        ("rtsp://admin:ab/cd@10.0.0.5/s1", "rtsp://***@10.0.0.5/s1"),
        ("rtsp://admin:a b@10.0.0.5:554/s1", "rtsp://***@10.0.0.5:554/s1"),
        ("http://admin:x#y@10.0.0.5/mjpg", "http://***@10.0.0.5/mjpg"),
        ("rtsp://10.0.0.5/s1?user=admin&password=x1", "rtsp://10.0.0.5/s1"),
        ("rtsp://admin:x@[fe80::1]:554/s", "rtsp://***@[fe80::1]:554/s"),
        ("rtsp://admin:sec ret", "rtsp://***"),  # no host after the secret: hide it all
        ("rtsp://u:pw@@", "rtsp://***"),
        # XMEye/Dahua: credentials in the path
        (
            "rtsp://10.0.0.5:554/user=admin_password=tlJwpbo6_channel=1_stream=0.sdp",
            "rtsp://10.0.0.5:554/***",
        ),
        ("rtsp://10.0.0.5/user=admin&password=secret&channel=1", "rtsp://10.0.0.5/***"),
        ("rtsp://10.0.0.5/live/user=admin;pwd=ab/cd;ch=1", "rtsp://10.0.0.5/live/***"),
        ("rtsp://10.0.0.5/cam/token=abc/x?y=1", "rtsp://10.0.0.5/cam/***"),
    ],
)
def test_redact_passwords_with_slashes_spaces_and_at_signs(source: str, shown: str) -> None:
    # These used to leak the password's tail into health()["source"]
    # (a retained status topic) and device.fault details.
    assert redact(source) == shown
    for secret in ("p@ss", "ab/cd", "a b", "x#y", "x1", "sec ret", "pw", "tlJwpbo6", "secret"):
        if secret in source:
            assert secret not in redact(source)
    assert "admin" not in redact(source) and "cd" not in redact(source).split("/")[-1]


def test_health_and_faults_publish_only_the_redacted_source() -> None:
    rec = Recorder()
    source = "rtsp://admin:ab/cd@ef@127.0.0.1:9/s1"

    def refuse(s: str):
        raise OSError(f"cannot connect to {s}")  # a library message may echo the URL

    cam = Camera(source, capture_factory=refuse, backoff_s=(5,), on_fault=rec.cb("fault"))
    cam.start()
    try:
        calls = rec.wait_for(1)
        published = str(cam.health()) + calls[0][2]
    finally:
        cam.stop()
    assert "rtsp://***@127.0.0.1:9/s1" in published
    assert "ab/cd" not in published and "cd@ef" not in published and "admin" not in published


def test_file_fast_mode_delivers_every_frame_with_media_time(tmp_path) -> None:
    video = write_numbered_video(tmp_path / "n.avi", 30, fps=25)
    cam = Camera(str(video), realtime=False)
    cam.start()
    try:
        frames = []
        seq = 0
        while (f := cam.read(seq, WAIT)) is not None:
            frames.append(f)
            seq = f.seq
        assert cam.ended.is_set()
    finally:
        cam.stop()
    assert [f.seq for f in frames] == list(range(1, 31))
    assert [round(f.t, 3) for f in frames[:3]] == [0.0, 0.04, 0.08]
    blues = [int(f.image[20, 20, 0]) for f in frames]
    assert all(abs(b - (i * 7) % 256) <= 3 for i, b in enumerate(blues))  # MJPG is lossy
    assert cam.health()["state"] == "ended"


class FakeCapture:
    """A neighbour of the camera: frames on demand, then unplugged or hung as told."""

    def __init__(self, *, frames: int | None = None, hang_after: int | None = None) -> None:
        self.frames = frames
        self.hang_after = hang_after
        self.count = 0
        self.unblock = threading.Event()
        self.released = False
        self.produced = threading.Condition()

    def isOpened(self) -> bool:
        return True

    def read(self):
        if self.hang_after is not None and self.count >= self.hang_after:
            self.unblock.wait()  # VideoCapture.read blocking forever on a hung camera
            return False, None
        if self.frames is not None and self.count >= self.frames:
            return False, None  # unplugged: read fails
        self.count += 1
        with self.produced:
            self.produced.notify_all()
        img = np.full((48, 64, 3), self.count % 256, np.uint8)
        return True, img

    def get(self, prop: int) -> float:
        return 0.0

    def set(self, prop: int, value: float) -> bool:
        return True

    def release(self) -> None:
        self.released = True


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.cond = threading.Condition()

    def cb(self, kind: str):
        def _cb(component: str, detail: str) -> None:
            with self.cond:
                self.calls.append((kind, component, detail))
                self.cond.notify_all()

        return _cb

    def wait_for(self, n: int) -> list[tuple[str, str, str]]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.calls) >= n, WAIT), self.calls
            return list(self.calls)


def test_reader_keeps_only_the_newest_frame() -> None:
    cap = FakeCapture()
    cam = Camera("0", capture_factory=lambda s: cap, stale_after_s=WAIT)
    cam.start()
    try:
        with cap.produced:
            assert cap.produced.wait_for(lambda: cap.count >= 50, WAIT)
        first = cam.read(0, WAIT)
        assert first is not None and first.seq >= 49  # not frame 1: old frames are gone
        nxt = cam.read(first.seq, WAIT)
        assert nxt is not None and nxt.seq > first.seq
    finally:
        cam.stop()
        cap.unblock.set()


def test_hung_camera_is_reported_reopened_and_recovered(caplog) -> None:
    hung = FakeCapture(hang_after=5)
    healthy = FakeCapture()
    captures = iter([hung, healthy])
    rec = Recorder()
    source = "rtsp://admin:s3cret@127.0.0.1:8554/cam"
    cam = Camera(
        source,
        capture_factory=lambda s: next(captures),
        stale_after_s=0.3,
        backoff_s=(0.05,),
        on_fault=rec.cb("fault"),
        on_recovered=rec.cb("recovered"),
        tick_s=0.02,
        stable_s=0.1,
    )
    with caplog.at_level(logging.DEBUG):
        cam.start()
        try:
            calls = rec.wait_for(2)
            assert [c[:2] for c in calls] == [("fault", "camera"), ("recovered", "camera")]
            assert "no frame for" in calls[0][2]
            # Frames flow from the reopened capture.
            f = cam.read(0, WAIT)
            assert f is not None and healthy.count > 0
            assert cam.abandoned == 1 and cam.reopens == 1
            assert cam.health()["state"] == "ok"
        finally:
            cam.stop()
            hung.unblock.set()
    text = caplog.text + " ".join(c[2] for c in calls) + str(cam.health())
    assert "s3cret" not in text and "rtsp://***@127.0.0.1:8554/cam" in calls[0][2]


def test_unplugged_camera_backs_off_until_it_returns() -> None:
    """read() fails (unplugged), the device is absent for two attempts, then comes back."""
    attempts: list[str] = []
    rec = Recorder()
    gone = FakeCapture(frames=3)
    back = FakeCapture()

    def factory(source: str):
        attempts.append(source)
        if len(attempts) == 1:
            return gone
        if len(attempts) in (2, 3):
            raise OSError("No such device")
        return back

    cam = Camera(
        "/dev/video7",
        capture_factory=factory,
        backoff_s=(0.01, 0.02),
        on_fault=rec.cb("fault"),
        on_recovered=rec.cb("recovered"),
        tick_s=0.02,
        stable_s=0.1,
    )
    cam.start()
    try:
        calls = rec.wait_for(2)
    finally:
        cam.stop()
    assert [c[0] for c in calls] == ["fault", "recovered"]  # one fault, not one per attempt
    assert "read failed" in calls[0][2]
    assert len(attempts) == 4 and gone.released


def test_a_camera_that_hangs_after_every_frame_is_one_fault_then_gives_up() -> None:
    # Each cycle gave one frame, reported "recovered", reset the backoff
    # and left one more reader thread stuck in the driver, forever.
    captures: list[FakeCapture] = []

    def factory(source: str) -> FakeCapture:
        captures.append(FakeCapture(hang_after=1))
        return captures[-1]

    rec = Recorder()
    cam = Camera(
        "/dev/video3",
        capture_factory=factory,
        stale_after_s=0.1,
        backoff_s=(0.01, 0.02, 0.04),
        on_fault=rec.cb("fault"),
        on_recovered=rec.cb("recovered"),
        tick_s=0.02,
        stable_s=WAIT,
        max_abandoned=3,
    )
    cam.start()
    try:
        assert cam.stuck.wait(WAIT)
        assert cam.read(3, WAIT) is None  # at once: nothing more will come
        assert cam._watchdog is not None
        cam._watchdog.join(WAIT)
        assert not cam._watchdog.is_alive()  # no further reopen, no further stuck thread
        assert cam.abandoned == 3 and cam.health()["abandoned_readers"] == 3
    finally:
        cam.stop()
        for c in captures:
            c.unblock.set()
    assert [c[0] for c in rec.calls] == ["fault"]  # one fault, no recovered flapping
    assert cam.abandoned_total == 3 and len(captures) == 3 and cam.reopens == 2
    assert cam._failures == 3  # the backoff kept growing
    assert cam.health()["state"] == "fault" and "stuck" in cam.health()["detail"]


def test_readers_that_return_later_do_not_count_as_stuck() -> None:
    # A camera that accepts the connection but never streams makes
    # each read wait (FFmpeg's RTSP timeout) and then fail. Those readers end; counting them
    # made the recognition process give up (and exit 75) every few cycles.
    captures: list[FakeCapture] = []
    readers: list[threading.Thread] = []
    made = threading.Condition()

    def factory(source: str) -> FakeCapture:
        if captures:  # the previous read returns (late) and its reader ends
            captures[-1].unblock.set()
            readers[-1].join(WAIT)
        with made:
            captures.append(FakeCapture(hang_after=0))
            readers.append(threading.current_thread())
            made.notify_all()
        return captures[-1]

    cam = Camera(
        "rtsp://127.0.0.1:9/silent",
        capture_factory=factory,
        open_timeout_s=0.05,
        backoff_s=(0.01,),
        tick_s=0.01,
        max_abandoned=2,
    )
    cam.start()
    try:
        with made:
            assert made.wait_for(lambda: len(captures) >= 5 or cam.stuck.is_set(), WAIT)
        assert not cam.stuck.is_set()
        assert cam.abandoned <= 1 and cam.abandoned_total >= 4
    finally:
        cam.stop()
        for c in captures:
            c.unblock.set()


def test_missing_file_is_a_fault_not_a_crash(tmp_path) -> None:
    rec = Recorder()
    cam = Camera(
        str(tmp_path / "nope.avi"),
        backoff_s=(0.05,),
        on_fault=rec.cb("fault"),
        tick_s=0.02,
    )
    cam.start()
    try:
        calls = rec.wait_for(1)
        assert calls[0][1] == "camera" and "cannot open" in calls[0][2]
        assert cam.read(0, 0.1) is None
        assert cam.health()["state"] == "fault"
    finally:
        cam.stop()


def test_realtime_file_is_paced_at_its_frame_rate(tmp_path) -> None:
    """Frame n is not delivered before n/fps seconds after the first (a lower bound only)."""
    video = write_numbered_video(tmp_path / "rt.avi", 15, fps=25)
    cam = Camera(str(video), realtime=True)
    cam.start()
    try:
        frames = []
        seq = 0
        while (f := cam.read(seq, WAIT)) is not None:
            frames.append(f)
            seq = f.seq
    finally:
        cam.stop()
    assert frames and frames[-1].t == pytest.approx((frames[-1].seq - 1) / 25, abs=1e-6)
    first = frames[0]
    for f in frames[1:]:
        assert f.captured - first.captured >= (f.t - first.t) - 0.005


def test_check_probe_reads_a_frame_and_hides_passwords(tmp_path, write_config) -> None:
    from agent.checks import probe_camera
    from agent.config import load_agent_config
    from tests.conftest import free_port

    video = write_numbered_video(tmp_path / "probe.avi", 5)

    def cfg(camera: str):
        return load_agent_config(
            write_config(
                f"""
                [device]
                id = "kiosk-01"
                site = "jiedong"
                data_dir = "{tmp_path}"

                [attendance]
                camera = "{camera}"
                """
            )
        )

    [ok] = probe_camera(cfg(str(video)))
    # 50-px faces in a 160x120 frame: the person must stand within half a metre.
    assert ok.ok and ok.warn and "frame 160x120 at 25 fps" in ok.detail
    assert "faces from 50 px: about 0.3–0.4 m with this camera's 160×120" in ok.detail
    port = free_port()  # nothing listens there: connection refused
    [bad] = probe_camera(cfg(f"rtsp://admin:s3cret@127.0.0.1:{port}/stream"), timeout=20)
    assert not bad.ok and "s3cret" not in bad.detail
    assert f"rtsp://***@127.0.0.1:{port}/stream" in bad.detail
