"""``hall-central schedule show | publish`` (docs/attendance.md "One schedule").

- ``show [--json]``: the version the store holds now, its hours and each year's days, and
  whether the config would make a new version (it does on the next publish).
- ``publish [--timeout S]``: record central.toml ``[schedule]`` as the current version (a new
  number only when something changed) and publish it retained to every site at once, instead
  of waiting for the running collector's next check (a few minutes) or its restart.
"""

from __future__ import annotations

import argparse
from typing import Any
from zoneinfo import ZoneInfo

from central.config import CentralConfig
from sync.cli_common import CliError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "schedule",
        help="the hall's hours and holidays the kiosks classify punches by",
        description="The hall's hours and calendar: central.toml [schedule] with each year's "
        "statutory holidays and 调休 days, numbered and published retained to every site's "
        "kiosks (docs/attendance.md).",
    )
    ssub = p.add_subparsers(dest="schedule_command", metavar="ACTION")
    ssub.required = True
    s = ssub.add_parser(
        "show",
        help="print the current version, its hours and its days",
        description="Print the schedule version the store holds now, its hours and days.",
    )
    s.add_argument("--json", action="store_true", help="print the payload exactly as published")
    s = ssub.add_parser(
        "publish",
        help="record the config's schedule and publish it retained now",
        description="Record central.toml [schedule] (a new version only when it changed) and "
        "publish it retained to PREFIX/SITE/schedule for every site the store knows.",
    )
    s.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the broker")


def cmd_schedule(cfg: CentralConfig, args: argparse.Namespace) -> int:
    from central.commands import open_existing
    from central.schedule_publish import as_published, calendar_warning, record_current

    tz = ZoneInfo(cfg.central.timezone)
    if args.schedule_command == "show":
        with open_existing(cfg) as store:
            stored = store.latest_schedule()
        if stored is None:
            raise CliError(
                "schedule show: no schedule recorded yet; the collector records one when it "
                "starts, or run 'hall-central schedule publish'"
            )
        published = as_published(stored)
        if args.json:
            print(published.to_json())
            return 0
        _print(published, tz)
    else:
        from central.store import open_store

        url, schema, password = cfg.store.url, cfg.store.pg_schema, cfg.store.password
        with open_store(url, schema, password, timezone=cfg.central.timezone) as store:
            published = record_current(store, cfg.schedule, tz)
            sites = store.sites()
        if not sites:
            raise CliError(
                f"schedule publish: version {published.version} recorded, but the store knows "
                "no site yet (no roster, no device heard): publish a roster first"
            )
        _publish(cfg, sites, published.to_json().encode("utf-8"), args.timeout)
        print(f"schedule version {published.version} retained for {', '.join(sites)}")
    warning = calendar_warning(cfg.schedule, published.published_at.astimezone(tz).date())
    if warning:
        print(f"warning: {warning}")
    return 0


def _print(published: Any, tz: ZoneInfo) -> None:
    when = published.published_at.astimezone(tz).strftime("%Y-%m-%d %H:%M")
    print(f"schedule version {published.version}, recorded {when} ({tz.key})")
    hours = published.hours
    for season in ("summer", "winter"):
        h = getattr(hours, season)
        print(
            f"  {season}: morning {h.morning}, afternoon {h.afternoon}, "
            f"Friday afternoon {h.friday_afternoon}"
        )
    print(f"  summer months {hours.summer_months}, grace {hours.grace_min} min")
    for year, days in sorted(published.calendar.items()):
        state = "complete" if days.complete else "INCOMPLETE"
        print(
            f"  {year}: {state} ({days.source}), {len(days.days_off)} weekday(s) off, "
            f"{len(days.workdays)} weekend working day(s)"
        )
        for day, name in sorted({**days.days_off, **days.workdays}.items()):
            kind = "off" if day in days.days_off else "work"
            print(f"    {day.isoformat()} {kind:4} {name}")
    if not published.calendar:
        print("  no year's days: Monday-Friday only")


def _publish(cfg: CentralConfig, sites: list[str], payload: bytes, timeout: float) -> None:
    from central.publish_retained import publish_retained
    from contract.topics import schedule_topic

    topics = [schedule_topic(cfg.mqtt.prefix, site) for site in sites]
    publish_retained(cfg, "schedule publish", [(t, payload) for t in topics], timeout)
