"""``hall-central summary show | publish`` (docs/attendance.md "Your month on the screen").

- ``show [--site S] [--json]``: each site's month so far as the kiosks get it (computed now
  from the store, exactly the payload the collector publishes).
- ``publish [--site S] [--timeout S]``: compute and publish it retained now, instead of
  waiting for the running collector's next check (a few minutes).
"""

from __future__ import annotations

import argparse
from datetime import datetime
from zoneinfo import ZoneInfo

from central.config import CentralConfig
from sync.cli_common import CliError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "summary",
        help="each staff member's month so far, as the kiosks show it after a punch",
        description="Each staff member's month so far (迟到, 早退, 缺卡, 脱岗 over the days that "
        "are over), per site, as published retained to that site's kiosks (docs/attendance.md).",
    )
    ssub = p.add_subparsers(dest="summary_command", metavar="ACTION")
    ssub.required = True
    s = ssub.add_parser(
        "show",
        help="print each site's summary as computed now",
        description="Print each site's summary, computed now from the store.",
    )
    s.add_argument("--site", help="only this site (default: every site the store knows)")
    s.add_argument("--json", action="store_true", help="print the payloads exactly as published")
    s = ssub.add_parser(
        "publish",
        help="compute and publish the summaries retained now",
        description="Compute each site's summary and publish it retained to PREFIX/SITE/summary.",
    )
    s.add_argument("--site", help="only this site (default: every site the store knows)")
    s.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the broker")


def cmd_summary(cfg: CentralConfig, args: argparse.Namespace) -> int:
    from central.commands import open_existing
    from central.summary import compute_summary
    from contract.topics import summary_topic

    tz = ZoneInfo(cfg.central.timezone)
    now = datetime.now(tz)
    verb = f"summary {args.summary_command}"
    with open_existing(cfg) as store:
        known = store.sites()
        if args.site is not None and args.site not in known:
            raise CliError(f"{verb}: the store knows no site {args.site!r} ({', '.join(known)})")
        sites = [args.site] if args.site is not None else known
        if not sites:
            raise CliError(f"{verb}: the store knows no site yet (no roster, no device heard)")
        summaries = [compute_summary(store, cfg, site, now, tz) for site in sites]
    if args.summary_command == "publish":
        from central.publish_retained import publish_retained

        topics = {s.site: summary_topic(cfg.mqtt.prefix, s.site) for s in summaries}
        messages = [(topics[s.site], s.to_json().encode("utf-8")) for s in summaries]
        publish_retained(cfg, verb, messages, args.timeout)
        for s in summaries:
            print(f"summary of {s.site} for {s.month} retained on {topics[s.site]}")
        return 0
    for s in summaries:
        if args.json:
            print(s.to_json())
            continue
        through = s.through.isoformat() if s.through else "no day over yet"
        print(f"{s.site} {s.month} through {through} ({len(s.staff)} staff)")
        print(f"  {'staff':<16} {'迟到':>4} {'早退':>4} {'缺卡':>4} {'脱岗':>4}")
        for sid, m in sorted(s.staff.items()):
            print(f"  {sid:<16} {m.late:>6} {m.early:>6} {m.missing:>6} {m.absent:>6}")
    return 0
