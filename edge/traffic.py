"""The traffic camera analyser: detections -> tracks -> line crossings -> per-minute TrafficEvents.

Bins are cut on the frames' own timestamps (stream time mapped to UTC), aligned to multiples
of ``bin_s`` since the epoch, so two workers (or one after a restart) cut the same minutes. The
event id is derived from the camera and the bin start only: a bin published again (a late
crossing, or a flush at shutdown followed by a restart within the same minute) replaces the
earlier version at the centre instead of adding to it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import numpy as np

from cityeye.config import CameraConfig
from cityeye.edge.analysers import EventContext, load_camera_zones
from cityeye.events.schema import AnyEvent, LineCounts, TrafficEvent
from cityeye.streams.frame import Frame
from cityeye.vision.detections import Detections
from cityeye.zones.calibration import load_calibration
from cityeye.zones.counting import CountingPipeline, TimeBins
from cityeye.zones.lines import lines_from_zones

log = logging.getLogger(__name__)


def traffic_event_id(site: str, camera: str, bin_start: datetime) -> str:
    """Stable per (camera, bin): the replacement key of a re-sent bin."""
    return f"{site}:{camera}:traffic:{bin_start.strftime('%Y%m%dT%H%M%SZ')}"


class TrafficAnalyser:
    """Counts line crossings (and area entries/exits) of one traffic camera.

    State: the tracker's live tracks, the counter's per-track memory and at most a few minutes of
    bins; all of it is evicted as tracks end and bins age, so it runs unattended for months.
    """

    def __init__(self, cam: CameraConfig, ctx: EventContext) -> None:
        self.ctx = ctx
        zones = load_camera_zones(cam)
        lines = lines_from_zones(zones)
        areas = [z for z in zones if z.kind == "area"]
        if not lines and not areas:
            log.warning("camera %s: traffic mode but no line or area zones; nothing will be counted", cam.id)
        calibration = load_calibration(cam.calibration) if cam.calibration else None
        self.line_locations: dict[str, list[tuple[float, float]]] = {}
        """Each line in WGS84 (calibrated cameras): sent with its counts so the centre can place it."""
        if calibration is not None:
            for line in lines:
                lonlat = calibration.pixel_to_lonlat(line.points)
                if np.isfinite(lonlat).all():  # a vertex above the horizon has no ground position
                    self.line_locations[line.id] = [(round(x, 7), round(y, 7)) for x, y in lonlat.tolist()]
        self.cfg = cam.traffic
        self.pipeline = CountingPipeline(lines, areas, cam.traffic, calibration)
        self.bins = TimeBins(
            self.pipeline.zone_directions,
            cam.traffic.bin_s,
            cam.traffic.publish_delay_s,
            provisional_s=cam.traffic.provisional_s,
        )
        self.crossings = 0
        self._last_t: float | None = None

    def needs_detection(self, frame: Frame) -> bool:
        return bool(self.bins.zones)

    def process(self, frame: Frame, detections: Detections | None) -> list[AnyEvent]:
        if detections is None or not self.bins.zones:
            return []
        t = frame.timestamp.timestamp()
        if self._last_t is not None and t < self._last_t:
            # The source restarted its clock (a looped file, a reconnect): old tracks are void.
            self.pipeline.tracker.reset()
        self._last_t = t
        self.bins.touch(t)
        for c in self.pipeline.step(detections, t, frame.index, (frame.width, frame.height)):
            self.bins.add(c)
            self.crossings += 1
        return self._events(t)

    def _events(self, now_s: float, flush: bool = False) -> list[AnyEvent]:
        out: list[AnyEvent] = []
        for start, b in self.bins.due(now_s, flush=flush):
            bin_start = datetime.fromtimestamp(start, UTC)
            out.append(
                TrafficEvent(
                    site=self.ctx.site,
                    camera=self.ctx.camera,
                    event_id=traffic_event_id(self.ctx.site, self.ctx.camera, bin_start),
                    observed_at=bin_start + timedelta(seconds=self.bins.bin_s),
                    bin_start=bin_start,
                    bin_s=self.bins.bin_s,
                    lines=[
                        LineCounts(line_id=z, counts=b.counts[z], location=self.line_locations.get(z))
                        for z in self.bins.zones
                    ],
                )
            )
        return out

    def flush(self) -> list[AnyEvent]:
        """Settle pending crossings and hand out every bin not yet published (the current one too)."""
        for c in self.pipeline.finish():
            self.bins.add(c)
            self.crossings += 1
        if self._last_t is None:
            return []
        return self._events(self._last_t, flush=True)

    def close(self) -> None:
        """Nothing to persist: the worker publishes :meth:`flush`'s events (the running bin's last
        seconds) before it closes the analyser, and a bin re-sent after a restart replaces them."""
