"""Cheap frame differences over a camera's zones: a detector gate and a per-space occlusion cue.

Frames are reduced to a small grey image (``width`` pixels wide, area-averaged and blurred, so
sensor noise and JPEG blocks average out), and each frame's brightness is matched to the one it
is compared with (ratio of medians over the zones), so a cloud or the evening light does not
count as motion. A pixel changed when it differs by more than ``pixel_delta`` grey levels.

- *Gate*: changed pixels inside the zones, against the frame last analysed, measured in bays
  (median space area at the small size). Below ``threshold`` bays nothing can have parked or
  left, and detection can be skipped (the analyser still forces a run every ``max_skip_s``).
- *Occlusion*: the share of each zone's pixels that changed against the previous frame. A car
  driving past or a pedestrian crossing changes the bays they cover between two frames; a parked
  car does not.

The state is two small images (a few tens of kB), replaced frame after frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from cityeye.zones.model import Zone

DEFAULT_WIDTH = 320
DEFAULT_PIXEL_DELTA = 20.0


@dataclass(frozen=True, slots=True)
class Motion:
    """Motion of one frame: against the last analysed frame, and per zone against the previous one."""

    changed_bays: float
    """Changed pixels inside the zones since the reference (last analysed) frame, in bay areas;
    inf when there is no reference (first frame, new frame size)."""
    zone_changed: npt.NDArray[np.float64]
    """Per zone (in the order given), share of its pixels changed since the previous frame; 0 for
    the first frame."""


class MotionDetector:
    def __init__(
        self, zones: Sequence[Zone], width: int = DEFAULT_WIDTH, pixel_delta: float = DEFAULT_PIXEL_DELTA
    ) -> None:
        if width < 16:
            raise ValueError(f"motion width {width} is too small; use at least 16 pixels")
        self.zones = [z for z in zones if z.kind != "line"]
        self.width = width
        self.pixel_delta = pixel_delta
        self._shape: tuple[int, int] | None = None
        self._labels: npt.NDArray[np.int32] = np.zeros((0, 0), np.int32)
        self._zone_px: npt.NDArray[np.float64] = np.zeros(0)
        self._bay_px = 1.0
        self._previous: npt.NDArray[np.float32] | None = None
        self._reference: npt.NDArray[np.float32] | None = None

    def _prepare(self, hw: tuple[int, int]) -> None:
        """Zone label image at the small size; built once per frame size."""
        h, w = hw
        sw = min(self.width, w)
        sh = max(round(h * sw / w), 1)
        labels = np.full((sh, sw), -1, dtype=np.int32)
        scale = np.array([sw / w, sh / h])
        for k, z in enumerate(self.zones):
            ring = np.round(z.pixels * scale).astype(np.int32)
            cv2.fillPoly(labels, [ring], k)  # later zones win where zones overlap
        counts = np.bincount(labels[labels >= 0], minlength=len(self.zones)).astype(np.float64)
        self._labels = labels
        self._zone_px = counts
        spaces = [counts[k] for k, z in enumerate(self.zones) if z.kind == "space" and counts[k] > 0]
        self._bay_px = float(np.median(spaces)) if spaces else max(float(counts.sum()) / 10.0, 1.0)
        self._shape = hw
        self._previous = self._reference = None

    def small(self, image_bgr: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        sh, sw = self._labels.shape
        grey = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
        small = cv2.resize(grey, (sw, sh), interpolation=cv2.INTER_AREA)
        return cv2.GaussianBlur(small, (3, 3), 0).astype(np.float32)

    def _changed(self, cur: npt.NDArray[np.float32], ref: npt.NDArray[np.float32]) -> npt.NDArray[np.bool_]:
        inside = self._labels >= 0
        m_cur = float(np.median(cur[inside])) if inside.any() else float(np.median(cur))
        m_ref = float(np.median(ref[inside])) if inside.any() else float(np.median(ref))
        gain = m_ref / m_cur if m_cur > 1.0 else 1.0
        return np.asarray(np.abs(cur * gain - ref) > self.pixel_delta)

    def observe(self, image_bgr: npt.NDArray[np.uint8]) -> Motion:
        """Motion of this frame; it becomes the previous frame of the next call."""
        hw = (int(image_bgr.shape[0]), int(image_bgr.shape[1]))
        if self._shape != hw:
            self._prepare(hw)
        cur = self.small(image_bgr)
        n = len(self.zones)
        zone_changed = np.zeros(n)
        if self._previous is not None and n:
            changed = self._changed(cur, self._previous)
            hit = np.bincount(self._labels[changed & (self._labels >= 0)], minlength=n)
            zone_changed = hit / np.maximum(self._zone_px, 1.0)
        bays = np.inf
        if self._reference is not None:
            changed = self._changed(cur, self._reference)
            bays = float((changed & (self._labels >= 0)).sum()) / self._bay_px
        self._previous = cur
        return Motion(bays, zone_changed)

    def mark_analysed(self) -> None:
        """The frame last given to :meth:`observe` was analysed: later frames are gated against it."""
        self._reference = self._previous
