"""End to end: outbox → uplink → real Mosquitto → collector → real SQLite / PostgreSQL.

Nothing is mocked: each test owns a mosquitto on a free port (so it can restart it), the
PostgreSQL runs in a schema of its own that is dropped afterwards. The invariant checked
everywhere is docs/topics.md's: every event recorded on the device ends up as exactly one row.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from agent.link.uplink import Uplink
from agent.outbox import Outbox
from central.collector import Collector
from tests.conftest import require_or_skip, skip_unless
from tests.support import (
    PG_URL,
    agent_config,
    central_config,
    mosquitto_pub,
    mosquitto_sub_args,
    pg_available,
    pg_schema,
    wait_for,
)

REPO = Path(__file__).resolve().parents[1]
pytestmark = skip_unless(
    shutil.which("mosquitto_sub") is not None, "needs mosquitto and its clients"
)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_kw(request, tmp_path):
    if request.param == "sqlite":
        yield {"store_url": f"sqlite:///{tmp_path}/hall.db"}
    else:
        if not pg_available():
            require_or_skip(f"PostgreSQL not reachable at {PG_URL}")
        with pg_schema() as name:
            yield {"store_url": PG_URL, "pg_schema": name}


@pytest.fixture
def collectors(broker, store_kw):
    started: list[Collector] = []

    def start() -> Collector:
        c = Collector(central_config(mqtt_url=broker.url, **store_kw))
        c.start()
        assert c.wait_connected(10)
        started.append(c)
        return c

    yield start
    for c in started:
        c.stop()


@pytest.fixture
def agent(tmp_path, broker):
    made: list = []

    def start(**sync):
        cfg = agent_config(tmp_path / "data", broker.url, sync=sync)
        box = Outbox.for_config(cfg, clock=lambda: "synced")
        up = Uplink(cfg, box)
        up.start()
        made.append((up, box))
        return up, box

    yield start
    for up, box in made:
        up.stop()
        box.close()


def rows(collector: Collector, device: str = "pad-a03") -> list[int]:
    return [
        r[0]
        for r in collector.store.query(
            "SELECT seq FROM events WHERE device = %s ORDER BY seq", (device,)
        )
    ]


def rating(level: int = 4) -> dict:
    return {
        "window": "A03",
        "pad": 1,
        "staff_id": "S0012",
        "level": level,
        "label": "满意",
        "reasons": [],
        "invite_id": None,
    }


def produce(box: Outbox, total: int, chunk: int = 10) -> threading.Thread:
    def run():
        for start in range(0, total, chunk):
            n = min(chunk, total - start)
            box.append_many([("rating.submitted", rating(), None, None)] * n)

    t = threading.Thread(target=run)
    t.start()
    return t


def test_n_events_in_exactly_n_rows_while_still_recording(collectors, agent):
    c = collectors()
    _up, box = agent(batch_size=50, max_in_flight=4)
    producer = produce(box, 3000)
    producer.join(60)
    assert wait_for(lambda: box.stats().pending == 0, 60)
    assert rows(c) == list(range(1, 3001))


def test_duplicates_delivered_on_purpose_are_stored_once_and_acked_again(collectors, agent, broker):
    c = collectors()
    spy = subprocess.Popen(
        mosquitto_sub_args(broker.port, "hall/jiedong/pad-a03/events", count=1, timeout=10),
        stdout=subprocess.PIPE,
    )
    wait_for(lambda: False, 0.3)  # nothing to observe: let mosquitto_sub subscribe
    _up, box = agent(batch_size=20)
    box.append_many([("rating.submitted", rating(), None, None)] * 20)
    first_batch = spy.communicate(timeout=20)[0]
    assert wait_for(lambda: box.stats().pending == 0, 20)
    assert len(rows(c)) == 20

    acks = subprocess.Popen(
        mosquitto_sub_args(broker.port, "hall/jiedong/pad-a03/ack", count=2, timeout=10),
        stdout=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: False, 0.3)
    for _ in range(2):  # the same batch twice more, from a peer
        mosquitto_pub(broker.port, "hall/jiedong/pad-a03/events", first_batch)
    out = acks.communicate(timeout=20)[0]
    ids = [e["id"] for e in json.loads(first_batch)["events"]]
    got = [json.loads(line) for line in out.splitlines()]
    assert [a["ids"] for a in got] == [ids, ids]
    assert len(rows(c)) == 20


def test_rejected_event_lands_in_rejected_and_dead_letter(collectors, agent):
    c = collectors()
    _up, box = agent(batch_size=10, status_interval_s=60)
    box.append("rating.submitted", rating())
    bad = box.append("rating.submitted", rating(level=9)).event
    box.append("rating.submitted", rating())
    assert wait_for(lambda: box.stats().pending == 0, 20)
    assert rows(c) == [1, 3]
    [(rid, reason, payload)] = c.store.query("SELECT id, reason, payload FROM rejected")
    assert rid == bad["id"] and "data.level" in reason and json.loads(payload)["seq"] == 2
    [dead] = box.dead_letters()
    assert dead["id"] == bad["id"] and "data.level" in dead["reason"]
    # docs/topics.md: a rejected event shows in status (republished at once after a reject).
    assert wait_for(lambda: (c.store.devices() or [{}])[0].get("dead_letter") == 1, 10)


def test_events_no_store_can_hold_are_rejected_alone_not_retried_forever(
    collectors, broker, store_kw, tmp_path
):
    """Poisoned events (a non-finite number, a lone surrogate: neither is storable JSON) in an
    outbox written before the agent refused them must not block their device: each is
    rejected by id with its reason, and everything around it is stored."""
    c = collectors()
    cfg = agent_config(tmp_path / "data", broker.url, sync={"batch_size": 10})
    box = Outbox.for_config(cfg, clock=lambda: "synced")
    box.append("device.test", {"note": "before"})
    inf = box.append("device.test", {"note": "inf", "v": 1}).event
    sur = box.append("device.test", {"note": "SURROGATE"}).event
    box.append("device.test", {"note": "after"})
    # What an older agent (json.dumps allows NaN) or a damaged file left in the outbox.
    with box._lock:
        box._conn.execute(
            "UPDATE outbox SET body = replace(body, '\"v\":1', '\"v\":Infinity') WHERE id = ?",
            (inf["id"],),
        )
        box._conn.execute(
            "UPDATE outbox SET body = replace(body, 'SURROGATE', '\\ud800') WHERE id = ?",
            (sur["id"],),
        )
    up = Uplink(cfg, box)
    up.start()
    try:
        assert wait_for(lambda: box.stats().pending == 0, 20)
        assert rows(c) == [1, 4]
        dead = {d["id"]: d["reason"] for d in box.dead_letters()}
        assert set(dead) == {inf["id"], sur["id"]}
        assert "NaN or Infinity" in dead[inf["id"]] and "surrogate" in dead[sur["id"]]
        stored = {r[0] for r in c.store.query("SELECT id FROM rejected")}
        assert stored == {inf["id"], sur["id"]}
    finally:
        up.stop()
        box.close()


@pytest.mark.slow
def test_collector_restarted_mid_stream_loses_nothing(collectors, agent):
    c1 = collectors()
    up, box = agent(batch_size=50, ack_timeout_s=1)
    producer = produce(box, 4000, chunk=50)
    assert wait_for(lambda: len(rows(c1)) >= 500, 30)
    c1.stop()  # batches published now reach no collector and are lost by the broker
    wait_for(lambda: False, 0.5)
    c2 = collectors()
    producer.join(60)
    assert wait_for(lambda: box.stats().pending == 0, 60)
    assert rows(c2) == list(range(1, 4001))
    assert up.counters.resends > 0  # the loss really happened and was repaired


@pytest.mark.slow
def test_broker_restarted_mid_stream_loses_nothing(collectors, agent, broker):
    c = collectors()
    up, box = agent(batch_size=50, ack_timeout_s=2)
    producer = produce(box, 4000, chunk=50)
    assert wait_for(lambda: len(rows(c)) >= 500, 30)
    broker.stop()  # persistence off: everything queued in the broker is gone
    assert wait_for(lambda: not up.health()["connected"], 10)
    broker.start()
    producer.join(60)
    assert wait_for(lambda: box.stats().pending == 0, 60)
    assert rows(c) == list(range(1, 4001))


BURST = textwrap.dedent(
    """
    import sys, threading
    from agent.outbox import Outbox
    from tests.support import agent_config
    from agent.link.uplink import Uplink

    data_dir, url = sys.argv[1], sys.argv[2]
    cfg = agent_config(data_dir, url, sync={"batch_size": 50, "ack_timeout_s": 2})
    box = Outbox.for_config(cfg, clock=lambda: "synced")
    Uplink(cfg, box).start()
    n = 0
    while True:  # a burst that only SIGKILL ends
        box.append_many([("device.test", {"note": str(n + i)}, None, None) for i in range(25)])
        n += 25
        print(n, flush=True)
    """
)


@pytest.mark.slow
def test_agent_sigkilled_during_burst_loses_and_duplicates_nothing(collectors, broker, tmp_path):
    c = collectors()
    data_dir = tmp_path / "agent-data"
    proc = subprocess.Popen(
        [sys.executable, "-c", BURST, str(data_dir), broker.url],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for(lambda: len(rows(c)) >= 1000, 60)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    # The will says offline as soon as the broker sees the socket close.
    assert wait_for(lambda: c.store.devices()[0]["state"] == "offline", 10)

    # Restart it as the real agent does: `hall-agent -c FILE run`.
    conf = tmp_path / "agent.toml"
    conf.write_text(
        f'[device]\nid = "pad-a03"\nsite = "jiedong"\ndata_dir = "{data_dir}"\n'
        f'[mqtt]\nurl = "{broker.url}"\n[sync]\nbatch_size = 50\nack_timeout_s = 2\n'
        "min_free_mb = 0\n"
    )
    env = {**os.environ, "HALL_AGENT_CLOCK": "synced"}
    agent = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "-c", str(conf), "run"],
        cwd=REPO,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    box = Outbox(data_dir / "outbox.db", device="pad-a03", site="jiedong", min_free_bytes=0)
    try:
        assert wait_for(lambda: box.stats().pending == 0, 60)
        last_seq = box.stats().last_seq
        assert last_seq > 1000
        # Every event ever recorded is there exactly once (seq is unique per device and
        # the primary key is the event id: a duplicate would show as a repeated seq).
        assert rows(c) == list(range(1, last_seq + 1))
        assert wait_for(lambda: c.store.devices()[0]["state"] == "online", 10)
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(15)
        box.close()
    assert agent.returncode == 0


def test_two_collectors_sharing_the_subscription_store_each_event_once(collectors, agent):
    c1, c2 = collectors(), collectors()
    _up, box = agent(batch_size=20, max_in_flight=8)
    box.append_many([("rating.submitted", rating(), None, None)] * 2000)
    assert wait_for(lambda: box.stats().pending == 0, 60)
    assert rows(c1) == list(range(1, 2001))
    # The broker shared the batches out: both worked, and no batch went to both.
    assert c1.events_stored > 0 and c2.events_stored > 0
    assert c1.events_stored + c2.events_stored == 2000


def _block_events(collector: Collector, store_kw: dict, on: bool) -> None:
    """A store that refuses every insert into ``events`` but still takes ``rejected``:
    a PostgreSQL check constraint, or an SQLite trigger (what an operator's mistake, a
    migration in progress or a policy might leave)."""
    store = collector.store
    if store_kw["store_url"].startswith("sqlite"):
        sql = (
            "CREATE TRIGGER block_events BEFORE INSERT ON events "
            "BEGIN SELECT RAISE(ABORT, 'events blocked by a test trigger'); END"
            if on
            else "DROP TRIGGER block_events"
        )
    else:
        sql = (
            "ALTER TABLE events ADD CONSTRAINT block_events CHECK (false) NOT VALID"
            if on
            else "ALTER TABLE events DROP CONSTRAINT block_events"
        )
    if store_kw["store_url"].startswith("sqlite"):
        with store._lock:
            store.conn.execute(sql)
    else:
        with store._lock:
            store._conn().execute(sql)


def test_a_store_that_comes_back_drains_at_once_without_the_devices_resend(
    collectors, agent, store_kw
):
    """The collector retries a refused write itself: with an ack timeout of ten minutes the
    device never resends, and everything still arrives within seconds of the store's
    return (docs/reliability.md, recovery)."""
    c = collectors()
    _block_events(c, store_kw, True)
    up, box = agent(batch_size=20, ack_timeout_s=600)
    box.append_many([("rating.submitted", rating(), None, None)] * 40)
    assert wait_for(lambda: c.store_errors >= 2, 20)  # refused, and retried by the collector
    assert box.stats().pending == 40
    _block_events(c, store_kw, False)
    assert wait_for(lambda: box.stats().pending == 0, 10)
    assert rows(c) == list(range(1, 41))
    assert up.counters.resends == 0 and box.stats().dead_letter == 0


def test_store_refusing_events_is_not_a_verdict_everything_arrives_once_lifted(
    collectors, agent, store_kw
):
    """A store that refuses ``events`` but accepts ``rejected`` used to turn every batch into
    rejects: the devices dead-lettered acked ratings for good. Refused writes are not
    acked; once the block is lifted the resends store every event exactly once."""
    c = collectors()
    _block_events(c, store_kw, True)
    up, box = agent(batch_size=20, ack_timeout_s=1)
    box.append_many([("rating.submitted", rating(), None, None)] * 100)
    assert wait_for(lambda: c.errors + c.rejected >= 3, 20)  # refused, resent, refused again
    assert box.stats().pending == 100 and box.stats().dead_letter == 0
    assert c.store.query("SELECT count(*) FROM rejected")[0][0] == 0
    _block_events(c, store_kw, False)
    assert wait_for(lambda: box.stats().pending == 0, 30)
    assert rows(c) == list(range(1, 101))
    assert box.stats().dead_letter == 0 and up.counters.events_rejected == 0
    assert c.store.query("SELECT count(*) FROM rejected")[0][0] == 0
