"""Schemathesis generates requests from the OpenAPI document: no input may cause a server error.

Bounded (a few examples per operation) so that it stays a quick check; the app is seeded with
zones, cameras and traffic so that the happy paths run too, and called with an admin key so the
operator and admin routes are explored, not just refused.
"""

from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path

import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from cityeye.api.app import create_app
from cityeye.api.store import Store, utcnow
from cityeye.config import ApiConfig, SiteConfig
from cityeye.events.schema import AreaState, LineCounts, OccupancyEvent, SpaceState, StatusEvent, TrafficEvent

ADMIN_KEY = "admin-key-0123456789abc"


def seeded_app() -> FastAPI:
    db = Path(tempfile.mkdtemp(prefix="cityeye-openapi-")) / "s.db"
    cfg = SiteConfig(site="demo", api=ApiConfig(database_url=f"sqlite:///{db}", rate_limit_per_s=0))
    app = create_app(cfg, ingest=False, api_keys=f"admin:{ADMIN_KEY}")
    store: Store = app.state.store
    store.migrate()
    now = utcnow()
    store.apply(
        OccupancyEvent(
            site="demo",
            camera="c1",
            event_id="e1",
            observed_at=now,
            zones=[
                SpaceState(id="s1", occupied=False, score=0.1, lat=16.0, lon=108.0, lot="L"),
                AreaState(id="a/1", vehicles=1, capacity=4, lat=16.001, lon=108.0),
            ],
        )
    )
    store.apply(StatusEvent(site="demo", camera="c1", event_id="s", observed_at=now, status="online"))
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=5)
    store.apply(
        TrafficEvent(
            site="demo",
            camera="t1",
            event_id="t",
            observed_at=now,
            bin_start=start,
            lines=[LineCounts(line_id="l", counts={"in": {"car": 2}})],
        )
    )
    app.state.index.refresh()
    return app


schema = schemathesis.openapi.from_asgi("/openapi.json", seeded_app()).exclude(path_regex=r".*/live$")


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_input_causes_a_server_error(case: schemathesis.Case) -> None:
    case.call_and_validate(headers={"X-API-Key": ADMIN_KEY}, checks=[not_a_server_error])
