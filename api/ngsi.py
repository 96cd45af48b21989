"""NGSI-LD views of the live picture, as FIWARE Smart Data Models.

- ``ParkingSpot`` (dataModel.Parking): one per ``space`` zone; ``status`` free | occupied | unknown
  (unknown while the zone is stale), ``refParkingSite`` to its lot.
- ``OffStreetParking`` (dataModel.Parking): one per lot (spaces seen by several cameras counted
  once) and one per ``area`` zone without a lot; ``availableSpotNumber``, ``totalSpotNumber``.
- ``TrafficFlowObserved`` (dataModel.Transportation): one per counting line and direction, with
  the crossings of the newest 15-minute bucket as ``intensity`` and, for calibrated cameras, the
  line as a LineString ``location``.

Entity ids are URNs ``urn:ngsi-ld:<Type>:<site>:<camera or lot>:<id>``, percent-encoded where a
zone id holds characters a URN may not. Nothing here fetches the @context: it is only named.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from cityeye.api.index import Snapshot, ZoneIndex, iso
from cityeye.api.store import Store, ZoneRecord

CORE_CONTEXT = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
SDM_CONTEXT = "https://raw.githubusercontent.com/smart-data-models/dataModel.Parking/master/context.jsonld"
TRANSPORT_CONTEXT = (
    "https://raw.githubusercontent.com/smart-data-models/dataModel.Transportation/master/context.jsonld"
)
CONTEXT: list[str] = [SDM_CONTEXT, TRANSPORT_CONTEXT, CORE_CONTEXT]
LINK_HEADER = f'<{SDM_CONTEXT}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
TYPES = ("ParkingSpot", "OffStreetParking", "TrafficFlowObserved")
TRAFFIC_RES_S = 900


def urn(entity_type: str, *parts: str) -> str:
    return f"urn:ngsi-ld:{entity_type}:" + ":".join(quote(p, safe="-._~") for p in parts)


def prop(value: Any, observed_at: datetime | None = None) -> dict[str, Any]:
    p: dict[str, Any] = {"type": "Property", "value": value}
    if observed_at is not None:
        p["observedAt"] = iso(observed_at)
    return p


def point(lat: float | None, lon: float | None) -> dict[str, Any] | None:
    if lat is None or lon is None:
        return None
    return {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}


def lot_urn(site: str, lot: str) -> str:
    return urn("OffStreetParking", site, lot)


def parking_spot(z: ZoneRecord, stale: bool) -> dict[str, Any]:
    status = "unknown" if stale or z.occupied is None else ("occupied" if z.occupied else "free")
    e: dict[str, Any] = {
        "id": urn("ParkingSpot", z.site, z.camera, z.zone_id),
        "type": "ParkingSpot",
        "name": prop(z.name or z.zone_id),
        "status": prop(status, z.observed_at),
        "category": prop(["offStreet"] if z.lot else ["onStreet"]),
        "dataProvider": prop(f"cityeye:{z.site}:{z.camera}"),
    }
    loc = point(z.lat, z.lon)
    if loc is not None:
        e["location"] = loc
    if z.lot is not None:
        e["refParkingSite"] = {"type": "Relationship", "object": lot_urn(z.site, z.lot)}
    return e


def _parking_status(free: int, stale: bool) -> list[str]:
    if stale:
        return ["unknown"]
    return ["spacesAvailable"] if free > 0 else ["full"]


def off_street_parking(index: ZoneIndex, snap: Snapshot, now: datetime) -> list[dict[str, Any]]:
    out = []
    for lot in index.lots(snap, now):
        observed = datetime.fromisoformat(lot["updated_at"].replace("Z", "+00:00"))
        e: dict[str, Any] = {
            "id": lot_urn(lot["site"], lot["lot"]),
            "type": "OffStreetParking",
            "name": prop(lot["lot"]),
            "availableSpotNumber": prop(lot["free"], observed),
            "totalSpotNumber": prop(lot["total"]),
            "status": prop(_parking_status(lot["free"], lot["stale"]), observed),
            "occupancyDetectionType": prop(["singleSpaceDetection"]),
        }
        loc = point(lot["lat"], lot["lon"])
        if loc is not None:
            e["location"] = loc
        out.append(e)
    for z in sorted(snap.zones.values(), key=lambda z: z.uid):
        if z.kind != "area" or z.lot is not None:
            continue
        stale = index.liveness.zone_stale(z, snap.cameras.get((z.site, z.camera)), now)
        e = {
            "id": urn("OffStreetParking", z.site, z.camera, z.zone_id),
            "type": "OffStreetParking",
            "name": prop(z.name or z.zone_id),
            "availableSpotNumber": prop(z.free, z.observed_at),
            "totalSpotNumber": prop(z.total),
            "status": prop(_parking_status(z.free, stale), z.observed_at),
            "occupancyDetectionType": prop(["modelBased"]),
        }
        loc = point(z.lat, z.lon)
        if loc is not None:
            e["location"] = loc
        out.append(e)
    return out


def parking_spots(index: ZoneIndex, snap: Snapshot, now: datetime) -> list[dict[str, Any]]:
    return [
        parking_spot(z, index.liveness.zone_stale(z, snap.cameras.get((z.site, z.camera)), now))
        for z in sorted(snap.zones.values(), key=lambda z: z.uid)
        if z.kind == "space"
    ]


def traffic_flows(store: Store) -> list[dict[str, Any]]:
    out = []
    where = store.line_locations()
    for line, start, direction, count in store.latest_traffic(TRAFFIC_RES_S):
        site, camera, line_id = line.split(":", 2)
        end = start + timedelta(seconds=TRAFFIC_RES_S)
        out.append(
            {
                "id": urn("TrafficFlowObserved", site, camera, line_id, direction),
                "type": "TrafficFlowObserved",
                "name": prop(f"{line_id} ({direction})"),
                "intensity": prop(count, end),
                "dateObservedFrom": prop({"@type": "DateTime", "@value": iso(start)}),
                "dateObservedTo": prop({"@type": "DateTime", "@value": iso(end)}),
                "dateObserved": prop(f"{iso(start)}/{iso(end)}"),
                "laneDirection": prop(direction),
                "dataProvider": prop(f"cityeye:{site}:{camera}"),
            }
        )
        if line in where:  # the line itself, as the edge placed it through the camera's calibration
            out[-1]["location"] = {
                "type": "GeoProperty",
                "value": {"type": "LineString", "coordinates": where[line]},
            }
    return out


def entities(entity_type: str, index: ZoneIndex, store: Store, now: datetime) -> list[dict[str, Any]]:
    snap = index.snapshot
    if entity_type == "ParkingSpot":
        return parking_spots(index, snap, now)
    if entity_type == "OffStreetParking":
        return off_street_parking(index, snap, now)
    if entity_type == "TrafficFlowObserved":
        return traffic_flows(store)
    raise ValueError(entity_type)


def geojson_feature(entity: dict[str, Any]) -> dict[str, Any]:
    """NGSI-LD's GeoJSON representation: the entity's properties, its location as geometry."""
    loc = entity.get("location")
    props = {k: v for k, v in entity.items() if k not in ("id",)}
    return {
        "id": entity["id"],
        "type": "Feature",
        "geometry": loc["value"] if loc else None,
        "properties": props,
    }
