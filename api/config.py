"""Central API settings (the `api:` section of a site configuration)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ApiConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

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
