"""Line-crossing and counting rules as tables of tracks, with no detector involved."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cityeye.vision.detections import Detections
from cityeye.vision.tracker import Tracks
from cityeye.zones.counting import (
    CounterParams,
    TimeBins,
    TrafficCounter,
    remap_classes,
    vehicle_detections,
)
from cityeye.zones.importers import import_labelme
from cityeye.zones.lines import LEFT, RIGHT, CountingLine
from cityeye.zones.model import ZoneError, parse_zones

NAMES = {0: "person", 1: "bicycle", 2: "car", 3: "motorcycle", 5: "bus", 7: "truck", 67: "cell phone"}
H_LINE = CountingLine("h", np.array([[0.0, 100.0], [200.0, 100.0]]))


def tracks(items: list[tuple[int, float, float]], size: float = 20.0, hits: int = 10, cls: int = 2) -> Tracks:
    """Tracks whose box centre is (x, y), ``size`` square."""
    n = len(items)
    xyxy = np.array([[x - size / 2, y - size / 2, x + size / 2, y + size / 2] for _, x, y in items]).reshape(
        -1, 4
    )
    return Tracks(
        track_id=np.array([i for i, _, _ in items], dtype=np.int64),
        xyxy=xyxy,
        class_id=np.full(n, cls, dtype=np.int32),
        score=np.full(n, 0.9, dtype=np.float32),
        hits=np.full(n, hits, dtype=np.int32),
        confirmed=np.ones(n, dtype=bool),
        names=NAMES,
    )


def run(
    line: CountingLine,
    path: list[list[tuple[int, float, float]]],
    params: CounterParams | None = None,
    image_wh: tuple[int, int] = (1000, 1000),
    hits: int = 10,
    fps: float = 10.0,
) -> list[tuple[int, str, int]]:
    """Feed frames of (track id, x, y); return (track id, direction, frame) of every count."""
    counter = TrafficCounter([line], params=params or CounterParams())
    out = []
    for f, frame in enumerate(path):
        for c in counter.update(tracks(frame, hits=hits), f / fps, f, image_wh):
            out.append((c.track_id, c.direction, c.frame))
    out += [(c.track_id, c.direction, c.frame) for c in counter.finish()]
    return out


def straight(tid: int, x: float, ys: list[float]) -> list[list[tuple[int, float, float]]]:
    return [[(tid, x, y)] for y in ys]


# Downwards on the screen is from the left side of a line drawn left to right.
CASES: list[tuple[str, CountingLine, list[list[tuple[int, float, float]]], list[tuple[int, str, int]]]] = [
    ("crossing downwards", H_LINE, straight(1, 50, [60, 80, 95, 105, 120, 140]), [(1, "left", 3)]),
    ("crossing upwards", H_LINE, straight(1, 50, [140, 120, 105, 95, 80, 60]), [(1, "right", 3)]),
    ("no crossing: stays above", H_LINE, straight(1, 50, [40, 60, 80, 90, 95, 90]), []),
    ("no crossing: passes beyond the end", H_LINE, straight(1, 250, [60, 80, 120, 140]), []),
    (
        "touching the end point then back",
        H_LINE,
        [[(1, 0, 90)], [(1, 0, 100)], [(1, 0, 90)], [(1, 0, 80)]],
        [],
    ),
    (
        "through the end point counts (ends are part of the line)",
        H_LINE,
        [[(1, 0, 80)], [(1, 0, 100)], [(1, 0, 120)], [(1, 0, 140)]],
        [(1, "left", 2)],
    ),
    (
        "flicker on the line is not a crossing",
        H_LINE,
        straight(1, 50, [97, 102, 98, 103, 97, 102, 98, 101, 97]),
        [],
    ),
    (
        "stop-and-go on the line counts once",
        H_LINE,
        straight(1, 50, [70, 90, 98, 101, 99, 102, 99, 101, 100, 103, 115, 140]),
        [(1, "left", 7)],
    ),
    (
        "crossing back within the cooldown (2 s) is not a second vehicle",
        H_LINE,
        straight(1, 50, [60, 80, 120, 140, 160, 140, 120, 80, 60, 40]),
        [(1, "left", 2)],
    ),
    (
        "id switch after a crossing: the new id is not counted again",
        H_LINE,
        [
            [(1, 50, 80)],
            [(1, 50, 95)],
            [(1, 50, 110)],
            [(1, 50, 125)],
            [(2, 51, 95)],
            [(2, 51, 110)],
            [(2, 52, 125)],
            [(2, 52, 140)],
        ],
        [(1, "left", 2)],
    ),
    (
        "two vehicles side by side both count",
        H_LINE,
        [
            [(1, 40, 80), (2, 62, 80)],
            [(1, 40, 95), (2, 62, 95)],
            [(1, 40, 110), (2, 62, 110)],
            [(1, 40, 125), (2, 62, 125)],
        ],
        [(1, "left", 2), (2, "left", 2)],
    ),
    (
        "a queue crossing at the same place counts every vehicle",
        H_LINE,
        [
            [(1, 50, 80), (2, 50, 40)],
            [(1, 50, 105), (2, 50, 60)],
            [(1, 50, 125), (2, 50, 85)],
            [(1, 50, 145), (2, 50, 105)],
            [(1, 50, 165), (2, 50, 125)],
        ],
        [(1, "left", 1), (2, "left", 3)],
    ),
    (
        "diagonal line, crossing from its left",
        CountingLine("d", np.array([[0.0, 0.0], [200.0, 200.0]])),
        [[(1, 150, 50)], [(1, 120, 80)], [(1, 95, 105)], [(1, 70, 130)], [(1, 50, 150)]],
        [(1, "left", 2)],
    ),
    (
        "diagonal line, crossing from its right",
        CountingLine("d", np.array([[0.0, 0.0], [200.0, 200.0]])),
        [[(1, 50, 150)], [(1, 70, 130)], [(1, 95, 105)], [(1, 120, 80)], [(1, 150, 50)]],
        [(1, "right", 3)],
    ),
    (
        "polyline: crossing its second segment",
        CountingLine("p", np.array([[0.0, 100], [100, 100], [150, 50]])),
        [[(1, 140, 40)], [(1, 130, 60)], [(1, 120, 80)], [(1, 110, 100)], [(1, 100, 120)]],
        [(1, "left", 3)],
    ),  # (120, 80) lies on the second segment: the crossing is when it leaves
]


@pytest.mark.parametrize(("name", "line", "path", "expected"), CASES, ids=[c[0] for c in CASES])
def test_line_table(
    name: str,
    line: CountingLine,
    path: list[list[tuple[int, float, float]]],
    expected: list[tuple[int, str, int]],
) -> None:
    assert sorted(run(line, path)) == sorted(expected)


def test_slow_back_and_forth_counts_each_direction_once() -> None:
    ys = [60, 80, 120, 140, 160, 140, 120, 80, 60, 40, 60, 80, 120, 140]
    assert run(H_LINE, straight(1, 50, ys), fps=1.0) == [(1, "left", 2), (1, "right", 7)]


def test_line_near_the_frame_edge_counts_a_vehicle_that_leaves() -> None:
    """Line 3 px above the bottom of a 200 px frame: the box centre can never get 4 px past it
    while the vehicle is visible, so the crossing is confirmed by the box touching the border."""
    line = CountingLine("edge", np.array([[0.0, 187.0], [200.0, 187.0]]))
    path = straight(1, 50, [150, 170, 185, 190])
    assert run(line, path, image_wh=(200, 200)) == [(1, "left", 3)]


def test_unconfirmed_tracks_wait_and_die_uncounted() -> None:
    path = straight(1, 50, [80, 95, 110, 125])
    assert run(H_LINE, path, hits=1, params=CounterParams(min_hits=3)) == []
    counter = TrafficCounter([H_LINE], params=CounterParams(min_hits=3))
    out = []
    for f, (y, hits) in enumerate([(80, 1), (95, 2), (110, 2), (125, 3)]):
        t = tracks([(1, 50, y)], hits=hits)
        out += counter.update(t, f / 10, f, (1000, 1000))
    assert [(c.track_id, c.frame) for c in out] == [(1, 2)], (
        "held until confirmed, then counted at the crossing"
    )


def test_a_vehicle_lost_just_after_the_line_is_counted_when_its_track_ends() -> None:
    counter = TrafficCounter([H_LINE])
    counter.update(tracks([(1, 50, 80)]), 0.0, 0, (1000, 1000))
    counter.update(tracks([(1, 50, 90)]), 0.1, 1, (1000, 1000))
    counter.update(tracks([(1, 50, 101)], size=60), 0.2, 2, (1000, 1000))  # 1 px < 10 % of 60
    assert counter.update(tracks([]), 0.3, 3, (1000, 1000), alive={1}) == []
    out = counter.update(tracks([]), 1.5, 4, (1000, 1000), alive=set())
    assert out == [], "1 px past the line is not evidence enough"
    counter = TrafficCounter([H_LINE])
    for f, y in enumerate([80, 90, 106]):
        counter.update(tracks([(1, 150, y)], size=100), f / 10, f, (1000, 1000))
    out = counter.update(tracks([]), 1.5, 3, (1000, 1000), alive=set())
    assert [(c.track_id, c.direction, c.frame) for c in out] == [(1, "left", 2)]
    assert counter.tracks_held == 0, "state of ended tracks is evicted"


def test_direction_names_from_the_zone() -> None:
    doc = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "id": "a",
                "properties": {
                    "kind": "line",
                    "directions": {"forward": "to Hai Chau", "backward": "to Son Tra"},
                },
                "geometry": {"type": "LineString", "coordinates": [[0, 100], [200, 100]]},
            },
            {
                "type": "Feature",
                "id": "b",
                "properties": {"kind": "line"},
                "geometry": {"type": "LineString", "coordinates": [[0, 100], [200, 100]]},
            },
        ],
    }
    a, b = (CountingLine.from_zone(z) for z in parse_zones(doc))
    assert a.direction_names == ("to Hai Chau", "to Son Tra")
    assert b.direction_names == ("left", "right")
    assert run(a, straight(1, 50, [60, 80, 120, 140])) == [(1, "to Hai Chau", 2)]
    bad = json.loads(json.dumps(doc))
    bad["features"][0]["properties"]["directions"] = {"north": "x"}
    with pytest.raises(ZoneError, match="left/right or forward/backward"):
        CountingLine.from_zone(parse_zones(bad)[0])


def test_side_and_crossed_vectorised() -> None:
    side, dist = H_LINE.side_and_distance([[50, 90], [50, 110], [50, 100], [300, 90]])
    assert side.tolist() == [LEFT, RIGHT, 0, LEFT]
    assert dist.tolist() == pytest.approx([10, 10, 0, np.hypot(100, 10)])
    crossed, where = H_LINE.crossed([[50, 90], [250, 90], [50, 90]], [[60, 110], [250, 110], [50, 95]])
    assert crossed.tolist() == [True, False, False]
    assert where[0].tolist() == pytest.approx([55, 100])


def test_riders_are_part_of_their_two_wheeler_and_duplicates_merge() -> None:
    xyxy = np.array(
        [
            [100, 140, 130, 200],  # motorcycle
            [102, 110, 128, 180],  # its rider
            [300, 100, 320, 160],  # a pedestrian
            [500, 100, 600, 160],  # a van seen as car ...
            [502, 101, 601, 161],
        ],  # ... and as truck
        dtype=np.float32,
    )
    dets = Detections(
        xyxy, np.array([0.8, 0.9, 0.9, 0.7, 0.6], np.float32), np.array([3, 0, 0, 2, 7], np.int32), NAMES
    )
    vehicles, riders = vehicle_detections(dets)
    assert riders == 1
    assert sorted(vehicles.label(i) for i in range(len(vehicles))) == ["car", "motorcycle"]


def test_class_map_renames_labels() -> None:
    dets = Detections(
        np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32),
        np.array([0.9, 0.8], np.float32),
        np.array([67, 3], np.int32),
        NAMES,
    )
    out = remap_classes(dets, {"cell phone": "car", "motorbike": "motorcycle"})
    assert [out.label(0), out.label(1)] == ["car", "motorcycle"]


def test_time_bins_publish_once_then_replace() -> None:
    from cityeye.zones.counting import Crossing

    bins = TimeBins({"h": ("left", "right")}, bin_s=60, delay_s=2.0)
    bins.touch(0.0)
    bins.add(Crossing("h", "left", "left", "car", 1, 0, 10.0, 0, 0))
    assert bins.due(30.0) == []
    due = bins.due(62.5)
    assert [(s, b.counts["h"]["left"]["car"]) for s, b in due] == [(0, 1)]
    assert bins.due(63.0) == [], "published once"
    bins.add(Crossing("h", "right", "right", "bus", 2, 0, 59.0, 0, 0))  # late, same bin
    assert [(s, b.counts["h"]["right"]["bus"], b.counts["h"]["left"]["car"]) for s, b in bins.due(64.0)] == [
        (0, 1, 1)
    ]
    bins.touch(1000.0)
    bins.due(1000.0)
    assert len(bins) == 1, "old bins are evicted"


def test_import_labelme(tmp_path: Path) -> None:
    doc = {
        "version": "5.4.1",
        "imagePath": "frame.jpg",
        "imageWidth": 960,
        "imageHeight": 540,
        "shapes": [
            {"label": "north", "points": [[0, 100], [960, 120]], "shape_type": "line"},
            {"label": "north", "points": [[0, 300], [400, 310], [960, 330]], "shape_type": "linestrip"},
            {"label": "bay", "points": [[0, 0], [10, 0], [10, 10]], "shape_type": "polygon"},
        ],
    }
    f = tmp_path / "lines.json"
    f.write_text(json.dumps(doc))
    out = import_labelme(f)
    zones = parse_zones(out)
    assert [(z.id, z.kind, len(z.pixels)) for z in zones] == [("north", "line", 2), ("north-2", "line", 3)]
    assert out["cityeye:source"]["skipped"] == ["#2 bay (polygon)"]
    f.write_text(json.dumps({"shapes": [doc["shapes"][2]]}))
    with pytest.raises(ZoneError, match="no line shapes"):
        import_labelme(f)
