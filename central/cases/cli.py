"""``hall-central cases list | show | move`` (docs/cases.md "From the shell").

- ``list [--state S]… [--open] [--overdue] [--month YYYY-MM] [--site S] [--window W]
  [--staff ID] [--format table|csv|xlsx|html] [--out FILE]``: cases, oldest first.
- ``show ID [--json]``: one case, its deadlines and its whole history.
- ``move ID STATE --by NAME --note TEXT``: a transition, refused with the reason when the
  case's state does not allow it; logged and audited as the office page's moves are.
"""

from __future__ import annotations

import argparse
import io
import json
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from central.cases.desk import CaseDesk, Due, case_deadlines, closed_in_time, due
from central.cases.states import (
    OPEN,
    STATE_LABELS,
    STEP_LABELS,
    CaseMoveError,
    CaseState,
    parse_state,
)
from central.config import CentralConfig
from central.store.records import CaseLogEntry, CaseRecord, utcnow
from sync.cli_common import CliError

FORMATS = ("table", "csv", "xlsx", "html")
HEADERS = [
    "编号",
    "评价时间",
    "站点",
    "窗口",
    "工作人员",
    "等级",
    "原因",
    "状态",
    "当前环节",
    "期限",
    "超期",
    "办件编号",
]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cases",
        help="差评 cases: list, show, move",
        description="差评 cases: one per rating at level 1-2, followed to closure within the "
        "deadlines of central.toml [cases] (docs/cases.md).",
    )
    csub = p.add_subparsers(dest="cases_command", metavar="ACTION")
    csub.required = True
    s = csub.add_parser(
        "list",
        help="list cases (filters narrow)",
        description="List cases, oldest first; every filter given narrows the list.",
    )
    s.add_argument(
        "--state",
        action="append",
        metavar="S",
        help=f"only cases in this state (repeatable): {', '.join(x.value for x in CaseState)}",
    )
    s.add_argument("--open", action="store_true", help="only cases not closed or voided")
    s.add_argument(
        "--overdue", action="store_true", help="only cases past the deadline of their step"
    )
    s.add_argument("--month", help="only cases rated in this month, YYYY-MM (hall time)")
    s.add_argument("--site", help="only this site")
    s.add_argument("--window", help="only this window")
    s.add_argument("--staff", metavar="ID", help="only this staff member")
    s.add_argument("--format", choices=FORMATS, default="table", help="output format")
    s.add_argument("--out", type=Path, help="write to FILE (required for xlsx to a terminal)")
    s = csub.add_parser(
        "show",
        help="one case with its deadlines and history",
        description="Print one case, its deadlines and every transition.",
    )
    s.add_argument("id", type=int, help="case number")
    s.add_argument("--json", action="store_true", help="print as JSON")
    s = csub.add_parser(
        "move",
        help="move a case to its next state",
        description="Move a case to STATE (docs/cases.md lists the allowed moves); logged "
        "with who and the note, and written to the audit log.",
    )
    s.add_argument("id", type=int, help="case number")
    s.add_argument("state", help="the state to move to, e.g. verified")
    s.add_argument("--by", required=True, help="who moves it (name for the log)")
    s.add_argument("--note", required=True, help="what was done or found")


def cmd_cases(cfg: CentralConfig, args: argparse.Namespace) -> int:
    from central.commands import open_existing

    tz = ZoneInfo(cfg.central.timezone)
    if args.cases_command == "move":
        desk_store = open_existing(cfg)
        with desk_store as store:
            desk = CaseDesk(store, case_deadlines(cfg))
            try:
                case = desk.move(args.id, args.state, args.by, args.note, address="shell")
            except CaseMoveError as exc:
                raise CliError(f"cases move: {exc}") from None
        state = CaseState(case.state)
        print(f"case {case.id}: {state.value} ({STATE_LABELS[state]})")
        return 0
    if args.cases_command == "list":
        from central.commands import check_output

        check_output("cases list", args.format, args.out)
    with open_existing(cfg) as store:
        if args.cases_command == "show":
            case = store.case(args.id)
            if case is None:
                raise CliError(f"cases show: case {args.id}: no such case")
            log = store.case_log([case.id])[case.id]
            _show(case, log, tz, args.json)
            return 0
        cases = _select(store, cfg, args, tz)
        names = _names(store)
    _list(cases, names, args, tz)
    return 0


def _select(store: Any, cfg: CentralConfig, args: argparse.Namespace, tz: ZoneInfo) -> list[Any]:
    from central.commands import _month

    states: set[str] | None = None
    try:
        if args.state:
            states = {parse_state(s).value for s in args.state}
    except CaseMoveError as exc:
        raise CliError(f"cases list --state: {exc}", 2) from None
    if args.open:
        opened = {s.value for s in OPEN}
        states = opened if states is None else states & opened
    start = end = None
    if args.month is not None:
        month = _month(cfg, args.month, "cases list")
        start, end = month.start(), month.end()
    cases = store.cases(
        states=sorted(states) if states is not None else None,
        rated_from=start,
        rated_to=end,
        site=args.site,
        window=args.window,
        staff_id=args.staff,
    )
    if args.overdue:
        now = utcnow()
        cases = [c for c in cases if due(c, now).overdue]
    return cases


def _names(store: Any) -> dict[tuple[str, str], str]:
    from central.reports.source import roster_people

    return {key: person.name for key, person in roster_people(store).items()}


def _staff(case: CaseRecord, names: dict[tuple[str, str], str]) -> str:
    if case.staff_id is None:
        return "（未登录）"
    name = names.get((case.site, case.staff_id))
    return f"{name} ({case.staff_id})" if name else case.staff_id


def _wall(moment: datetime | None) -> datetime | None:
    """A time of the hall (records are in its timezone) as the wall clock shows it: every
    format prints it so, and xlsx cannot hold a zone."""
    return moment.replace(tzinfo=None) if moment is not None else None


def _row(case: CaseRecord, names: dict[tuple[str, str], str], now: datetime) -> list[Any]:
    current: Due = due(case, now)
    state = CaseState(case.state)
    return [
        case.id,
        _wall(case.rated_at),
        case.site,
        case.window,
        _staff(case, names),
        case.level,
        "、".join(case.reasons),
        STATE_LABELS[state],
        STEP_LABELS.get(current.step or "", "—"),
        _wall(current.deadline),
        "超期" if current.overdue else "",
        case.case_no or "",
    ]


def _list(
    cases: list[CaseRecord],
    names: dict[tuple[str, str], str],
    args: argparse.Namespace,
    tz: ZoneInfo,
) -> None:
    from central.commands import emit
    from central.reports import render
    from central.reports.model import BAD, Report, Sheet

    now = utcnow()
    sheet = Sheet("差评件", HEADERS, [_row(c, names, now) for c in cases])
    for i, case in enumerate(cases):
        if due(case, now).overdue:
            sheet.mark(i, "超期", BAD)
    report = Report(f"差评件 ({len(cases)} 件)", [sheet])
    buffer = io.BytesIO()
    render(report, args.format, buffer)
    emit(buffer.getvalue(), args.out, f"{len(cases)} cases: {args.format}")


def _local(moment: datetime | None, tz: ZoneInfo) -> str:
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M") if moment else "—"


def _show(case: CaseRecord, log: list[CaseLogEntry], tz: ZoneInfo, as_json: bool) -> None:
    now = utcnow()
    current = due(case, now)
    if as_json:
        body = {
            "id": case.id,
            "rating_id": case.rating_id,
            "site": case.site,
            "window": case.window,
            "staff_id": case.staff_id,
            "level": case.level,
            "reasons": case.reasons,
            "case_no": case.case_no,
            "item_code": case.item_code,
            "rated_at": case.rated_at.isoformat(),
            "opened_at": case.opened_at.isoformat(),
            "state": case.state,
            "deadlines": {k: v.isoformat() for k, v in case.deadlines.items()},
            "due": current.step,
            "overdue": current.overdue,
            "closed_at": case.closed_at.isoformat() if case.closed_at else None,
            "closed_in_time": closed_in_time(case),
            "log": [
                {
                    "at": e.at.isoformat(),
                    "by": e.by,
                    "from": e.from_state,
                    "to": e.to_state,
                    "note": e.note,
                }
                for e in log
            ],
        }
        print(json.dumps(body, ensure_ascii=False, indent=2))
        return
    state = CaseState(case.state)
    print(f"case {case.id}  {STATE_LABELS[state]} ({state.value})")
    print(f"  rating     {case.rating_id} level {case.level}: {'、'.join(case.reasons) or '—'}")
    print(f"  where      {case.site} window {case.window}, staff {case.staff_id or '—'}")
    print(f"  rated      {_local(case.rated_at, tz)}   opened {_local(case.opened_at, tz)}")
    if case.case_no or case.item_code:
        print(f"  办件编号    {case.case_no or '—'}   事项编码 {case.item_code or '—'}")
    if current.step is not None:
        flag = "  OVERDUE" if current.overdue else ""
        label = STEP_LABELS[current.step]
        print(f"  due        {current.step} ({label}) by {_local(current.deadline, tz)}{flag}")
    steps = sorted(case.deadlines, key=lambda k: list(STEP_LABELS).index(k))
    print("  deadlines  " + ", ".join(f"{k} {_local(case.deadlines[k], tz)}" for k in steps))
    if case.closed_at is not None:
        print(f"  closed     {_local(case.closed_at, tz)}")
    print("  history")
    for e in log:
        print(
            f"    {_local(e.at, tz)}  {e.by}: {e.from_state or '—'} → {e.to_state}"
            + (f"  {e.note}" if e.note else "")
        )
