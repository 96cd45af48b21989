"""Camera snapshots: the edge's JPEG, the schema's checks, the centre keeping the newest, the route."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from cityeye.api.app import create_app
from cityeye.api.ingest import MqttIngest, Outcome
from cityeye.api.store import ApplyResult, Store, utcnow
from cityeye.config import ApiConfig, MqttConfig, SiteConfig
from cityeye.edge.config import SnapshotConfig
from cityeye.edge.publisher import CameraPublisher
from cityeye.edge.worker import snapshot_event
from cityeye.events.schema import MAX_SNAPSHOT_BYTES, SnapshotEvent
from cityeye.events.topics import TopicKind, topic_for
from cityeye.streams.frame import Frame
from tests.test_api_support import Postgres, postgres

__all__ = ["postgres"]  # the fixture, imported for pytest

OP_KEY = "operator-key-snapshots-0123"


def _frame(w: int = 1280, h: int = 720, camera: str = "c1") -> Frame:
    img = np.zeros((h, w, 3), np.uint8)
    cv2.rectangle(img, (w // 4, h // 4), (w // 2, h // 2), (0, 200, 255), -1)  # something to see
    return Frame(camera_id=camera, index=0, timestamp=utcnow(), image=img)


def _snap(seconds_ago: float = 0, camera: str = "c1", width: int = 64) -> SnapshotEvent:
    frame = _frame(width * 2, width, camera)
    frame = Frame(frame.camera_id, 0, utcnow() - timedelta(seconds=seconds_ago), frame.image)
    return snapshot_event(frame, SnapshotConfig(width=width), "demo", lambda kind: f"id-{kind}-{seconds_ago}")


def test_edge_encodes_a_jpeg_no_wider_than_asked() -> None:
    ev = snapshot_event(_frame(), SnapshotConfig(width=640, quality=70), "demo", lambda k: f"demo:c1:b:{k}:1")
    img = cv2.imdecode(np.frombuffer(ev.jpeg_bytes, np.uint8), cv2.IMREAD_COLOR)
    assert (ev.width, ev.height) == (640, 360) and img.shape == (360, 640, 3)
    assert img[120, 240].tolist() == pytest.approx([0, 200, 255], abs=12)  # the rectangle survived
    small = snapshot_event(_frame(320, 180), SnapshotConfig(width=640), "demo", lambda k: "x")
    assert (small.width, small.height) == (320, 180)  # never upscaled
    assert SnapshotEvent.model_validate_json(ev.model_dump_json()).jpeg_bytes == ev.jpeg_bytes


def test_schema_refuses_what_is_not_a_jpeg() -> None:
    good = json.loads(_snap().model_dump_json())
    for bad, why in (
        ("@@" + good["jpeg"], "base64"),
        (base64.b64encode(b"GIF89a....").decode(), "JPEG"),
        (base64.b64encode(b"\xff\xd8\xff" + b"0" * MAX_SNAPSHOT_BYTES).decode(), "at most"),
    ):
        with pytest.raises(ValidationError, match=why):
            SnapshotEvent.model_validate({**good, "jpeg": bad})


def test_publisher_never_queues_a_snapshot_while_offline(tmp_path: Path) -> None:
    cfg = MqttConfig.model_validate({"port": 1, "spool": {"dir": str(tmp_path)}})
    pub = CameraPublisher("demo", "c1", cfg, "boot")
    try:
        assert pub.publish_latest(_snap()) is False
        assert (pub.snapshots_skipped, pub.snapshots_sent) == (1, 0)
        assert pub.spool.stats().queued == 0  # nothing stored for later: only the newest matters
        assert pub._spool_health()["snapshots_skipped"] == 1  # reported in the camera's health
    finally:
        pub.spool.close()


def _store_keeps_the_newest(store: Store) -> None:
    assert store.apply(_snap(seconds_ago=10)) is ApplyResult.APPLIED
    newest = _snap(seconds_ago=5)
    assert store.apply(newest) is ApplyResult.APPLIED
    assert store.apply(_snap(seconds_ago=20)) is ApplyResult.DUPLICATE  # late replay of an older frame
    assert store.apply(newest) is ApplyResult.DUPLICATE  # the retained copy again
    snap = store.camera_snapshot("demo", "c1")
    assert snap is not None and snap.jpeg == newest.jpeg_bytes and snap.observed_at == newest.observed_at
    (cam,) = store.cameras()
    assert cam.snapshot_at == newest.observed_at
    assert store.camera_snapshot("demo", "other") is None


def test_store_keeps_the_newest_snapshot_sqlite(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    store.migrate()
    _store_keeps_the_newest(store)
    store.close()


def test_store_keeps_the_newest_snapshot_postgresql(postgres: Postgres) -> None:
    store = Store(postgres.url())
    store.migrate()
    _store_keeps_the_newest(store)
    store.close()


def test_route_serves_the_jpeg_to_operators_only(tmp_path: Path) -> None:
    cfg = SiteConfig(site="demo", api=ApiConfig(database_url=f"sqlite:///{tmp_path / 'r.db'}"))
    app = create_app(cfg, ingest=False, api_keys=f"operator:{OP_KEY}")
    with TestClient(app) as http:
        ingest = MqttIngest(app.state.store, MqttConfig(), site="demo")  # the consumer, without a broker
        ev = _snap()
        done = ingest.handle(topic_for("demo", "c1", TopicKind.SNAPSHOT), ev.model_dump_json().encode())
        assert done.outcome is Outcome.APPLIED
        broken = json.loads(ev.model_dump_json()) | {"jpeg": "bm90IGEganBlZw=="}
        bad = ingest.handle(topic_for("demo", "c1", TopicKind.SNAPSHOT), json.dumps(broken).encode())
        assert bad.outcome is Outcome.REJECTED and "JPEG" in (bad.detail or "")
        url = "/v1/cameras/demo:c1/snapshot"
        assert http.get(url).status_code == 401
        r = http.get(url, headers={"X-API-Key": OP_KEY})
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        assert r.content == ev.jpeg_bytes and r.headers["cache-control"] == "private, no-cache"
        for missing in ("demo:c2", "no-colon"):
            r = http.get(f"/v1/cameras/{missing}/snapshot", headers={"X-API-Key": OP_KEY})
            assert r.status_code == 404 and "snapshot:" in r.json()["detail"]
        app.state.index.refresh()
        (cam,) = http.get("/v1/cameras", headers={"X-API-Key": OP_KEY}).json()["cameras"]
        assert cam["snapshot_at"] is not None
