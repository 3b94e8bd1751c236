"""Identity on the broker: the shipped config/mosquitto.conf and scripts/hall-broker.sh in a
real Mosquitto (docs/topics.md "Identity", docs/broker.md).

Every refusal is asserted on the broker's own answer (SUBACK, PUBACK, CONNACK, a disconnect),
awaited by tests/mqttkit.Peer, never after a fixed sleep.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.envelope import uuid7
from agent.link.uplink import Uplink
from agent.outbox import Outbox
from central.collector import Collector
from tests.mqttkit import Peer, refused
from tests.support import HallBroker, agent_config, central_config, make_test_ca, wait_for

PASSWORDS = {"pad-a03": "pw-a03", "pad-b01": "pw-b01", "central-1": "pw-c1"}


@pytest.fixture
def hall(tmp_path):
    with HallBroker(tmp_path / "broker") as broker:
        broker.add_collector("central-1", PASSWORDS["central-1"])
        broker.add_device("jiedong", "pad-a03", PASSWORDS["pad-a03"])
        broker.add_device("jiedong", "pad-b01", PASSWORDS["pad-b01"])
        yield broker


def peer(broker, user: str, **kw) -> Peer:
    return Peer(broker.port, user, PASSWORDS[user], **kw)


def collector(tmp_path, url: str, protocol: str = "5", **mqtt) -> Collector:
    cfg = central_config(
        f"sqlite:///{tmp_path}/hall.db",
        url,
        mqtt={"username": "central-1", "protocol": protocol, **mqtt},
        password=PASSWORDS["central-1"],
    )
    c = Collector(cfg)
    c.start()
    assert c.wait_connected(10), c.link.last_error or c.link.subscribe_error
    return c


def batch(device: str, n: int) -> bytes:
    ev = {
        "id": str(uuid7()),
        "seq": n,
        "type": "device.test",
        "at": "2026-11-26T09:12:03.120+08:00",
        "clock": "synced",
        "device": device,
        "site": "jiedong",
        "data": {"note": str(n)},
    }
    return json.dumps({"v": 1, "device": device, "site": "jiedong", "events": [ev]}).encode()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_device_cannot_join_the_collectors_shared_subscription(tmp_path, hall, protocol):
    """With acl_file the broker granted the subscription (SUBACK 0), handed the intruder every
    other batch and dropped it: the collector got 10 of 20."""
    c = collector(tmp_path, hall.url, protocol)
    try:
        with peer(hall, "pad-b01", protocol=protocol) as intruder:
            assert not refused(intruder.connect())
            codes = intruder.subscribe("$share/hall-central/hall/+/+/events")
            assert refused(codes), codes  # 0x87 (MQTT 5) / 0x80 (3.1.1) in the SUBACK
            with peer(hall, "pad-a03", protocol=protocol) as device:
                assert not refused(device.connect())
                for n in range(1, 21):
                    assert not refused(
                        device.publish("hall/jiedong/pad-a03/events", batch("pad-a03", n))
                    )
            assert wait_for(lambda: c.events_stored == 20, 20), c.events_stored
            assert c.batches == 20 and intruder.messages == []
    finally:
        c.stop()


def test_a_device_cannot_take_another_devices_client_id(hall):
    """use_username_as_clientid: the broker replaces a client id with the account name, so a
    CONNECT with another device's id no longer knocks that device off (session takeover)."""
    with peer(hall, "pad-a03", client_id="jiedong-pad-a03") as victim:
        assert not refused(victim.connect())
        with peer(hall, "pad-b01", client_id="jiedong-pad-a03") as thief:
            assert not refused(thief.connect())  # CONNACK: connected, as itself
            # A round trip on the victim after the thief's CONNACK: a takeover would have
            # closed the victim's connection before that CONNACK was sent.
            assert not refused(victim.publish("hall/jiedong/pad-a03/status", b"{}"))
            assert victim.disconnects == []
            # And the thief is itself, not the victim: it may not use pad-a03's topics.
            assert refused(thief.subscribe("hall/jiedong/pad-a03/ack"))


def test_devices_publish_and_read_only_their_own_topics(hall):
    with peer(hall, "pad-a03") as device:
        assert not refused(device.connect())
        # Own topics: granted.
        assert not refused(device.subscribe("hall/jiedong/pad-a03/ack"))
        assert not refused(device.subscribe("hall/jiedong/roster"))
        assert not refused(device.subscribe("hall/jiedong/schedule"))
        assert not refused(device.subscribe("hall/jiedong/summary"))
        assert not refused(device.publish("hall/jiedong/pad-a03/events", batch("pad-a03", 1)))
        assert not refused(device.publish("hall/jiedong/pad-a03/status", b"{}"))
        # Another device's topics, the collector's topics, wildcards: refused by the broker.
        for topic in (
            "hall/jiedong/pad-b01/ack",
            "hall/+/+/ack",
            "hall/jiedong/+/events",
            "hall/#",
            "hall/chengxi/roster",
            "hall/chengxi/schedule",
            "hall/chengxi/summary",  # another site's month: never
            "hall/+/summary",
            "$share/hall-central/hall/jiedong/pad-a03/events",
        ):
            assert refused(device.subscribe(topic)), topic
        for topic in (
            "hall/jiedong/pad-b01/events",
            "hall/jiedong/pad-b01/status",
            "hall/jiedong/pad-a03/ack",  # only the collector writes acks
            "hall/jiedong/roster",  # and rosters
            "hall/jiedong/schedule",  # and schedules
            "hall/jiedong/summary",  # and summaries
            "hall/_central/status",
        ):
            assert refused(device.publish(topic, b"{}")), topic
    with peer(hall, "central-1") as central:
        assert not refused(central.connect())
        assert not refused(central.subscribe("$share/hall-central/hall/+/+/events"))
        assert not refused(central.publish("hall/jiedong/pad-a03/ack", b"{}"))
        assert not refused(central.publish("hall/jiedong/roster", b"{}"))
        assert not refused(central.publish("hall/jiedong/schedule", b"{}"))
        assert not refused(central.publish("hall/jiedong/summary", b"{}"))
        assert refused(central.publish("hall/jiedong/pad-a03/events", b"{}"))


def test_wrong_password_is_refused_in_the_connack(hall):
    with Peer(hall.port, "pad-a03", "not-the-password") as device:
        assert refused(device.connect())


def check_broker(tmp_path: Path, hall, device: str, password: str) -> tuple[str, Path]:
    """``hall-agent check --only broker`` as a technician runs it on a device of site jiedong:
    its line, and the device's password file."""
    secret = tmp_path / f"{device}.pass"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    conf = tmp_path / f"{device}.toml"
    conf.write_text(
        f'[device]\nid = "{device}"\nsite = "jiedong"\ndata_dir = "{tmp_path / device}"\n'
        f'[mqtt]\nurl = "{hall.url}"\nusername = "{device}"\npassword_file = "{secret}"\n'
    )
    r = subprocess.run(
        [sys.executable, "-m", "agent.cli", "-c", str(conf), "check", "--only", "broker"],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=60,
    )
    [line] = [x for x in r.stdout.splitlines() if x.startswith("[") and "] broker:" in x]
    assert (r.returncode == 0) == line.startswith("[ ok ]"), r.stdout + r.stderr
    return line, secret


def test_a_refused_login_names_the_hall_broker_commands_that_fix_it(tmp_path, hall):
    """The hall's accounts live in the dynamic-security plugin (docs/broker.md): the advice
    names scripts/hall-broker.sh with this device's values, and following it works."""
    line, secret = check_broker(tmp_path, hall, "pad-a03", "a-new-password")
    assert line.startswith("[FAIL] broker: auth failed: the broker refused user 'pad-a03'"), line
    assert f"the password in mqtt.password_file ({secret})" in line
    assert "`scripts/hall-broker.sh set-password pad-a03 FILE` if the account exists" in line
    assert "`scripts/hall-broker.sh add-device jiedong pad-a03 FILE` if it does not" in line
    assert "mosquitto_passwd" not in line and "password file" not in line.replace("_file", "")
    hall.script("set-password", "pad-a03", str(secret))  # the advice, as printed
    line, _ = check_broker(tmp_path, hall, "pad-a03", "a-new-password")
    assert line.startswith("[ ok ] broker:"), line

    # No account at all: set-password says so, add-device (the other advice) fixes it.
    line, secret = check_broker(tmp_path, hall, "pad-c09", "pw-c09")
    assert "`scripts/hall-broker.sh add-device jiedong pad-c09 FILE`" in line, line
    with pytest.raises(RuntimeError, match="no account 'pad-c09' on this broker: create it"):
        hall.script("set-password", "pad-c09", str(secret))
    hall.script("add-device", "jiedong", "pad-c09", str(secret))
    line, _ = check_broker(tmp_path, hall, "pad-c09", "pw-c09")
    assert line.startswith("[ ok ] broker:"), line


def test_a_running_link_refused_at_login_says_where_the_fix_is(tmp_path, hall):
    """What the agent's journal, its status and ping show while the broker refuses it."""
    from sync.mqtt import MqttLink

    cfg = agent_config(tmp_path, hall.url, mqtt={"username": "pad-a03"}, password="stale")
    link = MqttLink(cfg.mqtt, "pad-a03", name="uplink")
    link.start()
    try:
        assert wait_for(lambda: link.last_error is not None, 10)
        assert link.last_error.startswith("broker refused the connection: Not authorized")
        assert link.last_error.endswith(
            "for user 'pad-a03'; `check --only broker` names the fix"
        ), link.last_error
    finally:
        link.stop()


def test_a_real_batch_over_tls_with_per_device_credentials(tmp_path):
    """mqtts:// with the CA, a client certificate and the device's own account: a batch goes
    out of the outbox, is stored centrally and acked back."""
    pki = make_test_ca(tmp_path / "pki")
    tls = {
        "cafile": str(pki["ca"]),
        "certfile": str(pki["server_cert"]),
        "keyfile": str(pki["server_key"]),
        "require_certificate": "true",
    }
    with HallBroker(tmp_path / "broker", tls=tls) as hall:
        hall.add_collector("central-1", PASSWORDS["central-1"])
        hall.add_device("jiedong", "pad-a03", PASSWORDS["pad-a03"])
        tls_client = {
            "ca_file": str(pki["ca"]),
            "client_cert_file": str(pki["client_cert"]),
            "client_key_file": str(pki["client_key"]),
        }
        c = collector(tmp_path, hall.tls_url, **tls_client)
        cfg = agent_config(
            tmp_path / "data",
            hall.tls_url,
            mqtt={"username": "pad-a03", **tls_client},
            password=PASSWORDS["pad-a03"],
        )
        box = Outbox.for_config(cfg, clock=lambda: "synced")
        up = Uplink(cfg, box)
        up.start()
        try:
            box.append_many([("device.test", {"note": str(i)}, None, None) for i in range(25)])
            assert wait_for(lambda: box.stats().pending == 0, 30), up.health()
            assert c.store.query("SELECT count(*) FROM events")[0][0] == 25
            assert up.health()["state"] == "ok" and box.stats().dead_letter == 0
        finally:
            up.stop()
            c.stop()
            box.close()
        # The same account without the password it was given: refused.
        bad = agent_config(
            tmp_path / "data2",
            hall.tls_url,
            mqtt={"username": "pad-a03", **tls_client},
            password="x",
        )
        from sync.probe import probe_broker

        probe = probe_broker(bad.mqtt, "probe", timeout=5)
        assert not probe.ok and probe.kind == "auth failed", probe.line()
        assert "refused" in probe.detail
        # use_username_as_clientid is a listener setting: the TLS listener has it too.
        hall.add_device("jiedong", "pad-b01", PASSWORDS["pad-b01"])
        certs = {"tls_ca": str(pki["ca"]), "tls_cert": str(pki["client_cert"])}
        certs["tls_key"] = str(pki["client_key"])
        with Peer(hall.tls_port, "pad-a03", PASSWORDS["pad-a03"], client_id="x", **certs) as victim:
            assert not refused(victim.connect())
            with Peer(
                hall.tls_port, "pad-b01", PASSWORDS["pad-b01"], client_id="x", **certs
            ) as thief:
                assert not refused(thief.connect())
                assert not refused(victim.publish("hall/jiedong/pad-a03/status", b"{}"))
                assert victim.disconnects == []


def test_a_removed_device_is_disconnected_and_refused(hall):
    with peer(hall, "pad-b01") as device:
        assert not refused(device.connect())
        hall.script("remove-device", "jiedong", "pad-b01")
        assert wait_for(lambda: device.disconnects, 10)  # the plugin kicks its connection
    with peer(hall, "pad-b01") as again:
        assert refused(again.connect())  # the account is gone: CONNACK refuses it


def _ctrl(hall, *args: str) -> None:
    import subprocess

    login = ["-h", "127.0.0.1", "-p", str(hall.port), "-u", hall.ADMIN, "-P", hall.ADMIN_PASSWORD]
    subprocess.run(
        ["mosquitto_ctrl", *login, "dynsec", *args],
        check=True,
        capture_output=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    "topic, fault", [("hall/_central/status", False), ("hall/jiedong/pad-a03/ack", True)]
)
def test_uplink_health_after_a_refused_subscription(tmp_path, hall, topic, fault):
    """Acks refused: the uplink is deaf, a fault. Only the collectors' announcements refused
    (an ACL written before they existed): batches still flow; resends just wait longer."""
    _ctrl(hall, "removeRoleACL", "device-jiedong-pad-a03", "subscribeLiteral", topic)
    c = collector(tmp_path, hall.url)
    cfg = agent_config(
        tmp_path / "data", hall.url, mqtt={"username": "pad-a03"}, password=PASSWORDS["pad-a03"]
    )
    box = Outbox.for_config(cfg, clock=lambda: "synced")
    up = Uplink(cfg, box)
    up.start()
    try:
        box.append_many([("device.test", {"note": str(i)}, None, None) for i in range(5)])
        if fault:
            assert wait_for(lambda: up.health()["state"] == "fault", 10)
            assert "subscription refused" in up.health()["detail"]
        else:
            assert wait_for(lambda: box.stats().pending == 0, 20)
            assert up.health()["state"] == "ok" and up.link.subscribe_error is None
    finally:
        up.stop()
        c.stop()
        box.close()


def test_a_kiosk_refused_its_summary_is_degraded_and_punches_on(tmp_path, hall):
    """An account set up before summaries were published: the kiosk's events flow, its status
    says what to run (docs/broker.md), the screen shows no month line."""
    from agent.config import AgentConfig

    _ctrl(
        hall, "removeRoleACL", "device-jiedong-pad-a03", "subscribeLiteral", "hall/jiedong/summary"
    )
    c = collector(tmp_path, hall.url)
    cfg = AgentConfig.model_validate(
        {
            "device": {"id": "pad-a03", "site": "jiedong", "data_dir": str(tmp_path / "data")},
            "mqtt": {"url": hall.url, "username": "pad-a03"},
            "sync": {"min_free_mb": 0},
            "attendance": {"camera": "0", "realtime": False},
            "screen": {"listen": ""},
        }
    )
    cfg.mqtt._password = PASSWORDS["pad-a03"]
    box = Outbox.for_config(cfg, clock=lambda: "synced")
    up = Uplink(cfg, box)
    up.start()
    try:
        box.append_many([("device.test", {"note": str(i)}, None, None) for i in range(3)])
        assert wait_for(lambda: box.stats().pending == 0, 20)
        assert wait_for(lambda: "summary" in up.health(), 10), up.health()
        health = up.health()
        assert health["state"] == "degraded" and "schedule" not in health
        assert "broker refused hall/jiedong/summary" in health["summary"]
        assert "hall-broker.sh add-device" in health["summary"]
    finally:
        up.stop()
        c.stop()
        box.close()


def test_setup_and_accounts_can_be_run_again_for_an_upgrade(hall):
    """docs/broker.md: a newer release adds rules by running the same commands again; an
    account keeps its password (the new one given is ignored) and works as before."""
    hall.script("setup")
    hall.script("add-collector", "central-1", str(hall._secret("other-c", "new-pw")))
    out = hall.script("add-device", "jiedong", "pad-a03", str(hall._secret("other-d", "new-pw")))
    assert "device account pad-a03 ready" in out.stdout
    for name in ("central-1", "pad-a03"):
        with peer(hall, name) as client:
            assert not refused(client.connect())
    with peer(hall, "pad-a03") as device:
        assert not refused(device.connect())
        assert not refused(device.subscribe("hall/jiedong/schedule"))
        assert not refused(device.subscribe("hall/jiedong/summary"))
