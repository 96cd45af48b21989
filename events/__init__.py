"""The one contract shared by the edge and the centre: versioned event payloads and MQTT topics."""

from cityeye.events.schema import (
    SCHEMA_VERSION,
    AreaState,
    CameraHealth,
    CameraStatus,
    HealthEvent,
    OccupancyEvent,
    SpaceState,
    StatusEvent,
    ZoneState,
)
from cityeye.events.topics import Topic, TopicKind, parse_topic, topic_for

__all__ = [
    "SCHEMA_VERSION",
    "AreaState",
    "CameraHealth",
    "CameraStatus",
    "HealthEvent",
    "OccupancyEvent",
    "SpaceState",
    "StatusEvent",
    "Topic",
    "TopicKind",
    "ZoneState",
    "parse_topic",
    "topic_for",
]
