"""The edge worker: for each camera, source -> detector -> zones -> events -> MQTT.

Each camera has a stream supervisor (its own thread: FFmpeg releases the GIL while it reads and
decodes) that keeps the source open, reconnects with backoff and publishes the camera's stream
state as its MQTT status. Sampled frames go into a small per-camera queue that drops the oldest
frame when the detector lags. One detector thread takes frames of different cameras in
least-recently-served order and runs them as one batch (onnxruntime already spreads one run
over the cores, and concurrent runs on a 2-core box only thrash), so every camera gets its turn
however many there are. Health is published on its own timer, so a stalled camera still
reports, and on a Prometheus endpoint when ``edge.metrics_port`` is set.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import cv2
import numpy as np
import numpy.typing as npt

from cityeye.config import CameraConfig, SiteConfig
from cityeye.edge.analysers import EventContext, make_analyser
from cityeye.edge.config import SnapshotConfig
from cityeye.edge.metrics import CameraMetrics, DetectorMetrics, MetricsServer, WorkerCollector
from cityeye.edge.publisher import CameraPublisher
from cityeye.edge.scheduler import FairScheduler
from cityeye.events.schema import CameraHealth, CameraStatus, HealthEvent, SnapshotEvent
from cityeye.streams.frame import Frame
from cityeye.streams.sources import FrameSource, SourceError, open_source
from cityeye.streams.supervisor import Backoff, StateChange, StreamState, StreamSupervisor
from cityeye.vision.detections import Detections
from cityeye.vision.detector import Detector

log = logging.getLogger(__name__)

DETAIL_MAX = 500  # StatusEvent.detail's limit

_STATUS = {
    StreamState.CONNECTING: CameraStatus.CONNECTING,
    StreamState.STREAMING: CameraStatus.STREAMING,
    StreamState.STALLED: CameraStatus.STALLED,
    StreamState.RECONNECTING: CameraStatus.RECONNECTING,
    StreamState.ERROR: CameraStatus.ERROR,
}
"""Stream states published as the camera's status; ended/stopped are said by the publisher's offline."""


@dataclass
class CameraStats:
    """Counters of one camera past its source; written by the camera and detector threads."""

    frames_received: int = 0
    frames_analysed: int = 0
    frames_dropped: int = 0
    inference_s: float = 0.0
    inference_ms: float | None = None
    last_frame_mono: float | None = None
    error: str | None = None
    """The last analysis error (stream errors are the supervisor's)."""
    started_mono: float = field(default_factory=time.monotonic)
    window: tuple[float, int] = field(default_factory=lambda: (time.monotonic(), 0))
    """(time, frames analysed) at the previous health report: fps is measured over the last window."""


def snapshot_event(
    frame: Frame, cfg: SnapshotConfig, site: str, next_id: Callable[[str], str]
) -> SnapshotEvent:
    """The frame as a JPEG no wider than ``cfg.width`` (INTER_AREA: no aliasing when shrinking)."""
    img = frame.image
    h, w = img.shape[:2]
    if w > cfg.width:
        h, w = max(1, round(h * cfg.width / w)), cfg.width
        img = np.asarray(cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, cfg.quality])
    if not ok:
        raise ValueError(f"OpenCV could not encode a {w}x{h} frame of camera {frame.camera_id} as JPEG")
    return SnapshotEvent.of(
        buf.tobytes(),
        site=site,
        camera=frame.camera_id,
        event_id=next_id("snapshot"),
        observed_at=frame.timestamp,
        width=w,
        height=h,
    )


class CameraWorker:
    """One camera: its supervisor, its analyser and its MQTT publisher."""

    def __init__(
        self,
        site: str,
        cam: CameraConfig,
        publisher: CameraPublisher,
        scheduler: FairScheduler,
        detector: Detector | None = None,
    ) -> None:
        self.site = site
        self.cam = cam
        self.publisher = publisher
        self.scheduler = scheduler
        self.stats = CameraStats()
        # The worker's one model session also serves analysers that run their own passes
        # (parking tiles), instead of each loading a second copy of the model.
        self.analyser = make_analyser(cam, EventContext(site, cam.id, publisher.next_event_id), detector)
        self.source: FrameSource | None = None
        self.supervisor: StreamSupervisor | None = None
        self.startup_error: str | None = None
        self._last_error_log = 0.0
        self._snapshot_at: datetime | None = None
        offline = not cam.realtime and "://" not in cam.source  # a file analysed as fast as it decodes
        scheduler.add_camera(cam.id, cam.queue_size, lossless=offline)

    # -- stream side (supervisor thread) --------------------------------------------------------

    def start(self) -> None:
        try:
            self.source = open_source(self.cam)
        except (SourceError, ValueError) as exc:
            # One broken camera reports an error status and lets the others run.
            self.startup_error = str(exc)
            log.error("camera %s: %s", self.cam.id, exc)
            self.publisher.publish_status(CameraStatus.ERROR, str(exc)[:DETAIL_MAX])
            return
        backoff = Backoff(self.cam.backoff_initial_s, self.cam.backoff_max_s, self.cam.backoff_jitter)
        self.supervisor = StreamSupervisor(self.source, self._on_frame, self._on_state, backoff)
        self.supervisor.start()

    def _on_frame(self, frame: Frame) -> None:
        self.stats.frames_received += 1
        self.stats.last_frame_mono = time.monotonic()
        if self.scheduler.put(frame):
            self.stats.frames_dropped += 1

    def _on_state(self, change: StateChange) -> None:
        status = _STATUS.get(change.state)
        if status is not None:
            detail = None if change.detail is None else change.detail[:DETAIL_MAX]
            self.publisher.publish_status(status, detail)

    @property
    def finished(self) -> bool:
        return self.supervisor is None or self.supervisor.finished.is_set()

    @property
    def state(self) -> str:
        if self.supervisor is None:
            return StreamState.ERROR.value if self.startup_error else StreamState.CONNECTING.value
        return self.supervisor.state.value

    def stop(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
        self.scheduler.remove_camera(self.cam.id)

    # -- detector side (detector thread) --------------------------------------------------------

    def analyse(self, frame: Frame, detections: Detections | None) -> None:
        try:
            events = self.analyser.process(frame, detections)
        except Exception as exc:  # a bug in one camera's analysis must not stop the others
            self._analysis_failed(exc)
            return
        for event in events:
            self.publisher.publish(event)
        snap = self.cam.snapshot
        if snap is not None and (
            self._snapshot_at is None or (frame.timestamp - self._snapshot_at).total_seconds() >= snap.every_s
        ):
            self._snapshot_at = frame.timestamp
            try:
                self.publisher.publish_latest(
                    snapshot_event(frame, snap, self.site, self.publisher.next_event_id)
                )
            except Exception as exc:  # an odd frame must not stop the analysis
                self._analysis_failed(exc)

    def _analysis_failed(self, exc: Exception) -> None:
        self.stats.error = f"analysis failed: {type(exc).__name__}: {exc}"
        now = time.monotonic()
        if now - self._last_error_log > 60:  # once a minute is enough to find it in the log
            self._last_error_log = now
            log.exception("camera %s: %s", self.cam.id, self.stats.error)

    # -- reporting ------------------------------------------------------------------------------

    def health(self) -> CameraHealth:
        now = time.monotonic()
        s = self.stats
        t0, n0 = s.window
        fps = (s.frames_analysed - n0) / max(now - t0, 1e-6)
        s.window = (now, s.frames_analysed)
        src = self.source.stats if self.source is not None else None
        sup = self.supervisor
        if self.startup_error is not None:
            error: str | None = self.startup_error
        elif sup is not None and sup.state is not StreamState.STREAMING and sup.error is not None:
            error = sup.error
        else:
            error = s.error
        decode_ms = None
        if src is not None and src.frames_decoded:
            decode_ms = round(src.decode_s * 1000 / src.frames_decoded, 3)
        return CameraHealth(
            frames_received=s.frames_received,
            frames_analysed=s.frames_analysed,
            frames_dropped=s.frames_dropped,
            reconnects=sup.reconnects if sup is not None else 0,
            fps=round(fps, 3),
            last_frame_age_s=None if s.last_frame_mono is None else round(now - s.last_frame_mono, 3),
            inference_ms=None if s.inference_ms is None else round(s.inference_ms, 2),
            error=error,
            frames_decoded=src.frames_decoded if src is not None else None,
            decode_ms=decode_ms,
            state=self.state,
        )

    def health_event(self) -> HealthEvent:
        return HealthEvent(
            site=self.site,
            camera=self.cam.id,
            event_id=self.publisher.next_event_id("health"),
            observed_at=datetime.now(UTC),
            health=self.health(),
        )

    def metrics(self) -> CameraMetrics:
        src = self.source.stats if self.source is not None else None
        s = self.stats
        return CameraMetrics(
            camera=self.cam.id,
            state=self.state,
            frames_received=s.frames_received,
            frames_decoded=src.frames_decoded if src else 0,
            frames_analysed=s.frames_analysed,
            frames_dropped=s.frames_dropped,
            reconnects=self.supervisor.reconnects if self.supervisor else 0,
            decode_errors=src.decode_errors if src else 0,
            received_bytes=src.bytes if src else 0,
            decode_s=src.decode_s if src else 0.0,
            inference_s=s.inference_s,
            last_frame_age_s=None if s.last_frame_mono is None else time.monotonic() - s.last_frame_mono,
            queue_frames=self.scheduler.depth(self.cam.id),
            keyframe_period_s=src.keyframe_period_s if src else None,
            full_decode=src.full_decode if src else False,
        )


class EdgeWorker:
    def __init__(self, cfg: SiteConfig, detector: Detector | None = None) -> None:
        if not cfg.cameras:
            raise ValueError("the configuration lists no cameras; add at least one under `cameras:`")
        self.cfg = cfg
        self.detector = detector or Detector.from_config(cfg.model)
        self.batch_size = cfg.edge.batch_size or max(1, int(getattr(self.detector, "batch", 1) or 1))
        self.boot_id = format(int(time.time() * 1000), "x")
        self.scheduler = FairScheduler()
        self.cameras: list[CameraWorker] = []
        for cam in cfg.cameras:
            publisher = CameraPublisher(cfg.site, cam.id, cfg.mqtt, self.boot_id)
            self.cameras.append(CameraWorker(cfg.site, cam, publisher, self.scheduler, self.detector))
        self._by_id = {cw.cam.id: cw for cw in self.cameras}
        self._stop = threading.Event()
        self._detector_stop = threading.Event()
        self._detector_thread = threading.Thread(target=self._detect_loop, name="detector", daemon=True)
        self.detector_runs = 0
        self.detector_frames = 0
        self.detector_s = 0.0
        self.metrics: MetricsServer | None = None

    # -- detector thread ------------------------------------------------------------------------

    def _detect_loop(self) -> None:
        while not self._detector_stop.is_set():
            batch = self.scheduler.take(self.batch_size, timeout_s=0.5)
            if not batch:
                continue
            try:
                self._analyse(batch)
            except Exception:  # never let the one detector thread die: every camera needs it
                log.exception("detector batch failed")
            finally:
                self.scheduler.done(len(batch))

    def _analyse(self, batch: Sequence[Frame]) -> None:
        todo: list[tuple[CameraWorker, Frame]] = []
        for frame in batch:
            cw = self._by_id.get(frame.camera_id)
            if cw is None:
                continue
            try:
                needed = cw.analyser.needs_detection(frame)
            except Exception as exc:
                cw._analysis_failed(exc)
                continue
            if needed:
                todo.append((cw, frame))
            else:
                cw.analyse(frame, None)
        if not todo:
            return
        t0 = time.perf_counter()
        results = self._detect([f.image for _, f in todo], [cw for cw, _ in todo])
        elapsed = time.perf_counter() - t0
        self.detector_runs += 1
        self.detector_frames += len(todo)
        self.detector_s += elapsed
        share = elapsed / len(todo)
        for (cw, frame), dets in zip(todo, results, strict=True):
            if dets is None:
                continue
            cw.stats.frames_analysed += 1
            cw.stats.inference_s += share
            cw.stats.inference_ms = share * 1000
            cw.analyse(frame, dets)

    def _detect(
        self, images: list[npt.NDArray[np.uint8]], owners: list[CameraWorker]
    ) -> list[Detections | None]:
        try:
            return list(self.detector.detect_batch(images))
        except Exception:
            if len(images) == 1:
                owners[0]._analysis_failed(RuntimeError("the detector failed on this frame"))
                log.exception("camera %s: detector failed", owners[0].cam.id)
                return [None]
        # One bad frame must not cost the batch: retry one by one to find it.
        out: list[Detections | None] = []
        for image, cw in zip(images, owners, strict=True):
            try:
                out.append(self.detector.detect(image))
            except Exception as exc:
                cw._analysis_failed(exc)
                out.append(None)
        return out

    # -- lifecycle --------------------------------------------------------------------------------

    def _detector_metrics(self) -> DetectorMetrics:
        return DetectorMetrics(self.detector_runs, self.detector_frames, self.detector_s)

    def start_metrics(self) -> None:
        port = self.cfg.edge.metrics_port
        if port is None:
            return
        collector = WorkerCollector(
            self.cfg.site, lambda: [cw.metrics() for cw in self.cameras], self._detector_metrics
        )
        self.metrics = MetricsServer(collector, self.cfg.edge.metrics_host, port)

    def run(self) -> int:
        """Run until every source ends (files without ``loop``) or :meth:`stop` is called."""
        self.start_metrics()
        for cw in self.cameras:
            cw.publisher.start()
        deadline = time.monotonic() + 15
        for cw in self.cameras:
            if not cw.publisher.connected.wait(max(0.0, deadline - time.monotonic())):
                log.warning(
                    "camera %s: MQTT broker %s:%d not reachable yet; events queue until it is",
                    cw.cam.id,
                    self.cfg.mqtt.host,
                    self.cfg.mqtt.port,
                )
        self._detector_thread.start()
        for cw in self.cameras:
            cw.start()
        next_health = time.monotonic()
        try:
            while not self._stop.is_set():
                if time.monotonic() >= next_health:
                    for cw in self.cameras:
                        cw.publisher.publish(cw.health_event())
                    next_health = time.monotonic() + self.cfg.health_interval_s
                if all(cw.finished for cw in self.cameras) and self.scheduler.idle():
                    break
                self._stop.wait(0.2)
        finally:
            self.shutdown()
        failed = [cw for cw in self.cameras if cw.state == StreamState.ERROR.value]
        return 1 if failed and len(self.cameras) == 1 else 0

    def stop(self) -> None:
        self._stop.set()

    def shutdown(self) -> None:
        ended = not self._stop.is_set()
        for cw in self.cameras:
            if cw.supervisor is not None:
                cw.supervisor.stop()
        for cw in self.cameras:
            if cw.supervisor is not None and not cw.supervisor.join(timeout=max(5.0, cw.cam.read_timeout_s)):
                log.warning("camera %s: the stream thread did not stop in time", cw.cam.id)
        self._detector_stop.set()
        self.scheduler.close()
        if self._detector_thread.is_alive():
            self._detector_thread.join(timeout=30)
        for cw in self.cameras:
            cw.stop()
            cw.publisher.publish(cw.health_event())
            try:
                flush = getattr(cw.analyser, "flush", None)
                if callable(flush):  # time-binned analysers (traffic): the running bin's last seconds
                    for event in flush():
                        cw.publisher.publish(event)
                cw.analyser.close()
            except Exception:
                log.exception("camera %s: analyser close failed", cw.cam.id)
            cw.publisher.stop("source ended" if ended and cw.finished else "worker stopped")
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None
