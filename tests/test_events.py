"""The shared event contract: topic tree and payload validation."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from cityeye.events import (
    AreaState,
    OccupancyEvent,
    SpaceState,
    StatusEvent,
    TopicKind,
    parse_topic,
    topic_for,
)
from cityeye.events.topics import subscription


def test_topic_round_trip_and_rejects() -> None:
    t = topic_for("danang", "cam-1", TopicKind.OCCUPANCY)
    assert t == "cityeye/v1/danang/cam-1/occupancy"
    parsed = parse_topic(t)
    assert (parsed.site, parsed.camera, parsed.kind, parsed.retained) == (
        "danang",
        "cam-1",
        TopicKind.OCCUPANCY,
        True,
    )
    assert not parse_topic("cityeye/v1/s/c/health").retained
    assert subscription() == "cityeye/v1/+/+/+"
    for bad in ("cityeye/v2/s/c/status", "cityeye/v1/s/c", "cityeye/v1/s/c/bogus"):
        with pytest.raises(ValueError, match="topic"):
            parse_topic(bad)
    with pytest.raises(ValueError, match="no '/'"):
        topic_for("a/b", "c", TopicKind.STATUS)


def _occ(**kw: object) -> OccupancyEvent:
    base: dict[str, object] = {
        "site": "s",
        "camera": "c",
        "event_id": "s:c:1",
        "observed_at": datetime(2026, 1, 1, tzinfo=UTC),
        "zones": [
            {"id": "1", "kind": "space", "occupied": True, "score": 0.9},
            {"id": "2", "kind": "space", "occupied": False, "score": 0.0},
            {"id": "a", "kind": "area", "vehicles": 7, "capacity": 5},
        ],
    }
    base.update(kw)
    return OccupancyEvent.model_validate(base)


def test_occupancy_totals_and_json_round_trip() -> None:
    ev = _occ()
    assert isinstance(ev.zones[0], SpaceState) and isinstance(ev.zones[2], AreaState)
    assert (ev.free, ev.total) == (1, 7)  # an over-full area has 0 free, never negative
    assert OccupancyEvent.model_validate_json(ev.model_dump_json()) == ev


@pytest.mark.parametrize(
    "change",
    [
        {"observed_at": datetime(2026, 1, 1)},  # naive time: ambiguous, rejected
        {"camera": "a/b"},
        {"zones": [{"id": "1", "kind": "space", "occupied": True, "score": 1.5}]},
        {"zones": [{"id": "1", "kind": "lane"}]},
        {"extra": 1},
        {"v": 2},
    ],
)
def test_bad_payloads_are_rejected(change: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        _occ(**change)


def test_status_event() -> None:
    ev = StatusEvent(site="s", camera="c", event_id="x", observed_at=datetime.now(UTC), status="offline")
    assert ev.model_dump()["status"] == "offline"
