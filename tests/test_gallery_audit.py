"""``hall-agent gallery audit`` (agent/gallery_audit.py) on real dlib encodings of the East
Asian set (tests/eastasian.py), under the dlib decision rule (0.5 / 0.06).

The people are real look-alikes of that set, found by encoding it: Hu Jintao and Wen Jiabao
come within 0.38 of each other with dlib (below 0.5 + 0.06); Lucy Liu and Yao Ming are
never nearer than 0.78. Encodings are made once per module (about half a second a photo).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from agent.gallery import Gallery, gallery_path
from agent.gallery_audit import audit, lookalikes_of
from drivers.face_models import RECOGNIZERS, DecisionRule
from tests import eastasian as ea
from tests.test_enroll import cli

pytestmark = pytest.mark.kiosk  # needs the vision stack (cv2, dlib)

ROOT = Path(__file__).resolve().parents[1]
DLIB = RECOGNIZERS["dlib"]
RULE = DLIB.rule  # tolerance 0.5, margin 0.06
HU, WEN, LUCY, YAO = "Hu_Jintao", "Wen_Jiabao", "Lucy_Liu", "Yao_Ming"
ENROLLED = {HU: 3, WEN: 3, LUCY: 3, YAO: 3}  # each person's first photos
# A photo of Wen Jiabao that, with Hu and Wen enrolled, is nearest to one of Hu's photos
# but too close to Wen's as well to be accepted: an unknown face whose nearest is Hu.
WEN_UNKNOWN = "Wen_Jiabao_0006.jpg"


@pytest.fixture(scope="module")
def enc() -> dict[str, np.ndarray]:
    """Photo file -> dlib encoding, for the photos these tests use."""
    from drivers.faces import DlibFaceEngine

    engine = DlibFaceEngine()
    files = [f for person, n in ENROLLED.items() for f in ea.people()[person][:n]]
    out = {}
    for file in [*files, WEN_UNKNOWN]:
        _, encoding, reason = engine.encode_photo(ea.load_face(file))
        assert reason is None, (file, reason)
        out[file] = encoding
    return out


def gallery(enc: dict[str, np.ndarray], **photos: int | list[str]) -> Gallery:
    """A dlib gallery: staff id -> how many of their first photos (or which photo files)."""
    rows, owners = [], []
    for person, which in photos.items():
        files = ea.people()[person][:which] if isinstance(which, int) else which
        rows += [enc[f] for f in files]
        owners += [person] * len(files)
    return Gallery.from_arrays(np.vstack(rows), owners, model=DLIB.model_id)


def closest(enc: dict[str, np.ndarray], a: str, b: str) -> float:
    """The smallest distance between a photo of a and one of b, one pair at a time."""
    fa, fb = ea.people()[a][: ENROLLED[a]], ea.people()[b][: ENROLLED[b]]
    return min(float(np.linalg.norm(enc[x] - enc[y])) for x in fa for y in fb)


# --- look-alike pairs ------------------------------------------------------------------


def test_a_real_lookalike_pair_is_found_and_a_clearly_different_pair_is_not(enc) -> None:
    hu_wen, lucy_yao = closest(enc, HU, WEN), closest(enc, LUCY, YAO)
    assert hu_wen < RULE.tolerance + RULE.margin < lucy_yao  # the premise, from the photos
    report = audit(gallery(enc, **ENROLLED), RULE)
    pairs = {(p.a, p.b): p.distance for p in report.lookalikes}
    assert pairs[(HU, WEN)] == pytest.approx(hu_wen, abs=1e-4)
    assert (LUCY, YAO) not in pairs
    assert [p.distance for p in report.lookalikes] == sorted(pairs.values())
    assert not report.clean
    assert report.point.closest is not None
    assert (report.point.closest.a, report.point.closest.b) == (HU, WEN)
    text = "\n".join(report.lines())
    assert f"{hu_wen:.3f}  {HU}  ~  {WEN}" in text
    assert "estimates from the enrolment photos themselves" in text
    as_json = json.loads(json.dumps(report.as_dict()))
    assert {"a": HU, "b": WEN, "distance": round(hu_wen, 4)} in as_json["lookalikes"]
    assert as_json["rule"] == {"tolerance": 0.5, "margin": 0.06, "votes": 3}
    # The rule decides: with a tolerance below their distance (and the margin), no pair.
    strict = DecisionRule(tolerance=hu_wen - RULE.margin - 0.01, margin=RULE.margin, votes=3)
    assert audit(gallery(enc, **ENROLLED), strict).lookalikes == ()


def test_lookalikes_of_someone_just_enrolled_name_them_first(enc) -> None:
    g = gallery(enc, **ENROLLED)
    [pair] = lookalikes_of(g, [WEN], RULE)
    assert (pair.a, pair.b) == (WEN, HU)
    assert lookalikes_of(g, [YAO], RULE) == []
    assert lookalikes_of(g, [WEN], None) == []
    # The sface rule (tolerance 1.0) is off the scale of dlib's distances: no judgement,
    # rather than every pair of the gallery called a look-alike.
    assert lookalikes_of(g, [WEN], RECOGNIZERS["sface"].rule) == []


# --- weak enrolments -------------------------------------------------------------------


def test_people_enrolled_from_one_or_two_photos_are_weak(enc) -> None:
    report = audit(gallery(enc, **{HU: 3, LUCY: 2, YAO: 1}), RULE)
    weak = {w.staff_id: w for w in report.weak}
    assert set(weak) == {LUCY, YAO}  # Hu, three photos, no look-alike here: fine
    assert weak[LUCY].encodings == 2 and "too few photos (2" in weak[LUCY].problems[0]
    assert weak[YAO].encodings == 1 and "too few photos (1" in weak[YAO].problems[0]
    # Yao's only encoding, left out, leaves nothing of him to match.
    assert any("1 of 1 encodings" in p for p in weak[YAO].problems)
    assert report.lookalikes == () and not report.clean


def test_a_mixed_up_photo_spreads_a_persons_encodings(enc) -> None:
    hu = list(ea.people()[HU][:2])
    mixed = [*hu, ea.people()[YAO][0]]  # somebody else's photo in Hu's folder
    report = audit(gallery(enc, **{HU: mixed, WEN: 3, LUCY: 3}), RULE)
    [hu_weak] = [w for w in report.weak if w.staff_id == HU]
    spread = max(float(np.linalg.norm(enc[a] - enc[b])) for a in mixed for b in mixed)
    assert spread > RULE.tolerance
    assert any(p.startswith(f"own photos spread {spread:.3f}") for p in hu_weak.problems)
    # The same person from three of their own photos is not spread.
    clean = audit(gallery(enc, **{HU: 3, LUCY: 3}), RULE)
    assert [w.staff_id for w in clean.weak] == [LUCY]  # Lucy's own photos: 0.51 apart
    assert "spread" in clean.weak[0].problems[0]


# --- the operating point ---------------------------------------------------------------


def test_leave_one_out_numbers_match_a_count_by_hand(enc) -> None:
    """The audit's counts against Gallery.match on galleries rebuilt without the left-out
    encodings: the kiosk's own matching, one encoding at a time."""
    people = {HU: 3, WEN: 3, YAO: 3}
    files = {p: list(ea.people()[p][:n]) for p, n in people.items()}
    rows = [(p, f) for p in people for f in files[p]]

    def without(drop: set[str]) -> Gallery:
        kept = [(p, f) for p, f in rows if f not in drop]
        return Gallery.from_arrays(np.vstack([enc[f] for _, f in kept]), [p for p, _ in kept])

    genuine = sum(
        without({f}).match(enc[f], RULE.tolerance, RULE.margin).staff_id == p for p, f in rows
    )
    strangers = sum(
        without(set(files[p])).match(enc[f], RULE.tolerance, RULE.margin).staff_id is not None
        for p, f in rows
    )
    point = audit(gallery(enc, **people), RULE).point
    assert (point.genuine_accepted, point.genuine_total) == (genuine, 9)
    assert (point.stranger_accepted, point.stranger_total) == (strangers, 9)
    # Not a trivial gallery: the look-alikes cost genuine accepts and let strangers in.
    assert 0 < genuine < 9 and 0 < strangers < 9
    assert point.genuine_rate == round(genuine / 9, 4)
    assert point.closest is not None and point.closest.distance == pytest.approx(
        closest(enc, HU, WEN), abs=1e-4
    )


# --- the commands ----------------------------------------------------------------------


def kiosk_config(tmp_path: Path, recognizer: str = "dlib", attendance: bool = True) -> Path:
    data = tmp_path / "data"
    text = f'[device]\nid = "kiosk-01"\nsite = "jiedong"\ndata_dir = "{data}"\n'
    if attendance:
        text += f'\n[attendance]\ncamera = "0"\nrecognizer = "{recognizer}"\n'
    path = tmp_path / f"agent-{recognizer}-{attendance}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_gallery_audit_exit_codes_and_json(enc, tmp_path) -> None:
    cfg = kiosk_config(tmp_path)
    r = cli(cfg, "gallery", "audit", "--json")  # nobody enrolled yet: nothing wrong to show
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["people"] == 0
    path = gallery_path(tmp_path / "data")
    gallery(enc, **{HU: 3, YAO: 3}).save(path)
    r = cli(cfg, "gallery", "audit")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "look-alike pairs: none" in r.stdout and "result: clean" in r.stdout
    assert "genuine accept      6 of 6" in r.stdout

    gallery(enc, **{HU: 3, WEN: 3, YAO: 3}).save(path)
    r = cli(cfg, "gallery", "audit")
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"{HU}  ~  {WEN}" in r.stdout
    r = cli(cfg, "gallery", "audit", "--json")
    assert r.returncode == 1
    report = json.loads(r.stdout)
    assert [(p["a"], p["b"]) for p in report["lookalikes"]] == [(HU, WEN)]
    assert report["clean"] is False and report["people"] == 3 and report["encodings"] == 9
    assert report["operating_point"]["estimate_from"] == "enrolment photos"

    # A person from one photo only: a weak enrolment is enough for 1.
    gallery(enc, **{HU: 3, YAO: 1}).save(path)
    r = cli(cfg, "gallery", "audit", "--json")
    assert r.returncode == 1 and json.loads(r.stdout)["weak"][0]["staff_id"] == YAO

    # Cannot be judged: 2 and one line that says why.
    r = cli(kiosk_config(tmp_path, recognizer="sface"), "gallery", "audit")
    assert r.returncode == 2 and "dlib-resnet-v1" in r.stderr and "sface" in r.stderr
    path.write_bytes(b"not a gallery")
    r = cli(cfg, "gallery", "audit")
    assert r.returncode == 2 and "not a readable gallery file" in r.stderr
    r = cli(kiosk_config(tmp_path, attendance=False), "gallery", "audit")
    assert r.returncode == 2 and "no [attendance] section" in r.stderr
    helptext = cli(cfg, "gallery", "audit", "--help").stdout
    assert "0 clean; 1 look-alike pairs or weak" in " ".join(helptext.split())


def test_check_warns_on_a_lookalike_pair(enc, tmp_path) -> None:
    cfg = kiosk_config(tmp_path)
    path = gallery_path(tmp_path / "data")
    gallery(enc, **{HU: 3, YAO: 3}).save(path)
    r = cli(cfg, "check", "--only", "gallery")
    assert r.returncode == 0 and "[ ok ] gallery: 2 people, 6 encodings" in r.stdout, r.stdout

    gallery(enc, **{HU: 3, WEN: 3, YAO: 3}).save(path)
    r = cli(cfg, "check", "--only", "gallery")
    assert r.returncode == 0, r.stdout + r.stderr  # a warning, not a failure
    [line] = [line for line in r.stdout.splitlines() if "gallery:" in line]
    assert line.startswith("[WARN] gallery: 3 people, 9 encodings; look-alike:")
    assert f"{HU} and {WEN} at distance {closest(enc, HU, WEN):.3f}" in line
    assert "hall-agent gallery audit" in line


def test_enroll_warns_when_a_new_person_looks_like_someone_enrolled(tmp_path) -> None:
    cfg = kiosk_config(tmp_path)
    photos = tmp_path / "photos"
    photos.mkdir()

    def crops(person: str) -> list[Path]:
        import cv2

        out = []
        for file in ea.people()[person][:3]:
            path = photos / (Path(file).stem + ".png")  # lossless: the pixels load_face gave
            cv2.imwrite(str(path), ea.load_face(file))
            out.append(path)
        return out

    r = cli(cfg, "enroll", "--staff-id", HU, *crops(HU))
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    r = cli(cfg, "enroll", "--staff-id", YAO, *crops(YAO))
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    r = cli(cfg, "enroll", "--staff-id", WEN, *crops(WEN))
    assert r.returncode == 0, r.stderr  # stored: a warning, not a refusal
    assert f"enrolled {WEN}: 3 encodings" in r.stdout
    [warning] = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert f"warning: {WEN}, just enrolled, and {HU} look alike" in warning
    assert "at distance 0.3" in warning  # Hu and Wen: 0.38 apart on these photos
    assert "Enrol more and better photos" in warning and "may refuse" in warning
    enrolled = Gallery.load(gallery_path(tmp_path / "data"))
    assert [p.staff_id for p in enrolled.people()] == [HU, WEN, YAO]


# --- the kiosk screen never names the nearest person of an unknown face -----------------


class OneFaceEngine:
    """The engine's part faked: one face, the same real encoding, every frame."""

    def __init__(self, encoding: np.ndarray):
        self.encoding = encoding

    def process(self, image: Any) -> Any:
        from drivers.faces import Face, FrameResult

        return FrameResult(faces=[Face(1, (10, 110, 110, 10), encoding=self.encoding)], ended=[])

    def settle(self, track_id: int, settled: bool = True) -> None:
        pass


def test_an_unknown_faces_look_and_page_text_never_name_the_nearest_person(
    enc, tmp_path, write_config
) -> None:
    from agent.attendance import AttendancePipeline
    from agent.config import AttendanceSection, load_agent_config
    from agent.recognition import wall_clock_for
    from agent.screen import ScreenHub
    from contract.schedule import Schedule
    from drivers.camera import Frame

    names = {"S001": "胡锦涛", "S002": "温家宝", "S003": "姚明"}
    people = {"S001": HU, "S002": WEN, "S003": YAO}
    files = {sid: ea.people()[person][:3] for sid, person in people.items()}
    g = Gallery.from_arrays(
        np.vstack([enc[f] for sid in files for f in files[sid]]),
        [sid for sid in files for _ in files[sid]],
        names=names,
        model=DLIB.model_id,
    )
    probe = enc[WEN_UNKNOWN]
    match = g.match(probe, RULE.tolerance, RULE.margin)
    assert match.staff_id is None and match.nearest_id == "S001"  # the premise: Hu is nearest

    data = tmp_path / "data"
    data.mkdir()
    staff = [{"id": k, "name": v, "role": "staff", "window": "A01"} for k, v in names.items()]
    roster = {"v": 1, "version": 1, "staff": staff}
    (data / "roster.json").write_text(json.dumps(roster, ensure_ascii=False), encoding="utf-8")
    cfg = load_agent_config(
        write_config(
            f'[device]\nid = "kiosk-01"\nsite = "jiedong"\ndata_dir = "{data}"\n'
            '[attendance]\ncamera = "0"\nrecognizer = "dlib"\n'
        )
    )
    att = cfg.attendance
    assert isinstance(att, AttendanceSection)
    events: list[tuple[str, dict[str, Any]]] = []
    looks: list[dict[str, Any]] = []
    tz = ZoneInfo("Asia/Shanghai")
    pipeline = AttendancePipeline(
        att,
        OneFaceEngine(probe),
        g,
        Schedule(),
        lambda t, d, at: events.append((t, d)),
        wall_clock_for(tz, datetime(2026, 11, 25, 8, 20, tzinfo=tz)),
    )
    pipeline.on_look = looks.append
    img = np.zeros((4, 4, 3), np.uint8)
    for i in range(2 * att.votes):
        pipeline.process(Frame(img, i + 1, i * 0.04, float(i)))
    assert [look["kind"] for look in looks] == ["unknown_face"]
    assert [t for t, _ in events] == ["attendance.rejected"]
    page = ScreenHub(cfg).render(looks[0])
    assert page["title"] == "未识别" and page["staff_id"] is None and page["name"] == ""
    shown = json.dumps([looks, events, page], ensure_ascii=False)
    for sid, name in names.items():
        assert sid not in shown and name not in shown, (sid, shown)
    for person in people.values():
        assert person not in shown
