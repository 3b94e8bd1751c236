"""Event types are named through ``contract.EventType``, never spelled as strings.

A literal such as ``"rating.submitted"`` in a comparison, a dict key or SQL text still runs
after the contract renames or drops the type, and then silently matches nothing; through the
enum the same change fails where the name is used. The product and what runs beside it
(``scripts/``, ``bench/``) are scanned; ``contract/`` defines the values, and the tests may
spell the wire format out, since that is what they check.
"""

from __future__ import annotations

import ast
from pathlib import Path

from contract import EVENT_TYPES

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("agent", "central", "drivers", "sync", "scripts", "bench")

# Files allowed to spell types out. Listed only while they do: the test fails once a listed
# file has no literal left, so the list cannot outlive them.
ALLOWED: set[str] = set()


def _literals(root: Path, packages: tuple[str, ...]) -> dict[str, list[int]]:
    """{file: line numbers} of every string constant that is an event type, or that holds one
    quoted as SQL writes it (``type = 'device.fault'``); f-strings' literal parts included."""
    quoted = tuple(f"'{t}'" for t in EVENT_TYPES)
    found: dict[str, list[int]] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            lines = sorted(
                {
                    node.lineno
                    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                    if isinstance(node, ast.Constant)
                    and isinstance(node.value, str)
                    and (node.value in EVENT_TYPES or any(q in node.value for q in quoted))
                }
            )
            if lines:
                found[path.relative_to(root).as_posix()] = lines
    return found


def test_no_event_type_is_spelled_as_a_string_outside_the_contract() -> None:
    found = _literals(ROOT, SCANNED)
    bad = {f: lines for f, lines in found.items() if f not in ALLOWED}
    assert not bad, f"name event types through contract.EventType (EventType.X.value in SQL): {bad}"
    stale = sorted(ALLOWED - set(found))
    assert not stale, f"no event type literal left in {stale}: remove it from ALLOWED"


def test_the_literal_scan_finds_every_form(tmp_path: Path) -> None:
    (tmp_path / "agent").mkdir()
    module = tmp_path / "agent" / "mod.py"
    module.write_text(
        'if kind == "attendance.punch":\n'
        '    LABELS = {"window.login": "登录"}\n'
        "SQL = \"SELECT * FROM events WHERE type = 'rating.submitted'\"\n"
        "where = f\"type = 'device.fault' AND site = '{site}'\"\n"
        '"""A docstring may name device.test and window.paused in prose."""\n'
        'TYPE = EventType.PUNCH  # "attendance.punch" in a comment is prose too\n'
        'OTHER = "attendance"\n',
        encoding="utf-8",
    )
    assert _literals(tmp_path, ("agent",)) == {
        module.relative_to(tmp_path).as_posix(): [1, 2, 3, 4]
    }
