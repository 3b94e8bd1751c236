"""No face encoding or image leaves the gallery file (docs/topics.md, PIPL art. 28-29).

A kiosk enrolled from a real photo (``hall-agent enroll``) runs on a camera video where the
enrolled person and a stranger walk past, as ``hall-agent run`` with a collector and a broker.
Then every MQTT payload (a ``mosquitto_sub -t '#'`` spy on the broker), every log line, and
every file and outbox row in the kiosk's data_dir except the gallery file, the central store
and the broker's persistence file are scanned for encodings and images. The same detectors must find the encodings in the gallery file: that
is the proof that they can see what they look for.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.faults.biometric import findings, scan_broker_db, scan_store, scan_tree
from tests.faults.hall import Hall
from tests.faults.prereq import need


def _spy(port: int, out: Path) -> subprocess.Popen[bytes]:
    # %x: the payload in hex, one message per line, whatever bytes it holds.
    return subprocess.Popen(
        [
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-q",
            "1",
            "-v",
            "-t",
            "#",
            "-F",
            "%t %x",
        ],
        stdout=out.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _outbox_rows(db: Path) -> list[bytes]:
    rows: list[bytes] = []
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                rows.append(repr(row).encode("utf-8", "replace"))
    return rows


@pytest.mark.slow
@pytest.mark.kiosk
def test_no_encoding_or_image_leaves_the_gallery(tmp_path):
    import importlib.util

    need(importlib.util.find_spec("face_recognition") is not None, "needs face_recognition")
    from agent.kiosk.gallery import gallery_path
    from tests import media
    from tests.faults.kiosk import add_enrolled_kiosk

    media.require_photos()

    hall = Hall(tmp_path / "hall", seed=1, broker_persistence=True).start()
    spy_file = tmp_path / "mqtt.txt"
    spy = _spy(hall.broker.port, spy_file)
    outbox_rows: list[bytes] = []
    try:
        kiosk = add_enrolled_kiosk(hall)
        assert hall.wait_connected(kiosk, 60)
        # Punches are recorded as the video plays; catch rows while some are still pending.
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            if kiosk.pending():
                outbox_rows += _outbox_rows(kiosk.data_dir / "outbox.db")
            with contextlib.closing(hall.open_store()) as store:
                punches = store.query(
                    "SELECT count(*) FROM events WHERE type = 'attendance.punch'"
                )[0][0]
            if punches >= 2:
                break
            time.sleep(0.3)
        assert hall.wait_drained(30) is not None
        kiosk.agent.signal(signal.SIGTERM)
        assert kiosk.agent.wait(30) == 0
        outbox_rows += _outbox_rows(kiosk.data_dir / "outbox.db")
    finally:
        time.sleep(0.5)
        spy.send_signal(signal.SIGTERM)
        spy.wait(5)
        hall.close()

    with contextlib.closing(hall.open_store()) as store:
        kinds = dict(store.query("SELECT type, count(*) FROM events GROUP BY type"))
    # The run did what a kiosk does: punches for the enrolled person, a stranger refused.
    assert kinds.get("attendance.punch", 0) >= 2, kinds
    assert kinds.get("attendance.rejected", 0) >= 1, kinds

    problems: list[str] = []
    messages = 0
    for line in spy_file.read_bytes().splitlines():
        topic, _, hexpayload = line.partition(b" ")
        try:
            payload = bytes.fromhex(hexpayload.decode())
        except ValueError:
            problems.append(f"mosquitto_sub printed something unexpected: {line[:80]!r}")
            continue
        messages += 1
        problems += findings(payload, f"MQTT {topic.decode(errors='replace')}")
    assert messages >= 3  # status, events, acks at least: the spy saw the traffic

    log_lines = 0
    for log in sorted((tmp_path / "hall").glob("*.log")):
        text = log.read_bytes()
        log_lines += text.count(b"\n")
        problems += findings(text, f"log {log.name}")
    assert log_lines > 0

    for i, row in enumerate(outbox_rows):
        problems += findings(row, f"outbox row {i}")
    assert outbox_rows

    gallery = gallery_path(kiosk.data_dir).resolve()
    found, files = scan_tree(kiosk.data_dir, skip={gallery})
    problems += found
    assert files >= 2  # outbox.db and the state files at least

    # What the centre and the broker keep on disk (written on the broker's exit).
    found, places = scan_store(hall)
    problems += found
    assert places >= 4
    found, files = scan_broker_db(hall)
    problems += found
    assert files == 1

    assert not problems, "\n".join(problems[:20])
    # The detectors see encodings where they are meant to be.
    assert any("raw floats" in f for f in findings(gallery.read_bytes(), "gallery"))


def test_detectors_see_an_encoding_in_every_form_and_not_in_ordinary_text():
    import base64
    import json

    import numpy as np

    from tests.faults.biometric import findings

    # Shaped like a dlib descriptor: 128 values, magnitudes well below 1.
    enc = np.random.default_rng(5).normal(0, 0.08, 128)
    forms = {
        "json": json.dumps({"encoding": enc.tolist()}).encode(),
        "repr": repr([np.float64(x) for x in enc]).encode(),
        "float64": b"hdr" + enc.tobytes() + b"tail",
        "float32": b"h" + enc.astype(np.float32).tobytes(),
        "base64": json.dumps({"blob": base64.b64encode(enc.tobytes()).decode()}).encode(),
        "jpeg": b"payload \xff\xd8\xff\xe0\x00\x10JFIF",
        "png": b"\x89PNG\r\n\x1a\n\x00\x00",
        "base64 jpeg": base64.b64encode(b"\xff\xd8\xff\xe0" + bytes(64)),
    }
    for name, blob in forms.items():
        assert findings(blob, name), name
    ordinary = [
        json.dumps(
            {"v": 1, "ids": [f"0193a5c2-{i:04x}-7000-8000-000000000000" for i in range(200)]}
        ),
        " ".join(f"2026-11-30 08:31:{i % 60:02d},{i:03d} INFO ack in 0.{i} ms" for i in range(300)),
        json.dumps({"distance": 0.41, "staff_id": "s001", "slot": "morning_in"}),
    ]
    for text in ordinary:
        assert not findings(text.encode(), "ordinary"), text[:80]


def _encoding() -> list[float]:
    import numpy as np

    # Shaped like a dlib descriptor: 128 values, magnitudes well below 1.
    return [float(x) for x in np.random.default_rng(11).normal(0, 0.08, 128)]


def _publish(port: int, topic: str, payload: bytes) -> None:
    # -r: retained, so the broker keeps it in mosquitto.db; -n: the empty payload clears it.
    args = ["-n"] if not payload else ["-s"]
    subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-r", "-t", topic, *args],
        input=payload or None,
        timeout=20,
        check=True,
        capture_output=True,
    )


@pytest.mark.slow
@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_scan_covers_the_central_store_and_the_broker_db(tmp_path, store):
    """A window device rates through a hall whose broker keeps ``mosquitto.db``: the scan of
    the store (SQLite file, -wal, rows; or the PostgreSQL schema's tables), of the broker's
    file and of the whole hall finds nothing. Then an encoding planted in each place is found
    there: as raw float32 in a retained message (the broker's file, rewritten on SIGUSR1, and
    clean again once the message is cleared), and as a JSON list in a stored event's data
    (for SQLite first in the -wal, then in the main file after the checkpoint)."""
    import json

    import numpy as np

    from tests.faults.biometric import scan_broker_db, scan_hall, scan_store
    from tests.support import PG_URL, pg_available, pg_schema

    if store == "postgresql":
        need(pg_available(), "PostgreSQL not reachable")
    enc = _encoding()
    with pg_schema() if store == "postgresql" else contextlib.nullcontext() as schema:
        hall = Hall(
            tmp_path / "hall", store=store, pg_schema=schema, seed=2, broker_persistence=True
        ).start()
        try:
            dev = hall.add_window("win-01")
            assert hall.wait_connected(dev, 30)
            hall.rate_everywhere(0.05)
            time.sleep(3)
            hall.stop_rating()
            assert hall.wait_drained(30) is not None
            with contextlib.closing(hall.open_store()) as st:
                ratings = st.query("SELECT count(*) FROM events WHERE type = 'rating.submitted'")
            assert ratings[0][0] >= 3  # the store holds what a hall stores

            # Clean: nothing anywhere, and each place was really read.
            found, places = scan_store(hall)
            assert not found, "\n".join(found[:20])
            assert places >= 4  # events, rejected, devices, ... (+ the files for SQLite)
            found, files = scan_broker_db(hall)
            assert files == 1 and not found, found
            assert (hall.workdir / "broker" / "mosquitto.db").stat().st_size > 0
            assert not scan_hall(hall)

            # Planted in the broker: a device publishing an encoding, retained.
            topic = "hall/jiedong/win-01/debug/face"
            _publish(hall.broker.port, topic, np.asarray(enc, np.float32).tobytes())
            found, _ = scan_broker_db(hall)
            assert any("mosquitto.db" in f and "raw floats" in f for f in found), found
            assert any("mosquitto.db" in f for f in scan_hall(hall))
            _publish(hall.broker.port, topic, b"")
            found, _ = scan_broker_db(hall)
            assert not found, found  # the file is rewritten, not a stale copy
        finally:
            hall.close()

        # Planted in the store, with the collector stopped: this test's connection is the
        # only one, so the change sits in the WAL until it closes.
        found, _ = scan_store(hall)
        assert not found, found
        plant = json.dumps(enc)
        if store == "sqlite":
            db = hall.store_dir / "hall.db"
            conn = sqlite3.connect(db, isolation_level=None)
            try:
                conn.execute("PRAGMA wal_autocheckpoint = 0")
                conn.execute(
                    "UPDATE events SET data = json_set(data, '$.encoding', json(?)) "
                    "WHERE rowid = (SELECT min(rowid) FROM events)",
                    (plant,),
                )
                found, _ = scan_store(hall)
                assert any(f.startswith(f"{db}-wal:") for f in found), found
                assert any("table events" in f for f in found), found
            finally:
                conn.close()  # the last connection checkpoints into hall.db and drops the WAL
            found, _ = scan_store(hall)
            assert any(f.startswith(f"{db}:") for f in found), found
        else:
            import psycopg

            with psycopg.connect(PG_URL, autocommit=True) as pg:
                pg.execute(
                    f'UPDATE "{schema}".events SET data = data || '
                    "jsonb_build_object('encoding', %s::jsonb) "
                    f'WHERE id = (SELECT id FROM "{schema}".events LIMIT 1)',
                    (plant,),
                )
            found, _ = scan_store(hall)
            assert any(f"pg {schema}.events" in f for f in found), found
