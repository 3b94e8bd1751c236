"""The recognition process of a kiosk: camera → faces → :class:`AttendancePipeline`.

dlib's encoder holds the GIL for ~80 ms per face (measured in bench/faces.py), which would
delay the pad and sync threads of the agent; with ``isolation = "process"`` (the default)
:func:`run_loop` therefore runs in a child process (:func:`child_main`, spawned, so no locks
are inherited from threads) and only small event tuples, looks and preview frames cross
bounded queues to the parent (agent/attendance_worker.py), which records them in the outbox.
The child ends with its parent (a pipe's end of file, ``PR_SET_PDEATHSIG``) and its signal
handlers only set a flag (agent/stopflag.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from agent.attendance import AttendancePipeline
from agent.config import AttendanceSection

if TYPE_CHECKING:
    from agent.gallery import Gallery
    from drivers.camera import Frame
    from drivers.faces import FaceEngine

logger = logging.getLogger(__name__)

# The recognition process's exit status when it leaves to be started afresh (EX_TEMPFAIL).
EXIT_RESPAWN = 75
# With nobody in view and nothing moving, the motion gate looks at 10 frames a second, not
# every frame of the camera: idle CPU drops by about a third (bench/faces.py, 5.7 % -> ~4 % of
# a core at 640x480, 25 fps) and someone stepping in waits at most 0.1 s longer to be seen.
IDLE_INTERVAL_S = 0.1


# --- building the pipeline ---------------------------------------------------------------


def build_engine(cfg: AttendanceSection) -> FaceEngine:
    """The configured recognizer's engine (drivers/face_models.py). The one factory: the
    kiosk and enrolment (agent/enroll.py) build theirs here from the same section, so an
    option is never honoured by one and dropped by the other."""
    from drivers.faces import DlibFaceEngine, EngineParams

    params = EngineParams(
        min_face_px=cfg.min_face_px,
        min_sharpness=cfg.min_sharpness,
        max_yaw=cfg.max_yaw,
        landmarks68=cfg.liveness == "blink",
    )
    if cfg.recognizer == "sface":
        from drivers.faces_sface import SfaceFaceEngine

        return SfaceFaceEngine(params, cfg.models_dir)
    return DlibFaceEngine(params)


def model_id(cfg: AttendanceSection) -> str:
    """The id a gallery records for encodings of the configured recognizer."""
    from drivers.face_models import RECOGNIZERS

    return RECOGNIZERS[cfg.recognizer].model_id


def wall_clock_for(tz: ZoneInfo, media_epoch: datetime | None) -> Callable[[Frame], datetime]:
    """Live: now. A file with ``media_epoch`` (tests, demos): epoch + media time."""
    if media_epoch is None:
        return lambda frame: datetime.now(tz)
    return lambda frame: media_epoch + timedelta(seconds=frame.t)


_OWNER_HINT = (
    " (files written by root? give the data directory back to the agent's user, e.g. "
    "`sudo chown -R hall-agent: <data_dir>`)"
)


@dataclass
class _Watched:
    path: Path
    mtime: float = -1.0

    def changed(self) -> bool:
        try:
            m = self.path.stat().st_mtime
        except FileNotFoundError:
            m = 0.0
        except OSError as exc:  # e.g. a 0700 directory root made with `sudo hall-agent enroll`
            if self.mtime != -2.0:
                logger.error("cannot watch %s: %s%s", self.path, exc, _OWNER_HINT)
                self.mtime = -2.0  # log once per problem; retried every few seconds
            return False
        if m != self.mtime:
            self.mtime = m
            return True
        return False


def run_loop(
    spec: dict[str, Any],
    send: Callable[[tuple], None],
    stop: Any,
    preview: Callable[[bytes], None] | None = None,
) -> str | None:
    """Camera + pipeline until ``stop`` is set; everything leaves through ``send``.

    Runs in the recognition child process (or a thread with ``isolation = "thread"``).
    Messages: ("event", type, data, at_iso), ("health", dict), ("ended",), ("error", text),
    ("look", dict) for the kiosk screen. ``preview`` takes small JPEG frames (in memory, for
    the kiosk screen only; it must drop rather than block).
    Returns ``"camera_stuck"`` when the camera gave up on readers stuck in the driver: only
    a new process frees them, so the caller ends and the supervisor starts a fresh one.
    """
    from agent.enrolment import prune_to_roster
    from agent.gallery import Gallery, gallery_path
    from agent.roster import roster_path
    from agent.schedule_file import ScheduleWatch
    from drivers.camera import Camera, describe_range
    from drivers.face_models import ModelError

    cfg = AttendanceSection.model_validate(spec["attendance"])
    data_dir = Path(spec["data_dir"])
    tz = ZoneInfo(spec["timezone"])
    epoch = datetime.fromisoformat(spec["media_epoch"]) if spec.get("media_epoch") else None

    def emit(event_type: str, data: dict[str, Any], at: datetime) -> None:
        send(("event", event_type, data, at.isoformat()))

    def fault(kind: str) -> Callable[[str, str], None]:
        # The contract caps a fault's detail at 1024 characters (long model paths, a
        # gallery message with its re-enrolment advice): cut, never refused.
        return lambda component, detail: emit(
            f"device.{kind}",
            {"component": component, "detail": detail[:1024]},
            datetime.now(tz),
        )

    camera = Camera(
        cfg.camera,
        realtime=cfg.realtime,
        stale_after_s=cfg.stale_after_s,
        on_fault=fault("fault"),
        on_recovered=fault("recovered"),
    )
    gfile = _Watched(gallery_path(data_dir))
    roster = _Watched(roster_path(data_dir))
    gfile.changed()
    model = model_id(cfg)

    def gallery_fault(kind: str, detail: str) -> None:
        fault(kind)("gallery", detail)

    try:
        engine = build_engine(cfg)
    except ModelError as exc:
        # Missing or changed model files do not come back by restarting: report the fault
        # once (it reaches the centre and the kiosk page) and wait for a stop, instead of
        # crash-looping the recognition process.
        logger.error("recognizer %s: %s", cfg.recognizer, exc)
        fault("fault")("models", str(exc))
        send(("error", f"face models: {exc}"))
        while not stop.is_set():
            send(
                ("health", {"state": "fault", "blocked": "models", "detail": f"face models: {exc}"})
            )
            stop.wait(1.0)
        return None
    # A gallery fault still open in the parent (an earlier recognition process saw another
    # model's gallery) is cleared by the first good gallery this one loads.
    start = Gallery(_MISMATCH) if "gallery" in spec.get("open_faults", ()) else Gallery()
    pipeline = AttendancePipeline(
        cfg,
        engine,
        _load_gallery(gfile.path, start, model, gallery_fault),
        ScheduleWatch(data_dir),  # the centre's, as last received (docs/attendance.md)
        emit,
        wall_clock_for(tz, epoch),
    )
    pipeline.seed_debounce(spec.get("debounce_seed", {}), time.monotonic())
    pipeline.on_look = lambda look: send(("look", look))
    preview_every = 1.0 / spec["preview_fps"] if preview and spec.get("preview_fps") else None
    last_preview = 0.0
    camera.start()
    last_seq = 0
    first_shape: tuple[int, ...] = ()
    last_health = last_files = 0.0
    ended_sent = False

    def health() -> dict[str, Any]:
        out = {**camera.health(), **pipeline.counters, "people": len(pipeline.gallery)}
        if pipeline.gallery.model == _MISMATCH:  # another model's gallery: nobody punches
            out["blocked"] = "gallery"
        return out

    try:
        while not stop.is_set():
            frame = camera.read(last_seq, timeout=0.5)
            now = time.monotonic()
            if frame is not None:
                if last_seq == 0 or frame.image.shape != first_shape:
                    first_shape = frame.image.shape
                    h, w = first_shape[:2]
                    span = describe_range(cfg.min_face_px, w, h, cfg.camera_hfov_deg)
                    logger.info("camera %s: %s", camera.shown, span)
                last_seq = frame.seq
                pipeline.process(frame)
                if preview_every is not None and now - last_preview >= preview_every:
                    last_preview = now
                    assert preview is not None
                    jpeg = preview_jpeg(frame.image, pipeline, spec.get("preview_width", 480))
                    if jpeg is not None:
                        preview(jpeg)
                if pipeline.idle and cfg.realtime:
                    # Nobody in view: look at the newest frame a few times a second only.
                    stop.wait(max(0.0, IDLE_INTERVAL_S - (time.monotonic() - now)))
            elif camera.stuck.is_set():
                detail = camera.health().get("detail", "camera readers stuck")
                logger.error("camera stuck (%s): ending recognition for a restart", detail)
                send(("error", f"camera: {detail}; recognition restarts"))
                return "camera_stuck"
            elif camera.ended.is_set():
                # A video file played to its end (tests, demos): report once, then idle.
                # read() returns at once now, so wait here rather than spin.
                if not ended_sent:
                    send(("health", health()))
                    send(("ended",))
                    ended_sent = True
                stop.wait(0.5)
            if now - last_files >= 2.0:
                last_files = now
                if roster.changed() and roster.mtime:
                    _prune(prune_to_roster, data_dir)
                if gfile.changed():
                    pipeline.gallery = _load_gallery(
                        gfile.path, pipeline.gallery, model, gallery_fault
                    )
            if now - last_health >= 1.0:  # the heartbeat the supervisor watches
                last_health = now
                send(("health", health()))
    finally:
        camera.stop()
    return None


def preview_jpeg(image: Any, pipeline: AttendancePipeline, width: int) -> bytes | None:
    """The frame downscaled to ``width`` with the face boxes drawn, as JPEG bytes in memory.

    Never written to a file and never sent off the device (docs/attendance.md, PIPL art.
    28-29): the bytes go to the local kiosk page only. Green: punched; amber: looking;
    red: not recognised.
    """
    import cv2

    h, w = image.shape[:2]
    k = min(1.0, width / w)
    small = cv2.resize(image, (round(w * k), round(h * k)), interpolation=cv2.INTER_AREA)
    for box, tid in pipeline.frame_boxes:
        st = pipeline.tracks.get(tid)
        colour = (0, 190, 255)  # BGR amber: still looking
        if st is not None and st.punched:
            colour = (80, 200, 60)
        elif st is not None and st.settled and st.decision is None and st.staff_id is None:
            colour = (60, 60, 230)
        top, right, bottom, left = (round(v * k) for v in box)
        cv2.rectangle(small, (left, top), (right, bottom), colour, max(2, round(3 * k)))
    ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 70])
    return buf.tobytes() if ok else None


def _prune(prune: Callable[[Path], list[str]], data_dir: Path) -> None:
    """Apply the roster; a damaged or unreadable gallery is logged, never fatal here."""
    try:
        prune(data_dir)
    except OSError as exc:  # the lock or the gallery not ours (sudo enroll): keep recognising
        logger.error("roster not applied to the gallery in %s: %s%s", data_dir, exc, _OWNER_HINT)
    except Exception as exc:  # GalleryError (damaged file): keep recognising
        logger.error("roster not applied to the gallery in %s: %s", data_dir, exc)


# The model of the empty gallery used while the file's model is another recognizer's.
_MISMATCH = "(another model)"


def _load_gallery(
    path: Path, current: Gallery, model: str, fault: Callable[[str, str], None] | None = None
) -> Gallery:
    """The gallery file's people, or (damaged file) the ones already loaded, with a log line.

    A gallery of another recognizer's model is never matched against (its distances mean
    nothing here): the kiosk recognises nobody, logs how to re-enrol and reports a fault of
    component ``gallery`` (cleared when a gallery of the right model is loaded).
    """
    from agent.gallery import Gallery, GalleryError, GalleryModelError

    try:
        gallery = Gallery.load(path)
        gallery.require_model(model)
    except GalleryModelError as exc:
        logger.error("gallery %s: %s", path, exc)
        if fault is not None:
            fault("fault", str(exc))
        return Gallery(_MISMATCH)  # nobody to match; marks the fault as open
    except GalleryError as exc:
        logger.error("%s; keeping the %d people loaded before (re-enrol to fix)", exc, len(current))
        return current
    if fault is not None and current.model == _MISMATCH:
        if not len(gallery):  # set aside to re-enrol: still nobody to recognise
            return Gallery(_MISMATCH)
        fault("recovered", f"gallery of this recognizer's model loaded ({len(gallery)} people)")
    logger.info(
        "gallery loaded: %d people, %d encodings (model %s)",
        len(gallery),
        gallery.rows,
        gallery.model or model,
    )
    return gallery


def child_main(spec: dict[str, Any], q: Any, parent_end: Any, preview_q: Any = None) -> None:
    import logging as _logging
    import signal
    import sys

    from agent.stopflag import ParentStop, die_with_parent

    # Only plain flags in signal handlers (agent/stopflag.py): a SIGTERM to the whole process
    # group (systemd, Ctrl-C, `timeout`) once deadlocked a multiprocessing.Event here. The
    # parent asks for a stop by closing its end of the pipe; its death closes it too, and
    # PR_SET_PDEATHSIG sends a SIGTERM in case the loop is busy elsewhere.
    stop = ParentStop(parent_end.fileno())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the parent decides when to stop
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    die_with_parent(signal.SIGTERM)
    if os.getppid() != spec.get("parent_pid", os.getppid()):
        stop.set()  # the parent died before prctl took effect

    _logging.basicConfig(
        level=spec.get("log_level", _logging.WARNING),
        format="%(levelname)s %(name)s[recognition]: %(message)s",
        stream=sys.stderr,
    )

    def preview(jpeg: bytes) -> None:
        with contextlib.suppress(queue.Full):  # a busy screen drops frames, never blocks
            preview_q.put_nowait(jpeg)

    try:
        outcome = run_loop(spec, q.put, stop, preview if preview_q is not None else None)
    except Exception as exc:
        logger.exception("recognition process failed")
        q.put(("error", f"{type(exc).__name__}: {exc}"))
        raise
    # Hand the queued messages over, then leave without the interpreter's teardown: camera
    # reader threads may still sit in a native read (a stuck driver would keep a normal exit
    # waiting forever), and tearing down OpenCV/FFmpeg under a running reader aborted the
    # process ("terminate called without an active exception"). After "camera_stuck" the
    # supervisor respawns us (a planned exit).
    _logging.shutdown()
    q.close()
    q.join_thread()
    os._exit(EXIT_RESPAWN if outcome == "camera_stuck" else 0)
