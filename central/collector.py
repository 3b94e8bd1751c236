"""The central collector: MQTT batches → the store, acks after commit (docs/sync.md).

- Subscribes with a shared subscription, ``$share/hall-central/{prefix}/+/+/events``, so that
  several collectors can run side by side (the broker gives each batch to one of them), and to
  the retained ``{prefix}/+/+/status`` topics to know each device's state and backlog.
- paho's thread only queues each message in its device's lane (central/lanes.py); the store
  thread serves the lanes round-robin and writes a group of batches in one transaction, so one
  device's flood or backlog costs the others at most one group's wait, and a batch the store
  refuses parks only its own device's lane (docs/sync.md "Fairness and isolation").
- Every batch is validated (:func:`check_batch`): JSON, schema, topic device = payload device.
  A message over MAX_MESSAGE_BYTES is not parsed at all. A batch over
  ``central.max_batch_events`` / ``max_payload_kb`` is taken in part: the events beyond the
  limits are left out of the ack (the device resends them), never rejected; only an event too
  large for any batch is rejected, by id. Good events are written with
  ``ON CONFLICT (id) DO NOTHING``; bad ones go to ``rejected`` with their reason in the same
  transaction (within the device's hourly budget, then only counted); then the ack
  ``{"v":1,"ids":[…],"rejected":[{"id","reason"}]}`` goes to ``{prefix}/{site}/{device}/ack``.
- The collector never dies on bad input: anything that cannot be parsed is recorded as
  rejected (with the topic's device) and the loop goes on.
- On every connect (the first one included) it republishes every roster of the store's
  ``rosters`` table retained (docs/topics.md ``{prefix}/{site}/roster``): a broker that lost its
  retained messages (restarted without persistence, replaced) gets them back without anyone
  running ``hall-central roster publish`` again. The hall's schedule likewise
  (central/schedule_publish.py), re-checked every few minutes, and each site's month so far
  for its kiosks (central/summary.py), published again when it changed.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from central.cases.desk import use_config
from central.config import CentralConfig
from central.lanes import Inbound, LaneKey, Lanes
from central.store import (
    CONFLICT,
    BatchWrite,
    Reject,
    Store,
    StoredRoster,
    conflict_rejects,
    open_store,
)
from central.validation import (
    MAX_DATA_DEPTH,
    MAX_REJECT_PAYLOAD,
    Verdict,
    check_batch,
    depth_over,
)
from contract import ID_RE, central_status_topic, parse_device_topic, roster_json
from sync.mqtt import MqttLink

logger = logging.getLogger(__name__)

SHARE_GROUP = "hall-central"

_REPUBLISH = object()  # queued by on_connect: the collector thread republishes the rosters
_ANNOUNCE = object()  # queued by the events SUBACK: the collector thread says it is online
_STOP = object()
ROSTER_PUBACK_TIMEOUT_S = 5.0
# MQTT 5 Receive Maximum: at most this many QoS 1 messages unacknowledged with us. paho
# PUBACKs each message as soon as on_message has queued it (or dropped it): the bounds of
# the queue below are the flow control, per device, so a broker's window to us is never
# held by one device's batches (docs/sync.md "Fairness and isolation").
RECEIVE_MAXIMUM = 50
# The inbound queue (central/lanes.py). A device has at most sync.max_in_flight (≤ 64)
# batches unacknowledged, of at most sync.max_batch_kb (≤ 4096 KiB), so a lane of 64 messages
# and 16 MiB holds every legitimate device's window; more is a flood, and is not taken (its
# device resends after its ack timeout). QoS 0 has no flow control at all (a flood of 4 MB
# messages grew the collector without bound): it gets only what is left of a small budget.
# Agents never publish QoS 0 (docs/topics.md).
LANE_MAX_MESSAGES = 64
LANE_MAX_BYTES = 16 * 1024 * 1024
QUEUE_MAX_BYTES = 256 * 1024 * 1024
QOS0_MAX_MESSAGES = 100
QOS0_MAX_BYTES = 16 * 1024 * 1024
# No batch an agent sends is larger (sync.max_batch_kb ≤ 4096 KiB, agent/config.py); the
# shipped broker config's message_size_limit is the same (config/mosquitto.conf). A larger
# message is not parsed: its first bytes are kept as a reject, within the device's budget.
MAX_MESSAGE_BYTES = 4096 * 1024
OVERSIZE_KEPT_BYTES = 1024
# A group written in one transaction: a round-robin pass over the devices with messages,
# repeated while there is room (one fsync for all; docs/sync.md "Throughput").
GROUP_MAX_MESSAGES = 32
GROUP_MAX_BYTES = 4 * 1024 * 1024
DROP_LOG_EVERY_S = 60.0
STORE_RETRY_S = 1.0  # pause after the store failed a write, so a dead database is not hammered
# How long a refused batch is retried before it is left to its device's resend: below the
# devices' default ack timeout (sync.ack_timeout_s = 30), by which the device has resent it.
STORE_RETRY_FOR_S = 20.0
IDLE_AFTER_S = 0.5  # no group written for this long: the chain verifier may catch up


class Collector:
    """Runs the MQTT link and the single store-writing thread."""

    def __init__(self, cfg: CentralConfig, store: Store | None = None, client_id: str = ""):
        self.cfg = cfg
        self.prefix = cfg.mqtt.prefix
        self.store = store or open_store(
            cfg.store.url, cfg.store.pg_schema, cfg.store.password, timezone=cfg.central.timezone
        )
        self.store.rejected_kept_per_hour = cfg.central.rejected_kept_per_hour
        # 差评 cases open with their rating, deadlines from [cases] on the hall's calendar.
        use_config(self.store, cfg)
        self._own_store = store is None
        self.client_id = client_id or f"{cfg.central.id}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.events_filter = f"$share/{SHARE_GROUP}/{self.prefix}/+/+/events"
        self.status_filter = f"{self.prefix}/+/+/status"
        self.lanes = Lanes(
            lane_messages=LANE_MAX_MESSAGES,
            lane_bytes=LANE_MAX_BYTES,
            total_bytes=QUEUE_MAX_BYTES,
            qos0_messages=QOS0_MAX_MESSAGES,
            qos0_bytes=QOS0_MAX_BYTES,
            retry_s=STORE_RETRY_S,
            give_up_s=STORE_RETRY_FOR_S,
        )
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
            max_inflight=100,
            max_queued=10000,
            receive_maximum=RECEIVE_MAXIMUM,
            name="collector",
        )
        from zoneinfo import ZoneInfo

        from central.schedule_publish import SchedulePublisher

        # The hall's hours: recorded and published from here, the one source (docs/attendance.md).
        self.schedules = SchedulePublisher(
            self.store,
            cfg.schedule,
            ZoneInfo(cfg.central.timezone),
            self.prefix,
            self.link.publish,
        )
        from central.summary import SummaryPublisher

        # Each site's month so far for its kiosks (docs/attendance.md "Your month on the screen"),
        # computed on its own thread: the collector only wakes it.
        self.summaries = SummaryPublisher(
            cfg,
            ZoneInfo(cfg.central.timezone),
            self.prefix,
            self.link.publish,
            self.link.connected.is_set,
            store=None if self._own_store else self.store,
        )
        from central.verifier import ChainVerifier, store_opener

        # The devices' signed chains, checked off the ack path (docs/tamper-centre.md): after
        # each commit the collector only notes which devices have new events.
        self._last_group_at = -IDLE_AFTER_S
        self.verifier = ChainVerifier(
            store_opener(cfg) if self._own_store else (lambda: self.store),
            cfg.chains.gap_grace_s,
            busy=self.busy,
            close_store=self._own_store,
        )
        self.dropped = 0  # messages not taken: a bound of the queue said no
        self._dropped_logged = 0
        self._drop_log_at = -DROP_LOG_EVERY_S
        # device -> (last logged at, inputs left out since)
        self._garbage_log: dict[str | None, tuple[float, int]] = {}
        self.batches = 0
        self.events_stored = 0
        self.rejected = 0
        self.deferred = 0
        self.errors = 0
        self.store_errors = 0  # writes the store failed or refused (retried, not acked)
        self.rosters_republished = 0  # rosters the broker acknowledged (PUBACK)
        self.roster_rounds = 0  # connects whose roster republish has finished

    def _on_connect(self, client: Any) -> None:
        self.ready.clear()
        _rc, self._events_mid = client.subscribe(self.events_filter, qos=1)
        client.subscribe(self.status_filter, qos=1)
        # The store read and the PUBACK waits happen on the collector thread, never here
        # (paho's thread: docs/architecture.md#mqtt-callbacks).
        self.lanes.put_control(_REPUBLISH)

    def _on_subscribe(self, mid: int, reason_codes: list[Any]) -> None:
        if mid == self._events_mid and not any(
            getattr(rc, "is_failure", False) for rc in reason_codes
        ):
            self.ready.set()
            self.lanes.put_control(_ANNOUNCE)

    def _lane_of(self, topic: str) -> LaneKey:
        parts = topic.split("/")
        if len(parts) == 4 and parts[0] == self.prefix:
            return parts[1][:64], parts[2][:64]
        return "", ""

    def _on_message(self, _client: Any, _userdata: Any, msg: Any) -> None:
        # paho's thread: never block, never parse. Queue the message in its device's lane,
        # only a prefix of one over MAX_MESSAGE_BYTES, or drop it when a bound says no.
        payload = msg.payload
        size = len(payload)
        if size > MAX_MESSAGE_BYTES:
            payload = payload[:OVERSIZE_KEPT_BYTES]
        item = Inbound(
            msg.topic,
            payload,
            msg.qos,
            bool(getattr(msg, "retain", False)),
            size,
            self._lane_of(msg.topic),
        )
        if self.lanes.put(item):
            return
        self.dropped += 1
        now = time.monotonic()
        if now - self._drop_log_at >= DROP_LOG_EVERY_S:
            messages, queued = self.lanes.queued()
            logger.warning(
                "collector: queue bound reached (%d messages, %d bytes queued); dropped %d "
                "messages since the last report (%d in all), latest on %s (QoS %d, %d bytes); "
                "their devices resend them",
                messages,
                queued,
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
        self.summaries.start()
        self.verifier.start()
        self.link.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.lanes.put_control(_STOP)
        self.summaries.stop(timeout)
        self.verifier.stop(timeout)
        self.link.stop(timeout)
        if self._thread is not None:
            self._thread.join(timeout)
        if self._own_store:
            self.store.close()

    def busy(self) -> bool:
        """Batches are coming in: a group written in the last IDLE_AFTER_S, or messages
        queued. The chain verifier then takes only a small share (central/verifier.py)."""
        if time.monotonic() - self._last_group_at < IDLE_AFTER_S:
            return True
        return self.lanes.queued()[0] > 0

    def alive(self) -> bool:
        """The store-writing thread and the link's keeper both run (the watchdog's question)."""
        return self._thread is not None and self._thread.is_alive() and self.link.alive()

    def wait_connected(self, timeout: float) -> bool:
        """Wait until connected and subscribed to the event batches."""
        return self.ready.wait(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            job = self.lanes.take(GROUP_MAX_MESSAGES, GROUP_MAX_BYTES)
            if job is _STOP:
                break
            if job is _ANNOUNCE:
                self._announce()
            elif job is _REPUBLISH:
                try:
                    self.republish_rosters()
                except Exception:  # never let a roster problem end the collector thread
                    logger.exception("collector: roster republish failed")
                self.schedules.publish(force=True)
                self.summaries.kick(force=True)
            elif job:
                self._last_group_at = time.monotonic()
                try:
                    self._write_group(job)
                except Exception:  # a bug here must not end the thread; the devices resend
                    self.errors += 1
                    logger.exception("collector: a group of %d messages failed", len(job))
            if self.link.connected.is_set():
                self.schedules.tick(time.monotonic())

    def _write_group(self, items: list[Inbound]) -> None:
        """Validate, write in one transaction, then ack every batch of ``items``.

        A store that fails or refuses the write (PostgreSQL restarting, a constraint or
        trigger, disk full, read-only) has said nothing about the events: nothing is acked,
        and the group is written again device by device, so that only the devices whose
        batches the store refuses wait (their lanes are parked and retried alone every
        STORE_RETRY_S, docs/reliability.md). Bad input never gets here: check_batch turns
        every parse or validation failure into a verdict."""
        work: list[tuple[Inbound, Verdict]] = []
        for item in items:
            if item.topic.endswith("/status"):
                self._handle_status(item.topic, item.payload, item.retain)
            else:
                work.append((item, self.verdict(item)))
        if not work:
            self._done({item.lane for item in items})
            return
        try:
            self._write([v for _, v in work])
        except Exception as exc:
            self._store_failed(exc, work)
            return
        self._done({item.lane for item in items})
        for _item, verdict in work:
            self._settle(verdict)

    def _done(self, keys: set[LaneKey]) -> None:
        for (site, device), failures in self.lanes.done(keys).items():
            logger.info(
                "collector: store takes the batches of %s/%s again after %d failed tries",
                site,
                device,
                failures,
            )

    def _store_failed(self, exc: Exception, work: list[tuple[Inbound, Verdict]]) -> None:
        self.errors += 1
        self.store_errors += 1
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        by_lane: dict[LaneKey, list[tuple[Inbound, Verdict]]] = {}
        for item, verdict in work:
            by_lane.setdefault(item.lane, []).append((item, verdict))
        if len(by_lane) == 1:
            [(key, lane_work)] = by_lane.items()
            self._park(key, lane_work, why)
            return
        # Which device's batch did the store refuse? Each device on its own.
        refused = 0
        for key, lane_work in by_lane.items():
            try:
                self._write([v for _, v in lane_work])
            except Exception as again:
                refused += 1
                self.store_errors += 1
                self._park(key, lane_work, str(again).splitlines()[0] or type(again).__name__)
                continue
            self._done({key})
            for _item, verdict in lane_work:
                self._settle(verdict)
        if refused == len(by_lane):
            logger.error("collector: the store takes no batch (%s); retrying once a second", why)
            self.lanes.store_down()

    def _park(self, key: LaneKey, lane_work: list[tuple[Inbound, Verdict]], why: str) -> None:
        failures = self.lanes.park(key, [item for item, _ in lane_work])
        if failures % 60 == 0:
            logger.error(
                "collector: store still refuses the batches of %s/%s (%s) after %d tries; "
                "those waiting over %.0f s are left to the device's resend",
                key[0],
                key[1],
                why,
                failures,
                STORE_RETRY_FOR_S,
            )
        elif failures == 1:
            logger.error(
                "collector: store did not take %d batch(es) of %s/%s (%s); retrying that "
                "device alone every %.0f s for up to %.0f s, not acked; other devices go on",
                len(lane_work),
                key[0],
                key[1],
                why,
                STORE_RETRY_S,
                STORE_RETRY_FOR_S,
            )

    def verdict(self, item: Inbound) -> Verdict:
        """The validation verdict of one events message; never raises."""
        if item.oversize:
            return self._whole_batch_rejected(
                item,
                f"batch: {item.size} bytes; expected at most {MAX_MESSAGE_BYTES} "
                "(not read; the largest batch an agent sends)",
                item.payload,
            )
        try:
            return check_batch(
                item.topic,
                item.payload,
                prefix=self.prefix,
                max_bytes=self.cfg.central.max_payload_kb * 1024,
                max_events=self.cfg.central.max_batch_events,
            )
        except Exception as exc:  # a check we got wrong: a verdict, never a store back-off
            logger.exception("check_batch failed on %s", item.topic)
            return self._whole_batch_rejected(
                item, f"invalid batch ({type(exc).__name__})", item.payload[:MAX_REJECT_PAYLOAD]
            )

    def _whole_batch_rejected(self, item: Inbound, reason: str, kept: bytes) -> Verdict:
        """A verdict rejecting the whole message, ``kept`` being what `rejected` may hold."""
        where = parse_device_topic(item.topic, self.prefix, "events")
        verdict = Verdict(*(where or (None, None)))
        verdict.rejects = [
            Reject(None, verdict.device, reason, kept.decode("utf-8", errors="replace"), item.size)
        ]
        return verdict

    def handle(self, topic: str, payload: bytes, retained: bool = False) -> None:
        """One message, synchronously (validate, write, ack); raises when the store fails."""
        if topic.endswith("/status"):
            self._handle_status(topic, payload, retained)
            return
        verdict = self.verdict(Inbound(topic, payload, 1, retained, len(payload), ("", "")))
        self._write([verdict])
        self._settle(verdict)

    def _settle(self, verdict: Verdict) -> None:
        """After the commit: counters, logs and the end-to-end ack of one batch."""
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
        try:
            self.link.publish(f"{self.prefix}/{verdict.site}/{verdict.device}/ack", ack, qos=1)
        except (RuntimeError, ValueError) as exc:  # paho: not connected, queue full
            # Stored; the device resends after its ack timeout and is acked then.
            logger.warning(
                "collector: ack to %s/%s not sent: %s", verdict.site, verdict.device, exc
            )
        if verdict.good:
            # Committed and acked: the verifier checks the chain later, on its own thread.
            self.verifier.note(verdict.site, verdict.device, min(e.seq for e in verdict.good))

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

    def _write(self, verdicts: list[Verdict]) -> None:
        """Write batches in one transaction; returns after the commit, raises on any failure.

        Only validation rejects (docs/topics.md). A store that fails or refuses the write (a
        constraint or trigger, disk full, read-only file, PostgreSQL down) has said nothing
        about the events: the exception propagates and nothing is acked. Turning such a
        refusal into ``rejected`` rows would move good events to the devices' dead letters
        for good.
        """
        batches = [BatchWrite(v.good, v.rejects) for v in verdicts]
        self.store.write_batches(batches)
        for verdict, batch in zip(verdicts, batches, strict=True):
            if not batch.conflicts:
                continue
            taken = {e.id for e in batch.conflicts}
            verdict.good = [e for e in verdict.good if e.id not in taken]
            verdict.rejects = [*verdict.rejects, *conflict_rejects(batch.conflicts)]
            for e in batch.conflicts:
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
                except Exception as exc:  # the one just published stands until the next connect
                    logger.warning(
                        "collector: roster of %s not read again after its publish (%s); "
                        "a newer one is published on the next connect",
                        stored.site,
                        exc,
                    )
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
            return
        self.schedules.site_seen(where[0])
        self.summaries.site_seen(where[0])


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
