"""Roles on every non-public route, API keys (environment and admin-managed), rate limit and CORS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cityeye.api.app import create_app
from cityeye.api.auth import KeyConfigError, parse_env_keys
from cityeye.config import ApiConfig, SiteConfig

OP_KEY = "operator-key-0123456789"
ADMIN_KEY = "admin-key-0123456789abc"

PUBLIC = [
    "/v1/parking/nearby?lat=0&lon=0",
    "/v1/parking/lots",
    "/v1/parking/zones.geojson",
    "/healthz",
    "/readyz",
    "/livez",
    "/openapi.json",
]
OPERATOR_ROUTES = [
    "/v1/cameras",
    "/v1/traffic/counts",
    "/v1/parking/zones/demo:cam:a/history",
    "/ngsi-ld/v1/entities?type=ParkingSpot",
    "/metrics",
]
ADMIN_ROUTES = ["/v1/admin/keys"]


def make_client(tmp_path: Path, keys: str | None, **api: object) -> TestClient:
    cfg = SiteConfig(site="demo", api=ApiConfig(database_url=f"sqlite:///{tmp_path / 'r.db'}", **api))  # type: ignore[arg-type]
    return TestClient(create_app(cfg, ingest=False, api_keys=keys or ""))


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with make_client(tmp_path, f"operator:{OP_KEY},admin:{ADMIN_KEY}") as c:
        yield c


def test_public_routes_need_no_key(client: TestClient) -> None:
    for url in PUBLIC:
        assert client.get(url).status_code == 200, url


def test_operator_routes_refuse_without_a_key_or_with_a_wrong_one(client: TestClient) -> None:
    for url in OPERATOR_ROUTES + ADMIN_ROUTES:
        r = client.get(url)
        assert r.status_code == 401, url
        assert "X-API-Key" in r.json()["detail"] and r.headers["www-authenticate"] == "Bearer"
        bad = client.get(url, headers={"X-API-Key": "not-a-key-at-all-xxxx"})
        assert bad.status_code == 401 and "unknown or revoked" in bad.json()["detail"], url


def test_operator_key_opens_operator_routes_but_not_admin(client: TestClient) -> None:
    for url in OPERATOR_ROUTES:
        r = client.get(url, headers={"X-API-Key": OP_KEY})
        assert r.status_code in (200, 404), (url, r.text)  # 404: the history of an unknown zone
        assert client.get(url, headers={"Authorization": f"Bearer {OP_KEY}"}).status_code == r.status_code
    for url in ADMIN_ROUTES:
        r = client.get(url, headers={"X-API-Key": OP_KEY})
        assert r.status_code == 403 and "role admin" in r.json()["detail"]
    assert (
        client.post(
            "/v1/admin/keys", json={"name": "x", "role": "admin"}, headers={"X-API-Key": OP_KEY}
        ).status_code
        == 403
    )


def test_admin_manages_keys_stored_hashed(client: TestClient) -> None:
    admin = {"X-API-Key": ADMIN_KEY}
    for url in OPERATOR_ROUTES:
        assert client.get(url, headers=admin).status_code in (200, 404), url  # admin includes operator
    r = client.post("/v1/admin/keys", json={"name": "dashboard", "role": "operator"}, headers=admin)
    assert r.status_code == 201
    created = r.json()
    key = created["key"]
    assert created["role"] == "operator" and key.startswith(created["prefix"])
    assert client.get("/v1/cameras", headers={"X-API-Key": key}).status_code == 200
    listed = client.get("/v1/admin/keys", headers=admin).json()["keys"]
    assert [k["name"] for k in listed] == ["dashboard"] and "key" not in listed[0]
    assert client.delete(f"/v1/admin/keys/{created['id']}", headers=admin).json()["revoked_at"] is not None
    assert client.get("/v1/cameras", headers={"X-API-Key": key}).status_code == 401
    assert client.delete("/v1/admin/keys/999", headers=admin).status_code == 404
    bad = client.post("/v1/admin/keys", json={"name": "x", "role": "root"}, headers=admin)
    assert bad.status_code == 422


def test_api_key_in_the_query_for_event_source_clients(client: TestClient) -> None:
    assert client.get(f"/v1/cameras?api_key={OP_KEY}").status_code == 200


def test_loopback_is_trusted_only_while_no_key_exists(tmp_path: Path) -> None:
    # TestClient's client address is "testclient"; requests from 127.0.0.1 are made by giving it.
    with make_client(tmp_path, None) as c:
        local = TestClient(c.app, client=("127.0.0.1", 5000))
        assert local.get("/v1/cameras").status_code == 200
        assert local.get("/v1/admin/keys").status_code == 403  # never admin
        assert c.get("/v1/cameras").status_code == 401  # not loopback
        proxied = local.get("/v1/cameras", headers={"X-Forwarded-For": "203.0.113.9"})
        assert proxied.status_code == 401  # a proxy on this host forwards strangers
    with make_client(tmp_path, f"operator:{OP_KEY}") as c:
        local = TestClient(c.app, client=("127.0.0.1", 5000))
        assert local.get("/v1/cameras").status_code == 401
    with make_client(tmp_path, None, loopback_operator=False) as c:
        local = TestClient(c.app, client=("127.0.0.1", 5000))
        assert local.get("/v1/cameras").status_code == 401


def test_malformed_key_environment_is_a_clear_error() -> None:
    assert set(parse_env_keys(f"operator:{OP_KEY}, admin:{ADMIN_KEY}").values()) != set()
    with pytest.raises(KeyConfigError, match="'operator:KEY' or 'admin:KEY'"):
        parse_env_keys(f"root:{OP_KEY}")
    with pytest.raises(KeyConfigError, match="shorter than 16"):
        parse_env_keys("operator:short")


def test_public_routes_are_rate_limited_per_client(tmp_path: Path) -> None:
    with make_client(tmp_path, None, rate_limit_per_s=1.0, rate_limit_burst=3) as c:
        codes = [c.get("/v1/parking/lots").status_code for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        r = c.get("/v1/parking/lots")
        assert int(r.headers["retry-after"]) >= 1 and "too many requests" in r.json()["detail"]
        other = TestClient(c.app, client=("198.51.100.7", 1234))
        assert other.get("/v1/parking/lots").status_code == 200  # another address has its own bucket
        assert c.get("/healthz").status_code == 200  # service routes are not limited
        metrics = c.get("/metrics", headers={"X-API-Key": "x" * 20})
        assert metrics.status_code == 401


def test_cors_lets_browser_pages_call_public_and_keyed_routes(client: TestClient) -> None:
    r = client.get("/v1/parking/lots", headers={"Origin": "https://map.example"})
    assert r.headers["access-control-allow-origin"] == "*"
    pre = client.options(
        "/v1/cameras",
        headers={
            "Origin": "https://ops.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "X-API-Key",
        },
    )
    assert pre.status_code == 200
    assert "x-api-key" in pre.headers["access-control-allow-headers"].lower()


def test_cors_can_be_narrowed(tmp_path: Path) -> None:
    with make_client(tmp_path, None, cors_origins=["https://ops.example"]) as c:
        ok = c.get("/v1/parking/lots", headers={"Origin": "https://ops.example"})
        assert ok.headers["access-control-allow-origin"] == "https://ops.example"
        other = c.get("/v1/parking/lots", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
