"""drivers/faces.py with real photos and composed video: detection, tracking, quality, gate."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from drivers.camera import Camera
from drivers.faces import DlibFaceEngine, EngineParams, eye_aspect_ratio, iou, yaw_ratio
from tests import media

pytestmark = pytest.mark.kiosk  # needs the vision stack (cv2, dlib)

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
    # The frames just after motion are searched too (someone may have stepped in and
    # stopped), then nothing is searched while nothing moves.
    settle = engine.p.settle_frames
    for _ in range(settle):
        assert engine.process(bg.copy()).detected
    for _ in range(5):
        r = engine.process(bg.copy())
        assert r.gated and not r.detected
    assert engine.stats["detections"] == 1 + settle and engine.stats["gated"] == 5


def _one_face_frame(sid: str, face_px: int, size=(640, 480), dx: int = 0) -> np.ndarray:
    frame = media._background(*size)
    sprite = media._sprite(sid, face_px)
    x = (size[0] - sprite.shape[1]) // 2 + dx
    media._paste(frame, sprite, x, (size[1] - sprite.shape[0]) // 2)
    return frame


@pytest.mark.parametrize("size", [(640, 480), (1280, 720)])
def test_the_detection_scale_follows_min_face_px_not_the_frame_width(size) -> None:
    media.require_photos()
    # A 50-px face: found when the kiosk is set for 50 px (the frame enlarged 1.6x for the
    # 80-px HOG window), at either resolution; not when it is set for 100 px (frame halved).
    frame = _one_face_frame("t1c", 50, size)
    assert EngineParams(min_face_px=50).detect_scale() == pytest.approx(1.6)
    near = DlibFaceEngine(EngineParams(min_face_px=50)).process(frame)
    far = DlibFaceEngine(EngineParams(min_face_px=100)).process(frame)
    assert len(near.faces) == 1 and not far.faces
    _, right, _, left = near.faces[0].box
    assert 40 <= right - left <= 62  # full-resolution coordinates


def test_a_face_that_leaves_ends_its_track_and_its_box_is_not_held(engine) -> None:
    # A track's box must never be held (and encoded) after its face was missed: the area
    # may show only the wall now.
    e = DlibFaceEngine(EngineParams(min_face_px=50))
    for i in range(8):
        r = e.process(_one_face_frame("obama", 70, dx=i % 3))
    assert len(r.faces) == 1 and len(e._tracks) == 1
    empty = media._background(640, 480)
    seen_after = 0
    ended: list[int] = []
    for _ in range(e.p.max_missed + 3):
        r = e.process(empty.copy())
        seen_after += len(r.faces)
        ended += r.ended
    assert seen_after == 0 and len(ended) == 1 and not e._tracks


def test_tracks_are_followed_between_wide_detections() -> None:
    media.require_photos()
    e = DlibFaceEngine(EngineParams(min_face_px=50))
    ids = set()
    for i in range(40):  # a person swaying by a few pixels: one track, few wide searches
        r = e.process(_one_face_frame("biden", 55, dx=round(3 * np.sin(i / 2))))
        ids |= {f.track_id for f in r.faces}
        assert len(r.faces) == 1
    assert len(ids) == 1
    assert e.stats["detections"] <= 1 + 40 // e.p.rescan_every + 1
    assert e.stats["followed"] >= 30


def test_detection_at_the_derived_scale_finds_the_full_resolution_box(engine) -> None:
    video = media.cached_video("walk", [media.Actor("obama2.jpg", 0.2, 3.6)], 4.0)
    image = frames_of(video)[50]  # standing in the middle, a ~170 px face
    r = DlibFaceEngine(EngineParams(min_face_px=160)).process(image)  # searched at half size
    assert len(r.faces) == 1
    full = engine.detector(np.ascontiguousarray(image[:, :, ::-1]), 0)
    assert len(full) == 1
    f = full[0]
    assert iou(r.faces[0].box, (f.top(), f.right(), f.bottom(), f.left())) > 0.6
