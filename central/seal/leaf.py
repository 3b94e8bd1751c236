"""A sealed event's leaf: the bytes its RFC 9162 leaf hash is taken over (docs/tamper.md).

The leaf is the RFC 8785 canonical form of the object

    {id, device, site, seq, type, clock, at, data[, prev, sig]}

with ``at`` the instant the device stamped, in UTC to the millisecond
(``2026-11-03T01:30:00.000Z``): SQLite keeps the device's own text, PostgreSQL a timestamptz,
and both give the same instant, so both stores give the same leaf. ``prev`` and ``sig`` are
included when the store holds them (the device's signed chain, contract/chain.py); an unsigned
event's leaf has neither. ``received_at`` is not in the leaf: it orders the tree.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from central.seal.merkle import leaf_hash
from contract.chain import canonical


def utc_ms(moment: datetime) -> str:
    """``moment`` in UTC to the millisecond, with ``Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def leaf_object(event: Any) -> dict[str, Any]:
    """The object the leaf is the canonical form of (``event``: a StoredEvent)."""
    out: dict[str, Any] = {
        "id": str(event.id),
        "device": event.device,
        "site": event.site,
        "seq": event.seq,
        "type": event.type,
        "clock": event.clock,
        "at": utc_ms(event.at),
        "data": event.data,
    }
    for key in ("prev", "sig"):
        value = getattr(event, key, None)
        if value is not None:
            out[key] = value
    return out


class _NotPlain(Exception):
    pass


_SAFE_INT = 2**53 - 1


def _plain(value: Any) -> Any:
    """``value`` with integral floats as ints, when :func:`json.dumps` then writes exactly its
    RFC 8785 form; raises _NotPlain otherwise."""
    if isinstance(value, str) or value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) > _SAFE_INT:
            raise _NotPlain
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _NotPlain
        if value.is_integer():
            if abs(value) > _SAFE_INT:
                raise _NotPlain  # ES6 rounds such digits: leave it to rfc8785
            return int(value)  # ES6 writes 3.0 as 3
        if not 1e-4 <= abs(value) < 1e16:
            raise _NotPlain  # where repr turns to an exponent, ES6 may not: leave it to rfc8785
        return value  # repr's shortest round-trip digits, as ES6 writes them
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        for k in value:
            # Code-point order is UTF-16 order below the surrogates.
            if not isinstance(k, str) or (k and max(k) >= "\ud800"):
                raise _NotPlain
        return {k: _plain(v) for k, v in value.items()}
    raise _NotPlain


def _is_plain(value: Any) -> bool:
    """True when :func:`_plain` would return ``value`` unchanged (no integral float in it),
    without building a copy: the usual event is checked, not rebuilt (verify --month walks
    every event twice, leaf and chain). Raises _NotPlain where _plain would. Exact types
    only: anything else (a subclass) is left to _plain."""
    kind = type(value)
    if kind is str or value is None or kind is bool:
        return True
    if kind is int:
        if abs(value) > _SAFE_INT:
            raise _NotPlain
        return True
    if kind is float:
        return not value.is_integer() and _plain(value) is value
    if kind is dict:
        plain = True
        for k, v in value.items():
            if type(k) is not str or (not k.isascii() and k and max(k) >= "\ud800"):
                raise _NotPlain
            # The usual values inline: a call per value was most of the cost.
            vk = type(v)
            if vk is str or v is None or vk is bool:
                continue
            if vk is int and -_SAFE_INT <= v <= _SAFE_INT:
                continue
            plain = _is_plain(v) and plain
        return plain
    if kind is list:
        plain = True
        for v in value:
            if type(v) is not str:
                plain = _is_plain(v) and plain
        return plain
    return False


# json.dumps with non-default arguments builds an encoder per call.
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode


def fast_canonical(value: Any) -> bytes:
    """:func:`contract.chain.canonical` (RFC 8785), by the standard library's C encoder where
    its output is provably the same (tests/test_seal.py compares them), else by rfc8785."""
    try:
        text = _ENCODE(value if _is_plain(value) else _plain(value))
        return text.encode("utf-8")  # a lone surrogate raises: rfc8785 refuses it too
    except (_NotPlain, UnicodeEncodeError):
        return canonical(value)


def leaf_bytes(event: Any) -> bytes:
    return fast_canonical(leaf_object(event))


def event_leaf_hash(event: Any) -> bytes:
    return leaf_hash(leaf_bytes(event))
