"""The hall-agent command line, run as a technician runs it (a subprocess)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import build_parser

REPO = Path(__file__).resolve().parents[1]


def hall_agent(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _subcommands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield (*prefix, name), helps.get(name), sub
                yield from _subcommands(sub, (*prefix, name))


def test_every_command_has_help_text():
    commands = list(_subcommands(build_parser()))
    assert len(commands) >= 10
    for path, help_text, sub in commands:
        assert help_text, f"`{' '.join(path)}` has no help in the command list"
        assert sub.description, f"`{' '.join(path)}` has no description"


@pytest.mark.parametrize(
    "path", [(), ("check",), ("outbox",), ("ping",), ("keygen",), ("config", "schema"), ("run",)]
)
def test_help_runs(path):
    result = hall_agent(*path, "--help")
    assert result.returncode == 0
    assert "usage: hall-agent" in result.stdout


def test_config_error_exits_78_with_one_line_per_problem(write_config):
    path = write_config(
        '[device]\nid = "k1"\nsite = "jiedong"\n[[pad]]\nport = "loop://"\naddress = 1\nwindow = "A1"\nbaud = 96000\n'
    )
    result = hall_agent("-c", str(path), "check")
    assert result.returncode == 78
    assert result.stdout == ""
    assert result.stderr.strip().startswith(f"{path}: pad[1].baud: expected one of")
    assert "Traceback" not in result.stderr


def test_missing_config_file_exits_78(tmp_path):
    result = hall_agent("-c", str(tmp_path / "none.toml"), "outbox")
    assert result.returncode == 78
    assert result.stderr.strip() == f"{tmp_path / 'none.toml'}: file not found"


def test_check_config_only(tmp_path, write_config):
    path = write_config(f'[device]\nid = "k1"\nsite = "jiedong"\ndata_dir = "{tmp_path}/d"\n')
    result = hall_agent("-c", str(path), "check", "--only", "config")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("[ ok ] config:")


def test_check_reports_an_unreachable_broker_and_a_missing_pad(tmp_path, write_config):
    from tests.conftest import free_port

    path = write_config(
        f'[device]\nid = "k1"\nsite = "jiedong"\ndata_dir = "{tmp_path}/d"\n'
        f'[mqtt]\nurl = "mqtt://127.0.0.1:{free_port()}"\n'
        f'[[pad]]\nport = "{tmp_path}/ttyNOPE"\naddress = 1\nwindow = "A01"\n'
    )
    result = hall_agent("-c", str(path), "check", "--only", "disk,broker,pads")
    assert result.returncode == 1
    assert "[ ok ] disk:" in result.stdout
    assert "[FAIL] broker: refused: nothing listens on 127.0.0.1:" in result.stdout
    assert f"[FAIL] pad[1] A01@1: {tmp_path}/ttyNOPE" in result.stdout


def test_check_unknown_probe_is_a_usage_error(write_config):
    path = write_config('[device]\nid = "k1"\nsite = "jiedong"\n')
    result = hall_agent("-c", str(path), "check", "--only", "disk,camra")
    assert result.returncode == 2
    assert "unknown probe(s) camra" in result.stderr


def test_outbox_command_shows_counts(tmp_path, write_config):
    from agent.config import load_agent_config
    from agent.outbox import Outbox

    path = write_config(f'[device]\nid = "k1"\nsite = "jiedong"\ndata_dir = "{tmp_path}/d"\n')
    box = Outbox.for_config(load_agent_config(path))
    first = box.append("device.test", {}).event["id"]
    box.append("device.test", {})
    box.reject(first, "bad schema")
    box.close()
    result = hall_agent("-c", str(path), "outbox", "--json")
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert (stats["pending"], stats["dead_letter"], stats["last_seq"]) == (1, 1, 2)
    text = hall_agent("-c", str(path), "outbox", "--dead").stdout
    assert "pending: 1" in text and f"dead #1 {first} device.test: bad schema" in text


def test_config_schema_is_json():
    result = hall_agent("config", "schema")
    assert result.returncode == 0
    assert json.loads(result.stdout)["additionalProperties"] is False


def test_config_schema_central_points_to_the_collectors_program():
    result = hall_agent("config", "schema", "--central")
    assert result.returncode == 2 and not result.stdout
    assert "'hall-central config schema'" in result.stderr


def test_check_unconfirmed_clock_is_a_warning_not_a_failure(write_config):
    import os

    path = write_config('[device]\nid = "k1"\nsite = "jiedong"\n')
    env = {**os.environ, "HALL_AGENT_CLOCK": "unsynced"}
    result = subprocess.run(
        [sys.executable, "-m", "agent.cli", "-c", str(path), "check", "--only", "clock"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARN] clock: not confirmed" in result.stdout


DISK_FULL = r"""
set -u
mount -t tmpfs -o size=1m tmpfs "$MNT"
"$PY" - <<'PY'
import os, subprocess, sys
from agent.outbox import Outbox
box = Outbox(os.environ["MNT"] + "/data/outbox.db", device="pad-a03", site="jiedong",
             min_free_bytes=0, clock=lambda: "synced")
box.append_many([("device.test", {"note": str(i)}, None, None) for i in range(50)])
if os.environ["HOLD"] == "1":  # an agent still has it open: WAL and -shm are there
    print("held", flush=True)
else:
    box.close()
subprocess.run(["dd", "if=/dev/zero", "of=" + os.environ["MNT"] + "/fill", "bs=4k"],
               capture_output=True)
r = subprocess.run([sys.executable, "-m", "agent.cli", "-c", os.environ["CONF"], "outbox"],
                   capture_output=True, text=True)
print("rc", r.returncode)
print(r.stdout + r.stderr)
PY
"""


@pytest.mark.parametrize("hold", ["0", "1"])
def test_outbox_command_on_a_full_disk_says_disk_full_or_shows_the_counts(tmp_path, hold):
    """It used to print "cannot rollback - no transaction is active" (its own ROLLBACK after
    SQLite had rolled back) or "disk I/O error". A private tmpfs (a mount namespace, so no
    root is needed where user namespaces are allowed) is filled to the last block."""
    import shutil

    from tests.conftest import require_or_skip

    if shutil.which("unshare") is None:
        require_or_skip("needs unshare (util-linux) for a private tmpfs")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    conf = tmp_path / "agent.toml"
    conf.write_text(
        f'[device]\nid = "pad-a03"\nsite = "jiedong"\ndata_dir = "{mnt / "data"}"\n'
        '[mqtt]\nurl = "mqtt://127.0.0.1:1"\n[sync]\nmin_free_mb = 0\n'
    )
    env = {"MNT": str(mnt), "PY": sys.executable, "CONF": str(conf), "HOLD": hold}
    r = subprocess.run(
        ["unshare", "--map-root-user", "--mount", "bash", "-c", DISK_FULL],
        cwd=REPO,
        env={**os.environ, **env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if "mount" in r.stderr and ("denied" in r.stderr or "not permitted" in r.stderr):
        require_or_skip(f"cannot mount a private tmpfs here: {r.stderr.strip()}")
    out = r.stdout
    assert "cannot rollback" not in out and "Traceback" not in out, out
    if hold == "1":  # the file and its WAL index exist: read-only work still works
        assert "rc 0" in out and "pending: 50" in out, out
    else:  # cannot even create the WAL index: a clear "disk full"
        assert "rc 75" in out and "disk full" in out and "events in the file are kept" in out, out


def test_data_dir_and_files_are_not_world_readable_outside_systemd(tmp_path):
    """Started by hand with a umask of 022, the agent used to leave the data dir 0755 and the
    outbox 0644. New ones are 0750/0640; an existing loose one is tightened."""
    data = tmp_path / "data"
    conf = tmp_path / "agent.toml"
    conf.write_text(
        f'[device]\nid = "pad-a03"\nsite = "jiedong"\ndata_dir = "{data}"\n'
        '[mqtt]\nurl = "mqtt://127.0.0.1:1"\n[sync]\nmin_free_mb = 0\n'
    )

    def command(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "agent.cli", "-c", str(conf), *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            preexec_fn=lambda: os.umask(0o022),
        )

    def outbox_command() -> None:
        r = command("outbox")
        assert r.returncode == 0, r.stderr

    # `outbox` is read-only and never creates one: `ping` does (and fails: no broker).
    r = command("ping", "--count", "1", "--timeout", "1")
    assert r.returncode != 0 and (data / "outbox.db").is_file(), r.stderr
    assert data.stat().st_mode & 0o777 == 0o750
    assert (data / "outbox.db").stat().st_mode & 0o777 == 0o640
    data.chmod(0o755)
    (data / "outbox.db").chmod(0o666)
    outbox_command()
    assert data.stat().st_mode & 0o777 == 0o750
    assert (data / "outbox.db").stat().st_mode & 0o777 == 0o640
