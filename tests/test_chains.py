"""The centre's chain checks on ingest (docs/tamper-centre.md): the verifier over real stores
(SQLite files and PostgreSQL schemas), events signed with real Ed25519 keys (tests/chainkit.py),
and ``hall-central verify --month`` agreeing with it."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from central.chainrules import fingerprint
from central.reports.month import Month
from central.seal.core import verify
from central.store import open_store
from central.verifier import ChainVerifier
from tests.chainkit import SigningDevice, public_b64, raw_public, store_events


def verifier(store, grace_s: float = 0) -> ChainVerifier:
    return ChainVerifier(lambda: store, grace_s, close_store=False)


def run(store, grace_s: float = 0, low: int | None = None, device: str = "k1") -> ChainVerifier:
    v = verifier(store, grace_s)
    v.note("jiedong", device, low)
    v.run_once()
    return v


def kinds(store, open_only: bool = True) -> list[tuple[str, int]]:
    return [(f.kind, f.seq) for f in store.chain_findings(open_only=open_only)]


def trust(store, dev: SigningDevice, key: Ed25519PrivateKey | None = None) -> None:
    import base64

    raw = raw_public(key or dev.key)
    store.trust_key(
        dev.site,
        dev.device,
        base64.b64encode(raw).decode(),
        fingerprint(raw),
        "test",
        datetime.now(UTC),
    )


def announced_device(store) -> SigningDevice:
    """A device whose first event announces its key, which the centre trusts."""
    dev = SigningDevice()
    trust(store, dev)
    store_events(store, [dev.announce(dev.key)])
    return dev


def month_of(store) -> Month:
    from zoneinfo import ZoneInfo

    now = datetime.now(ZoneInfo("Asia/Shanghai"))
    return Month(now.year, now.month, ZoneInfo("Asia/Shanghai"))


def chain_problems(store) -> list[str]:
    result = verify(store, month_of(store), "00" * 32)
    return [p for p in result.problems if "checkpoint" not in p]


def test_a_good_chain_has_no_findings_and_advances_the_head(store):
    dev = announced_device(store)
    store_events(store, dev.events(5))
    run(store)
    assert kinds(store) == []
    head = store.chain_head("jiedong", "k1")
    assert (head.first_seq, head.last_seq, head.signed, head.unsigned) == (1, 6, 6, 0)
    assert head.key_fingerprint == fingerprint(raw_public(dev.key))
    assert chain_problems(store) == []
    # Restart-safe: a new verifier carries on from the head and finds nothing twice.
    store_events(store, dev.events(2))
    run(store)
    assert store.chain_head("jiedong", "k1").last_seq == 8
    assert kinds(store) == []


def test_a_changed_row_fails_its_signature_on_ingest_and_in_verify_month(store):
    dev = announced_device(store)
    events = dev.events(4)
    store_events(store, events)
    run(store)
    target = events[1]
    changed = (
        '{"staff_id":"S9999","slot":"morning_in","status":"on_time","minutes_off":0,'
        '"distance":0.31,"liveness":"passed"}'
    )
    store.query("UPDATE events SET data = %s WHERE id = %s RETURNING id", (changed, target["id"]))
    problems = chain_problems(store)
    assert any(p.startswith(f"event {target['id']}: bad_signature") for p in problems), problems
    # The ingest verifier, walked again from a reset head, says the same.
    store.query("DELETE FROM chain_heads RETURNING site")
    run(store)
    assert ("bad_signature", target["seq"]) in kinds(store)
    [f] = [f for f in store.chain_findings() if f.kind == "bad_signature"]
    assert f.event_id == target["id"] and "does not verify" in f.detail
    # The next event's prev names the signed original, which the store no longer holds: that
    # is the changed row's finding, not one against the next event (docs/tamper.md).
    assert kinds(store) == [("bad_signature", target["seq"])]


def test_a_deleted_row_is_a_gap_after_the_grace_and_resolved_when_it_comes_back(store):
    dev = announced_device(store)
    events = dev.events(5)
    store_events(store, [e for e in events if e["seq"] != 4])
    v = run(store, grace_s=600)
    assert kinds(store) == []  # within the grace: the missing event may still come
    assert store.chain_head("jiedong", "k1").last_seq == 3  # waits before the gap
    assert v.walked == 3
    run(store, grace_s=0)
    [gap] = store.chain_findings(open_only=True)
    assert (gap.kind, gap.seq, gap.seq_end) == ("seq_gap", 4, 4)
    assert gap.event_id == events[3]["id"] and "not at the centre" in gap.detail
    assert store.chain_head("jiedong", "k1").last_seq == 6
    problems = chain_problems(store)
    assert any("seq_gap" in p and "seq 4 missing" in p for p in problems), problems
    # The resent event arrives: the gap is resolved, its links check.
    store_events(store, [events[2]])
    run(store, low=4)
    assert kinds(store) == []
    assert store.chain_findings()[0].resolved_at is not None
    assert store.chain_head("jiedong", "k1").signed == 6
    assert chain_problems(store) == []


def test_a_late_event_after_a_changed_one_is_one_finding_not_two(store):
    # The event before a late one failed its signature: the late one's link is not checked
    # against the changed row's digest (seeded unknown), on ingest and in verify --month.
    dev = announced_device(store)
    events = dev.events(5)
    changed = {**events[1], "data": {**events[1]["data"], "slot": "afternoon_in"}}
    store_events(store, [events[0], changed, *events[3:]])
    run(store)
    assert [k for k, _ in kinds(store)] == ["bad_signature", "seq_gap"]
    store_events(store, [events[2]])
    run(store, low=4)
    assert kinds(store) == [("bad_signature", 3)]
    assert [p.split(": ")[1] for p in chain_problems(store)] == ["bad_signature"]


def test_a_month_seeded_from_a_changed_event_before_it_is_no_broken_link():
    from central.seal.chains import check_chains

    dev = SigningDevice()
    events = dev.events(3)
    changed = {**events[0], "data": {**events[0]["data"], "slot": "afternoon_in"}}
    where = ("jiedong", "k1")
    found, _ = check_chains(events[1:], {where: dev.key.public_key()}, {where: changed})
    assert found == []
    found, _ = check_chains(events[1:], {where: dev.key.public_key()}, {where: events[0]})
    assert found == []


def test_a_long_late_stretch_is_walked_page_by_page(store, monkeypatch):
    import central.verifier as verifier_module

    monkeypatch.setattr(verifier_module, "PAGE", 2)  # 10 * PAGE = 20 < the stretch
    dev = announced_device(store)
    events = dev.events(30)
    store_events(store, [events[0], events[-1]])
    run(store)
    [gap] = store.chain_findings()
    assert (gap.seq, gap.seq_end) == (3, 30)
    store_events(store, events[1:-1])
    run(store, low=3)
    assert kinds(store) == []
    head = store.chain_head("jiedong", "k1")
    assert (head.last_seq, head.signed) == (31, 31)
    forged = dev.event(signer=Ed25519PrivateKey.generate())
    store_events(store, [forged])
    run(store)
    assert kinds(store) == [("bad_signature", 32)]


def test_events_dropped_before_signing_are_a_gap_with_an_intact_link(store):
    dev = announced_device(store)
    store_events(store, dev.events(2))
    dev.seq += 2  # two events dropped on the device before it signed them
    store_events(store, dev.events(1))
    run(store)
    [gap] = store.chain_findings()
    assert (gap.kind, gap.seq, gap.seq_end) == ("seq_gap", 4, 5)
    assert "link is intact" in gap.detail


def test_a_forged_event_fails_its_signature(store):
    dev = announced_device(store)
    store_events(store, dev.events(2))
    store_events(store, [dev.event(signer=Ed25519PrivateKey.generate())])
    run(store)
    assert kinds(store) == [("bad_signature", 4)]


def test_swapped_seqs_break_the_chain(store):
    dev = announced_device(store)
    events = dev.events(4)
    store_events(store, events)
    a, b = events[1], events[2]
    store.query("UPDATE events SET seq = 100 WHERE id = %s RETURNING id", (a["id"],))
    store.query("UPDATE events SET seq = %s WHERE id = %s RETURNING id", (a["seq"], b["id"]))
    store.query("UPDATE events SET seq = %s WHERE id = %s RETURNING id", (b["seq"], a["id"]))
    run(store)
    found = kinds(store)
    assert ("broken_link", a["seq"]) in found and ("bad_signature", a["seq"]) in found
    assert chain_problems(store)


def test_two_events_of_one_seq_are_a_fork_in_a_batch_and_when_late(store):
    dev = announced_device(store)
    first = dev.events(2)
    store_events(store, first)
    dev.seq -= 1
    other = dev.event(data={**first[1]["data"], "staff_id": "S0001"})
    time.sleep(0.005)  # received later: SQLite keeps received_at to the millisecond
    store_events(store, [other])
    run(store)
    assert kinds(store) == [("fork", 3)]
    # A second copy of a seq the head has passed: found from the collector's note.
    dev.seq = 1
    late = dev.event()
    store_events(store, [late])
    run(store, low=2)
    assert ("fork", 2) in kinds(store)
    [f] = [f for f in store.chain_findings() if f.seq == 2]
    assert f.event_id == late["id"] and first[0]["id"] in f.detail


def test_a_rotation_signed_by_the_old_key_has_no_findings(store):
    dev = announced_device(store)
    old = dev.key
    store_events(store, dev.events(2))
    new = Ed25519PrivateKey.generate()
    store_events(store, [dev.announce(new, signer=old), *dev.events(3)])
    run(store)
    assert kinds(store) == []
    states = {k.fingerprint: k.state for k in store.device_keys("jiedong", "k1")}
    assert states == {
        fingerprint(raw_public(old)): "retired",
        fingerprint(raw_public(new)): "trusted",
    }
    [rotated] = [k for k in store.device_keys() if k.state == "trusted"]
    assert rotated.from_seq == 5 and rotated.announced_in is not None
    assert chain_problems(store) == []


def test_a_rotation_signed_by_a_wrong_key_is_a_finding(store):
    dev = announced_device(store)
    store_events(store, dev.events(1))
    new = Ed25519PrivateKey.generate()
    store_events(store, [dev.announce(new, signer=Ed25519PrivateKey.generate())])
    store_events(store, dev.events(1))
    run(store)
    found = kinds(store)
    assert ("bad_signature", 3) in found  # the announcement
    assert ("bad_signature", 4) in found  # the new key was never taken
    assert {k.state for k in store.device_keys()} == {"trusted"}


def test_an_unknown_key_is_pending_never_trusted(store):
    dev = SigningDevice()
    store_events(store, [dev.announce(dev.key), *dev.events(2)])
    run(store)
    assert kinds(store) == [("untrusted_key", 1)]
    [key] = store.device_keys()
    assert key.state == "pending" and key.from_seq == 2 and key.trusted_at is None
    assert store.chain_head("jiedong", "k1").last_seq == 3  # checked under the pending key
    walked = store.chain_head("jiedong", "k1")
    trust(store, dev)
    assert kinds(store) == []
    assert store.device_keys()[0].state == "trusted"
    assert store.chain_head("jiedong", "k1") == walked  # the same key: nothing to walk again
    run(store)
    assert kinds(store) == []


def test_a_self_signed_key_other_than_the_trusted_one_never_takes_over(store):
    # A hostile sender (or whoever writes the store) announces its own key X: the events it
    # signs after are checked under the trusted key, each a bad signature, not clean.
    dev = announced_device(store)
    mine = dev.key
    store_events(store, dev.events(1))
    stranger = Ed25519PrivateKey.generate()
    store_events(store, [dev.announce(stranger), *dev.events(2)])
    run(store)
    assert kinds(store) == [("key_mismatch", 3), ("bad_signature", 4), ("bad_signature", 5)]
    assert {k.state for k in store.device_keys()} == {"trusted", "pending"}
    assert store.chain_head("jiedong", "k1").key_fingerprint == fingerprint(raw_public(mine))
    marks = store.open_findings_by_event()
    assert sum(1 for fs in marks.values() if fs[0].kind == "bad_signature") == 2
    assert len(chain_problems(store)) == 3


def test_a_replaced_board_is_checked_again_once_its_key_is_trusted(tmp_path, conf, capsys):
    from tests.chainkit import write_keyfile

    dev = SigningDevice()
    with sqlite_of(tmp_path) as s:
        trust(s, dev)
        store_events(s, [dev.announce(dev.key), *dev.events(2)])
        board = Ed25519PrivateKey.generate()
        store_events(s, [dev.announce(board), *dev.events(3)])
        run(s)
        assert kinds(s) == [
            ("key_mismatch", 4),
            ("bad_signature", 5),
            ("bad_signature", 6),
            ("bad_signature", 7),
        ]
    new = write_keyfile(tmp_path / "new.pub", board)
    assert central(conf, "devices", "trust", "k1", str(new), "--replace") == 0
    capsys.readouterr()
    with sqlite_of(tmp_path) as s:
        assert kinds(s) == []
        assert s.chain_head("jiedong", "k1").last_seq == 4  # back before the first changed
        run(s)
        assert kinds(s) == []
        head = s.chain_head("jiedong", "k1")
        assert (head.last_seq, head.signed) == (7, 7)
        assert head.key_fingerprint == fingerprint(raw_public(board))
        store_events(s, dev.events(1))
        run(s)
        assert kinds(s) == [] and chain_problems(s) == []
        # A finding resolved by the trust and still true is opened again, not duplicated.
        forged = dev.event(signer=Ed25519PrivateKey.generate())
        store_events(s, [forged])
        run(s)
        assert kinds(s) == [("bad_signature", 9)]


def test_a_resolved_finding_found_again_is_reopened_not_duplicated(store):
    dev = announced_device(store)
    store_events(store, dev.events(1))
    store_events(store, [dev.event(signer=Ed25519PrivateKey.generate()), *dev.events(1)])
    other = Ed25519PrivateKey.generate()
    run(store)
    assert kinds(store) == [("bad_signature", 3)]
    # Trusting another key by hand from the start changes the key of every walked event.
    import base64

    raw = raw_public(other)
    key = base64.b64encode(raw).decode()
    store.trust_key("jiedong", "k1", key, fingerprint(raw), "t", datetime.now(UTC), replace=True)
    assert store.chain_head("jiedong", "k1") is None and kinds(store) == []
    run(store)
    found = sorted(kinds(store))
    assert found == [*[("bad_signature", s) for s in (2, 3, 4)], ("key_mismatch", 1)]
    # back to the device's key: event 3 is found again, one row, open
    store.trust_key(
        "jiedong",
        "k1",
        public_b64(dev.key),
        fingerprint(raw_public(dev.key)),
        "t",
        datetime.now(UTC),
        replace=True,
    )
    run(store)
    assert kinds(store) == [("bad_signature", 3)]
    assert len([f for f in store.chain_findings() if f.seq == 3]) == 1


def test_an_event_with_no_canonical_form_is_a_finding_and_the_walk_goes_on(store):
    from central.seal.chains import recompute

    dev = announced_device(store)
    store_events(store, dev.events(1))
    odd = dev.event()
    odd["data"]["minutes_off"] = 2**60  # valid JSON, beyond what RFC 8785 can write
    store_events(store, [odd, *dev.events(2)])
    v = run(store)
    assert v.errors == 0
    assert kinds(store) == [("bad_signature", 3)]
    [f] = store.chain_findings()
    assert f.detail.startswith("no RFC 8785 canonical form: ")
    assert store.chain_head("jiedong", "k1").last_seq == 5
    month = month_of(store)
    findings, _, _ = recompute(store.sealable_events(month.start(), month.end()), store)
    assert [str(x) for x in findings] == [f"event {odd['id']}: bad_signature: {f.detail}"]


def test_signed_events_without_any_key_wait_for_one(store):
    dev = SigningDevice()
    store_events(store, dev.events(3))
    run(store)
    assert kinds(store) == [("untrusted_key", 1)]
    assert store.chain_head("jiedong", "k1") is None or (
        store.chain_head("jiedong", "k1").last_seq is None
    )
    trust(store, dev)  # registered by hand: resolves the finding, the walk goes on
    run(store)
    assert kinds(store) == []
    assert store.chain_head("jiedong", "k1").signed == 3


def test_unsigned_events_are_counted_until_a_signed_device_sends_one(store):
    dev = SigningDevice()
    store_events(store, dev.events(2, signed=False))
    run(store)
    head = store.chain_head("jiedong", "k1")
    assert (head.signed, head.unsigned) == (0, 2) and kinds(store) == []
    trust(store, dev)
    store_events(store, [dev.announce(dev.key), *dev.events(1), *dev.events(1, signed=False)])
    run(store)
    assert kinds(store) == [("unsigned_after_signed", 5)]
    head = store.chain_head("jiedong", "k1")
    assert (head.signed, head.unsigned) == (2, 3)


def test_a_failing_store_is_retried_not_raised(store):
    dev = announced_device(store)
    store_events(store, dev.events(2))

    class Broken:
        def __getattr__(self, name):
            raise RuntimeError("store down")

    v = ChainVerifier(lambda: Broken(), 0, close_store=False)  # type: ignore[arg-type,return-value]
    v.note("jiedong", "k1", None)
    assert v.run_once() == 0 and v.errors == 1


# --- hall-central devices, devices trust, devices findings --------------------------------------


def central(conf, *args: str) -> int:
    from central.cli import main

    return main(["-c", str(conf), *args])


@pytest.fixture
def conf(tmp_path):
    path = tmp_path / "central.toml"
    path.write_text(f'[store]\nurl = "sqlite:///{tmp_path}/hall.db"\n')
    return path


def sqlite_of(tmp_path):
    return open_store(f"sqlite:///{tmp_path}/hall.db")


def test_devices_shows_an_unknown_key_as_pending_and_trust_flows(tmp_path, conf, capsys):
    from tests.chainkit import write_keyfile

    dev = SigningDevice()
    with sqlite_of(tmp_path) as s:
        store_events(s, [dev.announce(dev.key), *dev.events(2)])
        run(s)
    fp = fingerprint(raw_public(dev.key))
    assert central(conf, "devices") == 0
    out = capsys.readouterr().out
    assert "signed chains" in out and fp in out and "pending" in out
    # Another key than the announced one: refused, and told what to do.
    other = write_keyfile(tmp_path / "other.pub", Ed25519PrivateKey.generate())
    assert central(conf, "devices", "trust", "k1", str(other)) == 1
    err = capsys.readouterr().err
    assert fp in err and "--replace" in err and "pending" in err
    # The announced key: trusted, audited, its finding resolved.
    mine = write_keyfile(tmp_path / "device.pub", dev.key)
    assert central(conf, "devices", "trust", "k1", str(mine), "--by", "alice") == 0
    assert f"key {fp} trusted by alice" in capsys.readouterr().out
    with sqlite_of(tmp_path) as s:
        assert [k.state for k in s.device_keys()] == ["trusted"]
        assert s.device_keys()[0].trusted_by == "alice"
        [audit] = s.audit_log()
        assert (audit.user, audit.action, audit.target) == (
            "alice",
            "device.trust",
            "device:jiedong/k1",
        )
        assert s.chain_findings(open_only=True) == []
    assert central(conf, "devices", "trust", "k1", str(mine)) == 0
    assert "trusted already" in capsys.readouterr().out
    # --replace: the other key is trusted from the next event on, the first retired.
    assert central(conf, "devices", "trust", "k1", str(other), "--replace", "--by", "bob") == 0
    with sqlite_of(tmp_path) as s:
        states = sorted((k.state, k.from_seq) for k in s.device_keys())
        assert states == [("retired", 2), ("trusted", 4)]


def test_a_key_registered_before_the_device_sends_and_pem_files(tmp_path, conf, capsys):
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    dev = SigningDevice(device="k2")
    with sqlite_of(tmp_path):
        pass  # the store exists, the device has never sent
    pem = tmp_path / "k2.pem"
    pem.write_bytes(
        dev.key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    assert central(conf, "devices", "trust", "k2", str(pem)) == 2  # which site?
    assert "--site" in capsys.readouterr().err
    assert central(conf, "devices", "trust", "k2", str(pem), "--site", "jiedong") == 0
    with sqlite_of(tmp_path) as s:
        [key] = s.device_keys()
        assert (key.state, key.from_seq, key.announced_in) == ("trusted", None, None)
        # Its events, self-announced or not, check under it with no finding.
        store_events(s, [dev.announce(dev.key), *dev.events(2)])
        run(s, device="k2")
        assert kinds(s) == []
        assert s.chain_head("jiedong", "k2").signed == 3


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("not base64!\n", "not base64"),
        ("AAAA\n", "3 bytes; expected the 32 bytes"),
        ("a\nb\n", "2 lines"),
        ("-----BEGIN PUBLIC KEY-----\nxx\n-----END PUBLIC KEY-----\n", "not a PEM public key"),
        (  # an algorithm cryptography does not know (OID 1.2.3.4)
            "-----BEGIN PUBLIC KEY-----\nMCowBQYDKgMEAyEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
            "-----END PUBLIC KEY-----\n",
            "algorithm this system does not support",
        ),
        ("A" * (64 * 1024 + 1), "over 64 KiB"),
    ],
)
def test_a_bad_keyfile_is_a_usage_error_naming_it(tmp_path, conf, capsys, text, said):
    with sqlite_of(tmp_path):
        pass
    path = tmp_path / "bad.pub"
    path.write_text(text)
    assert central(conf, "devices", "trust", "k1", str(path), "--site", "jiedong") == 2
    err = capsys.readouterr().err
    assert said in err and str(path) in err


def test_devices_findings_lists_and_filters(tmp_path, conf, capsys):
    dev = SigningDevice()
    with sqlite_of(tmp_path) as s:
        trust(s, dev)
        store_events(s, [dev.announce(dev.key), dev.event(signer=Ed25519PrivateKey.generate())])
        run(s)
    assert central(conf, "devices", "findings", "--open", "--format", "csv") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "id,site,device,seq,kind,event,found,resolved,detail"
    assert len(lines) == 2 and ",bad_signature," in lines[1] and ",open," in lines[1]
    assert central(conf, "devices", "findings", "--device", "k9") == 0
    assert "(no findings)" in capsys.readouterr().out
    assert central(conf, "devices", "findings", "--device", "no such") == 2
    assert central(conf, "devices") == 0
    assert "signed chains" in capsys.readouterr().out
    with sqlite_of(tmp_path) as s:
        assert s.open_finding_counts() == {("jiedong", "k1"): 1}


def test_a_keyfile_with_a_utf8_bom_is_read(tmp_path, conf, capsys):
    from tests.chainkit import public_b64

    with sqlite_of(tmp_path):
        pass
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "device.pub"
    path.write_bytes(b"\xef\xbb\xbf" + public_b64(key).encode() + b"\r\n")
    assert central(conf, "devices", "trust", "k1", str(path), "--site", "jiedong") == 0
    assert fingerprint(raw_public(key)) in capsys.readouterr().out


def test_a_device_waiting_for_its_key_is_logged_once(store, caplog, monkeypatch):
    import central.verifier as verifier_module

    monkeypatch.setattr(verifier_module, "KEY_RECHECK_S", 0)
    dev = SigningDevice()
    store_events(store, dev.events(2))
    v = verifier(store)
    for _ in range(3):
        v.note("jiedong", "k1", None)
        v.run_once()
    said = [r for r in caplog.records if "untrusted_key" in r.getMessage()]
    assert len(said) == 1 and kinds(store) == [("untrusted_key", 1)]


# --- the reports mark what an open finding touches ----------------------------------------------


def test_reports_mark_events_with_open_findings_and_count_the_unsigned(store):
    from zoneinfo import ZoneInfo

    from central.reports import build
    from tests.chainkit import RATING

    hall = ZoneInfo("Asia/Shanghai")
    dev = SigningDevice(start=datetime(2026, 11, 3, 0, 24, tzinfo=UTC))  # 08:25 hall time
    trust(store, dev)
    forged_punch = None
    events = [dev.announce(dev.key)]
    events.append(forged_punch := dev.event(signer=Ed25519PrivateKey.generate()))
    events.append(dev.event())  # a good one
    poor = {**RATING, "level": 1, "label": "非常不满意"}
    events.append(forged_rating := dev.event("rating.submitted", poor, signer=dev.key))
    store_events(store, events)
    old = SigningDevice(device="k0", start=datetime(2026, 11, 4, 0, 24, tzinfo=UTC))
    store_events(store, old.events(2, signed=False))  # an agent older than chains
    store.query(  # the rating changed after it was stored
        "UPDATE events SET data = %s WHERE id = %s RETURNING id",
        (
            '{"window":"A03","pad":1,"staff_id":"S0012","level":2,"label":"不满意","reasons":[],'
            '"invite_id":null}',
            forged_rating["id"],
        ),
    )
    run(store)
    run(store, device="k0")
    assert {(k, s) for k, s in kinds(store)} == {("bad_signature", 2), ("bad_signature", 4)}
    now = datetime(2026, 12, 2, tzinfo=hall)

    att = build("attendance", store, Month(2026, 11, hall), None, now=now)
    [section] = [s for s in att.sheets if s.name == "签名校验异常"]
    assert [r[-1] for r in section.rows] == [forged_punch["id"]]
    assert section.rows[0][-2] == "签名不符 (bad_signature)"
    daily = next(s for s in att.sheets if s.name == "每日明细")
    assert any("08:26‡" in str(c) for r in daily.rows for c in r)
    assert any("本月 4 条事件中 2 条未签名" in n for n in att.notes), att.notes

    ratings = build("ratings", store, Month(2026, 11, hall), None, now=now)
    [section] = [s for s in ratings.sheets if s.name == "签名校验异常"]
    assert [r[-1] for r in section.rows] == [forged_rating["id"]]
    bad = next(s for s in ratings.sheets if s.name == "差评明细")
    assert str(bad.rows[0][0]).endswith("‡")
    assert any("本月 1 条事件中 0 条未签名" in n for n in ratings.notes), ratings.notes


# --- the canonical forms the rules compute fast are contract/chain.py's ------------------------


@pytest.mark.parametrize(
    "data",
    [
        {"staff_id": "S0012", "distance": 0.31, "minutes_off": 0},
        {"note": 'a "seq":2,"site":"x" inside the data', "n": 3.0},
        {"note": "中文 and \u2028 and emoji \U0001f600", "list": [1, 2.5, None, True]},
        {"big": 2**50, "tiny": 1e-7, "deep": {"b": [{"a": 1.0}]}},
    ],
)
def test_digest_and_signing_input_are_the_contracts(data):
    from central.chainrules import Canonical, digest
    from contract import chain

    dev = SigningDevice()
    ev = dev.event("device.test", data)
    canon = Canonical()
    assert canon.signing_input(ev) == chain.signing_input(ev)
    assert canon.digest(ev) == chain.digest(ev) == digest(ev)


def test_a_device_failing_every_event_fills_the_table_not_the_journal(store, caplog):
    dev = announced_device(store)
    forger = Ed25519PrivateKey.generate()
    store_events(store, [dev.event(signer=forger) for _ in range(40)])
    with caplog.at_level("WARNING", logger="central.verifier"):
        run(store)
    assert [k for k, _ in kinds(store)] == ["bad_signature"] * 40
    lines = [r.getMessage() for r in caplog.records if r.name == "central.verifier"]
    assert len(lines) == 6, lines
    assert "35 more findings up to seq 41" in lines[-1] and "--device k1" in lines[-1]
