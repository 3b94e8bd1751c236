"""Sample faces for the demo hall (docs/demo.md), and the videos composed from them.

The demo's kiosk "films" a composed video of real photos, and enrols two sample staff from
other photos of the same people. The photos come from two packages on PyPI, each pinned by
version and sha256:

- the ``face_recognition==1.3.0`` source distribution, whose ``tests/test_images/`` holds
  several photos of Barack Obama and one of Joe Biden (public figures, photos shipped by the
  library for exactly this purpose);
- the ``insightface==2.1`` wheel, whose ``insightface/data/images/t1.jpg`` (the library's own
  demo picture) shows six people side by side, faces ~90-130 px wide: the demo's visitor
  nobody enrolled, and more people for the tests.

The archives are fetched with pip (the project's ordinary registry client), checked against
the pins below, and the images are extracted to a cache directory: ``$HALL_TEST_MEDIA`` or
``.cache/media`` in the repository root (git-ignored). Composed videos are cached there too.

This module belongs to the demo: it needs the kiosk's vision stack (numpy, OpenCV, dlib, from
``scripts/setup.sh --kiosk``) and nothing of the test suite; ``tests/media.py`` builds its test
videos on it. The agent itself never uses it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Sequence
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


class MediaError(Exception):
    """The sample photos cannot be used; the message says which file and why."""


class MediaUnavailable(MediaError):
    """The pinned photos could not be fetched (registry unreachable)."""


class MediaMismatch(MediaError):
    """A fetched archive is not the pinned one (its sha256 differs)."""


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
        raise MediaMismatch(f"{archive}: sha256 {digest}, expected pinned {sha256}")
    return archive


@lru_cache(maxsize=1)
def photos_dir() -> Path:
    """Directory holding the pinned photos; fetches them once. Raises MediaError."""
    out = cache_dir() / "face_recognition-1.3.0"
    if all((out / name).is_file() for name in (*IMAGES, *INSIGHTFACE_IMAGES)):
        return out
    out.mkdir(parents=True, exist_ok=True)
    archive = _pip_download(SDIST, SDIST_FILE, SDIST_SHA256, binary=False)
    with tarfile.open(archive) as tar:
        for name in IMAGES:
            member = tar.extractfile(f"face_recognition-1.3.0/tests/test_images/{name}")
            if member is None:
                raise MediaMismatch(f"{archive}: {name} is not a regular file")
            (out / name).write_bytes(member.read())
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
    if img is None:
        raise MediaError(f"{photo(name)}: not a readable image")
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
def face_box(name: str) -> tuple[int, int, int, int]:
    """(top, right, bottom, left) of the photo's only face, as dlib's detector finds it."""
    import dlib

    img = load_bgr(name)[:, :, ::-1].copy()
    rects = dlib.get_frontal_face_detector()(img, 1)
    if len(rects) != 1:
        raise MediaError(f"{name}: expected one face, found {len(rects)}")
    r = rects[0]
    return r.top(), r.right(), r.bottom(), r.left()


def crop_face(img: np.ndarray, box: tuple[int, int, int, int], face_px: int) -> np.ndarray:
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
def closed_eyes(name: str) -> np.ndarray:
    """The photo with both eyes painted shut (skin from above the eye, a lash line).

    Crude, but the 68-point model reads it as closed (eye aspect ratio about half the open
    value), which is what a blink looks like to the liveness check.
    """
    import cv2
    import dlib
    import face_recognition_models as frm

    img = load_bgr(name).copy()
    top, right, bottom, left = face_box(name)
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


def background(width: int, height: int) -> np.ndarray:
    """The empty scene: a bluish wall with sensor noise (the same every time)."""
    rng = np.random.default_rng(7)
    y = np.linspace(90, 170, height, dtype=np.float32)[:, None, None]
    bg = np.broadcast_to(y, (height, width, 3)).copy()
    bg += rng.normal(0, 6, (height, width, 3)).astype(np.float32)
    bg[:, :, 0] += 20  # a bluish wall
    return np.clip(bg, 0, 255).astype(np.uint8)


def _actor_sprites(a: Actor) -> tuple[np.ndarray, np.ndarray]:
    """The actor's head and shoulders with eyes open and closed, mirrored and blurred."""
    import cv2

    box = face_box(a.photo)
    open_ = crop_face(load_bgr(a.photo), box, a.face_px)
    closed = crop_face(closed_eyes(a.photo), box, a.face_px)
    if a.flip:
        open_, closed = open_[:, ::-1].copy(), closed[:, ::-1].copy()
    if a.blur:
        open_ = cv2.GaussianBlur(open_, (0, 0), a.blur)
        closed = cv2.GaussianBlur(closed, (0, 0), a.blur)
    return open_, closed


def _actor_x(a: Actor, t: float, sprite_w: int, width: int) -> float:
    """Left edge of the actor's sprite at time ``t``: walking in, standing, walking out."""
    stand_x = a.x * width - sprite_w / 2
    start, end = (width, -sprite_w) if a.from_right else (-sprite_w, width)
    if t < a.enter_s + a.walk_s:
        return start + (stand_x - start) * (t - a.enter_s) / a.walk_s
    if t > a.leave_s - a.walk_s:
        return stand_x + (end - stand_x) * (t - (a.leave_s - a.walk_s)) / a.walk_s
    return stand_x


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
    bg = background(width, height)
    sprites = {}
    for a in actors:
        key = (a.photo, a.face_px, a.flip, a.blur)
        if key not in sprites:
            sprites[key] = _actor_sprites(a)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    if not writer.isOpened():
        raise MediaError(f"{path}: OpenCV cannot write an MJPG video there")
    for i in range(round(duration_s * fps)):
        t = i / fps
        frame = bg.copy()
        for a in actors:
            if not a.enter_s <= t < a.leave_s:
                continue
            open_, closed = sprites[(a.photo, a.face_px, a.flip, a.blur)]
            blinking = any(b <= t < b + a.blink_s for b in a.blinks)
            sprite = closed if blinking else open_
            x = _actor_x(a, t, sprite.shape[1], width)
            y = (height - sprite.shape[0]) / 2
            if not a.still:  # a live person sways a little
                x += 2.0 * np.sin(t * 5.0)
                y += 1.5 * np.cos(t * 3.0)
            paste(frame, sprite, round(x), round(y))
        writer.write(frame)
    writer.release()
    return path


def paste(frame: np.ndarray, sprite: np.ndarray, x: int, y: int) -> None:
    """Copy ``sprite`` into ``frame`` with its top left corner at (x, y), clipped."""
    h, w = frame.shape[:2]
    sh, sw = sprite.shape[:2]
    fx0, fy0 = max(0, x), max(0, y)
    fx1, fy1 = min(w, x + sw), min(h, y + sh)
    if fx0 >= fx1 or fy0 >= fy1:
        return
    frame[fy0:fy1, fx0:fx1] = sprite[fy0 - y : fy1 - y, fx0 - x : fx1 - x]


def cached_file(path: Path, make: Callable[[Path], object]) -> Path:
    """``path``, made once by ``make(tmp)`` and moved into place (a reader never sees half a
    file; two makers never share their temporary file)."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp{path.suffix}")
        make(tmp)
        tmp.replace(path)
    return path


def cached_video(name: str, actors: Sequence[Actor], duration_s: float, fps: float = 25.0) -> Path:
    """compose_video into the media cache, reused while the recipe is unchanged.
    Raises MediaError when the photos cannot be had."""
    photos_dir()
    recipe = repr((actors, duration_s, fps, 2)).encode()
    digest = hashlib.sha256(recipe).hexdigest()[:12]
    return cached_file(
        cache_dir() / "videos" / f"{name}-{digest}.avi",
        lambda tmp: compose_video(tmp, actors, duration_s, fps=fps),
    )
