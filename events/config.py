"""How edge and centre reach the MQTT broker: the transport half of their shared contract."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ENV_MQTT_PASSWORD = "CITYEYE_MQTT_PASSWORD"
ENV_MQTT_USERNAME = "CITYEYE_MQTT_USERNAME"


class MqttConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

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
