"""The worker's Prometheus endpoint: per-camera stream and detector figures, read at scrape time.

A collector reads the counters the camera threads keep anyway when Prometheus asks, instead of
updating metric objects on every frame: with hundreds of cameras the hot path stays free of
locks, and a removed camera simply disappears from the next scrape (nothing to evict). The
endpoint serves the default registry, so the process figures (``process_cpu_seconds_total``,
memory) and other edge components' metrics (the MQTT spool) come with it.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, StateSetMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

STATES = ("connecting", "streaming", "stalled", "reconnecting", "error", "ended", "stopped")


@dataclass(frozen=True, slots=True)
class CameraMetrics:
    """One camera's figures at one instant (what a scrape shows)."""

    camera: str
    state: str
    frames_received: int
    frames_decoded: int
    frames_analysed: int
    frames_dropped: int
    reconnects: int
    decode_errors: int
    received_bytes: int
    decode_s: float
    inference_s: float
    last_frame_age_s: float | None
    queue_frames: int
    keyframe_period_s: float | None
    full_decode: bool


@dataclass(frozen=True, slots=True)
class DetectorMetrics:
    runs: int
    frames: int
    seconds: float


_COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("frames_received", "cityeye_camera_frames_received", "Frames the source passed on (after sampling)."),
    ("frames_decoded", "cityeye_camera_frames_decoded", "Frames the decoder produced."),
    ("frames_analysed", "cityeye_camera_frames_analysed", "Frames run through the detector and analyser."),
    (
        "frames_dropped",
        "cityeye_camera_frames_dropped",
        "Frames dropped (oldest first): the detector lagged.",
    ),
    ("reconnects", "cityeye_camera_reconnects", "Attempts to reopen the stream after a loss or failure."),
    ("decode_errors", "cityeye_camera_decode_errors", "Packets or images that failed to decode."),
    ("received_bytes", "cityeye_camera_received_bytes", "Compressed bytes read from the stream."),
    ("decode_s", "cityeye_camera_decode_seconds", "Time in the decoder and in BGR conversion."),
    ("inference_s", "cityeye_camera_inference_seconds", "Detector time attributed to this camera."),
)


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


_GAUGES: tuple[tuple[str, str, Callable[[CameraMetrics], float]], ...] = (
    (
        "cityeye_camera_last_frame_age_seconds",
        "Seconds since the camera's last frame (NaN: none yet).",
        lambda c: _or_nan(c.last_frame_age_s),
    ),
    ("cityeye_camera_queue_frames", "Frames waiting for the detector.", lambda c: float(c.queue_frames)),
    (
        "cityeye_camera_keyframe_period_seconds",
        "Measured time between keyframes (NaN: unknown).",
        lambda c: _or_nan(c.keyframe_period_s),
    ),
    (
        "cityeye_camera_full_decode",
        "1 when keyframe sampling fell back to decoding every frame.",
        lambda c: float(c.full_decode),
    ),
    ("cityeye_camera_up", "1 while the camera is streaming.", lambda c: float(c.state == "streaming")),
)


class WorkerCollector(Collector):
    def __init__(
        self,
        site: str,
        cameras: Callable[[], Iterable[CameraMetrics]],
        detector: Callable[[], DetectorMetrics],
    ) -> None:
        self.site = site
        self.cameras = cameras
        self.detector = detector

    def collect(self) -> Iterator[Metric]:
        labels = ["site", "camera"]
        snapshot = list(self.cameras())
        for attr, name, doc in _COUNTERS:
            family = CounterMetricFamily(name, doc, labels=labels)
            for c in snapshot:
                family.add_metric([self.site, c.camera], float(getattr(c, attr)))
            yield family
        for name, doc, value in _GAUGES:
            gauge = GaugeMetricFamily(name, doc, labels=labels)
            for c in snapshot:
                gauge.add_metric([self.site, c.camera], value(c))
            yield gauge
        state = StateSetMetricFamily("cityeye_camera_state", "Stream state of the camera.", labels=labels)
        for c in snapshot:
            state.add_metric([self.site, c.camera], {s: s == c.state for s in STATES})
        yield state
        d = self.detector()
        labels_site = ["site"]
        for name, doc, v in (
            ("cityeye_detector_runs", "Detector calls (one per batch).", float(d.runs)),
            ("cityeye_detector_frames", "Frames run through the detector.", float(d.frames)),
            ("cityeye_detector_seconds", "Time spent in the detector.", d.seconds),
        ):
            counter = CounterMetricFamily(name, doc, labels=labels_site)
            counter.add_metric([self.site], v)
            yield counter


class MetricsServer:
    """The HTTP endpoint (``/metrics``) and the collector registration, stopped together."""

    def __init__(self, collector: WorkerCollector, host: str, port: int) -> None:
        self.collector = collector
        REGISTRY.register(collector)
        try:
            server, thread = start_http_server(port, addr=host, registry=REGISTRY)
        except OSError as exc:
            REGISTRY.unregister(collector)
            raise OSError(
                f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}; choose another "
                "edge.metrics_port (or 0 for any free port)"
            ) from None
        self._server: WSGIServer = server
        self._thread: threading.Thread = thread
        self.port = int(server.server_address[1])
        self.host = host
        log.info("metrics on http://%s:%d/metrics", host, self.port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        REGISTRY.unregister(self.collector)
