"""The device's own Ed25519 key, which signs its events (docs/device-keys.md).

Files in the data directory:

- ``device.key``: the private key, PKCS#8 PEM, unencrypted, mode 0600. A key file that group
  or others may read is refused (like ssh): whoever copied it can sign as the device.
- ``device.pub``: one line, the raw 32-byte public key in standard base64 (44 characters),
  mode 0644; what the technician gives the centre (``hall-central devices trust``). Derived
  from ``device.key`` and rewritten whenever it does not match.
- ``device.key.next``: during a rotation only, the new key, until the announcement of it has
  been signed with the old one (agent/signing.py); then it is renamed over ``device.key``.

The private key never leaves this module's objects: nothing here logs, prints or formats it.
"""

from __future__ import annotations

import base64
import logging
import os
import stat
import threading
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.durable import create_durably, data_dir_owner, fsync_directory, write_durably
from contract import chain

logger = logging.getLogger(__name__)

# The files share one stem. (The private key's name equals the event type that announces a
# key, EventType.KEY, only by coincidence: it is a file name, built here, not an event type.)
_STEM = "device"
KEY_FILE = f"{_STEM}.key"
NEXT_KEY_FILE = f"{KEY_FILE}.next"
PUBLIC_FILE = f"{_STEM}.pub"
MAX_KEY_FILE = 64 * 1024  # a PKCS#8 Ed25519 PEM is 119 bytes; anything this big is not one


class DeviceKeyError(Exception):
    """A key file is unreadable, too open or not a key; the message names the file, what was
    expected and what to do."""


def public_key_text(key: Ed25519PrivateKey) -> str:
    """The key's public half as the events and ``device.pub`` carry it: the 32 raw bytes in
    standard, padded base64 (44 characters)."""
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def fingerprint(public_key: str) -> str:
    """A public key (base64 of the raw bytes) for people to compare, as ssh shows one:
    ``SHA256:`` and the unpadded base64 of the SHA-256 of the raw key."""
    return chain.fingerprint(base64.b64decode(public_key, validate=True))


def _pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_key(path: Path) -> Ed25519PrivateKey:
    """The private key in ``path``; DeviceKeyError when it is missing, open to group or
    others, unreadable or not an unencrypted PKCS#8 Ed25519 key."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise DeviceKeyError(
            f"device key {path}: no such file; `hall-agent -c FILE keygen` creates it "
            "(`hall-agent run` does too)"
        ) from None
    except OSError as exc:
        raise DeviceKeyError(
            f"device key {path}: cannot open ({exc.strerror or exc}); expected a regular file "
            "the agent's user owns, mode 0600"
        ) from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise DeviceKeyError(f"device key {path}: not a regular file; expected the key file")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            # Checked before reading: a key others could read is not used, even once.
            raise DeviceKeyError(
                f"device key {path}: mode {mode:04o} lets group or others at the private key; "
                f"expected 0600: run `chmod 600 {path}` (and rotate the key, `hall-agent keygen "
                "--rotate`, if anyone else may have copied it)"
            )
        try:
            data = f.read(MAX_KEY_FILE + 1)
        except OSError as exc:
            reason = exc.strerror or exc
            raise DeviceKeyError(f"device key {path}: cannot read ({reason})") from None
    problem = None
    key = None
    if len(data) > MAX_KEY_FILE:
        problem = f"{MAX_KEY_FILE // 1024} KiB or more"
    else:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except TypeError:
            problem = "encrypted with a password"
        except (ValueError, UnsupportedAlgorithm):
            # The library's message may quote the file; the file is the private key.
            problem = "not a PEM private key" if b"-----BEGIN" not in data else "damaged PEM"
        else:
            if not isinstance(key, Ed25519PrivateKey):
                problem = f"not an Ed25519 key ({type(key).__name__})"
    if problem is not None or key is None:
        raise DeviceKeyError(
            f"device key {path}: {problem}; expected an unencrypted PKCS#8 PEM Ed25519 private "
            "key as `hall-agent keygen` writes it. Move the file away and run keygen for a new "
            "key, then trust the new device.pub at the centre"
        )
    assert isinstance(key, Ed25519PrivateKey)
    return key


class Keyring:
    """The device's private keys, found by their public key: ``device.key`` and, during a
    rotation, ``device.key.next``. Loaded once and held in memory: the chain's signer asks for
    the key in effect at every batch. Thread-safe."""

    def __init__(self, data_dir: str | os.PathLike[str]):
        self.data_dir = Path(data_dir)
        self.key_path = self.data_dir / KEY_FILE
        self.next_path = self.data_dir / NEXT_KEY_FILE
        self.public_path = self.data_dir / PUBLIC_FILE
        self._lock = threading.RLock()
        self._held: dict[str, Ed25519PrivateKey] = {}
        self._current: str | None = None  # public key of device.key as last loaded

    # --- the device's key ---------------------------------------------------------------

    def ensure(self) -> tuple[str, bool]:
        """``device.key``, created if missing, and ``device.pub`` to match; returns its public
        key and whether it was created now. Idempotent: an existing key is never replaced."""
        with self._lock:
            created = False
            if not self.key_path.exists() and not self.key_path.is_symlink():
                created = self._create(self.key_path)
            public, _ = self.current(reload=True)
            self._write_public(public)
            return public, created

    def current(self, *, reload: bool = False) -> tuple[str, Ed25519PrivateKey]:
        """(public key, private key) of ``device.key``, loaded on first use."""
        with self._lock:
            if self._current is None or reload:
                key = load_key(self.key_path)
                self._current = public_key_text(key)
                self._held[self._current] = key
            return self._current, self._held[self._current]

    @property
    def current_public(self) -> str | None:
        """The public key of ``device.key`` if it has been loaded (no I/O: for status)."""
        return self._current

    def private(self, public: str) -> Ed25519PrivateKey | None:
        """The private key whose public key is ``public``, if this device holds it (in memory,
        ``device.key`` or ``device.key.next``); None when it does not. A key file that exists
        but cannot be used raises DeviceKeyError: guessing around it could sign with the wrong
        key."""
        with self._lock:
            if public not in self._held:
                if self.key_path.exists():
                    self.current(reload=True)
                self.next_public()
            return self._held.get(public)

    # --- rotation -----------------------------------------------------------------------

    def next_public(self) -> str | None:
        """The public key of ``device.key.next`` (a rotation under way), or None."""
        with self._lock:
            if not self.next_path.exists():
                return None
            key = load_key(self.next_path)
            public = public_key_text(key)
            self._held[public] = key
            return public

    def create_next(self) -> str:
        """Make ``device.key.next``; FileExistsError if one is there already."""
        with self._lock:
            self._create(self.next_path, exist_ok=False)
            public = self.next_public()
            assert public is not None
            return public

    def settle(self, in_effect: str | None) -> bool:
        """The chain's key in effect is now ``in_effect``: when that is ``device.key.next``'s,
        finish the rotation (rename it over ``device.key``, rewrite ``device.pub``) and forget
        the old private key. Returns True when it promoted. Called after every commit of a
        ``device.key`` event and at start (a crash between that commit and the rename)."""
        with self._lock:
            if in_effect is None or not self.next_path.exists():
                return False
            if self.next_public() != in_effect:
                return False
            os.replace(self.next_path, self.key_path)
            fsync_directory(self.data_dir)
            # device.pub after the rename: a crash between them leaves a stale device.pub,
            # which ensure() rewrites at the next start; never a device.pub ahead of the key.
            self._write_public(in_effect)
            old = self._current
            self._current = in_effect
            self._held = {in_effect: self._held[in_effect]}
            if old is not None and old != in_effect:
                logger.info(
                    "device key rotated: %s replaces %s (%s)",
                    fingerprint(in_effect),
                    fingerprint(old),
                    self.key_path,
                )
            return True

    # --- files --------------------------------------------------------------------------

    def _create(self, path: Path, *, exist_ok: bool = True) -> bool:
        """A new private key at ``path`` (0600, never replacing one). Returns False when
        another process made one first and ``exist_ok``."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        pem = _pem(Ed25519PrivateKey.generate())
        try:
            create_durably(path, pem, mode=0o600, owner=data_dir_owner(self.data_dir))
        except FileExistsError:
            if exist_ok:
                return False
            raise
        return True

    def _write_public(self, public: str) -> None:
        text = (public + "\n").encode("ascii")
        try:
            if self.public_path.read_bytes() == text:
                return
        except OSError:
            pass
        write_durably(self.public_path, text, mode=0o644, owner=data_dir_owner(self.data_dir))
