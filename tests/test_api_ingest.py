"""End to end through a real Mosquitto: paho publishes, the API's consumer ingests, HTTP answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from cityeye.api.app import create_app
from cityeye.api.ingest import MqttIngest
from cityeye.config import ApiConfig, MqttConfig, SiteConfig
from cityeye.events.schema import AreaState, CameraStatus, OccupancyEvent, SpaceState, StatusEvent
from cityeye.events.topics import TopicKind, topic_for
from tests.conftest import Broker, free_port, start_mosquitto, wait_for
from tests.test_api_support import settled

LAT, LON = 48.137, 11.575
OPERATOR_KEY = "operator-key-0123456789"
OPERATOR = {"X-API-Key": OPERATOR_KEY}
M_PER_DEG_LAT = 111_195.0


def caught_up(app: Any) -> None:
    """The zone index serves what the store holds (it refreshes within 0.2 s of a local write)."""
    wait_for("the index", lambda: app.state.index.snapshot.rev == app.state.store.current_rev())


def north(metres: float) -> float:
    return LAT + metres / M_PER_DEG_LAT


def now() -> datetime:
    return datetime.now(UTC)


def occupancy(
    event_id: str, zones: list[SpaceState | AreaState], *, camera: str = "cam1", at: datetime | None = None
) -> OccupancyEvent:
    return OccupancyEvent(site="demo", camera=camera, event_id=event_id, observed_at=at or now(), zones=zones)


class Publisher:
    """A stand-in for an edge worker: a real paho client publishing QoS 1 like the edge does."""

    def __init__(self, broker: Broker, *, will: StatusEvent | None = None) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv5)
        if will is not None:
            topic = topic_for(will.site, will.camera, TopicKind.STATUS)
            self.client.will_set(topic, will.model_dump_json(), qos=1, retain=True)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def raw(self, topic: str, payload: bytes | str, *, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(timeout=5)
        assert info.is_published()

    def event(self, ev: OccupancyEvent | StatusEvent, *, camera: str | None = None) -> None:
        kind = TopicKind(ev.kind)
        self.raw(topic_for(ev.site, camera or ev.camera, kind), ev.model_dump_json(), retain=True)

    def vanish(self) -> None:
        """Disconnect so that the broker publishes our Last Will (as when an edge worker dies)."""
        self.client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message"))
        self.client.loop_stop()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Live:
    http: TestClient
    ingest: MqttIngest
    broker: Broker

    def nearby(self, **params: Any) -> list[dict[str, Any]]:
        r = self.http.get("/v1/parking/nearby", params={"lat": LAT, "lon": LON, **params})
        assert r.status_code == 200, r.text
        results: list[dict[str, Any]] = r.json()["results"]
        return results

    def publisher(self, **kw: Any) -> Publisher:
        return Publisher(self.broker, **kw)


def site_config(port: int, db: Path, stale_after_s: float = 120.0) -> SiteConfig:
    return SiteConfig(
        site="demo",
        mqtt=MqttConfig(host="127.0.0.1", port=port),
        api=ApiConfig(database_url=f"sqlite:///{db}", stale_after_s=stale_after_s),
    )


@pytest.fixture
def live(mosquitto: Broker, tmp_path: Path) -> Iterator[Live]:
    app = create_app(site_config(mosquitto.port, tmp_path / "api.db"), api_keys=f"operator:{OPERATOR_KEY}")
    with TestClient(app) as http:
        ingest: MqttIngest = app.state.ingest
        wait_for("the consumer's subscription", lambda: ingest.stats().subscribed)
        yield Live(http, ingest, mosquitto)


def test_published_occupancy_shows_up_in_nearby(live: Live) -> None:
    pub = live.publisher()
    try:
        # Listed far-to-near so that the answer's order must come from the distance.
        pub.event(
            occupancy(
                "cam1:1",
                [
                    AreaState(id="far", vehicles=1, capacity=4, lat=north(700), lon=LON, lot="P2"),
                    SpaceState(id="bay/7", occupied=False, score=0.2, lat=north(150), lon=LON, name="Bay 7"),
                    AreaState(id="near", vehicles=2, capacity=12, lat=north(50), lon=LON),
                    AreaState(id="full", vehicles=6, capacity=6, lat=north(10), lon=LON),
                    AreaState(id="unplaced", vehicles=0, capacity=3),
                ],
            )
        )
        wait_for("three zones in /nearby", lambda: len(live.nearby()) == 3)
        results = live.nearby()
    finally:
        pub.close()

    assert [r["zone_id"] for r in results] == ["near", "bay/7", "far"]
    assert [(r["free"], r["total"]) for r in results] == [(10, 12), (1, 1), (3, 4)]
    assert [r["distance_m"] for r in results] == pytest.approx([50.0, 150.0, 700.0], abs=0.2)
    first = results[0]
    assert first["id"] == "demo:cam1:near"
    assert (first["site"], first["camera"], first["kind"], first["stale"]) == ("demo", "cam1", "area", False)
    assert first["lat"] == pytest.approx(north(50)) and first["lon"] == LON
    updated = datetime.fromisoformat(first["updated_at"])
    assert updated.utcoffset() == timedelta(0)
    assert abs((now() - updated).total_seconds()) < 30
    assert [r["zone_id"] for r in live.nearby(radius_m=500)] == ["near", "bay/7"]
    assert [r["zone_id"] for r in live.nearby(min_free=0, limit=2)] == ["full", "near"]

    # The zone endpoint, with an id containing '/'.
    bay = live.http.get("/v1/parking/zones/demo:cam1:bay/7")
    assert bay.status_code == 200, bay.text
    assert bay.json() | {"updated_at": None, "observed_at": None} == {
        "id": "demo:cam1:bay/7",
        "zone_id": "bay/7",
        "camera": "cam1",
        "site": "demo",
        "vehicle": None,
        "lot": None,
        "name": "Bay 7",
        "kind": "space",
        "free": 1,
        "total": 1,
        "lat": pytest.approx(north(150)),
        "lon": LON,
        "stale": False,
        "occupied": False,
        "score": 0.2,
        "updated_at": None,
        "observed_at": None,
    }
    stats = live.ingest.stats()
    assert (stats.received, stats.applied, stats.rejected_total) == (1, 1, 0)


def test_same_event_twice_is_applied_once(live: Live) -> None:
    ev = occupancy("cam1:boot:occupancy:1", [AreaState(id="a", vehicles=1, capacity=5, lat=LAT, lon=LON)])
    pub = live.publisher()
    try:
        pub.event(ev)
        pub.event(ev)  # a QoS 1 re-send or an edge replay after reconnect
        wait_for("both copies", lambda: settled(live.ingest) == 2)
    finally:
        pub.close()
    stats = live.ingest.stats()
    assert (stats.applied, stats.duplicates) == (1, 1)
    assert len(live.http.app.state.store.history("demo:cam1:a")) == 1  # type: ignore[attr-defined]
    health = live.http.get("/healthz").json()
    assert health["ingest"]["duplicates"] == 1 and health["ingest"]["applied"] == 1


def test_malformed_messages_are_counted_and_ingest_goes_on(live: Live) -> None:
    good = occupancy("cam1:good", [AreaState(id="ok", vehicles=0, capacity=2, lat=LAT, lon=LON)])
    valid_json_wrong_schema = good.model_dump(mode="json") | {"zones": [{"id": "x", "kind": "area"}]}
    pub = live.publisher()
    try:
        pub.raw("cityeye/v1/demo/cam1/occupancy", b"{not json")
        pub.raw("cityeye/v1/demo/cam1/occupancy", json.dumps(valid_json_wrong_schema))
        pub.raw("cityeye/v1/demo/cam1/status", good.model_dump_json())  # an occupancy payload on status
        # A valid event of cam1 published on cam2's topic: the topic would mislabel it.
        pub.event(
            occupancy("cam1:x", [AreaState(id="m", vehicles=0, capacity=1, lat=LAT, lon=LON)]), camera="cam2"
        )
        pub.raw("cityeye/v1/demo/cam1/bogus", good.model_dump_json())
        pub.raw("cityeye/v1/demo/cam1/traffic", b'{"counts": {}}')
        pub.event(good)
        results = wait_for("the good event after the bad ones", live.nearby)
    finally:
        pub.close()
    assert [r["zone_id"] for r in results] == ["ok"]
    wait_for("all 7 messages counted", lambda: settled(live.ingest) == 7)
    stats = live.ingest.stats()
    assert stats.rejected == {"bad_json": 1, "schema": 3, "topic_mismatch": 1, "unknown_kind": 1}
    assert stats.ignored == {}
    assert (stats.applied, stats.errors, stats.connected) == (1, 0, True)
    assert live.http.get("/healthz").json()["ingest"]["rejected"]["schema"] == 3
    assert live.http.get("/v1/parking/zones/demo:cam2:m").status_code == 404


def test_last_will_offline_makes_zones_stale(live: Live) -> None:
    # Composed at connect time like the edge's will: its timestamp is older than what follows.
    will = StatusEvent(
        site="demo",
        camera="cam9",
        event_id="cam9:boot:will:1",
        observed_at=now(),
        status=CameraStatus.OFFLINE,
        detail="connection lost (Last Will)",
    )
    pub = live.publisher(will=will)
    pub.event(
        StatusEvent(
            site="demo",
            camera="cam9",
            event_id="cam9:boot:status:2",
            observed_at=now(),
            status=CameraStatus.ONLINE,
        )
    )
    pub.event(
        occupancy(
            "cam9:boot:occ:3", [AreaState(id="z", vehicles=0, capacity=3, lat=LAT, lon=LON)], camera="cam9"
        )
    )
    (fresh,) = wait_for("the zone", live.nearby)
    assert fresh["stale"] is False
    cams = wait_for(
        "cam9 online",
        lambda: [
            c
            for c in live.http.get("/v1/cameras", headers=OPERATOR).json()["cameras"]
            if c["status"] == "online"
        ],
    )
    assert cams[0]["camera"] == "cam9"

    pub.vanish()
    (gone,) = wait_for("stale after the will", lambda: [r for r in live.nearby() if r["stale"]])
    assert gone["id"] == "demo:cam9:z"
    (cam,) = live.http.get("/v1/cameras", headers=OPERATOR).json()["cameras"]
    assert (cam["status"], cam["detail"]) == ("offline", "connection lost (Last Will)")


def test_old_snapshot_after_newer_one_is_ignored(live: Live) -> None:
    t = now()
    pub = live.publisher()
    try:
        pub.event(occupancy("cam1:2", [AreaState(id="a", vehicles=1, capacity=8, lat=LAT, lon=LON)], at=t))
        pub.event(
            occupancy(
                "cam1:1",
                [AreaState(id="a", vehicles=8, capacity=8, lat=LAT, lon=LON)],
                at=t - timedelta(seconds=20),
            )
        )
        wait_for("both snapshots", lambda: settled(live.ingest) == 2)
    finally:
        pub.close()
    caught_up(live.http.app)
    z = live.http.get("/v1/parking/zones/demo:cam1:a").json()
    assert z["free"] == 7
    assert datetime.fromisoformat(z["observed_at"]) == t
    assert live.ingest.stats().rejected_total == 0


def test_stale_when_the_snapshot_is_old(mosquitto: Broker, tmp_path: Path) -> None:
    app = create_app(site_config(mosquitto.port, tmp_path / "api.db", stale_after_s=60))
    with TestClient(app) as http:
        ingest: MqttIngest = app.state.ingest
        wait_for("subscription", lambda: ingest.stats().subscribed)
        pub = Publisher(mosquitto)
        try:
            zone = AreaState(id="a", vehicles=0, capacity=2, lat=LAT, lon=LON)
            pub.event(occupancy("old:1", [zone], at=now() - timedelta(seconds=90)))
            pub.event(occupancy("new:1", [zone.model_copy(update={"id": "b"})], camera="cam2"))
            wait_for("both", lambda: ingest.stats().applied == 2)
        finally:
            pub.close()
        caught_up(app)
        r = http.get("/v1/parking/nearby", params={"lat": LAT, "lon": LON}).json()["results"]
        assert {x["id"]: x["stale"] for x in r} == {"demo:cam1:a": True, "demo:cam2:b": False}


def test_consumer_connects_late_and_reconnects_after_broker_restart(tmp_path: Path) -> None:
    port = free_port()
    app = create_app(site_config(port, tmp_path / "api.db"))
    broker: Broker | None = None
    with TestClient(app) as http:
        ingest: MqttIngest = app.state.ingest
        h = http.get("/healthz")
        assert h.status_code == 200  # the database answers; MQTT only degrades the service
        assert (h.json()["status"], h.json()["mqtt_connected"]) == ("degraded", False)
        try:
            broker = start_mosquitto(tmp_path, port)
            wait_for("first connection", lambda: ingest.stats().subscribed)
            assert http.get("/healthz").json()["status"] == "ok"
            pub = Publisher(broker)
            pub.event(occupancy("e1", [AreaState(id="a", vehicles=0, capacity=2, lat=LAT, lon=LON)]))
            pub.close()
            wait_for("first event", lambda: ingest.stats().applied == 1)

            broker.proc.terminate()
            broker.proc.wait(timeout=10)
            wait_for("disconnect noticed", lambda: not ingest.connected)
            broker = start_mosquitto(tmp_path, port)
            wait_for(
                "reconnect and resubscribe", lambda: (s := ingest.stats()).connects == 2 and s.subscribed
            )
            pub = Publisher(broker)
            pub.event(occupancy("e2", [AreaState(id="a", vehicles=1, capacity=2, lat=LAT, lon=LON)]))
            pub.close()
            wait_for("event after reconnect", lambda: ingest.stats().applied == 2)
            caught_up(app)
            assert http.get("/v1/parking/zones/demo:cam1:a").json()["free"] == 1
        finally:
            if broker is not None:
                broker.proc.terminate()
                broker.proc.wait(timeout=10)
