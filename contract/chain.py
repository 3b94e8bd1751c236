"""A device's signed event chain, as both sides compute it (docs/tamper.md).

- **Canonical form**: RFC 8785 (JSON Canonicalization Scheme) of the event object as it is
  sent, never whatever ``json.dumps`` printed: sorted keys, ES6 number form, UTF-8.
- ``prev``: the hex SHA-256 of the canonical form of the device's previous event, ``sig``
  included; :data:`GENESIS` for a device's first signed event.
- ``sig``: the device's Ed25519 signature (base64, standard alphabet, padded) over the
  canonical form of the event without ``sig``.

An event without ``prev`` and ``sig`` (an agent older than chains) is unsigned: stored, and
marked so.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

import rfc8785

GENESIS = "0" * 64  # ``prev`` of a device's first signed event
SIGNED_FIELDS = ("prev", "sig")


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
    without building a copy: the usual event is checked, not rebuilt (the centre's
    ``verify --month`` walks every event twice, leaf and chain). Raises _NotPlain where
    _plain would. Exact types only: anything else (a subclass) is left to _plain."""
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


def canonical(value: Any) -> bytes:
    """RFC 8785 canonical JSON of ``value`` (dicts, lists, str, int, float, bool, None).

    By the standard library's C encoder where its output is provably the same (about ten
    times faster: a device signs every event, the centre checks every one), else by rfc8785,
    which also raises for what has no canonical form (NaN, a lone surrogate): a ValueError.
    tests/test_seal.py and tests/test_chain_peer.py compare them.
    """
    try:
        text = _ENCODE(value if _is_plain(value) else _plain(value))
        return text.encode("utf-8")  # a lone surrogate raises: rfc8785 refuses it too
    except (_NotPlain, UnicodeEncodeError):
        return rfc8785.dumps(value)


# The name central/seal/leaf.py gave it when it was the seal's own.
fast_canonical = canonical


def digest(event: Mapping[str, Any]) -> str:
    """The hex SHA-256 of ``event``'s canonical form: what the next event's ``prev`` names."""
    return hashlib.sha256(canonical(dict(event))).hexdigest()


def signing_input(event: Mapping[str, Any]) -> bytes:
    """The bytes ``sig`` signs: the canonical form of the event without ``sig``."""
    return canonical({k: v for k, v in event.items() if k != "sig"})


def fingerprint(raw: bytes) -> str:
    """A public key's 32 raw bytes for people to compare, as OpenSSH shows keys: ``SHA256:``
    and the unpadded base64 of their SHA-256. The device prints it at ``keygen``, the centre
    at ``devices trust``: the technician compares the two."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(raw).digest()).decode("ascii").rstrip("=")


def is_signed(event: Mapping[str, Any]) -> bool:
    return isinstance(event.get("prev"), str) and isinstance(event.get("sig"), str)


def sign(private_key: Any, event: Mapping[str, Any]) -> str:
    """``sig`` for ``event`` (which already carries its ``prev``), with an
    ``cryptography`` Ed25519 private key."""
    return base64.b64encode(private_key.sign(signing_input(event))).decode("ascii")


def public_key(raw: bytes) -> Any:
    """An Ed25519 public key from its 32 raw bytes."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    return Ed25519PublicKey.from_public_bytes(raw)


def verify(key: Any, event: Mapping[str, Any]) -> bool:
    """True when ``event``'s ``sig`` is ``key``'s signature over it; False for a bad,
    malformed or missing signature. Never raises for the event's content."""
    from cryptography.exceptions import InvalidSignature

    sig = event.get("sig")
    if not isinstance(sig, str):
        return False
    try:
        raw = base64.b64decode(sig, validate=True)
        key.verify(raw, signing_input(event))
    except (InvalidSignature, binascii.Error, ValueError, TypeError):
        return False
    return True
