"""sync/mqtt.py and sync/probe.py: client construction, backoff, probe, and the shipped
broker ACL.

Real Mosquitto processes on free ports (tests.support.Mosquitto); no mocked broker.
"""

from __future__ import annotations

import random
import shutil
import socket
from pathlib import Path

import pytest

from sync.mqtt import BACKOFF_MAX_S, MqttLink, backoff_delays, make_client
from sync.probe import probe_broker
from tests.conftest import skip_unless
from tests.support import (
    HallBroker,
    Mosquitto,
    agent_config,
    free_port,
    make_test_ca,
    wait_for,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def acl_broker(tmp_path):
    """The shipped config/mosquitto.conf and scripts/hall-broker.sh, with a device account
    (tests/test_broker.py checks the access rules themselves)."""
    with HallBroker(tmp_path / "acl-broker") as b:
        b.add_device("jiedong", "pad-a03", "pw-a03")
        yield b


def test_backoff_doubles_from_1_to_its_cap_with_jitter():
    delays = backoff_delays(rng=random.Random(7))
    got = [next(delays) for _ in range(12)]
    nominal = [min(2**i, BACKOFF_MAX_S) for i in range(12)]
    for d, n in zip(got, nominal, strict=True):
        assert n / 2 <= d <= n
    assert max(got) <= BACKOFF_MAX_S
    # Jitter: two devices with different random streams do not retry in lock-step.
    other = backoff_delays(rng=random.Random(8))
    assert got[:6] != [next(other) for _ in range(6)]


def test_probe_broker_ok_and_refused(tmp_path, broker):
    cfg = agent_config(tmp_path, broker.url)
    probe = probe_broker(cfg.mqtt, "probe-1", timeout=5)
    assert probe.ok, probe.line()
    assert "MQTT 5" in probe.detail

    cfg311 = agent_config(tmp_path, broker.url, mqtt={"protocol": "3.1.1"})
    probe = probe_broker(cfg311.mqtt, "probe-2", timeout=5)
    assert probe.ok and "3.1.1" in probe.detail, probe.line()

    closed = agent_config(tmp_path, f"mqtt://127.0.0.1:{free_port()}")
    probe = probe_broker(closed.mqtt, "probe-3", timeout=2)
    assert not probe.ok and probe.kind == "refused", probe.line()
    assert "nothing listens on" in probe.detail


def test_probe_broker_reports_bad_password(tmp_path, acl_broker):
    cfg = agent_config(tmp_path, acl_broker.url, mqtt={"username": "pad-a03"}, password="wrong")
    probe = probe_broker(cfg.mqtt, "probe-bad", timeout=5)
    assert not probe.ok and probe.kind == "auth failed", probe.line()
    assert "refused" in probe.detail and "authori" in probe.detail.lower()
    v311 = agent_config(
        tmp_path,
        acl_broker.url,
        mqtt={"username": "pad-a03", "protocol": "3.1.1"},
        password="wrong",
    )
    probe = probe_broker(v311.mqtt, "probe-bad-311", timeout=5)
    assert not probe.ok and probe.kind == "auth failed", probe.line()
    good = agent_config(tmp_path, acl_broker.url, mqtt={"username": "pad-a03"}, password="pw-a03")
    assert probe_broker(good.mqtt, "probe-good", timeout=5).ok


def test_client_socket_has_tcp_nodelay(tmp_path, broker):
    cfg = agent_config(tmp_path, broker.url)
    client = make_client(cfg.mqtt, "nodelay-test")
    client.connect(cfg.mqtt.host, cfg.mqtt.port)
    try:
        sock = client.socket()
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        client.disconnect()


def test_link_reconnects_after_broker_restart(tmp_path):
    broker = Mosquitto(tmp_path / "b").start()
    try:
        cfg = agent_config(tmp_path, broker.url)
        connects = []
        link = MqttLink(cfg.mqtt, "link-test", on_connect=lambda c: connects.append(1))
        link.start()
        assert link.connected.wait(5)
        broker.stop()
        assert wait_for(lambda: not link.connected.is_set(), 10)
        broker.start()
        # First retry comes 0.5-1 s after the drop, the next 1-2 s later.
        assert link.connected.wait(10)
        assert len(connects) == 2
        link.stop()
        assert not link.alive()
    finally:
        broker.stop()


def test_link_survives_paho_loop_stop_racing_its_network_threads_own_end(tmp_path):
    """paho's loop_stop() checks ``_thread is None`` and then joins ``_thread``; the network
    thread, ending by itself after a lost connection (reconnect_on_failure off), sets it to
    None in between. Forced here at the exact point (the thread's ``!=`` comparison that
    paho makes in between); before, the AttributeError ended the link's keeper thread and the
    device never reconnected."""
    broker = Mosquitto(tmp_path / "b").start()
    try:
        cfg = agent_config(tmp_path, broker.url)
        link = MqttLink(cfg.mqtt, "race-test")
        paho_loop_stop = link.client.loop_stop
        raced = []

        class EndsNow:
            """Stands in for paho's network thread while loop_stop compares it."""

            __hash__ = None  # type: ignore[assignment]

            def __ne__(self, other: object) -> bool:
                link.client._thread = None  # the network thread's own `finally`
                raced.append(1)
                return True

        def racing_loop_stop():
            if not raced:
                link.client._thread = EndsNow()
            return paho_loop_stop()

        link.client.loop_stop = racing_loop_stop
        link.start()
        assert link.connected.wait(5)
        broker.stop()
        assert wait_for(lambda: not link.connected.is_set(), 10)
        broker.start()
        assert link.connected.wait(10)
        assert raced and link.alive()
        link.stop()
        assert not link.alive()
    finally:
        broker.stop()


@skip_unless(shutil.which("openssl") is not None, "needs openssl")
def test_mqtts_with_ca_and_client_certificate(tmp_path):
    pki = make_test_ca(tmp_path / "pki")
    tls = {
        "cafile": pki["ca"],
        "certfile": pki["server_cert"],
        "keyfile": pki["server_key"],
        "require_certificate": "true",
    }
    with Mosquitto(tmp_path / "tls-broker", tls=tls) as broker:
        assert broker.url.startswith("mqtts://")
        with_cert = agent_config(
            tmp_path,
            broker.url,
            mqtt={
                "ca_file": str(pki["ca"]),
                "client_cert_file": str(pki["client_cert"]),
                "client_key_file": str(pki["client_key"]),
            },
        )
        probe = probe_broker(with_cert.mqtt, "tls-1", timeout=5)
        assert probe.ok and "TLS" in probe.detail, probe.line()
        # The broker demands a client certificate: without one the handshake fails.
        without = agent_config(tmp_path, broker.url, mqtt={"ca_file": str(pki["ca"])})
        probe = probe_broker(without.mqtt, "tls-2", timeout=5)
        assert not probe.ok
        # A client that does not trust the broker's CA refuses it (no silent downgrade).
        other = make_test_ca(tmp_path / "other-pki")
        wrong_ca = agent_config(tmp_path, broker.url, mqtt={"ca_file": str(other["ca"])})
        probe = probe_broker(wrong_ca.mqtt, "tls-3", timeout=5)
        assert not probe.ok and probe.kind == "TLS failed", probe.line()
        assert "certificate" in probe.detail.lower(), probe.line()


def test_refused_subscription_is_recorded(tmp_path):
    """The shipped broker setup (dynamic-security plugin) answers a refused SUBSCRIBE with
    0x87 in the SUBACK (tests/test_broker.py shows it on a real broker); here the callback is
    fed the reason codes paho would hand it, to check what the link records."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode

    cfg = agent_config(tmp_path, "mqtt://127.0.0.1:1")
    seen = []
    link = MqttLink(cfg.mqtt, "sub-test", on_subscribe=lambda mid, rcs: seen.append((mid, rcs)))
    granted = ReasonCode(PacketTypes.SUBACK, identifier=1)
    refused = ReasonCode(PacketTypes.SUBACK, identifier=0x87)
    link._on_subscribe(link.client, None, 7, [granted], None)
    assert link.subscribe_error is None
    link._on_subscribe(link.client, None, 8, [refused], None)
    assert link.subscribe_error == "subscription refused: Not authorized (0x87)"
    assert [m for m, _ in seen] == [7, 8]
