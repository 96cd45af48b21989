"""Traffic counting end to end: decode + detect + track + count, one stream, this machine. Prints JSON.

    python benchmarks/traffic.py [--repeats 3] [--strides 1 2 3] [--models fp32_640x640 ...]

Detector variants, all derived here from the shipped float model with the project's own
functions (no downloads): ``fp32_640x640`` (the shipped file), ``fp32_384x640``
(`cityeye.models.graph.reshape_model`, what `model.imgsz: [384, 640]` builds) and
``int8s_384x640`` (that copy quantised statically by `cityeye.models.quantize.quantize_model`,
what `cityeye models quantize --mode static` does, calibrated on PKLot frames only: the DETRAC
footage is the test set and must not tune the model). For each variant and stride (analyse
every N-th frame, decode all) and both videos with hand counts (ua_detrac.mp4 and
car-detection.mp4): analysed and video frames per second (the real-time figure: a stream's rate
must not exceed it), the time split per stage, and the counts against the hand counts (per
line, direction and class, and all classes together), with ``counts_kept``: every line and
direction equal to the hand count (speed that loses vehicles is not a win). Side by side in the
same run: the bare `session.run` ceiling of each variant, and the load average, so a loaded
machine shows up. Medians over --repeats runs; other processes share the 2 cores.
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


# As tests/test_traffic_videos.py: a COCO model names cars seen from straight above this way.
TOP_DOWN = {"cell phone": "car", "suitcase": "car", "toilet": "car", "bus": "car", "truck": "car"}
VIDEOS = {
    "ua_detrac": ("evadb_ua_detrac_intersection/ua_detrac.mp4", "ua_detrac_hand_count.json", {}),
    "car_detection": ("intel_car_detection/car-detection.mp4", "car_detection_hand_count.json",
                      {"class_map": TOP_DOWN}),
}  # fmt: skip


def hand_counts(name: str) -> tuple[Counter[tuple[str, str, str]], Counter[tuple[str, str]]]:
    truth = json.loads((DATA / name).read_text())
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


def build_models(tmp: Path, wanted: list[str]) -> dict[str, Path]:
    from cityeye.models.graph import reshape_model
    from cityeye.models.quantize import quantize_model

    out: dict[str, Path] = {"fp32_640x640": MODEL}
    rect = tmp / "yolov8n_dq_384x640.onnx"
    if any(w.endswith("384x640") for w in wanted):
        reshape_model(MODEL, rect, imgsz=(384, 640), dynamic_batch=False)
        out["fp32_384x640"] = rect
    if "int8s_384x640" in wanted:
        q = tmp / "yolov8n_dq_384x640_int8-static.onnx"
        quantize_model(rect, q, mode="static", frames=32, calibration=[SHARED / "data" / "parking"])
        out["int8s_384x640"] = q
    return {k: v for k, v in out.items() if k in wanted}


def signature(crossings: list[Any]) -> str:
    return repr(sorted((c.zone_id, c.direction, c.vehicle) for c in crossings))


def compare(truth_file: str, crossings: list[Any], stride: int) -> dict[str, Any]:
    """The tests' criterion (tests/test_traffic_videos.py): every hand-counted crossing found on its
    line and direction within the hand count's frame tolerance (plus stride - 1: a crossing is seen
    on the next analysed frame), and nothing else counted beyond the crossings the hand count marks
    undecidable. Per class only for the record: class errors are the detector's labels."""
    truth = json.loads((DATA / truth_file).read_text())
    truth_cls, truth_tot = hand_counts(truth_file)
    tol = int(truth["frame_tolerance"]) + stride - 1
    left = [(c.zone_id, c.direction, c.frame) for c in crossings]
    missed = []
    for h in truth["crossings"]:
        hit = next(
            (k for k, (zl, zd, zf) in enumerate(left)
             if (zl, zd) == (h["line"], h["direction"]) and abs(zf - h["frame"]) <= tol), None,
        )  # fmt: skip
        if hit is None:
            missed.append({"line": h["line"], "direction": h["direction"], "frame": h["frame"]})
        else:
            del left[hit]
    undecidable = Counter((u["line"], u["direction"]) for u in truth.get("uncertain", []))
    extra = Counter((zl, zd) for zl, zd, _ in left)
    beyond = {f"{k[0]} / {k[1]}": n - undecidable[k] for k, n in extra.items() if n > undecidable[k]}
    found_cls = Counter((c.zone_id, c.direction, c.vehicle) for c in crossings)
    found_tot = Counter((c.zone_id, c.direction) for c in crossings)
    return {
        "counts_kept": not missed and not beyond,
        "missed": missed,
        "extra_beyond_undecidable": beyond,
        "counts_all_classes": [
            {"line": k[0], "direction": k[1], "hand": truth_tot[k], "undecidable": undecidable[k],
             "tool": found_tot[k]}
            for k in sorted(set(truth_tot) | set(found_tot))
        ],
        "counts_by_class": [
            {"line": k[0], "direction": k[1], "class": k[2], "hand": truth_cls[k], "tool": found_cls[k]}
            for k in sorted(set(truth_cls) | set(found_cls))
        ],
    }  # fmt: skip


def main() -> int:
    import os

    from cityeye.vision.detector import Detector
    from cityeye.zones.config import TrafficConfig
    from cityeye.zones.count_cli import count_video
    from cityeye.zones.model import load_zones

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--strides", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument(
        "--models", nargs="+", default=["fp32_640x640", "fp32_384x640", "int8s_384x640"],
        choices=["fp32_640x640", "fp32_384x640", "int8s_384x640"],
    )  # fmt: skip
    ap.add_argument("--videos", nargs="+", default=list(VIDEOS), choices=list(VIDEOS))
    args = ap.parse_args()
    paths = {v: SHARED / "data" / "traffic" / VIDEOS[v][0] for v in args.videos}
    missing = [str(p) for p in [MODEL, *paths.values()] if not p.is_file()]
    if missing:
        print(json.dumps({"skipped": f"needs {', '.join(missing)} (../shared)"}))
        return 0
    results: list[dict[str, Any]] = []
    loads: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        models = build_models(Path(tmp), args.models)
        detectors = {name: Detector(models[name], confidence=0.1) for name in args.models}
        ceilings = {name: ceiling_ms(d) for name, d in detectors.items()}
        configs = [(m, s, v) for m in args.models for s in args.strides for v in args.videos]
        runs: dict[tuple[str, int, str], list[Any]] = {c: [] for c in configs}
        # Round-robin over the configurations, one repeat at a time, so that a change of load by
        # other processes falls on every configuration alike instead of on whichever ran then.
        for rep in range(args.repeats):
            for name, stride, video in configs:
                zones = load_zones(DATA / json.loads((DATA / VIDEOS[video][1]).read_text())["zones"])
                loads.append(os.getloadavg()[0])
                cfg = TrafficConfig(**VIDEOS[video][2])
                runs[(name, stride, video)].append(
                    count_video(paths[video], zones, detectors[name], cfg, stride=stride)
                )
                r = runs[(name, stride, video)][-1]
                fps = r.frames / r.wall_s
                print(f"repeat {rep + 1}: {name} stride {stride} {video}: {fps:.1f} fps", file=sys.stderr)
    for (name, stride, video), rs in runs.items():
        med = sorted(rs, key=lambda r: r.wall_s)[len(rs) // 2]
        results.append(
            {
                "model": name,
                "stride": stride,
                "video": video,
                "frames": med.frames,
                "analysed": med.frames_analysed,
                "fps_analysed": round(statistics.median(r.fps_analysed for r in rs), 2),
                "fps_video": round(statistics.median(r.frames / r.wall_s for r in rs), 2),
                "fps_video_runs": [round(r.frames / r.wall_s, 2) for r in rs],
                "ms_per_analysed_frame": {
                    k: round(v / med.frames_analysed * 1000, 2) for k, v in med.stage_s.items()
                },
                "session_run_ceiling_ms": round(ceilings[name], 2),
                "same_counts_every_repeat": len({signature(r.crossings) for r in rs}) == 1,
                **compare(VIDEOS[video][1], med.crossings, stride),
            }
        )
    summary = [
        {
            "model": m,
            "stride": s,
            "fps_video_median": round(
                statistics.median(r["fps_video"] for r in results if (r["model"], r["stride"]) == (m, s)), 2
            ),
            "counts_kept_on_both_videos": all(
                r["counts_kept"] for r in results if (r["model"], r["stride"]) == (m, s)
            ),
        }
        for m in args.models
        for s in args.strides
    ]
    doc = {
        "machine": {"cpu_count": os.cpu_count(), "load_avg_1m_median": round(statistics.median(loads), 2),
                    "load_avg_1m_max": round(max(loads), 2)},
        "repeats": args.repeats,
        "summary": summary,
        "results": results,
    }  # fmt: skip
    print(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
