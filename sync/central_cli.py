"""``hall-central``: the central collector's command line (CONTRACT §7).

- ``hall-central -c FILE run``: run the collector until SIGTERM.
- ``hall-central -c FILE roster publish FILE --site SITE [--force]``: validate a roster
  (CONTRACT §3), store it as the site's current roster (table ``rosters``; an older version
  than the stored one is refused unless ``--force``) and publish it retained to
  ``{prefix}/{site}/roster``; waits for the broker's PUBACK.
- ``hall-central -c FILE roster publish --site SITE``: publish the stored roster again.
- ``hall-central -c FILE roster show --site SITE [--json]``: the stored roster.
- ``hall-central -c FILE devices``: devices with last status, backlog and last event time.
- ``hall-central -c FILE report ratings --month YYYY-MM``: counts per window and level.

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

from agent.cli_common import CliError, add_common_options, run_command, setup_logging
from agent.config import DEFAULT_CENTRAL_CONFIG, ID_PATTERN, CentralConfig, load_central_config

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
    p = sub.add_parser("roster", help="staff roster tools", description="Staff roster tools.")
    rsub = p.add_subparsers(dest="roster_command", metavar="ACTION")
    rsub.required = True
    r = rsub.add_parser(
        "publish",
        help="store a roster file for a site and publish it retained (or republish the stored one)",
        description='Validate {"v":1,"version":N,"staff":[{"id","name","role","window"}]}, '
        "store it as the site's roster and publish it retained to PREFIX/SITE/roster "
        "(CONTRACT §3). Without FILE, publish the roster stored for the site again.",
    )
    r.add_argument(
        "file", type=Path, nargs="?", help="roster JSON file (omit: republish the stored one)"
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
        help="list devices: last status, backlog, last event time",
        description="List devices known to the store with their last status.",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = sub.add_parser("report", help="monthly reports", description="Monthly reports.")
    psub = p.add_subparsers(dest="report_command", metavar="REPORT")
    psub.required = True
    r = psub.add_parser(
        "ratings",
        help="ratings per window and level for a month",
        description="Count rating.submitted events per window and level for a month.",
    )
    r.add_argument("--month", required=True, help="YYYY-MM")
    return parser


def cmd_run(cfg: CentralConfig, _args: argparse.Namespace) -> int:
    from sync.central import run_collector

    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        logger.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    return run_collector(cfg, stop)


def publish_roster(cfg: CentralConfig, site: str, roster: dict[str, Any], timeout: float) -> str:
    """Publish a validated roster retained; returns the topic. Raises CliError on failure."""
    import os

    from sync.mqtt import MqttLink
    from sync.store import roster_json

    topic = f"{cfg.mqtt.prefix}/{site}/roster"
    link = MqttLink(cfg.mqtt, f"{cfg.central.id}-roster-{os.getpid()}", name="roster")
    link.start()
    try:
        if not link.connected.wait(timeout):
            raise CliError(
                f"roster publish: not connected to {cfg.mqtt.host}:{cfg.mqtt.port} within "
                f"{timeout:.0f} s ({link.last_error or 'no answer'})"
            )
        done = threading.Event()
        result: dict[str, Any] = {}

        def on_publish(_c: Any, _u: Any, mid: int, rc: Any, _p: Any) -> None:
            result["rc"] = rc
            done.set()

        link.client.on_publish = on_publish
        # The canonical text the store keeps and the collector republishes (sync.store).
        payload = roster_json(roster).encode("utf-8")
        info = link.publish(topic, payload, qos=1, retain=True)
        if not done.wait(timeout):
            raise CliError(f"roster publish: no PUBACK for {topic} within {timeout:.0f} s")
        rc = result["rc"]
        if getattr(rc, "is_failure", False):
            raise CliError(f"roster publish: broker refused {topic}: {rc}")
        del info
        return topic
    finally:
        link.stop()


def _site(args: argparse.Namespace) -> str:
    import re

    if not re.match(ID_PATTERN, args.site):
        action = f"roster {args.roster_command}"
        raise CliError(f"{action} --site: expected {ID_PATTERN}, got {args.site!r}", 2)
    return args.site


def _open(cfg: CentralConfig) -> Any:
    from sync.store import open_store

    return open_store(cfg.store.url, cfg.store.pg_schema, cfg.store.password)


def cmd_roster(cfg: CentralConfig, args: argparse.Namespace) -> int:
    if args.roster_command == "show":
        return cmd_roster_show(cfg, args)
    from sync.downlink import RosterError, parse_roster, validate_roster
    from sync.store import RosterVersionError

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
    with _open(cfg) as store:
        stored = store.roster(site)
    if stored is None:
        raise CliError(f"roster show: no roster stored for site {site}")
    if args.json:
        print(stored.payload)
        return 0
    print(
        f"site {site}: roster version {stored.version}, {len(stored.roster['staff'])} staff, "
        f"published {_fmt(stored.published_at)}"
    )
    headers = ("id", "name", "role", "window")
    table = [tuple(_fmt(e.get(k)) for k in headers) for e in stored.roster["staff"]]
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *table, strict=False)]
    for line in (headers, *table):
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)).rstrip())
    return 0


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if hasattr(value, "isoformat"):
        return value.isoformat(timespec="seconds")
    if isinstance(value, float):
        return f"{value:.0f}"
    return str(value)


def cmd_devices(cfg: CentralConfig, args: argparse.Namespace) -> int:
    from sync.store import open_store

    with open_store(cfg.store.url, cfg.store.pg_schema, cfg.store.password) as store:
        rows = store.devices()
    if args.json:
        print(json.dumps(rows, default=_fmt, ensure_ascii=False))
        return 0
    headers = (
        "site",
        "device",
        "state",
        "backlog",
        "oldest_s",
        "dead",
        "status at",
        "last event at",
    )
    table = [
        (
            r["site"],
            r["device"],
            r["state"] or "-",
            _fmt(r["pending"]),
            _fmt(r["oldest_s"]),
            _fmt(r["dead_letter"]),
            _fmt(r["status_at"]),
            _fmt(r["last_event_at"]),
        )
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *table, strict=False)]
    for line in (headers, *table):
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)).rstrip())
    if not rows:
        print("(no devices yet)")
    return 0


LEVEL_LABELS = {5: "非常满意", 4: "满意", 3: "基本满意", 2: "不满意", 1: "非常不满意"}


def cmd_report(cfg: CentralConfig, args: argparse.Namespace) -> int:
    import re

    from sync.store import PostgresStore, open_store

    if not re.match(r"^\d{4}-(0[1-9]|1[0-2])$", args.month):
        raise CliError(f"report --month: expected YYYY-MM, got {args.month!r}", 2)
    with open_store(cfg.store.url, cfg.store.pg_schema, cfg.store.password) as store:
        if isinstance(store, PostgresStore):
            sql = (
                'SELECT "window", level, count(*) FROM ratings '
                "WHERE to_char(filed_at AT TIME ZONE %s, 'YYYY-MM') = %s "
                "GROUP BY 1, 2 ORDER BY 1, 2"
            )
            rows = store.query(sql, (cfg.central.timezone, args.month))
        else:
            # SQLite keeps `at` as the device wrote it, with its local offset (CONTRACT §2);
            # filed_at is `at`, or `received_at` in that offset when `at` is implausible
            # (CONTRACT §6, docs/sync.md "Implausible times").
            sql = (
                "SELECT window, level, count(*) FROM ratings WHERE substr(filed_at, 1, 7) = %s "
                "GROUP BY 1, 2 ORDER BY 1, 2"
            )
            rows = store.query(sql, (args.month,))
    per_window: dict[str, dict[int, int]] = {}
    for window, level, n in rows:
        per_window.setdefault(window, {})[int(level)] = n
    levels = [5, 4, 3, 2, 1]
    print(f"{args.month} 评价统计")
    print("\t".join(["窗口", *(LEVEL_LABELS[lv] for lv in levels), "合计", "满意率"]))
    for window in sorted(per_window):
        counts = per_window[window]
        total = sum(counts.values())
        good = counts.get(5, 0) + counts.get(4, 0) + counts.get(3, 0)
        print(
            "\t".join(
                [
                    window,
                    *(str(counts.get(lv, 0)) for lv in levels),
                    str(total),
                    f"{100 * good / total:.1f}%",
                ]
            )
        )
    if not per_window:
        print("(无评价)")
    return 0


COMMANDS = {"run": cmd_run, "roster": cmd_roster, "devices": cmd_devices, "report": cmd_report}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose if args.command != "run" else max(1, args.verbose))
    return run_command(
        "hall-central",
        args,
        lambda: COMMANDS[args.command](load_central_config(args.config), args),
    )


if __name__ == "__main__":
    sys.exit(main())
