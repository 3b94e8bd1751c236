"""Detectors for biometric data where none may be (docs/topics.md: face data stays on the kiosk,
encodings are never published, no frame or face image is written or sent).

- face encodings: 128 numbers in a row, as text (a JSON or repr list of floats), as raw
  float64/float32 (any byte alignment), or base64 of either;
- images: JPEG (``FF D8 FF``) and PNG (``89 50 4E 47 0D 0A 1A 0A``) magic, raw or base64.

face_recognition's encodings are 128 float64 values of magnitude below 1 (dlib's ResNet
descriptor); a run of 128 such values is what the binary detector looks for.

:func:`scan_hall` applies them to a whole hall: the central store (SQLite file with its -wal
and -shm and every table's rows, or every table of the PostgreSQL schema), Mosquitto's
persistence file (retained and queued messages; the hall needs ``broker_persistence=True``),
the devices' data directories except the gallery file, and the logs.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
import signal
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tests.faults.hall import Hall

DIMS = 128
IMAGE_MAGIC = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG"}
# base64 of the magic at the start of an encoded blob: "/9j/" is FF D8 FF, "iVBORw0KGgo" PNG.
B64_IMAGE = re.compile(rb"(/9j/[A-Za-z0-9+/]{16}|iVBORw0KGgo)")
# A decimal fraction as text; 128 of them close together (JSON, a Python or numpy repr such as
# "np.float64(-0.09)", CSV) are an encoding written out.
DECIMAL = re.compile(rb"-?\d*\.\d+(?:[eE][-+]?\d+)?")
MAX_GAP = 24  # characters between two numbers of one list
B64_RUN = re.compile(rb"[A-Za-z0-9+/]{600,}={0,2}")


def _float_runs(blob: bytes, dtype: str, size: int) -> bool:
    """True if ``blob`` holds DIMS consecutive ``dtype`` values that look like an encoding."""
    if len(blob) < DIMS * size:
        return False
    for offset in range(size):
        n = (len(blob) - offset) // size
        if n < DIMS:
            continue
        values = np.frombuffer(blob, dtype=dtype, count=n, offset=offset)
        with np.errstate(invalid="ignore", over="ignore"):
            mags = np.abs(values.astype(np.float64))
        plausible = (np.isfinite(mags) & (mags > 1e-5) & (mags < 1.0)).astype(np.int32)
        # A window of DIMS values all plausible: the sum over the window reaches DIMS.
        if np.convolve(plausible, np.ones(DIMS, np.int32), "valid").max() >= DIMS:
            return True
    return False


def _text_encoding(blob: bytes) -> int | None:
    """Byte offset of DIMS decimal fractions of magnitude < 1 in a row, or None."""
    run, start, last_end = 0, 0, -1
    for m in DECIMAL.finditer(blob):
        try:
            small = abs(float(m.group(0))) < 1.0
        except ValueError:
            small = False
        if small and run and m.start() - last_end <= MAX_GAP:
            run += 1
        elif small:
            run, start = 1, m.start()
        else:
            run = 0
        last_end = m.end()
        if run >= DIMS:
            return start
    return None


def _binary_encoding(blob: bytes) -> bool:
    return _float_runs(blob, "<f8", 8) or _float_runs(blob, "<f4", 4)


def findings(blob: bytes, where: str) -> list[str]:
    """What in ``blob`` looks like a face encoding or an image; empty if nothing."""
    out = []
    for magic, kind in IMAGE_MAGIC.items():
        if magic in blob:
            out.append(f"{where}: {kind} magic at byte {blob.index(magic)}")
    m = B64_IMAGE.search(blob)
    if m:
        out.append(f"{where}: base64 image at byte {m.start()}")
    at = _text_encoding(blob)
    if at is not None:
        out.append(f"{where}: a list of {DIMS} numbers at byte {at}")
    for m in B64_RUN.finditer(blob):
        try:
            decoded = base64.b64decode(m.group(0) + b"=" * (-len(m.group(0)) % 4))
        except (binascii.Error, ValueError):
            continue
        if _binary_encoding(decoded):
            out.append(f"{where}: base64 float array at byte {m.start()}")
    if _binary_encoding(blob):
        out.append(f"{where}: {DIMS} raw floats in a row")
    return out


def scan_tree(root: Path, skip: set[Path]) -> tuple[list[str], int]:
    """Scan every file under ``root`` except ``skip``; returns (findings, files scanned)."""
    out, n = [], 0
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.resolve() in skip:
            continue
        n += 1
        out += findings(path.read_bytes(), str(path))
    return out, n


# --- the hall's stores: central store, broker persistence -------------------------------------


def row_blob(row: tuple[Any, ...]) -> bytes:
    """One table row as bytes for :func:`findings`: a BLOB/bytea stays raw (``repr`` would
    escape it into ``\\x..`` text no detector can read), JSON is written out, the rest is str."""
    parts: list[bytes] = []
    for value in row:
        if isinstance(value, bytes | bytearray | memoryview):
            parts.append(bytes(value))
        elif isinstance(value, dict | list):
            parts.append(json.dumps(value).encode())
        else:
            parts.append(str(value).encode("utf-8", "replace"))
    return b" | ".join(parts)


def scan_sqlite(db: Path) -> tuple[list[str], int]:
    """The file, its ``-wal`` and ``-shm`` as raw bytes, and every row of every table.

    Raw bytes see what the rows no longer show (a deleted row's bytes stay in a free page, a
    WAL frame not yet checkpointed); the rows see a value SQLite spread over overflow pages.
    Returns (findings, places scanned: files plus tables)."""
    out, n = [], 0
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        if path.is_file():
            n += 1
            out += findings(path.read_bytes(), str(path))
    if not db.is_file():
        return out, n
    # Read-only, and through the WAL: a writer (the collector) may be running.
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        conn.execute("PRAGMA busy_timeout = 5000")
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            n += 1
            for i, row in enumerate(conn.execute(f'SELECT * FROM "{table}"')):
                out += findings(row_blob(row), f"{db.name} table {table} row {i}")
    return out, n


def scan_postgres(url: str, schema: str) -> tuple[list[str], int]:
    """Every row of every table of ``schema`` (the store's data as PostgreSQL returns it; its
    on-disk files are shared with other databases and are not ours to read).
    Returns (findings, tables scanned)."""
    import psycopg

    out, n = [], 0
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = %s AND table_type = 'BASE TABLE' ORDER BY table_name",
                (schema,),
            )
        ]
        for table in tables:
            n += 1
            for i, row in enumerate(conn.execute(f'SELECT * FROM "{schema}"."{table}"')):
                out += findings(row_blob(row), f"pg {schema}.{table} row {i}")
    return out, n


def save_broker_db(hall: Hall, timeout: float = 10.0) -> Path | None:
    """Have the hall's Mosquitto write its persistence file now (SIGUSR1, mosquitto(8)) and
    return it; None when the hall's broker runs without persistence.

    Mosquitto writes ``mosquitto.db`` only on SIGUSR1, at ``autosave_interval`` and on exit:
    without the signal a scan while the hall runs would read a stale file or none."""
    broker = hall.broker
    if not broker.persistence:
        return None
    db = broker.workdir / "mosquitto.db"
    if broker.proc is not None and broker.proc.poll() is None:
        before = db.stat().st_mtime_ns if db.exists() else None
        broker.proc.send_signal(signal.SIGUSR1)
        # Written to mosquitto.db.new and renamed: a new mtime means a complete file.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if db.exists() and db.stat().st_mtime_ns != before:
                break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"mosquitto did not write {db} within {timeout} s of SIGUSR1")
        time.sleep(0.05)  # the rename is the last step; let a same-tick rewrite settle
    return db if db.exists() else None


def scan_broker_db(hall: Hall) -> tuple[list[str], int]:
    """Retained and queued messages as Mosquitto keeps them on disk. A hall whose broker runs
    without persistence has no such file: that is reported, not passed over in silence."""
    db = save_broker_db(hall)
    if db is None:
        why = "persistence off" if not hall.broker.persistence else "no mosquitto.db written"
        return [f"broker: {why}, its persistence file was not scanned"], 0
    return findings(db.read_bytes(), str(db)), 1


def scan_store(hall: Hall) -> tuple[list[str], int]:
    """The central store of ``hall``: the SQLite file (+ -wal, -shm) or the PostgreSQL schema."""
    if hall.store_kind == "sqlite":
        return scan_sqlite(hall.store_dir / "hall.db")
    if hall.pg_schema is None:
        return ["store: PostgreSQL without a pg_schema of its own, not scanned"], 0
    from tests.support import PG_URL

    return scan_postgres(PG_URL, hall.pg_schema)


def scan_hall(hall: Hall) -> list[str]:
    """Everything of a hall where face data must not be, for a scenario's last step: the
    central store, the broker's persistence file, every device's data_dir except its gallery
    file, and every log of the hall. Works while the hall runs (and after ``close()``)."""
    from agent.kiosk.gallery import gallery_path

    out, _ = scan_store(hall)
    out += scan_broker_db(hall)[0]
    for dev in hall.devices.values():
        gallery = gallery_path(dev.data_dir).resolve()
        out += scan_tree(dev.data_dir, skip={gallery})[0] if dev.data_dir.is_dir() else []
    for log in sorted(hall.workdir.glob("*.log")):
        out += findings(log.read_bytes(), f"log {log.name}")
    return out
