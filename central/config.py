"""The central collector's config (``/etc/hall-agent/central.toml``, docs/config.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pydantic import Field, PrivateAttr, field_validator

from central.cases.deadlines import DEFAULT_LIMITS, LIMIT_PATTERN
from contract import ID_PATTERN
from contract.config import (
    ConfigError,
    MqttSection,
    ScheduleSection,
    Section,
    check_mqtt_files,
    parse_model,
    read_secret_file,
    read_toml,
    redact_url,
)

DEFAULT_CENTRAL_CONFIG = Path("/etc/hall-agent/central.toml")


class StoreSection(Section):
    url: str = Field(
        "sqlite:////var/lib/hall-central/hall.db",
        description="sqlite:////abs/path.db or postgresql://user@host/db",
    )

    @field_validator("url")
    @classmethod
    def _store_url(cls, value: str) -> str:
        if not (
            value.startswith("sqlite:///") or value.startswith(("postgresql://", "postgres://"))
        ):
            raise ValueError(
                f"expected sqlite:///PATH or postgresql://…, got {redact_url(value)!r}"
            )
        # docs/config.md: secrets come from *_file keys, never inline. Never echo the URL here.
        parts = urlsplit(value)
        if parts.password is not None or "password" in parse_qs(parts.query):
            raise ValueError(
                "expected no password in the URL (docs/config.md: secrets are never inline); "
                "put it in a file readable only by the collector and set store.password_file"
            )
        return value

    password_file: Path | None = Field(
        None, description="PostgreSQL only: file holding the password; not readable by others"
    )

    _password: str | None = PrivateAttr(None)

    @property
    def password(self) -> str | None:
        """The password read from ``password_file`` at load time (never logged)."""
        return self._password

    @property
    def url_shown(self) -> str:
        """``url`` for logs and check output: what follows the last "@", no user part."""
        return self.url.split("@")[-1]

    # PostgreSQL only: the schema holding the tables (created if missing). Lets several
    # collectors or test runs share one database without touching each other's tables.
    pg_schema: str | None = Field(
        None,
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="PostgreSQL schema for the tables (default: the search_path's first)",
    )


class CentralSection(Section):
    id: str = Field("central", pattern=ID_PATTERN, description="Collector id (client id prefix)")
    timezone: str = Field("Asia/Shanghai", description="IANA time zone for reports")
    # docs/topics.md leaves the limits open; a batch holds at most sync.batch_size (≤ 5000)
    # events, a few hundred bytes each, so 4 MiB leaves room without inviting abuse.
    max_payload_kb: int = Field(
        4096, ge=16, le=262144, description="Larger event batches are rejected"
    )
    max_batch_events: int = Field(
        5000, ge=1, le=100000, description="Batches with more events are rejected"
    )
    # docs/sync.md "Rejected inputs": a broken or hostile device cannot fill the centre's
    # disk; beyond this many an hour its rejected inputs are counted, not kept.
    rejected_kept_per_hour: int = Field(
        100,
        ge=0,
        le=100000,
        description="Rejected inputs kept whole per device and hour (the rest only counted)",
    )


class BoardSection(Section):
    """The hall board page at the entrance (docs/board.md; regulation art. 32 and 19)."""

    # Loopback by default: a screen on the collector's host; a hall LAN address is a choice.
    listen: str = Field(
        "127.0.0.1:8090",
        pattern=r"^$|^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$",
        description="host:port the board page listens on ('' turns the board off)",
    )
    site: str | None = Field(
        None, pattern=ID_PATTERN, description="Site whose windows are shown (default: every site)"
    )
    title: str = Field("窗口服务公示", max_length=40, description="Heading shown on the board")
    # A live device republishes its retained status every sync.status_interval_s (60 s by
    # default) and on every connect; a status older than this means the device is not heard
    # (docs/board.md, "Offline and stale devices"). Keep it above twice the devices' interval.
    stale_after_s: int = Field(
        180,
        ge=30,
        le=7200,
        description="A window's device unheard this long (no status) shows 设备离线",
    )
    rotate_s: int = Field(
        10, ge=1, le=300, description="Seconds each page of windows stays on screen"
    )


class OfficeSection(Section):
    """The office's pages for 差评 cases (docs/office.md): logins, sessions, the audit log."""

    # Loopback by default: the hall LAN reaches it through a TLS proxy (docs/office.md).
    listen: str = Field(
        "127.0.0.1:8092",
        pattern=r"^$|^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$",
        description="host:port the office's pages listen on ('' turns them off)",
    )
    session_idle_min: int = Field(
        30, ge=5, le=480, description="A session unused this many minutes ends (log in again)"
    )
    session_max_hours: int = Field(
        10, ge=1, le=24, description="A session ends this many hours after its login, used or not"
    )
    login_attempts: int = Field(
        5,
        ge=3,
        le=50,
        description="Failed logins per address and per user name before logins are refused",
    )
    login_window_min: int = Field(
        15,
        ge=1,
        le=1440,
        description="Minutes the failed logins are counted over (and refused for)",
    )
    secure_cookies: bool = Field(
        False,
        description="Mark the session cookie Secure: set it when TLS terminates in front",
    )
    behind_proxy: bool = Field(
        False,
        description="Take the client's address from X-Real-IP on requests from loopback "
        "(a proxy on the same host sets it)",
    )


def _limit(step: str, what: str) -> Any:
    return Field(
        DEFAULT_LIMITS[step],
        pattern=LIMIT_PATTERN,
        description=f"{what}: 'Nd' working days or 'Nh' working hours",
    )


class CasesSection(Section):
    """Deadlines of a 差评 case's steps (docs/cases.md "Deadlines"), each counted from the
    case's opening on the hall's calendar; ``appeal_review`` from the appeal. The values are
    examples: the centre sets its own under its 好差评 rules."""

    verify: str = _limit("verify", "核实")
    rectify: str = _limit("rectify", "整改")
    answer: str = _limit("answer", "反馈 to the citizen")
    follow_up: str = _limit("follow_up", "回访")
    close: str = _limit("close", "办结")
    appeal_review: str = _limit("appeal_review", "申诉复核, counted from the appeal")

    def limits(self) -> dict[str, str]:
        return self.model_dump()


class PostSection(Section):
    """Time at the post, 脱岗 and 串岗 (docs/post.md; regulation 第十九条, 第二十五条)."""

    # 第十九条: a short absence shows 暂停服务; a pause beyond this is no longer short and the
    # whole pause counts as 脱岗 (docs/post.md "Pauses").
    pause_limit_min: int = Field(
        15,
        ge=1,
        le=240,
        description="A 暂停服务 longer than this many minutes is 脱岗, counted from its start",
    )


class SealSection(Section):
    """The monthly seal (docs/tamper.md "Monthly seal"): the centre's own signing key."""

    key_file: Path = Field(
        Path("/var/lib/hall-central/seal.key"),
        description="The centre's Ed25519 key that signs checkpoints (created 0600 by the "
        "first 'hall-central seal'; its public key beside it as KEY_FILE.pub)",
    )


class ChainsSection(Section):
    """The devices' signed chains, checked on ingest (docs/tamper-centre.md)."""

    # A batch lost and resent arrives after later ones: the verifier waits this long after
    # the event that follows a seq gap before it records the gap (docs/tamper-centre.md
    # "Gaps"). Above the devices' ack timeout and backoff (sync.ack_timeout_s = 30 by default).
    gap_grace_s: int = Field(
        600,
        ge=0,
        le=7 * 86400,
        description="Seconds a seq gap may stay open (the missing events still on their way) "
        "before it is recorded as a finding",
    )


class CentralConfig(Section):
    central: CentralSection = Field(default_factory=CentralSection)
    mqtt: MqttSection = Field(default_factory=MqttSection)
    store: StoreSection = Field(default_factory=StoreSection)
    board: BoardSection = Field(default_factory=BoardSection)
    # The hall's hours, holidays and 调休 days: the one source. The collector publishes them
    # to the kiosks, which classify by them (docs/attendance.md "One schedule").
    schedule: ScheduleSection = Field(
        default_factory=ScheduleSection,
        description="The hall's hours and days, published to every kiosk",
    )
    cases: CasesSection = Field(
        default_factory=CasesSection, description="差评 case deadlines (docs/cases.md)"
    )
    office: OfficeSection = Field(
        default_factory=OfficeSection,
        description="The office's pages for 差评 cases (docs/office.md)",
    )
    post: PostSection = Field(
        default_factory=PostSection,
        description="Time at the post, 脱岗 and 串岗 in the monthly report (docs/post.md)",
    )
    seal: SealSection = Field(
        default_factory=SealSection,
        description="The monthly seal of the events (docs/tamper.md)",
    )
    chains: ChainsSection = Field(
        default_factory=ChainsSection,
        description="The devices' signed chains, checked on ingest (docs/tamper-centre.md)",
    )


def load_central_config(path: str | os.PathLike[str]) -> CentralConfig:
    p = Path(path)
    cfg = parse_model(CentralConfig, read_toml(p), str(p))
    check_mqtt_files(cfg.mqtt, str(p))
    if cfg.store.password_file is not None:
        if cfg.store.url.startswith("sqlite:"):
            raise ConfigError(
                [f"{p}: store.password_file: only for a postgresql:// store; remove it"]
            )
        cfg.store._password = read_secret_file(
            cfg.store.password_file, str(p), "store.password_file"
        )
    return cfg


def central_schema() -> dict[str, Any]:
    schema = CentralConfig.model_json_schema()
    schema["title"] = "hall-central collector config (central.toml)"
    return schema
