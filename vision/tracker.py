"""ByteTrack multi-object tracking (Zhang et al., ECCV 2022), in numpy and SciPy.

Why our own and not a library: Ultralytics' and boxmot's trackers need torch; supervision's
installs without it but brings matplotlib, Pillow and the GUI build of OpenCV (which clashes
with opencv-python-headless) for what is a few hundred lines of Kalman filter and assignment.
This is a faithful port of the reference ``byte_tracker.py`` (constant-velocity Kalman filter,
the two association stages, confirmation, the lost-track buffer, duplicate removal), with:

* BoT-SORT's Kalman filter on (cx, cy, w, h) instead of (cx, cy, aspect, h), see
  :class:`KalmanXYWH` for why;
* batched Kalman prediction and update (one numpy call per frame, not one per track), because
  dense motorcycle traffic keeps 100+ tracks alive;
* SciPy's ``linear_sum_assignment`` instead of ``lap.lapjv`` (same optimum; a cost above the
  threshold is treated as "no match", as lapjv's ``cost_limit`` does);
* a class per track decided by the summed detection scores of each class, so a motorcycle the
  detector calls "bicycle" in a few frames stays one motorcycle;
* the lost buffer in seconds of stream time rather than frames, so frame skipping or a stalled
  camera does not change how long a vehicle may stay occluded;
* an optional box buffer for the IoU of the association (C-BIoU, Yang et al., WACV 2023): with
  frame skipping a small, fast motorcycle may not overlap its own prediction at all; enlarging
  both boxes by ``match_buffer`` times their size restores the overlap without changing the
  assignment for well-tracked vehicles. ``match_buffer=0`` is plain ByteTrack.

Defaults follow Ultralytics' ``bytetrack.yaml`` (thresholds suited to YOLOv8 scores, which are
lower than the YOLOX scores the paper's 0.5/0.6 were chosen for).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

from cityeye.vision.detections import Detections

F64 = npt.NDArray[np.float64]

_STD_POS = 1.0 / 20
_STD_VEL = 1.0 / 160


class KalmanXYWH:
    """Constant-velocity Kalman filter on (cx, cy, w, h) and their velocities, batched over tracks.

    ByteTrack's paper filter works on (cx, cy, w/h, h) with a nearly frozen aspect ratio, which
    suits pedestrians. Vehicles entering the picture (their box clipped by the border) or
    turning at a junction change aspect fast; the frozen aspect then predicts a box so wide that
    the vehicle's own detection no longer matches and the track splits. This is BoT-SORT's
    (cx, cy, w, h) variant, with noise proportional to width and height separately.
    """

    def __init__(self) -> None:
        self.F = np.eye(8)
        self.F[:4, 4:] = np.eye(4)

    @staticmethod
    def _wh(mean: F64) -> tuple[F64, F64]:
        return mean[:, 2], mean[:, 3]

    def initiate(self, xywh: F64) -> tuple[F64, F64]:
        """Means (N, 8) and covariances (N, 8, 8) of new tracks."""
        n = len(xywh)
        mean = np.concatenate([xywh, np.zeros((n, 4))], axis=1)
        w, h = self._wh(mean)
        std = np.stack(
            [2 * _STD_POS * w, 2 * _STD_POS * h, 2 * _STD_POS * w, 2 * _STD_POS * h,
             10 * _STD_VEL * w, 10 * _STD_VEL * h, 10 * _STD_VEL * w, 10 * _STD_VEL * h],
            axis=1,
        )  # fmt: skip
        cov = np.zeros((n, 8, 8))
        idx = np.arange(8)
        cov[:, idx, idx] = std**2
        return mean, cov

    def predict(self, mean: F64, cov: F64) -> tuple[F64, F64]:
        if len(mean) == 0:
            return mean, cov
        w, h = self._wh(mean)
        std = np.stack(
            [_STD_POS * w, _STD_POS * h, _STD_POS * w, _STD_POS * h,
             _STD_VEL * w, _STD_VEL * h, _STD_VEL * w, _STD_VEL * h],
            axis=1,
        )  # fmt: skip
        mean = mean @ self.F.T
        cov = self.F @ cov @ self.F.T
        idx = np.arange(8)
        cov[:, idx, idx] += std**2
        return mean, cov

    def update(self, mean: F64, cov: F64, xywh: F64) -> tuple[F64, F64]:
        if len(mean) == 0:
            return mean, cov
        w, h = self._wh(mean)
        std = np.stack([_STD_POS * w, _STD_POS * h, _STD_POS * w, _STD_POS * h], axis=1)
        proj_cov = cov[:, :4, :4].copy()
        idx = np.arange(4)
        proj_cov[:, idx, idx] += std**2
        # K = P H^T S^-1 for H = [I 0], solved rather than inverted (S is symmetric positive definite).
        pht = cov[:, :, :4]
        gain = np.linalg.solve(proj_cov, np.transpose(pht, (0, 2, 1))).transpose(0, 2, 1)
        new_mean = mean + np.einsum("nij,nj->ni", gain, xywh - mean[:, :4])
        new_cov = cov - gain @ proj_cov @ np.transpose(gain, (0, 2, 1))
        return new_mean, new_cov


def xyxy_to_xywh(xyxy: F64) -> F64:
    """Centre, width and height."""
    wh = xyxy[:, 2:] - xyxy[:, :2]
    return np.concatenate([xyxy[:, :2] + wh / 2, np.maximum(wh, 1e-6)], axis=1)


def xywh_to_xyxy(xywh: F64) -> F64:
    return np.concatenate([xywh[:, :2] - xywh[:, 2:4] / 2, xywh[:, :2] + xywh[:, 2:4] / 2], axis=1)


def iou_matrix(a: F64, b: F64, buffer: float = 0.0) -> F64:
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4), boxes enlarged by ``buffer``
    times their width and height on each side first (C-BIoU; 0 = plain IoU)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    if buffer:
        a = _buffered(a, buffer)
        b = _buffered(b, buffer)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    out: F64 = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
    return out


def _buffered(xyxy: F64, buffer: float) -> F64:
    wh = xyxy[:, 2:] - xyxy[:, :2]
    return np.concatenate([xyxy[:, :2] - buffer * wh, xyxy[:, 2:] + buffer * wh], axis=1)


def linear_assignment(cost: F64, thresh: float) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Minimum-cost matching that never pairs a row and a column whose cost exceeds ``thresh``."""
    n, m = cost.shape
    if n == 0 or m == 0:
        return [], list(range(n)), list(range(m))
    masked = np.where(cost > thresh, thresh + 1.0, cost)
    rows, cols = linear_sum_assignment(masked)
    keep = masked[rows, cols] <= thresh
    matches = [(int(r), int(c)) for r, c in zip(rows[keep], cols[keep], strict=True)]
    matched_r = {r for r, _ in matches}
    matched_c = {c for _, c in matches}
    return matches, [i for i in range(n) if i not in matched_r], [j for j in range(m) if j not in matched_c]


class TrackState(IntEnum):
    NEW = 0
    TRACKED = 1
    LOST = 2
    REMOVED = 3


@dataclass(eq=False)
class Track:
    """One tracked object (ByteTrack's STrack). Internal to the tracker; callers get :class:`Tracks`."""

    track_id: int
    mean: F64
    cov: F64
    score: float
    start_frame: int
    frame: int
    last_seen_s: float
    state: TrackState = TrackState.NEW
    activated: bool = False
    hits: int = 1
    class_scores: dict[int, float] = field(default_factory=dict)
    last_xyxy: F64 = field(default_factory=lambda: np.zeros(4))
    """The last matched detection's box: what callers anchor on (the filter lags a turning vehicle)."""

    @property
    def class_id(self) -> int:
        return max(self.class_scores.items(), key=lambda kv: kv[1])[0] if self.class_scores else -1

    @property
    def xyxy(self) -> F64:
        box: F64 = xywh_to_xyxy(self.mean[None, :4])[0]
        return box

    def vote(self, class_id: int, score: float) -> None:
        self.class_scores[class_id] = self.class_scores.get(class_id, 0.0) + score


@dataclass(frozen=True, slots=True)
class Tracks:
    """The tracks that matched a detection in this frame, as parallel arrays.

    ``xyxy`` is the matched detection's box (not the filter's estimate), ``hits`` how many frames
    matched so far, ``confirmed`` whether ByteTrack has activated the track.
    """

    track_id: npt.NDArray[np.int64]
    xyxy: npt.NDArray[np.float64]
    class_id: npt.NDArray[np.int32]
    score: npt.NDArray[np.float32]
    hits: npt.NDArray[np.int32]
    confirmed: npt.NDArray[np.bool_]
    names: dict[int, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.track_id)

    def label(self, i: int) -> str:
        k = int(self.class_id[i])
        return self.names.get(k, str(k))


@dataclass(frozen=True, slots=True)
class ByteTrackParams:
    high_thresh: float = 0.25
    """Detections at or above this score take part in the first association."""
    low_thresh: float = 0.1
    """Detections between this and ``high_thresh`` only extend existing tracks (the second stage)."""
    new_track_thresh: float = 0.25
    """A high detection left unmatched starts a track only at or above this score."""
    match_thresh: float = 0.8
    """Largest cost (1 - IoU x score) of a first-stage match."""
    second_match_thresh: float = 0.5
    unconfirmed_match_thresh: float = 0.7
    lost_buffer_s: float = 1.0
    """How long a track may stay unmatched (occluded) before it is dropped, in stream seconds."""
    match_buffer: float = 0.0
    """C-BIoU buffer: boxes grow by this fraction of their size on each side before IoU (0 = ByteTrack)."""
    fuse_score: bool = True
    """Multiply IoU by the detection score in the first stage (ByteTrack's default outside MOT20)."""

    def __post_init__(self) -> None:
        if not 0 <= self.low_thresh <= self.high_thresh <= 1:
            raise ValueError(
                f"need 0 <= low_thresh ({self.low_thresh}) <= high_thresh ({self.high_thresh}) <= 1"
            )
        if self.lost_buffer_s < 0 or self.match_buffer < 0:
            raise ValueError("lost_buffer_s and match_buffer must not be negative")


class ByteTracker:
    """Feed :meth:`update` the detections of each analysed frame in order; it returns the tracks seen.

    State is bounded: a track unmatched for longer than ``lost_buffer_s`` is dropped for good.
    """

    def __init__(self, params: ByteTrackParams | None = None, names: dict[int, str] | None = None) -> None:
        self.p = params or ByteTrackParams()
        self.names = dict(names or {})
        self.kf = KalmanXYWH()
        self.tracked: list[Track] = []
        self.lost: list[Track] = []
        self.frame = 0
        self._ids = itertools.count(1)

    @property
    def active_ids(self) -> set[int]:
        """Ids of the tracks still alive (tracked or within the lost buffer)."""
        return {t.track_id for t in itertools.chain(self.tracked, self.lost)}

    def reset(self) -> None:
        self.tracked.clear()
        self.lost.clear()
        self.frame = 0

    def _predict(self, tracks: list[Track]) -> None:
        if not tracks:
            return
        mean = np.stack([t.mean for t in tracks])
        cov = np.stack([t.cov for t in tracks])
        for i, t in enumerate(tracks):
            if t.state != TrackState.TRACKED:
                mean[i, 6:] = 0.0  # as the reference: a lost track's size stops changing
        mean, cov = self.kf.predict(mean, cov)
        for i, t in enumerate(tracks):
            t.mean, t.cov = mean[i], cov[i]

    def _apply(self, pairs: list[tuple[Track, int]], dets: Detections, now_s: float) -> None:
        """Kalman-update matched tracks with their detections (one batched call)."""
        if not pairs:
            return
        idx = np.array([d for _, d in pairs])
        boxes = dets.xyxy[idx].astype(np.float64)
        mean = np.stack([t.mean for t, _ in pairs])
        cov = np.stack([t.cov for t, _ in pairs])
        mean, cov = self.kf.update(mean, cov, xyxy_to_xywh(boxes))
        for i, (t, d) in enumerate(pairs):
            t.mean, t.cov = mean[i], cov[i]
            t.score = float(dets.confidence[d])
            t.vote(int(dets.class_id[d]), t.score)
            t.last_xyxy = boxes[i]
            t.frame = self.frame
            t.last_seen_s = now_s
            t.hits += 1
            t.state = TrackState.TRACKED
            t.activated = True

    def _new_track(self, dets: Detections, d: int, now_s: float) -> Track:
        box = dets.xyxy[d : d + 1].astype(np.float64)
        mean, cov = self.kf.initiate(xyxy_to_xywh(box))
        t = Track(
            track_id=next(self._ids), mean=mean[0], cov=cov[0], score=float(dets.confidence[d]),
            start_frame=self.frame, frame=self.frame, last_seen_s=now_s, state=TrackState.TRACKED,
            activated=self.frame == 1, last_xyxy=box[0],
        )  # fmt: skip
        t.vote(int(dets.class_id[d]), t.score)
        return t

    def update(self, dets: Detections, now_s: float) -> Tracks:
        """One analysed frame: its detections (any classes the caller wants tracked) and its time."""
        self.frame += 1
        p = self.p
        if dets.names:
            self.names.update(dets.names)
        scores = dets.confidence
        high = np.flatnonzero(scores >= p.high_thresh)
        low = np.flatnonzero((scores >= p.low_thresh) & (scores < p.high_thresh))

        unconfirmed = [t for t in self.tracked if not t.activated]
        confirmed = [t for t in self.tracked if t.activated]
        pool = confirmed + self.lost
        self._predict(pool)
        matched: list[tuple[Track, int]] = []

        # Stage 1: confirmed and lost tracks against high-score detections.
        cost = self._cost(pool, dets, high, fuse=p.fuse_score)
        m1, rest_tracks, rest_high = linear_assignment(cost, p.match_thresh)
        matched += [(pool[i], int(high[j])) for i, j in m1]
        high_left = high[rest_high]

        # Stage 2: tracks that were tracked in the previous frame against low-score detections.
        r_tracked = [pool[i] for i in rest_tracks if pool[i].state == TrackState.TRACKED]
        cost = self._cost(r_tracked, dets, low, fuse=False)
        m2, rest2, _ = linear_assignment(cost, p.second_match_thresh)
        matched += [(r_tracked[i], int(low[j])) for i, j in m2]
        for i in rest2:
            t = r_tracked[i]
            t.state = TrackState.LOST
        self._apply(matched, dets, now_s)

        # Stage 3: unconfirmed (one-frame) tracks against the high detections left.
        cost = self._cost(unconfirmed, dets, high_left, fuse=p.fuse_score)
        m3, rest_unc, rest_new = linear_assignment(cost, p.unconfirmed_match_thresh)
        self._apply([(unconfirmed[i], int(high_left[j])) for i, j in m3], dets, now_s)
        removed = {id(unconfirmed[i]) for i in rest_unc}

        # New tracks from the high detections nobody claimed.
        new = [self._new_track(dets, int(high_left[j]), now_s)
               for j in rest_new if scores[high_left[j]] >= p.new_track_thresh]  # fmt: skip

        tracked = [t for t in self.tracked if t.state == TrackState.TRACKED and id(t) not in removed]
        tracked += [t for t in self.lost if t.state == TrackState.TRACKED]
        tracked += new
        lost = [t for t in itertools.chain(self.tracked, self.lost)
                if t.state == TrackState.LOST and now_s - t.last_seen_s <= p.lost_buffer_s]  # fmt: skip
        self.tracked, self.lost = self._remove_duplicates(tracked, lost)
        return self._snapshot()

    def _cost(self, tracks: list[Track], dets: Detections, idx: npt.NDArray[np.intp], fuse: bool) -> F64:
        if not tracks or len(idx) == 0:
            return np.zeros((len(tracks), len(idx)))
        boxes = xywh_to_xyxy(np.stack([t.mean[:4] for t in tracks]))
        iou = iou_matrix(boxes, dets.xyxy[idx].astype(np.float64), self.p.match_buffer)
        if fuse:
            iou = iou * dets.confidence[idx][None, :].astype(np.float64)
        return 1.0 - iou

    def _remove_duplicates(self, tracked: list[Track], lost: list[Track]) -> tuple[list[Track], list[Track]]:
        """A lost track that overlaps a tracked one (IoU > 0.85) is the same object: keep the older."""
        if not tracked or not lost:
            return tracked, lost
        a = xywh_to_xyxy(np.stack([t.mean[:4] for t in tracked]))
        b = xywh_to_xyxy(np.stack([t.mean[:4] for t in lost]))
        drop_t: set[int] = set()
        drop_l: set[int] = set()
        for i, j in zip(*np.nonzero(1.0 - iou_matrix(a, b) < 0.15), strict=True):
            ta, tb = tracked[i], lost[j]
            if ta.frame - ta.start_frame > tb.frame - tb.start_frame:
                drop_l.add(j)
            else:
                drop_t.add(i)
        return (
            [t for i, t in enumerate(tracked) if i not in drop_t],
            [t for j, t in enumerate(lost) if j not in drop_l],
        )

    def _snapshot(self) -> Tracks:
        seen = [t for t in self.tracked if t.frame == self.frame]
        n = len(seen)
        return Tracks(
            track_id=np.array([t.track_id for t in seen], dtype=np.int64),
            xyxy=np.stack([t.last_xyxy for t in seen]) if n else np.zeros((0, 4)),
            class_id=np.array([t.class_id for t in seen], dtype=np.int32),
            score=np.array([t.score for t in seen], dtype=np.float32),
            hits=np.array([t.hits for t in seen], dtype=np.int32),
            confirmed=np.array([t.activated for t in seen], dtype=np.bool_),
            names=self.names,
        )
