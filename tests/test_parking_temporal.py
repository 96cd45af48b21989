"""The per-space temporal filter as tables: inertia, hysteresis, occlusion hold, dwell, overstay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cityeye.zones.temporal import SpaceFilter, SpaceTrack, TemporalSettings

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)

# One observation per analysed frame, 10 s apart: "O" occupied, "F" free, "o"/"f" the same evidence
# but occluded (something moving over the space). Expected: the published state after each frame.
TABLE = [
    # name, settings, observations, published
    ("first frame is taken at once", TemporalSettings(), "O", "O"),
    ("first frame is taken at once, free", TemporalSettings(), "F", "F"),
    ("one bad frame does not free a space", TemporalSettings(), "OFO", "OOO"),
    ("two free frames in a row do", TemporalSettings(), "OFFO", "OOFF"),
    ("entry needs two frames too", TemporalSettings(), "FOFOO", "FFFFO"),
    ("frames 1: every change at once", TemporalSettings(1, 0, 1, 0), "OFOF", "OFOF"),
    ("exit needs 3 frames", TemporalSettings(exit_frames=3), "OFFFF", "OOOFF"),
    ("interrupted exit starts again", TemporalSettings(exit_frames=3), "OFFOFFF", "OOOOOOF"),
    # Occlusion: a passing car hides the parked one (the frame says free) -> held.
    ("occluded free frames hold", TemporalSettings(), "OffffO", "OOOOOO"),
    # A passing car over a free bay (the frame says occupied) -> held free.
    ("occluded occupied frames hold", TemporalSettings(), "FoooF", "FFFFF"),
    # Occlusion neither confirms nor resets a pending change: F, (hold), F -> freed.
    ("occlusion pauses a pending exit", TemporalSettings(), "OFfF", "OOOF"),
    ("occlusion pauses a pending entry", TemporalSettings(), "FOoO", "FFFO"),
    # A hold longer than occlusion_max_s (25 s here) is no longer trusted: from t=40 s the evidence
    # counts again, and the usual two free frames free the space.
    ("long occlusions end the hold", TemporalSettings(occlusion_max_s=25), "Offfff", "OOOOOF"),
]


@pytest.mark.parametrize(("name", "settings", "obs", "published"), TABLE, ids=[t[0] for t in TABLE])
def test_space_filter_table(name: str, settings: TemporalSettings, obs: str, published: str) -> None:
    f = SpaceFilter(settings)
    got = ""
    for i, o in enumerate(obs):
        t = f.update("7", T0 + timedelta(seconds=10 * i), occupied=o in "Oo", occluded=o in "of", score=0.8)
        got += "O" if t.occupied else "F"
    assert got == published


@pytest.mark.parametrize(
    ("enter_s", "times", "published"),
    [
        # Seconds as well as frames: the second occupied frame arrives 5 s after the first -> not yet.
        (30.0, [0, 10, 15, 40], "FFFO"),
        (0.0, [0, 10, 15, 40], "FFOO"),
    ],
)
def test_entry_needs_seconds_as_well_as_frames(enter_s: float, times: list[int], published: str) -> None:
    f = SpaceFilter(TemporalSettings(enter_s=enter_s))
    got = ""
    for t, occ in zip(times, [False, True, True, True], strict=True):
        got += "O" if f.update("1", T0 + timedelta(seconds=t), occ).occupied else "F"
    assert got == published


def test_since_is_when_the_state_changed_and_overstay_fires_once_per_stay() -> None:
    f = SpaceFilter(TemporalSettings(1, 0, 1, 0))
    f.update("A", T0, occupied=False)
    f.update("A", T0 + timedelta(minutes=1), occupied=True, score=0.9)
    assert f.tracks["A"].since == T0 + timedelta(minutes=1) and f.tracks["A"].score == 0.9
    limits = {"A": 600.0}
    assert f.overstays(T0 + timedelta(minutes=10), limits) == []  # 9 min < 10 min
    (o,) = f.overstays(T0 + timedelta(minutes=11), limits)
    assert (o.zone_id, o.since, o.dwell_s, o.limit_s) == ("A", T0 + timedelta(minutes=1), 600.0, 600.0)
    assert f.overstays(T0 + timedelta(minutes=30), limits) == []  # once per stay
    f.update("A", T0 + timedelta(minutes=31), occupied=False)
    f.update("A", T0 + timedelta(minutes=32), occupied=True)
    assert f.overstays(T0 + timedelta(minutes=50), limits)[0].since == T0 + timedelta(minutes=32)
    assert f.overstays(T0 + timedelta(hours=5), {"B": 1.0}) == []  # unknown spaces are skipped


def test_state_round_trips_through_json_and_evicts_removed_spaces() -> None:
    f = SpaceFilter()
    f.update("A", T0, occupied=True, score=0.7)
    f.update("B", T0, occupied=False)
    f.update("A", T0 + timedelta(seconds=10), occupied=False, occluded=True)
    f.update("B", T0 + timedelta(seconds=10), occupied=True)
    g = SpaceFilter()
    g.load(f.to_json())
    assert g.tracks == f.tracks
    assert g.tracks["A"].occluded_since == T0 + timedelta(seconds=10)
    assert g.tracks["B"].pending_count == 1
    assert g.retain(["B", "C"]) == 1 and set(g.tracks) == {"B"}
    with pytest.raises(ValueError, match="time-zone-aware"):
        SpaceTrack.from_json({"occupied": True, "since": "2026-03-01T08:00:00"})


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        TemporalSettings(enter_frames=0)
    with pytest.raises(ValueError, match="negative"):
        TemporalSettings(exit_s=-1)
