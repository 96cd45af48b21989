"""Temporal logic of parking spaces on a live camera: inertia, hysteresis, occlusion hold, dwell.

One frame's verdict (``zones/occupancy.py``) is right ~99 % of the time on a clear view, but a
live camera sees pedestrians crossing bays, cars manoeuvring into the bay next door, a bus
passing in front. A space's published state therefore changes only when

- the frame's evidence disagrees with it ``enter_frames`` (free -> occupied) or ``exit_frames``
  (occupied -> free) analysed frames in a row, and for at least ``enter_s`` / ``exit_s``
  seconds since the first of them (both conditions: frames guard against one bad frame, seconds
  against a burst of frames close together);
- and the space is not *occluded*: an occluded observation (something moving over the space,
  see ``edge/parking.py``) neither confirms nor resets a pending change, so a car parked in the
  bay stays "occupied" while a truck drives past in front of it. An occlusion lasting longer than
  ``occlusion_max_s`` is no longer trusted: the frame's own evidence is used again (a van that
  stopped in front of a bay for an hour is the new normal).

The first observation of a space with no remembered state is taken at once, so a fresh start
publishes a full picture on its first frame. ``since`` is when the space took its current state
(dwell = now - since); an occupied space past its dwell limit gives one overstay per stay.

State is a plain dict per space (``to_json``/``from_json``) so it survives restarts; spaces that
leave the zone file are evicted on ``retain``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class TemporalSettings:
    enter_frames: int = 2
    enter_s: float = 0.0
    exit_frames: int = 2
    exit_s: float = 0.0
    occlusion_max_s: float = 600.0

    def __post_init__(self) -> None:
        if self.enter_frames < 1 or self.exit_frames < 1:
            raise ValueError("enter_frames and exit_frames must be at least 1 (1 = change at once)")
        if min(self.enter_s, self.exit_s, self.occlusion_max_s) < 0:
            raise ValueError("enter_s, exit_s and occlusion_max_s must not be negative")


@dataclass(slots=True)
class SpaceTrack:
    """What one space's filter remembers."""

    occupied: bool
    since: datetime
    pending_count: int = 0
    pending_since: datetime | None = None
    occluded_since: datetime | None = None
    overstay_sent: bool = False
    score: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "occupied": self.occupied,
            "since": self.since.isoformat(),
            "pending_count": self.pending_count,
            "pending_since": None if self.pending_since is None else self.pending_since.isoformat(),
            "occluded_since": None if self.occluded_since is None else self.occluded_since.isoformat(),
            "overstay_sent": self.overstay_sent,
            "score": self.score,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SpaceTrack:
        def when(v: object) -> datetime | None:
            return None if v is None else datetime.fromisoformat(str(v))

        since = when(d["since"])
        if since is None or since.tzinfo is None:
            raise ValueError(f"space state needs a time-zone-aware 'since', got {d.get('since')!r}")
        return cls(
            occupied=bool(d["occupied"]),
            since=since,
            pending_count=int(d.get("pending_count", 0)),
            pending_since=when(d.get("pending_since")),
            occluded_since=when(d.get("occluded_since")),
            overstay_sent=bool(d.get("overstay_sent", False)),
            score=float(d.get("score", 0.0)),
        )


@dataclass(frozen=True, slots=True)
class Overstay:
    zone_id: str
    since: datetime
    dwell_s: float
    limit_s: float


@dataclass(slots=True)
class SpaceFilter:
    """Per-space state machines of one camera (see the module docstring)."""

    settings: TemporalSettings = field(default_factory=TemporalSettings)
    tracks: dict[str, SpaceTrack] = field(default_factory=dict)

    def update(
        self, zone_id: str, now: datetime, occupied: bool, occluded: bool = False, score: float = 0.0
    ) -> SpaceTrack:
        """Feed one analysed frame's evidence for one space; returns its (possibly new) state."""
        t = self.tracks.get(zone_id)
        if t is None:
            # Nothing remembered: the first frame's evidence stands (even when occluded, there is
            # nothing better to publish); the next frames correct it through the usual rules.
            t = SpaceTrack(occupied, now, score=score if occupied else 0.0)
            self.tracks[zone_id] = t
            return t
        s = self.settings
        if occluded:
            if t.occluded_since is None:
                t.occluded_since = now
            if (now - t.occluded_since).total_seconds() < s.occlusion_max_s:
                return t  # hold: neither confirm nor reset a pending change
        else:
            t.occluded_since = None
        if occupied == t.occupied:
            t.pending_count, t.pending_since = 0, None
            if occupied:
                t.score = score
            return t
        if t.pending_since is None:
            t.pending_since = now
        t.pending_count += 1
        frames, secs = (s.enter_frames, s.enter_s) if occupied else (s.exit_frames, s.exit_s)
        if t.pending_count >= frames and (now - t.pending_since).total_seconds() >= secs:
            t.occupied, t.since = occupied, now
            t.pending_count, t.pending_since = 0, None
            t.overstay_sent = False
            t.score = score if occupied else 0.0
        return t

    def overstays(self, now: datetime, limits: Mapping[str, float]) -> list[Overstay]:
        """Spaces occupied longer than their limit (id -> seconds) not yet reported this stay."""
        out = []
        for zid, limit in limits.items():
            t = self.tracks.get(zid)
            if t is None or not t.occupied or t.overstay_sent:
                continue
            dwell = (now - t.since).total_seconds()
            if dwell >= limit:
                t.overstay_sent = True
                out.append(Overstay(zid, t.since, dwell, limit))
        return out

    def retain(self, zone_ids: Iterable[str]) -> int:
        """Forget spaces not in ``zone_ids``; returns how many were dropped."""
        keep = set(zone_ids)
        gone = [k for k in self.tracks if k not in keep]
        for k in gone:
            del self.tracks[k]
        return len(gone)

    def to_json(self) -> dict[str, Any]:
        return {k: t.to_json() for k, t in self.tracks.items()}

    def load(self, data: Mapping[str, Any]) -> None:
        self.tracks = {str(k): SpaceTrack.from_json(v) for k, v in data.items()}
