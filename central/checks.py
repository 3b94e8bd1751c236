"""``hall-central check``: the store, the broker and the broker's ACL, as the collector sees them.

Each probe returns :class:`agent.checks.ProbeResult` lines and never raises (docs/check.md).

- ``store``: opens the store (creating or migrating it, as the collector would), says its
  schema version, and proves it writable with a write that is rolled back. A SQLite file that
  does not exist yet is *not* created by a check run as root (it would then belong to root and
  the collector's user could not write it): the directory is checked instead.
- ``broker``: connects with the collector's own ``[mqtt]`` credentials (sync.probe names the
  kind of failure: refused, auth failed, TLS failed, no route / DNS, timeout).
- ``acl``: subscribes to what the collector reads (the shared event subscription and the
  status topics; Mosquitto grants any subscription and filters each message by the read ACL,
  so read access counts as proven only when a retained status arrives) and publishes,
  non-retained and empty, to an ``ack`` and a ``roster`` topic of a site no device uses
  (``hall-central-check``), so no device ever sees the probe. While it is subscribed the
  broker may hand this probe one event batch meant for a running collector; that batch is
  never acked, and its device resends it after ``sync.ack_timeout_s``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

from central.config import CentralConfig
from sync.cli_common import ProbeResult

PROBE_SITE = "hall-central-check"  # a site id no device has: the ACL probe's topics


def probe_store(cfg: CentralConfig) -> list[ProbeResult]:
    from central.store import open_store

    url = cfg.store.url
    shown = cfg.store.url_shown
    if urlsplit(url).scheme == "sqlite":
        path = Path(unquote(url[len("sqlite:///") :]))
        if not path.exists():
            parent = path.parent
            while not parent.exists() and parent != parent.parent:
                parent = parent.parent
            if not os.access(parent, os.W_OK):
                return [ProbeResult("store", False, f"{path}: {parent} is not writable")]
            if os.geteuid() == 0:
                return [
                    ProbeResult(
                        "store",
                        True,
                        f"{path} does not exist yet; the collector creates it on its first "
                        "start (not created here as root: it would belong to root)",
                        warn=True,
                    )
                ]
    try:
        store = open_store(
            url, cfg.store.pg_schema, cfg.store.password, timezone=cfg.central.timezone
        )
    except Exception as exc:
        return [ProbeResult("store", False, f"{shown}: cannot open: {exc}")]
    try:
        expected = [m.name for m in store.migrations]
        missing = [n for n in expected if n not in {m.name for m in store.applied_migrations()}]
        store.probe_write()  # rolled back: nothing is left in the store
        events = store.event_count()
    except Exception as exc:
        return [ProbeResult("store", False, f"{shown}: not writable: {exc}")]
    finally:
        store.close()
    if missing:
        return [ProbeResult("store", False, f"{shown}: migrations not run: {', '.join(missing)}")]
    return [
        ProbeResult(
            "store",
            True,
            f"{shown}: {len(expected)} migrations (current), writable, {events} events",
        )
    ]


def probe_broker(cfg: CentralConfig) -> list[ProbeResult]:
    from sync.probe import probe_broker as connect_once

    account = f"add-collector {cfg.mqtt.username or cfg.central.id}"
    result = connect_once(
        cfg.mqtt, client_id=f"{cfg.central.id}-check-{os.getpid()}", add_account=account
    )
    return [ProbeResult("broker", result.ok, result.line())]


def probe_acl(cfg: CentralConfig) -> list[ProbeResult]:
    from central.collector import SHARE_GROUP
    from sync.probe import probe_acl as try_topics

    prefix = cfg.mqtt.prefix
    out = try_topics(
        cfg.mqtt,
        client_id=f"{cfg.central.id}-acl-{os.getpid()}",
        subscribe=[f"$share/{SHARE_GROUP}/{prefix}/+/+/events", f"{prefix}/+/+/status"],
        publish=[
            f"{prefix}/{PROBE_SITE}/check/ack",
            f"{prefix}/{PROBE_SITE}/roster",
            f"{prefix}/{PROBE_SITE}/schedule",
        ],
    )
    return [ProbeResult(f"acl {what}", ok, detail, warn) for what, ok, warn, detail in out]


def probe_schedule(cfg: CentralConfig, today: date | None = None) -> list[ProbeResult]:
    """The hall's hours the kiosks get (docs/attendance.md "One schedule"): the version
    recorded, whether the config changed since, and whether next year's holidays are known."""
    from zoneinfo import ZoneInfo

    from central.commands import open_existing
    from central.schedule_publish import calendar_warning, current_body
    from contract.published_schedule import body_digest

    tz = ZoneInfo(cfg.central.timezone)
    today = today or datetime.now(tz).date()
    try:
        with open_existing(cfg) as store:
            latest = store.latest_schedule()
    except Exception as exc:  # the store probe says why
        latest, where = None, f"store not readable ({exc})"
    else:
        where = "no version recorded yet (the collector records one when it starts)"
    results = []
    if latest is None:
        results.append(ProbeResult("schedule", True, where, warn=True))
    elif latest.digest != body_digest(current_body(cfg.schedule, today)):
        results.append(
            ProbeResult(
                "schedule",
                True,
                f"version {latest.version} published; [schedule] has changed since: run "
                "'hall-central schedule publish' or restart hall-central",
                warn=True,
            )
        )
    else:
        results.append(ProbeResult("schedule", True, f"version {latest.version} published"))
    warning = calendar_warning(cfg.schedule, today)
    if warning:
        results.append(ProbeResult("calendar", True, warning, warn=True))
    return results


PROBES: dict[str, Callable[[CentralConfig], list[ProbeResult]]] = {
    "store": probe_store,
    "broker": probe_broker,
    "acl": probe_acl,
    "schedule": probe_schedule,
}


def run_probes(cfg: CentralConfig, only: set[str] | None = None) -> list[ProbeResult]:
    results: list[ProbeResult] = []
    if os.geteuid() == 0 and (only is None or "store" in only):
        results.append(
            ProbeResult(
                "user",
                True,
                "running as root: run it as the collector's user (sudo -u hall-central "
                "hall-central check) to see its permissions",
                warn=True,
            )
        )
    broker_ok = True
    for name, probe in PROBES.items():
        if only is not None and name not in only:
            continue
        if name == "acl" and not broker_ok:
            results.append(ProbeResult("acl", False, "skipped: the broker probe failed"))
            continue
        try:
            got = probe(cfg)
        except Exception as exc:  # a probe bug must not hide the other results
            got = [ProbeResult(name, False, f"probe failed: {exc!r}")]
        if name == "broker":
            broker_ok = all(r.ok for r in got)
        results.extend(got)
    return results
