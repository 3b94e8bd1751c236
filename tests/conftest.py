"""Shared fixtures: config files, outboxes, the local broker and database, free ports."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from agent.outbox import Outbox
from tests.support import Mosquitto, central_config
from tests.support import free_port as free_port  # re-exported for the tests that import it here


def in_ci() -> bool:
    """True under CI (``CI`` set to anything but empty/0/false, as CI systems and .ci/run do)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_or_skip(reason: str) -> NoReturn:
    """Skip the test on a developer's machine; fail it in CI, where a missing service, tool or
    pinned file means the suite did not test what it claims."""
    if in_ci():
        pytest.fail(f"required in CI but unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


def skip_unless(available: bool, reason: str) -> pytest.MarkDecorator:
    """A ``skipif`` mark for a missing tool or service that skips only off CI: in CI the test
    runs and fails on what is missing (a skip there would be a green run that tested less)."""
    return pytest.mark.skipif(not available and not in_ci(), reason=reason)


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    """Write a TOML file (dedented) into tmp_path and return its path."""
    counter = iter(range(1_000_000))

    def _write(text: str, name: str | None = None) -> Path:
        path = tmp_path / (name or f"agent-{next(counter)}.toml")
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return _write


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(
        tmp_path / "outbox.db",
        device="test-01",
        site="jiedong",
        clock=lambda: "synced",
        min_free_bytes=0,
    )
    yield box
    box.close()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A Mosquitto of the test's own on a free port (tests/support.py), stopped afterwards."""
    # Persistence off on purpose: delivery must not depend on the broker keeping anything
    # (the outbox is the buffer, docs/topics.md); test_sync_e2e's broker restart proves it.
    with Mosquitto(tmp_path / "broker", persistence=False) as b:
        yield b


@pytest.fixture
def collector(tmp_path: Path, broker: Mosquitto):
    """A running central collector on an SQLite store in tmp_path, subscribed to ``broker``."""
    from central.collector import Collector

    c = Collector(central_config(f"sqlite:///{tmp_path}/hall.db", broker.url))
    c.start()
    # The subscription is made in on_connect; connected means subscribed.
    assert c.wait_connected(10)
    yield c
    c.stop()


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A unique PostgreSQL schema for this test, dropped afterwards (the database is shared)."""
    from tests import support

    if not support.pg_available():
        require_or_skip(f"PostgreSQL not reachable at {support.PG_URL}")
    with support.pg_schema() as name:
        yield name


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """The central store, once on an SQLite file and once on a PostgreSQL schema of its own.
    A test file that needs another store defines its own ``store``."""
    from central.store import open_store
    from tests import support

    if request.param == "sqlite":
        s = open_store(f"sqlite:///{tmp_path}/hall.db")
    else:
        s = open_store(support.PG_URL, request.getfixturevalue("pg_schema"))
    yield s
    s.close()
