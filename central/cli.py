"""``hall-central``: the central collector's command line (README.md).

- ``hall-central -c FILE run``: run the collector until SIGTERM.
- ``hall-central -c FILE roster publish FILE --site SITE [--force]``: validate a roster
  (docs/topics.md), store it as the site's current roster (table ``rosters``; an older version
  than the stored one is refused unless ``--force``) and publish it retained to
  ``{prefix}/{site}/roster``; waits for the broker's PUBACK.
- ``hall-central -c FILE roster publish --site SITE``: publish the stored roster again.
- ``hall-central -c FILE roster show --site SITE [--json]``: the stored roster.
- ``hall-central -c FILE devices``: devices with last status, backlog, last event time and
  when the centre last received from each, in the hall's timezone, and their signed chains
  (central/commands.py).
- ``hall-central -c FILE devices trust DEVICE KEYFILE | findings``: the devices' keys and
  what the chain checks found (central/devices_cli.py, docs/tamper-centre.md).
- ``hall-central -c FILE report attendance|ratings [--month YYYY-MM] [--site S]
  [--format table|csv|xlsx|html] [--out FILE]``: monthly reports (central/reports).
- ``hall-central -c FILE export ratings [--month YYYY-MM] [--site S]
  [--format csv|xlsx|json] [--out FILE]``: the month's ratings for the provincial 好差评
  platform (central/export_ratings.py).
- ``hall-central -c FILE leave import FILE | list | remove ID``: leave (central/leave.py).
- ``hall-central -c FILE schedule show | publish``: the hall's hours as published to the
  kiosks (central/schedule_cli.py).
- ``hall-central -c FILE cases list | show ID | move ID STATE --by NAME --note TEXT``: 差评
  cases (central/cases/cli.py).
- ``hall-central -c FILE users add NAME --role clerk|admin | list | passwd NAME | disable NAME
  | enable NAME``: the office's accounts (central/office/users_cli.py).
- ``hall-central config schema``: the JSON schema of central.toml, for editors (reads no config).

Read-only commands (``devices``, ``report``, ``export``, ``roster show``, ``leave list``) never
create a store: a missing or empty one is an error naming it.

Errors are one line on stderr; a config error exits 78 (EX_CONFIG).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from central.config import (
    DEFAULT_CENTRAL_CONFIG,
    CentralConfig,
    central_schema,
    load_central_config,
)
from contract import ID_PATTERN, is_id
from sync.cli_common import (
    CliError,
    add_common_options,
    parse_only,
    report_probes,
    run_command,
    setup_logging,
)

logger = logging.getLogger("hall-central")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hall-central", description="Service-hall central collector and tools."
    )
    sub = add_common_options(parser, DEFAULT_CENTRAL_CONFIG, "collector")
    sub.add_parser(
        "run",
        help="run the collector until SIGTERM",
        description="Subscribe to every device's event batches (shared subscription), store "
        "them, ack after commit; track device status.",
    )
    p = sub.add_parser(
        "check",
        help="validate the config and probe the store, the broker and its ACL",
        description="Validate the config, then probe the store (open, schema current, "
        "writable), the broker (the collector's credentials) and the ACL (subscribe to the "
        "events and status, publish ack and roster). Exit 0 when all pass, 1 when a probe "
        "fails, 78 on a config error.",
    )
    p.add_argument(
        "--only", metavar="LIST", help="comma-separated probes: config,store,broker,acl,schedule"
    )
    p = sub.add_parser("roster", help="staff roster tools", description="Staff roster tools.")
    rsub = p.add_subparsers(dest="roster_command", metavar="ACTION")
    rsub.required = True
    r = rsub.add_parser(
        "publish",
        help="store a roster file for a site and publish it retained (or republish the stored one)",
        description='Validate {"v":1,"version":N,"staff":[{"id","name","role","window"}]}, '
        "store it as the site's roster and publish it retained to PREFIX/SITE/roster "
        "(docs/topics.md). Without FILE, publish the roster stored for the site again.",
    )
    r.add_argument(
        "file",
        type=Path,
        nargs="?",
        help="roster JSON, CSV or xlsx file (omit: republish the stored one)",
    )
    r.add_argument(
        "--version",
        dest="roster_version",
        type=int,
        help="CSV/xlsx only: the roster version (default: one above the stored one)",
    )
    r.add_argument("--site", required=True, help="site id, e.g. jiedong")
    r.add_argument(
        "--force",
        action="store_true",
        help="store and publish even if the stored roster has a higher version",
    )
    r.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the broker")
    r = rsub.add_parser(
        "show",
        help="print the roster stored for a site",
        description="Print the roster stored for a site (what the collector republishes).",
    )
    r.add_argument("--site", required=True, help="site id, e.g. jiedong")
    r.add_argument(
        "--json", action="store_true", help="print the roster payload exactly as published"
    )
    p = sub.add_parser(
        "devices",
        help="list devices: last status, backlog, last event time, last received, chains",
        description="List devices known to the store with their last status, the time of "
        "their newest trusted event and when the centre last received from them, in the "
        "hall's timezone (central.timezone), then their signed chains: key, verified seq, "
        "signed and unsigned events, open findings (docs/tamper-centre.md).",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    from central.devices_cli import add_parsers as add_devices_parsers

    add_devices_parsers(p)
    p = sub.add_parser("config", help="config tools", description="Config tools.")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION")
    csub.required = True
    csub.add_parser(
        "schema",
        help="print the JSON schema of central.toml (for editors)",
        description="Print the JSON schema of central.toml; no config file is read.",
    )
    from central.cases.cli import add_parser as add_cases_parser
    from central.commands import add_parsers
    from central.office.users_cli import add_parser as add_users_parser
    from central.schedule_cli import add_parser as add_schedule_parser
    from central.seal.cli import add_parser as add_seal_parser
    from central.summary_cli import add_parser as add_summary_parser

    add_parsers(sub)
    add_schedule_parser(sub)
    add_seal_parser(sub)
    add_summary_parser(sub)
    add_cases_parser(sub)
    add_users_parser(sub)
    return parser


def cmd_run(cfg: CentralConfig, _args: argparse.Namespace) -> int:
    from central.collector import run_collector

    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        logger.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    board = None
    if cfg.board.listen:  # the hall board page (docs/board.md); '' turns it off
        from central.board.server import BoardServer

        board = BoardServer(cfg)
        board.start()  # a board that cannot listen is logged; the collector still runs
    office = None
    if cfg.office.listen:  # the office's 差评 pages (docs/office.md); '' turns them off
        from central.office.server import OfficeServer

        office = OfficeServer(cfg)
        office.start()  # pages that cannot listen are logged; the collector still runs
    try:
        return run_collector(cfg, stop)
    finally:
        if office is not None:
            office.stop()
        if board is not None:
            board.stop()


def cmd_check(cfg: CentralConfig, args: argparse.Namespace) -> int:
    from central.checks import PROBES, run_probes

    only = parse_only(args.only, PROBES)
    scheme = cfg.store.url.split(":")[0]
    print(f"[ ok ] config: {args.config} (collector {cfg.central.id}, store {scheme})")
    if only == {"config"}:
        return 0
    results = run_probes(cfg, only)
    return report_probes(results)


def publish_roster(cfg: CentralConfig, site: str, roster: dict[str, Any], timeout: float) -> str:
    """Publish a validated roster retained; returns the topic. Raises CliError on failure."""
    from central.publish_retained import publish_retained
    from contract import roster_json

    topic = f"{cfg.mqtt.prefix}/{site}/roster"
    # The canonical text the store keeps and the collector republishes (contract.roster).
    publish_retained(cfg, "roster publish", [(topic, roster_json(roster).encode("utf-8"))], timeout)
    return topic


def _site(args: argparse.Namespace) -> str:
    if not is_id(args.site):
        action = f"roster {args.roster_command}"
        raise CliError(f"{action} --site: expected {ID_PATTERN}, got {args.site!r}", 2)
    return args.site


def _open(cfg: CentralConfig, create: bool = True) -> Any:
    from central.commands import open_existing
    from central.store import open_store

    if not create:
        return open_existing(cfg)
    return open_store(
        cfg.store.url, cfg.store.pg_schema, cfg.store.password, timezone=cfg.central.timezone
    )


def cmd_roster(cfg: CentralConfig, args: argparse.Namespace) -> int:
    if args.roster_command == "show":
        return cmd_roster_show(cfg, args)
    from central.store import RosterVersionError
    from contract import RosterError, parse_roster, validate_roster

    site = _site(args)
    if args.file is None:
        # Republish what the store holds, e.g. after a broker lost its retained messages.
        if args.force:
            raise CliError("roster publish --force: only with a FILE (nothing new to store)", 2)
        with _open(cfg) as store:
            stored = store.roster(site)
        if stored is None:
            raise CliError(
                f"roster publish: no roster stored for site {site}; "
                f"publish one from a file first (roster publish FILE --site {site})"
            )
        try:
            roster = validate_roster(stored.roster)
        except RosterError as exc:  # edited in the database by hand
            raise CliError(
                f"roster publish: the stored roster of {site} is invalid: {exc}"
            ) from None
        topic = publish_roster(cfg, site, roster, args.timeout)
        print(
            f"roster version {roster['version']} ({len(roster['staff'])} staff) from the store "
            f"retained on {topic}"
        )
        return 0
    from central.roster_files import is_table, parse_roster_table

    if is_table(args.file):
        # A spreadsheet has no version: the given one, or one above the stored roster's.
        version = args.roster_version
        if version is None:
            with _open(cfg) as store:
                stored = store.roster(site)
            version = 1 if stored is None else stored.version + 1
        try:
            roster = parse_roster_table(args.file, version)
        except RosterError as exc:
            raise CliError(str(exc), 2) from None
    else:
        if args.roster_version is not None:
            raise CliError("roster publish --version: only for CSV/xlsx files", 2)
        try:
            raw = args.file.read_bytes()
        except OSError as exc:
            raise CliError(f"roster publish: cannot read {args.file}: {exc.strerror}", 2) from None
        try:
            roster = parse_roster(raw)
        except RosterError as exc:
            raise CliError(f"{args.file}: {exc}", 2) from None
    # Stored first: the store is the centre's record and what the collector republishes on
    # every connect, so a publish that fails below is still delivered later.
    with _open(cfg) as store:
        try:
            store.put_roster(site, roster, force=args.force)
        except RosterVersionError as exc:
            raise CliError(f"roster publish {args.file}: {exc}") from None
    try:
        topic = publish_roster(cfg, site, roster, args.timeout)
    except CliError as exc:
        raise CliError(
            f"{exc}; version {roster['version']} is stored: run 'roster publish --site {site}' "
            "again, or let the collector republish it when it (re)connects"
        ) from None
    print(
        f"roster version {roster['version']} ({len(roster['staff'])} staff) stored and "
        f"retained on {topic}"
    )
    return 0


def cmd_roster_show(cfg: CentralConfig, args: argparse.Namespace) -> int:
    site = _site(args)
    with _open(cfg, create=False) as store:
        stored = store.roster(site)
    if stored is None:
        raise CliError(f"roster show: no roster stored for site {site}")
    if args.json:
        print(stored.payload)
        return 0
    from zoneinfo import ZoneInfo

    from central.commands import aligned, local_time
    from central.roster_files import COLUMNS, ROLES

    published = local_time(stored.published_at, ZoneInfo(cfg.central.timezone))
    print(
        f"site {site}: roster version {stored.version}, {len(stored.roster['staff'])} staff, "
        f"published {published} ({cfg.central.timezone})"
    )
    # The office's own headings and role words (工号, 窗口人员 …: what roster publish reads
    # from its spreadsheets), the code in brackets for whoever edits the JSON.
    # 入职日期/离职日期 only when some entry has them: the report judges only those days.
    staff = stored.roster["staff"]
    dated = tuple(k for k in ("starts", "ends") if any(e.get(k) for e in staff))
    keys = ("id", "name", "role", "window", *dated)
    role_names = {code: word for word, code in ROLES.items() if word != code}
    table = [
        (
            str(e.get("id", "-")),
            str(e.get("name", "-")),
            f"{role_names[role]} ({role})" if (role := e.get("role")) in role_names else str(role),
            str(e.get("window") or "-"),
            *(str(e.get(k) or "-") for k in dated),
        )
        for e in staff
    ]
    for line in aligned([COLUMNS[k][0] for k in keys], table):
        print(line)
    return 0


def cmd_devices(cfg: CentralConfig, args: argparse.Namespace) -> int:
    if getattr(args, "devices_command", None):
        from central.devices_cli import cmd

        return cmd(cfg, args)
    from central.commands import cmd_devices as devices

    return devices(cfg, args)


def cmd_report(cfg: CentralConfig, args: argparse.Namespace) -> int:
    from central.commands import cmd_report as report

    return report(cfg, args)


def cmd_export(cfg: CentralConfig, args: argparse.Namespace) -> int:
    from central.commands import cmd_export as export

    return export(cfg, args)


def cmd_leave(cfg: CentralConfig, args: argparse.Namespace) -> int:
    from central.commands import cmd_leave as leave

    return leave(cfg, args)


def cmd_schedule(cfg: CentralConfig, args: argparse.Namespace) -> int:
    from central.schedule_cli import cmd_schedule as schedule

    return schedule(cfg, args)


def cmd_summary(cfg: CentralConfig, args: argparse.Namespace) -> int:
    from central.summary_cli import cmd_summary as summary

    return summary(cfg, args)


def cmd_cases(cfg: CentralConfig, args: argparse.Namespace) -> int:
    from central.cases.cli import cmd_cases as cases

    return cases(cfg, args)


def cmd_users(cfg: CentralConfig, args: argparse.Namespace) -> int:
    from central.office.users_cli import cmd_users as users

    return users(cfg, args)


def cmd_config(_args: argparse.Namespace) -> int:
    print(json.dumps(central_schema(), indent=2, ensure_ascii=False))
    return 0


# Commands that describe the config file rather than run with one: they work before it exists.
CONFIGLESS = {"config": cmd_config}


def _seal_command(name: str) -> Any:
    def run(cfg: CentralConfig, args: argparse.Namespace) -> int:
        from central.seal import cli

        return int(getattr(cli, f"cmd_{name}")(cfg, args))

    return run


COMMANDS = {
    "run": cmd_run,
    "seal": _seal_command("seal"),
    "verify": _seal_command("verify"),
    "prove": _seal_command("prove"),
    "schedule": cmd_schedule,
    "summary": cmd_summary,
    "check": cmd_check,
    "roster": cmd_roster,
    "devices": cmd_devices,
    "report": cmd_report,
    "export": cmd_export,
    "leave": cmd_leave,
    "cases": cmd_cases,
    "users": cmd_users,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose if args.command != "run" else max(1, args.verbose))
    if args.command in CONFIGLESS:
        return run_command("hall-central", args, lambda: CONFIGLESS[args.command](args))
    return run_command(
        "hall-central",
        args,
        lambda: COMMANDS[args.command](load_central_config(args.config), args),
    )


if __name__ == "__main__":
    sys.exit(main())
