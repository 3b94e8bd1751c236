"""Each device signs its history (docs/device-keys.md): the key files, keygen, lazy signing at
send time in the outbox, the device.key announcements, rotation, upgrade and gaps.

Real SQLite files, real Ed25519 keys, the real CLI in a subprocess; the end-to-end tests go
through a real Mosquitto and the real collector. Every chain is checked with
contract/chain.py's ``verify`` and ``digest``, under the key read from ``device.pub``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import agent.outbox
from agent.keys import DeviceKeyError, Keyring, fingerprint, load_key, public_key_text
from agent.link.lock import uplink_running
from agent.link.uplink import Uplink
from agent.outbox import Outbox
from agent.signing import RotationRefused, rotate, start_signing
from contract import chain
from tests.conftest import skip_unless
from tests.mqttkit import Peer
from tests.support import agent_config, wait_for

REPO = Path(__file__).resolve().parents[1]
HAVE_MOSQUITTO = shutil.which("mosquitto") is not None


def rating(level: int = 4) -> dict[str, Any]:
    return {
        "window": "A03",
        "pad": 1,
        "staff_id": "S0012",
        "level": level,
        "label": "满意",
        "reasons": [],
        "invite_id": None,
    }


def open_box(data: Path, **kw: Any) -> Outbox:
    kw.setdefault("min_free_bytes", 0)
    data.mkdir(parents=True, exist_ok=True)
    return Outbox(
        data / "outbox.db", device="pad-a03", site="jiedong", clock=lambda: "synced", **kw
    )


def pub_key(data: Path) -> Any:
    """The public key a technician copies: the one line of ``device.pub``."""
    return chain.public_key(base64.b64decode((data / "device.pub").read_text().strip()))


def send(box: Outbox, limit: int = 1000, after_seq: int = 0) -> list[dict[str, Any]]:
    """What the uplink would put on the wire now."""
    return [json.loads(p.body) for p in box.pending(limit, after_seq)]


def stored_bodies(box: Outbox) -> dict[int, str]:
    with box._lock:
        return dict(box._conn.execute("SELECT seq, body FROM outbox"))


def assert_links(events: list[dict[str, Any]], after: dict[str, Any] | None = None) -> None:
    """Each event's prev names the signed event before it (GENESIS for the first of a chain
    that starts here, ``after`` when it continues one)."""
    previous = chain.digest(after) if after is not None else chain.GENESIS
    for e in events:
        assert e["prev"] == previous, e["seq"]
        previous = chain.digest(e)


def conf_file(tmp_path: Path, url: str = "mqtt://127.0.0.1:1") -> Path:
    conf = tmp_path / "agent.toml"
    conf.write_text(
        f'[device]\nid = "pad-a03"\nsite = "jiedong"\ndata_dir = "{tmp_path / "data"}"\n'
        f'[mqtt]\nurl = "{url}"\n[sync]\nmin_free_mb = 0\nack_timeout_s = 2\n'
    )
    return conf


def hall_agent(conf: Path, *args: str, umask: int = 0o022) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "-c", str(conf), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HALL_AGENT_CLOCK": "synced"},
        preexec_fn=lambda: os.umask(umask),
    )


# --- the key files and keygen ----------------------------------------------------------------


def test_keygen_creates_the_key_once_and_prints_the_public_key_path(tmp_path):
    conf = conf_file(tmp_path)
    data = tmp_path / "data"
    first = hall_agent(conf, "keygen")  # a technician's umask of 022 must not matter
    assert first.returncode == 0, first.stderr
    assert first.stdout == f"{data / 'device.pub'}\n"
    key_bytes = (data / "device.key").read_bytes()
    assert (data / "device.key").stat().st_mode & 0o777 == 0o600
    assert (data / "device.pub").stat().st_mode & 0o777 == 0o644
    assert key_bytes.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted
    public = (data / "device.pub").read_text()
    assert public.endswith("\n") and len(public) == 45
    assert public_key_text(load_key(data / "device.key")) == public.strip()
    assert len(base64.b64decode(public.strip(), validate=True)) == 32
    assert f"{fingerprint(public.strip())} (new key {data / 'device.key'})" in first.stderr
    assert key_bytes.decode() not in first.stdout + first.stderr

    again = hall_agent(conf, "keygen")
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout
    assert "existing key" in again.stderr and fingerprint(public.strip()) in again.stderr
    assert (data / "device.key").read_bytes() == key_bytes
    # Every command tightens the data dir; the public key stays readable, the private private.
    assert hall_agent(conf, "check", "--only", "config").returncode == 0
    assert (data / "device.pub").stat().st_mode & 0o777 == 0o644
    assert (data / "device.key").stat().st_mode & 0o777 == 0o600


def test_the_fingerprint_is_sha256_of_the_raw_key_unpadded_like_ssh():
    import hashlib

    raw = bytes(range(32))
    text = base64.b64encode(raw).decode()
    digest = base64.b64encode(hashlib.sha256(raw).digest()).decode()
    assert fingerprint(text) == "SHA256:" + digest.rstrip("=")
    assert not fingerprint(text).endswith("=") and len(fingerprint(text)) == 7 + 43


def test_a_key_file_group_or_others_can_read_is_refused_with_the_fix(tmp_path):
    conf = conf_file(tmp_path)
    assert hall_agent(conf, "keygen").returncode == 0
    key = tmp_path / "data" / "device.key"
    key.chmod(0o640)
    r = hall_agent(conf, "keygen")
    assert r.returncode == 1
    assert f"device key {key}: mode 0640 lets group or others" in r.stderr
    assert f"chmod 600 {key}" in r.stderr and "Traceback" not in r.stderr
    with pytest.raises(DeviceKeyError, match="mode 0644"):
        key.chmod(0o644)
        load_key(key)


def _encrypted_pem() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )


def _rsa_pem() -> bytes:
    return rsa.generate_private_key(public_exponent=65537, key_size=1024).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.mark.parametrize(
    ("content", "what"),
    [
        (lambda: b"", "not a PEM private key"),
        (lambda: b"garbage\n", "not a PEM private key"),
        (lambda: b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "damaged PEM"),
        (_encrypted_pem, "encrypted with a password"),
        (_rsa_pem, "not an Ed25519 key (RSAPrivateKey)"),
    ],
)
def test_a_corrupt_key_file_says_what_where_and_what_was_expected(tmp_path, content, what):
    key = tmp_path / "device.key"
    data = content()
    key.write_bytes(data)
    key.chmod(0o600)
    with pytest.raises(DeviceKeyError) as caught:
        load_key(key)
    message = str(caught.value)
    assert message.startswith(f"device key {key}: {what}"), message
    assert "expected an unencrypted PKCS#8 PEM Ed25519 private key" in message
    if len(data) > 40:
        assert data.decode("ascii", "replace").splitlines()[1] not in message  # never the key


# --- signing at send time -----------------------------------------------------------------------


def test_append_never_signs_pending_signs_in_seq_order_and_the_chain_links(tmp_path):
    data = tmp_path / "data"
    box = open_box(data)
    keyring = Keyring(data)
    keyring.ensure()
    box.set_signer(keyring)
    box.append_many([("rating.submitted", rating(), None, None)] * 5)
    box.append("device.test", {"note": "ping 1/1"})
    box.append("window.login", {"window": "A03", "pad": 1, "staff_id": "S0012"})
    # append stays exactly what it was: nothing signed until the uplink asks.
    assert all('"sig"' not in body for body in stored_bodies(box).values())
    assert box.stats().unsigned == 7

    first = send(box, 3)  # the uplink's first batch: only those three are signed
    assert [e["seq"] for e in first] == [1, 2, 3]
    assert box.stats().unsigned == 4
    rest = send(box, 100, after_seq=3)
    events = first + rest
    assert [e["seq"] for e in events] == list(range(1, 8))
    key = pub_key(data)
    assert all(chain.verify(key, e) for e in events)
    assert_links(events)
    # What is sent is the canonical form, byte for byte, and stored so.
    for seq, body in stored_bodies(box).items():
        assert body.encode() == chain.canonical(json.loads(body)), seq
    # The byte count the size cap works from grew with the signatures.
    with box._lock:
        assert box._bytes == Outbox._count_bytes(box._conn)
    assert box.stats().unsigned == 0
    box.close()


def test_a_resend_sends_the_same_bytes_and_the_chain_survives_a_restart(tmp_path):
    data = tmp_path / "data"
    box = start_box(data)
    box.append_many([("rating.submitted", rating(), None, None)] * 4)
    sent = [p.body for p in box.pending(100)]
    assert [p.body for p in box.pending(100)] == sent  # a resend: the same bytes
    box.ack([json.loads(b)["id"] for b in sent[:2]])
    box.close()

    box = start_box(data)  # the agent restarted mid-chain
    assert [p.body for p in box.pending(100)] == sent[2:]  # not signed again
    box.append_many([("rating.submitted", rating(2), None, None)] * 2)
    more = send(box, 100, after_seq=json.loads(sent[-1])["seq"])
    assert_links(more, after=json.loads(sent[-1]))
    assert all(chain.verify(pub_key(data), e) for e in more)
    box.close()


def start_box(data: Path, **kw: Any) -> Outbox:
    """An outbox as ``hall-agent run`` opens it: key made if missing, announced, signer set."""
    box = open_box(data, **kw)
    start_signing(data, box, strict=True)
    return box


def test_no_signer_is_exactly_the_unsigned_behaviour(tmp_path):
    box = open_box(tmp_path / "data")
    made = box.append("device.test", {"note": "x"}).event
    [event] = send(box)
    assert event == made and "prev" not in event and "sig" not in event
    assert not (tmp_path / "data" / "device.key").exists()
    box.close()


def test_upgrade_from_a_v1_outbox_starts_the_chain_at_its_key_announcement(tmp_path):
    data = tmp_path / "data"
    box = open_box(data)
    ids = [box.append("rating.submitted", rating()).event["id"] for _ in range(4)]
    box.ack(ids[:1])  # seq 1 delivered before the upgrade
    box.close()
    # The same file as the unsigned agent left it: schema v1, no chain table.
    with sqlite3.connect(data / "outbox.db") as conn:
        conn.execute("DROP TABLE chain")
        conn.execute("PRAGMA user_version = 1")
    with sqlite3.connect(data / "outbox.db") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"meta", "outbox", "dead_letter", "dedupe"}

    box = start_box(data)  # the upgraded agent's `run`: a key is made and announced
    with sqlite3.connect(data / "outbox.db") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    events = send(box)
    assert [e["seq"] for e in events] == [2, 3, 4, 5]  # 5: the device.key announcement
    # Recorded before the device signed: they go out unsigned, and the chain begins with the
    # key that checks what follows, so the centre learns it first.
    assert not any("sig" in e or "prev" in e for e in events[:3])
    assert events[-1]["prev"] == chain.GENESIS
    assert chain.verify(pub_key(data), events[-1])
    assert events[-1]["type"] == "device.key"
    assert events[-1]["data"] == {"public_key": (data / "device.pub").read_text().strip()}
    box.close()


def test_upgrade_with_nothing_pending_starts_after_the_last_seq(tmp_path):
    data = tmp_path / "data"
    box = open_box(data)
    box.ack([box.append("device.test", {}).event["id"] for _ in range(3)])
    box.close()
    with sqlite3.connect(data / "outbox.db") as conn:
        conn.execute("DROP TABLE chain")
        conn.execute("PRAGMA user_version = 1")
    box = start_box(data)
    [announcement] = send(box)
    assert announcement["seq"] == 4 and announcement["prev"] == chain.GENESIS
    box.close()


def test_run_announces_a_new_key_once_self_signed(tmp_path):
    data = tmp_path / "data"
    box = start_box(data)
    box.close()
    box = start_box(data)  # restarted before anything was sent: no second announcement
    [announcement] = send(box)
    public = (data / "device.pub").read_text().strip()
    assert announcement["type"] == "device.key"
    assert announcement["data"]["public_key"] == public
    assert chain.verify(pub_key(data), announcement)  # the first one is self-signed
    assert box.chain_key() == public
    box.close()
    box = start_box(data)  # and not after it was signed either
    assert send(box) == [announcement]
    box.close()


def test_keygen_before_the_first_run_is_announced_by_run(tmp_path):
    conf = conf_file(tmp_path)
    data = tmp_path / "data"
    assert hall_agent(conf, "keygen").returncode == 0
    box = start_box(data)
    [announcement] = send(box)
    assert announcement["data"]["public_key"] == (data / "device.pub").read_text().strip()
    box.close()


def test_a_replaced_key_file_is_announced_self_signed_and_the_chain_goes_on(tmp_path):
    data = tmp_path / "data"
    box = start_box(data)
    box.append("rating.submitted", rating())
    before = send(box)
    old = (data / "device.pub").read_text().strip()
    box.append("rating.submitted", rating(1))  # recorded before the swap, not sent yet
    box.close()
    # A technician puts another key file in place (a restored backup, a new board).
    (data / "device.key").unlink()
    (data / "device.pub").unlink()
    new_keyring = Keyring(data)
    new, created = new_keyring.ensure()
    assert created and new != old

    box = start_box(data)
    after = send(box, after_seq=before[-1]["seq"])
    assert [e["type"] for e in after] == ["rating.submitted", "device.key"]
    assert after[-1]["data"]["public_key"] == new
    assert_links(after, after=before[-1])
    # The old key is gone: the new one signs, its announcement included (self-signed); the
    # centre holds that until a technician trusts the new device.pub.
    assert all(chain.verify(pub_key(data), e) for e in after)
    assert box.chain_key() == new
    box.close()


# --- rotation -----------------------------------------------------------------------------------


def test_rotation_is_signed_by_the_old_key_and_then_the_new_key_signs(tmp_path):
    conf = conf_file(tmp_path)
    data = tmp_path / "data"
    box = start_box(data)  # `run` holds this outbox open; keygen --rotate is another process
    box.append("rating.submitted", rating())
    old_events = send(box)
    old_key = pub_key(data)
    old_public = (data / "device.pub").read_text().strip()

    r = hall_agent(conf, "keygen", "--rotate")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{data / 'device.pub'}\n"
    assert (data / "device.key.next").stat().st_mode & 0o777 == 0o600
    new_public = public_key_text(load_key(data / "device.key.next"))
    assert fingerprint(new_public) in r.stderr and fingerprint(old_public) in r.stderr
    assert "not signed yet: 1" in hall_agent(conf, "outbox").stdout  # the announcement
    again = hall_agent(conf, "keygen", "--rotate")  # before the first is signed: refused
    assert again.returncode == 1
    assert "a rotation is already under way" in again.stderr, again.stderr

    box.append("rating.submitted", rating(5))
    events = send(box, after_seq=old_events[-1]["seq"])
    announcement, next_event = events
    assert announcement["type"] == "device.key"
    assert announcement["data"]["public_key"] == new_public
    assert chain.verify(old_key, announcement)  # only the holder of the old key could
    assert not chain.verify(old_key, next_event)
    new_key = pub_key(data)  # device.pub now holds the new key
    assert chain.verify(new_key, next_event) and not chain.verify(new_key, announcement)
    assert_links(events, after=old_events[-1])
    # The private key file rotated; the old private key is gone from disk and memory.
    assert not (data / "device.key.next").exists()
    assert public_key_text(load_key(data / "device.key")) == new_public
    assert (data / "device.key").stat().st_mode & 0o777 == 0o600
    assert box.signer is not None and box.signer.private(old_public) is None
    assert box.chain_key() == new_public
    box.close()
    # A later rotation works again.
    assert hall_agent(conf, "keygen", "--rotate").returncode == 0


def test_a_crash_between_the_commit_and_the_rename_is_finished_at_the_next_start(tmp_path):
    data = tmp_path / "data"
    box = start_box(data)
    send(box)
    rotation = rotate(data, box)
    # What the disk holds right before the signer's rename: the old key, the new one beside.
    old_files = {
        n: (data / n).read_bytes() for n in ("device.key", "device.key.next", "device.pub")
    }
    events = send(box)
    assert events[-1]["seq"] == rotation.seq and box.chain_key() == rotation.new
    box.close()
    for name, content in old_files.items():  # the power went before the rename
        (data / name).write_bytes(content)
        (data / name).chmod(0o644 if name == "device.pub" else 0o600)

    box = start_box(data)
    assert not (data / "device.key.next").exists()
    assert public_key_text(load_key(data / "device.key")) == rotation.new
    assert (data / "device.pub").read_text().strip() == rotation.new
    box.append("rating.submitted", rating())
    [after] = send(box, after_seq=rotation.seq)  # no second announcement
    assert chain.verify(pub_key(data), after)
    assert after["prev"] == chain.digest(events[-1])
    box.close()


def test_rotation_is_refused_until_its_promotion_is_done_and_without_a_key(tmp_path):
    data = tmp_path / "data"
    box = open_box(data)
    with pytest.raises(RotationRefused, match=r"no device key at .* keygen"):
        rotate(data, box)
    box.close()
    box = start_box(data)
    rotation = rotate(data, box)
    saved = (data / "device.key.next").read_bytes()
    send(box)
    # The rename did not happen (a crash): until the agent finishes it, no new rotation.
    old = Keyring(data)
    (data / "device.key.next").write_bytes(saved)
    (data / "device.key.next").chmod(0o600)
    assert old.next_public() == rotation.new
    with pytest.raises(RotationRefused, match="signed but not finished"):
        rotate(data, box)
    box.close()


def test_an_interrupted_rotate_is_resumed_with_the_same_new_key(tmp_path):
    data = tmp_path / "data"
    box = start_box(data)
    new = Keyring(data).create_next()  # keygen --rotate stopped before appending its event
    rotation = rotate(data, box)
    assert rotation.resumed and rotation.new == new
    box.close()


# --- gaps, holding, unsignable events -----------------------------------------------------------


def test_a_cap_drop_before_signing_leaves_a_gap_and_the_chain_links(tmp_path):
    data = tmp_path / "data"
    box = start_box(data, max_bytes=12_000)
    sent = send(box)  # the announcement
    box.append("device.test", {"note": "signed, in flight"})
    sent += send(box, after_seq=sent[-1]["seq"])  # signed, not acked yet: never dropped
    old_key = pub_key(data)
    rotation = rotate(data, box)  # an announcement not signed yet: never dropped either
    for i in range(60):  # device.* events beyond the cap, and records that are never dropped
        box.append("device.test", {"note": f"t{i}" * 20})
        if i % 10 == 0:
            box.append("rating.submitted", rating())
    events = send(box, after_seq=sent[-1]["seq"])
    seqs = [e["seq"] for e in events]
    assert seqs != list(range(seqs[0], seqs[-1] + 1)), "the cap dropped nothing"
    assert events[0]["seq"] == rotation.seq and events[0]["type"] == "device.key"
    assert sum(e["type"] == "rating.submitted" for e in events) == 6
    assert any(e["type"] == "device.fault" for e in events)
    held = [e["seq"] for e in sent]
    assert [p.seq for p in box.pending(len(held))] == held  # the signed ones were kept
    assert_links(sent + events)  # a gap in seq, none in the chain
    new_key = pub_key(data)
    for e in sent + events:
        assert chain.verify(old_key if e["seq"] <= rotation.seq else new_key, e), e["seq"]
    box.close()


def test_an_event_without_a_canonical_form_goes_unsigned_outside_the_chain(tmp_path):
    data = tmp_path / "data"
    box = start_box(data)
    first = send(box)
    box.append("device.test", {"note": "before"})
    bad = box.append("device.test", {"note": "inf", "v": 1}).event
    box.append("device.test", {"note": "after"})
    with box._lock:  # what an older agent let in: not JSON any store can hold
        box._conn.execute(
            "UPDATE outbox SET body = replace(body, '\"v\":1', '\"v\":Infinity') WHERE id = ?",
            (bad["id"],),
        )
    rows = box.pending(100, after_seq=first[-1]["seq"])
    assert "Infinity" in rows[1].body and '"sig"' not in rows[1].body  # sent as it is
    signed = [json.loads(rows[0].body), json.loads(rows[2].body)]
    assert_links(signed, after=first[-1])
    assert all(chain.verify(pub_key(data), e) for e in signed)
    assert box.stats().unsigned == 0  # not tried again
    box.close()


def test_a_signing_failure_holds_the_events_reports_it_and_retries(tmp_path, monkeypatch):
    monkeypatch.setattr(agent.outbox, "SIGN_RETRY_S", 0.3)
    data = tmp_path / "data"
    Keyring(data).ensure()
    (data / "device.key").chmod(0o640)  # a technician's copy left it group-readable
    box = open_box(data)
    keyring = start_signing(data, box)  # the agent starts anyway: never crashes for it
    box.append("rating.submitted", rating())
    assert box.pending(100) == []  # held: never sent unsigned while a signer is set
    health = box.signing_health()
    assert health["state"] == "fault" and "chmod 600" in health["detail"], health
    assert box.stats().unsigned == 1
    (data / "device.key").chmod(0o600)
    assert box.pending(100) == []  # the next try waits for SIGN_RETRY_S
    assert wait_for(lambda: bool(box.pending(100)), 5)
    [event] = send(box)
    assert chain.verify(pub_key(data), event) and event["prev"] == chain.GENESIS
    assert box.signing_health() == {"state": "ok", "key": fingerprint(keyring.current()[0])}
    box.close()


# --- end to end: real Mosquitto, the real collector --------------------------------------------


def _events_on_the_wire(spy: Peer) -> list[dict[str, Any]]:
    out = []
    for msg in list(spy.messages):
        out.extend(json.loads(msg.payload)["events"])
    return out


def _stored(collector: Any) -> list[tuple[int, str]]:
    return [
        (int(s), str(t))
        for s, t in collector.store.query(
            "SELECT seq, type FROM events WHERE device = %s ORDER BY seq", ("pad-a03",)
        )
    ]


@skip_unless(HAVE_MOSQUITTO, "needs mosquitto")
def test_the_centre_receives_events_whose_signatures_and_links_verify(tmp_path, broker, collector):
    cfg = agent_config(tmp_path / "data", broker.url, sync={"batch_size": 7})
    box = Outbox.for_config(cfg, clock=lambda: "synced")
    start_signing(cfg.device.data_dir, box)
    with Peer(broker.port, "spy", "x") as spy:
        spy.connect()
        spy.subscribe("hall/jiedong/pad-a03/events")
        up = Uplink(cfg, box)
        up.start()
        try:
            box.append_many([("rating.submitted", rating(), None, None)] * 20)
            assert wait_for(lambda: box.stats().pending == 0, 30)
            components = up.status_payload()["components"]
        finally:
            up.stop()
            box.close()
        assert wait_for(lambda: len({e["seq"] for e in _events_on_the_wire(spy)}) == 21, 10)
    stored = _stored(collector)
    assert [s for s, _ in stored] == list(range(1, 22))
    by_seq = {e["seq"]: e for e in _events_on_the_wire(spy)}  # a resend repeats the same bytes
    events = [by_seq[s] for s in range(1, 22)]
    assert events[0]["type"] == "device.key"
    key = pub_key(tmp_path / "data")
    assert all(chain.verify(key, e) for e in events)
    assert_links(events)
    assert components["signing"] == {
        "state": "ok",
        "key": fingerprint(events[0]["data"]["public_key"]),
    }


@skip_unless(HAVE_MOSQUITTO, "needs mosquitto")
def test_ping_by_itself_and_run_both_send_signed_events(tmp_path, broker, collector):
    conf = conf_file(tmp_path, broker.url)
    data = tmp_path / "data"
    with Peer(broker.port, "spy", "x") as spy:
        spy.connect()
        spy.subscribe("hall/jiedong/pad-a03/events")
        r = hall_agent(conf, "ping", "--count", "2", "--timeout", "20")
        assert r.returncode == 0, r.stdout + r.stderr
        agent = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "-v", "-c", str(conf), "run"],
            cwd=REPO,
            env={**os.environ, "HALL_AGENT_CLOCK": "synced"},
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert wait_for(lambda: uplink_running(data), 15)
            box = open_box(data)
            box.append("rating.submitted", rating())  # beside the agent, as ping would
            assert wait_for(lambda: box.stats().pending == 0, 20)
            box.close()
        finally:
            agent.send_signal(signal.SIGTERM)
            _, log = agent.communicate(timeout=20)
        assert agent.returncode == 0, log
        assert f"device key in use: {fingerprint((data / 'device.pub').read_text().strip())}" in log
        assert wait_for(lambda: len({e["seq"] for e in _events_on_the_wire(spy)}) == 4, 10)
    by_seq = {e["seq"]: e for e in _events_on_the_wire(spy)}
    events = [by_seq[s] for s in sorted(by_seq)]
    assert [e["type"] for e in events] == [
        "device.key",
        "device.test",
        "device.test",
        "rating.submitted",
    ]
    assert all(chain.verify(pub_key(data), e) for e in events)
    assert_links(events)
    assert [t for _, t in _stored(collector)] == [e["type"] for e in events]


def test_rows_another_process_drops_while_signing_are_not_handed_out(tmp_path, monkeypatch):
    """pending() reads the rows, then signs in a transaction of its own: a process sharing
    the file (a ping over the cap) may drop rows in between; only rows the file still holds,
    signed, go out, and the chain links over the gap."""
    data = tmp_path / "data"
    box = start_box(data)
    box.append_many([("device.test", {"note": f"n{i}"}, None, None) for i in range(6)])
    real = box._sign_through

    def dropped_first(signer, upto):
        other = sqlite3.connect(data / "outbox.db")
        other.execute("DELETE FROM outbox WHERE seq IN (3, 4)")
        other.commit()
        other.close()
        return real(signer, upto)

    monkeypatch.setattr(box, "_sign_through", dropped_first)
    events = send(box)
    assert [e["seq"] for e in events] == [1, 2, 5, 6, 7]
    assert all(chain.verify(pub_key(data), e) for e in events)
    assert_links(events)
    box.close()
