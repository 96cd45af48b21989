"""Traffic counts and history roll-ups on SQLite and PostgreSQL; /v1/traffic/counts over real MQTT."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cityeye.api.app import create_app
from cityeye.api.store import ApplyResult, Store, utcnow
from cityeye.config import ApiConfig, MqttConfig, SiteConfig
from cityeye.events.schema import AreaState, LineCounts, OccupancyEvent, TrafficEvent
from tests.conftest import Broker
from tests.test_api_support import Edge, Postgres, postgres, settled, wait_for

__all__ = ["postgres"]

OP = {"X-API-Key": "operator-key-0123456789"}


def hour_start() -> datetime:
    return utcnow().replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)


def traffic(
    start: datetime, counts: dict[str, dict[str, int]], line: str = "l1", camera: str = "t1"
) -> TrafficEvent:
    return TrafficEvent(
        site="demo",
        camera=camera,
        event_id=f"demo:{camera}:traffic:{int(start.timestamp())}",
        observed_at=start + timedelta(seconds=60),
        bin_start=start,
        lines=[LineCounts(line_id=line, counts=counts)],  # type: ignore[arg-type]
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 't.db'}"
    else:
        pg: Postgres = request.getfixturevalue("postgres")
        url = pg.url()
    s = Store(url)
    s.migrate()
    yield s
    s.close()


def totals(store: Store, bucket_s: int, **kw: object) -> list[tuple[datetime, str | None, str | None, int]]:
    return [(p.start, p.direction, p.vclass, p.count) for p in store.traffic(bucket_s=bucket_s, **kw)]  # type: ignore[arg-type]


def test_a_resent_bin_replaces_and_the_rollups_follow(store: Store) -> None:
    h = hour_start()
    assert store.apply(traffic(h, {"in": {"car": 3, "motorcycle": 10}})) is ApplyResult.APPLIED
    assert (
        store.apply(traffic(h + timedelta(minutes=1), {"in": {"car": 1}, "out": {"bus": 2}}))
        is ApplyResult.APPLIED
    )
    assert store.apply(traffic(h + timedelta(minutes=20), {"in": {"car": 5}})) is ApplyResult.APPLIED
    # The edge restarted and re-sent minute 0 with what it counted then: replace, never add.
    assert store.apply(traffic(h, {"in": {"car": 4, "motorcycle": 9}})) is ApplyResult.APPLIED
    assert store.apply(traffic(h, {"in": {"car": 4, "motorcycle": 9}})) is ApplyResult.DUPLICATE

    assert totals(store, 60, line="demo:t1:l1") == [
        (h, None, None, 13),
        (h + timedelta(minutes=1), None, None, 3),
        (h + timedelta(minutes=20), None, None, 5),
    ]
    assert totals(store, 300) == [(h, None, None, 16), (h + timedelta(minutes=20), None, None, 5)]
    assert totals(store, 900) == [(h, None, None, 16), (h + timedelta(minutes=15), None, None, 5)]
    assert totals(store, 3600) == [(h, None, None, 21)]
    assert totals(store, 3600, by=["class"]) == [
        (h, None, "bus", 2),
        (h, None, "car", 10),
        (h, None, "motorcycle", 9),
    ]
    assert totals(store, 3600, by=["direction", "class"]) == [
        (h, "in", "car", 10),
        (h, "in", "motorcycle", 9),
        (h, "out", "bus", 2),
    ]
    assert totals(store, 3600, line="demo:t1:other") == []
    assert totals(store, 900, start=h + timedelta(minutes=15)) == [(h + timedelta(minutes=15), None, None, 5)]
    # A class that drops out of a re-sent bin goes back to zero in every resolution.
    store.apply(traffic(h + timedelta(minutes=1), {"in": {"car": 1}}))
    assert totals(store, 3600, by=["class"]) == [
        (h, None, "bus", 0),
        (h, None, "car", 10),
        (h, None, "motorcycle", 9),
    ]


def test_bins_older_than_the_minute_history_are_not_applied(store: Store) -> None:
    old = utcnow() - timedelta(days=3)
    assert (
        store.apply(traffic(old.replace(second=0, microsecond=0), {"in": {"car": 1}})) is ApplyResult.TOO_OLD
    )
    assert totals(store, 3600) == []


def test_retention_keeps_each_resolution_for_its_own_time(store: Store) -> None:
    now = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
    store.minute_retention = timedelta(days=400)
    for days in (1, 10, 100):
        t = now - timedelta(days=days)
        store.apply(traffic(t, {"in": {"car": 1}}), received_at=now)
        store.apply(
            OccupancyEvent(
                site="demo",
                camera="p",
                event_id=f"o{days}",
                observed_at=t,
                zones=[AreaState(id="a", vehicles=1, capacity=2)],
            ),
            received_at=now,
        )
    deleted = store.expire(minute_days=2, quarter_days=35, hour_days=400, now=now)
    # 1-minute rows of 10 and 100 days ago, 15-minute rows of 100 days ago; hourly rows all kept.
    assert deleted["traffic_counts"] == 3 and deleted["zone_stats"] == 3
    assert [p.count for p in store.traffic(bucket_s=60)] == [1]
    assert [p.count for p in store.traffic(bucket_s=900)] == [1, 1]
    assert [p.count for p in store.traffic(bucket_s=3600)] == [1, 1, 1]
    assert len(store.history("demo:p:a", bucket_s=3600)) == 3
    assert deleted["seen_events"] == 0  # received "now": still inside the deduplication window
    assert (
        store.expire(minute_days=2, quarter_days=35, hour_days=400, now=now + timedelta(days=3))[
            "seen_events"
        ]
        == 3
    )


def test_traffic_counts_over_mqtt_json_and_csv(mosquitto: Broker, tmp_path: Path) -> None:
    cfg = SiteConfig(
        site="demo",
        mqtt=MqttConfig(host=mosquitto.host, port=mosquitto.port),
        api=ApiConfig(database_url=f"sqlite:///{tmp_path / 'x.db'}"),
    )
    app = create_app(cfg, api_keys=f"operator:{OP['X-API-Key']}")
    with TestClient(app) as http:
        wait_for("subscription", lambda: app.state.ingest.stats().subscribed)
        edge = Edge(mosquitto)
        h = hour_start()
        try:
            for m in range(30):
                edge.event(
                    traffic(
                        h + timedelta(minutes=m), {"north": {"car": 2, "motorcycle": 3}, "south": {"car": 1}}
                    ),
                    wait=False,
                )
            edge.event(
                traffic(h, {"north": {"car": 2, "motorcycle": 3}, "south": {"car": 1}}), wait=False
            )  # replay
            edge.flush()
        finally:
            edge.close()
        wait_for("31 messages", lambda: settled(app.state.ingest) == 31)
        assert (app.state.ingest.stats().applied, app.state.ingest.stats().duplicates) == (30, 1)
        params = {"line_id": "demo:t1:l1", "from": (h - timedelta(hours=1)).isoformat(), "bucket": "15m"}
        body = http.get("/v1/traffic/counts", params=params, headers=OP).json()
        assert [(r["start"], r["count"]) for r in body["rows"]] == [
            (h.isoformat().replace("+00:00", "Z"), 90),
            ((h + timedelta(minutes=15)).isoformat().replace("+00:00", "Z"), 90),
        ]
        split = http.get(
            "/v1/traffic/counts", params={**params, "bucket": "1h", "by": "direction,class"}, headers=OP
        )
        assert [(r["direction"], r["vehicle_class"], r["count"]) for r in split.json()["rows"]] == [
            ("north", "car", 60),
            ("north", "motorcycle", 90),
            ("south", "car", 30),
        ]
        c = http.get("/v1/traffic/counts", params={**params, "format": "csv", "bucket": "5m"}, headers=OP)
        assert (
            c.headers["content-type"].startswith("text/csv")
            and "attachment" in c.headers["content-disposition"]
        )
        rows = list(csv.DictReader(io.StringIO(c.text)))
        assert len(rows) == 6 and {r["count"] for r in rows} == {"30"} and rows[0]["line_id"] == "demo:t1:l1"
        assert http.get("/v1/traffic/counts", params={"by": "colour"}, headers=OP).status_code == 422
        assert http.get("/v1/traffic/counts", params={"line_id": "l1"}, headers=OP).status_code == 422
        bad_span = {"from": h.isoformat(), "to": (h - timedelta(hours=1)).isoformat()}
        assert http.get("/v1/traffic/counts", params=bad_span, headers=OP).status_code == 422
        too_early = {"to": "0001-01-01T00:00:00Z"}  # the default window would start before year 1
        assert http.get("/v1/traffic/counts", params=too_early, headers=OP).status_code == 422


def test_lines_are_placed_where_the_newest_event_says(store: Store) -> None:
    h = hour_start()

    def placed(at: datetime, location: list[tuple[float, float]] | None) -> TrafficEvent:
        ev = traffic(at, {"in": {"car": 1}})
        line = ev.lines[0].model_copy(update={"location": location})
        return ev.model_copy(update={"lines": [line], "event_id": f"{ev.event_id}:{location}"})

    a = [(108.2, 16.05), (108.2005, 16.05)]
    b = [(108.2, 16.051), (108.2005, 16.051), (108.201, 16.0512)]  # the camera was re-calibrated
    store.apply(placed(h, None))
    assert store.line_locations() == {}
    store.apply(placed(h + timedelta(minutes=2), a))
    store.apply(placed(h + timedelta(minutes=5), b))
    store.apply(placed(h + timedelta(minutes=3), a))  # a late, older bin does not move it back
    assert store.line_locations() == {"demo:t1:l1": [list(v) for v in b]}
    with pytest.raises(ValueError, match="WGS84"):
        LineCounts(line_id="l", counts={}, location=[(16.05, 108.2), (16.05, 200.0)])
