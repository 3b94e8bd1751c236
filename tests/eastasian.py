"""The East Asian evaluation set: photos of 47 East Asian people, and kiosk videos of them.

The kiosk serves a Chinese hall, but the pinned sample photos (scripts/sample_media.py) are
mostly Western faces. This set measures recognition on the population the kiosk serves
(docs/attendance.md#accuracy-on-east-asian-faces, bench/accuracy.py).

The photos are Labeled Faces in the Wild (LFW) images of East Asian public figures, three to
six per person, taken byte for byte from one commit of a public GitHub repository that holds
the whole of LFW; ``tests/data/east_asian/manifest.json`` pins each by its path there and its
sha256. They are vendored in the repository (2 MB of 250x250 JPEGs): a fresh clone, CI and
``bench/accuracy.py`` need no network, and every read checks the pinned sha256.

LFW images are centred on the named person, but other people can be at the edges; every
use here takes the face nearest the image centre (``load_face``). A photo was selected only
if the kiosk's enrolment (``DlibFaceEngine.encode_photo``) accepts that crop, so all of them
are photos a technician could enrol from.

Nothing here is used by the agent itself.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from tests import media

DATA = Path(__file__).resolve().parent / "data" / "east_asian"
MANIFEST = DATA / "manifest.json"

# Enrolment takes a person's first ENROL_PHOTOS photos; the rest are probes.
ENROL_PHOTOS = 3


class EvalSetError(Exception):
    """A photo of the set is missing or is not the pinned one; the message names it."""


@dataclass(frozen=True)
class Photo:
    file: str  # in DATA
    person: str  # LFW's name, e.g. "Wen_Jiabao"
    source_path: str  # path in the source repository at the pinned commit
    sha256: str


@lru_cache(maxsize=1)
def manifest() -> dict:
    return json.loads(MANIFEST.read_text(encoding="utf-8"))


def photos() -> list[Photo]:
    return [Photo(**p) for p in manifest()["photos"]]


def problems(data: Path = DATA) -> list[str]:
    """Every photo in ``data`` that is missing or differs from its pin (empty when the set
    is intact)."""
    out = []
    for p in photos():
        path = data / p.file
        if not path.is_file():
            out.append(f"{path}: missing (pinned from {p.source_path})")
        elif (digest := hashlib.sha256(path.read_bytes()).hexdigest()) != p.sha256:
            out.append(f"{path}: sha256 {digest}, expected pinned {p.sha256}")
    return out


@lru_cache(maxsize=1)
def people() -> dict[str, tuple[str, ...]]:
    """Person -> their photo files, in LFW's order."""
    out: dict[str, list[str]] = {}
    for p in photos():
        out.setdefault(p.person, []).append(p.file)
    return {k: tuple(v) for k, v in sorted(out.items())}


def split() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(enrolled, strangers): every other person with more than ENROL_PHOTOS photos is
    enrolled (so each has a photo left to probe with); everyone else is a stranger."""
    probeable = [p for p, files in people().items() if len(files) > ENROL_PHOTOS]
    enrolled = tuple(probeable[::2])
    strangers = tuple(p for p in people() if p not in enrolled)
    return enrolled, strangers


def _read(file: str) -> np.ndarray:
    import cv2

    pin = {p.file: p.sha256 for p in photos()}
    path = DATA / file
    if file not in pin:
        raise EvalSetError(f"{file}: not in {MANIFEST}")
    data = path.read_bytes() if path.is_file() else b""
    if hashlib.sha256(data).hexdigest() != pin[file]:
        raise EvalSetError(f"{path}: missing or not the pinned photo (sha256 {pin[file]})")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise EvalSetError(f"{path}: not a readable image")
    return img


@lru_cache(maxsize=512)
def load_face(file: str) -> np.ndarray:
    """The photo cropped to head and shoulders of the face nearest its centre (BGR)."""
    import cv2
    import dlib

    img = _read(file)
    h, w = img.shape[:2]
    rects = dlib.get_frontal_face_detector()(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), 1)
    if not rects:
        raise EvalSetError(f"{DATA / file}: no face found")
    r = min(rects, key=lambda r: abs(r.center().x - w / 2) + abs(r.center().y - h / 2))
    size = r.right() - r.left()
    half = int(size * 0.95)
    cx, cy = r.center().x, r.center().y
    return img[
        max(0, cy - half) : min(h, cy + half + size // 3), max(0, cx - half) : min(w, cx + half)
    ].copy()


@lru_cache(maxsize=512)
def face_box(file: str) -> tuple[int, int, int, int]:
    """(top, right, bottom, left) of the face in ``load_face(file)``."""
    import cv2
    import dlib

    img = load_face(file)
    rects = dlib.get_frontal_face_detector()(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), 1)
    if not rects:
        raise EvalSetError(f"{DATA / file}: no face in the crop")
    r = max(rects, key=lambda r: r.width())
    return r.top(), r.right(), r.bottom(), r.left()


def enrol_files(person: str) -> tuple[str, ...]:
    return people()[person][:ENROL_PHOTOS]


def probe_files(person: str, enrolled: bool) -> tuple[str, ...]:
    files = people()[person]
    return files[ENROL_PHOTOS:] if enrolled else files


def shown_file(person: str) -> str:
    """The photo a video shows: for an enrolled person one they were not enrolled from."""
    files = people()[person]
    return files[ENROL_PHOTOS] if len(files) > ENROL_PHOTOS else files[0]


def sprite(person: str, face_px: int) -> np.ndarray:
    """Head and shoulders of ``person`` with the face ``face_px`` wide, mirrored (a kiosk
    preview is a mirror), for tests.media.compose_scenes."""
    name = shown_file(person)
    img = media._crop_face(load_face(name), face_box(name), face_px)
    return img[:, ::-1].copy()


# --- kiosk videos: people one at a time, strangers walking through ----------------------

STAND_S, LONG_STAND_S, GAP_S, LEAD_S = 3.0, 10.0, 0.6, 0.4
# About 0.5, 0.8, 1.1 and 1.5 m from a typical webcam at 640x480 (docs/attendance.md, "Working
# distance and camera placement"); the same pixel widths at 1280x720, as in the distance set.
FACE_PX = (160, 100, 70, 55)
VIDEO_STAFF = 6
VIDEO_STRANGERS = 11


def video_cast() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(staff, strangers) who appear in the videos: the first enrolled people, and strangers
    spread over the set."""
    enrolled, strangers = split()
    step = max(1, len(strangers) // VIDEO_STRANGERS)
    return enrolled[:VIDEO_STAFF], strangers[::step][:VIDEO_STRANGERS]


def video_scenes(size: tuple[int, int]) -> list[media.Scene]:
    """Staff and strangers alternating, one at a time (3 s each), at 0.5-1.5 m; the first
    stranger stands 10 s; one scene has a stranger beside a staff member."""
    staff, strangers = video_cast()
    order: list[tuple[str, ...]] = []
    s, x = list(staff), list(strangers)
    while s or x:
        if x:
            order.append((x.pop(0),))
        if s:
            order.append((s.pop(0),))
    order.insert(len(order) // 2, (staff[-1], strangers[-1]))
    shift = 0 if size[0] <= 640 else 2  # other sizes for the same people at 1280x720
    out, t = [], LEAD_S
    for k, group in enumerate(order):
        stand = LONG_STAND_S if group == (strangers[0],) else STAND_S
        people = tuple(
            (who, FACE_PX[(k + j + shift) % len(FACE_PX)]) for j, who in enumerate(group)
        )
        out.append(media.Scene(t, round(t + stand, 2), people))
        t = round(t + stand + GAP_S, 2)
    return out


def video_duration(scenes: Sequence[media.Scene]) -> float:
    return scenes[-1].end_s + GAP_S


def video(size: tuple[int, int], fps: float = 25.0) -> Path:
    """The East Asian kiosk video at ``size`` (cached in the media cache while the recipe
    and the photos are unchanged)."""
    if bad := problems():
        raise EvalSetError("; ".join(bad[:3]))
    scenes = video_scenes(size)
    duration = video_duration(scenes)
    pins = [p.sha256 for p in photos()]
    recipe = repr((scenes, size, duration, fps, pins, 1)).encode()
    digest = hashlib.sha256(recipe).hexdigest()[:12]
    return media.cached_file(
        media.cache_dir() / "videos" / f"east-asian-{size[0]}x{size[1]}-{digest}.avi",
        lambda tmp: media.compose_scenes(tmp, scenes, size, duration, fps, sprite=sprite),
    )
