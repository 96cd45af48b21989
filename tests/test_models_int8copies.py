"""Checked INT8 copies of statically quantised models, used automatically by the detector.

Raw-pixel input (models/rawinput.py): the same outputs bit for bit. Byte class scores
and box bins (models/scorehead.py): the same candidates and classes, confidences within 1e-6,
boxes within 1e-3 model-input pixels.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from cityeye.models.quantize import quantize_model
from cityeye.models.rawinput import derive_raw_pixel_model, takes_raw_pixels
from cityeye.models.registry import DEFAULT_MODEL, ModelError, open_session
from cityeye.models.scorehead import (
    BINS_NAME,
    OUTPUT_NAME,
    derive_quantised_score_model,
    quantised_score_model,
    takes_quantised_scores,
)
from cityeye.vision.config import TileConfig
from cityeye.vision.detections import Detections
from cityeye.vision.detector import Detector
from cityeye.vision.letterbox import letterbox
from cityeye.zones.model import parse_zones
from cityeye.zones.tiling import ZoneDetector

SAMPLES = Path(__file__).resolve().parents[1] / "core" / "samples"
SAMPLE_FRAMES = sorted((SAMPLES / "pucpr" / "frames").glob("*"))
BOX_PX = 2e-3
"""Boxes decoded from bins per candidate: 1e-3 model-input pixels, times 2 for these 1280-wide frames."""


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


def test_other_input_scale_is_not_rewritten(static_int8: Path, tmp_path: Path) -> None:
    """Dropping a QuantizeLinear at another scale would change what the model computes."""
    model = onnx.load(str(static_int8))
    q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "images")
    init = next(i for i in model.graph.initializer if i.name == q.input[1])
    init.CopyFrom(numpy_helper.from_array(np.array(1 / 128, dtype=np.float32), init.name))
    other = tmp_path / "other.onnx"
    onnx.save(model, str(other))
    assert not takes_raw_pixels(other)
    det = Detector(other, byte_scores=False)
    assert det.path == other and det.session.get_inputs()[0].type == "tensor(float)"
    assert Detector(other).copies == ("scorehead",)  # the head is unaffected by the input scale


def _same(got: Detections, want: Detections, exact_scores: bool, box_px: float = 0.0) -> None:
    np.testing.assert_allclose(got.xyxy, want.xyxy, rtol=0, atol=box_px)
    np.testing.assert_array_equal(got.class_id, want.class_id)
    if exact_scores:
        np.testing.assert_array_equal(got.confidence, want.confidence)
    else:
        np.testing.assert_allclose(got.confidence, want.confidence, rtol=0, atol=1e-6)


def test_detector_uses_the_raw_pixel_copy_with_identical_detections(static_int8: Path) -> None:
    # A low threshold: PUCPR's cars are small, and the test needs boxes in every frame to compare.
    raw = Detector(static_int8, batch=2, confidence=0.05, byte_scores=False)
    ref = Detector(static_int8, batch=2, confidence=0.05, raw_pixels=False, byte_scores=False)
    assert raw.copies == ("rawinput",) and raw.source == static_int8 and ref.copies == ()
    assert ref.session.get_inputs()[0].type == "tensor(float)"
    frames = [_frame(0), _frame(1), np.ascontiguousarray(_frame(2)[:, 200:800])]
    for got, want in zip(raw.detect_batch(frames), ref.detect_batch(frames), strict=True):
        assert len(want) > 0
        _same(got, want, exact_scores=True)
    x, _ = raw.preprocess(frames[0])
    assert x.dtype == np.uint8
    with pytest.raises(ValueError, match="takes uint8 tensors"):
        raw.infer(x.astype(np.float32) / 255)


def test_byte_score_copy_decodes_like_the_file(static_int8: Path, cache: Path) -> None:
    assert takes_quantised_scores(static_int8)
    copy = derive_quantised_score_model(static_int8)
    assert copy.parent == cache and not takes_quantised_scores(copy)  # not applied twice
    outs = open_session(copy).get_outputs()
    # Our static quantisation leaves the box decode in float: its bins come out as bytes too.
    assert [o.name for o in outs] == [BINS_NAME, OUTPUT_NAME]
    assert [o.type for o in outs] == ["tensor(uint8)", "tensor(uint8)"]
    both = Detector(static_int8, batch=2, confidence=0.01)
    ref = Detector(static_int8, batch=2, confidence=0.01, raw_pixels=False, byte_scores=False)
    assert both.copies == ("rawinput", "scorehead") and both.decoder.family == "ultralytics-u8scores"
    frames = [_frame(0), _frame(1), np.ascontiguousarray(_frame(2)[:, 200:800])]
    for conf in (0.01, 0.25, 0.6):
        both.confidence = ref.confidence = conf
        for got, want in zip(both.detect_batch(frames), ref.detect_batch(frames), strict=True):
            _same(got, want, exact_scores=False, box_px=BOX_PX)
    # The tiled path takes the same outputs apart tile by tile.
    tiled = Detector(static_int8, batch=2, confidence=0.05, tile=TileConfig())
    tiled_ref = Detector(
        static_int8, batch=2, confidence=0.05, tile=TileConfig(), raw_pixels=False, byte_scores=False
    )
    want_tiled = tiled_ref.detect(frames[0])
    assert len(want_tiled) > 0
    _same(tiled.detect(frames[0]), want_tiled, exact_scores=False, box_px=BOX_PX)


def test_byte_scores_only_for_quantised_heads(tmp_path: Path) -> None:
    assert not takes_quantised_scores(DEFAULT_MODEL)
    with pytest.raises(ModelError, match="statically quantised Ultralytics head"):
        quantised_score_model(DEFAULT_MODEL, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()
    assert "scorehead" not in Detector(DEFAULT_MODEL).copies


def test_zone_tiling_with_byte_scores(static_int8: Path) -> None:
    """Parking's zone tiler runs the detector's stages itself: it must take both outputs apart too."""
    zones = parse_zones(json.loads((SAMPLES / "pucpr" / "zones.geojson").read_text()))
    both = ZoneDetector(Detector(static_int8, batch=2), zones, confidence=0.1)(_frame(0))
    ref = ZoneDetector(
        Detector(static_int8, batch=2, raw_pixels=False, byte_scores=False), zones, confidence=0.1
    )
    want = ref(_frame(0))
    assert len(want) > 10
    _same(both, want, exact_scores=False, box_px=BOX_PX)
