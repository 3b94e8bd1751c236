"""Moving 差评 cases, for the shell and the office's pages alike (docs/cases.md).

Every move is checked against the states' rules (central/cases/states.py), written with its log
entry and its audit entry in one transaction, and refused when the case changed meanwhile
(two clerks on one case: the second is told, not overwritten).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from central.cases.deadlines import CaseDeadlines, WorkingClock, opening_policy
from central.cases.states import (
    DUE_STEP,
    FINAL,
    CaseMoveError,
    CaseState,
    check_move,
    parse_state,
)
from central.config import CentralConfig
from central.store import Store
from central.store.records import CaseRecord, utcnow
from contract.schedule import Schedule

NOTE_MAX = 2000


def case_deadlines(cfg: CentralConfig) -> CaseDeadlines:
    """The centre's limits ([cases]) on the hall's calendar ([schedule])."""
    tz = ZoneInfo(cfg.central.timezone)
    return CaseDeadlines(cfg.cases.limits(), WorkingClock(Schedule(cfg.schedule), tz))


def use_config(store: Store, cfg: CentralConfig) -> CaseDeadlines:
    """Make ``store`` open cases with the config's deadlines; returns them."""
    deadlines = case_deadlines(cfg)
    store.case_deadlines = opening_policy(deadlines)
    return deadlines


@dataclass(frozen=True)
class Due:
    """The step a case is working towards, its deadline and whether it passed."""

    step: str | None  # None: the case is final
    deadline: datetime | None
    overdue: bool


def due(case: CaseRecord, now: datetime) -> Due:
    state = CaseState(case.state)
    step = DUE_STEP.get(state)
    if step is None:
        return Due(None, None, False)
    deadline = case.deadlines.get(step)
    return Due(step, deadline, deadline is not None and now >= deadline)


def closed_in_time(case: CaseRecord) -> bool | None:
    """按期办结: closed (办结) by its ``close`` deadline; None while not closed."""
    if case.state != CaseState.CLOSED or case.closed_at is None:
        return None
    deadline = case.deadlines.get("close")
    return deadline is None or case.closed_at <= deadline


class CaseDesk:
    def __init__(self, store: Store, deadlines: CaseDeadlines):
        self.store = store
        self.deadlines = deadlines

    def move(
        self,
        case_id: int,
        target: str,
        by: str,
        note: str,
        address: str = "shell",
        now: datetime | None = None,
        expected: str | None = None,
    ) -> CaseRecord:
        """Move case ``case_id`` to ``target``; raises :class:`CaseMoveError` with the reason.

        ``expected``: the state the mover saw (a page's); the move is refused unless the case
        is still in it, so nobody acts on a page someone else's move made stale."""
        by = by.strip()
        if not by:
            raise CaseMoveError("--by: expected the name of who moves the case")
        if len(note) > NOTE_MAX:
            raise CaseMoveError(f"note: expected at most {NOTE_MAX} characters, got {len(note)}")
        to = parse_state(target)
        case = self.store.case(case_id)
        if case is None:
            raise CaseMoveError(f"case {case_id}: no such case")
        if expected is not None and expected != case.state:
            raise CaseMoveError(
                f"case {case_id} is {case.state} now, not {expected} as shown; look at it again"
            )
        check_move(CaseState(case.state), to)
        at = now or utcnow()
        deadlines = None
        if to is CaseState.APPEALED:
            deadlines = {
                **case.deadlines,
                "appeal_review": self.deadlines.step("appeal_review", at),
            }
        moved = self.store.move_case(
            case.id, case.state, to.value, by, note.strip(), at, deadlines, to in FINAL, address
        )
        if not moved:
            raise CaseMoveError(
                f"case {case_id} changed while it was being moved (now "
                f"{(self.store.case(case_id) or case).state}); look at it again"
            )
        found = self.store.case(case_id)
        assert found is not None
        return found
