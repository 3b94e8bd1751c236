"""Real face photos for the tests, and test videos composed from them.

The pinned photos, their cache and the video composer are the demo's (scripts/sample_media.py:
face_recognition 1.3.0's test photos and insightface 2.1's group photo, fetched with pip and
sha256-checked). This module adds what only the tests need: skip-or-fail when the photos
cannot be fetched (off CI the tests that need photos are skipped with the reason; in CI
(``CI=true``) a missing photo is a failure: a green run must not hide skipped face tests), the
real engine's encodings of the photos, galleries, and the multi-person distance set.

Nothing here is used by the agent itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

# Some of these are used only through this module, by tests that draw or inspect their own
# frames (tests/test_faces.py): media._closed_eyes, media.photo.
from scripts import sample_media
from scripts.sample_media import (  # noqa: F401
    Actor,
    MediaUnavailable,
    cache_dir,
    cached_file,
    load_bgr,
    photo,
    photos_dir,
)
from scripts.sample_media import background as _background
from scripts.sample_media import closed_eyes as _closed_eyes  # noqa: F401
from scripts.sample_media import crop_face as _crop_face
from scripts.sample_media import face_box as _face_box
from scripts.sample_media import paste as _paste


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
    """The demo's cached composed video (scripts/sample_media.py), or skip/fail without photos."""
    require_photos()
    return sample_media.cached_video(name, actors, duration_s, fps)


@lru_cache(maxsize=32)
def photo_encoding(name: str, recognizer: str | None = None) -> np.ndarray:
    """The 128-d encoding of a photo's only face, through the real engine's enrolment path
    (of ``recognizer``; default: the shipped one)."""
    _, enc, reason = _enrol_engine(recognizer).encode_photo(load_bgr(name))
    assert reason is None and enc is not None, f"{name}: {reason}"
    return enc


@lru_cache(maxsize=2)
def _enrol_engine(recognizer: str | None = None):
    """The enrolment engine of a recognizer (agent/kiosk/recognition.py build_engine)."""
    from agent.config import AttendanceSection
    from agent.kiosk.recognition import build_engine

    att = AttendanceSection(camera="test", **({"recognizer": recognizer} if recognizer else {}))
    return build_engine(att)


def shipped_model(recognizer: str | None = None) -> str:
    """The model id a gallery records for ``recognizer`` (default: the shipped one)."""
    from agent.config import AttendanceSection
    from agent.kiosk.recognition import model_id

    return model_id(
        AttendanceSection(camera="test", **({"recognizer": recognizer} if recognizer else {}))
    )


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


def gallery_of(*staff: str, recognizer: str | None = None):
    """A Gallery with the given people enrolled from their ENROL photos (staff id = key), by
    ``recognizer`` (default: the shipped one)."""
    from agent.kiosk.gallery import Gallery

    encs, owners = [], []
    for sid in staff:
        for name in ENROL[sid]:
            encs.append(photo_encoding(name, recognizer))
            owners.append(sid)
    return Gallery.from_arrays(
        np.vstack(encs), owners, {s: s.title() for s in staff}, shipped_model(recognizer)
    )


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
    path: Path,
    scenes: Sequence[Scene],
    size: tuple[int, int],
    duration_s: float,
    fps: float = 25.0,
    sprite: Callable[[str, int], np.ndarray] | None = None,
) -> Path:
    """An MJPG .avi of the scenes: people spread across the frame, each swaying a little
    on their own, and the whole picture shaking by up to ~2 px like a hand-mounted camera.

    ``sprite(person, face_px)`` draws a person's head and shoulders; by default the people of
    the pinned photos (SHOWN), another set brings its own (tests/eastasian.py)."""
    import cv2

    width, height = size
    bg = _background(width, height)
    draw = sprite or _sprite
    sprites = {(sid, px): draw(sid, px) for sc in scenes for sid, px in sc.people}
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
    return cached_file(
        cache_dir() / "videos" / f"distance-{size[0]}x{size[1]}-{digest}.avi",
        lambda tmp: compose_scenes(tmp, scenes, size, duration, fps),
    )


def empty_video(size: tuple[int, int], duration_s: float, fps: float = 25.0) -> Path:
    """Nobody in view: the wall, a shaking camera (idle CPU)."""
    require_photos()
    return cached_file(
        cache_dir() / "videos" / f"empty-{size[0]}x{size[1]}-{duration_s:g}s.avi",
        lambda tmp: compose_scenes(tmp, [], size, duration_s, fps),
    )


def scene_at(scenes: Sequence[Scene], t: float, slack_s: float = 0.3) -> int | None:
    """Index of the scene on screen at media time ``t`` (or just after it)."""
    for i, sc in enumerate(scenes):
        if sc.start_s <= t < sc.end_s + slack_s:
            return i
    return None
