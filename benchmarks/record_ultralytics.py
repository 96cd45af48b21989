"""Record Ultralytics' own predictions on the shared frames: the parity reference for cityeye's detector.

Runs ONLY in a separate virtual environment that has ultralytics and torch (never in the project's
environment or CI: torch is gigabytes). cityeye is not imported; the AP code is loaded by path from
vision/metrics.py so both sides score with the same function.

    python -m venv /tmp/ultra
    /tmp/ultra/bin/pip install torch==2.13.0            # the CPU build; plain `torch` pulls CUDA
    /tmp/ultra/bin/pip install --no-deps torchvision==0.28.0
    /tmp/ultra/bin/pip install ultralytics onnx onnxruntime
    /tmp/ultra/bin/python benchmarks/record_ultralytics.py record  # tests/fixtures/ultralytics_parity.json
    /tmp/ultra/bin/python benchmarks/record_ultralytics.py speed --model ../shared/models/yolov8n_dq.onnx

torchvision: the PyPI wheel of torchvision 0.28 is built against CUDA torch and its C++ ops do not
load with the CPU torch wheel ("operator torchvision::nms does not exist"). When that happens this
script puts a stand-in `torchvision` module in front whose `ops.nms` is Ultralytics' own
`ultralytics.utils.nms.TorchNMS.nms` (Ultralytics' pure-torch NMS, documented to match torchvision
exactly, and the one Ultralytics itself uses where torchvision is absent). The fixture records which
NMS produced it.

Frames: every shared parking and UA-DETRAC frame, plus frames decoded with OpenCV from the two
shared videos; each frame's pixels are hashed so the test can prove it feeds the same pixels.
Other frame sets (e.g. held-back frames) can be recorded with --images and --video.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
import types
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MODELS = ("yolov8n_dq", "yolov8n_int8", "yolo11n_int8_320")
VIDEOS = {
    "data/traffic/evadb_ua_detrac_intersection/ua_detrac.mp4": (0, 60, 120, 180, 240),
    "data/traffic/intel_car_detection/car-detection.mp4": (40, 110, 180, 250, 320),
}
IMAGE_DIRS = (
    "data/parking/pklot_pucpr",
    "data/parking/pklot_ufpr04",
    "data/parking/pklot_ufpr05",
    "data/traffic/detrac_MVI_20011/images",
)
DETRAC = "data/traffic/detrac_MVI_20011"
VEHICLE_COCO = (2, 5, 7)  # car, bus, truck -> "vehicle" (DETRAC labels car, van, bus, truck)
AP_CONF, AP_IOU = 0.001, 0.7  # Ultralytics' validation settings
PARITY_CONF, PARITY_IOU = 0.25, 0.7  # Ultralytics' predict defaults


def _load_metrics() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("cityeye_metrics", REPO / "vision" / "metrics.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses resolve their module by name
    spec.loader.exec_module(mod)
    return mod


def _torchvision_nms() -> str:
    """Make `import torchvision` work; return which NMS Ultralytics will call."""
    try:
        import torchvision
        import torchvision.ops

        torchvision.ops.nms  # noqa: B018
        return f"torchvision {torchvision.__version__}"
    except Exception:  # RuntimeError from the CUDA-only C++ ops, ImportError when absent
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
    from ultralytics.utils.nms import TorchNMS

    tv = types.ModuleType("torchvision")
    ops = types.ModuleType("torchvision.ops")
    ops.nms = TorchNMS.nms  # type: ignore[attr-defined]
    tv.ops = ops  # type: ignore[attr-defined]
    tv.__version__ = "stand-in"  # type: ignore[attr-defined]
    sys.modules["torchvision"] = tv
    sys.modules["torchvision.ops"] = ops
    return "ultralytics.utils.nms.TorchNMS (torchvision's C++ ops do not load with the CPU torch wheel)"


def pixel_sha256(img: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(str(img.shape).encode())
    h.update(np.ascontiguousarray(img).tobytes())
    return h.hexdigest()


def video_frames(path: Path, indices: tuple[int, ...]) -> dict[int, np.ndarray]:
    """Frames by index, decoded in order with OpenCV (the test decodes them the same way)."""
    cap = cv2.VideoCapture(str(path))
    out: dict[int, np.ndarray] = {}
    i = 0
    while len(out) < len(indices):
        ok, frame = cap.read()
        if not ok:
            break
        if i in indices:
            out[i] = frame
        i += 1
    cap.release()
    return out


def frame_key(path: Path, shared: Path) -> str:
    """How a frame is named in the fixture: relative to shared/ when it lies there, else absolute."""
    p = path.resolve()
    try:
        return str(p.relative_to(shared.resolve()))
    except ValueError:
        return str(p)


def collect_frames(shared: Path, image_dirs: list[str], videos: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    """Frames by fixture key; `image_dirs` are folders or files, relative to `shared` or absolute."""
    frames: dict[str, Any] = {}
    for d in image_dirs:
        root = Path(d) if Path(d).is_absolute() else shared / d
        files = sorted(root.iterdir()) if root.is_dir() else [root]
        for p in files:
            if p.suffix.lower() in (".jpg", ".jpeg", ".png"):
                img = cv2.imread(str(p), cv2.IMREAD_COLOR)
                if img is not None:
                    frames[frame_key(p, shared)] = img
    for v, idx in videos.items():
        for i, img in video_frames(shared / v, idx).items():
            frames[f"{v}#{i}"] = img
    return frames


def _boxes(result: Any) -> dict[str, list[Any]]:
    b = result.boxes
    return {
        "xyxy": np.round(b.xyxy.cpu().numpy().astype(np.float64), 3).tolist(),
        "conf": np.round(b.conf.cpu().numpy().astype(np.float64), 5).tolist(),
        "cls": b.cls.cpu().numpy().astype(int).tolist(),
    }


def detrac_gt(shared: Path) -> tuple[dict[int, np.ndarray], np.ndarray]:
    gt: dict[int, list[list[float]]] = {}
    with (shared / DETRAC / "gt_frames1-9.csv").open() as f:
        for r in csv.DictReader(f):
            x, y, w, h = (float(r[k]) for k in ("left", "top", "width", "height"))
            gt.setdefault(int(r["frame"]), []).append([x, y, x + w, y + h])
    regions = []
    with (shared / DETRAC / "ignored_regions.csv").open() as f:
        for r in csv.DictReader(f):
            x, y, w, h = (float(r[k]) for k in ("left", "top", "width", "height"))
            regions.append([x, y, x + w, y + h])
    return {k: np.array(v) for k, v in gt.items()}, np.array(regions).reshape(-1, 4)


def detrac_ap(metrics: types.ModuleType, shared: Path, predict: Any) -> dict[str, float]:
    """AP50 of 'vehicle' on the 9 labelled DETRAC frames, detections in ignored regions discarded.

    `predict(image) -> (xyxy, conf, cls)`; the same function scores cityeye in the tests.
    """
    gt, regions = detrac_gt(shared)
    frames = []
    for n, boxes in sorted(gt.items()):
        img = cv2.imread(str(shared / DETRAC / "images" / f"img{n:05d}.jpg"))
        xyxy, conf, cls = predict(img)
        keep = np.isin(cls, VEHICLE_COCO) & (metrics.inside_fraction(xyxy, regions) < 0.5)
        frames.append(metrics.FramePredictions(np.asarray(xyxy)[keep], np.asarray(conf)[keep], boxes))
    return dict(metrics.average_precision(frames, 0.5))


def record(args: argparse.Namespace) -> int:
    nms_impl = _torchvision_nms()
    import onnxruntime
    import torch
    import ultralytics
    from ultralytics import YOLO

    metrics = _load_metrics()
    shared: Path = args.shared
    frames = collect_frames(shared, args.images or list(IMAGE_DIRS), VIDEOS if not args.images else {})
    fixture: dict[str, Any] = {
        "about": "Ultralytics YOLO(onnx).predict on shared frames; compared by tests/test_vision_parity.py",
        "recorded_with": {
            "ultralytics": ultralytics.__version__,
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "opencv": cv2.__version__,
            "numpy": np.__version__,
            "nms": nms_impl,
            "python": platform.python_version(),
        },
        "settings": {"conf": PARITY_CONF, "iou": PARITY_IOU, "ap_conf": AP_CONF, "ap_iou": AP_IOU},
        "frames": {k: {"shape": list(v.shape), "pixels_sha256": pixel_sha256(v)} for k, v in frames.items()},
        "models": {},
    }
    for name in args.models:
        path = shared / "models" / f"{name}.onnx"
        model = YOLO(str(path), task="detect")
        preds = {}
        for key, img in frames.items():
            r = model.predict(img, conf=PARITY_CONF, iou=PARITY_IOU, verbose=False)[0]
            preds[key] = _boxes(r)

        def predict(img: np.ndarray, model: Any = model) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            r = model.predict(img, conf=AP_CONF, iou=AP_IOU, max_det=300, verbose=False)[0]
            b = r.boxes
            return b.xyxy.cpu().numpy(), b.conf.cpu().numpy(), b.cls.cpu().numpy().astype(int)

        entry: dict[str, Any] = {
            "file": f"models/{name}.onnx",
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "predictions": preds,
        }
        if not args.images:
            entry["detrac_ap50_vehicle"] = detrac_ap(metrics, shared, predict)
        fixture["models"][name] = entry
        print(
            f"{name}: {sum(len(p['conf']) for p in preds.values())} boxes on {len(preds)} frames",
            file=sys.stderr,
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(fixture, indent=1) + "\n")
    print(json.dumps({"out": str(args.out), "frames": len(frames), "models": list(args.models)}))
    return 0


def speed(args: argparse.Namespace) -> int:
    """Ultralytics' default predict (one image per call, its own pre/post-processing), timed per frame."""
    _torchvision_nms()
    from ultralytics import YOLO

    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
        import torch

        torch.set_num_threads(args.threads)
    images = [cv2.imread(str(p)) for p in args.images]
    model = YOLO(str(args.model), task="detect")
    kw: dict[str, Any] = {"verbose": False}
    if args.imgsz:
        kw["imgsz"] = args.imgsz
    for img in images[: args.warmup]:
        model.predict(img, **kw)
    per_frame, stages = [], {"preprocess": [], "inference": [], "postprocess": []}
    for _ in range(args.rounds):
        for img in images:
            t0 = time.perf_counter()
            r = model.predict(img, **kw)[0]
            per_frame.append(time.perf_counter() - t0)
            for k in stages:
                stages[k].append(r.speed[k])
    med = statistics.median(per_frame)
    print(
        json.dumps(
            {
                "model": str(args.model),
                "frames": len(images),
                "timed_calls": len(per_frame),
                "median_ms": round(med * 1000, 3),
                "fps": round(1.0 / med, 3),
                "median_stage_ms": {k: round(statistics.median(v), 3) for k, v in stages.items()},
            }
        )
    )
    return 0


def serve(args: argparse.Namespace) -> int:
    """Timing on demand: one pass over the frames per "round" line on stdin, one JSON line back.

    benchmarks/detector.py drives this between its own rounds, so Ultralytics is measured under
    the same moment-to-moment load as cityeye's configurations instead of before or after them.
    """
    _torchvision_nms()
    from ultralytics import YOLO

    images = [cv2.imread(str(p)) for p in args.images]
    model = YOLO(str(args.model), task="detect")
    for img in images[: args.warmup]:
        model.predict(img, verbose=False)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip() != "round":
            break
        times = []
        for img in images:
            t0 = time.perf_counter()
            model.predict(img, verbose=False)
            times.append(time.perf_counter() - t0)
        print(json.dumps({"per_frame_s": times}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = ap.add_subparsers(dest="cmd", required=True)
    rec = sub.add_parser("record", help="write the parity fixture")
    rec.add_argument("--shared", type=Path, default=SHARED)
    rec.add_argument("--models", nargs="+", default=list(MODELS))
    rec.add_argument(
        "--images", nargs="*", help="other folders under --shared (default: the shared set + videos)"
    )
    rec.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures" / "ultralytics_parity.json")
    rec.set_defaults(func=record)
    sp = sub.add_parser("speed", help="time YOLO(onnx).predict; one JSON line on stdout")
    sp.add_argument("--model", type=Path, required=True)
    sp.add_argument("--images", nargs="+", type=Path, required=True)
    sp.add_argument("--imgsz", type=int, nargs="+")
    sp.add_argument("--rounds", type=int, default=3)
    sp.add_argument("--warmup", type=int, default=3)
    sp.add_argument("--threads", type=int, default=0)
    sp.set_defaults(func=speed)
    sv = sub.add_parser("serve", help="time one pass per 'round' line on stdin (driven by detector.py)")
    sv.add_argument("--model", type=Path, required=True)
    sv.add_argument("--images", nargs="+", type=Path, required=True)
    sv.add_argument("--warmup", type=int, default=3)
    sv.set_defaults(func=serve)
    args = ap.parse_args(argv)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
