"""sync/uplink.py against a real Mosquitto; the centre is either our collector or a peer made
of mosquitto_sub/mosquitto_pub (docs/topics.md checked against code that is not ours)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from agent.config import AttendanceSection
from agent.outbox import Outbox
from central.collector import Collector
from sync.uplink import Uplink, uplink_worker_factories
from tests.conftest import skip_unless
from tests.support import (
    HallBroker,
    Mosquitto,
    agent_config,
    central_config,
    mosquitto_pub,
    mosquitto_sub_args,
    wait_for,
)

REPO = Path(__file__).resolve().parents[1]
pytestmark = skip_unless(
    shutil.which("mosquitto_sub") is not None, "needs mosquitto_pub/mosquitto_sub"
)


@pytest.fixture
def agent(tmp_path, broker):
    """(cfg, outbox, start) where start(**sync) returns a started Uplink; all stopped after."""
    made: list = []

    def start(data_dir=None, health=None, **sync):
        cfg = agent_config(data_dir or tmp_path / "data", broker.url, sync=sync)
        box = Outbox.for_config(cfg, clock=lambda: "synced")
        up = Uplink(cfg, box, health or (lambda: {"pad-bus": {"state": "ok"}}))
        up.start()
        made.append((up, box))
        return up, box

    yield start
    for up, box in made:
        up.stop()
        box.close()


def sub(broker, topic, count, timeout=10):
    proc = subprocess.Popen(
        mosquitto_sub_args(broker.port, topic, count=count, timeout=timeout, extra=("-V", "5")),
        stdout=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: False, 0.3)  # no condition to observe: let mosquitto_sub subscribe
    return proc


def pub(broker, topic, payload: str):
    mosquitto_pub(broker.port, topic, payload)


def rating(level=4):
    return {
        "window": "A03",
        "pad": 1,
        "staff_id": "S1",
        "level": level,
        "label": "满意",
        "reasons": [],
        "invite_id": None,
    }


def test_batches_follow_the_contract_and_only_the_centres_ack_deletes(agent, broker):
    """Peer centre: mosquitto_sub reads the batches, mosquitto_pub sends the ack."""
    events_sub = sub(broker, "hall/jiedong/pad-a03/events", count=3, timeout=2)
    up, box = agent(batch_size=40, max_in_flight=2, ack_timeout_s=30)
    box.append_many([("rating.submitted", rating(), None, None) for _ in range(100)])
    out, _ = events_sub.communicate(timeout=20)
    batches = [json.loads(line) for line in out.splitlines()]
    # Window of 2: only two batches go out before an ack; the third comes after the first ack.
    assert len(batches) == 2
    for b in batches:
        assert set(b) == {"v", "device", "site", "events"}
        assert (b["v"], b["device"], b["site"]) == (1, "pad-a03", "jiedong")
        assert len(b["events"]) == 40
        assert [e["seq"] for e in b["events"]] == sorted(e["seq"] for e in b["events"])
    assert [e["seq"] for e in batches[0]["events"]] == list(range(1, 41))
    assert [e["seq"] for e in batches[1]["events"]] == list(range(41, 81))
    # PUBACKs have long come back; the outbox still holds every event (no centre ack yet).
    assert box.stats().pending == 100

    third = sub(broker, "hall/jiedong/pad-a03/events", count=1)
    ids = [e["id"] for e in batches[0]["events"]]
    pub(broker, "hall/jiedong/pad-a03/ack", json.dumps({"v": 1, "ids": ids, "rejected": []}))
    assert wait_for(lambda: box.stats().pending == 60, 10)
    nxt = json.loads(third.communicate(timeout=20)[0])
    assert [e["seq"] for e in nxt["events"]] == list(range(81, 101))

    # A rejected id goes to the dead-letter table, never to be resent.
    pub(
        broker,
        "hall/jiedong/pad-a03/ack",
        json.dumps(
            {
                "v": 1,
                "ids": [e["id"] for e in batches[1]["events"][1:]],
                "rejected": [{"id": batches[1]["events"][0]["id"], "reason": "test reason"}],
            }
        ),
    )
    assert wait_for(lambda: box.stats().pending == 20, 10)
    [dead] = box.dead_letters()
    assert dead["id"] == batches[1]["events"][0]["id"] and dead["reason"] == "test reason"

    # Garbage on the ack topic is ignored; the uplink carries on.
    pub(broker, "hall/jiedong/pad-a03/ack", "not json")
    pub(broker, "hall/jiedong/pad-a03/ack", json.dumps({"v": 1, "ids": "oops"}))
    pub(
        broker,
        "hall/jiedong/pad-a03/ack",
        json.dumps({"v": 1, "ids": [e["id"] for e in nxt["events"]], "rejected": []}),
    )
    assert wait_for(lambda: box.stats().pending == 0, 10)
    assert up.alive()


def test_unacked_batch_is_resent_after_ack_timeout(agent, broker):
    events_sub = sub(broker, "hall/jiedong/pad-a03/events", count=2, timeout=15)
    up, box = agent(batch_size=10, max_in_flight=1, ack_timeout_s=1)
    box.append_many([("device.test", {"note": str(i)}, None, None) for i in range(5)])
    out, _ = events_sub.communicate(timeout=20)
    first, second = (json.loads(line) for line in out.splitlines())
    assert [e["id"] for e in first["events"]] == [e["id"] for e in second["events"]]
    assert box.stats().pending == 5
    assert up.counters.resends >= 1


def test_status_is_retained_with_outbox_and_components(agent, broker):
    up, box = agent(status_interval_s=1)
    box.append("device.test", {"note": "x"})  # no centre: stays pending
    status_topic = "hall/jiedong/pad-a03/status"

    def latest():
        r = subprocess.run(
            mosquitto_sub_args(
                broker.port, status_topic, count=1, timeout=3, extra=("--retained-only",)
            ),
            capture_output=True,
            text=True,
        )
        return json.loads(r.stdout) if r.stdout.strip() else None

    assert wait_for(lambda: (latest() or {}).get("outbox", {}).get("pending") == 1, 10)
    s = latest()
    assert s["v"] == 1 and s["state"] == "online" and s["version"]
    assert s["outbox"]["oldest_s"] is not None and s["outbox"]["dead_letter"] == 0
    assert s["components"]["pad-bus"] == {"state": "ok"}
    assert s["components"]["uplink"]["connected"] is True
    assert s["at"][:2] == "20" and s["at"].endswith("+08:00")  # device.timezone
    up.stop()
    assert wait_for(lambda: (latest() or {}).get("state") == "offline", 10)


def test_acl_refusal_0x87_keeps_events_and_shows_fault(tmp_path):
    """pad-a03's credentials, kiosk-01's topics: the shipped broker setup refuses (PUBACK
    0x87); nothing is lost."""
    with HallBroker(tmp_path / "b") as broker:
        broker.add_device("jiedong", "pad-a03", "pw")
        cfg = agent_config(
            tmp_path / "data",
            broker.url,
            device="kiosk-01",
            mqtt={"username": "pad-a03"},
            password="pw",
            sync={"ack_timeout_s": 30},
        )
        box = Outbox.for_config(cfg, clock=lambda: "synced")
        up = Uplink(cfg, box)
        up.start()
        try:
            box.append("device.test", {"note": "refused"})
            # Two refusals arrive, in either order: the SUBACK for kiosk-01's acks and the
            # PUBACK for its events; the publish refusal is the one reported first.
            assert wait_for(lambda: up.refused_error is not None, 10)
            h = up.health()
            assert h["state"] == "fault"
            assert "0x87" in h["detail"] and "kiosk-01/events" in h["detail"]
            assert box.stats().pending == 1 and box.stats().dead_letter == 0
        finally:
            up.stop()
            box.close()


def test_a_kiosk_account_older_than_the_schedule_says_so_until_add_device_again(tmp_path):
    """An account provisioned before kiosks read the schedule topic: the broker refuses that
    one subscription; the kiosk still sends (degraded, not fault) and says what to run; after
    `hall-broker.sh add-device` again it receives the schedule on its next connect."""
    import subprocess as sp

    with HallBroker(tmp_path / "b") as broker:
        broker.add_device("jiedong", "kiosk-01", "pw")
        ctrl = [
            "mosquitto_ctrl", "-h", "127.0.0.1", "-p", str(broker.port), "-u", broker.ADMIN,
            "-P", broker.ADMIN_PASSWORD, "dynsec", "removeRoleACL", "device-jiedong-kiosk-01",
        ]  # fmt: skip
        for kind in ("subscribeLiteral", "publishClientReceive"):
            sp.run([*ctrl, kind, "hall/jiedong/schedule"], check=True, capture_output=True)
        cfg = agent_config(
            tmp_path / "data",
            broker.url,
            device="kiosk-01",
            mqtt={"username": "kiosk-01"},
            password="pw",
        )
        cfg = cfg.model_copy(update={"attendance": AttendanceSection(camera="0")})
        box = Outbox.for_config(cfg, clock=lambda: "synced")
        up = Uplink(cfg, box)
        up.start()
        try:
            assert wait_for(lambda: "schedule" in up.health(), 10)
            h = up.health()
            assert h["state"] == "degraded" and "add-device" in h["schedule"]
            box.append("device.test", {"note": "still sent"})
            assert wait_for(lambda: up.counters.events_sent >= 1, 10)
            assert up.counters.refused == 0 and up.health()["state"] == "degraded"
        finally:
            up.stop()
        broker.add_device("jiedong", "kiosk-01", "pw")  # the fix: keeps the password
        up = Uplink(cfg, box)
        up.start()
        try:
            assert wait_for(lambda: up.health().get("connected"), 10)
            assert wait_for(lambda: "schedule" not in up.health(), 10), up.health()
        finally:
            up.stop()
            box.close()


def test_one_uplink_per_outbox(agent, tmp_path):
    first, _ = agent()
    assert wait_for(lambda: first.health()["connected"], 10)
    second, _ = agent(data_dir=tmp_path / "data")
    assert wait_for(lambda: second.health()["state"] == "fault", 10)
    assert "another uplink" in second.health()["detail"]
    assert second.link is None  # never connected, never sends
    first.stop()
    # The lock is free again: the waiting uplink takes over within its retry period.
    assert wait_for(lambda: second.health().get("connected"), 15)


def test_end_to_end_with_collector_and_factory(tmp_path, broker):
    cfg = agent_config(tmp_path / "data", broker.url, sync={"batch_size": 7})
    box = Outbox.for_config(cfg, clock=lambda: "synced")
    collector = Collector(central_config(f"sqlite:///{tmp_path}/hall.db", broker.url))
    collector.start()
    assert collector.wait_connected(10)
    factories = uplink_worker_factories(cfg, box, lambda: {})
    worker = factories["uplink"]()
    worker.start()
    try:
        box.append_many([("rating.submitted", rating(), None, None) for _ in range(50)])
        assert wait_for(lambda: box.stats().pending == 0, 20)
        rows = collector.store.query("SELECT seq FROM events ORDER BY seq")
        assert [r[0] for r in rows] == list(range(1, 51))
        assert worker.alive() and worker.health()["state"] == "ok"
    finally:
        worker.stop()
        collector.stop()
        box.close()


def test_offline_backlog_stays_in_the_outbox_not_in_paho(tmp_path):
    """Days offline: nothing is handed to paho while disconnected; its queue is bounded."""
    from tests.support import free_port

    cfg = agent_config(
        tmp_path / "data", f"mqtt://127.0.0.1:{free_port()}", sync={"max_in_flight": 3}
    )
    box = Outbox.for_config(cfg, clock=lambda: "synced")
    up = Uplink(cfg, box)
    up.start()
    try:
        box.append_many([("device.test", {"note": str(i)}, None, None) for i in range(5000)])
        assert wait_for(lambda: up.link is not None and up.link.last_error is not None, 10)
        assert up.health()["state"] == "degraded" and "cannot connect" in up.health()["detail"]
        assert up.counters.batches_sent == 0
        assert up.link.client.max_queued_messages == 3 + 4
        assert up.link.client.max_inflight_messages == 3 + 2
        assert box.stats().pending == 5000
    finally:
        up.stop()
        box.close()


def test_mqtt_311_end_to_end(tmp_path, broker):
    """mqtt.protocol = "3.1.1" on both sides: the shared subscription and acks still work."""
    cfg = agent_config(tmp_path / "data", broker.url, mqtt={"protocol": "3.1.1"})
    box = Outbox.for_config(cfg, clock=lambda: "synced")
    collector = Collector(
        central_config(f"sqlite:///{tmp_path}/hall.db", broker.url, mqtt={"protocol": "3.1.1"})
    )
    collector.start()
    assert collector.wait_connected(10)
    up = Uplink(cfg, box)
    up.start()
    try:
        box.append_many([("rating.submitted", rating(), None, None) for _ in range(30)])
        assert wait_for(lambda: box.stats().pending == 0, 30)
        assert collector.store.query("SELECT count(*) FROM events")[0][0] == 30
    finally:
        up.stop()
        collector.stop()
        box.close()


def test_status_is_republished_every_interval_and_on_reconnect(tmp_path):
    broker = Mosquitto(tmp_path / "b").start()
    try:
        cfg = agent_config(tmp_path / "data", broker.url, sync={"status_interval_s": 1})
        box = Outbox.for_config(cfg, clock=lambda: "synced")
        up = Uplink(cfg, box)
        up.start()
        try:
            assert wait_for(lambda: up.health()["connected"], 10)
            # The retained one plus two periodic ones, 1 s apart.
            proc = sub(broker, "hall/jiedong/pad-a03/status", count=3, timeout=5)
            lines = proc.communicate(timeout=10)[0].splitlines()
            assert len(lines) == 3 and all(json.loads(x)["state"] == "online" for x in lines)
            # Now only a reconnect may publish: push the next periodic one an hour away.
            cfg.sync.status_interval_s = 3600
            assert wait_for(lambda: up._next_status > time.monotonic() + 3000, 5)
            # A broker without persistence forgets the retained status; the reconnect
            # publishes it again.
            broker.stop()
            broker.start()
            assert wait_for(lambda: up.health()["connected"], 15)
            r = subprocess.run(
                mosquitto_sub_args(
                    broker.port,
                    "hall/jiedong/pad-a03/status",
                    count=1,
                    timeout=5,
                    extra=("--retained-only",),
                ),
                capture_output=True,
                text=True,
            )
            assert json.loads(r.stdout)["state"] == "online"
        finally:
            up.stop()
            box.close()
    finally:
        broker.stop()


def test_uplink_survives_an_unwritable_roster_and_a_failing_ack(tmp_path, broker):
    """A roster it cannot write and an outbox.ack that raises must not end the
    uplink thread, nor may the retained roster end every restart again."""
    import sqlite3

    data = tmp_path / "data"
    data.mkdir()
    (data / "roster.json").mkdir()  # the roster write fails (stands in for ENOSPC / EROFS)
    roster = {"v": 1, "version": 3, "staff": [{"id": "S1", "name": "张三", "role": "staff"}]}
    mosquitto_pub(
        broker.port, "hall/jiedong/roster", json.dumps(roster, ensure_ascii=False), retain=True
    )
    cfg = agent_config(data, broker.url, sync={"ack_timeout_s": 1})
    box = Outbox.for_config(cfg, clock=lambda: "synced")
    real_ack, failures = box.ack, []

    def flaky_ack(ids):  # the neighbour fails once, as SQLite does on a full disk
        if not failures:
            failures.append(ids)
            raise sqlite3.OperationalError("database or disk is full")
        return real_ack(ids)

    box.ack = flaky_ack
    collector = Collector(central_config(f"sqlite:///{tmp_path}/hall.db", broker.url))
    collector.start()
    assert collector.wait_connected(10)
    up = Uplink(cfg, box)
    up.start()
    try:
        assert wait_for(lambda: "roster" in up.health(), 10)
        assert "not stored" in up.health()["roster"]
        box.append_many([("rating.submitted", rating(), None, None) for _ in range(5)])
        assert wait_for(lambda: box.stats().pending == 0, 20)
        assert failures and up.alive() and up.handler_errors >= 1
        assert collector.store.query("SELECT count(*) FROM events")[0][0] == 5
    finally:
        up.stop()
        collector.stop()
        box.close()
        clear = ["mosquitto_pub", "-p", str(broker.port), "-r", "-n", "-t", "hall/jiedong/roster"]
        subprocess.run([*clear, "-h", "127.0.0.1"], timeout=10)


def test_restarted_uplinks_leave_no_outbox_listener_behind(tmp_path, broker):
    """Every restart by the supervisor must not add a listener that is never removed."""
    cfg = agent_config(tmp_path / "data", broker.url)
    box = Outbox.for_config(cfg, clock=lambda: "synced")
    before = len(box._listeners)
    try:
        for _ in range(3):
            up = uplink_worker_factories(cfg, box, lambda: {})["uplink"]()
            up.start()
            assert wait_for(lambda: up.health()["connected"], 10)  # noqa: B023
            assert len(box._listeners) == before + 1
            up.stop()
            assert not up.alive()
        assert len(box._listeners) == before
    finally:
        box.close()


def test_batches_stay_under_max_batch_kb(tmp_path, broker):
    """The agent caps a batch by bytes, so a collector at its smallest payload
    limit (16 KiB) takes every batch whole and dead-letters nothing."""
    cfg = agent_config(tmp_path / "data", broker.url, sync={"batch_size": 5000, "max_batch_kb": 16})
    box = Outbox.for_config(cfg, clock=lambda: "synced")
    ccfg = central_config(f"sqlite:///{tmp_path}/hall.db", broker.url)
    ccfg.central.max_payload_kb = 16
    collector = Collector(ccfg)
    sizes: list[int] = []
    verdict = collector.verdict

    def measuring(item):
        sizes.append(len(item.payload))
        return verdict(item)

    collector.verdict = measuring
    collector.start()
    assert collector.wait_connected(10)
    note = "评价" * 400  # ~2.4 KB of UTF-8 per event: 60 events are ~150 KB
    box.append_many([("device.test", {"note": note}, None, None) for _ in range(60)])
    up = Uplink(cfg, box)
    up.start()
    try:
        assert wait_for(lambda: box.stats().pending == 0, 20)
        assert box.stats().dead_letter == 0 and collector.rejected == 0
        assert collector.deferred == 0 and len(sizes) >= 60 * 2400 // (16 * 1024)
        assert max(sizes) <= 16 * 1024
        assert collector.store.query("SELECT count(*) FROM events")[0][0] == 60
    finally:
        up.stop()
        collector.stop()
        box.close()


def _thread_cpu_s(native_id: int) -> float:
    """User + system CPU seconds of one thread of this process (/proc, Linux)."""
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize("in_flight", [False, True])
def test_uplink_does_not_spin_while_the_broker_is_unreachable(tmp_path, in_flight):
    """A refused connection used to make the loop wait 0 s (status due before the first
    connect, a batch overdue after a drop) and burn a whole core for the length of the outage.
    Bound: a small share of the wall time."""
    from tests.support import free_port

    broker = Mosquitto(tmp_path / "b", port=free_port())
    cfg = agent_config(tmp_path / "data", broker.url, sync={"ack_timeout_s": 1})
    box = Outbox.for_config(cfg, clock=lambda: "synced")
    up = Uplink(cfg, box)
    try:
        if in_flight:  # connected once, a batch sent and never acked, then the broker goes
            broker.start()
            up.start()
            assert wait_for(lambda: up.health()["connected"], 10)
            box.append("device.test", {"note": "unacked"})
            assert wait_for(lambda: up.counters.batches_sent >= 1, 10)
            broker.stop()
            assert wait_for(lambda: not up.health()["connected"], 10)
        else:  # started while the broker is down: never connected at all
            up.start()
            assert wait_for(lambda: up.link is not None and up.link.last_error is not None, 10)
        box.append("device.test", {"note": "queued while away"})
        tid = up._thread.native_id
        cpu0, wall0 = _thread_cpu_s(tid), time.monotonic()
        time.sleep(3.0)  # the outage under measurement, not a wait for a condition
        cpu, wall = _thread_cpu_s(tid) - cpu0, time.monotonic() - wall0
        assert cpu < 0.1 * wall, f"uplink thread used {cpu:.2f} s CPU in {wall:.1f} s"
        assert up.alive() and box.stats().pending == (2 if in_flight else 1)
    finally:
        up.stop()
        box.close()
        broker.stop()


def test_in_flight_is_resent_at_once_when_a_collector_comes_online(tmp_path, broker):
    """After a broker restart a device may reconnect before the collector: its resend goes to
    a shared group with no member and is lost, and it used to wait a whole ack timeout. The
    collector's online announcement makes it resend at once."""
    cfg = agent_config(tmp_path / "data", broker.url, sync={"ack_timeout_s": 600})
    box = Outbox.for_config(cfg, clock=lambda: "synced")
    up = Uplink(cfg, box)
    up.start()
    collector = Collector(central_config(f"sqlite:///{tmp_path}/hall.db", broker.url))
    try:
        assert wait_for(lambda: up.health()["connected"], 10)
        box.append_many([("rating.submitted", rating(), None, None) for _ in range(30)])
        assert wait_for(lambda: up.counters.batches_sent >= 1, 10)  # into a group with no member
        collector.start()
        assert collector.wait_connected(10)
        # Far less than the 600 s ack timeout: only the announcement can have done it.
        assert wait_for(lambda: box.stats().pending == 0, 30)
        assert collector.store.query("SELECT count(*) FROM events")[0][0] == 30
        assert up.counters.resends >= 1
    finally:
        up.stop()
        collector.stop()
        box.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # on purpose
def test_uplink_is_not_alive_when_its_link_keeper_died(agent):
    """A keeper thread that ends without being stopped leaves a device that never reconnects;
    the worker must say it is dead so that the supervisor restarts it with a new link."""
    up, _box = agent()
    assert wait_for(lambda: up.link is not None and up.link.connected.is_set(), 10)
    assert up.alive()

    def killed() -> bool:
        raise SystemExit  # not an Exception: the keeper's own guard does not catch it

    up.link._connect_once = killed
    up.link.client.disconnect()  # the next round runs the patched connect and ends the keeper
    assert wait_for(lambda: up.link.died(), 10)
    assert not up.alive()
