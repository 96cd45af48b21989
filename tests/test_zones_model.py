"""GeoJSON zones: coordinate systems, geo-reference through a calibration, error messages."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely

from cityeye.zones.calibration import Calibration, fit, haversine_m
from cityeye.zones.model import ZoneError, load_zones, parse_zones, zones_to_geojson

from .test_zones_calibration import metres_to_lonlat, project, synthetic_pairs


def poly(coords: list[list[float]]) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": [[*coords, coords[0]]]}


def square(x: float, y: float, s: float = 40) -> list[list[float]]:
    return [[x, y], [x + s, y], [x + s, y + s], [x, y + s]]


def collection(*features: dict[str, Any], coordinates: str | None = "pixel") -> dict[str, Any]:
    doc: dict[str, Any] = {"type": "FeatureCollection", "features": list(features)}
    if coordinates:
        doc["cityeye:coordinates"] = coordinates
    return doc


def space(fid: object, coords: list[list[float]], **props: Any) -> dict[str, Any]:
    return {"type": "Feature", "id": fid, "properties": {"kind": "space", **props}, "geometry": poly(coords)}


def good_doc() -> dict[str, Any]:
    return collection(
        space(1, square(600, 500), name="A1"),
        space("b-2", square(700, 500), lot="north"),
        {
            "type": "Feature",
            "properties": {"id": "area-1", "kind": "area", "capacity": 12},
            "geometry": poly(square(500, 600, 200)),
        },
        {
            "type": "Feature",
            "id": "gate",
            "properties": {"kind": "line"},
            "geometry": {"type": "LineString", "coordinates": [[100, 700], [400, 650]]},
        },
    )


@pytest.fixture
def cal() -> Calibration:
    px, ll, _ = synthetic_pairs()
    return fit(np.stack([px, ll], axis=1), source="cal.json")


def test_pixel_zones_keep_ids_kinds_and_properties(tmp_path: Path) -> None:
    path = tmp_path / "zones.geojson"
    path.write_text(json.dumps(good_doc()))
    zones = load_zones(path, default_lot="main")
    assert [z.id for z in zones] == ["1", "b-2", "area-1", "gate"]
    assert [z.kind for z in zones] == ["space", "space", "area", "line"]
    assert zones[0].name == "A1" and zones[0].lot == "main" and zones[1].lot == "north"
    assert zones[2].capacity == 12 and zones[0].capacity is None
    assert zones[0].pixels.shape == (4, 2)  # closing vertex dropped
    assert zones[3].pixels.shape == (2, 2)
    assert all(z.lonlat is None and z.centroid_lonlat is None for z in zones)
    with pytest.raises(ValueError, match="read-only"):
        zones[0].pixels[0, 0] = 1.0


def test_pixel_zones_with_a_calibration_get_lonlat(cal: Calibration) -> None:
    zones = parse_zones(good_doc(), calibration=cal)
    for z in zones:
        assert z.lonlat is not None
        back = cal.lonlat_to_pixel(z.lonlat)
        assert np.abs(back - z.pixels).max() < 1e-6
    c = zones[0].centroid_lonlat
    assert c is not None
    # The ground centroid differs from the image of the pixel centroid (perspective), but both
    # lie inside the bay on the ground.
    ground = shapely.Polygon(zones[0].lonlat)
    assert ground.contains(shapely.Point(c))


def test_wgs84_zones_are_projected_to_pixels(cal: Calibration) -> None:
    en = np.array([[0.0, 0.0], [5.0, 0.0], [5.0, 2.5], [0.0, 2.5]])
    ll = metres_to_lonlat(en)
    doc = collection(space("w1", ll.tolist()), coordinates=None)  # wgs84 by default with a calibration
    (z,) = parse_zones(doc, calibration=cal)
    assert np.abs(z.pixels - project(en)).max() < 0.5
    assert z.centroid_lonlat is not None
    assert haversine_m([z.centroid_lonlat], metres_to_lonlat(np.array([[2.5, 1.25]])))[0] < 0.01


def test_geojson_round_trip(cal: Calibration) -> None:
    zones = parse_zones(good_doc(), calibration=cal)
    again = parse_zones(zones_to_geojson(zones, "wgs84"), calibration=cal)
    assert [(z.id, z.kind, z.capacity, z.name, z.lot) for z in again] == [
        (z.id, z.kind, z.capacity, z.name, z.lot) for z in zones
    ]
    for a, b in zip(zones, again, strict=True):
        assert np.abs(a.pixels - b.pixels).max() < 1e-6


_DROP = object()


def feat(i: int, **changes: Any) -> Any:
    """A mutator setting (or, with _DROP, removing) keys of feature ``i``."""
    return lambda d: _apply(d["features"][i], changes)


def props(i: int, **changes: Any) -> Any:
    return lambda d: _apply(d["features"][i]["properties"], changes)


def _apply(target: dict[str, Any], changes: dict[str, Any]) -> None:
    for k, v in changes.items():
        if v is _DROP:
            target.pop(k)
        else:
            target[k] = v


LINE = {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}


@pytest.mark.parametrize(
    ("mutator", "message"),
    [
        (feat(1, id=1), r"feature #1 \(id '1'\): duplicate id, already used by feature #0"),
        (props(0, kind=_DROP), r"feature #0 \(id '1'\): has no properties.kind"),
        (props(0, kind="bay"), r"#0 \(id '1'\): has properties.kind 'bay'"),
        (props(2, capacity=_DROP), r"#2 \(id 'area-1'\): an area needs properties.capacity"),
        (props(2, capacity=2.5), r"capacity 2.5 must be a non-negative"),
        (feat(3, geometry=poly(square(0, 0))), r"#3 \(id 'gate'\): a line needs a LineString"),
        (feat(0, geometry=LINE), r"a space needs a Polygon geometry, got LineString"),
        (feat(1, geometry=poly([[0, 0], [10, 0], [0, 0]])), r"#1 \(id 'b-2'\): Polygon has 2 distinct point"),
        (feat(1, geometry=poly([[0, 0], [9, 9], [9, 0], [0, 9]])), r"\(id .b-2.\): polygon is not valid"),
        (feat(1, geometry=None), r"#1 \(id 'b-2'\): a space needs a Polygon geometry, got none"),
        (feat(3, geometry={"type": "LineString", "coordinates": [[5, 5]]}), r"LineString needs at least 2"),
        (feat(0, id=_DROP), r"feature #0: has no id"),
        (feat(2, id="x"), r"feature #2: feature id 'x' and properties.id 'area-1' disagree"),
        (lambda d: d.update({"cityeye:coordinates": "utm"}), r"\"cityeye:coordinates\" is 'utm'"),
        (lambda d: d.update(type="Feature"), r"not a GeoJSON FeatureCollection"),
    ],
)
def test_errors_name_feature_index_and_id(tmp_path: Path, mutator: Any, message: str) -> None:
    path = tmp_path / "zones.geojson"
    doc = copy.deepcopy(good_doc())
    mutator(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(ZoneError, match=message) as exc:
        load_zones(path)
    assert str(path) in str(exc.value)


def test_wgs84_without_calibration_is_refused() -> None:
    doc = collection(space("w1", [[108.1, 16.1], [108.2, 16.1], [108.2, 16.2]]), coordinates="wgs84")
    with pytest.raises(ZoneError, match="no calibration was given"):
        parse_zones(doc, source="z.geojson")


def test_pixel_numbers_declared_as_wgs84_are_refused(cal: Calibration) -> None:
    doc = collection(space("p", square(600, 500)), coordinates=None)  # defaults to wgs84 with cal
    with pytest.raises(ZoneError, match="look like pixels"):
        parse_zones(doc, calibration=cal)


def test_missing_file_and_bad_json(tmp_path: Path) -> None:
    with pytest.raises(ZoneError, match="not found"):
        load_zones(tmp_path / "nope.geojson")
    bad = tmp_path / "bad.geojson"
    bad.write_text("[")
    with pytest.raises(ZoneError, match="not valid JSON"):
        load_zones(bad)


def test_zones_off_the_visible_ground_are_refused(cal: Calibration) -> None:
    sky = project(np.array([[0.0, -70.0], [5.0, -70.0], [5.0, -75.0], [0.0, -75.0]]))  # beyond the horizon
    with pytest.raises(ZoneError, match=r"\(id 'up'\): reaches above the horizon of the calibration cal"):
        parse_zones(collection(space("up", sky.tolist())), calibration=cal)
    behind = metres_to_lonlat(np.array([[0.0, -70.0], [5.0, -70.0], [5.0, -75.0]]))
    with pytest.raises(ZoneError, match=r"#0 \(id 'back'\): lies behind the camera"):
        parse_zones(collection(space("back", behind.tolist()), coordinates="wgs84"), calibration=cal)
