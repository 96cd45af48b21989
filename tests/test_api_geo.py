"""Distances and the bounding-box prefilter of the nearby query."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cityeye.api.geo import EARTH_RADIUS_M, bounding_box, chord_distance_m, haversine_m, unit_vectors


def test_one_degree_of_latitude_is_111_2_km() -> None:
    d = float(haversine_m(48.0, 11.0, 49.0, 11.0))
    assert d == pytest.approx(111_195, abs=1)


def test_agrees_with_the_spherical_law_of_cosines() -> None:
    """An independent formula for the same sphere (fine at ~500 km, where it has no rounding trouble)."""
    lat1, lon1, lat2, lon2 = (math.radians(v) for v in (48.13743, 11.57549, 52.51628, 13.37770))
    central = math.acos(
        math.sin(lat1) * math.sin(lat2) + math.cos(lat1) * math.cos(lat2) * math.cos(lon2 - lon1)
    )
    d = float(haversine_m(48.13743, 11.57549, 52.51628, 13.37770))
    assert d == pytest.approx(central * EARTH_RADIUS_M, rel=1e-9)
    assert 500_000 < d < 510_000  # Munich - Berlin


def test_quarter_meridian() -> None:
    assert float(haversine_m(0.0, 7.0, 90.0, 7.0)) == pytest.approx(math.pi / 2 * EARTH_RADIUS_M)


def test_vectorised_matches_scalar_and_is_symmetric() -> None:
    rng = np.random.default_rng(1)
    lat = rng.uniform(-80, 80, 50)
    lon = rng.uniform(-180, 180, 50)
    vec = haversine_m(10.0, 20.0, lat, lon)
    assert vec.shape == (50,)
    for i in (0, 17, 49):
        assert vec[i] == pytest.approx(float(haversine_m(lat[i], lon[i], 10.0, 20.0)))
    assert float(haversine_m(0, 0, 0, 180)) == pytest.approx(math.pi * EARTH_RADIUS_M)
    assert float(haversine_m(0, 0, 0, 0)) == 0.0


@pytest.mark.parametrize(("lat", "lon"), [(16.0544, 108.2022), (89.9999, -20.0), (-0.5, 179.9999)])
def test_chord_distance_agrees_with_haversine_from_a_metre_to_half_the_globe(lat: float, lon: float) -> None:
    rng = np.random.default_rng(2)
    # Street distances near the point (1 m .. 2 km), across a pole/the antimeridian, and far away.
    near_lat = lat + rng.uniform(-0.01, 0.01, 200)
    near_lon = lon + rng.uniform(-0.01, 0.01, 200)
    plat = np.clip(np.concatenate([near_lat, [lat + 1e-5], rng.uniform(-90, 90, 50)]), -90, 90)
    plon = (np.concatenate([near_lon, [lon], rng.uniform(-180, 180, 50)]) + 180) % 360 - 180
    want = haversine_m(lat, lon, plat, plon)
    got = chord_distance_m(unit_vectors(plat, plon), lat, lon)
    assert np.allclose(got, want, rtol=1e-9, atol=1e-3)
    assert float(chord_distance_m(unit_vectors([lat], [lon]), lat, lon)[0]) < 1e-3


def _circle_points(lat: float, lon: float, radius_m: float, n: int = 720) -> tuple[np.ndarray, np.ndarray]:
    """Points exactly on the circle (destination-point formula), to probe the box edges."""
    p1, l1 = math.radians(lat), math.radians(lon)
    d = radius_m / EARTH_RADIUS_M
    brg = np.linspace(0, 2 * np.pi, n, endpoint=False)
    p2 = np.arcsin(np.sin(p1) * np.cos(d) + np.cos(p1) * np.sin(d) * np.cos(brg))
    l2 = l1 + np.arctan2(np.sin(brg) * np.sin(d) * np.cos(p1), np.cos(d) - np.sin(p1) * np.sin(p2))
    lon2 = (np.degrees(l2) + 540.0) % 360.0 - 180.0
    return np.degrees(p2), lon2


@pytest.mark.parametrize(
    ("lat", "lon", "radius_m"),
    [
        (48.137, 11.575, 1000),
        (60.0, 10.0, 600_000),  # the naive r/cos(lat) box is 0.45 % too narrow here
        (-33.9, 18.4, 50_000),
        (0.0, 179.99, 5000),  # crosses the antimeridian eastwards
        (10.0, -179.999, 5000),  # and westwards
        (89.99, 0.0, 5000),  # reaches the pole: every longitude
    ],
)
def test_box_contains_every_point_of_the_circle(lat: float, lon: float, radius_m: float) -> None:
    box = bounding_box(lat, lon, radius_m)
    clat, clon = _circle_points(lat, lon, radius_m)
    # The points really are on the circle, so this also checks the box is not trivially huge.
    assert np.allclose(haversine_m(lat, lon, clat, clon), radius_m, rtol=1e-6)
    outside = [(a, b) for a, b in zip(clat, clon, strict=True) if not box.contains(float(a), float(b))]
    assert outside == []


def test_box_is_tight_enough_to_prefilter() -> None:
    box = bounding_box(48.137, 11.575, 1000)
    assert len(box.lon_ranges) == 1
    lo, hi = box.lon_ranges[0]
    assert box.max_lat - box.min_lat == pytest.approx(2 * 1000 / 111_195, rel=1e-6)
    assert (hi - lo) == pytest.approx(2 * 1000 / (111_195 * math.cos(math.radians(48.137))), rel=1e-3)
    assert not box.contains(48.2, 11.575)


def test_box_splits_at_the_antimeridian() -> None:
    box = bounding_box(0.0, 179.99, 5000)
    assert len(box.lon_ranges) == 2
    assert box.contains(0.0, -179.99)
    assert not box.contains(0.0, 0.0)


def test_box_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="lat/lon"):
        bounding_box(91.0, 0.0, 10)
    with pytest.raises(ValueError, match="negative"):
        bounding_box(0.0, 0.0, -1)
