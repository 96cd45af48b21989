"""Traffic counting end to end: decode + detect + track + count, one stream, this machine. Prints JSON.

    python benchmarks/traffic.py [--repeats 3] [--strides 1 2 3] [--video V]

For each detector input (640x640, and 384x640 made from the same weights with
`cityeye.models.graph.reshape_model`) and each stride (analyse every N-th frame, decode all):
analysed frames per second and video frames per second (the real-time figure: the stream's
rate must not exceed it), the time split per stage, and the counts against the hand count of
tests/data/traffic/ua_detrac_hand_count.json (per line, direction and class, and all classes
together). Side by side in the same run: the bare `session.run` ceiling of each input size, so a
loaded machine shows up in both columns. Medians over --repeats runs; other processes share the
2 cores, so say so when quoting.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DATA = REPO / "tests" / "data" / "traffic"
MODEL = SHARED / "models" / "yolov8n_dq.onnx"


def hand_counts() -> tuple[Counter[tuple[str, str, str]], Counter[tuple[str, str]]]:
    truth = json.loads((DATA / "ua_detrac_hand_count.json").read_text())
    per_class = Counter((c["line"], c["direction"], c["class"]) for c in truth["crossings"])
    totals = Counter((c["line"], c["direction"]) for c in truth["crossings"])
    return per_class, totals


def ceiling_ms(detector: Any, repeats: int = 20) -> float:
    h, w = detector.input_size
    x = np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)
    for _ in range(3):
        detector.infer(x)
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        detector.infer(x)
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1000


def main() -> int:
    from cityeye.vision.detector import Detector
    from cityeye.zones.count_cli import count_video
    from cityeye.zones.model import load_zones

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--video", default=str(SHARED / "data/traffic/evadb_ua_detrac_intersection/ua_detrac.mp4")
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--strides", type=int, nargs="+", default=[1, 2, 3])
    args = ap.parse_args()
    if not Path(args.video).is_file() or not MODEL.is_file():
        print(json.dumps({"skipped": f"needs {args.video} and {MODEL} (../shared)"}))
        return 0
    from cityeye.models.graph import reshape_model

    zones = load_zones(DATA / "ua_detrac_lines.geojson")
    truth_cls, truth_tot = hand_counts()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        rect = Path(tmp) / "yolov8n_384x640.onnx"
        reshape_model(MODEL, rect, imgsz=(384, 640), dynamic_batch=False)
        for name, path in (("640x640", MODEL), ("384x640", rect)):
            detector = Detector(path, confidence=0.1)
            ceiling = ceiling_ms(detector)
            for stride in args.strides:
                runs = []
                for _ in range(args.repeats):
                    r = count_video(args.video, zones, detector, stride=stride)
                    runs.append(r)
                med = sorted(runs, key=lambda r: r.wall_s)[len(runs) // 2]
                found_cls = Counter((c.zone_id, c.direction, c.vehicle) for c in med.crossings)
                found_tot = Counter((c.zone_id, c.direction) for c in med.crossings)
                keys = sorted(set(truth_cls) | set(found_cls))
                results.append(
                    {
                        "input": name,
                        "stride": stride,
                        "frames": med.frames,
                        "analysed": med.frames_analysed,
                        "fps_analysed": round(statistics.median(r.fps_analysed for r in runs), 2),
                        "fps_video": round(statistics.median(r.frames / r.wall_s for r in runs), 2),
                        "ms_per_analysed_frame": {
                            k: round(v / med.frames_analysed * 1000, 2) for k, v in med.stage_s.items()
                        },
                        "session_run_ceiling_ms": round(ceiling, 2),
                        "counts_by_class": [
                            {
                                "line": k[0],
                                "direction": k[1],
                                "class": k[2],
                                "hand": truth_cls[k],
                                "tool": found_cls[k],
                            }
                            for k in keys
                        ],
                        "counts_all_classes": [
                            {"line": k[0], "direction": k[1], "hand": truth_tot[k], "tool": found_tot[k]}
                            for k in sorted(set(truth_tot) | set(found_tot))
                        ],
                    }
                )
                print(f"{name} stride {stride}: {results[-1]['fps_video']} video fps", file=sys.stderr)
    print(json.dumps({"video": args.video, "repeats": args.repeats, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
