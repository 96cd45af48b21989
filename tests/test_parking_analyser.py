"""The edge's parking analyser on real PKLot frames: restart, motion gate, occlusion hold, overstay.

Real detector (the shipped model, the analyser's own tiled pass), real UFPR05 frames; time is
the frames' own timestamps, so nothing sleeps.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from cityeye.config import CameraConfig
from cityeye.edge.analysers import EventContext, make_analyser
from cityeye.edge.parking import ParkingAnalyser, temporal_enabled
from cityeye.events.schema import AnyEvent, OccupancyEvent, OverstayEvent, SpaceState
from cityeye.streams.frame import Frame
from cityeye.zones.config import ParkingConfig
from cityeye.zones.importers import import_pklot, read_pklot_labels

from .conftest import shared_path

UFPR05 = ("data", "parking", "pklot_ufpr05")
FULL = "2013-04-15_07_35_01"  # 40 of 40 occupied
EMPTY = "2013-02-24_10_05_04"  # 0 of 40
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def image(stem: str) -> npt.NDArray[np.uint8]:
    folder = shared_path(*UFPR05)
    path = next(folder.glob(f"{stem}.*g"))
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None
    return np.asarray(img, dtype=np.uint8)


@pytest.fixture
def zones_file(tmp_path: Path) -> Path:
    doc = import_pklot(shared_path(*UFPR05) / f"{FULL}.xml")
    doc["features"][5]["properties"]["max_dwell_s"] = 60  # space "6": a 1-minute bay
    p = tmp_path / "zones.geojson"
    p.write_text(json.dumps(doc))
    return p


def camera(zones: Path, state_dir: Path, **parking: object) -> CameraConfig:
    # An RTSP source: a live camera, so the temporal logic is on (`temporal: auto`).
    return CameraConfig(
        id="cam1",
        source="rtsp://camera.invalid/stream",
        zones=zones,
        lot="ufpr05",
        parking=ParkingConfig(state_dir=state_dir, **parking),
    )  # type: ignore[arg-type]


def context() -> EventContext:
    seq = itertools.count(1)
    return EventContext("test", "cam1", lambda kind: f"test:cam1:{kind}:{next(seq)}")


class Feed:
    """Frames 10 s apart into one analyser; counts its detector runs."""

    def __init__(self, analyser: ParkingAnalyser, start: datetime = T0) -> None:
        self.analyser = analyser
        self.t = start
        self.index = 0
        self.runs = 0
        analyser.tiler = _Counting(analyser._tiler(), self)  # type: ignore[assignment]

    def __call__(self, img: npt.NDArray[np.uint8], step_s: float = 10.0) -> list[AnyEvent]:
        self.t += timedelta(seconds=step_s)
        self.index += 1
        frame = Frame("cam1", self.index, self.t, img)
        assert self.analyser.needs_detection(frame) is False  # the analyser runs its own pass
        return self.analyser.process(frame, None)


class _Counting:
    def __init__(self, inner: object, feed: Feed) -> None:
        self.inner = inner
        self.feed = feed

    def __call__(self, img: npt.NDArray[np.uint8]) -> object:
        self.feed.runs += 1
        return self.inner(img)  # type: ignore[operator]


def snapshot(events: list[AnyEvent]) -> dict[str, SpaceState]:
    (occ,) = [e for e in events if isinstance(e, OccupancyEvent)]
    return {z.id: z for z in occ.zones if isinstance(z, SpaceState)}


def occupied(events: list[AnyEvent]) -> int:
    return sum(s.occupied for s in snapshot(events).values())


@pytest.fixture
def full_and_empty() -> Iterator[tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]]:
    yield image(FULL), image(EMPTY)


def test_restart_restores_states_dwell_and_sent_overstays(
    zones_file: Path, tmp_path: Path, full_and_empty: tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]
) -> None:
    full, empty = full_and_empty
    cam = camera(zones_file, tmp_path / "state")
    a = ParkingAnalyser(cam, context())
    feed = Feed(a)
    first = feed(full)
    assert occupied(first) >= 39  # 40 labelled; the frame's own verdict on a fresh start
    arrived = snapshot(first)["6"].since
    # 70 s later (still full) space 6 passes its 60 s limit: one overstay event.
    events = feed(full, step_s=70)
    (over,) = [e for e in events if isinstance(e, OverstayEvent)]
    assert (over.zone_id, over.lot, over.since, over.limit_s) == ("6", "ufpr05", arrived, 60.0)
    assert over.dwell_s == pytest.approx(70.0)
    a.close()
    state = json.loads((tmp_path / "state" / "test" / "cam1.json").read_text())
    assert state["spaces"]["6"]["overstay_sent"] is True

    # A new analyser (a restarted worker) sees the empty lot once: with exit hysteresis (2 frames)
    # the restored states stand, dwell goes on from the first arrival, and no second overstay.
    b = ParkingAnalyser(cam, context())
    feed_b = Feed(b, start=feed.t)
    events = feed_b(empty)
    assert occupied(events) == occupied(first)
    assert snapshot(events)["6"].since == arrived
    assert not [e for e in events if isinstance(e, OverstayEvent)]
    # A fresh analyser without the file takes the empty frame at once.
    (tmp_path / "state" / "test" / "cam1.json").unlink()
    c = ParkingAnalyser(cam, context())
    assert occupied(Feed(c, start=feed.t)(empty)) == 0


def test_motion_gate_skips_a_still_scene_but_keeps_publishing(
    zones_file: Path, tmp_path: Path, full_and_empty: tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]
) -> None:
    full, empty = full_and_empty
    feed = Feed(ParkingAnalyser(camera(zones_file, tmp_path, max_skip_s=60), context()))
    first = feed(full)
    assert feed.runs == 1
    again = feed(full.copy())  # the same scene: no detection, the same snapshot, a new event
    assert feed.runs == 1 and snapshot(again) == snapshot(first)
    feed(full.copy(), step_s=60)  # max_skip_s reached: detect anyway
    assert feed.runs == 2
    feed(empty)  # the lot emptied: detect, and keep detecting while the exit is pending
    feed(empty)
    assert feed.runs == 4
    assert occupied(feed(empty)) == 0


def test_something_moving_over_parked_cars_does_not_free_them(
    zones_file: Path, tmp_path: Path, full_and_empty: tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]
) -> None:
    full, _ = full_and_empty
    feed = Feed(ParkingAnalyser(camera(zones_file, tmp_path), context()))
    assert occupied(feed(full)) >= 39
    # A bus-sized grey block drives across the middle rows for three frames, hiding the cars
    # under it (the detector no longer sees them there): those spaces are held occupied.
    labels = read_pklot_labels(shared_path(*UFPR05) / f"{FULL}.xml")
    before = snapshot(feed(full))
    for x in (250, 450, 650):
        covered = full.copy()
        covered[250:420, x : x + 420] = (120, 120, 120)
        now = snapshot(feed(covered))
        assert {k: s.occupied for k, s in now.items()} == {k: s.occupied for k, s in before.items()}
    after = snapshot(feed(full))
    assert sum(s.occupied == labels[k] for k, s in after.items()) >= 39


def test_temporal_auto_is_off_for_image_folders(tmp_path: Path, zones_file: Path) -> None:
    folder = CameraConfig(id="c", source=str(tmp_path), zones=zones_file)
    assert not temporal_enabled(folder)
    assert temporal_enabled(CameraConfig(id="c", source=str(tmp_path / "video.mp4"), zones=zones_file))
    forced = CameraConfig(
        id="c", source=str(tmp_path), zones=zones_file, parking=ParkingConfig(temporal="on")
    )
    assert temporal_enabled(forced)


def test_make_analyser_gives_parking_cameras_the_parking_analyser(zones_file: Path, tmp_path: Path) -> None:
    a = make_analyser(camera(zones_file, tmp_path), context())
    assert isinstance(a, ParkingAnalyser) and len(a.zones) == 40 and a.limits == {"6": 60.0}


def test_bad_state_file_is_moved_aside(
    zones_file: Path, tmp_path: Path, full_and_empty: tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]
) -> None:
    path = tmp_path / "test" / "cam1.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    feed = Feed(ParkingAnalyser(camera(zones_file, tmp_path), context()))
    assert occupied(feed(full_and_empty[1])) == 0
    assert (tmp_path / "test" / "cam1.json.corrupt").read_text() == "{not json"
    feed.analyser.close()
    assert json.loads(path.read_text())["camera"] == "cam1"
