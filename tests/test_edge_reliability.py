"""Store-and-forward on the edge: the SQLite spool on its own, then the publisher against a real Mosquitto.

Every broker here is a real Mosquitto process; "outages" are the broker process stopped and
started again on the same port, or a publisher started while nothing listens.
"""

from __future__ import annotations

import getpass
import itertools
import json
import logging
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cityeye.cli import main as cli_main
from cityeye.config import MqttConfig, parse_config
from cityeye.edge.publisher import CameraPublisher
from cityeye.edge.spool import Spool, SpoolError, SpoolLockedError, read_stats, spool_file
from cityeye.events.config import ENV_MQTT_PASSWORD, ENV_MQTT_PASSWORD_FILE, SpoolConfig
from cityeye.events.schema import CameraHealth, CameraStatus, HealthEvent, OccupancyEvent, SpaceState
from tests.conftest import Broker, free_port, start_mosquitto, wait_port
from tests.conftest import wait_for as wait_for  # re-exported for the reliability e2e and deploy tests

SITE, CAM = "rel", "cam-1"


class Sniffer:
    """A real MQTT subscriber that records every message (duplicates included) in arrival order."""

    def __init__(self, broker: Broker, topic: str = "cityeye/v1/#", *, session: str | None = None) -> None:
        """``session``: a client id whose session the broker keeps (and queues for) while we are away."""
        self.messages: list[tuple[str, dict[str, Any], bool]] = []
        self._lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=session or "", protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p=None: self.subscribed.set()
        self.client.on_message = self._on_message
        props = None
        if session:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 600
        self.client.connect(broker.host, broker.port, clean_start=not session, properties=props)
        self.client.loop_start()
        wait_for("the sniffer's subscription", self.subscribed.is_set)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if msg.payload:
            with self._lock:
                self.messages.append((msg.topic, json.loads(msg.payload), bool(msg.retain)))

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [m for t, m, _ in self.messages if t.endswith("/" + kind)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def health(pub: CameraPublisher, n: int) -> HealthEvent:
    """A health event whose frames_received carries a serial number the test can follow."""
    return HealthEvent(
        site=SITE,
        camera=CAM,
        event_id=pub.next_event_id("health"),
        observed_at=datetime.now(UTC),
        health=CameraHealth(frames_received=n, frames_analysed=n, frames_dropped=0, reconnects=0, fps=1.0),
    )


def occupancy(pub: CameraPublisher, occupied: bool) -> OccupancyEvent:
    return OccupancyEvent(
        site=SITE,
        camera=CAM,
        event_id=pub.next_event_id("occupancy"),
        observed_at=datetime.now(UTC),
        zones=[SpaceState(id="A1", occupied=occupied, score=0.9 if occupied else 0.1)],
    )


def mqtt_cfg(port: int, spool_dir: Path, **spool: Any) -> MqttConfig:
    return MqttConfig(port=port, spool=SpoolConfig(dir=spool_dir, **spool))


@pytest.fixture
def publishers() -> Iterator[list[CameraPublisher]]:
    """Publishers a test made; stopped at the end even when the test failed."""
    made: list[CameraPublisher] = []
    yield made
    for p in made:
        p.stop(timeout_s=0)


def stop_broker(broker: Broker) -> None:
    broker.proc.terminate()
    broker.proc.wait(timeout=10)


def mosquitto_exe() -> str:
    exe = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if exe is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto; .ci/run does this)")
    return exe


def start_persistent_broker(tmp: Path, port: int | None = None) -> Broker:
    """Mosquitto that keeps sessions and queued messages across a restart, as deploy/ configures it."""
    port = port or free_port()
    data = tmp / f"mosquitto-data-{port}"
    data.mkdir(exist_ok=True)
    conf = tmp / f"mosquitto-persistent-{port}.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {data}/\n"
        f"user {getpass.getuser()}\n"  # as root Mosquitto would switch to `mosquitto` and not save the state
    )
    proc = subprocess.Popen(
        [mosquitto_exe(), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_port(port)
    except TimeoutError:
        proc.kill()
        raise
    return Broker(port, proc)


# -- the spool on its own ---------------------------------------------------------------------


def test_spool_is_fifo_durable_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    spool = Spool(path, max_bytes=1 << 20, max_age_s=3600)
    seqs = [spool.put("t/a", f"m{i}".encode(), retain=False, event_id=f"e{i}") for i in range(10)]
    assert seqs == sorted(seqs)
    first = spool.pending(limit=4)
    assert [m.payload for m in first] == [b"m0", b"m1", b"m2", b"m3"]
    assert [m.payload for m in spool.pending(after_seq=first[-1].seq, limit=2)] == [b"m4", b"m5"]
    assert spool.ack([first[0].seq, first[2].seq]) == 2
    assert spool.ack([first[0].seq]) == 0  # a second PUBACK for the same message changes nothing
    boot = spool.boot
    spool.close()

    again = Spool(path, max_bytes=1 << 20, max_age_s=3600)
    assert again.boot == boot + 1
    assert [m.event_id for m in again.pending(limit=100)] == ["e1", "e3", "e4", "e5", "e6", "e7", "e8", "e9"]
    assert again.queued == 8
    stats = again.stats()
    assert (stats.enqueued, stats.acked, stats.dropped) == (10, 2, 0)
    # seq numbers are never reused, so a sender's cursor cannot skip a new event
    assert again.put("t/a", b"new", retain=False, event_id="n") > seqs[-1]
    again.close()


def test_spool_size_bound_drops_oldest_and_counts(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite", max_bytes=1000, max_age_s=3600)
    for i in range(25):
        spool.put("t/a", bytes([65 + i]) * 100, retain=False, event_id=f"e{i}")
    left = spool.pending(limit=100)
    assert [m.event_id for m in left] == [f"e{i}" for i in range(15, 25)]  # the newest 10 x 100 bytes
    s = spool.stats()
    assert (s.queued, s.queued_bytes, s.dropped, s.expired) == (10, 1000, 15, 0)
    with pytest.raises(SpoolError, match="larger than the whole spool"):
        spool.put("t/a", b"x" * 1001, retain=False, event_id="huge")
    assert spool.queued == 10  # the refused event took nothing with it
    spool.close()
    assert read_stats(tmp_path / "s.sqlite").dropped == 15  # counters survive the process


def test_spool_age_bound_expires_and_counts(tmp_path: Path) -> None:
    now = [1_000_000.0]
    spool = Spool(tmp_path / "s.sqlite", max_bytes=1 << 20, max_age_s=60, clock=lambda: now[0])
    for i in range(5):
        spool.put("t/a", b"x", retain=False, event_id=f"old{i}")
        now[0] += 10
    now[0] += 31  # old0..old2 are now more than 60 s old
    spool.put("t/a", b"y", retain=False, event_id="new")
    assert [m.event_id for m in spool.pending()] == ["old3", "old4", "new"]
    assert spool.stats().expired == 3
    now[0] += 1000
    assert spool.expire() == 3
    assert spool.queued == 0
    spool.close()


def test_spool_keeps_retained_state_and_refusals(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite", max_bytes=1 << 20, max_age_s=3600)
    spool.put("t/occupancy", b"v1", retain=True, event_id="o1")
    spool.put("t/health", b"h", retain=False, event_id="h1")
    s2 = spool.put("t/occupancy", b"v2", retain=True, event_id="o2")
    spool.ack(m.seq for m in spool.pending())
    assert [(r.topic, r.payload, r.event_id) for r in spool.retained()] == [("t/occupancy", b"v2", "o2")]
    bad = spool.put("t/x", b"refused", retain=False, event_id="r1")
    assert spool.reject([bad, s2]) == 1  # s2 was acknowledged already
    assert spool.pending() == []
    s = spool.stats()
    assert (s.queued, s.rejected, s.rejected_held) == (0, 1, 1)
    spool.close()


def test_spool_has_one_writer(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    spool = Spool(path, max_bytes=1 << 20, max_age_s=3600)
    with pytest.raises(SpoolLockedError, match="in use by another process"):
        Spool(path, max_bytes=1 << 20, max_age_s=3600)
    spool.close()
    Spool(path, max_bytes=1 << 20, max_age_s=3600).close()


def test_spool_errors_say_what_to_do(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(SpoolError, match=r"mqtt\.spool\.dir"):
        Spool(blocker / "s.sqlite", max_bytes=100, max_age_s=10)
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(SpoolError, match="move the file aside"):
        Spool(garbage, max_bytes=100, max_age_s=10)
    with pytest.raises(SpoolError, match="no spool at"):
        read_stats(tmp_path / "absent.sqlite")


def test_spool_reader_sees_a_live_writer(tmp_path: Path) -> None:
    """The health check reads while the worker writes (WAL): no lock, no creation, current figures."""
    path = tmp_path / "s.sqlite"
    spool = Spool(path, max_bytes=1 << 20, max_age_s=3600)
    for i in range(3):
        spool.put("t/a", b"x", retain=False, event_id=f"e{i}")
    s = read_stats(path)
    assert s.queued == 3 and s.enqueued >= 1  # the total is saved at most once a second
    assert s.last_put is not None and abs(s.last_put - time.time()) < 60
    spool.put("t/a", b"x", retain=False, event_id="e3")
    assert read_stats(path).queued == 4
    spool.close()


# -- configuration --------------------------------------------------------------------------


def test_spool_and_tls_paths_are_relative_to_the_site_file(tmp_path: Path) -> None:
    text = "site: s\nmqtt:\n  tls: {ca_file: certs/ca.pem}\n  spool: {dir: state/spool, max_mb: 8}\n"
    cfg = parse_config(text, base_dir=tmp_path)
    assert cfg.mqtt.spool.dir == tmp_path / "state" / "spool"
    assert cfg.mqtt.tls is not None and cfg.mqtt.tls.ca_file == tmp_path / "certs" / "ca.pem"
    assert parse_config("site: s\n", base_dir=tmp_path).mqtt.spool.dir == tmp_path / "spool"
    assert cfg.mqtt.tls.insecure is False


def test_password_file_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    monkeypatch.delenv(ENV_MQTT_PASSWORD, raising=False)
    monkeypatch.setenv(ENV_MQTT_PASSWORD_FILE, str(secret))
    assert MqttConfig().password == "s3cret"
    monkeypatch.setenv(ENV_MQTT_PASSWORD, "direct")
    assert MqttConfig().password == "direct"
    monkeypatch.delenv(ENV_MQTT_PASSWORD)
    monkeypatch.setenv(ENV_MQTT_PASSWORD_FILE, str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="cannot read the password file"):
        _ = MqttConfig().password


# -- the publisher against a real broker -------------------------------------------------------


def test_bound_reached_offline_drops_oldest_counts_and_reports(
    tmp_path: Path, publishers: list[CameraPublisher], caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    cfg = mqtt_cfg(port, tmp_path / "spool", max_mb=20_000 / 2**20)  # ~20 kB: a few dozen events
    pub = CameraPublisher(SITE, CAM, cfg, "b1")
    publishers.append(pub)
    size = len(health(pub, 0).model_dump_json())  # what one spooled health event weighs
    with caplog.at_level(logging.WARNING, logger="cityeye.edge.spool"):
        for n in range(1, 201):  # the broker is not there yet: everything goes to the spool
            pub.publish(health(pub, n))
    kept = pub.spool.queued
    assert 0 < kept < 200
    assert kept * size <= 20_000 + 200
    dropped = pub.spool.stats().dropped
    assert dropped == 200 - kept
    assert "oldest event(s) dropped" in caplog.text

    broker = start_mosquitto(tmp_path, port)
    sniffer = Sniffer(broker)
    try:
        pub.start()
        wait_for("the backlog to drain", lambda: pub.spool.queued == 0)
        pub.publish(health(pub, 1000))
        got = wait_for(
            "the report",
            lambda: [h for h in sniffer.of_kind("health") if h["health"]["frames_received"] == 1000],
        )
        serials = [h["health"]["frames_received"] for h in sniffer.of_kind("health")]
        total_dropped = pub.spool.stats().dropped  # the `online` said at connect pushed out one more
        assert dropped <= total_dropped <= dropped + 2
        # exactly the newest survived, in order, each once
        assert serials[:-1] == list(range(total_dropped + 1, 201))
        report = got[0]["health"]
        assert report["spool_dropped"] == total_dropped
        assert report["spool_queued"] == 0
    finally:
        sniffer.close()
        stop_broker(broker)


def test_broker_outage_replays_in_order_with_original_ids_and_times(
    tmp_path: Path, publishers: list[CameraPublisher]
) -> None:
    broker = start_persistent_broker(tmp_path)
    sniffer = Sniffer(broker, session="sniffer")  # its session outlives the restart, like the API's
    pub = CameraPublisher(SITE, CAM, mqtt_cfg(broker.port, tmp_path / "spool"), "b1")
    publishers.append(pub)
    pub.start()
    wait_for("connection", pub.connected.is_set)
    sent: list[HealthEvent] = []

    def produce(first: int, last: int) -> None:
        for n in range(first, last):
            ev = health(pub, n)
            sent.append(ev)
            pub.publish(ev)
            time.sleep(0.005)

    produce(0, 50)
    wait_for("first batch acknowledged", lambda: pub.spool.queued == 0)
    wait_for("first batch received", lambda: len(sniffer.of_kind("health")) == 50)
    stop_broker(broker)
    wait_for("the publisher to notice", lambda: not pub.connected.is_set())
    produce(50, 150)  # broker away: all of these wait in the spool
    assert pub.spool.queued >= 100
    broker = start_persistent_broker(tmp_path, broker.port)
    try:
        produce(150, 170)
        wait_for("the backlog to drain", lambda: pub.spool.queued == 0, timeout=45)
        wait_for("all events", lambda: len(sniffer.of_kind("health")) >= 170)
        got = sniffer.of_kind("health")
        by_id = {e.event_id: e for e in sent}
        assert [g["health"]["frames_received"] for g in got] == list(range(170))
        for g in got:  # byte-for-byte the original events: same ids, same observation times
            assert HealthEvent.model_validate(g).observed_at == by_id[g["event_id"]].observed_at
        statuses = [s["status"] for s in sniffer.of_kind("status")]
        assert statuses[-1] == "online"  # said again after the reconnect
    finally:
        sniffer.close()
        stop_broker(broker)


def test_retained_state_is_republished_to_a_broker_that_lost_it(
    tmp_path: Path, publishers: list[CameraPublisher]
) -> None:
    broker = start_mosquitto(tmp_path)  # persistence off: a restart forgets retained messages
    pub = CameraPublisher(SITE, CAM, mqtt_cfg(broker.port, tmp_path / "spool"), "b1")
    publishers.append(pub)
    pub.start()
    last = occupancy(pub, True)
    pub.publish(occupancy(pub, False))
    pub.publish(last)
    pub.publish_status(CameraStatus.STREAMING, "h264 1280x720")  # what the stream supervisor says
    wait_for("delivery", lambda: pub.spool.queued == 0)
    stop_broker(broker)
    wait_for("the publisher to notice", lambda: not pub.connected.is_set())
    broker = start_mosquitto(tmp_path, broker.port)
    try:
        wait_for("reconnect", pub.connected.is_set, timeout=20)
        wait_for("republish acknowledged", lambda: pub.spool.queued == 0)
        late = Sniffer(broker)  # a consumer arriving now sees the state without any new event
        try:
            occ = wait_for("retained occupancy", lambda: late.of_kind("occupancy"))
            assert occ[0]["event_id"] == last.event_id  # the same event: the centre drops it as seen
            assert occ[0]["zones"][0]["occupied"] is True
            status = wait_for("retained status", lambda: late.of_kind("status"))
            assert (status[-1]["status"], status[-1]["detail"]) == (
                "streaming",
                "h264 1280x720",
            )  # said again
        finally:
            late.close()
    finally:
        stop_broker(broker)


def test_clean_stop_says_offline_after_the_queue(tmp_path: Path) -> None:
    broker = start_mosquitto(tmp_path)
    sniffer = Sniffer(broker)
    try:
        pub = CameraPublisher(SITE, CAM, mqtt_cfg(broker.port, tmp_path / "spool"), "b1")
        pub.start()
        wait_for("connection", pub.connected.is_set)
        for n in range(200):
            pub.publish(health(pub, n))
        pub.stop("worker stopped")  # at once: the queue must be flushed before the goodbye
        assert read_stats(pub.spool.path).queued == 0
        wait_for("offline", lambda: any(s["status"] == "offline" for s in sniffer.of_kind("status")))
        kinds = [t.rsplit("/", 1)[1] for t, _, _ in sniffer.messages]
        assert kinds.count("health") == 200
        assert kinds[-1] == "status" and sniffer.of_kind("status")[-1]["detail"] == "worker stopped"
    finally:
        sniffer.close()
        stop_broker(broker)


def test_stop_without_broker_keeps_the_queue_for_the_next_start(tmp_path: Path) -> None:
    port = free_port()
    cfg = mqtt_cfg(port, tmp_path / "spool")
    pub = CameraPublisher(SITE, CAM, cfg, "b1")
    pub.start()
    events = [health(pub, n) for n in range(5)]
    for ev in events:
        pub.publish(ev)
    t0 = time.monotonic()
    pub.stop(timeout_s=30)
    assert time.monotonic() - t0 < 10  # gives up soon when nothing listens; nothing is lost by that
    assert read_stats(spool_file(tmp_path / "spool", SITE, CAM)).queued == 6  # + its own offline

    broker = start_mosquitto(tmp_path, port)
    sniffer = Sniffer(broker)
    again = CameraPublisher(SITE, CAM, cfg, "b1")  # same clock-based boot id: the spool still tells apart
    try:
        assert again.boot_id != pub.boot_id
        again.start()
        wait_for("the old queue", lambda: len(sniffer.of_kind("health")) == 5)
        assert [h["event_id"] for h in sniffer.of_kind("health")] == [e.event_id for e in events]
        fresh = again.next_event_id("health")
        assert fresh not in {e.event_id for e in events}
    finally:
        again.stop()
        sniffer.close()
        stop_broker(broker)


def test_wrong_credentials_error_and_retry_with_backoff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, publishers: list[CameraPublisher]
) -> None:
    if shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto_passwd is not installed (apt-get install mosquitto)")
    pwfile = tmp_path / "passwd"
    pwfile.write_text("")
    subprocess.run(["mosquitto_passwd", "-b", str(pwfile), "edge-01", "right"], check=True)
    port = free_port()
    conf = tmp_path / "auth.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {pwfile}\n"
        f"user {getpass.getuser()}\n"  # as root Mosquitto would switch users and lose the tmp files
    )
    proc = subprocess.Popen([mosquitto_exe(), "-c", str(conf)], stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        monkeypatch.setenv(ENV_MQTT_PASSWORD, "wrong")
        cfg = MqttConfig(port=port, username="edge-01", spool=SpoolConfig(dir=tmp_path / "spool"))
        pub = CameraPublisher(SITE, CAM, cfg, "b1")
        publishers.append(pub)
        attempts: list[float] = []
        orig = pub.client.on_connect
        assert orig is not None

        def counting(*args: Any) -> None:
            attempts.append(time.monotonic())
            orig(*args)

        pub.client.on_connect = counting
        pub.start()
        pub.publish(health(pub, 1))
        wait_for("three refused attempts", lambda: len(attempts) >= 3, timeout=20)
        assert pub.last_error is not None
        assert "refused user 'edge-01'" in pub.last_error and ENV_MQTT_PASSWORD in pub.last_error
        gaps = [b - a for a, b in itertools.pairwise(attempts)]
        assert gaps[1] > gaps[0] * 1.5  # backing off, not hammering the broker
        assert not pub.connected.is_set() and pub.spool.queued >= 1  # nothing lost meanwhile
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_drained_spool_gives_disk_back(tmp_path: Path) -> None:
    """After an outage drains, the file returns to its empty size instead of staying at its peak."""
    path = tmp_path / "s.sqlite"
    spool = Spool(path, max_bytes=1 << 30, max_age_s=3600, sync="normal")
    for i in range(2000):
        spool.put("t/occupancy", bytes([i % 256]) * 6000, retain=i % 100 == 0, event_id=f"e{i}")

    def disk() -> int:
        return sum(p.stat().st_size for p in tmp_path.glob("s.sqlite*") if not p.name.endswith(".lock"))

    assert disk() > 10 * 2**20
    while rows := spool.pending(limit=500):
        spool.ack(r.seq for r in rows)
    assert disk() < 2**20
    assert spool.retained()[0].payload == bytes([1900 % 256]) * 6000  # what must survive, did
    spool.close()


def test_spool_status_command_is_a_health_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(
        "site: s\nhealth_interval_s: 10\nmqtt:\n  spool: {dir: q}\ncameras:\n"
        "  - {id: alive, source: x}\n  - {id: hung, source: x}\n"
    )

    def status(*extra: str) -> tuple[int, dict[str, Any]]:
        rc = cli_main(["spool", "status", "--config", str(site), *extra])
        out = capsys.readouterr()
        return rc, json.loads(out.out) if out.out else {"stderr": out.err}

    rc, report = status()
    assert rc == 1 and any("no spool at" in p for p in report["problems"])
    alive = Spool(spool_file(tmp_path / "q", "s", "alive"), max_bytes=1 << 20, max_age_s=1e6)
    long_ago = time.time() - 3600
    hung = Spool(
        spool_file(tmp_path / "q", "s", "hung"), max_bytes=1 << 20, max_age_s=1e6, clock=lambda: long_ago
    )
    try:
        alive.put("t", b"x", retain=False, event_id="a1")
        hung.put("t", b"x", retain=False, event_id="h1")
        rc, report = status("--camera", "alive")  # read while the writers hold their spools
        assert rc == 0 and report["healthy"] is True
        assert report["cameras"]["alive"]["queued"] == 1
        rc, report = status()
        assert rc == 1 and report["problems"] == [
            "hung: nothing queued for 3600 s (> 60 s): the worker is stopped or hung"
        ]
        rc, report = status("--camera", "alive", "--max-backlog-s", "0")
        assert rc == 1 and "the oldest queued event waits" in report["problems"][0]
        rc, report = status("--camera", "nope")
        assert rc == 2 and "not in" in report["stderr"]
    finally:
        alive.close()
        hung.close()
