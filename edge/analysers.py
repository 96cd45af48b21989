"""What a camera does with its detections, one analyser per camera mode.

The worker owns threads, sources and MQTT; an analyser owns the decision logic and its state
(for parking: the zones and, later, their temporal state; for traffic: tracks and counts). It
returns schema events and never touches the network, so it can be tested frame by frame.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from cityeye.config import CameraConfig
from cityeye.events.schema import AnyEvent
from cityeye.streams.frame import Frame
from cityeye.vision.detections import Detections
from cityeye.zones.calibration import load_calibration
from cityeye.zones.model import Zone, load_zones

if TYPE_CHECKING:
    from cityeye.vision.detector import Detector


@dataclass(frozen=True, slots=True)
class EventContext:
    """What an analyser needs to stamp events: who it is and a source of stable event ids."""

    site: str
    camera: str
    next_event_id: Callable[[str], str]


class Analyser(Protocol):
    def needs_detection(self, frame: Frame) -> bool:
        """False lets the worker skip inference (e.g. an unchanged parking scene)."""
        ...

    def process(self, frame: Frame, detections: Detections | None) -> list[AnyEvent]: ...

    def close(self) -> None:
        """Persist or drop state; called once when the camera stops."""
        ...


def load_camera_zones(cam: CameraConfig) -> list[Zone]:
    if cam.zones is None:
        return []
    calibration = load_calibration(cam.calibration) if cam.calibration else None
    return load_zones(cam.zones, calibration, default_lot=cam.lot)


def make_analyser(cam: CameraConfig, ctx: EventContext, detector: Detector | None = None) -> Analyser:
    """``detector``: parking cameras then run their own zone-aware tiled pass (edge/parking.py)."""
    if cam.mode == "parking":
        from cityeye.edge.parking import ParkingAnalyser  # imports this module

        return ParkingAnalyser(cam, ctx, detector)
    from cityeye.edge.traffic import TrafficAnalyser  # imports this module

    return TrafficAnalyser(cam, ctx)
