"""Per-space occupancy accuracy on PKLot-format folders, beside Ultralytics' centre rule.

    python benchmarks/parking_accuracy.py [DATA_DIR]          # default ../shared/data/parking
    python benchmarks/parking_accuracy.py DATA_DIR --rule footprint --rule point:0.3 \
        --confidence 0.1 0.05 --tiles 64 80

DATA_DIR holds one folder per camera view (or is itself one), each with frames (.jpg/.png) and
a PKLot XML beside each frame. The zones come from each frame's own XML (PKLot stores geometry
per frame); spaces without an ``occupied`` label are skipped. For every frame:

- **cityeye**: the zone-aware tiled detector (``zones/tiling.py``, the ``tiles`` bay sizes) at
  the lowest ``--confidence``, then each rule at each cut (NMS is greedy by score, so a higher
  cut applied afterwards gives the same boxes as running at it). This is what ``cityeye
  occupancy`` and the edge's parking analyser do per frame.
- **ultralytics_centre** (unless ``--no-baseline``): Ultralytics' ``ParkingManagement`` rule on
  the same model: one whole-frame pass at the model's input size, confidence 0.25, every class
  (its default), a space is occupied when a box centre (integer pixel) lies inside or on it.

Prints one JSON document: per configuration and folder accuracy, precision, recall, F1, the
confusion counts, the median time per frame (detection + rule, milliseconds) and every wrong
space (frame, id, FP/FN), so label quirks stay visible. Beside the time, the *ceiling*: the
detector runs per frame times one bare ``session.run`` on a ready tensor, timed in the same
process (median of runs spread over the benchmark, so both see the same machine load).
Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from cityeye.vision.detections import Detections
from cityeye.vision.detector import Detector
from cityeye.zones.config import ParkingConfig
from cityeye.zones.importers import import_pklot, read_pklot_labels
from cityeye.zones.model import Zone, parse_zones
from cityeye.zones.occupancy import OccupancyJudge, OccupancyRule
from cityeye.zones.tiling import ZoneDetector

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
ULTRALYTICS_CONFIDENCE = 0.25


@dataclass
class Tally:
    frames: int = 0
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        self.frames += other.frames
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        self.tn += other.tn
        self.ms += other.ms
        self.errors += other.errors

    def as_dict(self, errors: bool = True) -> dict[str, Any]:
        scored = self.tp + self.fp + self.fn + self.tn
        precision = self.tp / (self.tp + self.fp) if self.tp + self.fp else None
        recall = self.tp / (self.tp + self.fn) if self.tp + self.fn else None
        f1 = (
            2 * precision * recall / (precision + recall)
            if precision is not None and recall is not None and precision + recall
            else None
        )
        out: dict[str, Any] = {
            "frames": self.frames,
            "spaces_scored": scored,
            "accuracy": round((self.tp + self.tn) / scored, 4) if scored else None,
            "precision": None if precision is None else round(precision, 4),
            "recall": None if recall is None else round(recall, 4),
            "f1": None if f1 is None else round(f1, 4),
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "tn": self.tn,
            "ms_per_frame": round(statistics.median(self.ms), 1) if self.ms else None,
        }
        if errors:
            out["wrong"] = self.errors
        return out


@dataclass(frozen=True)
class LabelledFrame:
    folder: str
    image: Path
    zones: list[Zone]
    labels: dict[str, bool | None]


def find_frames(root: Path) -> list[LabelledFrame]:
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if not folders:
        folders = [root]  # DATA_DIR is itself one view
    out = []
    for folder in folders:
        for image in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            xml = image.with_suffix(".xml")
            if not xml.exists():
                print(f"skipping {image}: no {xml.name} beside it", file=sys.stderr)
                continue
            zones = parse_zones(import_pklot(xml), source=str(xml))
            out.append(LabelledFrame(folder.name, image, zones, read_pklot_labels(xml)))
    return out


def score(fr: LabelledFrame, occupied: dict[str, bool], t: Tally) -> None:
    t.frames += 1
    for zid, occ in occupied.items():
        label = fr.labels.get(zid)
        if label is None:
            continue  # unknown in the XML: neither right nor wrong
        if occ:
            t.tp += label
            t.fp += not label
        else:
            t.fn += label
            t.tn += not label
        if occ != label:
            t.errors.append(f"{fr.image.stem}:{zid}:{'FP' if occ else 'FN'}")


def ultralytics_centre(zones: list[Zone], dets: Detections) -> dict[str, bool]:
    """Ultralytics ParkingManagement: an integer box centre inside or on the polygon, any class."""
    centres = [(int((b[0] + b[2]) / 2), int((b[1] + b[3]) / 2)) for b in dets.xyxy.tolist()]
    out = {}
    for z in zones:
        if z.kind != "space":
            continue
        contour = np.round(z.pixels).astype(np.int32).reshape(-1, 1, 2)
        out[z.id] = any(cv2.pointPolygonTest(contour, c, False) >= 0 for c in centres)
    return out


def summarise(name: str, per: dict[str, Tally], extra: dict[str, Any]) -> dict[str, Any]:
    overall = Tally()
    for t in per.values():
        overall.add(t)
    accs = [t.as_dict()["accuracy"] for t in per.values()]
    return {
        "method": name,
        **extra,
        "folders": {f: t.as_dict() for f, t in per.items()},
        "overall": {
            **overall.as_dict(errors=False),
            "mean_folder_accuracy": round(float(np.mean(accs)), 4) if accs else None,
        },
    }


def main(argv: list[str] | None = None) -> int:
    defaults = ParkingConfig()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument(
        "data",
        nargs="?",
        type=Path,
        default=SHARED / "data" / "parking",
        help="folder of PKLot folders (frames + XML), or one such folder",
    )
    ap.add_argument("--model", help="ONNX detector (default: the shipped model)")
    ap.add_argument(
        "--confidence",
        type=float,
        nargs="+",
        default=[defaults.confidence],
        help=f"detection cut(s) to compare (default {defaults.confidence})",
    )
    ap.add_argument(
        "--tiles",
        type=float,
        nargs="*",
        default=defaults.tiles,
        help=f"tiling passes as bay sizes in model pixels (default {defaults.tiles}; none = whole frame)",
    )
    ap.add_argument(
        "--exposure-target",
        type=float,
        default=defaults.exposure_target,
        help=f"brighten darker tiles to this median grey (default {defaults.exposure_target}; 0 = never)",
    )
    ap.add_argument(
        "--rule",
        action="append",
        type=OccupancyRule.parse,
        help=f"rule(s) to compare (repeat; default {defaults.rule})",
    )
    ap.add_argument("--no-baseline", action="store_true", help="skip Ultralytics' centre rule")
    args = ap.parse_args(argv)
    rules: list[OccupancyRule] = args.rule or [OccupancyRule.parse(defaults.rule)]
    cuts = sorted(set(args.confidence))
    if not args.data.is_dir():
        print(f"no data folder {args.data}", file=sys.stderr)
        return 2
    todo = find_frames(args.data)
    if not todo:
        print(f"{args.data}: no frames with a PKLot XML beside them", file=sys.stderr)
        return 2

    low = min(cuts[0], ULTRALYTICS_CONFIDENCE)
    detector = Detector(args.model, confidence=low)
    detector.detect(np.zeros((64, 64, 3), np.uint8))  # warm-up: the first run allocates
    tallies: dict[tuple[float, str, str], Tally] = {}
    base: dict[str, Tally] = {}
    runs: dict[str, list[int]] = {}
    bare: list[float] = []
    h, w = detector.input_size
    blank = np.zeros((1, 3, h, w), np.float32)
    for fr in tqdm(todo, desc="frames", unit="frame", file=sys.stderr, disable=None):
        raw = cv2.imread(str(fr.image), cv2.IMREAD_COLOR)
        if raw is None:
            raise SystemExit(f"{fr.image}: cannot be read as an image")
        image: npt.NDArray[np.uint8] = np.asarray(raw, dtype=np.uint8)
        tiler = ZoneDetector(
            detector, fr.zones, args.tiles, confidence=cuts[0], exposure_target=args.exposure_target or None
        )
        runs.setdefault(fr.folder, []).append(tiler.plan(image.shape[:2]).runs)
        for _ in range(2):
            t_bare = time.perf_counter()
            detector.infer(blank)
            bare.append((time.perf_counter() - t_bare) * 1000)
        t0 = time.perf_counter()
        all_dets = tiler(image)
        det_ms = (time.perf_counter() - t0) * 1000
        for cut in cuts:
            dets = all_dets[all_dets.confidence >= cut]
            for rule in rules:
                t1 = time.perf_counter()
                obs = OccupancyJudge(fr.zones, rule).observe(dets)
                judge_ms = (time.perf_counter() - t1) * 1000
                tally = tallies.setdefault((cut, str(rule), fr.folder), Tally())
                tally.ms.append(det_ms + judge_ms)
                spaces = [z for z in fr.zones if z.kind == "space"]
                occ = {z.id: bool(obs.occupied[k]) for k, z in enumerate(fr.zones) if z.kind == "space"}
                assert len(occ) == len(spaces)
                score(fr, occ, tally)
        if not args.no_baseline:
            t2 = time.perf_counter()
            whole = detector.detect(image)
            whole = whole[whole.confidence >= ULTRALYTICS_CONFIDENCE]
            occ = ultralytics_centre(fr.zones, whole)
            t = base.setdefault(fr.folder, Tally())
            t.ms.append((time.perf_counter() - t2) * 1000)
            score(fr, occ, t)

    folders = sorted({fr.folder for fr in todo})
    bare_ms = statistics.median(bare)
    speed = {
        f: {
            "runs_per_frame": statistics.median(runs[f]),
            "ceiling_ms_per_frame": round(statistics.median(runs[f]) * bare_ms, 1),
        }
        for f in folders
    }
    results = []
    for cut in cuts:
        for rule in rules:
            per = {f: tallies[(cut, str(rule), f)] for f in folders}
            results.append(
                summarise(
                    "cityeye",
                    per,
                    {
                        "rule": str(rule),
                        "confidence": cut,
                        "tiles": list(args.tiles),
                        "exposure_target": args.exposure_target or None,
                    },
                )
            )
    if base:
        results.append(
            summarise(
                "ultralytics_centre",
                {f: base[f] for f in folders},
                {
                    "rule": "box centre in polygon, any class",
                    "confidence": ULTRALYTICS_CONFIDENCE,
                    "tiles": [],
                },
            )
        )
    print(
        json.dumps(
            {
                "model": str(detector.path),
                "input": list(detector.input_size),
                "bare_session_run_ms": round(bare_ms, 1),
                "speed": speed,
                "results": results,
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
