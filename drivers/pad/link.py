"""The HallPad v1 link: owns one serial port, reads frames, writes replies, survives unplugs.

- Ports open with ``serial.serial_for_url`` (docs/architecture.md#serial): a device path,
  ``/dev/serial/by-id/…``, a pty, ``loop://``, ``socket://`` or ``spy://`` (hex dump) all work.
- One thread per port does both directions, so the agent never transmits while a frame is
  arriving (half-duplex RS-485: a write waits until the parser holds no partial frame and the
  driver has no unread input). A pad that is waiting for its ack has stopped talking.
- Unplug (docs/architecture.md#unplug): pyserial raises ``SerialException`` for
  "device reports readiness to read but returned no data", for EIO on a vanished pty/USB
  device and for failed writes. The link closes the port, tells the handler (it records
  ``device.fault``), reopens with exponential backoff and reports the port up again.
- Anything else escaping an open or a session is a link fault too, never the end of the
  thread: ``Serial.open()`` lets a raw ``termios.error`` (not an ``OSError``) out of
  tcsetattr/tcflush when a USB adapter vanishes mid-open. A write that fails inside a
  handler callback (ACK, TIME from a timer, DISPLAY after the open) ends the session the
  same way. Sessions that keep failing soon after the open back off exponentially too.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import serial

from drivers.pad.base import LogLimiter, PadHandler
from drivers.pad.codec import (
    ACK,
    PAD_TO_AGENT,
    FrameError,
    FrameParser,
    Message,
    decode,
    encode,
)

logger = logging.getLogger(__name__)

BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0)  # reopen delays; the last one repeats
STABLE_S = 30.0  # a session that lasted this long resets the backoff after it failed

try:
    import termios

    _TERMIOS_ERRORS: tuple[type[Exception], ...] = (termios.error,)
except ImportError:  # not POSIX: pyserial raises only SerialException/OSError there
    _TERMIOS_ERRORS = ()

# What I/O on a port that vanished or hung up raises. A handler callback that wrote to the
# port lets these through (see _dispatch): they end the session, not just the callback.
IO_ERRORS: tuple[type[Exception], ...] = (serial.SerialException, OSError, *_TERMIOS_ERRORS)


def _char_time(baud: int) -> float:
    return 10.0 / baud  # 8N1: start + 8 data + stop bits


class HallPadLink:
    """A :class:`drivers.pad.base.PadDriver` for HallPad v1 on one port."""

    def __init__(
        self,
        port: str,
        baud: int = 9600,
        *,
        read_timeout_s: float = 0.02,
        open_port: Callable[..., Any] = serial.serial_for_url,
        backoff_s: tuple[float, ...] = BACKOFF_S,
    ):
        self.port = port
        self.baud = baud
        self.read_timeout_s = read_timeout_s
        # A partial frame older than this will not complete: 20 character times (a 72-byte
        # frame is sent back to back; Modbus RTU uses 3.5 char times between frames), and at
        # least 50 ms because a USB serial adapter delivers in 1-16 ms chunks.
        self.idle_gap_s = max(0.05, 20 * _char_time(baud))
        self._open_port = open_port
        self.backoff_s = backoff_s
        self.parser = FrameParser()
        self._out: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self._seq: dict[int, int] = {}
        self._seq_lock = threading.Lock()
        self._ser: Any = None
        self._thread_id: int | None = None
        self._last_rx = 0.0
        self._activity = time.monotonic()
        self.up = False
        self.counts: dict[str, int] = {
            "rx_frames": 0,
            "tx_frames": 0,
            "bad_payload": 0,
            "ignored": 0,
            "opens": 0,
            "faults": 0,
        }
        self._bad_log = LogLimiter()

    # --- PadDriver ------------------------------------------------------------------------

    def last_activity(self) -> float:
        return self._activity

    def stats(self) -> dict[str, Any]:
        return {
            "up": self.up,
            **self.counts,
            "log_lines_suppressed": self._bad_log.suppressed_total,
            **self.parser.counts.as_dict(),
        }

    def send(self, addr: int, msg: Message, seq: int | None = None) -> None:
        if seq is None:
            with self._seq_lock:
                seq = self._seq.get(addr, -1) + 1 & 0xFF
                self._seq[addr] = seq
        data = encode(addr, seq, msg)
        if threading.get_ident() == self._thread_id and self._bus_idle():
            # Called by the handler inside the I/O thread (an ACK right after the commit):
            # write now instead of after the handler returns; it is the latency that counts.
            self._write(data)
        else:
            self._out.put(data)

    def serve(self, handler: PadHandler, stop: threading.Event) -> None:
        self._thread_id = threading.get_ident()
        failures = 0  # consecutive failed opens
        flaps = 0  # consecutive sessions that failed within STABLE_S of their open
        state: bool | None = None
        while not stop.is_set():
            self._activity = time.monotonic()
            try:
                # exclusive (flock): a second agent or a stray terminal on the same port
                # would steal bytes ("multiple access on port"); refuse it instead.
                self._ser = self._open_port(
                    self.port,
                    baudrate=self.baud,
                    timeout=self.read_timeout_s,
                    write_timeout=1.0,
                    exclusive=True,
                )
            except Exception as exc:  # whatever the open raised, the port is not usable
                detail = f"cannot open {self.port}: {exc}"
                if state is not False:
                    self._log_fault(detail, exc)
                    self.counts["faults"] += 1
                    self._notify(handler, False, detail)
                    state = False
                delay = self.backoff_s[min(failures, len(self.backoff_s) - 1)]
                failures += 1
                self._wait(stop, delay, handler)
                continue
            failures = 0
            opened = time.monotonic()
            self.counts["opens"] += 1
            self.parser = FrameParser(counts=self.parser.counts)  # fresh buffer, same counts
            self._drain_out()  # replies meant for the old connection are stale
            self.up = True
            logger.info("pad link %s open at %d baud", self.port, self.baud)
            try:
                state = True
                self._notify(handler, True, f"{self.port} open at {self.baud} baud")
                self._pump(handler, stop)
            except Exception as exc:
                detail = f"{self.port}: {exc}"
                self._log_fault(f"fault: {detail}; closing and reopening", exc)
                self.counts["faults"] += 1
                self.up = False
                self._close()
                self._notify(handler, False, detail)
                state = False
                if time.monotonic() - opened >= STABLE_S:
                    flaps = 0
                # A port that opens but fails at once (writes time out, the adapter hangs
                # up) must not cycle five times a second, each cycle a fault and a recovery.
                self._wait(stop, self.backoff_s[min(flaps, len(self.backoff_s) - 1)], handler)
                flaps += 1
                continue
            finally:
                self.up = False
            self._close()

    # --- internals ------------------------------------------------------------------------

    def _log_fault(self, detail: str, exc: BaseException) -> None:
        if isinstance(exc, (*IO_ERRORS, ValueError)):  # ValueError: a bad URL or setting
            logger.warning("pad link %s", detail)
        else:  # unexpected: keep the traceback, but keep the thread too
            logger.error("pad link %s", detail, exc_info=exc)

    def _notify(self, handler: PadHandler, up: bool, detail: str) -> None:
        try:
            handler.on_link(up, detail)
        except IO_ERRORS:
            if up:
                raise  # the DISPLAY after the open failed to write: the session is broken
            logger.exception("pad handler on_link failed")
        except Exception:  # the handler must not kill the link thread
            logger.exception("pad handler on_link failed")

    def _wait(self, stop: threading.Event, delay: float, handler: PadHandler) -> None:
        """Back off without looking stalled: tick the handler (timers) while waiting."""
        end = time.monotonic() + delay
        while not stop.is_set():
            now = time.monotonic()
            self._activity = now
            self._tick(handler, now, session=False)
            if now >= end:
                return
            stop.wait(min(0.2, end - now))

    def _tick(self, handler: PadHandler, now: float, *, session: bool = True) -> None:
        try:
            handler.on_tick(now)
        except IO_ERRORS:
            if session:
                raise  # a timer's write (TIME) failed: a link fault, like in _dispatch
            logger.exception("pad handler on_tick failed")
        except Exception:
            logger.exception("pad handler on_tick failed")

    def _close(self) -> None:
        ser, self._ser = self._ser, None
        if ser is not None:
            try:
                ser.close()
            except Exception:  # closing a vanished device can fail; it is gone either way
                logger.debug("closing %s failed", self.port, exc_info=True)

    def _drain_out(self) -> None:
        while True:
            try:
                self._out.get_nowait()
            except queue.Empty:
                return

    def _bus_idle(self) -> bool:
        ser = self._ser
        if ser is None or self.parser.pending:
            return False
        try:
            return not ser.in_waiting
        except IO_ERRORS:
            return False

    def _write(self, data: bytes) -> None:
        ser = self._ser
        if ser is None:
            return
        ser.write(data)
        self.counts["tx_frames"] += 1

    def _pump(self, handler: PadHandler, stop: threading.Event) -> None:
        ser = self._ser
        self._last_rx = time.monotonic()
        while not stop.is_set():
            waiting = ser.in_waiting
            data = ser.read(waiting or 1)  # blocks up to read_timeout_s for the first byte
            now = time.monotonic()
            self._activity = now
            if data:
                self._last_rx = now
                frames = self.parser.feed(data)
            elif self.parser.pending and now - self._last_rx > self.idle_gap_s:
                frames = self.parser.expire()
            else:
                frames = []
            for frame in frames:
                self._dispatch(handler, frame)
            self._tick(handler, now)
            while not self._out.empty() and self._bus_idle():
                self._write(self._out.get_nowait())

    def _dispatch(self, handler: PadHandler, frame: Any) -> None:
        if frame.cmd not in PAD_TO_AGENT:
            # Our own ACK/INVITE echoed by an RS-485 adapter, or another master on the bus.
            self.counts["ignored"] += 1
            if frame.cmd != ACK:
                logger.debug("ignoring agent-bound cmd 0x%02x from %d", frame.cmd, frame.addr)
            return
        try:
            msg = decode(frame)
        except FrameError as exc:
            # CRC was right, so the pad really sent this: a firmware bug. No ack (the pad
            # resends, then gives up), counted and logged, never fatal (docs/pads.md).
            self.counts["bad_payload"] += 1
            log, left_out = self._bad_log.allow(frame.addr)
            if log:
                logger.warning(
                    "pad %d seq %d on %s: %s%s",
                    frame.addr,
                    frame.seq,
                    self.port,
                    exc,
                    f" ({left_out} more bad frames from this pad not logged)" if left_out else "",
                )
            return
        self.counts["rx_frames"] += 1
        try:
            handler.on_message(frame.addr, frame.seq, msg)
        except IO_ERRORS:
            raise  # the ACK's write failed: a link fault (serve closes and reopens)
        except Exception:
            logger.exception("pad handler failed on %r from %d", msg, frame.addr)
