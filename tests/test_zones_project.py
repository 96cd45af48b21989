"""`cityeye zones project` (zones drawn on a frame) and `cityeye calibrate --max-error-m` checks."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import shapely

from cityeye.cli import main
from cityeye.zones.calibration import load_calibration
from cityeye.zones.model import load_zones

from .conftest import REPO
from .test_zones_calibration import metres_to_lonlat, synthetic_pairs, write_cal

SAMPLE = REPO / "core" / "samples" / "pucpr"
FRAME = SAMPLE / "frames" / "2012-09-12_10_11_12.jpg"


def test_projected_zones_round_trip_and_land_on_the_frame(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cal_path = SAMPLE / "calibration.json"
    pixel_path = tmp_path / "pixel.geojson"
    doc = json.loads((SAMPLE / "zones.geojson").read_text())
    ring = [[1500, 300], [1560, 300], [1560, 350], [1500, 350], [1500, 300]]  # right of the 1280 px frame
    cut = [[1250, 300], [1310, 300], [1310, 350], [1250, 350], [1250, 300]]  # across its right border
    for zid, coords in (("far", ring), ("cut", cut)):
        doc["features"].append(
            {
                "type": "Feature",
                "id": zid,
                "properties": {"kind": "space"},
                "geometry": {"type": "Polygon", "coordinates": [coords]},
            }
        )
    pixel_path.write_text(json.dumps(doc))
    geo = tmp_path / "wgs84.geojson"
    assert main(["zones", "georef", str(pixel_path), "--calibration", str(cal_path), "--out", str(geo)]) == 0
    capsys.readouterr()

    # pixel -> lon/lat (9 decimals) -> pixel: the same polygons to a hundredth of a pixel.
    cal = load_calibration(cal_path)
    original = {z.id: z for z in load_zones(pixel_path)}
    back = load_zones(geo, cal)
    assert [z.id for z in back] == list(original)
    assert max(np.abs(z.pixels - original[z.id].pixels).max() for z in back) < 0.01

    out = tmp_path / "projected.png"
    assert (
        main(
            [
                "zones",
                "project",
                str(geo),
                "--image",
                str(FRAME),
                "--calibration",
                str(cal_path),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["zones"] == 102 and report["outside"] == ["far"] and report["partial"] == ["cut"]
    assert report["calibration_rms_m"] < 0.01
    frame = cv2.imread(str(FRAME))
    drawn = cv2.imread(str(out))
    assert drawn is not None and frame is not None and drawn.shape == frame.shape
    changed = np.abs(drawn.astype(int) - frame.astype(int)).sum(axis=2) > 0
    # Every zone in the frame is drawn where its pixels are...
    for z in back:
        if z.id == "far":
            continue
        p = shapely.Polygon(z.pixels).representative_point()
        assert changed[int(p.y), min(int(p.x), frame.shape[1] - 1)], z.id
    # ...and nothing is drawn where there is neither a zone nor a calibration point.
    assert not changed[0:100, 300:900].any()


def test_project_needs_a_readable_frame(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "frame.png"
    bad.write_bytes(b"not an image")
    assert (
        main(
            [
                "zones",
                "project",
                str(SAMPLE / "zones.geojson"),
                "--image",
                str(bad),
                "--out",
                str(tmp_path / "o.png"),
            ]
        )
        == 2
    )
    assert "cannot be read as an image" in capsys.readouterr().err


def test_calibrate_flags_a_bad_pair_by_leaving_it_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    px, ll, en = synthetic_pairs(n=6, seed=5)
    good = write_cal(tmp_path / "good.json", px, ll)
    assert main(["calibrate", str(good), "--max-error-m", "0.5"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["holdout_errors_m"]) == 6 and report["holdout_max_m"] < 0.01
    assert report["suspect_pair"] is None
    # Pair 2 surveyed 4 m off: the fit spreads the error over all pairs; without pair 2 the
    # other five agree, which names it.
    shifted = en.copy()
    shifted[2] += [4.0, 0.0]
    bad = write_cal(tmp_path / "bad.json", px, metres_to_lonlat(shifted))
    assert main(["calibrate", str(bad), "--max-error-m", "1"]) == 2
    out, err = capsys.readouterr()
    report = json.loads(out)  # the report is still printed, for the operator to read
    assert report["suspect_pair"] == 2 and report["holdout_errors_m"][2] == pytest.approx(4.0, abs=0.01)
    assert "check pair 2" in err and "limit 1.0 m" in err
    # Four pairs fit exactly whatever their quality: no hold-out figures to give.
    four = write_cal(tmp_path / "four.json", px[:4], ll[:4])
    assert main(["calibrate", str(four)]) == 0
    assert json.loads(capsys.readouterr().out)["holdout_errors_m"] is None
