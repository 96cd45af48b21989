"""Decoders on synthetic head outputs, decoder selection by shape/metadata, class names."""

from __future__ import annotations

import numpy as np
import pytest

from cityeye.models.registry import ModelError
from cityeye.vision.decoders import (
    COCO80_NAMES,
    EndToEndDecoder,
    UltralyticsDecoder,
    YoloxDecoder,
    anchor_count,
    class_names,
    select_decoder,
)


def test_anchor_counts_of_real_models() -> None:
    assert anchor_count((640, 640)) == 8400
    assert anchor_count((416, 416)) == 3549
    assert anchor_count((320, 320)) == 2100


def test_ultralytics_decode() -> None:
    out = np.zeros((1, 84, 8400), np.float32)
    out[0, :4, 5] = [100, 200, 20, 40]
    out[0, 4 + 7, 5] = 0.9
    out[0, 4 + 3, 5] = 0.6  # lower second class on the same anchor: not a second box
    out[0, :4, 10] = [50, 50, 10, 10]
    out[0, 4 + 2, 10] = 0.25  # equal to the threshold: dropped (strictly greater, as Ultralytics)
    c = UltralyticsDecoder(80).decode(out, 0.25)
    assert len(c) == 1
    np.testing.assert_allclose(c.xyxy, [[90, 180, 110, 220]])
    assert c.class_id.tolist() == [7] and c.score.tolist() == pytest.approx([0.9])
    assert c.xyxy.dtype == np.float32 and c.class_id.dtype == np.int32


def test_yolox_decode_grid_and_stride() -> None:
    out = np.zeros((1, 3549, 85), np.float32)
    i = 52 * 52 + 3 * 26 + 5  # stride-16 level, row 3, column 5
    out[0, i, :4] = [0.5, 0.25, np.log(2), np.log(2)]
    out[0, i, 4] = 0.8  # objectness
    out[0, i, 5 + 2] = 0.5  # car
    out[0, 0, 4], out[0, 0, 5] = 0.9, 0.2  # obj * cls = 0.18 < 0.25: dropped
    c = YoloxDecoder(80, (416, 416)).decode(out, 0.25)
    # cx = (5 + 0.5) * 16 = 88, cy = (3 + 0.25) * 16 = 52, w = h = 2 * 16 = 32
    np.testing.assert_allclose(c.xyxy, [[72, 36, 104, 68]], rtol=1e-6)
    assert c.class_id.tolist() == [2] and c.score.tolist() == pytest.approx([0.4])


def test_yolox_rejects_wrong_anchor_count() -> None:
    with pytest.raises(ModelError, match="anchors"):
        YoloxDecoder(80, (640, 640)).decode(np.zeros((1, 3549, 85), np.float32), 0.25)


def test_end_to_end_decode() -> None:
    out = np.zeros((1, 300, 6), np.float32)
    out[0, 0] = [10, 20, 30, 40, 0.8, 2]
    out[0, 1] = [11, 21, 31, 41, 0.3, 7]
    out[0, 2] = [0, 0, 5, 5, 0.1, 0]
    c = EndToEndDecoder().decode(out, 0.25)
    np.testing.assert_allclose(c.xyxy, [[10, 20, 30, 40], [11, 21, 31, 41]])
    assert c.class_id.tolist() == [2, 7]
    assert not EndToEndDecoder.needs_nms


@pytest.mark.parametrize(
    ("input_hw", "shape", "meta", "family", "nc"),
    [
        ((640, 640), (1, 84, 8400), {}, "ultralytics", 80),
        ((320, 320), (1, 84, 2100), {}, "ultralytics", 80),
        ((640, 640), (1, 6, 8400), {}, "ultralytics", 2),  # 2 classes: 6 channels, still channels-first
        ((416, 416), (1, 3549, 85), {}, "yolox", 80),
        ((640, 640), (1, 8400, 6), {}, "yolox", 1),  # 1-class YOLOX also has 6 columns
        ((640, 640), (1, 300, 6), {}, "end2end", None),
        ((640, 640), (1, 300, 6), {"end2end": "True"}, "end2end", None),
    ],
)
def test_select_decoder(
    input_hw: tuple[int, int], shape: tuple[int, ...], meta: dict[str, str], family: str, nc: int | None
) -> None:
    d = select_decoder(input_hw, shape, meta)
    assert d.family == family and d.num_classes == nc


def test_preprocessing_comes_with_the_family() -> None:
    assert UltralyticsDecoder.preprocess.center and UltralyticsDecoder.preprocess.rgb
    assert UltralyticsDecoder.preprocess.normalize
    y = YoloxDecoder.preprocess
    assert (y.center, y.rgb, y.normalize) == (False, False, False)


@pytest.mark.parametrize(
    ("shape", "meta", "match"),
    [
        ((1, 116, 8400), {"task": "segment"}, "task"),
        ((1, 10, 10), {}, "head family"),
        ((1, 84, 8400, 1), {}, "unsupported output shape"),
    ],
)
def test_select_decoder_rejects(shape: tuple[int, ...], meta: dict[str, str], match: str) -> None:
    with pytest.raises(ModelError, match=match):
        select_decoder((640, 640), shape, meta)


def test_class_names() -> None:
    assert class_names({"names": "{0: 'person', 1: 'bicycle', 2: 'car'}"}, 3) == {
        0: "person",
        1: "bicycle",
        2: "car",
    }
    assert class_names({"names": "['a', 'b']"}, 2) == {0: "a", 1: "b"}
    coco = class_names({}, 80)
    assert coco[2] == "car" and coco[7] == "truck" and len(coco) == 80 == len(COCO80_NAMES)
    with pytest.raises(ModelError, match=r"3 classes and no 'names' metadata.*model\.names"):
        class_names({}, 3)  # ids "0", "1", "2" would never match "car": refuse, say how to fix
    assert class_names({}, 3, ["car", "bus", "truck"]) == {0: "car", 1: "bus", 2: "truck"}
    assert class_names({"names": "{0: 'x'}"}, 1, {0: "car"}) == {0: "car"}  # config beats metadata
    with pytest.raises(ModelError, match="lists 2 classes but the model has 3"):
        class_names({}, 3, ["car", "bus"])
    with pytest.raises(ModelError, match="dict literal"):
        class_names({"names": "{0: person"}, 1)
