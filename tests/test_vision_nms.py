"""Class-aware NMS on constructed boxes, and against a plain greedy loop (torchvision semantics)."""

from __future__ import annotations

import numpy as np
import pytest

from cityeye.vision.nms import _nms_blocks, _nms_opencv, box_iou, nms


def _boxes(*rows: tuple[float, float, float, float]) -> np.ndarray:
    return np.array(rows, dtype=np.float32)


def _greedy(boxes: np.ndarray, scores: np.ndarray, cls: np.ndarray, thr: float) -> list[int]:
    """Reference: torchvision.ops.nms with a per-class offset, written as the obvious loop."""
    iou = box_iou(boxes, boxes)
    removed = np.zeros(len(boxes), bool)
    keep: list[int] = []
    for i in np.argsort(-scores, kind="stable"):
        if removed[i]:
            continue
        keep.append(int(i))
        removed |= (iou[i] > thr) & (cls == cls[i])
    return keep


def test_box_iou_by_hand() -> None:
    a = _boxes((0, 0, 10, 10))
    b = _boxes((5, 5, 15, 15), (20, 20, 30, 30), (0, 0, 10, 10), (2, 2, 4, 4))
    np.testing.assert_allclose(box_iou(a, b), [[25 / 175, 0, 1, 4 / 100]])


def test_same_class_overlap_suppressed_other_class_survives() -> None:
    boxes = _boxes((0, 0, 10, 10), (1, 0, 11, 10))  # IoU 90/110 = 0.82
    scores = np.array([0.9, 0.8], np.float32)
    assert nms(boxes, scores, 0.7, np.array([2, 2], np.int32)).tolist() == [0]
    assert nms(boxes, scores, 0.7, np.array([2, 7], np.int32)).tolist() == [0, 1]
    assert nms(boxes, scores, 0.7).tolist() == [0]  # class-agnostic when no classes are given


def test_iou_equal_to_threshold_is_kept() -> None:
    boxes = _boxes((0, 0, 10, 10), (0, 0, 10, 5))  # IoU exactly 0.5
    scores = np.array([0.5, 0.9], np.float32)
    cls = np.zeros(2, np.int32)
    assert nms(boxes, scores, 0.5, cls).tolist() == [1, 0]
    assert nms(boxes, scores, 0.49, cls).tolist() == [1]


def test_suppressed_box_does_not_suppress() -> None:
    # A suppresses B (IoU 0.54); B would suppress C, but B is gone, and A-C IoU is 0.25.
    boxes = _boxes((0, 0, 10, 10), (3, 0, 13, 10), (6, 0, 16, 10))
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    assert nms(boxes, scores, 0.5, np.zeros(3, np.int32)).tolist() == [0, 2]


def test_max_det_keeps_best_scores() -> None:
    n = 400
    x = np.arange(n, dtype=np.float32) * 20
    boxes = np.stack([x, np.zeros(n), x + 10, np.full(n, 10)], 1).astype(np.float32)
    scores = np.random.default_rng(0).permutation(n).astype(np.float32) / n
    keep = nms(boxes, scores, 0.7, np.zeros(n, np.int32), max_det=300)
    assert len(keep) == 300
    assert np.all(np.diff(scores[keep]) <= 0)
    assert scores[keep].min() > np.sort(scores)[-301]


def test_max_nms_limits_candidates() -> None:
    x = np.arange(50, dtype=np.float32) * 20
    boxes = np.stack([x, np.zeros(50), x + 10, np.full(50, 10)], 1).astype(np.float32)
    scores = np.linspace(1, 0.5, 50).astype(np.float32)
    assert nms(boxes, scores, 0.7, max_nms=10).tolist() == list(range(10))


def test_empty_and_degenerate() -> None:
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5).shape == (0,)
    zero = _boxes((5, 5, 5, 5), (5, 5, 5, 5))
    assert box_iou(zero, zero).tolist() == [[0.0, 0.0], [0.0, 0.0]]
    assert nms(zero, np.array([0.9, 0.8], np.float32), 0.5).tolist() == [0, 1]


@pytest.mark.parametrize("n", [50, 1100])  # 1100 spans several internal blocks of 512
def test_matches_greedy_reference_on_random_crowds(n: int) -> None:
    rng = np.random.default_rng(n)
    xy = rng.uniform(0, 300, (n, 2))
    wh = rng.uniform(5, 60, (n, 2))
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    scores = rng.uniform(0.25, 1, n).astype(np.float32)
    cls = rng.integers(0, 3, n).astype(np.int32)
    for thr in (0.3, 0.7):
        got = nms(boxes, scores, thr, cls, max_det=10_000).tolist()
        assert got == _greedy(boxes, scores, cls, thr)


def test_ios_and_groups_for_tile_merging() -> None:
    from cityeye.vision.nms import box_ios

    whole, piece = (0, 0, 100, 50), (60, 0, 100, 50)  # a car and the part of it one tile saw
    boxes = _boxes(whole, piece)
    assert box_iou(boxes, boxes)[0, 1] == pytest.approx(0.4)
    assert box_ios(boxes, boxes)[0, 1] == pytest.approx(1.0)
    scores = np.array([0.6, 0.9], np.float32)
    cls = np.zeros(2, np.int32)
    assert nms(boxes, scores, 0.7, cls).tolist() == [1, 0]  # IoU keeps both
    assert nms(boxes, scores, 0.6, cls, metric="ios").tolist() == [1]
    same_pass = np.array([0, 0], np.int32)
    assert nms(boxes, scores, 0.6, cls, metric="ios", group=same_pass).tolist() == [1, 0]
    with pytest.raises(ValueError, match="metric"):
        nms(boxes, scores, 0.6, metric="giou")


@pytest.mark.parametrize("n", [30, 400])
def test_opencv_fast_path_equals_the_numpy_path(n: int) -> None:
    """OpenCV's greedy NMS is used where its rules equal torchvision's; both paths must agree."""
    rng = np.random.default_rng(7 + n)
    xy = rng.uniform(-40, 300, (n, 2))  # negative coordinates too (boxes past the left/top edge)
    wh = rng.uniform(2, 80, (n, 2))
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    scores = rng.uniform(0.01, 1, n).astype(np.float32)
    scores[::7] = scores[0]  # ties keep input order on both paths
    for cls in (None, rng.integers(0, 80, n).astype(np.int32)):
        for thr in (0.3, 0.45, 0.7):
            fast = _nms_opencv(boxes, scores, thr, cls, 30000)
            assert fast is not None
            ref = _nms_blocks(boxes, scores, thr, cls, 10_000, 30000, box_iou, None)
            assert (
                fast.tolist()
                == ref.tolist()
                == _greedy(boxes, scores, np.zeros(n) if cls is None else cls, thr)
            )


def test_classes_stay_apart_with_negative_coordinates() -> None:
    # Class 1's box starts left of 0: a shift of class * (max + 1) alone would slide it onto class 0's.
    boxes = _boxes((-30, 0, 10, 10), (90, 0, 100, 10), (-30, 0, 10, 10))
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    assert nms(boxes, scores, 0.5, np.array([1, 0, 0], np.int32)).tolist() == [0, 1, 2]


def test_cases_opencv_would_decide_differently_take_the_numpy_path() -> None:
    boxes = _boxes((0, 0, 10, 10), (20, 0, 30, 10))
    assert _nms_opencv(boxes, np.array([0.9, 0.0], np.float32), 0.5, None, 100) is None  # zero score
    assert nms(boxes, np.array([0.9, 0.0], np.float32), 0.5).tolist() == [0, 1]
    flat = _boxes((0, 0, 10, 10), (5, 5, 5, 9))
    assert _nms_opencv(flat, np.array([0.9, 0.8], np.float32), 0.5, None, 100) is None  # zero area
