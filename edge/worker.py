"""The edge worker: for each camera, source -> detector -> zones -> events -> MQTT.

One thread per camera reads its source; inference is serialised through one shared detector
(onnxruntime already spreads one run over the cores, and two concurrent runs on a 2-core box
only thrash). Health is published on its own timer so a stalled camera still reports.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cityeye.config import CameraConfig, SiteConfig
from cityeye.edge.analysers import EventContext, make_analyser
from cityeye.edge.publisher import CameraPublisher
from cityeye.events.schema import CameraHealth, CameraStatus, HealthEvent
from cityeye.streams.sources import FrameSource, SourceError, open_source
from cityeye.vision.detector import Detector

log = logging.getLogger(__name__)


@dataclass
class CameraStats:
    """Counters of one camera; written by its thread, read by the health timer."""

    frames_received: int = 0
    frames_analysed: int = 0
    frames_dropped: int = 0
    reconnects: int = 0
    last_frame_mono: float | None = None
    inference_ms: float | None = None
    error: str | None = None
    started_mono: float = field(default_factory=time.monotonic)

    def snapshot(self) -> CameraHealth:
        now = time.monotonic()
        elapsed = max(now - self.started_mono, 1e-6)
        return CameraHealth(
            frames_received=self.frames_received,
            frames_analysed=self.frames_analysed,
            frames_dropped=self.frames_dropped,
            reconnects=self.reconnects,
            fps=round(self.frames_analysed / elapsed, 3),
            last_frame_age_s=None if self.last_frame_mono is None else round(now - self.last_frame_mono, 3),
            inference_ms=None if self.inference_ms is None else round(self.inference_ms, 2),
            error=self.error,
        )


class CameraWorker:
    def __init__(
        self,
        site: str,
        cam: CameraConfig,
        detector: Detector,
        detector_lock: threading.Lock,
        publisher: CameraPublisher,
    ) -> None:
        self.site = site
        self.cam = cam
        self.detector = detector
        self.detector_lock = detector_lock
        self.publisher = publisher
        self.stats = CameraStats()
        self.analyser = make_analyser(cam, EventContext(site, cam.id, publisher.next_event_id))
        self.source: FrameSource | None = None
        self._stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"camera-{cam.id}", daemon=True)
        self.finished = threading.Event()

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self.source is not None:
            self.source.close()

    def _run(self) -> None:
        try:
            # Opened here, not in __init__: a camera whose source is broken reports an error
            # status and lets the other cameras run.
            self.source = open_source(self.cam)
            if self._stopping.is_set():
                return
            for frame in self.source:
                self.stats.frames_received += 1
                self.stats.last_frame_mono = time.monotonic()
                dets = None
                if self.analyser.needs_detection(frame):
                    t0 = time.perf_counter()
                    with self.detector_lock:
                        dets = self.detector.detect(frame.image)
                    self.stats.inference_ms = (time.perf_counter() - t0) * 1000
                    self.stats.frames_analysed += 1
                for event in self.analyser.process(frame, dets):
                    self.publisher.publish(event)
        except SourceError as exc:
            self.stats.error = str(exc)
            log.error("camera %s: %s", self.cam.id, exc)
            self.publisher.publish_status(CameraStatus.ERROR, str(exc))
        except Exception as exc:  # a bug in one camera must not take the others down
            self.stats.error = f"{type(exc).__name__}: {exc}"
            log.exception("camera %s stopped", self.cam.id)
            self.publisher.publish_status(CameraStatus.ERROR, self.stats.error)
        finally:
            self.analyser.close()
            self.finished.set()

    def health_event(self) -> HealthEvent:
        return HealthEvent(
            site=self.site,
            camera=self.cam.id,
            event_id=self.publisher.next_event_id("health"),
            observed_at=datetime.now(UTC),
            health=self.stats.snapshot(),
        )


class EdgeWorker:
    def __init__(self, cfg: SiteConfig, detector: Detector | None = None) -> None:
        if not cfg.cameras:
            raise ValueError("the configuration lists no cameras; add at least one under `cameras:`")
        self.cfg = cfg
        self.detector = detector or Detector.from_config(cfg.model)
        self.boot_id = format(int(time.time() * 1000), "x")
        lock = threading.Lock()
        self.cameras: list[CameraWorker] = []
        for cam in cfg.cameras:
            publisher = CameraPublisher(cfg.site, cam.id, cfg.mqtt, self.boot_id)
            self.cameras.append(CameraWorker(cfg.site, cam, self.detector, lock, publisher))
        self._stop = threading.Event()

    def run(self) -> int:
        """Run until every source ends (files without ``loop``) or :meth:`stop` is called."""
        for cw in self.cameras:
            cw.publisher.start()
        for cw in self.cameras:
            if not cw.publisher.connected.wait(15):
                log.warning(
                    "camera %s: MQTT broker %s:%d not reachable yet; events queue until it is",
                    cw.cam.id,
                    self.cfg.mqtt.host,
                    self.cfg.mqtt.port,
                )
            cw.start()
        next_health = time.monotonic()
        try:
            while not self._stop.is_set() and not all(cw.finished.is_set() for cw in self.cameras):
                if time.monotonic() >= next_health:
                    for cw in self.cameras:
                        cw.publisher.publish(cw.health_event())
                    next_health = time.monotonic() + self.cfg.health_interval_s
                self._stop.wait(0.2)
        finally:
            self.shutdown()
        return 1 if any(cw.stats.error for cw in self.cameras) and len(self.cameras) == 1 else 0

    def stop(self) -> None:
        self._stop.set()

    def shutdown(self) -> None:
        for cw in self.cameras:
            cw.stop()
        for cw in self.cameras:
            cw.thread.join(timeout=10)
            cw.publisher.publish(cw.health_event())
            detail = "source ended" if cw.finished.is_set() and not self._stop.is_set() else "worker stopped"
            cw.publisher.stop(detail)
