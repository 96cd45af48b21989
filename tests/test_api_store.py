"""Store semantics on a real SQLite file: nearby filtering, idempotency, ordering rules."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from cityeye.api.geo import haversine_m
from cityeye.api.store import ApplyResult, Store, utcnow, zone_uid
from cityeye.events.schema import (
    AreaState,
    CameraHealth,
    CameraStatus,
    HealthEvent,
    OccupancyEvent,
    SpaceState,
    StatusEvent,
)

LAT, LON = 48.137, 11.575  # query point
M_PER_DEG_LAT = 111_195.0
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def north(metres: float) -> float:
    return LAT + metres / M_PER_DEG_LAT


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 'store.db'}")
    s.migrate()
    return s


def occupancy(
    event_id: str, zones: list[SpaceState | AreaState], *, camera: str = "cam1", at: datetime = T0
) -> OccupancyEvent:
    return OccupancyEvent(site="demo", camera=camera, event_id=event_id, observed_at=at, zones=zones)


def area(zid: str, metres_north: float | None, vehicles: int, capacity: int = 10) -> AreaState:
    lat = None if metres_north is None else north(metres_north)
    lon = None if metres_north is None else LON
    return AreaState(id=zid, vehicles=vehicles, capacity=capacity, lat=lat, lon=lon)


def test_sqlite_runs_in_wal_mode(store: Store, tmp_path: Path) -> None:
    assert store.ping()
    with sqlite3.connect(tmp_path / "store.db") as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_nearby_filters_by_radius_and_min_free_nearest_first(store: Store) -> None:
    store.apply(
        occupancy(
            "e1",
            [
                area("far", 1500, vehicles=0),  # outside 1 km
                area("full", 100, vehicles=10),  # inside but no free place
                area("mid", 600, vehicles=7),  # 3 free
                area("near", 200, vehicles=9),  # 1 free
                area("nowhere", None, vehicles=0),  # no coordinates: never nearby
            ],
        )
    )
    found = store.nearby(LAT, LON, 1000, min_free=1, limit=20)
    assert [n.zone.zone_id for n in found] == ["near", "mid"]
    assert [round(n.distance_m) for n in found] == [200, 600]
    assert (found[1].zone.free, found[1].zone.total) == (3, 10)
    assert found[0].zone.uid == "demo:cam1:near"

    assert [n.zone.zone_id for n in store.nearby(LAT, LON, 1000, min_free=2)] == ["mid"]
    assert [n.zone.zone_id for n in store.nearby(LAT, LON, 1000, min_free=0)] == ["full", "near", "mid"]
    assert [n.zone.zone_id for n in store.nearby(LAT, LON, 2000, min_free=1)] == ["near", "mid", "far"]
    assert [n.zone.zone_id for n in store.nearby(LAT, LON, 2000, min_free=1, limit=2)] == ["near", "mid"]
    assert store.nearby(LAT, LON, 150, min_free=1) == []


def test_nearby_uses_true_distance_not_the_box_corner(store: Store) -> None:
    # 900 m north and 900 m east is inside the 1 km box but ~1273 m away.
    dlon = 900 / (M_PER_DEG_LAT * 0.6677)  # cos(48.137°) ≈ 0.6677
    clat, clon = north(900), LON + dlon
    store.apply(occupancy("e1", [AreaState(id="corner", vehicles=0, capacity=5, lat=clat, lon=clon)]))
    assert float(haversine_m(LAT, LON, clat, clon)) > 1200
    assert store.nearby(LAT, LON, 1000) == []
    assert [n.zone.zone_id for n in store.nearby(LAT, LON, 1300)] == ["corner"]


def test_space_and_area_state(store: Store) -> None:
    store.apply(
        occupancy(
            "e1",
            [
                SpaceState(id="s1", occupied=True, score=0.9, lat=LAT, lon=LON, name="Bay 1", lot="L1"),
                SpaceState(id="s2", occupied=False, score=0.1, lat=LAT, lon=LON),
            ],
        )
    )
    s1 = store.zone(zone_uid("demo", "cam1", "s1"))
    s2 = store.zone("demo:cam1:s2")
    assert s1 is not None and s2 is not None
    assert (s1.free, s1.total, s1.occupied, s1.score, s1.name, s1.lot) == (0, 1, True, 0.9, "Bay 1", "L1")
    assert (s2.free, s2.occupied, s2.kind) == (1, False, "space")
    assert store.zone("demo:cam1:nope") is None


def test_duplicate_event_changes_nothing(store: Store) -> None:
    ev = occupancy("e1", [area("a", 0, vehicles=2)], at=utcnow())
    assert store.apply(ev) is ApplyResult.APPLIED
    before = store.zone("demo:cam1:a")
    assert store.apply(ev) is ApplyResult.DUPLICATE
    assert store.zone("demo:cam1:a") == before
    (point,) = store.history("demo:cam1:a", bucket_s=60)
    assert (point.samples, point.free_avg) == (1, 8)


def test_older_snapshot_does_not_override_current_state(store: Store) -> None:
    t0 = utcnow().replace(second=30, microsecond=0) - timedelta(hours=1)
    assert store.apply(occupancy("new", [area("a", 0, vehicles=2)], at=t0))
    assert store.apply(occupancy("old", [area("a", 0, vehicles=9)], at=t0 - timedelta(minutes=5)))
    z = store.zone("demo:cam1:a")
    assert z is not None
    assert (z.free, z.observed_at, z.event_id) == (8, t0, "new")
    # ...but it is real history, kept in observation order.
    assert [(p.start, p.free_avg) for p in store.history("demo:cam1:a", bucket_s=60)] == [
        (t0.replace(second=0) - timedelta(minutes=5), 1),
        (t0.replace(second=0), 8),
    ]
    assert store.apply(occupancy("newer", [area("a", 0, vehicles=4)], at=t0 + timedelta(seconds=10)))
    z = store.zone("demo:cam1:a")
    assert z is not None and z.free == 6


def test_timestamps_are_stored_as_utc(store: Store) -> None:
    cest = timezone(timedelta(hours=2))
    store.apply(occupancy("e1", [area("a", 0, vehicles=0)], at=datetime(2025, 6, 1, 14, 0, tzinfo=cest)))
    z = store.zone("demo:cam1:a")
    assert z is not None
    assert z.observed_at == datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    assert z.observed_at.utcoffset() == timedelta(0)


def test_status_applies_in_arrival_order_so_the_last_will_wins(store: Store) -> None:
    # The will is composed at connect time, so its timestamp is older than the online status.
    will = StatusEvent(site="demo", camera="cam1", event_id="w", observed_at=T0, status=CameraStatus.OFFLINE)
    online = StatusEvent(
        site="demo", camera="cam1", event_id="o", observed_at=T0 + timedelta(seconds=5), status="online"
    )
    store.apply(online)
    store.apply(will)
    (cam,) = store.cameras()
    assert (cam.site, cam.camera, cam.status) == ("demo", "cam1", "offline")
    assert cam.last_seen_at == T0 + timedelta(seconds=5)  # the will does not count as seeing the camera


def test_offline_camera_or_old_update_makes_zone_stale(store: Store) -> None:
    store.apply(occupancy("e1", [area("a", 0, vehicles=0)], at=T0), received_at=T0 + timedelta(seconds=30))
    z = store.zone("demo:cam1:a")
    assert z is not None
    assert z.is_stale(T0 + timedelta(seconds=119), stale_after_s=120) is False
    # Received 30 s late, but staleness counts from the frame time: stale 120 s after the frame.
    assert z.is_stale(T0 + timedelta(seconds=121), stale_after_s=120) is True
    # An edge clock running ahead must not keep a zone fresh: the arrival time bounds the age too.
    store.apply(
        occupancy("e2", [area("b", 0, vehicles=0)], camera="cam2", at=T0 + timedelta(hours=1)), received_at=T0
    )
    b = store.zone("demo:cam2:b")
    assert b is not None and b.is_stale(T0 + timedelta(seconds=121), stale_after_s=120) is True

    store.apply(StatusEvent(site="demo", camera="cam1", event_id="w", observed_at=T0, status="offline"))
    z = store.zone("demo:cam1:a")
    assert z is not None and z.camera_status == "offline"
    assert z.is_stale(T0 + timedelta(seconds=31), stale_after_s=120) is True


def test_health_keeps_the_newest_report(store: Store) -> None:
    def health(eid: str, at: datetime, fps: float) -> HealthEvent:
        h = CameraHealth(frames_received=10, frames_analysed=9, frames_dropped=1, reconnects=0, fps=fps)
        return HealthEvent(site="demo", camera="cam2", event_id=eid, observed_at=at, health=h)

    store.apply(health("h2", T0 + timedelta(seconds=10), 5.0))
    store.apply(health("h1", T0, 1.0))
    (cam,) = store.cameras()
    assert cam.health is not None and cam.health["fps"] == 5.0
    assert cam.health_at == T0 + timedelta(seconds=10)
    assert cam.status is None


def test_bad_database_urls_explain_themselves(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not an SQLAlchemy URL"):
        Store("no url at all")
    with pytest.raises(ValueError, match="does not exist"):
        Store(f"sqlite:///{tmp_path / 'missing' / 'x.db'}")
    with pytest.raises(ValueError, match="driver"):
        Store("nosuchdb://host/db")


def test_in_memory_sqlite_keeps_one_database(tmp_path: Path) -> None:
    s = Store("sqlite://")
    s.migrate()
    s.apply(occupancy("e1", [area("a", 0, vehicles=0)]))
    assert s.zone("demo:cam1:a") is not None
