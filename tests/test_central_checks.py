"""``hall-central check``: store, broker and ACL, against a real Mosquitto set up as shipped (docs/broker.md)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_or_skip
from tests.support import PG_URL, HallBroker, Mosquitto, pg_available, pg_schema

REPO = Path(__file__).resolve().parents[1]


def hall_central(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "central.cli", "-c", str(config), "check", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def acl_broker(tmp_path):
    """The shipped broker setup (config/mosquitto.conf, scripts/hall-broker.sh, docs/broker.md)
    with one device and the collector's account."""
    with HallBroker(tmp_path / "acl-broker") as broker:
        broker.add_device("jiedong", "pad-a03", "pw-a03")
        broker.add_collector("hall-central", "pw-central")
        yield broker


def central_toml(tmp_path: Path, url: str, user: str, password: str, store: str = "") -> Path:
    secret = tmp_path / f"{user}.pass"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    store = store or f'url = "sqlite:///{tmp_path}/hall.db"'
    path = tmp_path / f"central-{user}.toml"
    path.write_text(
        f'[mqtt]\nurl = "{url}"\nusername = "{user}"\npassword_file = "{secret}"\n'
        f"[store]\n{store}\n"
    )
    return path


def lines(output: str, name: str) -> list[str]:
    return [line for line in output.splitlines() if f"] {name}" in line]


def retained_status(broker: Mosquitto) -> None:
    """A device's retained status, as its uplink publishes it (via mosquitto_pub, a peer)."""
    subprocess.run(
        [
            "mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-u", "pad-a03",
            "-P", "pw-a03", "-V", "5", "-q", "1", "-r", "-t", "hall/jiedong/pad-a03/status",
            "-m", '{"v":1,"state":"online"}',
        ],
        check=True,
        timeout=10,
    )  # fmt: skip


def test_collector_credentials_pass_every_probe(tmp_path, acl_broker):
    retained_status(acl_broker)
    db = tmp_path / "hall.db"
    sqlite3.connect(db).close()  # an existing (empty) store: opened and migrated
    cfg = central_toml(tmp_path, acl_broker.url, "hall-central", "pw-central")
    result = hall_central(cfg)
    assert result.returncode == 0, result.stdout + result.stderr
    store = lines(result.stdout, "store")[0]
    assert "(current), writable, 0 events" in store
    assert lines(result.stdout, "broker")[0].startswith("[ ok ]")
    acl = lines(result.stdout, "acl")
    assert len(acl) == 5, result.stdout
    assert acl[0].startswith("[WARN] acl subscribe $share/hall-central/hall/+/+/events: granted")
    assert acl[1] == "[ ok ] acl subscribe hall/+/+/status: read: 1 messages arrived"
    assert acl[2] == "[ ok ] acl publish hall/hall-central-check/check/ack: allowed"
    assert acl[3] == "[ ok ] acl publish hall/hall-central-check/roster: allowed"
    assert acl[4] == "[ ok ] acl publish hall/hall-central-check/schedule: allowed"
    # No schedule recorded yet in a new store: said, not failed (the collector records one).
    [schedule] = lines(result.stdout, "schedule")
    assert schedule.startswith("[WARN]") and "no version recorded" in schedule
    # The probe's write was rolled back: nothing left in the store.
    assert sqlite3.connect(db).execute("SELECT count(*) FROM rejected").fetchone() == (0,)


def test_a_device_account_fails_the_acl_probe(tmp_path, acl_broker):
    retained_status(acl_broker)
    cfg = central_toml(tmp_path, acl_broker.url, "pad-a03", "pw-a03")
    result = hall_central(cfg, "--only", "broker,acl")
    assert result.returncode == 1
    acl = {line.split("]")[1].split(":")[0].strip(): line for line in lines(result.stdout, "acl")}
    # The broker's dynamic-security roles refuse the subscriptions outright (docs/broker.md):
    # a device may neither read other devices' status nor join the collector's group.
    status = acl["acl subscribe hall/+/+/status"]
    assert status.startswith("[FAIL]") and "refused" in status and "pad-a03" in status
    shared = acl["acl subscribe $share/hall-central/hall/+/+/events"]
    assert shared.startswith("[FAIL]") and "refused" in shared
    assert acl["acl publish hall/hall-central-check/check/ack"].startswith("[FAIL]")
    assert "Not authorized" in acl["acl publish hall/hall-central-check/roster"]
    assert "Not authorized" in acl["acl publish hall/hall-central-check/schedule"]


def test_wrong_password_is_auth_failed_and_skips_the_acl(tmp_path, acl_broker):
    cfg = central_toml(tmp_path, acl_broker.url, "hall-central", "not-it")
    result = hall_central(cfg, "--only", "broker,acl")
    assert result.returncode == 1
    broker = lines(result.stdout, "broker")[0]
    assert broker.startswith("[FAIL] broker: auth failed:")
    # The collector's account in the broker's dynamic-security plugin (docs/broker.md).
    assert "`scripts/hall-broker.sh set-password hall-central FILE` if the account exists" in broker
    assert "`scripts/hall-broker.sh add-collector hall-central FILE` if it does not" in broker
    assert lines(result.stdout, "acl")[0] == "[FAIL] acl: skipped: the broker probe failed"
    acl_broker.script("set-password", "hall-central", str(tmp_path / "hall-central.pass"))
    result = hall_central(cfg, "--only", "broker")
    assert result.returncode == 0 and lines(result.stdout, "broker")[0].startswith("[ ok ]")


def test_store_newer_than_the_program_fails(tmp_path):
    db = tmp_path / "hall.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version = 99")  # written by a newer hall-central
    cfg = central_toml(tmp_path, "mqtt://127.0.0.1:1", "hall-central", "x")
    result = hall_central(cfg, "--only", "store")
    assert result.returncode == 1
    line = lines(result.stdout, "store")[0]
    assert line.startswith("[FAIL] store:") and "schema version 99 is newer" in line


def test_missing_sqlite_file_is_not_created_by_root(tmp_path):
    cfg = central_toml(tmp_path, "mqtt://127.0.0.1:1", "hall-central", "x")
    result = hall_central(cfg, "--only", "store")
    line = lines(result.stdout, "store")[0]
    if os.geteuid() == 0:
        assert line.startswith("[WARN]") and "does not exist yet" in line
        assert not (tmp_path / "hall.db").exists()
    else:
        assert line.startswith("[ ok ]") and "(current), writable" in line


def test_postgresql_store(tmp_path, acl_broker):
    if not pg_available():
        require_or_skip(f"PostgreSQL not reachable at {PG_URL}")
    with pg_schema() as schema:
        store = f'url = "{PG_URL}"\npg_schema = "{schema}"'
        cfg = central_toml(tmp_path, acl_broker.url, "hall-central", "pw-central", store)
        result = hall_central(cfg, "--only", "store")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "(current), writable, 0 events" in lines(result.stdout, "store")[0]
