"""Per-camera decision settings: parking occupancy and traffic counting."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ParkingConfig(BaseModel):
    """How a parking camera turns detections into space states (the `parking:` key of a camera)."""

    model_config = ConfigDict(extra="forbid")

    rule: str = Field(
        default="footprint",
        description="Occupancy rule: `footprint[:LIFT]` (one vehicle per space by footprint overlap), "
        "`bottom`, `point[:LIFT]` or `overlap[:T]`/`overlap-box[:T]`; see zones/occupancy.py.",
    )
    confidence: float = Field(
        default=0.1,
        gt=0.0,
        lt=1.0,
        description="Detection cut of the parking camera's own tiled pass (the rule's assignment and size "
        "checks reject most stray boxes, so it sits below the model's general cut).",
    )
    tiles: list[float] = Field(
        default_factory=lambda: [64.0, 80.0],
        description="Tiling passes, each a bay size in model-input pixels (the frame is cut so a median bay "
        "has that size); [] = one whole-frame pass. See zones/tiling.py.",
    )
    exposure_target: float | None = Field(
        default=110.0,
        gt=0,
        le=255,
        description="Tiles darker than this median grey level are brightened to it before detection (dawn, "
        "dusk); None: never.",
    )
    motorcycles_per_car: float = Field(
        default=4.0,
        ge=1.0,
        description="Motorcycles (or bicycles) that fit in one car place, for area capacity; zone property "
        "`motorcycles_per_car` overrides.",
    )
    temporal: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="Temporal logic (inertia, hysteresis, occlusion hold): `auto` = on for streams and video "
        "files, off for image folders, whose frames are independent snapshots; `off` = every analysed "
        "frame's verdict is published as is (dwell and overstay still run).",
    )
    enter_frames: int = Field(default=2, ge=1, description="Occupied observations in a row to fill a space.")
    enter_s: float = Field(default=0.0, ge=0, description="...and at least these seconds since the first.")
    exit_frames: int = Field(default=2, ge=1, description="Free observations in a row to free a space.")
    exit_s: float = Field(default=0.0, ge=0, description="...and at least these seconds since the first.")
    occlusion_motion: float = Field(
        default=0.2,
        gt=0.0,
        le=1.0,
        description="Share of a space's pixels changed since the previous frame above which the space is "
        "occluded (a passing car or pedestrian): its state is held, not re-judged.",
    )
    occlusion_max_s: float = Field(
        default=600.0, ge=0, description="Longest hold; after it the frame's own evidence is used again."
    )
    max_dwell_s: float | None = Field(
        default=None,
        gt=0,
        description="Dwell limit of every space (overstay event once per stay); zone property "
        "`max_dwell_s` overrides; None: no limit.",
    )
    motion_gate: bool = Field(
        default=True, description="Skip detection while the zones' part of the frame has not changed."
    )
    motion_threshold: float = Field(
        default=0.25,
        gt=0.0,
        le=1.0,
        description="Motion gate: share of one bay's pixels (summed over the zones) that must change.",
    )
    max_skip_s: float = Field(
        default=300.0, ge=0, description="Motion gate: detect at least this often even in a still scene."
    )
    state_dir: Path | None = Field(
        default=None,
        description="Where space states are kept across restarts (<dir>/<site>/<camera>.json); default "
        "$CITYEYE_STATE_DIR, else ~/.local/state/cityeye.",
    )
    restore_max_age_s: float = Field(
        default=86400.0, ge=0, description="Saved states older than this are not restored at start-up."
    )

    @model_validator(mode="after")
    def _parking_rule(self) -> ParkingConfig:
        from cityeye.zones.occupancy import OccupancyRule  # heavy imports only when a camera has one

        OccupancyRule.parse(self.rule)  # ValueError names the rule and the accepted forms
        if any(not 8 <= t <= 1024 for t in self.tiles):
            raise ValueError(f"tiles {self.tiles}: each is a bay size in model pixels, within 8..1024")
        return self


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
        default=15.0,
        ge=0,
        description="Seconds between provisional publications of the running bin "
        "(each replaces the last at the centre; 0 = publish a bin only once it has ended).",
    )
    min_hits: int = Field(default=3, ge=1, description="Detections a track needs before it is counted.")
    min_displacement_px: float = Field(
        default=4.0,
        ge=0,
        description="Pixels beyond the line the anchor must reach to confirm a crossing.",
    )
    min_displacement_frac: float = Field(
        default=0.1, ge=0, description="Same, as a fraction of the box height (the larger of the two wins)."
    )
    cooldown_s: float = Field(
        default=2.0,
        ge=0,
        description="Seconds in which a re-crossing or a new id at the same place is "
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
        default=0.3,
        ge=0,
        le=2,
        description="C-BIoU box buffer for association (0 = plain ByteTrack IoU); "
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
