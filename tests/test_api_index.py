"""The in-memory zone index against the database reference; lot totals; NGSI-LD; history; GeoJSON."""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cityeye.api.app import create_app
from cityeye.api.index import Liveness, ZoneIndex
from cityeye.api.ingest import MqttIngest, Outcome, Reason
from cityeye.api.store import Store, utcnow
from cityeye.config import ApiConfig, MqttConfig, SiteConfig
from cityeye.events.schema import AreaState, OccupancyEvent, OverstayEvent, SpaceState, StatusEvent

OP = {"X-API-Key": "operator-key-0123456789"}
LAT, LON = 16.0544, 108.2022


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'i.db'}")
    s.migrate()
    yield s
    s.close()


def test_index_answers_exactly_what_the_database_query_answers(store: Store) -> None:
    rng = random.Random(3)
    now = utcnow()
    for cam in range(20):
        zones: list[SpaceState | AreaState] = []
        for k in range(150):
            lat = LAT + rng.uniform(-0.03, 0.03)
            lon = LON + rng.uniform(-0.03, 0.03)
            vehicle = rng.choice([None, "car", "motorcycle"])
            if rng.random() < 0.7:
                zones.append(
                    SpaceState(
                        id=f"s{k}", occupied=rng.random() < 0.5, score=0.5, lat=lat, lon=lon, vehicle=vehicle
                    )
                )
            else:
                cap = rng.randrange(1, 30)
                zones.append(
                    AreaState(
                        id=f"a{k}",
                        vehicles=rng.randrange(0, cap + 1),
                        capacity=cap,
                        lat=lat,
                        lon=lon,
                        vehicle=vehicle,
                    )
                )
        store.apply(
            OccupancyEvent(site="demo", camera=f"c{cam}", event_id=f"e{cam}", observed_at=now, zones=zones)
        )
    index = ZoneIndex(store, Liveness(120, 30))
    index.refresh()
    snap = index.snapshot
    assert len(snap.zones) == 3000
    for _ in range(200):
        q = {
            "min_free": rng.choice([0, 1, 3]),
            "limit": rng.choice([1, 20, 200]),
            "kind": rng.choice([None, "space", "area"]),
            "vehicle": rng.choice([None, "car", "motorcycle"]),
        }
        lat, lon, radius = (
            LAT + rng.uniform(-0.04, 0.04),
            LON + rng.uniform(-0.04, 0.04),
            rng.choice([50.0, 300.0, 1000.0, 5000.0]),
        )
        ref = store.nearby(lat, lon, radius, **q)  # type: ignore[arg-type]
        got = snap.nearby(lat, lon, radius, **q)  # type: ignore[arg-type]
        assert [u for u, _ in got] == [n.zone.uid for n in ref], q
        assert [d for _, d in got] == pytest.approx([n.distance_m for n in ref], abs=1e-6)


def test_lot_totals_count_a_space_seen_by_two_cameras_once(tmp_path: Path) -> None:
    cfg = SiteConfig(site="demo", api=ApiConfig(database_url=f"sqlite:///{tmp_path / 'l.db'}"))
    app = create_app(cfg, ingest=False, api_keys=f"operator:{OP['X-API-Key']}")
    with TestClient(app) as http:
        store: Store = app.state.store
        t = utcnow()

        def spaces(ids: range, occupied: set[int]) -> list[SpaceState | AreaState]:
            return [
                SpaceState(
                    id=f"b{i}", occupied=i in occupied, score=0.5, lat=LAT, lon=LON + i * 1e-5, lot="P1"
                )
                for i in ids
            ]

        # Camera A sees bays 1-4, camera B bays 3-6: 6 bays, not 8. B's view of 3 and 4 is newer.
        store.apply(
            OccupancyEvent(
                site="demo",
                camera="A",
                event_id="a",
                observed_at=t - timedelta(seconds=5),
                zones=spaces(range(1, 5), {1, 3}),
            )
        )
        store.apply(
            OccupancyEvent(
                site="demo", camera="B", event_id="b", observed_at=t, zones=spaces(range(3, 7), {4, 6})
            )
        )
        store.apply(
            OccupancyEvent(
                site="demo",
                camera="C",
                event_id="c",
                observed_at=t,
                zones=[AreaState(id="x", vehicles=2, capacity=5, lat=LAT, lon=LON, lot="P2")],
            )
        )
        app.state.index.refresh()
        lots = {lot["lot"]: lot for lot in http.get("/v1/parking/lots").json()["lots"]}
        assert (lots["P1"]["total"], lots["P1"]["free"], lots["P1"]["zones"]) == (
            6,
            3,
            6,
        )  # occupied: 1, 4, 6
        assert lots["P1"]["cameras"] == ["A", "B"] and lots["P1"]["stale"] is False
        assert (lots["P2"]["free"], lots["P2"]["total"]) == (3, 5)
        # B goes offline: its bays count with A's fresher-than-stale view where A has one.
        store.apply(StatusEvent(site="demo", camera="B", event_id="bw", observed_at=t, status="offline"))
        app.state.index.refresh()
        p1 = {lot["lot"]: lot for lot in http.get("/v1/parking/lots").json()["lots"]}["P1"]
        # Bays 3 (A: occupied) and 4 (A: free) come from A now; 5 (free) and 6 count as last known, stale.
        assert (p1["total"], p1["free"], p1["stale_zones"]) == (6, 3, 2)
        assert http.get("/v1/parking/lots", params={"site": "elsewhere"}).json() == {"lots": []}

        # NGSI-LD views of the same picture.
        spots = http.get("/ngsi-ld/v1/entities", params={"type": "ParkingSpot", "count": "true"}, headers=OP)
        assert spots.status_code == 200 and spots.headers["ngsild-results-count"] == "8"
        assert 'rel="http://www.w3.org/ns/json-ld#context"' in spots.headers["link"]
        status = {e["id"]: e["status"]["value"] for e in spots.json()}
        assert (
            status["urn:ngsi-ld:ParkingSpot:demo:B:b5"] == "unknown"
            and status["urn:ngsi-ld:ParkingSpot:demo:A:b2"] == "free"
        )
        parks = http.get(
            "/ngsi-ld/v1/entities",
            params={"type": "OffStreetParking"},
            headers={**OP, "Accept": "application/ld+json"},
        )
        assert parks.headers["content-type"].startswith("application/ld+json")
        p1e = {e["id"]: e for e in parks.json()}["urn:ngsi-ld:OffStreetParking:demo:P1"]
        assert (p1e["availableSpotNumber"]["value"], p1e["totalSpotNumber"]["value"]) == (3, 6)
        assert "@context" in p1e and p1e["location"]["value"]["type"] == "Point"
        geo = http.get(
            "/ngsi-ld/v1/entities",
            params={"type": "ParkingSpot", "limit": 3, "offset": 1},
            headers={**OP, "Accept": "application/geo+json"},
        )
        body = geo.json()
        assert (
            geo.headers["content-type"].startswith("application/geo+json")
            and body["type"] == "FeatureCollection"
        )
        assert len(body["features"]) == 3 and body["features"][0]["geometry"]["type"] == "Point"
        assert body["features"][0]["properties"]["type"] == "ParkingSpot"
        bad = http.get("/ngsi-ld/v1/entities", params={"type": "Vehicle"}, headers=OP)
        assert bad.status_code == 400 and bad.json()["type"].endswith("/BadRequestData")

        # The map layer: every zone at its centroid with live counts, filterable by box and lot.
        fc = http.get("/v1/parking/zones.geojson")
        assert fc.headers["content-type"].startswith("application/geo+json")
        assert len(fc.json()["features"]) == 9
        assert len(http.get("/v1/parking/zones.geojson", params={"lot": "P2"}).json()["features"]) == 1
        box = f"{LON + 2.5e-5},{LAT - 1e-3},{LON + 1},{LAT + 1e-3}"
        assert {
            f["properties"]["zone_id"]
            for f in http.get("/v1/parking/zones.geojson", params={"bbox": box}).json()["features"]
        } == {"b3", "b4", "b5", "b6"}
        assert http.get("/v1/parking/zones.geojson", params={"bbox": "1,2,3"}).status_code == 422


def test_zone_history_buckets_and_csv(tmp_path: Path) -> None:
    cfg = SiteConfig(site="demo", api=ApiConfig(database_url=f"sqlite:///{tmp_path / 'h.db'}"))
    app = create_app(cfg, ingest=False, api_keys=f"operator:{OP['X-API-Key']}")
    with TestClient(app) as http:
        store: Store = app.state.store
        t0 = utcnow().replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
        for i, vehicles in enumerate([0, 2, 4, 4, 1, 3]):  # every 10 minutes
            store.apply(
                OccupancyEvent(
                    site="demo",
                    camera="c",
                    event_id=f"e{i}",
                    observed_at=t0 + timedelta(minutes=10 * i),
                    zones=[AreaState(id="lot/a", vehicles=vehicles, capacity=4, lat=LAT, lon=LON)],
                )
            )
        app.state.index.refresh()
        url = "/v1/parking/zones/demo:c:lot/a/history"
        params = {"from": (t0 - timedelta(hours=1)).isoformat(), "bucket": "15m"}
        body = http.get(url, params=params, headers=OP).json()
        assert body["resolution_s"] == 900
        assert [(p["samples"], p["free_avg"], p["free_min"], p["free_max"]) for p in body["points"]] == [
            (2, 3.0, 2, 4),  # :00 and :10
            (1, 0.0, 0, 0),  # :20
            (2, 1.5, 0, 3),  # :30, :40
            (1, 1.0, 1, 1),  # :50
        ]
        hourly = http.get(url, params={**params, "bucket": "1h"}, headers=OP).json()["points"]
        assert [(p["samples"], p["free_avg"], p["occupancy"]) for p in hourly] == [(6, 1.667, 0.5833)]
        c = http.get(url, params={**params, "bucket": "1h"}, headers={**OP, "Accept": "text/csv"})
        (row,) = list(csv.DictReader(io.StringIO(c.text)))
        assert (row["samples"], row["free_avg"], row["occupancy"]) == ("6", "1.667", "0.5833")
        assert http.get("/v1/parking/zones/demo:c:nope/history", headers=OP).status_code == 404
        assert http.get(url, params={"bucket": "7m"}, headers=OP).status_code == 422
        assert http.get("/v1/parking/zones/demo:c:lot/a").json()["free"] == 1  # the zone route still works


def test_overstays_are_kept_once_and_listed_for_operators(tmp_path: Path) -> None:
    cfg = SiteConfig(site="demo", api=ApiConfig(database_url=f"sqlite:///{tmp_path / 'o.db'}"))
    app = create_app(cfg, ingest=False, api_keys=f"operator:{OP['X-API-Key']}")
    with TestClient(app) as http:
        ingest = MqttIngest(
            app.state.store, MqttConfig(), site="demo"
        )  # the consumer's handling, without a broker
        t = utcnow()
        ev = OverstayEvent(
            site="demo",
            camera="c",
            event_id="demo:c:b:overstay:1",
            observed_at=t,
            zone_id="bay 7",
            lot="P1",
            since=t - timedelta(hours=3),
            dwell_s=10800.0,
            limit_s=7200.0,
        )
        topic = "cityeye/v1/demo/c/overstay"
        assert ingest.handle(topic, ev.model_dump_json().encode()).outcome is Outcome.APPLIED
        assert ingest.handle(topic, ev.model_dump_json().encode()).outcome is Outcome.DUPLICATE
        assert ingest.handle(topic, b'{"kind": "overstay"}').reason is Reason.SCHEMA
        (o,) = http.get("/v1/parking/overstays", headers=OP).json()["overstays"]
        assert (o["zone"], o["lot"], o["dwell_s"], o["limit_s"]) == ("demo:c:bay 7", "P1", 10800.0, 7200.0)
        assert http.get("/v1/parking/overstays", params={"lot": "P2"}, headers=OP).json()["overstays"] == []
        c = http.get("/v1/parking/overstays", params={"format": "csv"}, headers=OP)
        assert c.text.splitlines()[0].startswith("id,zone,site") and len(c.text.splitlines()) == 2
        assert http.get("/v1/parking/overstays").status_code == 401
