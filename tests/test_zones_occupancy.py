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


def dets(*boxes: tuple[float, float, float, float, float, int]) -> Detections:
    """(x1, y1, x2, y2, confidence, class_id) rows."""
    arr = np.array(boxes, dtype=np.float64).reshape(-1, 6)
    return Detections(arr[:, :4].astype(np.float32), arr[:, 4].astype(np.float32), arr[:, 5].astype(np.int32),
                      NAMES)


def lot() -> list[Zone]:
    """Two 100x100 bays side by side, a 300x200 area below them, a counting line."""
    return parse_zones(collection(
        space("A", square(0, 0, 100), name="bay A"),
        space(7, square(100, 0, 100)),
        {"type": "Feature", "id": "yard", "properties": {"kind": "area", "capacity": 3},
         "geometry": poly([[0, 200], [300, 200], [300, 400], [0, 400]])},
        {"type": "Feature", "id": "gate", "properties": {"kind": "line"},
         "geometry": {"type": "LineString", "coordinates": [[0, 150], [300, 150]]}},
    ), default_lot="L1")


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
    assert by_id(judge(lot(), d, OccupancyRule(lift=0.3)))["7"].occupied  # type: ignore[union-attr]
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
        ("bottom", OccupancyRule(lift=0.0)),
        ("point", DEFAULT_RULE),
        ("point:0.25", OccupancyRule(lift=0.25)),
        ("overlap:0.4", OccupancyRule(method="overlap", min_overlap=0.4)),
        ("overlap-box", OccupancyRule(method="overlap", normalise="box")),
    ],
)
def test_rule_parse_round_trips(text: str, rule: OccupancyRule) -> None:
    assert OccupancyRule.parse(text) == rule
    assert OccupancyRule.parse(str(rule)) == rule


@pytest.mark.parametrize("text", ["nearest", "point:x", "point:1.5", "overlap:0"])
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
