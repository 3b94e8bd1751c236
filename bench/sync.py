"""Benchmark: drain a backlog from a real outbox to committed rows in the central store.

    .venv/bin/python bench/sync.py [--events 100000] [--naive 1000] [--pings 300]

Starts its own mosquitto on a free loopback port with the settings of the shipped
config/mosquitto.conf (``set_tcp_nodelay true``; the system broker on 1883 may not have it),
and the collector as a separate process (``hall-central run``), so that the memory figures are
the agent's alone. For SQLite and for PostgreSQL (a throw-away schema):

- batched: ``--events`` events recorded in the outbox first (a device back after days
  offline), then the uplink started with the default sync settings; the clock runs until the
  outbox is empty, i.e. until the last ack after the last commit. Rows are counted after.
- signed (the default; ``--unsigned`` for events as older agents send them): each backlog is
  signed by its device's key before the clock starts, and the key is trusted at the centre
  beforehand, so the collector's chain verifier checks every signature while it drains.
- naive, measured in the same run on a smaller sample (``--naive`` events, default 1,000):
  one event per message, each waiting for the centre's ack before the next is sent
  (``batch_size = 1``, ``max_in_flight = 1``), same broker, same collector, same store.
- ceiling, measured in the same run with the same backlog size, uplink and broker:
  bench/min_collector.py instead of the collector, into a store of its own (same schema,
  opened by central.store.open_store, empty as the collector's was). Per batch it does only
  ``json.loads``, one ``executemany`` of ``INSERT … ON CONFLICT (id) DO NOTHING``, commit and
  the ack: no validation, no conflict check, no ``devices`` row, no queue between threads.
  ``ratio_to_ceiling`` = collector events/s ÷ ceiling events/s.
- agent RSS (this process: outbox + uplink) before draining, after, and the peak sampled
  every 0.2 s while draining.
- ``ping`` round trips with the real collector (``--pings``, one at a time, as
  ``hall-agent ping`` does).

The default backlog (100,000 events) keeps the whole run near 40 s on an idle 2-core machine
(about 90 s when the machine is busy with other work), well under 5 minutes.

Targets: ≥ 5,000 committed events/s on SQLite and ≥ 10× the naive path; ≥ 0.9× the ceiling on
SQLite and ≥ 0.7× on PostgreSQL; flat agent memory; ping p95 < 2 ms on loopback. The last line
holds the figures as key=value.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.keys import Keyring, fingerprint  # noqa: E402
from agent.link.ping import measure  # noqa: E402
from agent.link.uplink import Uplink  # noqa: E402
from agent.outbox import Outbox  # noqa: E402
from central.store import open_store  # noqa: E402
from contract import EventType  # noqa: E402
from tests.support import (  # noqa: E402
    PG_URL,
    Mosquitto,
    agent_config,
    pg_available,
    pg_schema,
    wait_for,
)

RATING = {
    "window": "A03",
    "pad": 1,
    "staff_id": "S0012",
    "level": 5,
    "label": "非常满意",
    "reasons": [],
    "invite_id": None,
}


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def write_conf(workdir: Path, broker: Mosquitto, store_url: str, schema: str | None) -> Path:
    conf = workdir / "central.toml"
    text = f'[mqtt]\nurl = "{broker.url}"\n[store]\nurl = "{store_url}"\n'
    # The hall board reads today's window and rating events every second; the bench stamps
    # 100,000 ratings "today" (a real hall makes about 300 a day), so with the board on it
    # measures the board's reads, not the collector (docs/board.md).
    if schema:
        text += f'pg_schema = "{schema}"\n'
    text += '[board]\nlisten = ""\n'
    conf.write_text(text)
    # Create the schema before the collector subscribes, so its start-up is not timed.
    open_store(store_url, schema).close()
    return conf


def start_collector(workdir: Path, broker: Mosquitto, store_url: str, schema: str | None):
    conf = write_conf(workdir, broker, store_url, schema)
    proc = subprocess.Popen(
        [sys.executable, "-m", "central.cli", "-c", str(conf), "run"],
        cwd=ROOT,
        stderr=open(workdir / "central.log", "wb"),  # noqa: SIM115
    )
    return proc


def start_min_collector(workdir: Path, broker: Mosquitto, store_url: str, schema: str | None):
    """bench/min_collector.py on its own store; returns once it has subscribed."""
    conf = write_conf(workdir, broker, store_url, schema)
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "min_collector.py"), "-c", str(conf)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=open(workdir / "min_collector.log", "wb"),  # noqa: SIM115
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"ready":  # blocks until SUBACK or exit
        proc.kill()
        raise SystemExit(f"bench: min_collector did not start; see {workdir}/min_collector.log")
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def count_rows(store_url: str, schema: str | None, device: str) -> int:
    with open_store(store_url, schema) as store:
        return store.event_count(device)


def fill(box: Outbox, n: int) -> None:
    chunk = 1000
    for start in range(0, n, chunk):
        box.append_many([(EventType.RATING, RATING, None, None)] * min(chunk, n - start))


def sign_backlog(box: Outbox, data_dir: Path, centre: tuple[str, str | None] | None) -> float:
    """Give the outbox the device's key and sign its whole backlog now, before the clock
    starts: the bench times the centre, not the device's signing (bench/outbox.py measures
    that). ``centre``: the store the device's key is trusted in beforehand, as
    ``hall-central devices trust`` would, so that its chain verifier checks every signature
    while the collector drains (a device without a trusted key is not walked)."""
    keyring = Keyring(data_dir)
    public, _ = keyring.ensure()
    if centre is not None:
        with open_store(*centre) as store:
            store.trust_key(
                box.site, box.device, public, fingerprint(public), "bench", datetime.now(UTC)
            )
    box.set_signer(keyring)
    t0 = time.monotonic()
    after = 0
    # In pages, as the uplink reads them: one call for the whole backlog would hold every
    # event in memory at once and show in the agent's RSS figures.
    while page := box.pending(1000, after_seq=after):
        after = page[-1].seq
    return time.monotonic() - t0


def drain(
    workdir: Path,
    broker: Mosquitto,
    device: str,
    n: int,
    centre: tuple[str, str | None] | None = None,
    signed: bool = True,
    **sync,
) -> dict:
    """Record n events (signed by the device's key unless ``signed`` is false), then time the
    uplink draining them to the centre."""
    cfg = agent_config(workdir / device, broker.url, device=device, sync=sync)
    box = Outbox.for_config(cfg, clock=lambda: "synced")
    fill(box, n)
    sign_s = sign_backlog(box, Path(cfg.device.data_dir), centre) if signed else 0.0
    before = rss_mb()
    peak = [before]
    done = threading.Event()

    def sample():
        while not done.wait(0.2):
            peak[0] = max(peak[0], rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    up = Uplink(cfg, box)
    t0 = time.monotonic()
    up.start()
    sampler.start()
    # pending_count, not stats(): polled every 10 ms, stats() recounts bytes and rows under
    # the outbox lock the uplink needs.
    ok = wait_for(lambda: box.pending_count() == 0, 600, interval=0.01)
    elapsed = time.monotonic() - t0
    done.set()
    after = rss_mb()
    up.stop()
    box.close()
    if not ok:
        raise SystemExit(f"bench: {device}: outbox not drained within 600 s")
    return {
        "events": n,
        "sign_s": sign_s,
        "seconds": elapsed,
        "per_s": n / elapsed,
        "rss_before": before,
        "rss_after": after,
        "rss_peak": max(peak[0], after),
    }


def ping(workdir: Path, broker: Mosquitto, count: int) -> tuple[float, float]:
    # A short ack timeout: the first events may be published before the collector process
    # has subscribed; they are resent, and the warm-up absorbs that.
    cfg = agent_config(workdir / "ping", broker.url, device="ping-01", sync={"ack_timeout_s": 1})
    box = Outbox.for_config(cfg, clock=lambda: "synced")
    acked = threading.Event()
    up = Uplink(cfg, box)
    up.add_ack_listener(lambda _ids: acked.set())
    up.start()
    try:
        measure(cfg, box, up, acked, count=20, timeout=60, note="warm-up")
        result = measure(cfg, box, up, acked, count=count, timeout=120, note="bench")
    finally:
        up.stop()
        box.close()
    print(f"  ping: {result.summary()}")
    return result.p50 * 1000, result.p95 * 1000


def run_store(
    name: str,
    workdir: Path,
    broker: Mosquitto,
    store_url: str,
    schema: str | None,
    ceiling_url: str,
    ceiling_schema: str | None,
    args: argparse.Namespace,
) -> dict:
    print(f"{name}: store {store_url}{' schema ' + schema if schema else ''}")
    collector = start_collector(workdir, broker, store_url, schema)
    try:
        # The collector is up when a ping round trip works.
        p50, p95 = ping(workdir, broker, args.pings)
        centre = (store_url, schema)
        signed = not args.unsigned
        batched = drain(workdir, broker, f"bulk-{name}", args.events, centre, signed)
        rows = count_rows(store_url, schema, f"bulk-{name}")
        print(
            f"  batched: {batched['events']} events in {batched['seconds']:.2f} s = "
            f"{batched['per_s']:.0f} events/s committed ({rows} rows); agent RSS "
            f"{batched['rss_before']:.1f} MiB before, peak {batched['rss_peak']:.1f}, "
            f"after {batched['rss_after']:.1f}"
            + (f"; signed beforehand in {batched['sign_s']:.2f} s" if signed else "; unsigned")
        )
        if rows != args.events:
            raise SystemExit(f"bench: {name}: {rows} rows for {args.events} events")
        naive = drain(
            workdir,
            broker,
            f"naive-{name}",
            args.naive,
            centre,
            signed,
            batch_size=1,
            max_in_flight=1,
        )
        print(
            f"  naive (1 event per message, wait for each ack; {args.naive}-event sample): "
            f"{naive['per_s']:.0f} events/s"
        )
        if count_rows(store_url, schema, f"naive-{name}") != args.naive:
            raise SystemExit(f"bench: {name}: naive rows missing")
    finally:
        stop(collector)
    # The ceiling: the same backlog, uplink and broker, drained by bench/min_collector.py
    # into a store of its own (same schema, empty as the real collector's was).
    ceiling_dir = workdir / "ceiling"
    ceiling_dir.mkdir()
    minimal = start_min_collector(ceiling_dir, broker, ceiling_url, ceiling_schema)
    try:
        ceiling = drain(ceiling_dir, broker, f"ceil-{name}", args.events, None, not args.unsigned)
    finally:
        stop(minimal)
    if count_rows(ceiling_url, ceiling_schema, f"ceil-{name}") != args.events:
        raise SystemExit(f"bench: {name}: ceiling rows missing")
    ratio_to_ceiling = batched["per_s"] / ceiling["per_s"]
    print(
        f"  ceiling (bench/min_collector.py: json.loads, one executemany, commit, ack): "
        f"{ceiling['per_s']:.0f} events/s; the collector reaches {ratio_to_ceiling:.2f}x of it"
    )
    return {
        "per_s": batched["per_s"],
        "naive": naive["per_s"],
        "ratio": batched["per_s"] / naive["per_s"],
        "ceiling": ceiling["per_s"],
        "ratio_to_ceiling": ratio_to_ceiling,
        "rss_before": batched["rss_before"],
        "rss_peak": batched["rss_peak"],
        "rss_after": batched["rss_after"],
        "p50": p50,
        "p95": p95,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="backlog size")
    parser.add_argument("--naive", type=int, default=1_000, help="naive-path sample size")
    parser.add_argument("--pings", type=int, default=300, help="ping round trips")
    parser.add_argument("--pg-url", default=PG_URL, help="PostgreSQL for the second run")
    parser.add_argument(
        "--unsigned",
        action="store_true",
        help="events without prev/sig, as agents older than signed chains send them",
    )
    args = parser.parse_args()
    os.environ.setdefault("HALL_AGENT_CLOCK", "synced")
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="hall-bench-") as tmp:
        workdir = Path(tmp)
        with Mosquitto(workdir / "broker") as broker:
            print(f"broker: mosquitto on 127.0.0.1:{broker.port}, set_tcp_nodelay true")
            sqlite_dir = workdir / "sqlite"
            sqlite_dir.mkdir()
            results["sqlite"] = run_store(
                "sqlite",
                sqlite_dir,
                broker,
                f"sqlite:///{workdir}/hall.db",
                None,
                f"sqlite:///{workdir}/ceiling.db",
                None,
                args,
            )
            if pg_available(args.pg_url):
                pg_dir = workdir / "pg"
                pg_dir.mkdir()
                with pg_schema(args.pg_url) as schema, pg_schema(args.pg_url) as ceiling:
                    results["pg"] = run_store(
                        "pg", pg_dir, broker, args.pg_url, schema, args.pg_url, ceiling, args
                    )
            else:
                print(f"pg: skipped, PostgreSQL not reachable at {args.pg_url}")
    s = results["sqlite"]
    figures = {
        "sqlite_events_per_s": f"{s['per_s']:.0f}",
        "sqlite_naive_per_s": f"{s['naive']:.0f}",
        "sqlite_ratio": f"{s['ratio']:.1f}",
        "sqlite_ceiling_per_s": f"{s['ceiling']:.0f}",
        "sqlite_ratio_to_ceiling": f"{s['ratio_to_ceiling']:.2f}",
    }
    if "pg" in results:
        p = results["pg"]
        figures.update(
            pg_events_per_s=f"{p['per_s']:.0f}",
            pg_naive_per_s=f"{p['naive']:.0f}",
            pg_ratio=f"{p['ratio']:.1f}",
            pg_ceiling_per_s=f"{p['ceiling']:.0f}",
            pg_ratio_to_ceiling=f"{p['ratio_to_ceiling']:.2f}",
        )
    figures.update(
        rss_before_mb=f"{s['rss_before']:.1f}",
        rss_peak_mb=f"{s['rss_peak']:.1f}",
        rss_after_mb=f"{s['rss_after']:.1f}",
        ping_p50_ms=f"{s['p50']:.2f}",
        ping_p95_ms=f"{s['p95']:.2f}",
    )
    if "pg" in results:
        figures.update(
            pg_ping_p50_ms=f"{results['pg']['p50']:.2f}",
            pg_ping_p95_ms=f"{results['pg']['p95']:.2f}",
        )
    figures["signed"] = "0" if args.unsigned else "1"
    print(" ".join(f"{k}={v}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
