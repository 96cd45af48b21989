"""`cityeye detect IMAGE...`: run the detector on still images.

With --json each image gives one line, a contract other tools parse:
{"image": path, "width": w, "height": h,
 "detections": [{"xyxy": [x1, y1, x2, y2], "confidence": c, "class_id": k, "label": name}]}
Boxes are original-image pixels rounded to 2 decimals, confidence to 4.

Unreadable images do not stop the run: every readable image is processed first (so a batch job
keeps its results), then one error naming each unreadable file goes to stderr and the exit code is 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import ValidationError

from cityeye.cli import UsageError
from cityeye.vision.config import ModelConfig, TileConfig

if TYPE_CHECKING:
    import numpy.typing as npt

    from cityeye.vision.detections import Detections


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "detect",
        help="detect objects in images (JSON lines with --json)",
        description="Run the ONNX detector on images; boxes are in original image pixels.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (.jpg, .png, ...)")
    p.add_argument("--model", help="ONNX model (default: $CITYEYE_MODEL, else the shipped yolov8n_dq.onnx)")
    p.add_argument("--imgsz", help="input size N or HxW, e.g. 384x640 (default: the model's own)")
    p.add_argument("--tile", action="store_true", help="tiled inference for small, far vehicles (slower)")
    p.add_argument("--classes", nargs="+", metavar="LABEL", help="keep only these labels (e.g. car bus)")
    p.add_argument("--conf", type=float, default=0.25, help="minimum confidence (default 0.25)")
    p.add_argument("--iou", type=float, default=0.7, help="IoU threshold of class-aware NMS (default 0.7)")
    p.add_argument("--json", action="store_true", help="one JSON object per image and line on stdout")
    p.set_defaults(func=run_detect)


def detections_json(image: str, width: int, height: int, det: Detections) -> dict[str, Any]:
    """The --json line for one image (shared so other commands can emit the same shape)."""
    # float64 first: rounding float32 and converting gives 116.55999755859375, not 116.56.
    boxes = det.xyxy.astype(np.float64).round(2).tolist()
    conf = det.confidence.astype(np.float64).round(4).tolist()
    return {
        "image": image,
        "width": width,
        "height": height,
        "detections": [
            {"xyxy": b, "confidence": c, "class_id": int(k), "label": det.label(i)}
            for i, (b, c, k) in enumerate(zip(boxes, conf, det.class_id.tolist(), strict=True))
        ],
    }


def _table(image: str, width: int, height: int, det: Detections) -> str:
    lines = [f"{image}  {width}x{height}  {len(det)} detections"]
    for i in range(len(det)):
        x1, y1, x2, y2 = det.xyxy[i]
        lines.append(f"  {det.label(i):<14} {det.confidence[i]:.2f}  {x1:7.1f} {y1:7.1f} {x2:7.1f} {y2:7.1f}")
    return "\n".join(lines)


def _read(path: str) -> npt.NDArray[np.uint8] | str:
    """The BGR image, or why it cannot be read."""
    import cv2

    p = Path(path)
    if not p.exists():
        return "no such file"
    if not p.is_file():
        return "not a file"
    img = cv2.imread(str(p), cv2.IMREAD_COLOR)
    if img is None:
        return "not an image OpenCV can decode"
    return np.asarray(img, dtype=np.uint8)


def run_detect(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from cityeye.vision.detector import Detector

    try:
        cfg = ModelConfig(
            path=args.model,
            imgsz=args.imgsz,
            confidence=args.conf,
            iou=args.iou,
            classes=args.classes,
            tile=TileConfig() if args.tile else None,
        )
    except ValidationError as exc:
        problems = "; ".join(f"--{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise UsageError(problems.replace("--confidence", "--conf").replace("--path", "--model")) from None
    detector = Detector.from_config(cfg)
    failed: list[str] = []
    images: list[str] = args.images
    for path in tqdm(images, desc="detect", unit="img", file=sys.stderr, disable=len(images) < 2):
        img = _read(path)
        if isinstance(img, str):
            failed.append(f"{path} ({img})")
            continue
        det = detector.detect(img)
        h, w = img.shape[:2]
        if args.json:
            print(json.dumps(detections_json(path, w, h, det)), flush=True)
        else:
            print(_table(path, w, h, det), flush=True)
    if failed:
        raise UsageError(f"could not read {len(failed)} of {len(images)} images: " + ", ".join(failed))
    return 0
