"""cityeye's detector against Ultralytics' recorded predictions on the same ONNX files, without torch.

The reference is tests/fixtures/ultralytics_*.json, written by benchmarks/record_ultralytics.py in a
separate ultralytics+torch environment. Any fixture there is checked, so frames recorded elsewhere
(e.g. held-back ones) run through the same test. Tolerances are the issue's: every reference box
above 0.25 matched by one of ours with IoU >= 0.98, the same class and confidence within 0.02, and
no box of ours above 0.3 that the reference lacks.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from functools import cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from cityeye.vision.detector import Detector
from cityeye.vision.metrics import compare_to_reference
from tests.conftest import REPO, SHARED, shared_path

FIXTURES = sorted((REPO / "tests" / "fixtures").glob("ultralytics_*.json"))
AP_TOLERANCE = 0.005


def _record_script() -> types.ModuleType:
    """The recording script's own frame and DETRAC helpers, so both sides read data identically."""
    spec = importlib.util.spec_from_file_location(
        "record_ultralytics", REPO / "benchmarks" / "record_ultralytics.py"
    )
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


REC = _record_script()


@cache
def _fixture(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _cases() -> list[Any]:
    out = []
    for f in FIXTURES:
        for model in _fixture(f)["models"]:
            out.append(pytest.param(f, model, id=f"{f.stem}-{model}"))
    return out


@cache
def _frame(key: str) -> np.ndarray:
    if "#" in key:
        video, idx = key.rsplit("#", 1)
        frames = REC.video_frames(shared_path(*video.split("/")), (int(idx),))
        assert int(idx) in frames, f"{video} has no frame {idx}"
        return np.asarray(frames[int(idx)])
    path = Path(key) if Path(key).is_absolute() else shared_path(*key.split("/"))
    if not path.exists():
        pytest.skip(f"frame {key} of the fixture is not on this machine")
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None, key
    return np.asarray(img)


@cache
def _detector(model_file: str, conf: float, iou: float) -> Detector:
    return Detector(shared_path(*model_file.split("/")), confidence=conf, iou=iou)


def test_fixture_exists() -> None:
    assert FIXTURES, "tests/fixtures/ultralytics_parity.json is missing: run benchmarks/record_ultralytics.py"


@pytest.mark.parametrize(("fixture", "model"), _cases())
def test_boxes_match_ultralytics(fixture: Path, model: str) -> None:
    fx = _fixture(fixture)
    entry = fx["models"][model]
    shared_path(*entry["file"].split("/"))
    # Below the reference's 0.25 so a box Ultralytics scores 0.251 and we 0.249 still pairs up; a
    # lower threshold cannot change the boxes above it (a box never suppresses a better-scored one).
    det = _detector(entry["file"], 0.2, fx["settings"]["iou"])
    problems: list[str] = []
    worst_iou, worst_conf, n_ref = 1.0, 0.0, 0
    for key, ref in entry["predictions"].items():
        img = _frame(key)
        want = fx["frames"][key]["pixels_sha256"]
        assert REC.pixel_sha256(img) == want, (
            f"{key}: decoded pixels differ from the recorded ones (OpenCV/FFmpeg build changed?)"
        )
        ours = det.detect(img)
        r = compare_to_reference(
            ref["xyxy"], ref["conf"], ref["cls"], ours.xyxy, ours.confidence, ours.class_id
        )
        n_ref += r.reference
        worst_iou, worst_conf = min(worst_iou, r.min_iou), max(worst_conf, r.max_conf_diff)
        problems += [f"{key}: {p}" for p in r.problems]
    assert n_ref > 0
    assert not problems, f"{len(problems)} parity failures (worst IoU {worst_iou:.4f}):\n" + "\n".join(
        problems[:20]
    )
    assert worst_iou >= 0.98 and worst_conf <= 0.02


@pytest.mark.parametrize(("fixture", "model"), _cases())
def test_detrac_ap50_equals_ultralytics(fixture: Path, model: str) -> None:
    fx = _fixture(fixture)
    entry = fx["models"][model]
    if "detrac_ap50_vehicle" not in entry:
        pytest.skip(f"{fixture.name} has no DETRAC AP for {model}")
    shared_path("data", "traffic", "detrac_MVI_20011")
    s = fx["settings"]
    det = _detector(entry["file"], s["ap_conf"], s["ap_iou"])

    def predict(img: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        d = det.detect(img)
        return d.xyxy, d.confidence, d.class_id

    metrics = sys.modules.get("cityeye_metrics") or REC._load_metrics()
    ours = REC.detrac_ap(metrics, SHARED, predict)
    ref = entry["detrac_ap50_vehicle"]
    assert ours["gt"] == ref["gt"] == 59
    assert abs(ours["ap"] - ref["ap"]) <= AP_TOLERANCE, (ours, ref)
