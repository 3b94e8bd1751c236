"""Pad ratings through a real pty into the outbox: throughput and ack latency, with and
without a CPU-bound face pipeline on the same machine.

The agent side is the real thing (HallPadLink + PadBus + Outbox in WAL/synchronous=FULL, one
fsync per rating) in this process; the pad is the simulator in a *child process* on the pty
master, so the latency it measures (frame written -> ACK parsed) is not disturbed by this
process's GIL. Scenarios, all in one run:

- echo: a bare loop that reads the port and echoes ACKs with no outbox (the floor: pty,
  pyserial and framing only; acking before the commit is not acceptable, so it is a
  baseline, not an alternative);
- alone: the agent, nothing else running;
- face-proc: the face pipeline (face_recognition HOG detection + 128-d encoding of a photo,
  in a loop) in one process per CPU core, i.e. the machine fully loaded;
- face-proc-nice: the same at nice 10 (the recognition process lowering its own priority);
- face-thread: the same loop in a thread of the agent's own process (GIL contention).

Each agent scenario has two phases: back to back (throughput) and paced (ratings at random
moments, ~100/s; free of coordinated omission, so its percentiles are what a citizen sees).

Target: ack p99 < 50 ms alone and with the face pipeline running the way the
agent runs it (its own process). The in-process thread variant is measured to show why that
isolation is needed; it is reported, not held to the target.

    python bench/pads.py [--seconds 5] [--image PATH] [--dir DIR]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tty
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.config import AgentConfig  # noqa: E402
from agent.outbox import Outbox  # noqa: E402
from agent.windows.simulator import FdPort, SimPad  # noqa: E402
from agent.windows.state import window_worker_factories  # noqa: E402

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hall-agent" / "bench"


# --- the face pipeline ----------------------------------------------------------------------


def face_image(path: str | None) -> tuple[object, str]:
    """A photo with a face: --image, or obama.jpg from the face_recognition 1.3.0 sdist."""
    import face_recognition
    import numpy as np

    if path:
        return face_recognition.load_image_file(path), path
    cached = CACHE / "obama.jpg"
    if not cached.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            try:
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "pip",
                        "download",
                        "--no-deps",
                        "--no-binary",
                        ":all:",
                        "face_recognition==1.3.0",
                        "-d",
                        tmp,
                    ],
                    check=True,
                    capture_output=True,
                    timeout=120,
                )
                import tarfile

                (sdist,) = Path(tmp).glob("face_recognition-1.3.0.tar.gz")
                with tarfile.open(sdist) as tar:
                    member = tar.getmember("face_recognition-1.3.0/tests/test_images/obama.jpg")
                    cached.write_bytes(tar.extractfile(member).read())  # type: ignore[union-attr]
            except Exception as exc:  # offline: a synthetic frame costs the same HOG pass
                print(f"# no photo ({exc}); using a synthetic 1280x720 frame", file=sys.stderr)
                rng = np.random.default_rng(0)
                return rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8), "synthetic"
    return face_recognition.load_image_file(str(cached)), str(cached)


def face_loop(image: object, stop: object, counter: object, nice: int = 0) -> None:
    import face_recognition

    if nice:
        os.nice(nice)  # any process may lower its own priority

    while not stop.is_set():  # type: ignore[attr-defined]
        boxes = face_recognition.face_locations(image)  # HOG
        face_recognition.face_encodings(image, boxes)  # 68 landmarks + ResNet 128-d
        with counter.get_lock():  # type: ignore[attr-defined]
            counter.value += 1  # type: ignore[attr-defined]


# --- the pad side (child process) ------------------------------------------------------------


def pad_process(master: int, seconds: float, paced_gap_s: float, conn: object) -> None:
    """Two phases on one pad: back to back (stop-and-wait, for throughput), then paced.

    Back to back under-samples stalls (while one ack is late, no other rating is in flight:
    coordinated omission). The paced phase sends at random times (uniform gaps averaging
    ``paced_gap_s``), so the share of ratings that hit a stall is the share of time stalled,
    which is what a citizen pressing a key at a random moment sees."""
    import random

    rng = random.Random(7)
    pad = SimPad(FdPort(master), 1)
    pad.hello()
    out = []
    for gap in (0.0, paced_gap_s):
        pad.latencies = []
        start = time.perf_counter()
        unacked = i = 0
        while time.perf_counter() - start < seconds:
            if gap:
                time.sleep(rng.uniform(0, 2 * gap))
            if not pad.rate(1 + i % 5, [0] if i % 5 < 2 else []).acked:
                unacked += 1
            i += 1
        out.append((pad.latencies, time.perf_counter() - start, unacked))
    conn.send(out)  # type: ignore[attr-defined]
    pad.close()


_links = iter(range(1_000_000))


def open_pty(directory: Path) -> tuple[int, int, Path]:
    master, slave = os.openpty()
    tty.setraw(slave)
    link = directory / f"pad-{next(_links)}"
    link.symlink_to(os.ttyname(slave))
    return master, slave, link


def run_pad(master: int, seconds: float, paced_gap_s: float = 0.0) -> list[tuple]:
    parent, child = mp.Pipe()
    proc = mp.Process(target=pad_process, args=(master, seconds, paced_gap_s, child))
    proc.start()
    phases = parent.recv()
    proc.join()
    return phases if paced_gap_s else phases[:1]


# --- agent side -------------------------------------------------------------------------------


def echo_scenario(directory: Path, seconds: float) -> dict[str, float]:
    """Bare loop: pyserial read, framing, ACK at once. No outbox, no window logic."""
    import serial

    from drivers.pad.codec import Ack, FrameParser, encode

    master, slave, link = open_pty(directory)
    port = serial.serial_for_url(str(link), baudrate=9600, timeout=0.02)
    stop = threading.Event()

    def loop() -> None:
        parser = FrameParser()
        while not stop.is_set():
            data = port.read(port.in_waiting or 1)
            for frame in parser.feed(data):
                port.write(encode(frame.addr, frame.seq, Ack()))

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        return summarise(*run_pad(master, seconds)[0])
    finally:
        stop.set()
        t.join()
        port.close()
        os.close(master)
        os.close(slave)


def agent_scenario(directory: Path, seconds: float, name: str) -> dict[str, dict[str, float]]:
    master, slave, link = open_pty(directory)
    data = directory / name
    cfg = AgentConfig.model_validate(
        {
            "device": {"id": "bench-01", "site": "bench", "data_dir": str(data)},
            "pad": [{"port": str(link), "address": 1, "window": "A01"}],
        }
    )
    outbox = Outbox(data / "outbox.db", device="bench-01", site="bench", min_free_bytes=0)
    (make,) = window_worker_factories(cfg, outbox).values()
    worker = make()
    worker.start()
    deadline = time.monotonic() + 10
    while not worker.bus.link_up and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        b2b, paced = (summarise(*phase) for phase in run_pad(master, seconds, PACED_GAP_S))
    finally:
        worker.stop()
        os.close(master)
        os.close(slave)
    stored = outbox.stats().pending
    outbox.close()
    if stored != b2b["acked"] + paced["acked"]:
        b2b["lost_or_doubled"] = stored - b2b["acked"] - paced["acked"]
    return {"b2b": b2b, "paced": paced}


PACED_GAP_S = 0.005  # mean gap of the paced phase: ~150 ratings/s at random moments


def summarise(latencies: list[float], elapsed: float, unacked: int) -> dict[str, float]:
    lat = sorted(x * 1000 for x in latencies)
    q = statistics.quantiles(lat, n=100, method="inclusive")
    return {
        "per_s": len(latencies) / elapsed,
        "acked": len(latencies),
        "p50": statistics.median(lat),
        "p99": q[98],
        "max": lat[-1],
        "unacked": unacked,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="duration of each phase")
    ap.add_argument("--dir", help="directory for the outbox files (default: a temp dir)")
    ap.add_argument("--image", help="photo for the face pipeline (default: obama.jpg)")
    args = ap.parse_args()
    mp.set_start_method("fork")
    image, source = face_image(args.image)
    cores = os.cpu_count() or 1
    results: dict[str, dict[str, float]] = {}
    passes: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        directory = Path(tmp)
        results["echo"] = echo_scenario(directory, args.seconds)
        for mode in ("alone", "face-proc", "face-proc-nice", "face-thread"):
            stop = mp.Event()
            counter = mp.Value("l", 0)
            runners: list = []
            if mode.startswith("face-proc"):  # one pipeline process per core: machine full
                nice = 10 if mode.endswith("nice") else 0
                runners = [
                    mp.Process(target=face_loop, args=(image, stop, counter, nice), daemon=True)
                    for _ in range(cores)
                ]
            elif mode == "face-thread":  # in the agent's own process: GIL contention
                runners = [threading.Thread(target=face_loop, args=(image, stop, counter))]
            for r in runners:
                r.start()
            while counter.value < len(runners):  # the pipeline is really running
                time.sleep(0.05)
            start, before = time.perf_counter(), counter.value
            phases = agent_scenario(directory, args.seconds, mode)
            passes[mode] = (counter.value - before) / (time.perf_counter() - start)
            stop.set()
            for r in runners:
                r.join()
            results[mode] = phases["b2b"]
            results[mode + "/paced"] = phases["paced"]

    print(f"# image {source}; {cores} cores; {args.seconds:g} s per phase; pty (no baud timing)")
    print(f"# {'scenario':18} {'ratings/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}  face/s")
    for name, r in results.items():
        print(
            f"# {name:18} {r['per_s']:9.0f} {r['p50']:7.2f} {r['p99']:7.2f} {r['max']:7.1f}"
            f"  {passes.get(name.split('/')[0], 0):.1f}"
        )
    # The target holds for the arrangement the agent runs in: recognition in its own process
    # (agent/kiosk/recognition.py, isolation = "process"). face-thread is the counter-example that
    # shows why: dlib holds the GIL for tens of ms per call.
    ok = True
    for name, r in results.items():
        missed = r["p99"] >= 50 and not name.startswith("face-thread")
        if missed or r["unacked"] or r.get("lost_or_doubled"):
            print(f"# {name}: target missed or events lost/doubled: {r}")
            ok = False
        elif r["p99"] >= 50:
            print(f"# {name}: p99 {r['p99']:.0f} ms: the GIL stalls the pad thread (expected)")
    a, e = results["alone"], results["echo"]
    fp, ft = results["face-proc"], results["face-thread"]
    ap_, fpp, fnp, ftp = (
        results[k + "/paced"] for k in ("alone", "face-proc", "face-proc-nice", "face-thread")
    )
    print(
        f"ratings_per_s={a['per_s']:.0f} ack_p50_ms={ap_['p50']:.2f} ack_p99_ms={ap_['p99']:.2f} "
        f"face_proc_ratings_per_s={fp['per_s']:.0f} face_proc_p50_ms={fpp['p50']:.2f} "
        f"face_proc_p99_ms={fpp['p99']:.2f} face_proc_nice10_p99_ms={fnp['p99']:.2f} "
        f"face_thread_ratings_per_s={ft['per_s']:.0f} "
        f"face_thread_p50_ms={ftp['p50']:.2f} face_thread_p99_ms={ftp['p99']:.2f} "
        f"face_thread_max_ms={max(ft['max'], ftp['max']):.1f} echo_per_s={e['per_s']:.0f} "
        f"echo_p99_ms={e['p99']:.2f} face_passes_per_s={passes['face-proc']:.1f} "
        f"target_p99_ms=50 ok={int(ok)}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
