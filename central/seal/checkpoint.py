"""What a checkpoint's signature covers: its statement, a few lines of ASCII.

    hall-central checkpoint v1
    month 2026-11
    size 21874
    root 5dc9da79…(64 hex)
    sealed_at 2026-12-01T02:00:00.000Z

signed with Ed25519 (base64). scripts/verify_proof.py rebuilds the same text from a proof's
JSON; keep the two in step.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from central.seal.leaf import utc_ms
from central.store.base import Checkpoint

HEADER = "hall-central checkpoint v1"


def statement(c: Checkpoint) -> bytes:
    return (
        f"{HEADER}\nmonth {c.month}\nsize {c.tree_size}\nroot {c.root}\n"
        f"sealed_at {utc_ms(c.sealed_at)}\n"
    ).encode("ascii")


def sign(key: Any, c: Checkpoint) -> str:
    return base64.b64encode(key.sign(statement(c))).decode("ascii")


def signature_ok(public_key_hex: str, c: Checkpoint) -> bool:
    try:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex))
        key.verify(base64.b64decode(c.signature, validate=True), statement(c))
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True
