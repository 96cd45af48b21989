"""Counting vehicles on lines and areas from tracks, with the guards dense traffic needs.

The pipeline per analysed frame is ``vehicle_detections`` (riders folded into their two-wheeler,
pedestrians and other classes dropped, one box per vehicle) -> tracker -> :class:`TrafficCounter`.

Why each guard exists (what goes wrong without it, measured on the shared intersection clip):

* **Riders.** COCO detectors see a motorcycle *and* a person on it. A counter that counts
  every tracked box counts such a motorcycle as a person, or twice. Here a person box that
  overlaps a two-wheeler is part of it, and persons are never counted.
* **Cross-class duplicates.** NMS is per class, so one e-bike can come out as both "motorcycle"
  and "bicycle", and one van as "car" and "truck": two tracks, two counts. Vehicle boxes are
  suppressed class-agnostically, keeping the better-scored one.
* **Unconfirmed tracks.** A one-frame false positive that happens to sit on the line is not a
  vehicle. A crossing is held until its track has matched ``min_hits`` detections; if the track
  dies first, the crossing is dropped. It is *held*, not refused, so a fast motorcycle that
  crosses in its first frames is still counted once confirmed.
* **Flicker.** A vehicle waiting on the line makes its anchor jitter across it. A crossing is
  confirmed only once the anchor is ``min_displacement`` beyond the line on the new side (or the
  vehicle leaves the picture there); going back first cancels it. Stop-and-go on the line
  therefore counts once.
* **Once per track and direction**, and a **re-crossing cooldown**: after a count, the same
  track crossing back within ``cooldown_s`` is jitter or a U-turn in a queue, not a new vehicle.
* **Id switches.** When the tracker loses a vehicle just after it crossed and re-finds it as a
  new id behind the line, the new id crosses again. A crossing is suppressed when, within
  ``cooldown_s``, the same line was crossed in the same direction by a track that vanished
  before this one was born, close by (within one box size): the same vehicle under a new id.
  Also when the earlier track is still alive and its box overlaps this one (IoU >= 0.5): two
  ids on one vehicle. The next car of a queue crossing at the same place was tracked while
  the first was, so it still counts.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
import shapely

from cityeye.vision.detections import Detections
from cityeye.vision.nms import nms
from cityeye.vision.tracker import ByteTracker, ByteTrackParams, Tracks, iou_matrix
from cityeye.zones.calibration import Calibration
from cityeye.zones.config import TrafficConfig
from cityeye.zones.lines import LEFT, CountingLine
from cityeye.zones.model import Zone

F64 = npt.NDArray[np.float64]

COUNTED_CLASSES: tuple[str, ...] = ("car", "motorcycle", "bus", "truck", "bicycle")
"""The vehicle classes counts are kept for, in the order they are reported (the event schema's)."""
TWO_WHEELERS = frozenset({"motorcycle", "bicycle"})
Anchor = Literal["center", "bottom"]


def remap_classes(dets: Detections, class_map: dict[str, str]) -> Detections:
    """The detections with labels renamed by ``class_map`` (model label -> counted class).

    For models whose labels differ from the counted classes (``motorbike``, ``van``), and for
    views a COCO model labels systematically wrong (seen from straight above, cars come out as
    "cell phone" or "suitcase"); see the README's "Traffic counting" section.
    """
    if not class_map or not len(dets):
        return dets
    names = dict(dets.names)
    ids = {v: k for k, v in names.items()}
    lut: dict[int, int] = {}
    for src, dst in class_map.items():
        if src not in ids:
            continue
        if dst not in ids:
            ids[dst] = max(names, default=-1) + 1
            names[ids[dst]] = dst
        lut[ids[src]] = ids[dst]
    if not lut:
        return dets
    keys = np.array(sorted(lut), dtype=np.int32)
    vals = np.array([lut[int(k)] for k in keys], dtype=np.int32)
    hit = np.isin(dets.class_id, keys)
    cls = dets.class_id.copy()
    cls[hit] = vals[np.searchsorted(keys, dets.class_id[hit])]
    return Detections(dets.xyxy, dets.confidence, cls, names)


def vehicle_detections(
    dets: Detections, rider_overlap: float = 0.3, duplicate_iou: float = 0.7
) -> tuple[Detections, int]:
    """The detections to track: vehicles only, one box per vehicle; and how many riders were folded.

    A person whose box has at least ``rider_overlap`` of its area inside a motorcycle or bicycle
    box (grown upwards by the two-wheeler's height, where the rider sits) is that vehicle's rider;
    it is dropped like every other person. Vehicle boxes overlapping more than ``duplicate_iou``
    are one vehicle whatever their classes.
    """
    counted = dets.class_mask(COUNTED_CLASSES)
    vehicles = dets[np.flatnonzero(counted)]
    persons = dets[np.flatnonzero(dets.class_mask(("person",)))]
    riders = 0
    if len(persons) and len(vehicles):
        two = vehicles.xyxy[vehicles.class_mask(tuple(TWO_WHEELERS))].astype(np.float64)
        if len(two):
            grown = two.copy()
            grown[:, 1] -= two[:, 3] - two[:, 1]
            p = persons.xyxy.astype(np.float64)
            lt = np.maximum(p[:, None, :2], grown[None, :, :2])
            rb = np.minimum(p[:, None, 2:], grown[None, :, 2:])
            inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
            area = np.maximum(np.prod(p[:, 2:] - p[:, :2], axis=1), 1e-9)
            riders = int(((inter / area[:, None]).max(axis=1) >= rider_overlap).sum())
    if len(vehicles) > 1:
        keep = nms(vehicles.xyxy, vehicles.confidence, duplicate_iou, None, max_det=len(vehicles))
        vehicles = vehicles[np.sort(keep)]
    return vehicles, riders


def anchor_points(xyxy: F64, anchor: Anchor) -> F64:
    x = (xyxy[:, 0] + xyxy[:, 2]) * 0.5
    y = xyxy[:, 3] if anchor == "bottom" else (xyxy[:, 1] + xyxy[:, 3]) * 0.5
    return np.stack([x, y], axis=1)


@dataclass(frozen=True, slots=True)
class CounterParams:
    anchor: Anchor = "center"
    """Point of the box that crosses lines: its centre, or its bottom centre (the ground contact)."""
    min_hits: int = 3
    """Detections a track needs before its crossings count."""
    min_displacement_px: float = 4.0
    min_displacement_frac: float = 0.1
    """A crossing is confirmed once the anchor is max(px, frac x box height) beyond the line."""
    cooldown_s: float = 2.0
    edge_margin_px: float = 2.0
    """A box this close to the picture border on the new side has left the picture: confirms."""
    speed_window_s: float = 1.0
    """Stream time over which a vehicle's ground speed is measured (calibrated cameras only)."""


@dataclass(frozen=True, slots=True)
class Crossing:
    """One counted vehicle on one line (or one entry into / exit from an area)."""

    zone_id: str
    direction: str
    """The direction's name (``left``/``right``, the zone's own names, or ``in``/``out`` for areas)."""
    side: str
    """``left`` or ``right`` (the side it came from), or ``in``/``out`` for areas."""
    vehicle: str
    track_id: int
    frame: int
    """Frame index at which the anchor was first seen beyond the line."""
    t_s: float
    """Stream time of that frame, seconds."""
    x: float
    y: float
    speed_kmh: float | None = None


@dataclass(slots=True)
class _Pending:
    side_from: int
    frame: int
    t_s: float
    point: tuple[float, float]


@dataclass(slots=True)
class _LineState:
    last_side: int
    last_point: tuple[float, float]
    last_dist: float = 0.0
    pending: _Pending | None = None
    ready: bool = False
    counted: set[int] = field(default_factory=set)
    last_count_s: float = -math.inf


@dataclass(slots=True)
class _TrackMemory:
    lines: dict[str, _LineState] = field(default_factory=dict)
    areas: dict[str, bool] = field(default_factory=dict)
    ground: deque[tuple[float, float, float]] = field(default_factory=deque)
    first_seen_s: float = 0.0
    last_seen_s: float = 0.0
    box_size: float = 0.0
    hits: int = 0
    label: str = ""
    speed_kmh: float | None = None


@dataclass(slots=True)
class _Recent:
    track_id: int
    side_from: int
    t_s: float
    point: tuple[float, float]
    size: float
    last_seen_s: float
    """When its track was last seen (kept up to date while the track lives)."""


class TrafficCounter:
    """Turns tracks into :class:`Crossing` values. Keeps per-track state only while the track lives.

    ``update`` takes the tracks of one analysed frame with the set of ids the tracker still holds
    (tracked or lost); state of every other id is dropped there, so memory stays bounded.
    """

    def __init__(
        self,
        lines: list[CountingLine],
        areas: list[Zone] | None = None,
        params: CounterParams | None = None,
        calibration: Calibration | None = None,
    ) -> None:
        ids = [ln.id for ln in lines] + [a.id for a in areas or []]
        if len(set(ids)) != len(ids):
            raise ValueError(f"counting zone ids must be unique, got {ids}")
        self.lines = lines
        self.areas = [a for a in areas or [] if a.kind in ("space", "area")]
        self.p = params or CounterParams()
        if self.p.min_hits < 1:
            raise ValueError("min_hits must be at least 1")
        self.calibration = calibration
        self._tracks: dict[int, _TrackMemory] = {}
        self._seen: set[int] = set()
        self._boxes: dict[int, F64] = {}
        self._recent: dict[str, deque[_Recent]] = {ln.id: deque() for ln in lines}
        self.suppressed = {"id_switch": 0, "unconfirmed": 0, "cooldown": 0, "repeat": 0}
        """Crossings refused by each guard, for health figures and tests."""

    def update(
        self,
        tracks: Tracks,
        t_s: float,
        frame: int,
        image_wh: tuple[int, int],
        alive: set[int] | None = None,
    ) -> list[Crossing]:
        out: list[Crossing] = []
        pts = anchor_points(tracks.xyxy, self.p.anchor)
        ids = tracks.track_id.tolist()
        self._seen = set(ids)
        self._boxes = dict(zip(ids, tracks.xyxy.astype(np.float64), strict=True))
        heights = (tracks.xyxy[:, 3] - tracks.xyxy[:, 1]).astype(np.float64)
        at_edge = self._at_edge(tracks.xyxy, image_wh)
        speeds = self._speeds(tracks, ids, t_s)
        for i, (tid, h) in enumerate(zip(ids, heights.tolist(), strict=True)):
            mem = self._tracks.get(tid)
            if mem is None:
                mem = self._tracks[tid] = _TrackMemory(first_seen_s=t_s)
            mem.last_seen_s = t_s
            mem.box_size = h
            mem.hits = int(tracks.hits[i])
            mem.label = tracks.label(i)
            mem.speed_kmh = speeds[i]
        for line in self.lines:
            side, dist = line.side_and_distance(pts)
            out += self._update_line(line, tracks, ids, pts, side, dist, heights, at_edge, speeds, t_s, frame)
        if self.areas:
            out += self._update_areas(tracks, ids, pts, speeds, t_s, frame)
        out += self._evict(alive if alive is not None else set(ids), t_s)
        return out

    @staticmethod
    def _at_edge(xyxy: F64, image_wh: tuple[int, int]) -> npt.NDArray[np.bool_]:
        w, h = image_wh
        m = 2.0
        near = (xyxy[:, 0] <= m) | (xyxy[:, 1] <= m) | (xyxy[:, 2] >= w - m) | (xyxy[:, 3] >= h - m)
        return np.asarray(near, dtype=np.bool_)

    def _update_line(
        self,
        line: CountingLine,
        tracks: Tracks,
        ids: list[int],
        pts: F64,
        side: npt.NDArray[np.int8],
        dist: F64,
        heights: F64,
        at_edge: npt.NDArray[np.bool_],
        speeds: list[float | None],
        t_s: float,
        frame: int,
    ) -> list[Crossing]:
        out: list[Crossing] = []
        need = np.maximum(self.p.min_displacement_px, self.p.min_displacement_frac * heights)
        # Only moves that changed side need the segment test; do it for all of them at once.
        states = [self._tracks[tid].lines.get(line.id) for tid in ids]
        prev = np.array([s.last_point if s else (np.nan, np.nan) for s in states], dtype=np.float64)
        prev_side = np.array([s.last_side if s else 0 for s in states], dtype=np.int8)
        changed = (side != 0) & (prev_side != 0) & (side != prev_side)
        crossed = np.zeros(len(ids), dtype=bool)
        where = np.zeros((len(ids), 2))
        if changed.any():
            c, w = line.crossed(prev[changed], pts[changed])
            crossed[changed] = c
            where[changed] = w
        for i, tid in enumerate(ids):
            s = int(side[i])
            st = states[i]
            if s == 0:
                continue  # on the line: wait until it leaves
            p = (float(pts[i, 0]), float(pts[i, 1]))
            if st is None:
                self._tracks[tid].lines[line.id] = _LineState(s, p, float(dist[i]))
                continue
            st.last_dist = float(dist[i])
            if s != st.last_side:
                if st.pending is not None and st.pending.side_from == s:
                    st.pending, st.ready = None, False  # back where it came from before confirming
                elif crossed[i]:
                    st.pending = _Pending(st.last_side, frame, t_s, (float(where[i, 0]), float(where[i, 1])))
                    st.ready = False
                st.last_side, st.last_point = s, p
            else:
                st.last_point = p
            pend = st.pending
            if pend is None:
                continue
            if not st.ready and s == -pend.side_from and (dist[i] >= need[i] or at_edge[i]):
                st.ready = True
            if st.ready and int(tracks.hits[i]) >= self.p.min_hits:
                st.pending, st.ready = None, False
                crossing = self._count(line, st, tid, pend, tracks.label(i), heights[i], speeds[i])
                if crossing is not None:
                    out.append(crossing)
        return out

    def _count(
        self,
        line: CountingLine,
        st: _LineState,
        tid: int,
        pend: _Pending,
        label: str,
        size: float,
        speed: float | None,
    ) -> Crossing | None:
        if pend.side_from in st.counted:
            self.suppressed["repeat"] += 1
            return None
        if st.counted and pend.t_s - st.last_count_s < self.p.cooldown_s:
            self.suppressed["cooldown"] += 1
            return None
        recent = self._recent[line.id]
        mem = self._tracks.get(tid)
        born = mem.first_seen_s if mem is not None else pend.t_s
        box = self._boxes.get(tid)
        for r in recent:
            if r.track_id == tid or r.side_from != pend.side_from or pend.t_s - r.t_s > self.p.cooldown_s:
                continue
            if r.track_id in self._seen:
                other = self._boxes[r.track_id]
                # Two live tracks on one vehicle (a re-found old id next to its successor).
                same = box is not None and float(iou_matrix(box[None], other[None])[0, 0]) >= 0.5
            else:
                # The counted track vanished and this one was born after it, where it crossed.
                same = born >= r.last_seen_s - 0.1 and math.dist(r.point, pend.point) <= max(r.size, size)
            if same:
                self.suppressed["id_switch"] += 1
                return None
        st.counted.add(pend.side_from)
        st.last_count_s = pend.t_s
        recent.append(_Recent(tid, pend.side_from, pend.t_s, pend.point, size, pend.t_s))
        if label not in COUNTED_CLASSES:
            return None
        return Crossing(
            zone_id=line.id,
            direction=line.name_of(pend.side_from),
            side="left" if pend.side_from == LEFT else "right",
            vehicle=label,
            track_id=tid,
            frame=pend.frame,
            t_s=pend.t_s,
            x=pend.point[0],
            y=pend.point[1],
            speed_kmh=speed,
        )

    def _update_areas(
        self, tracks: Tracks, ids: list[int], pts: F64, speeds: list[float | None], t_s: float, frame: int
    ) -> list[Crossing]:
        """Entries into and exits from polygon areas: the anchor going from outside to inside, or back.

        The first sighting only sets the state (a vehicle already inside was not seen entering);
        the same min_hits guard applies, the state change being remembered until it is met.
        """
        out: list[Crossing] = []
        for area in self.areas:
            inside = shapely.contains_xy(area.geometry, pts[:, 0], pts[:, 1])
            for i, tid in enumerate(ids):
                mem = self._tracks[tid]
                was = mem.areas.get(area.id)
                now = bool(inside[i])
                if was is None:
                    mem.areas[area.id] = now
                    continue
                if was == now or int(tracks.hits[i]) < self.p.min_hits:
                    continue
                mem.areas[area.id] = now
                label = tracks.label(i)
                if label not in COUNTED_CLASSES:
                    continue
                side = "in" if now else "out"
                out.append(Crossing(area.id, side, side, label, tid, frame, t_s,
                                    float(pts[i, 0]), float(pts[i, 1]), speeds[i]))  # fmt: skip
        return out

    def _speeds(self, tracks: Tracks, ids: list[int], t_s: float) -> list[float | None]:
        """Ground speed of each track over the last ``speed_window_s``, km/h; None uncalibrated."""
        if self.calibration is None or not ids:
            return [None] * len(ids)
        ground = anchor_points(tracks.xyxy, "bottom")
        metres = self.calibration.lonlat_to_metres(self.calibration.pixel_to_lonlat(ground))
        out: list[float | None] = []
        for tid, (x, y) in zip(ids, metres.tolist(), strict=True):
            hist = self._tracks.setdefault(tid, _TrackMemory(first_seen_s=t_s)).ground
            hist.append((t_s, x, y))
            while hist and t_s - hist[0][0] > self.p.speed_window_s:
                hist.popleft()
            t0, x0, y0 = hist[0]
            dt = t_s - t0
            ok = dt >= 0.25 * self.p.speed_window_s and math.isfinite(x) and math.isfinite(x0)
            out.append(round(math.hypot(x - x0, y - y0) / dt * 3.6, 1) if ok else None)
        return out

    def _evict(self, alive: set[int], t_s: float) -> list[Crossing]:
        out = []
        for tid in [t for t in self._tracks if t not in alive]:
            out += self._finish_track(tid)
        for recent in self._recent.values():
            while recent and t_s - recent[0].t_s > self.p.cooldown_s:
                recent.popleft()
            for r in recent:
                if r.track_id in self._seen:
                    r.last_seen_s = t_s
        return out

    def _finish_track(self, tid: int) -> list[Crossing]:
        """A track the tracker gave up on: a crossing still pending counts if the vehicle was last
        seen beyond the line (by ``min_displacement_px``) and the track was confirmed.

        The vehicle then left the picture, or the detector lost it, right after the line; where it
        was last seen is the best evidence of the side it ended on.
        """
        mem = self._tracks.pop(tid)
        out = []
        for line in self.lines:
            st = mem.lines.get(line.id)
            pend = st.pending if st else None
            if st is None or pend is None or mem.hits < self.p.min_hits:
                if pend is not None:
                    self.suppressed["unconfirmed"] += 1
                continue
            if st.last_side == -pend.side_from and st.last_dist >= self.p.min_displacement_px:
                c = self._count(line, st, tid, pend, mem.label, mem.box_size, mem.speed_kmh)
                if c is not None:
                    out.append(c)
        return out

    def finish(self) -> list[Crossing]:
        """End of the stream: settle every track still held (their pending crossings)."""
        out = []
        for tid in list(self._tracks):
            out += self._finish_track(tid)
        self._recent = {k: deque() for k in self._recent}
        return out

    @property
    def tracks_held(self) -> int:
        return len(self._tracks)


def empty_counts(directions: tuple[str, ...]) -> dict[str, dict[str, int]]:
    return {d: dict.fromkeys(COUNTED_CLASSES, 0) for d in directions}


@dataclass(slots=True)
class _Bin:
    counts: dict[str, dict[str, dict[str, int]]]
    speeds: dict[str, dict[str, list[float]]]
    dirty: bool = True
    published: bool = False
    published_at_s: float = -math.inf


class TimeBins:
    """Crossings summed per zone, direction and class in fixed bins of stream time.

    A bin is *due* once the stream is ``delay_s`` past its end; it is then handed out once, and
    again (as a replacement, same bin start) if a late crossing lands in it while it is still
    kept. Bins older than ``keep_s`` are forgotten. Every zone appears in every bin, with zeros:
    "nobody crossed" is a measurement, unlike a missing bin.
    """

    def __init__(
        self,
        zones: dict[str, tuple[str, ...]],
        bin_s: int = 60,
        delay_s: float = 2.0,
        keep_s: float = 300.0,
        provisional_s: float = 0.0,
    ) -> None:
        if bin_s <= 0:
            raise ValueError("bin_s must be positive")
        self.zones = zones
        self.bin_s = bin_s
        self.delay_s = delay_s
        self.provisional_s = provisional_s
        self.keep_s = max(keep_s, bin_s + delay_s)
        self._bins: dict[int, _Bin] = {}

    def _bin(self, start: int) -> _Bin:
        b = self._bins.get(start)
        if b is None:
            b = _Bin({z: empty_counts(d) for z, d in self.zones.items()}, {z: {} for z in self.zones})
            self._bins[start] = b
        return b

    def start_of(self, t_s: float) -> int:
        return math.floor(t_s / self.bin_s) * self.bin_s

    def touch(self, t_s: float) -> None:
        """Open the bin of ``t_s`` so that a quiet minute is reported with zeros."""
        self._bin(self.start_of(t_s))

    def add(self, c: Crossing) -> None:
        b = self._bin(self.start_of(c.t_s))
        b.counts[c.zone_id][c.direction][c.vehicle] += 1
        if c.speed_kmh is not None:
            b.speeds[c.zone_id].setdefault(c.direction, []).append(c.speed_kmh)
        b.dirty = True

    def due(self, now_s: float, flush: bool = False) -> list[tuple[int, _Bin]]:
        """Bins to publish now: ended ``delay_s`` ago and new or changed; the running bin too every
        ``provisional_s`` when it changed (so a worker killed mid-minute loses at most that much);
        every changed bin with ``flush``."""
        out = []
        for start in sorted(self._bins):
            b = self._bins[start]
            ended = now_s >= start + self.bin_s + self.delay_s
            provisional = self.provisional_s > 0 and now_s - b.published_at_s >= self.provisional_s
            if b.dirty and (flush or ended or provisional):
                b.dirty = False
                b.published = True
                b.published_at_s = now_s
                out.append((start, b))
        for start in [s for s in self._bins if now_s - (s + self.bin_s) > self.keep_s]:
            del self._bins[start]
        return out

    def __len__(self) -> int:
        return len(self._bins)


def mean_speeds(b: _Bin, zone_id: str) -> dict[str, float] | None:
    sp = b.speeds.get(zone_id) or {}
    return {d: round(sum(v) / len(v), 1) for d, v in sp.items() if v} or None


class CountingPipeline:
    """Detections of one camera's analysed frames -> crossings: riders folded, ByteTrack, counter.

    Shared by the edge analyser and ``cityeye count`` so that what is benchmarked is what runs.
    """

    def __init__(
        self,
        lines: list[CountingLine],
        areas: list[Zone] | None = None,
        config: TrafficConfig | None = None,
        calibration: Calibration | None = None,
    ) -> None:
        cfg = config or TrafficConfig()
        self.config = cfg
        self.tracker = ByteTracker(
            ByteTrackParams(
                high_thresh=cfg.track_high_thresh,
                low_thresh=cfg.track_low_thresh,
                new_track_thresh=cfg.new_track_thresh,
                match_thresh=cfg.match_thresh,
                lost_buffer_s=cfg.lost_buffer_s,
                match_buffer=cfg.match_buffer,
            )
        )
        self.counter = TrafficCounter(
            lines,
            areas,
            CounterParams(
                anchor=cfg.anchor,
                min_hits=cfg.min_hits,
                min_displacement_px=cfg.min_displacement_px,
                min_displacement_frac=cfg.min_displacement_frac,
                cooldown_s=cfg.cooldown_s,
            ),
            calibration,
        )
        self.riders = 0

    def step(self, dets: Detections, t_s: float, frame: int, image_wh: tuple[int, int]) -> list[Crossing]:
        dets = remap_classes(dets, self.config.class_map)
        vehicles, riders = vehicle_detections(dets, self.config.rider_overlap, self.config.duplicate_iou)
        self.riders += riders
        tracks = self.tracker.update(vehicles, t_s)
        return self.counter.update(tracks, t_s, frame, image_wh, self.tracker.active_ids)

    def finish(self) -> list[Crossing]:
        """End of the stream: pending crossings of the tracks still held are settled."""
        return self.counter.finish()

    @property
    def zone_directions(self) -> dict[str, tuple[str, ...]]:
        out: dict[str, tuple[str, ...]] = {ln.id: ln.direction_names for ln in self.counter.lines}
        out.update({a.id: ("in", "out") for a in self.counter.areas})
        return out
