"""End to end: a 差评 pressed on a simulated pad becomes a case at the centre (docs/cases.md).

Real pty serial I/O into the window worker, the device's outbox and uplink, a Mosquitto of the
test's own, the collector and a real SQLite or PostgreSQL store; nothing is faked.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.config import AgentConfig
from agent.link.uplink import Uplink
from agent.outbox import Outbox
from agent.windows.invite_http import invite_worker_factories
from agent.windows.state import PadBuses
from central.collector import Collector
from central.export_ratings import compute as export_month
from central.reports.month import Month
from tests.conftest import require_or_skip, skip_unless
from tests.padkit import Agent, PtyPort, wait_until
from tests.support import PG_URL, central_config, free_port, pg_available, pg_schema

pytestmark = skip_unless(shutil.which("mosquitto") is not None, "needs mosquitto")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_kw(request, tmp_path):
    if request.param == "sqlite":
        yield {"store_url": f"sqlite:///{tmp_path}/hall.db"}
    else:
        if not pg_available():
            require_or_skip(f"PostgreSQL not reachable at {PG_URL}")
        with pg_schema() as name:
            yield {"store_url": PG_URL, "pg_schema": name}


def window_device(tmp_path: Path, broker_url: str, pty: PtyPort) -> AgentConfig:
    return AgentConfig.model_validate(
        {
            "device": {"id": "pad-a03", "site": "jiedong", "data_dir": str(tmp_path / "data")},
            "mqtt": {"url": broker_url},
            "sync": {"min_free_mb": 0},
            "windows": {"invite_listen": f"127.0.0.1:{free_port()}"},
            "pad": [{"port": str(pty.link), "baud": 9600, "address": 1, "window": "A03"}],
        }
    )


def test_a_level_1_rating_on_a_pad_opens_a_case_with_its_deadlines(
    tmp_path: Path, broker, store_kw
):
    collector = Collector(central_config(mqtt_url=broker.url, **store_kw))
    collector.start()
    pty = PtyPort(tmp_path)
    cfg = window_device(tmp_path, broker.url, pty)
    box = Outbox.for_config(cfg, clock=lambda: "synced")
    uplink = Uplink(cfg, box)
    agent = Agent(cfg, box)
    try:
        assert collector.wait_connected(10)
        uplink.start()
        agent.wait_up()
        pad = pty.sim(1)
        assert pad.login("S0012").acked
        assert pad.rate(4).acked  # 满意: no case
        pressed = time.monotonic()
        assert pad.rate(1, [0, 2]).acked  # 非常不满意, two reasons
        cases = wait_until(collector.store.cases, timeout=10, every=0.005)
        took = time.monotonic() - pressed
        print(f"pad press to case at the centre: {took * 1000:.0f} ms")
        (case,) = cases
        assert (case.site, case.window, case.staff_id, case.level) == ("jiedong", "A03", "S0012", 1)
        assert len(case.reasons) == 2 and case.state == "received"
        assert case.deadlines["verify"] > datetime.now(UTC)
        rated = collector.store.event(case.rating_id)
        assert rated is not None and rated.data["level"] == 1
        # Every event reaches the centre once; the 满意 rating opened nothing.
        assert wait_until(lambda: box.stats().pending == 0, timeout=10)
        assert len(collector.store.cases()) == 1
    finally:
        agent.stop()
        uplink.stop()
        box.close()
        pty.unplug()
        collector.stop()


def test_an_invited_rating_carries_the_case_number_to_its_case_and_the_export(
    tmp_path: Path, broker, store_kw
):
    """The window's case system invites over HTTP; the 差评 that answers reaches the centre
    with the 办件编号 and 事项编码, in its case and in the month's export."""
    collector = Collector(central_config(mqtt_url=broker.url, **store_kw))
    collector.start()
    pty = PtyPort(tmp_path)
    cfg = window_device(tmp_path, broker.url, pty)
    box = Outbox.for_config(cfg, clock=lambda: "synced")
    uplink = Uplink(cfg, box)
    buses = PadBuses()
    agent = Agent(cfg, box, buses=buses)
    (make,) = invite_worker_factories(cfg, buses).values()
    http = make()
    try:
        assert collector.wait_connected(10)
        uplink.start()
        http.start()
        assert http.listening.wait(5), http.health()
        agent.wait_up()
        pad = pty.sim(1)
        assert pad.login("S0012").acked
        body = {
            "window": "A03",
            "case_no": "揭东〔2026〕第00123号",
            "item_code": "11445200MB2D0001XK",
        }
        request = urllib.request.Request(
            f"http://{cfg.windows.invite_listen}/invite",
            json.dumps(body, ensure_ascii=False).encode(),
            {"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            invite_id = json.loads(answer.read())["invite_id"]
        assert pad.wait_for(lambda got: got.invites and got.invites[-1][0] == invite_id)
        assert pad.rate(2, [1], invite=invite_id).acked
        assert pad.rate(1, [0]).acked  # not invited: no case number
        cases = wait_until(lambda: len(collector.store.cases()) == 2 and collector.store.cases())
        invited, plain = cases
        assert (invited.case_no, invited.item_code) == (body["case_no"], body["item_code"])
        assert (plain.case_no, plain.item_code) == (None, None)
        month = Month.parse(None, collector.store.tz)
        rows = {r["rating_id"]: r for r in export_month(collector.store, month).rows}
        assert (rows[invited.rating_id]["case_no"], rows[invited.rating_id]["item_code"]) == (
            body["case_no"],
            body["item_code"],
        )
        assert rows[invited.rating_id]["case_id"] == invited.id
        assert rows[plain.rating_id]["case_no"] is None
    finally:
        http.stop()
        agent.stop()
        uplink.stop()
        box.close()
        pty.unplug()
        collector.stop()
