"""Scale-out and robustness with real Mosquitto: shared subscription, restart, fuzzed payloads."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from cityeye.api.app import create_app
from cityeye.api.ingest import MqttIngest
from cityeye.api.store import Store, utcnow
from cityeye.config import ApiConfig, MqttConfig, SiteConfig
from cityeye.events.schema import (
    AreaState,
    CameraHealth,
    HealthEvent,
    LineCounts,
    OccupancyEvent,
    SpaceState,
    TrafficEvent,
)
from tests.conftest import Broker
from tests.test_api_support import Edge, Postgres, deep_mosquitto, postgres, settled, wait_for

__all__ = ["deep_mosquitto", "postgres"]

LAT, LON = 16.06, 108.22


def config(broker: Broker, url: str) -> SiteConfig:
    return SiteConfig(
        site="demo",
        mqtt=MqttConfig(host=broker.host, port=broker.port),
        api=ApiConfig(database_url=url, index_refresh_s=0.2, rate_limit_per_s=0),
    )


def events(n_cameras: int, per_camera: int) -> list[OccupancyEvent | HealthEvent | TrafficEvent]:
    """A realistic mix: occupancy snapshots, health reports and per-minute traffic bins."""
    out: list[OccupancyEvent | HealthEvent | TrafficEvent] = []
    t0 = utcnow().replace(second=0, microsecond=0) - timedelta(hours=1)
    health = CameraHealth(frames_received=1, frames_analysed=1, frames_dropped=0, reconnects=0, fps=1.0)
    for c in range(n_cameras):
        cam = f"cam{c}"
        for i in range(per_camera):
            t = t0 + timedelta(seconds=10 * i)
            if i % 3 == 0:
                zones = [
                    SpaceState(
                        id=f"s{k}",
                        occupied=(i + k) % 2 == 0,
                        score=0.5,
                        lat=LAT + c * 1e-3,
                        lon=LON + k * 1e-4,
                        lot=f"lot{c}",
                    )
                    for k in range(5)
                ]
                out.append(
                    OccupancyEvent(
                        site="demo", camera=cam, event_id=f"{cam}:occ:{i}", observed_at=t, zones=zones
                    )
                )  # type: ignore[arg-type]
            elif i % 3 == 1:
                out.append(
                    HealthEvent(
                        site="demo", camera=cam, event_id=f"{cam}:h:{i}", observed_at=t, health=health
                    )
                )
            else:
                out.append(
                    TrafficEvent(
                        site="demo",
                        camera=cam,
                        event_id=f"{cam}:traffic:{i}",
                        observed_at=t,
                        bin_start=t0 + timedelta(minutes=i),
                        lines=[LineCounts(line_id="l", counts={"in": {"car": 1, "motorcycle": 2}})],
                    )
                )
    return out


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    pg: Postgres = request.getfixturevalue("postgres")
    return pg.url()


def test_two_replicas_on_one_shared_subscription_apply_each_event_once(
    mosquitto: Broker, db_url: str
) -> None:
    evs = events(n_cameras=6, per_camera=60)
    traffic_events = sum(isinstance(e, TrafficEvent) for e in evs)
    with ExitStack() as stack:
        apps = [
            create_app(config(mosquitto, db_url), share_group="api", client_id=f"replica-{i}")
            for i in range(2)
        ]
        clients = [stack.enter_context(TestClient(a)) for a in apps]
        ingests: list[MqttIngest] = [a.state.ingest for a in apps]
        for ing in ingests:
            wait_for("shared subscription", lambda ing=ing: ing.stats().subscribed)  # type: ignore[misc]
        edge = Edge(mosquitto)
        try:
            for e in evs:
                edge.event(e, wait=False)
            edge.flush()
        finally:
            edge.close()
        wait_for(f"{len(evs)} deliveries", lambda: sum(settled(i) for i in ingests) >= len(evs), timeout=60)
        stats = [i.stats() for i in ingests]
        assert sum(s.received for s in stats) == len(evs), "the broker delivered an event to both replicas"
        assert sum(s.applied for s in stats) == len(evs)
        assert all(s.applied > len(evs) // 10 for s in stats), (
            f"the load was not split: {[s.applied for s in stats]}"
        )
        assert sum(s.duplicates + s.errors + s.rejected_total for s in stats) == 0
        store: Store = apps[0].state.store
        assert store.seen_count() == len(evs) - traffic_events
        assert sum(p.count for p in store.traffic(bucket_s=3600)) == traffic_events * 3
        # Each replica answers drivers with what both applied (through its index, within a refresh).
        for c in clients:
            found = wait_for(
                "all 30 zones in nearby",
                lambda c=c: (
                    (
                        r := c.get(
                            "/v1/parking/nearby", params={"lat": LAT, "lon": LON, "min_free": 0, "limit": 200}
                        ).json()["results"]
                    )
                    and len(r) == 30
                    and r
                ),  # type: ignore[misc]
            )
            assert len({z["id"] for z in found}) == 30


def test_restart_loses_nothing_and_counts_nothing_twice(mosquitto: Broker, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'restart.db'}"
    evs = events(n_cameras=3, per_camera=30)
    first, second = evs[: len(evs) // 2], evs[len(evs) // 2 :]

    def api() -> Any:
        return create_app(config(mosquitto, url), client_id="api-restart", session_expiry_s=600)

    app = api()
    with TestClient(app):
        wait_for("subscription", lambda: app.state.ingest.stats().subscribed)
        edge = Edge(mosquitto)
        for e in first:
            edge.event(e, wait=False)
        edge.flush()
        wait_for("first half", lambda: settled(app.state.ingest) == len(first))
    # The API is down: the broker keeps its persistent session's messages.
    for e in second:
        edge.event(e, wait=False)
    edge.flush()
    for e in first[:20]:  # and an edge replay of events the centre already has
        edge.event(e, wait=False)
    edge.flush()
    edge.close()

    app = api()
    with TestClient(app):
        ingest: MqttIngest = app.state.ingest
        wait_for("queued messages and replays", lambda: settled(ingest) >= len(second) + 20, timeout=30)
        store: Store = app.state.store
        wait_for(
            "nothing more", lambda: store.seen_count() == sum(not isinstance(e, TrafficEvent) for e in evs)
        )
        s = ingest.stats()
        assert s.applied == len(second) and s.errors == 0 and s.rejected_total == 0
        # The replayed events and the retained snapshots re-sent on subscribe: duplicates, not counts.
        assert s.duplicates >= 20
        assert sum(p.count for p in store.traffic(bucket_s=3600)) == 3 * sum(
            isinstance(e, TrafficEvent) for e in evs
        )


def malformed(rng: random.Random, valid: dict[str, Any]) -> tuple[str, bytes, str]:
    """One bad message: (topic, payload, the reason the consumer must count)."""
    topic = "cityeye/v1/demo/cam0/occupancy"
    k = rng.randrange(10)
    if k == 0:
        noise = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 200)))
        return topic, b"{{" + noise, "bad_json"  # never valid JSON, whatever the noise
    if k == 1:
        text = json.dumps(valid)
        return topic, text[: rng.randrange(1, len(text) - 1)].encode(), "bad_json"
    if k == 2:
        return topic, json.dumps(rng.choice([1, "x", [1, 2], None, True, 3.5])).encode(), "schema"
    bad = json.loads(json.dumps(valid))
    if k == 3:
        del bad[rng.choice(["site", "camera", "event_id", "observed_at", "zones"])]
    elif k == 4:
        field, wrong = rng.choice(
            [
                (
                    "observed_at",
                    ["not a date", {"a": 1}, [None], "2025-13-01T00:00:00Z", "2025-01-01T00:00:00"],
                ),
                ("zones", [{"a": 1}, -1, "zones", [None]]),
                ("v", [2, 0, "1x", None]),
                ("event_id", [-1, "", None, "x" * 201]),
            ]
        )
        bad[field] = rng.choice(wrong)
    elif k == 5:
        bad[f"extra_{rng.randrange(1000)}"] = 1
    elif k == 6:
        z = bad["zones"][0]
        z[rng.choice(["capacity", "vehicles"])] = rng.choice([-5, "many", 1.5e300, None])
    elif k == 7:
        bad["zones"][0]["kind"] = rng.choice(["spot", "", 7])
    elif k == 8:
        bad["camera"] = "cam9"  # valid payload of another camera on cam0's topic
        return topic, json.dumps(bad).encode(), "topic_mismatch"
    else:
        return (
            f"cityeye/v1/demo/cam0/{rng.choice(['bogus', 'Occupancy', 'stats'])}",
            json.dumps(valid).encode(),
            "unknown_kind",
        )
    return topic, json.dumps(bad).encode(), "schema"


def test_ten_thousand_malformed_payloads_are_rejected_and_counted(
    deep_mosquitto: Broker, tmp_path: Path
) -> None:
    mosquitto = deep_mosquitto
    app = create_app(config(mosquitto, f"sqlite:///{tmp_path / 'fuzz.db'}"))
    valid = OccupancyEvent(
        site="demo",
        camera="cam0",
        event_id="ok",
        observed_at=utcnow(),
        zones=[AreaState(id="a", vehicles=1, capacity=4, lat=LAT, lon=LON)],
    ).model_dump(mode="json")
    rng = random.Random(7)
    bad = [malformed(rng, valid) for _ in range(10_000)]
    expected = Counter(reason for _, _, reason in bad)
    with TestClient(app) as http:
        ingest: MqttIngest = app.state.ingest
        wait_for("subscription", lambda: ingest.stats().subscribed)
        edge = Edge(mosquitto)
        try:
            for topic, payload, _ in bad:
                edge.raw(topic, payload, wait=False)
            edge.flush()
            wait_for("10,000 messages", lambda: settled(ingest) == 10_000, timeout=120)
            assert http.get("/healthz").json()["ingest"]["rejected"] == dict(expected)
            s = ingest.stats()
            assert (s.applied, s.errors, s.connected, s.rejected_total) == (0, 0, True, 10_000)
            # ... and the consumer is still up: the next valid event goes through.
            edge.raw("cityeye/v1/demo/cam0/occupancy", json.dumps(valid))
        finally:
            edge.close()
        wait_for("the valid event", lambda: ingest.stats().applied == 1)


def test_sigkill_mid_burst_loses_nothing_and_counts_nothing_twice(
    deep_mosquitto: Broker, tmp_path: Path
) -> None:
    """A real `cityeye api` process killed while it ingests: messages are acknowledged to the broker
    only after their batch is committed, so the restarted process gets the rest and the history
    (samples per zone, traffic sums) holds every event exactly once."""
    db = tmp_path / "kill.db"
    cfg = tmp_path / "site.yaml"
    cfg.write_text(
        f"site: demo\nmqtt:\n  host: 127.0.0.1\n  port: {deep_mosquitto.port}\n"
        f"api:\n  database_url: sqlite:///{db}\n  rate_limit_per_s: 0\n"
    )
    evs = events(n_cameras=10, per_camera=150)  # 1500 events: 500 snapshots of 5 zones, 500 bins
    snapshots = [e for e in evs if isinstance(e, OccupancyEvent)]
    bins = [e for e in evs if isinstance(e, TrafficEvent)]

    def start() -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cityeye",
                "api",
                "--config",
                str(cfg),
                "--port",
                "0",
                "--client-id",
                "api-kill",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "CITYEYE_API_KEYS": ""},
        )
        assert proc.stdout is not None
        m = re.search(r"http://[^/]+/", proc.stdout.readline())
        assert m, "cityeye api printed no URL"
        wait_for(
            "subscribed", lambda: httpx.get(m.group(0) + "readyz", timeout=5).status_code == 200, timeout=60
        )
        return proc

    def seen() -> int:
        if not db.exists():
            return 0
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
            return int(conn.execute("SELECT count(*) FROM seen_events").fetchone()[0])

    api = start()
    edge = Edge(deep_mosquitto)
    try:
        for e in evs:
            edge.event(e, wait=False)
        wait_for("part of the burst stored", lambda: seen() >= 100, timeout=60)
        api.send_signal(signal.SIGKILL)
        api.wait(timeout=10)
        stored_at_kill = seen()
        edge.flush()
        api = start()
        wait_for("every event", lambda: seen() == len(evs) - len(bins), timeout=120)
    finally:
        edge.close()
        api.terminate()
        api.wait(timeout=30)
    assert stored_at_kill < len(evs) - len(bins), "the kill came too late to test anything"
    with sqlite3.connect(db) as conn:
        samples = conn.execute("SELECT sum(samples) FROM zone_stats WHERE res_s = 3600").fetchone()[0]
        crossings = conn.execute("SELECT sum(count) FROM traffic_counts WHERE res_s = 3600").fetchone()[0]
    assert samples == 5 * len(snapshots), "a snapshot landed in the history twice (or not at all)"
    assert crossings == 3 * len(bins)
