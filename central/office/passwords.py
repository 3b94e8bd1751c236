"""Password hashes for the office's accounts (docs/office.md "Accounts").

scrypt (hashlib, RFC 7914): memory-hard, so a stolen ``users`` table is expensive to guess
at on GPUs. N = 2**17, r = 8, p = 1 (OWASP's minimum for scrypt) costs 128 MiB and a few
hundred milliseconds per check on the collector, two checks at a time at most. The parameters
are kept in each hash (``scrypt$N$r$p$salt$hash``, base64 without padding), so raising them
later leaves old hashes readable; the next ``users passwd`` stores the new ones
(:func:`needs_rehash` says which hashes are older).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

from contract import ID_PATTERN

N, R, P = 2**17, 8, 1
DKLEN = 32
SALT_BYTES = 16
# A hash naming more memory than this is refused rather than computed (a planted row).
_LIMIT_BYTES = 512 * 2**20

MIN_LENGTH = 10
MAX_LENGTH = 256
# Names the store writes for itself in case_log and audit_log: never an account.
RESERVED_NAMES = frozenset({"system", "shell"})
NAME_PATTERN = ID_PATTERN
_NAME = re.compile(NAME_PATTERN)


class PasswordError(ValueError):
    """A password or user name the rules refuse (the message says which rule)."""


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise PasswordError(
            f"user name {name!r}: expected lower-case letters, digits, '-' or '_' ({NAME_PATTERN})"
        )
    if name in RESERVED_NAMES:
        raise PasswordError(f"user name {name!r} is reserved (the store writes it itself)")
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_LENGTH:
        raise PasswordError(f"password: expected at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise PasswordError(f"password: expected at most {MAX_LENGTH} characters")
    if password != password.strip():
        raise PasswordError("password: expected no spaces at its start or end")
    return password


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    # OpenSSL refuses to use more memory than maxmem; 128 * r * N * p is what scrypt needs.
    maxmem = 2 * 128 * r * n * p + 2**20
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=maxmem
    )


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$salt$hash`` of ``password`` with a new random salt."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, N, R, P, DKLEN)
    return f"scrypt${N}${R}${P}${_b64(salt)}${_b64(digest)}"


def _parse(stored: str) -> tuple[int, int, int, bytes, bytes] | None:
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return None
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, digest = _unb64(parts[4]), _unb64(parts[5])
    except ValueError:
        return None
    if n < 2 or n & (n - 1) or not 1 <= r <= 32 or not 1 <= p <= 16:
        return None
    if 128 * r * n * p > _LIMIT_BYTES:
        return None
    if not salt or not 16 <= len(digest) <= 64:
        return None
    return n, r, p, salt, digest


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored``; a malformed hash matches nothing."""
    parsed = _parse(stored)
    if parsed is None:
        return False
    n, r, p, salt, digest = parsed
    return hmac.compare_digest(_scrypt(password, salt, n, r, p, len(digest)), digest)


def needs_rehash(stored: str) -> bool:
    parsed = _parse(stored)
    return parsed is None or parsed[:3] != (N, R, P)


_dummy: list[str] = []


def dummy_hash() -> str:
    """A hash checked for a login naming no account (or a disabled one): the answer takes
    as long as for a real one and does not tell which names exist."""
    if not _dummy:
        _dummy.append(hash_password(secrets.token_urlsafe(16)))
    return _dummy[0]
