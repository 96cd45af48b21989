"""Time per frame of `Detector.detect`, split into preprocess / inference / postprocess.

The same process also times a bare `session.run` on a tensor made once up front: that is the
hardware ceiling for this model on this CPU, so `total - session_run_ceiling` is what cityeye's
own Python costs per frame. Iterations interleave the two measurements so that clock and thermal
drift hit both alike. Prints one JSON document on stdout.

    python benchmarks/detector_speed.py
    python benchmarks/detector_speed.py --model ../shared/models/yolov8n_int8.onnx --runs 100 --threads 4
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort

from cityeye.vision.detector import Detector

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
# A full lot (about 50 cars): the busiest UFPR05 frame, so postprocess is timed at its worst, not
# on the 3-car dawn frame that sorts first.
DEFAULT_IMAGE = SHARED / "data" / "parking" / "pklot_ufpr05" / "2013-04-12_14_45_09.png"


def _median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 3)


def _p90_ms(samples: list[float]) -> float:
    return round(float(np.percentile(samples, 90)) * 1000, 3)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--model", help="ONNX model (default: the shipped yolov8n_dq.onnx or $CITYEYE_MODEL)")
    ap.add_argument("--image", type=Path, default=DEFAULT_IMAGE, help="image, or a folder (first .png)")
    ap.add_argument("--runs", type=int, default=50, help="timed iterations (default 50)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed iterations first (default 5)")
    ap.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0 = its default)")
    args = ap.parse_args(argv)

    path = args.image
    if path.is_dir():
        pngs = sorted(path.glob("*.png"))
        if not pngs:
            print(f"no .png frames in {path}; give --image FILE", file=sys.stderr)
            return 2
        path = pngs[0]
    image = cv2.imread(str(path))
    if image is None:
        print(f"cannot read image {path} (missing or not an image); give --image FILE", file=sys.stderr)
        return 2

    det = Detector(args.model, threads=args.threads)
    session = det.session
    input_name = session.get_inputs()[0].name
    ready_tensor, _ = det.preprocess(image)

    for _ in range(args.warmup):
        det.detect(image)
        session.run(None, {input_name: ready_tensor})

    pre, inf, post, total, raw = [], [], [], [], []
    n_det = 0
    for _ in range(args.runs):
        t0 = time.perf_counter()
        tensor, geo = det.preprocess(image)
        t1 = time.perf_counter()
        out = det.infer(tensor)
        t2 = time.perf_counter()
        n_det = len(det.postprocess(out, geo))
        t3 = time.perf_counter()
        session.run(None, {input_name: ready_tensor})
        t4 = time.perf_counter()
        pre.append(t1 - t0)
        inf.append(t2 - t1)
        post.append(t3 - t2)
        total.append(t3 - t0)
        raw.append(t4 - t3)

    result: dict[str, Any] = {
        "model": str(det.path),
        "decoder": det.decoder.family,
        "image": str(path),
        "image_wh": [int(image.shape[1]), int(image.shape[0])],
        "input_hw": list(det.input_size),
        "detections": n_det,
        "runs": args.runs,
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "onnxruntime": ort.__version__,
        "median_ms": {
            "preprocess": _median_ms(pre),
            "inference": _median_ms(inf),
            "postprocess": _median_ms(post),
            "total": _median_ms(total),
            "session_run_ceiling": _median_ms(raw),
        },
        "p90_ms": {"total": _p90_ms(total), "session_run_ceiling": _p90_ms(raw)},
    }
    m = result["median_ms"]
    result["overhead_vs_ceiling_ms"] = round(m["total"] - m["session_run_ceiling"], 3)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
