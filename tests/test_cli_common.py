"""Log lines under systemd carry journald priorities (sd-daemon(3) ``<N>`` prefixes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sync.cli_common import sd_priority, stderr_is_journal

REPO = Path(__file__).resolve().parents[1]

LOG_SOME = (
    "import logging, sys\n"
    "from sync.cli_common import setup_logging\n"
    "setup_logging(2)\n"
    "log = logging.getLogger('t')\n"
    "log.debug('d'); log.info('i'); log.warning('w'); log.error('e')\n"
    "try:\n"
    "    1 / 0\n"
    "except ZeroDivisionError:\n"
    "    log.exception('boom')\n"
)


def _run_with_stderr_to(path: Path, env_extra: dict[str, str] | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    with path.open("w") as err:
        if env_extra is not None:
            st = os.fstat(err.fileno())
            env["JOURNAL_STREAM"] = env_extra.get("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        subprocess.run(
            [sys.executable, "-c", LOG_SOME], cwd=REPO, env=env, stderr=err, check=True, timeout=60
        )
    return path.read_text()


def test_journal_lines_carry_sd_daemon_priorities(tmp_path):
    lines = _run_with_stderr_to(tmp_path / "err", {}).splitlines()
    assert lines[0] == "<7>DEBUG t: d"
    assert lines[1] == "<6>INFO t: i"
    assert lines[2] == "<4>WARNING t: w"
    assert lines[3] == "<3>ERROR t: e"
    # A traceback's lines keep the record's priority, so `journalctl -p err` shows all of it.
    rest = lines[4:]
    assert rest[0] == "<3>ERROR t: boom"
    assert any("ZeroDivisionError" in line for line in rest)
    assert all(line.startswith("<3>") for line in rest)


def test_no_prefix_on_a_terminal_or_a_redirect(tmp_path):
    plain = _run_with_stderr_to(tmp_path / "plain", None)
    assert "WARNING t: w" in plain
    assert "<4>" not in plain and "<3>" not in plain
    # Inherited JOURNAL_STREAM naming another file (e.g. a redirect in a child): no prefixes.
    other = _run_with_stderr_to(tmp_path / "other", {"JOURNAL_STREAM": "1:1"})
    assert "<4>" not in other and "WARNING t: w" in other


def test_config_error_line_is_sd_err_under_journald(tmp_path):
    bad = tmp_path / "agent.toml"
    bad.write_text('[device]\nid = "k1"\nsite = "jiedong"\nbogus = 1\n')
    err_path = tmp_path / "err"
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    with err_path.open("w") as err:
        st = os.fstat(err.fileno())
        env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        proc = subprocess.run(
            [sys.executable, "-m", "agent.cli", "-c", str(bad), "check", "--only", "config"],
            cwd=REPO,
            env=env,
            stderr=err,
            stdout=subprocess.DEVNULL,
            timeout=60,
        )
    assert proc.returncode == 78
    lines = err_path.read_text().splitlines()
    assert lines and all(line.startswith("<3>") for line in lines)
    assert "device.bogus" in lines[0]


def test_priority_mapping_and_detection(tmp_path):
    assert [sd_priority(n) for n in (10, 20, 25, 30, 40, 50)] == [7, 6, 6, 4, 3, 2]
    with (tmp_path / "f").open("w") as f:
        st = os.fstat(f.fileno())
        assert stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, f)
        assert not stderr_is_journal({"JOURNAL_STREAM": "garbage"}, f)
        assert not stderr_is_journal({}, f)
