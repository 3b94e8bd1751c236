"""The hall's words: what the pads, the kiosk, the board and the reports show people.

Fixed by the regulation and the national 好差评 scheme, not by the code: every side prints the
same heading for a slot and the same word for a level.
"""

from __future__ import annotations

# The slots' headings: the regulation's four daily punches (in order: contract.schedule.DAILY_SLOTS)
# and "extra", a punch outside them.
SLOT_LABELS: dict[str, str] = {
    "morning_in": "上午上班",
    "morning_out": "上午下班",
    "afternoon_in": "下午上班",
    "afternoon_out": "下午下班",
    "extra": "其他",
}

# National 好差评 scheme: five levels, 5 best.
LEVEL_LABELS: dict[int, str] = {
    5: "非常满意",
    4: "满意",
    3: "基本满意",
    2: "不满意",
    1: "非常不满意",
}
POOR_LEVELS = frozenset({1, 2})  # 差评: reasons are asked for and followed up
# HallPad v1 reason bits 0-5, default labels (a site may override them in config).
DEFAULT_REASON_LABELS: tuple[str, ...] = (
    "态度不好",
    "办事效率低",
    "未一次性告知",
    "多次跑动",
    "流程繁琐",
    "其他",
)
PAUSED_TEXT = "暂停服务"
