"""Per-camera ground calibration: a homography from image pixels to the ground plane.

A fixed camera looking at a flat lot maps ground points to pixels by a plane homography, so
four or more surveyed pixel <-> lon/lat pairs are enough to put every zone on the city map and
to draw map zones on the image. The homography is fitted in a local east/north metre plane
around the mean of the pairs, not in degrees: lon/lat offsets across a lot are ~1e-4 while
pixels are ~1e3, and a DLT over such mixed scales is badly conditioned. Equirectangular is
exact to millimetres at lot scale (hundreds of metres), far below surveying error.

File format (JSON)::

    {"points": [{"pixel": [x, y], "lonlat": [lon, lat]}, ...]}

Other top-level keys (``"camera"``, ``"note"``) are allowed and ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

Array = npt.NDArray[np.float64]

EARTH_RADIUS_M = 6_371_008.8  # IUGG mean radius: the best single sphere for distances.

# Below this (smallest / largest singular value of the centred, normalised points) a point
# set is treated as lying on one line: about 1 mm across 1 km.
_COLLINEAR_TOL = 1e-6
# Conditioning (see _dlt) below which the pairs do not determine an invertible homography
# (fewer than 4 points in general position).
_RANK_TOL = 1e-9


class CalibrationError(ValueError):
    """A calibration file or point set that cannot give a usable homography."""


class _Pair(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pixel: Annotated[list[float], Field(min_length=2, max_length=2)]
    lonlat: Annotated[list[float], Field(min_length=2, max_length=2)]


class _CalibrationFile(BaseModel):
    # Other top-level keys ("camera", "note", survey metadata) are documentation and ignored;
    # inside a pair a stray key is more likely a typo of pixel/lonlat, so it is an error.
    model_config = ConfigDict(extra="ignore")

    points: list[_Pair]


def haversine_m(a: npt.ArrayLike, b: npt.ArrayLike) -> Array:
    """Great-circle distance in metres between lon/lat arrays (..., 2), element-wise."""
    pa = np.radians(np.asarray(a, dtype=np.float64))
    pb = np.radians(np.asarray(b, dtype=np.float64))
    dlon = pb[..., 0] - pa[..., 0]
    dlat = pb[..., 1] - pa[..., 1]
    h = np.sin(dlat / 2) ** 2 + np.cos(pa[..., 1]) * np.cos(pb[..., 1]) * np.sin(dlon / 2) ** 2
    return np.asarray(2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0))), dtype=np.float64)


def _as_points(pts: npt.ArrayLike, what: str) -> Array:
    arr = np.asarray(pts, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{what} must be an (N, 2) array, got shape {arr.shape}")
    return arr


def _metres_per_degree(lat0: float) -> tuple[float, float]:
    """East and north metres per degree of lon and lat near latitude ``lat0``."""
    k = float(np.radians(1.0)) * EARTH_RADIUS_M
    return k * float(np.cos(np.radians(lat0))), k


def lonlat_to_local_m(ll: Array, origin: tuple[float, float]) -> Array:
    """(N, 2) lon/lat -> east/north metres around ``origin`` (equirectangular, lot scale)."""
    kx, ky = _metres_per_degree(origin[1])
    return np.stack([(ll[:, 0] - origin[0]) * kx, (ll[:, 1] - origin[1]) * ky], axis=1)


def local_m_to_lonlat(en: Array, origin: tuple[float, float]) -> Array:
    """Inverse of :func:`lonlat_to_local_m`."""
    kx, ky = _metres_per_degree(origin[1])
    return np.stack([origin[0] + en[:, 0] / kx, origin[1] + en[:, 1] / ky], axis=1)


def _apply_h(h: Array, pts: Array) -> tuple[Array, Array]:
    """Projective transform of (N, 2) points; also returns the homogeneous scale w."""
    hom = pts @ h[:, :2].T + h[:, 2]
    w = hom[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = hom[:, :2] / w[:, None]
    return out, w


def _normaliser(pts: Array) -> Array:
    """Hartley normalisation: centroid to the origin, mean distance sqrt(2)."""
    c = pts.mean(axis=0)
    d = float(np.mean(np.linalg.norm(pts - c, axis=1)))
    s = np.sqrt(2.0) / d if d > 0 else 1.0
    return np.array([[s, 0.0, -s * c[0]], [0.0, s, -s * c[1]], [0.0, 0.0, 1.0]])


def _collinear(pts: Array) -> bool:
    centred = pts - pts.mean(axis=0)
    sv = np.linalg.svd(centred, compute_uv=False)
    return bool(sv[0] == 0 or sv[-1] / sv[0] < _COLLINEAR_TOL)


def _dlt(src: Array, dst: Array) -> tuple[Array, float]:
    """Normalised DLT; returns H (src -> dst, unit Frobenius norm, w > 0 at the source points)
    and a conditioning ratio in normalised coordinates, so that it does not depend on image
    size or lot size: the smaller of s[7]/s[0] of the DLT system (is H determined?) and
    s_min/s_max of the normalised H (is it invertible?).

    Not scaled to H[2,2] = 1: H[2,2] is w at pixel (0, 0), which is zero when the horizon
    passes through that corner of the image.
    """
    ts, td = _normaliser(src), _normaliser(dst)
    s = src @ ts[:2, :2].T + ts[:2, 2]
    d = dst @ td[:2, :2].T + td[:2, 2]
    n = len(s)
    a = np.zeros((2 * n, 9))
    x, y, u, v = s[:, 0], s[:, 1], d[:, 0], d[:, 1]
    a[0::2, 0], a[0::2, 1], a[0::2, 2] = -x, -y, -1.0
    a[0::2, 6], a[0::2, 7], a[0::2, 8] = u * x, u * y, u
    a[1::2, 3], a[1::2, 4], a[1::2, 5] = -x, -y, -1.0
    a[1::2, 6], a[1::2, 7], a[1::2, 8] = v * x, v * y, v
    _, sv, vt = np.linalg.svd(a)
    hn = vt[-1].reshape(3, 3)
    hs = np.linalg.svd(hn, compute_uv=False)
    h = np.linalg.inv(td) @ hn @ ts
    h /= np.linalg.norm(h)
    if np.median(src @ h[2, :2] + h[2, 2]) < 0:
        h = -h
    return h, float(min(sv[7] / sv[0], hs[2] / hs[0]))


@dataclass(frozen=True, eq=False)
class Calibration:
    """A fitted pixel -> ground homography and the pairs it was fitted on.

    ``homography_m`` maps pixels to east/north metres around ``origin`` (lon, lat); lon/lat are
    derived from that plane so that the fit itself never works in degrees.
    """

    pixels: Array
    lonlats: Array
    origin: tuple[float, float]
    homography_m: Array
    source: str | None = None
    _inverse: Array = field(init=False, repr=False)
    _sign: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_inverse", np.linalg.inv(self.homography_m))
        _, w = _apply_h(self.homography_m, self.pixels)
        # The pairs are all on the visible ground, so their w shares one sign; points with the
        # other sign are beyond the horizon line and have no ground position.
        object.__setattr__(self, "_sign", float(np.sign(np.median(w))))

    # -- local metric plane -------------------------------------------------------------
    def lonlat_to_metres(self, lonlat: npt.ArrayLike) -> Array:
        """Equirectangular east/north metres around ``origin``."""
        return lonlat_to_local_m(_as_points(lonlat, "lonlat"), self.origin)

    def metres_to_lonlat(self, en: npt.ArrayLike) -> Array:
        return local_m_to_lonlat(_as_points(en, "east/north metres"), self.origin)

    # -- public mapping -----------------------------------------------------------------
    def pixel_to_lonlat(self, pts: npt.ArrayLike) -> Array:
        """(N, 2) pixels -> (N, 2) lon/lat; NaN for pixels above the horizon (sky has no ground)."""
        px = _as_points(pts, "pixel points")
        en, w = _apply_h(self.homography_m, px)
        out = self.metres_to_lonlat(en)
        out[~(w * self._sign > 0)] = np.nan
        return out

    def lonlat_to_pixel(self, pts: npt.ArrayLike) -> Array:
        """(N, 2) lon/lat -> (N, 2) pixels; NaN for ground points behind the camera."""
        en = self.lonlat_to_metres(pts)
        px, w = _apply_h(self._inverse, en)
        # A ground point is in front of the camera when mapping its pixel forward gives the
        # pairs' sign of w; for the inverse map that is the sign of 1 / w.
        px[~(w * self._sign > 0)] = np.nan
        return px

    @property
    def homography_lonlat(self) -> Array:
        """Pixel -> lon/lat homography (3x3, up to scale): the metric fit composed with the affine
        equirectangular inverse, for consumers that want one matrix."""
        lon0, lat0 = self.origin
        kx, ky = _metres_per_degree(lat0)
        a = np.array([[1.0 / kx, 0.0, lon0], [0.0, 1.0 / ky, lat0], [0.0, 0.0, 1.0]])
        h = a @ self.homography_m
        return np.asarray(h / np.linalg.norm(h), dtype=np.float64)

    def reprojection_errors_m(self) -> Array:
        """Per pair: ground distance in metres between the surveyed lon/lat and its pixel's image."""
        return haversine_m(self.pixel_to_lonlat(self.pixels), self.lonlats)

    def reprojection_error_m(self) -> float:
        """RMS over the pairs, in metres."""
        e = self.reprojection_errors_m()
        return float(np.sqrt(np.mean(e**2)))


def fit(pairs: npt.ArrayLike, source: str | None = None) -> Calibration:
    """Fit from (pixel, lonlat) pairs: a sequence of ((x, y), (lon, lat)) or an (N, 2, 2) array."""
    where = f"{source}: " if source else ""
    arr = np.asarray(pairs, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[1:] != (2, 2):
        raise CalibrationError(
            f"{where}pairs must be ((x, y), (lon, lat)) items, got an array of shape {arr.shape}"
        )
    n = len(arr)
    if n < 4:
        raise CalibrationError(
            f"{where}{n} point pair(s) given; a homography needs at least 4 pixel <-> lon/lat pairs "
            "(add surveyed points, e.g. bay corners, spread over the ground the camera sees)"
        )
    px, ll = arr[:, 0, :], arr[:, 1, :]
    bad = np.flatnonzero(~np.isfinite(arr).all(axis=(1, 2)))
    if len(bad):
        raise CalibrationError(f"{where}pair {int(bad[0])} has a non-finite coordinate")
    off = np.flatnonzero((np.abs(ll[:, 0]) > 180) | (np.abs(ll[:, 1]) > 90))
    if len(off):
        i = int(off[0])
        raise CalibrationError(
            f"{where}pair {i}: lonlat {ll[i].tolist()} is not a longitude/latitude "
            "(write [lon, lat] in degrees, longitude first)"
        )
    for name, pts in (("pixel", px), ("lonlat", ll)):
        uniq, counts = np.unique(pts, axis=0, return_counts=True)
        if (counts > 1).any():
            dup = uniq[counts > 1][0]
            idx = np.flatnonzero((pts == dup).all(axis=1)).tolist()
            raise CalibrationError(
                f"{where}pairs {idx} have the same {name} {dup.tolist()}; each pair must be a distinct point"
            )
    origin = (float(ll[:, 0].mean()), float(ll[:, 1].mean()))
    en = lonlat_to_local_m(ll, origin)
    for name, pts in (("pixel", px), ("ground (lon/lat)", en)):
        if _collinear(pts):
            raise CalibrationError(
                f"{where}all {n} {name} points lie on one line; a homography needs points spread over an "
                "area (at least 4 with no 3 on a line)"
            )
    h, ratio = _dlt(px, en)
    if ratio < _RANK_TOL or not np.isfinite(h).all():
        hint = ""
        if n == 4:
            for skip in range(4):
                tri = [i for i in range(4) if i != skip]
                for name, pts in (("pixel", px), ("ground", en)):
                    if _collinear(pts[tri]):
                        hint = f" (pairs {tri} are on one line in {name} coordinates)"
        raise CalibrationError(
            f"{where}the points are degenerate{hint}: at least 4 of them must be in general position, "
            "no three on one line, in both the image and on the ground"
        )
    _, w = _apply_h(h, px)
    if not np.all(w > 0):
        raise CalibrationError(
            f"{where}the fitted homography puts some pairs beyond the horizon; the pairs are inconsistent "
            "(check for swapped lon/lat, a mistyped coordinate or pairs matched to the wrong pixel)"
        )
    return Calibration(px, ll, origin, h, source)


def parse_calibration(data: object, source: str = "<calibration>") -> Calibration:
    try:
        doc = _CalibrationFile.model_validate(data)
    except ValidationError as exc:
        msgs = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()
        )
        raise CalibrationError(
            f'{source}: not a calibration file ({msgs}); expected {{"points": [{{"pixel": [x, y], '
            f'"lonlat": [lon, lat]}}, ...]}}'
        ) from None
    pairs = [(p.pixel, p.lonlat) for p in doc.points]
    return fit(np.asarray(pairs, dtype=np.float64).reshape(-1, 2, 2), source=source)


def load_calibration(path: str | Path) -> Calibration:
    p = Path(path)
    if not p.exists() or p.is_dir():
        raise CalibrationError(f"calibration file {p} not found")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CalibrationError(f"{p}: not valid JSON: {exc}") from None
    return parse_calibration(data, source=str(p))
