"""``hall-agent ping`` end to end (CLI in a subprocess, real broker, real collector)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from agent.link.lock import uplink_running
from central.collector import Collector
from tests.conftest import skip_unless
from tests.support import central_config, free_port, wait_for

REPO = Path(__file__).resolve().parents[1]
RESULT = re.compile(
    r"(\d+) acked by the centre: p50 ([\d.]+) ms, p95 ([\d.]+) ms, max ([\d.]+) ms, rate (\d+)/s"
)
pytestmark = skip_unless(shutil.which("mosquitto") is not None, "needs mosquitto")


def write_conf(tmp_path: Path, url: str) -> Path:
    conf = tmp_path / "agent.toml"
    conf.write_text(
        f'[device]\nid = "kiosk-01"\nsite = "jiedong"\ndata_dir = "{tmp_path / "data"}"\n'
        f'[mqtt]\nurl = "{url}"\n[sync]\nmin_free_mb = 0\n'
    )
    return conf


def ping(conf: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "-c", str(conf), "ping", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HALL_AGENT_CLOCK": "synced"},
    )


def test_ping_waits_for_the_centres_acks(tmp_path, broker, collector):
    r = ping(write_conf(tmp_path, broker.url), "--count", "20", "--note", "install check")
    assert r.returncode == 0, r.stdout + r.stderr
    m = RESULT.search(r.stdout)
    assert m, r.stdout
    assert int(m.group(1)) == 20
    assert float(m.group(2)) <= float(m.group(3)) <= float(m.group(4))
    notes = collector.store.query(
        "SELECT json_extract(data, '$.note') FROM events WHERE type = 'device.test' ORDER BY seq"
    )
    assert [n[0] for n in notes] == [f"install check {i}/20" for i in range(1, 21)]


def test_ping_times_out_without_a_centre(tmp_path, broker):
    r = ping(write_conf(tmp_path, broker.url), "--count", "2", "--timeout", "1.5")
    assert r.returncode == 1
    timeout, what_to_do = r.stdout.splitlines()[-2:]
    assert timeout.startswith("timeout: 2 of 2 events not acknowledged"), r.stdout
    # Connected, but no ack: the collector is the next thing to look at.
    assert what_to_do.startswith("what to do: acks come from the central collector"), r.stdout
    assert "`systemctl status hall-central`" in what_to_do
    assert "`hall-central -c /etc/hall-agent/central.toml devices`" in what_to_do
    assert "jiedong/kiosk-01" in what_to_do


def test_ping_times_out_without_a_broker(tmp_path):
    conf = write_conf(tmp_path, f"mqtt://127.0.0.1:{free_port()}")
    r = ping(conf, "--timeout", "1.5")
    assert r.returncode == 1
    timeout, what_to_do = r.stdout.splitlines()[-2:]
    assert timeout.startswith("timeout: not connected to 127.0.0.1:"), r.stdout
    # Not even the broker: the check that says why, not the collector.
    assert what_to_do == (
        f"what to do: `hall-agent -c {conf} check --only broker` says why the broker is not reached"
    )


def test_ping_advice_beside_a_running_agent_names_that_agent_first(tmp_path):
    from agent.link.ping import PingError, advice
    from tests.support import agent_config

    cfg = agent_config(tmp_path, "mqtt://127.0.0.1:1883", device="win-01")
    late = PingError("1 of 1 events not acknowledged", connected=True)
    text = advice(cfg, late, beside_agent=True, config=None)
    assert text.startswith("the running agent delivers them (journalctl -u hall-agent"), text
    assert "`systemctl status hall-central`" in text and "jiedong/win-01" in text
    assert not advice(cfg, late, beside_agent=False, config=None).startswith("the running")


def test_ping_beside_a_running_agent_uses_its_uplink(tmp_path, broker, collector):
    conf = write_conf(tmp_path, broker.url)
    agent = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "-c", str(conf), "run"],
        cwd=REPO,
        env={**os.environ, "HALL_AGENT_CLOCK": "synced"},
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_for(lambda: uplink_running(tmp_path / "data"), 15)
        r = ping(conf, "--count", "5")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "an agent is running on this outbox" in r.stdout
        assert RESULT.search(r.stdout)
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(15)
    assert not uplink_running(tmp_path / "data")  # the lock went with the agent


@pytest.mark.slow
def test_ping_with_the_default_timeout_survives_one_resend(tmp_path, broker):
    """The store refuses the first write (no ack); the agent resends after the default 30 s
    ack timeout. ping used to give up after 30 s too, so one resend always failed it."""
    c = Collector(central_config(f"sqlite:///{tmp_path}/hall.db", broker.url))
    with c.store._lock:
        c.store.conn.execute(
            "CREATE TRIGGER once BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'not yet'); END"
        )
    c.start()
    try:
        assert c.wait_connected(10)

        def lift() -> None:
            if wait_for(lambda: c.store_errors >= 1, 30):
                with c.store._lock:
                    c.store.conn.execute("DROP TRIGGER once")

        lifter = threading.Thread(target=lift)
        lifter.start()
        conf = write_conf(tmp_path, broker.url)
        r = subprocess.run(
            [sys.executable, "-m", "agent.cli", "-c", str(conf), "ping"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "HALL_AGENT_CLOCK": "synced"},
        )
        lifter.join()
        assert c.store_errors >= 1  # the first attempt really was refused
        assert r.returncode == 0, r.stdout + r.stderr
        assert RESULT.search(r.stdout)
    finally:
        c.stop()
