"""The collector with its chain verifier, through a real Mosquitto (docs/tamper-centre.md):
a batch with a bad signature is stored and acked exactly as a good one, the finding appears
shortly after, and a verifier that fails never stops ingest."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from central.collector import Collector
from central.config import CentralConfig
from central.store import open_store
from tests.chainkit import SigningDevice, public_b64, raw_public
from tests.mqttkit import Peer
from tests.support import Mosquitto, wait_for

ACK = "hall/jiedong/k1/ack"


def config(tmp_path: Path, broker: Mosquitto) -> CentralConfig:
    return CentralConfig.model_validate(
        {
            "mqtt": {"url": broker.url},
            "store": {"url": f"sqlite:///{tmp_path}/hall.db"},
            "chains": {"gap_grace_s": 0},
            "board": {"listen": ""},
            "office": {"listen": ""},
        }
    )


@pytest.fixture
def device(broker: Mosquitto) -> Iterator[Peer]:
    with Peer(broker.port, "k1", "k1", client_id="k1") as peer:
        peer.connect()
        peer.subscribe(ACK)
        yield peer


def send(peer: Peer, events: list[dict[str, Any]]) -> dict[str, Any]:
    """Publish one batch and return the collector's ack for it."""
    before = len(peer.messages)
    body = {"v": 1, "device": "k1", "site": "jiedong", "events": events}
    peer.publish("hall/jiedong/k1/events", json.dumps(body).encode())
    assert wait_for(lambda: len(peer.messages) > before, 10)
    return json.loads(peer.messages[before].payload)


def test_a_bad_signature_is_acked_like_a_good_one_and_found_after(tmp_path, broker, device):
    from central.chainrules import fingerprint

    collector = Collector(config(tmp_path, broker))
    collector.start()
    try:
        assert collector.wait_connected(10)
        dev = SigningDevice()
        with open_store(f"sqlite:///{tmp_path}/hall.db") as s:
            raw = raw_public(dev.key)
            s.trust_key("jiedong", "k1", public_b64(dev.key), fingerprint(raw), "test", dev.at)
        good = [dev.announce(dev.key), *dev.events(2)]
        assert send(device, good) == {"v": 1, "ids": [e["id"] for e in good], "rejected": []}
        forged = dev.event(signer=Ed25519PrivateKey.generate())
        assert send(device, [forged]) == {"v": 1, "ids": [forged["id"]], "rejected": []}
        assert collector.store.event(forged["id"]).sig == forged["sig"]

        def found() -> list[tuple[str, str]]:
            return [(f.kind, f.event_id) for f in collector.store.chain_findings()]

        assert wait_for(lambda: found() == [("bad_signature", forged["id"])], 10), found()
        assert collector.store.chain_head("jiedong", "k1").last_seq == 4
    finally:
        collector.stop()


def test_a_failing_verifier_never_stops_ingest(tmp_path, broker, device):
    collector = Collector(config(tmp_path, broker))

    def down() -> Any:
        raise RuntimeError("the verifier's store is down")

    collector.verifier._store_factory = down
    collector.start()
    try:
        assert collector.wait_connected(10)
        dev = SigningDevice()
        for _ in range(2):
            events = dev.events(3)
            assert send(device, events)["ids"] == [e["id"] for e in events]
        assert wait_for(lambda: collector.verifier.errors >= 1, 10)
        assert collector.alive() and collector.verifier.alive()
        assert collector.store.event_count("k1") == 6
    finally:
        collector.stop()
