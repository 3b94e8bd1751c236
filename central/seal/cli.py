"""``hall-central seal | verify | prove`` (docs/tamper.md).

- ``seal --month M``: build the month's tree, sign its root with the centre's key, store the
  checkpoint; ``seal --show-key``: print the centre's public key.
- ``verify --month M``: recompute chains and tree from the store and compare with the month's
  checkpoints; exit 1 naming each event that differs.
- ``prove EVENT_ID [--json]``: an inclusion proof for scripts/verify_proof.py.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from central.config import CentralConfig
from sync.cli_common import CliError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "seal",
        help="seal a month's events: a signed Merkle root (docs/tamper.md)",
        description="Build the RFC 9162 Merkle tree over the events received in the month, "
        "sign its root with the centre's key ([seal] key_file, created if missing) and store "
        "the checkpoint. A later seal of the same month must extend the earlier one.",
    )
    p.add_argument("--month", metavar="YYYY-MM", help="the month (default: the current one)")
    p.add_argument("--show-key", action="store_true", help="print the centre's public key only")
    p = sub.add_parser(
        "verify",
        help="check a month's events against its seal and the devices' chains",
        description="Recompute every device chain and the month's tree from the store and "
        "compare them with the month's checkpoints; exit 1 naming each event that differs.",
    )
    p.add_argument("--month", metavar="YYYY-MM", help="the month (default: the current one)")
    p = sub.add_parser(
        "prove",
        help="print an inclusion proof of one event in its month's seal",
        description="Print an inclusion proof of EVENT_ID in the latest checkpoint that holds "
        "it, for scripts/verify_proof.py.",
    )
    p.add_argument("event_id", metavar="EVENT_ID", help="the id of the event to prove (a UUID)")
    p.add_argument("--json", action="store_true", help="the proof as JSON (for verify_proof.py)")


def _month(cfg: CentralConfig, text: str | None) -> Any:
    from zoneinfo import ZoneInfo

    from central.reports.month import Month

    try:
        return Month.parse(text, ZoneInfo(cfg.central.timezone))
    except ValueError as exc:
        raise CliError(str(exc), 2) from None


def cmd_seal(cfg: CentralConfig, args: argparse.Namespace) -> int:
    from central.commands import open_existing
    from central.seal.core import SealError, seal
    from central.seal.keys import load_or_create, public_hex

    key, created = load_or_create(cfg.seal.key_file)
    if created:
        where = cfg.seal.key_file
        print(f"created the centre's key {where} (public key in {where}.pub)")
    if args.show_key:
        print(public_hex(key))
        return 0
    month = _month(cfg, args.month)
    with open_existing(cfg) as store:
        try:
            done = seal(store, month, key)
        except SealError as exc:
            raise CliError(str(exc)) from None
    c = done.checkpoint
    if not done.created:
        print(f"{c.month}: unchanged since checkpoint {c.id} ({c.tree_size} events)")
        return 0
    print(f"{c.month}: checkpoint {c.id}, {c.tree_size} events, root {c.root}")
    if done.extends is not None:
        print(f"  extends checkpoint {done.extends.id} ({done.extends.tree_size} events)")
    return 0


def _public_key(cfg: CentralConfig) -> str:
    from pathlib import Path

    pub = Path(f"{cfg.seal.key_file}.pub")
    try:
        return pub.read_text(encoding="ascii").strip()
    except OSError:
        pass
    from central.seal.keys import load_key, public_hex

    try:
        return public_hex(load_key(cfg.seal.key_file))
    except OSError as exc:
        raise CliError(f"verify: no centre key: {exc}") from None


def cmd_verify(cfg: CentralConfig, args: argparse.Namespace) -> int:
    from central.commands import open_existing
    from central.seal.core import verify

    month = _month(cfg, args.month)
    key = _public_key(cfg)
    with open_existing(cfg) as store:
        result = verify(store, month, key)
    c = result.checkpoint
    if c is not None:
        print(f"{result.month}: checkpoint {c.id}, {c.tree_size} events, root {c.root}")
    for note in result.notes:
        print(f"  note: {note}")
    for problem in result.problems:
        print(f"  FAIL {problem}")
    print(f"{result.month}: {'OK' if result.ok else 'FAILED'}")
    return 0 if result.ok else 1


def cmd_prove(cfg: CentralConfig, args: argparse.Namespace) -> int:
    from central.commands import open_existing
    from central.seal.core import SealError, prove

    with open_existing(cfg) as store:
        try:
            proof = prove(store, args.event_id)
        except SealError as exc:
            raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps(proof, ensure_ascii=False, indent=2))
        return 0
    print(f"event {proof['event_id']}: leaf {proof['leaf_index']} of {proof['tree_size']}")
    print(f"month {proof['month']}, checkpoint {proof['checkpoint']}, root {proof['root']}")
    print(f"leaf hash {proof['leaf_hash']}")
    for i, step in enumerate(proof["path"]):
        print(f"  path[{i}] {step}")
    print(f"signature {proof['signature']}")
    print(f"centre key {proof['public_key']}")
    return 0
