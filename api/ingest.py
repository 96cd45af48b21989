"""MQTT consumer: edge events in, store updates out.

Every message is handled on paho's network thread and the outcome counted. Nothing a
publisher sends can stop the consumer: a malformed message is counted under ``rejected`` by
reason and logged, a database failure under ``errors``; the next message is handled as usual.
paho reconnects by itself and the subscription is renewed in every ``on_connect``, so a
broker restart costs at most the reconnect delay.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError

from cityeye.api.store import ApplyResult, Event, Store
from cityeye.config import ENV_MQTT_PASSWORD, ENV_MQTT_USERNAME, MqttConfig
from cityeye.events.schema import (
    HealthEvent,
    OccupancyEvent,
    OverstayEvent,
    SnapshotEvent,
    StatusEvent,
    TrafficEvent,
)
from cityeye.events.topics import ROOT, Topic, TopicKind, parse_topic

log = logging.getLogger(__name__)

DEFAULT_TOPIC_FILTER = f"{ROOT}/+/+/+"
"""Every site, camera and kind."""

SCHEMAS: dict[TopicKind, type[Event]] = {
    TopicKind.OCCUPANCY: OccupancyEvent,
    TopicKind.STATUS: StatusEvent,
    TopicKind.HEALTH: HealthEvent,
    TopicKind.TRAFFIC: TrafficEvent,
    TopicKind.OVERSTAY: OverstayEvent,
    TopicKind.SNAPSHOT: SnapshotEvent,
}

REJECT_LOG_INTERVAL_S = 10.0

MqttProtocol = Literal["5", "3.1.1"]
_PROTOCOLS = {"5": mqtt.MQTTv5, "3.1.1": mqtt.MQTTv311}


class Outcome(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    REJECTED = "rejected"
    ERROR = "error"


class Reason(StrEnum):
    """Why a message was rejected or ignored; the keys of the counters."""

    BAD_TOPIC = "bad_topic"
    UNKNOWN_KIND = "unknown_kind"
    BAD_JSON = "bad_json"
    SCHEMA = "schema"
    TOPIC_MISMATCH = "topic_mismatch"
    EMPTY = "empty"  # a zero-length retained message clears the retained state; nothing to apply
    TOO_OLD = "too_old"  # a traffic bin older than the finest history kept: nothing left to replace


@dataclass(frozen=True, slots=True)
class Handled:
    outcome: Outcome
    reason: Reason | None = None
    detail: str | None = None
    event: Event | None = None


Listener = Callable[[Handled], None]
"""Called on the consumer thread after every message (metrics, live feed, index, push); must not block."""


@dataclass
class IngestStats:
    """Counters since the consumer started; a copy, safe to read from any thread."""

    received: int = 0
    applied: int = 0
    duplicates: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    ignored: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    connected: bool = False
    subscribed: bool = False
    connects: int = 0
    last_error: str | None = None

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


def shared_filter(topic_filter: str, share_group: str | None) -> str:
    """``$share/<group>/<filter>`` so several API instances split the load of one subscription.

    Note that MQTT 5 brokers do not send retained messages to shared subscriptions: instances
    in a group rely on the shared database for the current picture, not on a replay.
    """
    if share_group is None:
        return topic_filter
    if not share_group or any(c in share_group for c in "/+#"):
        raise ValueError(
            f"shared-subscription group {share_group!r} must be non-empty and contain no '/', '+' or '#'"
        )
    return f"$share/{share_group}/{topic_filter}"


def _first_error(exc: ValidationError) -> str:
    e = exc.errors()[0]
    loc = ".".join(str(p) for p in e["loc"]) or "<payload>"
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{loc}: {e['msg']}{more}"


def _is_failure(rc: ReasonCode | int) -> bool:
    return rc.is_failure if isinstance(rc, ReasonCode) else rc >= 0x80


class MqttIngest:
    """Subscribes to the edge topics and applies every valid event to the store."""

    def __init__(
        self,
        store: Store,
        mqtt_cfg: MqttConfig,
        *,
        site: str,
        topic_filter: str = DEFAULT_TOPIC_FILTER,
        share_group: str | None = None,
        protocol: MqttProtocol = "5",
        client_id: str | None = None,
        listeners: list[Listener] | None = None,
        session_expiry_s: int = 0,
        max_batch: int = 500,
    ) -> None:
        self.store = store
        self.listeners: list[Listener] = list(listeners or [])
        self.cfg = mqtt_cfg
        self.subscription = shared_filter(topic_filter, share_group)
        # Unique per process: two API instances with one id would kick each other off forever.
        self.client_id = client_id or f"cityeye-api-{site}-{uuid.uuid4().hex[:8]}"
        # A persistent session (stable client id, expiry > 0) makes the broker queue QoS 1 messages
        # while the API restarts, so a restart loses nothing; the store makes re-deliveries harmless.
        self.session_expiry_s = session_expiry_s
        self.protocol = protocol
        self._stats = IngestStats()
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._started = False
        self._log_marks: dict[str, tuple[float, int]] = {}
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=_PROTOCOLS[protocol],
            clean_session=None if protocol == "5" else session_expiry_s == 0,
            manual_ack=True,
        )
        self.max_batch = max_batch
        self._queue: queue.Queue[mqtt.MQTTMessage | None] = queue.Queue()
        self._writer: threading.Thread | None = None
        # paho's default of 20 in flight would throttle the broker's delivery to us.
        self.client.max_inflight_messages_set(1000)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        mqtt_cfg.configure(self.client)  # credentials and TLS, as the edge sets them up
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background; the API serves (degraded) while the broker is away."""
        log.info(
            "MQTT ingest: connecting to %s:%d, subscribing to %s",
            self.cfg.host,
            self.cfg.port,
            self.subscription,
        )
        if self.protocol == "5":
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            if self.session_expiry_s:
                props.SessionExpiryInterval = self.session_expiry_s
            props.ReceiveMaximum = 1000  # unacknowledged messages the broker may have in flight to us
            self.client.connect_async(
                self.cfg.host,
                self.cfg.port,
                keepalive=self.cfg.keepalive_s,
                clean_start=self.session_expiry_s == 0,
                properties=props,
            )
        else:
            self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        self._writer = threading.Thread(target=self._write_loop, name="mqtt-ingest-writer", daemon=True)
        self._writer.start()
        self.client.loop_start()
        self._started = True

    def stop(self) -> None:
        """Store and acknowledge what has arrived, then disconnect."""
        if not self._started:
            return
        self._queue.put(None)
        if self._writer is not None:
            self._writer.join(timeout=60)
        self.client.disconnect()
        self.client.loop_stop()
        self._started = False
        self._set(connected=False, subscribed=False)
        self._connected.clear()

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def stats(self) -> IngestStats:
        with self._lock:
            s = self._stats
            return IngestStats(
                received=s.received,
                applied=s.applied,
                duplicates=s.duplicates,
                rejected=dict(s.rejected),
                ignored=dict(s.ignored),
                errors=s.errors,
                connected=s.connected,
                subscribed=s.subscribed,
                connects=s.connects,
                last_error=s.last_error,
            )

    def _set(self, **values: Any) -> None:
        with self._lock:
            for k, v in values.items():
                setattr(self._stats, k, v)

    # -- paho callbacks (network thread) -----------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any = None
    ) -> None:
        if rc.is_failure:
            hint = ""
            if rc.getName() in ("Not authorized", "Bad user name or password"):
                hint = f" (set {ENV_MQTT_USERNAME} / {ENV_MQTT_PASSWORD} to an account the broker accepts)"
            elif rc.getName() == "Unsupported protocol version":
                hint = " (this broker does not speak MQTT 5; run the API with --mqtt-protocol 3.1.1)"
            self._set(last_error=f"broker {self.cfg.host}:{self.cfg.port} refused the connection: {rc}{hint}")
            log.error(
                "MQTT ingest: broker %s:%d refused the connection: %s%s",
                self.cfg.host,
                self.cfg.port,
                rc,
                hint,
            )
            return
        with self._lock:
            self._stats.connected = True
            self._stats.connects += 1
            self._stats.last_error = None
        self._connected.set()
        log.info("MQTT ingest: connected to %s:%d", self.cfg.host, self.cfg.port)
        # Subscribing here, not once after connect_async, renews the subscription after every
        # reconnect (the session is clean, the broker forgot it).
        client.subscribe(self.subscription, qos=1)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any = None
    ) -> None:
        self._connected.clear()
        self._set(connected=False, subscribed=False)
        if rc.value != 0:
            self._set(last_error=f"connection lost: {rc}")
            log.warning(
                "MQTT ingest: connection to %s:%d lost (%s); paho reconnects",
                self.cfg.host,
                self.cfg.port,
                rc,
            )

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, rcs: list[ReasonCode], props: Any = None
    ) -> None:
        if any(_is_failure(rc) for rc in rcs):
            msg = (
                f"broker refused the subscription to {self.subscription}: {[str(r) for r in rcs]} "
                "(check the broker ACL for this user)"
            )
            self._set(subscribed=False, last_error=msg)
            log.error("MQTT ingest: %s", msg)
            return
        self._set(subscribed=True)
        log.info("MQTT ingest: subscribed to %s", self.subscription)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        """Queue for the writer thread; the PUBACK waits until the message is stored (manual ack)."""
        with self._lock:
            self._stats.received += 1
        self._queue.put(msg)

    # -- the work ----------------------------------------------------------------------------

    def _write_loop(self) -> None:
        """Drain the queue in batches: one transaction for everything that arrived meanwhile.

        Under load the queue fills while the previous batch commits, so batches grow exactly
        when throughput matters and a lone message is never held back waiting for company.
        Messages are acknowledged to the broker only after their batch is committed: a crash
        in between means a re-delivery (a counted duplicate), never a loss.
        """
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    m = self._queue.get_nowait()
                except queue.Empty:
                    break
                if m is None:
                    stopping = True
                    break
                batch.append(m)
            try:
                self._process([(m.topic, bytes(m.payload)) for m in batch])
            except Exception:  # paho must get its acks whatever happened
                log.exception("MQTT ingest: unexpected error on a batch of %d messages", len(batch))
                with self._lock:
                    self._stats.errors += len(batch)
            for m in batch:
                try:
                    self.client.ack(m.mid, m.qos)
                except Exception as exc:  # connection gone: the broker re-delivers after reconnect
                    log.debug("MQTT ingest: cannot acknowledge message %d: %s", m.mid, exc)

    def handle(self, topic: str, payload: bytes) -> Handled:
        """Validate one message and apply it at once; the outcome is counted and returned."""
        with self._lock:
            self._stats.received += 1
        return self._process([(topic, payload)])[0]

    def _process(self, messages: list[tuple[str, bytes]]) -> list[Handled]:
        results: list[Handled | None] = []
        events: list[tuple[int, Event]] = []
        for i, (topic, payload) in enumerate(messages):
            pre = self._prepare(topic, payload)
            if isinstance(pre, Handled):
                results.append(pre)
            else:
                results.append(None)
                events.append((i, pre))
        if events:
            outcomes = self._apply([ev for _, ev in events])
            for (i, _), h in zip(events, outcomes, strict=True):
                results[i] = h
        done = [r for r in results if r is not None]
        for (topic, _), result in zip(messages, done, strict=True):
            self._count(topic, result)
        return done

    def _apply(self, events: list[Event]) -> list[Handled]:
        """One transaction for the batch; if it fails, event by event so one bad apple stays alone."""
        try:
            outcomes = self.store.apply_many(events)
        except Exception as exc:
            if len(events) == 1:
                return [Handled(Outcome.ERROR, None, f"{type(exc).__name__}: {exc}", events[0])]
            log.warning("MQTT ingest: batch of %d failed (%s); applying one by one", len(events), exc)
            return [h for ev in events for h in self._apply([ev])]
        out = []
        for ev, applied in zip(events, outcomes, strict=True):
            if applied is ApplyResult.TOO_OLD:
                out.append(Handled(Outcome.IGNORED, Reason.TOO_OLD, None, ev))
            elif applied is ApplyResult.APPLIED:
                out.append(Handled(Outcome.APPLIED, event=ev))
            else:
                out.append(Handled(Outcome.DUPLICATE, event=ev))
        return out

    def _count(self, topic: str, result: Handled) -> None:
        with self._lock:
            s = self._stats
            if result.outcome is Outcome.APPLIED:
                s.applied += 1
            elif result.outcome is Outcome.DUPLICATE:
                s.duplicates += 1
            elif result.outcome is Outcome.ERROR:
                s.errors += 1
            elif result.reason is not None:
                bucket = s.rejected if result.outcome is Outcome.REJECTED else s.ignored
                bucket[result.reason.value] = bucket.get(result.reason.value, 0) + 1
        for listener in self.listeners:
            try:
                listener(result)
            except Exception:  # a listener bug must not stop ingest
                log.exception("MQTT ingest: listener %r failed", listener)
        if result.outcome is Outcome.REJECTED:
            self._log_rejection(topic, result)
        elif result.outcome is Outcome.ERROR:
            log.error("MQTT ingest: could not store message from %s: %s", topic, result.detail)

    def _log_rejection(self, topic: str, result: Handled) -> None:
        """At most one line per reason and interval: a broken or hostile publisher must not flood the log."""
        now = time.monotonic()
        key = result.reason.value if result.reason else "?"
        last, suppressed = self._log_marks.get(key, (-1e18, 0))
        if now - last < REJECT_LOG_INTERVAL_S:
            self._log_marks[key] = (last, suppressed + 1)
            return
        more = f" ({suppressed} more {key} rejections not logged)" if suppressed else ""
        log.warning("MQTT ingest: rejected message on %s: %s: %s%s", topic, key, result.detail, more)
        self._log_marks[key] = (now, 0)

    def _prepare(self, topic: str, payload: bytes) -> Handled | Event:
        """The topic and payload checks; an event to apply, or the outcome of a bad message."""
        try:
            t = parse_topic(topic)
        except ValueError as exc:
            parts = topic.split("/")
            reason = (
                Reason.UNKNOWN_KIND if len(parts) == 5 and topic.startswith(ROOT + "/") else Reason.BAD_TOPIC
            )
            return Handled(Outcome.REJECTED, reason, str(exc))
        if not payload:
            return Handled(Outcome.IGNORED, Reason.EMPTY)
        return self._parse(t, payload)

    @staticmethod
    def _parse(t: Topic, payload: bytes) -> Event | Handled:
        schema = SCHEMAS.get(t.kind)
        if schema is None:  # a kind newer than this API: count it, never crash on it
            return Handled(
                Outcome.REJECTED,
                Reason.UNKNOWN_KIND,
                f"this API version does not handle {t.kind.value} events",
            )
        try:
            event = schema.model_validate_json(payload)
        except ValidationError as exc:
            if any(e["type"] == "json_invalid" for e in exc.errors()):
                return Handled(Outcome.REJECTED, Reason.BAD_JSON, _first_error(exc))
            return Handled(
                Outcome.REJECTED, Reason.SCHEMA, f"not a valid {t.kind.value} event: {_first_error(exc)}"
            )
        if (event.site, event.camera) != (t.site, t.camera):
            return Handled(
                Outcome.REJECTED,
                Reason.TOPIC_MISMATCH,
                f"payload is from {event.site}/{event.camera} but was published under "
                f"{t.site}/{t.camera}; the edge must publish on its own camera's topic",
            )
        return event
