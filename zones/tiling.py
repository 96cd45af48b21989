"""Zone-aware tiled detection: run the detector where the bays are, at the scale the bays need.

A COCO detector finds cars best when they are some 60-100 pixels across in its input. A
1280x720 frame letterboxed into 640x640 halves every car; the PUCPR bays (~43 px) become ~21 px
and most cars seen from above are missed (64 % per-space accuracy at the default settings).
The camera's zones say how large a vehicle is in this view, so the scale follows from them:

- the *bay size* is the median square root of the space polygons' areas (image pixels);
- each entry of ``targets`` is a bay size in model-input pixels; it gives a scale
  ``target / bay size`` and a grid of windows of ``input / scale`` image pixels over the zones'
  bounding box (plus a margin for the part of a vehicle that stands above its footprint);
- neighbouring windows share ``overlap_bays`` bay sizes, so every vehicle up to that length is
  whole in some window; a box cut by an inner window border and shorter than the overlap is
  dropped (its neighbour sees it whole); longer ones are kept;
- two targets (64 and 80 by default) give the detector two looks at every vehicle at different
  scales; COCO models are unstable on top-down cars (a car found at one crop is missed at a
  slightly shifted one), and a second look recovers most misses;
- the passes are merged by class-agnostic NMS over vehicle classes only (a `person` or `bench`
  box must never suppress a car, and a car labelled `bus` in one pass and `car` in the other
  is one vehicle);
- a window darker than ``exposure_target`` (median grey level) is brightened to it first (gain
  up to 4x, like a camera's auto-exposure): dark cars at dawn and dusk are what COCO models miss
  most. On PUCPR frames darkened to 45 % this cuts misses from 5 to 1 and from 4 to 1 per
  frame; no shared frame changes its verdicts.

Measured in ``benchmarks/RESULTS.md`` ("Parking occupancy"). Without space polygons (areas
only) there is no bay size, and one whole-frame pass is used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt
import shapely

from cityeye.vision.decoders import take
from cityeye.vision.detections import VEHICLE_LABELS, Detections
from cityeye.vision.detector import Detector
from cityeye.vision.nms import nms
from cityeye.zones.model import Zone

DEFAULT_TARGETS: tuple[int, ...] = (64, 80)
DEFAULT_EXPOSURE_TARGET = 110.0
_MAX_GAIN = 4.0
DEFAULT_OVERLAP_BAYS = 1.5
MERGE_IOU = 0.5
"""Two vehicle boxes overlapping more than this are one vehicle (class-agnostic)."""
_EDGE_PX = 3.0
"""A box this close to an inner window border is taken as cut by it."""
# Margins around the zones' bounding box, in bay sizes: a vehicle stands above its footprint in
# an oblique view, so the top margin is the largest.
_MARGIN_SIDE, _MARGIN_TOP, _MARGIN_BOTTOM = 1.0, 1.5, 0.5


@dataclass(frozen=True, slots=True)
class Window:
    """A crop of the image, in image pixels (x1, y1 exclusive)."""

    x0: int
    y0: int
    x1: int
    y1: int


@dataclass(frozen=True, slots=True)
class TilePlan:
    """Where the detector runs on frames of one size, and how cut boxes are recognised."""

    image_hw: tuple[int, int]
    windows: tuple[Window, ...]
    overlap_px: float
    bay_px: float | None

    @property
    def runs(self) -> int:
        return len(self.windows)


def bay_size_px(zones: Sequence[Zone]) -> float | None:
    """Median square root of the space polygons' areas, or None without spaces."""
    spaces = [z.geometry for z in zones if z.kind == "space"]
    if not spaces:
        return None
    return float(np.median(np.sqrt(shapely.area(np.asarray(spaces, dtype=object)))))


def _starts(lo: float, hi: float, size: int, overlap: float, limit: int) -> list[int]:
    """Window starts covering [lo, hi) with windows of ``size`` sharing at least ``overlap``."""
    length = hi - lo
    if length <= size:
        first = [lo + (length - size) / 2]  # one window, centred on the span
    else:
        step = max(size - overlap, 1.0)
        n = math.ceil((length - overlap) / step)
        first = list(np.linspace(lo, hi - size, max(n, 2)))
    return sorted({round(min(max(s, 0.0), float(limit - size))) for s in first})


def plan_tiles(
    zones: Sequence[Zone],
    image_hw: tuple[int, int],
    input_hw: tuple[int, int],
    targets: Sequence[float] = DEFAULT_TARGETS,
    overlap_bays: float = DEFAULT_OVERLAP_BAYS,
) -> TilePlan:
    """Windows for frames of ``image_hw`` (see the module docstring); one whole frame without
    spaces or targets."""
    h, w = image_hw
    whole = TilePlan(image_hw, (Window(0, 0, w, h),), 0.0, None)
    bay = bay_size_px(zones)
    judged = [z for z in zones if z.kind != "line"]
    if bay is None or not targets or not judged:
        return whole
    pts = np.concatenate([z.pixels for z in judged])
    x0 = max(float(pts[:, 0].min()) - _MARGIN_SIDE * bay, 0.0)
    x1 = min(float(pts[:, 0].max()) + _MARGIN_SIDE * bay, float(w))
    y0 = max(float(pts[:, 1].min()) - _MARGIN_TOP * bay, 0.0)
    y1 = min(float(pts[:, 1].max()) + _MARGIN_BOTTOM * bay, float(h))
    if x1 <= x0 or y1 <= y0:
        return whole  # every zone lies outside this frame: nothing better than the whole frame
    overlap = overlap_bays * bay
    windows: list[Window] = []
    for target in targets:
        scale = float(target) / bay
        tw = min(round(input_hw[1] / scale), w)
        th = min(round(input_hw[0] / scale), h)
        for ty in _starts(y0, y1, th, overlap, h):
            for tx in _starts(x0, x1, tw, overlap, w):
                windows.append(Window(tx, ty, tx + tw, ty + th))
    return TilePlan(image_hw, tuple(dict.fromkeys(windows)), overlap, bay)


def brighten(crop: npt.NDArray[np.uint8], target: float) -> npt.NDArray[np.uint8]:
    """``crop`` with its median grey level raised to ``target`` (gain <= 4); unchanged if brighter."""
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    median = float(np.median(grey))
    if median >= target:
        return crop
    gain = min(target / max(median, 1.0), _MAX_GAIN)
    lut = np.clip(np.arange(256, dtype=np.float32) * gain, 0, 255).astype(np.uint8)
    return np.asarray(cv2.LUT(crop, lut), dtype=np.uint8)


def _vehicle_ids(names: dict[int, str]) -> npt.NDArray[np.int32]:
    return np.array(sorted(k for k, v in names.items() if v in VEHICLE_LABELS), dtype=np.int32)


class ZoneDetector:
    """Vehicle detections of one camera's frames, tiled by :func:`plan_tiles`.

    Uses the detector's public stages (preprocess, infer, decoder) with its own confidence, so one
    shared detector serves parking cameras at their low cut and traffic cameras at theirs. Keeps
    the plan of the last frame size only (a camera changing resolution replans once).
    """

    def __init__(
        self,
        detector: Detector,
        zones: Sequence[Zone],
        targets: Sequence[float] = DEFAULT_TARGETS,
        confidence: float = 0.1,
        overlap_bays: float = DEFAULT_OVERLAP_BAYS,
        exposure_target: float | None = DEFAULT_EXPOSURE_TARGET,
    ) -> None:
        if not 0.0 < confidence < 1.0:
            raise ValueError(f"confidence {confidence} must be within (0, 1)")
        if any(t <= 0 for t in targets):
            raise ValueError(f"tile targets {list(targets)} must be positive bay sizes in model pixels")
        self.detector = detector
        self.zones = list(zones)
        self.targets = tuple(float(t) for t in targets)
        self.confidence = confidence
        self.overlap_bays = overlap_bays
        self.exposure_target = exposure_target
        self._vehicle_ids = _vehicle_ids(detector.names)
        self._plan: TilePlan | None = None

    def plan(self, image_hw: tuple[int, int]) -> TilePlan:
        if self._plan is None or self._plan.image_hw != image_hw:
            self._plan = plan_tiles(
                self.zones, image_hw, self.detector.input_size, self.targets, self.overlap_bays
            )
        return self._plan

    def __call__(self, image_bgr: npt.NDArray[np.uint8]) -> Detections:
        h, w = image_bgr.shape[:2]
        plan = self.plan((h, w))
        det = self.detector
        boxes: list[npt.NDArray[np.float32]] = []
        scores: list[npt.NDArray[np.float32]] = []
        classes: list[npt.NDArray[np.int32]] = []
        wins = list(plan.windows)
        for start in range(0, len(wins), det.batch):
            chunk = wins[start : start + det.batch]
            crops = [np.ascontiguousarray(image_bgr[c.y0 : c.y1, c.x0 : c.x1]) for c in chunk]
            if self.exposure_target is not None:
                crops = [brighten(c, self.exposure_target) for c in crops]
            tensor, geos = det.preprocess_batch(crops)
            raw = det.infer(tensor)
            for i, (win, geo) in enumerate(zip(chunk, geos, strict=True)):
                cand = det.decoder.decode(take(raw, i), self.confidence)
                veh = np.isin(cand.class_id, self._vehicle_ids)
                xyxy = geo.boxes_to_image(cand.xyxy[veh])
                keep = self._uncut(xyxy, win, plan, (h, w))
                offset = np.array([win.x0, win.y0, win.x0, win.y0], dtype=np.float32)
                boxes.append(xyxy[keep] + offset)
                scores.append(cand.score[veh][keep])
                classes.append(cand.class_id[veh][keep])
        xyxy_all = np.concatenate(boxes).astype(np.float32, copy=False)
        score_all = np.concatenate(scores).astype(np.float32, copy=False)
        cls_all = np.concatenate(classes).astype(np.int32, copy=False)
        keep_idx = nms(xyxy_all, score_all, MERGE_IOU, None, max_det=det.max_det * max(plan.runs, 1))
        return Detections(xyxy_all[keep_idx], score_all[keep_idx], cls_all[keep_idx], det.names)

    @staticmethod
    def _uncut(
        xyxy: npt.NDArray[np.float32], win: Window, plan: TilePlan, image_hw: tuple[int, int]
    ) -> npt.NDArray[np.bool_]:
        """False for boxes cut by an inner window border and shorter than the overlap."""
        keep = np.ones(len(xyxy), dtype=np.bool_)
        if not plan.overlap_px:
            return keep
        h, w = image_hw
        ww, wh = win.x1 - win.x0, win.y1 - win.y0
        short_x = (xyxy[:, 2] - xyxy[:, 0]) < plan.overlap_px
        short_y = (xyxy[:, 3] - xyxy[:, 1]) < plan.overlap_px
        if win.x0 > 0:
            keep &= ~((xyxy[:, 0] <= _EDGE_PX) & short_x)
        if win.x1 < w:
            keep &= ~((xyxy[:, 2] >= ww - _EDGE_PX) & short_x)
        if win.y0 > 0:
            keep &= ~((xyxy[:, 1] <= _EDGE_PX) & short_y)
        if win.y1 < h:
            keep &= ~((xyxy[:, 3] >= wh - _EDGE_PX) & short_y)
        return keep
