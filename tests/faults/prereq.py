"""What a scenario needs from the machine; missing means skip on a laptop, fail in CI."""

from __future__ import annotations

from tests.conftest import require_or_skip


def need(condition: bool, what: str) -> None:
    """Skip without ``what`` on a developer's machine; in CI (``CI=true``) fail instead."""
    if not condition:
        require_or_skip(what)
