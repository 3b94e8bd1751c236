"""The demo hall (docs/demo.md): a whole hall on one machine, no hardware, one command.

Started by ``bash scripts/demo.sh`` (after scripts/setup.sh). Everything runs as the current
user under a work directory (``/tmp/hall-demo.*``):

- its own Mosquitto on a free loopback port, configured from config/mosquitto.conf (the
  dynamic-security plugin, accounts made with scripts/hall-broker.sh, ``set_tcp_nodelay``);
- the collector on SQLite with the hall board;
- a kiosk agent on a composed sample video (tests/media.py: the pinned photos of
  face_recognition's own tests), two sample staff enrolled from those photos, its kiosk page;
- a window agent with two simulated HallPad v1 pads (socat pty pairs,
  ``hall-agent simulate pad``) logging in and rating now and then;
- a live view of the events landing in the central store, in this terminal.

Ctrl-C (or ``--duration``) stops every process it started, then the month's attendance and
ratings reports are printed. PostgreSQL is not used.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
BIN = Path(sys.executable).parent
SITE = "demo"
ROSTER = {
    "v": 1,
    "version": 1,
    "staff": [
        {"id": "s001", "name": "张三", "role": "staff", "window": None},
        {"id": "s002", "name": "李四", "role": "chief", "window": None},
        {"id": "s003", "name": "王五", "role": "staff", "window": "A01"},
        {"id": "s004", "name": "赵六", "role": "staff", "window": "A02"},
    ],
}
# Who is enrolled at the kiosk, from which pinned photos (tests/media.py ENROL).
ENROL = {"s001": ("obama.jpg", "obama3.jpg"), "s002": ("biden.jpg",)}


def free_port(preferred: int = 0) -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise RuntimeError("no free port")


def say(text: str) -> None:
    print(f"== {text}", flush=True)


class Procs:
    """The processes this demo started, all in its own process group; logs under work/logs."""

    def __init__(self, work: Path):
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: list[str], **kw: object) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, **kw)  # type: ignore[call-overload]
        log.close()
        self.running.append((name, proc))
        return proc

    def stop_all(self, timeout: float = 20.0) -> None:
        # The agents first (they flush their outboxes), the broker last.
        for _name, proc in reversed(self.running):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
        for name, proc in self.running:
            if proc.poll() is None:
                print(f"   {name} did not stop; killed", flush=True)
                proc.kill()
                proc.wait(5)


def run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, text=True, capture_output=True, timeout=300, **kw)  # type: ignore[call-overload]


def check(result: subprocess.CompletedProcess[str], what: str) -> None:
    if result.returncode != 0:
        raise SystemExit(f"demo: {what} failed:\n{result.stdout}{result.stderr}")


# --- the broker ----------------------------------------------------------------------------


def start_broker(procs: Procs, work: Path) -> dict[str, str]:
    """Mosquitto with the shipped config and accounts; returns {user: password file}."""
    if shutil.which("mosquitto") is None:
        raise SystemExit(
            "demo: needs the mosquitto broker (apt-get install mosquitto mosquitto-clients); "
            "docs/demo.md explains why no embedded Python broker is used"
        )
    from tests.support import HALL_BROKER, _port_open, shipped_config, wait_for

    bdir = work / "broker"
    bdir.mkdir()
    port = free_port()
    secrets: dict[str, str] = {}

    def secret(name: str) -> str:
        path = bdir / f"{name}.pass"
        path.write_text(f"demo-{name}-{random.randrange(1 << 30)}\n")
        path.chmod(0o600)
        secrets[name] = str(path)
        return str(path)

    env = {**os.environ, "MOSQUITTO_CTRL_OPTS": f"-h 127.0.0.1 -p {port} -u hall-admin -P "}
    admin_file = secret("hall-admin")
    admin_pw = Path(admin_file).read_text().strip()
    env["MOSQUITTO_CTRL_OPTS"] += admin_pw

    def script(*args: str) -> None:
        check(run(["bash", str(HALL_BROKER), *args], env=env), f"hall-broker.sh {args[0]}")

    script("init", str(bdir / "dynamic-security.json"), "hall-admin", admin_file)
    conf = bdir / "mosquitto.conf"
    conf.write_text(shipped_config(bdir, port))
    procs.start("mosquitto", ["mosquitto", "-c", str(conf)])
    if not wait_for(lambda: _port_open(port), 10, interval=0.1):
        raise SystemExit(f"demo: mosquitto did not start; see {procs.logs}/mosquitto.log")
    script("setup")
    script("add-collector", "hall-central", secret("hall-central"))
    for device in ("kiosk-01", "win-01"):
        script("add-device", SITE, device, secret(device))
    secrets["url"] = f"mqtt://127.0.0.1:{port}"
    return secrets


# --- configs ---------------------------------------------------------------------------------


def write_configs(work: Path, mqtt: dict[str, str], video: Path, ports: dict[str, int]) -> None:
    def mqtt_block(user: str) -> str:
        return (
            f'[mqtt]\nurl = "{mqtt["url"]}"\nusername = "{user}"\npassword_file = "{mqtt[user]}"\n'
        )

    (work / "central.toml").write_text(
        mqtt_block("hall-central")
        + f'[store]\nurl = "sqlite:///{work}/hall.db"\n'
        + f'[board]\nlisten = "127.0.0.1:{ports["board"]}"\ntitle = "演示大厅 窗口服务公示"\n'
    )
    (work / "kiosk.toml").write_text(
        f'[device]\nid = "kiosk-01"\nsite = "{SITE}"\ndata_dir = "{work}/kiosk"\n'
        + mqtt_block("kiosk-01")
        + "[sync]\nack_timeout_s = 5\nmin_free_mb = 0\n"
        + f'[attendance]\ncamera = "{video}"\n'
        + f'[screen]\nlisten = "127.0.0.1:{ports["kiosk"]}"\n'
    )
    pads = "".join(
        f'[[pad]]\nport = "{work}/pad{n}-agent"\naddress = {n}\nwindow = "A0{n}"\n' for n in (1, 2)
    )
    (work / "window.toml").write_text(
        f'[device]\nid = "win-01"\nsite = "{SITE}"\ndata_dir = "{work}/window"\n'
        + mqtt_block("win-01")
        + "[sync]\nack_timeout_s = 5\nmin_free_mb = 0\n"
        + "[windows]\nheartbeat_s = 10\n"
        + pads
    )


def pad_script(path: Path, staff: str, seed: int, minutes: int = 60) -> Path:
    """A pad's morning: log in, then a rating every 5-15 s (mostly good), with heartbeats."""
    rnd = random.Random(seed)
    lines = ["hello SIM-1.0", f"login {staff}", "wait 1"]
    t = 0.0
    while t < minutes * 60:
        gap = rnd.uniform(5, 15)
        lines += [f"wait {gap:.1f}", "heartbeat"]
        level = rnd.choices([5, 4, 3, 2, 1], weights=[60, 20, 10, 6, 4])[0]
        lines.append(f"rate {level}" + (" reasons=1" if level <= 2 else ""))
        if rnd.random() < 0.05:
            lines += ["pause", f"wait {rnd.uniform(5, 15):.1f}", "heartbeat", "resume"]
        t += gap
    lines.append("logout")
    path.write_text("\n".join(lines) + "\n")
    return path


# --- the sample video and the enrolment photos ------------------------------------------------


def sample_media(work: Path) -> Path:
    """The pinned photos (fetched once with pip into .cache/media) and the demo video:
    张三 arrives, 李四 arrives, a visitor nobody enrolled, 张三 again (a repeat)."""
    from tests import media
    from tests.media import Actor

    try:
        photos = media.photos_dir()
    except media.MediaUnavailable as exc:
        raise SystemExit(f"demo: sample photos unavailable ({exc}); needs PyPI once") from exc
    enrol = work / "enrol"
    for sid, names in ENROL.items():
        (enrol / sid).mkdir(parents=True)
        for name in names:
            (enrol / sid / name).symlink_to(photos / name)  # no copy of anyone's photo
    actors = [
        Actor("obama2.jpg", 3.0, 9.0),
        Actor("biden.jpg", 13.0, 19.0, flip=True),
        Actor("t1.jpg#1", 24.0, 30.0, flip=True),  # a visitor: not enrolled
        Actor("obama2.jpg", 35.0, 41.0),
        Actor("biden.jpg", 50.0, 56.0, flip=True),
    ]
    return media.cached_video("demo-hall", actors, 90.0, fps=15.0)


# --- the live view ---------------------------------------------------------------------------


def live_view(db: Path, stop: threading.Event, names: dict[str, str]) -> None:
    last = 0
    while not stop.wait(1.0):
        if not db.exists():
            continue
        try:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
            rows = con.execute(
                "SELECT rowid, device, seq, type, at, data FROM events WHERE rowid > ? "
                "ORDER BY rowid",
                (last,),
            ).fetchall()
            con.close()
        except sqlite3.Error:
            continue
        for rowid, device, seq, kind, at, data in rows:
            last = rowid
            d = json.loads(data)
            who = names.get(d.get("staff_id"), d.get("staff_id") or "")
            extra = " ".join(
                f"{k}={d[k]}" for k in ("window", "slot", "status", "level", "reason") if k in d
            )
            print(f"  {str(at)[11:19]} {device:<9} #{seq:<4} {kind:<20} {who} {extra}", flush=True)


# --- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, help="default: a new /tmp/hall-demo.* directory")
    ap.add_argument("--duration", type=float, default=0, help="stop after this many seconds")
    ap.add_argument("--kiosk-port", type=int, default=8080)
    ap.add_argument("--board-port", type=int, default=8090)
    args = ap.parse_args(argv)
    if shutil.which("socat") is None:
        raise SystemExit("demo: needs socat for the simulated pads (apt-get install socat)")

    work = args.workdir or Path(tempfile.mkdtemp(prefix="hall-demo."))
    work.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    procs = Procs(work)
    agent, central = str(BIN / "hall-agent"), str(BIN / "hall-central")
    viewer: threading.Thread | None = None
    try:
        say(f"the demo hall in {work} (logs in {work}/logs)")
        say("sample photos and video (fetched and composed once, then cached)")
        video = sample_media(work)
        say("broker: Mosquitto with config/mosquitto.conf and scripts/hall-broker.sh accounts")
        mqtt = start_broker(procs, work)
        ports = {"kiosk": free_port(args.kiosk_port), "board": free_port(args.board_port)}
        write_configs(work, mqtt, video, ports)
        for conf in ("kiosk", "window"):
            check(
                run([agent, "-c", str(work / f"{conf}.toml"), "check", "--only", "config"]),
                f"{conf} config",
            )
        (work / "roster.json").write_text(json.dumps(ROSTER, ensure_ascii=False))
        say("collector (SQLite store) with the hall board")
        procs.start("central", [central, "-c", str(work / "central.toml"), "-v", "run"])
        check(
            run(
                [
                    central,
                    "-c",
                    str(work / "central.toml"),
                    "roster",
                    "publish",
                    str(work / "roster.json"),
                    "--site",
                    SITE,
                ]
            ),
            "roster publish",
        )
        say("enrolling the sample staff at the kiosk (encodings only)")
        check(
            run(
                [agent, "-c", str(work / "kiosk.toml"), "enroll", "--from-dir", str(work / "enrol")]
            ),
            "enroll",
        )
        say("kiosk agent on the sample video")
        procs.start("kiosk", [agent, "-c", str(work / "kiosk.toml"), "-v", "run"])
        say("window agent with two simulated pads")
        for n in (1, 2):
            procs.start(
                f"socat-{n}",
                [
                    "socat",
                    f"pty,raw,echo=0,link={work}/pad{n}-agent",
                    f"pty,raw,echo=0,link={work}/pad{n}-sim",
                ],
            )
        deadline = time.monotonic() + 10
        while not all((work / f"pad{n}-{e}").exists() for n in (1, 2) for e in ("agent", "sim")):
            if time.monotonic() > deadline:
                raise SystemExit("demo: socat did not create the pty pairs")
            time.sleep(0.1)
        procs.start("window", [agent, "-c", str(work / "window.toml"), "-v", "run"])
        for n, staff in ((1, "s003"), (2, "s004")):
            script = pad_script(work / f"pad{n}.script", staff, seed=n)
            procs.start(
                f"pad-{n}",
                [
                    agent,
                    "simulate",
                    "pad",
                    "--port",
                    f"{work}/pad{n}-sim",
                    "--address",
                    str(n),
                    "--script",
                    str(script),
                ],
            )
        print(
            f"\n   kiosk page  http://127.0.0.1:{ports['kiosk']}/   "
            f"(technician: /tech)\n   hall board  http://127.0.0.1:{ports['board']}/\n"
            "   Ctrl-C stops the hall and prints this month's reports.\n",
            flush=True,
        )
        say("events arriving at the centre")
        names = {s["id"]: s["name"] for s in ROSTER["staff"]}
        viewer = threading.Thread(
            target=live_view, args=(work / "hall.db", stop, names), daemon=True
        )
        viewer.start()
        started = time.monotonic()
        while not stop.wait(0.5):
            if args.duration and time.monotonic() - started >= args.duration:
                break
            dead = [
                n
                for n, p in procs.running
                if p.poll() is not None and n in ("mosquitto", "central", "kiosk", "window")
            ]
            if dead:
                print(f"demo: {', '.join(dead)} stopped; see {procs.logs}", file=sys.stderr)
                break
    finally:
        stop.set()
        say("stopping")
        procs.stop_all()
        if viewer is not None:
            viewer.join(2)
    if (work / "hall.db").exists():
        for report in ("attendance", "ratings"):
            say(f"this month's {report} report")
            out = run([central, "-c", str(work / "central.toml"), "report", report, "--site", SITE])
            print(out.stdout + out.stderr, flush=True)
    say(f"done; everything is in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
