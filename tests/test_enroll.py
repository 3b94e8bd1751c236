"""``hall-agent enroll`` / ``hall-agent gallery`` end to end, as a technician runs them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.config import AttendanceSection
from agent.kiosk.gallery import Gallery, gallery_path
from tests import media

pytestmark = pytest.mark.kiosk  # needs the vision stack (cv2, dlib)

ROOT = Path(__file__).resolve().parents[1]
IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"BM", b"RIFF")


@pytest.fixture
def kiosk(tmp_path, write_config) -> tuple[Path, Path]:
    media.require_photos()
    data = tmp_path / "data"
    cfg = write_config(
        f"""
        [device]
        id = "kiosk-01"
        site = "jiedong"
        data_dir = "{data}"

        [attendance]
        camera = "0"
        """
    )
    return cfg, data


def cli(cfg: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "-c", str(cfg), *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def people(data: Path) -> list[tuple[str, str, int]]:
    return [(p.staff_id, p.name, p.encodings) for p in Gallery.load(gallery_path(data)).people()]


def test_enroll_stores_encodings_only(kiosk) -> None:
    cfg, data = kiosk
    r = cli(
        cfg,
        "enroll",
        "--staff-id",
        "s001",
        "--name",
        "奥巴马",
        media.photo("obama.jpg"),
        media.photo("obama3.jpg"),
    )
    assert r.returncode == 0, r.stderr
    assert "enrolled s001 (奥巴马): 2 encodings" in r.stdout
    assert people(data) == [("s001", "奥巴马", 2)]
    # Privacy (docs/topics.md): nothing but the gallery file (and its lock) under data_dir,
    # and nothing in it that looks like an image.
    files = sorted(p.relative_to(data).as_posix() for p in data.rglob("*") if p.is_file())
    assert files == ["gallery/.lock", "gallery/gallery.npz"]
    blob = (data / "gallery" / "gallery.npz").read_bytes()
    assert not any(m in blob for m in (b"\xff\xd8\xff", b"\x89PNG"))
    # Enrolling again replaces, --append adds.
    assert (
        cli(
            cfg, "enroll", "--staff-id", "s001", "--name", "奥巴马", media.photo("obama2.jpg")
        ).returncode
        == 0
    )
    assert people(data) == [("s001", "奥巴马", 1)]
    r = cli(
        cfg,
        "enroll",
        "--append",
        "--staff-id",
        "s001",
        "--name",
        "奥巴马",
        media.photo("obama.jpg"),
    )
    assert r.returncode == 0 and people(data) == [("s001", "奥巴马", 2)]
    listed = cli(cfg, "gallery", "list", "--json")
    assert json.loads(listed.stdout) == [
        {"staff_id": "s001", "name": "奥巴马", "encodings": 2, "role": None}
    ]


def test_enroll_refuses_bad_photos_with_the_reason(kiosk, tmp_path) -> None:
    cfg, data = kiosk
    wall = tmp_path / "wall.png"
    cv2.imwrite(str(wall), np.full((480, 640, 3), 90, np.uint8))
    group = media.two_faces_photo(tmp_path / "group.jpg")
    img = media.load_bgr("obama.jpg")
    blurred = tmp_path / "blurred.jpg"
    cv2.imwrite(str(blurred), cv2.GaussianBlur(img, (0, 0), 6))
    tiny = tmp_path / "tiny.jpg"
    cv2.imwrite(str(tiny), cv2.resize(img, None, fx=0.22, fy=0.22, interpolation=cv2.INTER_AREA))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    r = cli(
        cfg,
        "enroll",
        "--staff-id",
        "s002",
        "--name",
        "X",
        media.photo("obama.jpg"),
        wall,
        group,
        blurred,
        tiny,
        broken,
    )
    assert r.returncode == 1
    assert f"{wall}: no face found" in r.stderr
    assert f"{group}: several faces in the photo (expected exactly one)" in r.stderr
    assert f"{blurred}: face too blurred" in r.stderr
    assert f"{tiny}: face too small" in r.stderr
    assert f"{broken}: not a readable image file" in r.stderr
    assert "s002: nothing stored" in r.stderr
    assert people(data) == []  # all or nothing: the one good photo was not stored either
    r = cli(cfg, "enroll", "--staff-id", "s002", "--name", "X", tmp_path / "missing.jpg")
    assert r.returncode == 2 and "photo not found" in r.stderr


def test_enroll_from_dir_with_progress(kiosk, tmp_path) -> None:
    cfg, data = kiosk
    root = tmp_path / "photos"
    for sid, names in {"s001": ["obama.jpg", "obama3.jpg"], "s002": ["biden.jpg"]}.items():
        (root / sid).mkdir(parents=True)
        for n in names:
            shutil.copy(media.photo(n), root / sid / n)
    (root / "s003").mkdir()
    cv2.imwrite(str(root / "s003" / "wall.jpg"), np.full((200, 200, 3), 90, np.uint8))
    (root / "notes.txt").write_text("ignored: not a folder")
    r = cli(cfg, "enroll", "--from-dir", root)
    assert r.returncode == 1, r.stderr
    assert "[##############################] 4/4" in r.stderr
    assert "refused s003" in r.stderr and "1 of 3 people refused" in r.stderr
    assert people(data) == [("s001", "s001", 2), ("s002", "s002", 1)]
    assert "enrolled s001: 2 encodings" in r.stdout  # no name given: the id once
    r = cli(cfg, "gallery", "list")
    assert r.returncode == 0, r.stderr
    # No name and no roster: the id once, "-" for the name (it used to print the id twice).
    assert r.stdout.splitlines() == [
        "s001\t-\t2 encodings\t-",
        "s002\t-\t1 encodings\t-",
        "2 people, 3 encodings",
    ]
    listed = json.loads(cli(cfg, "gallery", "list", "--json").stdout)
    assert [(p["staff_id"], p["name"]) for p in listed] == [("s001", None), ("s002", None)]
    # Once the roster names them, the list shows the roster's name.
    staff = [{"id": "s001", "name": "张敏", "role": "staff"}, {"id": "s002", "name": "王芳"}]
    roster = {"v": 1, "version": 1, "staff": [staff[0], {**staff[1], "role": "chief"}]}
    (data / "roster.json").write_text(json.dumps(roster, ensure_ascii=False), encoding="utf-8")
    r = cli(cfg, "gallery", "list")
    assert r.stdout.splitlines()[:2] == [
        "s001\t张敏\t2 encodings\tstaff",
        "s002\t王芳\t1 encodings\tchief",
    ]
    (data / "roster.json").unlink()
    r = cli(cfg, "gallery", "remove", "s002")
    assert r.returncode == 0 and people(data) == [("s001", "s001", 2)]
    r = cli(cfg, "gallery", "remove", "s002")
    assert r.returncode == 1 and "s002 is not enrolled" in r.stderr


def test_roster_limits_enrolment_and_prunes_leavers(kiosk) -> None:
    cfg, data = kiosk
    assert (
        cli(cfg, "enroll", "--staff-id", "s001", "--name", "A", media.photo("obama.jpg")).returncode
        == 0
    )
    assert (
        cli(cfg, "enroll", "--staff-id", "s002", "--name", "B", media.photo("biden.jpg")).returncode
        == 0
    )
    roster = {
        "v": 1,
        "version": 3,
        "staff": [{"id": "s001", "name": "A", "role": "chief", "window": "A01"}],
    }
    (data / "roster.json").write_text(json.dumps(roster), encoding="utf-8")
    r = cli(cfg, "gallery", "list")
    assert r.returncode == 0
    assert "removed s002: no longer in the roster" in r.stdout
    assert "s001\tA\t1 encodings\tchief" in r.stdout
    assert people(data) == [("s001", "A", 1)]
    r = cli(cfg, "enroll", "--staff-id", "s002", "--name", "B", media.photo("biden.jpg"))
    assert r.returncode == 1 and "s002 is not in the roster" in r.stderr
    (data / "roster.json").write_text("{broken", encoding="utf-8")
    # A damaged roster counts as none (logged), like agent.link.downlink.load_roster: nothing is
    # pruned and the kiosk keeps working.
    r = cli(cfg, "gallery", "list")
    assert r.returncode == 0 and "unreadable" in r.stderr and "ignoring it" in r.stderr
    assert people(data) == [("s001", "A", 1)]


def test_enroll_into_a_damaged_gallery_is_a_clear_one_line_error(kiosk) -> None:
    cfg, data = kiosk
    gallery_path(data).parent.mkdir(parents=True)
    gallery_path(data).write_bytes(b"")  # e.g. the disk filled up during a save
    r = cli(cfg, "enroll", "--staff-id", "s001", "--name", "A", media.photo("obama.jpg"))
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if "not a readable gallery file" in ln]
    assert len(lines) == 1 and "nothing stored" in lines[0]
    assert gallery_path(data).read_bytes() == b""  # left for the technician to look at


def test_enroll_needs_a_kiosk_config(tmp_path, write_config) -> None:
    cfg = write_config(
        f"""
        [device]
        id = "win-01"
        site = "jiedong"
        data_dir = "{tmp_path}"
        """
    )
    r = cli(cfg, "enroll", "--staff-id", "s1", "--name", "A", tmp_path / "x.jpg")
    assert r.returncode == 2 and "no [attendance] section" in r.stderr
    r = cli(cfg, "enroll")
    assert r.returncode == 2


@pytest.mark.parametrize("recognizer", ["sface", "dlib"])
def test_enrolment_encodes_with_the_kiosks_engine(
    recognizer, tmp_path, write_config, monkeypatch, capsys
) -> None:
    """Enrolment builds its engine with the kiosk's factory from the same [attendance]
    section: an option the kiosk honours (here the blink check's 68-point landmarks) is not
    dropped for enrolment. Engines are stand-ins: only what they are built with matters."""
    import drivers.faces
    import drivers.faces_sface
    from agent.cli import build_parser, cmd_enroll
    from agent.config import load_agent_config
    from agent.kiosk.recognition import build_engine
    from drivers.faces import EngineParams

    built: list[tuple[str, EngineParams]] = []
    used: list[object] = []

    class Stand:
        def __init__(self, params: EngineParams, models_dir: Path | None = None) -> None:
            built.append((type(self).__name__, params))

        def encode_photo(self, image):
            used.append(self)
            return [], None, "no_face"

    class Dlib(Stand): ...

    class Sface(Stand): ...

    monkeypatch.setattr(drivers.faces, "DlibFaceEngine", Dlib)
    monkeypatch.setattr(drivers.faces_sface, "SfaceFaceEngine", Sface)
    photo = tmp_path / "p.png"
    cv2.imwrite(str(photo), np.zeros((8, 8, 3), np.uint8))
    path = write_config(
        f"""
        [device]
        id = "kiosk-01"
        site = "jiedong"
        data_dir = "{tmp_path / "data"}"

        [attendance]
        camera = "0"
        recognizer = "{recognizer}"
        liveness = "blink"
        """
    )
    args = build_parser().parse_args(["-c", str(path), "enroll", "--staff-id", "s1", str(photo)])
    assert cmd_enroll(args) == 1  # the stand-in finds no face: nothing stored
    assert "no face found" in capsys.readouterr().err
    enrolment = built.pop()
    assert used and type(used[0]).__name__ == enrolment[0]  # the photo went through it
    attendance = load_agent_config(path).attendance
    assert attendance is not None
    build_engine(attendance)  # the recognition process's engine, from the same section
    kiosk = built.pop()
    assert enrolment == kiosk and kiosk[0] == recognizer.capitalize()
    assert kiosk[1].landmarks68


# --- enrolment from the kiosk's own camera (a video file stands in for it) ---------------


def camera_kiosk(tmp_path: Path, write_config, video: Path, listen: str = "") -> tuple[Path, Path]:
    data = tmp_path / "cam-data"
    cfg = write_config(
        f"""
        [device]
        id = "kiosk-01"
        site = "jiedong"
        data_dir = "{data}"

        [attendance]
        camera = "{video}"
        [screen]
        listen = "{listen}"
        """
    )
    return cfg, data


def test_enroll_from_the_camera_keeps_encodings_only(tmp_path, write_config) -> None:
    from tests.media import Actor

    # Someone in front of the camera, swaying a little, for long enough for the three poses.
    video = media.cached_video("enrol-camera", [Actor("obama2.jpg", 0.0, 20.0)], 20.0)
    cfg, data = camera_kiosk(tmp_path, write_config, video)
    r = cli(cfg, "enroll", "--staff-id", "s001", "--name", "奥巴马", "--camera")
    assert r.returncode == 0, r.stderr
    assert "look straight into the camera" in r.stderr
    assert "turn the head a little to the left" in r.stderr
    assert "enrolled s001 (奥巴马): 6 encodings" in r.stdout
    assert people(data) == [("s001", "奥巴马", 6)]
    files = sorted(p.relative_to(data).as_posix() for p in data.rglob("*") if p.is_file())
    assert files == ["gallery/.lock", "gallery/gallery.npz"]  # no frame was written
    # The encodings recognise the person in another photo of him.
    gallery = Gallery.load(gallery_path(data))
    rule = AttendanceSection(camera="t").rule()  # the shipped recognizer's, as enrolment's
    assert (
        gallery.match(media.photo_encoding("obama.jpg"), rule.tolerance, rule.margin).staff_id
        == "s001"
    )


def test_enroll_from_a_camera_without_a_face_stores_nothing(tmp_path, write_config) -> None:
    video = media.empty_video((640, 480), 3.0)
    cfg, data = camera_kiosk(tmp_path, write_config, video)
    r = cli(cfg, "enroll", "--staff-id", "s001", "--camera")
    assert r.returncode == 1
    assert "refused s001" in r.stderr and "nothing stored" in r.stderr
    assert not gallery_path(data).exists()


def test_enroll_from_the_camera_guides_on_the_kiosk_page(tmp_path, write_config) -> None:
    """The prompts and the preview are served on [screen] listen while enrolment runs."""
    import asyncio

    import aiohttp

    from tests.media import Actor
    from tests.support import free_port

    video = media.cached_video("enrol-camera", [Actor("obama2.jpg", 0.0, 20.0)], 20.0)
    port = free_port()
    cfg, data = camera_kiosk(tmp_path, write_config, video, listen=f"127.0.0.1:{port}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "-c", str(cfg), "enroll", "--staff-id", "s001",
         "--name", "奥巴马", "--camera"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip

    async def watch() -> tuple[list[dict], bytes]:
        prompts: list[dict] = []
        async with aiohttp.ClientSession() as http:
            for _ in range(300):  # until the command serves the page
                try:
                    async with http.get(f"http://127.0.0.1:{port}/preview.mjpg") as r:
                        head = await r.content.read(64)
                    break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            else:
                raise AssertionError("the enrolment never served the page")
            async with http.get(f"http://127.0.0.1:{port}/events") as r:
                async for line in r.content:
                    if line.startswith(b"data: "):
                        msg = json.loads(line[6:])
                        if msg.get("type") == "guide":
                            prompts.append(msg)
                            if msg["title"] == "录入完成":
                                break
        return prompts, head

    try:
        prompts, head = asyncio.run(asyncio.wait_for(watch(), 240))
        _out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert head.startswith(b"--hallframe")  # the MJPEG preview, from memory
    titles = [p["title"] for p in prompts]
    assert "请把头稍向右转" in titles and titles[-1] == "录入完成"
    assert people(data) == [("s001", "奥巴马", 6)]
    assert sorted(p.name for p in data.rglob("*") if p.is_file()) == [".lock", "gallery.npz"]
