"""Raw-pixel copies of float and run-time-quantised models, and the float logit-head copy.

Run-time quantisation (models/rawinput.py "dynamic", vision/inputquant.py) and YOLOX's cast are
bit-identical; the float fold and the logit head agree within float rounding.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from cityeye.models.floathead import takes_logit_head
from cityeye.models.rawinput import _check_quantiser, raw_pixel_kind, raw_pixel_model
from cityeye.models.registry import DEFAULT_MODEL, ModelError
from cityeye.vision.detections import Detections
from cityeye.vision.detector import Detector
from cityeye.vision.inputquant import DynamicInputQuantiser
from cityeye.vision.letterbox import pixel_values

from .conftest import shared_path

SAMPLES = Path(__file__).resolve().parents[1] / "core" / "samples"
AS_IS = {"raw_pixels": False, "byte_scores": False, "logit_head": False}


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("CITYEYE_MODEL_CACHE", str(d))
    return d


def _frames() -> list[np.ndarray]:
    frames = [cv2.imread(str(p)) for p in sorted((SAMPLES / "pucpr" / "frames").glob("*"))[:2]]
    frames = [np.asarray(f, dtype=np.uint8) for f in frames if f is not None]
    dark = (frames[0] * 0.55).astype(np.uint8)  # largest byte < 255: quantised bytes differ from pixels
    portrait = np.ascontiguousarray(frames[1][:, 300:700])  # padded left and right
    return [*frames, dark, portrait]


def _close(got: Detections, want: Detections, box: float, score: float) -> None:
    assert len(got) == len(want)
    np.testing.assert_array_equal(got.class_id, want.class_id)
    assert float(np.abs(got.xyxy - want.xyxy).max(initial=0.0)) <= box
    assert float(np.abs(got.confidence - want.confidence).max(initial=0.0)) <= score


def test_quantiser_matches_onnxruntime_for_every_peak_and_byte(tmp_path: Path) -> None:
    _check_quantiser(tmp_path / "x.onnx")  # raises if any scale, zero point or byte differs
    q = DynamicInputQuantiser(pixel_values(True))
    assert q.for_peak(255).lut is None and q.for_peak(255).scale == np.float32(1 / 255)
    dark = q.for_peak(200)
    assert dark.lut is not None and dark.lut[200] == 255 and dark.lut[0] == 0
    t = np.full((1, 3, 4, 4), 100, np.uint8)
    t[0, 0, 0, 0] = 200
    out, params = q.quantise(t)
    assert out is not t and out[0, 0, 0, 0] == 255 and params.scale == dark.scale and t[0, 0, 0, 0] == 200


def test_kinds_and_refusal(tmp_path: Path) -> None:
    assert raw_pixel_kind(DEFAULT_MODEL) == "float"
    assert raw_pixel_kind(shared_path("models", "yolov8n_int8.onnx")) == "dynamic"
    # An image that goes through an Add first: nothing to drop or fold.
    graph = helper.make_graph(
        [helper.make_node("Add", ["images", "images"], ["out"])],
        "g",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 8, 8])],
    )
    other = tmp_path / "add.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(other))
    assert raw_pixel_kind(other) is None and not takes_logit_head(other)
    with pytest.raises(ModelError, match="cannot take raw pixels"):
        raw_pixel_model(other, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_run_time_quantised_copy_is_bit_identical() -> None:
    src = shared_path("models", "yolov8n_int8.onnx")
    raw = Detector(src, logit_head=False)
    ref = Detector(src, **AS_IS)
    assert raw.copies == ("rawinput",) and raw.session.get_inputs()[0].type == "tensor(uint8)"
    for img in _frames():
        got, want = raw.detect(img), ref.detect(img)
        np.testing.assert_array_equal(got.xyxy, want.xyxy)
        np.testing.assert_array_equal(got.confidence, want.confidence)
        # The public stages (a fresh tensor, quantised out of place) give the same.
        x, geo = raw.preprocess(img)
        before = x.copy()
        again = raw.postprocess(raw.infer(x), geo)
        np.testing.assert_array_equal(again.xyxy, want.xyxy)
        np.testing.assert_array_equal(x, before)


def test_yolox_runs_as_it_is() -> None:
    """Its Focus layer slices the image first: no convolution to fold into, no head to cut."""
    src = shared_path("models", "yolox_nano.onnx")
    assert raw_pixel_kind(src) is None and not takes_logit_head(src)
    assert Detector(src, decoder="yolox").copies == ()


def test_float_fold_and_logit_head_agree_with_the_file() -> None:
    ref = Detector(DEFAULT_MODEL, **AS_IS)
    fold = Detector(DEFAULT_MODEL, logit_head=False)
    head = Detector(DEFAULT_MODEL, raw_pixels=False)
    both = Detector(DEFAULT_MODEL)
    assert fold.copies == ("rawinput",) and fold.path.name.endswith("_u8f.onnx")
    assert head.copies == ("logithead",) and head.decoder.family == "ultralytics-logits"
    assert both.copies == ("logithead", "rawinput")
    assert head.session.get_outputs()[0].shape[1] == 64  # the raw box bins: boxes decoded per candidate
    found = 0
    for img in _frames():
        want = ref.detect(img)
        found += len(want)
        for det in (fold, head, both):
            _close(det.detect(img), want, box=1e-3, score=1e-5)
    assert found >= 10
    low = Detector(DEFAULT_MODEL, confidence=0.01)
    _close(
        low.detect(_frames()[0]),
        Detector(DEFAULT_MODEL, confidence=0.01, **AS_IS).detect(_frames()[0]),
        1e-3,
        1e-5,
    )


def test_logit_head_of_a_run_time_quantised_model_keeps_its_boxes() -> None:
    """Its box branch is quantised per tensor at run time, so only the class branch is cut."""
    src = shared_path("models", "yolov8n_int8.onnx")
    det, ref = Detector(src), Detector(src, **AS_IS)
    assert det.copies == ("logithead", "rawinput") and det.session.get_outputs()[0].shape[1] == 4
    for img in _frames():
        _close(det.detect(img), ref.detect(img), box=0.0, score=1e-6)
