"""Great-circle distances and the bounding box that lets the database skip far-away zones.

A spherical Earth (mean radius) is accurate to ~0.5 % — far better than a zone centroid fitted
from a camera homography — and keeps the maths portable to any SQL database: the box is a
plain range query on indexed lat/lon columns, the exact distance is computed here with numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

EARTH_RADIUS_M = 6_371_008.8
"""IUGG mean Earth radius; one degree of latitude is then 111 195 m."""

_MARGIN = 1e-9
"""Degrees added to the box so that floating-point rounding never drops a zone on the circle."""


def haversine_m(
    lat1: float | npt.ArrayLike,
    lon1: float | npt.ArrayLike,
    lat2: float | npt.ArrayLike,
    lon2: float | npt.ArrayLike,
) -> npt.NDArray[np.float64]:
    """Distance in metres between points in degrees; any argument may be an array (broadcast).

    The haversine form stays accurate for the short distances a driver asks about, where the
    spherical law of cosines loses precision.
    """
    p1 = np.radians(np.asarray(lat1, dtype=np.float64))
    p2 = np.radians(np.asarray(lat2, dtype=np.float64))
    dphi = p2 - p1
    dlmb = np.radians(np.asarray(lon2, dtype=np.float64) - np.asarray(lon1, dtype=np.float64))
    a = np.sin(dphi / 2.0) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlmb / 2.0) ** 2
    # clip: rounding can push `a` a hair above 1 for antipodal points, and arcsin would give NaN.
    return np.asarray(2.0 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0))), dtype=np.float64)


def unit_vectors(lat: npt.ArrayLike, lon: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Points as (n, 3) unit vectors, computed once per index build.

    A query then needs one subtraction and one dot product per zone instead of the haversine's
    trigonometry: the chord between unit vectors gives the great-circle angle exactly, and float64
    keeps it to well under a millimetre at street distances.
    """
    p = np.radians(np.asarray(lat, dtype=np.float64))
    lm = np.radians(np.asarray(lon, dtype=np.float64))
    cp = np.cos(p)
    return np.stack([cp * np.cos(lm), cp * np.sin(lm), np.sin(p)], axis=-1)


def chord_distance_m(xyz: npt.NDArray[np.float64], lat: float, lon: float) -> npt.NDArray[np.float64]:
    """Great-circle metres from (lat, lon) to each row of :func:`unit_vectors`."""
    p, lm = math.radians(lat), math.radians(lon)  # scalars: math is 1 us where numpy takes 4
    d = xyz - np.array((math.cos(p) * math.cos(lm), math.cos(p) * math.sin(lm), math.sin(p)))
    half_chord = np.sqrt(np.einsum("ij,ij->i", d, d)) * 0.5
    return np.asarray(2.0 * EARTH_RADIUS_M * np.arcsin(np.minimum(half_chord, 1.0)), dtype=np.float64)


@dataclass(frozen=True, slots=True)
class BoundingBox:
    """Every point within the radius lies inside; a point inside may still be farther away.

    ``lon_ranges`` holds one interval, two when the box crosses the antimeridian (±180°), and
    spans the whole circle of longitudes when the circle reaches a pole.
    """

    min_lat: float
    max_lat: float
    lon_ranges: tuple[tuple[float, float], ...]

    def contains(self, lat: float, lon: float) -> bool:
        return self.min_lat <= lat <= self.max_lat and any(lo <= lon <= hi for lo, hi in self.lon_ranges)


def bounding_box(lat: float, lon: float, radius_m: float) -> BoundingBox:
    """The lat/lon box around a circle on the sphere.

    The longitude half-width is ``asin(sin r / cos φ)``, not the tempting ``r / cos φ``: the
    latter is too narrow away from the equator (by 0.5 % at 60° for a 600 km radius) and would
    silently drop zones near the east and west edges of the circle.
    """
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise ValueError(f"point ({lat}, {lon}) is not a WGS84 lat/lon in degrees (lat ±90, lon ±180)")
    if radius_m < 0:
        raise ValueError(f"radius {radius_m} m is negative; give a distance in metres >= 0")
    r = radius_m / EARTH_RADIUS_M  # angular radius, radians
    dlat = math.degrees(r) + _MARGIN
    min_lat, max_lat = lat - dlat, lat + dlat
    if min_lat <= -90.0 or max_lat >= 90.0 or r >= math.pi / 2:
        # The circle contains a pole: every longitude is within reach.
        return BoundingBox(max(min_lat, -90.0), min(max_lat, 90.0), ((-180.0, 180.0),))
    dlon = math.degrees(math.asin(min(1.0, math.sin(r) / math.cos(math.radians(lat))))) + _MARGIN
    if dlon >= 180.0:
        return BoundingBox(min_lat, max_lat, ((-180.0, 180.0),))
    lo, hi = lon - dlon, lon + dlon
    if lo < -180.0:
        return BoundingBox(min_lat, max_lat, ((lo + 360.0, 180.0), (-180.0, hi)))
    if hi > 180.0:
        return BoundingBox(min_lat, max_lat, ((lo, 180.0), (-180.0, hi - 360.0)))
    return BoundingBox(min_lat, max_lat, ((lo, hi),))
