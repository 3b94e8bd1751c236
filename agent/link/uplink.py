"""Uplink: the outbox to the centre over MQTT, end-to-end at-least-once (docs/topics.md).

- Batches of up to ``sync.batch_size`` events and ``sync.max_batch_kb`` KiB, in ``seq``
  order, are published (QoS 1) to ``{prefix}/{site}/{device}/events`` as
  ``{"v":1,"device","site","events":[…]}``; the event JSON is spliced in from the outbox
  text as stored, never re-serialised.
- At most ``sync.max_in_flight`` batches are unacked at once. An event leaves the outbox only
  when the centre's ack names it (a broker PUBACK is not enough); rejected ids move to the
  dead-letter table. A batch unacked after ``sync.ack_timeout_s``, or any batch in flight when
  the connection comes back, is sent again from the oldest pending event (go-back-N): the
  centre stores each id once and acks it again, so a resend never duplicates a row.
- paho's own queue is bounded to the window (plus status): it is not the buffer, the outbox is.
  ``on_publish`` tracks each batch by ``mid`` and checks the PUBACK reason code; an MQTT 5
  refusal (0x87 not authorised, e.g. an ACL) means the batch was not delivered: it is logged,
  shown in status and resent after the ack timeout.
- Retained status with a will (``offline``), republished on every connect and every
  ``sync.status_interval_s``; an explicit ``offline`` is published on a clean stop.
- The roster (downlink) arrives on the same connection and is handed to
  :class:`agent.link.downlink.RosterKeeper`; on a kiosk the hall's schedule likewise, to
  :class:`agent.link.downlink.ScheduleKeeper`, and the site's month so far to
  :class:`agent.link.downlink.SummaryKeeper`.
- One uplink per outbox: the worker holds an exclusive ``flock`` on ``<data_dir>/uplink.lock``
  while it runs. ``hall-agent ping`` uses it to tell whether a running agent will deliver its
  events or whether it has to start an uplink itself (docs/sync.md, "ping").

Everything that touches state runs on the worker's own thread; paho callbacks only put items
on a queue (docs/architecture.md#mqtt-callbacks).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from paho.mqtt.enums import MQTTErrorCode

from agent.config import AgentConfig
from agent.link.downlink import RosterKeeper, ScheduleKeeper, SummaryKeeper
from agent.link.lock import UplinkLock
from agent.outbox import Outbox, PendingEvent
from contract import __version__, central_status_topic, device_topic, roster_topic
from contract.topics import schedule_topic, summary_topic
from sync.mqtt import MqttLink, describe_rc

logger = logging.getLogger(__name__)

# How often an idle uplink looks for events appended by another process (`hall-agent ping`
# beside a running agent). Measured on an idle window agent: 0.65 % of a core at 20 ms against
# 0.4 % at 200 ms, for ping round trips on a running box in tens of ms instead of ~240 ms.
POLL_S = 0.02
# While disconnected nothing can be sent: the loop only waits for the "connected" item, which
# wakes it at once. A wait computed from deadlines (status due, a batch overdue) is 0 then, and
# a zero wait spins a core for as long as the broker is away (docs/architecture.md#busy-loops).
IDLE_WAIT_S = 1.0
# Even connected, never wait less than this: a deadline that _tick could not move (a publish
# deferred by a full paho queue) must not turn the loop into a spin either.
MIN_WAIT_S = 0.005
TICK_RETRY_S = 1.0  # pause after a tick failed (the outbox could not be read)
BATCH_TAIL = b"]}"


def topics(prefix: str, site: str, device: str) -> dict[str, str]:
    """The device's topics (docs/topics.md), built only from validated ids."""
    return {
        "events": device_topic(prefix, site, device, "events"),
        "ack": device_topic(prefix, site, device, "ack"),
        "status": device_topic(prefix, site, device, "status"),
        "roster": roster_topic(prefix, site),
        "schedule": schedule_topic(prefix, site),
        "summary": summary_topic(prefix, site),
        # A collector's "online" announcement: resend in-flight now.
        "central": central_status_topic(prefix),
    }


# --- what other threads hand the uplink thread (never block in a callback: DESIGN habit 4) ---


@dataclass(frozen=True)
class Wake:
    """The outbox has new events."""


@dataclass(frozen=True)
class Stop:
    """The worker is being stopped."""


@dataclass(frozen=True)
class Connected:
    """paho connected (and subscribed): resend what was in flight, then send."""


@dataclass(frozen=True)
class Disconnected:
    why: str


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retained: bool


@dataclass(frozen=True)
class PubAck:
    mid: int
    reason_code: Any


QueueItem = Wake | Stop | Connected | Disconnected | Received | PubAck


@dataclass
class _Batch:
    first_seq: int
    last_seq: int
    ids: set[str]
    sent_at: float
    mid: int
    size: int
    refused: str | None = None
    delivered: bool = False


@dataclass
class _Counters:
    batches_sent: int = 0
    events_sent: int = 0
    events_acked: int = 0
    events_rejected: int = 0
    resends: int = 0
    refused: int = 0


def _now_iso(tz: ZoneInfo | None = None) -> str:
    return datetime.now(tz or UTC).isoformat(timespec="milliseconds")


class Uplink:
    """The uplink worker (agent.supervisor.Worker protocol)."""

    name = "uplink"
    stall_after_s = 120.0

    def __init__(
        self,
        cfg: AgentConfig,
        outbox: Outbox,
        supervisor_health: Callable[[], dict[str, Any]] | None = None,
        *,
        client_id: str | None = None,
    ):
        self.cfg = cfg
        self.outbox = outbox
        self.supervisor_health = supervisor_health or dict
        self.sync = cfg.sync
        self.tz = ZoneInfo(cfg.device.timezone)
        self.topics = topics(cfg.mqtt.prefix, cfg.device.site, cfg.device.id)
        self.client_id = client_id or f"{cfg.device.site}-{cfg.device.id}"
        self._prefix = (
            '{"v":1,"device":'
            + json.dumps(cfg.device.id)
            + ',"site":'
            + json.dumps(cfg.device.site)
            + ',"events":['
        )
        self.lock = UplinkLock(cfg.device.data_dir)
        self.roster = RosterKeeper(cfg.device.data_dir)
        # Kiosks only: the hall's hours they classify punches by (docs/attendance.md).
        # And each staff member's month so far, shown after a punch.
        self.schedule: ScheduleKeeper | None = None
        self.summary: SummaryKeeper | None = None
        if cfg.attendance is not None:
            self.schedule = ScheduleKeeper(cfg.device.data_dir)
            self.summary = SummaryKeeper(cfg.device.data_dir, cfg.device.site)
        self._subscribed = ("ack", "roster", "central") + (
            ("schedule", "summary") if cfg.attendance is not None else ()
        )
        self._q: queue.SimpleQueue[QueueItem] = queue.SimpleQueue()
        self._wake_pending = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last = time.monotonic()
        self._inflight: dict[int, _Batch] = {}  # mid -> batch
        self._by_id: dict[str, _Batch] = {}
        self._cursor = 0
        self._online = False
        self._next_status = 0.0
        self._sub_mid: int | None = None
        self._ack_listeners: list[Callable[[list[str]], None]] = []
        self.counters = _Counters()
        self.lock_error: str | None = None
        self.refused_error: str | None = None
        self.link: MqttLink | None = None
        self.handler_errors = 0

    # --- Worker protocol ----------------------------------------------------------------

    def start(self) -> None:
        # Removed again in _shutdown: the supervisor builds a new Uplink on every restart,
        # and each one left behind would be woken on every append for the agent's lifetime.
        self.outbox.add_listener(self._on_append)
        self._thread = threading.Thread(target=self._run, name="uplink", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._q.put(Stop())
        if self._thread is not None:
            self._thread.join(timeout)

    def alive(self) -> bool:
        # The link's keeper thread counts too: a device whose keeper died would look alive
        # while never reconnecting; the supervisor restarts the worker, which builds a new
        # link (docs/reliability.md#the-link-keeper).
        link = self.link
        link_died = link is not None and link.died()
        return self._thread is not None and self._thread.is_alive() and not link_died

    def last_activity(self) -> float:
        return self._last

    def health(self) -> dict[str, Any]:
        link = self.link
        connected = bool(link and link.connected.is_set())
        out: dict[str, Any] = {
            "state": "ok",
            "connected": connected,
            "in_flight": len(self._inflight),
        }
        deaf = link.subscribe_error if link else None  # acks can never arrive
        problem = (
            self.lock_error or self.refused_error or deaf or (link.last_error if link else None)
        )
        if self.roster.last_error:
            out["roster"] = self.roster.last_error
        for name, kept in (("schedule", self.schedule), ("summary", self.summary)):
            if kept is not None and kept.last_error:
                out[name] = kept.last_error
                if out["state"] == "ok":
                    out["state"] = "degraded"
        if self.lock_error or self.refused_error or deaf:
            out["state"] = "fault"
        elif not connected:
            out["state"] = "degraded"
        if problem and out["state"] != "ok":
            out["detail"] = problem
        return out

    def add_ack_listener(self, callback: Callable[[list[str]], None]) -> None:
        """Call ``callback(ids)`` on the uplink thread after acked ids left the outbox."""
        self._ack_listeners.append(callback)

    # --- callbacks from other threads (never block) -------------------------------------

    def _on_append(self) -> None:
        if not self._wake_pending.is_set():
            self._wake_pending.set()
            self._q.put(Wake())

    def _on_connect(self, client: Any) -> None:
        # paho's thread: subscribing does not block; everything else goes to the queue.
        # One SUBSCRIBE, so that one SUBACK says which of them the broker granted.
        _rc, self._sub_mid = client.subscribe([(self.topics[t], 1) for t in self._subscribed])
        self._q.put(Connected())

    def _on_subscribe(self, mid: int, reason_codes: list[Any]) -> None:
        """paho's thread. Without acks (or the roster) the uplink is deaf: a fault, as the link
        recorded. The collectors' announcements are optional (a broker whose ACL predates them
        refuses that one subscription): resends then wait for the ack timeout, nothing worse."""
        if mid != self._sub_mid or self.link is None:
            return
        if len(reason_codes) != len(self._subscribed):
            return
        refused = [getattr(rc, "is_failure", False) for rc in reason_codes]
        if len(refused) > 3 and refused[3] and self.schedule is not None:
            # A broker account set up before schedules were published: the kiosk keeps
            # classifying by the last schedule it stored (or the regulation's hours).
            self.schedule.last_error = (
                f"broker refused {self.topics['schedule']} ({describe_rc(reason_codes[3])}): "
                "run 'hall-broker.sh add-device' for this device again (docs/broker.md)"
            )
            logger.error("%s", self.schedule.last_error)
        if len(refused) > 4 and refused[4] and self.summary is not None:
            # An account set up before summaries were published: punches are unaffected,
            # the screen shows no month line after a punch.
            self.summary.last_error = (
                f"broker refused {self.topics['summary']} ({describe_rc(reason_codes[4])}): "
                "run 'hall-broker.sh add-device' for this device again (docs/broker.md)"
            )
            logger.error("%s", self.summary.last_error)
        if refused[2]:
            logger.info(
                "broker refused %s (%s): in-flight batches are resent after the ack timeout "
                "when a collector comes back, not at once",
                self.topics["central"],
                describe_rc(reason_codes[2]),
            )
        if not (refused[0] or refused[1]):
            self.link.subscribe_error = None

    def _on_disconnect(self, why: str) -> None:
        self._q.put(Disconnected(why))

    def _on_message(self, _client: Any, _userdata: Any, msg: Any) -> None:
        self._q.put(Received(msg.topic, msg.payload, bool(msg.retain)))

    def _on_publish(
        self, _client: Any, _userdata: Any, mid: int, reason_code: Any, _props: Any
    ) -> None:
        self._q.put(PubAck(mid, reason_code))

    # --- the worker thread ---------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.is_set() and not self.lock.acquire():
                self.lock_error = (
                    f"another uplink (pid {self.lock.holder()}) is draining this outbox "
                    f"({self.lock.path})"
                )
                logger.error("%s; waiting", self.lock_error)
                self._last = time.monotonic()
                self._stop.wait(2.0)
            if self._stop.is_set():
                return
            self.lock_error = None
            will = json.dumps(
                {"v": 1, "state": "offline", "version": __version__, "at": _now_iso(self.tz)}
            ).encode()
            w = self.sync.max_in_flight
            self.link = MqttLink(
                self.cfg.mqtt,
                self.client_id,
                on_connect=self._on_connect,
                on_subscribe=self._on_subscribe,
                on_disconnect=self._on_disconnect,
                on_message=self._on_message,
                on_publish=self._on_publish,
                will=(self.topics["status"], will, 1, True),
                # The window plus a status message and a spare: paho never holds more.
                max_inflight=w + 2,
                max_queued=w + 4,
                name="uplink",
            )
            self.link.start()
            self._loop()
        except Exception:
            logger.exception("uplink failed")
            raise
        finally:
            self._shutdown()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._last = time.monotonic()
            try:
                item = self._q.get(timeout=self._wait_s())
            except queue.Empty:
                item = None
            while item is not None:
                try:
                    self._handle(item)
                except Exception:
                    # One item must not end the uplink (e.g. outbox.ack failing on a full
                    # disk): an ack that could not be applied leaves its batch in flight, so
                    # it is resent after the ack timeout and the centre acks it again.
                    self.handler_errors += 1
                    logger.exception(
                        "uplink: could not handle %s; carrying on", type(item).__name__
                    )
                try:
                    item = self._q.get_nowait()
                except queue.Empty:
                    item = None
            if self._stop.is_set():
                break
            try:
                self._tick()
            except Exception:
                # outbox.pending() failing (disk, lock): retry after a pause, not 5 times a
                # second, and without ending the thread (the supervisor gives up on restarts).
                self.handler_errors += 1
                logger.exception("uplink: tick failed; retrying in %.0f s", TICK_RETRY_S)
                self._stop.wait(TICK_RETRY_S)

    def _wait_s(self) -> float:
        if not self._connected():
            return IDLE_WAIT_S
        now = time.monotonic()
        wait = min(POLL_S, self._next_status - now)
        for batch in self._inflight.values():
            wait = min(wait, batch.sent_at + self.sync.ack_timeout_s - now)
        return max(MIN_WAIT_S, wait)

    def _connected(self) -> bool:
        # Our own flag, set when the "connected" item is handled (after the go-back), not
        # paho's: sending before that would send the first batches twice.
        return self._online and self.link is not None and self.link.connected.is_set()

    def _handle(self, item: QueueItem) -> None:
        match item:
            case Wake():
                self._wake_pending.clear()
            case Connected():
                # Whatever was in flight may have been lost with the old connection (clean
                # session): send it again from the oldest pending event.
                if self._inflight:
                    logger.info("reconnected: resending %d unacked batches", len(self._inflight))
                self._go_back()
                self._online = True
                self._next_status = 0.0
            case Disconnected():
                self._online = False
            case PubAck(mid, reason_code):
                self._on_puback(mid, reason_code)
            case Received(topic, payload, retained):
                if topic == self.topics["ack"]:
                    self._on_ack(payload)
                elif topic == self.topics["roster"]:
                    self.roster.handle(payload)
                elif topic == self.topics["schedule"] and self.schedule is not None:
                    self.schedule.handle(payload)
                elif topic == self.topics["summary"] and self.summary is not None:
                    self.summary.handle(payload)
                elif topic == self.topics["central"] and not retained:
                    self._on_central_online(payload)
            case Stop():
                pass  # the loop checks the stop flag

    def _on_central_online(self, payload: bytes) -> None:
        """A collector (re)subscribed: batches sent while none was listening are lost, so
        send what is in flight again now instead of after the whole ack timeout."""
        try:
            state = json.loads(payload).get("state")
        except (ValueError, AttributeError, RecursionError):
            return
        if state != "online" or not self._inflight:
            return
        logger.info("a collector came online: resending %d unacked batches", len(self._inflight))
        self._go_back()

    def _go_back(self) -> None:
        """Send again from the oldest pending event; every batch in flight counts as a resend."""
        self.counters.resends += len(self._inflight)
        self._inflight.clear()
        self._by_id.clear()
        self._cursor = 0

    def _tick(self) -> None:
        if not self._connected():
            return
        now = time.monotonic()
        expired = [b for b in self._inflight.values() if now - b.sent_at >= self.sync.ack_timeout_s]
        if expired:
            first = min(expired, key=lambda b: b.first_seq)
            logger.warning(
                "no ack for events %d..%d after %.0f s%s; resending from the oldest pending",
                first.first_seq,
                first.last_seq,
                self.sync.ack_timeout_s,
                f" (broker refused: {first.refused})" if first.refused else "",
            )
            self._go_back()
        self._fill()
        if now >= self._next_status:
            self._publish_status()
            self._next_status = now + self.sync.status_interval_s

    def _fill(self) -> None:
        assert self.link is not None
        while len(self._inflight) < self.sync.max_in_flight and not self._stop.is_set():
            rows = self.outbox.pending(self.sync.batch_size, after_seq=self._cursor)
            if not rows:
                return
            rows, data = self._pack(rows)
            info = self.link.publish(self.topics["events"], data, qos=1)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                # Queue full (old messages from before a reconnect) or the link just dropped:
                # nothing was taken on; try again on the next tick.
                logger.debug("publish deferred: %s", describe_rc(info.rc))
                return
            batch = _Batch(
                first_seq=rows[0].seq,
                last_seq=rows[-1].seq,
                ids={r.id for r in rows},
                sent_at=time.monotonic(),
                mid=info.mid,
                size=len(data),
            )
            self._inflight[info.mid] = batch
            for r in rows:
                self._by_id[r.id] = batch
            self._cursor = rows[-1].seq
            self.counters.batches_sent += 1
            self.counters.events_sent += len(rows)

    def _pack(self, rows: list[PendingEvent]) -> tuple[list[PendingEvent], bytes]:
        """The longest prefix of ``rows`` whose batch fits ``sync.max_batch_kb``, and its bytes.

        The centre refuses a batch over its ``central.max_payload_kb`` (default 4096, above
        this cap's maximum), so the agent never sends one. A single event larger than the
        cap still goes out, alone: the centre then judges that event by itself.
        """
        limit = self.sync.max_batch_kb * 1024
        prefix = self._prefix.encode("utf-8")
        parts: list[bytes] = []
        size = len(prefix) + len(BATCH_TAIL)
        for row in rows:
            body = row.body.encode("utf-8")
            extra = len(body) + (1 if parts else 0)  # the comma
            if parts and size + extra > limit:
                break
            parts.append(body)
            size += extra
        return rows[: len(parts)], prefix + b",".join(parts) + BATCH_TAIL

    def _on_puback(self, mid: int, reason_code: Any) -> None:
        batch = self._inflight.get(mid)
        if batch is None:
            return  # a status message, or a batch already settled or given up on
        if getattr(reason_code, "is_failure", False):
            # MQTT 5: the broker refused the publish (0x87 not authorised: ACL). The batch
            # was NOT delivered; it is resent after the ack timeout, and status shows why.
            batch.refused = describe_rc(reason_code)
            self.counters.refused += 1
            self.refused_error = (
                f"broker refused events {batch.first_seq}..{batch.last_seq} on "
                f"{self.topics['events']}: {batch.refused}"
            )
            logger.error("%s", self.refused_error)
        else:
            batch.delivered = True
            self.refused_error = None

    def _on_ack(self, payload: bytes) -> None:
        try:
            ack = json.loads(payload)
            ids = ack["ids"]
            rejected = ack.get("rejected") or []
            if ack.get("v") != 1 or not isinstance(ids, list) or not isinstance(rejected, list):
                raise ValueError("expected {'v':1,'ids':[…],'rejected':[…]}")
            ids = [i for i in ids if isinstance(i, str)]
            rejects = [
                (r["id"], str(r.get("reason", "rejected by the centre")))
                for r in rejected
                if isinstance(r, dict) and isinstance(r.get("id"), str)
            ]
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("ignoring malformed ack on %s: %s", self.topics["ack"], exc)
            return
        if ids:
            self.outbox.ack(ids)
        for event_id, reason in rejects:
            logger.error("centre rejected event %s: %s (moved to dead letters)", event_id, reason)
            self.outbox.reject(event_id, reason)
        settled = ids + [r[0] for r in rejects]
        self.counters.events_acked += len(ids)
        self.counters.events_rejected += len(rejects)
        for event_id in settled:
            batch = self._by_id.pop(event_id, None)
            if batch is not None:
                batch.ids.discard(event_id)
                if not batch.ids:
                    self._inflight.pop(batch.mid, None)
        if rejects:
            self._next_status = 0.0  # docs/topics.md: a rejected event shows in status
        for callback in self._ack_listeners:
            try:
                callback(settled)
            except Exception:
                logger.exception("ack listener failed")

    def status_payload(self, state: str = "online") -> dict[str, Any]:
        stats = self.outbox.stats()
        try:
            components = self.supervisor_health()
        except Exception as exc:  # status must go out even when a health() is broken
            components = {"supervisor": {"state": "fault", "detail": str(exc)}}
        components = dict(components)
        components.setdefault(self.name, self.health())
        if self.outbox.signer is not None:
            # Events held unsigned (a key file unreadable) show here: docs/device-keys.md.
            components.setdefault("signing", self.outbox.signing_health())
        return {
            "v": 1,
            "state": state,
            "version": __version__,
            "outbox": {
                "pending": stats.pending,
                "oldest_s": None if stats.oldest_s is None else round(stats.oldest_s, 1),
                "dead_letter": stats.dead_letter,
                "bytes": stats.bytes,
            },
            "components": components,
            "at": _now_iso(self.tz),
        }

    def _publish_status(self, state: str = "online") -> Any:
        assert self.link is not None
        payload = json.dumps(self.status_payload(state), ensure_ascii=False).encode("utf-8")
        info = self.link.publish(self.topics["status"], payload, qos=1, retain=True)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._next_status = time.monotonic() + 1.0
        return info

    def _shutdown(self) -> None:
        self.outbox.remove_listener(self._on_append)
        link = self.link
        if link is not None:
            if link.connected.is_set():
                # A clean DISCONNECT does not fire the will: say offline ourselves.
                try:
                    info = self._publish_status("offline")
                    if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                        info.wait_for_publish(timeout=2.0)
                except Exception:
                    logger.exception("could not publish offline status")
            link.stop()
        self.lock.release()


def uplink_worker_factories(
    cfg: AgentConfig, outbox: Outbox, supervisor_health: Callable[[], dict[str, Any]]
) -> dict[str, Callable[[], Uplink]]:
    """For agent/runtime.py: one uplink per device."""
    return {"uplink": lambda: Uplink(cfg, outbox, supervisor_health)}
