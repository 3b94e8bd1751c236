"""MQTT topics and the payload version (docs/topics.md).

Topics are built and parsed only here, and only from ids (never display names), so a device,
the collector and the broker's ACL always agree on where a message goes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from contract.ids import ID_PATTERN, is_id

PAYLOAD_VERSION = 1  # the "v" of every MQTT payload (docs/topics.md)

TopicKind = Literal["events", "ack", "status"]


def device_topic(prefix: str, site: str, device: str, kind: TopicKind) -> str:
    """``{prefix}/{site}/{device}/{kind}``; every part must be an id (never a display name)."""
    for name, value in (("prefix", prefix), ("site", site), ("device", device)):
        if not is_id(value):
            raise ValueError(f"{name}: expected an id matching {ID_PATTERN}, got {value!r}")
    return f"{prefix}/{site}/{device}/{kind}"


def _site_topic(prefix: str, site: str, kind: str) -> str:
    """``{prefix}/{site}/{kind}``: what the centre publishes retained for a whole site."""
    for name, value in (("prefix", prefix), ("site", site)):
        if not is_id(value):
            raise ValueError(f"{name}: expected an id matching {ID_PATTERN}, got {value!r}")
    return f"{prefix}/{site}/{kind}"


def roster_topic(prefix: str, site: str) -> str:
    return _site_topic(prefix, site, "roster")


def schedule_topic(prefix: str, site: str) -> str:
    """The hall's hours and calendar (docs/topics.md, contract/published_schedule.py)."""
    return _site_topic(prefix, site, "schedule")


def summary_topic(prefix: str, site: str) -> str:
    """Each staff member's month so far (docs/topics.md, contract/published_summary.py)."""
    return _site_topic(prefix, site, "summary")


def parse_device_topic(topic: str, prefix: str, kind: TopicKind) -> tuple[str, str] | None:
    """(site, device) of ``{prefix}/{site}/{device}/{kind}``, or None for any other topic."""
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != prefix or parts[3] != kind:
        return None
    site, device = parts[1], parts[2]
    if not is_id(site) or not is_id(device):
        return None
    return site, device


def parse_roster_topic(topic: str, prefix: str) -> str | None:
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != prefix or parts[2] != "roster" or not is_id(parts[1]):
        return None
    return parts[1]


def central_status_topic(prefix: str) -> str:
    """Where collectors announce themselves online (not retained). ``_central`` can never be
    a site id (ids start with a letter or digit), so it collides with no device or roster
    topic; a device resends its in-flight batches when it sees the announcement."""
    return f"{prefix}/_central/status"


def events_filter(prefix: str) -> str:
    return f"{prefix}/+/+/events"


class Ack(BaseModel):
    model_config = ConfigDict(extra="forbid")
    v: Literal[1] = 1
    ids: list[str]
    rejected: list[dict[str, str]] = Field(default_factory=list)
