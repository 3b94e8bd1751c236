"""Face detection, tracking, quality checks and 128-d encodings (dlib models of face_recognition).

CPU goes only where it matters (issue 5):
- **Motion gate**: with no face being tracked, a frame that hardly differs from the previous
  one is not searched at all (an empty hall costs almost nothing).
- **Detect small, encode big**: HOG runs on a frame downscaled to ``detect_width`` pixels;
  the 5-point landmarks and the 128-d encoding are computed on the full-resolution crop around
  the face, so the encoding loses nothing to the downscale.
- **Tracking**: detections are tied to tracks by overlap (IoU). An undecided track is encoded
  every ``encode_every`` frames; a track the caller has settled (recognised or rejected) only
  every ``recheck_every`` frames, to notice a swap of people.
- **Quality**: a face too small, too blurred (variance of the Laplacian) or too turned (nose
  off the eye axis, from the 5-point landmarks) is not encoded; its reason is reported.

The models are face_recognition's (package ``face_recognition_models``), used through dlib
directly rather than ``import face_recognition``: that module loads all its models on import,
including the 68-point landmark model (~70 MB RSS), which is needed only for the blink check
(``liveness = "blink"``) and is therefore loaded only then.

dlib's encoder holds the GIL for ~80 ms per face on this class of CPU: run the engine in its
own process when other threads matter (agent/attendance.py does).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

import cv2
import dlib
import face_recognition_models
import numpy as np

logger = logging.getLogger(__name__)

Box = tuple[int, int, int, int]  # top, right, bottom, left (face_recognition's order)

# dlib 68-point layout (iBUG 300-W): eyes are points 36-41 and 42-47.
_RIGHT_EYE = slice(36, 42)
_LEFT_EYE = slice(42, 48)


@dataclass(frozen=True)
class EngineParams:
    detect_width: int = 320  # HOG runs on the frame scaled to this width
    upsample: int = 0  # HOG upsampling on the small frame (1 finds faces half the size)
    min_face_px: int = 80  # face box width in the full-resolution frame
    min_sharpness: float = 20.0  # variance of the Laplacian of the face at 96x96
    max_yaw: float = 0.35  # nose offset from the eye midpoint, in inter-ocular distances
    motion_fraction: float = 0.002  # changed pixels (share) that count as motion
    motion_delta: int = 12  # grey levels a pixel must change by
    encode_every: int = 1  # frames between encodings of an undecided track
    recheck_every: int = 25  # frames between encodings of a settled track
    max_missed: int = 3  # detection rounds a track may miss before it ends
    iou_match: float = 0.3
    landmarks68: bool = False  # eye aspect ratio for the blink check


@dataclass
class Face:
    """One tracked face in one frame."""

    track_id: int
    box: Box  # full-resolution coordinates
    encoding: np.ndarray | None = None  # a fresh 128-d encoding, when one was computed
    quality: str | None = None  # "too_small" / "blurred" / "turned", when rejected
    ear: float | None = None  # eye aspect ratio (68-point landmarks), when requested
    new: bool = False  # first frame of this track


@dataclass
class FrameResult:
    faces: list[Face] = field(default_factory=list)
    ended: list[int] = field(default_factory=list)  # track ids that ended with this frame
    detected: bool = False  # HOG ran on this frame
    gated: bool = False  # skipped by the motion gate


class FaceEngine(Protocol):
    """What the attendance pipeline needs from a face engine."""

    def process(self, image: np.ndarray) -> FrameResult: ...

    def settle(self, track_id: int, settled: bool = True) -> None: ...

    def encode_photo(self, image: np.ndarray) -> tuple[list[Box], np.ndarray | None, str | None]:
        """For enrolment: (boxes found, the encoding of the only face, refusal reason)."""
        ...


@dataclass
class _Track:
    id: int
    box: Box
    since_encode: int = 10**6
    missed: int = 0
    settled: bool = False


def iou(a: Box, b: Box) -> float:
    top, right, bottom, left = max(a[0], b[0]), min(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3])
    inter = max(0, right - left) * max(0, bottom - top)
    area_a = (a[1] - a[3]) * (a[2] - a[0])
    area_b = (b[1] - b[3]) * (b[2] - b[0])
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def eye_aspect_ratio(eye: np.ndarray) -> float:
    """Soukupová & Čech (2016): (|p2-p6| + |p3-p5|) / (2 |p1-p4|); drops towards 0 on a blink."""
    a = np.linalg.norm(eye[1] - eye[5])
    b = np.linalg.norm(eye[2] - eye[4])
    c = np.linalg.norm(eye[0] - eye[3])
    return float((a + b) / (2.0 * c)) if c > 0 else 0.0


def yaw_ratio(points5: np.ndarray) -> float:
    """How far the nose sits off the eye midpoint along the eye axis, in eye distances.

    dlib's 5-point model: 0-1 one eye's corners, 2-3 the other's, 4 the base of the nose.
    Frontal faces give ~0; a head turned by ~45° gives ~0.4-0.5. Projecting on the eye axis
    keeps a tilted (rolled) head from counting as turned.
    """
    e1 = points5[0:2].mean(axis=0)
    e2 = points5[2:4].mean(axis=0)
    axis = e2 - e1
    dist = float(np.linalg.norm(axis))
    if dist <= 0:
        return 1.0
    mid = (e1 + e2) / 2
    return abs(float(np.dot(points5[4] - mid, axis / dist))) / dist


def sharpness(gray_face: np.ndarray) -> float:
    """Variance of the Laplacian of the face scaled to 96x96 (scale-independent blur)."""
    small = cv2.resize(gray_face, (96, 96), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(small, cv2.CV_64F).var())


class DlibFaceEngine:
    """The real engine: dlib HOG + 5-point landmarks + ResNet encoder (+68 for blinks)."""

    def __init__(self, params: EngineParams | None = None):
        self.p = params or EngineParams()
        self.detector = dlib.get_frontal_face_detector()
        self.sp5 = dlib.shape_predictor(
            face_recognition_models.pose_predictor_five_point_model_location()
        )
        self.encoder = dlib.face_recognition_model_v1(
            face_recognition_models.face_recognition_model_location()
        )
        self.sp68 = (
            dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
            if self.p.landmarks68
            else None
        )
        self._tracks: dict[int, _Track] = {}
        self._next_id = 1
        self._prev_small: np.ndarray | None = None
        self.stats = {"frames": 0, "gated": 0, "detections": 0, "encodings": 0}

    # --- per frame --------------------------------------------------------------------

    def process(self, image: np.ndarray) -> FrameResult:
        self.stats["frames"] += 1
        h, w = image.shape[:2]
        scale = self.p.detect_width / w if w > self.p.detect_width else 1.0
        small = (
            cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
            if scale != 1.0
            else image
        )
        gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        moved = self._motion(gray)
        result = FrameResult()
        if moved or self._tracks:
            if moved or not self._tracks:
                result.detected = True
                self.stats["detections"] += 1
                boxes = [
                    self._scale_box(r, 1 / scale, w, h)
                    for r in self.detector(gray, self.p.upsample)
                ]
                result.ended = self._associate(boxes, result)
            else:
                # Static frame while faces are tracked: nothing moved, the boxes still hold.
                for tr in self._tracks.values():
                    result.faces.append(Face(tr.id, tr.box))
        else:
            result.gated = True
            self.stats["gated"] += 1
            return result
        if result.faces:
            self._measure(image, result.faces)
        return result

    def _motion(self, gray: np.ndarray) -> bool:
        blurred = cv2.GaussianBlur(gray, (5, 5), 0)
        prev, self._prev_small = self._prev_small, blurred
        if prev is None or prev.shape != blurred.shape:
            return True
        changed = cv2.absdiff(prev, blurred) > self.p.motion_delta
        return float(np.count_nonzero(changed)) / changed.size >= self.p.motion_fraction

    @staticmethod
    def _scale_box(r: dlib.rectangle, k: float, w: int, h: int) -> Box:
        return (
            max(0, round(r.top() * k)),
            min(w, round(r.right() * k)),
            min(h, round(r.bottom() * k)),
            max(0, round(r.left() * k)),
        )

    def _associate(self, boxes: list[Box], result: FrameResult) -> list[int]:
        pairs = sorted(
            (
                (iou(tr.box, b), tid, i)
                for tid, tr in self._tracks.items()
                for i, b in enumerate(boxes)
            ),
            reverse=True,
        )
        used_tracks: set[int] = set()
        used_boxes: set[int] = set()
        for score, tid, i in pairs:
            if score < self.p.iou_match:
                break
            if tid in used_tracks or i in used_boxes:
                continue
            used_tracks.add(tid)
            used_boxes.add(i)
            tr = self._tracks[tid]
            tr.box, tr.missed = boxes[i], 0
            result.faces.append(Face(tid, tr.box))
        ended = []
        for tid, tr in list(self._tracks.items()):
            if tid not in used_tracks:
                tr.missed += 1
                if tr.missed > self.p.max_missed:
                    del self._tracks[tid]
                    ended.append(tid)
        for i, b in enumerate(boxes):
            if i not in used_boxes:
                tr = _Track(self._next_id, b)
                self._next_id += 1
                self._tracks[tr.id] = tr
                result.faces.append(Face(tr.id, b, new=True))
        return ended

    def _measure(self, image: np.ndarray, faces: list[Face]) -> None:
        for face in faces:
            tr = self._tracks.get(face.track_id)
            if tr is None:
                continue
            tr.since_encode += 1
            crop, rect = self._crop(image, face.box)
            if self.sp68 is not None:
                shape = self.sp68(crop, rect)
                pts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
                face.ear = (
                    eye_aspect_ratio(pts[_RIGHT_EYE]) + eye_aspect_ratio(pts[_LEFT_EYE])
                ) / 2
            every = self.p.recheck_every if tr.settled else self.p.encode_every
            if tr.since_encode < every:
                continue
            face.quality, face.encoding = self._encode(crop, rect, face.box)
            tr.since_encode = 0
            if face.encoding is not None:
                self.stats["encodings"] += 1

    def _crop(self, image: np.ndarray, box: Box) -> tuple[np.ndarray, dlib.rectangle]:
        """RGB full-resolution crop around the face with a margin, and the face rect in it."""
        top, right, bottom, left = box
        m = (right - left) // 3
        h, w = image.shape[:2]
        y0, y1, x0, x1 = max(0, top - m), min(h, bottom + m), max(0, left - m), min(w, right + m)
        crop = np.ascontiguousarray(image[y0:y1, x0:x1, ::-1])  # BGR -> RGB, crop only
        return crop, dlib.rectangle(left - x0, top - y0, right - x0, bottom - y0)

    def _encode(
        self, crop: np.ndarray, rect: dlib.rectangle, box: Box
    ) -> tuple[str | None, np.ndarray | None]:
        if box[1] - box[3] < self.p.min_face_px:
            return "too_small", None
        gray = cv2.cvtColor(
            crop[rect.top() : rect.bottom(), rect.left() : rect.right()], cv2.COLOR_RGB2GRAY
        )
        if gray.size == 0 or sharpness(gray) < self.p.min_sharpness:
            return "blurred", None
        shape = self.sp5(crop, rect)
        pts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
        if yaw_ratio(pts) > self.p.max_yaw:
            return "turned", None
        enc = np.asarray(self.encoder.compute_face_descriptor(crop, shape), dtype=np.float32)
        return None, enc

    def settle(self, track_id: int, settled: bool = True) -> None:
        tr = self._tracks.get(track_id)
        if tr is not None:
            tr.settled = settled

    def reset(self) -> None:
        self._tracks.clear()
        self._prev_small = None

    # --- enrolment --------------------------------------------------------------------

    def encode_photo(self, image: np.ndarray) -> tuple[list[Box], np.ndarray | None, str | None]:
        """Find exactly one good face in a still photo (BGR) and encode it.

        Photos are searched at full resolution with one upsampling step (enrolment is rare
        and must not miss a face), capped at 1600 px wide to bound the time.
        """
        h, w = image.shape[:2]
        k = min(1.0, 1600 / w)
        work = (
            cv2.resize(image, (round(w * k), round(h * k)), interpolation=cv2.INTER_AREA)
            if k < 1
            else image
        )
        gray = cv2.cvtColor(work, cv2.COLOR_BGR2GRAY)
        boxes = [self._scale_box(r, 1 / k, w, h) for r in self.detector(gray, 1)]
        if not boxes:
            return boxes, None, "no_face"
        if len(boxes) > 1:
            return boxes, None, "several_faces"
        crop, rect = self._crop(image, boxes[0])
        quality, enc = self._encode(crop, rect, boxes[0])
        return boxes, enc, quality
