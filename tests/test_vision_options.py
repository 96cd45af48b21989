"""Detector options a site sets by configuration: decoder, names, classes, batch, rectangular input,
tiling, session options, and the errors for models cityeye cannot use."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from cityeye.models.graph import reshape_model
from cityeye.models.registry import ModelError, SessionSettings, resolve_providers
from cityeye.vision.config import ModelConfig, TileConfig
from cityeye.vision.decoders import Yolov5Decoder, select_decoder
from cityeye.vision.detector import Detector, tile_windows
from cityeye.vision.nms import box_iou
from tests.conftest import shared_path

DETRAC = ("data", "traffic", "detrac_MVI_20011")


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    paths = sorted(shared_path(*DETRAC, "images").glob("*.jpg"))[:4]
    return [np.asarray(cv2.imread(str(p))) for p in paths]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Batch-dynamic copies of the default model at 640x640 and 384x640 (graph edits, see models/graph.py)."""
    d = tmp_path_factory.mktemp("models")
    src = shared_path("models", "yolov8n_dq.onnx")
    reshape_model(src, d / "b_640.onnx")
    reshape_model(src, d / "b_384x640.onnx", imgsz=(384, 640))
    return d


def test_detect_batch_equals_single_frames(models_dir: Path, frames: list[np.ndarray]) -> None:
    det = Detector(models_dir / "b_640.onnx", batch=4)
    assert det.dynamic_batch and det.batch == 4
    mixed = [frames[0], cv2.resize(frames[1], (1280, 720)), frames[2][:300], frames[3], frames[0]]  # 4 + 1
    batched = det.detect_batch(mixed)
    assert len(batched) == 5
    for img, got in zip(mixed, batched, strict=True):
        want = det.detect(img)
        np.testing.assert_allclose(got.xyxy, want.xyxy, atol=1e-3)
        np.testing.assert_array_equal(got.class_id, want.class_id)
    assert det.detect_batch([]) == []


def test_static_model_batches_by_looping_or_derived_copy(
    frames: list[np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = shared_path("models", "yolov8n_dq.onnx")
    det = Detector(src)
    assert not det.dynamic_batch and det.batch == 1
    out = det.detect_batch(frames[:2])
    np.testing.assert_array_equal(out[1].xyxy, det.detect(frames[1]).xyxy)
    with pytest.raises(ModelError, match="--batch dynamic"):
        Detector(src, batch=4, auto_reshape=False)
    monkeypatch.setenv("CITYEYE_MODEL_CACHE", str(tmp_path))
    derived = Detector(src, batch=4)  # a batch-dynamic copy is derived into the model cache
    assert derived.dynamic_batch and derived.batch == 4 and derived.path.parent == tmp_path
    np.testing.assert_array_equal(derived.detect_batch(frames[:2])[1].xyxy, out[1].xyxy)
    with pytest.raises(ModelError, match="DynamicQuantizeLinear"):
        Detector(shared_path("models", "yolov8n_int8.onnx"), batch=4)
    # The batch-dynamic copy and the copies run on it (logit head, raw pixels); nothing for the INT8 file.
    assert all(p.name.startswith("yolov8n_dq-") for p in tmp_path.iterdir())


def test_rectangular_input_finds_the_same_cars(models_dir: Path, frames: list[np.ndarray]) -> None:
    square = Detector(shared_path("models", "yolov8n_dq.onnx")).detect(frames[0])
    rect_det = Detector.from_config(ModelConfig(path=models_dir / "b_384x640.onnx", imgsz=[384, 640]))
    assert rect_det.input_size == (384, 640)
    rect = rect_det.detect(frames[0])
    tensor, geo = rect_det.preprocess(frames[0])
    assert tensor.shape == (1, 3, 384, 640) and geo.top == 12  # 360 rows of picture, 24 of padding
    confident = square[square.confidence > 0.5]
    assert len(confident) >= 5
    assert np.all(box_iou(confident.xyxy, rect.xyxy).max(axis=1) > 0.85)  # same picture scale: same boxes


def test_imgsz_parsing_and_validation() -> None:
    assert ModelConfig(imgsz="384x640").input_hw == (384, 640)
    assert ModelConfig(imgsz=[384, 640]).input_hw == (384, 640)
    assert ModelConfig(imgsz=640).input_hw == (640, 640)
    assert ModelConfig().input_hw is None
    for bad in (400, "384x600", [10, 640], "big"):
        with pytest.raises(ValidationError):
            ModelConfig(imgsz=bad)
    with pytest.raises(ValidationError, match="classes"):
        ModelConfig(classes=[])
    with pytest.raises(ValidationError):
        ModelConfig(decoder="yolov9")
    with pytest.raises(ValidationError, match="too small"):
        TileConfig(size=32)


def test_fixed_size_model_explains_reshape() -> None:
    with pytest.raises(ModelError, match=r"cityeye models reshape .* --imgsz 384x640"):
        Detector(shared_path("models", "yolov8n_dq.onnx"), imgsz=(384, 640), auto_reshape=False)


def test_yolox_by_configuration(frames: list[np.ndarray]) -> None:
    path = shared_path("models", "yolox_nano.onnx")
    det = Detector.from_config(ModelConfig(path=path, decoder="yolox", iou=0.45))
    assert det.decoder.family == "yolox" and det.names[2] == "car"
    found = labelled = 0
    with shared_path(*DETRAC, "gt_frames1-9.csv").open() as f:
        rows = list(csv.DictReader(f))
    for n in range(1, 10):
        xywh = np.array([[float(r[k]) for k in ("left", "top", "width", "height")] for r in rows
                         if r["frame"] == str(n)], np.float32)  # fmt: skip
        gt = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        img = np.asarray(cv2.imread(str(shared_path(*DETRAC, "images", f"img{n:05d}.jpg"))))
        cars = det.detect(img).vehicles()
        found += int((box_iou(gt, cars.xyxy).max(axis=1) >= 0.5).sum()) if len(cars) else 0
        labelled += len(gt)
    assert labelled == 59 and found >= 45  # measured: 48 of 59 at IoU >= 0.5
    with pytest.raises(ModelError, match="decoder ultralytics expects"):
        Detector(path, decoder="ultralytics")
    with pytest.raises(ModelError, match="decoder end2end expects"):
        Detector(path, decoder="end2end")


def test_yolov5_head_decode_and_selection() -> None:
    n = 3 * (80 * 80 + 40 * 40 + 20 * 20)
    assert select_decoder((640, 640), (1, n, 85), {}).family == "yolov5"
    assert select_decoder((640, 640), (1, 8400, 85), {}, "yolov5").family == "yolov5"
    out = np.zeros((1, n, 85), np.float32)
    out[0, 10] = [100, 100, 20, 10, 0.9, *([0.0] * 80)]
    out[0, 10, 5 + 2] = 0.5  # car: score 0.45
    out[0, 11, :5] = [300, 300, 20, 20, 0.2]  # objectness below threshold: dropped whatever its class
    out[0, 11, 5 + 2] = 1.0
    out[0, 12, :5] = [200, 200, 20, 20, 0.5]
    out[0, 12, 5 + 7] = 0.4  # obj * cls = 0.2 < 0.25: dropped
    c = Yolov5Decoder(80).decode(out, 0.25)
    assert c.class_id.tolist() == [2] and c.score.tolist() == pytest.approx([0.45])
    np.testing.assert_allclose(c.xyxy, [[90, 95, 110, 105]])


def test_names_and_class_filter_from_config(frames: list[np.ndarray]) -> None:
    path = shared_path("models", "yolov8n_dq.onnx")
    det = Detector.from_config(ModelConfig(path=path, classes=["car", "truck", "bus"]))
    d = det.detect(frames[0])
    assert len(d) > 0 and set(d.class_id.tolist()) <= {2, 5, 7}
    everything = Detector(path).detect(frames[0])
    assert 0 in everything.class_id  # the frame has pedestrians, which the filter removed
    renamed = Detector(path, names=[f"c{i}" for i in range(80)])
    assert renamed.names[2] == "c2"
    with pytest.raises(ModelError, match="not among the model's class names"):
        Detector(path, classes=["lorry"])


def test_agnostic_nms_keeps_one_box_per_object(frames: list[np.ndarray]) -> None:
    path = shared_path("models", "yolov8n_dq.onnx")
    aware = Detector(path).detect(frames[0])
    agnostic = Detector(path, agnostic_nms=True).detect(frames[0])
    assert len(agnostic) < len(aware)  # the near SUV is both "car" and "train" in SOURCES.md
    iou = box_iou(agnostic.xyxy, agnostic.xyxy)
    np.fill_diagonal(iou, 0)
    assert iou.max() <= 0.7


def test_tile_windows_cover_the_image() -> None:
    w = tile_windows((720, 1280), (640, 640), 0.2)
    assert w == [(0, 0, 640, 640), (0, 320, 640, 960), (0, 640, 640, 1280),
                 (80, 0, 720, 640), (80, 320, 720, 960), (80, 640, 720, 1280)]  # fmt: skip
    cover = np.zeros((720, 1280), bool)
    for y0, x0, y1, x1 in w:
        cover[y0:y1, x0:x1] = True
    assert cover.all()
    assert tile_windows((300, 500), (640, 640), 0.2) == [(0, 0, 300, 500)]


def test_tiling_finds_small_cars_without_duplicates() -> None:
    img = np.asarray(
        cv2.imread(str(shared_path("data", "parking", "pklot_pucpr", "2012-09-12_10_11_12.jpg")))
    )
    path = shared_path("models", "yolov8n_dq.onnx")
    plain = Detector(path).detect(img).vehicles()
    tiled = Detector.from_config(ModelConfig(path=path, tile=TileConfig())).detect(img).vehicles()
    assert len(tiled) >= 3 * max(len(plain), 1)  # 10th-floor view: cars are ~20 px at 640
    iou = box_iou(tiled.xyxy, tiled.xyxy)
    np.fill_diagonal(iou, 0)
    same = tiled.class_id[:, None] == tiled.class_id[None, :]
    assert (iou * same).max() <= 0.7, "a vehicle seen by two tiles must be kept once"
    assert np.all(tiled.xyxy[:, 2] <= 1280) and np.all(tiled.xyxy[:, 3] <= 720)


def test_session_options_and_providers() -> None:
    path = shared_path("models", "yolox_nano.onnx")
    det = Detector.from_config(
        ModelConfig(
            path=path, threads=1, inter_threads=1, graph_optimization="basic", parallel_execution=True
        )
    )
    assert det.session.get_providers() == ["CPUExecutionProvider"]
    assert resolve_providers(["auto"])[-1] == "CPUExecutionProvider"
    assert resolve_providers(["cpu"]) == ["CPUExecutionProvider"]
    with pytest.raises(ModelError, match=r"provider 'tensorrt' .* not installed; installed:"):
        Detector(path, session=SessionSettings(providers=("tensorrt",)))


def _tiny_model(tmp: Path, input_shape: list[int], output_shape: list[int], **meta: str) -> Path:
    """A one-node ONNX graph with the given input/output shapes (for error paths, not detection)."""
    onnx = pytest.importorskip("onnx", reason="building test graphs needs onnx (pip install -e '.[dev]')")
    from onnx import TensorProto, helper

    n_in, n_out = int(np.prod(input_shape)), int(np.prod(output_shape))
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["m"], keepdims=0),
        helper.make_node("Expand", ["m", "shape"], ["y"]),
    ]
    shape = helper.make_tensor("shape", TensorProto.INT64, [len(output_shape)], output_shape)
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, output_shape)],
        [shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)
    assert n_in and n_out
    p = tmp / "tiny.onnx"
    onnx.save(model, str(p))
    return p


def test_wrong_input_rank_is_a_clear_error(tmp_path: Path) -> None:
    p = _tiny_model(tmp_path, [1, 3, 640], [1, 84, 8400])
    with pytest.raises(ModelError, match=r"rank 4 .* got \[\('x', \[1, 3, 640\]\)\]"):
        Detector(p)


def test_unsupported_output_is_a_clear_error(tmp_path: Path) -> None:
    p = _tiny_model(tmp_path, [1, 3, 640, 640], [1, 10, 10])
    with pytest.raises(ModelError, match=r"cannot tell the head family.*model.decoder"):
        Detector(p)


def test_missing_names_metadata_is_a_clear_error(tmp_path: Path) -> None:
    p = _tiny_model(tmp_path, [1, 3, 640, 640], [1, 7, 8400])  # 3 classes, no names
    with pytest.raises(ModelError, match=r"3 classes and no 'names' metadata.*model\.names"):
        Detector(p)
    det = Detector(p, names=["car", "bus", "truck"])
    assert det.names == {0: "car", 1: "bus", 2: "truck"}
    assert len(det.detect(np.zeros((100, 100, 3), np.uint8))) == 0  # runs, and its constant output is no box


def test_segmentation_task_is_refused(tmp_path: Path) -> None:
    p = _tiny_model(tmp_path, [1, 3, 640, 640], [1, 116, 8400], task="segment")
    with pytest.raises(ModelError, match="task is 'segment'"):
        Detector(p)


def test_end_to_end_head_runs_through_the_same_interface(tmp_path: Path) -> None:
    p = _tiny_model(tmp_path, [1, 3, 640, 640], [1, 300, 6], end2end="True")
    det = Detector(p)
    assert det.decoder.family == "end2end" and not det.decoder.needs_nms
    img = np.full((640, 640, 3), 255, np.uint8)  # every output value is the mean pixel: 1.0, no padding
    d = det.detect(img)
    assert len(d) == 300 and np.all(d.confidence == 1.0) and np.all(d.class_id == 1)
