"""Zones of one camera, read from a GeoJSON FeatureCollection.

Occupancy is decided in the image, so every zone carries pixel coordinates; the map needs
lon/lat, so a zone also carries those whenever a calibration links the two. Files may be
written in either system. Which one is said by the collection's foreign member
``"cityeye:coordinates": "pixel" | "wgs84"`` rather than guessed from the numbers, because
small pixel values and lon/lat degrees overlap (a bay at x=40, y=12 is also a valid lon/lat).
Without that member the file is wgs84 when a calibration is given (the usual GIS export),
else pixel.

Feature rules: ``id`` (the feature's top-level id, else ``properties.id``; ints become
strings), ``properties.kind`` one of ``space`` (Polygon), ``area`` (Polygon, with integer
``properties.capacity``) or ``line`` (LineString). Optional ``properties.name`` and
``properties.lot``; for parking ``properties.vehicle`` (``car`` | ``motorcycle``: what the zone
is for; an area's capacity is then counted in that vehicle's places), ``max_dwell_s`` (overstay
limit of a space) and ``motorcycles_per_car`` (an area's two-wheelers per car place).

Within a lot, a space id names one physical bay: two cameras that both see bay 17 of lot X
call it 17 (and set ``lot: X``), so the centre counts it once (see ``zones/lots.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import numpy.typing as npt
import shapely

from cityeye.zones.calibration import Calibration, local_m_to_lonlat, lonlat_to_local_m

Array = npt.NDArray[np.float64]
ZoneKind = Literal["space", "area", "line"]
CoordinateSystem = Literal["pixel", "wgs84"]

COORDINATES_MEMBER = "cityeye:coordinates"
_GEOMETRY: dict[str, str] = {"space": "Polygon", "area": "Polygon", "line": "LineString"}


class ZoneError(ValueError):
    """A zones file that cannot be used; the message names the file, feature index and id."""


def _readonly(a: Array) -> Array:
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Zone:
    """One parking space, counted area or counting line of one camera.

    ``pixels`` is the polygon ring (without the closing vertex) or the line's vertices in
    image coordinates; ``lonlat`` the same vertices in WGS84 when known.
    """

    id: str
    kind: ZoneKind
    pixels: Array
    lonlat: Array | None = None
    capacity: int | None = None
    name: str | None = None
    lot: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def geometry(self) -> shapely.Geometry:
        """Prepared shapely geometry in pixels, built once: occupancy tests it every frame."""
        geom = shapely.LineString(self.pixels) if self.kind == "line" else shapely.Polygon(self.pixels)
        shapely.prepare(geom)
        return geom

    @cached_property
    def centroid_lonlat(self) -> tuple[float, float] | None:
        return centroid_lonlat(self)


def centroid_lonlat(zone: Zone) -> tuple[float, float] | None:
    """Centroid of the zone on the ground, (lon, lat), or None without geo-reference.

    Taken from the lon/lat polygon in a local metre plane, not from the pixel polygon: under
    perspective the pixel centroid is not the image of the ground centroid.
    """
    if zone.lonlat is None:
        return None
    ll = zone.lonlat
    origin = (float(ll[:, 0].mean()), float(ll[:, 1].mean()))
    en = lonlat_to_local_m(ll, origin)
    geom = shapely.LineString(en) if zone.kind == "line" else shapely.Polygon(en)
    c = geom.centroid
    lon, lat = local_m_to_lonlat(np.array([[c.x, c.y]]), origin)[0]
    return float(lon), float(lat)


class _Where:
    """Formats error locations: file, feature index and id."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __call__(self, index: int | None = None, zone_id: str | None = None) -> str:
        if index is None:
            return f"{self.source}: "
        who = f" (id {zone_id!r})" if zone_id is not None else ""
        return f"{self.source}: feature #{index}{who}: "


def _feature_id(feat: dict[str, Any], props: dict[str, Any], where: str) -> str:
    raw = feat.get("id")
    pid = props.get("id")
    if raw is None:
        raw = pid
    elif pid is not None and str(pid) != str(raw):
        raise ZoneError(f"{where}feature id {raw!r} and properties.id {pid!r} disagree; keep one of them")
    if raw is None:
        raise ZoneError(f'{where}has no id; give every feature "id" (or properties.id) unique in the file')
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise ZoneError(f"{where}id {raw!r} must be a string or an integer")
    zid = str(raw)
    if not zid or len(zid) > 128:
        raise ZoneError(f"{where}id {zid!r} must be 1 to 128 characters")
    return zid


def _coords(raw: object, where: str, what: str) -> Array:
    try:
        arr = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise ZoneError(f"{where}{what} coordinates are not a list of [x, y] numbers") from None
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise ZoneError(f"{where}{what} coordinates must be a list of [x, y] positions, got {arr.shape}")
    arr = arr[:, :2]  # GeoJSON allows an altitude; zones live on the ground plane
    if not np.isfinite(arr).all():
        raise ZoneError(f"{where}{what} has a non-finite coordinate")
    return np.ascontiguousarray(arr)


def _ring(raw: object, where: str) -> Array:
    if not isinstance(raw, list) or not raw:
        raise ZoneError(f"{where}Polygon coordinates must be a list of rings, the first being the outline")
    if len(raw) > 1:
        raise ZoneError(f"{where}Polygon has holes; zones must be simple outlines (split the zone instead)")
    ring = _coords(raw[0], where, "Polygon")
    if len(ring) >= 2 and np.array_equal(ring[0], ring[-1]):
        ring = ring[:-1]
    distinct = len(np.unique(ring, axis=0))
    if distinct < 3:
        raise ZoneError(f"{where}Polygon has {distinct} distinct point(s); it needs at least 3")
    return ring


def _check_polygon(pixels: Array, where: str) -> None:
    poly = shapely.Polygon(pixels)
    if not poly.is_valid:
        raise ZoneError(
            f"{where}polygon is not valid in image coordinates ({shapely.is_valid_reason(poly)}); "
            "list the corners in order around the outline, without crossing edges"
        )
    if poly.area <= 0:
        raise ZoneError(f"{where}polygon has zero area")


def parse_zones(
    data: object,
    source: str = "<zones>",
    calibration: Calibration | None = None,
    default_lot: str | None = None,
    coordinates: CoordinateSystem | None = None,
) -> list[Zone]:
    """Zones from a parsed GeoJSON FeatureCollection (see the module docstring for the rules).

    ``coordinates`` replaces the default for files that declare no coordinate system.
    """
    where = _Where(source)
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection":
        raise ZoneError(
            f'{where()}not a GeoJSON FeatureCollection (the top level needs "type": '
            '"FeatureCollection" and "features": [...])'
        )
    features = data.get("features")
    if not isinstance(features, list):
        raise ZoneError(f'{where()}"features" must be a list')
    declared = data.get(COORDINATES_MEMBER)
    if declared is not None and declared not in ("pixel", "wgs84"):
        raise ZoneError(f'{where()}"{COORDINATES_MEMBER}" is {declared!r}; use "pixel" or "wgs84"')
    system: CoordinateSystem = declared or coordinates or ("wgs84" if calibration is not None else "pixel")
    if system == "wgs84" and calibration is None:
        raise ZoneError(
            f"{where()}zones are in WGS84 lon/lat but no calibration was given; pass the camera's "
            f"calibration (--calibration CAL.json) or, for image coordinates, set "
            f'"{COORDINATES_MEMBER}": "pixel"'
        )

    zones: list[Zone] = []
    seen: dict[str, int] = {}
    for i, feat in enumerate(features):
        if not isinstance(feat, dict) or feat.get("type") != "Feature":
            raise ZoneError(f"{where(i)}not a GeoJSON Feature")
        props = feat.get("properties") or {}
        if not isinstance(props, dict):
            raise ZoneError(f"{where(i)}properties must be an object")
        zid = _feature_id(feat, props, where(i))
        at = where(i, zid)
        if zid in seen:
            raise ZoneError(f"{at}duplicate id, already used by feature #{seen[zid]}; ids must be unique")
        seen[zid] = i
        zones.append(_parse_feature(zid, feat, props, at, system, calibration, default_lot))
    return zones


def _parse_feature(
    zid: str,
    feat: dict[str, Any],
    props: dict[str, Any],
    at: str,
    system: CoordinateSystem,
    calibration: Calibration | None,
    default_lot: str | None,
) -> Zone:
    kind = props.get("kind")
    if kind not in _GEOMETRY:
        what = "has no properties.kind" if kind is None else f"has properties.kind {kind!r}"
        raise ZoneError(f'{at}{what}; use "space", "area" or "line"')
    geom = feat.get("geometry")
    gtype = geom.get("type") if isinstance(geom, dict) else None
    if not isinstance(geom, dict) or gtype != _GEOMETRY[kind]:
        raise ZoneError(f"{at}a {kind} needs a {_GEOMETRY[kind]} geometry, got {gtype or 'none'}")
    if kind == "line":
        coords = _coords(geom.get("coordinates"), at, "LineString")
        if len(np.unique(coords, axis=0)) < 2:
            raise ZoneError(f"{at}LineString needs at least 2 distinct points")
    else:
        coords = _ring(geom.get("coordinates"), at)

    capacity: int | None = None
    if kind == "area":
        capacity = props.get("capacity")
        if capacity is None:
            raise ZoneError(f"{at}an area needs properties.capacity (the number of vehicles it holds)")
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 0:
            raise ZoneError(f"{at}properties.capacity {capacity!r} must be a non-negative integer")

    _check_parking_properties(props, at)
    pixels, lonlat = _locate(coords, at, system, calibration)
    if kind != "line":
        _check_polygon(pixels, at)
    name = props.get("name")
    lot = props.get("lot", default_lot)
    return Zone(
        id=zid,
        kind=cast(ZoneKind, kind),
        pixels=_readonly(pixels),
        lonlat=None if lonlat is None else _readonly(lonlat),
        capacity=capacity,
        name=None if name is None else str(name),
        lot=None if lot is None else str(lot),
        properties=dict(props),
    )


def _check_parking_properties(props: dict[str, Any], at: str) -> None:
    """The optional parking properties are checked when the file is read, not when first used."""
    vehicle = props.get("vehicle")
    if vehicle is not None and vehicle not in ("car", "motorcycle"):
        raise ZoneError(f'{at}properties.vehicle {vehicle!r} must be "car" or "motorcycle" (or absent: any)')
    for key, least, what in (("max_dwell_s", 0.0, "> 0 (seconds)"), ("motorcycles_per_car", 1.0, ">= 1")):
        v = props.get(key)
        if v is None:
            continue
        number = isinstance(v, int | float) and not isinstance(v, bool) and bool(np.isfinite(v))
        if not number or v < least or v == 0:
            raise ZoneError(f"{at}properties.{key} {v!r} must be a number {what}")


def _locate(
    coords: Array, at: str, system: CoordinateSystem, calibration: Calibration | None
) -> tuple[Array, Array | None]:
    """(pixels, lon/lat or None) of a feature's vertices written in ``system``."""
    if calibration is None:
        return coords, None  # parse_zones refuses wgs84 without a calibration
    cal_name = calibration.source or "in use"
    if system == "pixel":
        lonlat = calibration.pixel_to_lonlat(coords)
        if not np.isfinite(lonlat).all():
            raise ZoneError(
                f"{at}reaches above the horizon of the calibration {cal_name}; "
                "no ground position exists there"
            )
        return coords, lonlat
    if (np.abs(coords[:, 0]) > 180).any() or (np.abs(coords[:, 1]) > 90).any():
        raise ZoneError(
            f"{at}coordinates are not lon/lat degrees (they look like pixels); set "
            f'"{COORDINATES_MEMBER}": "pixel" on the collection'
        )
    pixels = calibration.lonlat_to_pixel(coords)
    if not np.isfinite(pixels).all():
        raise ZoneError(
            f"{at}lies behind the camera of the calibration {cal_name}; "
            "check the zone and the calibration belong to the same camera"
        )
    return pixels, coords


def load_zones(
    path: str | Path, calibration: Calibration | None = None, default_lot: str | None = None
) -> list[Zone]:
    p = Path(path)
    if not p.exists() or p.is_dir():
        raise ZoneError(f"zones file {p} not found")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ZoneError(f"{p}: not valid JSON: {exc}") from None
    return parse_zones(data, source=str(p), calibration=calibration, default_lot=default_lot)


def zones_to_geojson(zones: list[Zone], coordinates: CoordinateSystem = "pixel") -> dict[str, Any]:
    """A FeatureCollection of ``zones`` that :func:`parse_zones` reads back to the same zones."""
    features: list[dict[str, Any]] = []
    for z in zones:
        if coordinates == "wgs84":
            if z.lonlat is None:
                raise ZoneError(f"zone {z.id!r} has no lon/lat; load the zones with a calibration first")
            pts = z.lonlat
        else:
            pts = z.pixels
        coords = pts.tolist()
        if z.kind == "line":
            geometry: dict[str, Any] = {"type": "LineString", "coordinates": coords}
        else:
            geometry = {"type": "Polygon", "coordinates": [[*coords, coords[0]]]}
        props = dict(z.properties)
        props["kind"] = z.kind
        props.pop("id", None)
        if z.capacity is not None:
            props["capacity"] = z.capacity
        for key, value in (("name", z.name), ("lot", z.lot)):
            if value is not None:
                props[key] = value
        features.append({"type": "Feature", "id": z.id, "properties": props, "geometry": geometry})
    return {"type": "FeatureCollection", COORDINATES_MEMBER: coordinates, "features": features}
