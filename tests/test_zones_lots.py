"""Lot totals across cameras: a lot seen half by one camera and half by another counts each bay once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import cv2
import numpy as np
import pytest

from cityeye.events.schema import AreaState, OccupancyEvent, SpaceState
from cityeye.vision.detector import Detector
from cityeye.zones.importers import import_pklot, read_pklot_labels
from cityeye.zones.lots import lot_totals, merge_zones
from cityeye.zones.model import Zone, parse_zones
from cityeye.zones.occupancy import OccupancyJudge
from cityeye.zones.tiling import ZoneDetector

from .conftest import shared_path

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
PUCPR = ("data", "parking", "pklot_pucpr")
FRAME = "2012-09-12_10_11_12"  # 95 of 100 bays occupied


def event(camera: str, at: datetime, *zones: SpaceState | AreaState) -> OccupancyEvent:
    return OccupancyEvent(
        site="s", camera=camera, event_id=f"s:{camera}:{at.isoformat()}", observed_at=at, zones=list(zones)
    )


def bay(zid: str, occupied: bool, lot: str | None = "L") -> SpaceState:
    return SpaceState(id=zid, lot=lot, occupied=occupied, score=0.9 if occupied else 0.0)


def crop_zones(zones: list[Zone], x0: int, x1: int) -> list[Zone]:
    """The spaces wholly inside columns [x0, x1), in the crop's own pixels (a second camera)."""
    out = []
    for z in zones:
        if z.pixels[:, 0].min() >= x0 and z.pixels[:, 0].max() < x1:
            px = z.pixels - np.array([x0, 0.0])
            out.append(Zone(z.id, z.kind, px, lot="pucpr", properties=z.properties))
    return out


def test_two_cameras_each_seeing_half_of_a_real_lot() -> None:
    folder = shared_path(*PUCPR)
    image = cv2.imread(str(folder / f"{FRAME}.jpg"), cv2.IMREAD_COLOR)
    assert image is not None
    zones = parse_zones(import_pklot(folder / f"{FRAME}.xml"))
    labels = read_pklot_labels(folder / f"{FRAME}.xml")
    detector = Detector(confidence=0.1)
    snapshots = []
    seen_by: dict[str, set[str]] = {}
    # Camera "west" sees x < 700, camera "east" x >= 520: the bays between are seen by both.
    for cam, (x0, x1) in {"west": (0, 700), "east": (520, 1280)}.items():
        part = crop_zones(zones, x0, x1)
        crop = np.ascontiguousarray(image[:, x0:x1])
        states = OccupancyJudge(part)(ZoneDetector(detector, part)(crop))
        snapshots.append(event(cam, T0, *states))
        seen_by[cam] = {z.id for z in part}
    both = seen_by["west"] & seen_by["east"]
    assert len(both) >= 10 and seen_by["west"] | seen_by["east"] == {z.id for z in zones}
    assert sum(e.total for e in snapshots) == 100 + len(both)  # per camera, the overlap counts twice

    (totals,) = lot_totals(snapshots).values()
    assert (totals.lot, totals.total, totals.zones, totals.cameras) == ("pucpr", 100, 100, {"west", "east"})
    merged = merge_zones(snapshots)
    wrong = [
        k[3] for k, s in merged.items() if isinstance(s.zone, SpaceState) and s.zone.occupied != labels[k[3]]
    ]
    assert len(wrong) <= 2, wrong  # each camera judges its own crop; ~99 % per bay as on whole frames
    assert totals.free == sum(not labels[z.id] for z in zones) + sum(1 if labels[z] else -1 for z in wrong)


def test_conflicting_cameras_fresh_then_recent_then_occupied() -> None:
    later = T0 + timedelta(seconds=30)
    # Bay 2 seen by both: the later observation (free) wins.
    snaps = [
        event("a", T0, bay("1", True), bay("2", True)),
        event("b", later, bay("2", False), bay("3", False)),
    ]
    (t,) = lot_totals(snaps).values()
    assert (t.total, t.free) == (3, 2)
    # Same time: occupied wins (never send a driver to a bay one camera sees taken).
    snaps = [event("a", T0, bay("2", False)), event("b", T0, bay("2", True))]
    assert lot_totals(snaps)[("s", "L")].free == 0
    # An offline camera's word loses, however recent.
    snaps = [event("a", T0, bay("2", True)), event("b", later, bay("2", False))]
    assert lot_totals(snaps, offline=[("s", "b")])[("s", "L")].free == 0
    # A stale camera (last snapshot older than stale_after_s: a at 100 s) loses to a fresh one (b, 70 s).
    now = T0 + timedelta(seconds=100)
    fresh = lot_totals(snaps, now=now, stale_after_s=80)[("s", "L")]
    assert (fresh.free, fresh.stale_zones, fresh.cameras) == (1, 0, {"b"})
    # When every camera is stale the zone still counts, flagged stale.
    assert lot_totals(snaps, now=now, stale_after_s=10)[("s", "L")].stale_zones == 1


def test_zones_without_a_lot_stay_per_camera_and_areas_count_once() -> None:
    yard = AreaState(id="yard", lot="L", vehicles=3, capacity=10)
    snaps = [
        event("a", T0, bay("1", False, lot=None), yard),
        event(
            "b", T0 + timedelta(seconds=5), bay("1", True, lot=None), yard.model_copy(update={"vehicles": 4})
        ),
    ]
    totals = lot_totals(snaps)
    assert totals[("s", None)].total == 2  # "1" of camera a and "1" of camera b are different bays
    assert (totals[("s", "L")].total, totals[("s", "L")].free) == (10, 6)


@pytest.mark.parametrize("stale_after_s", [None, 3600.0])
def test_fresh_snapshots_are_never_stale(stale_after_s: float | None) -> None:
    snaps = [event("a", T0, bay("1", True))]
    assert lot_totals(snaps, now=T0, stale_after_s=stale_after_s)[("s", "L")].stale_zones == 0
