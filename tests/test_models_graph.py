"""Graph edits: dynamic batch, re-targeted input size, and their self-check against the original."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from cityeye.models.graph import make_anchors, reshape_model
from cityeye.models.registry import ModelError
from cityeye.vision.detector import Detector, quantises_at_run_time
from tests.conftest import shared_path

pytest.importorskip("onnx", reason="graph edits need onnx (pip install -e '.[dev]')")


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    return np.asarray(
        cv2.imread(str(shared_path("data", "traffic", "detrac_MVI_20011", "images", "img00001.jpg")))
    )


def test_anchors_equal_the_exported_constants() -> None:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(shared_path("models", "yolov8n_dq.onnx")))
    consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    pts, strides = make_anchors((640, 640))
    assert any(v.shape == pts.shape and np.array_equal(v, pts) for v in consts.values())
    assert any(v.shape == strides.shape and np.array_equal(v, strides) for v in consts.values())


@pytest.mark.parametrize("name", ["yolov8n_dq", "yolov8n_int8", "yolo11n_int8_320", "yolox_nano"])
def test_dynamic_batch_matches_original(tmp_path: Path, frame: np.ndarray, name: str) -> None:
    src = shared_path("models", f"{name}.onnx")
    out = tmp_path / "b.onnx"
    rep = reshape_model(src, out, check_image=frame)
    assert rep.input_shape[0] == "batch" and rep.reshapes_edited > 0
    assert rep.max_abs_diff_at_original_size == 0.0 and rep.max_abs_diff_batch_vs_single == 0.0
    if quantises_at_run_time(src):
        # One activation scale per tensor, computed over the whole batch: frames would interact.
        with pytest.raises(ModelError, match="DynamicQuantizeLinear"):
            Detector(out, batch=3)
        return
    orig, dyn = Detector(src), Detector(out, batch=3)
    want = orig.detect(frame)
    for got in dyn.detect_batch([frame, frame, frame]):
        np.testing.assert_array_equal(got.xyxy, want.xyxy)


def test_retarget_to_16_9(tmp_path: Path, frame: np.ndarray) -> None:
    out = tmp_path / "r.onnx"
    rep = reshape_model(shared_path("models", "yolo11n_int8_320.onnx"), out, imgsz=(192, 320))
    assert rep.input_shape == ["batch", 3, 192, 320] and rep.anchor_constants_replaced == 3
    assert rep.max_abs_diff_at_original_size == 0.0  # after re-targeting back to 320x320
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"images": np.zeros((2, 3, 192, 320), np.float32)})[0]
    assert y.shape == (2, 84, 24 * 40 + 12 * 20 + 6 * 10)
    det = Detector(out)
    assert det.input_size == (192, 320) and len(det.detect(frame).vehicles()) >= 3


def test_yolox_becomes_fully_dynamic(tmp_path: Path, frame: np.ndarray) -> None:
    out = tmp_path / "x.onnx"
    rep = reshape_model(shared_path("models", "yolox_nano.onnx"), out, imgsz="dynamic")
    assert rep.input_shape == ["batch", 3, "height", "width"]
    det = Detector(out, imgsz=(384, 640), batch=2)
    assert det.decoder.family == "yolox"
    a, b = det.detect_batch([frame, frame])
    assert len(a.vehicles()) >= 5
    np.testing.assert_array_equal(a.xyxy, b.xyxy)


def test_baked_anchor_grid_cannot_be_spatially_dynamic(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"anchor grid into constants.*--imgsz HxW"):
        reshape_model(shared_path("models", "yolov8n_dq.onnx"), tmp_path / "d.onnx", imgsz="dynamic")
    assert not list(tmp_path.iterdir()), "nothing is written when the edit is refused"


def test_already_dynamic_model_is_refused(tmp_path: Path) -> None:
    first = tmp_path / "x.onnx"
    reshape_model(shared_path("models", "yolox_nano.onnx"), first, imgsz="dynamic")
    with pytest.raises(ModelError, match="already has dynamic axes"):
        reshape_model(first, tmp_path / "y.onnx")
