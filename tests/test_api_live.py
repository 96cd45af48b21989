"""Live updates (SSE) over a real uvicorn server, push with retries to a real HTTP receiver, liveness."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import uvicorn
from fastapi import FastAPI

from cityeye.api.app import create_app
from cityeye.api.config import PushConfig
from cityeye.api.store import Store, utcnow
from cityeye.config import ApiConfig, SiteConfig
from cityeye.events.schema import (
    AreaState,
    CameraStatus,
    LineCounts,
    OccupancyEvent,
    SpaceState,
    StatusEvent,
    TrafficEvent,
)
from tests.test_api_support import wait_for

OP_KEY = "operator-key-0123456789"


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(app, log_config=None, log_level="warning", lifespan="on", timeout_graceful_shutdown=1)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for("uvicorn", lambda: server.started)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


class Listener:
    """Reads an SSE stream on a thread and keeps (event, data) pairs."""

    def __init__(self, url: str) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.status: int | None = None
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(url,), daemon=True)
        self.thread.start()

    def _run(self, url: str) -> None:
        # The server stopping under an open stream ends it with an HTTP error.
        with contextlib.suppress(httpx.HTTPError):
            self._read(url)

    def _read(self, url: str) -> None:
        with httpx.Client(timeout=httpx.Timeout(5, read=30)) as c, c.stream("GET", url) as r:
            self.status = r.status_code
            kind = None
            for line in r.iter_lines():
                if self._stop.is_set():
                    return
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind:
                    self.events.append((kind, json.loads(line[6:])))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [d for k, d in self.events if k == kind]

    def close(self) -> None:
        self._stop.set()


def site(tmp_path: Path, **api: Any) -> SiteConfig:
    return SiteConfig(
        site="demo",
        health_interval_s=0.5,
        api=ApiConfig(database_url=f"sqlite:///{tmp_path / 'live.db'}", index_refresh_s=0.1, **api),
    )


def snapshot(eid: str, camera: str, free: bool) -> OccupancyEvent:
    return OccupancyEvent(
        site="demo",
        camera=camera,
        event_id=eid,
        observed_at=utcnow(),
        zones=[
            SpaceState(id="s1", occupied=not free, score=0.5, lat=16.0, lon=108.0, lot="L"),
            AreaState(id="a", vehicles=1, capacity=3, lat=16.0, lon=108.001),
        ],
    )


def test_live_streams_zone_lot_and_camera_changes(tmp_path: Path) -> None:
    app = create_app(site(tmp_path, offline_after_intervals=3), ingest=False, api_keys=f"operator:{OP_KEY}")
    with serve(app) as base:
        store: Store = app.state.store
        ops = Listener(f"{base}/v1/live?api_key={OP_KEY}")
        public = Listener(f"{base}/v1/parking/live")
        # The feed counts a client when its stream starts, a moment before the client reads the headers.
        wait_for("two live clients", lambda: app.state.live.clients == 2)
        wait_for("both response heads", lambda: None not in (ops.status, public.status))
        assert (ops.status, public.status) == (200, 200)
        assert httpx.get(f"{base}/v1/live").status_code == 401

        store.apply(
            StatusEvent(
                site="demo", camera="c1", event_id="st", observed_at=utcnow(), status=CameraStatus.ONLINE
            )
        )
        store.apply(snapshot("e1", "c1", free=True))
        app.state.index.wake()
        wait_for("zone events", lambda: len(ops.of("zone")) == 2 and len(public.of("zone")) == 2)
        zone = {z["id"]: z for z in ops.of("zone")}["demo:c1:s1"]
        assert (zone["free"], zone["total"], zone["stale"]) == (1, 1, False)
        (lot,) = wait_for("lot event", lambda: ops.of("lot"))
        assert (lot["id"], lot["free"], lot["total"]) == ("demo:L", 1, 1)
        cams = wait_for("camera event", lambda: ops.of("camera"))
        assert cams[-1]["online"] is True and cams[-1]["id"] == "demo:c1"
        assert public.of("camera") == []  # operators only

        store.apply(snapshot("e2", "c1", free=False))
        app.state.index.wake()
        wait_for(
            "the space turning occupied",
            lambda: [z for z in ops.of("zone") if z["id"] == "demo:c1:s1" and z["free"] == 0],
        )

        # Silence: 3 health intervals of 0.5 s without a message and the camera is announced offline.
        offline = wait_for(
            "offline by silence", lambda: [c for c in ops.of("camera") if not c["online"]], timeout=5
        )
        assert offline[0]["silent_s"] >= 1.5
        nearby = httpx.get(
            f"{base}/v1/parking/nearby", params={"lat": 16.0, "lon": 108.0, "min_free": 0}
        ).json()
        assert nearby["results"] and all(r["stale"] for r in nearby["results"])
        ops.close()
        public.close()


def test_zone_dropped_from_a_camera_snapshot_leaves_the_answers(tmp_path: Path) -> None:
    app = create_app(site(tmp_path), ingest=False, api_keys=f"operator:{OP_KEY}")
    with serve(app) as base:
        store: Store = app.state.store
        ops = Listener(f"{base}/v1/live?api_key={OP_KEY}&kinds=zone_removed")
        wait_for("client", lambda: app.state.live.clients == 1)
        store.apply(snapshot("e1", "c1", free=True))
        app.state.index.wake()
        wait_for("two zones", lambda: len(app.state.index.snapshot.zones) == 2)
        only_area = OccupancyEvent(
            site="demo",
            camera="c1",
            event_id="e2",
            observed_at=utcnow(),
            zones=[AreaState(id="a", vehicles=0, capacity=3, lat=16.0, lon=108.001)],
        )
        store.apply(only_area)
        app.state.index.wake()
        assert wait_for("removal", lambda: ops.of("zone_removed")) == [{"id": "demo:c1:s1"}]
        assert httpx.get(f"{base}/v1/parking/zones/demo:c1:s1").status_code == 404
        ops.close()


class Receiver(BaseHTTPRequestHandler):
    """A webhook / context broker that fails the first `fail` requests with 503."""

    fail = 2
    got: ClassVar[list[tuple[str, str, Any]]] = []
    calls = 0

    def do_POST(self) -> None:
        type(self).calls += 1
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if type(self).calls <= type(self).fail:
            self.send_response(503)
            self.end_headers()
            return
        type(self).got.append((self.path, self.headers["Content-Type"], json.loads(body)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_changes_are_pushed_to_a_context_broker_with_retries(tmp_path: Path) -> None:
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    push = PushConfig(
        url=f"http://127.0.0.1:{receiver.server_address[1]}",  # type: ignore[arg-type]
        mode="ngsi-ld",
        backoff_s=0.05,
        batch_interval_s=0.05,
        timeout_s=2,
    )
    app = create_app(site(tmp_path, push=push), ingest=False)
    try:
        with serve(app):
            app.state.store.apply(snapshot("e1", "c1", free=True))
            app.state.index.wake()
            wait_for("a delivered batch", lambda: Receiver.got, timeout=10)
            metrics = app.state.metrics.registry
            # The receiver keeps the batch before it answers, and the pusher counts it once the
            # answer is back: wait for the count rather than race it.
            wait_for(
                "the delivered batch counted",
                lambda: metrics.get_sample_value("cityeye_push_batches_total", {"result": "sent"}) == 1,
                timeout=10,
            )
            assert metrics.get_sample_value("cityeye_push_batches_total", {"result": "retried"}) == 2
    finally:
        receiver.shutdown()
    path, ctype, entities = Receiver.got[0]
    assert path == "/ngsi-ld/v1/entityOperations/upsert" and ctype == "application/ld+json"
    by_id = {e["id"]: e for e in entities}
    assert set(by_id) == {
        "urn:ngsi-ld:ParkingSpot:demo:c1:s1",
        "urn:ngsi-ld:OffStreetParking:demo:L",
        "urn:ngsi-ld:OffStreetParking:demo:c1:a",
    }
    spot = by_id["urn:ngsi-ld:ParkingSpot:demo:c1:s1"]
    assert spot["status"]["value"] == "free"
    assert spot["refParkingSite"]["object"] == "urn:ngsi-ld:OffStreetParking:demo:L"
    assert by_id["urn:ngsi-ld:OffStreetParking:demo:c1:a"]["availableSpotNumber"]["value"] == 2
    assert all("@context" in e for e in entities)


def test_live_streams_per_minute_traffic_counts_as_they_change(tmp_path: Path) -> None:
    app = create_app(site(tmp_path), ingest=False, api_keys=f"operator:{OP_KEY}")
    with serve(app) as base:
        store: Store = app.state.store
        ops = Listener(f"{base}/v1/live?api_key={OP_KEY}&kinds=traffic")
        wait_for("client", lambda: app.state.live.clients == 1)
        start = utcnow().replace(second=0, microsecond=0) - timedelta(minutes=1)

        def send(cars: int) -> None:
            store.apply(
                TrafficEvent(
                    site="demo",
                    camera="t1",
                    event_id=f"demo:t1:traffic:{int(start.timestamp())}",
                    observed_at=start + timedelta(minutes=1),
                    bin_start=start,
                    lines=[LineCounts(line_id="l1", counts={"north": {"car": cars, "bus": 1}})],
                )
            )
            app.state.index.wake()

        send(4)
        rows = wait_for("two rows", lambda: len(ops.of("traffic")) == 2 and ops.of("traffic"))
        assert {(r["vehicle_class"], r["count"]) for r in rows} == {("car", 4), ("bus", 1)}
        assert {r["line_id"] for r in rows} == {"demo:t1:l1"} and rows[0]["direction"] == "north"
        send(6)  # the bin re-sent with more cars: only the changed row is streamed again
        later = wait_for("the update", lambda: ops.of("traffic")[2:])
        assert [(r["vehicle_class"], r["count"]) for r in later] == [("car", 6)]
        ops.close()
