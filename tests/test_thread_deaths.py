"""The fault suite's scan for dead threads (tests/faults/procs.py thread_deaths) on what
CPython really prints: a thread that dies of an uncaught exception is found and named, a
traceback a logger printed for a handled exception is not a death."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.faults.procs import ROOT, thread_deaths

PROGRAM = r"""
import logging, threading, multiprocessing as mp
from sync.cli_common import setup_logging

setup_logging(1)
log = logging.getLogger("agent")

def handled():
    try:
        raise OSError("store refused")
    except OSError:
        log.exception("batch not stored")  # logged with its traceback; the thread lives on

def link():
    thread = None
    try:
        {}["x"]
    except KeyError:
        thread.join()  # the race in sync/mqtt.py: paho's thread already gone (a chain)

def child():
    raise RuntimeError("model file missing")

if __name__ == "__main__":
    for target, name in ((handled, "uplink"), (link, "uplink-link")):
        t = threading.Thread(target=target, name=name)
        t.start()
        t.join()
    p = mp.get_context("spawn").Process(target=child, name="recognizer")
    p.start()
    p.join()
    log.info("still running")
"""


def test_dead_threads_are_named_and_handled_tracebacks_are_not(tmp_path: Path) -> None:
    program = tmp_path / "program.py"  # a file: the spawned child imports it
    program.write_text(PROGRAM, encoding="utf-8")
    run = subprocess.run(
        [sys.executable, str(program)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert "batch not stored" in run.stderr and "still running" in run.stderr, run.stderr
    assert thread_deaths(run.stderr) == [
        ("uplink-link", "AttributeError: 'NoneType' object has no attribute 'join'"),
        ("process recognizer", "RuntimeError: model file missing"),
    ], run.stderr


def test_a_quiet_log_has_no_deaths() -> None:
    text = (
        "2026-12-01 09:00:00,001 WARNING sync.mqtt: uplink: disconnected: keepalive timeout\n"
        "2026-12-01 09:00:01,002 ERROR central.collector: batch not stored\n"
        "Traceback (most recent call last):\n"
        '  File "central/collector.py", line 1, in _run\n'
        "sqlite3.OperationalError: database is locked\n"
        "2026-12-01 09:00:02,003 INFO sync.mqtt: uplink: connected to 127.0.0.1:1883\n"
    )
    assert thread_deaths(text) == []


def test_a_chained_traceback_ends_in_its_last_exception() -> None:
    text = (
        "Exception in thread uplink:\n"
        "Traceback (most recent call last):\n"
        '  File "agent/link/uplink.py", line 1, in _run\n'
        "KeyError: 'x'\n"
        "\n"
        "During handling of the above exception, another exception occurred:\n"
        "\n"
        "Traceback (most recent call last):\n"
        '  File "agent/link/uplink.py", line 3, in _run\n'
        "ValueError: bad batch\n"
        "Traceback (most recent call last):\n"
        "OSError: a child's own, printed next in the same file\n"
    )
    assert thread_deaths(text) == [("uplink", "ValueError: bad batch")]
