"""The collector's inbound queue: one lane per device, served round-robin (docs/sync.md
"Fairness and isolation").

paho's network thread puts every message into the lane of the device its topic names
(:meth:`Lanes.put`, never blocking); the store thread takes groups of messages to write in one
transaction (:meth:`Lanes.take`), one message per lane per round, so a device with a backlog or
a flood costs every other device at most one group's wait.

A lane whose write the store refused is *parked*: its messages go back to the front of the
lane, in order, and it is left out of the groups; it is retried alone every ``retry_s``
(:meth:`Lanes.take` hands it out as a group of its own), so one device's refused batch never
delays another's. A message that has waited longer than ``give_up_s`` when its parked lane is
retried is left to its device's resend (the device resent it already, after its ack timeout).

When every lane of a group failed, the store itself is down: :meth:`store_down` holds every
lane and lets one retry through per ``retry_s`` until a write succeeds (:meth:`store_up`), so a
dead database is tried once a second, not once per device.

Bounds: a lane holds at most ``lane_messages`` messages and ``lane_bytes`` bytes, all lanes at
most ``total_bytes``; QoS 0 messages (no flow control, and agents never send them) only within
``qos0_messages``/``qos0_bytes``. A message beyond a bound is not taken: :meth:`put` returns
False and the caller counts it; its device resends after its ack timeout.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

LaneKey = tuple[str, str]  # (site, device) of the topic; ("", "") when it names none


@dataclass
class Inbound:
    """One MQTT message for the store thread."""

    topic: str
    payload: bytes  # cut to a prefix when ``size`` is over the collector's cap (not parsed)
    qos: int
    retain: bool
    size: int  # bytes received
    lane: LaneKey
    at: float = field(default_factory=time.monotonic)  # when it was received

    @property
    def oversize(self) -> bool:
        return self.size > len(self.payload)


@dataclass
class Lane:
    key: LaneKey
    queue: deque[Inbound] = field(default_factory=deque)
    bytes: int = 0
    parked_until: float | None = None  # monotonic time of the next retry; None: not parked
    failures: int = 0  # consecutive failed writes


class Lanes:
    def __init__(
        self,
        *,
        lane_messages: int,
        lane_bytes: int,
        total_bytes: int,
        qos0_messages: int,
        qos0_bytes: int,
        retry_s: float,
        give_up_s: float,
    ):
        self.lane_messages = lane_messages
        self.lane_bytes = lane_bytes
        self.total_bytes = total_bytes
        self.qos0_messages = qos0_messages
        self.qos0_bytes = qos0_bytes
        self.retry_s = retry_s
        self.give_up_s = give_up_s
        self._cond = threading.Lock()
        # The store thread sleeps on this doorbell, not on a Condition: a put() rings it only
        # when the store thread is (about to be) asleep, and a ring is one C-level queue
        # hand-off, the cheapest wake-up on a ping's round trip (docs/sync.md "ping").
        self._bell: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._sleeping = False
        self._lanes: dict[LaneKey, Lane] = {}
        self._ready: deque[Lane] = deque()  # lanes with messages, not parked, in serving order
        self._controls: deque[Any] = deque()
        self._messages = 0
        self._bytes = 0
        self._store_down_until: float | None = None
        self._gave_up = 0

    def _ring(self) -> None:
        """Wake the store thread if it sleeps (called with the lock held)."""
        if self._sleeping:
            self._sleeping = False
            self._bell.put(None)

    # -- paho's thread ---------------------------------------------------------------------

    def put(self, item: Inbound) -> bool:
        """Queue ``item`` in its device's lane; False when a bound says no (never blocks)."""
        size = len(item.payload)
        with self._cond:
            lane = self._lanes.get(item.lane)
            if lane is None:
                lane = self._lanes[item.lane] = Lane(item.lane)
            if item.qos == 0:
                admit = (
                    self._messages < self.qos0_messages and self._bytes + size <= self.qos0_bytes
                )
            else:
                admit = self._bytes + size <= self.total_bytes
            admit = (
                admit
                and len(lane.queue) < self.lane_messages
                and (not lane.queue or lane.bytes + size <= self.lane_bytes)
            )
            if not admit:
                if not lane.queue and lane.parked_until is None:
                    del self._lanes[item.lane]
                return False
            lane.queue.append(item)
            lane.bytes += size
            self._messages += 1
            self._bytes += size
            if len(lane.queue) == 1 and lane.parked_until is None:
                self._ready.append(lane)
            self._ring()
            return True

    def put_control(self, token: Any) -> None:
        """A job for the store thread ahead of any message (roster republish, stop)."""
        with self._cond:
            self._controls.append(token)
            self._ring()

    # -- the store thread ------------------------------------------------------------------

    def take(self, max_messages: int, max_bytes: int, timeout: float = 1.0) -> Any:
        """The next control token, or a list of messages to write together (one lane's
        retry alone, or a round-robin group), or [] after ``timeout`` with nothing to do."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self._controls:
                    return self._controls.popleft()
                now = time.monotonic()
                retry = self._due_retry(now)
                if retry:
                    return retry
                if self._store_down_until is None and self._ready:
                    return self._group(max_messages, max_bytes)
                wake = min(deadline, self._next_retry_at())
                if now >= deadline:
                    return []
                self._sleeping = True
                self._cond.release()
                try:
                    with contextlib.suppress(queue.Empty):
                        self._bell.get(timeout=max(0.0, wake - now))
                finally:
                    self._cond.acquire()
                    self._sleeping = False

    def _group(self, max_messages: int, max_bytes: int) -> list[Inbound]:
        group: list[Inbound] = []
        used = 0
        while self._ready and len(group) < max_messages and used < max_bytes:
            lane = self._ready.popleft()
            item = self._pop(lane)
            group.append(item)
            used += len(item.payload)
            if lane.queue:
                self._ready.append(lane)
        return group

    def _pop(self, lane: Lane) -> Inbound:
        item = lane.queue.popleft()
        lane.bytes -= len(item.payload)
        self._messages -= 1
        self._bytes -= len(item.payload)
        if not lane.queue and lane.parked_until is None:
            del self._lanes[lane.key]  # an idle lane costs nothing, whatever the topics seen
        return item

    def _parked(self) -> list[Lane]:
        return [lane for lane in self._lanes.values() if lane.parked_until is not None]

    def _next_retry_at(self) -> float:
        if self._store_down_until is not None:
            return self._store_down_until
        return min((lane.parked_until or 0.0 for lane in self._parked()), default=float("inf"))

    def _due_retry(self, now: float) -> list[Inbound]:
        """The head of the parked lane due first (one lane only while the store is down)."""
        if self._store_down_until is not None and now < self._store_down_until:
            return []
        due = sorted(
            (lane for lane in self._parked() if (lane.parked_until or 0.0) <= now),
            key=lambda lane: lane.parked_until or 0.0,
        )
        for lane in due:
            while lane.queue and now - lane.queue[0].at > self.give_up_s:
                self._pop(lane)
                self._gave_up += 1
            if not lane.queue:
                del self._lanes[lane.key]
                continue
            if self._store_down_until is not None:
                # One try per retry_s while the store is down; the others wait for it.
                self._store_down_until = now + self.retry_s
            lane.parked_until = now + self.retry_s  # while its retry is being written
            return [self._pop(lane)]
        if self._store_down_until is not None and self._ready:
            # No parked lane left to probe with (their messages were given up): a waiting one.
            self._store_down_until = now + self.retry_s
            lane = self._ready.popleft()
            item = self._pop(lane)
            if lane.queue:
                self._ready.appendleft(lane)
            return [item]
        return []

    def done(self, keys: set[LaneKey]) -> dict[LaneKey, int]:
        """Writes of these lanes' messages succeeded: unpark them (and, if the store was
        down, every lane). Returns the failed tries of each lane that was parked."""
        unparked: dict[LaneKey, int] = {}
        with self._cond:
            if self._store_down_until is not None:
                self._store_down_until = None
                for lane in self._parked():
                    unparked[lane.key] = lane.failures
                    self._unpark(lane)
            for key in keys:
                lane = self._lanes.get(key)
                if lane is not None and lane.parked_until is not None:
                    unparked[lane.key] = lane.failures
                    self._unpark(lane)
            self._ring()
        return unparked

    def _unpark(self, lane: Lane) -> None:
        lane.parked_until, lane.failures = None, 0
        if not lane.queue:
            del self._lanes[lane.key]
        elif lane not in self._ready:
            self._ready.append(lane)

    def park(self, key: LaneKey, items: list[Inbound]) -> int:
        """A write of ``items`` (all of lane ``key``, in order) failed: put them back at the
        front of the lane and retry the lane alone after ``retry_s``. Returns the lane's
        consecutive failures."""
        with self._cond:
            lane = self._lanes.get(key)
            if lane is None:
                lane = self._lanes[key] = Lane(key)
            for item in reversed(items):
                lane.queue.appendleft(item)
                lane.bytes += len(item.payload)
                self._messages += 1
                self._bytes += len(item.payload)
            if lane in self._ready:
                self._ready.remove(lane)
            lane.parked_until = time.monotonic() + self.retry_s
            lane.failures += 1
            return lane.failures

    def store_down(self) -> None:
        """Every lane of a group failed: hold all lanes, one retry per ``retry_s``."""
        with self._cond:
            self._store_down_until = time.monotonic() + self.retry_s

    # -- figures ---------------------------------------------------------------------------

    def gave_up(self) -> int:
        """Messages left to their devices' resend after ``give_up_s`` in a parked lane."""
        with self._cond:
            return self._gave_up

    def queued(self) -> tuple[int, int]:
        with self._cond:
            return self._messages, self._bytes
