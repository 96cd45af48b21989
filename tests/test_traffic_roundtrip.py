"""Traffic counts edge -> real Mosquitto -> real API -> /v1/traffic/counts, on real footage.

The edge worker runs car-detection.mp4 as an offline traffic camera (every frame, as fast as it
decodes). The clip is 30 s of stream time (12.5 fps), and provisional publications of the running bin are
off here, so its last minute bin (at least the crossing at frame 332, 3.6 s before the end)
reaches the API only because the worker publishes the analyser's flush at shutdown.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from cityeye.api.app import create_app
from cityeye.api.store import utcnow
from cityeye.config import SiteConfig
from cityeye.edge.worker import EdgeWorker
from cityeye.zones.calibration import load_calibration
from tests.conftest import Broker, shared_path
from tests.test_api_support import settled, wait_for
from tests.test_traffic_videos import TOP_DOWN

pytestmark = pytest.mark.e2e

DATA = Path(__file__).parent / "data" / "traffic"
OP = {"X-API-Key": "operator-key-0123456789"}


def test_edge_traffic_counts_reach_the_api(mosquitto: Broker, tmp_path: Path) -> None:
    video = shared_path("data", "traffic", "intel_car_detection", "car-detection.mp4")
    truth = json.loads((DATA / "car_detection_hand_count.json").read_text())
    # A calibration (768x432 frame onto ~80 m x 45 m of road in Da Nang) so the edge can place its line.
    lat0, lon0 = 16.0544, 108.2022
    corners = [
        ((0, 432), (0.0, 0.0)),
        ((768, 432), (0.0007, 0.0)),
        ((768, 0), (0.0007, 0.0004)),
        ((0, 0), (0.0, 0.0004)),
    ]
    cal = tmp_path / "cal.json"
    cal.write_text(
        json.dumps(
            {"points": [{"pixel": list(px), "lonlat": [lon0 + dx, lat0 + dy]} for px, (dx, dy) in corners]}
        )
    )
    cfg = SiteConfig.model_validate(
        {
            "site": "rt",
            "mqtt": {"host": mosquitto.host, "port": mosquitto.port},
            "model": {"confidence": 0.1},  # ByteTrack's low-score stage needs the weak boxes
            "cameras": [
                {
                    "id": "cam1",
                    "source": str(video),
                    "mode": "traffic",
                    "realtime": False,
                    "interval_s": 0,
                    "zones": str(DATA / truth["zones"]),
                    "calibration": str(cal),
                    "traffic": {"class_map": TOP_DOWN, "provisional_s": 0},
                }
            ],
            "api": {"database_url": f"sqlite:///{tmp_path / 'api.db'}"},
        }
    )
    app = create_app(cfg, api_keys=f"operator:{OP['X-API-Key']}")
    started = utcnow()
    with TestClient(app) as http:
        wait_for("subscription", lambda: app.state.ingest.stats().subscribed)
        worker = EdgeWorker(cfg)
        assert worker.run() == 0
        analyser = worker.cameras[0].analyser
        crossings = getattr(analyser, "crossings", None)
        assert crossings == 4, f"the edge counted {crossings} crossings, the hand count is 4"

        params = {
            "line_id": "rt:cam1:middle",
            "from": (started - timedelta(hours=1)).isoformat(),
            "to": (utcnow() + timedelta(hours=1)).isoformat(),
            "bucket": "1h",
            "by": "direction,class",
        }

        def rows() -> list[tuple[str, str, int]]:
            body = http.get("/v1/traffic/counts", params=params, headers=OP)
            assert body.status_code == 200, body.text
            rs = body.json()["rows"]
            return sorted((r["direction"], r["vehicle_class"], r["count"]) for r in rs if r["count"])

        expected = [("left", "car", 2), ("right", "car", 2)]
        wait_for("the edge's counts in the API", lambda: rows() == expected, timeout=30)
        stats = app.state.ingest.stats()
        assert stats.errors == 0 and stats.rejected_total == 0, stats
        assert settled(app.state.ingest) >= 1

        # The IOC's view: one TrafficFlowObserved per direction, placed where the line is on the map.
        flows = http.get("/ngsi-ld/v1/entities", params={"type": "TrafficFlowObserved"}, headers=OP).json()
        assert sorted(f["laneDirection"]["value"] for f in flows) == ["left", "right"]
        want = load_calibration(cal).pixel_to_lonlat([[0, 216], [768, 216]])
        for f in flows:
            loc = f["location"]["value"]
            assert loc["type"] == "LineString"
            np.testing.assert_allclose(loc["coordinates"], want, atol=1e-6)
            assert abs(loc["coordinates"][0][1] - (lat0 + 0.0002)) < 2e-5  # mid-height of the frame
