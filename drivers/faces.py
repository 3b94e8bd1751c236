"""Face detection, tracking, quality checks and 128-d encodings (dlib models of face_recognition).

**Working distance.** dlib's HOG face detector slides an 80×80 window over an image pyramid:
at upsample 0 it finds faces from about 80 px wide *in the image it is given* (dlib's
``get_frontal_face_detector`` docs; measured in bench/faces.py). The smallest face to
recognise is therefore the configured quantity (``min_face_px``, in pixels of the camera's
own frame) and the detection scale follows from it: ``scale = 80 / min_face_px`` (50 px →
the frame enlarged 1.6×; 160 px → shrunk to half). A fixed detection width would instead tie
the range to the camera's resolution, and shorten it on a camera with more pixels.

CPU goes only where it matters:
- **Motion gate**: the frame is compared with the previous one at 160 px wide, blurred (a
  shaking camera moves it by a fraction of a pixel there). With no face being tracked, a frame
  that hardly differs is not searched at all (an empty hall costs almost nothing).
- **Wide detection only for news**: the whole frame is searched at the derived scale when
  something moved outside the faces already tracked (someone new), and every ``rescan_every``
  frames as a safety net. Between wide searches each track is followed by a detection in the
  area around its box, scaled so that the face is ~100 px there (a few ms per face).
- **Encode only the undecided**: the 5-point landmarks and the 128-d encoding are computed on
  the full-resolution crop around the face; an undecided track is encoded every
  ``encode_every`` frames, a track the caller has settled (recognised or rejected) only every
  ``recheck_every`` frames, to notice a swap of people.
- **Quality**: a face too small, too blurred (variance of the Laplacian) or too turned (nose
  off the eye axis, from the 5-point landmarks) is not encoded; its reason is reported.

The models are face_recognition's (package ``face_recognition_models``), used through dlib
directly rather than ``import face_recognition``: that module loads all its models on import,
including the 68-point landmark model (~70 MB RSS), which is needed only for the blink check
(``liveness = "blink"``) and is therefore loaded only then.

dlib's encoder holds the GIL for tens of ms per face: run the engine in its own process when
other threads matter (agent/kiosk/recognition.py does).
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


# dlib's frontal face detector scans an 80x80 window: at upsample 0 the smallest face it finds
# is about this wide in the image it searches (dlib/image_processing/frontal_face_detector.h).
HOG_WINDOW_PX = 80
# Around a tracked face, the area searched is scaled so that the face is this wide: safely
# above the window, so a face that shrank by a step back between two frames is still found.
ROI_FACE_PX = 100
# Enrolment photos are close-ups: a smaller face there is a poor reference for everyone.
ENROL_MIN_FACE_PX = 80


@dataclass(frozen=True)
class EngineParams:
    min_face_px: int = 50  # smallest face to recognise, box width in the camera's frame
    min_sharpness: float = 20.0  # variance of the Laplacian of the face at <= 96x96
    max_yaw: float = 0.35  # nose offset from the eye midpoint, in inter-ocular distances
    motion_width: int = 160  # the motion gate compares frames at this width
    motion_fraction: float = 0.002  # changed pixels (share) that count as motion
    motion_delta: int = 12  # grey levels a pixel must change by
    encode_every: int = 1  # frames between encodings of an undecided track
    recheck_every: int = 25  # frames between encodings of a settled track
    rescan_every: int = 12  # frames between wide detections while tracks are followed
    settle_frames: int = 6  # frames after the last motion that are still searched
    max_missed: int = 3  # frames a track may go unseen before it ends
    iou_match: float = 0.3
    landmarks68: bool = False  # eye aspect ratio for the blink check

    def detect_scale(self, window_px: int = HOG_WINDOW_PX) -> float:
        """Factor applied to the camera frame before detection (> 1 enlarges): the smallest
        face to recognise becomes the detector's smallest face (``window_px``)."""
        return window_px / self.min_face_px


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
    return turn_ratio(points5[0:2].mean(axis=0), points5[2:4].mean(axis=0), points5[4])


def turn_ratio(e1: np.ndarray, e2: np.ndarray, nose: np.ndarray) -> float:
    """The nose's offset from the eyes' midpoint along the eye axis, in eye distances."""
    axis = e2 - e1
    dist = float(np.linalg.norm(axis))
    if dist <= 0:
        return 1.0
    mid = (e1 + e2) / 2
    return abs(float(np.dot(nose - mid, axis / dist))) / dist


def sharpness(gray_face: np.ndarray) -> float:
    """Variance of the Laplacian of the face at 96x96, or at its own size when smaller.

    Scaling a big face down to 96 px makes the measure independent of its size; a face under
    96 px is measured as it is: enlarging it would blur it and call every distant face blurred.
    """
    side = min(96, gray_face.shape[1])
    small = cv2.resize(gray_face, (side, side), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(small, cv2.CV_64F).var())


class DlibFaceEngine:
    """The real engine: dlib HOG + 5-point landmarks + ResNet encoder (+68 for blinks).

    The tracking, motion gate and quality checks are the same for every recognizer; a
    subclass changes the detector (``_detection_image``, ``_find``, ``WINDOW_PX``,
    ``ROI_FACE_PX``) and the encoder (``_encode``): drivers/faces_sface.py.
    """

    WINDOW_PX = HOG_WINDOW_PX
    ROI_FACE_PX = ROI_FACE_PX

    def __init__(self, params: EngineParams | None = None):
        self.p = params or EngineParams()
        self._load_models()
        self.sp68 = (
            dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
            if self.p.landmarks68
            else None
        )
        self._tracks: dict[int, _Track] = {}
        self._next_id = 1
        self._prev_small: np.ndarray | None = None
        self._since_wide = 0
        self._recent = 0  # frames left to search after the last motion
        self.stats = {"frames": 0, "gated": 0, "detections": 0, "followed": 0, "encodings": 0}

    def _load_models(self) -> None:
        self.detector = dlib.get_frontal_face_detector()
        self.sp5 = dlib.shape_predictor(
            face_recognition_models.pose_predictor_five_point_model_location()
        )
        self.encoder = dlib.face_recognition_model_v1(
            face_recognition_models.face_recognition_model_location()
        )

    def _detection_image(self, image: np.ndarray) -> np.ndarray:
        """The frame as the detector takes it: greyscale for HOG."""
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)

    def _find(self, work: np.ndarray, upsample: int = 0) -> list[tuple[int, int, int, int]]:
        """Faces in ``work`` as (left, top, right, bottom) in its own pixels."""
        return [(r.left(), r.top(), r.right(), r.bottom()) for r in self.detector(work, upsample)]

    # --- per frame --------------------------------------------------------------------

    def process(self, image: np.ndarray) -> FrameResult:
        self.stats["frames"] += 1
        moved, news = self._motion(image)
        # Someone who stepped in and then stood still must still be searched for: the frames
        # just after any motion are searched too, not only the ones that moved.
        searching = moved or self._recent > 0
        self._recent = self.p.settle_frames if moved else max(0, self._recent - 1)
        result = FrameResult()
        if not self._tracks and not searching:
            result.gated = True
            self.stats["gated"] += 1
            return result
        self._since_wide += 1
        gray = self._detection_image(image)  # only now: an idle frame never needs it
        if not self._tracks or news or self._since_wide >= self.p.rescan_every:
            result.detected = True
            self._since_wide = 0
            self.stats["detections"] += 1
            result.ended = self._associate(self._detect_wide(gray), result)
        else:
            # A track is looked for again where it was when something moved, or when it was
            # not seen last time; otherwise nothing changed and its box still holds. A box
            # is never held once its face was missed: it may hold only the wall now.
            self.stats["followed"] += 1
            result.ended = self._follow(gray, result, everyone=moved)
        if result.faces:
            self._measure(image, result.faces)
        return result

    def _motion(self, image: np.ndarray) -> tuple[bool, bool]:
        """(anything moved, something moved away from the tracked faces)."""
        h, w = image.shape[:2]
        k = min(1.0, self.p.motion_width / w)
        small = cv2.cvtColor(
            cv2.resize(image, (round(w * k), round(h * k)), interpolation=cv2.INTER_AREA),
            cv2.COLOR_BGR2GRAY,
        )
        blurred = cv2.GaussianBlur(small, (5, 5), 0)
        prev, self._prev_small = self._prev_small, blurred
        if prev is None or prev.shape != blurred.shape:
            return True, True
        changed = cv2.absdiff(prev, blurred) > self.p.motion_delta
        floor = self.p.motion_fraction * changed.size
        moved = np.count_nonzero(changed) >= floor
        if not moved or not self._tracks:
            return moved, moved
        # Motion of a tracked person (head and shoulders) is not news; elsewhere it is.
        for tr in self._tracks.values():
            top, right, bottom, left = tr.box
            fw = right - left
            changed[
                max(0, round((top - fw) * k)) : max(0, round((bottom + 2 * fw) * k)),
                max(0, round((left - fw) * k)) : max(0, round((right + fw) * k)),
            ] = False
        return True, np.count_nonzero(changed) >= floor

    def _detect_wide(self, gray: np.ndarray) -> list[Box]:
        h, w = gray.shape[:2]
        k = self.p.detect_scale(self.WINDOW_PX)
        work = gray
        if k != 1.0:
            interp = cv2.INTER_LINEAR if k > 1 else cv2.INTER_AREA
            work = cv2.resize(gray, (round(w * k), round(h * k)), interpolation=interp)
        return [self._scale_box(r, 1 / k, w, h, 0, 0) for r in self._find(work)]

    def _follow(self, gray: np.ndarray, result: FrameResult, everyone: bool) -> list[int]:
        """Find tracked faces again in the area around their boxes (they moved a little)."""
        h, w = gray.shape[:2]
        ended = []
        for tid, tr in list(self._tracks.items()):
            if not everyone and tr.missed == 0:
                result.faces.append(Face(tid, tr.box))
                continue
            top, right, bottom, left = tr.box
            fw = max(1, right - left)
            m = fw // 2
            y0, y1 = max(0, top - m), min(h, bottom + m)
            x0, x1 = max(0, left - m), min(w, right + m)
            k = self.ROI_FACE_PX / fw
            roi = gray[y0:y1, x0:x1]
            if k != 1.0:
                interp = cv2.INTER_LINEAR if k > 1 else cv2.INTER_AREA
                roi = cv2.resize(
                    roi, (round((x1 - x0) * k), round((y1 - y0) * k)), interpolation=interp
                )
            found = [self._scale_box(r, 1 / k, w, h, x0, y0) for r in self._find(roi)]
            best = max(found, key=lambda b: iou(b, tr.box), default=None)
            if best is not None and iou(best, tr.box) >= self.p.iou_match:
                tr.box, tr.missed = best, 0
                result.faces.append(Face(tid, best))
                continue
            tr.missed += 1
            self._since_wide = self.p.rescan_every  # search wide next frame
            if tr.missed > self.p.max_missed:
                del self._tracks[tid]
                ended.append(tid)
        return ended

    @staticmethod
    def _scale_box(r: tuple[int, int, int, int], k: float, w: int, h: int, x0: int, y0: int) -> Box:
        left, top, right, bottom = r
        return (
            max(0, y0 + round(top * k)),
            min(w, x0 + round(right * k)),
            min(h, y0 + round(bottom * k)),
            max(0, x0 + round(left * k)),
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
                shape = self.sp68(crop, self._landmark_rect(rect))
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
        self, crop: np.ndarray, rect: dlib.rectangle, box: Box, min_face_px: int | None = None
    ) -> tuple[str | None, np.ndarray | None]:
        problem = self._too_small_or_blurred(crop, rect, box, min_face_px)
        if problem is not None:
            return problem, None
        shape = self.sp5(crop, rect)
        if self._turned(shape):
            return "turned", None
        enc = np.asarray(self.encoder.compute_face_descriptor(crop, shape), dtype=np.float32)
        return None, enc

    def _turned(self, shape: dlib.full_object_detection) -> bool:
        """dlib's 5 points say the head is turned past ``max_yaw``."""
        pts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
        return yaw_ratio(pts) > self.p.max_yaw

    def _too_small_or_blurred(
        self, crop: np.ndarray, rect: dlib.rectangle, box: Box, min_face_px: int | None
    ) -> str | None:
        """The quality checks before any landmark: size and sharpness (same for every model)."""
        # Detector boxes of one face vary by ~10 % between frames: a face found at all near
        # the configured size is worth encoding; clearly smaller ones are not.
        floor = min_face_px if min_face_px is not None else 0.8 * self.p.min_face_px
        if box[1] - box[3] < floor:
            return "too_small"
        top, right, bottom, left = self._sharpness_region(rect)
        gray = cv2.cvtColor(crop[top:bottom, left:right], cv2.COLOR_RGB2GRAY)
        if gray.size == 0 or sharpness(gray) < self.p.min_sharpness:
            return "blurred"
        return None

    def _sharpness_region(self, rect: dlib.rectangle) -> Box:
        """Where sharpness is measured: HOG's box, which holds the face and little else."""
        r = self._landmark_rect(rect)
        return r.top(), r.right(), r.bottom(), r.left()

    def _landmark_rect(self, rect: dlib.rectangle) -> dlib.rectangle:
        """The box dlib's landmark models (5 and 68 points) were trained on: HOG's."""
        return rect

    def settle(self, track_id: int, settled: bool = True) -> None:
        tr = self._tracks.get(track_id)
        if tr is not None:
            tr.settled = settled

    def reset(self) -> None:
        self._tracks.clear()
        self._prev_small = None
        self._since_wide = self._recent = 0

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
        boxes = [
            self._scale_box(r, 1 / k, w, h, 0, 0)
            for r in self._find(self._detection_image(work), upsample=1)
        ]
        if not boxes:
            return boxes, None, "no_face"
        if len(boxes) > 1:
            return boxes, None, "several_faces"
        crop, rect = self._crop(image, boxes[0])
        quality, enc = self._encode(crop, rect, boxes[0], ENROL_MIN_FACE_PX)
        return boxes, enc, quality
