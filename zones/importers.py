"""Zones from other tools' files, written as cityeye GeoJSON (pixel coordinates).

The output is a plain dict so the CLI can write it and :func:`cityeye.zones.model.parse_zones`
can read it back; nothing here decides occupancy.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cityeye.zones.model import COORDINATES_MEMBER, ZoneError

FeatureCollection = dict[str, Any]


def _feature(zid: str, ring: list[list[float]], source: str) -> dict[str, Any]:
    return {
        "type": "Feature",
        "id": zid,
        "properties": {"kind": "space", "source": source},
        "geometry": {"type": "Polygon", "coordinates": [[*ring, ring[0]]]},
    }


def _collection(features: list[dict[str, Any]], source: dict[str, Any]) -> FeatureCollection:
    return {
        "type": "FeatureCollection",
        COORDINATES_MEMBER: "pixel",
        "cityeye:source": source,
        "features": features,
    }


def _local(tag: str) -> str:
    """Tag name without namespace, lower-cased: PKLot files write both <point> and <Point>."""
    return tag.rsplit("}", 1)[-1].lower()


def _children(el: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in el if _local(c.tag) == name]


def _parse_pklot(xml_path: str | Path) -> tuple[Path, ET.Element, list[tuple[str, ET.Element]]]:
    p = Path(xml_path)
    if not p.exists() or p.is_dir():
        raise ZoneError(f"PKLot file {p} not found")
    try:
        root = ET.parse(p).getroot()
    except ET.ParseError as exc:
        raise ZoneError(f"{p}: not valid XML: {exc}") from None
    if _local(root.tag) != "parking":
        raise ZoneError(f"{p}: root element is <{root.tag}>, a PKLot file starts with <parking>")
    spaces: list[tuple[str, ET.Element]] = []
    seen: set[str] = set()
    for i, sp in enumerate(_children(root, "space")):
        sid = sp.get("id")
        if not sid:
            raise ZoneError(f"{p}: <space> #{i} has no id attribute")
        if sid in seen:
            raise ZoneError(f"{p}: <space> #{i} (id {sid!r}): duplicate id")
        seen.add(sid)
        spaces.append((sid, sp))
    return p, root, spaces


def _number(el: ET.Element, attr: str, where: str) -> float:
    raw = el.get(attr)
    try:
        return float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ZoneError(f"{where}<{el.tag}> attribute {attr}={raw!r} is not a number") from None


def _pklot_ring(sp: ET.Element, where: str) -> list[list[float]]:
    contour = _children(sp, "contour")
    pts = (
        [[_number(q, "x", where), _number(q, "y", where)] for q in _children(contour[0], "point")]
        if contour
        else []
    )
    if len({tuple(q) for q in pts}) >= 3:
        return pts
    # No usable contour: the rotated rectangle describes the same bay (OpenCV RotatedRect).
    rects = _children(sp, "rotatedrect")
    if not rects:
        raise ZoneError(f"{where}has neither a <contour> of 3+ points nor a <rotatedRect>")
    parts = {_local(c.tag): c for c in rects[0]}
    if not {"center", "size", "angle"} <= parts.keys():
        raise ZoneError(f"{where}<rotatedRect> needs <center x y/>, <size w h/> and <angle d/>")
    center = (_number(parts["center"], "x", where), _number(parts["center"], "y", where))
    size = (_number(parts["size"], "w", where), _number(parts["size"], "h", where))
    angle = _number(parts["angle"], "d", where)
    if size[0] <= 0 or size[1] <= 0:
        raise ZoneError(f"{where}<rotatedRect> has an empty size {size}")
    box = cv2.boxPoints((center, size, angle))
    return [[float(x), float(y)] for x, y in box]


def import_pklot(xml_path: str | Path) -> FeatureCollection:
    """PKLot ``<parking>`` XML -> pixel ``space`` polygons, ids as in the XML.

    The contour is used when it has 3+ points (tag ``point`` in any case); otherwise the
    rotated rectangle.
    """
    p, root, spaces = _parse_pklot(xml_path)
    features = [
        _feature(sid, _pklot_ring(sp, f"{p}: <space> #{i} (id {sid!r}): "), "pklot")
        for i, (sid, sp) in enumerate(spaces)
    ]
    if not features:
        raise ZoneError(f"{p}: no <space> elements; nothing to import")
    return _collection(features, {"format": "pklot", "file": p.name, "parking": root.get("id")})


def read_pklot_labels(xml_path: str | Path) -> dict[str, bool | None]:
    """Space id -> occupied; None where the XML has no ``occupied`` attribute (unknown, not empty)."""
    p, _, spaces = _parse_pklot(xml_path)
    labels: dict[str, bool | None] = {}
    for i, (sid, sp) in enumerate(spaces):
        raw = sp.get("occupied")
        if raw is None:
            labels[sid] = None
        elif raw.strip() in ("0", "1"):
            labels[sid] = raw.strip() == "1"
        else:
            raise ZoneError(f"{p}: <space> #{i} (id {sid!r}): occupied={raw!r}, expected 0 or 1")
    return labels


def import_ultralytics(json_path: str | Path, scale: tuple[float, float] = (1, 1)) -> FeatureCollection:
    """Ultralytics parking-management ``bounding_boxes.json`` -> pixel ``space`` polygons.

    That tool stores polygons in the pixels of the frame it was drawn on; ``scale`` (sx, sy)
    carries them to another resolution of the same view. Ids are "1".."n" in file order.
    """
    p = Path(json_path)
    if not p.exists() or p.is_dir():
        raise ZoneError(f"Ultralytics file {p} not found")
    sx, sy = (float(v) for v in scale)
    if not (np.isfinite([sx, sy]).all() and sx > 0 and sy > 0):
        raise ZoneError(f"scale {scale} must be two positive numbers")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ZoneError(f"{p}: not valid JSON: {exc}") from None
    if not isinstance(data, list):
        raise ZoneError(f'{p}: expected a list of {{"points": [[x, y], ...]}} objects')
    features = []
    for i, item in enumerate(data):
        zid = str(i + 1)
        where = f"{p}: item #{i} (id {zid!r}): "
        pts = item.get("points") if isinstance(item, dict) else None
        try:
            arr = np.asarray(pts, dtype=np.float64)
        except (TypeError, ValueError):
            raise ZoneError(f'{where}"points" is not a list of [x, y] numbers') from None
        if arr.ndim != 2 or arr.shape[1] != 2 or len(arr) < 3 or not np.isfinite(arr).all():
            raise ZoneError(f'{where}"points" must be 3 or more [x, y] pairs')
        arr = arr * np.array([sx, sy])
        features.append(_feature(zid, arr.tolist(), "ultralytics"))
    if not features:
        raise ZoneError(f"{p}: the list is empty; nothing to import")
    return _collection(features, {"format": "ultralytics", "file": p.name, "scale": [sx, sy]})


_LABELME_LINES = frozenset({"line", "linestrip"})


def import_labelme(json_path: str | Path) -> FeatureCollection:
    """labelme annotation JSON -> pixel ``line`` zones, one per ``line``/``linestrip`` shape.

    Counting setups are often drawn in labelme on a frame of the camera. The zone id and name
    are the shape's label (``label-2``, ``label-3``... when a label repeats); the directions are
    then ``left``/``right`` as seen from the first point to the last (add
    ``properties.directions`` to name them). Other shapes (polygons, points) are skipped and
    listed in ``cityeye:source.skipped``, so nothing disappears silently.
    """
    p = Path(json_path)
    if not p.exists() or p.is_dir():
        raise ZoneError(f"labelme file {p} not found")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ZoneError(f"{p}: not valid JSON: {exc}") from None
    shapes = data.get("shapes") if isinstance(data, dict) else None
    if not isinstance(shapes, list):
        raise ZoneError(f'{p}: not a labelme file (expected an object with "shapes": [...])')
    features: list[dict[str, Any]] = []
    skipped: list[str] = []
    used: dict[str, int] = {}
    for i, shape in enumerate(shapes):
        if not isinstance(shape, dict):
            raise ZoneError(f"{p}: shape #{i} is not an object")
        kind = shape.get("shape_type", "polygon")
        label = str(shape.get("label") or "").strip()
        where = f"{p}: shape #{i} ({label or 'no label'!r}): "
        if kind not in _LABELME_LINES:
            skipped.append(f"#{i} {label or '?'} ({kind})")
            continue
        if not label:
            raise ZoneError(f"{where}has no label; label every counting line (it becomes the zone id)")
        try:
            arr = np.asarray(shape.get("points"), dtype=np.float64)
        except (TypeError, ValueError):
            raise ZoneError(f'{where}"points" is not a list of [x, y] numbers') from None
        if arr.ndim != 2 or arr.shape[1] != 2 or not np.isfinite(arr).all():
            raise ZoneError(f'{where}"points" must be [x, y] pairs')
        if len(np.unique(arr, axis=0)) < 2:
            raise ZoneError(f"{where}a line needs 2 distinct points")
        used[label] = used.get(label, 0) + 1
        zid = label if used[label] == 1 else f"{label}-{used[label]}"
        features.append({
            "type": "Feature",
            "id": zid,
            "properties": {"kind": "line", "name": label, "source": "labelme"},
            "geometry": {"type": "LineString", "coordinates": arr.tolist()},
        })  # fmt: skip
    if not features:
        raise ZoneError(
            f'{p}: no line shapes (shape_type "line" or "linestrip"); draw counting lines with '
            "labelme's Create Line tool"
        )
    source = {
        "format": "labelme",
        "file": p.name,
        "image": data.get("imagePath"),
        "image_size": [data.get("imageWidth"), data.get("imageHeight")],
        "skipped": skipped,
    }
    return _collection(features, source)
