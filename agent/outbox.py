"""The durable outbox (docs/architecture.md#outbox: the outbox is the spine).

Every event is committed here before anything is acknowledged to a pad or shown as done; only
an ack from the centre removes it (docs/topics.md). SQLite in WAL mode with ``synchronous=FULL``:
a commit returns only after the WAL is fsynced, so an event whose ``append`` returned survives
a crash or a power cut.

- ``seq`` is allocated inside the storing transaction (``BEGIN IMMEDIATE``), from a counter in
  the ``meta`` table; it is strictly increasing, survives restarts, and stays correct when a
  second process (``hall-agent ping`` beside a running agent) appends to the same file.
- An optional *dedupe key* is stored in the same transaction as its event: a pad frame resent
  after a crash finds its key and gets the original event back instead of a second one.
- Size cap (``sync.max_outbox_mb``): attendance, rating and window records are never dropped;
  when the cap is reached the oldest ``device.*`` events go first and a ``device.fault`` (disk)
  is recorded. Below the free-space floor (``sync.min_free_mb``) ``append`` refuses with
  :class:`OutboxFullError`; the caller does not ack, so the producer retries later.
- A corrupt or foreign database file is moved aside (never overwritten) and reported.
- Signing (schema v2, agent/outbox_chain.py): with a signer set (:meth:`Outbox.set_signer`),
  :meth:`Outbox.pending` signs the events it is about to return into the device's chain
  first, once each; ``append`` never signs. Without one, events are sent unsigned as before.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlite_utils

from agent import outbox_chain
from agent.envelope import CLOCK_FLOOR_UNIX, ClockState, make_event, system_clock_state
from agent.keys import DeviceKeyError, Keyring, fingerprint
from contract import EventType, FaultData, event_data
from contract.sqlite_tx import rollback

logger = logging.getLogger(__name__)

APPLICATION_ID = 0x48414C4C  # "HALL": marks the file as ours (PRAGMA application_id)
SCHEMA_VERSION = 2
DEDUPE_TTL_S = 24 * 3600  # dedupe keys older than this cannot be resent any more (pads: 5 s)
# The size cap counts the bytes of the pending events' JSON plus this much per row for the
# row header and the index entries (id, type+seq); see docs/outbox.md for the measurement.
ROW_OVERHEAD = 190
RECOUNT_EVERY = 1000  # appends between exact recounts of the pending bytes
# After signing failed, events wait unsigned this long before the next try; they are never
# sent unsigned while a signer is set. A key file needs a technician: every 30 s is plenty. A
# write the outbox could not make (a full disk, a lock held too long) may work a moment later,
# and must not hold up the events that long once it does.
SIGN_RETRY_S = 30.0
SIGN_RETRY_WRITE_S = 1.0


def free_bytes(directory: str | os.PathLike[str]) -> int:
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


# Below this much free space an error from SQLite is reported as "disk full": SQLite says
# "database or disk is full" on a write, but "disk I/O error" when it cannot even create the
# WAL index (-shm) on open.
DISK_FULL_BYTES = 1024 * 1024


# What the cap may drop: device.* events, but never the disk fault that says events were
# dropped, nor a device.key announcement (the chain's keys depend on it), nor an event already
# signed (sent, not yet acked): a drop is then always a seq gap *before* signing, which leaves
# the chain intact. The types are parameters from EventType, not literals in the SQL text.
_DROPPABLE = (
    "type LIKE 'device.%' AND type <> ? AND NOT (type = ? AND body LIKE ?) "
    "AND seq > (SELECT head_seq FROM chain)"
)
_DROPPABLE_ARGS = (EventType.KEY.value, EventType.FAULT.value, '%"component":"disk"%')


def _disk(event: EventType, detail: str) -> dict[str, Any]:
    """A device.fault / device.recovered body about the outbox's own disk."""
    return event_data(event, FaultData(component="disk", detail=detail))


class OutboxError(Exception):
    """The outbox cannot take the event; nothing was recorded."""


class OutboxFullError(OutboxError):
    """Free disk space is below the floor; the event was not recorded."""


@dataclass(frozen=True)
class Appended:
    event: dict[str, Any]
    duplicate: bool  # True: the dedupe key was already stored; `event` is the original


@dataclass(frozen=True)
class PendingEvent:
    seq: int
    id: str
    type: str
    body: str  # the event as JSON text, ready to be put into a batch


@dataclass(frozen=True)
class OutboxStats:
    pending: int
    dead_letter: int
    oldest_s: float | None
    bytes: int  # pending events, as counted against the cap (sync.max_outbox_mb)
    cap_bytes: int
    last_seq: int
    file_bytes: int = 0  # the database file's used pages
    unsigned: int = 0  # pending events not signed yet (all of them when no signer is set)

    def as_dict(self) -> dict[str, Any]:
        return {
            "pending": self.pending,
            "dead_letter": self.dead_letter,
            "oldest_s": None if self.oldest_s is None else round(self.oldest_s, 1),
            "bytes": self.bytes,
            "cap_bytes": self.cap_bytes,
            "last_seq": self.last_seq,
            "file_bytes": self.file_bytes,
            "unsigned": self.unsigned,
        }


def _migrate_v1(db: sqlite_utils.Database) -> None:
    db["meta"].create({"key": str, "value": int}, pk="key")
    db["meta"].insert_all(
        [{"key": "last_seq", "value": 0}, {"key": "disk_fault", "value": 0}], pk="key"
    )
    db["outbox"].create(
        {"seq": int, "id": str, "type": str, "created": float, "size": int, "body": str},
        pk="seq",
        not_null={"id", "type", "created", "size", "body"},
    )
    db["outbox"].create_index(["id"], unique=True)
    db["outbox"].create_index(["type", "seq"])
    db["dead_letter"].create(
        {
            "seq": int,
            "id": str,
            "type": str,
            "reason": str,
            "body": str,
            "created": float,
            "failed_at": float,
        },
        pk="seq",
    )
    db["dead_letter"].create_index(["id"], unique=True)
    db["dedupe"].create({"key": str, "event_id": str, "created": float}, pk="key")


def _migrate_v2(db: sqlite_utils.Database) -> None:
    outbox_chain.create_chain(db.conn, Outbox._last_seq(db.conn))


# Migrations run in order; index i brings the schema from version i to i + 1. Append only.
MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_migrate_v1, _migrate_v2]


def _dumps(obj: Any) -> str:
    try:
        # allow_nan=False: NaN and Infinity are not JSON (RFC 8259) and every store refuses them.
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"event {obj.get('type')!r}: data is not valid JSON ({exc}); "
            "expected strings, finite numbers, booleans, null, lists and objects"
        ) from None


class Outbox:
    """The device's durable event buffer. Thread-safe; one connection, one lock."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        device: str,
        site: str,
        timezone: str = "Asia/Shanghai",
        max_bytes: int = 256 * 1024 * 1024,
        min_free_bytes: int = 64 * 1024 * 1024,
        clock: Callable[[], ClockState] = system_clock_state,
        busy_timeout_s: float = 30.0,
    ):
        self.path = Path(path)
        self.device = device
        self.site = site
        self.tz = ZoneInfo(timezone)
        self.max_bytes = max_bytes
        self.min_free_bytes = min_free_bytes
        self.clock = clock
        self.busy_timeout_s = busy_timeout_s
        self._lock = threading.RLock()
        self._listeners: list[Callable[[], None]] = []
        self.signer: Keyring | None = None
        self.signing_error: str | None = None  # why events wait unsigned, for status
        self._sign_retry_at = 0.0
        self.moved_aside: Path | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._dir = str(self.path.parent)
        self._conn = self._open()
        self.db = sqlite_utils.Database(self._conn)
        self._bytes = self._count_bytes(self._conn)
        self._since_exact = 0
        # Keys older than a day can no longer be resent by any pad (it gives up after 10 tries
        # at 500 ms, docs/pads.md); dropping them at start keeps the table small.
        try:
            self.prune_dedupe()
        except sqlite3.Error as exc:  # housekeeping: a full disk must not keep the outbox shut
            logger.warning("outbox %s: old dedupe keys not pruned: %s", self.path, exc)
        if self.moved_aside is not None:
            detail = f"outbox {self.path} was unreadable; moved to {self.moved_aside}"
            self.append(EventType.FAULT, _disk(EventType.FAULT, detail))

    @classmethod
    def for_config(cls, cfg: Any, **kwargs: Any) -> Outbox:
        """Open the outbox of an :class:`agent.config.AgentConfig`."""
        return cls(
            Path(cfg.device.data_dir) / "outbox.db",
            device=cfg.device.id,
            site=cfg.device.site,
            timezone=cfg.device.timezone,
            max_bytes=cfg.sync.max_outbox_mb * 1024 * 1024,
            min_free_bytes=cfg.sync.min_free_mb * 1024 * 1024,
            **kwargs,
        )

    # --- opening, validation, migrations ----------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
        return conn

    def _problem(self, conn: sqlite3.Connection) -> str | None:
        """Why this file is not a usable outbox, or None."""
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if app_id == 0 and not tables:
            return None  # new, empty file
        if app_id != APPLICATION_ID:
            return f"foreign SQLite database (application_id {app_id:#x}, tables {sorted(tables)})"
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            # A downgrade: the file is fine and its events must not be stranded. Refuse to run.
            raise OutboxError(
                f"outbox {self.path} was written by a newer hall-agent (schema {version}, this "
                f"one knows {SCHEMA_VERSION}); install that version again, or move the file "
                "away after its events have been delivered"
            )
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            return f"integrity check failed: {check}"
        return None

    def _open(self) -> sqlite3.Connection:
        problem: str | None
        conn: sqlite3.Connection | None = None
        try:
            conn = self._connect()
            problem = self._problem(conn)
        except sqlite3.DatabaseError as exc:
            if conn is not None:
                conn.close()
            conn = None
            code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
            self._raise_if_disk_full(exc, code)
            if code not in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
                # Locked, busy, I/O error, no permission: the file may be perfectly good and
                # hold pending events. Never move it aside for that; fail, and let systemd retry.
                raise OutboxError(f"outbox {self.path}: cannot open: {exc}") from exc
            problem = f"not a readable SQLite database ({exc})"
        except OutboxError:
            if conn is not None:
                conn.close()
            raise
        if problem is not None:
            if conn is not None:
                conn.close()
            self.moved_aside = self._move_aside(problem)
            conn = self._connect()
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        self._migrate(conn)
        if self.moved_aside is not None:
            # seq must never repeat (docs/topics.md) but the old counter is gone with the file:
            # restart it above any value the device can have used (one event per ms since 1970).
            floor = max(time.time_ns() // 1_000_000, CLOCK_FLOOR_UNIX * 1000)
            conn.execute("UPDATE meta SET value = max(value, ?) WHERE key = 'last_seq'", (floor,))
        return conn

    def _raise_if_disk_full(self, exc: BaseException, code: int) -> None:
        free = free_bytes(self._dir)
        if code == sqlite3.SQLITE_FULL or free < DISK_FULL_BYTES:
            raise OutboxFullError(
                f"outbox {self.path}: disk full ({free // 1024} KiB free on {self._dir}); "
                f"SQLite said: {exc}. The events in the file are kept; free some space "
                "(journalctl --vacuum-size, old files) and try again"
            ) from exc

    def _move_aside(self, problem: str) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
            n += 1
        os.replace(self.path, target)
        for suffix in ("-wal", "-shm"):
            side = Path(str(self.path) + suffix)
            if side.exists():
                os.replace(side, Path(str(target) + suffix))
        logger.error(
            "outbox %s: %s; moved aside to %s, starting a new one", self.path, problem, target
        )
        return target

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        if version == len(MIGRATIONS) and app_id == APPLICATION_ID:
            return  # nothing to write: opening works on a full or read-only disk too
        db = sqlite_utils.Database(conn)
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for step in range(version, len(MIGRATIONS)):
                MIGRATIONS[step](db)
                conn.execute(f"PRAGMA user_version = {step + 1}")
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute("COMMIT")
        except BaseException:
            rollback(conn)
            raise

    # --- writing --------------------------------------------------------------------------

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (no arguments, must not block) after each committed append."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[], None]) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(callback)

    def _notify(self) -> None:
        for callback in self._listeners:
            try:
                callback()
            except Exception:  # a listener must never undo a committed append
                logger.exception("outbox listener failed")

    def _check_free_space(self) -> None:
        if self.min_free_bytes <= 0:
            return
        free = free_bytes(self._dir)
        if free < self.min_free_bytes:
            raise OutboxFullError(
                f"outbox {self.path}: only {free // (1024 * 1024)} MiB free on the disk "
                f"(floor {self.min_free_bytes // (1024 * 1024)} MiB, sync.min_free_mb); "
                "event not recorded"
            )

    def append(
        self,
        event_type: str,
        data: dict[str, Any],
        *,
        at: datetime | None = None,
        dedupe_key: str | None = None,
    ) -> Appended:
        """Record one event durably; returns after the commit is on disk."""
        return self.append_many([(event_type, data, at, dedupe_key)])[0]

    def append_many(
        self, items: Sequence[tuple[str, dict[str, Any], datetime | None, str | None]]
    ) -> list[Appended]:
        """Record several events in one transaction (one fsync)."""
        if not items:
            return []
        self._check_free_space()
        clock = self.clock()
        now = time.time()
        results: list[Appended] = []
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                added = 0
                seq = self._last_seq(conn)
                for event_type, data, at, dedupe_key in items:
                    if dedupe_key is not None:
                        row = conn.execute(
                            "SELECT event_id FROM dedupe WHERE key = ?", (dedupe_key,)
                        ).fetchone()
                        if row is not None:
                            results.append(Appended(self._find(row[0], dedupe_key), True))
                            continue
                    seq += 1
                    event = make_event(
                        event_type=event_type,
                        data=data,
                        seq=seq,
                        device=self.device,
                        site=self.site,
                        tz=self.tz,
                        clock=clock,
                        at=at,
                    )
                    body = _dumps(event)
                    conn.execute(
                        "INSERT INTO outbox (seq, id, type, created, size, body) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (seq, event["id"], event_type, now, len(body), body),
                    )
                    added += len(body) + ROW_OVERHEAD
                    if dedupe_key is not None:
                        conn.execute(
                            "INSERT INTO dedupe (key, event_id, created) VALUES (?, ?, ?)",
                            (dedupe_key, event["id"], now),
                        )
                    results.append(Appended(event, False))
                pending_bytes = self._enforce_cap(conn, now, seq, self._bytes + added)
                conn.execute("COMMIT")
            except BaseException:
                rollback(conn)
                raise
            self._bytes = pending_bytes
        self._notify()
        return results

    @staticmethod
    def _last_seq(conn: sqlite3.Connection) -> int:
        """The highest seq ever allocated.

        The newest row of ``outbox`` holds it while any event is pending; ``meta.last_seq`` is
        brought up to date in every transaction that deletes rows (:meth:`_save_last_seq`), so
        an append writes only its own row: one page less to fsync per event.
        """
        row = conn.execute(
            "SELECT max(coalesce((SELECT max(seq) FROM outbox), 0), "
            "(SELECT value FROM meta WHERE key = 'last_seq'))"
        ).fetchone()
        return int(row[0])

    @staticmethod
    def _save_last_seq(conn: sqlite3.Connection) -> None:
        conn.execute(
            "UPDATE meta SET value = max(value, coalesce((SELECT max(seq) FROM outbox), 0)) "
            "WHERE key = 'last_seq'"
        )

    def _find(self, event_id: str, dedupe_key: str) -> dict[str, Any]:
        for table in ("outbox", "dead_letter"):
            row = self._conn.execute(
                f"SELECT body FROM {table} WHERE id = ?", (event_id,)
            ).fetchone()
            if row is not None:
                return json.loads(row[0])
        # Already acked by the centre and deleted: the id is all that is left, and enough.
        return {"id": event_id, "dedupe_key": dedupe_key}

    @staticmethod
    def _file_bytes(conn: sqlite3.Connection) -> int:
        pages, free, size = conn.execute(
            "SELECT (SELECT page_count FROM pragma_page_count()), "
            "(SELECT freelist_count FROM pragma_freelist_count()), "
            "(SELECT page_size FROM pragma_page_size())"
        ).fetchone()
        return (pages - free) * size

    @staticmethod
    def _count_bytes(conn: sqlite3.Connection, where: str = "", args: Sequence[Any] = ()) -> int:
        row = conn.execute(
            f"SELECT coalesce(sum(size), 0) + count(*) * {ROW_OVERHEAD} FROM outbox {where}", args
        ).fetchone()
        return int(row[0])

    def _enforce_cap(self, conn: sqlite3.Connection, now: float, seq: int, used: int) -> int:
        """Drop the oldest device.* events while over the cap; record the fault once.

        ``used`` is this process's running count of the pending bytes; it is recounted exactly
        every RECOUNT_EVERY appends (another process, e.g. ``ping``, may have written too) and
        soon after the cap is crossed. Counting rows, not pages: deleting scattered rows frees
        few whole pages, so a page count would barely move after a drop. Returns the new count.
        """
        self._since_exact += 1
        if self._since_exact >= RECOUNT_EVERY or (
            used > self.max_bytes and self._since_exact >= 100
        ):
            used = self._count_bytes(conn)
            self._since_exact = 0
        faulted = conn.execute("SELECT value FROM meta WHERE key = 'disk_fault'").fetchone()[0]
        if used <= self.max_bytes:
            # Hysteresis: drops bring usage to 80 % of the cap; recovery is declared only once
            # acks have brought it to 70 %, so the fault does not flap while the link is down.
            if faulted and used <= self.max_bytes * 0.7:
                conn.execute("UPDATE meta SET value = 0 WHERE key = 'disk_fault'")
                used += self._insert_internal(
                    conn,
                    now,
                    seq + 1,
                    EventType.RECOVERED,
                    _disk(EventType.RECOVERED, "outbox back under its size cap"),
                )
            return used
        # Free a fifth of the cap at once so that a full outbox does not drop one row per append.
        excess = used - self.max_bytes * 0.8
        rows = conn.execute(
            f"SELECT seq, size FROM outbox WHERE {_DROPPABLE} ORDER BY seq", _DROPPABLE_ARGS
        ).fetchall()
        dropped, freed, last = 0, 0, None
        for row_seq, size in rows:
            if freed >= excess:
                break
            freed += size + ROW_OVERHEAD
            dropped += 1
            last = row_seq
        if last is not None:
            self._save_last_seq(conn)
            conn.execute(
                f"DELETE FROM outbox WHERE seq <= ? AND {_DROPPABLE}", (last, *_DROPPABLE_ARGS)
            )
            used -= freed
        if not faulted:
            conn.execute("UPDATE meta SET value = 1 WHERE key = 'disk_fault'")
            pending = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
            detail = (
                f"outbox cap {self.max_bytes / 2**20:g} MiB reached with {pending} "
                f"events pending; dropped {dropped} oldest device.* events; attendance, rating "
                "and window events are kept"
            )
            logger.error("outbox %s: %s", self.path, detail)
            used += self._insert_internal(
                conn, now, seq + 1, EventType.FAULT, _disk(EventType.FAULT, detail)
            )
        elif dropped:
            logger.warning("outbox %s over its cap: dropped %d device.* events", self.path, dropped)
        return used

    def _insert_internal(
        self, conn: sqlite3.Connection, now: float, seq: int, event_type: str, data: dict[str, Any]
    ) -> int:
        """Insert an event the outbox raises itself, as ``seq``; returns its counted size."""
        event = make_event(
            event_type=event_type,
            data=data,
            seq=seq,
            device=self.device,
            site=self.site,
            tz=self.tz,
            clock=self.clock(),
        )
        body = _dumps(event)
        conn.execute(
            "INSERT INTO outbox (seq, id, type, created, size, body) VALUES (?, ?, ?, ?, ?, ?)",
            (seq, event["id"], event_type, now, len(body), body),
        )
        return len(body) + ROW_OVERHEAD

    # --- reading and settling ---------------------------------------------------------------

    def pending(self, limit: int, after_seq: int = 0) -> list[PendingEvent]:
        """Up to ``limit`` unacked events with ``seq > after_seq``, in seq order.

        With a signer set, the unsigned ones among them are signed first (one transaction);
        if that fails, only the events signed before are returned and signing is tried again
        after SIGN_RETRY_S: an unsigned event is never handed out while a signer is set.
        """
        with self._lock:
            rows = self._select_pending(after_seq, limit)
            if self.signer is not None and rows and self._signed(rows):
                # Read again after signing, within the chain's head: another process sharing
                # the file (ping, keygen --rotate) may have dropped or signed rows since the
                # first read, and only what the file now holds, signed, is handed out.
                rows = self._select_pending(after_seq, limit, signed_only=True)
        return [PendingEvent(*row) for row in rows]

    def _select_pending(
        self, after_seq: int, limit: int, signed_only: bool = False
    ) -> list[tuple[int, str, str, str]]:
        within = " AND seq <= (SELECT head_seq FROM chain)" if signed_only else ""
        return self._conn.execute(
            f"SELECT seq, id, type, body FROM outbox WHERE seq > ?{within} ORDER BY seq LIMIT ?",
            (after_seq, limit),
        ).fetchall()

    # --- signing (agent/outbox_chain.py) ----------------------------------------------------

    def set_signer(self, signer: Keyring | None) -> None:
        """Sign events into the device's chain as :meth:`pending` hands them out (None: stop)."""
        with self._lock:
            self.signer = signer
            self.signing_error = None
            self._sign_retry_at = 0.0

    def _signed(self, rows: list[tuple[int, str, str, str]]) -> bool:
        """Sign every unsigned event up to the last of ``rows``. True: the caller reads the
        rows again, within the chain's head (after a failure, that is what was signed
        before); False: every row was signed already."""
        assert self.signer is not None
        head_seq = self._conn.execute("SELECT head_seq FROM chain").fetchone()[0]
        if rows[-1][0] <= head_seq:
            return False  # all signed before: the usual case for a resend
        if time.monotonic() >= self._sign_retry_at:
            try:
                self._sign_through(self.signer, rows[-1][0])
            except (DeviceKeyError, OSError, sqlite3.Error) as exc:
                wait = SIGN_RETRY_S if isinstance(exc, DeviceKeyError) else SIGN_RETRY_WRITE_S
                self._sign_retry_at = time.monotonic() + wait
                if self.signing_error != str(exc):
                    logger.error(
                        "outbox %s: events wait unsigned, signing failed: %s; trying again "
                        "every %.0f s",
                        self.path,
                        exc,
                        wait,
                    )
                self.signing_error = str(exc)
            else:
                if self.signing_error is not None:
                    logger.info("outbox %s: signing works again", self.path)
                self.signing_error = None
        return True

    def _sign_through(self, signer: Keyring, upto: int) -> outbox_chain.Signed:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            signed = outbox_chain.sign_through(conn, signer, upto)
            conn.execute("COMMIT")
        except BaseException:
            rollback(conn)
            raise
        self._bytes += signed.grown
        if signed.announced:
            # Committed: the announced key is in effect. When it is device.key.next's, the
            # rotation ends here (rename, device.pub); the old private key is forgotten. A
            # failure is retried at the next start; the new key signs meanwhile from memory.
            try:
                signer.settle(signed.head.key)
            except (DeviceKeyError, OSError) as exc:
                logger.error("device key rotation not finished: %s; retried at the next start", exc)
        return signed

    def chain_key(self) -> str | None:
        """The public key in effect in the chain (None before the first announcement)."""
        with self._lock:
            return outbox_chain.read_head(self._conn).key

    def start_chain_at(self, seq: int) -> bool:
        """See :func:`agent.outbox_chain.start_at`."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                started = outbox_chain.start_at(conn, seq)
                conn.execute("COMMIT")
            except BaseException:
                rollback(conn)
                raise
            return started

    def announced_key(self) -> str | None:
        """The key in effect once everything pending is signed (agent/outbox_chain.py)."""
        with self._lock:
            return outbox_chain.announced_key(self._conn)

    def signing_health(self) -> dict[str, Any]:
        """The signer's component state for the status message (docs/topics.md "Status")."""
        signer = self.signer
        if signer is None:
            return {"state": "ok", "detail": "no signer: events are sent unsigned"}
        out: dict[str, Any] = {"state": "ok"}
        if signer.current_public is not None:
            out["key"] = fingerprint(signer.current_public)
        if self.signing_error is not None:
            out["state"] = "fault"
            out["detail"] = f"events wait unsigned: {self.signing_error}"
        return out

    def contains(self, event_id: str) -> bool:
        with self._lock:
            row = self._conn.execute("SELECT 1 FROM outbox WHERE id = ?", (event_id,)).fetchone()
        return row is not None

    def ack(self, ids: Iterable[str]) -> int:
        """Delete events the centre has stored; unknown ids are ignored. Returns rows removed."""
        ids = list(ids)
        removed = freed = 0
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._save_last_seq(conn)
                for i in range(0, len(ids), 500):
                    chunk = ids[i : i + 500]
                    marks = ",".join("?" * len(chunk))
                    freed += self._count_bytes(conn, f"WHERE id IN ({marks})", chunk)
                    cur = conn.execute(f"DELETE FROM outbox WHERE id IN ({marks})", chunk)
                    removed += cur.rowcount
                conn.execute("COMMIT")
            except BaseException:
                rollback(conn)
                raise
            self._bytes = max(0, self._bytes - freed)
        return removed

    def reject(self, event_id: str, reason: str) -> bool:
        """Move an event the centre refused to the dead-letter table (never retried)."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(
                    "SELECT seq, id, type, body, created FROM outbox WHERE id = ?", (event_id,)
                ).fetchone()
                if row is not None:
                    self._save_last_seq(conn)
                    conn.execute(
                        "INSERT OR REPLACE INTO dead_letter "
                        "(seq, id, type, reason, body, created, failed_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (*row[:3], reason, row[3], row[4], time.time()),
                    )
                    conn.execute("DELETE FROM outbox WHERE id = ?", (event_id,))
                conn.execute("COMMIT")
            except BaseException:
                rollback(conn)
                raise
            if row is not None:
                self._bytes = max(0, self._bytes - len(row[3]) - ROW_OVERHEAD)
        if row is None:
            logger.warning("reject for unknown event %s (%s) ignored", event_id, reason)
        return row is not None

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, id, type, reason, failed_at FROM dead_letter ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            {"seq": s, "id": i, "type": t, "reason": r, "failed_at": f} for s, i, t, r, f in rows
        ]

    def forget_dedupe(self, prefix: str) -> int:
        """Forget dedupe keys starting with ``prefix`` (a pad's HELLO resets its seq window)."""
        with self._lock:
            conn = self._conn
            cur = conn.execute(
                "DELETE FROM dedupe WHERE key >= ? AND key < ?", (prefix, prefix + "\U0010ffff")
            )
        return cur.rowcount

    def prune_dedupe(self, max_age_s: float = DEDUPE_TTL_S) -> int:
        with self._lock:
            cur = self._conn.execute(
                "DELETE FROM dedupe WHERE created < ?", (time.time() - max_age_s,)
            )
        return cur.rowcount

    def dedupe_age(self, key: str) -> float | None:
        """Seconds since ``key`` was stored (wall clock), None if it is not stored."""
        with self._lock:
            row = self._conn.execute("SELECT created FROM dedupe WHERE key = ?", (key,)).fetchone()
        return None if row is None else time.time() - row[0]

    def pending_count(self) -> int:
        """Events waiting for the centre's ack; cheaper than :meth:`stats` (no byte recount)."""
        with self._lock:
            return self._conn.execute("SELECT count(*) FROM outbox").fetchone()[0]

    def stats(self) -> OutboxStats:
        with self._lock:
            conn = self._conn
            pending, oldest = conn.execute("SELECT count(*), min(created) FROM outbox").fetchone()
            unsigned = conn.execute(
                "SELECT count(*) FROM outbox WHERE seq > (SELECT head_seq FROM chain)"
            ).fetchone()[0]
            dead = conn.execute("SELECT count(*) FROM dead_letter").fetchone()[0]
            used = self._bytes = self._count_bytes(conn)
            self._since_exact = 0
            file_bytes = self._file_bytes(conn)
            last_seq = self._last_seq(conn)
        return OutboxStats(
            pending=pending,
            dead_letter=dead,
            oldest_s=None if oldest is None else max(0.0, time.time() - oldest),
            bytes=used,
            cap_bytes=self.max_bytes,
            last_seq=last_seq,
            file_bytes=file_bytes,
            unsigned=unsigned,
        )

    def close(self) -> None:
        with self._lock:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self._conn.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
