"""差评 cases, office accounts and the audit log in the store (docs/cases.md).

Written once for both dialects: each statement uses ``%s`` placeholders and runs through a
``Run`` the dialect supplies inside its own transaction; times go in through the dialect's
``stamp`` (UTC ISO text on SQLite, so text order is time order; an instant on PostgreSQL).

A case is opened in the transaction that stores its rating (:func:`open_cases`), so a rating
the centre acknowledged always has its case, and a resent rating (the same event id) opens
nothing: ``rating_id`` is unique and the insert skips it.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from datetime import datetime, tzinfo
from typing import Any

from central.store.filing import filed_at
from central.store.records import (
    AuditEntry,
    CaseLogEntry,
    CaseRecord,
    EventRow,
    UserRecord,
    required_time,
    stored_json,
    stored_time,
)
from contract import EventType

logger = logging.getLogger(__name__)

Run = Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]]
Stamp = Callable[[datetime], Any]
# Deadlines of a case opened at an instant, by step (central/cases/deadlines.py).
DeadlinePolicy = Callable[[datetime], dict[str, datetime]]

# A rating that may be a 差评, found without parsing: every rating passes here on the
# collector's hot path and most are not 差评. Only a candidate is parsed, and the parsed
# level decides; the stored data text is compact JSON (central/validation.py), and an
# unescaped quote is a key's, never inside a string.
_MAYBE_BAD = re.compile(r'"level"\s*:\s*[12]\b')
CASE_LEVELS = (1, 2)  # 差评: 非常不满意 and 不满意 (docs/cases.md)
SYSTEM = "system"  # who opened a case: the collector, on ingest

CASE_COLUMNS = (
    'id, rating_id, site, "window", staff_id, level, reasons, case_no, item_code, rated_at, '
    "opened_at, state, deadlines, updated_at, closed_at"
)
LOG_COLUMNS = 'case_id, at, "by", from_state, to_state, note'
USER_COLUMNS = "name, role, password_hash, created_at, disabled"
AUDIT_COLUMNS = "id, at, user_name, action, target, detail, address"

_INSERT_CASE = (
    'INSERT INTO cases (rating_id, site, "window", staff_id, level, reasons, case_no, '
    "item_code, rated_at, opened_at, state, deadlines, updated_at) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (rating_id) DO NOTHING RETURNING id"
)
_INSERT_LOG = f"INSERT INTO case_log ({LOG_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)"
INSERT_AUDIT = (
    "INSERT INTO audit_log (at, user_name, action, target, detail, address) "
    "VALUES (%s, %s, %s, %s, %s, %s)"
)


def deadlines_json(deadlines: dict[str, datetime]) -> str:
    return json.dumps({k: v.isoformat() for k, v in sorted(deadlines.items())})


def _deadlines(value: Any, tz: tzinfo) -> dict[str, datetime]:
    raw = stored_json(value) or {}
    return {k: datetime.fromisoformat(v).astimezone(tz) for k, v in raw.items()}


def case_record(row: tuple[Any, ...], tz: tzinfo) -> CaseRecord:
    (cid, rating_id, site, window, staff, level, reasons, case_no, item_code) = row[:9]
    rated, opened, state, deadlines, updated, closed = row[9:]
    closed_at = stored_time(closed)
    return CaseRecord(
        id=int(cid),
        rating_id=str(rating_id),
        site=site,
        window=window,
        staff_id=staff,
        level=int(level),
        reasons=list(stored_json(reasons) or []),
        rated_at=required_time(rated).astimezone(tz),
        opened_at=required_time(opened).astimezone(tz),
        state=state,
        deadlines=_deadlines(deadlines, tz),
        updated_at=required_time(updated).astimezone(tz),
        closed_at=closed_at.astimezone(tz) if closed_at else None,
        case_no=case_no,
        item_code=item_code,
    )


def log_entry(row: tuple[Any, ...], tz: tzinfo) -> CaseLogEntry:
    case_id, at, by, from_state, to_state, note = row
    return CaseLogEntry(
        int(case_id), required_time(at).astimezone(tz), by, from_state, to_state, note
    )


def user_record(row: tuple[Any, ...], tz: tzinfo) -> UserRecord:
    name, role, password_hash, created, disabled = row
    return UserRecord(
        name, role, password_hash, required_time(created).astimezone(tz), bool(disabled)
    )


def audit_entry(row: tuple[Any, ...], tz: tzinfo) -> AuditEntry:
    aid, at, user, action, target, detail, address = row
    return AuditEntry(
        int(aid), required_time(at).astimezone(tz), user, action, target, detail, address
    )


def open_cases(
    run: Run,
    stamp: Stamp,
    events: list[EventRow],
    received: datetime,
    tz: tzinfo,
    policy: DeadlinePolicy,
) -> list[int]:
    """Open a case for every 差评 among ``events`` that has none yet; returns the new ids.

    Runs in the caller's transaction: the case commits with its rating or not at all. The case
    counts from ``received`` (when the centre took the rating in: 受理), its ``rated_at`` is the
    rating's filed time (a pad that was offline for a day rated a day earlier)."""
    opened: list[int] = []
    for event in events:
        if event.type != EventType.RATING or not _MAYBE_BAD.search(event.data):
            continue
        data = json.loads(event.data)
        level = data.get("level")
        if level not in CASE_LEVELS:
            continue
        rated, _suspect = filed_at(event.at, event.clock, received, tz)
        try:
            deadlines = policy(received)
        except Exception:
            # The rating and its case are stored whatever the deadlines' computation does; a
            # case without deadlines is never overdue and shows its steps without dates.
            logger.exception("case of rating %s: deadlines could not be computed", event.id)
            deadlines = {}
        rows = run(
            _INSERT_CASE,
            (
                event.id,
                event.site,
                data.get("window") or "",
                data.get("staff_id"),
                level,
                json.dumps(data.get("reasons") or [], ensure_ascii=False),
                data.get("case_no"),
                data.get("item_code"),
                stamp(rated),
                stamp(received),
                "received",
                deadlines_json(deadlines),
                stamp(received),
            ),
        )
        if not rows:
            continue  # a resend: its case exists
        case_id = int(rows[0][0])
        run(_INSERT_LOG, (case_id, stamp(received), SYSTEM, None, "received", "差评自动受理"))
        opened.append(case_id)
    return opened


def move_case(
    run: Run,
    stamp: Stamp,
    case_id: int,
    from_state: str,
    to_state: str,
    by: str,
    note: str,
    at: datetime,
    deadlines: dict[str, datetime] | None,
    final: bool,
    address: str,
) -> bool:
    """Move a case from ``from_state`` (as the caller read it) to ``to_state``, log the
    transition and audit it, all in the caller's transaction. False: the case is not in
    ``from_state`` any more (someone moved it meanwhile) and nothing was written."""
    sets = "state = %s, updated_at = %s"
    params: list[Any] = [to_state, stamp(at)]
    if deadlines is not None:
        sets += ", deadlines = %s"
        params.append(deadlines_json(deadlines))
    if final:
        sets += ", closed_at = %s"
        params.append(stamp(at))
    rows = run(
        f"UPDATE cases SET {sets} WHERE id = %s AND state = %s RETURNING id",
        (*params, case_id, from_state),
    )
    if not rows:
        return False
    run(_INSERT_LOG, (case_id, stamp(at), by, from_state, to_state, note))
    run(
        INSERT_AUDIT,
        (
            stamp(at),
            by,
            "case.move",
            f"case:{case_id}",
            f"{from_state}->{to_state}: {note}",
            address,
        ),
    )
    return True
