"""The attendance kiosk's decisions: faces → gallery → schedule → events (docs/attendance.md).

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
  no embedding ever leave the pipeline (docs/topics.md; PIPL art. 28-29).

This module is the decision policy only. The recognition process that feeds it frames is
agent/recognition.py; the worker that records its events in the outbox for ``hall-agent run``
is agent/attendance_worker.py; what survives a restart on disk is agent/punch_files.py. The
agent's own process never imports cv2, dlib or numpy.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from agent.config import AttendanceSection
from contract import EventType, PunchData

if TYPE_CHECKING:
    from agent.gallery import Gallery
    from contract.schedule import ScheduleSource
    from drivers.camera import Frame
    from drivers.faces import FaceEngine

logger = logging.getLogger(__name__)

Emit = Callable[[str, dict[str, Any], datetime], None]


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
    arrived: datetime  # wall clock of the track's first frame: the punch's time
    blink: BlinkDetector = field(default_factory=BlinkDetector)
    staff_id: str | None = None
    decided_t: float = 0.0
    punched: bool = False
    low_quality: int = 0
    settled: bool = False  # a decision stands; the engine only re-checks now and then
    decision: str | None = None  # the standing decision (None: unknown)
    decisions: int = 0  # how many decisions this track has had
    sent: set[str] = field(default_factory=set)  # rejected reasons already sent
    box: Any = None  # the face's latest box (top, right, bottom, left), for the kiosk screen
    asked_blink: bool = False  # the screen was told to ask for a blink
    hinted: str | None = None  # the face quality problem the screen was last told about


class AttendancePipeline:
    """Frames in, events out; pure policy around a face engine, a gallery and a schedule."""

    def __init__(
        self,
        cfg: AttendanceSection,
        engine: FaceEngine,
        gallery: Gallery,
        schedule: ScheduleSource,
        emit: Emit,
        wall_clock: Callable[[Frame], datetime],
    ):
        self.cfg = cfg
        self.rule = cfg.rule()  # the recognizer's calibrated values unless configured
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
        # The kiosk screen (agent/screen.py): each look's outcome, and this frame's boxes.
        self.on_look: Callable[[dict[str, Any]], None] | None = None
        self.frame_boxes: list[tuple[Any, int]] = []  # (box, track id)

    def seed_debounce(self, seconds_ago: dict[str, float], now_t: float) -> None:
        """Carry debounce over a restart of the recognition process."""
        for sid, ago in seconds_ago.items():
            self.last_punch[sid] = now_t - ago

    def process(self, frame: Frame) -> None:
        from agent.gallery import Vote

        self.counters["frames"] += 1
        result = self.engine.process(frame.image)
        self.idle = result.gated
        self.frame_boxes = [(face.box, face.track_id) for face in result.faces]
        for tid in result.ended:
            ended = self.tracks.pop(tid, None)
            if (
                ended is not None
                and ended.decisions == 0
                and ended.low_quality >= 2 * self.cfg.votes
            ):
                # Only a track that never got a decision was "low quality": the first blurred
                # frames of someone recognised a moment later are not.
                self._reject(ended, "low_quality", None, frame)
        for face in result.faces:
            st = self.tracks.get(face.track_id)
            if st is None:
                st = _TrackState(
                    frame.t, frame.captured, Vote(self.cfg.votes), self.wall_clock(frame)
                )
                self.tracks[face.track_id] = st
            st.box = face.box
            if face.ear is not None:
                st.blink.update(face.ear, frame.t)
            if face.quality is not None:
                st.low_quality += 1
                self._hint_quality(st, face.quality)
            if face.encoding is not None:
                match = self.gallery.match(face.encoding, self.rule.tolerance, self.rule.margin)
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
                # . An earlier *unknown* decision is not someone else:
                # "unknown, then Alice" is Alice turning towards the camera, and she arrived
                # with the track's first frame.
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
                elif not st.asked_blink:
                    st.asked_blink = True
                    self._look(st, "blink", staff_id=sid)
                return
            liveness = "passed"
        last = self.last_punch.get(sid)
        if last is not None and frame.t - last < self.cfg.debounce_s:
            st.punched = True  # already punched within the window: this track is done
            self.counters["suppressed"] += 1
            self._look(st, "repeat", staff_id=sid)
            return
        # The punch is when the person stepped in front of the camera, not when recognition
        # and the blink finished: arriving at 08:29:57 and blinking at 08:30:02 is on time
        # (docs/attendance.md "Punch time").
        at = st.arrived
        # The centre's schedule as last received (docs/attendance.md "One schedule"); the
        # punch names its version so that the report judges it by the same one.
        schedule = self.schedule.current()
        c = schedule.classify(at)
        data = PunchData(
            staff_id=sid,
            slot=c.slot,
            status=c.status,
            minutes_off=c.minutes_off,
            distance=_rounded(st.vote.distance(sid)),
            liveness=liveness,
            schedule_version=schedule.version,
        ).model_dump()
        self.emit(EventType.PUNCH, data, at)
        self._look(st, "punch", **data, at=at.isoformat())
        st.punched = True
        self.last_punch[sid] = frame.t
        self.counters["punches"] += 1
        self.punch_log.append((sid, st.first_captured, time.monotonic()))
        logger.info(
            "punch %s %s %s (track since %.2f s)", sid, c.slot, c.status, frame.t - st.first_t
        )

    def _hint_quality(self, st: _TrackState, quality: str) -> None:
        """Tell the screen what to change (come closer, hold still, face the camera) once a
        still undecided track has had ``votes`` unusable frames, and again when the problem
        changes; the event itself waits for the track's end (``low_quality`` above)."""
        if st.decisions or st.low_quality < self.cfg.votes or quality == st.hinted:
            return
        st.hinted = quality
        self._look(st, "low_quality", quality=quality)

    def _reject(self, st: _TrackState, reason: str, distance: float | None, frame: Frame) -> None:
        if reason in st.sent:
            return
        st.sent.add(reason)
        if reason != "low_quality":  # shown even when the event itself is rate-limited
            self._look(st, reason, staff_id=st.staff_id)
        last = self.last_reject.get(reason)
        if last is not None and frame.t - last < self.cfg.reject_interval_s:
            self.counters["suppressed"] += 1
            return
        self.last_reject[reason] = frame.t
        data = {"reason": reason, "distance": _rounded(distance)}
        self.emit(EventType.FACE_REJECTED, data, self.wall_clock(frame))
        self.counters["rejected"] += 1

    def _look(self, st: _TrackState, kind: str, **data: Any) -> None:
        """Tell the kiosk screen about a look: "punch", "repeat" (debounced), "unknown_face",
        "blink" (liveness waits), "liveness_failed", "low_quality" (with the face's quality
        problem). Never images, never encodings."""
        if self.on_look is None:
            return
        box = [int(v) for v in st.box] if st.box is not None else None
        try:
            self.on_look({"kind": kind, "box": box, **data})
        except Exception:  # the screen must never cost a punch
            logger.exception("screen: look not shown")


def _rounded(distance: float | None) -> float | None:
    """NaN/inf (a degenerate encoding) is not JSON; the outbox would refuse the event."""
    return None if distance is None or not math.isfinite(distance) else round(distance, 4)
