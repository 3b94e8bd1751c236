"""Outbox append throughput next to a bare sqlite3 loop with the same pragmas, in one run.

Both sides write to a file in the same directory, in WAL mode with synchronous=FULL (every
commit fsyncs), rows of the same size. "single": one event per transaction, as a pad rating
arrives; "batch": 100 events per transaction (``append_many``). The outbox does more per event
(UUIDv7, seq counter row, JSON envelope, size-cap and free-space checks): the ratio shows what
that costs. Targets: single >= 0.7, batch >= 0.5.

Signing (docs/device-keys.md) happens at send time, never in ``append``: the same appends with
a signer set must go as fast (``signer_*_ratio`` ~ 1.0), and what signing costs is measured
where it is paid, in ``pending()``: reading N events in the uplink's batches of 200 with a
signer (each batch signed, one commit) against without one, per event
(``sign_per_event_us``), and next to what a batched append costs per event
(``sign_vs_batch_append``).

    python bench/outbox.py [--n 2000] [--dir /var/lib/hall-agent]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.keys import Keyring
from agent.outbox import Outbox
from contract import EventType

DATA = {
    "window": "A03",
    "pad": 1,
    "staff_id": "s0042",
    "level": 5,
    "label": "非常满意",
    "reasons": [],
    "invite_id": None,
}
BATCH = 100
UPLINK_BATCH = 200  # sync.batch_size's default: what the uplink asks pending() for


def bare(path: Path, n: int, batch: int) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(
        "CREATE TABLE outbox (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, type TEXT NOT NULL,"
        " created REAL NOT NULL, size INTEGER NOT NULL, body TEXT NOT NULL)"
    )
    body = json.dumps(
        {
            "id": str(uuid.uuid4()),
            "seq": 1,
            "type": EventType.RATING,
            "at": "2026-11-26T09:12:03.120+08:00",
            "clock": "synced",
            "device": "pad-a03",
            "site": "jiedong",
            "data": DATA,
        },
        ensure_ascii=False,
    )
    start = time.perf_counter()
    seq = 0
    for _ in range(n // batch):
        conn.execute("BEGIN IMMEDIATE")
        for _ in range(batch):
            seq += 1
            conn.execute(
                "INSERT INTO outbox (seq, id, type, created, size, body) VALUES (?,?,?,?,?,?)",
                (seq, str(uuid.uuid4()), EventType.RATING, time.time(), len(body), body),
            )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return (n // batch) * batch / elapsed


def outbox(path: Path, n: int, batch: int, signer: bool = False) -> float:
    box = Outbox(path, device="pad-a03", site="jiedong", clock=lambda: "synced")
    if signer:
        keyring = Keyring(path.parent / f"{path.stem}-keys")
        keyring.ensure()
        box.set_signer(keyring)
    start = time.perf_counter()
    if batch == 1:
        for _ in range(n):
            box.append(EventType.RATING, DATA)
    else:
        for _ in range(n // batch):
            box.append_many([(EventType.RATING, DATA, None, None)] * batch)
    elapsed = time.perf_counter() - start
    box.close()
    return (n // batch) * batch / elapsed


def drain(box: Outbox) -> int:
    """Read every pending event as the uplink does, batch after batch; returns the count."""
    cursor = count = 0
    while rows := box.pending(UPLINK_BATCH, after_seq=cursor):
        cursor = rows[-1].seq
        count += len(rows)
    return count


def signing(directory: Path, n: int) -> tuple[float, float]:
    """Seconds to hand out ``n`` pending events without a signer, and with one (signing
    them), from two outboxes holding the same events."""
    seconds = []
    for signer in (False, True):
        box = Outbox(
            directory / f"drain-{signer}.db",
            device="pad-a03",
            site="jiedong",
            clock=lambda: "synced",
        )
        for _ in range(n // BATCH):
            box.append_many([(EventType.RATING, DATA, None, None)] * BATCH)
        if signer:
            keyring = Keyring(directory / "drain-keys")
            keyring.ensure()
            box.set_signer(keyring)
        start = time.perf_counter()
        assert drain(box) == n // BATCH * BATCH
        seconds.append(time.perf_counter() - start)
        box.close()
    return seconds[0], seconds[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="single appends per side")
    parser.add_argument("--dir", type=Path, help="where to write (default: a temp dir)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; best kept")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        d = Path(tmp)
        best = {"bare1": 0.0, "box1": 0.0, "bareB": 0.0, "boxB": 0.0, "sig1": 0.0, "sigB": 0.0}
        plain_s = signed_s = float("inf")
        n_sign = args.n * 5
        # Alternate the sides so that a noisy neighbour hurts both alike; keep each side's best.
        for r in range(args.rounds):
            best["bare1"] = max(best["bare1"], bare(d / f"bare1-{r}.db", args.n, 1))
            best["box1"] = max(best["box1"], outbox(d / f"box1-{r}.db", args.n, 1))
            best["bareB"] = max(best["bareB"], bare(d / f"bareB-{r}.db", args.n * 20, BATCH))
            best["boxB"] = max(best["boxB"], outbox(d / f"boxB-{r}.db", args.n * 20, BATCH))
            best["sig1"] = max(best["sig1"], outbox(d / f"sig1-{r}.db", args.n, 1, signer=True))
            best["sigB"] = max(
                best["sigB"], outbox(d / f"sigB-{r}.db", args.n * 20, BATCH, signer=True)
            )
            round_dir = d / f"drain-{r}"
            round_dir.mkdir()
            plain, signed = signing(round_dir, n_sign)
            plain_s, signed_s = min(plain_s, plain), min(signed_s, signed)
            print(
                f"round {r + 1}: single bare {best['bare1']:.0f}/s outbox {best['box1']:.0f}/s"
                f" with signer {best['sig1']:.0f}/s; batch bare {best['bareB']:.0f}/s outbox"
                f" {best['boxB']:.0f}/s with signer {best['sigB']:.0f}/s; pending() of"
                f" {n_sign}: {plain_s * 1000:.0f} ms, signing {signed_s * 1000:.0f} ms",
                flush=True,
            )
    r1 = best["box1"] / best["bare1"]
    rb = best["boxB"] / best["bareB"]
    s1 = best["sig1"] / best["box1"]  # ~1.0: append does not sign
    sb = best["sigB"] / best["boxB"]
    sign_us = (signed_s - plain_s) / n_sign * 1e6
    batch_append_us = 1e6 / best["boxB"]
    print(
        f"single_per_s={best['box1']:.0f} bare_single_per_s={best['bare1']:.0f} "
        f"single_ratio={r1:.2f} batch_per_s={best['boxB']:.0f} "
        f"bare_batch_per_s={best['bareB']:.0f} batch_ratio={rb:.2f} "
        f"signer_single_per_s={best['sig1']:.0f} signer_single_ratio={s1:.2f} "
        f"signer_batch_per_s={best['sigB']:.0f} signer_batch_ratio={sb:.2f} "
        f"pending_per_event_us={plain_s / n_sign * 1e6:.1f} sign_per_event_us={sign_us:.1f} "
        f"batch_append_per_event_us={batch_append_us:.1f} "
        f"sign_vs_batch_append={sign_us / batch_append_us:.2f}"
    )


if __name__ == "__main__":
    main()
