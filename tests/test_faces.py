"""drivers/faces.py with real photos and composed video: detection, tracking, quality, gate."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from drivers.camera import Camera
from drivers.faces import DlibFaceEngine, EngineParams, eye_aspect_ratio, iou, yaw_ratio
from tests import media

WAIT = 10.0


@pytest.fixture(scope="module")
def engine() -> DlibFaceEngine:
    media.require_photos()
    return DlibFaceEngine()


def frames_of(video) -> list[np.ndarray]:
    cam = Camera(str(video), realtime=False)
    cam.start()
    out, seq = [], 0
    try:
        while (f := cam.read(seq, WAIT)) is not None:
            out.append(f.image)
            seq = f.seq
    finally:
        cam.stop()
    return out


def test_encode_photo_real_faces(engine: DlibFaceEngine) -> None:
    boxes, enc, reason = engine.encode_photo(media.load_bgr("obama.jpg"))
    assert reason is None and len(boxes) == 1
    assert enc is not None and enc.shape == (128,) and enc.dtype == np.float32
    _, enc2, _ = engine.encode_photo(media.load_bgr("obama2.jpg"))
    _, biden, _ = engine.encode_photo(media.load_bgr("biden.jpg"))
    assert np.linalg.norm(enc - enc2) < 0.5  # same person, different photo
    assert np.linalg.norm(enc - biden) > 0.6  # different people


def test_encode_photo_refusals(engine: DlibFaceEngine, tmp_path) -> None:
    wall = np.full((480, 640, 3), 128, np.uint8)
    assert engine.encode_photo(wall)[2] == "no_face"
    group = cv2.imread(str(media.two_faces_photo(tmp_path / "two.jpg")))
    boxes, enc, reason = engine.encode_photo(group)
    assert reason == "several_faces" and len(boxes) == 2 and enc is None
    img = media.load_bgr("obama.jpg")
    (_top, right, _bottom, left) = engine.encode_photo(img)[0][0]
    blurred = cv2.GaussianBlur(img, (0, 0), 4 * (right - left) / 200)
    assert engine.encode_photo(blurred)[2] == "blurred"
    k = 60 / (right - left)  # the face becomes ~60 px wide: still found, too small to trust
    small = cv2.resize(img, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
    assert engine.encode_photo(small)[2] == "too_small"


def test_yaw_ratio_frontal_and_turned(engine: DlibFaceEngine) -> None:
    import dlib

    img = media.load_bgr("obama.jpg")
    top, right, bottom, left = engine.encode_photo(img)[0][0]
    shape = engine.sp5(
        np.ascontiguousarray(img[:, :, ::-1]), dlib.rectangle(left, top, right, bottom)
    )
    pts = np.array([(p.x, p.y) for p in shape.parts()], float)
    assert yaw_ratio(pts) < 0.15  # a frontal press photo
    # The same landmarks with the nose pushed sideways, as when the head turns ~45°.
    eye_dist = np.linalg.norm(pts[0:2].mean(0) - pts[2:4].mean(0))
    turned = pts.copy()
    turned[4, 0] += 0.5 * eye_dist
    assert yaw_ratio(turned) > 0.35
    # A rolled (tilted) head is not "turned".
    c, s = np.cos(0.5), np.sin(0.5)
    rolled = (pts - pts.mean(0)) @ np.array([[c, -s], [s, c]])
    assert yaw_ratio(rolled) == pytest.approx(yaw_ratio(pts), abs=1e-6)


def test_eye_aspect_ratio_drops_when_the_eyes_close(engine: DlibFaceEngine) -> None:
    import dlib

    sp68 = dlib.shape_predictor(
        __import__("face_recognition_models").pose_predictor_model_location()
    )

    def ear(img: np.ndarray) -> float:
        rgb = np.ascontiguousarray(img[:, :, ::-1])
        top, right, bottom, left = engine.encode_photo(img)[0][0]
        s = sp68(rgb, dlib.rectangle(left, top, right, bottom))
        p = np.array([(q.x, q.y) for q in s.parts()], float)
        return (eye_aspect_ratio(p[36:42]) + eye_aspect_ratio(p[42:48])) / 2

    open_, closed = ear(media.load_bgr("obama2.jpg")), ear(media._closed_eyes("obama2.jpg"))
    assert 0.25 < open_ < 0.5 and closed < 0.75 * open_


def test_tracking_keeps_one_id_and_encodes_sparingly() -> None:
    video = media.cached_video("walk", [media.Actor("obama2.jpg", 0.2, 3.6)], 4.0)
    engine = DlibFaceEngine(EngineParams(encode_every=2, recheck_every=10))
    ids: set[int] = set()
    encodings = 0
    settled = False
    boxes = []
    for i, image in enumerate(frames_of(video)):
        r = engine.process(image)
        for face in r.faces:
            ids.add(face.track_id)
            boxes.append(face.box)
            if face.encoding is not None:
                encodings += 1
                # full-resolution box: a ~170 px face in a 640x480 frame
                assert 120 <= face.box[1] - face.box[3] <= 230
        if encodings >= 3 and not settled:
            for face in r.faces:
                engine.settle(face.track_id)
            settled = True
        assert i < 200
    assert len(ids) == 1, ids  # walking in, standing and swaying: one track
    frames_with_face = len(boxes)
    # While undecided every 2nd frame, then only every 10th frame.
    assert 3 <= encodings <= 3 + frames_with_face // 10 + 1
    assert engine.stats["encodings"] == encodings


def test_motion_gate_skips_an_empty_static_scene() -> None:
    engine = DlibFaceEngine()
    bg = media._background(640, 480)
    first = engine.process(bg)
    assert first.detected and not first.faces
    for _ in range(5):
        r = engine.process(bg.copy())
        assert r.gated and not r.detected
    assert engine.stats["detections"] == 1 and engine.stats["gated"] == 5


def test_detection_on_the_downscaled_frame_finds_the_full_resolution_box(engine) -> None:
    video = media.cached_video("walk", [media.Actor("obama2.jpg", 0.2, 3.6)], 4.0)
    image = frames_of(video)[50]  # standing in the middle
    r = DlibFaceEngine(EngineParams(detect_width=320)).process(image)
    assert len(r.faces) == 1
    full = engine.detector(np.ascontiguousarray(image[:, :, ::-1]), 0)
    assert len(full) == 1
    f = full[0]
    assert iou(r.faces[0].box, (f.top(), f.right(), f.bottom(), f.left())) > 0.6
