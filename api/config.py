"""Central API settings (the `api:` section of a site configuration)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl


class RetentionConfig(BaseModel):
    """How long each resolution of history is kept: fine data briefly, coarse data for long."""

    model_config = ConfigDict(extra="forbid")

    minute_days: float = Field(
        default=2.0,
        gt=0,
        description="Days of 1-minute zone statistics and traffic counts (and event-id "
        "memory for deduplication: events older than this never reach the history).",
    )
    quarter_days: float = Field(default=35.0, gt=0, description="Days of 15-minute roll-ups.")
    hour_days: float = Field(default=400.0, gt=0, description="Days of 1-hour roll-ups.")
    interval_s: float = Field(
        default=300.0, gt=0, description="Seconds between retention passes (each pass deletes expired rows)."
    )


class PushConfig(BaseModel):
    """Optional push of changed entities to an external system, with retries."""

    model_config = ConfigDict(extra="forbid")

    url: HttpUrl = Field(
        description="Webhook URL, or the base URL of an NGSI-LD context broker (e.g. http://orion:1026)."
    )
    mode: Literal["webhook", "ngsi-ld"] = Field(
        default="webhook",
        description='webhook: POST {"entities": [...]} to the URL; ngsi-ld: POST to '
        "<url>/ngsi-ld/v1/entityOperations/upsert.",
    )
    max_attempts: int = Field(default=5, ge=1, le=100, description="Tries per batch before it is dropped.")
    backoff_s: float = Field(
        default=1.0, gt=0, description="First retry delay; doubles per attempt (max 60 s)."
    )
    timeout_s: float = Field(default=10.0, gt=0, description="HTTP timeout per attempt.")
    batch_interval_s: float = Field(
        default=1.0, gt=0, description="Changes are collected this long and sent as one batch (latest wins)."
    )


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
    offline_after_intervals: float = Field(
        default=3.0,
        gt=0,
        description="A camera silent for this many health intervals (site health_interval_s) is reported "
        "offline even without a Last Will (e.g. a network partition the broker has not noticed).",
    )
    cors_origins: list[str] = Field(
        default_factory=lambda: ["*"],
        description="Origins allowed to call the API from a browser (CORS); [] turns CORS off.",
    )
    rate_limit_per_s: float = Field(
        default=20.0,
        ge=0,
        description="Requests per second per client address on public routes (0 = no limit).",
    )
    rate_limit_burst: int = Field(default=60, ge=1, description="Requests a client may make at once.")
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses of reverse proxies whose X-Forwarded-For names the client (rate limiting).",
    )
    loopback_operator: bool = Field(
        default=True,
        description="While no API key exists at all, let direct callers on this machine (127.0.0.1, ::1) use "
        "operator routes so a one-box demo works; ignored once any key is configured. Set false when a "
        "reverse proxy on this host forwards public traffic.",
    )
    index_refresh_s: float = Field(
        default=1.0,
        gt=0,
        description="Seconds between reloads of the in-memory zone index from the database (picks up what "
        "other replicas wrote; this replica's own writes show at once).",
    )
    migrate: bool = Field(
        default=True, description="Upgrade the database schema (Alembic) when the API starts."
    )
    retention: RetentionConfig = Field(default_factory=RetentionConfig, description="History retention.")
    push: PushConfig | None = Field(
        default=None,
        description="Push changes to a webhook or context broker (every replica sees every change: "
        "set it on one).",
    )
