"""The states of a 差评 case and the moves between them (docs/cases.md).

The loop is the national 好差评 rules' (国办发〔2019〕51号; GB/T 39734-2020 §9 差评处置): a 差评
is received (受理), verified (核实), rectified (整改), answered (反馈 to the citizen), followed up
(回访) and closed (办结). Before rectification the staff member may appeal (申诉复核) a rating
they hold mistaken or malicious; the review either upholds the 差评 (``upheld``: it stands and
the case goes on to rectification) or voids it (``void``: the rating no longer counts as a
差评 in assessment; the rating itself is never deleted).
"""

from __future__ import annotations

from enum import StrEnum


class CaseState(StrEnum):
    RECEIVED = "received"
    VERIFIED = "verified"
    RECTIFIED = "rectified"
    ANSWERED = "answered"
    FOLLOWED_UP = "followed_up"
    CLOSED = "closed"
    APPEALED = "appealed"
    UPHELD = "upheld"
    VOID = "void"


# Shown to the office (pages, reports, the export): the step a case has reached.
STATE_LABELS: dict[CaseState, str] = {
    CaseState.RECEIVED: "已受理",
    CaseState.VERIFIED: "已核实",
    CaseState.RECTIFIED: "已整改",
    CaseState.ANSWERED: "已反馈",
    CaseState.FOLLOWED_UP: "已回访",
    CaseState.CLOSED: "已办结",
    CaseState.APPEALED: "申诉中",
    CaseState.UPHELD: "申诉驳回（差评维持）",
    CaseState.VOID: "申诉成立（差评作废）",
}

# The action that leads into a state, as a button or a log line says it.
ACTION_LABELS: dict[CaseState, str] = {
    CaseState.VERIFIED: "核实",
    CaseState.RECTIFIED: "整改",
    CaseState.ANSWERED: "反馈",
    CaseState.FOLLOWED_UP: "回访",
    CaseState.CLOSED: "办结",
    CaseState.APPEALED: "申诉",
    CaseState.UPHELD: "驳回申诉",
    CaseState.VOID: "申诉成立",
}

# Every allowed move. An appeal is possible until rectification starts: once the window has
# rectified, the facts are no longer in dispute.
TRANSITIONS: dict[CaseState, tuple[CaseState, ...]] = {
    CaseState.RECEIVED: (CaseState.VERIFIED, CaseState.APPEALED),
    CaseState.VERIFIED: (CaseState.RECTIFIED, CaseState.APPEALED),
    CaseState.RECTIFIED: (CaseState.ANSWERED,),
    CaseState.ANSWERED: (CaseState.FOLLOWED_UP,),
    CaseState.FOLLOWED_UP: (CaseState.CLOSED,),
    CaseState.APPEALED: (CaseState.UPHELD, CaseState.VOID),
    CaseState.UPHELD: (CaseState.RECTIFIED,),
    CaseState.CLOSED: (),
    CaseState.VOID: (),
}

FINAL = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)
OPEN = frozenset(CaseState) - FINAL

# The deadline a case in a state is working towards (docs/cases.md "Deadlines"): the key in the
# case's `deadlines`. An upheld case has the rectification deadline it had before its appeal.
DUE_STEP: dict[CaseState, str] = {
    CaseState.RECEIVED: "verify",
    CaseState.VERIFIED: "rectify",
    CaseState.UPHELD: "rectify",
    CaseState.RECTIFIED: "answer",
    CaseState.ANSWERED: "follow_up",
    CaseState.FOLLOWED_UP: "close",
    CaseState.APPEALED: "appeal_review",
}
# The steps counted from the case's opening; ``appeal_review`` is counted from the appeal.
OPENING_STEPS = ("verify", "rectify", "answer", "follow_up", "close")
STEP_LABELS = {
    "verify": "核实",
    "rectify": "整改",
    "answer": "反馈",
    "follow_up": "回访",
    "close": "办结",
    "appeal_review": "申诉复核",
}


class CaseMoveError(ValueError):
    """A move the case's state does not allow, or a case that is not there."""


def parse_state(text: str) -> CaseState:
    try:
        return CaseState(text)
    except ValueError:
        names = ", ".join(s.value for s in CaseState)
        raise CaseMoveError(f"state {text!r}: expected one of {names}") from None


def check_move(current: CaseState, target: CaseState) -> None:
    allowed = TRANSITIONS[current]
    if target not in allowed:
        wanted = ", ".join(s.value for s in allowed) or "nothing (the case is final)"
        raise CaseMoveError(
            f"a case in state {current.value} ({STATE_LABELS[current]}) cannot move to "
            f"{target.value}; allowed: {wanted}"
        )
