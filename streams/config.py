"""How a camera's frames are read and sampled (the stream fields of a camera in the site configuration).

Defaults suit a real IP camera on a city network: RTSP over TCP (UDP loses packets through NAT and
busy switches), stalls noticed after 10 s, reconnects backing off exponentially to one a minute so
a dead camera costs nothing, and parking cameras decoding keyframes only.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Sampling = Literal["auto", "keyframe", "fps"]
ENV_CAMERA_PASSWORD_PREFIX = "CITYEYE_CAMERA_PASSWORD_"


def default_password_env(camera_id: str) -> str:
    """``CITYEYE_CAMERA_PASSWORD_<ID>``: the camera id upper-cased, other characters as ``_``."""
    return ENV_CAMERA_PASSWORD_PREFIX + re.sub(r"[^A-Z0-9]", "_", camera_id.upper())


class StreamConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = Field(
        min_length=1,
        description="Video file, folder of .jpg/.png images, or rtsp(s):// / http(s):// (MJPEG, HLS) / "
        "rtmp:// URL. Put no password in it: see `password_env`.",
    )
    interval_s: float = Field(
        default=10.0, ge=0.0, description="Seconds between analysed frames (0 = every frame)."
    )
    loop: bool = Field(default=False, description="Replay a file or image folder forever (demos).")
    realtime: bool = Field(
        default=True,
        description="Play files at their own frame rate, like a camera; false decodes them as fast as "
        "possible (offline analysis). Network streams are always read as they arrive.",
    )
    sampling: Sampling = Field(
        default="auto",
        description="`keyframe`: decode only the first keyframe after each interval (cheapest; the "
        "analysed frame is at most one keyframe period late); `fps`: decode every frame and pass at most "
        "one per `interval_s` (needed for tracking); `auto`: keyframe for parking, fps for traffic cameras.",
    )
    keyframe_wait_s: float | None = Field(
        default=None,
        gt=0,
        description="In keyframe sampling, how long past an interval to wait for a keyframe before "
        "decoding every frame from the next keyframe on (cameras with very long keyframe periods); "
        "default: `interval_s`, at least 2 s (never with `interval_s` 0, which asks for every keyframe).",
    )
    transport: Literal["tcp", "udp"] = Field(
        default="tcp", description="RTSP transport: tcp (interleaved, survives NAT and loss) or udp."
    )
    format: str | None = Field(
        default=None,
        description="FFmpeg demuxer name when FFmpeg cannot guess it (e.g. `mpjpeg` for some MJPEG "
        "cameras); default: guessed from the URL and the data.",
    )
    ffmpeg_options: dict[str, str] = Field(
        default_factory=dict,
        description="Extra FFmpeg demuxer/protocol options, e.g. {analyzeduration: '1000000'} to connect "
        "faster; they override cityeye's own.",
    )
    username: str | None = Field(
        default=None, description="Camera user name, added to the URL (the URL may carry it instead)."
    )
    password_env: str | None = Field(
        default=None,
        description="Environment variable holding the camera password; default "
        "CITYEYE_CAMERA_PASSWORD_<ID> (id upper-cased, other characters as _) when that is set.",
    )
    password_file: Path | None = Field(
        default=None,
        description="File whose content is the camera password (Docker/Kubernetes secrets).",
    )
    open_timeout_s: float = Field(
        default=10.0, gt=0, description="Give up opening a stream (connect, handshake, probe) after this."
    )
    read_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="A stream that delivers no data for this long is `stalled` and reopened.",
    )
    backoff_initial_s: float = Field(
        default=1.0, gt=0, description="First delay before reopening a failed stream; doubles per failure."
    )
    backoff_max_s: float = Field(default=60.0, gt=0, description="Longest delay between reopening attempts.")
    backoff_jitter: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="Random fraction taken off each delay, so cameras that failed together (a switch "
        "reboot) do not all reconnect in the same instant.",
    )
    queue_size: int = Field(
        default=2,
        ge=1,
        le=1000,
        description="Frames waiting for the detector per camera; when full the oldest is dropped "
        "(and counted): analysing a stale frame helps no one.",
    )
    decode_threads: int = Field(
        default=1,
        ge=0,
        le=64,
        description="FFmpeg decoder threads per camera (0 = FFmpeg chooses). One is right for many "
        "cameras per box; more only for one high-resolution traffic camera.",
    )

    @model_validator(mode="after")
    def _check(self) -> StreamConfig:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError(
                f"backoff_max_s ({self.backoff_max_s}) must be >= backoff_initial_s "
                f"({self.backoff_initial_s})"
            )
        if self.password_env is not None and self.password_file is not None:
            raise ValueError("give the camera password either by password_env or by password_file, not both")
        return self

    def password(self, camera_id: str) -> str | None:
        """The camera password from its secret, read when needed so it never sits in the config."""
        if self.password_file is not None:
            try:
                return self.password_file.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise ValueError(
                    f"camera {camera_id}: cannot read password_file {self.password_file}: {exc.strerror}"
                ) from None
        name = self.password_env or default_password_env(camera_id)
        value = os.environ.get(name)
        if value is None and self.password_env is not None:
            raise ValueError(
                f"camera {camera_id}: environment variable {name} (password_env) is not set; export it "
                "with the camera password"
            )
        return value
