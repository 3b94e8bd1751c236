"""The device's configuration (``/etc/hall-agent/agent.toml``, docs/config.md).

The rules every config file follows (unknown keys are errors, messages naming the file, key
path and what was expected, exit 78, ``*_file`` secrets) and the sections shared with the
centre (``[mqtt]``, the hall's hours) are in :mod:`contract.config`.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, PrivateAttr, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

if TYPE_CHECKING:
    from drivers.face_models import DecisionRule

from contract import DEFAULT_REASON_LABELS, ID_PATTERN, WINDOW_PATTERN
from contract.config import (
    EX_CONFIG,
    ConfigError,
    MqttSection,
    Section,
    check_mqtt_files,
    parse_model,
    read_secret_file,
    read_toml,
    redact_url,
)

__all__ = [
    "DEFAULT_AGENT_CONFIG",
    "EX_CONFIG",
    "AgentConfig",
    "AttendanceSection",
    "ConfigError",
    "DeviceSection",
    "MqttSection",
    "PadSection",
    "ScreenSection",
    "SyncSection",
    "WindowsSection",
    "agent_schema",
    "is_loopback_listen",
    "load_agent_config",
    "read_screen_token",
    "redact_url",
]

DEFAULT_AGENT_CONFIG = Path("/etc/hall-agent/agent.toml")
BAUD_RATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)


class DeviceSection(Section):
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


class SyncSection(Section):
    batch_size: int = Field(200, ge=1, le=5000, description="Events per MQTT batch")
    ack_timeout_s: float = Field(30, gt=0, le=3600, description="Resend unacked batches after")
    max_outbox_mb: int = Field(256, ge=1, le=65536, description="Outbox size cap in MiB")
    # Not in docs/config.md (it leaves the floor open): below this much free disk space `append`
    # refuses, so a pad keeps resending instead of the disk filling to the last byte.
    min_free_mb: int = Field(64, ge=0, le=65536, description="Refuse appends below this free space")
    max_in_flight: int = Field(4, ge=1, le=64, description="Unacked batches in flight at once")
    status_interval_s: float = Field(60, ge=1, le=3600, description="Status republish period")
    # Not in docs/config.md: a batch also stops at this many KiB. The maximum equals the centre's
    # default central.max_payload_kb, so a default collector never refuses a batch for size.
    max_batch_kb: int = Field(1024, ge=16, le=4096, description="Byte cap of one MQTT batch")


class AttendanceSection(Section):
    camera: str = Field("0", description="Device index, /dev/video*, rtsp://, http:// or a file")
    recognizer: Literal["sface", "dlib"] = Field(
        "sface",
        description="Face model: 'sface' (OpenCV YuNet + SFace, the default) or 'dlib' "
        "(face_recognition's); a gallery is enrolled with one of them (docs/attendance.md)",
    )
    models_dir: Path | None = Field(
        None,
        description="Directory of the sface model files (default: share/hall-agent/models "
        "of the agent's environment; `hall-agent models install` fills it)",
    )
    tolerance: float | None = Field(
        None,
        gt=0,
        le=2.0,
        description="Max face distance for a match; default: the recognizer's calibrated "
        "value (sface 1.0, dlib 0.5)",
    )
    debounce_s: int = Field(120, ge=0, le=86400, description="One punch per person per window")
    liveness: Literal["off", "blink"] = Field("off", description="'blink' requires a blink")
    # Not in docs/config.md (additive, docs/attendance.md):
    margin: float | None = Field(
        None,
        ge=0,
        le=1.0,
        description="Nearest other person must be this much further; default: the "
        "recognizer's calibrated value (0.06 for both)",
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
    # Moved to the centre, the one source of the hall's hours (docs/attendance.md "One
    # schedule"). Kept only to say so by name instead of a bare "unknown key".
    schedule: SkipJsonSchema[dict[str, Any] | None] = Field(None, exclude=True)

    @field_validator("schedule", mode="before")
    @classmethod
    def _schedule_moved(cls, value: Any) -> None:
        if value is not None:
            raise ValueError(
                "no longer read here: the centre publishes the hall's hours and holidays to "
                "every kiosk, so that the screen and the report judge a punch alike "
                '(docs/attendance.md "One schedule"). Move the keys of this table, unchanged, '
                "to [schedule] in the centre's central.toml, delete [attendance.schedule] "
                "from this file, then run 'hall-central schedule publish' on the centre"
            )
        return None

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

    @model_validator(mode="after")
    def _tolerance_on_the_recognizers_scale(self) -> AttendanceSection:
        # Distances of the two models are on different scales: dlib's 0.5 would refuse every
        # face with sface, sface's 1.0 would accept strangers with dlib.
        from drivers.face_models import RECOGNIZERS

        spec = RECOGNIZERS[self.recognizer]
        low, high = spec.distance_range
        if self.tolerance is not None and not low <= self.tolerance <= high:
            raise ValueError(
                f"tolerance = {self.tolerance} is off the {self.recognizer} recognizer's scale "
                f"({low}–{high}; calibrated {spec.rule.tolerance}): remove the line to use the "
                f"calibrated value, or set recognizer = "
                f'"{"dlib" if self.recognizer == "sface" else "sface"}" if the kiosk\'s '
                "gallery was enrolled with that one (docs/attendance.md)"
            )
        return self

    def rule(self) -> DecisionRule:
        """The decision rule in force: the configured values over the recognizer's calibrated
        ones (docs/attendance.md "Decision rule")."""
        from drivers.face_models import RECOGNIZERS, DecisionRule

        base = RECOGNIZERS[self.recognizer].rule
        return DecisionRule(
            tolerance=self.tolerance if self.tolerance is not None else base.tolerance,
            margin=self.margin if self.margin is not None else base.margin,
            votes=self.votes,
        )


# The token goes into the page's URL as it is (``?token=…``): URL-unreserved characters only
# (RFC 3986 section 2.3), and long enough not to be guessed (16 hex digits = 64 bits).
SCREEN_TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9._~-]{16,256}$")


def is_loopback_listen(listen: str) -> bool:
    """Whether ``host:port`` binds loopback only: 127.0.0.0/8, ::1 or the name ``localhost``.

    Any other name counts as exposed: what it resolves to is not known here.
    """
    host = listen.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_listen(value: str, example: str) -> str:
    """A ``listen`` key: ``host:port``, or '' for nothing served."""
    if value == "":
        return value
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected host:port such as '{example}' or '', got {value!r}")
    return value


class ScreenSection(Section):
    """The kiosk's own screen (agent/kiosk/screen.py, docs/attendance.md "Kiosk screen").

    Only used on a kiosk (an ``[attendance]`` section). Preview frames stay in memory: they
    are never written to disk and never leave the device (PIPL art. 28-29). A page served
    beyond loopback needs an access token (docs/attendance.md "Access and preview").
    """

    listen: str = Field(
        "127.0.0.1:8080",
        description="host:port of the kiosk page; loopback unless a screen elsewhere needs it "
        "(then token_file is required); '' = no page",
    )
    token_file: Path | None = Field(
        None,
        description="File holding the page's access token (16+ characters of A-Z a-z 0-9 . _ ~ "
        "-); required when listen is not loopback; must not be readable by others",
    )
    preview: bool = Field(
        True, description="Show the live camera preview on the page; false = results only"
    )
    sound: bool = Field(False, description="A short beep in the page on each result (WebAudio)")
    preview_fps: float = Field(8.0, ge=0, le=30, description="Preview frames a second; 0 = none")
    preview_width: int = Field(480, ge=160, le=1920, description="Preview width in pixels")
    result_s: float = Field(5.0, gt=0, le=60, description="How long a result stays on screen")

    _token: str | None = PrivateAttr(None)

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        return check_listen(value, "127.0.0.1:8080")

    @model_validator(mode="after")
    def _exposed_page_needs_a_token(self) -> ScreenSection:
        if self.exposed and self.token_file is None:
            raise ValueError(
                f"listen = {self.listen!r} is not a loopback address: the page and its live "
                "camera preview would be open to anyone on the network; expected token_file = "
                '"/etc/hall-agent/screen.token" (a file holding 16+ random characters, e.g. '
                "`openssl rand -hex 16`, chmod 600), or a loopback listen such as "
                "'127.0.0.1:8080' (docs/attendance.md)"
            )
        return self

    @property
    def exposed(self) -> bool:
        """The page is served beyond this machine (a non-loopback listen)."""
        return bool(self.listen) and not is_loopback_listen(self.listen)

    @property
    def token(self) -> str | None:
        """The access token read from ``token_file`` at load time (never logged)."""
        return self._token


def read_screen_token(screen: ScreenSection, source: str) -> None:
    """Read ``[screen] token_file`` (a ``*_file`` secret) and check the token's form."""
    if screen.token_file is None:
        return
    key = "screen.token_file"
    token = read_secret_file(screen.token_file, source, key)
    if not token:
        raise ConfigError(
            [
                f"{source}: {key}: {screen.token_file} is empty; expected the page's access "
                f"token, 16+ random characters (openssl rand -hex 16 > {screen.token_file})"
            ]
        )
    if not SCREEN_TOKEN_PATTERN.match(token):
        # Never echo the token: its length and the rule are enough to fix it.
        raise ConfigError(
            [
                f"{source}: {key}: {screen.token_file} holds {len(token)} characters; expected "
                "16 to 256 characters of A-Z a-z 0-9 . _ ~ - on one line (the token goes into "
                f"the page's URL as it is; openssl rand -hex 16 > {screen.token_file})"
            ]
        )
    screen._token = token


class PadSection(Section):
    port: str = Field(description="Serial port or pyserial URL (loop://, socket://, spy://)")
    baud: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = Field(
        9600, description="Baud rate, 8N1"
    )
    address: int = Field(ge=1, le=247, description="HallPad bus address (RS-485), 1-247")
    window: str = Field(pattern=WINDOW_PATTERN, description="Window label, e.g. 'A03'")


class WindowsSection(Section):
    """Window pads policy (agent/windows/state.py); only used when there are [[pad]] tables."""

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
        description="Label of reason bit i (u16 bitmask, docs/pads.md)",
    )
    invite_listen: str = Field(
        "127.0.0.1:8091",
        description="host:port of the invitation endpoint (POST /invite with the case number, "
        "docs/pads.md); it has no access control: keep it on loopback unless a firewall "
        "admits only the case system; '' = off",
    )

    @field_validator("invite_listen")
    @classmethod
    def _invite_host_port(cls, value: str) -> str:
        return check_listen(value, "127.0.0.1:8091")

    @field_validator("reason_labels")
    @classmethod
    def _labels(cls, value: list[str]) -> list[str]:
        for i, label in enumerate(value):
            if not label.strip():
                raise ValueError(f"expected a non-empty label for reason bit {i}, got {label!r}")
        return value


class AgentConfig(Section):
    device: DeviceSection
    mqtt: MqttSection = Field(default_factory=MqttSection)
    sync: SyncSection = Field(default_factory=SyncSection)
    attendance: AttendanceSection | None = None
    pad: list[PadSection] = Field(default_factory=list)
    windows: WindowsSection = Field(default_factory=WindowsSection)
    screen: ScreenSection = Field(default_factory=ScreenSection)

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


def load_agent_config(path: str | os.PathLike[str]) -> AgentConfig:
    """Parse and validate a device config; raises ConfigError with every problem found."""
    p = Path(path)
    cfg = parse_model(AgentConfig, read_toml(p), str(p))
    check_mqtt_files(cfg.mqtt, str(p))
    read_screen_token(cfg.screen, str(p))
    return cfg


def agent_schema() -> dict[str, Any]:
    schema = AgentConfig.model_json_schema()
    schema["title"] = "hall-agent device config (agent.toml)"
    return schema
