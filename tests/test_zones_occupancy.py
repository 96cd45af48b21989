"""Occupancy rules on constructed detections: points in and out, areas, classes, assignment."""

from __future__ import annotations

import numpy as np
import pytest

from cityeye.events.schema import AreaState, SpaceState
from cityeye.vision.detections import Detections
from cityeye.zones.calibration import fit
from cityeye.zones.model import Zone, parse_zones
from cityeye.zones.occupancy import DEFAULT_RULE, OccupancyJudge, OccupancyRule, judge, reference_points

from .test_zones_calibration import synthetic_pairs
from .test_zones_model import collection, poly, space, square

NAMES = {0: "person", 1: "bicycle", 2: "car", 3: "motorcycle", 5: "bus", 7: "truck", 13: "bench"}
BOTTOM = OccupancyRule(method="point", lift=0.0)
POINT = OccupancyRule(method="point")


def dets(*boxes: tuple[float, float, float, float, float, int]) -> Detections:
    """(x1, y1, x2, y2, confidence, class_id) rows."""
    arr = np.array(boxes, dtype=np.float64).reshape(-1, 6)
    return Detections(
        arr[:, :4].astype(np.float32), arr[:, 4].astype(np.float32), arr[:, 5].astype(np.int32), NAMES
    )


def lot() -> list[Zone]:
    """Two 100x100 bays side by side, a 300x200 area below them, a counting line."""
    return parse_zones(
        collection(
            space("A", square(0, 0, 100), name="bay A"),
            space(7, square(100, 0, 100)),
            {
                "type": "Feature",
                "id": "yard",
                "properties": {"kind": "area", "capacity": 3},
                "geometry": poly([[0, 200], [300, 200], [300, 400], [0, 400]]),
            },
            {
                "type": "Feature",
                "id": "gate",
                "properties": {"kind": "line"},
                "geometry": {"type": "LineString", "coordinates": [[0, 150], [300, 150]]},
            },
        ),
        default_lot="L1",
    )


def by_id(states: list[SpaceState | AreaState]) -> dict[str, SpaceState | AreaState]:
    return {s.id: s for s in states}


def test_point_inside_occupies_and_outside_does_not() -> None:
    # Car 1's bottom-centre (50, 90) is in A; car 2's (150, 130) is below bay 7.
    out = by_id(judge(lot(), dets((20, 40, 80, 90, 0.8, 2), (120, 60, 180, 130, 0.9, 2)), BOTTOM))
    a, b = out["A"], out["7"]
    assert isinstance(a, SpaceState) and isinstance(b, SpaceState)
    assert a.occupied and a.score == pytest.approx(0.8)
    assert not b.occupied and b.score == 0.0
    assert a.name == "bay A" and a.lot == "L1" and a.lon is None
    assert set(out) == {"A", "7", "yard"}  # the line is not an occupancy zone


def test_score_is_the_best_vehicle_in_the_space() -> None:
    out = by_id(judge(lot(), dets((20, 40, 80, 90, 0.4, 2), (10, 30, 90, 95, 0.7, 7)), BOTTOM))
    assert out["A"].occupied and out["A"].score == pytest.approx(0.7)  # type: ignore[union-attr]


def test_non_vehicle_classes_are_ignored() -> None:
    out = by_id(judge(lot(), dets((20, 40, 80, 90, 0.9, 0), (120, 40, 180, 90, 0.9, 13)), BOTTOM))
    assert not out["A"].occupied and not out["7"].occupied  # type: ignore[union-attr]
    out = by_id(judge(lot(), dets((20, 40, 80, 90, 0.9, 3), (120, 40, 180, 90, 0.9, 5)), BOTTOM))
    assert out["A"].occupied and out["7"].occupied  # type: ignore[union-attr]


def test_area_counts_vehicles_against_capacity() -> None:
    boxes = [(x, 250, x + 40, 300, 0.6, 2) for x in (20, 80, 140, 200)] + [(20, 250, 60, 300, 0.9, 0)]
    yard = by_id(judge(lot(), dets(*boxes, (400, 250, 440, 300, 0.9, 2)), BOTTOM))["yard"]
    assert isinstance(yard, AreaState)
    assert yard.vehicles == 4 and yard.capacity == 3 and yard.free == 0
    empty = by_id(judge(lot(), Detections.empty(NAMES)))["yard"]
    assert isinstance(empty, AreaState) and empty.vehicles == 0 and empty.free == 3


def test_lift_moves_the_reference_point_into_the_bay() -> None:
    # Oblique view: the box's bottom edge (y=130) is in front of bay 7, its body over the bay.
    d = dets((110, 10, 190, 130, 0.9, 2))
    assert not by_id(judge(lot(), d, BOTTOM))["7"].occupied  # type: ignore[union-attr]
    assert by_id(judge(lot(), d, POINT))["7"].occupied  # type: ignore[union-attr]
    assert by_id(judge(lot(), d))["7"].occupied  # type: ignore[union-attr]
    np.testing.assert_allclose(reference_points(d, 0.3), [[150.0, 130 - 0.3 * 120]])
    np.testing.assert_allclose(reference_points(d, 0.0), d.ground_points())


def test_overlap_assigns_one_vehicle_to_one_space() -> None:
    rule = OccupancyRule(method="overlap", min_overlap=0.3)
    # One wide box over both bays, covering more of A (0..120 x 0..100) than of 7.
    out = by_id(judge(lot(), dets((0, 0, 130, 100, 0.9, 2)), rule))
    assert out["A"].occupied and not out["7"].occupied  # type: ignore[union-attr]
    # Two boxes on bay 7 occupy it once; A stays empty.
    out = by_id(judge(lot(), dets((100, 0, 200, 100, 0.5, 2), (110, 10, 190, 90, 0.8, 2)), rule))
    assert out["7"].occupied and not out["A"].occupied  # type: ignore[union-attr]
    # Too little overlap.
    out = by_id(judge(lot(), dets((80, 80, 120, 120, 0.9, 2)), rule))
    assert not out["A"].occupied and not out["7"].occupied  # type: ignore[union-attr]


def test_judge_instance_is_reusable_frame_after_frame() -> None:
    j = OccupancyJudge(lot())
    first = j(dets((20, 40, 80, 90, 0.8, 2)))
    second = j(Detections.empty(NAMES))
    assert by_id(first)["A"].occupied and not by_id(second)["A"].occupied  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("bottom", OccupancyRule(method="point", lift=0.0)),
        ("point", OccupancyRule(method="point")),
        ("point:0.25", OccupancyRule(method="point", lift=0.25)),
        ("footprint", DEFAULT_RULE),
        ("footprint:0.4", OccupancyRule(lift=0.4)),
        ("overlap:0.4", OccupancyRule(method="overlap", min_overlap=0.4)),
        ("overlap-box", OccupancyRule(method="overlap", normalise="box")),
    ],
)
def test_rule_parse_round_trips(text: str, rule: OccupancyRule) -> None:
    assert OccupancyRule.parse(text) == rule
    assert OccupancyRule.parse(str(rule)) == rule


@pytest.mark.parametrize("text", ["nearest", "point:x", "point:1.5", "overlap:0", "footprint:-1"])
def test_bad_rules_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="rule"):
        OccupancyRule.parse(text)


def test_states_carry_the_ground_centroid_when_calibrated() -> None:
    px, ll, _ = synthetic_pairs()
    cal = fit(np.stack([px, ll], axis=1))
    zones = parse_zones(collection(space("A", square(600, 500, 60))), calibration=cal)
    (state,) = judge(zones, Detections.empty(NAMES))
    assert zones[0].centroid_lonlat is not None
    assert (state.lon, state.lat) == pytest.approx(zones[0].centroid_lonlat)


def rect(x: float, y: float, w: float, h: float) -> list[list[float]]:
    return [[x, y], [x + w, y], [x + w, y + h], [x, y + h]]


def two_rows() -> list[Zone]:
    """Two rows of 100x60 bays seen obliquely: row B (y 100..160) in front of row A (y 40..100)."""
    return parse_zones(
        collection(
            space("A1", rect(0, 40, 100, 60)),
            space("A2", rect(100, 40, 100, 60)),
            space("B1", rect(0, 100, 100, 60)),
            space("B2", rect(100, 100, 100, 60)),
        )
    )


def occupied(states: list[SpaceState | AreaState]) -> set[str]:
    return {s.id for s in states if isinstance(s, SpaceState) and s.occupied}


# X: a car in A1 drawn tall (steep view): its points at lift 0.2/0.3 (y 116, 106.5) fall into B1 in
# front, the one at 0.4 (y 97) into A1; its footprint covers B1 more than A1 (IoU 0.40 / 0.22).
X = (5, 40, 95, 135, 0.4, 2)
# Y: a car in B1 (points y 143..159, footprint IoU with B1 0.40).
Y = (5, 95, 95, 175, 0.9, 7)


@pytest.mark.parametrize(
    ("boxes", "point_says", "footprint_says"),
    [
        # A car standing in A1: both rules agree.
        ([(10, 20, 90, 112, 0.9, 2)], {"A1"}, {"A1"}),
        # X alone: its footprint is mostly in B1, so B1 it is, for both rules.
        ([X], {"B1"}, {"B1"}),
        # X beside Y: `point` marks B1 twice and loses A1; the assignment gives each car one bay,
        # maximising the summed overlap (X -> A1 0.22 + Y -> B1 0.40 beats X -> B1 0.40 alone).
        ([X, Y], {"B1"}, {"A1", "B1"}),
        # Points in two bays (y 114, 103.5 in B1; 93 in A1): one vehicle still takes one bay.
        ([(10, 30, 90, 135, 0.9, 2)], {"B1"}, {"B1"}),
        # A fragment (10x10 px, a wheel) is not this bay's car (size ratio 0.13 < 1/3)...
        ([(40, 80, 50, 90, 0.9, 2)], {"A1"}, set()),
        # ...and neither is a box over the whole row (ratio 3.2 > 3).
        ([(0, 0, 390, 160, 0.9, 2)], {"B2"}, set()),
    ],
)
def test_footprint_assignment_against_point_rule(
    boxes: list[tuple[float, float, float, float, float, int]], point_says: set[str], footprint_says: set[str]
) -> None:
    d = dets(*boxes)
    assert occupied(judge(two_rows(), d, POINT)) == point_says
    assert occupied(judge(two_rows(), d)) == footprint_says


def test_footprint_score_is_the_assigned_vehicle() -> None:
    out = by_id(judge(two_rows(), dets(X, Y)))
    assert out["A1"].score == pytest.approx(0.4) and out["B1"].score == pytest.approx(0.9)  # type: ignore[union-attr]
    assert out["A2"].score == 0.0  # type: ignore[union-attr]


def test_area_capacity_counts_two_wheelers_as_a_share_of_a_car_place() -> None:
    yard = {
        "type": "Feature",
        "id": "yard",
        "properties": {"kind": "area", "capacity": 3},
        "geometry": poly([[0, 0], [400, 0], [400, 200], [0, 200]]),
    }
    moto = {
        "type": "Feature",
        "id": "moto",
        "properties": {"kind": "area", "capacity": 10, "vehicle": "motorcycle"},
        "geometry": poly([[500, 0], [900, 0], [900, 200], [500, 200]]),
    }
    zones = parse_zones(collection(yard, moto))
    # yard: 2 cars and 5 motorcycles -> 2 + 5/4 = 3.25 car places of 3: full.
    # moto: 6 motorcycles and 1 car -> 6 + 4 = 10 motorcycle places of 10: full.
    rows = [(10 + 60 * i, 100, 50 + 60 * i, 150, 0.8, 2) for i in range(2)]
    rows += [(10 + 40 * i, 160, 30 + 40 * i, 190, 0.7, 3) for i in range(5)]
    rows += [(510 + 40 * i, 100, 530 + 40 * i, 140, 0.7, 3) for i in range(6)]
    rows += [(800, 100, 880, 150, 0.9, 2)]
    out = by_id(OccupancyJudge(zones, motorcycles_per_car=4)(dets(*rows)))
    y, m = out["yard"], out["moto"]
    assert isinstance(y, AreaState) and isinstance(m, AreaState)
    assert (y.cars, y.motorcycles, y.vehicles, y.used, y.free) == (2, 5, 7, 3.25, 0)
    assert (m.cars, m.motorcycles, m.used, m.free, m.vehicle) == (1, 6, 10.0, 0, "motorcycle")
    # With k = 8: 2 cars + 2 two-wheelers use 2.25 places (3 started: full); 1 car + 2 use 1.25.
    y8 = by_id(OccupancyJudge(zones, motorcycles_per_car=8)(dets(*rows[:2], *rows[2:4])))["yard"]
    assert isinstance(y8, AreaState) and y8.used == 2.25 and y8.free == 0
    y8 = by_id(OccupancyJudge(zones, motorcycles_per_car=8)(dets(*rows[:1], *rows[2:4])))["yard"]
    assert isinstance(y8, AreaState) and y8.used == 1.25 and y8.free == 1
