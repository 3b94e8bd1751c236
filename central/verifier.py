"""The ingest chain verifier: checks each device's signed chain after its events are stored
(docs/tamper-centre.md "The verifier").

Never on the ack path. The collector stores and acks a batch as it always did, then only
notes "device X has new events from seq N" (:meth:`ChainVerifier.note`, a dict update). This
thread reads that device's events above its head (table ``chain_heads``) from the store in seq
order, walks them with central/chainrules.py (the rules ``verify --month`` uses too), and
writes the findings, key changes and the new head in one transaction. So a restart carries on
from the heads, and nothing is walked twice or skipped.

- **Yields to ingest**: before each page of events, while the collector is busy (a group
  written in the last ``IDLE_AFTER_S``, or messages queued), the verifier waits for it to be
  idle, at most ``BUSY_WAIT_S``: under a long flood it still walks one page per
  ``BUSY_WAIT_S`` (a page of signed events costs ~40 ms, about 2 %), signatures on its own
  thread; when the collector is idle it catches up at full speed, signatures on
  ``CATCH_UP_THREADS`` threads (cryptography's verify releases the GIL).
- **Gaps**: a batch lost and resent arrives after later ones, so the walk stops before a seq
  gap until the event after it is ``gap_grace_s`` old (central.toml ``[chains]``); the gap is
  then recorded, and resolved if the missing events arrive later (their stretch is walked
  again).
- **Below the head**: an event whose seq the head has passed is either a second event of a
  seq (a fork) or a late one filling a recorded gap, or one from before the first walked.
- **No key**: a signed event of a device with no key registered or announced is recorded once
  and the walk waits there; it goes on once an administrator registers the key.
- **Never crashes the collector**: any failure (the store down, a bug) is logged and the
  device retried after ``RETRY_S``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from central.chainrules import (
    ChainState,
    KeyBook,
    Signatures,
    needs_key,
    no_key_finding,
    seed_digest,
    step,
)
from central.store import Store, utcnow
from central.store.chains import HeadMark, HeadMoved, head_mark
from central.store.records import ChainFinding, ChainHead, NewFinding, StoredEvent

logger = logging.getLogger(__name__)

LOGGED_PER_PAGE = 5  # findings logged one by one per committed page; the rest counted
PAGE = 500  # events walked and committed at a time
IDLE_AFTER_S = 0.5  # the collector is idle when it wrote no group for this long
BUSY_WAIT_S = 2.0  # the longest a page waits for an idle collector
BUSY_POLL_S = 0.05
CATCH_UP_THREADS = 2
RETRY_S = 5.0  # after a failure, before the device is tried again
KEY_RECHECK_S = 60.0  # a device waiting for its key is looked at again this often
LOG_EVERY_S = 60.0

Device = tuple[str, str]


@dataclass
class _Hold:
    """A device whose walk waits (for a gap's grace, a key, or after a failure) until
    ``until``; then it is walked again from ``low`` (None: from its head)."""

    until: float  # time.monotonic()
    seq: int | None  # the head's seq when it stopped (None: unknown, after a failure)
    low: int | None = None


class ChainVerifier:
    """The background verifier; ``store_factory`` opens the store it reads and writes (its own
    connection, so the collector's writes never wait on its reads)."""

    def __init__(
        self,
        store_factory: Callable[[], Store],
        gap_grace_s: float,
        busy: Callable[[], bool] = lambda: False,
        close_store: bool = True,
    ):
        self._store_factory = store_factory
        self._store: Store | None = None
        self._close_store = close_store
        self.grace = timedelta(seconds=gap_grace_s)
        self.busy = busy
        self._notes: dict[Device, int | None] = {}
        self._notes_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._holds: dict[Device, _Hold] = {}
        self._no_key_told: set[Device] = set()  # devices whose wait for a key was logged
        self._thread: threading.Thread | None = None
        self.walked = 0  # events walked
        self.findings = 0  # findings written (a repeat of a recorded one included)
        self.errors = 0
        self._error_logged = -LOG_EVERY_S

    # --- the collector's side -------------------------------------------------------------

    def note(self, site: str, device: str, low_seq: int | None) -> None:
        """Device (site, device) has new events, the lowest of seq ``low_seq``. Cheap: called
        by the collector after each commit."""
        key = (site, device)
        with self._notes_lock:
            if key in self._notes:
                old = self._notes[key]
                low_seq = None if old is None or low_seq is None else min(old, low_seq)
            self._notes[key] = low_seq
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="chain-verifier", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._store is not None and self._close_store:
            try:
                self._store.close()
            except Exception:  # closing a broken connection must not fail the stop
                logger.debug("verifier: store close failed", exc_info=True)
        self._store = None

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # --- the thread -----------------------------------------------------------------------

    def _run(self) -> None:
        caught_up = False
        while not self._stop.is_set():
            try:
                if not caught_up:
                    # Restart-safe: every device with events is looked at from its head.
                    for site, device in self._open().chain_devices():
                        self.note(site, device, None)
                    caught_up = True
                self.run_once(yielding=True)
            except Exception:
                self._failed("verifier: catching up failed")
                self._stop.wait(RETRY_S)
                continue
            self._wake.wait(self._next_timeout())
            self._wake.clear()

    def _next_timeout(self) -> float:
        if not self._holds:
            return KEY_RECHECK_S
        soonest = min(h.until for h in self._holds.values())
        return max(0.05, min(KEY_RECHECK_S, soonest - time.monotonic()))

    def _open(self) -> Store:
        if self._store is None:
            self._store = self._store_factory()
        return self._store

    def _failed(self, what: str) -> None:
        self.errors += 1
        now = time.monotonic()
        if now - self._error_logged >= LOG_EVERY_S:
            self._error_logged = now
            logger.exception(
                "%s; retrying in %.0f s (%d failures so far)", what, RETRY_S, self.errors
            )

    def _take(self) -> dict[Device, int | None]:
        with self._notes_lock:
            notes, self._notes = self._notes, {}
        now = time.monotonic()
        for key, hold in list(self._holds.items()):
            if hold.until <= now:
                del self._holds[key]
                notes[key] = _lowest(notes.get(key, hold.low), hold.low)
            elif key in notes:
                low = notes[key]
                if low is None or hold.seq is None or low > hold.seq:
                    # Nothing below where the walk stopped: it would stop there again.
                    hold.low = _lowest(hold.low, low) if hold.low is not None else low
                    del notes[key]
        return notes

    def run_once(self, yielding: bool = False) -> int:
        """Walk every noted device as far as it goes; returns the events walked. Tests call
        it directly (no thread)."""
        walked = 0
        for (site, device), low in sorted(self._take().items()):
            if self._stop.is_set():
                break
            try:
                walked += self.verify_device(site, device, low, yielding)
            except HeadMoved as moved:
                # devices trust took the head back meanwhile: walk again from where it is now.
                logger.info("verifier: %s; walking the device again", moved)
                self.note(site, device, low)
            except Exception:
                self._failed(f"verifier: {site}/{device} failed")
                self._holds[(site, device)] = _Hold(time.monotonic() + RETRY_S, None, low)
        self.walked += walked
        return walked

    def _yield(self, yielding: bool) -> None:
        """Before a page: wait while the collector is busy, at most BUSY_WAIT_S."""
        if not yielding:
            return
        deadline = time.monotonic() + BUSY_WAIT_S
        while self.busy() and time.monotonic() < deadline:
            if self._stop.wait(BUSY_POLL_S):
                return

    # --- one device -------------------------------------------------------------------------

    def verify_device(
        self, site: str, device: str, low: int | None = None, yielding: bool = False
    ) -> int:
        """Walk one device's new events (and ``low`` and up below its head); returns how many."""
        store = self._open()
        head = store.chain_head(site, device)
        mark = head_mark(head)
        state = _state(head)
        book = KeyBook(store.device_keys(site, device))
        found: list[NewFinding] = []
        resolved: list[int] = []
        late = 0
        if low is not None and state.seq is not None and low <= state.seq:
            late = self._below_head(store, site, device, low, state, book, found, resolved)
        walked = late
        while not self._stop.is_set():
            self._yield(yielding)
            page = store.chain_events(site, device, -1 if state.seq is None else state.seq, PAGE)
            full = len(page) == PAGE
            if full and page[0].seq != page[-1].seq:
                # Two events of one seq (a fork) never straddle pages: the last seq waits.
                page = [e for e in page if e.seq != page[-1].seq]
            done, stopped = self._walk(page, state, book, found)
            walked += done
            if done or found or resolved or book.writes:
                self._commit(store, site, device, state, found, resolved, book, mark)
                mark = HeadMark((state.seq, state.event_id))
                found, resolved = [], []
                book.writes = []
            if stopped or not full or not done:
                break
        return walked

    def _walk(
        self, page: list[StoredEvent], state: ChainState, book: KeyBook, found: list[NewFinding]
    ) -> tuple[int, bool]:
        """Step through ``page``; (events walked, whether the walk must wait)."""
        now = utcnow()
        walked = 0
        sent = [e.as_sent() for e in page]
        with Signatures(0 if self.busy() else CATCH_UP_THREADS) as check:
            check.prefetch(
                (key, s)
                for s in sent
                if s.get("sig") is not None and (key := book.for_seq(s["seq"])) is not None
            )
            for e, s in zip(page, sent, strict=True):
                if state.seq is not None and e.seq > state.seq + 1:
                    wait = e.received_at + self.grace - now
                    if wait > timedelta(0):
                        self._hold(e.site, e.device, wait.total_seconds(), state.seq)
                        return walked, True
                if needs_key(s, book):
                    where = (e.site, e.device)
                    if where not in self._no_key_told:
                        # Recorded (and logged) once per device and process: the walk looks
                        # again every KEY_RECHECK_S and the finding is in the table already.
                        found.append(no_key_finding(s))
                        self._no_key_told.add(where)
                    self._hold(e.site, e.device, KEY_RECHECK_S, state.seq)
                    return walked, True
                self._no_key_told.discard((e.site, e.device))
                found += step(state, s, book, check)
                walked += 1
        return walked, False

    def _hold(self, site: str, device: str, seconds: float, seq: int | None) -> None:
        self._holds[(site, device)] = _Hold(time.monotonic() + seconds, seq, seq)

    def _below_head(
        self,
        store: Store,
        site: str,
        device: str,
        low: int,
        state: ChainState,
        book: KeyBook,
        found: list[NewFinding],
        resolved: list[int],
    ) -> int:
        """Events at or below the head: forks, and late ones filling a gap or coming before the
        first walked; returns how many late ones were walked."""
        assert state.seq is not None
        rows = store.chain_events(site, device, low - 1, 10 * PAGE, upto=state.seq)
        by_seq: dict[int, list[StoredEvent]] = {}
        for e in rows:
            by_seq.setdefault(e.seq, []).append(e)
        gaps = store.chain_findings(site, device, open_only=True, kinds=("seq_gap",))
        first = state.first_seq if state.first_seq is not None else state.seq
        late_stretches: list[tuple[int, int, ChainFinding | None]] = []
        for g in gaps:
            end = g.seq_end if g.seq_end is not None else g.seq
            if any(g.seq <= s <= end for s in by_seq):
                late_stretches.append((g.seq, end, g))
        early = [s for s in by_seq if s < first]
        if early:
            late_stretches.append((min(early), first - 1, None))
        walked = 0
        for lo, hi, gap in late_stretches:
            walked += self._rewalk(store, site, device, lo, hi, state, book, found)
            if gap is not None:
                resolved.append(gap.id)
        if early:
            state.first_seq = min(early)
        # A second event of a seq the chain holds: the walk reports it where it meets it.
        for seq, events in by_seq.items():
            if len(events) > 1 and not any(lo <= seq <= hi for lo, hi, _ in late_stretches):
                chain_copy = events[0]
                for other in events[1:]:
                    found.append(
                        NewFinding(
                            "fork",
                            seq,
                            other.id,
                            f"seq {seq} again: event {chain_copy.id} (seq {seq}) came first; "
                            "two events of one seq mean two histories of the device",
                        )
                    )
        return walked

    def _rewalk(
        self,
        store: Store,
        site: str,
        device: str,
        lo: int,
        hi: int,
        state: ChainState,
        book: KeyBook,
        found: list[NewFinding],
    ) -> int:
        """Walk seq ``lo``..``hi`` (late arrivals) again with the event before and after them:
        what is still missing is a gap again, and the links on both sides are checked."""
        before = store.chain_event_before(site, device, lo)
        part = ChainState()
        walked = 0
        with Signatures(0) as check:
            if before is not None:
                sent = before.as_sent()
                part.seq, part.event_id = before.seq, before.id
                part.digest = seed_digest(sent, book.for_seq(before.seq), check)
            after = lo - 1
            while True:
                # Page by page up to the event after the stretch, however long it is.
                window = store.chain_events(site, device, after, PAGE, upto=hi + 1)
                if not window:
                    break
                if len(window) == PAGE and window[0].seq != window[-1].seq:
                    # Two events of one seq never straddle pages: the last seq waits.
                    window = [e for e in window if e.seq != window[-1].seq]
                for e in window:
                    counted = e.seq <= hi
                    signed_before, unsigned_before = part.signed, part.unsigned
                    found += step(part, e.as_sent(), book, check)
                    if counted:
                        state.signed += part.signed - signed_before
                        state.unsigned += part.unsigned - unsigned_before
                        walked += 1
                after = window[-1].seq
                if after >= hi + 1:
                    break
        return walked

    def _commit(
        self,
        store: Store,
        site: str,
        device: str,
        state: ChainState,
        found: list[NewFinding],
        resolved: list[int],
        book: KeyBook,
        mark: HeadMark,
    ) -> None:
        store.commit_chain(
            ChainHead(
                site,
                device,
                state.first_seq,
                state.seq,
                state.event_id,
                state.digest,
                state.key,
                state.signed,
                state.unsigned,
                None,
            ),
            found,
            resolved,
            book.writes,
            utcnow(),
            mark,
        )
        self.findings += len(found)
        # A hostile or broken device may fail every event it sends: the journal gets a few
        # lines per page and a count, the table gets every finding.
        for f in found[:LOGGED_PER_PAGE]:
            logger.warning("chain %s/%s seq %d: %s: %s", site, device, f.seq, f.kind, f.detail)
        if len(found) > LOGGED_PER_PAGE:
            logger.warning(
                "chain %s/%s: %d more findings up to seq %d (hall-central devices findings "
                "--device %s)",
                site,
                device,
                len(found) - LOGGED_PER_PAGE,
                found[-1].seq,
                device,
            )


def _state(head: ChainHead | None) -> ChainState:
    if head is None:
        return ChainState()
    return ChainState(
        seq=head.last_seq,
        digest=head.last_digest,
        first_seq=head.first_seq,
        signed=head.signed,
        unsigned=head.unsigned,
        key=head.key_fingerprint,
        event_id=head.last_event_id,
    )


def store_opener(cfg: Any) -> Callable[[], Store]:
    """Opens the configured store for the verifier (its own connection)."""

    def open_it() -> Store:
        from central.store import open_store

        return open_store(
            cfg.store.url, cfg.store.pg_schema, cfg.store.password, timezone=cfg.central.timezone
        )

    return open_it


def _lowest(a: int | None, b: int | None) -> int | None:
    """The lower of two notes' seqs; None (from the head) only when both are."""
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)
