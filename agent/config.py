"""Device and collector configuration: TOML parsed into strict pydantic models.

CONTRACT §5: one TOML file per device; unknown keys are errors; every error names the file,
the key path and what was expected; secrets come from ``*_file`` keys, never inline; the
process exits 78 (EX_CONFIG) before it touches hardware.

Key paths are written the way a technician reads the file: ``pad[1].baud`` is the *first*
``[[pad]]`` table (1-based, as one counts tables in an editor), ``mqtt.url`` a plain key.
"""

from __future__ import annotations

import difflib
import os
import re
import stat
import tomllib
from datetime import date
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

M = TypeVar("M", bound=BaseModel)

EX_CONFIG = 78  # sysexits.h: configuration error

DEFAULT_AGENT_CONFIG = Path("/etc/hall-agent/agent.toml")
DEFAULT_CENTRAL_CONFIG = Path("/etc/hall-agent/central.toml")

# CONTRACT §3: ids that go into topics.
ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
WINDOW_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,15}$"
BAUD_RATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)


class ConfigError(Exception):
    """One or more problems in a config file, each already formatted for a technician."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class DeviceSection(_Section):
    id: str = Field(pattern=ID_PATTERN, description="Device id, unique in the site; used in topics")
    site: str = Field(pattern=ID_PATTERN, description="Site id, e.g. 'jiedong'; used in topics")
    timezone: str = Field("Asia/Shanghai", description="IANA time zone for event timestamps")
    data_dir: Path = Field(
        Path("/var/lib/hall-agent"), description="Directory for outbox.db, gallery and state"
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"expected an IANA time zone such as 'Asia/Shanghai', got {value!r}"
            ) from exc
        return value


class MqttSection(_Section):
    url: str = Field(
        "mqtt://127.0.0.1:1883", description="Broker URL, mqtt://host[:port] or mqtts://host[:port]"
    )
    username: str | None = Field(None, description="Broker user name")
    password_file: Path | None = Field(
        None, description="File holding the broker password; must not be readable by others"
    )
    ca_file: Path | None = Field(None, description="CA certificate (PEM) for mqtts://")
    client_cert_file: Path | None = Field(None, description="Client certificate (PEM), optional")
    client_key_file: Path | None = Field(None, description="Client private key (PEM), optional")
    prefix: str = Field("hall", pattern=ID_PATTERN, description="Topic prefix (CONTRACT §3)")
    protocol: Literal["5", "3.1.1"] = Field("5", description="MQTT protocol version")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive in seconds")

    _password: str | None = PrivateAttr(None)

    @field_validator("url")
    @classmethod
    def _mqtt_url(cls, value: str) -> str:
        if not re.match(r"^mqtts?://[^/\s:]+(:\d{1,5})?/?$", value):
            raise ValueError(
                f"expected mqtt://host[:port] or mqtts://host[:port], got {redact_url(value)!r}"
            )
        return value

    @property
    def tls(self) -> bool:
        return self.url.startswith("mqtts://")

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or (8883 if self.tls else 1883)

    @property
    def password(self) -> str | None:
        """The password read from ``password_file`` at load time (never logged)."""
        return self._password


class SyncSection(_Section):
    batch_size: int = Field(200, ge=1, le=5000, description="Events per MQTT batch")
    ack_timeout_s: float = Field(30, gt=0, le=3600, description="Resend unacked batches after")
    max_outbox_mb: int = Field(256, ge=1, le=65536, description="Outbox size cap in MiB")
    # Not in CONTRACT §5 (it leaves the floor open): below this much free disk space `append`
    # refuses, so a pad keeps resending instead of the disk filling to the last byte.
    min_free_mb: int = Field(64, ge=0, le=65536, description="Refuse appends below this free space")
    max_in_flight: int = Field(4, ge=1, le=64, description="Unacked batches in flight at once")
    status_interval_s: float = Field(60, ge=1, le=3600, description="Status republish period")
    # Not in CONTRACT §5: a batch also stops at this many KiB. The maximum equals the centre's
    # default central.max_payload_kb, so a default collector never refuses a batch for size.
    max_batch_kb: int = Field(1024, ge=16, le=4096, description="Byte cap of one MQTT batch")


_HHMM_RANGE = r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$"


def _ordered_range(value: str) -> str:
    """A "HH:MM-HH:MM" range must start before it ends (swapped, every punch was "extra")."""
    start, end = value.split("-")
    if start >= end:
        raise ValueError(f"expected the start before the end (e.g. '08:30-11:30'), got {value!r}")
    return value


class HoursSection(_Section):
    """Staff duty hours of one season (CONTRACT §1 table); "HH:MM-HH:MM"."""

    morning: str = Field("08:30-11:30", pattern=_HHMM_RANGE, description="Morning duty")
    afternoon: str = Field("14:30-17:30", pattern=_HHMM_RANGE, description="Mon-Thu afternoon")
    friday_afternoon: str = Field(
        "14:30-17:30", pattern=_HHMM_RANGE, description="Friday afternoon duty"
    )

    @field_validator("morning", "afternoon", "friday_afternoon")
    @classmethod
    def _start_before_end(cls, value: str) -> str:
        return _ordered_range(value)


class WinterHoursSection(HoursSection):
    """Winter defaults differ only in the Mon-Thu afternoon (CONTRACT §1 table)."""

    afternoon: str = Field("14:00-17:30", pattern=_HHMM_RANGE, description="Mon-Thu afternoon")


class BandsSection(_Section):
    """Explicit punch time bands "HH:MM-HH:MM"; unset bands follow the day's hours."""

    morning_in: str | None = Field(None, pattern=_HHMM_RANGE, description="Morning-in band")
    morning_out: str | None = Field(None, pattern=_HHMM_RANGE, description="Morning-out band")
    afternoon_in: str | None = Field(None, pattern=_HHMM_RANGE, description="Afternoon-in band")
    afternoon_out: str | None = Field(None, pattern=_HHMM_RANGE, description="Afternoon-out band")

    @field_validator("morning_in", "morning_out", "afternoon_in", "afternoon_out")
    @classmethod
    def _start_before_end(cls, value: str | None) -> str | None:
        return None if value is None else _ordered_range(value)


class ScheduleSection(_Section):
    """Punch rules (CONTRACT §1): seasons, grace, holidays and adjusted working days."""

    summer_months: list[int] = Field(
        [5, 6, 7, 8, 9, 10], description="Months (1-12) on summer hours; the rest is winter"
    )
    summer: HoursSection = Field(default_factory=HoursSection, description="Summer hours")
    winter: WinterHoursSection = Field(
        default_factory=WinterHoursSection, description="Winter hours"
    )
    grace_min: int = Field(0, ge=0, le=120, description="Minutes late/early still on time")
    early_in_min: int = Field(120, ge=0, le=600, description="How early an in-punch may be")
    late_out_min: int = Field(240, ge=0, le=720, description="How late an out-punch may be")
    bands: BandsSection = Field(default_factory=BandsSection, description="Explicit bands")
    holidays: list[date] = Field(default_factory=list, description="Extra days off")
    workdays: list[date] = Field(default_factory=list, description="Extra working days")
    # Not in CONTRACT §5 (additive, docs/attendance.md): years whose statutory holidays and
    # 调休 days the site has listed in holidays/workdays itself; silences the calendar warning.
    covered_years: list[int] = Field(
        default_factory=list,
        description="Years whose holidays and 调休 days are all listed in holidays/workdays",
    )

    @field_validator("covered_years")
    @classmethod
    def _years(cls, value: list[int]) -> list[int]:
        bad = [y for y in value if not 2000 <= y <= 2100]
        if bad:
            raise ValueError(f"expected years 2000-2100, got {bad}")
        return value

    @field_validator("summer_months")
    @classmethod
    def _months(cls, value: list[int]) -> list[int]:
        bad = [m for m in value if not 1 <= m <= 12]
        if bad:
            raise ValueError(f"expected months 1-12, got {bad}")
        return value


class AttendanceSection(_Section):
    camera: str = Field("0", description="Device index, /dev/video*, rtsp://, http:// or a file")
    tolerance: float = Field(0.5, gt=0, le=1.0, description="Max face distance for a match")
    debounce_s: int = Field(120, ge=0, le=86400, description="One punch per person per window")
    liveness: Literal["off", "blink"] = Field("off", description="'blink' requires a blink")
    # Not in CONTRACT §5 (additive, docs/attendance.md):
    margin: float = Field(
        0.06, ge=0, le=1.0, description="Nearest other person must be this much further"
    )
    votes: int = Field(3, ge=1, le=30, description="Agreeing frames of a track before a punch")
    blink_timeout_s: float = Field(
        6.0, gt=0, le=120, description="No blink within this after recognition: rejected"
    )
    reject_interval_s: float = Field(
        30.0, ge=0, le=3600, description="At most one attendance.rejected per reason per this"
    )
    min_face_px: int = Field(
        50,
        ge=20,
        le=1000,
        description="Smallest face to recognise: its width in pixels of the camera's frame "
        "(sets the working distance; detection scale and cost follow from it)",
    )
    camera_hfov_deg: float = Field(
        60.0,
        ge=20,
        le=180,
        description="Camera's horizontal field of view, only to print the range in metres",
    )
    # Removed: detection ran at a fixed width, which tied the range to the camera's
    # resolution. Kept only to say so by name instead of a bare "unknown key".
    detect_width: SkipJsonSchema[int | None] = Field(None, exclude=True)
    min_sharpness: float = Field(20.0, ge=0, description="Laplacian variance floor (blur)")
    max_yaw: float = Field(0.35, gt=0, le=2, description="Largest head turn (nose offset)")
    isolation: Literal["process", "thread"] = Field(
        "process", description="Run recognition in its own process (dlib holds the GIL)"
    )
    realtime: bool = Field(True, description="Play a video file at its frame rate")
    stale_after_s: float = Field(5.0, gt=0, le=600, description="Camera fault after no frame")
    schedule: ScheduleSection = Field(default_factory=ScheduleSection, description="Hours")

    @field_validator("detect_width")
    @classmethod
    def _detect_width_removed(cls, value: int | None) -> None:
        if value is not None:
            raise ValueError(
                "no longer used: the detection scale now follows min_face_px, the smallest "
                "face to recognise in the camera's own pixels (50 ≈ 1.7 m with a 640×480 "
                f"webcam; docs/attendance.md); remove detect_width = {value}"
            )
        return None


class PadSection(_Section):
    port: str = Field(description="Serial port or pyserial URL (loop://, socket://, spy://)")
    baud: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = Field(
        9600, description="Baud rate, 8N1"
    )
    address: int = Field(ge=1, le=247, description="HallPad bus address (RS-485), 1-247")
    window: str = Field(pattern=WINDOW_PATTERN, description="Window label, e.g. 'A03'")


# CONTRACT §4 reason bits 0-5; "default labels, overridable in config" ([windows] reason_labels).
DEFAULT_REASON_LABELS = ("态度不好", "办事效率低", "未一次性告知", "多次跑动", "流程繁琐", "其他")


class WindowsSection(_Section):
    """Window pads policy (agent/windows.py); only used when there are [[pad]] tables."""

    invite_timeout_s: float = Field(
        120, ge=1, le=3600, description="An INVITE not answered this long yields rating.expired"
    )
    heartbeat_s: float = Field(
        30, ge=1, le=3600, description="The pads' HEARTBEAT period; silent > 3 periods = offline"
    )
    time_sync_s: float = Field(
        3600, ge=60, le=86400, description="Resend TIME to the pads this often (and at start)"
    )
    reason_labels: list[str] = Field(
        default_factory=lambda: list(DEFAULT_REASON_LABELS),
        min_length=1,
        max_length=16,
        description="Label of reason bit i (u16 bitmask, CONTRACT §4)",
    )

    @field_validator("reason_labels")
    @classmethod
    def _labels(cls, value: list[str]) -> list[str]:
        for i, label in enumerate(value):
            if not label.strip():
                raise ValueError(f"expected a non-empty label for reason bit {i}, got {label!r}")
        return value


class AgentConfig(_Section):
    device: DeviceSection
    mqtt: MqttSection = Field(default_factory=MqttSection)
    sync: SyncSection = Field(default_factory=SyncSection)
    attendance: AttendanceSection | None = None
    pad: list[PadSection] = Field(default_factory=list)
    windows: WindowsSection = Field(default_factory=WindowsSection)

    @model_validator(mode="after")
    def _unique_pads(self) -> AgentConfig:
        seen_addr: dict[tuple[str, int], int] = {}
        seen_window: dict[str, int] = {}
        for i, pad in enumerate(self.pad, start=1):
            key = (pad.port, pad.address)
            if key in seen_addr:
                raise ValueError(
                    f"pad[{i}]: address {pad.address} on {pad.port} is already used by "
                    f"pad[{seen_addr[key]}]; expected one address per pad on a bus"
                )
            seen_addr[key] = i
            if pad.window in seen_window:
                raise ValueError(
                    f"pad[{i}]: window {pad.window!r} already has pad[{seen_window[pad.window]}]"
                )
            seen_window[pad.window] = i
        return self

    @model_validator(mode="after")
    def _one_baud_per_port(self) -> AgentConfig:
        # Pads sharing a port share one RS-485 bus, which runs at one speed.
        first: dict[str, int] = {}
        for i, pad in enumerate(self.pad, start=1):
            j = first.setdefault(pad.port, i)
            if self.pad[j - 1].baud != pad.baud:
                raise ValueError(
                    f"pad[{i}]: baud {pad.baud} on {pad.port} differs from pad[{j}] "
                    f"({self.pad[j - 1].baud}); expected one baud rate per bus"
                )
        return self

    @property
    def data_dir(self) -> Path:
        return self.device.data_dir


class StoreSection(_Section):
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
        # CONTRACT §5: secrets come from *_file keys, never inline. Never echo the URL here.
        parts = urlsplit(value)
        if parts.password is not None or "password" in parse_qs(parts.query):
            raise ValueError(
                "expected no password in the URL (CONTRACT §5: secrets are never inline); "
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

    # PostgreSQL only: the schema holding the tables (created if missing). Lets several
    # collectors or test runs share one database without touching each other's tables.
    pg_schema: str | None = Field(
        None,
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="PostgreSQL schema for the tables (default: the search_path's first)",
    )


class CentralSection(_Section):
    id: str = Field("central", pattern=ID_PATTERN, description="Collector id (client id prefix)")
    timezone: str = Field("Asia/Shanghai", description="IANA time zone for reports")
    # CONTRACT §3 leaves the limits open; a batch holds at most sync.batch_size (≤ 5000)
    # events, a few hundred bytes each, so 4 MiB leaves room without inviting abuse.
    max_payload_kb: int = Field(
        4096, ge=16, le=262144, description="Larger event batches are rejected"
    )
    max_batch_events: int = Field(
        5000, ge=1, le=100000, description="Batches with more events are rejected"
    )


class CentralConfig(_Section):
    central: CentralSection = Field(default_factory=CentralSection)
    mqtt: MqttSection = Field(default_factory=MqttSection)
    store: StoreSection = Field(default_factory=StoreSection)


# --- loading and error formatting ---------------------------------------------------------

_SECRET_HINTS = ("password", "secret", "token", "key")


def _key_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part + 1}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class that owns the key at ``loc`` (for did-you-mean suggestions)."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part) if isinstance(current, type) else None
        if field is None:
            return None
        ann = field.annotation
        args = getattr(ann, "__args__", ()) or ()
        candidates = [ann, *args]
        for cand in list(candidates):
            candidates.extend(getattr(cand, "__args__", ()) or ())
        current = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
        if current is None:
            return None
    return current


# Everything between "//" and the last "@": a password may itself hold "/", "@" or spaces.
_URL_USERINFO = re.compile(r"//[^\n]*@")


def redact_url(text: str) -> str:
    """``scheme://user:password@host`` -> ``scheme://***@host`` (never echo a secret)."""
    return _URL_USERINFO.sub("//***@", text)


def _describe(value: Any, secret: bool) -> str:
    if secret:
        return "<hidden>"
    text = repr(redact_url(value) if isinstance(value, str) else value)
    return text if len(text) <= 60 else text[:57] + "…"


def format_validation_error(exc: ValidationError, source: str, model: type[BaseModel]) -> list[str]:
    problems: list[str] = []
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        path = _key_path(loc)
        kind = err.get("type", "")
        last = str(loc[-1]) if loc else ""
        secret = any(h in last.lower() for h in _SECRET_HINTS) and not last.endswith("_file")
        got = _describe(err.get("input"), secret)
        if kind == "extra_forbidden":
            owner = _model_at(model, loc)
            known = list(owner.model_fields) if owner else []
            hint = difflib.get_close_matches(last, known, n=1, cutoff=0.6)
            msg = f"unknown key {last!r}"
            if hint:
                msg += f"; did you mean {hint[0]!r}?"
            elif known:
                msg += f"; expected one of {', '.join(known)}"
            if secret:
                msg += f" (secrets are never inline: use {last}_file)"
        elif kind == "missing":
            msg = "required key is missing"
        elif kind == "literal_error":
            expected = err.get("ctx", {}).get("expected", "")
            msg = f"expected one of {expected}, got {got}"
        elif kind == "string_pattern_mismatch":
            pattern = err.get("ctx", {}).get("pattern", "")
            msg = f"expected text matching {pattern}, got {got}"
        elif kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
            msg = f"{err['msg'].replace('Input should be', 'expected')}, got {got}"
        elif kind == "value_error":
            msg = str(err.get("ctx", {}).get("error", err["msg"]))
            if path == "(top level)":
                problems.append(f"{source}: {msg}")
                continue
        else:
            msg = f"{err['msg'].replace('Input should be', 'expected')}, got {got}"
        problems.append(f"{source}: {path}: {msg}")
    return problems


def _read_toml(path: Path) -> dict[str, Any]:
    name = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError([f"{name}: file not found"]) from None
    except OSError as exc:
        raise ConfigError([f"{name}: cannot read: {exc.strerror}"]) from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{name}: expected UTF-8 text, byte {exc.start} is not"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{name}: TOML syntax error: {exc}"]) from None


def read_secret_file(path: Path, source: str, key: str) -> str:
    """Read a ``*_file`` secret, refusing a file that other users can read."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigError([f"{source}: {key}: file {path} not found"]) from None
    except OSError as exc:
        raise ConfigError([f"{source}: {key}: cannot stat {path}: {exc.strerror}"]) from None
    if st.st_mode & stat.S_IROTH:
        raise ConfigError(
            [
                f"{source}: {key}: {path} is readable by others "
                f"(mode {stat.S_IMODE(st.st_mode):04o}); expected mode 0600 or 0640 "
                f"(chmod o-rwx {path})"
            ]
        )
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{source}: {key}: cannot read {path}: {exc}"]) from None


def _check_files(mqtt: MqttSection, source: str) -> None:
    problems = []
    for key in ("ca_file", "client_cert_file", "client_key_file"):
        value = getattr(mqtt, key)
        if value is not None and not value.is_file():
            problems.append(f"{source}: mqtt.{key}: file {value} not found")
    if (mqtt.client_cert_file is None) != (mqtt.client_key_file is None):
        problems.append(
            f"{source}: mqtt: client_cert_file and client_key_file go together; got only one"
        )
    if problems:
        raise ConfigError(problems)
    if mqtt.password_file is not None:
        mqtt._password = read_secret_file(mqtt.password_file, source, "mqtt.password_file")


def _parse(model: type[M], data: dict[str, Any], source: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source, model)) from None


def load_agent_config(path: str | os.PathLike[str]) -> AgentConfig:
    """Parse and validate a device config; raises ConfigError with every problem found."""
    p = Path(path)
    cfg = _parse(AgentConfig, _read_toml(p), str(p))
    _check_files(cfg.mqtt, str(p))
    return cfg


def load_central_config(path: str | os.PathLike[str]) -> CentralConfig:
    p = Path(path)
    cfg = _parse(CentralConfig, _read_toml(p), str(p))
    _check_files(cfg.mqtt, str(p))
    if cfg.store.password_file is not None:
        if cfg.store.url.startswith("sqlite:"):
            raise ConfigError(
                [f"{p}: store.password_file: only for a postgresql:// store; remove it"]
            )
        cfg.store._password = read_secret_file(
            cfg.store.password_file, str(p), "store.password_file"
        )
    return cfg


def agent_schema() -> dict[str, Any]:
    schema = AgentConfig.model_json_schema()
    schema["title"] = "hall-agent device config (agent.toml)"
    return schema


def central_schema() -> dict[str, Any]:
    schema = CentralConfig.model_json_schema()
    schema["title"] = "hall-central collector config (central.toml)"
    return schema
