"""The monthly seal (docs/tamper.md): RFC 9162 trees and proofs, seal / verify / prove on both
stores, the devices' chains, and scripts/verify_proof.py run without the project."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from central.reports.month import Month
from central.seal import merkle
from central.seal.chains import check_chains
from central.seal.core import SealError, prove, seal, verify
from central.seal.keys import load_or_create, public_hex
from central.seal.leaf import leaf_bytes
from central.store import EventRow, PostgresStore, open_store
from contract import chain

ROOT = Path(__file__).resolve().parent.parent
HALL = ZoneInfo("Asia/Shanghai")

# --- RFC 9162 §2.1: the Certificate Transparency reference vectors ---------------------------

LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    bytes(range(0x50, 0x58)),
    bytes(range(0x60, 0x70)),
]
HASHES = [merkle.leaf_hash(x) for x in LEAVES]
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# (leaf index, tree size, path): the reference's inclusion proofs.
INCLUSION = [
    (0, 8, ["96a296d2", "5f083f0a", "6b47aaf2"]),
    (5, 8, ["bc1a0643", "ca854ea1", "d37ee418"]),
    (2, 3, ["fac54203"]),
    (1, 5, ["6e340b9c", "5f083f0a", "bc1a0643"]),
    (0, 1, []),
]
# (first size, second size, proof): the reference's consistency proofs.
CONSISTENCY = [
    (1, 1, []),
    (1, 8, ["96a296d2", "5f083f0a", "6b47aaf2"]),
    (6, 8, ["0ebc5d34", "ca854ea1", "d37ee418"]),
    (2, 5, ["5f083f0a", "bc1a0643"]),
]


def test_empty_tree_root_is_the_hash_of_nothing():
    assert merkle.root([]).hex() == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


@pytest.mark.parametrize("n", range(1, 9))
def test_roots_of_the_reference_trees(n):
    assert merkle.root(HASHES[:n]).hex() == ROOTS[n - 1]


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION)
def test_inclusion_proofs_of_the_reference(index, size, path):
    proof = merkle.inclusion_proof(index, HASHES[:size])
    assert [p.hex()[:8] for p in proof] == path
    root = bytes.fromhex(ROOTS[size - 1])
    assert merkle.verify_inclusion(index, size, HASHES[index], proof, root)


@pytest.mark.parametrize(("first", "second", "path"), CONSISTENCY)
def test_consistency_proofs_of_the_reference(first, second, path):
    proof = merkle.consistency_proof(first, HASHES[:second])
    assert [p.hex()[:8] for p in proof] == path
    r1, r2 = bytes.fromhex(ROOTS[first - 1]), bytes.fromhex(ROOTS[second - 1])
    assert merkle.verify_consistency(first, second, r1, r2, proof)


def test_every_proof_verifies_and_a_corrupted_one_never_does():
    for n in range(1, 9):
        root = merkle.root(HASHES[:n])
        for i in range(n):
            proof = merkle.inclusion_proof(i, HASHES[:n])
            assert merkle.verify_inclusion(i, n, HASHES[i], proof, root)
            # A wrong tree size (height), index, leaf or path is refused.
            assert not merkle.verify_inclusion(i, n * 2, HASHES[i], proof, root)
            assert not merkle.verify_inclusion(i, n // 2, HASHES[i], proof, root)
            assert not merkle.verify_inclusion(i, n, HASHES[i], [*proof, root], root)
            assert not merkle.verify_inclusion(i, n, merkle.leaf_hash(b"x"), proof, root)
            if proof:
                assert not merkle.verify_inclusion(i, n, HASHES[i], proof[:-1], root)
            if n > 1:
                assert not merkle.verify_inclusion(i ^ 1, n, HASHES[i], proof, root) or (
                    HASHES[i] == HASHES[i ^ 1]
                )
        for m in range(1, n + 1):
            proof = merkle.consistency_proof(m, HASHES[:n])
            first = merkle.root(HASHES[:m])
            assert merkle.verify_consistency(m, n, first, root, proof)
            # The trap: a consistency check must refuse a wrong tree size.
            for wrong in (n * 2, n // 2):
                if wrong != n:
                    assert not merkle.verify_consistency(m, wrong, first, root, proof)
            assert not merkle.verify_consistency(n + 1, n, first, root, proof)
            assert not merkle.verify_consistency(m, n, first, root, [*proof, root])
            if proof:
                assert not merkle.verify_consistency(m, n, first, root, proof[:-1])
                assert not merkle.verify_consistency(m, n, root, first, proof)
    # Equal sizes prove nothing but equal roots: a non-empty proof is refused.
    r = merkle.root(HASHES)
    assert not merkle.verify_consistency(8, 8, r, r, [r])
    assert not merkle.verify_consistency(0, 8, r, r, [])


def test_the_bottom_up_root_is_the_recursive_one():
    def mth(hs):
        if len(hs) == 1:
            return hs[0]
        k = 1 << ((len(hs) - 1).bit_length() - 1)
        return merkle.node_hash(mth(hs[:k]), mth(hs[k:]))

    hs = [merkle.leaf_hash(bytes([i])) for i in range(67)]
    for n in range(1, 68):
        assert merkle.root(hs[:n]) == mth(hs[:n])


# --- the stores ----------------------------------------------------------------------------


MONTH = Month(2026, 11, HALL)
KEY = Ed25519PrivateKey.generate()
PUB = public_hex(KEY)


def row(seq: int, at: datetime, device: str = "k1", data: dict | None = None) -> EventRow:
    return EventRow(
        id=str(uuid.uuid4()),
        device=device,
        site="jiedong",
        seq=seq,
        type="attendance.punch",
        at=at,
        at_text=at.astimezone(HALL).isoformat(timespec="milliseconds"),
        clock="synced",
        data=json.dumps(data or {"staff_id": "S1", "slot": "morning_in", "minutes_off": 1.5}),
    )


def receive(store, ids: list[str], received: datetime) -> None:
    value = (
        received
        if isinstance(store, PostgresStore)
        else received.astimezone(UTC).isoformat(timespec="milliseconds")
    )
    for eid in ids:
        store.query("UPDATE events SET received_at = %s WHERE id = %s RETURNING id", (value, eid))


def fill(store, n: int = 10, start_seq: int = 1, day: int = 3) -> list[EventRow]:
    """``n`` punches of November, received a minute apart that day."""
    base = datetime(2026, 11, day, 8, 30, tzinfo=HALL)
    rows = [row(start_seq + i, base + timedelta(minutes=i)) for i in range(n)]
    store.write_batch(rows, [])
    for i, r in enumerate(rows):
        receive(store, [r.id], base + timedelta(minutes=i, seconds=5))
    return rows


def sealed_at_after(day: int = 20) -> datetime:
    return datetime(2026, 11, day, 12, 0, tzinfo=UTC)


def test_the_leaf_is_the_event_as_sent_with_its_instant_in_utc(store):
    [r] = fill(store, 1)
    [e] = store.sealable_events(MONTH.start(), MONTH.end())
    assert json.loads(leaf_bytes(e)) == {
        "id": r.id,
        "device": "k1",
        "site": "jiedong",
        "seq": 1,
        "type": "attendance.punch",
        "clock": "synced",
        "at": "2026-11-03T00:30:00.000Z",
        "data": {"staff_id": "S1", "slot": "morning_in", "minutes_off": 1.5},
    }
    assert leaf_bytes(e) == chain.canonical(json.loads(leaf_bytes(e)))


def test_a_sealed_month_verifies(store):
    rows = fill(store)
    done = seal(store, MONTH, KEY, now=sealed_at_after())
    assert done.created and done.checkpoint.tree_size == len(rows)
    result = verify(store, MONTH, PUB)
    assert result.ok, result.problems
    # Sealing again with nothing new stores nothing.
    assert not seal(store, MONTH, KEY).created
    assert len(store.checkpoints(MONTH.label)) == 1


def test_verify_without_a_checkpoint_fails(store):
    fill(store, 2)
    result = verify(store, MONTH, PUB)
    assert not result.ok and result.problems == ["no checkpoint of 2026-11"]


def test_a_changed_row_is_named(store):
    rows = fill(store)
    seal(store, MONTH, KEY, now=sealed_at_after())
    changed = rows[4].id
    if isinstance(store, PostgresStore):
        store.query(
            "UPDATE events SET data = jsonb_set(data, '{slot}', '\"afternoon_in\"') "
            "WHERE id = %s RETURNING id",
            (changed,),
        )
    else:
        store.query(
            "UPDATE events SET data = json_set(data, '$.slot', 'afternoon_in') WHERE id = %s",
            (changed,),
        )
    result = verify(store, MONTH, PUB)
    assert not result.ok
    assert result.problems == [f"event {changed} (leaf 4): changed since the seal"]


def test_a_deleted_row_is_named_and_so_is_the_gap(store):
    rows = fill(store)
    seal(store, MONTH, KEY, now=sealed_at_after())
    gone = rows[3]
    store.query("DELETE FROM events WHERE id = %s RETURNING id", (gone.id,))
    result = verify(store, MONTH, PUB)
    assert not result.ok
    assert f"event {gone.id} (leaf 3): sealed, missing from the store" in result.problems
    gap = f"event {rows[4].id}: seq_gap: jiedong/k1 seq 4 missing before event {rows[4].id} (seq 5)"
    assert gap in result.problems


def test_an_inserted_row_is_named_and_a_moved_one_too(store):
    rows = fill(store)
    seal(store, MONTH, KEY, now=sealed_at_after())
    [forged] = [row(11, datetime(2026, 11, 4, 8, 30, tzinfo=HALL))]
    store.write_batch([forged], [])
    receive(store, [forged.id], datetime(2026, 11, 4, 8, 31, tzinfo=HALL))
    # Moving a row within the month (its received_at) reorders the tree.
    receive(store, [rows[0].id], datetime(2026, 11, 3, 23, 0, tzinfo=HALL))
    result = verify(store, MONTH, PUB)
    assert not result.ok
    assert f"event {forged.id}: in the store, received before the seal, not sealed" in (
        result.problems
    )
    assert f"event {rows[0].id}: sealed as leaf 0, now leaf 9" in result.problems


def chain_findings_of(store, month: Month) -> list[str]:
    from central.seal.chains import recompute

    findings, _unsigned, _checked = recompute(
        store.sealable_events(month.start(), month.end()), store
    )
    return [str(f) for f in findings]


def test_seqs_received_in_another_month_are_no_gap_and_a_copy_there_is_a_fork(store):
    rows = fill(store, 10, day=30)
    # A lost batch (seq 5 and 6) resent after midnight: received in December.
    receive(store, [rows[4].id, rows[5].id], datetime(2026, 12, 1, 0, 10, tzinfo=HALL))
    december = Month(2026, 12, HALL)
    assert [e.seq for e in store.sealable_events(MONTH.start(), MONTH.end())] == [
        1, 2, 3, 4, 7, 8, 9, 10,
    ]  # fmt: skip
    assert chain_findings_of(store, MONTH) == []
    assert chain_findings_of(store, december) == []
    # A second copy of seq 3 received in December: a fork, found by December's verify.
    copy = row(3, datetime(2026, 11, 30, 9, 0, tzinfo=HALL))
    store.write_batch([copy], [])
    receive(store, [copy.id], datetime(2026, 12, 1, 0, 20, tzinfo=HALL))
    assert chain_findings_of(store, MONTH) == []
    [fork] = chain_findings_of(store, december)
    assert fork.startswith(f"event {copy.id}: fork: seq 3 again")
    # A seq the store does not hold at all is still a gap.
    store.query("DELETE FROM events WHERE id = %s RETURNING id", (rows[5].id,))
    gap = f"event {rows[6].id}: seq_gap: jiedong/k1 seq 6 missing before event {rows[6].id}"
    assert next(f for f in chain_findings_of(store, MONTH) if "seq_gap" in f).startswith(gap)


def test_late_events_extend_the_seal_and_a_rewritten_history_is_refused(store):
    fill(store, 5)
    first = seal(store, MONTH, KEY, now=sealed_at_after(10)).checkpoint
    late = fill(store, 3, start_seq=6, day=25)  # received after the first seal
    result = verify(store, MONTH, PUB)
    assert result.ok and result.notes[-1] == "3 events received after the seal: not sealed yet"
    second = seal(store, MONTH, KEY, now=sealed_at_after(28))
    assert second.extends == first and second.checkpoint.tree_size == 8
    assert second.consistency  # proved: 5 leaves' tree is a prefix of 8 leaves'
    assert verify(store, MONTH, PUB).ok
    # Once sealed, a change cannot be sealed over.
    store.query("DELETE FROM events WHERE id = %s RETURNING id", (late[0].id,))
    with pytest.raises(SealError, match="no longer extends checkpoint"):
        seal(store, MONTH, KEY)


def test_a_forged_checkpoint_is_refused(store):
    fill(store, 4)
    c = seal(store, MONTH, KEY, now=sealed_at_after()).checkpoint
    other = public_hex(Ed25519PrivateKey.generate())
    result = verify(store, MONTH, other)
    assert f"checkpoint {c.id}: signature fails under the centre's key" in result.problems
    store.query(
        "UPDATE checkpoint_leaves SET leaf = %s WHERE checkpoint = %s AND idx = 0 RETURNING idx",
        ("00" * 32, c.id),
    )
    result = verify(store, MONTH, PUB)
    assert f"checkpoint {c.id}: its stored leaves do not give its signed root" in (result.problems)


# --- the devices' chains ---------------------------------------------------------------------


def _chain(n: int, key) -> list[dict]:
    out, prev = [], chain.GENESIS
    for seq in range(1, n + 1):
        e = {
            "id": str(uuid.uuid4()),
            "seq": seq,
            "type": "attendance.punch",
            "at": f"2026-11-03T08:{seq:02d}:00.000+08:00",
            "clock": "synced",
            "device": "k1",
            "site": "jiedong",
            "data": {"staff_id": "S1"},
            "prev": prev,
        }
        e["sig"] = chain.sign(key, e)
        prev = chain.digest(e)
        out.append(e)
    return out


DEVICE = Ed25519PrivateKey.generate()
KEYS = {("jiedong", "k1"): DEVICE.public_key()}


def test_a_whole_chain_checks():
    assert check_chains(_chain(5, DEVICE), KEYS) == ([], 0)


def _fp() -> str:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from central.chainrules import fingerprint

    return fingerprint(DEVICE.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


def test_a_forged_event_fails_its_signature():
    events = _chain(5, DEVICE)
    forged = {**events[2], "data": {"staff_id": "S2"}}
    events[2] = forged
    findings, _ = check_chains(events, KEYS)
    assert [str(f) for f in findings] == [
        f"event {forged['id']}: bad_signature: signature does not verify under {_fp()} (trusted)",
    ]  # and not also a broken link at the next event, whose prev names the signed original
    intruder = {**_chain(1, Ed25519PrivateKey.generate())[0], "seq": 6}
    findings, _ = check_chains([*_chain(5, DEVICE), intruder], KEYS)
    assert any(f.event_id == intruder["id"] and "bad_signature" in f.what for f in findings)


def test_reordered_events_break_the_chain():
    events = _chain(5, DEVICE)
    a, b = events[1], events[2]
    events[1], events[2] = {**b, "seq": 2}, {**a, "seq": 3}
    findings, _ = check_chains(events, KEYS)
    assert "broken_link" in " ".join(str(f) for f in findings)
    assert any(f.what.startswith("bad_signature") for f in findings)  # seq is signed


def test_a_removed_event_is_a_gap_whose_link_names_the_missing_event():
    events = _chain(5, DEVICE)
    del events[2]
    findings, _ = check_chains(events, KEYS)
    assert [str(f) for f in findings] == [
        f"event {events[2]['id']}: seq_gap: jiedong/k1 seq 3 missing before event "
        f"{events[2]['id']} (seq 4); its prev names {events[2]['prev'][:12]}…, not the event "
        "before the gap: the missing events were signed and are not at the centre",
    ]


def test_unsigned_events_are_counted_not_failed():
    events = [{k: v for k, v in e.items() if k not in ("prev", "sig")} for e in _chain(3, DEVICE)]
    assert check_chains(events, KEYS) == ([], 3)


# --- prove and scripts/verify_proof.py -------------------------------------------------------


def _check(tmp_path: Path, proof: dict, *extra: str) -> subprocess.CompletedProcess:
    path = tmp_path / "proof.json"
    path.write_text(json.dumps(proof), encoding="utf-8")
    script = ROOT / "scripts" / "verify_proof.py"
    return subprocess.run(
        [sys.executable, "-I", str(script), str(path), *extra],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )


def test_a_proof_checks_without_the_project(store, tmp_path):
    rows = fill(store, 7)
    c = seal(store, MONTH, KEY, now=sealed_at_after()).checkpoint
    proof = prove(store, rows[5].id)
    assert (proof["leaf_index"], proof["tree_size"], proof["root"]) == (5, 7, c.root)
    done = _check(tmp_path, proof, "--key", PUB)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"OK: event {rows[5].id} is leaf 5 of the 7")

    # The staff member's own copy, with a changed slot: not as sealed.
    mine = tmp_path / "event.json"
    mine.write_text(json.dumps({**proof["event"], "data": {"slot": "x"}}), encoding="utf-8")
    done = _check(tmp_path, proof, "--event", str(mine))
    assert done.returncode == 1 and "not as sealed" in done.stdout

    done = _check(tmp_path, proof, "--key", public_hex(Ed25519PrivateKey.generate()))
    assert done.returncode == 1 and "another centre key" in done.stdout
    done = _check(tmp_path, {**proof, "tree_size": 14})
    assert done.returncode == 1 and "does not lead to the root" in done.stdout
    forged_root = merkle.root([bytes.fromhex(proof["leaf_hash"])]).hex()
    done = _check(
        tmp_path, {**proof, "root": forged_root, "path": [], "tree_size": 1, "leaf_index": 0}
    )
    assert done.returncode == 1 and "signature fails" in done.stdout


def test_verify_proof_canonical_form_is_rfc8785():
    import importlib.util

    import rfc8785

    spec = importlib.util.spec_from_file_location("verify_proof", ROOT / "scripts/verify_proof.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    values = [0.0, -0.0, 1.5, 1e21, 1e20, 1e-6, 1e-7, 1.5e-7, 0.1, 5e-324, 2**53 - 1, -7, 333.3333]
    for v in values:
        assert module.canonical(v) == rfc8785.dumps(v).decode()
    obj = {"b": 'é\u2028\x1f"\\', "a": [1, None, True, False], "\U0001f600": 1, "\uffff": 2}
    assert module.canonical(obj) == rfc8785.dumps(obj).decode()


# --- the centre's key and the commands -------------------------------------------------------


def test_the_key_is_created_once_private(tmp_path):
    path = tmp_path / "keys" / "seal.key"
    key, created = load_or_create(path)
    assert created and path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "keys" / "seal.key.pub").read_text().strip() == public_hex(key)
    again, created = load_or_create(path)
    assert not created and public_hex(again) == public_hex(key)


def test_seal_verify_prove_commands(tmp_path, capsys):
    from central.cli import main

    db = tmp_path / "hall.db"
    config = tmp_path / "central.toml"
    config.write_text(
        f'[store]\nurl = "sqlite:///{db}"\n[seal]\nkey_file = "{tmp_path}/k/seal.key"\n',
        encoding="utf-8",
    )
    with open_store(f"sqlite:///{db}") as s:
        rows = fill(s, 3)
    assert main(["-c", str(config), "seal", "--month", "2026-11"]) == 0
    out = capsys.readouterr().out
    assert "2026-11: checkpoint 1, 3 events, root " in out
    assert main(["-c", str(config), "verify", "--month", "2026-11"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("2026-11: OK")
    assert main(["-c", str(config), "prove", rows[1].id, "--json"]) == 0
    proof = json.loads(capsys.readouterr().out)
    assert proof["leaf_index"] == 1 and proof["tree_size"] == 3
    with open_store(f"sqlite:///{db}") as s:
        s.query("DELETE FROM events WHERE id = %s", (rows[2].id,))
    assert main(["-c", str(config), "verify", "--month", "2026-11"]) == 1
    out = capsys.readouterr().out
    assert f"FAIL event {rows[2].id} (leaf 2): sealed, missing from the store" in out
    assert main(["-c", str(config), "seal", "--show-key"]) == 0
    assert capsys.readouterr().out.strip() == (tmp_path / "k/seal.key.pub").read_text().strip()


# --- the reports -----------------------------------------------------------------------------


def test_the_reports_print_the_seal(tmp_path):
    import io

    from central.reports import build, render

    with open_store(f"sqlite:///{tmp_path}/hall.db") as s:
        fill(s, 3)
        report = build("ratings", s, MONTH, now=datetime(2026, 12, 2, tzinfo=HALL))
        assert report.notes[-1] == "封存: 2026-11 尚未封存 (hall-central seal --month 2026-11)"
        assert report.seal_qr == ""
        c = seal(s, MONTH, KEY, now=sealed_at_after()).checkpoint
        for kind in ("attendance", "ratings"):
            report = build(kind, s, MONTH, now=datetime(2026, 12, 2, tzinfo=HALL))
            assert report.notes[-1].startswith(f"封存: 2026-11 第 {c.id} 号封存, 中心收到的 3 条")
            assert c.root in report.notes[-1]
            assert report.seal_qr == f"HALLSEAL 2026-11 3 {c.root}"
        html, table = io.BytesIO(), io.BytesIO()
        render(report, "html", html)
        render(report, "table", table)
    assert "<svg" in html.getvalue().decode()
    assert c.root in table.getvalue().decode() and "▀" in table.getvalue().decode()


def test_the_fast_canonical_form_is_rfc8785():
    import random

    import rfc8785

    from central.seal.leaf import fast_canonical

    rnd = random.Random(9162)
    floats = [0.0, -0.0, 3.0, 1.5, 1e-4, 9.99e-5, 1e15 + 0.5, 1e16, 1e21, 2.0**53, 2.0**60, 0.1]
    floats += [rnd.uniform(-1e6, 1e6) for _ in range(500)]
    floats += [10.0 ** rnd.uniform(-12, 25) for _ in range(500)]
    ints = [0, -1, 2**53 - 1, -(2**53 - 1)]
    texts = ["", "é", "\u2028", "\x1f\x7f", '"\\', "\U0001f600", "\uffff", "窗口", "\ue000"]
    values = [*floats, *ints, *texts, True, False, None, [1.0, "x"], {"b": 1, "a": [2.5]}]
    values.append({"\U0001f600": 1, "\uffff": 2, "a": 3})  # UTF-16 order differs here
    values.append({"\ue000": 1, "\U00010000": 2})
    for v in values:
        event = {"id": "x", "data": {"v": v, "w": [v, {"z": v}]}}
        assert fast_canonical(event) == rfc8785.dumps(event), v
