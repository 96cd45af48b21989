"""One YAML file describes a site: broker, model, cameras, API.

Validated with pydantic at start-up; an error names the key path and the YAML line so an
operator can fix the file without reading code. Secrets never live in the file: the broker
password and API keys come from the environment (names below).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from cityeye.api.config import ApiConfig
from cityeye.edge.config import EdgeConfig, SnapshotConfig
from cityeye.events.config import ENV_MQTT_PASSWORD, ENV_MQTT_USERNAME, MqttConfig
from cityeye.streams.config import StreamConfig
from cityeye.vision.config import ModelConfig
from cityeye.web.config import WebConfig
from cityeye.zones.config import ParkingConfig, TrafficConfig

__all__ = [
    "ENV_API_KEYS",
    "ENV_MQTT_PASSWORD",
    "ENV_MQTT_USERNAME",
    "ApiConfig",
    "CameraConfig",
    "ConfigError",
    "ModelConfig",
    "MqttConfig",
    "ParkingConfig",
    "SiteConfig",
    "StreamConfig",
    "TrafficConfig",
    "load_config",
    "parse_config",
]

ENV_API_KEYS = "CITYEYE_API_KEYS"

Identifier = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]


class ConfigError(Exception):
    """A site configuration that cannot be used; the message says where and how to fix it."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CameraConfig(StreamConfig):
    """One camera: how to read it (StreamConfig), what it watches, and where its zones are."""

    id: Identifier = Field(description="Camera id, unique within the site; part of every MQTT topic.")
    mode: Literal["parking", "traffic"] = Field(default="parking", description="What the camera watches.")
    zones: Path | None = Field(
        default=None, description="GeoJSON FeatureCollection of zones for this camera."
    )
    calibration: Path | None = Field(
        default=None, description="JSON with >= 4 pixel <-> lon/lat point pairs (fitted as a homography)."
    )
    lot: str | None = Field(default=None, description="Default lot id for zones that name none.")
    parking: ParkingConfig = Field(default_factory=ParkingConfig, description="Parking decision settings.")
    traffic: TrafficConfig = Field(default_factory=TrafficConfig, description="Traffic counting settings.")
    snapshot: SnapshotConfig | None = Field(
        default=None,
        description="Send the latest frame as a small JPEG (retained, outside the spool) for the operator "
        "dashboard; null = off.",
    )
    _site_model: ModelConfig | None = PrivateAttr(default=None)

    @property
    def site_model(self) -> ModelConfig | None:
        """The site's `model:` (paths resolved), so a camera's analyser can run its own passes with it."""
        return self._site_model


class SiteConfig(_Strict):
    site: Identifier = Field(default="demo", description="Site id; the second level of every MQTT topic.")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="MQTT broker connection.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Vehicle detector.")
    cameras: list[CameraConfig] = Field(default_factory=list, description="Cameras this edge worker runs.")
    edge: EdgeConfig = Field(default_factory=EdgeConfig, description="Edge worker: detector sharing, metrics")
    api: ApiConfig = Field(default_factory=ApiConfig, description="Central API.")
    web: WebConfig = Field(default_factory=WebConfig, description="Operator and driver web pages.")
    health_interval_s: float = Field(default=10.0, gt=0, description="Seconds between health messages.")

    @model_validator(mode="after")
    def _unique_cameras(self) -> SiteConfig:
        seen: set[str] = set()
        for cam in self.cameras:
            if cam.id in seen:
                raise ValueError(f"camera id {cam.id!r} is used twice; camera ids must be unique")
            seen.add(cam.id)
            cam._site_model = self.model
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
                    "password_file": _resolve(c.password_file, base),
                }
            )
        )
    model = cfg.model.model_copy(update={"path": _resolve(cfg.model.path, base)})
    for cam in cams:
        cam._site_model = model
        cam.parking = cam.parking.model_copy(update={"state_dir": _resolve(cam.parking.state_dir, base)})
    return cfg.model_copy(update={"cameras": cams, "model": model, "mqtt": cfg.mqtt.resolve_paths(base)})


def load_config(path: Path | str) -> SiteConfig:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"configuration file {p} not found (give an existing YAML file with --config)")
    return parse_config(p.read_text(encoding="utf-8"), source=str(p), base_dir=p.resolve().parent)
