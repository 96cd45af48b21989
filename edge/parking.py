"""The parking analyser of one camera: detections -> per-space decisions -> temporal state -> events.

Per frame:

1. *Motion* (``zones/motion.py``): a low-resolution difference against the last analysed frame
   gates the detector (a still scene is not re-detected, but at least every ``max_skip_s``, and
   always while a space has a pending change or is occluded), and a difference against the
   previous frame marks spaces with something moving over them as occluded.
2. *Detection*: the zone-aware tiled pass (``zones/tiling.py``) at ``parking.confidence``, the
   settings measured in ``benchmarks/RESULTS.md``, run by the analyser itself (the worker's
   whole-frame detections at the model's cut miss most small cars). It uses the worker's
   detector when ``make_analyser`` is given one, else one session of the site's model shared by
   the parking cameras of the process (:func:`own_detector`).
3. *Decision*: the one-frame rule (``zones/occupancy.py``, the same as ``cityeye occupancy``).
4. *Temporal filter* (``zones/temporal.py``): entry inertia, exit hysteresis, occlusion hold,
   dwell (``since``) and overstay. ``parking.temporal: auto`` turns inertia, hysteresis and the
   hold off for image folders: their frames are snapshots minutes or days apart, where every
   arrival looks like motion and a frame's own verdict is the best there is.
5. *Events*: a retained occupancy snapshot of every zone on every frame (analysed or skipped, so
   the centre never sees a still lot as stale) and one overstay event per stay past its limit.

State is saved (``zones/state.py``) after every frame that changed it and on close, and
restored at start, so a restart keeps states, dwell times and sent overstays.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cityeye.edge.analysers import EventContext, load_camera_zones
from cityeye.events.schema import AnyEvent, OccupancyEvent, OverstayEvent
from cityeye.streams.frame import Frame
from cityeye.vision.detections import Detections
from cityeye.zones.motion import Motion, MotionDetector
from cityeye.zones.occupancy import Observation, OccupancyJudge, OccupancyRule
from cityeye.zones.state import load_state, save_state, state_path
from cityeye.zones.temporal import SpaceFilter, TemporalSettings
from cityeye.zones.tiling import ZoneDetector

if TYPE_CHECKING:
    from cityeye.config import CameraConfig, ModelConfig
    from cityeye.vision.detector import Detector

log = logging.getLogger(__name__)

_OWN_DETECTORS: dict[str, Detector] = {}
_OWN_LOCK = threading.Lock()


def own_detector(model: ModelConfig | None) -> Detector:
    """One detector per model configuration, shared by the parking cameras of this process.

    Used when the worker hands the analyser no detector: the parking pass needs the model's raw
    stages at its own confidence, which the worker's whole-frame detections do not give.
    """
    from cityeye.config import ModelConfig
    from cityeye.vision.detector import Detector

    cfg = model or ModelConfig()
    key = cfg.model_dump_json()
    with _OWN_LOCK:
        det = _OWN_DETECTORS.get(key)
        if det is None:
            det = _OWN_DETECTORS[key] = Detector.from_config(cfg)
            log.info("parking: own detector session for %s", det.path)
        return det


def temporal_enabled(cam: CameraConfig) -> bool:
    """``auto``: off for a local image folder (independent snapshots), on for streams and videos."""
    mode = cam.parking.temporal
    if mode != "auto":
        return mode == "on"
    return not ("://" not in cam.source and Path(cam.source).expanduser().is_dir())


class ParkingAnalyser:
    """Implements the ``Analyser`` protocol of ``edge/analysers.py`` for ``mode: parking``."""

    def __init__(
        self,
        cam: CameraConfig,
        ctx: EventContext,
        detector: Detector | None = None,
        state_file: Path | None = None,
    ) -> None:
        cfg = cam.parking
        self.cfg = cfg
        self.ctx = ctx
        self.zones = [z for z in load_camera_zones(cam) if z.kind != "line"]
        self.judge = OccupancyJudge(self.zones, OccupancyRule.parse(cfg.rule), cfg.motorcycles_per_car)
        self.spaces = [k for k, z in enumerate(self.judge.zones) if z.kind == "space"]
        self._model = cam.site_model
        self._detector = detector
        self.tiler: ZoneDetector | None = None
        self.motion = MotionDetector(self.zones)
        self.temporal = temporal_enabled(cam)
        self.filter = SpaceFilter(
            TemporalSettings(cfg.enter_frames, cfg.enter_s, cfg.exit_frames, cfg.exit_s, cfg.occlusion_max_s)
            if self.temporal
            else TemporalSettings(1, 0.0, 1, 0.0, 0.0)
        )
        self.limits = self._limits()
        self.state_file = state_file or state_path(cfg.state_dir, ctx.site, ctx.camera)
        self._restored = False
        self._saved: dict[str, Any] | None = None
        self._last_analysed: datetime | None = None
        self._last_obs: Observation | None = None
        self._motion_key: tuple[int, datetime] | None = None
        self._motion: Motion | None = None
        self.frames_analysed = 0
        """Frames this analyser ran its own detection on (the worker's counters do not see them)."""
        self.inference_ms: float | None = None
        """Time of the last tiled pass, milliseconds."""

    def _limits(self) -> dict[str, float]:
        """Dwell limit per space: the zone's ``max_dwell_s`` property, else the camera's."""
        out: dict[str, float] = {}
        for k in self.spaces:
            z = self.judge.zones[k]
            raw = z.properties.get("max_dwell_s", self.cfg.max_dwell_s)
            if raw is None:
                continue
            if isinstance(raw, bool) or not isinstance(raw, int | float) or raw <= 0:
                raise ValueError(
                    f"zone {z.id!r}: properties.max_dwell_s {raw!r} must be a positive number of seconds"
                )
            out[z.id] = float(raw)
        return out

    # -- state on disk --------------------------------------------------------------------------
    def _restore(self, now: datetime) -> None:
        self._restored = True
        spaces = load_state(self.state_file, now, self.cfg.restore_max_age_s)
        if spaces is None:
            return
        try:
            self.filter.load(spaces)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning(
                "camera %s: parking state %s not usable (%s); starting fresh",
                self.ctx.camera,
                self.state_file,
                exc,
            )
            self.filter.tracks = {}
            return
        dropped = self.filter.retain(self.judge.zones[k].id for k in self.spaces)
        log.info(
            "camera %s: restored %d space state(s) from %s%s",
            self.ctx.camera,
            len(self.filter.tracks),
            self.state_file,
            f" ({dropped} no longer in the zones file)" if dropped else "",
        )
        self._saved = self.filter.to_json()

    def _persist(self, now: datetime, force: bool = False) -> None:
        """Write when a state, a pending change, an occlusion or an overstay changed; a new score
        alone (every analysed frame of an occupied bay) does not wear the disk."""
        data = self.filter.to_json()
        if not force and self._saved is not None and _without_scores(data) == _without_scores(self._saved):
            return
        try:
            save_state(self.state_file, data, now, site=self.ctx.site, camera=self.ctx.camera)
            self._saved = data
        except OSError as exc:  # a full or read-only disk must not stop the camera
            log.warning(
                "camera %s: cannot save parking state to %s: %s", self.ctx.camera, self.state_file, exc
            )

    # -- Analyser protocol ----------------------------------------------------------------------
    def _motion_of(self, frame: Frame) -> Motion:
        key = (frame.index, frame.timestamp)
        if self._motion is None or self._motion_key != key:
            self._motion = self.motion.observe(frame.image)
            self._motion_key = key
        return self._motion

    def _should_analyse(self, frame: Frame) -> bool:
        motion = self._motion_of(frame)
        if not self.cfg.motion_gate or self._last_analysed is None or self._last_obs is None:
            return True
        if any(t.pending_count or t.occluded_since is not None for t in self.filter.tracks.values()):
            return True  # a change waits for confirmation, or an occlusion for its end
        if (frame.timestamp - self._last_analysed).total_seconds() >= self.cfg.max_skip_s:
            return True
        return motion.changed_bays >= self.cfg.motion_threshold

    def _tiler(self) -> ZoneDetector:
        """Built on first use, so a camera that never analyses never loads a model."""
        if self.tiler is None:
            det = self._detector or own_detector(self._model)
            self.tiler = ZoneDetector(
                det, self.zones, self.cfg.tiles, self.cfg.confidence, exposure_target=self.cfg.exposure_target
            )
        return self.tiler

    def needs_detection(self, frame: Frame) -> bool:
        # The worker's whole-frame detections are never what the parking rule was measured with:
        # the analyser runs its own zone-aware tiled pass in process().
        return False

    def process(self, frame: Frame, detections: Detections | None) -> list[AnyEvent]:
        """``detections`` (a worker's whole-frame pass) is not used: :meth:`needs_detection` never
        asks for it, and the decision rule was measured on the tiled pass only."""
        if not self.zones:
            return []
        now = frame.timestamp
        if not self._restored:
            self._restore(now)
        motion = self._motion_of(frame)
        if self._should_analyse(frame):
            tiler = self._tiler()
            t0 = time.perf_counter()
            dets = tiler(frame.image)
            self.inference_ms = (time.perf_counter() - t0) * 1000
            self.frames_analysed += 1
            self._analyse(now, dets, motion)
        if self._last_obs is None:
            return []  # nothing analysed yet: no snapshot to publish
        events: list[AnyEvent] = [self._snapshot(now, self._last_obs)]
        events += self._overstays(now)
        self._persist(now)
        return events

    def _analyse(self, now: datetime, detections: Detections, motion: Motion) -> None:
        obs = self.judge.observe(detections)
        occluded = (motion.zone_changed >= self.cfg.occlusion_motion) & self.temporal
        for k in self.spaces:
            self.filter.update(
                self.judge.zones[k].id, now, bool(obs.occupied[k]), bool(occluded[k]), float(obs.score[k])
            )
        self.motion.mark_analysed()
        self._last_analysed = now
        self._last_obs = obs

    def _snapshot(self, now: datetime, obs: Observation) -> OccupancyEvent:
        n = len(self.judge.zones)
        occupied = obs.occupied.copy()
        scores = obs.score.copy()
        since: list[datetime | None] = [None] * n
        for k in self.spaces:
            t = self.filter.tracks[self.judge.zones[k].id]
            occupied[k], scores[k], since[k] = t.occupied, t.score, t.since
        return OccupancyEvent(
            site=self.ctx.site,
            camera=self.ctx.camera,
            event_id=self.ctx.next_event_id("occupancy"),
            observed_at=now,
            zones=self.judge.states(obs, occupied=np.asarray(occupied), since=since, scores=scores),
        )

    def _overstays(self, now: datetime) -> list[AnyEvent]:
        lots = {z.id: z.lot for z in self.judge.zones}
        return [
            OverstayEvent(
                site=self.ctx.site,
                camera=self.ctx.camera,
                # Derived from the stay, not a sequence: a replay after a restart is a duplicate.
                event_id=f"{self.ctx.site}:{self.ctx.camera}:overstay:{o.zone_id}:{int(o.since.timestamp())}",
                observed_at=now,
                zone_id=o.zone_id,
                lot=lots.get(o.zone_id),
                since=o.since,
                dwell_s=round(o.dwell_s, 1),
                limit_s=o.limit_s,
            )
            for o in self.filter.overstays(now, self.limits)
        ]

    def close(self) -> None:
        if self._last_analysed is not None:
            self._persist(self._last_analysed, force=True)


def _without_scores(spaces: dict[str, Any]) -> dict[str, Any]:
    return {k: {f: v for f, v in t.items() if f != "score"} for k, t in spaces.items()}
