"""The event envelope (docs/topics.md): UUIDv7 ids, timestamps with offset, the clock flag.

`seq` is not made here: it is allocated by the outbox inside the transaction that stores the
event, which is what makes it survive restarts and crashes without ever repeating.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import secrets
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from contract import EVENT_TYPES

ClockState = Literal["synced", "unsynced"]

# A device clock earlier than this cannot be right (the software did not exist yet): the RTC
# was lost, e.g. after a power cut, and the kiosk would stamp 1970 (docs/architecture.md#clocks).
CLOCK_FLOOR_UNIX = 1_767_225_600  # 2026-01-01T00:00:00Z

_uuid_lock = threading.Lock()
_last_ms = 0
_last_rand_a = 0


def uuid7(now_ns: int | None = None) -> uuid.UUID:
    """A UUIDv7 (RFC 9562 §5.7), monotonic within this process.

    Within one millisecond the 12-bit ``rand_a`` field is used as a counter (RFC 9562 §6.2,
    method 1), so ids made in a burst still sort in the order they were made.
    """
    global _last_ms, _last_rand_a
    ms = (now_ns if now_ns is not None else time.time_ns()) // 1_000_000
    with _uuid_lock:
        if ms <= _last_ms:
            ms = _last_ms
            _last_rand_a += 1
            if _last_rand_a > 0xFFF:  # counter exhausted: borrow the next millisecond
                ms += 1
                _last_rand_a = secrets.randbits(8)
        else:
            _last_rand_a = secrets.randbits(8)  # leave headroom for the counter
        _last_ms = ms
        rand_a = _last_rand_a
    rand_b = secrets.randbits(62)
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    return uuid.UUID(int=value)


def format_at(moment: datetime) -> str:
    """ISO 8601 with milliseconds and offset, e.g. 2026-11-26T09:12:03.120+08:00."""
    return moment.isoformat(timespec="milliseconds")


def now_in(tz: ZoneInfo) -> datetime:
    return datetime.now(tz)


class _Timex(ctypes.Structure):
    _fields_ = [  # ctypes layout of struct timex (linux/timex.h)
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_reserved", ctypes.c_int * 11),
    ]


_TIME_ERROR = 5  # adjtimex(2): clock not synchronized
_TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")


_clock_cache: tuple[float, ClockState] = (0.0, "unsynced")


def _kernel_synced() -> bool | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        state = libc.adjtimex(ctypes.byref(_Timex()))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return state != _TIME_ERROR


def system_clock_state() -> ClockState:
    """`synced` only when the clock is plausible and something confirmed it.

    Confirmation is systemd-timesyncd's flag file or the kernel's NTP state (adjtimex, which
    chrony and ntpd also maintain). ``HALL_AGENT_CLOCK=synced|unsynced`` overrides both, for
    sites whose time comes from a source the kernel does not know about (documented in
    docs/config.md).
    """
    global _clock_cache
    now = time.monotonic()
    if time.time() < CLOCK_FLOOR_UNIX:
        return "unsynced"
    forced = os.environ.get("HALL_AGENT_CLOCK")
    if forced in ("synced", "unsynced"):
        return forced  # type: ignore[return-value]
    checked_at, state = _clock_cache
    if now - checked_at < 10.0 and checked_at:
        return state  # the probe costs a syscall and a file stat; 10 s staleness is harmless
    state = "synced" if (_TIMESYNC_FLAG.exists() or _kernel_synced()) else "unsynced"
    _clock_cache = (now, state)
    return state


def make_event(
    *,
    event_type: str,
    data: dict[str, Any],
    seq: int,
    device: str,
    site: str,
    tz: ZoneInfo,
    clock: ClockState,
    at: datetime | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    if event_type not in EVENT_TYPES:
        raise ValueError(
            f"unknown event type {event_type!r}; expected one of {sorted(EVENT_TYPES)}"
        )
    moment = (at or datetime.now(tz)).astimezone(tz)
    return {
        "id": event_id or str(uuid7()),
        "seq": seq,
        "type": event_type,
        "at": format_at(moment),
        "clock": clock,
        "device": device,
        "site": site,
        "data": data,
    }
