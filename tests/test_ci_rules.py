"""In CI a test must not skip because a service, a tool or a pinned file is missing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

PROBE = textwrap.dedent(
    """
    from tests.conftest import require_or_skip, skip_unless

    def test_service():
        require_or_skip("PostgreSQL not reachable (on purpose)")

    @skip_unless(False, "needs a tool that is missing (on purpose)")
    def test_tool():
        raise FileNotFoundError("the missing tool")
    """
)


@pytest.mark.parametrize("ci", ["", "true"])
def test_missing_things_skip_on_a_laptop_and_fail_in_ci(tmp_path, ci):
    probe = tmp_path / "test_probe.py"
    probe.write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci:
        env["CI"] = ci
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(probe)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if ci:
        assert r.returncode == 1 and "2 failed" in r.stdout, r.stdout
        assert "required in CI but unavailable: PostgreSQL not reachable" in r.stdout
    else:
        assert r.returncode == 0 and "2 skipped" in r.stdout, r.stdout


def test_services_script_fails_when_a_service_cannot_be_brought_up(tmp_path):
    """scripts/services.sh used to exit 0 whatever happened, so CI went on and skipped."""
    fake = tmp_path / "bin"
    fake.mkdir()
    for tool in ("mosquitto", "pg_ctlcluster", "psql", "socat"):
        (fake / tool).write_text("#!/bin/sh\nexit 1\n")
        (fake / tool).chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{fake}:/usr/bin:/bin",
        "HALL_SERVICES_MQTT_PORT": "1",  # nothing listens on these
        "HALL_SERVICES_PG_PORT": "2",
        "HALL_SERVICES_WAIT_S": "1",
    }
    r = subprocess.run(
        ["bash", str(REPO / "scripts" / "services.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode != 0, r.stderr
    assert "nothing listens on 127.0.0.1:1" in r.stderr and "127.0.0.1:2" in r.stderr
