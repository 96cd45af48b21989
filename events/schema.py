"""Versioned event payloads.

The edge writes these and the API reads them, so a change here is a protocol change: bump
``SCHEMA_VERSION`` on any incompatible edit. Unknown fields are rejected (``extra="forbid"``)
so a typo on the edge becomes a counted rejection at the centre instead of silently lost data.
"""

from __future__ import annotations

import base64
import binascii
import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

SCHEMA_VERSION = 1

Identifier = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]


def utcnow() -> datetime:
    return datetime.now(UTC)


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = Field(default=1, description="Schema version of this payload.")
    site: Identifier = Field(description="Site (city district, operator) the camera belongs to.")
    camera: Identifier = Field(description="Camera id, unique within the site.")
    event_id: str = Field(
        min_length=1,
        max_length=200,
        description="Stable id (camera + sequence) so the centre can drop duplicates after a replay.",
    )
    observed_at: AwareDatetime = Field(description="When the observation was made (frame time), UTC.")


class CameraStatus(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    CONNECTING = "connecting"
    STREAMING = "streaming"
    STALLED = "stalled"
    RECONNECTING = "reconnecting"
    ERROR = "error"


class StatusEvent(_Event):
    """Retained per camera; the broker's Last Will publishes the ``offline`` variant."""

    kind: Literal["status"] = "status"
    status: CameraStatus
    detail: str | None = Field(default=None, max_length=500, description="Human-readable reason.")


class _ZoneBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=128, description="Zone id, exactly as in the zones file.")
    name: str | None = Field(default=None, description="Display name.")
    lot: str | None = Field(default=None, description="Lot the zone belongs to, if any.")
    lon: float | None = Field(default=None, ge=-180, le=180, description="Zone centroid longitude (WGS84).")
    lat: float | None = Field(default=None, ge=-90, le=90, description="Zone centroid latitude (WGS84).")
    vehicle: Literal["car", "motorcycle"] | None = Field(
        default=None, description="Vehicle type the zone is for (zone property `vehicle`); None: any."
    )


class SpaceState(_ZoneBase):
    kind: Literal["space"] = "space"
    occupied: bool
    score: float = Field(ge=0.0, le=1.0, description="Evidence for occupancy, 0..1.")
    since: AwareDatetime | None = Field(
        default=None, description="When the space took its current state (dwell = observed_at - since)."
    )

    @property
    def total(self) -> int:
        return 1

    @property
    def free(self) -> int:
        return 0 if self.occupied else 1


class AreaState(_ZoneBase):
    kind: Literal["area"] = "area"
    vehicles: int = Field(ge=0)
    capacity: int = Field(ge=0)
    cars: int | None = Field(default=None, ge=0, description="Cars, buses and trucks among `vehicles`.")
    motorcycles: int | None = Field(default=None, ge=0, description="Motorcycles and bicycles among them.")
    used: float | None = Field(
        default=None,
        ge=0,
        description="Places in use in the capacity's unit (car places; motorcycle "
        "places where `vehicle` is motorcycle), a two-wheeler counting 1/k of a car place; None: `vehicles`.",
    )

    @property
    def total(self) -> int:
        return self.capacity

    @property
    def free(self) -> int:
        used = self.vehicles if self.used is None else math.ceil(self.used - 1e-9)
        return max(self.capacity - used, 0)


ZoneState = Annotated[SpaceState | AreaState, Field(discriminator="kind")]


class OccupancyEvent(_Event):
    """Retained snapshot of every parking zone one camera watches."""

    kind: Literal["occupancy"] = "occupancy"
    zones: list[ZoneState]

    @property
    def free(self) -> int:
        return sum(z.free for z in self.zones)

    @property
    def total(self) -> int:
        return sum(z.total for z in self.zones)


class CameraHealth(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    frames_received: int = Field(ge=0)
    frames_analysed: int = Field(ge=0)
    frames_dropped: int = Field(ge=0)
    reconnects: int = Field(ge=0)
    fps: float = Field(ge=0)
    last_frame_age_s: float | None = Field(default=None, ge=0)
    inference_ms: float | None = Field(default=None, ge=0)
    error: str | None = None
    frames_decoded: int | None = Field(default=None, ge=0, description="Frames the decoder produced.")
    decode_ms: float | None = Field(
        default=None, ge=0, description="Mean decoder time per decoded frame (incl. BGR conversion), ms."
    )
    state: str | None = Field(default=None, max_length=32, description="Stream state (streaming, stalled).")
    spool_queued: int | None = Field(default=None, ge=0, description="Events waiting on the edge for PUBACK.")
    spool_oldest_age_s: float | None = Field(default=None, ge=0, description="Age of the oldest one, s.")
    spool_dropped: int | None = Field(
        default=None, ge=0, description="Events the edge spool dropped at its size/age bound (since created)."
    )
    spool_rejected: int | None = Field(
        default=None, ge=0, description="Events the broker refused (e.g. ACL); kept on the edge, not re-sent."
    )
    snapshots_skipped: int | None = Field(
        default=None,
        ge=0,
        description="Snapshots not sent because the broker was unreachable (they are never queued).",
    )


class HealthEvent(_Event):
    kind: Literal["health"] = "health"
    health: CameraHealth


VehicleClass = Literal["car", "motorcycle", "bus", "truck", "bicycle"]


class LineCounts(BaseModel):
    """Crossings of one counting line in one time bin, per direction name and vehicle class."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    line_id: str = Field(min_length=1, max_length=128, description="Line zone id, as in the zones file.")
    counts: dict[str, dict[VehicleClass, int]] = Field(
        description="direction name -> vehicle class -> crossings in the bin (directions from the zone's "
        "`properties.directions`, else `left`/`right`)."
    )
    location: list[tuple[float, float]] | None = Field(
        default=None,
        min_length=2,
        max_length=64,
        description="The counting line as WGS84 [lon, lat] vertices, when the camera is calibrated (maps, "
        "NGSI-LD TrafficFlowObserved location).",
    )

    @field_validator("location")
    @classmethod
    def _wgs84(cls, v: list[tuple[float, float]] | None) -> list[tuple[float, float]] | None:
        for lon, lat in v or []:
            if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
                raise ValueError(f"location vertex ({lon}, {lat}) is not a WGS84 [lon, lat] in degrees")
        return v


class TrafficEvent(_Event):
    """Per-minute line counts of one camera, published on ``.../traffic``.

    Idempotent per (camera, line, bin): the event id is derived from the camera and
    ``bin_start``, so a bin re-sent after a restart replaces, never adds to, what the centre has.
    ``observed_at`` is the end of the bin.
    """

    kind: Literal["traffic"] = "traffic"
    bin_start: AwareDatetime = Field(description="Start of the time bin (UTC, aligned to bin_s).")
    bin_s: int = Field(default=60, gt=0, le=3600, description="Length of the time bin in seconds.")
    lines: list[LineCounts]


class OverstayEvent(_Event):
    """A space occupied longer than its limit, published once per stay on ``.../overstay``."""

    kind: Literal["overstay"] = "overstay"
    zone_id: str = Field(min_length=1, max_length=128, description="Space id, as in the zones file.")
    lot: str | None = Field(default=None, description="Lot of the space, if any.")
    since: AwareDatetime = Field(description="When the vehicle arrived (the space became occupied).")
    dwell_s: float = Field(ge=0, description="Seconds occupied at observed_at.")
    limit_s: float = Field(gt=0, description="The space's dwell limit in seconds.")


MAX_SNAPSHOT_BYTES = 1_000_000
"""Largest JPEG a snapshot may carry (a 1280-wide frame at quality 80 is ~0.2 MB)."""


class SnapshotEvent(_Event):
    """The camera's latest frame as a small JPEG, retained on ``.../snapshot`` (operators' view).

    Only the newest matters, so the edge sends it outside the store-and-forward spool (QoS 0,
    retained) and the centre keeps one per camera.
    """

    kind: Literal["snapshot"] = "snapshot"
    width: int = Field(gt=0, le=8192, description="JPEG width in pixels.")
    height: int = Field(gt=0, le=8192, description="JPEG height in pixels.")
    jpeg: str = Field(
        max_length=MAX_SNAPSHOT_BYTES * 4 // 3 + 4,
        description=f"The JPEG file in standard, padded base64 (at most {MAX_SNAPSHOT_BYTES} bytes decoded).",
    )

    @field_validator("jpeg")
    @classmethod
    def _is_a_jpeg(cls, v: str) -> str:
        try:
            data = base64.b64decode(v, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"jpeg is not valid base64 ({exc})") from None
        if data[:3] != b"\xff\xd8\xff":
            raise ValueError("jpeg does not hold a JPEG file (it must start with the bytes FF D8 FF)")
        return v

    @property
    def jpeg_bytes(self) -> bytes:
        return base64.b64decode(self.jpeg)

    @classmethod
    def of(cls, jpeg: bytes, **fields: object) -> SnapshotEvent:
        return cls.model_validate({**fields, "jpeg": base64.b64encode(jpeg).decode("ascii")})


AnyEvent = StatusEvent | OccupancyEvent | HealthEvent | TrafficEvent | OverstayEvent | SnapshotEvent
"""Every payload an edge worker publishes."""
