"""The pad driver interface: what the window logic needs from a bus of rating pads.

HallPad v1 (:class:`drivers.pad.link.HallPadLink`) is the default driver; a vendor protocol
plugs in behind the same two protocols (docs/pads.md) by translating its frames into the
typed messages of :mod:`drivers.pad.codec` (they are the vocabulary, not the wire format).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from drivers.pad.codec import Message


class PadHandler(Protocol):
    """Receives what a bus reports. All calls come from the driver's own I/O thread and must
    return quickly (an outbox commit is fine, recognition or network I/O is not)."""

    def on_link(self, up: bool, detail: str) -> None:
        """The port opened (``up``) or failed/vanished; called on every transition."""
        ...

    def on_message(self, addr: int, seq: int, msg: Message) -> None:
        """A valid pad-to-agent frame. The handler acks it with ``driver.send(addr, Ack(), seq)``
        once the frame is durably handled; no ack means the pad resends."""
        ...

    def on_tick(self, now: float) -> None:
        """Called every loop iteration (tens of ms) with ``time.monotonic()``, for timers."""
        ...


class PadDriver(Protocol):
    """One serial port (an RS-485 bus with several addresses, or one USB pad)."""

    port: str

    def serve(self, handler: PadHandler, stop: threading.Event) -> None:
        """Open the port and pump frames until ``stop`` is set; reopen with backoff on faults."""
        ...

    def send(self, addr: int, msg: Message, seq: int | None = None) -> None:
        """Queue ``msg`` for pad ``addr`` (thread-safe). ``seq`` defaults to the agent's own
        per-pad counter; an ACK passes the acknowledged frame's seq."""
        ...

    def last_activity(self) -> float:
        """``time.monotonic()`` of the last loop iteration of the I/O thread."""
        ...

    def stats(self) -> dict[str, Any]:
        """Counters for health/status: frames, garbage, bad CRC, reopen count..."""
        ...


class LogLimiter:
    """At most ``burst`` log lines per key (a pad address) every ``period_s``; the others are
    counted and the next line that gets through says how many were left out.

    A pad sending valid-CRC nonsense (a firmware bug, a foreign device on the bus) produces one
    bad frame per few milliseconds: logging each filled 67 MB of journal in 15 s. Every frame is
    still counted in the link's stats (``bad_payload``); only the lines are limited.
    """

    def __init__(
        self, burst: int = 5, period_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ):
        self.burst = burst
        self.period_s = period_s
        self.clock = clock
        self._window: dict[Any, tuple[float, int]] = {}  # key -> (window start, lines logged)
        self._suppressed: dict[Any, int] = {}
        self.suppressed_total = 0

    def allow(self, key: Any) -> tuple[bool, int]:
        """(log this one?, lines left out for ``key`` since its last logged line)."""
        now = self.clock()
        start, logged = self._window.get(key, (now, 0))
        if now - start >= self.period_s:
            start, logged = now, 0
        if logged < self.burst:
            self._window[key] = (start, logged + 1)
            return True, self._suppressed.pop(key, 0)
        self._window[key] = (start, logged)
        self._suppressed[key] = self._suppressed.get(key, 0) + 1
        self.suppressed_total += 1
        return False, 0
