"""Which key signs the device's events, and telling the centre (docs/device-keys.md).

- :func:`start_signing`, for ``hall-agent run`` (and ``ping`` when it sends by itself): the
  device key is created if missing, a rotation interrupted between its commit and its rename
  is finished, the device's key is announced in a ``device.key`` event unless the chain has it
  in effect (or is about to), and the outbox gets its signer (agent/outbox_chain.py).
- :func:`rotate`, for ``hall-agent keygen --rotate``: a new key as ``device.key.next`` and its
  announcement, which the signer signs with the current key and then switches. It may run
  while the agent runs: the outbox is shared between processes, and the signer loads the new
  key when it reaches the announcement.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from agent.keys import DeviceKeyError, Keyring, fingerprint
from agent.outbox import Outbox, OutboxError
from contract import EventType, KeyData, event_data

logger = logging.getLogger(__name__)


class RotationRefused(Exception):
    """A rotation cannot start now; the message says why and when it can."""


def announce(outbox: Outbox, public_key: str) -> int:
    """Append the ``device.key`` event announcing ``public_key``; returns its seq."""
    data = event_data(EventType.KEY, KeyData(public_key=public_key))
    seq = int(outbox.append(EventType.KEY, data).event["seq"])
    # A device that never signed begins its chain with this announcement, so the centre
    # learns the key before the first event it must check (docs/device-keys.md).
    outbox.start_chain_at(seq)
    return seq


def start_signing(
    data_dir: str | os.PathLike[str], outbox: Outbox, *, strict: bool = False
) -> Keyring:
    """Set ``outbox`` to sign with the device's keys; returns its keyring.

    ``strict`` (a command a technician runs): a key or outbox problem raises. Otherwise (the
    agent) it is logged and the signer is set all the same: events then wait unsigned, the
    status shows why, and signing is tried again every ~30 s (agent/outbox.py) until the key
    file is fixed; the announcement is then made at the next start.
    """
    keyring = Keyring(data_dir)
    try:
        _prepare(keyring, outbox)
    except (DeviceKeyError, OSError, OutboxError) as exc:
        if strict:
            raise
        logger.error("device key: %s; events wait unsigned until it is fixed", exc)
    outbox.set_signer(keyring)
    return keyring


def _prepare(keyring: Keyring, outbox: Outbox) -> None:
    public, created = keyring.ensure()
    if created:
        # A new key is something the technician must act on (the centre holds the device's
        # events as signed by an untrusted key until then), so it is logged where the
        # service's default level shows it (docs/device-keys.md "Trusting a device's key").
        logger.warning(
            "device key created: %s (public key %s); trust it at the centre: "
            "hall-central -c FILE devices trust DEVICE %s",
            fingerprint(public),
            keyring.public_path,
            keyring.public_path.name,
        )
    else:
        logger.info(
            "device key in use: %s (public key %s)", fingerprint(public), keyring.public_path
        )
    if keyring.settle(outbox.chain_key()):
        public = keyring.current()[0]  # the rotation's new key, in effect since its commit
    next_public = keyring.next_public()
    announced = outbox.announced_key()
    if next_public is not None and announced != next_public:
        logger.warning(
            "%s (%s) was never announced: a `keygen --rotate` was interrupted; run it again "
            "to finish the rotation",
            keyring.next_path,
            fingerprint(next_public),
        )
    if announced != public and (next_public is None or announced != next_public):
        seq = announce(outbox, public)
        logger.info("device key %s announced in event seq %d", fingerprint(public), seq)


@dataclass(frozen=True)
class Rotation:
    old: str  # public keys, base64
    new: str
    seq: int  # of the device.key event announcing ``new``
    resumed: bool  # device.key.next was there from an interrupted rotation


def rotate(data_dir: str | os.PathLike[str], outbox: Outbox) -> Rotation:
    """Start a rotation: ``device.key.next`` (0600) and the ``device.key`` event announcing
    it. Refused while an earlier rotation is not finished."""
    keyring = Keyring(data_dir)
    if not keyring.key_path.exists():
        raise RotationRefused(
            f"no device key at {keyring.key_path} to rotate; `hall-agent keygen` creates the "
            "first one"
        )
    old, _ = keyring.current()
    next_public = keyring.next_public()
    resumed = False
    if next_public is not None:
        shown = f"{keyring.next_path} ({fingerprint(next_public)})"
        if outbox.chain_key() == next_public:
            raise RotationRefused(
                f"the last rotation is signed but not finished: {shown} is in effect and "
                "becomes device.key when the agent next starts (systemctl restart "
                "hall-agent); rotate again after that"
            )
        if outbox.announced_key() == next_public:
            raise RotationRefused(
                f"a rotation is already under way: {shown} is announced in an event the "
                "agent has not signed yet (it signs it with the current key when it next "
                "sends; `hall-agent outbox` then shows 'not signed yet: 0'); rotate again "
                "after that"
            )
        # Written but never announced: the rotation stopped between its two steps.
        new, resumed = next_public, True
    else:
        try:
            new = keyring.create_next()
        except FileExistsError:
            raise RotationRefused(
                f"{keyring.next_path} appeared meanwhile: another `keygen --rotate` is running"
            ) from None
    return Rotation(old=old, new=new, seq=announce(outbox, new), resumed=resumed)
