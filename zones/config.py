"""Per-camera decision settings: parking occupancy and traffic counting."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ParkingConfig(BaseModel):
    """How a parking camera turns detections into space states (the `parking:` key of a camera)."""

    model_config = ConfigDict(extra="forbid")

    rule: str = Field(
        default="point:0.3",
        description="Occupancy rule: `bottom`, `point[:LIFT]` (a point LIFT of the box height above its "
        "bottom must lie in the space) or `overlap[:T]`/`overlap-box[:T]`; see zones/occupancy.py.",
    )


class TrafficConfig(BaseModel):
    """How a traffic camera counts line crossings (the `traffic:` key of a camera)."""

    model_config = ConfigDict(extra="forbid")
