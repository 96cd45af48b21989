"""Per-camera decision settings: parking occupancy and traffic counting."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ParkingConfig(BaseModel):
    """How a parking camera turns detections into space states (the `parking:` key of a camera)."""

    model_config = ConfigDict(extra="forbid")

    rule: str = Field(
        default="point:0.3",
        description="Occupancy rule: `bottom`, `point[:LIFT]` (a point LIFT of the box height above its "
        "bottom must lie in the space) or `overlap[:T]`/`overlap-box[:T]`; see zones/occupancy.py.",
    )


class TrafficConfig(BaseModel):
    """How a traffic camera counts line crossings (the `traffic:` key of a camera).

    The defaults are the ones measured in benchmarks/RESULTS.md ("Traffic counting"); the
    tracker thresholds assume the detector runs with `model.confidence` at or below
    `track_low_thresh` (0.1), else ByteTrack's second, low-score stage has nothing to use.
    """

    model_config = ConfigDict(extra="forbid")

    anchor: Literal["center", "bottom"] = Field(
        default="center",
        description="Point of a vehicle's box that crosses lines: the box centre, or the bottom centre.",
    )
    bin_s: int = Field(default=60, gt=0, le=3600, description="Length of a count bin in seconds.")
    publish_delay_s: float = Field(
        default=2.0, ge=0, description="Seconds after a bin ends before it is published (late crossings)."
    )
    provisional_s: float = Field(
        default=15.0, ge=0, description="Seconds between provisional publications of the running bin "
        "(each replaces the last at the centre; 0 = publish a bin only once it has ended).",
    )
    min_hits: int = Field(default=3, ge=1, description="Detections a track needs before it is counted.")
    min_displacement_px: float = Field(
        default=4.0, ge=0, description="Pixels beyond the line the anchor must reach to confirm a crossing.",
    )
    min_displacement_frac: float = Field(
        default=0.1, ge=0, description="Same, as a fraction of the box height (the larger of the two wins)."
    )
    cooldown_s: float = Field(
        default=2.0, ge=0, description="Seconds in which a re-crossing or a new id at the same place is "
        "the same vehicle (id-switch guard).",
    )
    track_high_thresh: float = Field(
        default=0.25, ge=0, le=1, description="ByteTrack: score of detections in the first association."
    )
    track_low_thresh: float = Field(
        default=0.1, ge=0, le=1, description="ByteTrack: lowest score used in the second association."
    )
    new_track_thresh: float = Field(
        default=0.25, ge=0, le=1, description="ByteTrack: score a detection needs to start a track."
    )
    match_thresh: float = Field(
        default=0.8, gt=0, le=1, description="ByteTrack: largest cost (1 - IoU x score) of a first match."
    )
    lost_buffer_s: float = Field(
        default=1.0, ge=0, description="Seconds a track survives without detections (occlusions)."
    )
    match_buffer: float = Field(
        default=0.3, ge=0, le=2, description="C-BIoU box buffer for association (0 = plain ByteTrack IoU); "
        "keeps fast two-wheelers tracked when frames are skipped.",
    )
    class_map: dict[str, str] = Field(
        default_factory=lambda: {"motorbike": "motorcycle"},
        description="Model label -> counted class (car, motorcycle, bus, truck, bicycle), for models with "
        "other label names and for views the model labels wrongly (e.g. cars seen from straight above).",
    )
    rider_overlap: float = Field(
        default=0.3, gt=0, le=1, description="Share of a person box over a two-wheeler that makes it a rider."
    )
    duplicate_iou: float = Field(
        default=0.7, gt=0, le=1, description="IoU above which two vehicle boxes of any class are one vehicle."
    )

    @model_validator(mode="after")
    def _thresholds(self) -> TrafficConfig:
        counted = ("car", "motorcycle", "bus", "truck", "bicycle")
        wrong = {k: v for k, v in self.class_map.items() if v not in counted}
        if wrong:
            raise ValueError(f"class_map targets must be one of {', '.join(counted)}; got {wrong}")
        if self.track_low_thresh > self.track_high_thresh:
            raise ValueError(
                f"track_low_thresh ({self.track_low_thresh}) must not exceed track_high_thresh "
                f"({self.track_high_thresh})"
            )
        return self
