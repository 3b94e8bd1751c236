"""``hall-central devices trust | findings`` and the chain lines of ``devices``
(docs/tamper-centre.md "Commands").

- ``devices trust DEVICE KEYFILE [--site SITE] [--by NAME] [--replace]``: register or trust a
  device's public key. KEYFILE is the device's ``device.pub`` (one line, base64 of the 32 raw
  bytes) or a PEM public key. A key other than the one the device announced or the one trusted
  is refused unless ``--replace`` (which retires the others). Audited (``audit_log``).
- ``devices findings [--device D] [--site S] [--open] [--format table|csv]``.

Exit codes: 0 done; 1 refused (another key is in effect, no such device in several sites);
2 usage (a KEYFILE that is no key, a bad id). Listing findings exits 0 whether or not any are
open: ``hall-central verify --month`` is the check that fails (docs/tamper-centre.md).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import csv
import io
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from central.config import CentralConfig
from contract import ID_PATTERN, is_id
from sync.cli_common import CliError

FINDING_FORMATS = ("table", "csv")
FINDING_HEADERS = ("id", "site", "device", "seq", "kind", "event", "found", "resolved", "detail")
MAX_KEYFILE = 64 * 1024  # a device.pub is 45 bytes, a PEM public key a few hundred
CHAIN_HEADERS = ("site", "device", "key", "key state", "verified seq", "signed", "unsigned", "open")


def add_parsers(devices: argparse.ArgumentParser) -> None:
    """``devices``' actions; without one, ``devices`` lists the devices."""
    sub = devices.add_subparsers(dest="devices_command", metavar="ACTION")
    sub.required = False
    p = sub.add_parser(
        "trust",
        help="register or trust a device's public key (its device.pub)",
        description="Trust DEVICE's Ed25519 public key: a key the device announced (pending) "
        "becomes trusted; a key registered before the device ever sent is kept for its "
        "events. A key other than the one the device announced, or than the trusted one, is "
        "refused unless --replace. Audited. Exit 1 when refused, 2 on a bad KEYFILE.",
    )
    p.add_argument("device", metavar="DEVICE", help="the device id, e.g. kiosk-01")
    p.add_argument(
        "keyfile",
        metavar="KEYFILE",
        type=Path,
        help="the device's device.pub (one line of base64) or a PEM public key",
    )
    p.add_argument("--site", help="the device's site (default: the one site it is known in)")
    p.add_argument("--by", help="who trusts it, for the audit log (default: the login name)")
    p.add_argument(
        "--replace",
        action="store_true",
        help="trust it although another key is announced or trusted (retires the others)",
    )
    p = sub.add_parser(
        "findings",
        help="list what the chain checks found (bad signatures, gaps, forks, keys)",
        description="The chain verifier's findings, oldest first (docs/tamper-centre.md).",
    )
    p.add_argument("--device", help="one device")
    p.add_argument("--site", help="one site")
    p.add_argument("--open", action="store_true", help="only findings not resolved")
    p.add_argument("--format", choices=FINDING_FORMATS, default="table", help="default: table")


def cmd(cfg: CentralConfig, args: argparse.Namespace) -> int:
    if args.devices_command == "trust":
        return cmd_trust(cfg, args)
    return cmd_findings(cfg, args)


# --- keys -------------------------------------------------------------------------------------


def read_key(path: Path) -> bytes:
    """The 32 raw bytes of an Ed25519 public key file: one line of base64 (``device.pub``)
    or PEM (``-----BEGIN PUBLIC KEY-----``). Raises CliError (2) naming what is wrong."""
    what = f"devices trust {path}"
    try:
        with path.open("rb") as f:
            data = f.read(MAX_KEYFILE + 1)
    except OSError as exc:
        raise CliError(f"{what}: cannot read it ({exc.strerror})", 2) from None
    if len(data) > MAX_KEYFILE:
        raise CliError(
            f"{what}: over {MAX_KEYFILE // 1024} KiB; expected the device's device.pub (one "
            "line) or a PEM public key",
            2,
        )
    data = data.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 BOM, as some editors write
    if b"-----BEGIN" in data:
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
        from cryptography.hazmat.primitives.serialization import (
            Encoding,
            PublicFormat,
            load_pem_public_key,
        )

        try:
            key = load_pem_public_key(data)
        except UnsupportedAlgorithm as exc:
            raise CliError(
                f"{what}: a PEM key of an algorithm this system does not support ({exc}); "
                "expected an Ed25519 public key",
                2,
            ) from None
        except ValueError as exc:
            raise CliError(f"{what}: not a PEM public key ({exc})", 2) from None
        if not isinstance(key, Ed25519PublicKey):
            raise CliError(
                f"{what}: a {type(key).__name__.removesuffix('PublicKey').lstrip('_')} key; "
                "expected an Ed25519 public key",
                2,
            )
        return key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    lines = [line.strip() for line in data.decode("ascii", errors="replace").splitlines()]
    lines = [line for line in lines if line]
    if len(lines) != 1:
        raise CliError(
            f"{what}: {len(lines)} lines; expected one line, the base64 of the device's 32-byte "
            "Ed25519 public key (its device.pub), or a PEM public key",
            2,
        )
    try:
        raw = base64.b64decode(lines[0], validate=True)
    except (binascii.Error, ValueError):
        raise CliError(
            f"{what}: line 1 is not base64; expected the device's device.pub (44 characters)", 2
        ) from None
    if len(raw) != 32:
        raise CliError(
            f"{what}: {len(raw)} bytes; expected the 32 bytes of an Ed25519 public key", 2
        )
    return raw


def _site(store: Any, device: str, site: str | None) -> str:
    if site is not None:
        if not is_id(site):
            raise CliError(f"devices trust --site: expected {ID_PATTERN}, got {site!r}", 2)
        return site
    known = {d.site for d in store.device_states() if d.device == device}
    known |= {k.site for k in store.device_keys() if k.device == device}
    if len(known) == 1:
        return known.pop()
    if not known:
        raise CliError(
            f"devices trust: no device {device} known yet; give its site (--site SITE) to "
            "register its key before it sends",
            2,
        )
    raise CliError(
        f"devices trust: device {device} is known in sites {', '.join(sorted(known))}; "
        "give one (--site SITE)",
        2,
    )


def cmd_trust(cfg: CentralConfig, args: argparse.Namespace) -> int:
    from central.chainrules import fingerprint
    from central.commands import _login_name, open_existing

    if not is_id(args.device):
        raise CliError(f"devices trust DEVICE: expected {ID_PATTERN}, got {args.device!r}", 2)
    raw = read_key(args.keyfile)
    public_key, fp = base64.b64encode(raw).decode("ascii"), fingerprint(raw)
    by = args.by or _login_name()
    with open_existing(cfg) as store:
        site = _site(store, args.device, args.site)
        where = f"{site}/{args.device}"
        keys = store.device_keys(site, args.device)
        same = next((k for k in keys if k.public_key == public_key), None)
        others = [k for k in keys if k.public_key != public_key and k.state != "retired"]
        if same is not None and same.state == "trusted" and not others:
            print(f"{where}: key {fp} is trusted already (since {_when(same.trusted_at, cfg)})")
            return 0
        if others and not args.replace:
            said = "; ".join(_described(k) for k in others)
            raise CliError(
                f"devices trust: {where} has another key: {said}; the file's key {fp} is not "
                "it. Compare the fingerprint with the one the device itself shows; if the "
                "device was replaced or its key renewed, run again with --replace (the other "
                "keys are retired)"
            )
        from_seq = None
        if same is None and args.replace:
            # A key never announced replaces the others for the events not checked yet.
            head = store.chain_head(site, args.device)
            from_seq = None if head is None or head.last_seq is None else head.last_seq + 1
        key = store.trust_key(
            site,
            args.device,
            public_key,
            fp,
            by,
            datetime.now(UTC),
            from_seq=from_seq,
            replace=args.replace,
        )
    how = "announced in event " + key.announced_in if key.announced_in else "registered by hand"
    print(f"{where}: key {fp} trusted by {by} ({how})")
    if others:
        print(f"{where}: retired {', '.join(k.fingerprint for k in others)}")
    return 0


def _described(k: Any) -> str:
    source = f"announced in event {k.announced_in}" if k.announced_in else "registered by hand"
    return f"{k.fingerprint} ({k.state}, {source})"


def _when(value: datetime | None, cfg: CentralConfig) -> str:
    from central.commands import local_time

    return local_time(value, ZoneInfo(cfg.central.timezone))


# --- findings ---------------------------------------------------------------------------------


def cmd_findings(cfg: CentralConfig, args: argparse.Namespace) -> int:
    from central.commands import aligned, open_existing

    for name in ("device", "site"):
        value = getattr(args, name)
        if value is not None and not is_id(value):
            raise CliError(f"devices findings --{name}: expected {ID_PATTERN}, got {value!r}", 2)
    with open_existing(cfg) as store:
        found = store.chain_findings(args.site, args.device, open_only=args.open)
    rows = [
        (
            str(f.id),
            f.site,
            f.device,
            str(f.seq) if f.seq_end in (None, f.seq) else f"{f.seq}..{f.seq_end}",
            f.kind,
            f.event_id or "-",
            _when(f.found_at, cfg),
            _when(f.resolved_at, cfg) if f.resolved_at else "open",
            f.detail,
        )
        for f in found
    ]
    if args.format == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(FINDING_HEADERS)
        writer.writerows(rows)
        sys.stdout.write(out.getvalue())
        return 0
    for line in aligned(FINDING_HEADERS, rows):
        print(line)
    if not rows:
        print("(no findings)" if not args.open else "(no open findings)")
    return 0


# --- the chain lines of `devices` -------------------------------------------------------------


def chain_rows(store: Any) -> list[dict[str, Any]]:
    """Per device with a chain head or a key: its key in effect, how far its chain is
    verified, signed and unsigned counts, open findings."""
    heads = {(h.site, h.device): h for h in store.chain_heads()}
    keys: dict[tuple[str, str], list[Any]] = {}
    for k in store.device_keys():
        keys.setdefault((k.site, k.device), []).append(k)
    open_count = store.open_finding_counts()
    out = []
    for where in sorted(set(heads) | set(keys) | set(open_count)):
        head = heads.get(where)
        key = _current_key(keys.get(where, []), head.key_fingerprint if head else None)
        out.append(
            {
                "site": where[0],
                "device": where[1],
                "key": key.fingerprint if key else None,
                "key_state": key.state if key else None,
                "verified_seq": head.last_seq if head else None,
                "signed": head.signed if head else 0,
                "unsigned": head.unsigned if head else 0,
                "open_findings": open_count.get(where, 0),
            }
        )
    return out


def _current_key(keys: list[Any], in_effect: str | None) -> Any:
    """The key shown for a device: the one in effect after its last verified event, else the
    newest one not retired (a pending announcement, a key registered before it sent)."""
    for k in keys:
        if k.fingerprint == in_effect:
            return k
    live = [k for k in keys if k.state != "retired"]
    return live[-1] if live else None


def chain_lines(rows: list[dict[str, Any]]) -> list[str]:
    from central.commands import aligned

    if not rows:
        return []
    table = [
        (
            r["site"],
            r["device"],
            r["key"] or "-",
            r["key_state"] or "-",
            "-" if r["verified_seq"] is None else str(r["verified_seq"]),
            str(r["signed"]),
            str(r["unsigned"]),
            str(r["open_findings"]),
        )
        for r in rows
    ]
    lines = ["", "signed chains (hall-central devices findings --open; docs/tamper-centre.md):"]
    lines += aligned(CHAIN_HEADERS, table)
    pending = [r for r in rows if r["key_state"] == "pending"]
    if pending:
        lines.append(
            f"{len(pending)} device(s) with a pending key: compare its fingerprint with the "
            "device's own, then hall-central devices trust DEVICE KEYFILE"
        )
    return lines
