"""One device must not hold up the hall (docs/sync.md "Fairness and isolation"): a batch the
store refuses delays only its own device, a device flooding invalid payloads costs the store
at most its hourly budget, and a message over the collector's cap is never parsed.

Real Mosquitto, real agents (outbox + uplink) and a real SQLite file or PostgreSQL schema."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from agent.link.uplink import Uplink
from agent.outbox import Outbox
from central.collector import MAX_MESSAGE_BYTES, OVERSIZE_KEPT_BYTES, Collector
from sync.paho_loop import stop_loop
from tests.conftest import require_or_skip
from tests.support import PG_URL, agent_config, central_config, pg_available, pg_schema, wait_for

RATING = {
    "window": "A01",
    "pad": 1,
    "staff_id": "S0001",
    "level": 5,
    "label": "非常满意",
    "reasons": [],
    "invite_id": None,
}

REFUSE_SQLITE = (
    "CREATE TRIGGER refuse_win02 BEFORE INSERT ON events WHEN NEW.device = 'win-02' "
    "BEGIN SELECT RAISE(ABORT, 'refused for win-02'); END"
)
REFUSE_PG = [
    "CREATE FUNCTION refuse_win02() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "IF NEW.device = 'win-02' THEN RAISE EXCEPTION 'refused for win-02'; END IF; "
    "RETURN NEW; END $$",
    "CREATE TRIGGER refuse_win02 BEFORE INSERT ON events FOR EACH ROW "
    "EXECUTE FUNCTION refuse_win02()",
]


@pytest.fixture(params=["sqlite", "postgresql"])
def central(request, tmp_path, broker):
    """(collector config, kind) on a fresh SQLite file or a throw-away PostgreSQL schema."""
    if request.param == "sqlite":
        yield central_config(f"sqlite:///{tmp_path}/hall.db", broker.url), "sqlite"
        return
    if not pg_available():
        require_or_skip("PostgreSQL not reachable")
    with pg_schema() as name:
        yield central_config(PG_URL, broker.url, pg_schema=name), "postgresql"


def device(tmp_path, broker, name: str) -> tuple[Outbox, Uplink]:
    cfg = agent_config(tmp_path / name, broker.url, device=name, sync={"ack_timeout_s": 30})
    box = Outbox.for_config(cfg, clock=lambda: "synced")
    up = Uplink(cfg, box)
    up.start()
    return box, up


def refuse(collector: Collector, kind: str, on: bool) -> None:
    store = collector.store
    if kind == "sqlite":
        with store._lock:
            store.conn.execute(REFUSE_SQLITE if on else "DROP TRIGGER refuse_win02")
        return
    # Statements that return no rows: on the store's own connection, under its lock.
    with store._lock:
        for sql in REFUSE_PG if on else ["DROP TRIGGER refuse_win02 ON events"]:
            store._conn().execute(sql)


def test_a_refused_device_does_not_delay_the_others(tmp_path, broker, central):
    """The store refuses every event of win-02 (a trigger). Before, the collector's one store
    thread retried that batch for 20 s and every other device waited behind it; now win-01's
    events are acked while win-02's is still retried, and win-02's is stored once the store
    takes it."""
    cfg, kind = central
    collector = Collector(cfg)
    refuse(collector, kind, on=True)
    collector.start()
    assert collector.wait_connected(10)
    boxes = {}
    try:
        for name in ("win-01", "win-02"):
            boxes[name] = device(tmp_path, broker, name)
        blocked = boxes["win-02"][0].append("rating.submitted", RATING)
        assert wait_for(lambda: collector.store_errors >= 1, 10)
        box1 = boxes["win-01"][0]
        for _ in range(3):
            box1.append("rating.submitted", RATING)
            # Well under the 20 s the refused batch is retried for: acked, not queued behind it.
            assert wait_for(lambda: box1.stats().pending == 0, 5)
        assert boxes["win-02"][0].stats().pending == 1  # still retried, not given up on
        refuse(collector, kind, on=False)
        assert wait_for(lambda: boxes["win-02"][0].stats().pending == 0, 5)
        rows = collector.store.query(
            "SELECT device, count(*) FROM events GROUP BY device ORDER BY device"
        )
        assert [tuple(r) for r in rows] == [("win-01", 3), ("win-02", 1)]
        stored = collector.store.query("SELECT id FROM events WHERE device = 'win-02'")
        assert str(stored[0][0]) == blocked.event["id"]
        assert collector.rejected == 0  # a refusal is never a reject
    finally:
        for box, up in boxes.values():
            up.stop()
            box.close()
        collector.stop()


class Flood:
    """A client publishing invalid payloads at QoS 1 as fast as paho sends them."""

    def __init__(self, port: int, topic: str, size: int):
        self.client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.max_inflight_messages_set(20)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.topic = topic
        self.payload = b"{" + b"x" * (size - 1)  # not JSON
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            info = self.client.publish(self.topic, self.payload, qos=1)
            info.wait_for_publish(5)
            self.sent += 1

    def __enter__(self) -> Flood:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.client.disconnect()
        stop_loop(self.client)


def test_a_flooding_device_costs_at_most_its_budget_and_others_flow(tmp_path, broker, central):
    cfg, _kind = central
    cfg.central.rejected_kept_per_hour = 20
    collector = Collector(cfg)
    collector.start()
    assert collector.wait_connected(10)
    box, up = device(tmp_path, broker, "win-01")
    try:
        with Flood(broker.port, "hall/jiedong/evil-02/events", 100_000) as flood:
            assert wait_for(lambda: flood.sent >= 50, 20)
            for _ in range(3):
                box.append("rating.submitted", RATING)
                assert wait_for(lambda: box.stats().pending == 0, 5)
            assert wait_for(lambda: flood.sent >= 200, 30)
        # Every flood message the collector took is counted; 20 are kept whole.
        assert wait_for(lambda: collector.rejected + collector.dropped >= flood.sent, 20)
        kept, size = collector.store.query(
            "SELECT count(*), coalesce(sum(length(payload)), 0) FROM rejected "
            "WHERE device = 'evil-02'"
        )[0]
        assert kept == 20
        assert int(size) <= 20 * 64 * 1024
        summary = collector.store.rejected_summary()["evil-02"]
        assert summary["kept"] == 20
        assert summary["count"] == collector.rejected >= 150
        assert summary["bytes"] == summary["count"] * 100_000
        assert list(summary["reasons"]) == ["batch"]
        assert collector.store.query("SELECT count(*) FROM events")[0][0] == 3
    finally:
        up.stop()
        box.close()
        collector.stop()


def test_devices_command_shows_the_rejected_counts(tmp_path, broker):
    db = tmp_path / "hall.db"
    cfg = central_config(f"sqlite:///{db}", broker.url)
    cfg.central.rejected_kept_per_hour = 2
    collector = Collector(cfg)
    try:
        for _ in range(5):
            collector.handle("hall/jiedong/evil-02/events", b"{not json")
    finally:
        collector.store.close()
    conf = tmp_path / "central.toml"
    conf.write_text(
        f'[store]\nurl = "sqlite:///{db}"\n[central]\nrejected_kept_per_hour = 2\n',
        encoding="utf-8",
    )
    run = [sys.executable, "-m", "central.cli", "-c", str(conf), "devices"]
    text = subprocess.run(run, capture_output=True, text=True, check=True).stdout
    assert "first 2 an hour are kept whole" in text
    [line] = [ln for ln in text.splitlines() if ln.startswith("evil-02")]
    assert line.split()[:4] == ["evil-02", "5", "2", "0.0"] and "batch ×5" in line
    rows = json.loads(
        subprocess.run([*run, "--json"], capture_output=True, text=True, check=True).stdout
    )
    [evil] = [r for r in rows if r["device"] == "evil-02"]
    assert evil["site"] is None and evil["rejected_24h"]["count"] == 5


def test_a_message_over_the_cap_is_not_parsed(tmp_path, broker):
    """A broker without the shipped message_size_limit forwards anything; the collector keeps
    the first bytes of a message over MAX_MESSAGE_BYTES as a reject with its size."""
    collector = Collector(central_config(f"sqlite:///{tmp_path}/hall.db", broker.url))
    collector.start()
    assert collector.wait_connected(10)
    try:
        msg = paho.MQTTMessage(topic=b"hall/jiedong/evil-02/events")
        msg.payload = b"[" * (MAX_MESSAGE_BYTES + 1)  # parsing it would raise RecursionError
        msg.qos = 1
        t0 = time.monotonic()
        collector._on_message(collector.link.client, None, msg)
        assert wait_for(lambda: collector.rejected == 1, 5), time.monotonic() - t0
        [(reason, payload)] = collector.store.query("SELECT reason, payload FROM rejected")
        assert reason.startswith(f"batch: {MAX_MESSAGE_BYTES + 1} bytes; expected at most")
        assert payload == "[" * OVERSIZE_KEPT_BYTES
        assert collector.store.rejected_summary()["evil-02"]["bytes"] == MAX_MESSAGE_BYTES + 1
    finally:
        collector.stop()
