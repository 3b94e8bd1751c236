"""``hall-agent enroll --staff-id ID --camera``: enrol a person from the kiosk's own camera.

The person is guided (on the kiosk page when this command can serve it, else on the
terminal) to look straight, a bit to one side, then a bit to the other; for each pose a few
frames that pass the enrolment quality gates of drivers/faces.py (exactly one face, large
enough, sharp, not turned too far: ``encode_photo``) are encoded. Only the encodings are
kept: frames live in memory and are dropped (docs/topics.md; PIPL art. 28-29); the preview on
the page is the same in-memory MJPEG stream as during recognition (agent/kiosk/screen.py).

The running agent holds the camera, so enrolment is done with the agent stopped
(``systemctl stop hall-agent``); its page port is then free and this command serves the
page there for the duration.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from typing import Any

from agent.config import AgentConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pose:
    key: str
    prompt: str  # on the screen (Chinese: the person being enrolled reads it)
    terminal: str  # for the technician


POSES = (
    Pose("straight", "请正对摄像头", "look straight into the camera"),
    Pose("side1", "请把头稍向左转", "turn the head a little to the left"),
    Pose("side2", "请把头稍向右转", "turn the head a little to the right"),
)
PER_POSE = 2  # good frames kept per pose
FRAME_GAP_S = 0.3  # between two frames of one pose, so they are not the same picture
TURNED = 0.06  # yaw change from the straight look that counts as turned to one side
POSE_WAIT_S = 4.0  # after this a side pose takes any good frame (the turn is a request)
TIMEOUT_S = 60.0  # the whole enrolment


def signed_yaw(engine: Any, image: Any, box: tuple[int, int, int, int]) -> float:
    """Nose offset from the eye midpoint along the eye axis, with its sign (which side)."""
    import dlib
    import numpy as np

    top, right, bottom, left = box
    rgb = np.ascontiguousarray(image[:, :, ::-1])
    shape = engine.sp5(rgb, dlib.rectangle(left, top, right, bottom))
    pts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
    e1, e2 = pts[0:2].mean(axis=0), pts[2:4].mean(axis=0)
    axis = e2 - e1
    dist = float(np.linalg.norm(axis))
    if dist <= 0:
        return 0.0
    return float(np.dot(pts[4] - (e1 + e2) / 2, axis / dist)) / dist


class Guide:
    """Prompts to the page (when it serves) and to the terminal."""

    def __init__(self, hub: Any = None):
        self.hub = hub
        self.last = ""

    def say(self, screen: str, terminal: str, tone: str = "info", detail: str = "") -> None:
        if self.hub is not None:
            self.hub.guide(screen, detail, tone)
        if terminal != self.last:
            print(terminal, file=sys.stderr, flush=True)
            self.last = terminal


def capture_encodings(
    cfg: AgentConfig,
    staff_id: str,
    name: str,
    *,
    engine: Any,
    hub: Any = None,
    timeout_s: float = TIMEOUT_S,
) -> tuple[list[Any], str | None]:
    """(encodings, None) or ([], why it failed). Frames are never stored."""
    from agent.kiosk.enrolment import REASONS
    from drivers.camera import Camera

    att = cfg.attendance
    assert att is not None
    guide = Guide(hub)
    camera = Camera(att.camera, realtime=True, stale_after_s=att.stale_after_s)
    camera.start()
    kept: list[Any] = []
    straight: list[float] = []  # signed yaw of the straight look
    side_sign = 0.0  # the side of the first turn
    last_reason = "no_face"
    try:
        last_seq = 0
        deadline = time.monotonic() + timeout_s
        for pose in POSES:
            guide.say(pose.prompt, f"{name} ({staff_id}): {pose.terminal}", detail=name)
            got, since, last_t = 0, time.monotonic(), 0.0
            while got < PER_POSE:
                if time.monotonic() > deadline:
                    return [], f"timed out ({REASONS.get(last_reason, last_reason)})"
                frame = camera.read(last_seq, timeout=0.5)
                if frame is None:
                    if camera.ended.is_set():
                        return [], "the camera's video ended before enough good frames"
                    continue
                last_seq = frame.seq
                boxes, enc, reason = engine.encode_photo(frame.image)
                if hub is not None and cfg.screen.preview:  # off: no frame encoded
                    _preview(hub, frame.image, boxes, cfg.screen.preview_width, reason is None)
                if reason is not None:
                    last_reason = reason
                    guide.say(
                        pose.prompt,
                        f"  not taken: {REASONS.get(reason, reason)}",
                        "bad",
                        _CN_REASONS.get(reason, ""),
                    )
                    continue
                now = time.monotonic()
                if now - last_t < FRAME_GAP_S:
                    continue
                # Turns are measured from the person's own straight look (a camera mounted
                # off-centre sees everyone a little from the side).
                yaw = signed_yaw(engine, frame.image, boxes[0])
                if pose.key == "straight":
                    straight.append(yaw)
                else:
                    turn = yaw - sum(straight) / len(straight)
                    if now - since < POSE_WAIT_S:
                        if abs(turn) < TURNED:
                            continue  # wait for the turn
                        if pose.key == "side2" and side_sign * turn > 0:
                            continue  # the same side as before: wait for the other one
                    if pose.key == "side1" and abs(turn) >= TURNED:
                        side_sign = 1.0 if turn > 0 else -1.0
                kept.append(enc)
                got += 1
                last_t = now
                note = ""
                if pose.key != "straight" and abs(yaw - straight[0]) < TURNED:
                    note = "; no turn seen, taken as it is"
                print(f"  taken {len(kept)} (yaw {yaw:+.2f}{note})", file=sys.stderr, flush=True)
                del frame  # the picture itself is never kept
        guide.say("录入完成", f"{staff_id}: {len(kept)} good frames", "ok", name)
        return kept, None
    finally:
        camera.stop()


_CN_REASONS = {
    "no_face": "未检测到人脸",
    "several_faces": "画面中只能有一个人",
    "too_small": "请靠近一些",
    "blurred": "请保持不动",
    "turned": "转头幅度太大",
}


def _preview(hub: Any, image: Any, boxes: list, width: int, good: bool) -> None:
    import cv2

    h, w = image.shape[:2]
    k = min(1.0, width / w)
    small = cv2.resize(image, (round(w * k), round(h * k)), interpolation=cv2.INTER_AREA)
    for top, right, bottom, left in boxes:
        colour = (80, 200, 60) if good else (0, 190, 255)
        p1, p2 = (round(left * k), round(top * k)), (round(right * k), round(bottom * k))
        cv2.rectangle(small, p1, p2, colour, 2)
    ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 70])
    if ok:
        hub.frame(buf.tobytes())


def start_page(cfg: AgentConfig) -> tuple[Any, Any]:
    """(hub, server) when the kiosk page can be served here, else (None, None)."""
    if not cfg.screen.listen:
        return None, None
    from agent.kiosk.screen import ScreenHub, ScreenServer

    hub = ScreenHub(cfg)
    server = ScreenServer(hub, cfg.screen.listen)
    if not server.start():
        print(
            f"kiosk page not served ({server.error}); guiding on this terminal only",
            file=sys.stderr,
        )
        return None, None
    # The token itself is not printed: it lives in [screen] token_file (docs/attendance.md).
    hint = " (open it once with ?token=… from [screen] token_file)" if cfg.screen.token else ""
    print(f"guiding on the kiosk page http://{cfg.screen.listen}/{hint}", file=sys.stderr)
    return hub, server
