"""The edge worker with real parts: Mosquitto, the shipped detector, real (and broken) video files.

A broken camera (corrupt file, truncated file, missing file, closed RTSP port) must report a clear
error status while the worker keeps analysing its other cameras; health reaches MQTT and the
Prometheus endpoint; a worker whose only camera is unreachable costs almost no CPU.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from cityeye.config import CameraConfig, SiteConfig
from cityeye.edge.scheduler import FairScheduler
from cityeye.edge.worker import EdgeWorker
from cityeye.models.registry import DEFAULT_MODEL
from cityeye.streams.frame import Frame
from cityeye.streams.gst_rtsp_server import RtspServer
from cityeye.vision.detector import Detector
from tests.conftest import Broker, free_port
from tests.test_streams_sampling import write_h264

SITE = "t"


def frame(camera: str, index: int) -> Frame:
    return Frame(camera, index, datetime.now(UTC), np.zeros((2, 2, 3), np.uint8))


def test_scheduler_serves_cameras_in_turn_and_drops_the_oldest() -> None:
    s = FairScheduler()
    for cam in "abcde":
        s.add_camera(cam, queue_size=2)
    for i in range(3):  # three frames into queues of two: each camera drops its oldest
        for cam in "abcde":
            assert s.put(frame(cam, i)) is (i == 2)
    served: list[str] = []
    while not s.idle():
        batch = s.take(2, timeout_s=0)
        assert len({f.camera_id for f in batch}) == len(batch)  # one frame per camera per batch
        served += [f.camera_id for f in batch]
        if len(served) == 2:
            s.put(frame("a", 9))  # a camera just served waits for the others before its next frame
        s.done(len(batch))
    assert "".join(served) == "abcdeabcdea"  # round robin: nobody is served twice before the rest
    s.add_camera("x", 1)
    s.remove_camera("x")
    assert s.depth("x") == 0 and not s.put(frame("x", 0))  # removed cameras leave nothing behind


def test_scheduler_is_fair_under_overload() -> None:
    """19 busy cameras and a rare one; the detector takes 3 frames per turn: equal shares, no starving."""
    s = FairScheduler()
    busy = [f"c{i:02d}" for i in range(19)]
    for c in [*busy, "rare"]:
        s.add_camera(c, 1)
    served = dict.fromkeys(busy, 0)
    waits = []
    put_at: int | None = None
    for rnd in range(210):
        for c in busy:
            s.put(frame(c, rnd))
        if rnd % 30 == 0:
            s.put(frame("rare", rnd))
            put_at = rnd
        batch = s.take(3, timeout_s=0)
        for f in batch:
            if f.camera_id == "rare":
                assert put_at is not None
                waits.append(rnd - put_at)
            else:
                served[f.camera_id] += 1
        s.done(len(batch))
    assert max(served.values()) - min(served.values()) <= 1
    assert len(waits) == 7 and max(waits) <= 7  # served within ceil(20 / 3) turns, every time


def test_offline_lanes_wait_for_room_instead_of_dropping() -> None:
    s = FairScheduler()
    s.add_camera("file", 1, lossless=True)
    drops: list[bool] = []
    producer = threading.Thread(target=lambda: drops.extend(s.put(frame("file", i)) for i in range(5)))
    producer.start()
    got: list[int] = []
    while len(got) < 5:
        batch = s.take(1, timeout_s=5)
        assert batch, "the producer never delivered"
        got += [f.index for f in batch]
        s.done(len(batch))
    producer.join(5)
    assert got == [0, 1, 2, 3, 4] and drops == [False] * 5
    s.put(frame("file", 5))
    blocked = threading.Thread(target=s.put, args=(frame("file", 6),))
    blocked.start()
    time.sleep(0.1)
    assert blocked.is_alive()  # waiting for room
    s.close()
    blocked.join(5)
    assert not blocked.is_alive()  # closing releases it


class Listener:
    """Every message of the site, parsed, in arrival order."""

    def __init__(self, broker: Broker) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"listener-{time.monotonic_ns()}")
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(f"cityeye/v1/{SITE}/+/+", qos=1)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, json.loads(msg.payload)))

    def of(self, camera: str, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [p for t, p in self.messages if t == f"cityeye/v1/{SITE}/{camera}/{kind}"]

    def wait(self, what: str, cond: Callable[[], Any], timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = cond()
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; got {[t for t, _ in self.messages][-20:]}")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def of(listener: Listener, camera: str, kind: str) -> Callable[[], list[dict[str, Any]]]:
    return lambda: listener.of(camera, kind)


def errors_of(listener: Listener, camera: str) -> Callable[[], list[dict[str, Any]]]:
    return lambda: [s for s in listener.of(camera, "status") if s["status"] == "error"]


@pytest.fixture
def listener(mosquitto: Broker) -> Iterator[Listener]:
    listen = Listener(mosquitto)
    yield listen
    listen.close()


def line_zone(tmp_path: Path) -> str:
    """A counting line across the picture: traffic cameras without zones skip detection altogether."""
    path = tmp_path / "line.geojson"
    feature = {
        "type": "Feature",
        "id": "l1",
        "properties": {"kind": "line"},
        "geometry": {"type": "LineString", "coordinates": [[0, 24], [64, 24]]},
    }
    path.write_text(
        json.dumps({"type": "FeatureCollection", "cityeye:coordinates": "pixel", "features": [feature]})
    )
    return str(path)


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector(DEFAULT_MODEL)  # explicit: $CITYEYE_MODEL may be set where tests run


class SlowDetector(Detector):
    """The real model plus 0.1 s per run: slower than a 25 fps camera on any machine, so the
    drop-oldest queue must drop (on an idle box the bare model keeps up and nothing would be)."""

    def detect(self, image: Any) -> Any:
        time.sleep(0.1)
        return super().detect(image)

    def detect_batch(self, images: Any) -> Any:
        time.sleep(0.1)
        return super().detect_batch(images)


def test_broken_cameras_report_errors_while_the_others_run(
    tmp_path: Path, mosquitto: Broker, listener: Listener
) -> None:
    detector = SlowDetector(DEFAULT_MODEL)
    good = write_h264(tmp_path / "good.mp4", frames=50, fps=25, gop=25)  # 2 s, looped
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(1).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    zones = line_zone(tmp_path)
    cams = [
        # Every frame of a 25 fps camera into a queue of one: the (slowed) detector cannot keep
        # up, so frames are dropped, oldest first, and counted.
        CameraConfig(
            id="good", source=str(good), mode="traffic", interval_s=0, loop=True, queue_size=1, zones=zones
        ),
        CameraConfig(id="cut", source=str(cut), mode="traffic", interval_s=0.2),
        CameraConfig(id="junk", source=str(junk), mode="traffic", interval_s=0.2),
        CameraConfig(id="gone", source=str(tmp_path / "missing.mp4"), mode="traffic"),
    ]
    cfg = SiteConfig.model_validate(
        {
            "site": SITE,
            "mqtt": {"host": mosquitto.host, "port": mosquitto.port},
            "cameras": [c.model_dump() for c in cams],
            "edge": {"metrics_port": 0},
            "health_interval_s": 0.5,
        }
    )
    worker = EdgeWorker(cfg, detector=detector)
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(worker.run()))
    runner.start()
    try:
        for cam, needle in (("cut", "truncated"), ("junk", "damaged"), ("gone", "not found")):
            status = listener.wait(f"{cam} error", errors_of(listener, cam))
            assert needle in status[-1]["detail"], status[-1]
        health = listener.wait(
            "good camera analysed frames",
            lambda: [h for h in listener.of("good", "health") if h["health"]["frames_analysed"] >= 5],
        )[-1]["health"]
        assert health["state"] == "streaming" and health["error"] is None
        assert health["frames_decoded"] >= health["frames_received"] > 0
        assert health["decode_ms"] > 0 and health["inference_ms"] > 0
        assert health["frames_dropped"] > 0  # 25 fps offered, the detector takes far fewer
        # Every frame the source passed on was analysed, dropped, or is still queued (at most 1).
        pending = health["frames_received"] - health["frames_analysed"] - health["frames_dropped"]
        assert 0 <= pending <= 2, health
        assert [s["status"] for s in listener.of("good", "status")][-1] == "streaming"
        assert worker.metrics is not None
        text = httpx.get(f"http://127.0.0.1:{worker.metrics.port}/metrics", timeout=5).text
        assert f'cityeye_camera_frames_analysed_total{{camera="good",site="{SITE}"}}' in text
        assert f'cityeye_camera_state{{camera="cut",cityeye_camera_state="error",site="{SITE}"}} 1.0' in text
        assert f'cityeye_camera_up{{camera="good",site="{SITE}"}} 1.0' in text
        assert "process_cpu_seconds_total" in text and "cityeye_detector_frames_total" in text
        health_cut = listener.wait(
            "cut health in error",
            lambda: [h["health"] for h in listener.of("cut", "health") if h["health"]["state"] == "error"],
        )[-1]
        assert "truncated" in health_cut["error"]
    finally:
        worker.stop()
        runner.join(30)
    assert result == [0]  # one camera of several failing is reported, not fatal
    offline = listener.wait(
        "offline", lambda: [s for s in listener.of("good", "status") if s["status"] == "offline"]
    )
    assert offline[-1]["detail"] == "worker stopped"


def test_file_cameras_end_after_their_last_frame_is_analysed(
    tmp_path: Path, mosquitto: Broker, listener: Listener, detector: Detector
) -> None:
    video = write_h264(tmp_path / "v.mp4", frames=30, fps=10, gop=10)  # 3 s, keyframe every second
    zones = line_zone(tmp_path)
    cfg = SiteConfig.model_validate(
        {
            "site": SITE,
            "mqtt": {"host": mosquitto.host, "port": mosquitto.port},
            "cameras": [
                {"id": "a", "source": str(video), "interval_s": 1, "realtime": False},
                {"id": "b", "source": str(video), "interval_s": 1, "sampling": "keyframe"},  # real time
            ],
            "health_interval_s": 60,
        }
    )
    cfg.cameras = [c.model_copy(update={"mode": "traffic", "zones": Path(zones)}) for c in cfg.cameras]
    worker = EdgeWorker(cfg, detector=detector)
    assert worker.run() == 0  # returns by itself once both files ended and their frames were analysed
    for cam in "ab":
        health = listener.wait(f"{cam} final health", of(listener, cam, "health"))[-1]["health"]
        assert health["frames_received"] == 3 and health["frames_analysed"] == 3, health
        assert health["frames_dropped"] == 0
        assert listener.wait("offline", of(listener, cam, "status"))[-1]["detail"] == "source ended"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_worker_with_an_unreachable_camera_idles(
    tmp_path: Path, mosquitto: Broker, listener: Listener
) -> None:
    """`cityeye edge` as a process: the camera's port is closed; the error is published, CPU stays near 0."""
    cfg = {
        "site": SITE,
        "mqtt": {"host": mosquitto.host, "port": mosquitto.port},
        "model": {"path": str(DEFAULT_MODEL)},
        "cameras": [
            {
                "id": "dead",
                "source": f"rtsp://127.0.0.1:{free_port()}/stream1",
                "backoff_initial_s": 0.1,
                "backoff_max_s": 0.5,
            }
        ],
        "health_interval_s": 1,
    }
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen(
        [sys.executable, "-m", "cityeye", "edge", "--config", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        status = listener.wait(
            "error status", lambda: [s for s in listener.of("dead", "status") if s["status"] == "error"]
        )[-1]
        assert "refused" in status["detail"] and "check the port" in status["detail"]
        time.sleep(1.0)  # past start-up (model load)
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(5.0)
        cpu, wall = cpu_seconds(proc.pid) - cpu0, time.monotonic() - t0
        assert proc.poll() is None  # still running, still retrying
        health = listener.of("dead", "health")[-1]["health"]
        assert health["reconnects"] >= 5 and health["state"] == "error"
        assert cpu / wall < 0.05, f"{cpu:.2f} s CPU in {wall:.1f} s while retrying every <= 0.5 s"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert proc.returncode == 0, err[-2000:]  # a signal is a clean stop
    assert err.count("refused") <= 3, err[-2000:]  # the repeated failure is not logged on every retry


def test_camera_status_follows_the_stream_over_mqtt(
    tmp_path: Path, mosquitto: Broker, listener: Listener, detector: Detector
) -> None:
    """A real RTSP camera killed and restarted: its retained status goes reconnecting, then streaming."""
    reason = RtspServer.available()
    if reason:
        pytest.skip(reason)
    port = free_port()
    server = RtspServer(port, {"cam": "test:320x240@10:gop=10"}).start()
    cfg = SiteConfig.model_validate(
        {
            "site": SITE,
            "mqtt": {"host": mosquitto.host, "port": mosquitto.port},
            "cameras": [
                {
                    "id": "live",
                    "source": server.url("cam"),
                    "mode": "traffic",
                    "sampling": "keyframe",
                    "interval_s": 1,
                    "zones": line_zone(tmp_path),
                    "backoff_initial_s": 0.2,
                    "backoff_max_s": 1.0,
                }
            ],
            "health_interval_s": 1,
        }
    )
    worker = EdgeWorker(cfg, detector=detector)
    runner = threading.Thread(target=worker.run)
    runner.start()
    try:
        statuses = of(listener, "live", "status")
        listener.wait("streaming", lambda: [s for s in statuses() if s["status"] == "streaming"])
        server.kill()
        listener.wait("reconnecting", lambda: [s for s in statuses() if s["status"] == "reconnecting"])
        server = RtspServer(port, {"cam": "test:320x240@10:gop=10"}).start()
        listener.wait("streaming again", lambda: statuses()[-1]["status"] == "streaming", timeout=20)
        names = [s["status"] for s in statuses()]
        assert names.index("connecting") < names.index("streaming") < names.index("reconnecting")
        health = listener.wait(
            "health after the reconnect",
            lambda: [h["health"] for h in listener.of("live", "health") if h["health"]["reconnects"] >= 1],
        )[-1]
        assert health["frames_analysed"] >= 1
    finally:
        worker.stop()
        runner.join(30)
        server.stop()
