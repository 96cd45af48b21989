"""Edge worker settings (the `edge:` section of a site configuration)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class EdgeConfig(BaseModel):
    """How the worker shares its detector between cameras and where it exposes its metrics."""

    model_config = ConfigDict(extra="forbid")

    metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Serve Prometheus metrics (per-camera frames, drops, reconnects, decode and inference "
        "time, stream state; process CPU) on this port at /metrics; null = off, 0 = any free port (logged).",
    )
    metrics_host: str = Field(
        default="127.0.0.1", description="Address the metrics endpoint listens on (0.0.0.0 for all)."
    )
    batch_size: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="Most frames (of different cameras) given to the detector in one call; default: the "
        "model's batch (model.batch).",
    )


class SnapshotConfig(BaseModel):
    """A camera's latest frame for the operator dashboard (a camera's `snapshot:` key)."""

    model_config = ConfigDict(extra="forbid")

    every_s: float = Field(
        default=60.0,
        gt=0,
        description="Seconds (frame time) between snapshots; the first frame is always sent.",
    )
    width: int = Field(
        default=640,
        ge=64,
        le=3840,
        description="Width of the JPEG in pixels (never upscaled); height follows.",
    )
    quality: int = Field(default=70, ge=10, le=100, description="JPEG quality (OpenCV's 0-100 scale).")
