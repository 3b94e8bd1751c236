"""Benchmark: ``hall-central verify`` of a month of 22,000 events, on SQLite and PostgreSQL.

    .venv/bin/python bench/seal.py [--events 22000] [--rounds 3]

Stores ``--events`` punches and ratings of November 2026 from 20 devices (received a few
seconds after their ``at``), each device's events signed in a chain with its own Ed25519 key
(contract/chain.py; ``--unsigned`` for events of agents older than chains) and its key trusted
in ``device_keys``, seals the month, then times (best of ``--rounds``) ``verify``: reading the
month, every leaf hash and the tree, the checkpoint's signature and stored leaves, the
comparison leaf by leaf, and every device's chain (each signature, each link, seq gaps;
central/seal/chains.py, signatures on two threads). Baseline in the same run: the plain read of
the month's rows (``sealable_events``) that verify starts from. Target (issue 22): under 2 s.
The last line holds the figures as key=value.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat  # noqa: E402

from central.chainrules import fingerprint  # noqa: E402
from central.reports.month import Month  # noqa: E402
from central.seal.core import seal, verify  # noqa: E402
from central.seal.keys import public_hex  # noqa: E402
from central.store import EventRow, PostgresStore, Store, open_store  # noqa: E402
from contract import EventType, chain  # noqa: E402
from tests import support as testing  # noqa: E402
from tests.support import PG_URL, pg_available  # noqa: E402

HALL = ZoneInfo("Asia/Shanghai")
MONTH = Month(2026, 11, HALL)
TARGET_S = 2.0


def events(n: int, signed: bool = True) -> tuple[list[EventRow], dict[str, Ed25519PrivateKey]]:
    rnd = random.Random(22)
    out = []
    keys = {f"k{i:02d}": Ed25519PrivateKey.generate() for i in range(20)}
    prevs = dict.fromkeys(keys, chain.GENESIS)
    start = MONTH.start()
    span = (MONTH.end() - start).total_seconds()
    devices = [f"k{i:02d}" for i in range(20)]
    seqs = dict.fromkeys(devices, 0)
    moments = sorted(start + timedelta(seconds=rnd.uniform(0, span - 60)) for _ in range(n))
    for at in moments:
        device = rnd.choice(devices)
        seqs[device] += 1
        if rnd.random() < 0.5:
            kind = EventType.PUNCH.value
            data = {
                "staff_id": f"S{rnd.randrange(100):03d}",
                "slot": "morning_in",
                "status": "ok",
                "minutes_off": 0,
                "distance": round(rnd.random(), 4),
                "liveness": "passed",
                "schedule_version": 3,
            }
        else:
            kind = EventType.RATING.value
            data = {
                "window": f"A{rnd.randrange(60):02d}",
                "pad": 1,
                "level": rnd.randint(1, 5),
                "label": "满意",
                "reasons": [],
                "staff_id": f"S{rnd.randrange(100):03d}",
            }
        sent = {
            "id": str(uuid.uuid4()),
            "seq": seqs[device],
            "type": kind,
            "at": at.isoformat(timespec="milliseconds"),
            "clock": "synced",
            "device": device,
            "site": "jiedong",
            "data": data,
        }
        if signed:
            sent["prev"] = prevs[device]
            sent["sig"] = chain.sign(keys[device], sent)
            prevs[device] = chain.digest(sent)
        out.append(
            EventRow(
                sent["id"],
                device,
                "jiedong",
                sent["seq"],
                kind,
                at,
                sent["at"],
                "synced",
                json.dumps(data, ensure_ascii=False, separators=(",", ":")),
                prev=sent.get("prev"),
                sig=sent.get("sig"),
            )
        )
    return out, keys


def trust(store: Store, keys: dict[str, Ed25519PrivateKey]) -> None:
    """Each device's key, registered by hand (hall-central devices trust)."""
    for device, key in keys.items():
        raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        store.trust_key(
            "jiedong",
            device,
            base64.b64encode(raw).decode(),
            fingerprint(raw),
            "bench",
            MONTH.start(),
        )


def load(store: Store, rows: list[EventRow]) -> None:
    for i in range(0, len(rows), 2000):
        store.write_batch(rows[i : i + 2000], [])
    if isinstance(store, PostgresStore):
        store.query("UPDATE events SET received_at = at + interval '3 seconds' RETURNING 1")
    else:
        store.query(
            "UPDATE events SET received_at = strftime('%Y-%m-%dT%H:%M:%f+00:00', at, '+3 seconds')"
        )


def best(rounds: int, fn) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


@contextlib.contextmanager
def pg_store() -> Iterator[Store]:
    with testing.pg_schema() as schema, open_store(PG_URL, schema) as store:
        yield store


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=22000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--unsigned", action="store_true", help="events of agents older than chains")
    args = p.parse_args()
    rows, device_keys = events(args.events, signed=not args.unsigned)
    key = Ed25519PrivateKey.generate()
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        stores = [("sqlite", lambda: open_store(f"sqlite:///{tmp}/hall.db"))]
        if pg_available():
            stores.append(("pg", pg_store))
        else:
            print(f"PostgreSQL not reachable at {PG_URL}: SQLite only", flush=True)
        for name, opener in stores:
            with opener() as store:
                load(store, rows)
                trust(store, device_keys)
                t = time.perf_counter()
                done = seal(store, MONTH, key)
                figures[f"{name}_seal_s"] = time.perf_counter() - t
                assert done.checkpoint.tree_size == len(rows), done.checkpoint.tree_size
                result = verify(store, MONTH, public_hex(key))
                assert result.ok, result.problems[:5]
                figures[f"{name}_baseline_s"] = best(
                    args.rounds, lambda s=store: s.sealable_events(MONTH.start(), MONTH.end())
                )
                figures[f"{name}_verify_s"] = best(
                    args.rounds, lambda s=store: verify(s, MONTH, public_hex(key))
                )
            print(
                f"{name}: read {figures[f'{name}_baseline_s']:.3f} s, seal "
                f"{figures[f'{name}_seal_s']:.3f} s, verify {figures[f'{name}_verify_s']:.3f} s",
                flush=True,
            )
    slowest = max(v for k, v in figures.items() if k.endswith("verify_s"))
    print(
        " ".join(f"{k}={v:.3f}" for k, v in figures.items())
        + f" events={len(rows)} signed={sum(r.sig is not None for r in rows)}"
        + f" slowest_verify_s={slowest:.3f} target_s={TARGET_S:.0f}"
        + f" ok={int(slowest < TARGET_S)}"
    )


if __name__ == "__main__":
    main()
