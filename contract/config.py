"""The rules every config file of the project follows (docs/config.md), and the sections both
programs share: the broker link (``[mqtt]``) and the hall's hours (``schedule``).

One TOML file per program; unknown keys are errors; every error names the file, the key path
and what was expected (with a did-you-mean), and the program exits 78 (EX_CONFIG) before it
touches hardware; secrets come from ``*_file`` keys, never inline.

Key paths are written the way a technician reads the file: ``pad[1].baud`` is the *first*
``[[pad]]`` table (1-based, as one counts tables in an editor), ``mqtt.url`` a plain key.
"""

from __future__ import annotations

import difflib
import re
import stat
import tomllib
from datetime import date
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from contract import ID_PATTERN

M = TypeVar("M", bound=BaseModel)

EX_CONFIG = 78  # sysexits.h: configuration error


class ConfigError(Exception):
    """One or more problems in a config file, each already formatted for a technician."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class Section(BaseModel):
    """A config table: unknown keys are errors, defaults are validated too."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class MqttSection(Section):
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
    prefix: str = Field("hall", pattern=ID_PATTERN, description="Topic prefix (docs/topics.md)")
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


_HHMM_RANGE = r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$"


def _ordered_range(value: str) -> str:
    """A "HH:MM-HH:MM" range must start before it ends (swapped, every punch was "extra")."""
    start, end = value.split("-")
    if start >= end:
        raise ValueError(f"expected the start before the end (e.g. '08:30-11:30'), got {value!r}")
    return value


class HoursSection(Section):
    """Staff duty hours of one season (docs/attendance.md table); "HH:MM-HH:MM"."""

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
    """Winter defaults differ only in the Mon-Thu afternoon (docs/attendance.md table)."""

    afternoon: str = Field("14:00-17:30", pattern=_HHMM_RANGE, description="Mon-Thu afternoon")


class BandsSection(Section):
    """Explicit punch time bands "HH:MM-HH:MM"; unset bands follow the day's hours."""

    morning_in: str | None = Field(None, pattern=_HHMM_RANGE, description="Morning-in band")
    morning_out: str | None = Field(None, pattern=_HHMM_RANGE, description="Morning-out band")
    afternoon_in: str | None = Field(None, pattern=_HHMM_RANGE, description="Afternoon-in band")
    afternoon_out: str | None = Field(None, pattern=_HHMM_RANGE, description="Afternoon-out band")

    @field_validator("morning_in", "morning_out", "afternoon_in", "afternoon_out")
    @classmethod
    def _start_before_end(cls, value: str | None) -> str | None:
        return None if value is None else _ordered_range(value)


class ScheduleSection(Section):
    """Punch rules (docs/attendance.md): seasons, grace, holidays and adjusted working days."""

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
    # Not in docs/config.md (additive, docs/attendance.md): years whose statutory holidays and
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


def read_toml(path: Path) -> dict[str, Any]:
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


def check_mqtt_files(mqtt: MqttSection, source: str) -> None:
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


def parse_model(model: type[M], data: dict[str, Any], source: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source, model)) from None
