"""Counting lines: which side of a line a point is on, and whether a move crossed the line.

A line is a polyline (a ``line`` zone: 2 or more points, in image pixels). Its sides are named
as seen on the screen walking from its first point towards its last: ``left`` and ``right``.
A crossing is named after the side the vehicle came **from** (a vehicle that came from the
left moved to the right). In image coordinates (y grows downwards) the left side is where the
2-D cross product of the segment direction and the point is negative.

A zone may give the directions its own names in ``properties.directions``: either by side,
``{"left": "to Hai Chau", "right": "to Son Tra"}``, or by travel, ``{"forward": ..., "backward": ...}``
where ``forward`` is the move from the left side to the right side (the same as ``left``).

Everything here is stateless and vectorised over many points; the counter in
:mod:`cityeye.zones.counting` keeps per-track state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from cityeye.zones.model import Zone, ZoneError

F64 = npt.NDArray[np.float64]

LEFT = 1
"""Side code of the left side (the side a ``forward`` crossing comes from)."""
RIGHT = -1

_ALIASES = {"left": "left", "forward": "left", "right": "right", "backward": "right"}


def _direction_names(raw: object, where: str) -> tuple[str, str]:
    if raw is None:
        return ("left", "right")
    if not isinstance(raw, dict) or not raw:
        raise ZoneError(
            f"{where}properties.directions must be an object such as "
            '{"left": "to Hai Chau", "right": "to Son Tra"} or {"forward": ..., "backward": ...}'
        )
    names: dict[str, str] = {}
    for key, value in raw.items():
        side = _ALIASES.get(str(key))
        if side is None:
            raise ZoneError(f"{where}properties.directions key {key!r}: use left/right or forward/backward")
        if side in names:
            raise ZoneError(f"{where}properties.directions names the {side} side twice ({key!r})")
        if not isinstance(value, str) or not value.strip():
            raise ZoneError(f"{where}properties.directions[{key!r}] must be a non-empty name")
        names[side] = value.strip()
    left, right = names.get("left", "left"), names.get("right", "right")
    if left == right:
        raise ZoneError(f"{where}both directions are called {left!r}; give them different names")
    return left, right


@dataclass(frozen=True, eq=False)
class CountingLine:
    """One counting line in pixels, with the names of its two directions."""

    id: str
    points: F64
    """(K, 2) vertices, K >= 2."""
    left_name: str = "left"
    """Name of crossings that came from the left side."""
    right_name: str = "right"

    def __post_init__(self) -> None:
        pts = np.asarray(self.points, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 2:
            raise ValueError(f"line {self.id!r}: points must be (K >= 2, 2), got {pts.shape}")
        # Zero-length segments have no side; drop repeated vertices.
        keep = np.concatenate([[True], np.any(np.diff(pts, axis=0) != 0, axis=1)])
        pts = pts[keep]
        if len(pts) < 2:
            raise ValueError(f"line {self.id!r} needs 2 distinct points")
        pts.setflags(write=False)
        object.__setattr__(self, "points", pts)

    @classmethod
    def from_zone(cls, zone: Zone) -> CountingLine:
        if zone.kind != "line":
            raise ZoneError(f"zone {zone.id!r} is a {zone.kind}, not a line")
        left, right = _direction_names(zone.properties.get("directions"), f"line {zone.id!r}: ")
        return cls(zone.id, np.asarray(zone.pixels, dtype=np.float64), left, right)

    @property
    def direction_names(self) -> tuple[str, str]:
        return self.left_name, self.right_name

    def name_of(self, side_from: int) -> str:
        return self.left_name if side_from == LEFT else self.right_name

    @property
    def _a(self) -> F64:
        return self.points[:-1]

    @property
    def _d(self) -> F64:
        return np.diff(self.points, axis=0)

    def side_and_distance(self, pts: npt.ArrayLike, eps: float = 1e-9) -> tuple[npt.NDArray[np.int8], F64]:
        """Side code (LEFT, RIGHT, or 0 on the line) and distance to the line of each point.

        The side is taken from the nearest segment, so a polyline bending round a corner still
        has two consistent sides near it; past its ends it is the side of the end segment's
        extension (whether a move crossed *within the extent* is :meth:`crossed`'s job).
        """
        p = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
        a, d = self._a, self._d
        rel = p[:, None, :] - a[None, :, :]  # (N, S, 2)
        seg_len2 = np.einsum("sk,sk->s", d, d)
        t = np.clip(np.einsum("nsk,sk->ns", rel, d) / seg_len2, 0.0, 1.0)
        closest = a[None] + t[..., None] * d[None]
        dist = np.linalg.norm(p[:, None, :] - closest, axis=2)  # (N, S)
        nearest = np.argmin(dist, axis=1)
        rows = np.arange(len(p))
        cross = d[nearest, 0] * rel[rows, nearest, 1] - d[nearest, 1] * rel[rows, nearest, 0]
        mind = dist[rows, nearest]
        side = np.where(mind <= eps, 0, np.where(cross < 0, LEFT, RIGHT)).astype(np.int8)
        return side, mind

    def crossed(self, p: npt.ArrayLike, q: npt.ArrayLike) -> tuple[npt.NDArray[np.bool_], F64]:
        """Whether each move p -> q crosses the line within its extent (end points included), and
        the crossing point (the first along the move; NaN where there is none).

        A move that crosses an odd number of the polyline's segments crossed it; an even number
        (in and straight back out through a zigzag) did not. A move that only touches the line
        (p or q on it) is not a crossing: the counter waits until the point leaves the line.
        """
        p = np.asarray(p, dtype=np.float64).reshape(-1, 2)
        q = np.asarray(q, dtype=np.float64).reshape(-1, 2)
        a, d = self._a, self._d  # segments a -> a + d
        m = q - p  # (N, 2)

        def cross2(u: F64, v: F64) -> F64:
            return np.asarray(u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0], dtype=np.float64)

        # Orientation of p and q relative to each segment, and of the segment ends relative to the move.
        dp = cross2(d[None], p[:, None] - a[None])
        dq = cross2(d[None], q[:, None] - a[None])
        ea = cross2(m[:, None], a[None] - p[:, None])
        eb = cross2(m[:, None], (a + d)[None] - p[:, None])
        hit = (dp * dq < 0) & (ea * eb <= 0)  # strictly across the segment, within it (ends included)
        n_hits = hit.sum(axis=1)
        crossed = (n_hits % 2) == 1
        # Parameter along the move of each segment hit: p + s*m on the segment.
        denom = cross2(m[:, None], d[None])
        with np.errstate(divide="ignore", invalid="ignore"):
            s = cross2((a[None] - p[:, None]), d[None]) / denom
        s = np.where(hit, s, np.inf)
        first = np.argmin(s, axis=1)
        rows = np.arange(len(p))
        s_first = np.where(crossed, s[rows, first], 0.0)
        point = np.where(crossed[:, None], p + s_first[:, None] * m, np.nan)
        return crossed, point


def lines_from_zones(zones: list[Zone]) -> list[CountingLine]:
    return [CountingLine.from_zone(z) for z in zones if z.kind == "line"]


def line_json(line: CountingLine) -> dict[str, Any]:
    return {"id": line.id, "points": line.points.tolist(), "directions": list(line.direction_names)}
