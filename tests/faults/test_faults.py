"""The fault suite: real agents, pads, collector, Mosquitto and stores under faults.

Every scenario ends with the history check (every acked rating and every recorded event
stored exactly once, nothing else, no valid event in dead letters) and generous resource
bounds: a spinning loop or a leak fails them, scheduling noise on a busy CI machine does not.
The measured figures (and the 5 s drain goal) are reported by ``bench/faults.py``.
"""

from __future__ import annotations

import pytest

from tests.faults.disks import can_mount
from tests.faults.prereq import need
from tests.faults.scenarios import (
    DRAIN_BOUND_S,
    FAKETIME,
    KIOSK,
    NEEDS_MOUNT,
    Outcome,
    faketime_lib,
    run_scenario,
)
from tests.support import pg_available, pg_schema

SHORT = 0.6  # the CI form: faults of a few to ~10 seconds
LONG = 15.0  # broker down for 3 minutes, a 90-event kill storm, ...
SEED = 20261130
TEST_SYNC = {"ack_timeout_s": 5}  # the bench keeps the default (30 s)

# Generous bounds for behaviour, not for speed (the bench reports the real figures).
WAIT_CPU_BOUND = 20.0  # % of one core while a device only waits for its link
RSS_GROWTH_BOUND_MB = 30.0
FD_GROWTH_BOUND = 5


def run(name: str, tmp_path, scale: float, store: str = "sqlite", seed: int = SEED) -> Outcome:
    need(
        name not in NEEDS_MOUNT or can_mount(), "needs root and a loop device to mount a small ext4"
    )
    need(name not in FAKETIME or faketime_lib() is not None, "needs libfaketime (apt faketime)")
    if name in KIOSK:
        import importlib.util

        from tests import media

        need(importlib.util.find_spec("face_recognition") is not None, "needs face_recognition")
        media.require_photos()
    if store == "postgresql":
        need(pg_available(), "PostgreSQL not reachable")
        with pg_schema() as schema:
            return run_scenario(
                name,
                tmp_path / name,
                seed=seed,
                scale=scale,
                store=store,
                pg_schema=schema,
                sync=TEST_SYNC,
            )
    return run_scenario(name, tmp_path / name, seed=seed, scale=scale, sync=TEST_SYNC)


def check(out: Outcome) -> None:
    h = out.history
    assert h is not None
    detail = f"{out.scenario}: {out.row()}\n{h}\n{out.problems}"
    assert out.faults >= 1, detail
    assert h.lost == 0 and h.duplicated == 0 and h.altered == 0, detail
    assert h.ok, detail
    assert not out.problems, detail
    if out.scenario not in KIOSK:
        assert h.acked > 0, detail  # the pads were really rating
    assert h.stored >= h.acked, detail
    assert out.recovery_s is not None and out.recovery_s < DRAIN_BOUND_S, detail
    if out.wait_cpu_pct is not None:
        assert out.wait_cpu_pct < WAIT_CPU_BOUND, detail
    if out.rss_growth_mb is not None:
        assert out.rss_growth_mb < RSS_GROWTH_BOUND_MB, detail
    if out.fd_growth is not None:
        assert out.fd_growth <= FD_GROWTH_BOUND, detail


SQLITE_SCENARIOS = [
    "broker_down",
    "collector_killed",
    "store_refuses",
    "store_read_only",
    "store_disk_full",
    "device_disk_full",
    "agent_kill_storm",
    "partition",
    "link_down",
    "latency",
    "clock_steps",
    "hostile_pad",
    "hostile_mqtt",
    "device_refused",
    "device_flood",
    "backlog_3day",
]
PG_SCENARIOS = [
    "store_refuses",
    "collector_killed",
    "device_refused",
    "device_flood",
    "backlog_3day",
]


@pytest.mark.slow
@pytest.mark.parametrize("name", SQLITE_SCENARIOS)
def test_short_sqlite(name, tmp_path):
    check(run(name, tmp_path, SHORT))


@pytest.mark.slow
@pytest.mark.parametrize("name", PG_SCENARIOS)
def test_short_postgresql(name, tmp_path):
    check(run(name, tmp_path, SHORT, store="postgresql"))


@pytest.mark.slow
@pytest.mark.kiosk
@pytest.mark.parametrize("name", sorted(KIOSK))
def test_short_kiosk(name, tmp_path):
    check(run(name, tmp_path, SHORT))


@pytest.mark.faults_long
@pytest.mark.parametrize("name", SQLITE_SCENARIOS)
def test_long_sqlite(name, tmp_path):
    check(run(name, tmp_path, LONG))


@pytest.mark.faults_long
@pytest.mark.parametrize("name", SQLITE_SCENARIOS + sorted(KIOSK))
def test_long_postgresql(name, tmp_path):
    if name in ("store_read_only", "store_disk_full"):
        pytest.skip("the file-system faults apply to the SQLite store")
    check(run(name, tmp_path, LONG, store="postgresql"))
