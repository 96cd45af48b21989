"""The one contract shared by the edge and the centre: versioned event payloads and MQTT topics."""

from cityeye.events.schema import (
    SCHEMA_VERSION,
    AreaState,
    CameraHealth,
    CameraStatus,
    HealthEvent,
    LineCounts,
    OccupancyEvent,
    SnapshotEvent,
    SpaceState,
    StatusEvent,
    TrafficEvent,
    ZoneState,
)
from cityeye.events.topics import Topic, TopicKind, parse_topic, topic_for

__all__ = [
    "SCHEMA_VERSION",
    "AreaState",
    "CameraHealth",
    "CameraStatus",
    "HealthEvent",
    "LineCounts",
    "OccupancyEvent",
    "SnapshotEvent",
    "SpaceState",
    "StatusEvent",
    "Topic",
    "TopicKind",
    "TrafficEvent",
    "ZoneState",
    "parse_topic",
    "topic_for",
]
