"""Camera capture with OpenCV: newest frame only, a frame-age watchdog, reopen with backoff.

Sources (docs/config.md ``attendance.camera``): a device index (``"0"``), ``/dev/video*``,
``rtsp://`` and ``http://`` streams, or a video file. A reader thread calls
``VideoCapture.read`` in a loop and keeps only the newest frame, so a slow consumer never works
on stale buffered RTSP frames. ``read`` can block forever on a hung or unplugged camera (see
opencv/opencv#21143-style reports and Frigate's watchdog): a separate watchdog thread
therefore watches the age of the newest frame; when it exceeds ``stale_after_s`` the reader is
abandoned (a blocked native call cannot be interrupted; the daemon thread is left behind and
counted while it stays blocked), ``on_fault("camera", detail)`` is called, and the source is
reopened with backoff until frames flow again; ``on_recovered`` is called, and the backoff
starts over, only after frames have flowed for ``stable_s`` (a camera that gives one frame and
hangs again is one fault, not a fault/recovered pair per cycle). After ``max_abandoned``
readers still stuck the camera gives up (``stuck``): only the end of the process frees them, so
the recognition process exits and the supervisor starts a new one (a planned exit, which does
not count against the supervisor's restart limit).

Video files are played at their own frame rate (``realtime=True``, a demo kiosk) or, for tests
and benchmarks, frame by frame as fast as the consumer takes them (``realtime=False``: no frame
is dropped, the run is deterministic). A file's frames carry media time (index / fps); live
frames carry ``time.monotonic()``.

Credentials in stream URLs never reach a log line (docs/architecture.md#logging): use
:func:`redact`.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

logger = logging.getLogger(__name__)

FaultCallback = Callable[[str, str], None]  # (component, detail)


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # BGR, as OpenCV delivers it
    seq: int  # 1, 2, … per Camera, across reopens
    t: float  # seconds: media time for files, time.monotonic() for live sources
    captured: float  # time.monotonic() when the reader got it


class Capture(Protocol):
    """The part of cv2.VideoCapture the camera uses (tests substitute a fake neighbour)."""

    def isOpened(self) -> bool: ...

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def get(self, prop: int) -> float: ...

    def set(self, prop: int, value: float) -> bool: ...

    def release(self) -> None: ...


_SCHEME = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<rest>.*)$", re.IGNORECASE | re.DOTALL)
_HOSTPORT = re.compile(r"^(?:[A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$")
_PATH = re.compile(r"^[^?#\s]*")


def redact(source: str) -> str:
    """A stream URL as it may be logged or published: ``scheme://***@host[:port]/path``.

     ``rtsp://admin:p@ss/w rd@10.0.0.5/s1`` → ``rtsp://***@10.0.0.5/s1``. Camera passwords
     contain ``/``, ``@`` and spaces, so the user part runs from the scheme to the *last* ``@``
    ; the query and fragment (``?password=…``, tokens) are dropped,
     and so is the path from its first segment holding a ``=`` (``/user=admin_password=…``);
     when no ``host[:port]`` can be found after that, the whole authority is hidden. Device
     indexes, ``/dev/video*`` and file paths are returned unchanged.
    """
    m = _SCHEME.match(source.strip())
    if m is None:
        return source
    scheme, rest = m["scheme"].lower(), m["rest"]
    at = rest.rfind("@")
    userinfo = at >= 0
    after = rest[at + 1 :] if userinfo else rest
    slash = min(
        (i for i in (after.find("/"), after.find("?"), after.find("#")) if i >= 0),
        default=len(after),
    )
    host, tail = after[:slash], after[slash:]
    if not _HOSTPORT.match(host):
        return f"{scheme}://***"
    path_match = _PATH.match(tail)
    path = path_match.group(0) if path_match else ""
    # XMEye/Dahua cameras put credentials in the path itself
    # (``/user=admin_password=…_channel=1``, ``/user=admin&password=…``), with ``_``, ``&``,
    # ``;`` or ``/`` as separators and passwords that may contain any of them: from the first
    # segment with a ``key=value`` on, the path is hidden whole.
    eq = path.find("=")
    if eq >= 0:
        path = path[: path.rfind("/", 0, eq) + 1] + "***"
    return f"{scheme}://{'***@' if userinfo else ''}{host}{path}"


# --- working distance ----------------------------------------------------------------------

# What a kiosk's range in metres is estimated from (docs/attendance.md, "Camera placement"):
# - a typical USB webcam sees about 60° horizontally (UVC webcams of the C270/C310 class are
#   sold as 55-60° diagonal, wide ones 70-78°); ``attendance.camera_hfov_deg`` overrides it;
# - an adult face, as dlib's detector frames it (brows to chin, cheek to cheek), is ~0.15 m;
# - nearest: the face box fills 60 % of the frame's height (chin and brows still in view).
FACE_WIDTH_M = 0.15
NEAR_FACE_FRACTION = 0.6


def face_distance_m(face_px: float, frame_w: int, hfov_deg: float) -> float:
    """Pinhole camera: distance at which a face is ``face_px`` wide in a ``frame_w`` frame."""
    focal_px = frame_w / (2 * math.tan(math.radians(hfov_deg) / 2))
    return FACE_WIDTH_M * focal_px / face_px


def working_range(
    min_face_px: int, frame_w: int, frame_h: int, hfov_deg: float
) -> tuple[float, float]:
    """(nearest, farthest) distance in metres at which faces are recognised."""
    near = face_distance_m(NEAR_FACE_FRACTION * frame_h, frame_w, hfov_deg)
    return near, face_distance_m(min_face_px, frame_w, hfov_deg)


def describe_range(min_face_px: int, frame_w: int, frame_h: int, hfov_deg: float) -> str:
    near, far = working_range(min_face_px, frame_w, frame_h, hfov_deg)
    return (
        f"faces from {min_face_px} px: about {near:.1f}–{far:.1f} m with this camera's "
        f"{frame_w}×{frame_h} (assuming a {hfov_deg:g}° horizontal field of view)"
    )


def parse_source(source: str) -> int | str:
    source = source.strip()
    if source.isdigit():
        return int(source)
    return source


def is_stream(source: str) -> bool:
    return "://" in source


def is_file(source: str) -> bool:
    return not source.strip().isdigit() and not is_stream(source) and not source.startswith("/dev/")


def open_capture(source: str) -> Capture:
    """cv2.VideoCapture for a config source string (never logs credentials)."""
    parsed = parse_source(source)
    if isinstance(parsed, int):
        cap = cv2.VideoCapture(parsed)
    elif parsed.startswith("/dev/video"):
        cap = cv2.VideoCapture(parsed, cv2.CAP_V4L2)
    else:
        cap = cv2.VideoCapture(parsed, cv2.CAP_FFMPEG if is_stream(parsed) else cv2.CAP_ANY)
    if not is_file(source):
        # Ask the backend for a 1-frame buffer; where ignored, the reader thread drains it.
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
    return cap


class Camera:
    """Newest-frame camera with a hang watchdog. Thread-safe; ``read`` from one consumer."""

    def __init__(
        self,
        source: str,
        *,
        realtime: bool = True,
        stale_after_s: float = 5.0,
        open_timeout_s: float = 15.0,
        backoff_s: Sequence[float] = (0.5, 1, 2, 5, 10, 30),
        on_fault: FaultCallback | None = None,
        on_recovered: FaultCallback | None = None,
        capture_factory: Callable[[str], Capture] = open_capture,
        tick_s: float = 0.1,
        stable_s: float = 10.0,
        max_abandoned: int = 3,
    ):
        self.source = source
        self.shown = redact(source)
        self.file = is_file(source)
        self.realtime = realtime
        self.stale_after_s = stale_after_s
        self.open_timeout_s = open_timeout_s
        self.backoff_s = tuple(backoff_s)
        self.on_fault = on_fault or (lambda c, d: None)
        self.on_recovered = on_recovered or (lambda c, d: None)
        self.capture_factory = capture_factory
        self.tick_s = tick_s
        # Recovery counts only after frames flowed this long: a camera that gives one frame
        # and hangs again must not flap fault/recovered nor reset the backoff.
        self.stable_s = stable_s
        # Each abandoned reader is a thread stuck in a native read (V4L2) that only the end
        # of the process frees: after this many the camera gives up (``stuck``) and the
        # recognition process exits, so the supervisor starts a fresh one.
        self.max_abandoned = max_abandoned
        self.stuck = threading.Event()
        self._flowing_since = 0.0  # first frame after the latest (re)open

        self._cond = threading.Condition()
        self._stop = threading.Event()
        self.ended = threading.Event()  # a video file played to its end
        self._gen = 0  # reader generation; a reader whose gen is stale exits
        self._frame: Frame | None = None
        self._seq = 0
        self._taken = 0
        self._last_frame_at = 0.0
        self._opened_at = 0.0
        self._error: str | None = None
        self._faulted = False
        self._fault_detail = ""
        self._failures = 0
        # Readers left blocked in a native call; one that returns later ends and no longer
        # counts (an RTSP read that times out after 30 s is not stuck).
        self._abandoned: list[threading.Thread] = []
        self._reader: threading.Thread | None = None
        self.abandoned_total = 0
        self.reopens = 0
        self._watchdog: threading.Thread | None = None

    @property
    def abandoned(self) -> int:
        """Abandoned readers still stuck (alive)."""
        self._abandoned = [t for t in self._abandoned if t.is_alive()]
        return len(self._abandoned)

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        if self.file and not Path(self.source).is_file():
            logger.warning("camera %s: file not found (will keep trying)", self.shown)
        self._watchdog = threading.Thread(target=self._watch, name="camera-watchdog", daemon=True)
        self._watchdog.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        with self._cond:
            self._gen += 1
            self._cond.notify_all()
        if self._watchdog is not None:
            self._watchdog.join(timeout)

    def health(self) -> dict[str, Any]:
        state = "fault" if self._faulted else "ended" if self.ended.is_set() else "ok"
        if self._faulted and self._flowing_since:
            state = "recovering"  # frames again, not yet for stable_s
        age = time.monotonic() - self._last_frame_at if self._last_frame_at else None
        out: dict[str, Any] = {"state": state, "source": self.shown, "reopens": self.reopens}
        if age is not None:
            out["frame_age_s"] = round(age, 2)
        if self._faulted:
            out["detail"] = self._fault_detail
        stuck = self.abandoned
        if stuck:
            out["abandoned_readers"] = stuck
        return out

    # --- consumer ---------------------------------------------------------------------

    def read(self, after_seq: int = 0, timeout: float = 1.0) -> Frame | None:
        """The newest frame with ``seq > after_seq``; None on timeout, stop or file end."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                frame = self._frame
                if frame is not None and frame.seq > after_seq:
                    self._taken = frame.seq
                    self._cond.notify_all()  # a non-realtime file reader waits for this
                    return frame
                if self._stop.is_set() or self.ended.is_set() or self.stuck.is_set():
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    # --- watchdog ---------------------------------------------------------------------

    def _start_reader(self) -> None:
        with self._cond:
            self._gen += 1
            gen = self._gen
            self._error = None
            self._opened_at = time.monotonic()
            self._flowing_since = 0.0
        reader = threading.Thread(
            target=self._read_loop, args=(gen,), name=f"camera-reader-{gen}", daemon=True
        )
        self._reader = reader
        reader.start()

    def _watch(self) -> None:
        self._start_reader()
        while not self._stop.wait(self.tick_s):
            if self.ended.is_set():
                continue
            now = time.monotonic()
            with self._cond:
                error = self._error
                got_frame = self._last_frame_at > self._opened_at
                since = now - (self._last_frame_at if got_frame else self._opened_at)
                limit = self.stale_after_s if got_frame else self.open_timeout_s
                recovered = (
                    self._faulted
                    and error is None
                    and since <= limit
                    and self._flowing_since > 0
                    and now - self._flowing_since >= self.stable_s
                )
                if recovered:
                    self._faulted = False
                    self._failures = 0  # the backoff starts over only now
            if recovered:
                logger.warning("camera %s: frames flowing again", self.shown)
                self._callback(self.on_recovered, f"{self.shown}: frames flowing again")
                continue
            if error is None and since <= limit:
                continue
            if error is None:
                error = (
                    f"no frame for {since:.1f} s (read blocked?)"
                    if got_frame
                    else f"no first frame within {limit:.0f} s of opening"
                )
                # The reader is presumably stuck inside OpenCV.
                if self._reader is not None:
                    self._abandoned.append(self._reader)
                self.abandoned_total += 1
            self._fail(error)
            stuck = self.abandoned
            if stuck >= self.max_abandoned:
                logger.error(
                    "camera %s: %d readers stuck in the driver; giving up so that the "
                    "recognition process is restarted",
                    self.shown,
                    stuck,
                )
                with self._cond:
                    self._fault_detail = f"{stuck} readers stuck in the driver"
                    self.stuck.set()
                    self._cond.notify_all()
                break
            delay = self.backoff_s[min(self._failures - 1, len(self.backoff_s) - 1)]
            logger.info("camera %s: reopening in %.1f s", self.shown, delay)
            if self._stop.wait(delay):
                break
            self.reopens += 1
            self._start_reader()

    def _fail(self, detail: str) -> None:
        with self._cond:
            self._gen += 1  # abandon the current reader
            self._flowing_since = 0.0
            self._failures += 1
            first = not self._faulted
            self._faulted = True
            self._fault_detail = detail
        logger.warning("camera %s: %s", self.shown, detail)
        if first:
            self._callback(self.on_fault, f"{self.shown}: {detail}")

    def _callback(self, cb: FaultCallback, detail: str) -> None:
        try:
            cb("camera", detail)
        except Exception:  # a reporting failure must not kill the watchdog
            logger.exception("camera fault callback failed")

    # --- reader -----------------------------------------------------------------------

    def _read_loop(self, gen: int) -> None:
        try:
            cap = self.capture_factory(self.source)
        except Exception as exc:
            self._reader_error(gen, f"cannot open: {exc}")
            return
        try:
            if not cap.isOpened():
                self._reader_error(gen, "cannot open")
                return
            fps = cap.get(cv2.CAP_PROP_FPS) if self.file else 0.0
            fps = fps if fps and 1.0 <= fps <= 240.0 else 25.0
            index = 0
            started = time.monotonic()
            while True:
                if self.file and not self._wait_turn(gen, started, index, fps):
                    return
                ok, image = cap.read()
                with self._cond:
                    if gen != self._gen:
                        return  # abandoned (or stopped) while blocked in read()
                if not ok or image is None:
                    if self.file:
                        logger.info("camera %s: end of file after %d frames", self.shown, index)
                        self.ended.set()
                        with self._cond:
                            self._cond.notify_all()
                        return
                    self._reader_error(gen, "read failed (unplugged or stream closed)")
                    return
                now = time.monotonic()
                t = index / fps if self.file else now
                index += 1
                self._publish(gen, image, t, now)
        finally:
            try:
                cap.release()
            except Exception:
                logger.debug("camera %s: release failed", self.shown, exc_info=True)

    def _wait_turn(self, gen: int, started: float, index: int, fps: float) -> bool:
        """Pace a file: at its frame rate, or until the consumer took the previous frame."""
        with self._cond:
            if self.realtime:
                due = started + index / fps
                while gen == self._gen and (left := due - time.monotonic()) > 0:
                    self._cond.wait(left)
            else:
                while gen == self._gen and self._taken < self._seq:
                    self._cond.wait(0.5)
            return gen == self._gen

    def _publish(self, gen: int, image: np.ndarray, t: float, now: float) -> None:
        with self._cond:
            if gen != self._gen:
                return
            self._seq += 1
            self._frame = Frame(image=image, seq=self._seq, t=t, captured=now)
            self._last_frame_at = now
            if not self._flowing_since:
                self._flowing_since = now  # the watchdog reports recovery after stable_s
            self._cond.notify_all()

    def _reader_error(self, gen: int, detail: str) -> None:
        if self.source != self.shown:  # an OpenCV/FFmpeg message may echo the full URL
            detail = detail.replace(self.source, self.shown)
        with self._cond:
            if gen == self._gen:
                self._error = detail
