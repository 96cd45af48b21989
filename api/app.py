"""The HTTP face of the centre: drivers ask for free spots, operators for camera state.

``create_app`` is a factory, not a module-level app, so tests and the CLI each build one from a
site configuration; everything a route needs lives on ``app.state`` and reaches it through
dependencies, which is also where authentication will plug in (one router per audience).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from cityeye import __version__
from cityeye.api.ingest import MqttIngest, MqttProtocol, shared_filter
from cityeye.api.store import Store, ZoneRecord, utcnow
from cityeye.config import SiteConfig
from cityeye.web.routes import mount_web

log = logging.getLogger(__name__)

MAX_RADIUS_M = 50_000
MAX_LIMIT = 200


# -- response models (the public contract; OpenAPI is generated from them) -------------------


class ParkingZone(BaseModel):
    id: str = Field(description="Zone id in the API: '<site>:<camera>:<zone_id>'.")
    zone_id: str = Field(description="Zone id as in the camera's zones file.")
    camera: str
    site: str
    lot: str | None
    name: str | None
    kind: Literal["space", "area"] = Field(description="A single marked space, or an area with a capacity.")
    free: int = Field(description="Free places now.")
    total: int = Field(description="Places in the zone.")
    lat: float | None
    lon: float | None
    observed_at: datetime = Field(description="Frame time of the snapshot this state comes from (UTC).")
    updated_at: datetime = Field(description="When the centre stored that snapshot (UTC).")
    stale: bool = Field(
        description="True when the state is older than the site's stale_after_s or the camera is offline."
    )


class NearbyZoneOut(ParkingZone):
    distance_m: float = Field(description="Great-circle distance from the query point, metres.")


class NearbyResponse(BaseModel):
    results: list[NearbyZoneOut]


class ZoneOut(ParkingZone):
    occupied: bool | None = Field(description="Spaces only: whether a vehicle stands in it.")
    score: float | None = Field(description="Spaces only: evidence for occupancy, 0..1.")


class CameraOut(BaseModel):
    site: str
    camera: str
    status: str | None = Field(description="Last status the camera (or its Last Will) reported.")
    detail: str | None
    status_at: datetime | None
    last_seen_at: datetime | None = Field(description="Newest observation time of any event from the camera.")
    health: dict[str, Any] | None = Field(description="Last health report (frame counters, fps, errors).")
    health_at: datetime | None


class CamerasResponse(BaseModel):
    cameras: list[CameraOut]


class IngestCounters(BaseModel):
    enabled: bool
    received: int = 0
    applied: int = 0
    duplicates: int = 0
    rejected: dict[str, int] = Field(default_factory=dict)
    ignored: dict[str, int] = Field(default_factory=dict)
    errors: int = 0
    subscribed: bool = False
    connects: int = 0
    last_error: str | None = None


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"]
    database: bool
    mqtt_connected: bool
    ingest: IngestCounters


# -- dependencies ------------------------------------------------------------------------------


def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def get_ingest(request: Request) -> MqttIngest | None:
    ingest: MqttIngest | None = request.app.state.ingest
    return ingest


def get_config(request: Request) -> SiteConfig:
    cfg: SiteConfig = request.app.state.cfg
    return cfg


StoreDep = Annotated[Store, Depends(get_store)]
IngestDep = Annotated[MqttIngest | None, Depends(get_ingest)]
ConfigDep = Annotated[SiteConfig, Depends(get_config)]


def _zone_fields(z: ZoneRecord, now: datetime, stale_after_s: float) -> dict[str, Any]:
    return {
        "id": z.uid,
        "zone_id": z.zone_id,
        "camera": z.camera,
        "site": z.site,
        "lot": z.lot,
        "name": z.name,
        "kind": z.kind,
        "free": z.free,
        "total": z.total,
        "lat": z.lat,
        "lon": z.lon,
        "observed_at": z.observed_at,
        "updated_at": z.updated_at,
        "stale": z.is_stale(now, stale_after_s),
    }


# -- routes ------------------------------------------------------------------------------------

parking = APIRouter(prefix="/v1/parking", tags=["parking"])
operators = APIRouter(prefix="/v1", tags=["operators"])  # operator auth comes with its own issue
service = APIRouter(tags=["service"])


@parking.get("/nearby", response_model=NearbyResponse)
def nearby(
    store: StoreDep,
    cfg: ConfigDep,
    lat: Annotated[float, Query(ge=-90, le=90, description="Latitude of the driver, WGS84 degrees.")],
    lon: Annotated[float, Query(ge=-180, le=180, description="Longitude of the driver, WGS84 degrees.")],
    radius_m: Annotated[
        float, Query(gt=0, le=MAX_RADIUS_M, description=f"Search radius in metres (max {MAX_RADIUS_M}).")
    ] = 1000,
    min_free: Annotated[int, Query(ge=0, description="Only zones with at least this many free places.")] = 1,
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description=f"At most this many (max {MAX_LIMIT}).")
    ] = 20,
) -> NearbyResponse:
    """Parking zones with free places around a point, nearest first."""
    now = utcnow()
    found = store.nearby(lat, lon, radius_m, min_free=min_free, limit=limit)
    return NearbyResponse(
        results=[
            NearbyZoneOut(
                **_zone_fields(n.zone, now, cfg.api.stale_after_s), distance_m=round(n.distance_m, 1)
            )
            for n in found
        ]
    )


@parking.get("/zones/{uid:path}", response_model=ZoneOut, responses={404: {"description": "Unknown zone id"}})
def zone(
    store: StoreDep,
    cfg: ConfigDep,
    uid: Annotated[
        str, Path(description="Zone id as returned by /v1/parking/nearby ('<site>:<camera>:<zone>').")
    ],
) -> ZoneOut:
    """Current state of one zone (zone ids may contain '/', hence the path converter)."""
    z = store.zone(uid)
    if z is None:
        raise HTTPException(
            status_code=404,
            detail=f"no parking zone with id {uid!r}; ids have the form '<site>:<camera>:<zone_id>' "
            "and are listed by /v1/parking/nearby",
        )
    return ZoneOut(**_zone_fields(z, utcnow(), cfg.api.stale_after_s), occupied=z.occupied, score=z.score)


@operators.get("/cameras", response_model=CamerasResponse)
def cameras(store: StoreDep) -> CamerasResponse:
    """Every camera the centre has heard of, with its last status and health report."""
    return CamerasResponse(
        cameras=[
            CameraOut(
                site=c.site,
                camera=c.camera,
                status=c.status,
                detail=c.detail,
                status_at=c.status_at,
                last_seen_at=c.last_seen_at,
                health=c.health,
                health_at=c.health_at,
            )
            for c in store.cameras()
        ]
    )


@service.get("/healthz", response_model=HealthOut, responses={503: {"description": "Database not answering"}})
def healthz(store: StoreDep, ingest: IngestDep, response: Response) -> HealthOut:
    """Liveness for load balancers: 200 while the database answers; MQTT loss only degrades."""
    database = store.ping()
    if ingest is None:
        counters = IngestCounters(enabled=False)
        mqtt_ok = False
    else:
        s = ingest.stats()
        counters = IngestCounters(
            enabled=True,
            received=s.received,
            applied=s.applied,
            duplicates=s.duplicates,
            rejected=s.rejected,
            ignored=s.ignored,
            errors=s.errors,
            subscribed=s.subscribed,
            connects=s.connects,
            last_error=s.last_error,
        )
        mqtt_ok = s.connected
    healthy = database and (ingest is None or mqtt_ok)
    response.status_code = 200 if database else 503
    return HealthOut(
        status="ok" if healthy else "degraded", database=database, mqtt_connected=mqtt_ok, ingest=counters
    )


_INDEX = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cityeye API</title></head>
<body>
<h1>cityeye API</h1>
<p>Site <code>{site}</code>, version {version}. Interactive documentation: <a href="/docs">/docs</a>
(<a href="/openapi.json">OpenAPI</a>).</p>
<ul>
<li><a href="/v1/parking/nearby?lat=0&amp;lon=0&amp;radius_m=1000">
/v1/parking/nearby?lat=&amp;lon=&amp;radius_m=</a> &mdash; free parking near a point</li>
<li><code>/v1/parking/zones/&lt;id&gt;</code> &mdash; one zone</li>
<li><a href="/v1/cameras">/v1/cameras</a> &mdash; camera status and health</li>
<li><a href="/healthz">/healthz</a> &mdash; service health and ingest counters</li>
</ul>
</body></html>
"""


@service.get("/", response_class=HTMLResponse, include_in_schema=False)
def index(cfg: ConfigDep) -> str:
    return _INDEX.format(site=cfg.site, version=__version__)


# -- factory -----------------------------------------------------------------------------------


def create_app(
    cfg: SiteConfig,
    *,
    ingest: bool = True,
    topic_filter: str | None = None,
    share_group: str | None = None,
    mqtt_protocol: MqttProtocol | None = None,
) -> FastAPI:
    """Build the API for one site configuration.

    The store is created here so that a bad ``api.database_url`` or share group fails at
    once with a clear message, before a server binds its port; tables are created and the
    MQTT consumer started in the lifespan, and the consumer stopped before the store closes.
    """
    topic_filter = topic_filter or cfg.api.mqtt_topic_filter
    share_group = share_group or cfg.api.share_group
    protocol: MqttProtocol = mqtt_protocol or cfg.mqtt.protocol
    shared_filter(topic_filter, share_group)  # validate now; the consumer is built at startup
    store = Store(cfg.api.database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store.create_all()
        consumer: MqttIngest | None = None
        if ingest:
            consumer = MqttIngest(
                store,
                cfg.mqtt,
                site=cfg.site,
                topic_filter=topic_filter,
                share_group=share_group,
                protocol=protocol,
            )
            consumer.start()
        app.state.ingest = consumer
        try:
            yield
        finally:
            if consumer is not None:
                consumer.stop()
            store.close()

    app = FastAPI(
        title="cityeye API",
        version=__version__,
        description="Free parking near a point, zone state and camera health for one cityeye site.",
        lifespan=lifespan,
    )
    app.state.cfg = cfg
    app.state.store = store
    app.state.ingest = None
    app.include_router(parking)
    app.include_router(operators)
    app.include_router(service)
    mount_web(app, cfg)  # operator and driver pages under /web/ (web/routes.py)
    return app
