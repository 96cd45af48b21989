"""Detector speed against the hardware ceiling and Ultralytics, plus accuracy of each configuration.

One run, the same frames and thread settings for everything:

- `ceiling`: bare `session.run` on tensors preprocessed once up front (nothing else can be faster
  with that model file on this CPU);
- `ours`: `Detector.detect_batch` from BGR arrays to boxes (letterbox, run, decode, NMS, mapping);
- `ultralytics`: `YOLO(onnx).predict`, one image per call (its default), timed by
  benchmarks/record_ultralytics.py in the separate ultralytics environment when
  --ultralytics-python (or $CITYEYE_ULTRALYTICS_PYTHON) names its interpreter;

for FP32 (`yolov8n_dq.onnx`), INT8 (`yolov8n_int8.onnx`) and optionally our own static INT8, at
640x640 and 384x640 (16:9 frames), batch 1 and 4 (graphs made batch-dynamic / re-sized with
cityeye.models.graph, checked against the original). Ours and the ceiling alternate frame by frame
so load from other processes hits both alike. Accuracy per model and size: AP50 of vehicles on the
9 labelled UA-DETRAC frames (ignored regions discarded), with and without tiling, and on PKLot
PUCPR the labelled occupied bays that hold a detected vehicle at 640, 736x1280 and tiled.

    python benchmarks/detector.py                       # prints one JSON document
    python benchmarks/detector.py --ultralytics-python /tmp/ultra/bin/python --static-int8
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort
import shapely

from cityeye.models.graph import reshape_model
from cityeye.models.registry import ModelError, SessionSettings
from cityeye.vision.config import TileConfig
from cityeye.vision.detector import Detector

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DETRAC = SHARED / "data" / "traffic" / "detrac_MVI_20011"
PUCPR = SHARED / "data" / "parking" / "pklot_pucpr"
VEHICLES = ("car", "bus", "truck", "motorcycle", "bicycle")
AS_IS: dict[str, Any] = {"raw_pixels": False, "byte_scores": False, "logit_head": False}
"""Detector options that run the file as given, without any derived copy (the ceiling's graph)."""


def _record_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "record_ultralytics", REPO / "benchmarks" / "record_ultralytics.py"
    )
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


REC = _record_module()


def _frames(n: int) -> list[Path]:
    """Traffic frames (16:9): the labelled DETRAC frames, then frames of the intersection video."""
    return sorted((DETRAC / "images").glob("*.jpg"))[:n]


class Timer:
    """Ours (detect_batch) and the ceiling (bare session.run on ready tensors) for one configuration.

    Each `round` times both in two ways; the caller runs rounds of all configurations in turn, so a
    burst of load from other processes lands on every configuration rather than on one.

    - steady state (the reported `ours_over_ceiling`): a pass over the frames for each side, frame
      after frame on one session, as a camera stream runs; the ceiling's pass is back-to-back runs.
      The ratio is the median over rounds of each round's ratio of medians, so a burst of load on
      this shared machine that spoils one pass spoils one round, not the estimate.
    - interleaved (`..._interleaved`): ours and the ceiling alternate chunk by chunk (the median of
      adjacent pairs' ratios), so each of our frames follows a ceiling run (a fresh output
      allocation, another input tensor) and each ceiling run follows our post-processing. It tends
      to read lower for us than the steady state; both are printed.

    Every pass starts with one untimed run on the session about to be timed: a session whose
    threads were asleep or whose weights another session evicted pays 0.3-0.4 ms on its next run
    (measured), which would otherwise land on whichever side came first.

    When the detector runs a checked copy of a statically quantised file (pixel bytes in,
    models/rawinput.py; class scores and box bins out as bytes, models/scorehead.py), `ceiling` is the file as
    given, fed float tensors as Ultralytics feeds it, in a pass of its own, and
    `ceiling_of_graph_run` the copy ours runs: the first is the comparison the issue asks for
    (ours may beat it, the copy being cheaper), the second how much of our time is outside the model.
    """

    def __init__(self, det: Detector, images: list[np.ndarray], batch: int) -> None:
        self.det = det
        self.chunks = [images[i : i + batch] for i in range(0, len(images), batch)]
        # Session feeds made up front: the tensor (and a run-time-quantised copy's scale/zero point).
        self.ready = [det.feed(det.preprocess_batch(c)[0]) for c in self.chunks]
        self.file: Detector | None = None
        self.file_ready: list[dict[str, Any]] = []
        if det.copies:
            self.file = Detector(det.source, batch=det.batch, session=det.settings, **AS_IS)
            self.file_ready = [self.file.feed(self.file.preprocess_batch(c)[0]) for c in self.chunks]
        self.s: dict[str, list[float]] = {
            k: [] for k in ("ours", "ceiling", "ceiling_run", "ours_il", "ceiling_il")
        }
        self.round_ratio: list[float] = []
        self.round_ratio_run: list[float] = []
        self.pair_ratio: list[float] = []
        for c, x in zip(self.chunks, self.ready, strict=True):  # warm-up: first runs allocate
            det.detect_batch(c)
            det.session.run(None, x)
        for x in self.file_ready:
            assert self.file is not None
            self.file.session.run(None, x)

    def _pass(self, sess: Any, ready: list[dict[str, Any]], ours: bool) -> list[float]:
        sess.run(None, ready[0])
        out = []
        for c, x in zip(self.chunks, ready, strict=True):
            t0 = time.perf_counter()
            if ours:
                self.det.detect_batch(c)
            else:
                sess.run(None, x)
            out.append((time.perf_counter() - t0) / len(c))
        return out

    def round(self) -> None:
        sess = self.det.session
        ours = self._pass(sess, self.ready, ours=True)
        run = self._pass(sess, self.ready, ours=False)
        ceiling = self._pass(self.file.session, self.file_ready, ours=False) if self.file else run
        self.s["ours"] += ours
        self.s["ceiling_run"] += run
        self.s["ceiling"] += ceiling
        # Per-round ratios: a burst of load on this shared machine spoils a round, not the estimate.
        self.round_ratio.append(statistics.median(ceiling) / statistics.median(ours))
        self.round_ratio_run.append(statistics.median(run) / statistics.median(ours))
        sess.run(None, self.ready[0])
        for c, x in zip(self.chunks, self.ready, strict=True):
            t0 = time.perf_counter()
            self.det.detect_batch(c)
            t1 = time.perf_counter()
            sess.run(None, x)
            t2 = time.perf_counter()
            self.s["ours_il"].append((t1 - t0) / len(c))
            self.s["ceiling_il"].append((t2 - t1) / len(c))
            self.pair_ratio.append((t2 - t1) / (t1 - t0))

    def summary(self) -> dict[str, Any]:
        m = {k: statistics.median(v) for k, v in self.s.items() if v}
        o, r, c = m["ours"], m["ceiling_run"], m["ceiling"]
        out: dict[str, Any] = {
            "ours_ms_per_frame": round(o * 1000, 3),
            "ceiling_ms_per_frame": round(c * 1000, 3),
            "ours_fps": round(1 / o, 2),
            "ceiling_fps": round(1 / c, 2),
            # Median over rounds of each round's ratio of medians (steady state, paired by round).
            "ours_over_ceiling": round(statistics.median(self.round_ratio), 4),
            # Median over chunks of ceiling/ours for adjacent pairs (interleaved).
            "ours_over_ceiling_interleaved": round(statistics.median(self.pair_ratio), 4),
            "samples": len(self.s["ours"]),
        }
        if self.file is not None:
            out["graph_run"] = f"checked copy of the file: {', '.join(self.det.copies)}"
            out["ceiling_of_graph_run_ms_per_frame"] = round(r * 1000, 3)
            out["ours_over_ceiling_of_graph_run"] = round(statistics.median(self.round_ratio_run), 4)
        return out


def detrac_ap(det: Detector) -> float:
    def predict(img: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        d = det.detect(img)
        return d.xyxy, d.confidence, d.class_id

    return round(float(REC.detrac_ap(REC._load_metrics(), SHARED, predict)["ap"]), 4)


def stages(det: Detector, images: list[np.ndarray], rounds: int = 3) -> dict[str, float]:
    """Median milliseconds of preprocess, session run and postprocess for one frame (where time goes)."""
    pre, run, post = [], [], []
    for _ in range(rounds):
        for img in images:
            t0 = time.perf_counter()
            x, geo = det.preprocess(img)
            t1 = time.perf_counter()
            y = det.infer(x)
            t2 = time.perf_counter()
            det.postprocess(y, geo)
            t3 = time.perf_counter()
            pre.append(t1 - t0)
            run.append(t2 - t1)
            post.append(t3 - t2)
    return {
        k: round(statistics.median(v) * 1000, 3)
        for k, v in (("preprocess", pre), ("run", run), ("postprocess", post))
    }


def detrac_recall(det: Detector) -> float:
    """Share of the 59 labelled vehicles found (IoU >= 0.5) at the detector's own threshold."""

    def predict(img: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        d = det.detect(img)
        return d.xyxy, d.confidence, d.class_id

    return round(float(REC.detrac_ap(REC._load_metrics(), SHARED, predict)["recall"]), 4)


def pucpr_recall(det: Detector) -> dict[str, Any]:
    """Labelled occupied bays holding a detected vehicle's box centre, and vehicles found per frame."""
    per_frame: list[dict[str, Any]] = []
    found_per_frame: list[int] = []
    hit = total = 0
    for xml in sorted(PUCPR.glob("*.xml")):
        img = cv2.imread(str(xml.with_suffix(".jpg")))
        if img is None:
            raise SystemExit(f"cannot read {xml.with_suffix('.jpg')}")
        d = det.detect(np.asarray(img, dtype=np.uint8)).vehicles()
        found_per_frame.append(len(d))
        centres = np.stack([(d.xyxy[:, 0] + d.xyxy[:, 2]) / 2, (d.xyxy[:, 1] + d.xyxy[:, 3]) / 2], axis=1)
        occupied = 0
        found = 0
        for space in ET.parse(xml).getroot().iter("space"):
            if space.get("occupied") != "1":
                continue
            pts = [
                (float(p.get("x", 0)), float(p.get("y", 0))) for p in space.iter() if p.tag.lower() == "point"
            ]
            if len(pts) < 3:
                continue
            occupied += 1
            poly = shapely.Polygon(pts)
            if len(centres) and shapely.contains_xy(poly, centres[:, 0], centres[:, 1]).any():
                found += 1
        per_frame.append(
            {
                "frame": xml.stem,
                "vehicles_found": len(d),
                "occupied_bays": occupied,
                "occupied_bays_with_vehicle": found,
            }
        )
        hit += found
        total += occupied
    return {
        "occupied_bay_recall": round(hit / total, 4) if total else None,
        "vehicles_found_per_frame": round(statistics.mean(found_per_frame), 1),
        "frames": per_frame,
    }


class UltralyticsTimer:
    """`YOLO(onnx).predict` in the ultralytics venv, one pass per round (record_ultralytics.py serve)."""

    def __init__(self, python: str, model: Path, frames: list[Path]) -> None:
        cmd = [
            python,
            str(REPO / "benchmarks" / "record_ultralytics.py"),
            "serve",
            "--model",
            str(model),
            "--images",
            *map(str, frames),
        ]
        env = {**os.environ, "YOLO_OFFLINE": "1"}
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.samples: list[float] = []
        self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:  # ultralytics logs its own lines ("Loading ... for ONNX Runtime inference") to stdout
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the ultralytics process ended (exit {self.proc.wait()}); run it by hand")
            if line.startswith("{"):
                reply: dict[str, Any] = json.loads(line)
                return reply

    def round(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("round\n")
        self.proc.stdin.flush()
        self.samples += self._read()["per_frame_s"]

    def close(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        m = statistics.median(self.samples)
        return {"ms_per_frame": round(m * 1000, 3), "fps": round(1 / m, 2), "samples": len(self.samples)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--frames", type=int, default=8, help="DETRAC frames timed (default 8)")
    ap.add_argument("--rounds", type=int, default=5, help="timed passes over the frames (default 5)")
    ap.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0 = its default)")
    ap.add_argument(
        "--ultralytics-python",
        default=os.environ.get("CITYEYE_ULTRALYTICS_PYTHON"),
        help="python of a venv with ultralytics (see record_ultralytics.py); omitted when unset",
    )
    ap.add_argument(
        "--static-int8", action="store_true", help="also quantise yolov8n_dq statically (PKLot frames)"
    )
    ap.add_argument("--no-accuracy", action="store_true", help="skip AP50 / PUCPR recall")
    ap.add_argument(
        "--only",
        help="time only configurations whose name (e.g. int8_static_own_384x640_b1) contains this text",
    )
    args = ap.parse_args(argv)
    if not DETRAC.exists():
        print(f"needs {DETRAC} (the shared data folder beside the repository)", file=sys.stderr)
        return 2

    frame_paths = _frames(args.frames)
    images = [np.asarray(cv2.imread(str(p)), dtype=np.uint8) for p in frame_paths]
    session = SessionSettings(intra_threads=args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="cityeye-bench-"))
    models = {"fp32": SHARED / "models" / "yolov8n_dq.onnx", "int8": SHARED / "models" / "yolov8n_int8.onnx"}
    if args.static_int8:
        from cityeye.models.quantize import quantize_model

        out = tmp / "yolov8n_dq_int8-static.onnx"
        quantize_model(
            models["fp32"],
            out,
            mode="static",
            frames=32,
            # PKLot frames only: the DETRAC frames are the AP test set and must not tune the model.
            calibration=[SHARED / "data" / "parking"],
        )
        models["int8_static_own"] = out
    sizes = {"640x640": (640, 640), "384x640": (384, 640)}
    result: dict[str, Any] = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "onnxruntime": ort.__version__,
        },
        "frames": [str(p.relative_to(SHARED)) for p in frame_paths],
        "threads": args.threads,
        "rounds": args.rounds,
        "configs": [],
    }
    variants: dict[tuple[str, str], Path] = {}
    for mname, path in models.items():
        for sname, hw in sizes.items():
            out = tmp / f"{mname}_{sname}.onnx"
            reshape_model(path, out, imgsz=None if hw == (640, 640) else hw, dynamic_batch=True)
            variants[(mname, sname)] = out

    # The plain file at batch 1: the like-for-like comparison with the ceiling and with Ultralytics.
    base = Detector(models["fp32"], session=session)
    timers: dict[str, tuple[dict[str, Any], Timer]] = {
        "baseline": (
            {"model": "fp32", "imgsz": "640x640", "batch": 1, "file": "yolov8n_dq.onnx as shipped"},
            Timer(base, images, 1),
        )
    }
    skipped: list[dict[str, Any]] = []
    for (mname, sname), path in variants.items():
        for batch in (1, 4):
            meta = {"model": mname, "imgsz": sname, "batch": batch}
            if args.only and args.only not in f"{mname}_{sname}_b{batch}":
                continue
            try:
                det = Detector(path, batch=batch, session=session)
            except ModelError as exc:  # e.g. run-time quantised models refuse batches (frames would interact)
                skipped.append({**meta, "skipped": str(exc).split(";")[0]})
                continue
            timers[f"{mname}_{sname}_b{batch}"] = (meta, Timer(det, images, batch))
            if det.copies:
                # The same file without the INT8 copies: what they are worth, in the same run.
                plain = Detector(path, batch=batch, session=session, **AS_IS)
                meta_plain = {**meta, "model": f"{mname} (file as is, no copies)"}
                timers[f"{mname}_{sname}_b{batch}_plain"] = (meta_plain, Timer(plain, images, batch))
    ultra = (
        UltralyticsTimer(args.ultralytics_python, models["fp32"], frame_paths)
        if args.ultralytics_python
        else None
    )
    for r in range(args.rounds):
        if ultra is not None:
            ultra.round()
            # Its session's threads spin for a while after a run (onnxruntime's default); let them
            # go to sleep rather than charge the next configuration's first pass for them.
            time.sleep(0.3)
        for _, timer in timers.values():
            timer.round()
        print(f"round {r + 1}/{args.rounds}", file=sys.stderr)
    result["baseline_fp32_640_static_file"] = {
        **timers.pop("baseline")[1].summary(),
        "stages_ms": stages(base, images),
    }
    result["configs"] = [{**meta, **t.summary()} for meta, t in timers.values()]
    result["skipped_configs"] = skipped

    if not args.no_accuracy:
        acc: dict[str, Any] = {}
        for (mname, sname), path in variants.items():
            acc[f"{mname}_{sname}"] = {
                "detrac_ap50_vehicle": detrac_ap(Detector(path, confidence=0.001, session=session))
            }
        fp32 = variants[("fp32", "640x640")]
        acc["fp32_640x640"]["detrac_ap50_vehicle_tiled"] = detrac_ap(
            Detector(fp32, confidence=0.001, session=session, batch=4, tile=TileConfig())
        )
        acc["fp32_640x640"]["detrac_recall_at_0.25"] = detrac_recall(Detector(fp32, session=session))
        acc["fp32_640x640"]["detrac_recall_at_0.25_tiled"] = detrac_recall(
            Detector(fp32, session=session, batch=4, tile=TileConfig())
        )
        big = tmp / "fp32_736x1280.onnx"
        reshape_model(models["fp32"], big, imgsz=(736, 1280), dynamic_batch=True)
        result["pucpr_small_vehicles"] = {
            "640x640": pucpr_recall(Detector(variants[("fp32", "640x640")], session=session)),
            "736x1280": pucpr_recall(Detector(big, session=session)),
            "640x640_tiled": pucpr_recall(
                Detector(variants[("fp32", "640x640")], session=session, batch=4, tile=TileConfig())
            ),
        }
        result["accuracy"] = acc
        ref = acc["fp32_640x640"]["detrac_ap50_vehicle"]
        allowed = {k for k, v in acc.items() if ref - v["detrac_ap50_vehicle"] <= 0.01}
    else:
        allowed = {f"{m}_{s}" for m, s in variants}
    best = max(
        (c for c in result["configs"] if f"{c['model']}_{c['imgsz']}" in allowed), key=lambda c: c["ours_fps"]
    )
    for name, (_meta, t) in timers.items():  # copies: ours with them over ours without
        without = timers.get(f"{name}_plain")
        if without is not None:
            result.setdefault("copies_speedup", {})[name] = round(
                statistics.median(without[1].s["ours"]) / statistics.median(t.s["ours"]), 4
            )
    result["best_config"] = best

    if ultra is not None:
        u = ultra.close()
        result["ultralytics_predict_fp32_640"] = u
        result["best_over_ultralytics"] = round(best["ours_fps"] / u["fps"], 3)
        result["ours_fp32_640_b1_over_ultralytics"] = round(
            result["baseline_fp32_640_static_file"]["ours_fps"] / u["fps"], 3
        )
    else:
        result["ultralytics_predict_fp32_640"] = (
            "not measured: give --ultralytics-python (see record_ultralytics.py)"
        )
    result["machine"]["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
