"""The attendance kiosk: camera → faces → gallery → schedule → outbox (CONTRACT §1, §2).

:class:`AttendancePipeline` turns frames into ``attendance.punch`` / ``attendance.rejected``
events:
- a track's encodings vote (``attendance.votes`` agreeing frames, :class:`agent.gallery.Vote`)
  against the gallery (``tolerance``, ``margin``); one decision per track;
- ``liveness = "blink"``: the recognised track must also show a blink (eye aspect ratio dip
  from the 68-point landmarks, :class:`BlinkDetector`) before it punches; without a blink
  within ``blink_timeout_s`` an ``attendance.rejected`` (``liveness_failed``) is recorded.
  This stops a printed photo held up to the camera; it does not stop a video replayed on a
  phone or a screen (docs/attendance.md);
- debounce: one punch per person per ``debounce_s``; a track punches at most once;
- ``attendance.rejected`` (``unknown_face`` / ``low_quality`` / ``liveness_failed``) at most once
  per track and reason, and at most one per reason per ``reject_interval_s``; no image and
  no embedding ever leave the pipeline (CONTRACT §2, §3; PIPL art. 28-29).

:class:`AttendanceWorker` runs it for ``hall-agent run`` (the supervisor's Worker protocol).
dlib's encoder holds the GIL for ~80 ms per face (measured in bench/faces.py), which would
delay the pad and sync threads of the same process; with ``isolation = "process"`` (the
default) camera and recognition therefore run in a child process (spawned, so no locks are
inherited from threads) and only small event tuples cross a queue to the parent, which
records them in the outbox. The parent never imports cv2, dlib or numpy.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import multiprocessing as mp
import os
import queue
import sqlite3
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from agent.config import AgentConfig, AttendanceSection
from agent.outbox import Outbox, OutboxError

if TYPE_CHECKING:
    from agent.gallery import Gallery
    from agent.schedule import Schedule
    from drivers.camera import Frame
    from drivers.faces import FaceEngine

logger = logging.getLogger(__name__)

Emit = Callable[[str, dict[str, Any], datetime], None]

# The recognition process's exit status when it leaves to be started afresh (EX_TEMPFAIL).
EXIT_RESPAWN = 75
# With nobody in view and nothing moving, the motion gate looks at 10 frames a second, not
# every frame of the camera: idle CPU drops by about a third (bench/faces.py, 5.7 % -> ~4 % of
# a core at 640x480, 25 fps) and someone stepping in waits at most 0.1 s longer to be seen.
IDLE_INTERVAL_S = 0.1


class BlinkDetector:
    """A blink is the eye aspect ratio dipping below ``closed`` x its open level, then back.

    The open level is the 80th percentile of the track's recent values, so it adapts to the
    person and the camera angle. A printed photo's ratio stays flat (landmark jitter is a few
    percent), so it never blinks.
    """

    def __init__(self, closed: float = 0.75, reopened: float = 0.9, max_closed_s: float = 0.8):
        self.closed = closed
        self.reopened = reopened
        self.max_closed_s = max_closed_s
        self.history: deque[float] = deque(maxlen=30)
        self.closed_at: float | None = None
        self.seen = False

    def update(self, ear: float, t: float) -> bool:
        if len(self.history) >= 3:
            ordered = sorted(self.history)
            level = ordered[int(0.8 * (len(ordered) - 1))]
            if self.closed_at is None and ear < self.closed * level:
                self.closed_at = t
            elif self.closed_at is not None and ear >= self.reopened * level:
                if t - self.closed_at <= self.max_closed_s:
                    self.seen = True
                self.closed_at = None
        if self.closed_at is None:  # closed-eye values would drag the open level down
            self.history.append(ear)
        return self.seen


@dataclass
class _TrackState:
    first_t: float
    first_captured: float
    vote: Any
    arrived: datetime  # wall clock of the track's first frame: the punch's time (finding 7)
    blink: BlinkDetector = field(default_factory=BlinkDetector)
    staff_id: str | None = None
    decided_t: float = 0.0
    punched: bool = False
    low_quality: int = 0
    settled: bool = False  # a decision stands; the engine only re-checks now and then
    decision: str | None = None  # the standing decision (None: unknown)
    decisions: int = 0  # how many decisions this track has had
    sent: set[str] = field(default_factory=set)  # rejected reasons already sent


class AttendancePipeline:
    """Frames in, events out; pure policy around a face engine, a gallery and a schedule."""

    def __init__(
        self,
        cfg: AttendanceSection,
        engine: FaceEngine,
        gallery: Gallery,
        schedule: Schedule,
        emit: Emit,
        wall_clock: Callable[[Frame], datetime],
    ):
        self.cfg = cfg
        self.engine = engine
        self.gallery = gallery
        self.schedule = schedule
        self.emit = emit
        self.wall_clock = wall_clock
        self.tracks: dict[int, _TrackState] = {}
        self.last_punch: dict[str, float] = {}  # staff id -> frame time of the last punch
        self.last_reject: dict[str, float] = {}  # reason -> frame time
        self.punch_log: list[tuple[str, float, float]] = []  # (staff, first captured, emitted)
        self.counters = {"frames": 0, "punches": 0, "rejected": 0, "suppressed": 0}
        self.idle = False  # the last frame showed nobody and nothing moving

    def seed_debounce(self, seconds_ago: dict[str, float], now_t: float) -> None:
        """Carry debounce over a restart of the recognition process."""
        for sid, ago in seconds_ago.items():
            self.last_punch[sid] = now_t - ago

    def process(self, frame: Frame) -> None:
        from agent.gallery import Vote

        self.counters["frames"] += 1
        result = self.engine.process(frame.image)
        self.idle = result.gated
        for tid in result.ended:
            ended = self.tracks.pop(tid, None)
            if (
                ended is not None
                and ended.decisions == 0
                and ended.low_quality >= 2 * self.cfg.votes
            ):
                # Only a track that never got a decision was "low quality": the first blurred
                # frames of someone recognised a moment later are not (review 2, finding 11).
                self._reject(ended, "low_quality", None, frame)
        for face in result.faces:
            st = self.tracks.get(face.track_id)
            if st is None:
                st = _TrackState(
                    frame.t, frame.captured, Vote(self.cfg.votes), self.wall_clock(frame)
                )
                self.tracks[face.track_id] = st
            if face.ear is not None:
                st.blink.update(face.ear, frame.t)
            if face.quality is not None:
                st.low_quality += 1
            if face.encoding is not None:
                match = self.gallery.match(face.encoding, self.cfg.tolerance, self.cfg.margin)
                st.vote.add(match)
                if st.settled and match.staff_id != st.decision:
                    # A re-check disagrees (people swapped places, a better view): look
                    # closely again instead of trusting the old decision.
                    st.settled = False
                    self.engine.settle(face.track_id, False)
                self._decide(face.track_id, st, frame)
            if st.staff_id is not None and not st.punched:
                self._maybe_punch(st, frame)

    def _decide(self, tid: int, st: _TrackState, frame: Frame) -> None:
        sid, decided = st.vote.decision()
        if not decided or st.vote.votes[-1][0] != sid:
            return  # undecided, or the newest look disagrees: keep encoding every frame
        st.settled, st.decision = True, sid
        st.decisions += 1
        self.engine.settle(tid)  # from now on only an occasional re-check
        if sid is None:
            if st.staff_id is None:
                nearest = st.vote.distance(None)
                self._reject(st, "unknown_face", nearest, frame)
            return
        if sid != st.staff_id:
            if st.staff_id is not None:
                # The track now shows someone else (a photo held over a live face): the blink
                # seen so far belongs to the earlier face, so this one must blink itself
                # (review 2, finding 2). An earlier *unknown* decision is not someone else:
                # "unknown, then Alice" is Alice turning towards the camera, and she arrived
                # with the track's first frame (final review, item 2).
                st.blink = BlinkDetector()
                st.arrived = self.wall_clock(frame)  # this person arrives now
            st.staff_id, st.decided_t, st.punched = sid, frame.t, False

    def _maybe_punch(self, st: _TrackState, frame: Frame) -> None:
        sid = st.staff_id
        assert sid is not None
        liveness = "off"
        if self.cfg.liveness == "blink":
            if not st.blink.seen:
                if frame.t - st.decided_t > self.cfg.blink_timeout_s:
                    self._reject(st, "liveness_failed", st.vote.distance(sid), frame)
                return
            liveness = "passed"
        last = self.last_punch.get(sid)
        if last is not None and frame.t - last < self.cfg.debounce_s:
            st.punched = True  # already punched within the window: this track is done
            self.counters["suppressed"] += 1
            return
        # The punch is when the person stepped in front of the camera, not when recognition
        # and the blink finished: arriving at 08:29:57 and blinking at 08:30:02 is on time
        # (review 2, finding 7; docs/attendance.md "Punch time").
        at = st.arrived
        c = self.schedule.classify(at)
        distance = st.vote.distance(sid)
        data = {
            "staff_id": sid,
            "slot": c.slot,
            "status": c.status,
            "minutes_off": c.minutes_off,
            "distance": _rounded(distance),
            "liveness": liveness,
        }
        self.emit("attendance.punch", data, at)
        st.punched = True
        self.last_punch[sid] = frame.t
        self.counters["punches"] += 1
        self.punch_log.append((sid, st.first_captured, time.monotonic()))
        logger.info(
            "punch %s %s %s (track since %.2f s)", sid, c.slot, c.status, frame.t - st.first_t
        )

    def _reject(self, st: _TrackState, reason: str, distance: float | None, frame: Frame) -> None:
        if reason in st.sent:
            return
        st.sent.add(reason)
        last = self.last_reject.get(reason)
        if last is not None and frame.t - last < self.cfg.reject_interval_s:
            self.counters["suppressed"] += 1
            return
        self.last_reject[reason] = frame.t
        data = {"reason": reason, "distance": _rounded(distance)}
        self.emit("attendance.rejected", data, self.wall_clock(frame))
        self.counters["rejected"] += 1


def _rounded(distance: float | None) -> float | None:
    """NaN/inf (a degenerate encoding) is not JSON; the outbox would refuse the event."""
    return None if distance is None or not math.isfinite(distance) else round(distance, 4)


# --- building the pipeline ---------------------------------------------------------------


def build_engine(cfg: AttendanceSection) -> FaceEngine:
    from drivers.faces import DlibFaceEngine, EngineParams

    return DlibFaceEngine(
        EngineParams(
            min_face_px=cfg.min_face_px,
            min_sharpness=cfg.min_sharpness,
            max_yaw=cfg.max_yaw,
            landmarks68=cfg.liveness == "blink",
        )
    )


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
) -> str | None:
    """Camera + pipeline until ``stop`` is set; everything leaves through ``send``.

    Runs in the recognition child process (or a thread with ``isolation = "thread"``).
    Messages: ("event", type, data, at_iso), ("health", dict), ("ended",), ("error", text).
    Returns ``"camera_stuck"`` when the camera gave up on readers stuck in the driver: only
    a new process frees them, so the caller ends and the supervisor starts a fresh one.
    """
    from agent.enroll import prune_to_roster
    from agent.gallery import Gallery, gallery_path
    from agent.schedule import Schedule
    from drivers.camera import Camera, describe_range

    cfg = AttendanceSection.model_validate(spec["attendance"])
    data_dir = Path(spec["data_dir"])
    tz = ZoneInfo(spec["timezone"])
    epoch = datetime.fromisoformat(spec["media_epoch"]) if spec.get("media_epoch") else None

    def emit(event_type: str, data: dict[str, Any], at: datetime) -> None:
        send(("event", event_type, data, at.isoformat()))

    def fault(kind: str) -> Callable[[str, str], None]:
        return lambda component, detail: emit(
            f"device.{kind}", {"component": component, "detail": detail}, datetime.now(tz)
        )

    camera = Camera(
        cfg.camera,
        realtime=cfg.realtime,
        stale_after_s=cfg.stale_after_s,
        on_fault=fault("fault"),
        on_recovered=fault("recovered"),
    )
    gfile = _Watched(gallery_path(data_dir))
    roster = _Watched(data_dir / "roster.json")
    gfile.changed()
    pipeline = AttendancePipeline(
        cfg,
        build_engine(cfg),
        _load_gallery(gfile.path, Gallery()),
        Schedule(cfg.schedule),
        emit,
        wall_clock_for(tz, epoch),
    )
    pipeline.seed_debounce(spec.get("debounce_seed", {}), time.monotonic())
    camera.start()
    last_seq = 0
    first_shape: tuple[int, ...] = ()
    last_health = last_files = 0.0
    ended_sent = False
    try:
        while not stop.is_set():
            frame = camera.read(last_seq, timeout=0.5)
            now = time.monotonic()
            health = {**camera.health(), **pipeline.counters, "people": len(pipeline.gallery)}
            if frame is not None:
                if last_seq == 0 or frame.image.shape != first_shape:
                    first_shape = frame.image.shape
                    h, w = first_shape[:2]
                    span = describe_range(cfg.min_face_px, w, h, cfg.camera_hfov_deg)
                    logger.info("camera %s: %s", camera.shown, span)
                last_seq = frame.seq
                pipeline.process(frame)
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
                    send(("health", health))
                    send(("ended",))
                    ended_sent = True
                stop.wait(0.5)
            if now - last_files >= 2.0:
                last_files = now
                if roster.changed() and roster.mtime:
                    _prune(prune_to_roster, data_dir)
                if gfile.changed():
                    pipeline.gallery = _load_gallery(gfile.path, pipeline.gallery)
            if now - last_health >= 1.0:  # the heartbeat the supervisor watches
                last_health = now
                send(("health", health))
    finally:
        camera.stop()
    return None


def _prune(prune: Callable[[Path], list[str]], data_dir: Path) -> None:
    """Apply the roster; a damaged or unreadable gallery is logged, never fatal here."""
    try:
        prune(data_dir)
    except OSError as exc:  # the lock or the gallery not ours (sudo enroll): keep recognising
        logger.error("roster not applied to the gallery in %s: %s%s", data_dir, exc, _OWNER_HINT)
    except Exception as exc:  # GalleryError (damaged file): keep recognising
        logger.error("roster not applied to the gallery in %s: %s", data_dir, exc)


def _load_gallery(path: Path, current: Gallery) -> Gallery:
    """The gallery file's people, or (damaged file) the ones already loaded, with a log line."""
    from agent.gallery import Gallery, GalleryError

    try:
        gallery = Gallery.load(path)
    except GalleryError as exc:
        logger.error("%s; keeping the %d people loaded before (re-enrol to fix)", exc, len(current))
        return current
    logger.info("gallery loaded: %d people, %d encodings", len(gallery), gallery.rows)
    return gallery


def _child_main(spec: dict[str, Any], q: Any, parent_end: Any) -> None:
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
    try:
        outcome = run_loop(spec, q.put, stop)
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


# --- the worker ------------------------------------------------------------------------


@dataclass
class PendingEvents:
    """Events not yet in the outbox (disk full, database locked), one buffer per kiosk.

    The factory hands the same buffer to every worker it builds, so a restart by the
    supervisor while the outbox refuses loses nothing (review 2, finding 3). Each item
    carries its dedupe key, made once, so a retry after a partial failure (committed, then an
    error) finds the first row instead of adding a second one (finding 4). The lock guards
    the deque only; two threads may send the same head item, and the dedupe key makes that
    harmless. What is still here when a worker stops is saved to ``saved_to``
    (``<data_dir>/attendance-pending.json``) and read back by the next agent start
    (final review, item 4).
    """

    items: deque[tuple[str, dict[str, Any], datetime, str]] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)
    saved_to: Path | None = None  # the file holding a copy of the items, if any

    def save(self) -> None:
        """Write the buffer to ``saved_to`` (or remove the file once the buffer is empty).

        If the file cannot be written, each punch that would be lost is logged at ERROR
        with its staff id and time, so it can be entered by hand.
        """
        if self.saved_to is None:
            return
        with self.lock:
            items = list(self.items)
        if not items:
            try:
                self.saved_to.unlink(missing_ok=True)
            except OSError as exc:
                logger.warning("attendance: %s not removed: %s", self.saved_to, exc)
            return
        rows = [
            {"type": t, "data": data, "at": at.isoformat(), "dedupe_key": key}
            for t, data, at, key in items
        ]
        try:
            write_json_atomic(self.saved_to, rows)
        except (OSError, ValueError, TypeError) as exc:
            logger.error("attendance: %d events not saved to %s: %s", len(rows), self.saved_to, exc)
            for t, data, at, _ in items:
                logger.error(
                    "attendance: LOST %s staff_id=%s at=%s", t, data.get("staff_id"), at.isoformat()
                )
            return
        logger.warning(
            "attendance: %d events the outbox did not take saved to %s for the next start",
            len(rows),
            self.saved_to,
        )

    def load(self) -> None:
        """Put the events a previous run saved back in front of the buffer.

        The file stays until they are stored (the next save() after the buffer empties
        removes it): deleting it now would lose them if the agent died before storing them;
        reading them twice only finds their dedupe keys already stored.
        """
        path = self.saved_to
        if path is None:
            return
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(rows, list):
                raise ValueError("expected a list of events")
            loaded = [
                (
                    str(r["type"]),
                    dict(r["data"]),
                    datetime.fromisoformat(r["at"]),
                    str(r["dedupe_key"]),
                )
                for r in rows
            ]
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, KeyError) as exc:
            logger.error("attendance: saved events in %s unreadable (%s); left there", path, exc)
            return
        with self.lock:
            self.items.extendleft(reversed(loaded))
        logger.warning("attendance: %d events saved at the last stop will be recorded", len(loaded))


def write_json_atomic(path: Path, obj: Any) -> None:
    """``obj`` as JSON at ``path`` so that a power cut leaves the old or the new file:
    a unique temporary file in the same directory (mkstemp), fsync, rename, fsync the
    directory (the rename itself is only durable then)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(obj, ensure_ascii=False)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def pending_path(data_dir: Path) -> Path:
    return Path(data_dir) / "attendance-pending.json"


def dedupe_key_for(event_type: str, data: dict[str, Any], at: datetime) -> str:
    """A punch is one person at one first-seen time; any other event gets a fresh key."""
    if event_type == "attendance.punch":
        return f"punch:{data['staff_id']}:{at.isoformat()}"
    return f"{event_type}:{uuid.uuid4().hex}"


class AttendanceWorker:
    """Supervisor worker: recognition in a child process, events into the outbox here."""

    stall_after_s = 60.0  # the child loads models for a few seconds, then beats every second

    def __init__(
        self,
        cfg: AgentConfig,
        outbox: Outbox,
        *,
        name: str = "attendance",
        media_epoch: datetime | None = None,
        debounce_seed: dict[str, float] | None = None,
        on_punch: Callable[[str], None] | None = None,
        pending: PendingEvents | None = None,
        open_faults: set[str] | None = None,
    ):
        assert cfg.attendance is not None
        # Components with a device.fault not yet followed by device.recovered. Shared by the
        # workers of one kiosk: a recognition process respawned for a camera that stays stuck
        # would otherwise record a new fault every time (about one a minute).
        self.open_faults = open_faults if open_faults is not None else set()
        self.name = name
        self.cfg = cfg
        self.outbox = outbox
        self.media_epoch = media_epoch
        self.debounce_file = debounce_path(cfg.device.data_dir)
        horizon = float(cfg.attendance.debounce_s)
        stored = load_debounce(self.debounce_file, horizon)
        # staff id -> time.time() of the last punch, as stored (only those still in window)
        self._punch_walls = {sid: time.time() - ago for sid, ago in stored.items()}
        self.debounce_seed = {**stored, **(debounce_seed or {})}
        self.on_punch = on_punch
        self.isolation = cfg.attendance.isolation
        self.ended = threading.Event()
        self.punches: dict[str, float] = {}  # staff id -> time.monotonic() of the punch
        self._stop = threading.Event()
        self._activity = time.monotonic()
        self._health: dict[str, Any] = {"state": "starting"}
        self.pending = pending if pending is not None else PendingEvents()
        self._proc: Any = None
        self._proc_stop: Any = None
        self._queue: Any = None
        self._threads: list[threading.Thread] = []

    def _spec(self) -> dict[str, Any]:
        assert self.cfg.attendance is not None
        now = time.monotonic()
        return {
            "attendance": self.cfg.attendance.model_dump(mode="json"),
            "data_dir": str(self.cfg.device.data_dir),
            "timezone": self.cfg.device.timezone,
            "media_epoch": self.media_epoch.isoformat() if self.media_epoch else None,
            "debounce_seed": {
                **self.debounce_seed,
                **{sid: now - t for sid, t in self.punches.items()},
            },
            "log_level": logging.getLogger().getEffectiveLevel(),
            "parent_pid": os.getpid(),
        }

    def start(self) -> None:
        self._activity = time.monotonic()
        assert self.cfg.attendance is not None
        from agent.schedule import warn_calendar_gaps

        # In the parent's log too, not only the recognition child's (review 2, finding 10).
        warn_calendar_gaps(
            self.cfg.attendance.schedule, datetime.now(ZoneInfo(self.cfg.device.timezone)).date()
        )
        if self.isolation == "process":
            ctx = mp.get_context("spawn")
            self._queue = ctx.Queue()
            # Stopping never touches a lock the child may hold: the child watches the read
            # end of this pipe, and the parent closes the write end (agent/stopflag.py).
            child_end, self._proc_stop = ctx.Pipe(duplex=False)
            self._proc = ctx.Process(
                target=_child_main,
                args=(self._spec(), self._queue, child_end),
                name=f"hall-agent-{self.name}",
                daemon=True,
            )
            self._proc.start()
            child_end.close()  # only the child's copy may remain, or EOF never comes
            drain = threading.Thread(target=self._drain, name=f"{self.name}-drain", daemon=True)
            self._threads = [drain]
        else:
            from agent.stopflag import StopFlag

            self._proc_stop = StopFlag()
            loop = threading.Thread(
                target=run_loop,
                args=(self._spec(), self._handle, self._proc_stop),
                name=f"{self.name}-loop",
                daemon=True,
            )
            retry = threading.Thread(
                target=self._retry_loop, name=f"{self.name}-retry", daemon=True
            )
            self._threads = [loop, retry]
        for t in self._threads:
            t.start()

    def _drain(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self._queue.get(timeout=0.5)
            except queue.Empty:
                self._flush_retry()
                continue
            except (EOFError, OSError):
                break
            try:
                self._handle(msg)
            except Exception:  # one bad message must not end the drain (and lose the rest)
                logger.exception("attendance: message %r not handled", msg[:2])

    def _retry_loop(self) -> None:
        while not self._stop.wait(0.5):
            self._flush_retry()

    def _handle(self, msg: tuple) -> None:
        self._activity = time.monotonic()
        kind = msg[0]
        if kind == "event":
            _, event_type, data, at = msg
            if not self._fault_is_news(event_type, data):
                return
            self._record(event_type, data, datetime.fromisoformat(at))
        elif kind == "health":
            self._health = {"state": msg[1].get("state", "ok"), **msg[1]}
        elif kind == "ended":
            self.ended.set()
        elif kind == "error":
            self._health = {"state": "fault", "detail": msg[1]}

    def _fault_is_news(self, event_type: str, data: dict[str, Any]) -> bool:
        """False for a repeated fault (or a recovery without a fault) of the same component."""
        component = str(data.get("component"))
        if event_type == "device.fault":
            if component in self.open_faults:
                logger.info(
                    "%s still faulty (%s); not recorded again", component, data.get("detail")
                )
                return False
            self.open_faults.add(component)
        elif event_type == "device.recovered":
            if component not in self.open_faults:
                return False
            self.open_faults.discard(component)
        return True

    def _record(self, event_type: str, data: dict[str, Any], at: datetime) -> None:
        with self.pending.lock:
            self.pending.items.append((event_type, data, at, dedupe_key_for(event_type, data, at)))
        if not self._stop.is_set():  # stop() flushes once, with a bound, at its end
            self._flush_retry()
        if event_type == "attendance.punch":
            self.punches[data["staff_id"]] = time.monotonic()
            assert self.cfg.attendance is not None
            now = time.time()
            horizon = self.cfg.attendance.debounce_s
            self._punch_walls = {
                sid: t
                for sid, t in self._punch_walls.items()
                if now - t < horizon and t <= now + FUTURE_SLACK_S  # clock stepped back
            }
            self._punch_walls[data["staff_id"]] = now
            save_debounce(self.debounce_file, self._punch_walls)
            if self.on_punch:
                self.on_punch(data["staff_id"])

    def _flush_retry(self) -> None:
        # A full disk or a locked database must not lose a punch: keep it and try again
        # (CONTRACT §3 outbox). sqlite3.Error is what a locked or damaged database raises
        # below the outbox's own errors (review 2, finding 3).
        # The lock guards the buffer only, never an append: an append may wait out SQLite's
        # 30 s busy timeout, and a stop() (the supervisor's thread) waiting for the lock that
        # long starved the systemd watchdog (final review, item 3). Two flushers may send the
        # same head item; its stable dedupe key makes the second append find the first row.
        pending = self.pending
        while True:
            with pending.lock:
                if not pending.items:
                    return
                head = pending.items[0]
                waiting = len(pending.items)
            event_type, data, at, key = head
            try:
                self.outbox.append(event_type, data, at=at, dedupe_key=key)
            except (OutboxError, sqlite3.Error) as exc:
                logger.warning(
                    "attendance: %s not recorded yet (%d waiting): %s", event_type, waiting, exc
                )
                return
            except (ValueError, TypeError) as exc:
                # The outbox refuses this event's data for good (not JSON): retrying can
                # never succeed, and keeping it would block every event behind it.
                logger.error("attendance: %s dropped, not storable: %s", event_type, exc)
            with pending.lock:
                if pending.items and pending.items[0] is head:
                    pending.items.popleft()

    def _final_flush(self, timeout: float) -> None:
        """One last flush that gives up after ``timeout``: stop() must return in bounded time
        (the supervisor calls it from the thread that feeds the watchdog). A flush still
        waiting for the database finishes on its own; what it has not stored stays in the
        buffer."""
        flusher = threading.Thread(
            target=self._flush_retry, name=f"{self.name}-final-flush", daemon=True
        )
        flusher.start()
        flusher.join(timeout)
        if flusher.is_alive():
            logger.warning(
                "attendance: the outbox did not answer within %.1f s at stop; %d events wait",
                timeout,
                len(self.pending.items),
            )

    def stop(self, timeout: float = 5.0) -> None:
        if self._proc_stop is not None:
            # A pipe's close (process) or a plain flag (thread): neither waits for anything.
            if self._proc is not None:
                self._proc_stop.close()
            else:
                self._proc_stop.set()
        if self._proc is not None:
            self._proc.join(timeout)
            if self._proc.is_alive():
                logger.warning("attendance: recognition process did not stop; terminating")
                self._proc.terminate()
                self._proc.join(2.0)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(2.0)
        self._stop.set()
        for t in self._threads:
            t.join(timeout)
        if (
            self._proc is None
            and self._proc_stop is not None
            and not any(t.is_alive() for t in self._threads)
        ):
            self._proc_stop.close()  # the thread-mode flag's pipe, once nobody waits on it
        if self._queue is not None:
            # Whatever the child sent before it exited still goes into the outbox (or the
            # buffer: _handle's own flush may fail, the message is kept either way).
            while True:
                try:
                    msg = self._queue.get(timeout=0.2)
                except (queue.Empty, EOFError, OSError, ValueError):
                    break
                try:
                    self._handle(msg)
                except Exception:  # keep draining: every later message still counts
                    logger.exception("attendance: message %r not handled", msg[:2])
        self._final_flush(timeout)
        self.pending.save()  # what the outbox did not take survives the agent's exit

    @property
    def planned_exit(self) -> bool:
        """The recognition process left on purpose (exit 75: camera readers stuck in the
        driver, freed only by a new process), so the supervisor restarts it without counting
        it against ``max_restarts`` (agent/supervisor.py; final review, item 5)."""
        proc = self._proc
        return proc is not None and not proc.is_alive() and proc.exitcode == EXIT_RESPAWN

    def alive(self) -> bool:
        if self._proc is not None and not self._proc.is_alive():
            return False
        return all(t.is_alive() for t in self._threads)

    def last_activity(self) -> float:
        return self._activity

    def health(self) -> dict[str, Any]:
        return dict(self._health)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None


FUTURE_SLACK_S = 60.0  # debounce times further ahead than this predate a clock step back


def debounce_path(data_dir: Path) -> Path:
    return Path(data_dir) / "attendance-debounce.json"


def load_debounce(path: Path, horizon_s: float) -> dict[str, float]:
    """``{staff id: seconds since their last punch}`` from the file, within ``horizon_s``.

    Debounce must survive a restart of the whole agent (review 2, finding 9): someone still
    standing in front of the camera during a restart must not be punched twice. Wall-clock
    times are stored; a damaged file only costs that protection, never the start.
    """
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict):
            raise ValueError("expected an object {staff id: unix time}")
        now = time.time()
        # A time more than a minute in the future was written before the clock was stepped
        # back (NTP after a dead RTC): it would never expire, so it is dropped (final review,
        # item 7). A little ahead is clock jitter and counts as "just now".
        ago = {
            str(k): max(0.0, now - float(v))
            for k, v in raw.items()
            if float(v) <= now + FUTURE_SLACK_S
        }
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, TypeError) as exc:
        logger.warning("debounce state %s unreadable (%s); starting without it", path, exc)
        return {}
    return {sid: a for sid, a in ago.items() if a < horizon_s}


def save_debounce(path: Path, walls: dict[str, float]) -> None:
    """Atomically (a unique temporary file, fsync, rename, fsync of the directory), so a
    power cut leaves the old or the new one and two writers never share a temporary file."""
    try:
        write_json_atomic(path, walls)
    except OSError as exc:  # losing this only weakens debounce across a restart
        logger.warning("debounce state %s not saved: %s", path, exc)


def attendance_worker_factories(
    cfg: AgentConfig, outbox: Outbox
) -> dict[str, Callable[[], AttendanceWorker]]:
    """For agent/runtime.py: one camera pipeline per kiosk.

    Debounce survives a restart of the worker by the supervisor: the new worker starts from
    the previous one's punch times.
    """
    state: dict[str, AttendanceWorker] = {}
    open_faults: set[str] = set()
    # Outlives every worker of this kiosk (review 2, finding 3) and, through its file, the
    # agent (final review, item 4).
    pending = PendingEvents(saved_to=pending_path(cfg.device.data_dir))
    pending.load()

    def make() -> AttendanceWorker:
        prev = state.get("w")
        seed = {}
        if prev is not None:
            now = time.monotonic()
            seed = {sid: now - t for sid, t in prev.punches.items()}
        worker = AttendanceWorker(
            cfg, outbox, debounce_seed=seed, pending=pending, open_faults=open_faults
        )
        if prev is not None:
            worker.punches = dict(prev.punches)
        state["w"] = worker
        return worker

    return {"attendance": make}
