"""Zones drawn on a camera frame, so an operator can see whether map and image agree.

WGS84 zones are projected into the image through the camera's calibration (the same path the
edge uses to judge them); the calibration's surveyed points are drawn too, each as a ring at
the pixel where it was surveyed and a dot where its lon/lat projects, so a bad pair stands out
as a gap between the two. A zone that projects outside the frame is listed, not silently lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt
import shapely

from cityeye.zones.calibration import Calibration
from cityeye.zones.model import Zone

Image = npt.NDArray[np.uint8]

_COLOURS: dict[str, tuple[int, int, int]] = {  # BGR per zone kind
    "space": (60, 200, 60),
    "area": (230, 160, 40),
    "line": (40, 40, 230),
}


@dataclass(frozen=True, slots=True)
class Projection:
    image: Image
    outside: list[str]
    """Zones wholly outside the frame."""
    partial: list[str]
    """Zones partly outside the frame."""


def draw_zones(
    image: Image, zones: Sequence[Zone], calibration: Calibration | None = None, alpha: float = 0.35
) -> Projection:
    """A copy of ``image`` with every zone filled (``alpha``), outlined and labelled with its id."""
    h, w = image.shape[:2]
    frame = shapely.box(0, 0, w, h)
    overlay = image.copy()
    out = image.copy()
    outside: list[str] = []
    partial: list[str] = []
    for z in zones:
        pts = np.round(z.pixels).astype(np.int32)
        colour = _COLOURS[z.kind]
        geom = shapely.LineString(z.pixels) if z.kind == "line" else shapely.Polygon(z.pixels)
        if not geom.intersects(frame):
            outside.append(z.id)
            continue
        if not frame.contains(geom):
            partial.append(z.id)
        if z.kind == "line":
            cv2.polylines(out, [pts], False, colour, 2, cv2.LINE_AA)
        else:
            cv2.fillPoly(overlay, [pts], colour)
    cv2.addWeighted(overlay, alpha, out, 1 - alpha, 0, dst=out)
    scale = max(min(w, h) / 1500, 0.35)
    for z in zones:
        if z.id in outside:
            continue
        pts = np.round(z.pixels).astype(np.int32)
        if z.kind != "line":
            cv2.polylines(out, [pts], True, _COLOURS[z.kind], 1, cv2.LINE_AA)
        geom = shapely.LineString(z.pixels) if z.kind == "line" else shapely.Polygon(z.pixels)
        c = geom.representative_point()
        org = (int(c.x) - 4, int(c.y) + 4)
        cv2.putText(out, z.id, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, z.id, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    if calibration is not None:
        projected = calibration.lonlat_to_pixel(calibration.lonlats)
        for surveyed, back in zip(np.round(calibration.pixels).astype(int), projected, strict=True):
            cv2.circle(out, (int(surveyed[0]), int(surveyed[1])), 7, (0, 255, 255), 2, cv2.LINE_AA)
            if np.isfinite(back).all():
                b = np.round(back).astype(int)
                cv2.circle(out, (int(b[0]), int(b[1])), 2, (0, 0, 255), -1, cv2.LINE_AA)
    return Projection(out, outside, partial)
