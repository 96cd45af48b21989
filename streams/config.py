"""How a camera's frames are read and sampled (the stream fields of a camera in the site configuration)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class StreamConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = Field(
        min_length=1, description="Video file, folder of .jpg/.png images, or rtsp:// / http(s):// URL."
    )
    interval_s: float = Field(
        default=10.0, ge=0.0, description="Seconds between analysed frames (0 = every frame)."
    )
    loop: bool = Field(default=False, description="Replay a file or image folder forever (demos).")
