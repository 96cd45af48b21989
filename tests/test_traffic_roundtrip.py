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

import pytest
from fastapi.testclient import TestClient

from cityeye.api.app import create_app
from cityeye.api.store import utcnow
from cityeye.config import SiteConfig
from cityeye.edge.worker import EdgeWorker
from tests.conftest import Broker, shared_path
from tests.test_api_support import settled, wait_for
from tests.test_traffic_videos import TOP_DOWN

pytestmark = pytest.mark.e2e

DATA = Path(__file__).parent / "data" / "traffic"
OP = {"X-API-Key": "operator-key-0123456789"}


def test_edge_traffic_counts_reach_the_api(mosquitto: Broker, tmp_path: Path) -> None:
    video = shared_path("data", "traffic", "intel_car_detection", "car-detection.mp4")
    truth = json.loads((DATA / "car_detection_hand_count.json").read_text())
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
