#!/usr/bin/env python3
"""Check a hall-central inclusion proof without the project installed (docs/tamper.md
"Checking a proof").

    python3 verify_proof.py PROOF.json [--event EVENT.json] [--key HEX]

PROOF.json is what ``hall-central prove EVENT_ID --json`` printed. The event checked is
EVENT.json when given (your own copy of the punch or rating, as the proof's ``event`` shows it),
else the proof's own ``event``. ``--key`` is the centre's public key as published (64 hex
digits); without it the key inside the proof is used, which only shows the proof is
self-consistent. Prints OK, or FAIL and the reason; exit 0 or 1.

Needs Python 3.9+ and the ``cryptography`` package (pip install cryptography); nothing else.
The leaf, the tree (RFC 9162 §2.1) and the signed statement are written out below in full.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import sys

HEADER = "hall-central checkpoint v1"
LEAF_KEYS = ("id", "device", "site", "seq", "type", "clock", "at", "data", "prev", "sig")


# --- RFC 8785 canonical JSON (the leaf's bytes) -----------------------------------------------


def _number(x: float | int) -> str:
    if isinstance(x, bool):
        raise ValueError("not a number")
    if isinstance(x, int):
        if abs(x) > 2**53 - 1:
            raise ValueError("integer beyond I-JSON's range")
        return str(x)
    if not math.isfinite(x):
        raise ValueError("NaN and infinities have no JSON form")
    if x == 0:
        return "0"
    # ECMAScript Number::toString (RFC 8785 §3.2.2.3): the shortest round-trip digits, which
    # Python's repr also finds; only the layout differs. raw: the digits, n: the point's place.
    whole, _, e = repr(abs(x)).partition("e")
    whole, _, part = whole.partition(".")
    raw = (whole + part).rstrip("0")
    n = len(whole) + (int(e) if e else 0)
    lead = len(raw) - len(raw.lstrip("0"))
    raw, n = raw.lstrip("0"), n - lead
    k = len(raw)
    sign = "-" if x < 0 else ""
    if k <= n <= 21:
        return sign + raw + "0" * (n - k)
    if 0 < n <= 21:
        return sign + raw[:n] + "." + raw[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + raw
    exp_s = f"e{'+' if n - 1 >= 0 else '-'}{abs(n - 1)}"
    return sign + (raw if k == 1 else raw[0] + "." + raw[1:]) + exp_s


def canonical(value: object) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int | float):
        return _number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(canonical(v) for v in value) + "]"
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: k.encode("utf-16-be"))
        return "{" + ",".join(f"{canonical(k)}:{canonical(value[k])}" for k in keys) + "}"
    raise ValueError(f"no JSON form for {type(value).__name__}")


# --- RFC 9162 §2.1 --------------------------------------------------------------------------


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def verify_inclusion(index: int, size: int, leaf: bytes, path: list[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


# --- the check ------------------------------------------------------------------------------


def statement(proof: dict) -> bytes:
    return (
        f"{HEADER}\nmonth {proof['month']}\nsize {proof['tree_size']}\nroot {proof['root']}\n"
        f"sealed_at {proof['sealed_at']}\n"
    ).encode("ascii")


def check(proof: dict, event: dict | None, key_hex: str | None) -> str | None:
    """None when everything checks, else the reason."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if proof.get("format") != "hall-proof v1":
        return f"not a hall-proof v1 file (format {proof.get('format')!r})"
    if event is None:
        return "no event to check: the proof carries none; pass --event EVENT.json"
    leaf_obj = {k: event[k] for k in LEAF_KEYS if k in event}
    if str(leaf_obj.get("id")) != str(proof["event_id"]):
        return f"the event is {leaf_obj.get('id')}, the proof is for {proof['event_id']}"
    leaf = leaf_hash(canonical(leaf_obj).encode("utf-8"))
    if leaf.hex() != proof["leaf_hash"]:
        return "the event's leaf hash differs from the sealed one: the event is not as sealed"
    path = [bytes.fromhex(p) for p in proof["path"]]
    root = bytes.fromhex(proof["root"])
    if not verify_inclusion(int(proof["leaf_index"]), int(proof["tree_size"]), leaf, path, root):
        return "the inclusion path does not lead to the root"
    key = key_hex or proof["public_key"]
    if key_hex and key_hex.lower() != str(proof["public_key"]).lower():
        return "the proof names another centre key than the one given"
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(key)).verify(
            base64.b64decode(proof["signature"], validate=True), statement(proof)
        )
    except (InvalidSignature, ValueError):
        return "the root's signature fails under the centre's key"
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Check a hall-central inclusion proof.")
    p.add_argument("proof", help="the JSON that 'hall-central prove EVENT_ID --json' printed")
    p.add_argument("--event", help="the event's JSON (default: the proof's own copy)")
    p.add_argument("--key", help="the centre's published public key, 64 hex digits")
    args = p.parse_args(argv)
    try:
        with open(args.proof, encoding="utf-8") as f:
            proof = json.load(f)
        event = proof.get("event")
        if args.event:
            with open(args.event, encoding="utf-8") as f:
                event = json.load(f)
        reason = check(proof, event, args.key)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        reason = f"cannot read the proof: {exc}"
    if reason is None:
        print(
            f"OK: event {proof['event_id']} is leaf {proof['leaf_index']} of the "
            f"{proof['tree_size']} sealed for {proof['month']}, root {proof['root']}"
        )
        if not args.key:
            print("note: checked with the key inside the proof; --key checks it is the centre's")
        return 0
    print(f"FAIL: {reason}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
