"""``hall-central report …``, ``hall-central export …`` and ``hall-central leave …``
(README.md), wired into the central command line (central/cli.py) by :func:`add_parsers`; the
``devices`` table and the terminal-table helpers ``roster show`` uses too.

All are read-only except ``leave import``/``leave remove``, and none creates a store: a
wrong ``[store] url`` is an error naming it (central.store.StoreMissingError).

Times shown to a person are in the hall's timezone (``central.timezone``), to the second;
``--json`` keeps the stored ISO 8601 values.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from central.config import CentralConfig
from central.store import DEVICE_KEYS, stored_time
from contract import ID_PATTERN, is_id
from sync.cli_common import CliError


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from central.reports import FORMATS

    p = sub.add_parser(
        "report",
        help="monthly attendance and ratings reports",
        description="Monthly reports, grouped by the hall's timezone (central.timezone). "
        "Columns: docs/reports.md.",
    )
    psub = p.add_subparsers(dest="report_command", metavar="REPORT")
    psub.required = True
    for name, text in (
        ("attendance", "per person and working day: the four slots, late, early, missing, leave"),
        ("ratings", "per window and staff: levels, satisfaction, 差评, invitations, pauses"),
    ):
        r = psub.add_parser(name, help=text, description=text.capitalize() + ".")
        r.add_argument(
            "--month", help="YYYY-MM (default: the current month in the hall's timezone)"
        )
        r.add_argument("--site", help="one site (default: all sites)")
        r.add_argument("--format", choices=FORMATS, default="table", help="default: table")
        r.add_argument("--out", type=Path, help="write to this file (default: stdout)")
    from central.export_ratings import FORMATS as EXPORT_FORMATS

    p = sub.add_parser(
        "export",
        help="a month's data for the provincial 好差评 platform",
        description="One row per item of the month for the provincial platform, Chinese "
        "headings (JSON: English keys). Columns: docs/export.md.",
    )
    esub = p.add_subparsers(dest="export_command", metavar="DATA")
    esub.required = True
    text = "one row per rating filed in the month, with its 差评 case"
    r = esub.add_parser("ratings", help=text, description=text.capitalize() + ".")
    r.add_argument("--month", help="YYYY-MM (default: the current month in the hall's timezone)")
    r.add_argument("--site", help="one site (default: all sites)")
    r.add_argument("--format", choices=EXPORT_FORMATS, default="csv", help="default: csv")
    r.add_argument("--out", type=Path, help="write to this file (default: stdout)")
    p = sub.add_parser(
        "leave",
        help="leave and corrections (请假, 公出, 补卡) from the office",
        description="Leave and corrections approved on paper; they excuse the matching "
        "half days in the attendance report.",
    )
    lsub = p.add_subparsers(dest="leave_command", metavar="ACTION")
    lsub.required = True
    r = lsub.add_parser(
        "import",
        help="import a CSV or xlsx file (all rows or none)",
        description="Import leave rows (工号, 类型, 开始, 结束, 审批人, 备注, 时段 for 补卡). Any "
        "bad cell, or a staff id in no stored roster, rejects the whole file, listed by line "
        "and column; rows already stored are skipped.",
    )
    r.add_argument("file", type=Path, help="CSV or xlsx file")
    r.add_argument("--by", help="who imports it (default: the login name)")
    r.add_argument(
        "--allow-unknown",
        action="store_true",
        help="accept staff ids that are in no stored roster yet (e.g. a roster published later)",
    )
    r = lsub.add_parser("list", help="list stored leave", description="List stored leave.")
    r.add_argument("--month", help="only leave overlapping YYYY-MM")
    r = lsub.add_parser("remove", help="remove one leave row", description="Remove by id.")
    r.add_argument("id", type=int, help="the id shown by leave list")


def open_existing(cfg: CentralConfig) -> Any:
    """The configured store for a read-only command: never created if missing."""
    from central.store import StoreMissingError, open_store

    try:
        return open_store(
            cfg.store.url,
            cfg.store.pg_schema,
            cfg.store.password,
            create=False,
            timezone=cfg.central.timezone,
        )
    except StoreMissingError as exc:
        raise CliError(str(exc)) from None


def _month(cfg: CentralConfig, text: str | None, what: str) -> Any:
    from central.reports.month import Month

    try:
        return Month.parse(text, ZoneInfo(cfg.central.timezone))
    except ValueError as exc:
        raise CliError(f"{what} {exc}", 2) from None


def _write_out(path: Path, data: bytes) -> None:
    # Whole file or nothing: a report opened while being written must not look complete.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent or Path("."))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; a report is an ordinary file
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_output(what: str, fmt: str, out: Path | None) -> None:
    """Refuse, before any work, an output that cannot be written: binary xlsx to a terminal,
    a file in a directory that does not exist."""
    if fmt == "xlsx" and out is None and sys.stdout.isatty():
        raise CliError(f"{what} --format xlsx: give --out FILE (binary output)", 2)
    if out is not None and not out.parent.is_dir():
        raise CliError(f"{what} --out: no such directory {out.parent}", 2)


def emit(data: bytes, out: Path | None, written: str) -> None:
    """``data`` to stdout, or whole to ``out`` (then ``written`` and the path on stderr)."""
    if out is None:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        _write_out(out, data)
        print(f"{written} written to {out}", file=sys.stderr)


def cmd_report(cfg: CentralConfig, args: argparse.Namespace) -> int:
    import io

    from central.reports import build, render

    what = f"report {args.report_command}"
    month = _month(cfg, args.month, what)
    if args.site is not None and not is_id(args.site):
        raise CliError(f"{what} --site: expected {ID_PATTERN}, got {args.site!r}", 2)
    check_output(what, args.format, args.out)
    with open_existing(cfg) as store:
        report = build(
            args.report_command,
            store,
            month,
            cfg.schedule,
            args.site,
            pause_limit_min=cfg.post.pause_limit_min,
        )
    buffer = io.BytesIO()
    render(report, args.format, buffer)
    emit(buffer.getvalue(), args.out, f"{report.title}: {args.format}")
    return 0


def cmd_export(cfg: CentralConfig, args: argparse.Namespace) -> int:
    import io

    from central import export_ratings

    what = f"export {args.export_command}"
    month = _month(cfg, args.month, what)
    if args.site is not None and not is_id(args.site):
        raise CliError(f"{what} --site: expected {ID_PATTERN}, got {args.site!r}", 2)
    check_output(what, args.format, args.out)
    with open_existing(cfg) as store:
        export = export_ratings.compute(store, month, args.site)
    buffer = io.BytesIO()
    export_ratings.write(export, args.format, buffer)
    emit(
        buffer.getvalue(),
        args.out,
        f"{what} {month.label}: {len(export.rows)} row(s), {args.format}",
    )
    return 0


_LEAVE_IDENTITY = ("staff_id", "kind", "starts", "starts_half", "ends", "ends_half", "slot")
_LEAVE_DETAILS = {"slot_time": "时间 (time)", "approver": "审批人", "note": "备注"}


def _changed_leaves(store: Any, rows: list[dict[str, Any]]) -> list[str]:
    """Rows that name a stored approval (same person, kind, span and slot) but say something
    else about it: importing them would keep the old details and report "already stored", so
    a corrected 补卡 time would be lost without a word. Each names what to do instead."""
    if not rows:
        return []
    first, last = min(r["starts"] for r in rows), max(r["ends"] for r in rows)
    stored = {tuple(s.get(k, "") for k in _LEAVE_IDENTITY): s for s in store.leaves(first, last)}
    problems = []
    for row in rows:
        old = stored.get(tuple(row.get(k, "") for k in _LEAVE_IDENTITY))
        if old is None:
            continue
        diffs = [
            f"{label} {old.get(k) or '-'!s} → {row.get(k) or '-'!s}"
            for k, label in _LEAVE_DETAILS.items()
            if (old.get(k) or "") != (row.get(k) or "")
        ]
        if diffs:
            problems.append(
                f"{row.get('source', '?')}: {row['kind']} of {row['staff_id']} is stored already "
                f"as id {old['id']} with other details ({'; '.join(diffs)}); to correct it, "
                f"run `hall-central leave remove {old['id']}` and import the file again"
            )
    return problems


def cmd_leave(cfg: CentralConfig, args: argparse.Namespace) -> int:
    from central.leave import LeaveError, parse_leave_file

    if args.leave_command == "import":
        by = args.by or _login_name()
        with open_existing(cfg) as store:
            in_rosters = {e["id"] for r in store.rosters() for e in r.roster.get("staff", [])}
            known = None if args.allow_unknown else in_rosters
            try:
                rows = parse_leave_file(args.file, known)
            except LeaveError as exc:
                for problem in exc.problems:
                    print(problem, file=sys.stderr)
                raise CliError(
                    f"leave import: {len(exc.problems)} problem(s) in {args.file}; nothing imported"
                ) from None
            changed = _changed_leaves(store, rows)
            if changed:
                for problem in changed:
                    print(problem, file=sys.stderr)
                raise CliError(
                    f"leave import: {len(changed)} row(s) of {args.file} differ from what is "
                    "stored; nothing imported"
                )
            added = store.add_leaves(rows, by)
        print(
            f"leave import {args.file}: {added} row(s) added, "
            f"{len(rows) - added} already stored, imported by {by}"
        )
        unknown = sorted({r["staff_id"] for r in rows} - in_rosters)
        if unknown:  # only with --allow-unknown: stored, but they excuse nobody until published
            print(
                f"leave import: note: staff id(s) in no stored roster (--allow-unknown): "
                f"{', '.join(unknown)}",
                file=sys.stderr,
            )
        return 0
    if args.leave_command == "remove":
        with open_existing(cfg) as store:
            removed = store.remove_leave(args.id)
        if removed is None:
            raise CliError(f"leave remove: no leave with id {args.id} (see leave list)")
        print(
            f"removed leave {removed['id']}: {removed['staff_id']} {removed['kind']} "
            f"{removed['starts']}..{removed['ends']}"
        )
        return 0
    first = last = None
    if args.month:
        month = _month(cfg, args.month, "leave list")
        first, last = month.first, month.last
    with open_existing(cfg) as store:
        rows = store.leaves(first, last)
    from central.reports.attendance import LEAVE_HEADERS, leave_cells
    from central.reports.model import Sheet
    from central.reports.table import write_sheet

    sheet = Sheet(
        "请假与更正",
        [*LEAVE_HEADERS, "导入时间"],
        [[*leave_cells(r), _when(r["imported_at"], cfg.central.timezone)] for r in rows],
    )
    write_sheet(sheet, sys.stdout)
    return 0


def aligned(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """The lines of a terminal table, columns padded by display width: a Chinese character
    takes two cells (central/reports/table.py), so padding by len() misaligns names."""
    from central.reports.table import display_width, pad

    widths = [display_width(h) for h in headers]
    for row in rows:
        widths = [max(w, display_width(v)) for w, v in zip(widths, row, strict=True)]
    return [
        "  ".join(pad(v, w) for v, w in zip(line, widths, strict=True)).rstrip()
        for line in (headers, *rows)
    ]


def local_time(value: Any, tz: ZoneInfo) -> str:
    """``2026-12-03 09:12:03`` in the hall's timezone, or ``-`` when there is none."""
    found = stored_time(value)
    return "-" if found is None else found.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")


def age(value: Any, now: datetime) -> str:
    """How long ago, roughly: ``12 s ago``, ``3 min ago``, ``5 h ago``, ``2 days ago``."""
    found = stored_time(value)
    if found is None:
        return ""
    seconds = max(0, int((now - found).total_seconds()))  # another host's clock may be ahead
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 48 * 3600:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} days ago"


DEVICE_HEADERS = (
    "site",
    "device",
    "state",
    "backlog",
    "oldest_s",
    "dead",
    "status at",
    "last event at",
    "last received",
)


def _count(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if isinstance(value, float) else str(value)


def device_lines(rows: list[dict[str, Any]], tz: ZoneInfo, now: datetime) -> list[str]:
    """``hall-central devices``: one line per device, then a note for devices whose events
    carry no time the centre trusts (docs/sync.md: clock ``unsynced``, or over a day off)."""
    table = []
    for r in rows:
        received = local_time(r["last_received_at"], tz)
        if r["last_received_at"] is not None:
            received += f" ({age(r['last_received_at'], now)})"
        table.append(
            (
                r["site"],
                r["device"],
                r["state"] or "-",
                _count(r["pending"]),
                _count(r["oldest_s"]),
                _count(r["dead_letter"]),
                local_time(r["status_at"], tz),
                local_time(r["last_event_at"], tz),
                received,
            )
        )
    lines = aligned(DEVICE_HEADERS, table)
    if not rows:
        lines.append("(no devices yet)")
    untimed = [r for r in rows if r["last_event_at"] is None and r["last_received_at"] is not None]
    if untimed:
        lines.append(
            f"last event at '-': no event with a confirmed clock yet ({len(untimed)} device(s); "
            "clock unsynced, ahead of the centre's, or before 2024); 'last received' is when the "
            f"centre last stored an event from it; times in {tz.key} (docs/sync.md)"
        )
    return lines


DEVICE_JSON_KEYS = (*DEVICE_KEYS, "rejected_24h")
REJECTED_HEADERS = ("device", "rejected", "kept whole", "MiB", "reasons")


def rejected_lines(summary: dict[str, dict[str, Any]], kept_per_hour: int) -> list[str]:
    """``hall-central devices``: rejected inputs of the last 24 hours per device (docs/sync.md
    "Rejected inputs"), the most frequent reasons first."""
    if not summary:
        return []
    table = []
    for device, r in sorted(summary.items(), key=lambda kv: -kv[1]["count"]):
        reasons = sorted(r["reasons"].items(), key=lambda kv: -kv[1])
        shown = ", ".join(f"{kind} ×{n}" for kind, n in reasons[:3])
        if len(reasons) > 3:
            shown += f", {len(reasons) - 3} more"
        table.append(
            (
                device or "(no device)",
                str(r["count"]),
                str(r["kept"]),
                f"{r['bytes'] / 2**20:.1f}",
                shown,
            )
        )
    return [
        "",
        f"rejected in the last 24 h (each device's first {kept_per_hour} an hour are kept "
        "whole in table rejected, the rest only counted):",
        *aligned(REJECTED_HEADERS, table),
    ]


def cmd_devices(cfg: CentralConfig, args: argparse.Namespace) -> int:
    from central.devices_cli import chain_lines, chain_rows

    with open_existing(cfg) as store:
        rows = store.devices()
        summary = store.rejected_summary(24)
        chains = chain_rows(store)
    if args.json:
        left = dict(summary)
        by_device = {(c["site"], c["device"]): c for c in chains}
        for row in rows:
            row["rejected_24h"] = left.pop(row["device"], None)
            row["chain"] = by_device.pop((row["site"], row["device"]), None)
        for device, r in sorted(left.items()):  # devices with nothing but rejected input
            rows.append({**dict.fromkeys(DEVICE_JSON_KEYS), "device": device, "rejected_24h": r})
        for (site, device), c in sorted(by_device.items()):  # a key registered before it sent
            blank = dict.fromkeys(DEVICE_JSON_KEYS)
            rows.append({**blank, "site": site, "device": device, "chain": c})
        print(json.dumps(rows, default=_iso, ensure_ascii=False))
        return 0
    now = datetime.now(UTC)
    for line in device_lines(rows, ZoneInfo(cfg.central.timezone), now):
        print(line)
    for line in rejected_lines(summary, cfg.central.rejected_kept_per_hour):
        print(line)
    for line in chain_lines(chains):
        print(line)
    return 0


def _iso(value: Any) -> str:
    if hasattr(value, "isoformat"):
        return value.isoformat(timespec="seconds")
    return str(value)


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no USER and no passwd entry (a container): say so
        return f"uid {os.getuid()}"


def _when(value: Any, tz: str) -> str:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")
