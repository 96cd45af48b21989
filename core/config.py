"""One YAML file describes a site: broker, model, cameras, API.

Validated with pydantic at start-up; an error names the key path and the YAML line so an
operator can fix the file without reading code. Secrets never live in the file: the broker
password and API keys come from the environment (names below).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

ENV_MQTT_PASSWORD = "CITYEYE_MQTT_PASSWORD"
ENV_MQTT_USERNAME = "CITYEYE_MQTT_USERNAME"
ENV_API_KEYS = "CITYEYE_API_KEYS"

Identifier = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]


class ConfigError(Exception):
    """A site configuration that cannot be used; the message says where and how to fix it."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MqttConfig(_Strict):
    host: str = Field(default="127.0.0.1", description="Broker host name or address.")
    port: int = Field(default=1883, ge=1, le=65535, description="Broker TCP port.")
    keepalive_s: int = Field(
        default=30, ge=5, le=3600, description="MQTT keep-alive; sets Last-Will latency."
    )
    client_id: str | None = Field(default=None, description="Client id; default derived from site and role.")
    protocol: Literal["5", "3.1.1"] = Field(
        default="5", description="MQTT protocol version; 3.1.1 for brokers without MQTT 5 (e.g. amqtt)."
    )
    username: str | None = Field(
        default=None, description=f"Broker user name (or environment variable {ENV_MQTT_USERNAME})."
    )

    @property
    def password(self) -> str | None:
        """Read from the environment only, so it never sits in a config file or a log."""
        return os.environ.get(ENV_MQTT_PASSWORD)

    @property
    def effective_username(self) -> str | None:
        return os.environ.get(ENV_MQTT_USERNAME) or self.username


class ModelConfig(_Strict):
    path: Path | None = Field(
        default=None,
        description="ONNX detector file. Default: $CITYEYE_MODEL, else the shipped yolov8n_dq.onnx.",
    )
    imgsz: int | None = Field(
        default=None, ge=32, le=2048, description="Square input size; default: the model's own input size."
    )
    confidence: float = Field(default=0.25, gt=0.0, lt=1.0, description="Minimum detection confidence.")
    iou: float = Field(default=0.7, gt=0.0, le=1.0, description="IoU threshold of class-aware NMS.")
    threads: int = Field(default=0, ge=0, description="onnxruntime intra-op threads (0 = library default).")


class CameraConfig(_Strict):
    id: Identifier = Field(description="Camera id, unique within the site; part of every MQTT topic.")
    source: str = Field(
        min_length=1, description="Video file, folder of .jpg/.png images, or rtsp:// / http(s):// URL."
    )
    mode: Literal["parking", "traffic"] = Field(default="parking", description="What the camera watches.")
    interval_s: float = Field(
        default=10.0, ge=0.0, description="Seconds between analysed frames (0 = every frame)."
    )
    loop: bool = Field(default=False, description="Replay a file or image folder forever (demos).")
    zones: Path | None = Field(
        default=None, description="GeoJSON FeatureCollection of zones for this camera."
    )
    calibration: Path | None = Field(
        default=None, description="JSON with >= 4 pixel <-> lon/lat point pairs (fitted as a homography)."
    )
    lot: str | None = Field(default=None, description="Default lot id for zones that name none.")


class ApiConfig(_Strict):
    host: str = Field(default="127.0.0.1", description="Listen address of the API.")
    port: int = Field(default=8080, ge=1, le=65535, description="Listen port of the API.")
    database_url: str = Field(
        default="sqlite:///cityeye.db", description="SQLAlchemy URL: SQLite by default, PostgreSQL at scale."
    )
    mqtt_topic_filter: str = Field(
        default="cityeye/v1/+/+/+", description="Topic filter the API consumes (e.g. one site only)."
    )
    share_group: str | None = Field(
        default=None,
        description="Consume through the MQTT 5 shared subscription $share/<group>/... so that several "
        "API replicas sharing one database split the load.",
    )
    stale_after_s: float = Field(
        default=120.0, gt=0, description="A zone whose last update is older than this is reported stale."
    )


class SiteConfig(_Strict):
    site: Identifier = Field(default="demo", description="Site id; the second level of every MQTT topic.")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="MQTT broker connection.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Vehicle detector.")
    cameras: list[CameraConfig] = Field(default_factory=list, description="Cameras this edge worker runs.")
    api: ApiConfig = Field(default_factory=ApiConfig, description="Central API.")
    health_interval_s: float = Field(default=10.0, gt=0, description="Seconds between health messages.")

    @model_validator(mode="after")
    def _unique_cameras(self) -> SiteConfig:
        seen: set[str] = set()
        for cam in self.cameras:
            if cam.id in seen:
                raise ValueError(f"camera id {cam.id!r} is used twice; camera ids must be unique")
            seen.add(cam.id)
        return self


def _line_index(node: yaml.Node, path: tuple[str | int, ...], out: dict[tuple[str | int, ...], int]) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            k = key.value
            out[(*path, k)] = key.start_mark.line + 1
            _line_index(value, (*path, k), out)
            out[(*path, k)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_index(item, (*path, i), out)


def _format_errors(err: ValidationError, lines: dict[tuple[str | int, ...], int], source: str) -> str:
    msgs = []
    for e in err.errors():
        loc = tuple(e["loc"])
        key = ".".join(str(p) for p in loc) or "<root>"
        line = None
        for cut in range(len(loc), -1, -1):
            if loc[:cut] in lines:
                line = lines[loc[:cut]]
                break
        where = f"{source}:{line}" if line else source
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check spelling; see README 'Configuration')"
        msgs.append(f"{where}: {key}: {msg}")
    return "invalid configuration:\n  " + "\n  ".join(msgs)


def parse_config(text: str, source: str = "<config>", base_dir: Path | None = None) -> SiteConfig:
    try:
        node = yaml.compose(text)
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: the top level must be a mapping of keys (site, mqtt, model, cameras, api)"
        )
    lines: dict[tuple[str | int, ...], int] = {}
    if node is not None:
        _line_index(node, (), lines)
    try:
        cfg = SiteConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, lines, source)) from None
    if base_dir is not None:
        cfg = _resolve_paths(cfg, base_dir)
    return cfg


def _resolve(p: Path | None, base: Path) -> Path | None:
    if p is None:
        return None
    p = p.expanduser()
    return p if p.is_absolute() else (base / p)


def _resolve_paths(cfg: SiteConfig, base: Path) -> SiteConfig:
    """Relative paths in a config file are relative to the file, not to the working directory."""
    cams = []
    for c in cfg.cameras:
        src = c.source
        if "://" not in src and not Path(src).expanduser().is_absolute():
            src = str(base / src)
        cams.append(
            c.model_copy(
                update={
                    "source": src,
                    "zones": _resolve(c.zones, base),
                    "calibration": _resolve(c.calibration, base),
                }
            )
        )
    model = cfg.model.model_copy(update={"path": _resolve(cfg.model.path, base)})
    return cfg.model_copy(update={"cameras": cams, "model": model})


def load_config(path: Path | str) -> SiteConfig:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"configuration file {p} not found (give an existing YAML file with --config)")
    return parse_config(p.read_text(encoding="utf-8"), source=str(p), base_dir=p.resolve().parent)
