"""The live picture in memory: every active zone and camera, with an STRtree for ``nearby``.

A driver's question must not cost a database round trip: the index answers ``nearby``, lot
totals and the zones GeoJSON from numpy arrays and a shapely STRtree over zone centroids. It
follows the database incrementally through the store's change revisions, so it also sees what
other API replicas wrote (within ``api.index_refresh_s``); this replica's own writes wake the
refresher at once. Readers get an immutable :class:`Snapshot`, swapped atomically, so requests
never lock against the refresher.
"""

from __future__ import annotations

import json as json_module
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely
from shapely import STRtree

from cityeye.api.geo import bounding_box, chord_distance_m, unit_vectors
from cityeye.api.store import CameraRecord, Store, ZoneRecord, utcnow

log = logging.getLogger(__name__)

_JSON_BOOL = {False: "false", True: "true"}
KIND_CODES = {"space": 0, "area": 1}
MIN_REFRESH_S = 0.2
VEHICLE_CODES = {None: 0, "car": 1, "motorcycle": 2}


def iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat().replace("+00:00", "Z")


def zone_json(z: ZoneRecord) -> dict[str, Any]:
    """The JSON fields every zone answer shares (precomputed once per change, not per request)."""
    return {
        "id": z.uid,
        "zone_id": z.zone_id,
        "camera": z.camera,
        "site": z.site,
        "lot": z.lot,
        "name": z.name,
        "kind": z.kind,
        "vehicle": z.vehicle,
        "free": z.free,
        "total": z.total,
        "lat": z.lat,
        "lon": z.lon,
        "observed_at": iso(z.observed_at),
        "updated_at": iso(z.updated_at),
    }


@dataclass(frozen=True, slots=True)
class Liveness:
    """When zones and cameras stop being trusted."""

    stale_after_s: float
    offline_after_s: float

    def camera_offline(self, cam: CameraRecord | None, now: datetime) -> bool:
        if cam is None:
            return False
        if cam.status == "offline":
            return True
        heard = cam.last_heard_at
        return heard is not None and (now - heard).total_seconds() > self.offline_after_s

    def stale_from(self, z: ZoneRecord, cam: CameraRecord | None) -> float:
        """Epoch seconds after which the zone's figure is stale: its last update plus
        ``stale_after_s``, or its camera's last message plus ``offline_after_s``, whichever comes
        first; -inf once the camera said offline. The one definition of staleness, kept per zone in
        each snapshot so nearby compares a single array."""
        if cam is not None and cam.status == "offline":
            return -math.inf
        t = z.last_update.timestamp() + self.stale_after_s
        if cam is not None and cam.last_heard_at is not None:
            t = min(t, cam.last_heard_at.timestamp() + self.offline_after_s)
        return t

    def zone_stale(self, z: ZoneRecord, cam: CameraRecord | None, now: datetime) -> bool:
        return now.timestamp() > self.stale_from(z, cam)


@dataclass(frozen=True)
class Snapshot:
    """Zones with coordinates as parallel arrays (``pos_*``), plus everything by id."""

    rev: int
    zones: dict[str, ZoneRecord]
    cameras: dict[tuple[str, str], CameraRecord]
    json: dict[str, dict[str, Any]]
    pos_uids: npt.NDArray[np.str_]
    pos_lat: npt.NDArray[np.float64]
    pos_lon: npt.NDArray[np.float64]
    pos_xyz: npt.NDArray[np.float64]
    """Unit vectors of the positions (:func:`unit_vectors`): distances without trigonometry."""
    pos_free: npt.NDArray[np.int64]
    pos_kind: npt.NDArray[np.int8]
    pos_vehicle: npt.NDArray[np.int8]
    pos_stale_at: npt.NDArray[np.float64]
    """:meth:`Liveness.stale_from` of each zone: a request compares one array with the clock."""
    pos_frag: list[str]
    """Each zone's JSON object without its closing brace: answers are joined, not re-encoded."""
    tree: STRtree | None
    built_at: float = field(default_factory=time.monotonic)

    @classmethod
    def build(
        cls,
        rev: int,
        zones: dict[str, ZoneRecord],
        cameras: dict[tuple[str, str], CameraRecord],
        json: dict[str, dict[str, Any]],
        prev: Snapshot | None,
        liveness: Liveness,
        frags: dict[str, str] | None = None,
    ) -> Snapshot:
        if frags is None:
            frags = {u: _frag(j) for u, j in json.items()}
        placed = sorted(u for u, z in zones.items() if z.lat is not None and z.lon is not None)
        lat = np.fromiter((zones[u].lat for u in placed), dtype=np.float64, count=len(placed))
        lon = np.fromiter((zones[u].lon for u in placed), dtype=np.float64, count=len(placed))
        uids = np.array(placed, dtype=np.str_) if placed else np.array([], dtype=np.str_)
        tree: STRtree | None
        if (
            prev is not None
            and np.array_equal(prev.pos_uids, uids)
            and np.array_equal(prev.pos_lat, lat)
            and np.array_equal(prev.pos_lon, lon)
        ):
            tree = prev.tree  # positions unchanged (the usual case): keep the tree
        else:
            tree = STRtree(shapely.points(lon, lat)) if placed else None
        return cls(
            rev=rev,
            zones=zones,
            cameras=cameras,
            json=json,
            pos_uids=uids,
            pos_lat=lat,
            pos_lon=lon,
            pos_xyz=unit_vectors(lat, lon).reshape(-1, 3),
            pos_free=np.fromiter((zones[u].free for u in placed), dtype=np.int64, count=len(placed)),
            pos_kind=np.fromiter(
                (KIND_CODES.get(zones[u].kind, 9) for u in placed), dtype=np.int8, count=len(placed)
            ),
            pos_vehicle=np.fromiter(
                (VEHICLE_CODES.get(zones[u].vehicle, 0) for u in placed), dtype=np.int8, count=len(placed)
            ),
            pos_stale_at=np.fromiter(
                (
                    liveness.stale_from(zones[u], cameras.get((zones[u].site, zones[u].camera)))
                    for u in placed
                ),
                dtype=np.float64,
                count=len(placed),
            ),
            pos_frag=[frags[u] for u in placed],
            tree=tree,
        )

    def nearby_json(
        self,
        lat: float,
        lon: float,
        radius_m: float,
        now: datetime,
        *,
        min_free: int = 1,
        limit: int = 20,
        kind: str | None = None,
        vehicle: str | None = None,
    ) -> str:
        """The ``{"results": [...]}`` body of /v1/parking/nearby, staleness computed vectorised."""
        idx, dist = self._nearby(lat, lon, radius_m, min_free, limit, kind, vehicle)
        if idx.size == 0:
            return '{"results":[]}'
        stale = self.pos_stale_at[idx] < now.timestamp()
        frag = self.pos_frag
        parts = [
            f'{frag[i]},"stale":{_JSON_BOOL[st]},"distance_m":{d!r}}}'
            for i, st, d in zip(idx.tolist(), stale.tolist(), dist.round(1).tolist(), strict=True)
        ]
        return '{"results":[' + ",".join(parts) + "]}"

    def _nearby(
        self,
        lat: float,
        lon: float,
        radius_m: float,
        min_free: int,
        limit: int,
        kind: str | None,
        vehicle: str | None,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        none = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64))
        if self.tree is None or limit <= 0:
            return none
        box = bounding_box(lat, lon, radius_m)
        parts = [self.tree.query(shapely.box(lo, box.min_lat, hi, box.max_lat)) for lo, hi in box.lon_ranges]
        idx = np.unique(np.concatenate(parts)) if len(parts) > 1 else parts[0]
        if idx.size == 0:
            return none
        keep = self.pos_free[idx] >= min_free
        if kind is not None:
            keep &= self.pos_kind[idx] == KIND_CODES.get(kind, -1)
        if vehicle is not None:
            v = self.pos_vehicle[idx]
            keep &= (v == 0) | (v == VEHICLE_CODES.get(vehicle, -1))
        idx = idx[keep]
        if idx.size == 0:
            return none
        dist = chord_distance_m(self.pos_xyz[idx], lat, lon)
        inside = dist <= radius_m
        idx, dist = idx[inside], dist[inside]
        # Nearest first; equal distances (zones of one lot share a centroid) by id, which is the
        # position order (``build`` sorts by uid), so ties sort on integers rather than strings.
        order = np.lexsort((idx, dist))[:limit]
        return idx[order].astype(np.int64), dist[order]

    def nearby(
        self,
        lat: float,
        lon: float,
        radius_m: float,
        *,
        min_free: int = 1,
        limit: int = 20,
        kind: str | None = None,
        vehicle: str | None = None,
    ) -> list[tuple[str, float]]:
        """(zone uid, distance) of matching zones within the radius, nearest first (ties by id)."""
        idx, dist = self._nearby(lat, lon, radius_m, min_free, limit, kind, vehicle)
        return [(str(self.pos_uids[i]), float(d)) for i, d in zip(idx.tolist(), dist.tolist(), strict=True)]


def _frag(j: dict[str, Any]) -> str:
    return json_module.dumps(j, separators=(",", ":"))[:-1]


class ZoneIndex:
    """Keeps a :class:`Snapshot` in step with the store; one refresher thread per API process."""

    def __init__(self, store: Store, liveness: Liveness, refresh_s: float = 1.0) -> None:
        self.store = store
        self.liveness = liveness
        self.refresh_s = refresh_s
        self._snap = Snapshot.build(0, {}, {}, {}, None, liveness)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.last_ok = time.monotonic()
        self.listeners: list[Callable[[Snapshot, Snapshot], None]] = []
        self.tickers: list[Callable[[Snapshot], None]] = []
        self._lots_cache: tuple[tuple[int, int, int], list[dict[str, Any]]] | None = None
        """Called after every refresh tick, changed or not (liveness that passes with time)."""

    @property
    def snapshot(self) -> Snapshot:
        return self._snap

    def refresh(self) -> bool:
        """Catch up with the database; True when something changed."""
        with self._lock:
            old = self._snap
            ch = self.store.changes_since(old.rev)
            self.last_ok = time.monotonic()
            if ch.rev == old.rev:
                return False
            zones = dict(old.zones)
            json = dict(old.json)
            if ch.rev < old.rev:  # the database was replaced (restored backup): start over
                zones, json = {}, {}
                ch = self.store.changes_since(0)
            for uid in ch.inactive:
                zones.pop(uid, None)
                json.pop(uid, None)
            for z in ch.zones:
                zones[z.uid] = z
                json[z.uid] = zone_json(z)
            cameras = dict(old.cameras)
            for c in ch.cameras:
                cameras[(c.site, c.camera)] = c
            frags = {u: f for u, f in zip(old.pos_uids.tolist(), old.pos_frag, strict=True) if u in json}
            for z in ch.zones:
                frags[z.uid] = _frag(json[z.uid])
            for u in json.keys() - frags.keys():
                frags[u] = _frag(json[u])
            new = Snapshot.build(ch.rev, zones, cameras, json, old, self.liveness, frags)
            self._snap = new
        for listener in self.listeners:
            try:
                listener(old, new)
            except Exception:
                log.exception("zone index listener failed")
        return True

    def wake(self) -> None:
        """This replica wrote something: refresh now rather than at the next tick."""
        self._wake.set()

    def start(self) -> None:
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="zone-index", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.refresh_s)
            # Under a stream of writes, wake-ups come faster than a refresh is worth: catch up at
            # most every MIN_REFRESH_S, so a busy ingest does not spend its CPU rebuilding arrays.
            if self._stop.wait(min(MIN_REFRESH_S, self.refresh_s)):
                return
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.refresh()
            except Exception as exc:  # database away: keep serving the last picture, marked by age
                log.warning("zone index: cannot refresh from the database: %s", exc)
                self._stop.wait(min(self.refresh_s * 5, 10))
            for ticker in self.tickers:
                try:
                    ticker(self._snap)
                except Exception:
                    log.exception("zone index ticker failed")

    # -- derived views ------------------------------------------------------------------------

    def zone_out(self, snap: Snapshot, uid: str, now: datetime) -> dict[str, Any] | None:
        z = snap.zones.get(uid)
        if z is None:
            return None
        cam = snap.cameras.get((z.site, z.camera))
        return {**snap.json[uid], "stale": self.liveness.zone_stale(z, cam, now)}

    def lots(self, snap: Snapshot, now: datetime) -> list[dict[str, Any]]:
        """Totals per (site, lot); a zone seen by several cameras counts once (its freshest report).

        O(zones): computed at most once per snapshot and second (staleness moves with the clock),
        so a page polling the lots of a 10,000-zone city does not redo it per request.
        """
        key = (snap.rev, id(snap), int(now.timestamp()))
        cached = self._lots_cache
        if cached is not None and cached[0] == key:
            return [dict(lot) for lot in cached[1]]
        out = self._lots(snap, now)
        self._lots_cache = (key, out)
        return [dict(lot) for lot in out]

    def _lots(self, snap: Snapshot, now: datetime) -> list[dict[str, Any]]:
        best: dict[tuple[str, str, str], tuple[bool, datetime, ZoneRecord]] = {}
        for z in snap.zones.values():
            if z.lot is None:
                continue
            stale = self.liveness.zone_stale(z, snap.cameras.get((z.site, z.camera)), now)
            key = (z.site, z.lot, z.zone_id)
            cur = best.get(key)
            # Prefer a fresh report over a stale one, then the newest.
            if cur is None or (not stale, z.last_update, z.updated_at) > (
                not cur[0],
                cur[1],
                cur[2].updated_at,
            ):
                best[key] = (stale, z.last_update, z)
        lots: dict[tuple[str, str], dict[str, Any]] = {}
        for (site, lot, _), (stale, _t, z) in best.items():
            acc = lots.setdefault(
                (site, lot),
                {
                    "id": f"{site}:{lot}",
                    "site": site,
                    "lot": lot,
                    "free": 0,
                    "total": 0,
                    "zones": 0,
                    "stale_zones": 0,
                    "cameras": set(),
                    "updated_at": z.updated_at,
                    "_lat": [],
                    "_lon": [],
                },
            )
            acc["free"] += z.free
            acc["total"] += z.total
            acc["zones"] += 1
            acc["stale_zones"] += int(stale)
            acc["cameras"].add(z.camera)
            acc["updated_at"] = max(acc["updated_at"], z.updated_at)
            if z.lat is not None and z.lon is not None:
                acc["_lat"].append(z.lat)
                acc["_lon"].append(z.lon)
        out = []
        for lot_key in sorted(lots):
            acc = lots[lot_key]
            la, lo = acc.pop("_lat"), acc.pop("_lon")
            acc["lat"] = round(float(np.mean(la)), 7) if la else None
            acc["lon"] = round(float(np.mean(lo)), 7) if lo else None
            acc["cameras"] = sorted(acc["cameras"])
            acc["stale"] = acc["stale_zones"] == acc["zones"]
            acc["updated_at"] = iso(acc["updated_at"])
            out.append(acc)
        return out

    def age_s(self) -> float:
        return time.monotonic() - self.last_ok

    def now(self) -> datetime:
        return utcnow()
