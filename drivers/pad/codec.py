"""HallPad v1 framing (docs/pads.md): pure functions and a byte-stream parser, no I/O.

Frame: ``AA 55 | addr | cmd | seq | len | payload (len <= 64) | crc_lo crc_hi``; the CRC is
CRC-16/MODBUS (reflected poly 0xA001, init 0xFFFF) over ``addr .. payload``, little-endian.
The parser is fed whatever bytes the port returned and yields complete frames; it
resynchronises on ``AA 55`` after garbage, a wrong length, a bad CRC or a truncated frame and
counts every discarded byte/frame (docs/pads.md: "bad frames are counted, never fatal").
This is the same split as pyserial's ``threaded.Packetizer``: framing is a pure class fed
with bytes, the reader thread lives in :mod:`drivers.pad.link`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import ClassVar

from contract import is_staff_id

SYNC = b"\xaa\x55"
HEADER_LEN = 6  # AA 55 addr cmd seq len
CRC_LEN = 2
MAX_PAYLOAD = 64
MAX_FRAME = HEADER_LEN + MAX_PAYLOAD + CRC_LEN
MIN_ADDR, MAX_ADDR = 1, 247  # docs/pads.md: RS-485 addresses 1-247

# Command codes (docs/pads.md table).
HELLO = 0x01
RATING = 0x10
EXPIRED = 0x11
LOGIN = 0x20
LOGOUT = 0x21
PAUSE = 0x22
RESUME = 0x23
HEARTBEAT = 0x30
ACK = 0x80
INVITE = 0x90
DISPLAY = 0x91
TIME = 0x92


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16_modbus(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/MODBUS: reflected poly 0xA001, init 0xFFFF, no final xor (check 0x4B37)."""
    crc = 0xFFFF
    for b in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ b) & 0xFF]
    return crc


class FrameError(ValueError):
    """A frame or payload that does not follow HallPad v1."""


@dataclass(frozen=True)
class Frame:
    """One frame as it travels on the wire (payload still undecoded)."""

    addr: int
    cmd: int
    seq: int
    payload: bytes = b""

    def encode(self) -> bytes:
        if not MIN_ADDR <= self.addr <= MAX_ADDR:
            raise FrameError(f"address {self.addr} outside {MIN_ADDR}..{MAX_ADDR}")
        if not 0 <= self.cmd <= 0xFF or not 0 <= self.seq <= 0xFF:
            raise FrameError(f"cmd {self.cmd} / seq {self.seq} must be one byte each")
        if len(self.payload) > MAX_PAYLOAD:
            raise FrameError(f"payload of {len(self.payload)} bytes; at most {MAX_PAYLOAD}")
        body = bytes((self.addr, self.cmd, self.seq, len(self.payload))) + self.payload
        return SYNC + body + struct.pack("<H", crc16_modbus(body))


# --- typed messages ------------------------------------------------------------------------


class Message:
    """Base of the typed payloads; ``CMD`` is the command code."""

    CMD: ClassVar[int]

    def payload(self) -> bytes:
        return b""

    @classmethod
    def parse(cls, payload: bytes) -> Message:
        if payload:
            raise FrameError(f"{cls.__name__}: expected an empty payload, got {len(payload)} B")
        return cls()


def _text(payload: bytes, what: str) -> str:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FrameError(f"{what}: payload is not UTF-8 ({exc.reason})") from None


def fit_text(text: str, max_bytes: int = MAX_PAYLOAD) -> str:
    """Cut ``text`` so its UTF-8 form fits ``max_bytes`` without splitting a character."""
    raw = text.encode("utf-8")
    if len(raw) <= max_bytes:
        return text
    return raw[:max_bytes].decode("utf-8", errors="ignore")


@dataclass(frozen=True)
class Hello(Message):
    CMD: ClassVar[int] = HELLO
    firmware: str = ""

    def payload(self) -> bytes:
        return self.firmware.encode("ascii")

    @classmethod
    def parse(cls, payload: bytes) -> Hello:
        try:
            return cls(payload.decode("ascii"))
        except UnicodeDecodeError:
            raise FrameError("HELLO: firmware version is not ASCII") from None


@dataclass(frozen=True)
class Rating(Message):
    CMD: ClassVar[int] = RATING
    level: int
    reasons: int = 0  # bitmask, bit i = reason label i
    invite_id: int = 0  # 0 = none

    def payload(self) -> bytes:
        return struct.pack("<BHH", self.level, self.reasons, self.invite_id)

    @classmethod
    def parse(cls, payload: bytes) -> Rating:
        if len(payload) != 5:
            raise FrameError(f"RATING: expected 5 payload bytes, got {len(payload)}")
        level, reasons, invite = struct.unpack("<BHH", payload)
        if not 1 <= level <= 5:
            raise FrameError(f"RATING: level {level} outside 1..5")
        return cls(level, reasons, invite)


@dataclass(frozen=True)
class Expired(Message):
    CMD: ClassVar[int] = EXPIRED
    invite_id: int

    def payload(self) -> bytes:
        return struct.pack("<H", self.invite_id)

    @classmethod
    def parse(cls, payload: bytes) -> Expired:
        if len(payload) != 2:
            raise FrameError(f"EXPIRED: expected 2 payload bytes, got {len(payload)}")
        return cls(struct.unpack("<H", payload)[0])


# A staff id as a pad sends it (card number or keypad entry; HallPad v1 says only "ASCII").
# The one staff-id rule of the roster and the gallery applies (contract.STAFF_ID_PATTERN):
# control characters (a C string's NUL, a card reader's CR) would be carried into the login
# and every later rating, and an id no roster can hold would never show a name. Spaces around
# the id (a fixed-width field) are dropped.


@dataclass(frozen=True)
class Login(Message):
    CMD: ClassVar[int] = LOGIN
    staff_id: str

    def payload(self) -> bytes:
        return self.staff_id.encode("ascii")

    @classmethod
    def parse(cls, payload: bytes) -> Login:
        try:
            staff = payload.decode("ascii").strip(" ")
        except UnicodeDecodeError:
            raise FrameError("LOGIN: staff id is not ASCII") from None
        if not staff:
            raise FrameError("LOGIN: empty staff id")
        if not is_staff_id(staff):
            raise FrameError(
                f"LOGIN: staff id {staff!r} is not 1-64 characters of A-Z a-z 0-9 _ . - "
                "starting with a letter or digit"
            )
        return cls(staff)


@dataclass(frozen=True)
class Logout(Message):
    CMD: ClassVar[int] = LOGOUT


@dataclass(frozen=True)
class Pause(Message):
    CMD: ClassVar[int] = PAUSE


@dataclass(frozen=True)
class Resume(Message):
    CMD: ClassVar[int] = RESUME


@dataclass(frozen=True)
class Heartbeat(Message):
    CMD: ClassVar[int] = HEARTBEAT
    status: int = 0  # 0 = ok

    def payload(self) -> bytes:
        return bytes((self.status,))

    @classmethod
    def parse(cls, payload: bytes) -> Heartbeat:
        if len(payload) != 1:
            raise FrameError(f"HEARTBEAT: expected 1 payload byte, got {len(payload)}")
        return cls(payload[0])


@dataclass(frozen=True)
class Ack(Message):
    CMD: ClassVar[int] = ACK


@dataclass(frozen=True)
class Invite(Message):
    CMD: ClassVar[int] = INVITE
    invite_id: int
    name: str = ""

    def payload(self) -> bytes:
        return struct.pack("<H", self.invite_id) + self.name.encode("utf-8")

    @classmethod
    def parse(cls, payload: bytes) -> Invite:
        if len(payload) < 2:
            raise FrameError(f"INVITE: expected at least 2 payload bytes, got {len(payload)}")
        return cls(struct.unpack("<H", payload[:2])[0], _text(payload[2:], "INVITE"))


@dataclass(frozen=True)
class Display(Message):
    CMD: ClassVar[int] = DISPLAY
    text: str = ""

    def payload(self) -> bytes:
        return self.text.encode("utf-8")

    @classmethod
    def parse(cls, payload: bytes) -> Display:
        return cls(_text(payload, "DISPLAY"))


@dataclass(frozen=True)
class Time(Message):
    CMD: ClassVar[int] = TIME
    unix: int

    def payload(self) -> bytes:
        return struct.pack("<I", self.unix)

    @classmethod
    def parse(cls, payload: bytes) -> Time:
        if len(payload) != 4:
            raise FrameError(f"TIME: expected 4 payload bytes, got {len(payload)}")
        return cls(struct.unpack("<I", payload)[0])


MESSAGES: dict[int, type[Message]] = {
    m.CMD: m
    for m in (
        Hello,
        Rating,
        Expired,
        Login,
        Logout,
        Pause,
        Resume,
        Heartbeat,
        Ack,
        Invite,
        Display,
        Time,
    )
}
PAD_TO_AGENT = frozenset({HELLO, RATING, EXPIRED, LOGIN, LOGOUT, PAUSE, RESUME, HEARTBEAT})


def encode(addr: int, seq: int, msg: Message) -> bytes:
    """The wire bytes of ``msg`` from/to pad ``addr`` with sequence number ``seq``."""
    return Frame(addr, msg.CMD, seq, msg.payload()).encode()


def decode(frame: Frame) -> Message:
    """The typed message in ``frame``; FrameError for an unknown command or a bad payload."""
    kind = MESSAGES.get(frame.cmd)
    if kind is None:
        raise FrameError(f"unknown command 0x{frame.cmd:02x}")
    return kind.parse(frame.payload)


# --- stream parser -------------------------------------------------------------------------


@dataclass
class ParserCounts:
    frames: int = 0  # good frames yielded
    garbage_bytes: int = 0  # bytes skipped while hunting for AA 55
    bad_crc: int = 0  # complete frames whose CRC did not match
    bad_length: int = 0  # headers announcing more than 64 payload bytes
    truncated: int = 0  # headers whose frame never completed before the line went idle

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)

    @property
    def discarded(self) -> int:
        return self.bad_crc + self.bad_length + self.truncated


@dataclass
class FrameParser:
    """Feed bytes, get frames. Never raises on bad input; counts it instead."""

    counts: ParserCounts = field(default_factory=ParserCounts)
    _buf: bytearray = field(default_factory=bytearray)

    @property
    def pending(self) -> int:
        """Bytes held that may be the start of a frame (a frame is arriving)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        return self._scan()

    def expire(self) -> list[Frame]:
        """The line went idle: whatever partial frame is held will never complete.

        Drops its first byte (counted as truncated) and rescans, because a valid frame can
        start inside the bytes a truncated header swallowed.
        """
        out: list[Frame] = []
        while self._buf:
            if len(self._buf) >= 2 and self._buf[:2] == SYNC:
                self.counts.truncated += 1
                del self._buf[:1]
            else:
                self.counts.garbage_bytes += 1
                del self._buf[:1]
            out.extend(self._scan())
        return out

    def _scan(self) -> list[Frame]:
        buf = self._buf
        out: list[Frame] = []
        while True:
            start = buf.find(SYNC)
            if start < 0:
                # Keep a trailing AA: it may be the first half of the next sync.
                keep = 1 if buf and buf[-1] == SYNC[0] else 0
                self.counts.garbage_bytes += len(buf) - keep
                del buf[: len(buf) - keep]
                return out
            if start:
                self.counts.garbage_bytes += start
                del buf[:start]
            if len(buf) < HEADER_LEN:
                return out
            length = buf[5]
            if length > MAX_PAYLOAD:
                self.counts.bad_length += 1
                del buf[:1]  # resync from the next byte: AA 55 may occur inside
                continue
            total = HEADER_LEN + length + CRC_LEN
            if len(buf) < total:
                return out
            body = bytes(buf[2 : HEADER_LEN + length])
            crc = buf[total - 2] | (buf[total - 1] << 8)
            if crc != crc16_modbus(body):
                self.counts.bad_crc += 1
                del buf[:1]
                continue
            del buf[:total]
            self.counts.frames += 1
            out.append(Frame(body[0], body[1], body[2], body[4:]))
