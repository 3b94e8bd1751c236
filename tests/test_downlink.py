"""agent/link/downlink.py: roster validation and storage; end to end from ``hall-central roster
publish`` through a real broker to ``<data_dir>/roster.json``."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.link.downlink import RosterKeeper
from agent.link.uplink import Uplink
from agent.outbox import Outbox
from agent.roster import load_roster
from contract import RosterError, parse_roster, validate_roster
from tests.conftest import skip_unless
from tests.support import Mosquitto, agent_config, mosquitto_pub, wait_for

REPO = Path(__file__).resolve().parents[1]

ROSTER = {
    "v": 1,
    "version": 3,
    "staff": [
        {"id": "S0012", "name": "张敏", "role": "staff", "window": "A03"},
        {"id": "S0001", "name": "李强", "role": "chief", "window": None},
    ],
}


def payload(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


def test_valid_roster_passes():
    assert validate_roster(json.loads(payload(ROSTER))) == ROSTER


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: r.update(v=2), "v: expected 1"),
        (lambda r: r.update(version="3"), "version"),
        (lambda r: r.update(staff={}), "staff: expected a list"),
        (lambda r: r.update(extra=1), "unknown key"),
        (lambda r: r["staff"][0].update(encoding=[0.1] * 128), "no biometric data"),
        (lambda r: r["staff"][0].update(role="boss"), "staff[1].role"),
        (lambda r: r["staff"][1].update(id="S0012"), "appears twice"),
        (lambda r: r["staff"][1].update(name=""), "staff[2].name"),
        (lambda r: r["staff"][0].update(window="A 03"), "staff[1].window"),
        (lambda r: r["staff"][0].update(id="../etc"), "staff[1].id"),
    ],
)
def test_invalid_rosters_say_where_and_why(mutate, message):
    bad = json.loads(payload(ROSTER))
    mutate(bad)
    with pytest.raises(RosterError, match=message.replace("[", r"\[").replace("]", r"\]")):
        validate_roster(bad)


def test_parse_rejects_non_json():
    with pytest.raises(RosterError, match="not JSON"):
        parse_roster(b"\xff{")


def test_keeper_stores_atomically_and_keeps_last_good(tmp_path):
    keeper = RosterKeeper(tmp_path)
    assert load_roster(tmp_path) is None
    assert keeper.handle(payload(ROSTER))
    stored = (tmp_path / "roster.json").read_text(encoding="utf-8")
    assert json.loads(stored) == ROSTER  # exactly the docs/topics.md payload format
    assert load_roster(tmp_path) == ROSTER
    assert not keeper.handle(payload(ROSTER))  # the same retained roster after a reconnect

    bad = json.loads(payload(ROSTER))
    bad["staff"][0]["face"] = "base64…"
    assert not keeper.handle(payload(bad))
    assert not keeper.handle(b"{ broken")
    assert not keeper.handle(b"")  # retained roster cleared: keep what we have
    assert load_roster(tmp_path) == ROSTER
    assert "biometric" in (keeper.last_error or "") or "JSON" in (keeper.last_error or "")

    newer = dict(ROSTER, version=4, staff=ROSTER["staff"][:1])
    assert keeper.handle(payload(newer))
    assert load_roster(tmp_path) == newer and keeper.last_error is None
    assert not list(tmp_path.glob(".roster-*"))  # no temp files left behind


def test_keeper_log_lines(tmp_path, caplog):
    """The texts technicians grep the journal for (one base with the schedule's keeper)."""
    caplog.set_level("INFO", logger="agent.link.downlink")
    keeper = RosterKeeper(tmp_path)
    keeper.handle(payload(ROSTER))
    keeper.handle(payload(dict(ROSTER, version=2)))
    keeper.handle(payload(dict(ROSTER, v=2)))
    assert [r.getMessage() for r in caplog.records] == [
        "roster version 3 stored (2 staff)",
        "roster version went back from 3 to 2",
        "roster version 2 stored (2 staff)",
        "roster refused: v: expected 1, got 2; keeping version 2",
    ]


def test_load_roster_treats_damaged_file_as_absent(tmp_path):
    (tmp_path / "roster.json").write_text("{ half a file")
    assert load_roster(tmp_path) is None
    keeper = RosterKeeper(tmp_path)  # and the keeper starts anyway
    assert keeper.version is None


def test_roster_module_does_not_import_paho():
    code = "import sys, agent.link.downlink; print('paho' in ' '.join(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"


@skip_unless(shutil.which("mosquitto_pub") is not None, "needs mosquitto_pub")
def test_roster_publish_reaches_the_device_and_bad_one_is_ignored(tmp_path):
    with Mosquitto(tmp_path / "broker") as broker:
        conf = tmp_path / "central.toml"
        conf.write_text(
            f'[mqtt]\nurl = "{broker.url}"\n[store]\nurl = "sqlite:///{tmp_path}/hall.db"\n'
        )
        roster_file = tmp_path / "roster.json"
        roster_file.write_text(json.dumps(ROSTER, ensure_ascii=False), encoding="utf-8")
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "central.cli",
                "-c",
                str(conf),
                "roster",
                "publish",
                str(roster_file),
                "--site",
                "jiedong",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert r.returncode == 0, r.stderr
        assert "retained on hall/jiedong/roster" in r.stdout

        # The device connects later and still gets it: the roster is retained.
        cfg = agent_config(tmp_path / "data", broker.url)
        box = Outbox.for_config(cfg, clock=lambda: "synced")
        up = Uplink(cfg, box)
        up.start()
        try:
            assert wait_for(lambda: load_roster(tmp_path / "data") == ROSTER, 10)
            bad = dict(ROSTER, version=5, staff=[{"id": "S9", "name": "x", "role": "intern"}])
            mosquitto_pub(broker.port, "hall/jiedong/roster", json.dumps(bad), retain=True)
            assert wait_for(lambda: "roster" in up.health(), 10)
            assert "staff[1].role" in up.health()["roster"]
            assert load_roster(tmp_path / "data") == ROSTER
        finally:
            up.stop()
            box.close()


def test_roster_publish_refuses_an_invalid_file(tmp_path):
    conf = tmp_path / "central.toml"
    conf.write_text('[mqtt]\nurl = "mqtt://127.0.0.1:1"\n')
    bad = tmp_path / "roster.json"
    bad.write_text(json.dumps({"v": 1, "version": 1, "staff": [{"id": "S1"}]}))
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "central.cli",
            "-c",
            str(conf),
            "roster",
            "publish",
            str(bad),
            "--site",
            "jiedong",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2
    assert "staff[1].name" in r.stderr and str(bad) in r.stderr


def test_keeper_survives_a_roster_it_cannot_write(tmp_path):
    """A write error (ENOSPC, EROFS, EACCES) is kept for status, never raised."""
    (tmp_path / "roster.json").mkdir()  # stands in for a disk that refuses the file
    keeper = RosterKeeper(tmp_path)
    assert not keeper.handle(payload(ROSTER))
    assert "not stored" in keeper.last_error and "roster.json" in keeper.last_error
    assert keeper.version is None
    assert not list(tmp_path.glob(".roster-*"))  # no temp file left behind
    (tmp_path / "roster.json").rmdir()  # the disk is fine again: the next delivery is stored
    assert keeper.handle(payload(ROSTER))
    assert load_roster(tmp_path) == ROSTER and keeper.last_error is None


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"version": 2**63}, "version: expected an integer from 0 to 2^63-1"),
        (
            {"staff": [{"id": "S1", "name": "张\x00三", "role": "staff"}]},
            "staff[1].name: expected printable text",
        ),
        (
            {"staff": [{"id": "S1", "name": "\ud800", "role": "staff"}]},
            "staff[1].name: expected printable text",
        ),
    ],
)
def test_roster_values_no_store_can_hold_are_refused(change, where):
    with pytest.raises(RosterError, match=re.escape(where)):
        validate_roster({"v": 1, "version": 1, "staff": [], **change})
