"""What the devices' signed chains say about a report's events (docs/tamper-centre.md
"Reports"): a punch or rating whose event has an open chain finding is marked "‡" where the
report shows its time, listed in a section 签名校验异常 with the finding's kind, and the notes
say how many of the month's events came unsigned (agents older than chains)."""

from __future__ import annotations

from dataclasses import dataclass, field

from central.reports.model import Sheet
from central.reports.source import Event
from contract import EventType

MARK = "‡"
# The findings' kinds in the report's words; the code in brackets for whoever looks it up.
KIND_NAMES = {
    "bad_signature": "签名不符",
    "broken_link": "链接断开",
    "fork": "序号重复",
    "untrusted_key": "密钥未确认",
    "key_mismatch": "密钥不符",
    "unsigned_after_signed": "签名设备发来未签名事件",
}
HEADERS = ["时间", "站点", "设备", "工号", "姓名", "类型", "异常", "事件编号"]
TYPE_NAMES = {EventType.PUNCH.value: "打卡", EventType.RATING.value: "评价"}
NOTE = (
    f"{MARK} 签名校验异常: 该事件的设备签名或签名链有未处理的异常, 见「签名校验异常」; "
    "处理: hall-central devices findings --open"
)


@dataclass
class ChainSummary:
    """The month's events of the report as the chain checks see them."""

    events: int = 0
    unsigned: int = 0
    flagged: list[Event] = field(default_factory=list)


def summarize(events: list[Event]) -> ChainSummary:
    return ChainSummary(
        len(events), sum(1 for e in events if not e.signed), [e for e in events if e.chain]
    )


def kind_text(kinds: str) -> str:
    return "、".join(f"{KIND_NAMES.get(k, k)} ({k})" for k in kinds.split(",") if k)


def add_marks(
    sheets: list[Sheet],
    notes: list[str],
    summary: ChainSummary,
    names: dict[tuple[str, str], str],
) -> None:
    """Append the section of flagged events (when there are any) and the notes; ``names``:
    (site, staff id) → name."""
    if summary.flagged:
        rows = []
        for e in summary.flagged:
            sid = e.data.get("staff_id")
            rows.append(
                [
                    e.at.strftime("%Y-%m-%d %H:%M") + MARK,
                    e.site,
                    e.device,
                    sid if isinstance(sid, str) else "",
                    names.get((e.site, sid), "") if isinstance(sid, str) else "",
                    TYPE_NAMES.get(e.type, e.type),
                    kind_text(e.chain),
                    e.id,
                ]
            )
        sheets.append(Sheet("签名校验异常", list(HEADERS), rows))
        notes.append(NOTE)
    if summary.events:
        notes.append(
            f"签名: 本月 {summary.events} 条事件中 {summary.unsigned} 条未签名 "
            "(设备软件早于签名链, 无法校验来源); "
            f"{len(summary.flagged)} 条有未处理的签名校验异常"
        )
