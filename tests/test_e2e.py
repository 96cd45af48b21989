"""End to end with real parts: Mosquitto, `cityeye api` and `cityeye edge` as processes, real PKLot frames.

The edge reads a folder of UFPR05 frames, the API ingests over MQTT into SQLite, and a driver's
`/v1/parking/nearby` must agree zone by zone with what `cityeye occupancy` says for the last frame.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
import yaml

from tests.conftest import Broker, free_port, shared_path

pytestmark = pytest.mark.e2e

LAT0, LON0 = 16.0544, 108.2022  # where the calibration puts the lot (Da Nang)
FRAMES = ("2013-03-09_09_30_04.png", "2013-04-15_07_05_01.png", "2013-04-15_07_15_01.png")


def cityeye(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cityeye", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def calibration(path: Path) -> None:
    """A homography that puts the 1280x720 view on a ~120 m x 80 m patch around (LAT0, LON0)."""
    corners_px = [(0, 720), (1280, 720), (1280, 0), (0, 0)]
    corners_m = [(-40, -40), (40, -40), (60, 40), (-60, 40)]
    m_per_deg_lat = 111_320.0
    m_per_deg_lon = m_per_deg_lat * math.cos(math.radians(LAT0))
    points = [
        {"pixel": list(px), "lonlat": [LON0 + e / m_per_deg_lon, LAT0 + n / m_per_deg_lat]}
        for px, (e, n) in zip(corners_px, corners_m, strict=True)
    ]
    path.write_text(json.dumps({"points": points}))


@pytest.fixture
def site(tmp_path: Path, mosquitto: Broker) -> Iterator[tuple[Path, str, Path]]:
    src = shared_path("data", "parking", "pklot_ufpr05")
    frames = tmp_path / "frames"
    frames.mkdir()
    for name in FRAMES:
        (frames / name).symlink_to(src / name)
    zones = tmp_path / "zones.geojson"
    out = cityeye("zones", "import-pklot", str(src / FRAMES[-1].replace(".png", ".xml")), "--out", str(zones))
    assert out.returncode == 0, out.stderr
    calibration(tmp_path / "cal.json")
    api_port = free_port()
    cfg = {
        "site": "e2e",
        "mqtt": {"host": mosquitto.host, "port": mosquitto.port},
        "cameras": [
            {
                "id": "ufpr05",
                "source": str(frames),
                "mode": "parking",
                "interval_s": 0.3,
                "zones": str(zones),
                "calibration": str(tmp_path / "cal.json"),
                "lot": "ufpr05",
                "snapshot": {"every_s": 0.1, "width": 640},
            }
        ],
        "api": {"host": "127.0.0.1", "port": api_port, "database_url": f"sqlite:///{tmp_path / 'e2e.db'}"},
        "health_interval_s": 1.0,
    }
    cfg_path = tmp_path / "site.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    api_log = (tmp_path / "api.log").open("w")
    api = subprocess.Popen(
        [sys.executable, "-m", "cityeye", "api", "--config", str(cfg_path)], stdout=api_log, stderr=api_log
    )
    base = f"http://127.0.0.1:{api_port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).json().get("mqtt_connected"):
                    break
            except httpx.HTTPError:
                pass
            assert api.poll() is None, (tmp_path / "api.log").read_text()
            assert time.monotonic() < deadline, (
                "API did not become healthy: " + (tmp_path / "api.log").read_text()
            )
            time.sleep(0.2)
        yield cfg_path, base, zones
    finally:
        api.terminate()
        api.wait(timeout=20)


def test_camera_to_driver_lookup(site: tuple[Path, str, Path], tmp_path: Path) -> None:
    cfg_path, base, zones = site
    edge = cityeye("edge", "--config", str(cfg_path), timeout=300)
    assert edge.returncode == 0, edge.stderr

    expected_line = cityeye(
        "occupancy",
        "--zones",
        str(zones),
        "--calibration",
        str(tmp_path / "cal.json"),
        str(tmp_path / "frames" / FRAMES[-1]),
        "--json",
    )
    assert expected_line.returncode == 0, expected_line.stderr
    expected = {z["id"]: z for z in json.loads(expected_line.stdout.splitlines()[0])["zones"]}
    assert len(expected) == 40

    # The API ingests asynchronously: poll until the last frame's snapshot is there.
    deadline = time.monotonic() + 30
    while True:
        r = httpx.get(
            f"{base}/v1/parking/nearby",
            params={"lat": LAT0, "lon": LON0, "radius_m": 500, "min_free": 0, "limit": 200},
        )
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        got = {z["zone_id"]: z for z in results}
        if got and all(
            got.get(k, {}).get("free") == (0 if v["occupied"] else 1) for k, v in expected.items()
        ):
            break
        assert time.monotonic() < deadline, (
            f"API state never matched `cityeye occupancy`: {got} vs {expected}"
        )
        time.sleep(0.3)

    assert set(got) == set(expected)
    assert sum(z["total"] for z in results) == 40
    free_api = sum(z["free"] for z in results)
    free_cli = sum(0 if z["occupied"] else 1 for z in expected.values())
    assert free_api == free_cli
    distances = [z["distance_m"] for z in results]
    assert distances == sorted(distances)
    assert all(d < 200 for d in distances), distances
    for z in results:
        assert z["kind"] == "space"
        assert abs(z["lat"] - LAT0) < 0.002 and abs(z["lon"] - LON0) < 0.002

    # default min_free=1 returns only zones with a free place
    free_only = httpx.get(
        f"{base}/v1/parking/nearby", params={"lat": LAT0, "lon": LON0, "radius_m": 500, "limit": 200}
    ).json()["results"]
    assert len(free_only) == free_cli
    one = results[0]
    detail = httpx.get(f"{base}/v1/parking/zones/{one['id']}")
    assert detail.status_code == 200
    assert detail.json()["free"] == one["free"]
    assert httpx.get(f"{base}/v1/parking/zones/no-such-zone").status_code == 404

    # The worker ended cleanly: it said `offline` itself, so the answers are marked stale.
    deadline = time.monotonic() + 10
    while not all(
        z["stale"]
        for z in httpx.get(
            f"{base}/v1/parking/nearby",
            params={"lat": LAT0, "lon": LON0, "radius_m": 500, "min_free": 0, "limit": 200},
        ).json()["results"]
    ):
        assert time.monotonic() < deadline, "zones not stale after the camera went offline"
        time.sleep(0.2)

    # Every frame was also sent as a snapshot (QoS 0, retained); the API keeps the newest for operators.
    cams = httpx.get(f"{base}/v1/cameras").json()["cameras"]
    assert [c["id"] for c in cams] == ["e2e:ufpr05"] and cams[0]["snapshot_at"] is not None
    snap = httpx.get(f"{base}/v1/cameras/e2e:ufpr05/snapshot")
    assert snap.status_code == 200 and snap.headers["content-type"] == "image/jpeg"
    img = cv2.imdecode(np.frombuffer(snap.content, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (360, 640, 3)
    last = cv2.resize(
        cv2.imread(str(tmp_path / "frames" / FRAMES[-1])), (640, 360), interpolation=cv2.INTER_AREA
    )
    assert float(np.abs(img.astype(np.float32) - last).mean()) < 4.0  # the last frame, up to JPEG loss
    assert httpx.get(f"{base}/v1/cameras/e2e:nope/snapshot").status_code == 404
