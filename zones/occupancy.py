"""Occupancy of parking zones from one frame's vehicle detections (no memory across frames).

Rules (``OccupancyRule``):

- ``footprint`` (default): each vehicle is assigned to at most one space and each space takes at
  most one vehicle (an assignment, not "any vehicle touches it"):

  1. *Eligibility*: a vehicle may occupy a space when one of its reference points lies inside the
     space. The reference points are on the box's vertical centre line at ``lift`` (0.3) and
     ``lift ± spread`` (0.1) box heights above its bottom edge. Cameras look at lots obliquely:
     the bottom edge of a box is the near side of the car, which projects in front of the bay,
     while the footprint's centre sits higher in the image.
  2. *Size*: the box's linear size (square root of its area) must be within 1/3 and 3 times the
     space's; fragments of a car and boxes around a whole row are not vehicles of this bay.
     (Measured on the shared PKLot views, assigned boxes are 0.6 to 1.7 times their space.)
  3. *Assignment*: among eligible pairs, the one-to-one assignment that maximises the summed IoU
     between the vehicle's footprint (the lower ``footprint`` = 60 % of its box) and the space
     (Hungarian method, ``scipy.optimize.linear_sum_assignment``). Where a car's reference
     point strays into the bay in front (a car parked sideways in a steep view), the car
     still goes to the bay its footprint covers most, and the bay in front stays free.

- ``point[:LIFT]``: a space is occupied when any vehicle's reference point (bottom-centre raised
  by ``LIFT`` box heights) lies inside it; ``bottom`` is ``point:0``.
- ``overlap[:MIN]`` / ``overlap-box[:MIN]``: box ∩ space over the space's (or the box's) area, at
  least ``MIN``, one vehicle per space and one space per vehicle, assigned greedily.

The measured comparison (with zone-aware tiling, ``zones/tiling.py``) is in
``benchmarks/RESULTS.md``; on the shared PKLot frames ``footprint`` removes the false positives of
``point`` where a car's point falls into the neighbouring bay, and is otherwise equal to it.

The score of a space is the confidence of the vehicle assigned to it (``point``: the best one
inside), 0.0 when empty. Areas count the vehicles whose reference point (at ``lift``) lies
inside, whatever the space rule, split into cars (car, bus, truck) and two-wheelers
(motorcycle, bicycle); their ``used`` capacity counts a two-wheeler as 1/k of a car place
(k = ``motorcycles_per_car``), or a car as k places in a motorcycle area (zone property
``vehicle: motorcycle``). Lines are for traffic counting and are skipped here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np
import numpy.typing as npt
import shapely
from scipy.optimize import linear_sum_assignment

from cityeye.events.schema import AreaState, SpaceState
from cityeye.vision.detections import Detections
from cityeye.zones.model import Zone

ZoneStateT = SpaceState | AreaState
RuleMethod = Literal["footprint", "point", "overlap"]
TWO_WHEELERS: tuple[str, ...] = ("motorcycle", "bicycle")
DEFAULT_MOTORCYCLES_PER_CAR = 4.0


@dataclass(frozen=True, slots=True)
class OccupancyRule:
    method: RuleMethod = "footprint"
    lift: float = 0.3
    """Fraction of the box height above its bottom edge where the reference point sits."""
    min_overlap: float = 0.3
    """overlap: least intersection share for a vehicle to occupy a space."""
    normalise: Literal["space", "box"] = "space"
    """overlap: divide the intersection by the space's area or by the box's area."""
    footprint: float = 0.6
    """footprint: lower share of the box height taken as the vehicle's footprint."""
    spread: float = 0.1
    """footprint: the reference points are at lift - spread, lift and lift + spread."""
    size_range: tuple[float, float] = (1 / 3, 3.0)
    """footprint: allowed box size over space size (square roots of the areas)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.lift <= 1.0:
            raise ValueError(f"rule lift {self.lift} must be within 0..1 (a fraction of the box height)")
        if not 0.0 < self.min_overlap <= 1.0:
            raise ValueError(f"rule min_overlap {self.min_overlap} must be within (0, 1]")
        if not 0.0 < self.footprint <= 1.0:
            raise ValueError(f"rule footprint {self.footprint} must be within (0, 1]")
        lo, hi = self.size_range
        if not 0.0 < lo < 1.0 < hi:
            raise ValueError(f"rule size_range {self.size_range} must be (low < 1 < high), e.g. (1/3, 3)")

    @classmethod
    def parse(cls, text: str) -> OccupancyRule:
        """``footprint[:LIFT]``, ``bottom``, ``point[:LIFT]``, ``overlap[:MIN]`` or ``overlap-box[:MIN]``."""
        name, _, arg = text.strip().partition(":")
        try:
            value = float(arg) if arg else None
        except ValueError:
            raise ValueError(f"rule {text!r}: {arg!r} is not a number") from None
        if name == "footprint":
            return cls() if value is None else cls(lift=value)
        if name == "bottom" and value is None:
            return cls(method="point", lift=0.0)
        if name == "point":
            return cls(method="point") if value is None else cls(method="point", lift=value)
        if name in ("overlap", "overlap-box"):
            norm: Literal["space", "box"] = "box" if name == "overlap-box" else "space"
            if value is None:
                return cls(method="overlap", normalise=norm)
            return cls(method="overlap", min_overlap=value, normalise=norm)
        raise ValueError(
            f"unknown occupancy rule {text!r}; use footprint[:LIFT], bottom, point[:LIFT], "
            "overlap[:MIN] or overlap-box[:MIN]"
        )

    def __str__(self) -> str:
        if self.method == "footprint":
            return "footprint" if self.lift == 0.3 else f"footprint:{self.lift:g}"
        if self.method == "point":
            return "bottom" if self.lift == 0 else f"point:{self.lift:g}"
        prefix = "overlap" if self.normalise == "space" else "overlap-box"
        return f"{prefix}:{self.min_overlap:g}"


DEFAULT_RULE = OccupancyRule()


def reference_points(dets: Detections, lift: float) -> npt.NDArray[np.float64]:
    """Ground-contact points raised by ``lift`` box heights (see the module docstring)."""
    pts = dets.ground_points().astype(np.float64)
    if lift:
        pts[:, 1] -= lift * (dets.xyxy[:, 3] - dets.xyxy[:, 1])
    return pts


@dataclass(frozen=True, slots=True)
class Observation:
    """One frame's evidence per zone, in the judge's zone order (before any temporal filter)."""

    occupied: npt.NDArray[np.bool_]
    """Spaces: a vehicle was assigned; areas: at least one vehicle inside."""
    score: npt.NDArray[np.float64]
    vehicle: npt.NDArray[np.intp]
    """Index into ``vehicles`` of the vehicle assigned to each space, -1 for none (and areas)."""
    cars: npt.NDArray[np.int64]
    """Cars, buses and trucks whose reference point lies inside the zone."""
    two_wheelers: npt.NDArray[np.int64]
    vehicles: Detections


class OccupancyJudge:
    """Judges one camera's zones frame after frame; the geometry index is built once."""

    def __init__(
        self,
        zones: Sequence[Zone],
        rule: OccupancyRule = DEFAULT_RULE,
        motorcycles_per_car: float = DEFAULT_MOTORCYCLES_PER_CAR,
    ) -> None:
        if motorcycles_per_car < 1:
            raise ValueError(f"motorcycles_per_car {motorcycles_per_car} must be at least 1")
        self.rule = rule
        self.motorcycles_per_car = motorcycles_per_car
        self.zones = [z for z in zones if z.kind != "line"]
        self._polys = np.array([z.geometry for z in self.zones], dtype=object)
        self._areas = shapely.area(self._polys) if len(self._polys) else np.zeros(0)
        self._tree = shapely.STRtree(self._polys)
        self._is_space = np.array([z.kind == "space" for z in self.zones], dtype=bool)

    def __call__(self, dets: Detections) -> list[ZoneStateT]:
        return self.states(self.observe(dets))

    # -- evidence -----------------------------------------------------------------------------
    def observe(self, dets: Detections) -> Observation:
        veh = dets.vehicles()
        conf = veh.confidence.astype(np.float64)
        n = len(self.zones)
        zi, vi = self._point_pairs(reference_points(veh, self.rule.lift))
        two = veh.class_mask(TWO_WHEELERS)
        cars = np.bincount(zi[~two[vi]], minlength=n).astype(np.int64)
        two_wheelers = np.bincount(zi[two[vi]], minlength=n).astype(np.int64)
        vehicle = np.full(n, -1, dtype=np.intp)
        score = np.zeros(n)
        if self.rule.method == "footprint":
            vehicle = self._footprint(veh)
        elif self.rule.method == "overlap":
            vehicle = self._overlap(veh)
        else:
            # the best vehicle of each zone: the last pair of each zone in ascending confidence order
            order = np.lexsort((conf[vi], zi))
            last = np.r_[zi[order][1:] != zi[order][:-1], True] if len(order) else np.zeros(0, bool)
            vehicle[zi[order][last]] = vi[order][last]
            vehicle[~self._is_space] = -1
        has = vehicle >= 0
        score[has] = conf[vehicle[has]]
        occupied = has.copy()
        occupied[~self._is_space] = (cars + two_wheelers)[~self._is_space] > 0
        return Observation(occupied, np.clip(score, 0.0, 1.0), vehicle, cars, two_wheelers, veh)

    def _point_pairs(self, pts: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
        """(zone, point) index pairs where the point lies inside the zone."""
        if not len(pts) or not len(self.zones):
            return np.zeros(0, np.intp), np.zeros(0, np.intp)
        pi, zi = self._tree.query(shapely.points(pts), predicate="within")
        return zi.astype(np.intp), pi.astype(np.intp)

    def _footprint(self, veh: Detections) -> npt.NDArray[np.intp]:
        n, m = len(self.zones), len(veh)
        vehicle = np.full(n, -1, dtype=np.intp)
        if not m or not self._is_space.any():
            return vehicle
        r = self.rule
        pts = np.concatenate(
            [reference_points(veh, lift) for lift in (r.lift - r.spread, r.lift, r.lift + r.spread)]
        )
        zi, pi = self._point_pairs(pts)
        pairs = np.unique(np.stack([zi, pi % m], axis=1), axis=0)
        pairs = pairs[self._is_space[pairs[:, 0]]]
        if not len(pairs):
            return vehicle
        b = veh.xyxy.astype(np.float64)
        box_area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        ratio = np.sqrt(box_area[pairs[:, 1]] / np.maximum(self._areas[pairs[:, 0]], 1e-9))
        pairs = pairs[(ratio >= r.size_range[0]) & (ratio <= r.size_range[1])]
        if not len(pairs):
            return vehicle
        top = b[:, 3] - r.footprint * (b[:, 3] - b[:, 1])
        feet = shapely.box(b[:, 0], top, b[:, 2], b[:, 3])
        z, v = pairs[:, 0], pairs[:, 1]
        inter = shapely.area(shapely.intersection(self._polys[z], feet[v]))
        union = self._areas[z] + shapely.area(feet)[v] - inter
        # Eligible pairs always weigh more than ineligible ones (0), even without overlap.
        weight = np.maximum(inter / np.maximum(union, 1e-9), 1e-6)
        rows, zrow = np.unique(z, return_inverse=True)
        cols, vcol = np.unique(v, return_inverse=True)
        w = np.zeros((len(rows), len(cols)))
        w[zrow, vcol] = weight
        ri, ci = linear_sum_assignment(w, maximize=True)
        ok = w[ri, ci] > 0
        vehicle[rows[ri[ok]]] = cols[ci[ok]]
        return vehicle

    def _overlap(self, veh: Detections) -> npt.NDArray[np.intp]:
        n = len(self.zones)
        vehicle = np.full(n, -1, dtype=np.intp)
        if not len(veh) or not n:
            return vehicle
        b = veh.xyxy.astype(np.float64)
        boxes = shapely.box(b[:, 0], b[:, 1], b[:, 2], b[:, 3])
        vi, zi = self._tree.query(boxes, predicate="intersects")
        keep = self._is_space[zi]
        vi, zi = vi[keep], zi[keep]
        inter = shapely.area(shapely.intersection(self._polys[zi], boxes[vi]))
        denom = self._areas[zi] if self.rule.normalise == "space" else shapely.area(boxes)[vi]
        ratio = inter / np.maximum(denom, 1e-9)
        used = np.zeros(len(veh), dtype=bool)
        # Greedy one-to-one: the largest overlaps claim first, so a car straddling two bays
        # occupies the one it covers most and a bay covered by two boxes counts once.
        for k in np.argsort(-ratio, kind="stable"):
            if ratio[k] < self.rule.min_overlap:
                break
            z, v = zi[k], vi[k]
            if vehicle[z] >= 0 or used[v]:
                continue
            vehicle[z] = v
            used[v] = True
        return vehicle

    # -- states -------------------------------------------------------------------------------
    def states(
        self,
        obs: Observation,
        occupied: npt.NDArray[np.bool_] | None = None,
        since: Sequence[datetime | None] | None = None,
        scores: npt.NDArray[np.float64] | None = None,
    ) -> list[ZoneStateT]:
        """Schema states of every zone; ``occupied``/``since``/``scores`` override the frame's own
        evidence for spaces (the temporal filter's decisions)."""
        occ = obs.occupied if occupied is None else occupied
        sc = obs.score if scores is None else scores
        out: list[ZoneStateT] = []
        for k, z in enumerate(self.zones):
            c = z.centroid_lonlat
            lon, lat = (None, None) if c is None else c
            common = {
                "id": z.id,
                "name": z.name,
                "lot": z.lot,
                "lon": lon,
                "lat": lat,
                "vehicle": zone_vehicle(z),
            }
            if z.kind == "space":
                out.append(
                    SpaceState(
                        **common,
                        occupied=bool(occ[k]),
                        score=float(min(max(sc[k], 0.0), 1.0)),
                        since=None if since is None else since[k],
                    )
                )
            else:
                assert z.capacity is not None
                cars, two = int(obs.cars[k]), int(obs.two_wheelers[k])
                out.append(
                    AreaState(
                        **common,
                        vehicles=cars + two,
                        capacity=z.capacity,
                        cars=cars,
                        motorcycles=two,
                        used=self.used_places(z, cars, two),
                    )
                )
        return out

    def used_places(self, zone: Zone, cars: int, two_wheelers: int) -> float:
        """Places in use in the area's own unit: car places, or motorcycle places when the zone is
        for motorcycles (``properties.vehicle``)."""
        k = float(zone.properties.get("motorcycles_per_car", self.motorcycles_per_car))
        if zone_vehicle(zone) == "motorcycle":
            return float(two_wheelers + k * cars)
        return round(cars + two_wheelers / k, 3)


def zone_vehicle(zone: Zone) -> Literal["car", "motorcycle"] | None:
    v = zone.properties.get("vehicle")
    return v if v in ("car", "motorcycle") else None


def judge(zones: Sequence[Zone], dets: Detections, rule: OccupancyRule = DEFAULT_RULE) -> list[ZoneStateT]:
    """State of every space and area in ``zones`` (lines skipped) for one frame's detections.

    For a stream, build one :class:`OccupancyJudge` and call it per frame instead.
    """
    return OccupancyJudge(zones, rule)(dets)
