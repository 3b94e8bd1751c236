"""The throughput ceiling for bench/sync.py: the least a collector must do per batch.

    .venv/bin/python bench/min_collector.py -c central.toml

Reads the same config as ``hall-central run`` (broker, store, prefix), connects with the same
MQTT settings (sync.mqtt.make_client: protocol, TCP_NODELAY; Receive Maximum as
central/collector.py) and subscribes to the same shared filter,
``$share/hall-central/{prefix}/+/+/events``. Per batch, on paho's own thread (no queue, no
second thread): ``json.loads``, ONE transaction of one insert of the columns central/store/
writes (SQLite: a plain ``executemany``; PostgreSQL: the store's own single ``INSERT … SELECT
FROM unnest`` of binary arrays), ``ON CONFLICT (id) DO NOTHING``, commit, then
the ack ``{"v":1,"ids":[…],"rejected":[]}`` on ``{prefix}/{site}/{device}/ack`` (QoS 1);
paho PUBACKs the batch when the callback returns. No validation, no conflict check, no
``devices`` row, no ``rejected`` table: not a collector, only what bounds one.

The store is opened with central.store.open_store, so the table, its indexes and SQLite's
pragmas (WAL, ``synchronous = FULL``) are the real store's. Prints ``ready`` on stdout once
the broker has granted the subscription (SUBACK).
"""

from __future__ import annotations

import argparse
import json
import signal
import sqlite3
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from central.collector import RECEIVE_MAXIMUM, SHARE_GROUP  # noqa: E402
from central.config import load_central_config  # noqa: E402
from central.store import open_store  # noqa: E402
from sync.mqtt import connect_kwargs, make_client  # noqa: E402
from sync.paho_loop import stop_loop  # noqa: E402

# The columns the store's write_batch gives each dialect (central/store/sqlite.py, postgres.py;
# PostgreSQL: received_at is the column's default, now(); SQLite: the centre's clock as text).
SQLITE_INSERT = (
    "INSERT INTO events (id, device, site, seq, type, at, clock, received_at, data) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
)
# PostgreSQL: the fastest insert we know, the real store's own (one statement over unnest of
# binary-bound arrays), without its RETURNING: a ceiling must not be beaten by the collector.
PG_INSERT = (
    "INSERT INTO events (id, device, site, seq, type, at, clock, data) "
    "SELECT * FROM unnest(%b::uuid[], %b::text[], %b::text[], %b::bigint[], %b::text[], "
    "%b::timestamptz[], %b::text[], %b::jsonb[]) ON CONFLICT (id) DO NOTHING"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-c", "--config", required=True, help="central.toml")
    args = parser.parse_args()
    cfg = load_central_config(args.config)
    prefix = cfg.mqtt.prefix
    store = open_store(cfg.store.url, cfg.store.pg_schema, cfg.store.password)
    conn: Any = store.conn  # type: ignore[attr-defined]
    sqlite = isinstance(conn, sqlite3.Connection)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def write(events: list[dict[str, Any]]) -> None:
        # One transaction per batch, as the real collector (central/store/ write_batch).
        if sqlite:
            now = datetime.now(UTC).isoformat(timespec="milliseconds")
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                SQLITE_INSERT,
                [
                    (
                        e["id"],
                        e["device"],
                        e["site"],
                        e["seq"],
                        e["type"],
                        e["at"],
                        e["clock"],
                        now,
                        json.dumps(e["data"], ensure_ascii=False, separators=(",", ":")),
                    )
                    for e in events
                ],
            )
            conn.execute("COMMIT")
            return
        with conn.transaction():
            conn.execute(
                PG_INSERT,
                (
                    [e["id"] for e in events],
                    [e["device"] for e in events],
                    [e["site"] for e in events],
                    [e["seq"] for e in events],
                    [e["type"] for e in events],
                    [datetime.fromisoformat(e["at"]) for e in events],
                    [e["clock"] for e in events],
                    [
                        json.dumps(e["data"], ensure_ascii=False, separators=(",", ":"))
                        for e in events
                    ],
                ),
            )

    def on_message(client: Any, _userdata: Any, msg: Any) -> None:
        # {prefix}/{site}/{device}/events
        parts = msg.topic.split("/")
        batch = json.loads(msg.payload)
        events = batch["events"]
        write(events)
        ack = {"v": 1, "ids": [e["id"] for e in events], "rejected": []}
        client.publish(
            f"{prefix}/{parts[-3]}/{parts[-2]}/ack",
            json.dumps(ack, separators=(",", ":")).encode(),
            qos=1,
        )

    events_mid: list[int] = []

    def on_connect(client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        if reason_code.is_failure:
            print(f"min_collector: connect refused: {reason_code}", file=sys.stderr)
            stop.set()
            return
        _rc, mid = client.subscribe(f"$share/{SHARE_GROUP}/{prefix}/+/+/events", qos=1)
        events_mid.append(mid)

    def on_subscribe(_client: Any, _userdata: Any, mid: int, codes: Any, _props: Any) -> None:
        if mid in events_mid and not any(getattr(rc, "is_failure", False) for rc in codes):
            print("ready", flush=True)

    client = make_client(cfg.mqtt, f"bench-min-collector-{id(stop):x}")
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.max_inflight_messages_set(100)
    client.connect(**connect_kwargs(cfg.mqtt, receive_maximum=RECEIVE_MAXIMUM))
    client.loop_start()
    try:
        stop.wait()
    finally:
        client.disconnect()
        stop_loop(client)
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
