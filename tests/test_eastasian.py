"""The East Asian evaluation set is intact: vendored, pinned, large enough (tests/eastasian.py)."""

from __future__ import annotations

import shutil

from tests import eastasian as ea


def test_the_vendored_set_matches_its_pins_and_a_changed_photo_is_named(tmp_path):
    assert ea.problems() == []
    people = ea.people()
    assert len(people) >= 30 and min(len(files) for files in people.values()) >= 3
    # One public set is kept aside to accept this work: nothing may come from it.
    assert "Asian_faces" not in ea.manifest()["source"]["repository"]
    enrolled, strangers = ea.split()
    assert not set(enrolled) & set(strangers) and len(enrolled) + len(strangers) == len(people)

    copy = tmp_path / "east_asian"
    shutil.copytree(ea.DATA, copy)
    victim = ea.photos()[5].file
    data = bytearray((copy / victim).read_bytes())
    data[-3] ^= 0xFF
    (copy / victim).write_bytes(bytes(data))
    (copy / ea.photos()[9].file).unlink()
    found = ea.problems(copy)
    assert len(found) == 2
    assert victim in found[0] and ea.photos()[5].sha256 in found[0]
    assert ea.photos()[9].file in found[1] and "missing" in found[1]
