"""A HallPad v1 pad simulator (``hall-agent simulate pad``), for tests, demos and the bench.

Written from docs/pads.md on purpose without importing :mod:`drivers.pad`: it is the second
implementation the contract is tested against (its own CRC, framing and parser), so a bug
shared by both sides cannot hide.

Behaves like the pad: every pad-to-agent frame is sent stop-and-wait and resent every 500 ms
with the same seq, up to 10 times, until the ACK with that seq arrives. It can misbehave on
request: inject garbage, truncated frames or bad CRCs, drop acks (to force resends), reboot.

Script (one command per line, ``#`` comments)::

    hello SIM-1.0            # HELLO with a firmware version
    login S001               # LOGIN staff id
    rate 5                   # RATING level 5
    rate 1 reasons=0,2 invite=last   # reasons as bit numbers; invite=N or last received
    expired last             # EXPIRED for an invitation
    pause / resume / logout / heartbeat [status]
    garbage 20               # 20 random bytes
    truncate / badcrc        # half a frame / a frame with a wrong CRC
    drop-acks 2              # ignore the next 2 acks (the pad resends)
    reboot                   # seq back to 0, HELLO again
    wait 1.5                 # seconds
    expect display 暂停服务 [timeout_s]   # fail unless the pad is shown this text
    expect invite [timeout_s]            # fail unless an INVITE arrives
    repeat 10 rate 5         # run a command several times
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import select
import shlex
import struct
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

# docs/pads.md command codes, written out again here on purpose (see module docstring).
# The reader thread reports frames while the main thread prints the summary: one lock and one
# write per line, so two threads never interleave a line's text and its newline.
_OUTPUT_LOCK = threading.Lock()


def _emit(text: str, file: Any) -> None:
    with _OUTPUT_LOCK:
        file.write(text + "\n")
        file.flush()


CMD = {
    "hello": 0x01,
    "rating": 0x10,
    "expired": 0x11,
    "login": 0x20,
    "logout": 0x21,
    "pause": 0x22,
    "resume": 0x23,
    "heartbeat": 0x30,
    "ack": 0x80,
    "invite": 0x90,
    "display": 0x91,
    "time": 0x92,
}


def crc16(data: bytes) -> int:
    """CRC-16/MODBUS computed bit by bit (the driver uses a table)."""
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            lsb = crc & 1
            crc >>= 1
            if lsb:
                crc ^= 0xA001
    return crc


def build_frame(addr: int, cmd: int, seq: int, payload: bytes = b"") -> bytes:
    assert len(payload) <= 64
    body = struct.pack("BBBB", addr, cmd, seq, len(payload)) + payload
    return b"\xaa\x55" + body + struct.pack("<H", crc16(body))


def parse_frames(buf: bytearray, got: Received) -> list[tuple[int, int, int, bytes]]:
    """Take complete frames out of ``buf``; skip garbage and bad CRCs (counted in got.bad)."""
    out = []
    while True:
        i = buf.find(b"\xaa\x55")
        if i < 0:
            del buf[: max(0, len(buf) - 1)]
            return out
        del buf[:i]
        if len(buf) < 6:
            return out
        n = buf[5]
        if n > 64:
            del buf[:1]
            continue
        if len(buf) < 8 + n:
            return out
        body, crc = bytes(buf[2 : 6 + n]), buf[6 + n] | buf[7 + n] << 8
        if crc16(body) != crc:
            got.bad += 1
            del buf[:1]
            continue
        del buf[: 8 + n]
        out.append((body[0], body[1], body[2], body[4:]))


def read_available(port: Any) -> bytes:
    """What has arrived, waiting at most the port's timeout for the first byte.

    pyserial's ``read(n)`` waits for all n bytes (or the timeout), which would delay every
    ACK by the timeout; asking for what is waiting (at least 1) returns at once."""
    return port.read(getattr(port, "in_waiting", 0) or 1)


class FdPort:
    """A pty master (or any fd) with the read/write/close subset of a pyserial port."""

    def __init__(self, fd: int, timeout: float = 0.05):
        self.fd = fd
        self.timeout = timeout

    def read(self, size: int = 1) -> bytes:
        ready, _, _ = select.select([self.fd], [], [], self.timeout)
        if not ready:
            return b""
        return os.read(self.fd, max(size, 4096))

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
        return len(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


@dataclass
class SendResult:
    seq: int
    acked: bool
    tries: int
    latency_s: float | None  # last (re)send -> ACK received


@dataclass
class Received:
    displays: list[str] = field(default_factory=list)
    invites: list[tuple[int, str]] = field(default_factory=list)
    times: list[int] = field(default_factory=list)
    acks: int = 0
    ignored_acks: int = 0
    bad: int = 0  # frames for other addresses or broken ones


class SimPad:
    """One simulated pad on a port (pyserial object or :class:`FdPort`)."""

    def __init__(
        self,
        port: Any,
        address: int = 1,
        *,
        resend_s: float = 0.5,
        max_tries: int = 11,  # the first send plus up to 10 resends (docs/pads.md)
        firmware: str = "SIM-1.0",
        seed: int | None = None,
        log: Any = None,
        write_lock: Any = None,
        reader: bool = True,
    ):
        self.port = port
        self.address = address
        self.resend_s = resend_s
        self.max_tries = max_tries
        self.firmware = firmware
        self.rng = random.Random(seed)
        self.log = log
        self.seq = 0
        self.got = Received()
        self.latencies: list[float] = []
        self.drop_acks = 0
        self._cond = threading.Condition()
        self._acked: set[int] = set()
        self._ack_at: dict[int, float] = {}
        # Pads on one RS-485 bus share the line: one frame at a time (SimBus passes its lock).
        self._write_lock = write_lock or threading.Lock()
        self._seq_lock = threading.Lock()
        self._stop = threading.Event()
        self._buf = bytearray()
        self._reader: threading.Thread | None = None
        if reader:
            self._reader = threading.Thread(target=self._read_loop, name="simpad-rx", daemon=True)
            self._reader.start()

    # --- receiving ------------------------------------------------------------------------

    def _read_loop(self) -> None:
        while not self._stop.is_set():
            try:
                data = read_available(self.port)
            except Exception:  # port closed under us: the pad is "unplugged"
                logger.debug("simulated pad %d: reader ends", self.address, exc_info=True)
                return
            if data:
                self._buf += data
                self._parse()

    def _parse(self) -> None:
        for addr, cmd, seq, payload in parse_frames(self._buf, self.got):
            self._on_frame(addr, cmd, seq, payload)

    def _on_frame(self, addr: int, cmd: int, seq: int, payload: bytes) -> None:
        now = time.monotonic()
        if addr != self.address:
            self.got.bad += 1
            return
        with self._cond:
            if cmd == CMD["ack"]:
                if self.drop_acks > 0:
                    self.drop_acks -= 1
                    self.got.ignored_acks += 1
                else:
                    self.got.acks += 1
                    self._acked.add(seq)
                    self._ack_at[seq] = now
            elif cmd == CMD["display"]:
                self.got.displays.append(payload.decode("utf-8", "replace"))
                self._say(f"<- DISPLAY {self.got.displays[-1]!r}")
            elif cmd == CMD["invite"] and len(payload) >= 2:
                inv = (struct.unpack("<H", payload[:2])[0], payload[2:].decode("utf-8", "replace"))
                self.got.invites.append(inv)
                self._say(f"<- INVITE id={inv[0]} name={inv[1]!r}")
            elif cmd == CMD["time"] and len(payload) == 4:
                self.got.times.append(struct.unpack("<I", payload)[0])
                self._say(f"<- TIME {self.got.times[-1]}")
            else:
                self.got.bad += 1
            self._cond.notify_all()

    def wait_for(self, predicate: Any, timeout: float = 5.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.got), timeout)

    # --- sending --------------------------------------------------------------------------

    def _say(self, text: str) -> None:
        if self.log is not None:
            _emit(text, self.log)

    def write_raw(self, data: bytes) -> None:
        with self._write_lock:
            self.port.write(data)

    def send(
        self, cmd: int, payload: bytes = b"", *, wait: bool = True, duplicate: bool = False
    ) -> SendResult:
        """Send one frame stop-and-wait: resend with the same seq until acked or out of tries.

        ``duplicate`` writes every copy twice (a line echo or an over-eager firmware)."""
        with self._seq_lock:
            seq = self.seq
            self.seq = (self.seq + 1) & 0xFF
        frame = build_frame(self.address, cmd, seq, payload)
        with self._cond:
            self._acked.discard(seq)
        tries = 0
        while tries < self.max_tries:
            tries += 1
            sent = time.monotonic()
            self.write_raw(frame + frame if duplicate else frame)
            if not wait:
                return SendResult(seq, False, tries, None)
            with self._cond:
                if self._cond.wait_for(lambda: seq in self._acked, self.resend_s):
                    latency = self._ack_at[seq] - sent
                    self.latencies.append(latency)
                    return SendResult(seq, True, tries, latency)
        return SendResult(seq, False, tries, None)

    def hello(self, firmware: str | None = None) -> SendResult:
        return self.send(CMD["hello"], (firmware or self.firmware).encode("ascii"))

    def rate(
        self, level: int, reasons: Iterable[int] = (), invite: int = 0, *, duplicate: bool = False
    ) -> SendResult:
        mask = 0
        for bit in reasons:
            mask |= 1 << bit
        payload = struct.pack("<BHH", level, mask, invite)
        return self.send(CMD["rating"], payload, duplicate=duplicate)

    def expired(self, invite: int) -> SendResult:
        return self.send(CMD["expired"], struct.pack("<H", invite))

    def login(self, staff_id: str) -> SendResult:
        return self.send(CMD["login"], staff_id.encode("ascii"))

    def logout(self) -> SendResult:
        return self.send(CMD["logout"])

    def pause(self) -> SendResult:
        return self.send(CMD["pause"])

    def resume(self) -> SendResult:
        return self.send(CMD["resume"])

    def heartbeat(self, status: int = 0) -> SendResult:
        return self.send(CMD["heartbeat"], bytes((status,)))

    def garbage(self, n: int) -> bytes:
        data = bytes(self.rng.randrange(256) for _ in range(n))
        self.write_raw(data)
        return data

    def truncate(self) -> None:
        """Half a RATING frame (a pad that lost power mid-frame); its seq is not used up."""
        frame = build_frame(self.address, CMD["rating"], self.seq, b"\x05\x00\x00\x00\x00")
        self.write_raw(frame[: len(frame) // 2])

    def badcrc(self) -> None:
        frame = bytearray(build_frame(self.address, CMD["rating"], self.seq, b"\x04\0\0\0\0"))
        frame[-1] ^= 0xFF
        self.write_raw(bytes(frame))

    def reboot(self, firmware: str | None = None) -> SendResult:
        self.seq = 0
        with self._cond:
            self._acked.clear()
            self.drop_acks = 0
        return self.hello(firmware)

    def close(self) -> None:
        self._stop.set()
        if self._reader is not None:
            self._reader.join(1.0)


class SimBus:
    """Several simulated pads on one RS-485 bus (one port, one reader, one talker at a time)."""

    def __init__(self, port: Any, addresses: Iterable[int], **kwargs: Any):
        self.port = port
        lock = threading.Lock()
        self.pads = {a: SimPad(port, a, write_lock=lock, reader=False, **kwargs) for a in addresses}
        self._buf = bytearray()
        self._got = Received()  # frames for addresses nobody simulates
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read_loop, name="simbus-rx", daemon=True)
        self._reader.start()

    def _read_loop(self) -> None:
        while not self._stop.is_set():
            try:
                data = read_available(self.port)
            except Exception:  # port closed under us: the bus is "unplugged"
                logger.debug("simulated bus: reader ends", exc_info=True)
                return
            if data:
                self._buf += data
                for addr, cmd, seq, payload in parse_frames(self._buf, self._got):
                    pad = self.pads.get(addr)
                    if pad is not None:
                        pad._on_frame(addr, cmd, seq, payload)

    def close(self) -> None:
        self._stop.set()
        self._reader.join(1.0)


# --- script player ---------------------------------------------------------------------------


class ScriptError(Exception):
    pass


def _invite_arg(pad: SimPad, value: str) -> int:
    if value == "last":
        if not pad.got.invites:
            raise ScriptError("invite=last but no INVITE has been received")
        return pad.got.invites[-1][0]
    return int(value)


def run_command(pad: SimPad, words: list[str]) -> bool:
    """Run one script command; False if a frame went unacked or an expectation failed."""
    cmd, args = words[0].lower(), words[1:]
    if cmd == "repeat":
        ok = True
        for _ in range(int(args[0])):
            ok = run_command(pad, args[1:]) and ok
        return ok
    result: SendResult | None = None
    if cmd == "hello":
        result = pad.hello(args[0] if args else None)
    elif cmd == "login":
        result = pad.login(args[0])
    elif cmd in ("logout", "pause", "resume"):
        result = getattr(pad, cmd)()
    elif cmd == "heartbeat":
        result = pad.heartbeat(int(args[0]) if args else 0)
    elif cmd == "rate":
        level, reasons, invite = int(args[0]), [], 0
        for opt in args[1:]:
            key, _, value = opt.partition("=")
            if key == "reasons":
                reasons = [int(x) for x in value.split(",") if x]
            elif key == "invite":
                invite = _invite_arg(pad, value)
            else:
                raise ScriptError(f"rate: unknown option {opt!r}; expected reasons= or invite=")
        result = pad.rate(level, reasons, invite)
    elif cmd == "expired":
        result = pad.expired(_invite_arg(pad, args[0] if args else "last"))
    elif cmd == "garbage":
        pad.garbage(int(args[0]) if args else 16)
        pad._say(f"-> {args[0] if args else 16} bytes of garbage")
        return True
    elif cmd == "truncate":
        pad.truncate()
        return True
    elif cmd == "badcrc":
        pad.badcrc()
        return True
    elif cmd == "drop-acks":
        with pad._cond:
            pad.drop_acks += int(args[0]) if args else 1
        return True
    elif cmd == "reboot":
        result = pad.reboot(args[0] if args else None)
    elif cmd == "wait":
        time.sleep(float(args[0]))
        return True
    elif cmd == "expect":
        what = args[0] if args else ""
        if what == "display":
            if len(args) < 2:
                raise ScriptError("expect display: expected the text")
            text, timeout = args[1], float(args[2]) if len(args) > 2 else 3.0
            ok = pad.wait_for(lambda got: bool(got.displays) and got.displays[-1] == text, timeout)
            pad._say(f"expect display {text!r}: {'ok' if ok else 'FAILED'}")
            return ok
        if what == "invite":
            count = len(pad.got.invites)
            timeout = float(args[1]) if len(args) > 1 else 3.0
            ok = pad.wait_for(lambda got: len(got.invites) > count, timeout)
            pad._say(f"expect invite: {'ok' if ok else 'FAILED'}")
            return ok
        raise ScriptError(f"expect {what!r}: expected 'display' or 'invite'")
    else:
        raise ScriptError(f"unknown command {cmd!r}")
    assert result is not None
    state = (
        f"acked in {result.latency_s * 1000:.1f} ms after {result.tries} tries"
        if result.acked
        else f"NOT acked after {result.tries} tries"
    )
    pad._say(f"-> {' '.join(words)} seq={result.seq}: {state}")
    return result.acked


def run_script(pad: SimPad, lines: Iterable[str]) -> int:
    """Play a script; returns how many commands failed."""
    failures = 0
    for n, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            words = shlex.split(text)
            if not run_command(pad, words):
                failures += 1
        except (ScriptError, ValueError, IndexError) as exc:
            raise ScriptError(f"script line {n}: {text!r}: {exc}") from None
    return failures


def main_simulate(args: argparse.Namespace) -> int:
    import serial  # pyserial; the simulator opens any port the agent could open

    if not 1 <= args.address <= 247:
        print(f"simulate pad --address: expected 1..247, got {args.address}", file=sys.stderr)
        return 2
    try:
        port = serial.serial_for_url(args.port, baudrate=args.baud, timeout=0.05)
    except (serial.SerialException, ValueError, OSError) as exc:
        print(f"simulate pad: cannot open {args.port}: {exc}", file=sys.stderr)
        return 1
    pad = SimPad(
        port,
        args.address,
        firmware=getattr(args, "firmware", "SIM-1.0"),
        seed=getattr(args, "seed", None),
        log=sys.stdout,
    )
    stop = threading.Event()
    heartbeat_s = getattr(args, "heartbeat", 0) or 0
    beats: threading.Thread | None = None
    if heartbeat_s > 0:

        def _beat() -> None:
            while not stop.wait(heartbeat_s):
                pad.send(CMD["heartbeat"], b"\x00", wait=False)

        beats = threading.Thread(target=_beat, daemon=True)
        beats.start()
    try:
        if args.script is not None:
            try:
                lines = args.script.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                print(f"simulate pad --script: cannot read {args.script}: {exc}", file=sys.stderr)
                return 2
        else:
            lines = sys.stdin
        try:
            failures = run_script(pad, lines)
        except ScriptError as exc:
            print(f"simulate pad: {exc}", file=sys.stderr)
            return 2
        linger = getattr(args, "linger", 0) or 0
        if linger > 0:
            time.sleep(linger)
        if pad.latencies:
            lat = sorted(pad.latencies)
            # Last line of stdout, after anything the reader thread still reports.
            pad.close()
            _emit(
                f"frames_acked={len(lat)} ack_p50_ms={lat[len(lat) // 2] * 1000:.1f} "
                f"ack_max_ms={lat[-1] * 1000:.1f} failures={failures}",
                sys.stdout,
            )
        return 1 if failures else 0
    finally:
        stop.set()
        pad.close()
        port.close()
