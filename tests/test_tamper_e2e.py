"""The whole tamper-evidence loop as a hall runs it (docs/tamper.md): a device with its own key
files signs from its outbox, the real collector stores and acks through a real Mosquitto and
finds the key pending, the technician trusts the device's ``device.pub`` with the command,
the month is sealed, and ``verify`` then names each row someone changes or deletes."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from agent.keys import fingerprint
from agent.link.uplink import Uplink
from agent.outbox import Outbox
from agent.signing import start_signing
from contract import EventType
from tests.conftest import skip_unless
from tests.support import agent_config, wait_for

needs_mosquitto = skip_unless(shutil.which("mosquitto") is not None, "needs mosquitto")


def rating(level: int) -> dict[str, Any]:
    labels = {5: "非常满意", 4: "满意", 3: "基本满意", 2: "不满意", 1: "非常不满意"}
    return {
        "window": "A03",
        "pad": 1,
        "staff_id": "S0012",
        "level": level,
        "label": labels[level],
        "reasons": ["态度不好"] if level <= 2 else [],
        "invite_id": None,
    }


def central(conf: Path, *args: str) -> int:
    from central.cli import main

    return main(["-c", str(conf), *args])


def open_kinds(store: Any) -> list[str]:
    return [f.kind for f in store.chain_findings(open_only=True)]


@needs_mosquitto
def test_signed_at_the_device_trusted_sealed_and_every_change_named(
    tmp_path: Path, broker: Any, collector: Any, capsys: Any
) -> None:
    data = tmp_path / "data"
    cfg = agent_config(data, broker.url)
    box = Outbox.for_config(cfg, clock=lambda: "synced")
    start_signing(cfg.device.data_dir, box)
    up = Uplink(cfg, box)
    up.start()
    try:
        box.append_many([(EventType.RATING, rating(n), None, None) for n in (5, 4, 2, 5, 3, 1)])
        assert wait_for(lambda: box.stats().pending == 0, 30)
    finally:
        up.stop()
        box.close()
    store = collector.store
    ids = [str(r[0]) for r in store.query("SELECT id FROM events ORDER BY seq")]
    assert len(ids) == 7  # the key's announcement, then six ratings

    # The centre has never seen this key: pending, shown, not trusted.
    assert wait_for(lambda: open_kinds(store) == ["untrusted_key"], 15), open_kinds(store)
    conf = tmp_path / "central.toml"
    conf.write_text(
        f'[store]\nurl = "sqlite:///{tmp_path}/hall.db"\n'
        f'[seal]\nkey_file = "{tmp_path}/seal/seal.key"\n',
        "utf-8",
    )
    capsys.readouterr()
    assert central(conf, "devices") == 0
    listing = capsys.readouterr().out
    public = (data / "device.pub").read_text("utf-8").strip()
    assert fingerprint(public) in listing and "pending" in listing

    assert (
        central(conf, "devices", "trust", "pad-a03", str(data / "device.pub"), "--by", "李工") == 0
    )
    assert open_kinds(store) == []
    head = store.chain_head("jiedong", "pad-a03")
    assert (head.last_seq, head.signed, head.unsigned) == (7, 7, 0)

    month = datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
    assert central(conf, "seal", "--month", month) == 0
    capsys.readouterr()
    assert central(conf, "verify", "--month", month) == 0, capsys.readouterr()

    # Someone turns the 差评 (seq 4) into a 非常满意 in the store.
    changed = ids[3]
    with store.transaction() as run:
        run(
            "UPDATE events SET data = %s WHERE id = %s",
            (json.dumps(rating(5), ensure_ascii=False), changed),
        )
    capsys.readouterr()
    assert central(conf, "verify", "--month", month) == 1
    printed = capsys.readouterr()
    fails = [line for line in printed.out.splitlines() if line.strip().startswith("FAIL")]
    assert fails and all(changed in line for line in fails), printed
    assert any("signature" in line for line in fails), fails
    assert any("changed since the seal" in line for line in fails), fails

    # ... and deletes the 非常不满意 (seq 7, the last) and the 基本满意 before it (seq 6).
    with store.transaction() as run:
        run("DELETE FROM events WHERE id IN (%s, %s)", (ids[5], ids[6]))
    capsys.readouterr()
    assert central(conf, "verify", "--month", month) == 1
    out = capsys.readouterr().out
    assert ids[5] in out and ids[6] in out and "missing" in out, out


def test_a_moved_punch_time_fails_its_signature_on_postgresql_too(pg_schema: str) -> None:
    """PostgreSQL keeps the instant the reports file by (``at``) apart from the signed text
    (``at_text``): moving the instant and leaving the text must not pass."""
    from central.store import open_store
    from tests.chainkit import store_events
    from tests.support import PG_URL
    from tests.test_chains import announced_device, chain_problems, kinds, run

    with open_store(PG_URL, pg_schema) as store:
        dev = announced_device(store)
        late = dev.events(3)
        store_events(store, late)
        run(store)
        assert kinds(store) == []
        target = late[1]
        store.query(
            "UPDATE events SET at = at - interval '20 minutes' WHERE id = %s RETURNING id",
            (target["id"],),
        )
        assert any(target["id"] in p and "bad_signature" in p for p in chain_problems(store))
        store.query("DELETE FROM chain_heads RETURNING site")
        run(store)
        assert kinds(store) == [("bad_signature", target["seq"])]


def test_a_verifier_step_never_overwrites_a_head_that_devices_trust_took_back(
    pg_schema: str,
) -> None:
    """The verifier reads a device's head, walks, and writes the head further; a trust that
    takes the head back in between (to have events walked again) must win."""
    import pytest

    from central.store import open_store
    from central.store.chains import HeadMark, HeadMoved
    from tests.chainkit import store_events
    from tests.support import PG_URL
    from tests.test_chains import announced_device, verifier

    with open_store(PG_URL, pg_schema) as store:
        dev = announced_device(store)
        v = verifier(store)
        v.note("jiedong", "k1", None)
        v.run_once()
        assert store.chain_head("jiedong", "k1").last_seq == 1
        store_events(store, dev.events(3))
        real = store.commit_chain
        calls = []

        def trust_meanwhile(*args: Any, **kw: Any) -> None:
            if not calls:  # as trust_key does when the new key checks from the start
                store.query("DELETE FROM chain_heads RETURNING site")
            calls.append(1)
            real(*args, **kw)

        store.commit_chain = trust_meanwhile  # type: ignore[method-assign]
        v.note("jiedong", "k1", None)
        v.run_once()
        assert store.chain_head("jiedong", "k1") is None  # the step wrote nothing
        assert v.errors == 0
        v.run_once()  # noted again: walked from the head as it is now
        assert store.chain_head("jiedong", "k1").last_seq == 4
        with pytest.raises(HeadMoved):  # a step that started before any head was written
            real(store.chain_head("jiedong", "k1"), [], [], [], datetime.now(UTC), HeadMark(None))
