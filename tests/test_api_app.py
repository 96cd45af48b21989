"""HTTP contract of the API without MQTT (ingest off; events applied to the store directly)."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from cityeye.api.app import create_app
from cityeye.api.cli import register
from cityeye.api.store import Store
from cityeye.config import ApiConfig, MqttConfig, SiteConfig
from cityeye.events.schema import AreaState, CameraHealth, HealthEvent, OccupancyEvent, StatusEvent

LAT, LON = 48.137, 11.575
OPERATOR_KEY = "operator-key-0123456789"
OPERATOR = {"X-API-Key": OPERATOR_KEY}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    cfg = SiteConfig(site="demo", api=ApiConfig(database_url=f"sqlite:///{tmp_path / 'api.db'}"))
    with TestClient(create_app(cfg, ingest=False, api_keys=f"operator:{OPERATOR_KEY}")) as c:
        yield c


def store_of(client: TestClient) -> Store:
    store: Store = client.app.state.store  # type: ignore[attr-defined]
    return store


def seed(client: TestClient) -> None:
    now = datetime.now(UTC)
    store_of(client).apply(
        OccupancyEvent(
            site="demo",
            camera="cam1",
            event_id="e1",
            observed_at=now,
            zones=[AreaState(id="a", vehicles=1, capacity=3, lat=LAT + 0.001, lon=LON, lot="P1")],
        )
    )
    h = CameraHealth(frames_received=5, frames_analysed=5, frames_dropped=0, reconnects=1, fps=2.5)
    store_of(client).apply(HealthEvent(site="demo", camera="cam1", event_id="h1", observed_at=now, health=h))
    store_of(client).apply(
        StatusEvent(site="demo", camera="cam1", event_id="s1", observed_at=now, status="streaming")
    )
    client.app.state.index.refresh()  # type: ignore[attr-defined]  # the refresher would within 1 s


def test_nearby_answers_with_the_documented_fields(client: TestClient) -> None:
    seed(client)
    r = client.get("/v1/parking/nearby", params={"lat": LAT, "lon": LON})
    assert r.status_code == 200
    (zone,) = r.json()["results"]
    assert set(zone) >= {
        "id",
        "zone_id",
        "camera",
        "site",
        "lot",
        "name",
        "kind",
        "free",
        "total",
        "distance_m",
        "lat",
        "lon",
        "updated_at",
        "stale",
    }
    assert (zone["id"], zone["free"], zone["total"], zone["lot"]) == ("demo:cam1:a", 2, 3, "P1")
    assert zone["distance_m"] == 111.2  # 0.001° of latitude, rounded to 0.1 m
    assert zone["updated_at"].endswith("Z")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"lat": 91, "lon": 0}, "lat"),
        ({"lat": 0, "lon": -180.5}, "lon"),
        ({"lat": "north", "lon": 0}, "lat"),
        ({"lon": 0}, "lat"),
        ({"lat": 0, "lon": 0, "radius_m": 0}, "radius_m"),
        ({"lat": 0, "lon": 0, "radius_m": 50_001}, "radius_m"),
        ({"lat": 0, "lon": 0, "limit": 201}, "limit"),
        ({"lat": 0, "lon": 0, "limit": 0}, "limit"),
        ({"lat": 0, "lon": 0, "min_free": -1}, "min_free"),
        ({"lat": "nan", "lon": 0}, "lat"),
    ],
)
def test_bad_nearby_parameters_are_422_naming_the_parameter(
    client: TestClient, params: dict[str, object], field: str
) -> None:
    r = client.get("/v1/parking/nearby", params=params)
    assert r.status_code == 422, r.text
    (err,) = r.json()["detail"]
    assert err["loc"] == ["query", field]
    assert err["msg"]


def test_limits_at_the_edge_are_accepted(client: TestClient) -> None:
    params = {"lat": -90, "lon": 180, "radius_m": 50_000, "limit": 200, "min_free": 0}
    assert client.get("/v1/parking/nearby", params=params).json() == {"results": []}


def test_zone_and_unknown_zone(client: TestClient) -> None:
    seed(client)
    z = client.get("/v1/parking/zones/demo:cam1:a").json()
    assert (z["free"], z["occupied"], z["score"], z["stale"]) == (2, None, None, False)
    r = client.get("/v1/parking/zones/demo:cam1:nope")
    assert r.status_code == 404
    assert "demo:cam1:nope" in r.json()["detail"] and "<site>:<camera>:<zone_id>" in r.json()["detail"]


def test_cameras_lists_status_and_health(client: TestClient) -> None:
    assert client.get("/v1/cameras", headers=OPERATOR).json() == {"cameras": []}
    seed(client)
    (cam,) = client.get("/v1/cameras", headers=OPERATOR).json()["cameras"]
    assert (cam["site"], cam["camera"], cam["status"]) == ("demo", "cam1", "streaming")
    assert cam["health"]["fps"] == 2.5 and cam["health"]["reconnects"] == 1
    assert cam["last_seen_at"] is not None


def test_healthz_without_ingest(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    body = r.json()
    assert (body["status"], body["database"], body["mqtt_connected"]) == ("ok", True, False)
    assert body["ingest"]["enabled"] is False


def test_healthz_is_503_when_the_database_is_gone(tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    db_dir.mkdir()
    cfg = SiteConfig(api=ApiConfig(database_url=f"sqlite:///{db_dir / 'api.db'}"))
    with TestClient(create_app(cfg, ingest=False)) as c:
        assert c.get("/healthz").status_code == 200
        shutil.rmtree(db_dir)
        store_of(c).engine.dispose()  # drop pooled handles to the deleted file
        r = c.get("/healthz")
        assert r.status_code == 503
        assert (r.json()["status"], r.json()["database"]) == ("degraded", False)


def test_index_page_links_docs_and_routes(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    for link in ('href="/docs"', 'href="/healthz"', 'href="/v1/cameras"', "/v1/parking/nearby"):
        assert link in r.text
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/parking/nearby", "/v1/cameras", "/healthz"} <= set(paths)


def test_bad_share_group_and_database_url_fail_at_once(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shared-subscription group"):
        create_app(SiteConfig(api=ApiConfig(database_url=f"sqlite:///{tmp_path}/x.db")), share_group="a/b")
    with pytest.raises(ValueError, match="does not exist"):
        create_app(SiteConfig(api=ApiConfig(database_url=f"sqlite:///{tmp_path}/no/x.db")))


# -- the `cityeye api` command ------------------------------------------------------------------

DRIVER = """
import argparse, logging, sys
from cityeye.api.cli import register
parser = argparse.ArgumentParser(prog="cityeye")
register(parser.add_subparsers(dest="command"))
args = parser.parse_args(sys.argv[1:])
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
try:
    sys.exit(args.func(args))
except KeyboardInterrupt:  # as cityeye.cli.main: uvicorn re-raises the SIGINT after a graceful stop
    sys.exit(130)
"""
# The same register()/handler the `cityeye` dispatcher uses, without importing every other package's CLI.


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cityeye")
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_cli_serves_and_prints_its_url(tmp_path: Path) -> None:
    cfg = tmp_path / "site.yaml"
    cfg.write_text(f"site: demo\napi:\n  database_url: sqlite:///{tmp_path / 'cli.db'}\n")
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, "api", "--config", str(cfg), "--port", "0", "--no-ingest"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert m, f"no URL in {line!r}; stderr: {proc.stderr.read() if proc.poll() is not None else ''}"
        # The port is bound before the URL is printed: the kernel queues this until uvicorn serves.
        r = httpx.get(m.group(0) + "healthz", timeout=10)
        assert r.status_code == 200 and r.json()["database"] is True
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 130, err
    # uvicorn logged to stderr, and the lifespan ran to its end (consumer and store closed).
    assert "Application startup complete" in err and "Application shutdown complete" in err
    assert (tmp_path / "cli.db").exists()


def test_cli_rejects_a_busy_port(tmp_path: Path) -> None:
    from cityeye.cli import UsageError

    cfg = tmp_path / "site.yaml"
    cfg.write_text(f"api:\n  database_url: sqlite:///{tmp_path / 'cli.db'}\n")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        args = parse(["api", "--config", str(cfg), "--port", str(port), "--no-ingest"])
        with pytest.raises(UsageError, match=f"cannot listen on 127.0.0.1:{port}.*--port"):
            args.func(args)
    args = parse(["api", "--config", str(cfg), "--port", "70000", "--no-ingest"])
    with pytest.raises(UsageError, match="out of range"):
        args.func(args)


def test_readyz_says_what_is_missing(tmp_path: Path) -> None:
    from tests.conftest import free_port

    cfg = SiteConfig(
        site="demo",
        mqtt=MqttConfig(host="127.0.0.1", port=free_port()),  # nothing listens there
        api=ApiConfig(database_url=f"sqlite:///{tmp_path / 'r.db'}"),
    )
    with TestClient(create_app(cfg)) as c:
        r = c.get("/readyz")
        assert r.status_code == 503
        body = r.json()
        assert body["checks"] == {"database": True, "schema": True, "index": True, "mqtt": False}
        assert "not subscribed at the MQTT broker" in body["problems"][0]
        assert c.get("/livez").json() == {"status": "ok"}


def test_an_old_schema_without_migrate_refuses_to_start(tmp_path: Path) -> None:
    cfg = SiteConfig(site="demo", api=ApiConfig(database_url=f"sqlite:///{tmp_path / 'o.db'}", migrate=False))
    with pytest.raises(RuntimeError, match="cityeye db upgrade"), TestClient(create_app(cfg, ingest=False)):
        pass
