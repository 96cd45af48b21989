"""Per-space occupancy accuracy of detector + occupancy rule on the shared PKLot frames.

For every folder of ``../shared/data/parking`` and every frame in it, the zones come from that
frame's own XML (PKLot stores geometry per frame), the detector runs once, each rule judges
the detections, and the result is compared with the XML's labels; spaces without a label are
skipped. Prints one JSON document on stdout; progress goes to stderr.

    python benchmarks/parking_accuracy.py
    python benchmarks/parking_accuracy.py --rule bottom --rule point:0.3 --rule overlap:0.3 \
        --confidence 0.25 0.1

Several ``--confidence`` values cost one detector run: the detector runs at the lowest value
and higher cuts are applied afterwards, which gives the same boxes as running at that cut
(greedy NMS only lets a box be suppressed by higher-scoring ones).
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
from tqdm import tqdm

from cityeye.vision.detections import Detections
from cityeye.vision.detector import Detector
from cityeye.zones.importers import import_pklot, read_pklot_labels
from cityeye.zones.model import Zone, parse_zones
from cityeye.zones.occupancy import DEFAULT_RULE, OccupancyJudge, OccupancyRule

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass
class Tally:
    frames: int = 0
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    ms: list[float] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        self.frames += other.frames
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        self.tn += other.tn
        self.ms += other.ms

    def as_dict(self) -> dict[str, Any]:
        scored = self.tp + self.fp + self.fn + self.tn
        return {
            "frames": self.frames,
            "spaces_scored": scored,
            "accuracy": round((self.tp + self.tn) / scored, 4) if scored else None,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "tn": self.tn,
            "ms_per_frame": round(statistics.median(self.ms), 2) if self.ms else None,
        }


@dataclass(frozen=True)
class Frame:
    folder: str
    image: Path
    zones: list[Zone]
    labels: dict[str, bool | None]


def frames(root: Path) -> list[Frame]:
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for image in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            xml = image.with_suffix(".xml")
            if not xml.exists():
                print(f"skipping {image}: no {xml.name} beside it", file=sys.stderr)
                continue
            zones = parse_zones(import_pklot(xml), source=str(xml))
            out.append(Frame(folder.name, image, zones, read_pklot_labels(xml)))
    return out


def score(fr: Frame, states: list[Any], t: Tally) -> None:
    for s in states:
        label = fr.labels.get(s.id)
        if label is None:
            continue  # unknown in the XML: neither right nor wrong
        if s.occupied:
            t.tp += label
            t.fp += not label
        else:
            t.fn += label
            t.tn += not label


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--data", type=Path, default=SHARED / "data" / "parking", help="folder of PKLot folders")
    ap.add_argument("--model", help="ONNX detector (default: the shipped model)")
    ap.add_argument("--imgsz", type=int)
    ap.add_argument("--confidence", type=float, nargs="+", default=[0.25], help="detection cut(s) to compare")
    ap.add_argument("--rule", action="append", type=OccupancyRule.parse,
                    help=f"rule(s) to compare: bottom, point[:LIFT], overlap[:MIN], overlap-box[:MIN] "
                         f"(repeat; default {DEFAULT_RULE})")
    args = ap.parse_args(argv)
    rules: list[OccupancyRule] = args.rule or [DEFAULT_RULE]
    cuts = sorted(set(args.confidence))
    if not args.data.is_dir():
        print(f"no data folder {args.data}", file=sys.stderr)
        return 2

    detector = Detector(args.model, imgsz=args.imgsz, confidence=cuts[0])
    todo = frames(args.data)
    detector.detect(cv2.imread(str(todo[0].image)))  # warm-up: the first run allocates
    tallies: dict[tuple[float, str, str], Tally] = {}
    for fr in tqdm(todo, desc="frames", unit="frame", file=sys.stderr, disable=None):
        image = cv2.imread(str(fr.image), cv2.IMREAD_COLOR)
        if image is None:
            raise SystemExit(f"{fr.image}: cannot be read as an image")
        t0 = time.perf_counter()
        all_dets = detector.detect(np.asarray(image, dtype=np.uint8))
        det_ms = (time.perf_counter() - t0) * 1000
        for cut in cuts:
            dets: Detections = all_dets[all_dets.confidence >= cut]
            for rule in rules:
                t1 = time.perf_counter()
                states = OccupancyJudge(fr.zones, rule)(dets)
                judge_ms = (time.perf_counter() - t1) * 1000
                tally = tallies.setdefault((cut, str(rule), fr.folder), Tally())
                tally.frames += 1
                tally.ms.append(det_ms + judge_ms)
                score(fr, states, tally)

    results = []
    folders = sorted({fr.folder for fr in todo})
    for cut in cuts:
        for rule in rules:
            per = {f: tallies[(cut, str(rule), f)] for f in folders}
            overall = Tally()
            for t in per.values():
                overall.add(t)
            accs = [per[f].as_dict()["accuracy"] for f in folders]
            results.append({
                "rule": str(rule),
                "confidence": cut,
                "folders": {f: t.as_dict() for f, t in per.items()},
                "overall": {**overall.as_dict(), "mean_folder_accuracy": round(float(np.mean(accs)), 4)},
            })
    print(json.dumps({"model": str(detector.path), "imgsz": list(detector.input_size), "results": results},
                     indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
