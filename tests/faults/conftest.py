"""Fault-suite fixtures and switches.

- The short form (``scale`` 0.6, fixed seeds) runs with the rest of the suite and in CI.
- Long variants are marked ``faults_long`` and deselected unless ``HALL_FAULTS_LONG=1``
  (minutes per scenario; ``bench/faults.py`` is the way to run them at random for hours).
- What a scenario needs and this machine lacks (root for mounting a small loop file system, libfaketime,
  PostgreSQL, the pinned photos) skips it on a developer's laptop and fails it in CI
  (``CI=true``): a green CI run must have run every scenario.
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.faults.prereq import need


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "faults_long: a long fault scenario (minutes); HALL_FAULTS_LONG=1 runs it"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("HALL_FAULTS_LONG") == "1":
        return
    keep, drop = [], []
    for item in items:
        (drop if item.get_closest_marker("faults_long") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(autouse=True)
def _tools() -> None:
    missing = [t for t in ("mosquitto", "mosquitto_pub", "socat") if shutil.which(t) is None]
    need(
        not missing,
        f"missing tools: {', '.join(missing)} (apt-get install mosquitto-clients socat)",
    )
