"""The central collector: MQTT batches → the store, acks after commit (docs/sync.md).

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
  ``rosters`` table retained (docs/topics.md ``{prefix}/{site}/roster``): a broker that lost its
  retained messages (restarted without persistence, replaced) gets them back without anyone
  running ``hall-central roster publish`` again.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from central.config import CentralConfig
from central.store import (
    CONFLICT,
    Reject,
    Store,
    StoredRoster,
    conflict_rejects,
    open_store,
    roster_json,
)
from central.validation import (
    MAX_DATA_DEPTH,
    MAX_REJECT_PAYLOAD,
    Verdict,
    check_batch,
    depth_over,
)
from contract import ID_RE, central_status_topic, parse_device_topic
from sync.mqtt import MqttLink

logger = logging.getLogger(__name__)

SHARE_GROUP = "hall-central"

_REPUBLISH = object()  # queued by on_connect: the collector thread republishes the rosters
_ANNOUNCE = object()  # queued by the events SUBACK: the collector thread says it is online
ROSTER_PUBACK_TIMEOUT_S = 5.0
# The collector's own queue (paho's thread → the store thread). QoS 1 is bounded by the broker:
# at most RECEIVE_MAXIMUM unacknowledged with us (MQTT 5 Receive Maximum; 3.1.1: the broker's
# max_inflight_messages, 20 in config/mosquitto.conf), and we PUBACK only after handling. QoS 0
# has no flow control at all (a flood of 4 MB messages grew the collector without bound), so it
# gets only what is left of a small budget and is dropped, counted, beyond it. Agents never
# publish QoS 0 (docs/topics.md).
RECEIVE_MAXIMUM = 50
QOS0_MAX_MESSAGES = 100
QOS0_MAX_BYTES = 16 * 1024 * 1024
# Whatever the broker does, the queue never holds more than this; a QoS 1 batch beyond it is
# PUBACKed and dropped, and its device resends it after its ack timeout.
QUEUE_MAX_BYTES = 256 * 1024 * 1024
DROP_LOG_EVERY_S = 60.0
STORE_RETRY_S = 1.0  # pause after the store failed a write, so a dead database is not hammered
# How long the collector retries one batch itself before leaving it to the device's resend:
# below the devices' default ack timeout (sync.ack_timeout_s = 30), so both rarely overlap
# (and when they do, the store keeps one row per id).
STORE_RETRY_FOR_S = 20.0


class Collector:
    """Runs the MQTT link and the single store-writing thread."""

    def __init__(self, cfg: CentralConfig, store: Store | None = None, client_id: str = ""):
        self.cfg = cfg
        self.prefix = cfg.mqtt.prefix
        self.store = store or open_store(
            cfg.store.url, cfg.store.pg_schema, cfg.store.password, timezone=cfg.central.timezone
        )
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
        # (paho's thread: docs/architecture.md#mqtt-callbacks).
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

    def alive(self) -> bool:
        """The store-writing thread and the link's keeper both run (the watchdog's question)."""
        return self._thread is not None and self._thread.is_alive() and self.link.alive()

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
            self._handle_until_stored(msg)
            # The broker's PUBACK goes out either way: the end-to-end ack above is what
            # settles an event; holding PUBACKs would only shrink the broker's window to us.
            with self.link.publish_lock:
                self.link.client.ack(msg.mid, msg.qos)

    def _handle_until_stored(self, msg: Any) -> None:
        """Handle one message; when the store fails or refuses the write (PostgreSQL
        restarting, a constraint, disk full, read-only), retry it every STORE_RETRY_S for up
        to STORE_RETRY_FOR_S, so that a store that comes back drains within a second instead
        of at each device's ack timeout (docs/reliability.md). Nothing is acked meanwhile;
        after the retry window the device's own resend takes over. Bad input never gets
        here: check_batch turns every parse or validation failure into a verdict."""
        deadline = time.monotonic() + STORE_RETRY_FOR_S
        failures = 0
        while True:
            try:
                self.handle(msg.topic, msg.payload, retained=bool(getattr(msg, "retain", False)))
                if failures:
                    logger.info(
                        "collector: store took the batch on %s after %d retries",
                        msg.topic,
                        failures,
                    )
                return
            except Exception as exc:
                self.errors += 1
                self.store_errors += 1
                failures += 1
                why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                if failures == 1:
                    logger.error(
                        "collector: store did not take a batch on %s (%s); retrying, not acked",
                        msg.topic,
                        why,
                    )
                # A dead database is not hammered: one try per STORE_RETRY_S.
                if time.monotonic() >= deadline or self._stop.wait(STORE_RETRY_S):
                    logger.error(
                        "collector: store still refuses the batch on %s (%s); left to the "
                        "device's resend",
                        msg.topic,
                        why,
                    )
                    return

    def handle(self, topic: str, payload: bytes, retained: bool = False) -> None:
        if topic.endswith("/status"):
            self._handle_status(topic, payload, retained)
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
            where = parse_device_topic(topic, self.prefix, "events")
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

        Only validation rejects (docs/topics.md). A store that fails or refuses the write (a
        constraint or trigger, disk full, read-only file, PostgreSQL down) has said nothing
        about the events: the exception propagates, nothing is acked, and the device resends
        the batch after its ack timeout. Turning such a refusal into ``rejected`` rows would
        move good events to the devices' dead letters for good.
        """
        conflicts = self.store.write_batch(verdict.good, verdict.rejects)
        if conflicts:
            taken = {e.id for e in conflicts}
            verdict.good = [e for e in verdict.good if e.id not in taken]
            verdict.rejects.extend(conflict_rejects(conflicts))
            for e in conflicts:
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
        from contract import RosterError, validate_roster

        topic = f"{self.prefix}/{stored.site}/roster"
        try:
            if not ID_RE.match(stored.site):
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

    def _handle_status(self, topic: str, payload: bytes, retained: bool = False) -> None:
        """A device's retained status → ``devices``. Never raises: a status is not acked and
        the next one replaces it, so a bad one (or a store hiccup) is logged and dropped.

        A status delivered live was heard now. One the broker replays from its retained
        store (on the collector's subscribe) says nothing about now: the device may have
        died since. Its heard time is the status's own ``at``, never later than now, or
        unknown (the epoch) when it has none; the device's next live status (every
        ``status_interval_s``) sets it right (docs/board.md "Offline and stale devices")."""
        where = parse_device_topic(topic, self.prefix, "status")
        if where is None or not payload:
            return
        try:
            status = json.loads(payload)
            if not isinstance(status, dict):
                raise ValueError("not an object")
            if depth_over(status, MAX_DATA_DEPTH):
                raise ValueError(f"nested deeper than {MAX_DATA_DEPTH} levels")
            # NaN/Infinity: Python reads them, no store can hold them (RFC 8259).
            json.dumps(status, allow_nan=False)
        except (ValueError, RecursionError) as exc:
            logger.warning("ignoring bad status on %s: %s", topic, exc)
            return
        heard_at = _replayed_heard_at(status) if retained else None
        try:
            self.store.upsert_status(where[0], where[1], status, heard_at)
        except Exception as exc:
            self.errors += 1
            logger.warning("status on %s not stored: %s", topic, exc)


def run_collector(cfg: CentralConfig, stop: threading.Event) -> int:
    collector = Collector(cfg)
    collector.start()
    shown = cfg.store.url_shown
    logger.info(
        "hall-central collector %s: %s and %s → %s",
        collector.client_id,
        collector.events_filter,
        collector.status_filter,
        shown,
    )
    # systemd Type=notify (systemd/hall-central.service): READY once the store is open and the
    # link started (not on the broker: a broker down at boot must not fail the unit),
    # WATCHDOG at half WatchdogSec while the collector thread and the link are alive.
    from sync.systemd import Notifier

    notifier = Notifier()
    notifier.ready(f"storing into {shown}")
    watchdog_every = (notifier.watchdog_s or 0) / 2
    last_ping = 0.0
    last = time.monotonic()
    try:
        while not stop.wait(min(1.0, watchdog_every or 1.0)):
            now = time.monotonic()
            if watchdog_every and now - last_ping >= watchdog_every and collector.alive():
                notifier.watchdog()
                last_ping = now
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
        notifier.stopping()
        collector.stop()
    return 0


def _replayed_heard_at(status: dict[str, Any]) -> datetime:
    """When a replayed retained status was sent, by its own ``at`` (aware, at most now)."""
    now = datetime.now(UTC)
    try:
        sent = datetime.fromisoformat(str(status.get("at")))
    except ValueError:
        return datetime.fromtimestamp(0, UTC)
    if sent.tzinfo is None:
        return datetime.fromtimestamp(0, UTC)
    return min(sent.astimezone(UTC), now)
