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
