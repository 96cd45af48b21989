"""Calibration: homography fit in a local metre plane, round trips, degenerate inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cityeye.zones.calibration import (
    EARTH_RADIUS_M,
    CalibrationError,
    fit,
    haversine_m,
    load_calibration,
)

LON0, LAT0 = 108.2270, 16.0615  # Da Nang
# A camera ~10 m up looking across a lot: ground metres (east, north) -> pixels. The third
# row makes the horizon the line north = -60 m, so the ground in front projects normally.
H_GROUND_TO_PIXEL = np.array([[22.0, -4.0, 640.0], [1.5, -9.0, 520.0], [0.0, 1 / 60, 1.0]])


def metres_to_lonlat(en: np.ndarray) -> np.ndarray:
    k = np.radians(1.0) * EARTH_RADIUS_M
    return np.stack([LON0 + en[:, 0] / (k * np.cos(np.radians(LAT0))), LAT0 + en[:, 1] / k], axis=1)


def project(en: np.ndarray) -> np.ndarray:
    hom = np.c_[en, np.ones(len(en))] @ H_GROUND_TO_PIXEL.T
    return np.asarray(hom[:, :2] / hom[:, 2:])


def synthetic_pairs(n: int = 8, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    en = np.random.default_rng(seed).uniform(-25, 25, (n, 2))
    return project(en), metres_to_lonlat(en), en


def write_cal(path: Path, pixels: np.ndarray, lonlat: np.ndarray, **extra: object) -> Path:
    points = [{"pixel": p.tolist(), "lonlat": q.tolist()} for p, q in zip(pixels, lonlat, strict=True)]
    path.write_text(json.dumps({"points": points, **extra}))
    return path


def test_round_trip_on_a_known_homography(tmp_path: Path) -> None:
    px, ll, _ = synthetic_pairs()
    cal = load_calibration(write_cal(tmp_path / "cal.json", px, ll, camera="c1", note="test"))
    assert cal.reprojection_error_m() < 1e-3
    # Points that were not used for the fit, spread over the visible lot.
    grid = np.stack(np.meshgrid(np.linspace(-30, 30, 7), np.linspace(-20, 40, 7)), -1).reshape(-1, 2)
    pix = project(grid)
    back = cal.lonlat_to_pixel(cal.pixel_to_lonlat(pix))
    assert np.abs(back - pix).max() < 0.5
    assert haversine_m(cal.pixel_to_lonlat(pix), metres_to_lonlat(grid)).max() < 0.01
    # One matrix pixel -> lon/lat gives the same answer as the metric route.
    hom = np.c_[pix, np.ones(len(pix))] @ cal.homography_lonlat.T
    assert haversine_m(hom[:, :2] / hom[:, 2:], cal.pixel_to_lonlat(pix)).max() < 0.01


def test_reprojection_error_reflects_survey_noise() -> None:
    px, _, en = synthetic_pairs(n=12, seed=3)
    noisy = metres_to_lonlat(en + np.random.default_rng(4).normal(0, 0.5, en.shape))
    cal = fit(np.stack([px, noisy], axis=1))
    errs = cal.reprojection_errors_m()
    assert errs.shape == (12,)
    assert 0.05 < cal.reprojection_error_m() < 1.0
    assert cal.reprojection_error_m() == pytest.approx(float(np.sqrt(np.mean(errs**2))))


def test_pixels_above_the_horizon_have_no_ground_position() -> None:
    px, ll, _ = synthetic_pairs()
    cal = fit(np.stack([px, ll], axis=1))
    sky = project(np.array([[0.0, -70.0]]))  # beyond the horizon line north = -60 m
    assert np.isnan(cal.pixel_to_lonlat(sky)).all()
    behind = metres_to_lonlat(np.array([[0.0, -70.0]]))
    assert np.isnan(cal.lonlat_to_pixel(behind)).all()


def test_haversine_matches_a_known_distance() -> None:
    # One degree of latitude on the mean-radius sphere.
    assert haversine_m([[0.0, 0.0]], [[0.0, 1.0]])[0] == pytest.approx(np.radians(1) * EARTH_RADIUS_M)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda px, ll: (px[:3], ll[:3]), "at least 4"),
        (lambda px, ll: (np.c_[np.arange(5.0), 2 * np.arange(5.0)], ll[:5]), "one line"),
        (lambda px, ll: (px[:4], np.c_[np.full(4, LON0), LAT0 + np.arange(4) * 1e-5]), "one line"),
        (lambda px, ll: (np.vstack([px[:4], px[:1]]), ll[:5]), "same pixel"),
        (lambda px, ll: (px[:5], np.vstack([ll[:4], ll[:1]])), "same lonlat"),
        (lambda px, ll: (np.where(np.arange(5)[:, None] == 2, np.nan, px[:5]), ll[:5]), "non-finite"),
        (lambda px, ll: (px[:4], ll[:4, ::-1] * [1, 10]), "not a longitude/latitude"),
    ],
)
def test_degenerate_inputs_are_refused(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    px, ll, _ = synthetic_pairs()
    p, q = mutate(px, ll)
    with pytest.raises(CalibrationError, match=message):
        fit(np.stack([p, q], axis=1))


def test_three_of_four_collinear_is_named() -> None:
    px, ll, _ = synthetic_pairs(n=4)
    px = px.copy()
    px[2] = (px[0] + px[1]) / 2
    with pytest.raises(CalibrationError, match=r"pairs \[0, 1, 2\] are on one line in pixel"):
        fit(np.stack([px, ll], axis=1))


def test_inconsistent_pairs_are_refused() -> None:
    # The centre of a pixel square surveyed outside the ground square: no homography keeps all
    # five points in front of the camera (a projective map keeps the diagonals' crossing inside).
    px = np.array([[0, 0], [100, 0], [100, 100], [0, 100], [50, 50]], dtype=float)
    en = np.array([[0, 0], [10, 0], [10, 10], [0, 10], [50, 400]], dtype=float)
    with pytest.raises(CalibrationError, match="horizon"):
        fit(np.stack([px, metres_to_lonlat(en)], axis=1))


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match="not found"):
        load_calibration(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CalibrationError, match=r"bad\.json: not valid JSON"):
        load_calibration(bad)
    typo = tmp_path / "typo.json"
    typo.write_text(json.dumps({"points": [{"pixel": [0, 0], "lonlat": [1, 1], "lon_lat": [1, 1]}]}))
    with pytest.raises(CalibrationError, match=r"typo\.json: not a calibration file .*lon_lat"):
        load_calibration(typo)
