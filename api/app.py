"""The HTTP face of the centre: drivers, operators, admins and the IOC, one router each.

``create_app`` is a factory, not a module-level app, so tests and the CLI each build one from a
site configuration; everything a route needs lives on ``app.state`` and reaches it through
dependencies. Public routes answer from the in-memory zone index (no database round trip), are
rate-limited per client and open to browsers (CORS); operator and admin routes need an API key
with that role on every request.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, MutableMapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cityeye import __version__
from cityeye.api import ngsi
from cityeye.api.auth import ENV_API_KEYS, KeyRing, Principal, Role, hash_key, is_loopback, new_key
from cityeye.api.index import Liveness, ZoneIndex, iso
from cityeye.api.ingest import Handled, MqttIngest, MqttProtocol, Outcome, shared_filter
from cityeye.api.live import KINDS, PUBLIC_KINDS, LiveFeed, camera_json
from cityeye.api.metrics import ApiMetrics
from cityeye.api.migrate import current, head
from cityeye.api.push import Pusher
from cityeye.api.store import RESOLUTIONS_S, Store, utcnow
from cityeye.config import SiteConfig
from cityeye.web.routes import mount_web

log = logging.getLogger(__name__)

MAX_RADIUS_M = 50_000
MAX_LIMIT = 200
BUCKETS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600}
DEFAULT_SPAN = timedelta(hours=24)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


# -- response models (the public contract; OpenAPI is generated from them) -------------------


class ParkingZone(BaseModel):
    id: str = Field(description="Zone id in the API: '<site>:<camera>:<zone_id>'.")
    zone_id: str = Field(description="Zone id as in the camera's zones file.")
    camera: str
    site: str
    lot: str | None
    name: str | None
    kind: Literal["space", "area"] = Field(description="A single marked space, or an area with a capacity.")
    vehicle: Literal["car", "motorcycle"] | None = Field(
        description="Vehicle type the zone is for; null: any."
    )
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


class LotOut(BaseModel):
    id: str = Field(description="'<site>:<lot>'.")
    site: str
    lot: str
    free: int = Field(description="Free places; a space seen by several cameras counts once.")
    total: int
    zones: int = Field(description="Distinct zones (lot + zone id) in the lot.")
    stale_zones: int = Field(description="Zones whose state is stale (counted with their last known state).")
    stale: bool = Field(description="True when every zone of the lot is stale.")
    cameras: list[str]
    lat: float | None = Field(description="Mean of the zone centroids.")
    lon: float | None
    updated_at: datetime


class LotsResponse(BaseModel):
    lots: list[LotOut]


class CameraOut(BaseModel):
    id: str = Field(description="'<site>:<camera>'.")
    site: str
    camera: str
    status: str | None = Field(description="Last status the camera (or its Last Will) reported.")
    detail: str | None
    online: bool = Field(
        description="False after an offline status/Last Will, or when silent for api.offline_after_intervals "
        "health intervals."
    )
    status_at: datetime | None
    last_seen_at: datetime | None = Field(description="Newest observation time of any event from the camera.")
    last_heard_at: datetime | None = Field(description="When the centre last received anything from it.")
    silent_s: float | None = Field(description="Seconds since last_heard_at.")
    fps: float | None = Field(description="Analysed frames per second (last health report).")
    last_frame_age_s: float | None = Field(description="Age of the newest frame at the last health report.")
    reconnects: int | None = Field(description="Stream reconnects since the worker started.")
    health: dict[str, Any] | None = Field(description="Last health report (frame counters, fps, errors).")
    health_at: datetime | None
    snapshot_at: datetime | None = Field(
        description="Frame time of the newest snapshot (GET /v1/cameras/{id}/snapshot); null: the camera "
        "sends none (its `snapshot:` setting is off)."
    )


class CamerasResponse(BaseModel):
    cameras: list[CameraOut]


class HistoryPointOut(BaseModel):
    start: datetime = Field(description="Bucket start (UTC).")
    samples: int = Field(description="Snapshots in the bucket.")
    free_avg: float
    free_min: int
    free_max: int
    total: int
    occupancy: float | None = Field(description="1 - free_avg / total; null when total is 0.")


class HistoryResponse(BaseModel):
    id: str
    bucket: str
    resolution_s: int = Field(description="Stored resolution the buckets were summed from.")
    start: datetime
    end: datetime
    points: list[HistoryPointOut]


class TrafficRow(BaseModel):
    line_id: str = Field(description="'<site>:<camera>:<line id>'.")
    start: datetime
    direction: str | None = Field(description="Set when by= includes direction.")
    vehicle_class: str | None = Field(description="Set when by= includes class.")
    count: int


class TrafficResponse(BaseModel):
    bucket: str
    start: datetime
    end: datetime
    by: list[str]
    rows: list[TrafficRow]


class KeyIn(BaseModel):
    name: str = Field(min_length=1, max_length=128, description="Who or what uses the key.")
    role: Role = Field(description="operator or admin.")


class KeyOut(BaseModel):
    id: int
    name: str
    role: str
    prefix: str = Field(description="First characters of the key, to recognise it.")
    created_at: datetime
    revoked_at: datetime | None


class NewKeyOut(KeyOut):
    key: str = Field(description="The key itself: shown once, stored only as a hash.")


class KeysResponse(BaseModel):
    keys: list[KeyOut]


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


class ReadyOut(BaseModel):
    ready: bool
    checks: dict[str, bool]
    problems: list[str]


# -- dependencies ------------------------------------------------------------------------------


async def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


async def get_index(request: Request) -> ZoneIndex:
    index: ZoneIndex = request.app.state.index
    return index


async def get_ingest(request: Request) -> MqttIngest | None:
    ingest: MqttIngest | None = request.app.state.ingest
    return ingest


async def get_config(request: Request) -> SiteConfig:
    cfg: SiteConfig = request.app.state.cfg
    return cfg


StoreDep = Annotated[Store, Depends(get_store)]
IndexDep = Annotated[ZoneIndex, Depends(get_index)]
IngestDep = Annotated[MqttIngest | None, Depends(get_ingest)]
ConfigDep = Annotated[SiteConfig, Depends(get_config)]

_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key (operator or admin).")
_bearer = HTTPBearer(auto_error=False, description="The API key as a bearer token.")
_key_query = APIKeyQuery(
    name="api_key", auto_error=False, description="The API key, for EventSource/WebSocket clients only."
)


def _authenticate(
    request: Request,
    header: Annotated[str | None, Depends(_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    query: Annotated[str | None, Depends(_key_query)],
) -> Principal | None:
    key = header or (bearer.credentials if bearer else None) or query
    ring: KeyRing = request.app.state.keys
    if key:
        who = ring.resolve(key)
        if who is None:
            raise HTTPException(
                401,
                "unknown or revoked API key; ask an admin for a key (X-API-Key header)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return who
    cfg: SiteConfig = request.app.state.cfg
    direct = not any(h in request.headers for h in ("x-forwarded-for", "forwarded", "x-real-ip"))
    client = request.client.host if request.client else None
    if cfg.api.loopback_operator and direct and is_loopback(client) and not ring.any_keys():
        return Principal(Role.OPERATOR, "loopback (no API keys configured)")
    return None


def require(role: Role) -> Callable[..., Principal]:
    def dep(who: Annotated[Principal | None, Depends(_authenticate)]) -> Principal:
        if who is None:
            raise HTTPException(
                401,
                f"this route needs an API key with role {role.value}: send it as X-API-Key "
                f"(keys come from {ENV_API_KEYS} or an admin's POST /v1/admin/keys)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not who.allows(role):
            raise HTTPException(403, f"this route needs role {role.value}; the key has role {who.role.value}")
        return who

    return dep


Operator = Annotated[Principal, Depends(require(Role.OPERATOR))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]


class RateLimiter:
    """Token bucket per client address; idle clients are forgotten (bounded memory)."""

    MAX_CLIENTS = 100_000

    def __init__(self, per_s: float, burst: int, trusted_proxies: list[str]) -> None:
        self.per_s = per_s
        self.burst = float(burst)
        self.trusted = set(trusted_proxies)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def client(self, request: Request) -> str:
        host = request.client.host if request.client else "?"
        if host in self.trusted:
            chain = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
            for h in reversed(chain):
                if h not in self.trusted:
                    return h
        return host

    def allow(self, key: str) -> float:
        """0 when allowed, else seconds until the next token."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.per_s)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                wait = 0.0
            else:
                self._buckets[key] = (tokens, now)
                wait = (1.0 - tokens) / self.per_s
            while len(self._buckets) > self.MAX_CLIENTS:
                self._buckets.popitem(last=False)
        return wait


def rate_limited(request: Request) -> None:
    limiter: RateLimiter | None = request.app.state.limiter
    if limiter is None:
        return
    wait = limiter.allow(limiter.client(request))
    if wait > 0:
        metrics: ApiMetrics = request.app.state.metrics
        metrics.rate_limited.inc()
        raise HTTPException(
            429,
            f"too many requests from this address; retry in {wait:.1f} s",
            headers={"Retry-After": str(max(1, round(wait + 0.5)))},
        )


def _json(data: Any, status: int = 200, media_type: str = "application/json") -> Response:
    return Response(json.dumps(data, separators=(",", ":")), status_code=status, media_type=media_type)


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _span(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """Naive times are UTC; the default window is the last 24 hours."""
    e = _utc(end) if end is not None else utcnow()
    try:
        s = _utc(start) if start is not None else e - DEFAULT_SPAN
    except OverflowError:
        raise HTTPException(
            422, f"to ({iso(e)}) is too early; give from and to between years 1 and 9999"
        ) from None
    if s >= e:
        raise HTTPException(422, f"from ({iso(s)}) must be before to ({iso(e)})")
    return s, e


def _wants_csv(request: Request, fmt: str) -> bool:
    return fmt == "csv" or (fmt == "auto" and "text/csv" in request.headers.get("accept", ""))


def _csv(rows: list[dict[str, Any]], columns: list[str], filename: str) -> Response:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r[k]) for k in columns})
    return Response(
        buf.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


FormatQ = Annotated[
    Literal["auto", "json", "csv"],
    Query(
        alias="format", description="csv for a spreadsheet export; auto: CSV when Accept asks for text/csv."
    ),
]


# -- routes ------------------------------------------------------------------------------------


class RateLimitedRoute(APIRoute):
    """Checks the public rate limit before the endpoint runs.

    A route class rather than a router dependency: FastAPI resolves a dependency through its
    solver on every request, which costs ``nearby`` (the route drivers hammer) more than its
    answer; here the check is one function call.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def limited(request: Request) -> Response:
            rate_limited(request)
            return await handler(request)

        return limited


parking = APIRouter(prefix="/v1/parking", tags=["parking (public)"], route_class=RateLimitedRoute)
operators = APIRouter(prefix="/v1", tags=["operators"])
admin = APIRouter(prefix="/v1/admin", tags=["admin"])
ngsi_router = APIRouter(prefix="/ngsi-ld/v1", tags=["NGSI-LD (IOC)"])
service = APIRouter(tags=["service"])


class ValidationErrorOut(BaseModel):
    detail: list[dict[str, Any]] = Field(description="One entry per problem: loc, msg, type.")


class NearbyQuery(BaseModel):
    """The query of /v1/parking/nearby, validated in one pydantic call.

    Drivers' most frequent question skips FastAPI's per-parameter machinery (measured at half
    the route's cost; benchmarks/api.py); the OpenAPI parameters are generated from this model
    and errors keep FastAPI's 422 shape (``loc: ["query", name]``).
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    lat: float = Field(
        ge=-90, le=90, allow_inf_nan=False, description="Latitude of the driver, WGS84 degrees."
    )
    lon: float = Field(
        ge=-180, le=180, allow_inf_nan=False, description="Longitude of the driver, WGS84 degrees."
    )
    radius_m: float = Field(
        default=1000,
        gt=0,
        le=MAX_RADIUS_M,
        allow_inf_nan=False,
        description=f"Search radius in metres (max {MAX_RADIUS_M}).",
    )
    min_free: int = Field(default=1, ge=0, description="Only zones with at least this many free places.")
    limit: int = Field(default=20, ge=1, le=MAX_LIMIT, description=f"At most this many (max {MAX_LIMIT}).")
    kind: Literal["space", "area"] | None = Field(
        default=None, description="Only marked spaces, or only areas."
    )
    vehicle: Literal["car", "motorcycle"] | None = Field(
        default=None, description="Only zones for this vehicle type (zones for any vehicle included)."
    )


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    out = []
    for name, prop_schema in schema["properties"].items():
        desc = prop_schema.pop("description", None)
        prop_schema.pop("title", None)
        out.append(
            {
                "name": name,
                "in": "query",
                "required": name in required,
                "description": desc,
                "schema": prop_schema,
            }
        )
    return out


@parking.get(
    "/nearby",
    response_model=NearbyResponse,
    responses={422: {"model": ValidationErrorOut, "description": "Invalid query parameter(s)"}},
    openapi_extra={"parameters": _query_parameters(NearbyQuery)},
)
async def nearby(request: Request) -> Response:
    """Parking zones with free places around a point, nearest first (from the in-memory index)."""
    try:
        q = NearbyQuery.model_validate(request.query_params)
    except ValidationError as exc:
        raise RequestValidationError(
            [
                {**e, "loc": ("query", *e["loc"])}
                for e in exc.errors(include_url=False, include_context=False, include_input=True)
            ]
        ) from None
    index: ZoneIndex = request.app.state.index
    body = index.snapshot.nearby_json(
        q.lat,
        q.lon,
        q.radius_m,
        utcnow(),
        min_free=q.min_free,
        limit=q.limit,
        kind=q.kind,
        vehicle=q.vehicle,
    )
    return Response(body, media_type="application/json")


@parking.get("/zones.geojson", responses={200: {"content": {"application/geo+json": {}}}})
async def zones_geojson(
    index: IndexDep,
    bbox: Annotated[
        str | None, Query(description="minLon,minLat,maxLon,maxLat: only zones inside (WGS84).")
    ] = None,
    lot: Annotated[str | None, Query(max_length=128, description="Only zones of this lot.")] = None,
) -> Response:
    """Every zone as a GeoJSON Feature at its centroid, with live free/total (for maps)."""
    box: tuple[float, float, float, float] | None = None
    if bbox is not None:
        try:
            parts = [float(p) for p in bbox.split(",")]
        except ValueError:
            parts = []
        if (
            len(parts) != 4
            or not all(-180 <= parts[i] <= 180 for i in (0, 2))
            or not all(-90 <= parts[i] <= 90 for i in (1, 3))
        ):
            raise HTTPException(422, "bbox must be minLon,minLat,maxLon,maxLat in WGS84 degrees")
        box = (parts[0], parts[1], parts[2], parts[3])
    snap = index.snapshot
    now = utcnow()
    features = []
    for uid in sorted(snap.zones):
        z = snap.zones[uid]
        if lot is not None and z.lot != lot:
            continue
        placed = z.lat is not None and z.lon is not None
        if box is not None and not (
            placed and box[0] <= z.lon <= box[2] and box[1] <= z.lat <= box[3]  # type: ignore[operator]
        ):
            continue
        props = index.zone_out(snap, uid, now)
        features.append(
            {
                "type": "Feature",
                "id": uid,
                "geometry": {"type": "Point", "coordinates": [z.lon, z.lat]} if placed else None,
                "properties": props,
            }
        )
    return _json({"type": "FeatureCollection", "features": features}, media_type="application/geo+json")


@parking.get("/lots", response_model=LotsResponse)
async def lots(
    index: IndexDep,
    site: Annotated[str | None, Query(max_length=128, description="Only lots of this site.")] = None,
) -> Response:
    """Free and total places per lot; a space covered by several cameras counts once."""
    found = [lot for lot in index.lots(index.snapshot, utcnow()) if site is None or lot["site"] == site]
    return _json({"lots": found})


@parking.get(
    "/live", response_class=StreamingResponse, responses={200: {"content": {"text/event-stream": {}}}}
)
async def parking_live(index: IndexDep, request: Request) -> StreamingResponse:
    """Server-Sent Events of zone and lot changes (events `zone`, `zone_removed`, `lot`), for maps."""
    feed: LiveFeed = request.app.state.live
    return _sse(feed, PUBLIC_KINDS)


def _sse(feed: LiveFeed, kinds: frozenset[str]) -> StreamingResponse:
    return StreamingResponse(
        feed.stream(kinds),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


# Registered before the public zone route: `{uid:path}` would otherwise swallow "/history".
@operators.get(
    "/parking/zones/{uid:path}/history",
    response_model=HistoryResponse,
    responses={200: {"content": {"text/csv": {}}}, 404: {"description": "Unknown zone id"}},
)
def zone_history(
    _who: Operator,
    store: StoreDep,
    request: Request,
    uid: Annotated[str, Path(description="Zone id ('<site>:<camera>:<zone>').")],
    start: Annotated[
        datetime | None, Query(alias="from", description="Start (ISO 8601; default to - 24 h).")
    ] = None,
    end: Annotated[datetime | None, Query(alias="to", description="End, exclusive (default now).")] = None,
    bucket: Annotated[Literal["1m", "5m", "15m", "1h"], Query(description="Bucket length.")] = "15m",
    fmt: FormatQ = "auto",
) -> Response:
    """Occupancy of one zone per bucket: free places on average, at least and at most."""
    s, e = _span(start, end)
    bucket_s = BUCKETS[bucket]
    points = store.history(uid, start=s, end=e, bucket_s=bucket_s)
    if not points and store.zone(uid) is None:
        raise HTTPException(404, f"no parking zone with id {uid!r}; ids are listed by /v1/parking/nearby")
    rows = [
        {
            "start": iso(p.start),
            "samples": p.samples,
            "free_avg": p.free_avg,
            "free_min": p.free_min,
            "free_max": p.free_max,
            "total": p.total,
            "occupancy": None if p.total == 0 else round(1 - p.free_avg / p.total, 4),
        }
        for p in points
    ]
    if _wants_csv(request, fmt):
        return _csv(rows, list(HistoryPointOut.model_fields), f"zone-history-{bucket}.csv")
    res = max(r for r in RESOLUTIONS_S if bucket_s % r == 0)
    return _json(
        {"id": uid, "bucket": bucket, "resolution_s": res, "start": iso(s), "end": iso(e), "points": rows}
    )


@operators.get(
    "/traffic/counts", response_model=TrafficResponse, responses={200: {"content": {"text/csv": {}}}}
)
def traffic_counts(
    _who: Operator,
    store: StoreDep,
    request: Request,
    line_id: Annotated[
        str | None,
        Query(max_length=400, description="'<site>:<camera>:<line id>'; all lines when absent."),
    ] = None,
    start: Annotated[
        datetime | None, Query(alias="from", description="Start (ISO 8601; default to - 24 h).")
    ] = None,
    end: Annotated[datetime | None, Query(alias="to", description="End, exclusive (default now).")] = None,
    bucket: Annotated[Literal["1m", "5m", "15m", "1h"], Query(description="Bucket length.")] = "15m",
    by: Annotated[
        str, Query(max_length=64, description="Comma-separated: class, direction (empty: totals per line).")
    ] = "",
    fmt: FormatQ = "auto",
) -> Response:
    """Vehicles crossing counting lines per bucket, optionally split by class and direction."""
    dims = [d.strip() for d in by.split(",") if d.strip()]
    bad = [d for d in dims if d not in ("class", "direction")]
    if bad:
        raise HTTPException(422, f"by={by!r}: unknown dimension(s) {bad}; use class, direction or both")
    if line_id is not None and line_id.count(":") < 2:
        raise HTTPException(422, f"line_id {line_id!r} must be '<site>:<camera>:<line id>'")
    s, e = _span(start, end)
    points = store.traffic(line=line_id, start=s, end=e, bucket_s=BUCKETS[bucket], by=dims)
    rows = [
        {
            "line_id": p.line,
            "start": iso(p.start),
            "direction": p.direction,
            "vehicle_class": p.vclass,
            "count": p.count,
        }
        for p in points
    ]
    if _wants_csv(request, fmt):
        return _csv(rows, list(TrafficRow.model_fields), f"traffic-{bucket}.csv")
    return _json({"bucket": bucket, "start": iso(s), "end": iso(e), "by": dims, "rows": rows})


class OverstayOut(BaseModel):
    id: str = Field(description="Event id of the overstay.")
    zone: str = Field(description="'<site>:<camera>:<zone id>' of the space.")
    site: str
    camera: str
    zone_id: str
    lot: str | None
    since: datetime = Field(description="When the vehicle arrived.")
    dwell_s: float = Field(description="Seconds occupied when reported.")
    limit_s: float = Field(description="The space's dwell limit.")
    observed_at: datetime


class OverstaysResponse(BaseModel):
    start: datetime
    end: datetime
    overstays: list[OverstayOut]


@operators.get(
    "/parking/overstays", response_model=OverstaysResponse, responses={200: {"content": {"text/csv": {}}}}
)
def overstays(
    _who: Operator,
    store: StoreDep,
    request: Request,
    start: Annotated[
        datetime | None, Query(alias="from", description="Start (ISO 8601; default to - 24 h).")
    ] = None,
    end: Annotated[datetime | None, Query(alias="to", description="End, exclusive (default now).")] = None,
    lot: Annotated[str | None, Query(max_length=128, description="Only spaces of this lot.")] = None,
    fmt: FormatQ = "auto",
) -> Response:
    """Spaces occupied past their dwell limit (reported once per stay by the edge), newest first."""
    s, e = _span(start, end)
    rows = [
        {
            "id": o.event_id,
            "zone": f"{o.site}:{o.camera}:{o.zone_id}",
            "site": o.site,
            "camera": o.camera,
            "zone_id": o.zone_id,
            "lot": o.lot,
            "since": iso(o.since),
            "dwell_s": o.dwell_s,
            "limit_s": o.limit_s,
            "observed_at": iso(o.observed_at),
        }
        for o in store.overstays(start=s, end=e, lot=lot)
    ]
    if _wants_csv(request, fmt):
        return _csv(rows, list(OverstayOut.model_fields), "overstays.csv")
    return _json({"start": iso(s), "end": iso(e), "overstays": rows})


@operators.get("/cameras", response_model=CamerasResponse)
async def cameras(_who: Operator, index: IndexDep) -> Response:
    """Every camera the centre has heard of: status, liveness, fps, last frame, reconnects."""
    snap = index.snapshot
    now = utcnow()
    return _json({"cameras": [camera_json(snap.cameras[k], index, now) for k in sorted(snap.cameras)]})


@operators.get(
    "/cameras/{camera_id}/snapshot",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}}, "description": "The newest frame the camera sent, as a JPEG."},
        404: {"description": "Unknown camera id, or the camera sends no snapshots."},
    },
)
def camera_snapshot(
    _who: Operator,
    store: StoreDep,
    camera_id: Annotated[str, Path(max_length=257, description="'<site>:<camera>', as in GET /v1/cameras.")],
) -> Response:
    """The camera's latest snapshot (edge setting `snapshot:`), with its frame time."""
    site, sep, camera = camera_id.partition(":")
    snap = store.camera_snapshot(site, camera) if sep else None
    if snap is None:
        raise HTTPException(
            404,
            f"no snapshot of camera {camera_id!r}: ids are '<site>:<camera>' (GET /v1/cameras), and the "
            "camera must have `snapshot:` set in its edge configuration",
        )
    return Response(
        snap.jpeg,
        media_type="image/jpeg",
        headers={
            "Cache-Control": "private, no-cache",
            "Last-Modified": format_datetime(snap.observed_at, usegmt=True),
            "X-Observed-At": iso(snap.observed_at) or "",
        },
    )


@operators.get(
    "/live", response_class=StreamingResponse, responses={200: {"content": {"text/event-stream": {}}}}
)
async def live(
    _who: Operator,
    request: Request,
    kinds: Annotated[
        str,
        Query(max_length=100, description="Comma-separated kinds: zone, zone_removed, lot, camera, traffic."),
    ] = "zone,zone_removed,lot,camera,traffic",
) -> StreamingResponse:
    """Server-Sent Events of every change (browsers: EventSource with ?api_key=)."""
    wanted = frozenset(k.strip() for k in kinds.split(",") if k.strip())
    if not wanted or not wanted <= KINDS:
        raise HTTPException(422, f"kinds={kinds!r}: choose from {sorted(KINDS)}")
    return _sse(request.app.state.live, wanted)


@service.get("/metrics", include_in_schema=False)
def metrics(_who: Operator, request: Request) -> Response:
    m: ApiMetrics = request.app.state.metrics
    index: ZoneIndex = request.app.state.index
    m.zones.set(len(index.snapshot.zones))
    m.index_age.set(index.age_s())
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)


@parking.get("/zones/{uid:path}", response_model=ZoneOut, responses={404: {"description": "Unknown zone id"}})
async def zone(
    index: IndexDep,
    uid: Annotated[
        str, Path(description="Zone id as returned by /v1/parking/nearby ('<site>:<camera>:<zone>').")
    ],
) -> Response:
    """Current state of one zone (zone ids may contain '/', hence the path converter)."""
    snap = index.snapshot
    out = index.zone_out(snap, uid, utcnow())
    if out is None:
        raise HTTPException(
            status_code=404,
            detail=f"no parking zone with id {uid!r}; ids have the form '<site>:<camera>:<zone_id>' "
            "and are listed by /v1/parking/nearby",
        )
    z = snap.zones[uid]
    return _json({**out, "occupied": z.occupied, "score": z.score})


# -- admin --------------------------------------------------------------------------------------


def _key_out(k: Any) -> dict[str, Any]:
    return {
        "id": k.id,
        "name": k.name,
        "role": k.role,
        "prefix": k.prefix,
        "created_at": iso(k.created_at),
        "revoked_at": iso(k.revoked_at),
    }


@admin.get("/keys", response_model=KeysResponse)
def list_keys(_who: Admin, store: StoreDep) -> Response:
    """API keys stored in the database (never the keys themselves)."""
    return _json({"keys": [_key_out(k) for k in store.api_keys()]})


@admin.post("/keys", response_model=NewKeyOut, status_code=201)
def create_key(_who: Admin, store: StoreDep, request: Request, body: KeyIn) -> Response:
    """Create a key; the answer is the only time the key is shown."""
    key = new_key()
    rec = store.add_key(body.name, body.role.value, hash_key(key), key[:10])
    request.app.state.keys.invalidate()
    log.info("admin %s created API key %d (%s, %s)", _who.name, rec.id, body.name, body.role.value)
    return _json({**_key_out(rec), "key": key}, status=201)


@admin.delete("/keys/{key_id}", response_model=KeyOut, responses={404: {"description": "Unknown key id"}})
def revoke_key(
    _who: Admin, store: StoreDep, request: Request, key_id: Annotated[int, Path(ge=1, le=2**62)]
) -> Response:
    """Revoke a key; it stops working on this replica at once, on others within seconds."""
    rec = store.revoke_key(key_id)
    if rec is None:
        raise HTTPException(404, f"no API key with id {key_id}; GET /v1/admin/keys lists them")
    request.app.state.keys.invalidate()
    log.info("admin %s revoked API key %d", _who.name, key_id)
    return _json(_key_out(rec))


# -- NGSI-LD -------------------------------------------------------------------------------------


def _ngsi_error(status: int, kind: str, detail: str) -> JSONResponse:
    return JSONResponse(
        {"type": f"https://uri.etsi.org/ngsi-ld/errors/{kind}", "title": kind, "detail": detail},
        status_code=status,
        media_type="application/json",
    )


@ngsi_router.get(
    "/entities",
    responses={
        200: {"content": {"application/ld+json": {}, "application/geo+json": {}}},
        400: {"description": "NGSI-LD BadRequestData"},
    },
)
def ngsi_entities(
    _who: Operator,
    index: IndexDep,
    store: StoreDep,
    request: Request,
    type: Annotated[
        str, Query(max_length=200, description="ParkingSpot, OffStreetParking or TrafficFlowObserved.")
    ],
    limit: Annotated[int, Query(ge=0, le=1000, description="Page size (NGSI-LD).")] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000, description="Page start (NGSI-LD).")] = 0,
    count: Annotated[bool, Query(description="Add the NGSILD-Results-Count header.")] = False,
) -> Response:
    """FIWARE Smart Data Models as NGSI-LD entities (JSON-LD; GeoJSON for Accept: application/geo+json)."""
    types = [t.strip() for t in type.split(",") if t.strip()]
    unknown = [t for t in types if t not in ngsi.TYPES]
    if not types or unknown:
        return _ngsi_error(
            400, "BadRequestData", f"type must be one of {', '.join(ngsi.TYPES)}; got {type!r}"
        )
    now = utcnow()
    found: list[dict[str, Any]] = []
    for t in types:
        found += ngsi.entities(t, index, store, now)
    page = found[offset : offset + limit]
    accept = request.headers.get("accept", "")
    headers = {"NGSILD-Results-Count": str(len(found))} if count else {}
    if "application/geo+json" in accept:
        body = {
            "type": "FeatureCollection",
            "features": [ngsi.geojson_feature(e) for e in page],
            "@context": ngsi.CONTEXT,
        }
        return Response(json.dumps(body), media_type="application/geo+json", headers=headers)
    if "application/ld+json" in accept:
        return Response(
            json.dumps([{**e, "@context": ngsi.CONTEXT} for e in page]),
            media_type="application/ld+json",
            headers=headers,
        )
    return Response(
        json.dumps(page), media_type="application/json", headers={**headers, "Link": ngsi.LINK_HEADER}
    )


# -- service ------------------------------------------------------------------------------------


def _counters(ingest: MqttIngest | None) -> tuple[IngestCounters, bool]:
    if ingest is None:
        return IngestCounters(enabled=False), False
    s = ingest.stats()
    return (
        IngestCounters(
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
        ),
        s.connected,
    )


@service.get("/healthz", response_model=HealthOut, responses={503: {"description": "Database not answering"}})
def healthz(store: StoreDep, ingest: IngestDep, response: Response) -> HealthOut:
    """Liveness for load balancers: 200 while the database answers; MQTT loss only degrades."""
    database = store.ping()
    counters, mqtt_ok = _counters(ingest)
    healthy = database and (ingest is None or mqtt_ok)
    response.status_code = 200 if database else 503
    return HealthOut(
        status="ok" if healthy else "degraded", database=database, mqtt_connected=mqtt_ok, ingest=counters
    )


@service.get("/readyz", response_model=ReadyOut, responses={503: {"model": ReadyOut}})
def readyz(
    store: StoreDep, ingest: IngestDep, index: IndexDep, cfg: ConfigDep, response: Response
) -> ReadyOut:
    """Readiness: database at the current schema, zone index caught up, MQTT subscribed (if ingesting)."""
    problems = []
    checks: dict[str, bool] = {"database": store.ping()}
    if not checks["database"]:
        problems.append("the database does not answer")
    else:
        rev = current(store.engine)
        checks["schema"] = rev == head()
        if not checks["schema"]:
            problems.append(f"database schema is at {rev}, the code needs {head()}: run `cityeye db upgrade`")
    checks["index"] = index.age_s() < max(10.0, 5 * cfg.api.index_refresh_s)
    if not checks["index"]:
        problems.append(f"the zone index has not caught up for {index.age_s():.0f} s")
    if ingest is not None:
        checks["mqtt"] = ingest.stats().subscribed
        if not checks["mqtt"]:
            problems.append(f"not subscribed at the MQTT broker {cfg.mqtt.host}:{cfg.mqtt.port}")
    ready = all(checks.values())
    response.status_code = 200 if ready else 503
    return ReadyOut(ready=ready, checks=checks, problems=problems)


@service.get("/livez")
async def livez() -> Response:
    """The process answers (no database, no index): the trivial baseline of benchmarks/api.py."""
    return _json({"status": "ok"})


_INDEX = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cityeye API</title></head>
<body>
<h1>cityeye API</h1>
<p>Site <code>{site}</code>, version {version}. Interactive documentation: <a href="/docs">/docs</a>
(<a href="/openapi.json">OpenAPI</a>).</p>
<p><strong><a href="/driver">Driver page</a></strong> (free spots near you) &middot;
<strong><a href="/operator">Operator dashboard</a></strong> (map, cameras, traffic)</p>
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
def index_page(cfg: ConfigDep) -> str:
    return _INDEX.format(site=cfg.site, version=__version__)


# -- middleware and factory ---------------------------------------------------------------------


class TimingMiddleware:
    """Request latency per route template (not per URL: zone ids would explode the label set)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def send_status(msg: Message) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = int(msg["status"])
            await send(msg)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(route, scope.get("method", ""), f"{status // 100}xx").observe(
                time.perf_counter() - t0
            )


class Maintenance:
    """Retention passes on a timer (every replica may run them: the deletes are idempotent)."""

    def __init__(self, store: Store, cfg: SiteConfig) -> None:
        self.store = store
        self.cfg = cfg.api.retention
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="retention", daemon=True)
        self.last: dict[str, int] | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def run_once(self) -> dict[str, int]:
        self.last = self.store.expire(
            minute_days=self.cfg.minute_days, quarter_days=self.cfg.quarter_days, hour_days=self.cfg.hour_days
        )
        if any(self.last.values()):
            log.info("retention: deleted %s", self.last)
        return self.last

    def _run(self) -> None:
        while not self._stop.wait(self.cfg.interval_s):
            try:
                self.run_once()
            except Exception as exc:
                log.warning("retention pass failed (retried in %.0f s): %s", self.cfg.interval_s, exc)


def create_app(
    cfg: SiteConfig,
    *,
    ingest: bool = True,
    topic_filter: str | None = None,
    share_group: str | None = None,
    mqtt_protocol: MqttProtocol | None = None,
    client_id: str | None = None,
    session_expiry_s: int = 0,
    api_keys: str | None = None,
) -> FastAPI:
    """Build the API for one site configuration.

    The store, key ring and share group are checked here so that a bad ``api.database_url``,
    a malformed ``CITYEYE_API_KEYS`` or share group fails at once with a clear message, before a
    server binds its port. The lifespan migrates the schema, loads the zone index and starts the
    consumer, and stops everything in reverse order.
    ``session_expiry_s`` > 0 with a fixed ``client_id`` makes the broker keep this consumer's
    messages while it restarts (see ``cityeye api --client-id``).
    """
    topic_filter = topic_filter or cfg.api.mqtt_topic_filter
    share_group = share_group or cfg.api.share_group
    protocol: MqttProtocol = mqtt_protocol or cfg.mqtt.protocol
    shared_filter(topic_filter, share_group)  # validate now; the consumer is built at startup
    store = Store(cfg.api.database_url)
    store.minute_retention = timedelta(days=cfg.api.retention.minute_days)
    keys = KeyRing(store, api_keys)
    metrics = ApiMetrics()
    liveness = Liveness(cfg.api.stale_after_s, cfg.api.offline_after_intervals * cfg.health_interval_s)
    index = ZoneIndex(store, liveness, cfg.api.index_refresh_s)
    feed = LiveFeed(index, metrics)
    index.listeners.append(feed.on_snapshot)
    index.tickers.append(feed.tick)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if cfg.api.migrate:
            store.migrate()
        elif (rev := current(store.engine)) != head():
            raise RuntimeError(
                f"database schema is at {rev}, this version needs {head()}: run `cityeye db upgrade "
                "--config ...` (or set api.migrate: true)"
            )
        index.start()
        pusher: Pusher | None = None
        if cfg.api.push is not None:
            pusher = Pusher(cfg.api.push, index, metrics)
            index.listeners.append(pusher.on_snapshot)
            pusher.start()
        maintenance = Maintenance(store, cfg)
        maintenance.start()
        app.state.maintenance = maintenance
        consumer: MqttIngest | None = None
        if ingest:

            def wake(h: Handled) -> None:
                if h.outcome is Outcome.APPLIED:
                    index.wake()

            consumer = MqttIngest(
                store,
                cfg.mqtt,
                site=cfg.site,
                topic_filter=topic_filter,
                share_group=share_group,
                protocol=protocol,
                client_id=client_id,
                session_expiry_s=session_expiry_s,
                listeners=[metrics.on_handled, wake],
            )
            consumer.start()
        app.state.ingest = consumer
        app.state.pusher = pusher
        try:
            yield
        finally:
            if consumer is not None:
                consumer.stop()
            if pusher is not None:
                pusher.stop()
            maintenance.stop()
            index.stop()
            store.close()

    app = FastAPI(
        title="cityeye API",
        version=__version__,
        description="Free parking near a point, lot totals, zone and traffic history, camera health and "
        "NGSI-LD entities for one cityeye site. Public routes need no key; operator and admin routes "
        "need an API key (X-API-Key or Authorization: Bearer).",
        lifespan=lifespan,
    )
    app.state.cfg = cfg
    app.state.store = store
    app.state.index = index
    app.state.live = feed
    app.state.keys = keys
    app.state.metrics = metrics
    app.state.ingest = None
    app.state.pusher = None
    app.state.limiter = (
        RateLimiter(cfg.api.rate_limit_per_s, cfg.api.rate_limit_burst, cfg.api.trusted_proxies)
        if cfg.api.rate_limit_per_s > 0
        else None
    )
    app.include_router(operators)  # first: its /parking/zones/{uid}/history precedes /parking/zones/{uid}
    app.include_router(parking)
    app.include_router(admin)
    app.include_router(ngsi_router)
    app.include_router(service)
    mount_web(app, cfg)  # operator and driver pages under /web/ (web/routes.py)
    if cfg.api.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=cfg.api.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["X-API-Key", "Authorization", "Content-Type", "Last-Event-ID"],
            expose_headers=["Retry-After", "NGSILD-Results-Count", "Link"],
            max_age=600,
        )
    app.add_middleware(TimingMiddleware, metrics=metrics)
    return app
