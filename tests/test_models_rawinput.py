"""Raw-pixel copies of statically quantised models: same outputs bit for bit, used automatically."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from cityeye.models.quantize import quantize_model
from cityeye.models.rawinput import derive_raw_pixel_model, raw_pixel_model, takes_raw_pixels
from cityeye.models.registry import DEFAULT_MODEL, ModelError, open_session
from cityeye.vision.detector import Detector
from cityeye.vision.letterbox import letterbox

SAMPLE_FRAMES = sorted(
    (Path(__file__).resolve().parents[1] / "core" / "samples" / "pucpr" / "frames").glob("*")
)


@pytest.fixture(scope="module")
def static_int8(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The shipped model quantised statically on two shipped frames (onnxruntime's QDQ format)."""
    out = tmp_path_factory.mktemp("static") / "yolov8n_static.onnx"
    calib = tmp_path_factory.mktemp("calib")
    for f in SAMPLE_FRAMES[:2]:
        (calib / f.name).write_bytes(f.read_bytes())
    quantize_model(DEFAULT_MODEL, out, mode="static", calibration=[calib], frames=2)
    yield out


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("CITYEYE_MODEL_CACHE", str(d))
    return d


def _frame(i: int = 0) -> np.ndarray:
    img = cv2.imread(str(SAMPLE_FRAMES[i]))
    assert img is not None
    return img


def test_copy_takes_bytes_and_gives_the_same_outputs(static_int8: Path, cache: Path) -> None:
    assert takes_raw_pixels(static_int8)
    copy = derive_raw_pixel_model(static_int8)
    assert copy.parent == cache and copy.name.endswith("_u8in.onnx")
    orig, raw = open_session(static_int8), open_session(copy)
    assert raw.get_inputs()[0].type == "tensor(uint8)"
    # A real frame (letterboxed, padded) and a portrait crop of it (padded left and right).
    for img in (_frame(), np.ascontiguousarray(_frame(1)[:, 300:700])):
        x, _ = letterbox(img, (640, 640))
        b = np.empty(x.shape, dtype=np.uint8)
        letterbox(img, (640, 640), out=b)
        want = orig.run(None, {"images": x})[0]
        got = raw.run(None, {"images": b})[0]
        np.testing.assert_array_equal(got, want)
    assert derive_raw_pixel_model(static_int8) == copy  # made once, then reused


def test_float_and_run_time_quantised_models_are_left_alone(tmp_path: Path) -> None:
    assert not takes_raw_pixels(DEFAULT_MODEL)  # float input straight into a convolution
    with pytest.raises(ModelError, match="scale 1/255"):
        raw_pixel_model(DEFAULT_MODEL, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_other_input_scale_is_not_rewritten(static_int8: Path, tmp_path: Path) -> None:
    """Dropping a QuantizeLinear at another scale would change what the model computes."""
    model = onnx.load(str(static_int8))
    q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "images")
    init = next(i for i in model.graph.initializer if i.name == q.input[1])
    init.CopyFrom(numpy_helper.from_array(np.array(1 / 128, dtype=np.float32), init.name))
    other = tmp_path / "other.onnx"
    onnx.save(model, str(other))
    assert not takes_raw_pixels(other)
    det = Detector(other)
    assert det.path == other and det.session.get_inputs()[0].type == "tensor(float)"


def test_detector_uses_the_copy_with_identical_detections(static_int8: Path) -> None:
    # A low threshold: PUCPR's cars are small, and the test needs boxes in every frame to compare.
    raw = Detector(static_int8, batch=2, confidence=0.05)
    ref = Detector(static_int8, batch=2, confidence=0.05, raw_pixels=False)
    assert raw.path.name.endswith("_u8in.onnx") and raw.source == static_int8
    assert ref.session.get_inputs()[0].type == "tensor(float)"
    frames = [_frame(0), _frame(1), np.ascontiguousarray(_frame(2)[:, 200:800])]
    for got, want in zip(raw.detect_batch(frames), ref.detect_batch(frames), strict=True):
        assert len(want) > 0
        np.testing.assert_array_equal(got.xyxy, want.xyxy)
        np.testing.assert_array_equal(got.confidence, want.confidence)
        np.testing.assert_array_equal(got.class_id, want.class_id)
    x, _ = raw.preprocess(frames[0])
    assert x.dtype == np.uint8
    with pytest.raises(ValueError, match="takes uint8 tensors"):
        raw.infer(x.astype(np.float32) / 255)
