"""One MQTT connection per camera, fed from a durable spool, so that nothing is lost in between.

Each camera has its own connection because MQTT allows one Last Will per connection: that is
what lets the broker announce ``offline`` for exactly the camera whose worker died.

Every event goes to the camera's :class:`~cityeye.edge.spool.Spool` first and is deleted only
when the broker acknowledges it (QoS 1 PUBACK). A sender thread hands the oldest unsent events
to paho, at most a window at a time, so memory stays bounded however long the broker is away.
On a lost connection paho's copies are dropped and the window is rewound: the spool alone is
the queue while off-line, which is what makes its size/age bound (oldest dropped, counted) an
honest statement of what was lost. Replays carry the original payload bytes, so event ids and
observation times are the original ones and the centre drops what it has already seen.

On every (re)connect the camera's status is published afresh and the last payload of each
retained topic is queued again unless a newer one is still waiting, so a broker that restarted
empty gets its retained state back.
"""

from __future__ import annotations

import itertools
import logging
import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode
from prometheus_client import Gauge

from cityeye.config import MqttConfig
from cityeye.edge.spool import Spool, SpoolError, SpoolStats, spool_file
from cityeye.events.config import ENV_MQTT_PASSWORD, ENV_MQTT_USERNAME
from cityeye.events.schema import AnyEvent, CameraStatus, HealthEvent, SnapshotEvent, StatusEvent
from cityeye.events.topics import Topic, TopicKind, topic_for

log = logging.getLogger(__name__)

WINDOW = 20
"""Messages handed to paho and not yet acknowledged, per camera (Mosquitto's default receive maximum)."""

ERROR_LOG_EVERY_S = 60.0
"""A connection error that repeats is logged again at most this often (reconnects back off to 30 s)."""

_LABELS = ("site", "camera")
SPOOL_QUEUED = Gauge("cityeye_spool_queued_events", "Events waiting on the edge for a PUBACK.", _LABELS)
SPOOL_OLDEST = Gauge("cityeye_spool_oldest_age_seconds", "Age of the oldest waiting event.", _LABELS)
SPOOL_LOST = Gauge(
    "cityeye_spool_lost_events",
    "Events the spool will never send, since it was created: reason = dropped (size bound), "
    "expired (age bound), rejected (refused by the broker).",
    (*_LABELS, "reason"),
)
MQTT_CONNECTED = Gauge("cityeye_mqtt_connected", "1 while the camera's MQTT connection is up.", _LABELS)


def explain_refusal(rc: ReasonCode, cfg: MqttConfig) -> str:
    """Turn a CONNACK refusal into what to change."""
    name = rc.getName()
    where = cfg.endpoint()
    user = cfg.effective_username
    if name in ("Not authorized", "Bad user name or password"):
        if user is None:
            return (
                f"broker {where} refused an anonymous connection ({name}); set mqtt.username or "
                f"{ENV_MQTT_USERNAME}, and {ENV_MQTT_PASSWORD}"
            )
        return (
            f"broker {where} refused user {user!r} ({name}); check {ENV_MQTT_PASSWORD} against the "
            "broker's password file"
        )
    if name == "Unsupported protocol version":
        return f"broker {where} does not speak MQTT {cfg.protocol}; set mqtt.protocol to 3.1.1"
    return f"broker {where} refused the connection: {name}"


def explain_connect_error(exc: OSError, cfg: MqttConfig) -> str:
    """Turn a socket or TLS failure into what to change."""
    where = cfg.endpoint()
    if isinstance(exc, ssl.SSLCertVerificationError):
        msg = exc.verify_message or str(exc)
        if "hostname" in msg.lower() or "ip address mismatch" in msg.lower():
            return (
                f"TLS: the certificate of {where} does not name {cfg.host!r} ({msg}); connect by a name the "
                "certificate lists, or set mqtt.tls.insecure (the chain is still checked)"
            )
        return (
            f"TLS: the certificate of {where} is not trusted ({msg}); set mqtt.tls.ca_file to the CA that "
            "signed the broker certificate"
        )
    if isinstance(exc, ssl.SSLError):
        return (
            f"TLS handshake with {where} failed ({exc.reason or exc}); is it a TLS listener, and does it "
            "require a client certificate (mqtt.tls.cert_file)?"
        )
    if isinstance(exc, ConnectionRefusedError):
        return f"nothing accepts connections at {where} (broker down or wrong mqtt.host/port)"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve broker host {cfg.host!r} ({exc.strerror})"
    if isinstance(exc, TimeoutError):
        return f"connecting to {where} timed out (network down or a firewall in between)"
    return f"cannot connect to {where}: {exc}"


class _Client(mqtt.Client):
    """paho's client, reporting why a (re)connect attempt failed: paho's loop swallows the error."""

    connect_error: Callable[[OSError], None] | None = None

    def reconnect(self) -> MQTTErrorCode:
        try:
            return super().reconnect()
        except OSError as exc:
            if self.connect_error is not None:
                self.connect_error(exc)
            raise


class CameraPublisher:
    """Spool-backed MQTT publisher of one camera. ``publish`` never blocks on the network."""

    def __init__(
        self,
        site: str,
        camera: str,
        cfg: MqttConfig,
        boot_id: str,
        *,
        spool: Spool | None = None,
        window: int = WINDOW,
    ) -> None:
        self.site = site
        self.camera = camera
        self._cfg = cfg
        sc = cfg.spool
        self._temp_dir: Path | None = None
        if spool is None:
            spool_dir = sc.dir
            if spool_dir is None:
                # Only configurations built in code get here (a site file always names a folder):
                # a shared default like ./spool would let two processes, or two test runs, replay
                # each other's events.
                self._temp_dir = spool_dir = Path(tempfile.mkdtemp(prefix=f"cityeye-spool-{camera}-"))
                log.warning(
                    "camera %s: no mqtt.spool.dir configured; queueing in %s, which does not survive "
                    "a restart",
                    camera,
                    spool_dir,
                )
            spool = Spool(
                spool_file(spool_dir, site, camera),
                max_bytes=int(sc.max_mb * 1024 * 1024),
                max_age_s=sc.max_age_s,
                sync=sc.sync,
            )
        self.spool = spool
        # The spool's boot counter makes ids of this run differ from every earlier run's, even
        # if the clock (the worker's boot_id) was set back, e.g. on a box without an RTC.
        self.boot_id = f"{boot_id}.{self.spool.boot}"
        self._seq = itertools.count(1)
        self._seq_lock = threading.Lock()
        self.connected = threading.Event()
        self.last_error: str | None = None
        self._last_logged: tuple[str | None, float] = (None, 0.0)
        self._labels = {"site": site, "camera": camera}

        self._window_max = max(1, window)
        self._window = self._window_max
        self._send_lock = threading.Lock()  # connection generation, in-flight map, cursor
        self._ack_lock = threading.Lock()  # PUBACKs from paho's thread (which holds paho's own lock)
        self._wake = threading.Event()
        self._gen = 0
        self._sender_gen = 0
        self._hello_due = False
        self._inflight: dict[int, int] = {}  # paho mid -> spool seq
        self._acks: dict[int, ReasonCode | None] = {}
        self._cursor = 0
        self._status: tuple[CameraStatus, str | None] | None = None
        self._status_lock = threading.Lock()
        self._connects = 0
        self.snapshots_sent = 0
        self.snapshots_skipped = 0
        """Snapshots not sent because the broker was unreachable (they are never queued)."""
        self._stopping = threading.Event()
        self._closed = False
        self._sender = threading.Thread(target=self._send_loop, name=f"mqtt-send-{camera}", daemon=True)

        client_id = f"{cfg.client_id or 'cityeye-edge'}-{site}-{camera}-{self.boot_id}"[:128]
        self.client = _Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5 if cfg.protocol == "5" else mqtt.MQTTv311,
        )
        self.client.max_inflight_messages_set(self._window_max)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        cfg.configure(self.client)
        self._set_will()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.connect_error = self._on_connect_error

    # -- ids and will ------------------------------------------------------------------------

    def next_event_id(self, kind: str) -> str:
        """site + camera + boot + sequence: unique across restarts, and kept by a replay."""
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

    # -- paho callbacks (network thread) -------------------------------------------------------

    def _report(self, message: str) -> None:
        """Log a connection problem once per change and then at most every ERROR_LOG_EVERY_S."""
        self.last_error = message
        last, at = self._last_logged
        now = time.monotonic()
        if message != last or now - at >= ERROR_LOG_EVERY_S:
            log.error("camera %s: %s; retrying with back-off (up to 30 s)", self.camera, message)
            self._last_logged = (message, now)

    def _on_connect_error(self, exc: OSError) -> None:
        self._report(explain_connect_error(exc, self._cfg))

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, rc: ReasonCode, props: Any = None
    ) -> None:
        if rc.is_failure:
            self._report(explain_refusal(rc, self._cfg))
            return
        window = self._window_max
        receive_max = getattr(props, "ReceiveMaximum", None)
        if isinstance(receive_max, int) and receive_max > 0:
            window = min(window, receive_max)
        with self._send_lock:
            self._gen += 1
            self._window = window
            self._hello_due = True
            self._connects += 1
            self.connected.set()
        log.info("camera %s: connected to %s", self.camera, self._cfg.endpoint())
        self.last_error = None
        self._last_logged = (None, 0.0)
        MQTT_CONNECTED.labels(**self._labels).set(1)
        self._wake.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: object, flags: object, rc: ReasonCode, props: object = None
    ) -> None:
        with self._send_lock:
            was_connected = self.connected.is_set()
            self.connected.clear()
            self._gen += 1
            # The spool is the queue while off-line: paho's copies would be re-sent on top of ours.
            client.drop_out_messages()
        MQTT_CONNECTED.labels(**self._labels).set(0)
        self._set_will()  # used by paho's next reconnect
        if was_connected and rc.value != 0:
            log.warning("camera %s: MQTT connection lost (%s); events queue in the spool", self.camera, rc)
        self._wake.set()

    def _on_publish(
        self, client: mqtt.Client, userdata: object, mid: int, rc: ReasonCode | None, props: object = None
    ) -> None:
        # Called with paho's message lock held: record and return, never call back into paho.
        with self._ack_lock:
            self._acks[mid] = rc
        self._wake.set()

    # -- sender thread -------------------------------------------------------------------------

    def _send_loop(self) -> None:
        next_expiry = time.monotonic() + 60
        while True:
            self._wake.wait(0.5)
            self._wake.clear()
            try:
                hello = self._sync_generation()
                self._collect_acks()
                if hello:
                    self._queue_hello()
                if self._stopping.is_set():
                    return  # stop() did the waiting; what is left stays in the spool
                self._fill_window()
                if time.monotonic() >= next_expiry:
                    self.spool.expire()
                    next_expiry = time.monotonic() + 60
            except SpoolError:
                if self._closed:
                    return
                log.exception("camera %s: spool failure in the sender; retrying", self.camera)
                time.sleep(1)
            except Exception:  # the sender must outlive any bug in one round
                log.exception("camera %s: sender error; retrying", self.camera)
                time.sleep(1)

    def _sync_generation(self) -> bool:
        """After a connect or disconnect: settle what was acknowledged, rewind the rest."""
        with self._send_lock:
            if self._sender_gen == self._gen:
                return False
            self._sender_gen = self._gen
            hello, self._hello_due = self._hello_due and self.connected.is_set(), False
            with self._ack_lock:
                acks, self._acks = self._acks, {}
            inflight, self._inflight = self._inflight, {}
            self._cursor = 0
        self._settle(inflight, acks)
        return hello

    def _collect_acks(self) -> None:
        with self._ack_lock:
            if not self._acks:
                return
            acks, self._acks = self._acks, {}
        with self._send_lock:
            done = {mid: self._inflight.pop(mid) for mid in acks if mid in self._inflight}
        self._settle(done, acks)

    def _settle(self, sent: dict[int, int], acks: dict[int, ReasonCode | None]) -> None:
        ok: list[int] = []
        refused: list[tuple[int, ReasonCode]] = []
        for mid, seq in sent.items():
            if mid not in acks:
                continue  # never acknowledged: stays in the spool and is sent again
            rc = acks[mid]
            if rc is not None and rc.is_failure:
                refused.append((seq, rc))
            else:
                ok.append(seq)
        self.spool.ack(ok)
        if refused:
            self.spool.reject(seq for seq, _ in refused)
            reasons = sorted({rc.getName() for _, rc in refused})
            log.error(
                "camera %s: broker refused %d event(s) on %s (%s); they stay in the spool and are not "
                "re-sent: check that the broker ACL lets user %r write cityeye/v1/%s/%s/#",
                self.camera,
                len(refused),
                self._topic(TopicKind.STATUS).rsplit("/", 1)[0],
                ", ".join(reasons),
                self._cfg.effective_username,
                self.site,
                self.camera,
            )

    def _queue_hello(self) -> None:
        """Fresh status, and retained state again unless a newer one is still queued."""
        status_topic = self._topic(TopicKind.STATUS)
        for r in self.spool.retained():
            if r.topic != status_topic and not self.spool.has_pending(r.topic):
                self.spool.put(r.topic, r.payload, retain=True, event_id=r.event_id)
        with self._status_lock:
            # The camera's own latest status (`streaming`, `error`...) if it said one, else `online`.
            status, detail = self._status or (CameraStatus.ONLINE, None)
            self._queue_status(status, detail)

    def _fill_window(self) -> None:
        with self._send_lock:
            if not self.connected.is_set() or self._sender_gen != self._gen:
                return
            gen, cursor, room = self._gen, self._cursor, self._window - len(self._inflight)
        if room <= 0:
            return
        rows = self.spool.pending(after_seq=cursor, limit=room)
        if not rows:
            return
        with self._send_lock:
            if gen != self._gen or cursor != self._cursor or not self.connected.is_set():
                return  # the connection changed meanwhile; the next round starts over
            for r in rows:
                info = self.client.publish(r.topic, r.payload, qos=1, retain=r.retain)
                self._inflight[info.mid] = r.seq
                self._cursor = r.seq
                if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    break  # connection going down; on_disconnect rewinds

    # -- public API ----------------------------------------------------------------------------

    def start(self) -> None:
        self._sender.start()
        self.client.connect_async(self._cfg.host, self._cfg.port, keepalive=self._cfg.keepalive_s)
        self.client.loop_start()

    def publish(self, event: AnyEvent) -> int | None:
        """Queue one event durably; returns its spool sequence number (None if it could not be stored).

        A health event gets the spool's figures added, so the centre sees a backlog or losses.
        """
        topic = Topic(self.site, self.camera, TopicKind(event.kind))
        try:
            if isinstance(event, HealthEvent):
                figures = self._spool_health()
                event = event.model_copy(update={"health": event.health.model_copy(update=figures)})
            seq = self.spool.put(
                str(topic), event.model_dump_json().encode(), retain=topic.retained, event_id=event.event_id
            )
        except SpoolError as exc:
            log.error("camera %s: event %s not stored: %s", self.camera, event.event_id, exc)
            return None
        except Exception as exc:  # disk full, I/O error: the camera goes on, the loss is logged
            log.error(
                "camera %s: event %s lost, the spool %s cannot be written: %s",
                self.camera,
                event.event_id,
                self.spool.path,
                exc,
            )
            return None
        self._wake.set()
        return seq

    def publish_latest(self, event: SnapshotEvent) -> bool:
        """Send now or never (QoS 0, retained), outside the spool: only the newest snapshot matters,
        and a broker outage must not fill the spool with frames nobody will look at."""
        if not self.connected.is_set():
            self.snapshots_skipped += 1
            return False
        info = self.client.publish(
            self._topic(TopicKind.SNAPSHOT), event.model_dump_json(), qos=0, retain=True
        )
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self.snapshots_skipped += 1
            return False
        self.snapshots_sent += 1
        return True

    def publish_status(self, status: CameraStatus, detail: str | None = None) -> int | None:
        # Under the lock, so the spool's order of statuses is the order of `_status` updates and
        # a reconnect's repetition can never queue an older status after a newer one.
        with self._status_lock:
            if status is not CameraStatus.OFFLINE:
                self._status = (status, detail)
            return self._queue_status(status, detail)

    def _queue_status(self, status: CameraStatus, detail: str | None) -> int | None:
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

    def _spool_health(self) -> dict[str, object]:
        s = self.spool.snapshot()
        age = None if s.oldest_created is None else round(max(time.time() - s.oldest_created, 0.0), 3)
        self._export(s, age)
        return {
            "spool_queued": s.queued,
            "spool_oldest_age_s": age,
            "spool_dropped": s.dropped + s.expired,
            "spool_rejected": s.rejected,
            "snapshots_skipped": self.snapshots_skipped,
        }

    def _export(self, s: SpoolStats, age: float | None) -> None:
        SPOOL_QUEUED.labels(**self._labels).set(s.queued)
        SPOOL_OLDEST.labels(**self._labels).set(age or 0.0)
        for reason, n in (("dropped", s.dropped), ("expired", s.expired), ("rejected", s.rejected)):
            SPOOL_LOST.labels(**self._labels, reason=reason).set(n)

    def stats(self) -> SpoolStats:
        return self.spool.stats()

    def wait_flushed(self, timeout_s: float) -> bool:
        """Wait until the broker acknowledged everything queued; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.spool.queued == 0:
                return True
            time.sleep(0.02)
        return self.spool.queued == 0

    def stop(self, detail: str = "worker stopped", timeout_s: float | None = None) -> None:
        """Say ``offline`` ourselves (a clean stop is not a lost connection), flush, disconnect.

        Waits up to ``timeout_s`` (default ``mqtt.spool.flush_timeout_s``) for the broker to
        acknowledge the queue, giving up early if the broker stays unreachable; what is left
        stays in the spool and is sent by the next start. If our own ``offline`` did not get
        through, the disconnect asks the broker (MQTT 5) to publish the Last Will instead.
        """
        if self._closed:
            return
        timeout = self._cfg.spool.flush_timeout_s if timeout_s is None else timeout_s
        self.publish_status(CameraStatus.OFFLINE, detail)
        deadline = time.monotonic() + timeout
        offline_since: float | None = None
        while self.spool.queued and time.monotonic() < deadline:
            if self.connected.is_set():
                offline_since = None
            else:
                offline_since = offline_since or time.monotonic()
                if time.monotonic() - offline_since > min(2.0, timeout):
                    break
            time.sleep(0.02)
        self._stopping.set()
        self._wake.set()
        self._sender.join(timeout=5)
        left = self.spool.queued
        if left and self.connected.is_set() and self._cfg.protocol == "5":
            self.client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=4))
        else:
            self.client.disconnect()
        self.client.loop_stop()
        self._closed = True
        self.spool.close()
        MQTT_CONNECTED.labels(**self._labels).set(0)
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            if left:
                log.warning(
                    "camera %s: %d unsent event(s) dropped with the temporary spool", self.camera, left
                )
            return
        if left:
            log.warning(
                "camera %s: %d event(s) not acknowledged before exit; they stay in %s and are sent at "
                "the next start",
                self.camera,
                left,
                self.spool.path,
            )
