"""One MQTT connection per camera, so that each camera has its own Last Will.

MQTT allows one will per connection; a per-camera connection is what lets the broker itself
announce ``offline`` for exactly the camera whose worker died. QoS 1 everywhere; state topics
are retained so a subscriber that (re)connects sees the current picture at once.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from cityeye.config import MqttConfig
from cityeye.events.schema import AnyEvent, CameraStatus, StatusEvent
from cityeye.events.topics import Topic, TopicKind, topic_for

log = logging.getLogger(__name__)


class CameraPublisher:
    def __init__(self, site: str, camera: str, cfg: MqttConfig, boot_id: str) -> None:
        self.site = site
        self.camera = camera
        self.boot_id = boot_id
        self._seq = itertools.count(1)
        self._seq_lock = threading.Lock()
        self.connected = threading.Event()
        self.last_error: str | None = None
        client_id = f"{cfg.client_id or 'cityeye-edge'}-{site}-{camera}-{boot_id}"[:128]
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5 if cfg.protocol == "5" else mqtt.MQTTv311,
        )
        self.client.max_inflight_messages_set(100)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        if cfg.effective_username:
            self.client.username_pw_set(cfg.effective_username, cfg.password)
        self._set_will()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self._cfg = cfg

    def next_event_id(self, kind: str) -> str:
        """camera + boot + sequence: unique, and stable for a replay of the same event."""
        with self._seq_lock:
            n = next(self._seq)
        return f"{self.site}:{self.camera}:{self.boot_id}:{kind}:{n}"

    def _set_will(self) -> None:
        """A fresh will per connection: the centre drops repeated event ids as duplicates, so a
        second connection loss with the first will's id would leave the camera "online"."""
        will = StatusEvent(
            site=self.site,
            camera=self.camera,
            event_id=self.next_event_id("will"),
            observed_at=datetime.now(UTC),
            status=CameraStatus.OFFLINE,
            detail="connection lost (Last Will)",
        )
        self.client.will_set(self._topic(TopicKind.STATUS), will.model_dump_json(), qos=1, retain=True)

    def _topic(self, kind: TopicKind) -> str:
        return topic_for(self.site, self.camera, kind)

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, rc: ReasonCode, props: object = None
    ) -> None:
        if rc.is_failure:
            self.last_error = f"broker refused the connection: {rc}"
            log.error("camera %s: %s", self.camera, self.last_error)
            return
        log.info("camera %s: connected to MQTT %s:%d", self.camera, self._cfg.host, self._cfg.port)
        self.last_error = None
        self.connected.set()
        self.publish_status(CameraStatus.ONLINE)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: object, flags: object, rc: ReasonCode, props: object = None
    ) -> None:
        self.connected.clear()
        self._set_will()  # used by paho's next reconnect
        if rc.value != 0:
            log.warning("camera %s: MQTT connection lost (%s); paho reconnects", self.camera, rc)

    def start(self) -> None:
        self.client.connect_async(self._cfg.host, self._cfg.port, keepalive=self._cfg.keepalive_s)
        self.client.loop_start()

    def publish(self, event: AnyEvent) -> mqtt.MQTTMessageInfo:
        topic = Topic(self.site, self.camera, TopicKind(event.kind))
        return self.client.publish(str(topic), event.model_dump_json(), qos=1, retain=topic.retained)

    def publish_status(self, status: CameraStatus, detail: str | None = None) -> mqtt.MQTTMessageInfo:
        return self.publish(
            StatusEvent(
                site=self.site,
                camera=self.camera,
                event_id=self.next_event_id("status"),
                observed_at=datetime.now(UTC),
                status=status,
                detail=detail,
            )
        )

    def stop(self, detail: str = "worker stopped", timeout_s: float = 10.0) -> None:
        """Say ``offline`` ourselves (a clean stop is not a lost connection), flush, disconnect."""
        deadline = time.monotonic() + timeout_s
        if self.connected.wait(max(0.0, deadline - time.monotonic())):
            info = self.publish_status(CameraStatus.OFFLINE, detail)
            while not info.is_published() and time.monotonic() < deadline and self.connected.is_set():
                time.sleep(0.02)
            self.wait_flushed(max(0.0, deadline - time.monotonic()))
        self.client.disconnect()
        self.client.loop_stop()

    def wait_flushed(self, timeout_s: float) -> bool:
        """Wait until the broker acknowledged everything queued (paho's in-flight QoS 1 messages)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.client._out_messages:
                return True
            time.sleep(0.02)
        return False
