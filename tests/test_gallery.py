"""agent/kiosk/gallery.py: matrix matching with tolerance and margin, voting, storage."""

from __future__ import annotations

import os
import stat
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import AttendanceSection
from agent.kiosk.gallery import (
    Gallery,
    GalleryError,
    GalleryModelError,
    Match,
    Vote,
    gallery_path,
    locked,
)
from tests import media


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, 128)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True) * 0.6


def test_distances_equal_the_plain_euclidean_ones() -> None:
    rng = np.random.default_rng(1)
    enc = unit(rng, 50)
    g = Gallery.from_arrays(enc, [f"p{i % 7}" for i in range(50)])
    q = unit(rng, 1)[0]
    # The gallery reorders rows by person; compare as multisets per person.
    want = np.linalg.norm(enc - q, axis=1)
    got = g.distances(q)
    assert np.allclose(np.sort(got), np.sort(want), atol=1e-4)


@settings(max_examples=60, deadline=None)
@given(
    owners=st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=30),
    seed=st.integers(0, 2**16),
    tol=st.floats(0.1, 1.2),
    margin=st.floats(0.0, 0.3),
)
def test_match_agrees_with_brute_force(owners, seed, tol, margin) -> None:
    rng = np.random.default_rng(seed)
    enc = unit(rng, len(owners))
    q = enc[0] + rng.normal(scale=0.05, size=128).astype(np.float32)
    g = Gallery.from_arrays(enc, owners)
    m = g.match(q, tol, margin)
    d = np.linalg.norm(enc - q, axis=1)
    best = int(np.argmin(d))
    others = [d[i] for i in range(len(owners)) if owners[i] != owners[best]]
    second = min(others) if others else None
    assert m.nearest_id == owners[best]
    assert m.distance == pytest.approx(d[best], abs=1e-4)
    if second is None:
        assert m.second is None
    else:
        assert m.second == pytest.approx(second, abs=1e-4)
    ok = d[best] <= tol and (second is None or second - d[best] >= margin)
    # Rounding at the thresholds aside, acceptance follows the rule exactly.
    if abs(d[best] - tol) > 1e-4 and (second is None or abs(second - d[best] - margin) > 1e-4):
        assert (m.staff_id == owners[best]) == ok


def test_margin_rejects_a_face_between_two_people() -> None:
    rng = np.random.default_rng(3)
    a = unit(rng, 1)[0]
    b = a.copy()
    b[:4] += 0.08  # a look-alike, close to a
    g = Gallery.from_arrays(np.vstack([a, b]), ["alice", "bella"])
    q = a + (b - a) * 0.4
    assert g.match(q, 0.5, 0.0).staff_id == "alice"
    m = g.match(q, 0.5, 0.06)
    assert m.staff_id is None and m.nearest_id == "alice"
    assert m.second is not None and m.second - m.distance < 0.06


def test_tolerance_rejects_a_far_face() -> None:
    rng = np.random.default_rng(4)
    g = Gallery.from_arrays(unit(rng, 3), ["x", "x", "y"])
    far = unit(rng, 1)[0] * 2
    m = g.match(far, 0.5, 0.06)
    assert m.staff_id is None and m.distance is not None and m.distance > 0.5
    assert Gallery().match(far, 0.5, 0.06) == Match(None, None, None, None)


def test_real_photos_match_the_right_person() -> None:
    media.require_photos()
    rule = AttendanceSection(camera="t").rule()  # the shipped recognizer's calibrated rule
    tol, margin = rule.tolerance, rule.margin
    g = media.gallery_of("obama")
    m = g.match(media.photo_encoding("obama2.jpg"), tol, margin)  # not used for enrolment
    assert m.staff_id == "obama" and m.distance is not None and m.distance < tol
    unknown = g.match(media.photo_encoding("biden.jpg"), tol, margin)
    assert unknown.staff_id is None and unknown.distance is not None
    assert unknown.distance > tol + margin
    both = media.gallery_of("obama", "biden")
    m = both.match(media.photo_encoding("obama2.jpg"), tol, margin)
    assert m.staff_id == "obama" and m.second is not None and m.second - m.distance > margin


def test_vote_needs_agreeing_frames() -> None:
    v = Vote(3)
    alice = Match("alice", 0.3, 0.8, "alice")
    unknown = Match(None, 0.7, 0.9, "bob")
    v.add(alice)
    v.add(unknown)
    v.add(alice)
    assert v.decision() == (None, False)
    v.add(alice)
    assert v.decision() == ("alice", True)
    assert v.distance("alice") == pytest.approx(0.3)
    for _ in range(3):
        v.add(unknown)
    assert v.decision() == (None, True)  # the window (5 votes) now holds 3 unknowns


def test_add_remove_people() -> None:
    rng = np.random.default_rng(5)
    g = Gallery()
    g.add("s2", "李四", unit(rng, 2))
    g.add("s1", "张三", unit(rng, 3))
    g.add("s2", "李四", unit(rng, 1))
    assert [(p.staff_id, p.name, p.encodings) for p in g.people()] == [
        ("s1", "张三", 3),
        ("s2", "李四", 3),
    ]
    assert g.remove(["s2", "nobody"]) == ["s2"]
    assert [p.staff_id for p in g.people()] == ["s1"] and g.rows == 3


def test_storage_holds_encodings_only(tmp_path) -> None:
    rng = np.random.default_rng(6)
    g = Gallery.from_arrays(unit(rng, 4), ["s1", "s1", "s2", "s2"], {"s1": "张三", "s2": "李四"})
    path = gallery_path(tmp_path)
    g.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with zipfile.ZipFile(path) as z:
        assert sorted(z.namelist()) == [
            "encodings.npy",
            "ids.npy",
            "model.npy",
            "names.npy",
            "owners.npy",
            "version.npy",
        ]
    back = Gallery.load(path)
    assert [(p.staff_id, p.name, p.encodings) for p in back.people()] == [
        ("s1", "张三", 2),
        ("s2", "李四", 2),
    ]
    q = unit(rng, 1)[0]
    assert np.allclose(np.sort(back.distances(q)), np.sort(g.distances(q)))
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_damaged_file_is_a_clear_error(tmp_path) -> None:
    path = gallery_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a gallery")
    with pytest.raises(GalleryError, match="not a readable gallery file"):
        Gallery.load(path)
    assert len(Gallery.load(tmp_path / "missing.npz")) == 0


@pytest.mark.parametrize("damage", ["empty", "pk-junk", "half", "tail-cut", "zeros"])
def test_every_kind_of_damage_is_a_gallery_error(tmp_path, damage) -> None:
    # An empty file raised EOFError, a truncated one BadZipFile, which
    # no caller expected, so the recognition process died and was respawned in a loop.
    path = gallery_path(tmp_path)
    Gallery.from_arrays(unit(np.random.default_rng(1), 3), ["a", "a", "b"]).save(path)
    blob = path.read_bytes()
    damaged = {
        "empty": b"",
        "pk-junk": b"PK\x03\x04 junk",
        "half": blob[: len(blob) // 2],
        "tail-cut": blob[:-10],
        "zeros": b"\x00" * 100,
    }[damage]
    path.write_bytes(damaged)
    with pytest.raises(GalleryError, match="not a readable gallery file"):
        Gallery.load(path)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can hand files to another user")
def test_root_hands_new_gallery_files_to_the_data_dir_owner(tmp_path) -> None:
    # `sudo hall-agent enroll` left root-owned 0700/0600 files that the
    # agent (user hall-agent, owner of data_dir) could not read.
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, 12345, 12346)
    with locked(data) as path:
        Gallery.from_arrays(unit(np.random.default_rng(2), 2), ["a", "b"]).save(path)
    for p in (path.parent, path, path.parent / ".lock"):
        st_ = p.stat()
        assert (st_.st_uid, st_.st_gid) == (12345, 12346), p
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # still private to that owner


def test_save_fsyncs_the_directory_after_the_rename(tmp_path, monkeypatch) -> None:
    # Without it a power cut right after enrolment can bring the old
    # gallery back (the rename lives in the directory).
    import agent.kiosk.gallery

    synced: list[bool] = []
    real = os.fsync

    def spy(fd: int) -> None:
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real(fd)

    monkeypatch.setattr(agent.kiosk.gallery.os, "fsync", spy)
    Gallery.from_arrays(unit(np.random.default_rng(3), 2), ["a", "b"]).save(gallery_path(tmp_path))
    assert synced == [False, True]  # the file's data, then the directory entry


def test_gallery_records_its_model_and_refuses_another(tmp_path) -> None:
    rng = np.random.default_rng(8)
    path = gallery_path(tmp_path)
    g = Gallery()
    g.add("s1", "张三", unit(rng, 3), model="sface-2021dec")
    g.save(path)
    loaded = Gallery.load(path)
    assert loaded.model == "sface-2021dec"
    with pytest.raises(GalleryModelError) as err:
        loaded.add("s2", "李四", unit(rng, 3), model="dlib-resnet-v1")
    # The message says what happened and how to re-enrol, with the old model's name.
    assert "sface-2021dec" in str(err.value) and "hall-agent gallery reset" in str(err.value)
    assert 'recognizer = "sface"' in str(err.value)
    assert [p.staff_id for p in loaded.people()] == ["s1"]  # nothing half-added


def test_a_gallery_without_a_model_was_made_by_dlib(tmp_path) -> None:
    """Galleries written before the model was recorded hold dlib encodings."""
    rng = np.random.default_rng(9)
    path = gallery_path(tmp_path)
    path.parent.mkdir(parents=True)
    with path.open("wb") as f:
        np.savez(
            f,
            encodings=unit(rng, 2),
            owners=np.asarray(["s1", "s1"]),
            ids=np.asarray(["s1"]),
            names=np.asarray(["张三"]),
            version=np.int32(1),
        )
    assert Gallery.load(path).model == "dlib-resnet-v1"
    assert Gallery.load(tmp_path / "none.npz").model is None  # nobody enrolled: no model yet
