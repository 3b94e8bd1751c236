"""Fault soak: the fault scenarios of tests/faults in random order, for minutes or hours.

    .venv/bin/python bench/faults.py --minutes 30 [--seed 1] [--scale 2] [--no-write]

Each round builds a hall of real processes (Mosquitto on a free port, ``hall-central run``,
``hall-agent run`` with simulated pads over socat ptys or a kiosk on a video file), injects
one fault scenario dealt from a shuffled deck (tests/faults/scenarios.py: broker down, collector
SIGKILL, store refusing writes, store read-only or full, device disk full, agent SIGKILL
storm, partition, hard link loss, added latency, clock steps, hostile pad bytes, hostile MQTT
payloads, one device's events refused by the store, one device account flooding invalid
payloads, a weekend's backlog across a month end, process-group SIGTERM on a kiosk, SIGKILL of
a kiosk's parent), and checks the history: every acked rating and every recorded event stored
exactly once.

Unlike the tests, the devices run with the default sync settings (``ack_timeout_s`` 30), so
the recovery time is what a hall would see. The no-fault baseline runs first, in the same run,
for each store: its pad-ack latency and idle CPU are the reference the ratios are taken to.

Writes the results table into docs/reliability.md (between the ``bench:faults`` markers) and
prints one line per round; the last line holds the totals as key=value. Exits 1 when any
round (the baselines included) lost, duplicated or altered an event or had a problem, after
naming each such round (its number, scenario, store, seed and scale); 0 otherwise.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.config import SyncSection  # noqa: E402
from tests.faults.disks import can_mount  # noqa: E402
from tests.faults.scenarios import (  # noqa: E402
    FAKETIME,
    KIOSK,
    NEEDS_MOUNT,
    NEEDS_STORE_DISK,
    SCENARIOS,
    Outcome,
    faketime_lib,
    run_scenario,
)
from tests.support import pg_available, pg_schema  # noqa: E402

DOC = ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- bench:faults:begin -->", "<!-- bench:faults:end -->"
# The product's defaults, not the tests' shortened ack timeout.
DEFAULT_SYNC = {
    "ack_timeout_s": SyncSection.model_fields["ack_timeout_s"].default,
    "status_interval_s": SyncSection.model_fields["status_interval_s"].default,
}

# A scenario's own figures worth a look in the round's line (the isolation scenarios' ack
# p99 before and during the fault, the flood's store growth against its budget, the days a
# weekend's backlog was filed on).
FIGURES = (
    "others_ack_p99_baseline_ms",
    "others_ack_p99_fault_ms",
    "others_ack_p99_ratio",
    "refused_drain_s",
    "rejected_counted",
    "store_growth_mb",
    "store_budget_mb",
    "ratings_per_day",
)


def available(kiosk: bool) -> tuple[list[str], list[str]]:
    """Scenarios this machine can run, and why others cannot."""
    skipped = []
    names = [n for n in SCENARIOS if n != "baseline"]
    if not can_mount():
        skipped += [f"{n} (needs root and a loop device)" for n in sorted(NEEDS_MOUNT)]
        names = [n for n in names if n not in NEEDS_MOUNT]
    if faketime_lib() is None:
        skipped += [f"{n} (needs libfaketime)" for n in sorted(FAKETIME)]
        names = [n for n in names if n not in FAKETIME]
    if not kiosk:
        skipped += [f"{n} (needs the vision stack and the pinned photos)" for n in sorted(KIOSK)]
        names = [n for n in names if n not in KIOSK]
    return names, skipped


def kiosk_ready() -> bool:
    try:
        import face_recognition  # noqa: F401

        from tests import media

        media.photos_dir()
        return True
    except Exception:
        return False


def one(name: str, store: str, seed: int, scale: float, workroot: Path) -> Outcome:
    """One round; its work directory (logs, stores) is kept only if something went wrong."""
    workdir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=workroot))
    try:
        if store == "postgresql":
            with pg_schema() as schema:
                out = run_scenario(
                    name,
                    workdir,
                    seed=seed,
                    scale=scale,
                    store=store,
                    pg_schema=schema,
                    sync=DEFAULT_SYNC,
                )
        else:
            out = run_scenario(name, workdir, seed=seed, scale=scale, sync=DEFAULT_SYNC)
    except Exception as exc:  # a harness failure is a result too, not the end of the soak
        out = Outcome(name, store, seed, scale)
        out.problems.append(f"harness: {type(exc).__name__}: {exc}")
    if out.ok:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        out.extra["workdir"] = str(workdir)
    return out


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(outcomes: list[Outcome], baselines: dict[str, Outcome]) -> str:
    groups: dict[tuple[str, str], list[Outcome]] = {}
    for o in outcomes:
        groups.setdefault((o.scenario, o.store), []).append(o)
    head = (
        "| scenario | store | runs | sent | acked | stored | lost | dup | altered | faults "
        "| recovery s (p50 / max) | wait CPU % (max) | peak CPU % | peak RSS MB "
        "| RSS growth MB | problems |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|\n"
    )
    lines = []
    for (name, store), runs in sorted(
        {**groups, **{(b.scenario, b.store): [b] for b in baselines.values()}}.items()
    ):
        h = [r.history.as_dict() for r in runs if r.history]
        keys = ("sent", "acked", "stored", "lost", "duplicated", "altered")
        total = {k: sum(x[k] for x in h) for k in keys}
        rec = [r.recovery_s for r in runs if r.recovery_s is not None]
        cpu = [r.wait_cpu_pct for r in runs if r.wait_cpu_pct is not None]
        growth = [r.rss_growth_mb for r in runs if r.rss_growth_mb is not None]
        problems = sum(
            len(r.problems) + (len(r.history.problems) if r.history else 0) for r in runs
        )
        lines.append(
            f"| {name} | {store} | {len(runs)} | {total['sent']} | {total['acked']} "
            f"| {total['stored']} | {total['lost']} | {total['duplicated']} | {total['altered']} "
            f"| {sum(r.faults for r in runs)} "
            f"| {fmt(statistics.median(rec) if rec else None)} / {fmt(max(rec) if rec else None)} "
            f"| {fmt(max(cpu) if cpu else None)} | {fmt(max(r.peak_cpu_pct for r in runs))} "
            f"| {fmt(max(r.peak_rss_mb for r in runs))} | {fmt(max(growth) if growth else None)} "
            f"| {problems} |"
        )
    return head + "\n".join(lines) + "\n"


def write_doc(text: str) -> None:
    doc = DOC.read_text(encoding="utf-8") if DOC.exists() else f"# Reliability\n\n{BEGIN}\n{END}\n"
    if BEGIN not in doc:
        doc += f"\n{BEGIN}\n{END}\n"
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{BEGIN}\n{text}{END}{tail}", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, required=True, help="how long to keep injecting")
    p.add_argument("--seed", type=int, default=1, help="random seed (scenario order, pads)")
    p.add_argument("--scale", type=float, default=2.0, help="fault length factor (tests: 0.6)")
    p.add_argument("--no-write", action="store_true", help="do not rewrite docs/reliability.md")
    p.add_argument("--only", help="comma-separated scenario names to draw from")
    args = p.parse_args(argv)

    rng = random.Random(args.seed)
    kiosk = kiosk_ready()
    names, skipped = available(kiosk)
    if args.only:
        wanted = args.only.split(",")
        unknown = [n for n in wanted if n not in SCENARIOS]
        if unknown:
            p.error(f"--only: unknown scenario(s) {unknown}; expected some of {sorted(SCENARIOS)}")
        names = [n for n in names if n in wanted]
    stores = ["sqlite"] + (["postgresql"] if pg_available() else [])
    if len(stores) == 1:
        skipped.append("every PostgreSQL round (PostgreSQL not reachable)")
    for s in skipped:
        print(f"not run: {s}", flush=True)

    workroot = Path(tempfile.mkdtemp(prefix="hall-faults-bench-"))
    baselines: dict[str, Outcome] = {}
    for store in stores:
        b = one("baseline", store, args.seed, 1.0, workroot)
        baselines[store] = b
        print(f"baseline {store}: {b.row()}", flush=True)
    outcomes: list[Outcome] = []
    rounds: list[tuple[str, Outcome]] = [(f"baseline {b.store}", b) for b in baselines.values()]
    budget = args.minutes * 60
    started = time.monotonic()  # the budget is for the fault rounds, after the baselines
    deck: list[str] = []
    while time.monotonic() - started < budget and names:
        # A shuffled deck, dealt to the end before the next shuffle: random order, and a
        # short run still sees every scenario once before any twice.
        if not deck:
            deck = rng.sample(names, len(names))
        name = deck.pop()
        store = "sqlite" if name in NEEDS_STORE_DISK else rng.choice(stores)
        seed = rng.randrange(1 << 30)
        scale = round(args.scale * rng.uniform(0.5, 1.5), 2)
        t0 = time.monotonic()
        out = one(name, store, seed, scale, workroot)
        outcomes.append(out)
        rounds.append((f"round {len(outcomes)}", out))
        h = out.history
        print(
            f"[{(time.monotonic() - started) / 60:5.1f} min] #{len(outcomes)} {name} {store} "
            f"scale={scale} "
            f"seed={seed} took={time.monotonic() - t0:.0f}s "
            f"{h if h else ''} recovery_s={out.recovery_s} wait_cpu={out.wait_cpu_pct} "
            + "".join(f"{k}={out.extra[k]} " for k in FIGURES if k in out.extra)
            + f"problems={out.problems + (h.problems if h else [])}",
            flush=True,
        )

    if all(o.ok for _, o in rounds):
        shutil.rmtree(workroot, ignore_errors=True)
    else:
        print(f"work directories of the failed rounds are kept under {workroot}", flush=True)

    text = (
        f"Last run: `bench/faults.py --minutes {args.minutes:g} --seed {args.seed} "
        f"--scale {args.scale:g}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{len(outcomes)} rounds in {(time.monotonic() - started) / 60:.1f} min; default sync "
        f"settings (ack timeout {DEFAULT_SYNC['ack_timeout_s']:g} s).\n\n"
        + table(outcomes, baselines)
        + ("\nNot run on that machine: " + "; ".join(skipped) + ".\n" if skipped else "")
    )
    if not args.no_write:
        write_doc(text)

    hs = [o.history for o in outcomes if o.history]
    rec = sorted(o.recovery_s for o in outcomes if o.recovery_s is not None)
    cpu = [o.wait_cpu_pct for o in outcomes if o.wait_cpu_pct is not None]
    base = baselines["sqlite"]
    base_p50 = base.extra.get("pad_ack_p50_ms")
    fault_p50 = [o.extra["pad_ack_p50_ms"] for o in outcomes if "pad_ack_p50_ms" in o.extra]
    problems = sum(
        len(o.problems) + (len(o.history.problems) if o.history else 0) for o in outcomes
    )
    totals = {
        "minutes": f"{(time.monotonic() - started) / 60:.1f}",
        "rounds": len(outcomes),
        "sent": sum(h.sent for h in hs),
        "acked": sum(h.acked for h in hs),
        "stored": sum(h.stored for h in hs),
        "lost": sum(h.lost for h in hs),
        "duplicated": sum(h.duplicated for h in hs),
        "altered": sum(h.altered for h in hs),
        "faults": sum(o.faults for o in outcomes),
        "recovery_p50_s": fmt(rec[len(rec) // 2] if rec else None, 2),
        "recovery_max_s": fmt(rec[-1] if rec else None, 2),
        "drained_within_5s": f"{sum(r <= 5 for r in rec)}/{len(rec)}",
        "wait_cpu_max_pct": fmt(max(cpu) if cpu else None),
        "baseline_idle_cpu_pct": fmt(base.wait_cpu_pct),
        "peak_rss_max_mb": fmt(max((o.peak_rss_mb for o in outcomes), default=None)),
        "baseline_ack_p50_ms": fmt(base_p50),
        "fault_ack_p50_ratio": fmt(
            statistics.median(fault_p50) / base_p50 if fault_p50 and base_p50 else None, 2
        ),
        "problems": problems,
    }
    # A soak that lost an event must not look like a pass to whoever runs it from a script
    # or CI: name every failed round (its scenario, store, seed and scale, to run it again
    # through run_scenario), keep the totals line last, and say it in the exit status.
    failed = [(label, o) for label, o in rounds if not o.ok]
    for label, o in failed:
        h = o.history
        counts = f"lost={h.lost} duplicated={h.duplicated} altered={h.altered} " if h else ""
        print(
            f"FAILED {label}: {o.scenario} {o.store} seed={o.seed} scale={o.scale} {counts}"
            f"problems={o.problems + (h.problems if h else [])}"
            + (f" workdir={o.extra['workdir']}" if "workdir" in o.extra else ""),
            flush=True,
        )
    totals["failed_rounds"] = len(failed)
    print(" ".join(f"{k}={v}" for k, v in totals.items()))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
