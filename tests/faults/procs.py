"""Real processes for the fault suite, and what /proc says about them.

Every program runs as a technician runs it (``python -m agent.cli …``, ``python -m
central.cli …``) in a session of its own, so a test can signal one process, or its whole
group as systemd and a terminal do (``os.killpg``). CPU, RSS and open files come from
``/proc/PID/stat``, ``/proc/PID/status`` and ``/proc/PID/fd`` (proc(5)), summed over the
process and its descendants (a kiosk's recognition child counts).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[2]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def children_of(pid: int) -> list[int]:
    """Direct and indirect descendants of ``pid`` (scans /proc; fine for a test)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents[int(entry)] = ppid
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        out += kids
        todo += kids
    return out


def cpu_ticks(pid: int) -> int:
    """utime + stime of one process in clock ticks (proc(5) fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def is_zombie_or_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


# What CPython prints on stderr when a thread or a multiprocessing child dies of an uncaught
# exception (threading.excepthook; _thread's unraisable hook; multiprocessing's
# BaseProcess._bootstrap). The process lives on without that thread, often silently deaf
# (a link keeper, an uplink): the scenario may still drain by luck, so the log must say it.
_DEATH = re.compile(
    r"^(?:Exception in thread (?P<thread>.+?):"
    r"|Exception ignored in thread started by: (?P<started>.+)"
    r"|Process (?P<process>[\w.-]+):)\s*$"
)
_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d[ T]")  # sync/cli_common.py setup_logging's asctime
_NOT_THE_ERROR = ("Traceback (", "During handling of", "The above exception")


def thread_deaths(text: str) -> list[tuple[str, str]]:
    """(thread, its last exception line) for every thread (or multiprocessing child) that
    died of an uncaught exception in a program's stderr ``text``. Tracebacks that a logger
    printed (``logger.exception``: handled, the thread carries on) are not deaths."""
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines):
        m = _DEATH.match(line)
        if m is None:
            continue
        # The traceback follows, up to the next log line or death; its last unindented line
        # is the exception that ended the thread (after any "During handling of …" chain).
        error, prev = "?", ""
        for follow in lines[i + 1 : i + 400]:
            if _LOG_LINE.match(follow) or _DEATH.match(follow):
                break
            if (
                follow.startswith("Traceback (")
                and error != "?"
                and not prev.startswith(_NOT_THE_ERROR)
            ):
                break  # someone else's traceback (a child's stderr is the same file)
            if follow and not follow[0].isspace() and not follow.startswith(_NOT_THE_ERROR):
                error = follow.strip()
            prev = follow if follow.strip() else prev
        name = m.group("thread") or m.group("started") or f"process {m.group('process')}"
        out.append((name, error))
    return out


@dataclass
class Sample:
    t: float
    ticks: int
    rss_kb: int
    fds: int
    pids: tuple[int, ...]


class Proc:
    """One program under test: started in its own session, its output in a log file."""

    def __init__(
        self,
        name: str,
        args: list[str],
        log: Path,
        *,
        env: dict[str, str] | None = None,
        stdin: Any = subprocess.DEVNULL,
        stdout: Any = None,
        text: bool = False,
    ):
        self.name = name
        self.args = args
        self.log = log
        self.env = {**os.environ, **(env or {})}
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.stdin = stdin
        self.stdout = stdout
        self.text = text
        self.popen: subprocess.Popen[Any] | None = None
        self.starts = 0

    @classmethod
    def python(cls, name: str, module: str, argv: list[str], log: Path, **kw: Any) -> Proc:
        return cls(name, [sys.executable, "-m", module, *argv], log, **kw)

    def start(self) -> Proc:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.popen = subprocess.Popen(
                self.args,
                cwd=ROOT,
                env=self.env,
                stdin=self.stdin,
                stdout=self.stdout if self.stdout is not None else log,
                stderr=log,
                start_new_session=True,
                **({"encoding": "utf-8", "errors": "replace"} if self.text else {}),
            )
        self.starts += 1
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} not started"
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def tree(self) -> list[int]:
        if not self.alive():
            return []
        return [self.pid, *children_of(self.pid)]

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def killpg(self, sig: int) -> None:
        """What systemd (KillMode=control-group), Ctrl-C and ``timeout`` do: the whole group."""
        if self.alive():
            os.killpg(self.pid, sig)

    def wait(self, timeout: float) -> int | None:
        if self.popen is None:
            return None
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL for the whole group if it does not exit in ``timeout``."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            if self.wait(timeout) is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(5)
        self.reap_group()
        return self.popen.returncode

    def reap_group(self) -> None:
        """Kill anything left in the process's session (a recognition child orphaned by a
        SIGKILLed kiosk must not outlive the test)."""
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)

    def sample(self) -> Sample | None:
        pids = self.tree()
        if not pids:
            return None
        ticks = rss = fds = 0
        for p in pids:
            with contextlib.suppress(OSError, IndexError, ValueError):
                ticks += cpu_ticks(p)
                rss += rss_kb(p)
                fds += fd_count(p)
        return Sample(time.monotonic(), ticks, rss, fds, tuple(pids))

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


@dataclass
class Usage:
    samples: list[Sample] = field(default_factory=list)

    def cpu_percent(self, t0: float, t1: float) -> float | None:
        """Mean CPU (% of one core) between t0 and t1, from samples of the same process."""
        inside = [s for s in self.samples if t0 <= s.t <= t1]
        if len(inside) < 2:
            return None
        busy = elapsed = 0.0
        for a, b in itertools.pairwise(inside):
            if a.pids[0] != b.pids[0]:
                continue  # restarted in between: its ticks started again from zero
            busy += max(0, b.ticks - a.ticks) / CLK_TCK
            elapsed += b.t - a.t
        return 100.0 * busy / elapsed if elapsed > 0 else None

    def peak_cpu(self, window_s: float = 2.0) -> float:
        """Highest CPU over any ``window_s`` stretch of the samples."""
        best = 0.0
        for i, a in enumerate(self.samples):
            for b in self.samples[i + 1 :]:
                if b.pids[0] != a.pids[0]:
                    break
                if b.t - a.t >= window_s:
                    best = max(best, 100.0 * (b.ticks - a.ticks) / CLK_TCK / (b.t - a.t))
                    break
        return best

    def peak_rss_mb(self) -> float:
        return max((s.rss_kb for s in self.samples), default=0) / 1024


class Sampler:
    """Samples a set of processes every ``interval`` seconds in a background thread."""

    def __init__(self, interval: float = 0.25):
        self.interval = interval
        self.procs: dict[str, Proc] = {}
        self.usage: dict[str, Usage] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def watch(self, proc: Proc) -> None:
        self.procs[proc.name] = proc
        self.usage.setdefault(proc.name, Usage())

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for name, proc in list(self.procs.items()):
                with contextlib.suppress(Exception):
                    s = proc.sample()
                    if s is not None:
                        self.usage[name].samples.append(s)


def spawn_socat_pair(a: Path, b: Path, log: Path) -> Proc:
    """Two linked ptys (a null-modem cable): the agent opens ``a``, the pad simulator ``b``."""
    proc = Proc(
        f"socat-{a.name}",
        [
            "socat",
            f"pty,raw,echo=0,link={a}",
            f"pty,raw,echo=0,link={b}",
        ],
        log,
    ).start()
    deadline = time.monotonic() + 5
    while not (a.exists() and b.exists()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"socat did not create {a} and {b}: {proc.log_text()}")
        time.sleep(0.02)
    return proc


def read_lines(stream: IO[str], on_line: Any) -> threading.Thread:
    def run() -> None:
        for line in stream:
            on_line(line.rstrip("\n"))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t
