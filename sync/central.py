"""The central collector: MQTT batches → the store, acks after commit (CONTRACT §3, §6).

- Subscribes with a shared subscription, ``$share/hall-central/{prefix}/+/+/events``, so that
  several collectors can run side by side (the broker gives each batch to one of them), and to
  the retained ``{prefix}/+/+/status`` topics to know each device's state and backlog.
- Every batch is validated (:func:`check_batch`): JSON, schema, topic device = payload device.
  A batch over ``central.max_batch_events`` / ``max_payload_kb`` is taken in part: the events
  beyond the limits are left out of the ack (the device resends them), never rejected; only an
  event too large for any batch is rejected, by id. Good events are written in one
  transaction with ``ON CONFLICT (id) DO NOTHING``; bad ones go to ``rejected`` with their
  reason in the same transaction; then the ack
  ``{"v":1,"ids":[…],"rejected":[{"id","reason"}]}`` goes to ``{prefix}/{site}/{device}/ack``.
- The collector never dies on bad input: anything that cannot be parsed is recorded in
  ``rejected`` (with the topic's device) and the loop goes on.
- paho acks the broker's delivery (PUBACK) only after the store has committed (``manual_ack``):
  the broker then never has more than its in-flight limit outstanding with us, which is the
  flow control when the store is slower than the hall.
- On every connect (the first one included) it republishes every roster of the store's
  ``rosters`` table retained (CONTRACT §3 ``{prefix}/{site}/roster``): a broker that lost its
  retained messages (restarted without persistence, replaced) gets them back without anyone
  running ``hall-central roster publish`` again.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agent.config import CentralConfig
from agent.envelope import EVENT_TYPES
from sync.mqtt import MqttLink
from sync.store import (
    CONFLICT,
    EventRow,
    Reject,
    Store,
    StoredRoster,
    as_received,
    open_store,
    roster_json,
)

logger = logging.getLogger(__name__)

SHARE_GROUP = "hall-central"
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")  # CONTRACT §3 ids
MAX_REJECT_PAYLOAD = 64 * 1024  # of a payload kept for a technician to look at
# A JSON-escaped NUL (\u0000 after an even number of backslashes), not the text "\u0000".
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")

_NUMBER = (int, float)
# CONTRACT §2 shows `at` as 2026-11-26T09:12:03.120+08:00: the ISO 8601 *extended* form with
# an offset. fromisoformat also takes the basic form (20261126T091203+0800), which the SQLite
# reports, grouping by substr(at, 1, 7), would never count: only the extended form passes.
_AT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})", re.ASCII)
# What the PostgreSQL views cast to ::integer, and what the pads can send (CONTRACT §4).
_INT_RANGES = {"pad": (1, 247), "invite_id": (0, 65535)}
_REPUBLISH = object()  # queued by on_connect: the collector thread republishes the rosters
_ANNOUNCE = object()  # queued by the events SUBACK: the collector thread says it is online
ROSTER_PUBACK_TIMEOUT_S = 5.0
# Event data is flat (CONTRACT §2: a list of reason labels at most). Deeper data is refused by
# validation: SQLite's json_valid() stops at 1000 levels and a store refusal is never a reject.
MAX_DATA_DEPTH = 32
# The collector's own queue (paho's thread → the store thread). QoS 1 is bounded by the broker:
# at most RECEIVE_MAXIMUM unacknowledged with us (MQTT 5 Receive Maximum; 3.1.1: the broker's
# max_inflight_messages, 20 in config/mosquitto.conf), and we PUBACK only after handling. QoS 0
# has no flow control at all (a flood of 4 MB messages grew the collector without bound), so it
# gets only what is left of a small budget and is dropped, counted, beyond it. Agents never
# publish QoS 0 (CONTRACT §3).
RECEIVE_MAXIMUM = 50
QOS0_MAX_MESSAGES = 100
QOS0_MAX_BYTES = 16 * 1024 * 1024
# Whatever the broker does, the queue never holds more than this; a QoS 1 batch beyond it is
# PUBACKed and dropped, and its device resends it after its ack timeout.
QUEUE_MAX_BYTES = 256 * 1024 * 1024
DROP_LOG_EVERY_S = 60.0
STORE_RETRY_S = 1.0  # pause after the store failed a write, so a dead database is not hammered


def _is_num(value: Any, nullable: bool = True) -> bool:
    if value is None:
        return nullable
    # NaN and Infinity: Python's json reads them, but they are not JSON and both stores
    # refuse them (SQLite json_valid, PostgreSQL jsonb).
    return isinstance(value, _NUMBER) and not isinstance(value, bool) and math.isfinite(value)


def _check_data(event_type: str, data: dict[str, Any]) -> str | None:
    """Type-specific checks, limited to what the views and reports rely on (CONTRACT §2)."""
    if event_type == "attendance.punch":
        if not isinstance(data.get("staff_id"), str) or not data["staff_id"]:
            return "data.staff_id: expected a staff id"
        if not isinstance(data.get("slot"), str):
            return "data.slot: expected a slot name"
        for key in ("minutes_off", "distance"):
            if not _is_num(data.get(key)):
                return f"data.{key}: expected a number or null, got {data.get(key)!r}"
    elif event_type == "rating.submitted":
        level = data.get("level")
        if not isinstance(level, int) or isinstance(level, bool) or not 1 <= level <= 5:
            return f"data.level: expected 1-5, got {level!r}"
        if not isinstance(data.get("window"), str):
            return "data.window: expected a window label"
    if event_type in ("rating.submitted", "rating.expired"):
        for key, (low, high) in _INT_RANGES.items():
            value = data.get(key)
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high
            ):
                return f"data.{key}: expected an integer {low}-{high} or null, got {value!r}"
    return None


def _depth_over(value: Any, limit: int) -> bool:
    """True when ``value`` nests lists/objects deeper than ``limit`` (iterative: no recursion).

    Only containers are pushed: the usual flat event data costs one pass over its values."""
    stack = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return False


def check_event(ev: Any, site: str, device: str) -> tuple[EventRow | None, str | None]:
    """(row, None) for a good event, (None, reason) for a bad one."""
    if not isinstance(ev, dict):
        return None, f"event: expected an object, got {type(ev).__name__}"
    event_id = ev.get("id")
    try:
        parsed = uuid.UUID(event_id)
    except (TypeError, ValueError, AttributeError):
        return None, f"id: expected a UUID, got {event_id!r}"
    if str(parsed) != event_id:
        return None, f"id: expected the canonical lower-case UUID form, got {event_id!r}"
    if ev.get("device") != device:
        return None, f"device: {ev.get('device')!r} does not match the topic's device {device!r}"
    if ev.get("site") != site:
        return None, f"site: {ev.get('site')!r} does not match the topic's site {site!r}"
    seq = ev.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0 or seq >= 2**63:
        return None, f"seq: expected a non-negative integer, got {seq!r}"
    event_type = ev.get("type")
    if not isinstance(event_type, str) or event_type not in EVENT_TYPES:
        return None, f"type: expected one of CONTRACT §2, got {event_type!r}"
    at_text = ev.get("at")
    expected_at = "an ISO 8601 time with offset such as 2026-11-26T09:12:03.120+08:00"
    if not isinstance(at_text, str) or not _AT.fullmatch(at_text):
        return None, f"at: expected {expected_at}, got {at_text!r}"
    try:
        at = datetime.fromisoformat(at_text)
    except ValueError:  # the right shape, but no such date or time (e.g. month 13)
        return None, f"at: expected {expected_at}, got {at_text!r}"
    clock = ev.get("clock")
    if not isinstance(clock, str) or clock not in ("synced", "unsynced"):
        return None, f"clock: expected 'synced' or 'unsynced', got {clock!r}"
    data = ev.get("data")
    if not isinstance(data, dict):
        return None, f"data: expected an object, got {type(data).__name__}"
    if _depth_over(data, MAX_DATA_DEPTH):
        return None, f"data: nested deeper than {MAX_DATA_DEPTH} levels"
    problem = _check_data(event_type, data)
    if problem:
        return None, problem
    extra = set(ev) - {"id", "seq", "type", "at", "clock", "device", "site", "data"}
    if extra:
        return None, f"unknown envelope key(s) {sorted(extra)}"
    try:
        data_text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:
        return None, "data: contains NaN or Infinity; expected finite numbers (RFC 8259 JSON)"
    try:
        data_text.encode("utf-8")
    except UnicodeEncodeError:
        # A JSON escape such as "\ud800" decodes to a lone surrogate, which neither store can
        # encode: without this check the whole batch failed to write, again on every resend.
        return None, "data: contains a lone UTF-16 surrogate; expected valid Unicode text"
    if "\\u0000" in data_text and _NUL_ESCAPE.search(data_text):
        # PostgreSQL's jsonb cannot hold NUL; refuse it on SQLite too, so both stores agree.
        return None, "data: contains a NUL character (\\u0000)"
    return (
        EventRow(
            id=event_id,
            device=device,
            site=site,
            seq=seq,
            type=event_type,
            at=at,
            at_text=at_text,
            clock=clock,
            data=data_text,
            raw=ev,
        ),
        None,
    )


@dataclass
class Verdict:
    site: str | None
    device: str | None
    good: list[EventRow] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    # Events of an over-limit batch left for later: neither stored nor rejected, so not in
    # the ack; the device resends them (go-back-N) after its ack timeout.
    deferred: int = 0

    def ack(self) -> dict[str, Any]:
        return {
            "v": 1,
            "ids": [e.id for e in self.good],
            "rejected": [{"id": r.id, "reason": r.reason} for r in self.rejects if r.id],
        }


def _as_received(ev: Any) -> str:
    """The whole event (envelope and data) as JSON text for ``rejected.payload``."""
    try:
        return json.dumps(ev, ensure_ascii=False)[:MAX_REJECT_PAYLOAD]
    except (ValueError, RecursionError) as exc:  # NaN is fine here; a cycle cannot come from JSON
        return f"(not serialisable: {type(exc).__name__})"


def central_status_topic(prefix: str) -> str:
    """Where collectors announce themselves: ``_central`` can never be a site id (CONTRACT §3
    ids start with a letter or digit), so it collides with no device or roster topic."""
    return f"{prefix}/_central/status"


def parse_topic(topic: str, prefix: str, kind: str) -> tuple[str, str] | None:
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != prefix or parts[3] != kind:
        return None
    site, device = parts[1], parts[2]
    if not _ID.match(site) or not _ID.match(device):
        return None
    return site, device


def check_batch(
    topic: str, payload: bytes, *, prefix: str, max_bytes: int, max_events: int
) -> Verdict:
    """Validate one batch. Never raises: whatever is wrong ends up in ``rejects``."""
    where = parse_topic(topic, prefix, "events")
    site, device = where if where else (None, None)
    text = payload.decode("utf-8", errors="replace")
    verdict = Verdict(site, device)

    def reject_all(reason: str, events: Any = None) -> Verdict:
        # Name every event that has an id, so that the agent can dead-letter each one
        # instead of resending the batch forever (CONTRACT §3).
        named = []
        if isinstance(events, list):
            named = [e for e in events if isinstance(e, dict) and isinstance(e.get("id"), str)]
        verdict.rejects = [Reject(e["id"], device, reason, _as_received(e)) for e in named] or [
            Reject(None, device, reason, text[:MAX_REJECT_PAYLOAD])
        ]
        return verdict

    if where is None:
        return reject_all(f"topic {topic!r}: expected {prefix}/SITE/DEVICE/events")
    try:
        batch = json.loads(payload)
    except RecursionError:
        # The C decoder gives up at the interpreter's recursion limit (~1000 levels).
        return reject_all("batch: JSON nested too deeply to read")
    except (UnicodeDecodeError, ValueError) as exc:
        return reject_all(f"batch: not JSON ({exc})")
    if not isinstance(batch, dict):
        return reject_all(f"batch: expected a JSON object, got {type(batch).__name__}")
    events = batch.get("events")
    if batch.get("v") != 1:
        return reject_all(f"batch: v: expected 1, got {batch.get('v')!r}", events)
    if batch.get("device") != device:
        return reject_all(
            f"batch: device {batch.get('device')!r} does not match the topic's device {device!r}",
            events,
        )
    if batch.get("site") != site:
        return reject_all(
            f"batch: site {batch.get('site')!r} does not match the topic's site {site!r}", events
        )
    if not isinstance(events, list):
        return reject_all("batch: events: expected a list")
    if len(events) > max_events or len(payload) > max_bytes:
        events = _within_limits(verdict, events, len(payload), max_bytes, max_events)
    for ev in events:
        try:
            row, problem = check_event(ev, site, device)  # type: ignore[arg-type]
        except Exception as exc:  # a check we got wrong must not make the batch a poison pill
            logger.exception("check_event failed")
            row, problem = None, f"invalid event ({type(exc).__name__}: {exc})"
        if row is not None:
            verdict.good.append(row)
        else:
            event_id = ev.get("id") if isinstance(ev, dict) else None
            verdict.rejects.append(
                Reject(
                    event_id if isinstance(event_id, str) else None,
                    device,
                    problem or "invalid",
                    _as_received(ev),
                )
            )
    return verdict


def _within_limits(
    verdict: Verdict, events: list[Any], payload_bytes: int, max_bytes: int, max_events: int
) -> list[Any]:
    """The events of an over-limit batch to judge now; the rest is deferred, never rejected.

    A batch over ``central.max_batch_events`` or ``central.max_payload_kb`` says nothing bad
    about its events (an agent configured for bigger batches than this collector takes), so
    none of them is dead-lettered for it: the leading events that fit the limits are taken,
    the others are left out of the ack and come again with the device's resend. Only an event
    that could not fit even a batch of its own is rejected, by id (it would never get in).
    """
    assert verdict.site is not None and verdict.device is not None
    envelope = {"v": 1, "device": verdict.device, "site": verdict.site, "events": []}
    overhead = len(json.dumps(envelope, separators=(",", ":")).encode())
    taken: list[Any] = []
    used = overhead
    judged = 0
    for ev in events:
        if judged >= max_events:
            break
        text = json.dumps(ev, ensure_ascii=False, separators=(",", ":"))
        size = len(text.encode("utf-8", errors="replace"))
        if overhead + size > max_bytes:
            event_id = ev.get("id") if isinstance(ev, dict) else None
            verdict.rejects.append(
                Reject(
                    event_id if isinstance(event_id, str) else None,
                    verdict.device,
                    f"event: {size} bytes; expected at most {max_bytes - overhead} "
                    f"(central.max_payload_kb)",
                    text[:MAX_REJECT_PAYLOAD],
                )
            )
            judged += 1
            continue
        if used + size + (1 if taken else 0) > max_bytes:
            break
        taken.append(ev)
        used += size + (1 if len(taken) > 1 else 0)
        judged += 1
    verdict.deferred = len(events) - judged
    logger.warning(
        "batch from %s/%s over the limits (%d events, %d bytes; at most %d events, %d bytes): "
        "taking %d, leaving %d for the device to resend (align sync.batch_size and "
        "sync.max_batch_kb with central.max_batch_events and central.max_payload_kb)",
        verdict.site,
        verdict.device,
        len(events),
        payload_bytes,
        max_events,
        max_bytes,
        judged,
        verdict.deferred,
    )
    return taken


class Collector:
    """Runs the MQTT link and the single store-writing thread."""

    def __init__(self, cfg: CentralConfig, store: Store | None = None, client_id: str = ""):
        self.cfg = cfg
        self.prefix = cfg.mqtt.prefix
        self.store = store or open_store(cfg.store.url, cfg.store.pg_schema, cfg.store.password)
        self._own_store = store is None
        self.client_id = client_id or f"{cfg.central.id}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.events_filter = f"$share/{SHARE_GROUP}/{self.prefix}/+/+/events"
        self.status_filter = f"{self.prefix}/+/+/status"
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._events_mid: int | None = None
        # Set when the broker has granted the events subscription (SUBACK): from then on no
        # batch published to the broker can miss this collector.
        self.ready = threading.Event()
        self.link = MqttLink(
            cfg.mqtt,
            self.client_id,
            on_connect=self._on_connect,
            on_message=self._on_message,
            on_subscribe=self._on_subscribe,
            manual_ack=True,
            max_inflight=100,
            max_queued=10000,
            receive_maximum=RECEIVE_MAXIMUM,
            name="collector",
        )
        self._q_lock = threading.Lock()
        self._q_messages = 0  # messages in self._q, and their payload bytes
        self._q_bytes = 0
        self.dropped = 0  # messages not taken: the queue's budget was spent (QoS 0 floods)
        self._dropped_logged = 0
        self._drop_log_at = 0.0
        # device -> (last logged at, inputs left out since)
        self._garbage_log: dict[str | None, tuple[float, int]] = {}
        self.batches = 0
        self.events_stored = 0
        self.rejected = 0
        self.deferred = 0
        self.errors = 0
        self.store_errors = 0  # batches the store failed or refused (not acked, resent later)
        self.rosters_republished = 0  # rosters the broker acknowledged (PUBACK)
        self.roster_rounds = 0  # connects whose roster republish has finished

    def _on_connect(self, client: Any) -> None:
        self.ready.clear()
        _rc, self._events_mid = client.subscribe(self.events_filter, qos=1)
        client.subscribe(self.status_filter, qos=1)
        # The store read and the PUBACK waits happen on the collector thread, never here
        # (paho's thread: DESIGN.md habit 4).
        self._q.put(_REPUBLISH)

    def _on_subscribe(self, mid: int, reason_codes: list[Any]) -> None:
        if mid == self._events_mid and not any(
            getattr(rc, "is_failure", False) for rc in reason_codes
        ):
            self.ready.set()
            self._q.put(_ANNOUNCE)

    def _on_message(self, client: Any, _userdata: Any, msg: Any) -> None:
        # paho's thread: never block. Admit the message within the queue's budget or drop it.
        size = len(msg.payload)
        with self._q_lock:
            if msg.qos == 0:
                admit = (
                    self._q_messages < QOS0_MAX_MESSAGES and self._q_bytes + size <= QOS0_MAX_BYTES
                )
            else:
                admit = self._q_bytes + size <= QUEUE_MAX_BYTES
            if admit:
                self._q_messages += 1
                self._q_bytes += size
            else:
                self.dropped += 1
        if admit:
            self._q.put(msg)
            return
        if msg.qos > 0:
            # PUBACK it anyway, or the broker's window to us shrinks for good; its device
            # resends the batch after its ack timeout (no end-to-end ack was sent).
            client.ack(msg.mid, msg.qos)
        now = time.monotonic()
        if now - self._drop_log_at >= DROP_LOG_EVERY_S:
            logger.warning(
                "collector: queue full (%d messages, %d bytes queued); dropped %d messages "
                "since the last report (%d in all), latest on %s (QoS %d, %d bytes)",
                self._q_messages,
                self._q_bytes,
                self.dropped - self._dropped_logged,
                self.dropped,
                msg.topic,
                msg.qos,
                size,
            )
            self._drop_log_at, self._dropped_logged = now, self.dropped

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="collector", daemon=True)
        self._thread.start()
        self.link.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._q.put(None)
        self.link.stop(timeout)
        if self._thread is not None:
            self._thread.join(timeout)
        if self._own_store:
            self.store.close()

    def wait_connected(self, timeout: float) -> bool:
        """Wait until connected and subscribed to the event batches."""
        return self.ready.wait(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            msg = self._q.get()
            if msg is None:
                break
            if msg is _ANNOUNCE:
                self._announce()
                continue
            if msg is _REPUBLISH:
                try:
                    self.republish_rosters()
                except Exception:  # never let a roster problem end the collector thread
                    logger.exception("collector: roster republish failed")
                continue
            with self._q_lock:
                self._q_messages -= 1
                self._q_bytes -= len(msg.payload)
            try:
                self.handle(msg.topic, msg.payload)
            except Exception as exc:
                # The store failed or refused the write (PostgreSQL restarting, a constraint,
                # disk full): no ack to the agent, which resends after its ack timeout. Back
                # off so a dead database is not hammered. Bad input never gets here:
                # check_batch turns every parse or validation failure into a verdict.
                self.errors += 1
                self.store_errors += 1
                logger.error(
                    "collector: store did not take a batch on %s (%s); not acked, the device "
                    "resends it",
                    msg.topic,
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                )
                self._stop.wait(STORE_RETRY_S)
            # The broker's PUBACK goes out either way: the end-to-end ack above is what
            # settles an event; holding PUBACKs would only shrink the broker's window to us.
            with self.link.publish_lock:
                self.link.client.ack(msg.mid, msg.qos)

    def handle(self, topic: str, payload: bytes) -> None:
        if topic.endswith("/status"):
            self._handle_status(topic, payload)
            return
        try:
            verdict = check_batch(
                topic,
                payload,
                prefix=self.prefix,
                max_bytes=self.cfg.central.max_payload_kb * 1024,
                max_events=self.cfg.central.max_batch_events,
            )
        except Exception as exc:  # a check we got wrong: a verdict, never a store back-off
            logger.exception("check_batch failed on %s", topic)
            where = parse_topic(topic, self.prefix, "events")
            verdict = Verdict(*(where or (None, None)))
            verdict.rejects = [
                Reject(
                    None,
                    verdict.device,
                    f"invalid batch ({type(exc).__name__})",
                    payload[:MAX_REJECT_PAYLOAD].decode("utf-8", errors="replace"),
                )
            ]
        self._write(verdict)  # returns after the commit
        self.batches += 1
        self.events_stored += len(verdict.good)
        self.rejected += len(verdict.rejects)
        self.deferred += verdict.deferred
        for r in verdict.rejects:
            self._log_reject(r, verdict)
        body = verdict.ack()
        if verdict.site is None or verdict.device is None or not (body["ids"] or body["rejected"]):
            return  # no device to answer to, or nothing it could match
        ack = json.dumps(body, separators=(",", ":")).encode()
        self.link.publish(f"{self.prefix}/{verdict.site}/{verdict.device}/ack", ack, qos=1)

    def _log_reject(self, r: Reject, verdict: Verdict) -> None:
        """One line per named reject; garbage that names no event (a hostile flood) at most once
        a minute per topic device, with how many were left out. Every one is in ``rejected``."""
        if r.id is not None:
            logger.warning(
                "rejected %s from %s/%s: %s", r.id, verdict.site, verdict.device, r.reason
            )
            return
        now = time.monotonic()
        last, left_out = self._garbage_log.get(verdict.device, (-DROP_LOG_EVERY_S, 0))
        if now - last < DROP_LOG_EVERY_S:
            self._garbage_log[verdict.device] = (last, left_out + 1)
            return
        self._garbage_log[verdict.device] = (now, 0)
        logger.warning(
            "rejected input on %s/%s that names no event: %s%s",
            verdict.site,
            verdict.device,
            r.reason[:200],
            f" ({left_out} more such inputs not logged)" if left_out else "",
        )

    def _write(self, verdict: Verdict) -> None:
        """Write a batch in one transaction; returns after the commit, raises on any failure.

        Only validation rejects (CONTRACT §3). A store that fails or refuses the write (a
        constraint or trigger, disk full, read-only file, PostgreSQL down) has said nothing
        about the events: the exception propagates, nothing is acked, and the device resends
        the batch after its ack timeout. Turning such a refusal into ``rejected`` rows would
        move good events to the devices' dead letters for good.
        """
        conflicts = self.store.write_batch(verdict.good, verdict.rejects)
        if conflicts:
            taken = {e.id for e in conflicts}
            verdict.good = [e for e in verdict.good if e.id not in taken]
            for e in conflicts:
                verdict.rejects.append(Reject(e.id, e.device, CONFLICT, as_received(e)))
                logger.error(
                    "event %s from %s/%s (seq %d) reuses an id stored with different content: "
                    "rejected as %s",
                    e.id,
                    e.site,
                    e.device,
                    e.seq,
                    CONFLICT,
                )

    def _announce(self) -> None:
        """Tell connected devices that a collector is (again) taking batches.

        Not retained: devices that connect later resend what is in flight on their own
        connect anyway. A device that came back before us (after a broker restart) published
        into a shared group with no member, and would otherwise wait a whole ack timeout
        (docs/sync.md, "Window, resend and backoff").
        """
        payload = json.dumps(
            {"v": 1, "state": "online", "collector": self.client_id},
            separators=(",", ":"),
        ).encode()
        try:
            self.link.publish(central_status_topic(self.prefix), payload, qos=1)
        except (RuntimeError, ValueError) as exc:  # paho: not connected, queue full
            logger.warning("collector: online announcement not sent: %s", exc)

    def republish_rosters(self) -> None:
        """Publish every stored roster retained again; never raises.

        Each roster's PUBACK is awaited and the store read again afterwards: if
        ``hall-central roster publish`` stored a newer one meanwhile, its own publish may
        have reached the broker before ours, so the newer one is published again and the
        broker keeps the newest.
        """
        try:
            rosters = self.store.rosters()
        except Exception as exc:
            self.errors += 1
            logger.error(
                "collector: cannot read the stored rosters (%s); the next connect retries", exc
            )
            return
        for stored in rosters:
            for _attempt in range(3):
                if not self._republish(stored):
                    break
                try:
                    again = self.store.roster(stored.site)
                except Exception:
                    break
                if again is None or again.payload == stored.payload:
                    break
                stored = again
        self.roster_rounds += 1

    def _republish(self, stored: StoredRoster) -> bool:
        from sync.downlink import RosterError, validate_roster

        topic = f"{self.prefix}/{stored.site}/roster"
        try:
            if not _ID.match(stored.site):
                raise RosterError(f"site {stored.site!r} is not a valid site id")
            payload = roster_json(validate_roster(stored.roster)).encode("utf-8")
        except (RosterError, KeyError, TypeError) as exc:
            logger.error("collector: stored roster of %s not republished: %s", stored.site, exc)
            return False
        try:
            info = self.link.publish(topic, payload, qos=1, retain=True)
            info.wait_for_publish(ROSTER_PUBACK_TIMEOUT_S)
        except (RuntimeError, ValueError) as exc:  # paho: queue full, not connected
            logger.warning("collector: roster of %s not republished: %s", stored.site, exc)
            return False
        if not info.is_published():
            logger.warning(
                "collector: no PUBACK for the roster on %s; the next connect retries", topic
            )
            return False
        self.rosters_republished += 1
        logger.info("collector: roster version %s republished on %s", stored.version, topic)
        return True

    def _handle_status(self, topic: str, payload: bytes) -> None:
        """A device's retained status → ``devices``. Never raises: a status is not acked and
        the next one replaces it, so a bad one (or a store hiccup) is logged and dropped."""
        where = parse_topic(topic, self.prefix, "status")
        if where is None or not payload:
            return
        try:
            status = json.loads(payload)
            if not isinstance(status, dict):
                raise ValueError("not an object")
            if _depth_over(status, MAX_DATA_DEPTH):
                raise ValueError(f"nested deeper than {MAX_DATA_DEPTH} levels")
            # NaN/Infinity: Python reads them, no store can hold them (RFC 8259).
            json.dumps(status, allow_nan=False)
        except (ValueError, RecursionError) as exc:
            logger.warning("ignoring bad status on %s: %s", topic, exc)
            return
        try:
            self.store.upsert_status(where[0], where[1], status)
        except Exception as exc:
            self.errors += 1
            logger.warning("status on %s not stored: %s", topic, exc)


def run_collector(cfg: CentralConfig, stop: threading.Event) -> int:
    collector = Collector(cfg)
    collector.start()
    logger.info(
        "hall-central collector %s: %s and %s → %s",
        collector.client_id,
        collector.events_filter,
        collector.status_filter,
        cfg.store.url.split("@")[-1],
    )
    last = time.monotonic()
    try:
        while not stop.wait(1.0):
            if time.monotonic() - last >= 300:
                last = time.monotonic()
                logger.info(
                    "collector: %d batches, %d events stored, %d rejected, %d errors",
                    collector.batches,
                    collector.events_stored,
                    collector.rejected,
                    collector.errors,
                )
    finally:
        collector.stop()
    return 0
