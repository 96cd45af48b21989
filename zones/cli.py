"""`cityeye occupancy`, `cityeye zones import-pklot|import-ultralytics|import-labelme|georef|project`,
`cityeye calibrate`.

JSON goes to stdout (one object per line for ``occupancy --json``), progress to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from cityeye.events.schema import AreaState, SpaceState
from cityeye.zones.calibration import Calibration, CalibrationError, fit, haversine_m, load_calibration
from cityeye.zones.config import ParkingConfig
from cityeye.zones.model import ZoneError, load_zones, parse_zones, zones_to_geojson
from cityeye.zones.occupancy import DEFAULT_RULE, OccupancyJudge, OccupancyRule

# Digits kept when writing lon/lat: 1e-9 degree is ~0.1 mm, far below any survey.
_LONLAT_DIGITS = 9


def _usage_error(msg: str) -> Exception:
    from cityeye.cli import UsageError

    return UsageError(msg)


def _rule(text: str) -> OccupancyRule:
    try:
        return OccupancyRule.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def zone_json(state: SpaceState | AreaState) -> dict[str, Any]:
    """The `occupancy` output contract for one zone: exactly these keys per kind."""
    if isinstance(state, SpaceState):
        return {"id": state.id, "kind": "space", "occupied": state.occupied, "score": round(state.score, 4)}
    return {
        "id": state.id,
        "kind": "area",
        "vehicles": state.vehicles,
        "capacity": state.capacity,
        "free": state.free,
    }


def run_occupancy(args: argparse.Namespace) -> int:
    import cv2
    from tqdm import tqdm

    from cityeye.vision.detector import Detector
    from cityeye.zones.tiling import ZoneDetector

    missing = [p for p in args.images if not Path(p).is_file()]
    if missing:
        raise _usage_error(f"image file(s) not found: {', '.join(missing)}")
    calibration = load_calibration(args.calibration) if args.calibration else None
    zones = load_zones(args.zones, calibration)
    if not any(z.kind != "line" for z in zones):
        raise _usage_error(f"{args.zones}: has no space or area zones to judge (only lines)")
    detector = Detector(args.model, imgsz=args.imgsz, confidence=args.confidence)
    # The same pass and rule as the edge's parking analyser, without its memory across frames.
    tiler = ZoneDetector(
        detector, zones, args.tiles, confidence=args.confidence, exposure_target=args.exposure_target or None
    )
    judge = OccupancyJudge(zones, args.rule, args.motorcycles_per_car)
    for path in tqdm(args.images, desc="occupancy", unit="img", file=sys.stderr, disable=None):
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            raise _usage_error(f"{path}: cannot be read as an image (a .jpg/.png file is expected)")
        states = judge(tiler(np.asarray(image, dtype=np.uint8)))
        if args.json:
            print(json.dumps({"image": path, "zones": [zone_json(s) for s in states]}), flush=True)
        else:
            free = sum(s.free for s in states)
            total = sum(s.total for s in states)
            print(f"{path}: {free} of {total} free", flush=True)
    return 0


def _write(doc: dict[str, Any], out: str | None, count: int) -> None:
    text = json.dumps(doc, indent=1)
    if out is None or out == "-":
        print(text)
        return
    Path(out).write_text(text + "\n", encoding="utf-8")
    print(json.dumps({"out": out, "zones": count}))


def _checked(doc: dict[str, Any], source: str) -> int:
    """Read an imported collection back as cityeye zones, so a bad import fails here and not
    on the edge box; returns the zone count."""
    return len(parse_zones(doc, source=source))


def run_import_pklot(args: argparse.Namespace) -> int:
    from cityeye.zones.importers import import_pklot

    doc = import_pklot(args.xml)
    _write(doc, args.out, _checked(doc, args.xml))
    return 0


def run_import_ultralytics(args: argparse.Namespace) -> int:
    from cityeye.zones.importers import import_ultralytics

    doc = import_ultralytics(args.json_file, scale=(args.scale[0], args.scale[1]))
    _write(doc, args.out, _checked(doc, args.json_file))
    return 0


def run_import_labelme(args: argparse.Namespace) -> int:
    from cityeye.zones.importers import import_labelme

    doc = import_labelme(args.json_file)
    _write(doc, args.out, _checked(doc, args.json_file))
    return 0


def _round_lonlat(doc: dict[str, Any]) -> dict[str, Any]:
    for feat in doc["features"]:
        geom = feat["geometry"]
        rings = geom["coordinates"] if geom["type"] == "Polygon" else [geom["coordinates"]]
        for ring in rings:
            ring[:] = [[round(v, _LONLAT_DIGITS) for v in pt] for pt in ring]
    return doc


def run_georef(args: argparse.Namespace) -> int:
    calibration = load_calibration(args.calibration)
    try:
        data = json.loads(Path(args.zones).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _usage_error(f"zones file {args.zones} not found") from None
    except json.JSONDecodeError as exc:
        raise ZoneError(f"{args.zones}: not valid JSON: {exc}") from None
    if isinstance(data, dict) and data.get("cityeye:coordinates") == "wgs84":
        raise _usage_error(f"{args.zones} is already in WGS84 lon/lat; georef converts pixel zones")
    zones = parse_zones(data, source=args.zones, calibration=calibration, coordinates="pixel")
    doc = _round_lonlat(zones_to_geojson(zones, coordinates="wgs84"))
    _write(doc, args.out, len(zones))
    return 0


def calibration_report(cal: Calibration) -> dict[str, Any]:
    errors = cal.reprojection_errors_m()
    return {
        "calibration": cal.source,
        "pairs": len(cal.pixels),
        "origin_lonlat": list(cal.origin),
        "homography": cal.homography_lonlat.tolist(),
        "homography_local_m": cal.homography_m.tolist(),
        "errors_m": [
            {"pixel": px.tolist(), "lonlat": ll.tolist(), "error_m": float(e)}
            for px, ll, e in zip(cal.pixels, cal.lonlats, errors, strict=True)
        ],
        "rms_m": cal.reprojection_error_m(),
        "max_m": float(errors.max()),
        **_holdout(cal),
    }


def _holdout(cal: Calibration) -> dict[str, Any]:
    """Leave-one-out figures. With 4 pairs a homography fits exactly (0 m) whatever their quality;
    from 5 pairs on, ``holdout_errors_m[i]`` is pair i's error under the fit of the others, and
    from 6 pairs on, the ``suspect_pair`` is the one without which the others agree (a fit of
    the rest to under half the overall RMS), the pair to re-survey."""
    n = len(cal.pixels)
    out: dict[str, Any] = {"holdout_errors_m": None, "holdout_max_m": None, "suspect_pair": None}
    if n < 5:
        return out
    errs, rest = [], []
    for i in range(n):
        keep = [j for j in range(n) if j != i]
        try:
            sub = fit(np.stack([cal.pixels[keep], cal.lonlats[keep]], axis=1))
        except CalibrationError:
            errs.append(float("inf"))  # the others alone are degenerate: this pair is essential
            rest.append(float("inf"))
            continue
        errs.append(float(haversine_m(sub.pixel_to_lonlat(cal.pixels[i : i + 1]), cal.lonlats[i : i + 1])[0]))
        rest.append(sub.reprojection_error_m())
    out["holdout_errors_m"], out["holdout_max_m"] = errs, max(errs)
    best = int(np.argmin(rest))
    if n >= 6 and rest[best] < 0.5 * cal.reprojection_error_m():
        out["suspect_pair"] = best
    return out


def run_calibrate(args: argparse.Namespace) -> int:
    report = calibration_report(load_calibration(args.calibration))
    print(json.dumps(report, indent=1))
    if args.max_error_m is not None:
        fitted = [e["error_m"] for e in report["errors_m"]]
        worst = max(fitted + (report["holdout_errors_m"] or []))
        if worst > args.max_error_m:
            which = report["suspect_pair"]
            if which is None:
                which = int(np.argmax(fitted))
            px = report["errors_m"][which]["pixel"]
            raise _usage_error(
                f"{args.calibration}: pairs disagree by up to {worst:.2f} m (limit {args.max_error_m} m); "
                f"check pair {which} (pixel {px}) first: its lon/lat and pixel, or survey more points"
            )
    return 0


def run_project(args: argparse.Namespace) -> int:
    import cv2

    from cityeye.zones.project import draw_zones

    calibration = load_calibration(args.calibration) if args.calibration else None
    zones = load_zones(args.zones, calibration)
    image = cv2.imread(args.image, cv2.IMREAD_COLOR)
    if image is None:
        raise _usage_error(f"{args.image}: cannot be read as an image (a .jpg/.png camera frame is expected)")
    proj = draw_zones(np.asarray(image, dtype=np.uint8), zones, calibration)
    if not cv2.imwrite(args.out, proj.image):
        raise _usage_error(f"{args.out}: cannot write the image (give a .png or .jpg in a writable folder)")
    print(
        json.dumps(
            {
                "out": args.out,
                "zones": len(zones),
                "outside": proj.outside,
                "partial": proj.partial,
                "calibration_rms_m": None if calibration is None else calibration.reprojection_error_m(),
            }
        )
    )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("occupancy", help="judge parking zones on images (detector + occupancy rule)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="frames to judge, each on its own")
    p.add_argument("--zones", required=True, help="GeoJSON FeatureCollection of the camera's zones")
    p.add_argument("--calibration", help="calibration JSON (needed for WGS84 zones)")
    p.add_argument("--model", help="ONNX detector (default: $CITYEYE_MODEL, else the shipped model)")
    p.add_argument("--imgsz", type=int, help="detector input size (default: the model's own)")
    parking = ParkingConfig()
    p.add_argument(
        "--confidence",
        type=float,
        default=parking.confidence,
        help=f"detection cut of the tiled pass (default {parking.confidence}, as on the edge)",
    )
    p.add_argument(
        "--tiles",
        type=float,
        nargs="*",
        default=parking.tiles,
        metavar="BAY_PX",
        help="tiling passes as bay sizes in model pixels (default "
        f"{' '.join(f'{t:g}' for t in parking.tiles)}; none = one whole-frame pass)",
    )
    p.add_argument(
        "--rule",
        type=_rule,
        default=DEFAULT_RULE,
        help="occupancy rule: footprint[:LIFT], bottom, point[:LIFT], overlap[:MIN], "
        f"overlap-box[:MIN] (default {DEFAULT_RULE})",
    )
    p.add_argument(
        "--exposure-target",
        type=float,
        default=parking.exposure_target,
        help="brighten tiles darker than this median grey level "
        f"(default {parking.exposure_target}; 0 = never)",
    )
    p.add_argument(
        "--motorcycles-per-car",
        type=float,
        default=parking.motorcycles_per_car,
        help=f"two-wheelers per car place in areas (default {parking.motorcycles_per_car})",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per image on stdout")
    p.set_defaults(func=run_occupancy)

    z = sub.add_parser("zones", help="make zone files: import from PKLot/Ultralytics, geo-reference")
    zsub = z.add_subparsers(dest="zones_command", metavar="ZONES_COMMAND", required=True)
    ip = zsub.add_parser("import-pklot", help="PKLot XML -> pixel space polygons")
    ip.add_argument("xml", metavar="FRAME.xml")
    ip.add_argument("--out", help="output GeoJSON (default: stdout)")
    ip.set_defaults(func=run_import_pklot)
    iu = zsub.add_parser("import-ultralytics", help="Ultralytics bounding_boxes.json -> pixel space polygons")
    iu.add_argument("json_file", metavar="bounding_boxes.json")
    iu.add_argument("--out", help="output GeoJSON (default: stdout)")
    iu.add_argument(
        "--scale",
        type=float,
        nargs=2,
        default=(1.0, 1.0),
        metavar=("SX", "SY"),
        help="multiply x and y, for a frame size other than the one the boxes were drawn on",
    )
    iu.set_defaults(func=run_import_ultralytics)
    il = zsub.add_parser("import-labelme", help="labelme JSON line shapes -> pixel counting lines")
    il.add_argument("json_file", metavar="FILE.json")
    il.add_argument("--out", help="output GeoJSON (default: stdout)")
    il.set_defaults(func=run_import_labelme)
    g = zsub.add_parser("georef", help="pixel zones -> WGS84 zones through a calibration")
    g.add_argument("zones", metavar="ZONES.geojson")
    g.add_argument("--calibration", required=True, help="calibration JSON of the camera")
    g.add_argument("--out", help="output GeoJSON (default: stdout)")
    g.set_defaults(func=run_georef)

    pr = zsub.add_parser("project", help="draw the zones on a camera frame (PNG) to check their alignment")
    pr.add_argument("zones", metavar="ZONES.geojson")
    pr.add_argument("--image", required=True, help="a frame of the camera")
    pr.add_argument("--calibration", help="calibration JSON of the camera (needed for WGS84 zones)")
    pr.add_argument("--out", required=True, help="output image (.png)")
    pr.set_defaults(func=run_project)

    c = sub.add_parser("calibrate", help="fit a calibration file; print the homography and its errors")
    c.add_argument("calibration", metavar="CAL.json")
    c.add_argument(
        "--max-error-m",
        type=float,
        help="exit 2 when a pair is off by more than this, fitted or left out (metres)",
    )
    c.set_defaults(func=run_calibrate)
