"""What a scenario needs from the machine; missing means skip on a laptop, fail in CI."""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(condition: bool, what: str) -> None:
    """Skip without ``what`` on a laptop; in CI (``CI=true``) a missing prerequisite fails."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"CI cannot run this fault scenario: {what}")
    pytest.skip(what)
