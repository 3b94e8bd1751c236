"""The ``sface`` recognizer: OpenCV's YuNet detector and SFace encoder (128-d, ONNX).

Same tracking, motion gate and quality checks as drivers/faces.py (this engine subclasses
it); what differs:

- **Detection**: YuNet (``cv2.FaceDetectorYN``), a small CNN that finds faces from about
  20 px wide and gives five landmarks (eyes, nose tip, mouth corners). The frame is scaled so
  that the smallest face to recognise (``min_face_px``) is :data:`YUNET_MIN_FACE_PX` wide
  where it is searched: 640x480 with ``min_face_px = 50`` is searched at 410x307.
- **Encoding**: the face is aligned on its landmarks to 112x112 (``alignCrop``) and encoded by
  SFace (``cv2.FaceRecognizerSF``), ~10 ms a face on this CPU against ~90 ms for dlib's
  ResNet (bench/faces.py). Encodings are L2-normalised, so the gallery's Euclidean distance
  is sqrt(2 - 2·cosine): 0 the same image, ~1.41 unrelated faces; calibrated in
  drivers/face_models.py.
- **Turn**: measured with dlib's 5-point model, as the dlib engine does, so ``max_yaw`` means
  the same with both recognizers.

The 68-point blink check (``liveness = "blink"``) still uses dlib's landmark model.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import dlib
import face_recognition_models
import numpy as np

from drivers.face_models import RECOGNIZERS, SFACE, YUNET, locate
from drivers.faces import Box, DlibFaceEngine, EngineParams, iou

# YuNet finds faces from ~10 px, reliably from ~20 px; a face this wide where the frame is
# searched keeps distant faces found with a margin while the search stays small.
YUNET_MIN_FACE_PX = 32
# Around a tracked face, the area searched is scaled so that the face is this wide.
YUNET_ROI_FACE_PX = 64
# Landmarks for alignment are found on the face's crop scaled so the face is this wide.
LANDMARK_FACE_PX = 112
# YuNet's score below which a detection is not a face (the model zoo's demo uses 0.9 for
# photos; kiosk frames of faces at 1.5 m score lower).
SCORE_THRESHOLD = 0.7
NMS_THRESHOLD = 0.3


class SfaceFaceEngine(DlibFaceEngine):
    """YuNet detection + SFace encodings, with the kiosk's tracking (drivers/faces.py)."""

    WINDOW_PX = YUNET_MIN_FACE_PX
    ROI_FACE_PX = YUNET_ROI_FACE_PX

    def __init__(self, params: EngineParams | None = None, models_dir: Path | None = None):
        self._models_dir = models_dir
        super().__init__(params)

    def _load_models(self) -> None:
        paths = locate(RECOGNIZERS["sface"], self._models_dir)
        # OpenCV 5 warns on every load that its new DNN engine ignores the (default) target:
        # noise in the kiosk's journal, not a problem. Quiet for the loads only, so that the
        # camera's own warnings still reach the journal.
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        try:
            self.yunet = cv2.FaceDetectorYN.create(
                str(paths[YUNET.name]), "", (320, 320), SCORE_THRESHOLD, NMS_THRESHOLD, 5000
            )
            self.sface = cv2.FaceRecognizerSF.create(str(paths[SFACE.name]), "")
        finally:
            cv2.utils.logging.setLogLevel(level)
        self.sp5 = dlib.shape_predictor(  # for the turn check only (``_encode``)
            face_recognition_models.pose_predictor_five_point_model_location()
        )
        self.detector = dlib.get_frontal_face_detector()  # enrolment photos (``encode_photo``)
        self._photo = False
        self._input_size = (320, 320)

    def _detect_rows(self, bgr: np.ndarray) -> np.ndarray:
        """YuNet's rows for ``bgr``: x, y, w, h, five landmarks (x, y), score."""
        h, w = bgr.shape[:2]
        if (w, h) != self._input_size:
            self.yunet.setInputSize((w, h))
            self._input_size = (w, h)
        _, rows = self.yunet.detect(bgr)
        return rows if rows is not None else np.zeros((0, 15), dtype=np.float32)

    def _landmark_rect(self, rect: dlib.rectangle) -> dlib.rectangle:
        """The box dlib's HOG gives for the face YuNet boxed as ``rect``: HOG's box starts
        lower (brows, not forehead) and is shorter; measured on the pinned sample photos,
        its top is 0.14 and its bottom 0.93 of YuNet's height down, left and right alike.
        Sharpness (``min_sharpness``: YuNet's box also holds the hair line, whose edges stay
        sharp in a blurred face), the turn (``max_yaw``) and the blink's eye landmarks are
        measured on it, as they were set on HOG's boxes. A box from HOG itself (enrolment
        photos) is returned as it is.
        """
        if self._photo:
            return rect
        h = rect.bottom() - rect.top()
        return dlib.rectangle(
            rect.left(),
            rect.top() + round(0.14 * h),
            rect.right(),
            rect.top() + round(0.93 * h),
        )

    def encode_photo(self, image: np.ndarray) -> tuple[list[Box], np.ndarray | None, str | None]:
        """Enrolment: the face is found by dlib's HOG (as with the dlib recognizer), so a
        photo is accepted or refused exactly as before; SFace encodes it."""
        self._photo = True
        try:
            return super().encode_photo(image)
        finally:
            self._photo = False

    def _detection_image(self, image: np.ndarray) -> np.ndarray:
        return image  # YuNet takes the colour frame

    def _find(self, work: np.ndarray, upsample: int = 0) -> list[tuple[int, int, int, int]]:
        if self._photo:  # HOG, as the dlib engine finds faces
            return super()._find(cv2.cvtColor(work, cv2.COLOR_BGR2GRAY), upsample)
        return [
            (round(x), round(y), round(x + bw), round(y + bh))
            for x, y, bw, bh in self._detect_rows(work)[:, :4]
        ]

    def _encode(
        self, crop: np.ndarray, rect: dlib.rectangle, box: Box, min_face_px: int | None = None
    ) -> tuple[str | None, np.ndarray | None]:
        problem = self._too_small_or_blurred(crop, rect, box, min_face_px)
        if problem is not None:
            return problem, None
        bgr = np.ascontiguousarray(crop[:, :, ::-1])
        row = self._landmarks(bgr, rect)
        if row is None:
            # The tracked box holds no face YuNet can place its landmarks on: in practice
            # a head turned away (a profile), so the person is asked to face the camera.
            return "turned", None
        # The turn is measured with dlib's 5-point model (~1 ms) on HOG's box, as the dlib
        # engine does: YuNet's nose tip stands further off the face than dlib's nose base (its
        # ratio reads 0.6 on a face dlib reads 0.26), so ``max_yaw`` keeps one meaning.
        if self._turned(self.sp5(crop, self._landmark_rect(rect))):
            return "turned", None
        aligned = self.sface.alignCrop(bgr, row)
        feature = self.sface.feature(aligned).reshape(-1).astype(np.float32)
        norm = float(np.linalg.norm(feature))
        if norm <= 0:
            return "blurred", None
        return None, feature / norm

    def _landmarks(self, bgr: np.ndarray, rect: dlib.rectangle) -> np.ndarray | None:
        """YuNet's row of the face in ``rect`` (crop coordinates), found on the crop scaled
        so the face is :data:`LANDMARK_FACE_PX` wide; None when no face overlaps it."""
        fw = max(1, rect.right() - rect.left())
        k = LANDMARK_FACE_PX / fw
        h, w = bgr.shape[:2]
        work = bgr
        if abs(k - 1.0) > 0.05:
            interp = cv2.INTER_LINEAR if k > 1 else cv2.INTER_AREA
            work = cv2.resize(
                bgr, (max(1, round(w * k)), max(1, round(h * k))), interpolation=interp
            )
        else:
            k = 1.0
        rows = self._detect_rows(work)
        if not len(rows):
            return None
        target = (rect.top(), rect.right(), rect.bottom(), rect.left())
        best, best_iou = None, 0.0
        for r in rows:
            x, y, bw, bh = (float(v) / k for v in r[:4])
            overlap = iou(target, (round(y), round(x + bw), round(y + bh), round(x)))
            if overlap > best_iou:
                best, best_iou = r, overlap
        if best is None or best_iou < self.p.iou_match:
            return None
        out = best.copy()
        out[:14] /= k  # box and landmarks back to the crop's pixels; the score stays
        return out
