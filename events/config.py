"""How edge and centre reach the MQTT broker: the transport half of their shared contract.

Secrets never live in the site file: the user name may, the password comes only from the
environment (or a file named there, which is how Docker and systemd hand out secrets). TLS
settings and the edge's store-and-forward spool are plain paths and bounds.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

ENV_MQTT_PASSWORD = "CITYEYE_MQTT_PASSWORD"
ENV_MQTT_PASSWORD_FILE = "CITYEYE_MQTT_PASSWORD_FILE"
ENV_MQTT_USERNAME = "CITYEYE_MQTT_USERNAME"


class MqttSetupError(ValueError):
    """A TLS or credential setting that cannot be used; the message says which key to fix."""


class TlsConfig(BaseModel):
    """TLS to the broker (the `mqtt.tls:` key; absent = plain TCP)."""

    model_config = ConfigDict(extra="forbid")

    ca_file: Path | None = Field(
        default=None,
        description="PEM file of the CA(s) that signed the broker certificate; default: the system's "
        "trusted CAs. Relative to the site file.",
    )
    cert_file: Path | None = Field(
        default=None,
        description="PEM client certificate, for brokers that require one (Mosquitto "
        "`require_certificate true`). Relative to the site file.",
    )
    key_file: Path | None = Field(
        default=None,
        description="PEM private key of cert_file (unencrypted; protect it with file permissions); "
        "omit when cert_file holds the key too.",
    )
    insecure: bool = Field(
        default=False,
        description="Skip the check that the broker certificate names mqtt.host. The chain is still "
        "verified. Only for a broker reached by an address its certificate does not list.",
    )

    @model_validator(mode="after")
    def _key_needs_cert(self) -> TlsConfig:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file is set but cert_file is not; give the client certificate too")
        return self

    def context(self) -> ssl.SSLContext:
        """An SSL context that verifies the broker, so a wrong CA fails at connect, not silently."""
        for key, path in (
            ("ca_file", self.ca_file),
            ("cert_file", self.cert_file),
            ("key_file", self.key_file),
        ):
            if path is not None and not path.is_file():
                raise MqttSetupError(f"mqtt.tls.{key}: {path} is not a file; give the path of a PEM file")
        try:
            ctx = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        except ssl.SSLError as exc:
            raise MqttSetupError(
                f"mqtt.tls.ca_file: {self.ca_file} is not a PEM CA certificate ({exc.reason})"
            ) from None
        if self.cert_file is not None:
            try:
                ctx.load_cert_chain(str(self.cert_file), str(self.key_file) if self.key_file else None)
            except ssl.SSLError as exc:
                raise MqttSetupError(
                    f"mqtt.tls.cert_file/key_file: {self.cert_file} and {self.key_file} are not a matching "
                    f"PEM certificate and unencrypted key ({exc.reason})"
                ) from None
        if self.insecure:
            ctx.check_hostname = False
        return ctx


class SpoolConfig(BaseModel):
    """The edge's store-and-forward queue (the `mqtt.spool:` key); the API ignores it."""

    model_config = ConfigDict(extra="forbid")

    dir: Path | None = Field(
        default=None,
        description="Folder of the edge's durable event queues, one SQLite file per camera; relative to "
        "the site file, default `spool` beside it. Must be writable and survive restarts (e.g. "
        "/var/lib/cityeye/spool). A configuration built in code without a folder spools to a temporary "
        "folder that does not survive the process (logged as a warning).",
    )
    max_mb: float = Field(
        default=256.0,
        gt=0,
        description="Per camera: when the queued events' payloads exceed this many MiB, the oldest are "
        "dropped and counted (health `spool_dropped`).",
    )
    max_age_s: float = Field(
        default=2 * 24 * 3600.0,
        gt=0,
        description="Queued events older than this are dropped and counted. Default 2 days, the API's "
        "default event-id memory (api.retention.minute_days): older replays are not taken there anyway.",
    )
    sync: Literal["full", "normal"] = Field(
        default="full",
        description="SQLite synchronous mode: `full` survives power loss (an fsync per event), "
        "`normal` survives a killed process only and writes faster.",
    )
    flush_timeout_s: float = Field(
        default=10.0,
        ge=0,
        description="On a clean stop, how long each camera waits for the broker to acknowledge its queue; "
        "what is left stays queued for the next start.",
    )


class MqttConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field(default="127.0.0.1", description="Broker host name or address.")
    port: int = Field(default=1883, ge=1, le=65535, description="Broker TCP port (TLS: usually 8883).")
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
    tls: TlsConfig | None = Field(
        default=None, description="TLS settings; absent = plain TCP (only on a trusted network)."
    )
    spool: SpoolConfig = Field(
        default_factory=SpoolConfig, description="Edge store-and-forward queue (unused by the API)."
    )

    @property
    def password(self) -> str | None:
        """From the environment only, so it never sits in a config file or a log.

        ``CITYEYE_MQTT_PASSWORD`` wins; else the first line of the file ``CITYEYE_MQTT_PASSWORD_FILE``
        names (Docker secrets, systemd ``LoadCredential``).
        """
        value = os.environ.get(ENV_MQTT_PASSWORD)
        if value is not None:
            return value
        file = os.environ.get(ENV_MQTT_PASSWORD_FILE)
        if not file:
            return None
        try:
            lines = Path(file).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise MqttSetupError(
                f"{ENV_MQTT_PASSWORD_FILE}={file}: cannot read the password file ({exc.strerror})"
            ) from None
        return lines[0] if lines else ""

    @property
    def effective_username(self) -> str | None:
        return os.environ.get(ENV_MQTT_USERNAME) or self.username

    def configure(self, client: mqtt.Client) -> None:
        """Credentials and TLS on a paho client: the one place edge and API set up their transport."""
        if self.effective_username:
            client.username_pw_set(self.effective_username, self.password)
        elif self.password is not None:
            raise MqttSetupError(
                f"a broker password is set ({ENV_MQTT_PASSWORD}) but no user name; set mqtt.username "
                f"or {ENV_MQTT_USERNAME}"
            )
        if self.tls is not None:
            client.tls_set_context(self.tls.context())
            if self.tls.insecure:
                client.tls_insecure_set(True)

    def resolve_paths(self, base: Path) -> MqttConfig:
        """Relative paths in a site file are relative to the file, not to the working directory."""

        def resolve(p: Path | None) -> Path | None:
            if p is None:
                return None
            p = p.expanduser()
            return p if p.is_absolute() else base / p

        spool = self.spool.model_copy(update={"dir": resolve(self.spool.dir or Path("spool"))})
        tls = None
        if self.tls is not None:
            tls = self.tls.model_copy(
                update={k: resolve(getattr(self.tls, k)) for k in ("ca_file", "cert_file", "key_file")}
            )
        return self.model_copy(update={"spool": spool, "tls": tls})

    def endpoint(self) -> str:
        """``mqtts://host:port`` or ``mqtt://host:port`` for log lines and errors."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"
