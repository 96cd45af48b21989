"""`cityeye models info|export`."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import cv2
import pytest

from cityeye.cli import UsageError
from cityeye.models import cli as models_cli
from cityeye.models.registry import DEFAULT_MODEL, ModelError
from cityeye.vision.nms import box_iou
from tests.conftest import shared_path


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cityeye")
    models_cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["models", *argv])


def _documented_sha256() -> str:
    text = (DEFAULT_MODEL.parent / "SOURCES.md").read_text()
    m = re.search(r"\| sha256 \| `([0-9a-f]{64})` \|", text)
    assert m, "models/weights/SOURCES.md must state the sha256 of the shipped model"
    return m.group(1)


def test_info_of_shipped_model(capsys: pytest.CaptureFixture[str]) -> None:
    args = _parse("info", str(DEFAULT_MODEL))
    assert args.func(args) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["sha256"] == _documented_sha256()
    assert info["size"] == DEFAULT_MODEL.stat().st_size
    assert info["inputs"] == [{"name": "images", "shape": [1, 3, 640, 640], "dtype": "float32"}]
    assert info["outputs"] == [{"name": "output0", "shape": [1, 84, 8400], "dtype": "float32"}]
    assert "'car'" in info["metadata_props"]["names"] and "AGPL" in info["metadata_props"]["license"]
    assert info["decoder"] == "ultralytics"
    if _onnx_importable():
        assert info["opset"] == 12
    else:
        assert "opset" not in info


def _onnx_importable() -> bool:
    try:
        import onnx  # noqa: F401
    except ImportError:
        return False
    return True


def test_info_without_onnx_omits_opset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` raise ImportError
    info = models_cli.model_info(shared_path("models", "yolox_nano.onnx"))
    assert "opset" not in info
    assert info["metadata_props"] == {} and info["decoder"] == "yolox"
    assert info["outputs"][0]["shape"] == [1, 3549, 85]


def test_info_of_missing_model(tmp_path: Path) -> None:
    args = _parse("info", str(tmp_path / "x.onnx"))
    with pytest.raises(ModelError, match="does not exist"):
        args.func(args)


def test_export_without_ultralytics(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "ultralytics", None)
    args = _parse("export", "yolo11n", "--imgsz", "320", "--out", str(tmp_path))
    assert (args.source, args.imgsz, args.dynamic, args.out) == ("yolo11n", 320, False, tmp_path)
    with pytest.raises(ModelError, match=re.escape("pip install 'cityeye[export]'")):
        args.func(args)
    assert list(tmp_path.iterdir()) == []


def test_export_rejects_bad_input(tmp_path: Path) -> None:
    args = _parse("export", str(tmp_path / "weights" / "mine.pt"))
    with pytest.raises(UsageError, match="does not exist"):
        args.func(args)
    args = _parse("export", "yolo11n", "--imgsz", "300")
    with pytest.raises(UsageError, match="multiple of 32"):
        args.func(args)


def test_models_needs_a_subcommand() -> None:
    with pytest.raises(SystemExit):
        _parse()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("CITYEYE_MODEL_CACHE", str(d))
    return d


def test_reshape_into_cache_and_use_by_name(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnx", reason="needs onnx (pip install -e '.[dev]')")
    args = _parse("reshape", str(shared_path("models", "yolov8n_dq.onnx")), "--imgsz", "384x640")
    assert args.func(args) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["out"] == str(cache / "yolov8n_dq_b-dyn_384x640.onnx")
    assert rep["input_shape"] == ["batch", 3, 384, 640] and rep["max_abs_diff_at_original_size"] == 0.0
    from cityeye.vision.detector import Detector

    assert Detector("yolov8n_dq_b-dyn_384x640").input_size == (384, 640)  # a cache name works as model.path
    args = _parse("cache")
    assert args.func(args) == 0
    listed = json.loads(capsys.readouterr().out)
    names = [m["name"] for m in listed["models"]]
    assert "yolov8n_dq_b-dyn_384x640" in names  # and the copies the detector derived from it
    assert all(n.startswith("yolov8n_dq_b-dyn_384x640") for n in names)


def test_reshape_bad_input(cache: Path) -> None:
    for argv, match in [
        (("--imgsz", "380x640"), "multiples of 32"),
        (("--imgsz", "wide"), "--imgsz"),
        (("--batch", "1"), "nothing to change"),
    ]:
        args = _parse("dynamic", str(DEFAULT_MODEL), *argv)
        with pytest.raises(UsageError, match=match):
            args.func(args)
    assert not cache.exists()


def test_quantize_dynamic_and_static(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnx", reason="needs onnx (pip install -e '.[dev]')")
    src = str(shared_path("models", "yolov8n_dq.onnx"))
    args = _parse("quantize", src)
    assert args.func(args) == 0
    dyn = json.loads(capsys.readouterr().out)
    assert dyn["mode"] == "dynamic" and dyn["size_bytes"] < 5_000_000 and dyn["excluded_nodes"] > 0
    calib = str(shared_path("data", "parking", "pklot_ufpr04"))
    args = _parse("quantize", src, "--mode", "static", "--calibration", calib, "--frames", "2")
    assert args.func(args) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["calibration_frames"] == 2 and Path(st["out"]).name == "yolov8n_dq_int8-static.onnx"

    from cityeye.vision.detector import Detector

    img = cv2.imread(str(shared_path("data", "traffic", "detrac_MVI_20011", "images", "img00001.jpg")))
    ref = Detector(src).detect(img)
    for out in (dyn["out"], st["out"]):
        got = Detector(out).detect(img)  # the float head tail keeps boxes and scores usable
        assert len(got.vehicles()) >= len(ref.vehicles()) // 2
        assert box_iou(ref.xyxy[:5], got.xyxy).max(axis=1).min() > 0.8


def test_quantize_refusals(cache: Path) -> None:
    pytest.importorskip("onnx", reason="needs onnx (pip install -e '.[dev]')")
    args = _parse("quantize", str(shared_path("models", "yolov8n_int8.onnx")))
    with pytest.raises(ModelError, match="already quantised"):
        args.func(args)
    args = _parse("quantize", str(DEFAULT_MODEL), "--mode", "static")
    with pytest.raises(UsageError, match="--calibration"):
        args.func(args)
    args = _parse("quantize", str(DEFAULT_MODEL), "--mode", "static", "--calibration", str(cache / "nope"))
    with pytest.raises(ModelError, match="does not exist"):
        args.func(args)
    assert not cache.exists() or not list(cache.glob("*.onnx"))
