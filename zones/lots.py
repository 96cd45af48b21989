"""Lot totals from several cameras' occupancy snapshots, each space counted once.

A camera may see part of a lot and several cameras may overlap. The edge publishes, per camera,
every zone it watches with its ``lot`` and its ``id``; the convention (README, "Parking
occupancy rule") is that *within a lot a zone id names one physical bay or area*, whichever
camera sees it. The centre therefore keys a zone by ``(site, lot, id)`` (``(site, camera, id)``
for zones without a lot) and, when two cameras report the same key, keeps one observation:

1. a fresh one over a stale one (older than ``stale_after_s``, or its camera offline);
2. then the most recent ``observed_at``;
3. on a tie, ``occupied`` over free (never send a driver to a bay one camera sees taken).

This module is the reference implementation the API mirrors; it keeps no state of its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from cityeye.events.schema import AreaState, OccupancyEvent, SpaceState

ZoneKey = tuple[str, str, str, str]
"""(site, "lot" | "camera", lot or camera id, zone id)."""


def zone_key(site: str, camera: str, zone: SpaceState | AreaState) -> ZoneKey:
    if zone.lot:
        return (site, "lot", zone.lot, zone.id)
    return (site, "camera", camera, zone.id)


@dataclass(frozen=True, slots=True)
class Seen:
    """One camera's latest word on one zone."""

    camera: str
    observed_at: datetime
    zone: SpaceState | AreaState
    stale: bool


@dataclass
class LotTotals:
    site: str
    lot: str | None
    free: int = 0
    total: int = 0
    zones: int = 0
    stale_zones: int = 0
    cameras: set[str] = field(default_factory=set)


def _better(a: Seen, b: Seen) -> Seen:
    """The observation to keep of two for the same zone (see the module docstring)."""
    if a.stale != b.stale:
        return b if a.stale else a
    if a.observed_at != b.observed_at:
        return a if a.observed_at > b.observed_at else b
    if isinstance(a.zone, SpaceState) and isinstance(b.zone, SpaceState):
        return a if a.zone.occupied >= b.zone.occupied else b
    return a if a.zone.free <= b.zone.free else b


def merge_zones(
    snapshots: Iterable[OccupancyEvent],
    now: datetime | None = None,
    stale_after_s: float | None = None,
    offline: Iterable[tuple[str, str]] = (),
) -> dict[ZoneKey, Seen]:
    """One observation per zone key from the latest snapshot of each camera."""
    down = set(offline)
    out: dict[ZoneKey, Seen] = {}
    for ev in snapshots:
        age = None if now is None else (now - ev.observed_at).total_seconds()
        stale = (age is not None and stale_after_s is not None and age > stale_after_s) or (
            (ev.site, ev.camera) in down
        )
        for z in ev.zones:
            seen = Seen(ev.camera, ev.observed_at, z, stale)
            key = zone_key(ev.site, ev.camera, z)
            out[key] = seen if key not in out else _better(out[key], seen)
    return out


def lot_totals(
    snapshots: Iterable[OccupancyEvent],
    now: datetime | None = None,
    stale_after_s: float | None = None,
    offline: Iterable[tuple[str, str]] = (),
) -> dict[tuple[str, str | None], LotTotals]:
    """(site, lot) -> free and total places, each zone once (zones without a lot under ``None``)."""
    out: dict[tuple[str, str | None], LotTotals] = {}
    for (site, scope, owner, _), seen in merge_zones(snapshots, now, stale_after_s, offline).items():
        lot = owner if scope == "lot" else None
        t = out.setdefault((site, lot), LotTotals(site, lot))
        t.free += seen.zone.free
        t.total += seen.zone.total
        t.zones += 1
        t.stale_zones += seen.stale
        t.cameras.add(seen.camera)
    return out
