"""Accuracy of the kiosk's recognition on East Asian faces: per photo and on kiosk videos.

Usage: python bench/accuracy.py [--recognizer sface|dlib ...] [--naive-every N] [--det FILE]

The East Asian evaluation set (tests/eastasian.py: 226 vendored LFW photos of 47 people):
19 people are enrolled from their first three photos, the 28 others are strangers.

- per photo: every photo not used for enrolment is matched against the gallery, as the
  kiosk matches (agent/gallery.py ``Gallery.match``: the nearest person within the
  tolerance, and the second-nearest person at least the margin farther). Genuine accept
  (GA): an enrolled person's photo matched to them; false accept (FA): a stranger's photo
  matched to anyone; wrong: an enrolled person's photo matched to someone else. Swept over
  the recognizer's range of tolerances at its shipped margin: a DET curve (miss = 1 - GA
  against FA), saved as an image in docs/img (det-sface-dlib.png for the default run), and the
  figures at each recognizer's shipped rule (drivers/face_models.py). Also the distances
  between photos of the same person and of different people.
- on the kiosk videos (640x480 and 1280x720: six enrolled people and eleven strangers, one
  at a time for 3 s, faces 160/100/70/55 px, one stranger standing 10 s, one stranger beside
  a staff member, a shaking camera): the real kiosk pipeline (agent/attendance.py, the
  shipped tolerance, margin and votes, liveness off: the photos cannot blink) on every frame,
  with all 19 enrolled; staff visits punched, strangers punched (a punch for anyone not in
  view), time from a person's first frame to their punch, frames/s. Beside it, in the same
  run, face_recognition's naive loop (its facerec_from_webcam example, as in bench/faces.py:
  full-frame HOG, every face encoded, ``compare_faces`` at 0.5, the first match punches)
  on every Nth frame (``--naive-every``, default 5: it is slow; its frames/s is per frame it
  processed).

A recognizer is chosen by name (``--recognizer``, repeatable; default sface then dlib, the
naive loop runs beside the first); RECOGNIZERS maps a name to how it encodes a still photo
and how the kiosk builds its engine. Ends with one line of
key=value figures (prefixed by the recognizer's name when several are measured).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from tests import eastasian as ea  # noqa: E402
from tests import media  # noqa: E402

TZ = ZoneInfo("Asia/Shanghai")
EPOCH = datetime(2026, 11, 25, 8, 20, tzinfo=TZ)
DEBOUNCE_S = 1  # a person shown twice in a video must be able to punch twice
SIZES = ((640, 480), (1280, 720))
NAIVE_TOLERANCE = 0.5  # as bench/faces.py


# --- recognizers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Recognizer:
    """What the bench needs of a recognizer: encode a still photo as enrolment does (the
    encoding, or None and the refusal reason), and build the kiosk's engine for a config."""

    name: str
    encode_photo: Callable[[np.ndarray], tuple[np.ndarray | None, str | None]]
    build_engine: Callable[[object], object]


def _dlib() -> Recognizer:
    from agent.recognition import build_engine
    from drivers.faces import DlibFaceEngine

    engine = DlibFaceEngine()

    def encode(image: np.ndarray) -> tuple[np.ndarray | None, str | None]:
        _, enc, reason = engine.encode_photo(image)
        return enc, reason

    return Recognizer("dlib", encode, build_engine)


def _sface() -> Recognizer:
    from agent.recognition import build_engine
    from drivers.faces_sface import SfaceFaceEngine

    engine = SfaceFaceEngine()

    def encode(image: np.ndarray) -> tuple[np.ndarray | None, str | None]:
        _, enc, reason = engine.encode_photo(image)
        return enc, reason

    return Recognizer("sface", encode, build_engine)


# Another recognizer plugs in here: a name and a factory returning its Recognizer.
RECOGNIZERS: dict[str, Callable[[], Recognizer]] = {"dlib": _dlib, "sface": _sface}


def shipped(recognizer: str) -> tuple[float, float, int]:
    """(tolerance, margin, votes) as shipped for a recognizer (drivers/face_models.py)."""
    from agent.config import AttendanceSection

    rule = AttendanceSection(camera="bench", recognizer=recognizer).rule()
    return rule.tolerance, rule.margin, rule.votes


def tolerances(recognizer: str) -> np.ndarray:
    """The tolerances swept for the DET curve: the recognizer's whole sensible range."""
    from drivers.face_models import RECOGNIZERS

    low, high = RECOGNIZERS[recognizer].distance_range
    return np.round(np.arange(low, high + 0.001, 0.01), 2)


# --- per photo -------------------------------------------------------------------------------


@dataclass
class PhotoSet:
    gallery: object  # agent.gallery.Gallery
    genuine: list[tuple[str, np.ndarray]]  # (person, encoding) of enrolled people's probes
    strangers: list[tuple[str, np.ndarray]]
    refused: list[str] = field(default_factory=list)  # photos the recognizer would not encode
    enrol_encodings: dict[str, list[np.ndarray]] = field(default_factory=dict)


def encode_set(rec: Recognizer) -> PhotoSet:
    from agent.gallery import Gallery

    enrolled, strangers = ea.split()
    refused: list[str] = []

    def enc(file: str) -> np.ndarray | None:
        e, reason = rec.encode_photo(ea.load_face(file))
        if e is None:
            refused.append(f"{file} ({reason})")
        return e

    encs, owners, gallery_encs = [], [], {}
    for person in enrolled:
        mine = [e for f in ea.enrol_files(person) if (e := enc(f)) is not None]
        gallery_encs[person] = mine
        encs += mine
        owners += [person] * len(mine)
    gallery = Gallery.from_arrays(np.vstack(encs), owners, {p: p for p in enrolled})
    genuine = [
        (p, e) for p in enrolled for f in ea.probe_files(p, True) if (e := enc(f)) is not None
    ]
    others = [
        (p, e) for p in strangers for f in ea.probe_files(p, False) if (e := enc(f)) is not None
    ]
    return PhotoSet(gallery, genuine, others, refused, gallery_encs)


@dataclass(frozen=True)
class Rates:
    tolerance: float
    ga: float
    fa: float
    wrong: float  # enrolled people's photos accepted as someone else


def rates(ps: PhotoSet, tolerance: float, margin: float) -> Rates:
    ok = wrong = 0
    for person, e in ps.genuine:
        sid = ps.gallery.match(e, tolerance, margin).staff_id
        ok += sid == person
        wrong += sid is not None and sid != person
    fa = sum(ps.gallery.match(e, tolerance, margin).staff_id is not None for _, e in ps.strangers)
    n, m = len(ps.genuine), len(ps.strangers)
    return Rates(tolerance, ok / n, fa / m, wrong / n)


def naive_photo_rates(ps: PhotoSet, tolerance: float = NAIVE_TOLERANCE) -> Rates:
    """face_recognition's rule on the same encodings: the first enrolled encoding within
    ``tolerance`` names the person (no margin)."""
    known = [(p, e) for p, es in ps.enrol_encodings.items() for e in es]
    encs = np.vstack([e for _, e in known])

    def first(e: np.ndarray) -> str | None:
        d = np.linalg.norm(encs - e, axis=1)
        hits = np.flatnonzero(d <= tolerance)
        return known[hits[0]][0] if len(hits) else None

    ok = sum(first(e) == p for p, e in ps.genuine)
    wrong = sum(first(e) not in (None, p) for p, e in ps.genuine)
    fa = sum(first(e) is not None for _, e in ps.strangers)
    return Rates(tolerance, ok / len(ps.genuine), fa / len(ps.strangers), wrong / len(ps.genuine))


def distance_summary(ps: PhotoSet) -> dict[str, float]:
    """Percentiles of distances between photos of the same person and of different people
    (every encoded photo of the set, enrolled or not)."""
    items = [(p, e) for p, es in ps.enrol_encodings.items() for e in es]
    items += ps.genuine + ps.strangers
    who = np.array([p for p, _ in items])
    x = np.vstack([e for _, e in items]).astype(np.float64)
    d = np.sqrt(np.maximum(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1), 0))
    iu = np.triu_indices(len(items), 1)
    same = who[iu[0]] == who[iu[1]]
    dd = d[iu]
    return {
        "same_median": float(np.median(dd[same])),
        "same_p95": float(np.percentile(dd[same], 95)),
        "diff_p5": float(np.percentile(dd[~same], 5)),
        "diff_median": float(np.median(dd[~same])),
    }


# --- the DET image ---------------------------------------------------------------------------


def draw_det(
    path: Path, curves: dict[str, list[Rates]], points: dict[str, Rates], n_gen: int, n_str: int
) -> None:
    """Miss rate (1 - GA) against false-accept rate, both on log axes, drawn with OpenCV
    (no plotting library on the kiosk). Rates of 0 sit on the axis (their floor is one
    photo in the set: 1/n)."""
    import cv2

    w, h, left, right, top, bottom = 720, 560, 80, 30, 50, 70
    img = np.full((h, w, 3), 255, np.uint8)
    lo_x, lo_y = 0.5 / n_str, 0.5 / n_gen  # half a photo: below every non-zero rate

    def xy(fa: float, miss: float) -> tuple[int, int]:
        fx = (np.log10(max(fa, lo_x)) - np.log10(lo_x)) / -np.log10(lo_x)
        fy = (np.log10(max(miss, lo_y)) - np.log10(lo_y)) / -np.log10(lo_y)
        return round(left + fx * (w - left - right)), round(h - bottom - fy * (h - top - bottom))

    grey, black = (200, 200, 200), (0, 0, 0)
    for v in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0):
        if v >= lo_x:
            x, _ = xy(v, 1)
            cv2.line(img, (x, top), (x, h - bottom), grey, 1)
            cv2.putText(img, f"{v:g}", (x - 14, h - bottom + 18), 0, 0.45, black, 1, cv2.LINE_AA)
        if v >= lo_y:
            _, y = xy(1, v)
            cv2.line(img, (left, y), (w - right, y), grey, 1)
            cv2.putText(img, f"{v:g}", (left - 42, y + 5), 0, 0.45, black, 1, cv2.LINE_AA)
    cv2.rectangle(img, (left, top), (w - right, h - bottom), black, 1)
    cv2.putText(
        img, "false-accept rate (stranger photos)", (left + 150, h - 25), 0, 0.55, black, 1, 16
    )
    cv2.putText(img, "miss rate (1 - GA)", (8, top - 15), 0, 0.55, black, 1, cv2.LINE_AA)
    title = f"DET, East Asian set: {n_gen} genuine, {n_str} stranger photos"
    cv2.putText(img, title, (left + 90, 30), 0, 0.55, black, 1, cv2.LINE_AA)
    colours = [(200, 90, 30), (40, 140, 40), (30, 30, 200), (150, 50, 150)]
    for k, (name, curve) in enumerate(curves.items()):
        c = colours[k % len(colours)]
        pts = np.array([xy(r.fa, 1 - r.ga) for r in curve], np.int32)
        cv2.polylines(img, [pts], False, c, 2, cv2.LINE_AA)
        p = points[name]
        cv2.circle(img, xy(p.fa, 1 - p.ga), 6, c, 2, cv2.LINE_AA)
        label = f"{name}: o = shipped tolerance {p.tolerance:g} (GA {p.ga:.2f}, FA {p.fa:.3f})"
        cv2.putText(img, label, (left + 10, top + 22 + 20 * k), 0, 0.5, c, 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)


# --- videos ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Punch:
    staff_id: str
    stamped_t: float  # media time the punch is stamped with (its track's first frame)
    emitted_t: float  # media time of the frame whose processing emitted it
    busy_s: float  # processing time spent from that person's first frame to the punch


@dataclass
class VideoResult:
    visits: int  # (scene, enrolled person) pairs on screen
    punched: int  # of those, punched while on screen
    false: list[Punch] = field(default_factory=list)  # for anyone not in view
    to_punch_s: list[float] = field(default_factory=list)  # media time, scene start -> punch
    busy_to_punch_s: list[float] = field(default_factory=list)  # processing time, same span
    fps: float = float("nan")
    missed: list[tuple[int, str]] = field(default_factory=list)  # (scene, staff) not punched

    def false_pairs(self, scenes) -> set[tuple[int | None, str]]:
        """Distinct (scene, person punched) among the false punches."""
        return {(media.scene_at(scenes, p.stamped_t), p.staff_id) for p in self.false}


def score(scenes, punches: list[Punch], staff: set[str]) -> VideoResult:
    expected = {(i, sid) for i, sc in enumerate(scenes) for sid, _ in sc.people if sid in staff}
    first: dict[tuple[int, str], Punch] = {}
    false = []
    for p in punches:
        key = (media.scene_at(scenes, p.stamped_t), p.staff_id)
        if key in expected:
            first.setdefault(key, p)
        else:
            false.append(p)
    to_punch = sorted(p.emitted_t - scenes[k[0]].start_s for k, p in first.items())
    busy = sorted(p.busy_s for p in first.values())
    missed = sorted(expected - set(first))
    return VideoResult(len(expected), len(first), false, to_punch, busy, missed=missed)


class Naive:
    """face_recognition's facerec_from_webcam loop, enrolled with face_recognition itself
    from the same photos (so it does not depend on the recognizer measured)."""

    def __init__(self, enrolled: tuple[str, ...]) -> None:
        import face_recognition

        self.known, self.names = [], []
        for person in enrolled:
            for file in ea.enrol_files(person):
                rgb = np.ascontiguousarray(ea.load_face(file)[:, :, ::-1])
                for enc in face_recognition.face_encodings(rgb)[:1]:
                    self.known.append(enc)
                    self.names.append(person)
        self.last: dict[str, float] = {}
        self.punches: list[Punch] = []

    def process(self, image: np.ndarray, t: float) -> None:
        import face_recognition

        rgb = np.ascontiguousarray(image[:, :, ::-1])
        locations = face_recognition.face_locations(rgb)
        for enc in face_recognition.face_encodings(rgb, locations):
            matches = face_recognition.compare_faces(self.known, enc, tolerance=NAIVE_TOLERANCE)
            if True in matches:
                sid = self.names[matches.index(True)]
                if sid not in self.last or t - self.last[sid] >= DEBOUNCE_S:
                    self.last[sid] = t
                    self.punches.append(Punch(sid, t, t, float("nan")))


def run_video(
    rec: Recognizer, ps: PhotoSet, size: tuple[int, int], naive_every: int
) -> tuple[VideoResult, VideoResult | None]:
    from agent.attendance import AttendancePipeline
    from agent.config import AttendanceSection
    from agent.recognition import wall_clock_for
    from contract import EventType
    from contract.schedule import Schedule
    from drivers.camera import Camera

    scenes = ea.video_scenes(size)
    raw: list[tuple[str, float, float]] = []  # (staff, stamped media t, emitted media t)
    now = {"t": 0.0}  # media time of the frame being processed
    spent_at: list[tuple[float, float]] = []  # (media t, processing time) of every frame

    rejected: list[tuple[float, str, float | None]] = []  # (media t, reason, distance)

    def emit(kind, data, at) -> None:
        if kind == EventType.PUNCH:
            raw.append((data["staff_id"], (at - EPOCH).total_seconds(), now["t"]))
        elif kind == EventType.FACE_REJECTED:
            rejected.append((now["t"], data["reason"], data.get("distance")))

    att = AttendanceSection(
        camera="bench", realtime=False, debounce_s=DEBOUNCE_S, recognizer=rec.name
    )
    pipeline = AttendancePipeline(
        att,
        rec.build_engine(att),
        ps.gallery,
        Schedule(),
        emit,
        wall_clock_for(TZ, EPOCH),
    )
    naive = Naive(tuple(ps.enrol_encodings)) if naive_every else None
    busy = naive_busy = 0.0
    present = naive_frames = 0
    cam = Camera(str(ea.video(size)), realtime=False)
    cam.start()
    seq = 0
    try:
        while (f := cam.read(seq, 10)) is not None:
            seq = f.seq
            on_screen = media.scene_at(scenes, f.t, 0) is not None
            now["t"] = f.t
            t0 = time.perf_counter()
            pipeline.process(f)
            spent = time.perf_counter() - t0
            spent_at.append((f.t, spent))
            if on_screen:
                busy += spent
                present += 1
            if naive is not None and f.seq % naive_every == 0:
                t0 = time.perf_counter()
                naive.process(f.image, f.t)
                if on_screen:
                    naive_busy += time.perf_counter() - t0
                    naive_frames += 1
    finally:
        cam.stop()
    staff = set(ps.enrol_encodings)
    ours = score(scenes, [with_busy(scenes, spent_at, *r) for r in raw], staff)
    for i, sid in ours.missed:  # why: the kiosk's rejections while that scene was on screen
        why = [f"{r} ({d})" for t, r, d in rejected if media.scene_at(scenes, t) == i]
        print(f"  {size[0]}x{size[1]} scene {i} ({sid} missed): rejections {why or 'none'}")
    ours.fps = present / busy if busy else float("nan")
    theirs = None
    if naive is not None:
        theirs = score(scenes, naive.punches, staff)
        theirs.fps = naive_frames / naive_busy if naive_busy else float("nan")
    return ours, theirs


def with_busy(
    scenes, spent_at: list[tuple[float, float]], sid: str, stamped: float, emitted: float
) -> Punch:
    """The punch with the processing time spent from its scene's start to its frame."""
    sc = media.scene_at(scenes, stamped)
    since = scenes[sc].start_s if sc is not None else stamped
    busy = sum(s for t, s in spent_at if since <= t <= emitted)
    return Punch(sid, stamped, emitted, busy)


def describe(r: VideoResult, scenes) -> str:
    t, b = r.to_punch_s, r.busy_to_punch_s
    times = (
        f"time to punch (video time) median {np.median(t):.2f} s, max {max(t):.2f} s"
        if t
        else "no punch"
    )
    if b and not np.isnan(b).any():
        times += f"; processing time to punch median {np.median(b):.2f} s, max {max(b):.2f} s"
    pairs = sorted(r.false_pairs(scenes), key=lambda x: (x[0] is None, x[0] or 0, x[1]))
    false = ", ".join(f"scene {i}: {sid}" for i, sid in pairs) or "none"
    missed = ", ".join(f"scene {i}: {sid}" for i, sid in r.missed)
    return (
        f"staff punched {r.punched}/{r.visits}" + (f" (missed {missed})" if missed else "") + ", "
        f"false punches {len(r.false)} "
        f"({len(pairs)} distinct: {false}); {times}; {r.fps:.1f} frames/s"
    )


# --- main ------------------------------------------------------------------------------------


def measure(
    rec: Recognizer, naive_every: int, videos: bool, sizes=SIZES
) -> tuple[dict[str, str], list[Rates], Rates, PhotoSet]:
    tolerance, margin, votes = shipped(rec.name)
    ps = encode_set(rec)
    print(
        f"[{rec.name}] gallery: {len(ps.enrol_encodings)} people, {ps.gallery.rows} encodings; "
        f"probes: {len(ps.genuine)} genuine, {len(ps.strangers)} stranger photos; "
        f"refused by enrolment: {len(ps.refused)} {ps.refused[:5]}"
    )
    dist = distance_summary(ps)
    print(
        f"[{rec.name}] distances, same person: median {dist['same_median']:.2f}, "
        f"95th pct {dist['same_p95']:.2f}; different people: 5th pct {dist['diff_p5']:.2f}, "
        f"median {dist['diff_median']:.2f}"
    )
    curve = [rates(ps, float(t), margin) for t in tolerances(rec.name)]
    at = rates(ps, tolerance, margin)
    print(f"[{rec.name}] per photo, margin {margin:g}:")
    print("  tolerance    GA     FA   wrong")
    for r in curve:
        if round(r.tolerance * 100) % 2 == 0 or r.tolerance == tolerance:
            mark = "  <- shipped" if r.tolerance == tolerance else ""
            print(f"  {r.tolerance:9.2f} {r.ga:6.3f} {r.fa:6.3f} {r.wrong:6.3f}{mark}")
    safe = [r for r in curve if r.fa <= 0.01]
    if safe:
        best = max(safe, key=lambda r: (r.ga, -r.fa))
        print(
            f"[{rec.name}] highest GA with FA <= 1 %: tolerance {best.tolerance:g}: "
            f"GA {best.ga:.3f}, FA {best.fa:.3f}, wrong {best.wrong:.3f}"
        )
    figures = {
        "ga_at_default": f"{at.ga:.3f}",
        "fa_at_default": f"{at.fa:.3f}",
        "wrong_at_default": f"{at.wrong:.3f}",
        "same_p95": f"{dist['same_p95']:.2f}",
        "diff_p5": f"{dist['diff_p5']:.2f}",
    }
    if rec.name == "dlib":
        # face_recognition's encodings are dlib's: its rule on them is the naive per-photo
        # figure (with another recognizer's encodings that rule would mean nothing).
        nv = naive_photo_rates(ps)
        print(
            f"[naive] per photo, first encoding within {nv.tolerance:g}, no margin: "
            f"GA {nv.ga:.3f}, FA {nv.fa:.3f}, wrong {nv.wrong:.3f}"
        )
        figures["naive_photo_ga"] = f"{nv.ga:.3f}"
        figures["naive_photo_fa"] = f"{nv.fa:.3f}"
    if videos:
        print(f"[{rec.name}] videos: tolerance {tolerance:g}, margin {margin:g}, votes {votes}")
        for size in sizes:
            tag = f"{size[0]}x{size[1]}"
            ours, theirs = run_video(rec, ps, size, naive_every)
            print(f"  {tag} ours : {describe(ours, ea.video_scenes(size))}")
            figures[f"staff_punched_{tag}"] = f"{ours.punched}/{ours.visits}"
            figures[f"strangers_punched_{tag}"] = str(len(ours.false))
            figures[f"max_time_to_punch_s_{tag}"] = (
                f"{max(ours.to_punch_s):.2f}" if ours.to_punch_s else "nan"
            )
            figures[f"max_busy_to_punch_s_{tag}"] = (
                f"{max(ours.busy_to_punch_s):.2f}" if ours.busy_to_punch_s else "nan"
            )
            figures[f"fps_{tag}"] = f"{ours.fps:.1f}"
            if theirs is not None:
                print(
                    f"  {tag} naive (every {naive_every}th frame): "
                    + describe(theirs, ea.video_scenes(size))
                )
                figures[f"naive_staff_punched_{tag}"] = f"{theirs.punched}/{theirs.visits}"
                figures[f"naive_false_punches_{tag}"] = str(len(theirs.false))
                figures[f"naive_fps_{tag}"] = f"{theirs.fps:.2f}"
    return figures, curve, at, ps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--recognizer",
        action="append",
        choices=sorted(RECOGNIZERS),
        help="recognizer to measure (repeatable; default sface, then dlib)",
    )
    ap.add_argument(
        "--naive-every",
        type=int,
        default=5,
        metavar="N",
        help="run face_recognition's naive loop on every Nth video frame (0: not at all)",
    )
    ap.add_argument("--no-video", action="store_true", help="per-photo figures only")
    ap.add_argument(
        "--size",
        choices=[f"{w}x{h}" for w, h in SIZES],
        action="append",
        help="video resolution (repeatable; default both)",
    )
    ap.add_argument("--det", type=Path, help="DET image (default: det-NAME.png in docs/img)")
    args = ap.parse_args()
    if bad := ea.problems():
        print("accuracy: the East Asian set is not intact: " + "; ".join(bad[:3]), file=sys.stderr)
        return 2
    names = args.recognizer or ["sface", "dlib"]
    det = args.det or ROOT / "docs" / "img" / f"det-{'-'.join(names)}.png"
    figures: dict[str, str] = {}
    curves, points = {}, {}
    n_gen = n_str = 1
    for k, name in enumerate(names):
        rec = RECOGNIZERS[name]()
        sizes = [s for s in SIZES if not args.size or f"{s[0]}x{s[1]}" in args.size]
        naive_every = args.naive_every if k == 0 else 0
        figs, curve, at, ps = measure(rec, naive_every, not args.no_video, sizes)
        prefix = f"{name}_" if len(names) > 1 else ""
        figures.update({prefix + key: v for key, v in figs.items()})
        curves[name], points[name] = curve, at
        n_gen, n_str = len(ps.genuine), len(ps.strangers)
    draw_det(det, curves, points, n_gen, n_str)
    print(f"DET curve: {det}")
    print(" ".join(f"{k}={v}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
