"""The MQTT topic tree, in one place (documented in the README).

``cityeye/v1/<site>/<camera>/<kind>`` where kind is ``status`` (retained, Last Will),
``occupancy`` (retained snapshot), ``health``, ``traffic`` (line counts), ``overstay`` (a space
occupied past its dwell limit, once per stay) and ``snapshot`` (retained: the camera's latest frame
as a JPEG, when the camera is configured to send one).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

ROOT = "cityeye/v1"


class TopicKind(StrEnum):
    STATUS = "status"
    OCCUPANCY = "occupancy"
    HEALTH = "health"
    TRAFFIC = "traffic"
    OVERSTAY = "overstay"
    SNAPSHOT = "snapshot"


RETAINED = frozenset({TopicKind.STATUS, TopicKind.OCCUPANCY, TopicKind.SNAPSHOT})


@dataclass(frozen=True, slots=True)
class Topic:
    site: str
    camera: str
    kind: TopicKind

    def __str__(self) -> str:
        return f"{ROOT}/{self.site}/{self.camera}/{self.kind.value}"

    @property
    def retained(self) -> bool:
        return self.kind in RETAINED


def topic_for(site: str, camera: str, kind: TopicKind) -> str:
    for part in (site, camera):
        if not part or any(c in part for c in "/+#"):
            raise ValueError(f"site/camera id {part!r} must be non-empty and contain no '/', '+' or '#'")
    return str(Topic(site, camera, kind))


def subscription(site: str = "+") -> str:
    """Wildcard filter for every camera of a site (``+`` = all sites)."""
    return f"{ROOT}/{site}/+/+"


def parse_topic(topic: str) -> Topic:
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:2]) != ROOT:
        raise ValueError(f"topic {topic!r} is not of the form {ROOT}/<site>/<camera>/<kind>")
    try:
        kind = TopicKind(parts[4])
    except ValueError:
        raise ValueError(f"topic {topic!r} has unknown kind {parts[4]!r}") from None
    return Topic(parts[2], parts[3], kind)
